// evgatectl as a whole: help at every level, exit codes, where the address and the token come
// from, TLS, the three output formats, the streams (watch, close-all) and the completion script.
// The real binary runs against a FakeAdmin server in this process.

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/admin/cli/evgatectl_test_util.h"
#include "tests/admin/test_certs.h"

namespace evgate::test {
namespace {

using namespace std::chrono_literals;
using evgate::admin::testing::TempDir;
using evgate::admin::testing::TestCerts;
using evgate::admin::testing::writeTextFile;

// A TCP socket bound to 127.0.0.1 with a port the kernel chose; -1 (and a test failure) if that
// fails. `port` receives the port.
int boundSocket(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    ADD_FAILURE() << "cannot bind a socket on 127.0.0.1: " << std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// "127.0.0.1:PORT" where connecting is refused: the port was bound and closed at once.
std::string refusedAddress() {
  uint16_t port = 0;
  const int fd = boundSocket(port);
  if (fd >= 0) ::close(fd);
  return "127.0.0.1:" + std::to_string(port);
}

// A socket on 127.0.0.1 that listens and never accepts: TCP connects (the kernel's backlog) but
// no HTTP/2 handshake ever comes, so a gRPC channel to it never becomes ready.
class SilentListener {
 public:
  SilentListener() : fd_(boundSocket(port_)) {
    if (fd_ >= 0 && ::listen(fd_, 16) != 0) ADD_FAILURE() << "listen: " << std::strerror(errno);
  }
  ~SilentListener() {
    if (fd_ >= 0) ::close(fd_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  uint16_t port_ = 0;
  int fd_;
};

const char* const kStatus = R"pb(
  version: "0.1.0"
  start_time { seconds: 1900000000 }
  uptime { seconds: 3725 }
  workers: 4
  listeners: 2
  clusters: 1
  scheduled_events: 3
  active_flows: 12345678901
  config_generation: 7
  draining: false
  watchers: 1
  config_file: "/etc/evgate/evgate.yaml"
)pb";

const char* const kListeners = R"pb(
  listeners {
    name: "web"
    bind: "0.0.0.0:8080"
    bound_address: "0.0.0.0:8080"
    cluster: "backends"
    active_connections: 17
    source: SOURCE_FILE
  }
  listeners {
    name: "true"
    bind: "127.0.0.1:0"
    bound_address: "127.0.0.1:40123"
    cluster: "backends"
    paused: true
    source: SOURCE_API
    allow: "10.0.0.0/8"
  }
)pb";

TEST(EvgatectlHelp, EveryLevelPrintsHelpAndExitsZero) {
  const std::vector<std::string> levels = {
      "",
      "status",
      "drain",
      "listener",
      "listener list",
      "listener get",
      "listener create",
      "listener update",
      "listener delete",
      "listener pause",
      "listener resume",
      "cluster",
      "cluster list",
      "cluster get",
      "cluster create",
      "cluster update",
      "cluster delete",
      "cluster endpoint",
      "cluster endpoint-add",
      "cluster endpoint-remove",
      "flow",
      "flow list",
      "flow close",
      "flow close-all",
      "event",
      "event list",
      "event create",
      "event delete",
      "watch",
      "completion",
      "completion bash",
  };
  for (const std::string& level : levels) {
    const std::string command = level.empty() ? "evgatectl" : "evgatectl " + level;
    const CtlResult r = runCtl(level + " --help");
    EXPECT_EQ(r.code, 0) << command << " --help\n" << r;
    EXPECT_NE(r.out.find("Usage: " + command + " "), std::string::npos) << r;
  }
}

TEST(EvgatectlUsage, ParseErrorsExitTwo) {
  const std::vector<std::string> bad = {
      "",                                                                      // no command
      "listener",                                                              // no verb
      "frobnicate",                                                            // unknown command
      "listener get",                                                          // missing name
      "-o xml status",                                                         // bad format
      "--timeout 5x status",                                                   // bad duration
      "listener create web --bind 0.0.0.0:1",                                  // missing --cluster
      "listener create web --bind 0.0.0.0:1 --cluster c --idle-timeout 10",    // needs a unit
      "listener create web --bind 0.0.0.0:1 --cluster c --buffer-limit 64KB",  // decimal unit
      "listener create web --allow 10.0.0.0/8 10.1.0.0/16 --bind 0.0.0.0:1 --cluster c",
      "cluster create c --endpoint nowhere",  // no port
      "cluster create c --endpoint 10.0.0.1:80 --lb fastest",
      "cluster endpoint c 10.0.0.1:80 sleeping",
      "flow close -1",
      "flow close 1.5",
      "watch --listener web",  // filters need --flows
  };
  for (const std::string& line : bad) {
    const CtlResult r = runCtl(line);
    EXPECT_EQ(r.code, 2) << "evgatectl " << line << "\n" << r;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r;
  }
}

TEST_F(EvgatectlTest, ErrorAnswerExitsOneWithCodeAndMessage) {
  fake_.fail("GetListener",
             grpc::Status(grpc::StatusCode::NOT_FOUND, "listener \"web\" not found"));
  const CtlResult r = ctl("listener get web");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: NOT_FOUND: listener \"web\" not found\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(EvgatectlTest, DeadlineAnsweredByAConnectedGatewayExitsOne) {
  fake_.fail("GetStatus", grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "too slow"));
  const CtlResult r = ctl("status");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: DEADLINE_EXCEEDED: too slow\n");
}

TEST(EvgatectlUnreachable, RefusedPortExitsThree) {
  const std::string address = refusedAddress();
  const CtlResult r = runCtl({"--address", address, "--timeout", "2s", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_EQ(r.err.rfind("error: cannot reach the gateway at " + address + ": ", 0), 0u) << r;
}

TEST(EvgatectlUnreachable, DeadlineBeforeTheChannelConnectsExitsThree) {
  SilentListener silent;
  const CtlResult r = runCtl({"--address", silent.address(), "--timeout", "300ms", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_EQ(r.err.rfind("error: cannot reach the gateway at " + silent.address() + ": ", 0), 0u)
      << r;
}

TEST_F(EvgatectlTest, AddressFromEnvironmentAndTheFlagWins) {
  const std::string refused = refusedAddress();
  CtlResult r = runCtl("status", {"EVGATE_ADDRESS=" + fake_.address()});
  EXPECT_EQ(r.code, 0) << r;
  r = runCtl({"--address", fake_.address(), "status"}, {"EVGATE_ADDRESS=" + refused});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(fake_.calls("GetStatus").size(), 2u);
}

TEST_F(EvgatectlTest, GlobalFlagsAfterTheCommand) {
  fake_.answer("ListListeners", textProto<v1::ListListenersResponse>(kListeners));
  const CtlResult r =
      runCtl({"listener", "list", "-o", "json", "--address", fake_.address(), "--timeout", "3s"});
  ASSERT_EQ(r.code, 0) << r;
  v1::ListListenersResponse parsed;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r;
  const auto calls = fake_.calls("ListListeners");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_LE(calls[0].deadline - calls[0].received, 3s);
}

TEST_F(EvgatectlTest, BearerTokenFromFlagAndEnvironment) {
  TempDir dir;
  ASSERT_TRUE(writeTextFile(dir.file("token"), "s3cret-token\n \t\n"));
  ASSERT_TRUE(writeTextFile(dir.file("other"), "other-token"));

  EXPECT_EQ(ctl({"--token-file", dir.file("token"), "status"}).code, 0);
  EXPECT_EQ(ctl("status", {"EVGATE_TOKEN_FILE=" + dir.file("other")}).code, 0);
  EXPECT_EQ(
      ctl({"--token-file", dir.file("token"), "status"}, {"EVGATE_TOKEN_FILE=" + dir.file("other")})
          .code,
      0);
  EXPECT_EQ(ctl("status").code, 0);

  const auto calls = fake_.calls("GetStatus");
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].authorization, "Bearer s3cret-token");
  EXPECT_EQ(calls[1].authorization, "Bearer other-token");
  EXPECT_EQ(calls[2].authorization, "Bearer s3cret-token");
  EXPECT_EQ(calls[3].authorization, std::nullopt);
}

TEST_F(EvgatectlTest, UnreadableTokenFileIsAUsageError) {
  const CtlResult r = ctl("--token-file /nonexistent/token status");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("/nonexistent/token"), std::string::npos) << r;
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(EvgatectlTest, DeadlineIsTheTimeoutFlag) {
  EXPECT_EQ(ctl("status").code, 0);
  EXPECT_EQ(ctl("--timeout 1500ms status").code, 0);
  const auto calls = fake_.calls("GetStatus");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_GT(calls[0].deadline - calls[0].received, 5s);  // the default, 10s
  EXPECT_LE(calls[0].deadline - calls[0].received, 10s);
  EXPECT_LE(calls[1].deadline - calls[1].received, 1500ms);
}

TEST(EvgatectlTls, MutualTlsWithCaAndClientCertificate) {
  TestCerts certs;
  ASSERT_TRUE(certs.ok()) << certs.error();
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = evgate::admin::testing::readTextFile(certs.caCert());
  options.pem_key_cert_pairs.push_back({evgate::admin::testing::readTextFile(certs.serverKey()),
                                        evgate::admin::testing::readTextFile(certs.serverCert())});
  FakeAdmin fake;
  ASSERT_TRUE(fake.start(grpc::SslServerCredentials(options)));

  CtlResult r = runCtl({"--address", fake.address(), "--tls-ca", certs.caCert(), "--tls-cert",
                        certs.clientCert(), "--tls-key", certs.clientKey(), "status"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(fake.calls("GetStatus").size(), 1u);

  // Plaintext, or TLS without the client certificate: no call gets through.
  r = runCtl({"--address", fake.address(), "--timeout", "2s", "status"});
  EXPECT_EQ(r.code, 3) << r;
  r = runCtl(
      {"--address", fake.address(), "--timeout", "2s", "--tls-ca", certs.caCert(), "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_EQ(fake.calls("GetStatus").size(), 1u);

  // A client certificate without a CA to check the server with is a usage error.
  r = runCtl({"--address", fake.address(), "--tls-cert", certs.clientCert(), "--tls-key",
              certs.clientKey(), "status"});
  EXPECT_EQ(r.code, 2) << r;
}

TEST_F(EvgatectlTest, StatusInEveryFormat) {
  const v1::Status status = textProto<v1::Status>(kStatus);
  fake_.answer("GetStatus", status);

  CtlResult r = ctl("status");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("version:"), std::string::npos) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nworkers: +4\\n"))) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nactive_flows: +12345678901\\n"))) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nuptime: +1h02m\\n"))) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("start_time: +2030-03-17T17:46:40Z"))) << r;

  r = ctl("-o json status");
  ASSERT_EQ(r.code, 0) << r;
  ASSERT_EQ(r.out.back(), '\n');
  EXPECT_NE(r.out.find("\"config_generation\""), std::string::npos) << "proto field names";
  EXPECT_NE(r.out.find("\"state_file\": \"\""), std::string::npos) << "every field printed";
  v1::Status parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, status))
      << parsed.DebugString();

  r = ctl("-o yaml status");
  ASSERT_EQ(r.code, 0) << r;
  const YAML::Node yaml = YAML::Load(r.out);
  EXPECT_EQ(yaml["version"].as<std::string>(), "0.1.0");
  EXPECT_EQ(yaml["workers"].as<int>(), 4);
  EXPECT_EQ(yaml["active_flows"].as<std::string>(), "12345678901");
  EXPECT_EQ(yaml["uptime"].as<std::string>(), "3725s");
  EXPECT_EQ(yaml["draining"].as<bool>(), false);
  EXPECT_EQ(r.out.find('{'), std::string::npos) << "block style\n" << r.out;
}

TEST_F(EvgatectlTest, ListenerListInEveryFormat) {
  const auto listeners = textProto<v1::ListListenersResponse>(kListeners);
  fake_.answer("ListListeners", listeners);

  CtlResult r = ctl("listener list");
  ASSERT_EQ(r.code, 0) << r;
  std::istringstream lines(r.out);
  std::string header, first, second;
  std::getline(lines, header);
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_TRUE(std::regex_match(
      header, std::regex("NAME +BIND +BOUND +CLUSTER +CONNECTIONS +PAUSED +SOURCE")))
      << r.out;
  EXPECT_TRUE(std::regex_match(
      first, std::regex("web +0\\.0\\.0\\.0:8080 +0\\.0\\.0\\.0:8080 +backends +17 +no +file")))
      << r.out;
  EXPECT_TRUE(std::regex_match(
      second, std::regex("true +127\\.0\\.0\\.1:0 +127\\.0\\.0\\.1:40123 +backends +0 +yes +api")))
      << r.out;
  // Columns line up: every row's BIND starts where the header's does.
  EXPECT_EQ(first.find("0.0.0.0"), header.find("BIND"));

  r = ctl("listener list -o json");
  ASSERT_EQ(r.code, 0) << r;
  v1::ListListenersResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, listeners));

  r = ctl("listener list -o yaml");
  ASSERT_EQ(r.code, 0) << r;
  const YAML::Node yaml = YAML::Load(r.out);
  ASSERT_EQ(yaml["listeners"].size(), 2u) << r.out;
  EXPECT_EQ(yaml["listeners"][0]["bind"].as<std::string>(), "0.0.0.0:8080");
  EXPECT_EQ(yaml["listeners"][1]["allow"][0].as<std::string>(), "10.0.0.0/8");
  EXPECT_EQ(yaml["listeners"][1]["paused"].as<bool>(), true);
  // A name YAML would read as a boolean stays a string.
  EXPECT_EQ(yaml["listeners"][1]["name"].Tag(), "!") << r.out;
  EXPECT_EQ(yaml["listeners"][1]["name"].as<std::string>(), "true");
}

TEST_F(EvgatectlTest, ListenerListFetchesEveryPage) {
  fake_.answer("ListListeners",
               textProto<v1::ListListenersResponse>(R"pb(listeners { name: "a" }
                                                         next_page_token: "p2")pb"));
  fake_.answer("ListListeners",
               textProto<v1::ListListenersResponse>(R"pb(listeners { name: "b" })pb"));
  const CtlResult r = ctl("-o json listener list");
  ASSERT_EQ(r.code, 0) << r;
  v1::ListListenersResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r;
  EXPECT_TRUE(equalsText(parsed, R"pb(listeners { name: "a" }
                                      listeners { name: "b" })pb"));
  const auto calls = fake_.calls("ListListeners");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(
      equalsText(fake_.last<v1::ListListenersRequest>("ListListeners"), R"pb(page_token: "p2")pb"));
}

TEST_F(EvgatectlTest, WatchPrintsEachEventAsItComesAndExitsWhenTheStreamEnds) {
  fake_.stream("Watch", {std::make_shared<v1::WatchEvent>(textProto<v1::WatchEvent>(R"pb(
                           sequence: 41
                           time { seconds: 1900000000 nanos: 250000000 }
                           type: WATCH_EVENT_TYPE_LISTENER_CREATED
                           listener: "web"
                           detail: "api"
                         )pb")),
                         std::make_shared<v1::WatchEvent>(textProto<v1::WatchEvent>(R"pb(
                           sequence: 42
                           type: WATCH_EVENT_TYPE_FLOW_CLOSED
                           listener: "web"
                           flow_id: 7
                           client: "10.1.2.3:5555"
                           detail: "client_eof"
                         )pb"))});
  fake_.holdWatchAfterFirst();
  Process process({EVGATECTL_BINARY, "--address", fake_.address(), "--timeout", "1s", "watch",
                   "--flows", "--listener", "web"},
                  {"EVGATE_ADDRESS=", "EVGATE_TOKEN_FILE="});
  ASSERT_TRUE(process.started()) << process.error();
  // The first line arrives while the stream is still open: it is flushed as it comes.
  EXPECT_TRUE(process.waitForOutput(
      std::regex("41 2030-03-17T17:46:40\\.250Z listener_created listener=web api\\n"),
      kCommandLimit, Process::Stream::kStdout))
      << process.out() << process.err();
  fake_.release();
  const auto exit = process.wait(kCommandLimit);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->code(), 0) << process.err();
  EXPECT_NE(process.out().find("42 - flow_closed listener=web flow=7 client=10.1.2.3:5555 "
                               "client_eof\n"),
            std::string::npos)
      << process.out();

  const auto calls = fake_.calls("Watch");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(equalsText(*static_cast<const v1::WatchRequest*>(calls[0].request.get()),
                         R"pb(include_flows: true
                              flow_filter { listener: "web" })pb"));
  // A stream outlives --timeout: it has no deadline.
  EXPECT_EQ(calls[0].deadline, std::chrono::system_clock::time_point::max());
}

TEST_F(EvgatectlTest, WatchJsonIsOneObjectPerLineAndAnErrorEndExitsOne) {
  fake_.stream("Watch",
               {std::make_shared<v1::WatchEvent>(textProto<v1::WatchEvent>(
                    R"pb(sequence: 1 type: WATCH_EVENT_TYPE_CLUSTER_UPDATED cluster: "b")pb")),
                std::make_shared<v1::WatchEvent>(textProto<v1::WatchEvent>(
                    R"pb(sequence: 2 type: WATCH_EVENT_TYPE_DRAIN_STARTED)pb"))},
               grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "watcher too slow"));
  const CtlResult r = ctl("-o json watch");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: RESOURCE_EXHAUSTED: watcher too slow\n");
  std::istringstream lines(r.out);
  std::vector<v1::WatchEvent> events;
  for (std::string line; std::getline(lines, line);) {
    v1::WatchEvent event;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &event).ok()) << line;
    events.push_back(event);
  }
  ASSERT_EQ(events.size(), 2u) << r.out;
  EXPECT_EQ(events[0].cluster(), "b");
  EXPECT_EQ(events[1].type(), v1::WATCH_EVENT_TYPE_DRAIN_STARTED);
  EXPECT_TRUE(equalsText(fake_.last<v1::WatchRequest>("Watch"), ""));
}

TEST_F(EvgatectlTest, CloseAllPrintsProgress) {
  std::vector<std::shared_ptr<const google::protobuf::Message>> progress;
  for (const char* text : {R"pb(closed: 0 remaining: 300)pb", R"pb(closed: 100 remaining: 200)pb",
                           R"pb(closed: 300 remaining: 0 done: true)pb"}) {
    progress.push_back(
        std::make_shared<v1::CloseFlowsProgress>(textProto<v1::CloseFlowsProgress>(text)));
  }
  fake_.stream("CloseFlows", progress);

  CtlResult r = ctl("flow close-all --listener web --client 10.0.0.0/8 --min-idle 5m --rate 500");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "closed 0, remaining 300\nclosed 100, remaining 200\ndone: closed 300\n");
  EXPECT_TRUE(equalsText(fake_.last<v1::CloseFlowsRequest>("CloseFlows"), R"pb(
    filter {
      listener: "web"
      client_cidr: "10.0.0.0/8"
      min_idle { seconds: 300 }
    }
    max_per_second: 500
  )pb"));

  r = ctl("-o json flow close-all --dry-run");
  ASSERT_EQ(r.code, 0) << r;
  std::istringstream lines(r.out);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    v1::CloseFlowsProgress parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
  }
  EXPECT_EQ(count, 3);
  EXPECT_TRUE(
      equalsText(fake_.last<v1::CloseFlowsRequest>("CloseFlows"), R"pb(filter {}
                                                                       validate_only: true)pb"));
}

// Fleet control: one command, several gateways, a result for each, and an exit code that is not
// zero when any of them failed.
class EvgatectlFleetTest : public EvgatectlTest {
 protected:
  void SetUp() override {
    EvgatectlTest::SetUp();
    ASSERT_TRUE(second_.start());
  }
  FakeAdmin second_;
};

TEST_F(EvgatectlFleetTest, RepeatedAddressAppliesTheChangeToEachAndPrintsEachResult) {
  v1::Listener created;
  created.set_name("web");
  created.set_bind("0.0.0.0:8080");
  created.set_cluster("backends");
  fake_.answer("CreateListener", created);
  second_.answer("CreateListener", created);
  const CtlResult r =
      runCtl({"--address", fake_.address(), "--address", second_.address(), "listener", "create",
              "web", "--bind", "0.0.0.0:8080", "--cluster", "backends"});
  EXPECT_EQ(r.code, 0) << r;
  ASSERT_EQ(fake_.calls("CreateListener").size(), 1u);
  ASSERT_EQ(second_.calls("CreateListener").size(), 1u);
  // Results in the order given, each under its gateway's address.
  const size_t first = r.out.find("== " + fake_.address() + ": ok\n");
  const size_t second = r.out.find("== " + second_.address() + ": ok\n");
  ASSERT_NE(first, std::string::npos) << r;
  ASSERT_NE(second, std::string::npos) << r;
  EXPECT_LT(first, second) << r;
  EXPECT_EQ(r.err, "2 of 2 gateways ok\n");
}

TEST_F(EvgatectlFleetTest, OneFailingGatewayMakesTheExitCodeItsOwn) {
  fake_.answer("GetStatus", textProto<v1::Status>(kStatus));
  second_.fail("GetStatus", grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "read-only token"));
  CtlResult r = runCtl({"--address", fake_.address() + "," + second_.address(), "status"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_NE(r.out.find("== " + second_.address() +
                       ": failed (exit 1)\nerror: PERMISSION_DENIED: "
                       "read-only token\n"),
            std::string::npos)
      << r;
  EXPECT_EQ(r.err, "1 of 2 gateways ok, 1 failed\n");

  // An unreachable one outranks a refusal: exit 3.
  const std::string refused = refusedAddress();
  r = runCtl({"--address", second_.address(), "--address", refused, "--timeout", "2s", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_NE(r.out.find("== " + refused + ": failed (exit 3)\nerror: cannot reach the gateway at " +
                       refused),
            std::string::npos)
      << r;
}

TEST_F(EvgatectlFleetTest, JsonIsOneObjectPerGatewayWithTheResults) {
  fake_.answer("GetStatus", textProto<v1::Status>(kStatus));
  second_.fail("GetStatus", grpc::Status(grpc::StatusCode::INTERNAL, "boom"));
  const CtlResult r = runCtl(
      {"-o", "json", "--address", fake_.address(), "--address", second_.address(), "status"});
  EXPECT_EQ(r.code, 1) << r;
  std::istringstream lines(r.out);
  std::vector<YAML::Node> objects;
  for (std::string line; std::getline(lines, line);) objects.push_back(YAML::Load(line));
  ASSERT_EQ(objects.size(), 2u) << r;
  EXPECT_EQ(objects[0]["target"].as<std::string>(), fake_.address());
  EXPECT_TRUE(objects[0]["ok"].as<bool>());
  EXPECT_EQ(objects[0]["exit_code"].as<int>(), 0);
  ASSERT_EQ(objects[0]["results"].size(), 1u);
  EXPECT_EQ(objects[0]["results"][0]["workers"].as<int>(), 4);
  EXPECT_EQ(objects[0]["results"][0]["config_file"].as<std::string>(), "/etc/evgate/evgate.yaml");
  EXPECT_FALSE(objects[1]["ok"].as<bool>());
  EXPECT_EQ(objects[1]["exit_code"].as<int>(), 1);
  EXPECT_EQ(objects[1]["results"].size(), 0u);
  EXPECT_EQ(objects[1]["error"].as<std::string>(), "INTERNAL: boom");
}

TEST_F(EvgatectlFleetTest, FanoutResolvesEachNameAndDropsDuplicates) {
  fake_.answer("GetStatus", textProto<v1::Status>(kStatus));
  // A numeric name resolves to itself; given twice, it is called once.
  CtlResult r =
      runCtl({"--fanout", "--address", fake_.address(), "--address", fake_.address(), "status"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(fake_.calls("GetStatus").size(), 1u);
  EXPECT_EQ(r.err, "1 of 1 gateways ok\n");
  // A name that does not resolve fails as unreachable, without a call; the others still run.
  r = runCtl({"--fanout", "--address", "no-such-gateway.invalid:9901", "--address",
              second_.address(), "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_NE(r.out.find("== no-such-gateway.invalid:9901: failed (exit 3)\nerror: cannot resolve "
                       "no-such-gateway.invalid: "),
            std::string::npos)
      << r;
  EXPECT_NE(r.out.find("== " + second_.address() + ": ok"), std::string::npos) << r;
  r = runCtl({"--fanout", "--address", "no-port", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_NE(r.out.find("--fanout needs HOST:PORT, got \"no-port\""), std::string::npos) << r;
}

TEST_F(EvgatectlFleetTest, WatchTakesOneGateway) {
  const CtlResult r =
      runCtl({"--address", fake_.address(), "--address", second_.address(), "watch"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_EQ(r.err, "error: watch follows one gateway: give one --address, without --fanout\n");
  EXPECT_EQ(fake_.calls("Watch").size(), 0u);
}

TEST(EvgatectlCompletion, BashScriptCompletesCommandsAndFlags) {
  const CtlResult script = runCtl("completion bash");
  ASSERT_EQ(script.code, 0) << script;
  TempDir dir;
  ASSERT_TRUE(writeTextFile(dir.file("completion.bash"), script.out));
  const auto complete = [&](const std::string& words) {
    Process bash({"/bin/bash", "-c",
                  "source " + dir.file("completion.bash") + "; COMP_WORDS=(" + words +
                      "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _evgatectl; "
                      "echo \"${COMPREPLY[*]}\""});
    const auto exit = bash.wait(kCommandLimit);
    EXPECT_TRUE(exit && exit->code() == 0) << bash.err();
    return bash.out();
  };
  EXPECT_EQ(complete("evgatectl li"), "listener\n");
  EXPECT_EQ(complete("evgatectl listener c"), "create\n");
  EXPECT_EQ(complete("evgatectl -o json cluster endpoint-"), "endpoint-add endpoint-remove\n");
  EXPECT_EQ(complete("evgatectl listener create web --idle"), "--idle-timeout\n");
  EXPECT_EQ(complete("evgatectl event create x --ev"), "--every\n");
  EXPECT_EQ(complete("evgatectl flow list --add"), "--address\n");
}

}  // namespace
}  // namespace evgate::test
