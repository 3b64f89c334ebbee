#include "admin/auth.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "admin/audit.h"
#include "evgate/admin/v1/admin.grpc.pb.h"
#include "gateway/log.h"
#include "tests/admin/test_certs.h"

namespace evgate::admin {
namespace {

using testing::TempDir;
using testing::TestCerts;
using testing::tlsChannelCredentials;
using testing::writeTextFile;

constexpr const char* kAdminToken = "s3cret-admin-token";
constexpr const char* kReadOnlyToken = "r3ad-only-token";

// A stand-in for the real service: GetStatus reads, CreateListener changes state. Each answers
// with the caller's identity (in Status.version / Listener.name) so the client can check it,
// and CreateListener writes the audit line as the real service does.
class TestAdminService final : public v1::Admin::Service {
 public:
  explicit TestAdminService(const Authenticator& authenticator) : authenticator_(authenticator) {}

  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest*,
                         v1::Status* response) override {
    Caller caller;
    const grpc::Status status = check(*context, false, caller);
    if (status.ok()) response->set_version(caller.identity);
    return status;
  }

  grpc::Status CreateListener(grpc::ServerContext* context,
                              const v1::CreateListenerRequest* request,
                              v1::Listener* response) override {
    Caller caller;
    const grpc::Status status = check(*context, true, caller);
    if (status.ok()) response->set_name(caller.identity);
    logAudit(caller, "CreateListener", "listener/" + request->listener().name(), status);
    return status;
  }

 private:
  grpc::Status check(const grpc::ServerContext& context, bool mutating, Caller& caller) const {
    const grpc::Status status = authenticator_.authenticate(context, caller);
    return status.ok() ? Authenticator::authorize(caller, mutating) : status;
  }

  const Authenticator& authenticator_;
};

// A real gRPC server on 127.0.0.1 (kernel-chosen port) with the credentials `config` asks for.
class TestServer {
 public:
  explicit TestServer(const gateway::AdminConfig& config) {
    std::string error;
    authenticator_ = Authenticator::create(config, error);
    if (!authenticator_) {
      ADD_FAILURE() << "Authenticator::create: " << error;
      return;
    }
    service_ = std::make_unique<TestAdminService>(*authenticator_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", authenticator_->serverCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) ADD_FAILURE() << "the test gRPC server did not start";
  }
  ~TestServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  bool ok() const { return server_ != nullptr && port_ != 0; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<TestAdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A channel of its own (no subchannel shared with other channels to the same address, so one
// test's failed handshake cannot affect another's).
std::unique_ptr<v1::Admin::Stub> stub(const std::string& target,
                                      std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::Admin::NewStub(grpc::CreateCustomChannel(target, credentials, args));
}

std::unique_ptr<v1::Admin::Stub> insecureStub(const TestServer& server) {
  return stub(server.target(), grpc::InsecureChannelCredentials());
}

std::unique_ptr<v1::Admin::Stub> tlsStub(const TestServer& server, const std::string& caFile,
                                         const std::string& certFile = "",
                                         const std::string& keyFile = "") {
  return stub(server.target(), tlsChannelCredentials(caFile, certFile, keyFile));
}

// A call's outcome and, on success, the identity the server saw.
struct Outcome {
  grpc::StatusCode code;
  std::string message;
  std::string identity;
};

void prepare(grpc::ClientContext& context, const std::string& authorization) {
  // Short, so a test that goes wrong fails instead of hanging.
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
}

Outcome getStatus(v1::Admin::Stub& stub, const std::string& authorization = "") {
  grpc::ClientContext context;
  prepare(context, authorization);
  v1::Status response;
  const grpc::Status status = stub.GetStatus(&context, v1::GetStatusRequest(), &response);
  return {status.error_code(), status.error_message(), response.version()};
}

Outcome createListener(v1::Admin::Stub& stub, const std::string& authorization = "") {
  grpc::ClientContext context;
  prepare(context, authorization);
  v1::CreateListenerRequest request;
  request.mutable_listener()->set_name("web");
  v1::Listener response;
  const grpc::Status status = stub.CreateListener(&context, request, &response);
  return {status.error_code(), status.error_message(), response.name()};
}

std::string bearer(const std::string& token) { return "Bearer " + token; }

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TestCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(certs_->ok()) << certs_->error(); }

  // Token files in the test's own directory.
  gateway::AdminConfig withTokens() {
    gateway::AdminConfig config;
    config.tokenFile = dir_.file("token");
    config.readOnlyTokenFile = dir_.file("read-only-token");
    EXPECT_TRUE(writeTextFile(config.tokenFile, std::string(kAdminToken) + "\n"));
    EXPECT_TRUE(writeTextFile(config.readOnlyTokenFile, std::string(kReadOnlyToken) + "\r\n"));
    return config;
  }
  static gateway::AdminConfig withTls(gateway::AdminConfig config = {}) {
    config.tlsCertFile = certs_->serverCert();
    config.tlsKeyFile = certs_->serverKey();
    return config;
  }
  static gateway::AdminConfig withMutualTls(gateway::AdminConfig config = {}) {
    config = withTls(config);
    config.tlsClientCaFile = certs_->caCert();
    return config;
  }
  static std::string createError(const gateway::AdminConfig& config) {
    std::string error;
    const std::unique_ptr<Authenticator> authenticator = Authenticator::create(config, error);
    EXPECT_EQ(authenticator, nullptr);
    return error;
  }

  static TestCerts* certs_;
  TempDir dir_;
};

TestCerts* AuthTest::certs_ = nullptr;

TEST_F(AuthTest, NothingConfiguredMakesEveryCallerLocalAdmin) {
  const TestServer server(gateway::AdminConfig{});
  ASSERT_TRUE(server.ok());
  const auto client = insecureStub(server);
  const Outcome read = getStatus(*client);
  EXPECT_EQ(read.code, grpc::StatusCode::OK) << read.message;
  EXPECT_EQ(read.identity, "local");
  // A token nobody asked for is ignored.
  const Outcome write = createListener(*client, bearer("anything"));
  EXPECT_EQ(write.code, grpc::StatusCode::OK) << write.message;
  EXPECT_EQ(write.identity, "local");
}

TEST_F(AuthTest, MissingOrWrongTokenIsUnauthenticatedWithoutEchoingIt) {
  const TestServer server(withTokens());
  ASSERT_TRUE(server.ok());
  const auto client = insecureStub(server);

  const Outcome none = getStatus(*client);
  EXPECT_EQ(none.code, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(none.message,
            R"(missing credentials: expected metadata "authorization: Bearer <token>")");

  const std::string kWrong[] = {
      "wrong-token-value",
      std::string(kAdminToken).substr(0, 10),  // a prefix
      std::string(kAdminToken) + "x",          // longer
      std::string(kAdminToken) + std::string(kReadOnlyToken),
  };
  for (const std::string& wrong : kWrong) {
    const Outcome outcome = getStatus(*client, bearer(wrong));
    EXPECT_EQ(outcome.code, grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_EQ(outcome.message, "invalid bearer token");
  }
  for (const std::string& malformed :
       {std::string("Basic ") + kAdminToken, std::string(kAdminToken), std::string("Bearer ")}) {
    const Outcome outcome = getStatus(*client, malformed);
    EXPECT_EQ(outcome.code, grpc::StatusCode::UNAUTHENTICATED) << malformed;
    EXPECT_EQ(outcome.message,
              R"(malformed credentials: expected "authorization: Bearer <token>")");
  }
}

TEST_F(AuthTest, TokensDecideTheRole) {
  const TestServer server(withTokens());
  ASSERT_TRUE(server.ok());
  const auto client = insecureStub(server);

  const Outcome readerReads = getStatus(*client, bearer(kReadOnlyToken));
  EXPECT_EQ(readerReads.code, grpc::StatusCode::OK) << readerReads.message;
  EXPECT_EQ(readerReads.identity, "read-only-token");
  const Outcome readerWrites = createListener(*client, bearer(kReadOnlyToken));
  EXPECT_EQ(readerWrites.code, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(readerWrites.message,
            "read-only-token has role reader, which may only read (GetStatus, Get*, List*, "
            "Watch); this call changes the gateway");

  const Outcome adminReads = getStatus(*client, bearer(kAdminToken));
  EXPECT_EQ(adminReads.code, grpc::StatusCode::OK) << adminReads.message;
  EXPECT_EQ(adminReads.identity, "admin-token");
  const Outcome adminWrites = createListener(*client, bearer(kAdminToken));
  EXPECT_EQ(adminWrites.code, grpc::StatusCode::OK) << adminWrites.message;
  EXPECT_EQ(adminWrites.identity, "admin-token");
  // The scheme is case-insensitive.
  EXPECT_EQ(createListener(*client, std::string("bearer ") + kAdminToken).code,
            grpc::StatusCode::OK);
}

TEST_F(AuthTest, AuditLinesNameTheCallerButNeverATokenOrWhatWasSent) {
  const TestServer server(withTokens());
  ASSERT_TRUE(server.ok());
  const auto client = insecureStub(server);
  gateway::configureLog(gateway::LogFormat::kText, gateway::LogLevel::kInfo);
  ::testing::internal::CaptureStderr();
  const Outcome admin = createListener(*client, bearer(kAdminToken));
  const Outcome reader = createListener(*client, bearer(kReadOnlyToken));
  const Outcome stranger = createListener(*client, bearer("guessed-token"));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(admin.code, grpc::StatusCode::OK);
  EXPECT_EQ(reader.code, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stranger.code, grpc::StatusCode::UNAUTHENTICATED);

  EXPECT_NE(log.find("audit: who=admin-token method=CreateListener target=listener/web "
                     "result=OK\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("audit: who=read-only-token method=CreateListener target=listener/web "
                     "result=PERMISSION_DENIED: read-only-token has role reader"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("audit: who=unauthenticated method=CreateListener target=listener/web "
                     "result=UNAUTHENTICATED: invalid bearer token\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find(kAdminToken), std::string::npos) << log;
  EXPECT_EQ(log.find(kReadOnlyToken), std::string::npos) << log;
  EXPECT_EQ(log.find("guessed-token"), std::string::npos) << log;
}

TEST_F(AuthTest, TlsServerNeedsAClientThatTrustsItsCa) {
  const TestServer server(withTls());
  ASSERT_TRUE(server.ok());
  const Outcome trusting = getStatus(*tlsStub(server, certs_->caCert()));
  EXPECT_EQ(trusting.code, grpc::StatusCode::OK) << trusting.message;
  EXPECT_EQ(trusting.identity, "local");  // TLS alone encrypts; it names nobody
  EXPECT_EQ(getStatus(*tlsStub(server, certs_->otherCaCert())).code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(getStatus(*insecureStub(server)).code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AuthTest, MutualTlsAdmitsOnlyValidCertificatesOfTheConfiguredCa) {
  const TestServer server(withMutualTls());
  ASSERT_TRUE(server.ok());

  const auto good = tlsStub(server, certs_->caCert(), certs_->clientCert(), certs_->clientKey());
  const Outcome read = getStatus(*good);
  EXPECT_EQ(read.code, grpc::StatusCode::OK) << read.message;
  EXPECT_EQ(read.identity, std::string("cert:") + TestCerts::kClientSubject);
  const Outcome write = createListener(*good);
  EXPECT_EQ(write.code, grpc::StatusCode::OK) << write.message;

  const Outcome noCert = getStatus(*tlsStub(server, certs_->caCert()));
  EXPECT_EQ(noCert.code, grpc::StatusCode::UNAVAILABLE) << noCert.message;
  const Outcome otherCa = getStatus(
      *tlsStub(server, certs_->caCert(), certs_->otherClientCert(), certs_->otherClientKey()));
  EXPECT_EQ(otherCa.code, grpc::StatusCode::UNAVAILABLE) << otherCa.message;
  const Outcome expired = getStatus(
      *tlsStub(server, certs_->caCert(), certs_->expiredClientCert(), certs_->expiredClientKey()));
  EXPECT_EQ(expired.code, grpc::StatusCode::UNAVAILABLE) << expired.message;
}

TEST_F(AuthTest, MutualTlsWithTokensNeedsBothAndTheTokenDecidesTheRole) {
  const TestServer server(withMutualTls(withTokens()));
  ASSERT_TRUE(server.ok());
  const auto good = tlsStub(server, certs_->caCert(), certs_->clientCert(), certs_->clientKey());

  const Outcome admin = createListener(*good, bearer(kAdminToken));
  EXPECT_EQ(admin.code, grpc::StatusCode::OK) << admin.message;
  EXPECT_EQ(admin.identity, std::string("admin-token+cert:") + TestCerts::kClientSubject);
  EXPECT_EQ(getStatus(*good).code, grpc::StatusCode::UNAUTHENTICATED);
  const Outcome reader = getStatus(*good, bearer(kReadOnlyToken));
  EXPECT_EQ(reader.code, grpc::StatusCode::OK) << reader.message;
  EXPECT_EQ(reader.identity, std::string("read-only-token+cert:") + TestCerts::kClientSubject);
  EXPECT_EQ(createListener(*good, bearer(kReadOnlyToken)).code,
            grpc::StatusCode::PERMISSION_DENIED);

  const Outcome tokenWithoutCert =
      createListener(*tlsStub(server, certs_->caCert()), bearer(kAdminToken));
  EXPECT_EQ(tokenWithoutCert.code, grpc::StatusCode::UNAVAILABLE) << tokenWithoutCert.message;
}

TEST_F(AuthTest, AuthorizeLetsReadersReadOnly) {
  const Caller reader{Role::kReader, "read-only-token"};
  const Caller admin{Role::kAdmin, "admin-token"};
  EXPECT_TRUE(Authenticator::authorize(reader, false).ok());
  EXPECT_TRUE(Authenticator::authorize(admin, false).ok());
  EXPECT_TRUE(Authenticator::authorize(admin, true).ok());
  const grpc::Status denied = Authenticator::authorize(reader, true);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(denied.error_message().find("role reader"), std::string::npos);
  EXPECT_STREQ(toString(Role::kAdmin), "admin");
  EXPECT_STREQ(toString(Role::kReader), "reader");
}

TEST_F(AuthTest, FactoryReportsUnusableTokenFiles) {
  gateway::AdminConfig config = withTokens();
  std::string error;
  EXPECT_NE(Authenticator::create(config, error), nullptr) << error;

  gateway::AdminConfig missing = config;
  missing.tokenFile = dir_.file("absent");
  EXPECT_EQ(createError(missing),
            "admin.token_file: cannot open " + missing.tokenFile + ": No such file or directory");

  gateway::AdminConfig directory = config;
  directory.readOnlyTokenFile = dir_.path();
  EXPECT_EQ(createError(directory),
            "admin.read_only_token_file: cannot read " + dir_.path() + ": Is a directory");

  for (const std::string blank : {"", "\n", "  \t\r\n"}) {
    ASSERT_TRUE(writeTextFile(dir_.file("blank"), blank));
    gateway::AdminConfig empty = config;
    empty.tokenFile = dir_.file("blank");
    EXPECT_EQ(createError(empty), "admin.token_file: " + empty.tokenFile + " is empty");
  }

  ASSERT_TRUE(writeTextFile(dir_.file("spaced"), "two words\n"));
  gateway::AdminConfig spaced = config;
  spaced.tokenFile = dir_.file("spaced");
  const std::string spacedError = createError(spaced);
  EXPECT_EQ(spacedError, "admin.token_file: " + spaced.tokenFile +
                             " holds characters a bearer token cannot have (use printable ASCII "
                             "without spaces)");
  EXPECT_EQ(spacedError.find("two words"), std::string::npos);

  ASSERT_TRUE(writeTextFile(dir_.file("same"), std::string(kAdminToken) + "\n\n"));
  gateway::AdminConfig same = config;
  same.readOnlyTokenFile = dir_.file("same");
  EXPECT_EQ(createError(same), "admin.read_only_token_file: " + same.readOnlyTokenFile +
                                   " holds the same token as admin.token_file " + config.tokenFile);

  gateway::AdminConfig readOnlyAlone;
  readOnlyAlone.readOnlyTokenFile = config.readOnlyTokenFile;
  EXPECT_EQ(createError(readOnlyAlone), "admin.read_only_token_file: needs admin.token_file");
}

TEST_F(AuthTest, FactoryReportsUnusableTlsFiles) {
  gateway::AdminConfig missingCert = withTls();
  missingCert.tlsCertFile = dir_.file("absent.crt");
  EXPECT_EQ(createError(missingCert), "admin.tls.cert_file: cannot open " +
                                          missingCert.tlsCertFile + ": No such file or directory");

  gateway::AdminConfig missingCa = withMutualTls();
  missingCa.tlsClientCaFile = dir_.file("absent-ca.crt");
  EXPECT_EQ(createError(missingCa), "admin.tls.client_ca_file: cannot open " +
                                        missingCa.tlsClientCaFile + ": No such file or directory");

  ASSERT_TRUE(writeTextFile(dir_.file("garbage.pem"), "not a certificate\n"));
  gateway::AdminConfig notPem = withTls();
  notPem.tlsCertFile = dir_.file("garbage.pem");
  EXPECT_EQ(createError(notPem),
            "admin.tls.cert_file: " + notPem.tlsCertFile + " holds no PEM certificate");
  gateway::AdminConfig keyNotPem = withTls();
  keyNotPem.tlsKeyFile = dir_.file("garbage.pem");
  EXPECT_EQ(createError(keyNotPem), "admin.tls.key_file: " + keyNotPem.tlsKeyFile +
                                        " holds no PEM private key (an encrypted key is not "
                                        "supported)");
  gateway::AdminConfig caNotPem = withMutualTls();
  caNotPem.tlsClientCaFile = dir_.file("garbage.pem");
  EXPECT_EQ(createError(caNotPem),
            "admin.tls.client_ca_file: " + caNotPem.tlsClientCaFile + " holds no PEM certificate");

  gateway::AdminConfig wrongKey = withTls();
  wrongKey.tlsKeyFile = certs_->clientKey();
  EXPECT_EQ(createError(wrongKey), "admin.tls.key_file: " + wrongKey.tlsKeyFile +
                                       " is not the key of the certificate in "
                                       "admin.tls.cert_file " +
                                       wrongKey.tlsCertFile);

  gateway::AdminConfig caWithoutCert;
  caWithoutCert.tlsClientCaFile = certs_->caCert();
  EXPECT_NE(createError(caWithoutCert).find("client_ca_file needs cert_file and key_file"),
            std::string::npos);
}

TEST_F(AuthTest, FactoryRefusesAnOpenNonLoopbackAddress) {
  gateway::AdminConfig open;
  open.address = "0.0.0.0:9901";
  EXPECT_EQ(createError(open),
            "admin.address: 0.0.0.0:9901 is not loopback; set admin.token_file, "
            "admin.tls.client_ca_file, or admin.insecure: true");
  open.insecure = true;
  std::string error;
  EXPECT_NE(Authenticator::create(open, error), nullptr) << error;
}

TEST_F(AuthTest, SecurityWarnings) {
  gateway::AdminConfig config;
  EXPECT_TRUE(securityWarnings(config).empty());
  config.insecure = true;
  EXPECT_TRUE(securityWarnings(config).empty());  // loopback: nothing to warn about

  config.address = "0.0.0.0:9901";
  ASSERT_EQ(securityWarnings(config).size(), 1u);
  EXPECT_EQ(securityWarnings(config)[0],
            "admin API on 0.0.0.0:9901 is not loopback and needs no credentials "
            "(admin.insecure: true): anyone who can reach it can change the gateway");

  config.insecure = false;
  config.tokenFile = "/etc/evgate/token";
  ASSERT_EQ(securityWarnings(config).size(), 1u);
  EXPECT_NE(securityWarnings(config)[0].find("clear text"), std::string::npos);
  EXPECT_TRUE(securityWarnings(withTls(config)).empty());
  config.tokenFile.clear();
  EXPECT_TRUE(securityWarnings(withMutualTls(config)).empty());
}

}  // namespace
}  // namespace evgate::admin
