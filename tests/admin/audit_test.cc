#include "admin/audit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "gateway/log.h"

namespace evgate::admin {
namespace {

const Caller kAdmin{Role::kAdmin, "admin-token"};

TEST(AuditTest, OneLinePerCallWithTheOutcome) {
  EXPECT_EQ(formatAudit(kAdmin, "CreateListener", "listener/web", grpc::Status::OK),
            "audit: who=admin-token method=CreateListener target=listener/web result=OK");
  EXPECT_EQ(formatAudit(Caller{Role::kAdmin, "cert:CN=ops,O=example"}, "DeleteCluster",
                        "cluster/backends",
                        grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                     "cluster backends is used by listener web")),
            "audit: who=cert:CN=ops,O=example method=DeleteCluster target=cluster/backends "
            "result=FAILED_PRECONDITION: cluster backends is used by listener web");
  EXPECT_EQ(formatAudit(kAdmin, "Drain", "", grpc::Status(grpc::StatusCode::CANCELLED, "")),
            "audit: who=admin-token method=Drain target=- result=CANCELLED");
}

TEST(AuditTest, CallerControlledTextCannotForgeFieldsOrLines) {
  const std::string forged = "web result=OK\n2024-01-01T00:00:00.000Z info audit: who=x";
  EXPECT_EQ(formatAudit(kAdmin, "CreateListener", "listener/" + forged,
                        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "listener.name: \"" + forged + "\" is not a name\r")),
            "audit: who=admin-token method=CreateListener "
            R"(target=listener/web\x20result=OK\x0a2024-01-01T00:00:00.000Z\x20info\x20audit:)"
            R"(\x20who=x result=INVALID_ARGUMENT: listener.name: "web result=OK\x0a2024-01-01T)"
            R"(00:00:00.000Z info audit: who=x" is not a name\x0d)");
  // Backslashes are doubled so an escape in the log always means an escaped byte; bytes outside
  // ASCII (here U+2028 LINE SEPARATOR and a NUL) are escaped too.
  EXPECT_EQ(formatAudit(Caller{Role::kReader, "a\\b"}, "Get",
                        std::string("x\xe2\x80\xa8y") + '\0' + "z", grpc::Status::OK),
            R"(audit: who=a\\b method=Get target=x\xe2\x80\xa8y\x00z result=OK)");
}

TEST(AuditTest, LongValuesAreCut) {
  const std::string line =
      formatAudit(kAdmin, "CreateListener", std::string(5000, 't'),
                  grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(5000, 'm')));
  EXPECT_EQ(line, "audit: who=admin-token method=CreateListener target=" + std::string(512, 't') +
                      "... result=INVALID_ARGUMENT: " + std::string(512, 'm') + "...");
}

TEST(AuditTest, StatusCodeNames) {
  EXPECT_STREQ(statusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_STREQ(statusCodeName(grpc::StatusCode::PERMISSION_DENIED), "PERMISSION_DENIED");
  EXPECT_STREQ(statusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_STREQ(statusCodeName(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
}

TEST(AuditTest, LogAuditWritesOneInfoLineToTheDaemonLog) {
  gateway::configureLog(gateway::LogFormat::kText, gateway::LogLevel::kInfo);
  ::testing::internal::CaptureStderr();
  logAudit(kAdmin, "PauseListener", "listener/web\nforged", grpc::Status::OK);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  const std::string expected =
      " info audit: who=admin-token method=PauseListener target=listener/web\\x0aforged "
      "result=OK\n";
  ASSERT_GE(captured.size(), expected.size());
  EXPECT_EQ(captured.substr(captured.size() - expected.size()), expected) << captured;
  EXPECT_EQ(std::count(captured.begin(), captured.end(), '\n'), 1);
}

TEST(AuditTest, AuditLinesAreKeptWhenTheLogLevelIsAboveInfo) {
  gateway::configureLog(gateway::LogFormat::kText, gateway::LogLevel::kError);
  ::testing::internal::CaptureStderr();
  gateway::logInfo("an ordinary info line");
  logAudit(kAdmin, "DeleteListener", "listener/web", grpc::Status::OK);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  gateway::configureLog(gateway::LogFormat::kText, gateway::LogLevel::kInfo);
  EXPECT_EQ(captured.find("an ordinary info line"), std::string::npos) << captured;
  EXPECT_NE(captured.find("audit: who=admin-token method=DeleteListener"), std::string::npos)
      << captured;
}

}  // namespace
}  // namespace evgate::admin
