// No secret ever leaves the real evgate daemon through what it writes: with a token file, a
// read-only token and mutual TLS on, successful and failed calls (a wrong token sharing the real
// one's prefix, the read-only token on a change, a malformed header, a handshake without a
// client certificate), then everything the process wrote (stdout, stderr at debug level, the
// access log file, the state file, the metrics page) holds neither token, nor the guess, nor a
// line of a private key. Also: the refusals are visible (audit lines, the metrics page), and
// the state file is readable by its owner only.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/admin/test_certs.h"
#include "tests/integration/grpc_probe.h"
#include "tests/integration/http_get.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;
using admin::testing::readTextFile;
using admin::testing::TestCerts;

constexpr auto kStartLimit = 10s;
constexpr const char* kAdminToken = "tok-Adm1n-7f3c9e2b5d41a8";
constexpr const char* kReadOnlyToken = "tok-Re4d-0b6e2f9c7a13d5";
// A caller's guess that shares all but the last bytes with the admin token.
constexpr const char* kGuess = "tok-Adm1n-7f3c9e2b5d41zz";

// The base64 lines of a PEM private key: any of them in a log would leak part of the key.
std::vector<std::string> keyLines(const std::string& pemFile) {
  std::vector<std::string> lines;
  std::istringstream in(readTextFile(pemFile));
  for (std::string line; std::getline(in, line);) {
    if (line.size() >= 16 && !line.starts_with("-----")) lines.push_back(line);
  }
  return lines;
}

std::shared_ptr<grpc::Channel> tlsChannel(const std::string& address, const TestCerts& certs,
                                          bool clientCertificate) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = readTextFile(certs.caCert());
  if (clientCertificate) {
    options.pem_cert_chain = readTextFile(certs.clientCert());
    options.pem_private_key = readTextFile(certs.clientKey());
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

std::unique_ptr<grpc::ClientContext> withAuthorization(const std::string& authorization) {
  auto context = callContext();
  context->AddMetadata("authorization", authorization);
  return context;
}

TEST(AdminSecretsTest, NoTokenOrKeyAppearsInAnythingTheDaemonWrites) {
  const TestCerts certs;
  ASSERT_TRUE(certs.ok()) << certs.error();
  EchoServer backend;
  TempDir dir;
  writeFile(dir.file("token"), std::string(kAdminToken) + "\n");
  writeFile(dir.file("read-only-token"), std::string(kReadOnlyToken) + "\n");
  const std::string stateFile = dir.file("state.json");
  const std::string accessLog = dir.file("access.log");
  writeFile(dir.file("evgate.yaml"),
            "workers: 1\n"
            "log: { format: text, level: debug }\n"
            "access_log: { mode: file, path: " +
                accessLog +
                " }\n"
                "state_file: " +
                stateFile +
                "\n"
                "admin:\n"
                "  address: 127.0.0.1:0\n"
                "  token_file: " +
                dir.file("token") +
                "\n"
                "  read_only_token_file: " +
                dir.file("read-only-token") +
                "\n"
                "  tls: { cert_file: " +
                certs.serverCert() + ", key_file: " + certs.serverKey() +
                ", client_ca_file: " + certs.caCert() +
                " }\n"
                "metrics: { address: 127.0.0.1:0 }\n"
                "clusters:\n"
                "  - { name: backends, endpoints: [ \"" +
                backend.address() + "\" ] }\n");

  Process daemon({EVGATE_BINARY, "--config", dir.file("evgate.yaml")});
  ASSERT_TRUE(daemon.started()) << daemon.error();
  const auto adminLine =
      daemon.waitForOutput(std::regex(R"(admin API listening on (127\.0\.0\.1:\d+))"), kStartLimit,
                           Process::Stream::kStderr);
  ASSERT_TRUE(adminLine) << daemon.err();
  const auto metricsLine =
      daemon.waitForOutput(std::regex(R"(metrics listening on 127\.0\.0\.1:(\d+))"), kStartLimit,
                           Process::Stream::kStderr);
  ASSERT_TRUE(metricsLine) << daemon.err();
  const std::string adminAddress = (*adminLine)[1];

  const auto stub = v1::Admin::NewStub(tlsChannel(adminAddress, certs, true));
  v1::CreateListenerRequest create;
  create.mutable_listener()->set_name("api");
  create.mutable_listener()->set_bind("127.0.0.1:0");
  create.mutable_listener()->set_cluster("backends");
  v1::Listener listener;
  ASSERT_TRUE(stub->CreateListener(withAuthorization(std::string("Bearer ") + kAdminToken).get(),
                                   create, &listener)
                  .ok());
  {
    const Fd client(connectTo(portOf(listener.bound_address())));
    ASSERT_TRUE(echoes(client.get(), "a flow for the access log"));
  }
  create.mutable_listener()->set_name("other");
  v1::Listener ignored;
  const std::vector<std::pair<std::string, grpc::StatusCode>> refused = {
      {std::string("Bearer ") + kGuess, grpc::StatusCode::UNAUTHENTICATED},
      {std::string("Basic ") + kAdminToken, grpc::StatusCode::UNAUTHENTICATED},
      {kAdminToken, grpc::StatusCode::UNAUTHENTICATED},
      {std::string("Bearer ") + kReadOnlyToken, grpc::StatusCode::PERMISSION_DENIED},
  };
  for (const auto& [authorization, code] : refused) {
    const grpc::Status status =
        stub->CreateListener(withAuthorization(authorization).get(), create, &ignored);
    EXPECT_EQ(status.error_code(), code) << authorization;
    EXPECT_EQ(status.error_message().find(kAdminToken), std::string::npos);
    EXPECT_EQ(status.error_message().find(kGuess), std::string::npos);
  }
  v1::Status status;
  EXPECT_TRUE(
      stub->GetStatus(withAuthorization(std::string("bearer ") + kReadOnlyToken).get(), {}, &status)
          .ok());
  // A client without a certificate fails in the handshake, token or not.
  const auto noCert = v1::Admin::NewStub(tlsChannel(adminAddress, certs, false));
  EXPECT_EQ(
      noCert->GetStatus(withAuthorization(std::string("Bearer ") + kAdminToken).get(), {}, &status)
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);

  const HttpResponse metrics =
      httpGet(static_cast<uint16_t>(std::stoi((*metricsLine)[1])), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.error;
  EXPECT_NE(metrics.body.find(
                R"(evgate_admin_requests_total{method="CreateListener",code="UNAUTHENTICATED"} 3)"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(
      metrics.body.find(
          R"(evgate_admin_requests_total{method="CreateListener",code="PERMISSION_DENIED"} 1)"),
      std::string::npos)
      << metrics.body;

  daemon.signal(SIGTERM);
  const auto exit = daemon.wait(10s);
  ASSERT_TRUE(exit.has_value()) << daemon.err();
  EXPECT_EQ(exit->code(), 0) << daemon.err();

  const std::vector<std::pair<std::string, std::string>> written = {
      {"stdout", daemon.out()},
      {"stderr", daemon.err()},
      {"access log", readTextFile(accessLog)},
      {"state file", readTextFile(stateFile)},
      {"metrics page", metrics.body},
  };
  // What the test made happen was written, so the search below looks at real output.
  EXPECT_NE(daemon.err().find("audit: who=admin-token+cert:"), std::string::npos) << daemon.err();
  EXPECT_NE(daemon.err().find("audit: who=unauthenticated method=CreateListener target=listener/"
                              "other result=UNAUTHENTICATED: invalid bearer token"),
            std::string::npos)
      << daemon.err();
  EXPECT_NE(daemon.err().find("result=PERMISSION_DENIED: read-only-token+cert:"), std::string::npos)
      << daemon.err();
  // The refused handshake shows only in gRPC's own error line (docs/security.md, known limits),
  // which comes through evgate's log, in its format (admin/grpc_log.h).
  EXPECT_TRUE(std::regex_search(
      daemon.err(), std::regex(R"((^|\n)\d{4}-\d\d-\d\dT[0-9:.]+Z error grpc: [a-z_]+\.cc:\d+: )"
                               R"([^\n]*Handshake failed)")))
      << daemon.err();
  EXPECT_NE(readTextFile(accessLog).find("\"bytes_in\":25"), std::string::npos);
  EXPECT_NE(readTextFile(stateFile).find("\"api\""), std::string::npos);

  std::vector<std::string> secrets = {kAdminToken, kReadOnlyToken, kGuess,
                                      std::string(kAdminToken).substr(0, 18)};
  for (const std::string& key : {certs.serverKey(), certs.clientKey()}) {
    const std::vector<std::string> lines = keyLines(key);
    ASSERT_FALSE(lines.empty()) << key;
    secrets.insert(secrets.end(), lines.begin(), lines.end());
  }
  for (const auto& [what, text] : written) {
    for (const std::string& secret : secrets) {
      EXPECT_EQ(text.find(secret), std::string::npos) << what << " holds \"" << secret << "\"";
    }
  }

  // The state file names internal addresses: its owner alone may read it.
  struct stat info {};
  ASSERT_EQ(::stat(stateFile.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
}

}  // namespace
}  // namespace evgate::test
