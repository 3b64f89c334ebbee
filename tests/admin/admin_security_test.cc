// Who may call the real admin service (AdminRuntime in process, real sockets on 127.0.0.1), row
// by row of docs/security.md's matrix: for each way a caller presents itself (nothing, tokens
// right, wrong and malformed, mutual TLS with a good, missing, foreign or expired certificate,
// certificate and token together), what a read, a change, a Watch stream, a health check and
// server reflection answer; and that every refusal is counted in evgate_admin_requests_total.
// tests/admin/auth_test.cc checks the Authenticator itself against a stand-in service.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tests/admin/admin_test_util.h"
#include "tests/admin/test_certs.h"
#include "tests/integration/grpc_probe.h"

namespace evgate::admin::testing {
namespace {

constexpr const char* kAdminToken = "matrix-admin-token-0123456789";
constexpr const char* kReadOnlyToken = "matrix-reader-token-9876543210";

// What one caller gets from each kind of call.
struct Answers {
  grpc::StatusCode read;    // GetStatus
  grpc::StatusCode mutate;  // CreateCluster with validate_only: authorized as a change
  // Watch: OK means the stream opened and stayed open until the client's short deadline
  // (DEADLINE_EXCEEDED after a successful read on the same channel); otherwise its status.
  grpc::StatusCode watch;
  int health;       // grpc.health.v1 Check(""): 1 SERVING, -1 the call failed
  bool reflection;  // server reflection lists evgate.admin.v1.Admin
};

std::ostream& operator<<(std::ostream& out, const Answers& a) {
  return out << "{read " << a.read << ", mutate " << a.mutate << ", watch " << a.watch
             << ", health " << a.health << ", reflection " << a.reflection << "}";
}

bool operator==(const Answers& a, const Answers& b) {
  return a.read == b.read && a.mutate == b.mutate && a.watch == b.watch && a.health == b.health &&
         a.reflection == b.reflection;
}

constexpr grpc::StatusCode kOk = grpc::StatusCode::OK;
constexpr grpc::StatusCode kUnauthenticated = grpc::StatusCode::UNAUTHENTICATED;
constexpr grpc::StatusCode kDenied = grpc::StatusCode::PERMISSION_DENIED;
constexpr grpc::StatusCode kUnavailable = grpc::StatusCode::UNAVAILABLE;

// Everything answers.
constexpr Answers kEverything{kOk, kOk, kOk, 1, true};
// Reads only.
constexpr Answers kReadsOnly{kOk, kDenied, kOk, 1, true};
// The Admin service refuses the caller; health and reflection still answer (they carry no
// credentials check: docs/security.md says why).
constexpr Answers kRefused{kUnauthenticated, kUnauthenticated, kUnauthenticated, 1, true};
// The TLS handshake fails: nothing at all answers.
constexpr Answers kNoConnection{kUnavailable, kUnavailable, kUnavailable, -1, false};

// A channel of its own (no subchannel shared with other channels to the same address, so one
// caller's failed handshake cannot affect the next).
std::shared_ptr<grpc::Channel> channelTo(const std::string& address,
                                         std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

std::unique_ptr<grpc::ClientContext> withAuthorization(
    const std::vector<std::string>& authorization,
    std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  auto context = callContext(limit);
  for (const std::string& value : authorization) context->AddMetadata("authorization", value);
  return context;
}

// Makes each kind of call with `authorization` (each entry one "authorization" metadata value).
Answers probe(const std::shared_ptr<grpc::Channel>& channel,
              const std::vector<std::string>& authorization) {
  const auto stub = v1::Admin::NewStub(channel);
  Answers answers{};
  v1::Status status;
  answers.read = stub->GetStatus(withAuthorization(authorization).get(), {}, &status).error_code();

  v1::CreateClusterRequest create;
  create.set_validate_only(true);
  create.mutable_cluster()->set_name("probe");
  create.mutable_cluster()->add_endpoints()->set_address("127.0.0.1:9");
  v1::Cluster cluster;
  answers.mutate =
      stub->CreateCluster(withAuthorization(authorization).get(), create, &cluster).error_code();

  // A refused stream ends at once; an accepted one waits for events until the deadline.
  const auto watchContext = withAuthorization(authorization, std::chrono::milliseconds(500));
  const auto reader = stub->Watch(watchContext.get(), v1::WatchRequest());
  v1::WatchEvent event;
  while (reader->Read(&event)) {
  }
  const grpc::StatusCode watched = reader->Finish().error_code();
  answers.watch =
      watched == grpc::StatusCode::DEADLINE_EXCEEDED && answers.read == kOk ? kOk : watched;

  answers.health = test::healthStatus(channel, "");
  answers.reflection =
      test::reflectionListServices(channel).find("evgate.admin.v1.Admin") != std::string::npos;
  return answers;
}

Answers probe(const std::shared_ptr<grpc::Channel>& channel, const std::string& authorization) {
  return probe(channel, authorization.empty() ? std::vector<std::string>{}
                                              : std::vector<std::string>{authorization});
}

std::string bearer(const std::string& token) { return "Bearer " + token; }

// evgate_admin_requests_total{method, code} as the metrics endpoint would show it now.
double requestsCounted(AdminHarness& admin, const std::string& method, const std::string& code) {
  double value = 0;
  admin.onControlLoop([&](AdminRuntime& runtime) {
    for (const prometheus::MetricFamily& family : runtime.metrics().Collect()) {
      if (family.name != "evgate_admin_requests_total") continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        bool matches = true;
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          if (label.name == "method") matches = matches && label.value == method;
          if (label.name == "code") matches = matches && label.value == code;
        }
        if (matches) value = metric.counter.value;
      }
    }
  });
  return value;
}

class AdminSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TestCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(certs_->ok()) << certs_->error();
    ASSERT_TRUE(writeTextFile(dir_.file("token"), std::string(kAdminToken) + "\n"));
    ASSERT_TRUE(writeTextFile(dir_.file("read-only-token"), std::string(kReadOnlyToken) + "\n"));
  }

  // The gateway with `admin` as the keys of its admin map (besides the address).
  void start(const std::string& admin) {
    admin_ = std::make_unique<AdminHarness>(
        "workers: 1\naccess_log: { mode: off }\nlog: { level: warn }\n"
        "admin: { address: 127.0.0.1:0" +
        (admin.empty() ? "" : ", " + admin) + " }\n");
    ASSERT_TRUE(admin_->ok()) << admin_->error();
  }

  std::string tokenKeys() const {
    return "token_file: " + dir_.file("token") +
           ", read_only_token_file: " + dir_.file("read-only-token");
  }
  static std::string tlsKeys(bool mutual) {
    std::string keys =
        "tls: { cert_file: " + certs_->serverCert() + ", key_file: " + certs_->serverKey();
    if (mutual) keys += ", client_ca_file: " + certs_->caCert();
    return keys + " }";
  }

  std::shared_ptr<grpc::Channel> plaintext() const {
    return channelTo(admin_->address(), grpc::InsecureChannelCredentials());
  }
  std::shared_ptr<grpc::Channel> tls(const std::string& certFile = "",
                                     const std::string& keyFile = "") const {
    return channelTo(admin_->address(), tlsChannelCredentials(certs_->caCert(), certFile, keyFile));
  }
  std::shared_ptr<grpc::Channel> withClientCert() const {
    return tls(certs_->clientCert(), certs_->clientKey());
  }

  static TestCerts* certs_;
  TempDir dir_;
  std::unique_ptr<AdminHarness> admin_;
};

TestCerts* AdminSecurityTest::certs_ = nullptr;

TEST_F(AdminSecurityTest, NothingConfiguredEveryLocalCallerIsAdmin) {
  ASSERT_NO_FATAL_FAILURE(start(""));
  EXPECT_EQ(probe(plaintext(), ""), kEverything);
  // A token nobody asked for changes nothing.
  EXPECT_EQ(probe(plaintext(), bearer("anything")), kEverything);
}

TEST_F(AdminSecurityTest, TokensDecideTheRoleOfEveryCall) {
  ASSERT_NO_FATAL_FAILURE(start(tokenKeys()));
  const auto channel = plaintext();
  EXPECT_EQ(probe(channel, bearer(kAdminToken)), kEverything);
  EXPECT_EQ(probe(channel, bearer(kReadOnlyToken)), kReadsOnly);
  EXPECT_EQ(probe(channel, ""), kRefused);
  // The auth scheme is case-insensitive (RFC 7235 section 2.1); the token is not.
  EXPECT_EQ(probe(channel, std::string("bearer ") + kAdminToken), kEverything);
  EXPECT_EQ(probe(channel, std::string("BEARER ") + kReadOnlyToken), kReadsOnly);
}

TEST_F(AdminSecurityTest, EveryWrongOrMalformedTokenIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start(tokenKeys()));
  const auto channel = plaintext();
  const std::string admin = kAdminToken;
  const std::string upper = [&] {
    std::string s = admin;
    for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
    return s;
  }();
  const std::string refused[] = {
      bearer("wrong"),
      bearer(admin.substr(0, admin.size() - 1)),  // a prefix
      bearer(admin + "0"),                        // longer
      bearer(upper),                              // the token in another case
      bearer(admin + kReadOnlyToken),             // both at once
      "Bearer  " + admin,                         // two spaces: the token would start with one
      "Bearer",
      "Bearer ",
      "Basic " + admin,
      "Token " + admin,
      admin,  // no scheme
  };
  for (const std::string& authorization : refused) {
    EXPECT_EQ(probe(channel, authorization), kRefused) << authorization;
  }
  // Two authorization entries are refused even when one of them is right.
  EXPECT_EQ(probe(channel, std::vector<std::string>{bearer(admin), bearer("wrong")}), kRefused);
  EXPECT_EQ(probe(channel, std::vector<std::string>{bearer(admin), bearer(admin)}), kRefused);
}

TEST_F(AdminSecurityTest, MutualTlsAdmitsOnlyAValidCertificateOfTheConfiguredCa) {
  ASSERT_NO_FATAL_FAILURE(start(tlsKeys(true)));
  EXPECT_EQ(probe(withClientCert(), ""), kEverything);
  // Every other caller fails in the handshake: no call, health check or reflection reaches
  // the server.
  EXPECT_EQ(probe(tls(), ""), kNoConnection) << "no client certificate";
  EXPECT_EQ(probe(tls(certs_->otherClientCert(), certs_->otherClientKey()), ""), kNoConnection)
      << "a certificate of another CA";
  EXPECT_EQ(probe(tls(certs_->expiredClientCert(), certs_->expiredClientKey()), ""), kNoConnection)
      << "an expired certificate";
  EXPECT_EQ(probe(plaintext(), ""), kNoConnection) << "no TLS";
  // A token does not stand in for the certificate.
  EXPECT_EQ(probe(tls(), bearer("anything")), kNoConnection);
}

TEST_F(AdminSecurityTest, MutualTlsWithTokensNeedsBothAndTheTokenDecidesTheRole) {
  ASSERT_NO_FATAL_FAILURE(start(tokenKeys() + ", " + tlsKeys(true)));
  EXPECT_EQ(probe(withClientCert(), bearer(kAdminToken)), kEverything);
  EXPECT_EQ(probe(withClientCert(), bearer(kReadOnlyToken)), kReadsOnly);
  EXPECT_EQ(probe(withClientCert(), ""), kRefused);
  EXPECT_EQ(probe(withClientCert(), bearer("wrong")), kRefused);
  EXPECT_EQ(probe(tls(), bearer(kAdminToken)), kNoConnection);
  EXPECT_EQ(
      probe(tls(certs_->expiredClientCert(), certs_->expiredClientKey()), bearer(kAdminToken)),
      kNoConnection);
}

TEST_F(AdminSecurityTest, TlsWithoutAClientCaEncryptsAndTheTokenDecides) {
  ASSERT_NO_FATAL_FAILURE(start(tokenKeys() + ", " + tlsKeys(false)));
  EXPECT_EQ(probe(tls(), bearer(kAdminToken)), kEverything);
  EXPECT_EQ(probe(tls(), bearer(kReadOnlyToken)), kReadsOnly);
  EXPECT_EQ(probe(tls(), ""), kRefused);
  EXPECT_EQ(probe(plaintext(), bearer(kAdminToken)), kNoConnection);
}

TEST_F(AdminSecurityTest, EveryRefusedCallIsCountedByMethodAndCode) {
  ASSERT_NO_FATAL_FAILURE(start(tokenKeys()));
  const auto channel = plaintext();
  const auto count = [&](const char* method, const char* code) {
    return requestsCounted(*admin_, method, code);
  };
  EXPECT_EQ(probe(channel, bearer("wrong")), kRefused);
  EXPECT_EQ(probe(channel, "Basic xyz"), kRefused);
  EXPECT_EQ(probe(channel, bearer(kReadOnlyToken)), kReadsOnly);
  EXPECT_EQ(probe(channel, bearer(kAdminToken)), kEverything);

  EXPECT_EQ(count("GetStatus", "UNAUTHENTICATED"), 2);
  EXPECT_EQ(count("CreateCluster", "UNAUTHENTICATED"), 2);
  EXPECT_EQ(count("Watch", "UNAUTHENTICATED"), 2);
  EXPECT_EQ(count("CreateCluster", "PERMISSION_DENIED"), 1);
  EXPECT_EQ(count("GetStatus", "OK"), 2);
  EXPECT_EQ(count("CreateCluster", "OK"), 1);
  // Health checks and reflection are not Admin calls: they are not counted, whatever they say.
  EXPECT_EQ(count("Check", "OK"), 0);
}

TEST_F(AdminSecurityTest, AFailedHandshakeReachesNoHandlerAndIsNotCounted) {
  ASSERT_NO_FATAL_FAILURE(start(tlsKeys(true)));
  EXPECT_EQ(probe(tls(), ""), kNoConnection);
  EXPECT_EQ(probe(tls(certs_->expiredClientCert(), certs_->expiredClientKey()), ""), kNoConnection);
  // No RPC ever started: evgate_admin_requests_total has nothing (docs/security.md, "Known
  // limits": a refused handshake shows in gRPC's own log line on stderr, not in a metric).
  for (const char* code : {"UNAUTHENTICATED", "UNAVAILABLE", "OK"}) {
    EXPECT_EQ(requestsCounted(*admin_, "GetStatus", code), 0) << code;
  }
  EXPECT_EQ(probe(withClientCert(), ""), kEverything);
  EXPECT_EQ(requestsCounted(*admin_, "GetStatus", "OK"), 1);
}

}  // namespace
}  // namespace evgate::admin::testing
