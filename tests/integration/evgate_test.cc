// The real evgate daemon on 127.0.0.1, port 0: command line, --check-config, relaying, connect
// retries, draining, and the listener's allow list, connection limit and PROXY header handling.
// Backends (a threaded echo server) and clients run inside the test process; every wait has a
// deadline.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/access_log.h"
#include "tests/integration/net_util.h"
#include "tests/integration/proc_stat.h"
#include "tests/integration/process.h"

namespace {

using namespace std::chrono_literals;
using evgate::test::AccessRecord;
using evgate::test::accessRecords;
using evgate::test::address;
using evgate::test::Clock;
using evgate::test::closedByPeer;
using evgate::test::connectTo;
using evgate::test::echoes;
using evgate::test::EchoServer;
using evgate::test::Exchange;
using evgate::test::exchange;
using evgate::test::Fd;
using evgate::test::localPort;
using evgate::test::loopback;
using evgate::test::Process;
using evgate::test::randomBytes;
using evgate::test::refusedPort;
using evgate::test::residentBytes;
using evgate::test::waitClosed;

// Generous bounds for things that normally take milliseconds (a sanitizer build is slower).
constexpr auto kStartLimit = 10s;
constexpr auto kPrompt = 2s;

// ---------------------------------------------------------------------------------------------
// The daemon's configuration: one cluster "backends" and one listener "web" on 127.0.0.1:0.

struct GatewaySetup {
  int workers = 2;
  std::string drainTimeout = "5s";
  std::vector<std::string> endpoints;
  std::vector<std::string> clusterKeys;   // more "key: value" lines for the cluster
  std::vector<std::string> listenerKeys;  // more "key: value" lines for the listener
};

std::string yamlFor(const GatewaySetup& setup) {
  std::string yaml = "workers: " + std::to_string(setup.workers) +
                     "\n"
                     "drain_timeout: " +
                     setup.drainTimeout +
                     "\n"
                     "log: { format: text, level: info }\n"
                     "access_log: { mode: stdout }\n"
                     "admin: { address: 127.0.0.1:0 }\n"
                     "metrics: { address: 127.0.0.1:0 }\n"
                     "clusters:\n"
                     "  - name: backends\n"
                     "    endpoints: [";
  for (size_t i = 0; i < setup.endpoints.size(); ++i) {
    yaml += (i == 0 ? " \"" : ", \"") + setup.endpoints[i] + "\"";
  }
  yaml += " ]\n";
  for (const std::string& key : setup.clusterKeys) yaml += "    " + key + "\n";
  yaml +=
      "listeners:\n"
      "  - name: web\n"
      "    bind: 127.0.0.1:0\n"
      "    cluster: backends\n";
  for (const std::string& key : setup.listenerKeys) yaml += "    " + key + "\n";
  return yaml;
}

class EvgateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "evgate-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }

  void TearDown() override {
    daemon_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string writeFile(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << content;
    return path;
  }

  // Starts `evgate --config` on `yaml` and waits until listener "web" is bound; sets port_.
  void startDaemon(const std::string& yaml) {
    const std::string path = writeFile("evgate.yaml", yaml);
    daemon_ = std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY, "--config", path});
    ASSERT_TRUE(daemon_->started()) << daemon_->error();
    const auto listening = daemon_->waitForOutput(
        std::regex(R"(info listener web listening on 127\.0\.0\.1:(\d+) -> cluster backends)"),
        kStartLimit, Process::Stream::kStderr);
    ASSERT_TRUE(listening) << "stderr so far:\n" << daemon_->err() << "\nconfig:\n" << yaml;
    port_ = static_cast<uint16_t>(std::stoi((*listening)[1]));
  }

  // SIGTERM, then waits up to `limit` for the daemon to exit 0.
  void stopDaemon(Clock::duration limit = 5s) {
    ASSERT_TRUE(daemon_->signal(SIGTERM));
    const auto status = daemon_->wait(limit);
    ASSERT_TRUE(status) << "still running after SIGTERM; stderr:\n" << daemon_->err();
    ASSERT_TRUE(status->exited()) << status->describe() << "; stderr:\n" << daemon_->err();
    ASSERT_EQ(status->code(), 0) << daemon_->err();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Process> daemon_;
  uint16_t port_ = 0;
};

// Runs evgate with `args` and waits for it to exit.
Process::Exit runToExit(Process& process) {
  EXPECT_TRUE(process.started()) << process.error();
  const auto status = process.wait(kStartLimit);
  EXPECT_TRUE(status) << "did not exit; stderr:\n" << process.err();
  return status.value_or(Process::Exit{-1});
}

// ---------------------------------------------------------------------------------------------
// 1. The command line.

TEST(EvgateCommandLine, VersionHelpAndBadUsage) {
  {
    Process version({EVGATE_BINARY, "--version"});
    const Process::Exit status = runToExit(version);
    EXPECT_EQ(status.code(), 0) << status.describe();
    EXPECT_TRUE(std::regex_match(version.out(), std::regex(R"(evgate \d+\.\d+\.\d+\n)")))
        << version.out();
    EXPECT_EQ(version.err(), "");
  }
  {
    Process help({EVGATE_BINARY, "--help"});
    const Process::Exit status = runToExit(help);
    EXPECT_EQ(status.code(), 0) << status.describe();
    EXPECT_NE(help.out().find("usage: evgate"), std::string::npos) << help.out();
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{EVGATE_BINARY, "--bogus"},
        std::vector<std::string>{EVGATE_BINARY, "--config"},
        std::vector<std::string>{EVGATE_BINARY, "--version", "extra"},
        std::vector<std::string>{EVGATE_BINARY, "--check-config"}}) {
    Process bad(args);
    const Process::Exit status = runToExit(bad);
    EXPECT_EQ(status.code(), 2) << args[1] << ": " << status.describe();
    EXPECT_NE(bad.err().find("usage: evgate"), std::string::npos) << args[1] << ": " << bad.err();
    EXPECT_EQ(bad.out(), "") << args[1];
  }
}

// ---------------------------------------------------------------------------------------------
// 2. --check-config.

TEST_F(EvgateTest, CheckConfigAcceptsAGoodFile) {
  GatewaySetup setup;
  setup.endpoints = {"127.0.0.1:9000", "127.0.0.1:9001"};
  setup.clusterKeys = {"lb: least_connections", "max_connect_attempts: 2"};
  setup.listenerKeys = {"allow: [ \"10.0.0.0/8\", \"127.0.0.1\" ]", "idle_timeout: 1.5s"};
  Process check({EVGATE_BINARY, "--check-config", writeFile("good.yaml", yamlFor(setup))});
  const Process::Exit status = runToExit(check);
  EXPECT_EQ(status.code(), 0) << status.describe() << "; stderr:\n" << check.err();
  EXPECT_EQ(check.out(), "ok\n");
  EXPECT_EQ(check.err(), "");
}

TEST_F(EvgateTest, CheckConfigReportsEveryProblemAsFileLineColumn) {
  const std::string path = writeFile("bad.yaml",
                                     "wrkers: 2\n"
                                     "drain_timeout: 30 seconds\n"
                                     "clusters:\n"
                                     "  - name: backends\n"
                                     "    endpoints: [ \"127.0.0.1:9000\" ]\n"
                                     "listeners:\n"
                                     "  - name: web\n"
                                     "    bind: 127.0.0.1:0\n"
                                     "    cluster: nope\n");
  Process check({EVGATE_BINARY, "--check-config", path});
  const Process::Exit status = runToExit(check);
  EXPECT_EQ(status.code(), 1) << status.describe();
  EXPECT_EQ(check.err(), path + ":1:1: unknown key \"wrkers\" (did you mean \"workers\"?)\n" +
                             path +
                             ":2:16: drain_timeout: expected a duration like 5s, got \"30 "
                             "seconds\"\n" +
                             path + ":9:14: listeners[0].cluster: unknown cluster \"nope\"\n");
  EXPECT_EQ(check.out(), "");
}

TEST_F(EvgateTest, CheckConfigReportsSyntaxErrorsAndUnreadableFiles) {
  const std::string broken = writeFile("broken.yaml", "workers: 2\nadmin: { address: x\n");
  Process syntax({EVGATE_BINARY, "--check-config", broken});
  EXPECT_EQ(runToExit(syntax).code(), 1);
  EXPECT_TRUE(std::regex_match(syntax.err(),
                               std::regex(broken + R"(:\d+:\d+: YAML syntax error: [^\n]+\n)")))
      << syntax.err();

  const std::string missing = (dir_ / "missing.yaml").string();
  Process unreadable({EVGATE_BINARY, "--check-config", missing});
  EXPECT_EQ(runToExit(unreadable).code(), 1);
  EXPECT_EQ(unreadable.err(), missing + ": cannot read file: No such file or directory\n");
}

// ---------------------------------------------------------------------------------------------
// 3. The embedded default configuration.

TEST_F(EvgateTest, RunsOnTheEmbeddedDefaultAndStopsOnSigterm) {
  daemon_ = std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY});
  ASSERT_TRUE(daemon_->started()) << daemon_->error();
  ASSERT_TRUE(daemon_->waitForOutput(std::regex("info no listeners configured"), kStartLimit,
                                     Process::Stream::kStderr))
      << daemon_->err();
  EXPECT_NE(daemon_->err().find("embedded default configuration"), std::string::npos)
      << daemon_->err();
  const auto start = Clock::now();
  ASSERT_NO_FATAL_FAILURE(stopDaemon(kPrompt));
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_EQ(daemon_->out(), "");
}

TEST_F(EvgateTest, LogsJsonLinesWithTheLogFormatFlag) {
  // The flags override the file's log settings; the file only moves the admin API and the metrics
  // off their default ports, which the embedded-default test may hold at the same time.
  const std::string path =
      writeFile("json.yaml",
                "log: { format: text, level: error }\nadmin: { address: 127.0.0.1:0 }\n"
                "metrics: { address: 127.0.0.1:0 }\n");
  daemon_ = std::make_unique<Process>(std::vector<std::string>{
      EVGATE_BINARY, "--config", path, "--log-format", "json", "--log-level", "info"});
  ASSERT_TRUE(daemon_->started()) << daemon_->error();
  ASSERT_TRUE(daemon_->waitForOutput(std::regex(R"("msg":"no listeners configured")"), kStartLimit,
                                     Process::Stream::kStderr))
      << daemon_->err();
  ASSERT_NO_FATAL_FAILURE(stopDaemon(kPrompt));
  // Every line is one JSON object with a timestamp, a level and a message.
  const std::regex jsonLine(
      R"re(\{"ts":"[0-9T:.Z-]+","level":"(debug|info|warn|error)","msg":".*"\})re");
  std::istringstream lines(daemon_->err());
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    EXPECT_TRUE(std::regex_match(line, jsonLine)) << line;
  }
  EXPECT_GE(count, 3);
}

// ---------------------------------------------------------------------------------------------
// 4. Relaying.

TEST_F(EvgateTest, RelaysFiftyConcurrentClientsAndLogsEachFlow) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.workers = 2;
  setup.endpoints = {backend.address()};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  constexpr int kClients = 50;
  constexpr size_t kSize = 256 * 1024;
  const auto deadline = Clock::now() + 15s;
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      const std::string sent = randomBytes(kSize, static_cast<uint64_t>(i) + 1);
      const Fd fd(connectTo(port_));
      if (fd.get() < 0) {
        failures[i] = std::string("connect: ") + std::strerror(errno);
        return;
      }
      const Exchange result = exchange(fd.get(), sent, deadline, /*toEof=*/true);
      if (result.end != "eof") {
        failures[i] = "ended with " + result.end + " after " +
                      std::to_string(result.received.size()) + " bytes";
      } else if (result.received != sent) {
        failures[i] = "echo differs (" + std::to_string(result.received.size()) + " bytes back)";
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(failures[i], "") << "client " << i;

  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), static_cast<size_t>(kClients)) << daemon_->out();
  for (const AccessRecord& record : records) {
    EXPECT_EQ(record.upstream, backend.address());
    EXPECT_EQ(record.bytesIn, kSize);
    EXPECT_EQ(record.bytesOut, kSize);
    EXPECT_EQ(record.reason, "client_eof");
  }
  EXPECT_EQ(backend.accepted(), kClients);
}

// ---------------------------------------------------------------------------------------------
// 5. and 6. Connecting to the cluster.

TEST_F(EvgateTest, RetriesTheNextEndpointWhenOneRefuses) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  const uint16_t refused = refusedPort();
  ASSERT_NE(refused, 0);
  GatewaySetup setup;
  setup.workers = 1;  // one round-robin picker: every other flow starts at the refused endpoint
  setup.endpoints = {address(refused), backend.address()};
  setup.clusterKeys = {"lb: round_robin", "max_connect_attempts: 2"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  constexpr int kClients = 10;
  for (int i = 0; i < kClients; ++i) {
    const Fd fd(connectTo(port_));
    ASSERT_GE(fd.get(), 0) << std::strerror(errno);
    const std::string sent = "client " + std::to_string(i);
    const Exchange result = exchange(fd.get(), sent, Clock::now() + 5s, /*toEof=*/true);
    EXPECT_EQ(result.end, "eof") << "client " << i;
    EXPECT_EQ(result.received, sent) << "client " << i;
  }
  EXPECT_EQ(backend.accepted(), kClients);

  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), static_cast<size_t>(kClients)) << daemon_->out();
  for (const AccessRecord& record : records) {
    EXPECT_EQ(record.upstream, backend.address());
    EXPECT_EQ(record.reason, "client_eof");
  }
}

TEST_F(EvgateTest, ClosesTheClientWhenEveryEndpointIsDown) {
  const uint16_t first = refusedPort();
  const uint16_t second = refusedPort();
  ASSERT_NE(first, 0);
  ASSERT_NE(second, 0);
  GatewaySetup setup;
  setup.endpoints = {address(first), address(second)};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  const Fd fd(connectTo(port_));
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  const std::string outcome = waitClosed(fd.get(), Clock::now() + kPrompt);
  EXPECT_TRUE(closedByPeer(outcome)) << outcome;

  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), 1u) << daemon_->out();
  EXPECT_EQ(records[0].reason, "connect_failed");
  EXPECT_EQ(records[0].upstream, "null");
  EXPECT_EQ(records[0].bytesIn, 0u);
  EXPECT_EQ(records[0].bytesOut, 0u);
}

// ---------------------------------------------------------------------------------------------
// 7. and 8. Draining on SIGTERM.

TEST_F(EvgateTest, DrainRefusesNewClientsAndExitsWhenTheLastFlowEnds) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.drainTimeout = "5s";
  setup.endpoints = {backend.address()};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  Fd client(connectTo(port_));
  ASSERT_GE(client.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(client.get(), "before"));

  const auto signalled = Clock::now();
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(daemon_->waitForOutput(std::regex(R"(SIGTERM: draining \d+ flows for up to 5000ms)"),
                                     kPrompt, Process::Stream::kStderr))
      << daemon_->err();

  // Accepting stops on every worker soon after: a connect is refused. One that still got in
  // before the last listening socket closed is closed again at once.
  bool refused = false;
  int lastError = 0;
  for (const auto deadline = Clock::now() + kPrompt; !refused && Clock::now() < deadline;) {
    const Fd probe(connectTo(port_));
    lastError = errno;
    refused = probe.get() < 0 && lastError == ECONNREFUSED;
    if (!refused) ::poll(nullptr, 0, 5);
  }
  EXPECT_TRUE(refused) << "last connect: " << (lastError != 0 ? std::strerror(lastError) : "ok");

  // The flow that was open goes on.
  EXPECT_TRUE(echoes(client.get(), "during the drain"));
  EXPECT_FALSE(daemon_->wait(0s)) << "exited with a flow open";

  const auto closed = Clock::now();
  client.reset();
  const auto status = daemon_->wait(kPrompt);
  ASSERT_TRUE(status) << "still draining after the last flow ended; stderr:\n" << daemon_->err();
  EXPECT_EQ(status->code(), 0) << status->describe();
  EXPECT_LT(Clock::now() - closed, 1s);
  EXPECT_LT(Clock::now() - signalled, 4s);
  EXPECT_NE(daemon_->err().find("drained; exiting"), std::string::npos) << daemon_->err();

  // The drained client's record (6 + 16 bytes each way); probes that got in before accepting
  // stopped may add records of their own.
  bool found = false;
  for (const AccessRecord& record : accessRecords(daemon_->out())) {
    if (record.bytesIn == 6 + 16) {
      found = true;
      EXPECT_EQ(record.bytesOut, 6u + 16u);
      EXPECT_EQ(record.reason, "client_eof");
    }
  }
  EXPECT_TRUE(found) << daemon_->out();
}

TEST_F(EvgateTest, DrainTimeoutClosesIdleFlows) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.drainTimeout = "500ms";
  setup.endpoints = {backend.address()};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  constexpr int kClients = 20;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(connectTo(port_));
    ASSERT_GE(clients.back().get(), 0) << std::strerror(errno);
    ASSERT_TRUE(echoes(clients.back().get(), "idle")) << "client " << i;
  }

  const auto signalled = Clock::now();
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  const auto deadline = signalled + 3s;
  for (int i = 0; i < kClients; ++i) {
    const std::string outcome = waitClosed(clients[i].get(), deadline);
    EXPECT_TRUE(closedByPeer(outcome)) << "client " << i << ": " << outcome;
  }
  const auto status = daemon_->wait(std::max<Clock::duration>(deadline - Clock::now(), 0s));
  ASSERT_TRUE(status) << "still running 3 s after SIGTERM; stderr:\n" << daemon_->err();
  EXPECT_EQ(status->code(), 0) << status->describe();
  // Nothing is closed before the last fifth of the drain window.
  EXPECT_GE(Clock::now() - signalled, 400ms);

  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), static_cast<size_t>(kClients)) << daemon_->out();
  for (const AccessRecord& record : records) {
    EXPECT_EQ(record.reason, "drain");
    EXPECT_EQ(record.bytesIn, 4u);
    EXPECT_EQ(record.bytesOut, 4u);
  }
}

TEST_F(EvgateTest, SecondSigtermClosesEveryFlowAtOnce) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.drainTimeout = "30s";
  setup.endpoints = {backend.address()};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  const Fd client(connectTo(port_));
  ASSERT_GE(client.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(client.get(), "idle"));
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  ASSERT_TRUE(
      daemon_->waitForOutput(std::regex("SIGTERM: draining"), kPrompt, Process::Stream::kStderr))
      << daemon_->err();
  const auto second = Clock::now();
  ASSERT_TRUE(daemon_->signal(SIGTERM));
  const std::string outcome = waitClosed(client.get(), second + kPrompt);
  EXPECT_TRUE(closedByPeer(outcome)) << outcome;
  const auto status = daemon_->wait(kPrompt);
  ASSERT_TRUE(status) << "still running after the second SIGTERM; stderr:\n" << daemon_->err();
  EXPECT_EQ(status->code(), 0) << status->describe();
  EXPECT_LT(Clock::now() - second, 1s);
  EXPECT_NE(daemon_->err().find("second SIGTERM"), std::string::npos) << daemon_->err();
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), 1u) << daemon_->out();
  EXPECT_EQ(records[0].reason, "drain");
}

TEST_F(EvgateTest, RelaysFromAnIpv6Listener) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.workers = 2;
  setup.endpoints = {backend.address()};
  std::string yaml = yamlFor(setup);
  const std::string v4Bind = "bind: 127.0.0.1:0";
  yaml.replace(yaml.find(v4Bind), v4Bind.size(), "bind: \"[::1]:0\"");
  const std::string path = writeFile("evgate.yaml", yaml);
  daemon_ = std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY, "--config", path});
  ASSERT_TRUE(daemon_->started()) << daemon_->error();
  const auto listening = daemon_->waitForOutput(
      std::regex(R"(info listener web listening on \[::1\]:(\d+) -> cluster backends)"),
      kStartLimit, Process::Stream::kStderr);
  ASSERT_TRUE(listening) << daemon_->err();
  const auto port = static_cast<uint16_t>(std::stoi((*listening)[1]));

  const Fd client(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  addr.sin6_addr = in6addr_loopback;
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  const std::string payload = randomBytes(100000, 6);
  ASSERT_EQ(::send(client.get(), payload.data(), payload.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(payload.size()));
  ::shutdown(client.get(), SHUT_WR);
  std::string echoed;
  std::string buf(65536, '\0');
  for (;;) {
    pollfd p{client.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = ::recv(client.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    echoed.append(buf.data(), static_cast<size_t>(n));
  }
  EXPECT_EQ(echoed, payload);
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  const auto records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].bytesIn, payload.size());
}

// ---------------------------------------------------------------------------------------------
// Backpressure at the process level: a backend floods a client that does not read.

// Accepts one connection and sends `total` bytes of a known pattern, counting what the kernel
// took; then closes.
class FloodServer {
 public:
  explicit FloodServer(size_t total) : total_(total) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in addr = loopback(0);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 8) != 0) {
      return;
    }
    port_ = localPort(fd_);
    thread_ = std::thread([this] { flood(); });
  }
  ~FloodServer() {
    ::shutdown(fd_, SHUT_RDWR);
    if (connection_ >= 0) ::shutdown(connection_, SHUT_RDWR);
    thread_.join();
    if (connection_ >= 0) ::close(connection_);
    ::close(fd_);
  }
  FloodServer(const FloodServer&) = delete;
  FloodServer& operator=(const FloodServer&) = delete;

  std::string address() const { return ::address(port_); }
  size_t sent() const { return sent_.load(); }
  static char byteAt(size_t offset) { return static_cast<char>(offset % 251); }

 private:
  void flood() {
    connection_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection_ < 0) return;
    std::string chunk(65536, '\0');
    while (sent_.load() < total_) {
      const size_t offset = sent_.load();
      const size_t n = std::min(chunk.size(), total_ - offset);
      for (size_t i = 0; i < n; ++i) chunk[i] = byteAt(offset + i);
      const ssize_t m = ::send(connection_, chunk.data(), n, MSG_NOSIGNAL);
      if (m <= 0) return;
      sent_.fetch_add(static_cast<size_t>(m));
    }
    ::shutdown(connection_, SHUT_WR);
  }

  const size_t total_;
  int fd_ = -1;
  int connection_ = -1;
  uint16_t port_ = 0;
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

TEST_F(EvgateTest, AClientThatDoesNotReadHoldsTheGatewaysMemoryBounded) {
  constexpr size_t kTotal = size_t{48} << 20;  // the kernel buffers about 10 MiB of it
  FloodServer backend(kTotal);
  GatewaySetup setup;
  setup.workers = 1;
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"buffer_limit: 64KiB"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));
  const size_t baseline = residentBytes(daemon_->pid());
  ASSERT_GT(baseline, 0u);

  Fd client(connectTo(port_));
  ASSERT_GE(client.get(), 0);
  // Wait until the flood stalls: TCP flow control holds the backend once the gateway stops
  // reading from it. Quiet for 300 ms counts as stalled.
  const auto deadline = Clock::now() + 20s;
  size_t last = backend.sent();
  auto quietSince = Clock::now();
  while (Clock::now() < deadline && Clock::now() - quietSince < 300ms) {
    std::this_thread::sleep_for(20ms);  // sampling a counter another thread moves
    const size_t now = backend.sent();
    if (now != last) quietSince = Clock::now();
    last = now;
  }
  const size_t stalledAt = backend.sent();
  ASSERT_LT(stalledAt, kTotal) << "the backend was never held back";
  const size_t resident = residentBytes(daemon_->pid());
  const size_t grown = resident > baseline ? resident - baseline : 0;
  // The flow holds at most 2 x buffer_limit; the rest waits in kernel socket buffers. Allow
  // generous slack for allocator noise, far below what buffering the flood would take.
  EXPECT_LT(grown, size_t{8} << 20)
      << "RSS grew by " << grown << " bytes while " << stalledAt << " bytes were sent";

  // Now read everything: every byte arrives, in order.
  std::string buf(1 << 16, '\0');
  size_t received = 0;
  bool intact = true;
  while (received < kTotal) {
    pollfd p{client.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = ::recv(client.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n && intact; ++i) {
      intact =
          buf[static_cast<size_t>(i)] == FloodServer::byteAt(received + static_cast<size_t>(i));
    }
    received += static_cast<size_t>(n);
  }
  EXPECT_EQ(received, kTotal);
  EXPECT_TRUE(intact);
}

// ---------------------------------------------------------------------------------------------
// 9. Who may connect, and how many.

TEST_F(EvgateTest, AllowListClosesOtherClientsWithoutConnecting) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"allow: [ \"10.0.0.0/8\" ]"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  for (int i = 0; i < 3; ++i) {
    const Fd fd(connectTo(port_));
    ASSERT_GE(fd.get(), 0) << std::strerror(errno);
    const std::string outcome = waitClosed(fd.get(), Clock::now() + kPrompt);
    EXPECT_TRUE(closedByPeer(outcome)) << outcome;
  }
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  EXPECT_EQ(backend.accepted(), 0);
}

TEST_F(EvgateTest, MaxConnectionsClosesTheClientOverTheLimit) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.workers = 1;  // the limit is exact with one worker
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"max_connections: 2"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  Fd first(connectTo(port_));
  Fd second(connectTo(port_));
  ASSERT_GE(first.get(), 0);
  ASSERT_GE(second.get(), 0);
  ASSERT_TRUE(echoes(first.get(), "first"));
  ASSERT_TRUE(echoes(second.get(), "second"));

  {
    const Fd third(connectTo(port_));
    ASSERT_GE(third.get(), 0) << std::strerror(errno);
    const std::string outcome = waitClosed(third.get(), Clock::now() + kPrompt);
    EXPECT_TRUE(closedByPeer(outcome)) << outcome;
  }
  EXPECT_TRUE(echoes(first.get(), "first again"));
  EXPECT_TRUE(echoes(second.get(), "second again"));
  EXPECT_EQ(backend.accepted(), 2);

  // Once a flow ends, its place is free again (the count drops when the daemon sees the close).
  first.reset();
  bool admitted = false;
  for (const auto deadline = Clock::now() + kPrompt; !admitted && Clock::now() < deadline;) {
    const Fd next(connectTo(port_));
    admitted = next.get() >= 0 && echoes(next.get(), "next", 200ms);
  }
  EXPECT_TRUE(admitted);
  EXPECT_TRUE(echoes(second.get(), "second still"));
  second.reset();
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
}

// A client cannot pass itself off as another address: without `proxy_protocol: accept` a PROXY
// header is payload like any other, and the flow is logged with the socket's peer.
TEST_F(EvgateTest, WithoutProxyProtocolAProxyHeaderIsRelayedAsBytesAndSpoofsNothing) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.endpoints = {backend.address()};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  const std::string header = "PROXY TCP4 1.2.3.4 127.0.0.1 4444 80\r\n";
  uint16_t clientPort = 0;
  {
    const Fd client(connectTo(port_));
    ASSERT_GE(client.get(), 0) << std::strerror(errno);
    clientPort = localPort(client.get());
    // The echo backend sends back exactly what reached it: the header arrived as payload.
    EXPECT_TRUE(echoes(client.get(), header + "payload"));
  }
  const auto record = daemon_->waitForOutput(std::regex(R"re("client":"([^"]+)")re"), kPrompt,
                                             Process::Stream::kStdout);
  ASSERT_TRUE(record) << daemon_->out();
  EXPECT_EQ((*record)[1], address(clientPort));
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  EXPECT_EQ(daemon_->out().find("1.2.3.4"), std::string::npos) << daemon_->out();
  EXPECT_EQ(daemon_->err().find("1.2.3.4"), std::string::npos) << daemon_->err();
}

// With `proxy_protocol: accept`, `allow` names who may connect (the proxies in front), checked
// on the socket's peer before any byte is read: a header naming an allowed address does not
// let a client from elsewhere in.
TEST_F(EvgateTest, WithProxyProtocolTheAllowListChecksTheSocketPeerNotTheHeader) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"proxy_protocol: accept", "allow: [ \"1.2.3.0/24\" ]"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  const Fd client(connectTo(port_));
  ASSERT_GE(client.get(), 0) << std::strerror(errno);
  const std::string spoofed = "PROXY TCP4 1.2.3.4 127.0.0.1 4444 80\r\nhello";
  (void)::send(client.get(), spoofed.data(), spoofed.size(), MSG_NOSIGNAL);
  const std::string outcome = waitClosed(client.get(), Clock::now() + kPrompt);
  EXPECT_TRUE(closedByPeer(outcome)) << outcome;
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  EXPECT_EQ(backend.accepted(), 0);
}

// The other half: from an allowed peer (the proxy), the header's address is the flow's client.
TEST_F(EvgateTest, WithProxyProtocolAnAllowedProxyPassesOnTheHeadersClient) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"proxy_protocol: accept", "allow: [ \"127.0.0.1\" ]"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));
  {
    const Fd proxy(connectTo(port_));
    ASSERT_GE(proxy.get(), 0) << std::strerror(errno);
    const std::string header = "PROXY TCP4 10.9.8.7 127.0.0.1 4444 80\r\n";
    ASSERT_EQ(::send(proxy.get(), header.data(), header.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(header.size()));
    EXPECT_TRUE(echoes(proxy.get(), "after the header"));
  }
  const auto record = daemon_->waitForOutput(std::regex(R"re("client":"([^"]+)")re"), kPrompt,
                                             Process::Stream::kStdout);
  ASSERT_TRUE(record) << daemon_->out();
  EXPECT_EQ((*record)[1], "10.9.8.7:4444");
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
}

// max_connections counts every worker's flows together: a burst from several threads at once
// gets exactly the limit through, on two workers.
TEST_F(EvgateTest, MaxConnectionsHoldsUnderABurstOnTwoWorkers) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  GatewaySetup setup;
  setup.workers = 2;
  setup.endpoints = {backend.address()};
  setup.listenerKeys = {"max_connections: 8"};
  ASSERT_NO_FATAL_FAILURE(startDaemon(yamlFor(setup)));

  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  std::vector<std::vector<Fd>> clients(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();  // start together
      for (int i = 0; i < kPerThread; ++i) clients[t].emplace_back(connectTo(port_));
    });
  }
  for (std::thread& thread : threads) thread.join();

  int admitted = 0;
  for (const std::vector<Fd>& group : clients) {
    for (const Fd& client : group) {
      ASSERT_GE(client.get(), 0) << std::strerror(errno);
      // A refused client is closed at once; an admitted one echoes.
      if (echoes(client.get(), "in?", kPrompt)) ++admitted;
    }
  }
  EXPECT_EQ(admitted, 8);
  EXPECT_EQ(backend.accepted(), 8);
  clients.clear();
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
}

// ---------------------------------------------------------------------------------------------
// 10. An invalid --config.

TEST_F(EvgateTest, InvalidConfigExitsOneWithoutListening) {
  const uint16_t port = refusedPort();
  ASSERT_NE(port, 0);
  const std::string path = writeFile("evgate.yaml",
                                     "drain_timeout: 5 s\n"
                                     "clusters:\n"
                                     "  - name: backends\n"
                                     "    endpoints: [ \"127.0.0.1:9000\" ]\n"
                                     "listeners:\n"
                                     "  - name: web\n"
                                     "    bind: " +
                                         address(port) +
                                         "\n"
                                         "    cluster: other\n");
  Process daemon({EVGATE_BINARY, "--config", path});
  const Process::Exit status = runToExit(daemon);
  EXPECT_EQ(status.code(), 1) << status.describe();
  EXPECT_EQ(daemon.err(), path +
                              ":1:16: drain_timeout: expected a duration like 5s, got \"5 s\"\n" +
                              path + ":8:14: listeners[0].cluster: unknown cluster \"other\"\n");
  EXPECT_EQ(daemon.out(), "");
  const int fd = connectTo(port);
  EXPECT_LT(fd, 0) << "something listens on " << address(port);
  EXPECT_EQ(errno, ECONNREFUSED);
  if (fd >= 0) ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// 11. SIGHUP reload: only the difference is applied.

// A listener of a reload test's configuration.
struct ListenerSpec {
  std::string name;
  std::string bind = "127.0.0.1:0";
  std::string cluster = "backends";
};

// A configuration with any listeners and one cluster per name -> endpoints entry.
std::string reloadYaml(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& clusters,
    const std::vector<ListenerSpec>& listeners) {
  std::string yaml =
      "workers: 2\n"
      "drain_timeout: 5s\n"
      "log: { format: text, level: info }\n"
      "access_log: { mode: stdout }\n"
      "admin: { address: 127.0.0.1:0 }\n"
      "metrics: { address: 127.0.0.1:0 }\n"
      "clusters:\n";
  for (const auto& [name, endpoints] : clusters) {
    yaml += "  - name: " + name + "\n    endpoints: [";
    for (size_t i = 0; i < endpoints.size(); ++i) {
      yaml += (i == 0 ? " \"" : ", \"") + endpoints[i] + "\"";
    }
    yaml += " ]\n";
  }
  yaml += "listeners:\n";
  for (const ListenerSpec& listener : listeners) {
    yaml += "  - name: " + listener.name + "\n    bind: " + listener.bind +
            "\n    cluster: " + listener.cluster + "\n";
  }
  return yaml;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

class ReloadTest : public EvgateTest {
 protected:
  // After a rejected reload: listener "api" never started, the flow `open` still relays, and a
  // new flow still goes to `backend`, never to `other`.
  void expectNothingChanged(const Fd& open, const EchoServer& backend, const EchoServer& other) {
    EXPECT_EQ(occurrences(daemon_->err(), "listener api listening"), 0u);
    EXPECT_TRUE(echoes(open.get(), "after"));
    const Fd fresh(connectTo(port_));
    ASSERT_GE(fresh.get(), 0) << std::strerror(errno);
    EXPECT_TRUE(echoes(fresh.get(), "same backend"));
    EXPECT_EQ(backend.accepted(), 2);
    EXPECT_EQ(other.accepted(), 0);
  }
  // Rewrites the configuration file, sends SIGHUP and waits for the reload's outcome line
  // ("reloaded: ..." or "reload failed; ..."); returns that line.
  std::string reload(const std::string& yaml) {
    writeFile("evgate.yaml", yaml);
    const size_t before = outcomes();
    EXPECT_TRUE(daemon_->signal(SIGHUP));
    const auto deadline = Clock::now() + kStartLimit;
    while (outcomes() <= before && Clock::now() < deadline) {
      // Reads the daemon's output for a moment (the pattern never matches).
      daemon_->waitForOutput(std::regex("a^"), 20ms, Process::Stream::kStderr);
    }
    const std::string& err = daemon_->err();
    const size_t last = std::max(lastOf(err, "reloaded: "), lastOf(err, "reload failed"));
    if (outcomes() <= before || last == std::string::npos) {
      ADD_FAILURE() << "no reload outcome; stderr:\n" << err;
      return "";
    }
    return err.substr(last, err.find('\n', last) - last);
  }

  // The port listener `name` was last logged as listening on.
  uint16_t portOf(const std::string& name) {
    const std::regex pattern("listener " + name + R"( listening on 127\.0\.0\.1:(\d+))");
    uint16_t port = 0;
    const std::string& err = daemon_->err();
    for (std::sregex_iterator it(err.begin(), err.end(), pattern), end; it != end; ++it) {
      port = static_cast<uint16_t>(std::stoi((*it)[1].str()));
    }
    return port;
  }

 private:
  size_t outcomes() const {
    return occurrences(daemon_->err(), "reloaded: ") +
           occurrences(daemon_->err(), "reload failed; configuration unchanged");
  }
  static size_t lastOf(const std::string& text, const std::string& needle) {
    const size_t at = text.rfind(needle);
    return at == std::string::npos ? 0 : at;
  }
};

TEST_F(ReloadTest, AddedListenerRelaysAndFlowsOnTheOthersAreUntouched) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  ASSERT_NO_FATAL_FAILURE(startDaemon(reloadYaml({{"backends", {backend.address()}}}, {{"web"}})));
  const Fd open(connectTo(port_));
  ASSERT_GE(open.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(open.get(), "before"));

  EXPECT_EQ(reload(reloadYaml({{"backends", {backend.address()}}}, {{"web"}, {"api"}})),
            "reloaded: +1 listeners, -0 listeners, 0 listeners updated, 0 clusters changed");
  const uint16_t api = portOf("api");
  ASSERT_NE(api, 0) << daemon_->err();
  const Fd added(connectTo(api));
  ASSERT_GE(added.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(added.get(), "through the new listener"));
  EXPECT_TRUE(echoes(open.get(), "after"));
  const Fd again(connectTo(port_));
  ASSERT_GE(again.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(again.get(), "web still accepts"));

  const Exchange last = exchange(open.get(), "bye", Clock::now() + 5s, /*toEof=*/true);
  EXPECT_EQ(last.end, "eof");
  EXPECT_EQ(last.received, "bye");
}

TEST_F(ReloadTest, RemovedListenerRefusesNewClientsAndDrainsItsFlows) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  ASSERT_NO_FATAL_FAILURE(
      startDaemon(reloadYaml({{"backends", {backend.address()}}}, {{"web"}, {"api"}})));
  ASSERT_TRUE(daemon_->waitForOutput(std::regex("listener api listening"), kStartLimit));
  const uint16_t api = portOf("api");
  ASSERT_NE(api, 0);
  const Fd open(connectTo(api));
  ASSERT_GE(open.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(open.get(), "before"));

  EXPECT_EQ(reload(reloadYaml({{"backends", {backend.address()}}}, {{"web"}})),
            "reloaded: +0 listeners, -1 listeners, 0 listeners updated, 0 clusters changed");
  const int refused = connectTo(api);
  EXPECT_LT(refused, 0) << "api still accepts";
  EXPECT_EQ(errno, ECONNREFUSED);
  if (refused >= 0) ::close(refused);
  // The flow accepted by the removed listener goes on until it ends.
  EXPECT_TRUE(echoes(open.get(), "still relaying"));
  const Exchange last = exchange(open.get(), "bye", Clock::now() + 5s, /*toEof=*/true);
  EXPECT_EQ(last.end, "eof");
  EXPECT_EQ(last.received, "bye");
  const Fd web(connectTo(port_));
  ASSERT_GE(web.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(web.get(), "web untouched"));
}

TEST_F(ReloadTest, ChangedClusterTakesNewFlowsWhileOpenFlowsStay) {
  EchoServer before;
  EchoServer after;
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(after.ok());
  ASSERT_NO_FATAL_FAILURE(startDaemon(reloadYaml({{"backends", {before.address()}}}, {{"web"}})));
  Fd old(connectTo(port_));
  ASSERT_GE(old.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(old.get(), "old flow"));

  EXPECT_EQ(reload(reloadYaml({{"backends", {after.address()}}}, {{"web"}})),
            "reloaded: +0 listeners, -0 listeners, 0 listeners updated, 1 clusters changed");
  Fd fresh(connectTo(port_));
  ASSERT_GE(fresh.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(fresh.get(), "new flow"));
  EXPECT_TRUE(echoes(old.get(), "old flow still relays"));
  EXPECT_EQ(before.accepted(), 1);
  EXPECT_EQ(after.accepted(), 1);
  old.reset();
  fresh.reset();

  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), 2u) << daemon_->out();
  std::vector<std::string> upstreams{records[0].upstream, records[1].upstream};
  std::sort(upstreams.begin(), upstreams.end());
  std::vector<std::string> expected{before.address(), after.address()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(upstreams, expected);
}

TEST_F(ReloadTest, InvalidFileIsLoggedAndChangesNothing) {
  EchoServer backend;
  EchoServer other;
  ASSERT_TRUE(backend.ok());
  ASSERT_TRUE(other.ok());
  ASSERT_NO_FATAL_FAILURE(startDaemon(reloadYaml({{"backends", {backend.address()}}}, {{"web"}})));
  const Fd open(connectTo(port_));
  ASSERT_GE(open.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(open.get(), "before"));

  // A valid change (another endpoint, another listener) next to two errors: none of it applies.
  std::string broken =
      reloadYaml({{"backends", {other.address()}}}, {{"web"}, {"api", "127.0.0.1:0", "nope"}});
  broken += "bogus_key: 1\n";
  EXPECT_EQ(reload(broken), "reload failed; configuration unchanged");
  const std::string path = (dir_ / "evgate.yaml").string();
  // Every problem, as file:line:col: message, each on its own error line.
  EXPECT_NE(daemon_->err().find(" error " + path +
                                ":16:14: listeners[1].cluster: unknown cluster \"nope\"\n"),
            std::string::npos)
      << daemon_->err();
  EXPECT_NE(daemon_->err().find(" error " + path + ":17:1: unknown key \"bogus_key\""),
            std::string::npos)
      << daemon_->err();
  ASSERT_NO_FATAL_FAILURE(expectNothingChanged(open, backend, other));
}

TEST_F(ReloadTest, BindConflictChangesNothing) {
  EchoServer backend;
  EchoServer other;
  ASSERT_TRUE(backend.ok());
  ASSERT_TRUE(other.ok());
  // A port held by a socket without SO_REUSEPORT: evgate cannot bind it.
  const Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in any = loopback(0);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  const uint16_t taken = localPort(holder.get());
  ASSERT_NO_FATAL_FAILURE(startDaemon(reloadYaml({{"backends", {backend.address()}}}, {{"web"}})));
  const Fd open(connectTo(port_));
  ASSERT_GE(open.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(open.get(), "before"));

  // Adds a listener (fine) and one on the taken port, and changes the cluster: none of it applies.
  EXPECT_EQ(reload(reloadYaml({{"backends", {other.address()}}},
                              {{"web"}, {"api"}, {"clash", address(taken)}})),
            "reload failed; configuration unchanged");
  EXPECT_NE(daemon_->err().find("listener clash: cannot listen on " + address(taken)),
            std::string::npos)
      << daemon_->err();
  ASSERT_NO_FATAL_FAILURE(expectNothingChanged(open, backend, other));
}

// A configuration with one health-checked cluster and listener "web" on `bind`.
std::string webYaml(const std::string& backend, const std::string& bind,
                    const std::string& maxConnections) {
  return "workers: 2\n"
         "drain_timeout: 5s\n"
         "log: { format: text, level: info }\n"
         "access_log: { mode: stdout }\n"
         "admin: { address: 127.0.0.1:0 }\n"
         "metrics: { address: 127.0.0.1:0 }\n"
         "clusters:\n"
         "  - name: backends\n"
         "    endpoints: [ \"" +
         backend +
         "\" ]\n"
         "    health_check: { interval: 50ms, timeout: 40ms }\n"
         "listeners:\n"
         "  - name: web\n"
         "    bind: " +
         bind +
         "\n"
         "    cluster: backends\n"
         "    max_connections: " +
         maxConnections + "\n";
}

TEST_F(ReloadTest, ChangedListenerOnTheSameAddressIsUpdatedInPlace) {
  EchoServer before;
  EchoServer after;
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(after.ok());
  const uint16_t fixed = refusedPort();
  ASSERT_NE(fixed, 0);
  // Health-checked clusters: the reload replaces the checker of the changed one.
  ASSERT_NO_FATAL_FAILURE(startDaemon(webYaml(before.address(), address(fixed), "100")));
  ASSERT_EQ(port_, fixed);
  Fd old(connectTo(port_));
  ASSERT_GE(old.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(old.get(), "old flow"));

  EXPECT_EQ(reload(webYaml(after.address(), address(fixed), "200")),
            "reloaded: +0 listeners, -0 listeners, 1 listeners updated, 1 clusters changed");
  // The same sockets: no new "listening on" line.
  EXPECT_EQ(occurrences(daemon_->err(), "listener web listening"), 1u) << daemon_->err();
  Fd fresh(connectTo(port_));
  ASSERT_GE(fresh.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(fresh.get(), "new flow"));
  EXPECT_TRUE(echoes(old.get(), "old flow still relays"));

  // The connection count is the same ListenerState's: with both flows open, a limit of 2 refuses
  // a third client at once.
  EXPECT_EQ(reload(webYaml(after.address(), address(fixed), "2")),
            "reloaded: +0 listeners, -0 listeners, 1 listeners updated, 0 clusters changed");
  {
    const Fd third(connectTo(port_));
    ASSERT_GE(third.get(), 0) << std::strerror(errno);
    const std::string outcome = waitClosed(third.get(), Clock::now() + kPrompt);
    EXPECT_TRUE(closedByPeer(outcome)) << outcome;
  }
  const Exchange last = exchange(old.get(), "bye", Clock::now() + 5s, /*toEof=*/true);
  EXPECT_EQ(last.end, "eof");
  EXPECT_EQ(last.received, "bye");
  old.reset();
  fresh.reset();

  // The same file again: nothing differs.
  EXPECT_EQ(reload(webYaml(after.address(), address(fixed), "2")),
            "reloaded: +0 listeners, -0 listeners, 0 listeners updated, 0 clusters changed");
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
  // The refused third client has no record: it never became a flow.
  const std::vector<AccessRecord> records = accessRecords(daemon_->out());
  ASSERT_EQ(records.size(), 2u) << daemon_->out();
  // The two flows may end on different workers: their lines come in either order.
  std::vector<std::string> upstreams{records[0].upstream, records[1].upstream};
  std::sort(upstreams.begin(), upstreams.end());
  std::vector<std::string> expected{before.address(), after.address()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(upstreams, expected);
}

TEST_F(ReloadTest, ListenerWithANewBindIsReplacedAndTheOldOneDrains) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  const uint16_t first = refusedPort();
  ASSERT_NE(first, 0);
  ASSERT_NO_FATAL_FAILURE(startDaemon(webYaml(backend.address(), address(first), "100")));
  ASSERT_EQ(port_, first);
  Fd old(connectTo(first));
  ASSERT_GE(old.get(), 0) << std::strerror(errno);
  ASSERT_TRUE(echoes(old.get(), "old flow"));

  const uint16_t second = refusedPort();
  ASSERT_NE(second, 0);
  EXPECT_EQ(reload(webYaml(backend.address(), address(second), "100")),
            "reloaded: +1 listeners, -1 listeners, 0 listeners updated, 0 clusters changed");
  EXPECT_EQ(portOf("web"), second);
  const int refused = connectTo(first);
  EXPECT_LT(refused, 0) << "the old address still accepts";
  if (refused >= 0) ::close(refused);
  Fd fresh(connectTo(second));
  ASSERT_GE(fresh.get(), 0) << std::strerror(errno);
  EXPECT_TRUE(echoes(fresh.get(), "new flow"));
  // The old listener's flow drains: it relays until it ends.
  EXPECT_TRUE(echoes(old.get(), "old flow still relays"));
  const Exchange last = exchange(old.get(), "bye", Clock::now() + 5s, /*toEof=*/true);
  EXPECT_EQ(last.end, "eof");
  EXPECT_EQ(last.received, "bye");
}

TEST_F(ReloadTest, EmbeddedDefaultHasNothingToReload) {
  daemon_ = std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY});
  ASSERT_TRUE(daemon_->started()) << daemon_->error();
  ASSERT_TRUE(daemon_->waitForOutput(std::regex("started with"), kStartLimit)) << daemon_->err();
  ASSERT_TRUE(daemon_->signal(SIGHUP));
  EXPECT_TRUE(daemon_->waitForOutput(std::regex("there is no file to reload"), kStartLimit))
      << daemon_->err();
  ASSERT_NO_FATAL_FAILURE(stopDaemon());
}

}  // namespace
