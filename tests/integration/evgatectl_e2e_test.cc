// evgatectl end to end: the real evgatectl binary against the real evgate daemon on 127.0.0.1.
// Every command group is run as an operator would run it, and its effect is checked from the
// outside: bytes relayed (or not) through the listeners it makes and pauses, the client
// connections it closes, the scheduled events it makes fire, the Watch lines it prints. Also the
// exit codes (0 ok, 1 refused, 2 usage, 3 unreachable), tokens, the EVGATE_* variables, and
// --dry-run.

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "evgate/admin/v1/admin.pb.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;

constexpr auto kStartLimit = 10s;
// A command takes milliseconds; this is for a loaded machine and a sanitizer build.
constexpr auto kCommandLimit = 20s;
// For an effect (a scheduled event firing, a flow closing) to show.
constexpr auto kEffectLimit = 10s;

// How one evgatectl run ended.
struct CtlResult {
  int code = -1;  // the exit code; -1 if it did not exit normally in time
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const CtlResult& r) {
  return os << "exit " << r.code << "\n--- stdout:\n" << r.out << "--- stderr:\n" << r.err;
}

// The environment of an evgatectl child: EVGATE_ADDRESS and EVGATE_TOKEN_FILE cleared (empty
// counts as unset) unless `env` sets them, so the test's own environment cannot leak in.
std::vector<std::string> ctlEnvironment(const std::vector<std::string>& env) {
  std::vector<std::string> merged = {"EVGATE_ADDRESS=", "EVGATE_TOKEN_FILE="};
  for (const std::string& entry : env) {
    const std::string name = entry.substr(0, entry.find('='));
    std::erase_if(merged, [&](const std::string& e) { return e.substr(0, e.find('=')) == name; });
    merged.push_back(entry);
  }
  return merged;
}

// Runs evgatectl with `args` to its exit, reading its output meanwhile.
CtlResult runCtl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), EVGATECTL_BINARY);
  Process process(args, ctlEnvironment(env));
  CtlResult result;
  if (!process.started()) {
    result.err = process.error();
    return result;
  }
  const auto exit = process.wait(kCommandLimit);
  result.out = process.out();
  result.err = process.err();
  if (exit && exit->exited()) result.code = exit->code();
  return result;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> args;
  std::istringstream in(line);
  for (std::string word; in >> word;) args.push_back(word);
  return args;
}

template <typename Message>
::testing::AssertionResult parseJson(const std::string& json, Message& message) {
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status.ToString() << " in:\n" << json;
}

// The value of "key:   value" in a command's key-value output; "<missing>" if there is none.
std::string field(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(key + ":")) continue;
    const size_t value = line.find_first_not_of(' ', key.size() + 1);
    return value == std::string::npos ? "" : line.substr(value);
  }
  return "<missing>";
}

// The cell under `column` in the row whose first cell is `key`, in a table printed with aligned
// columns (a header line, then one line per row); "<missing>" if there is no such row or column.
std::string cell(const std::string& table, const std::string& key, const std::string& column) {
  std::istringstream lines(table);
  std::string header;
  if (!std::getline(lines, header)) return "<missing>";
  // A column starts where a header word starts.
  std::vector<size_t> starts;
  std::vector<std::string> names;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] != ' ' && (i == 0 || header[i - 1] == ' ')) {
      starts.push_back(i);
      names.push_back(header.substr(i, header.find(' ', i) - i));
    }
  }
  const auto index = std::find(names.begin(), names.end(), column) - names.begin();
  if (static_cast<size_t>(index) == names.size()) return "<missing>";
  for (std::string line; std::getline(lines, line);) {
    if (line.substr(0, line.find(' ')) != key) continue;
    const size_t begin = starts[static_cast<size_t>(index)];
    if (begin >= line.size()) return "";
    const size_t next = static_cast<size_t>(index) + 1 < starts.size()
                            ? starts[static_cast<size_t>(index) + 1]
                            : std::string::npos;
    std::string text = line.substr(begin, next == std::string::npos ? next : next - begin);
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
  }
  return "<missing>";
}

// Reads until `size` bytes have come, the peer closes, or `deadline` passes.
std::string receive(int fd, size_t size, Clock::time_point deadline) {
  std::string received;
  char buf[4096];
  while (received.size() < size) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, millisLeft(deadline));
    if (ready == 0) break;
    if (ready < 0 && errno != EINTR) break;
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, size - received.size()), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (n > 0) received.append(buf, static_cast<size_t>(n));
  }
  return received;
}

// The evgate daemon, started on a configuration file; ok() once its admin API listens.
class Gateway {
 public:
  explicit Gateway(const std::string& configPath)
      : process_({EVGATE_BINARY, "--config", configPath}) {
    if (!process_.started()) return;
    const auto match = process_.waitForOutput(std::regex("admin API listening on ([0-9.]+:\\d+)"),
                                              kStartLimit, Process::Stream::kStderr);
    if (match) address_ = (*match)[1];
  }

  bool ok() const { return !address_.empty(); }
  const std::string& address() const { return address_; }
  // What it has logged so far (stderr).
  std::string log() const { return process_.err(); }
  Process& process() { return process_; }

  // Reads what it logged meanwhile: its pipes are read only while the test waits on it, and the
  // test mostly waits on evgatectl.
  void pump() {
    static const std::regex kNothing("[^\\s\\S]");
    process_.waitForOutput(kNothing, 1ms, Process::Stream::kStderr);
  }

 private:
  Process process_;
  std::string address_;
};

// One daemon per test with a cluster "backends" on an echo server and a listener "web".
class EvgatectlE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { startGateway("{ address: 127.0.0.1:0 }"); }

  void startGateway(const std::string& admin) {
    ASSERT_TRUE(backend_.ok());
    std::string yaml =
        "workers: 2\n"
        "drain_timeout: 5s\n"
        "access_log: { mode: off }\n"
        "metrics: { address: 127.0.0.1:0 }\n";
    yaml += "admin: " + admin + "\n";
    yaml += "state_file: " + stateFile() + "\n";
    yaml += "clusters:\n  - { name: backends, endpoints: [ \"" + backend_.address() + "\" ] }\n";
    yaml += "listeners:\n  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n";
    const std::string config = dir_.file("evgate.yaml");
    writeFile(config, yaml);
    gateway_ = std::make_unique<Gateway>(config);
    ASSERT_TRUE(gateway_->ok()) << gateway_->log();
  }

  std::string stateFile() const { return dir_.file("state.json"); }

  // evgatectl --address GATEWAY args...
  CtlResult ctl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {"--address", gateway_->address()});
    CtlResult result = runCtl(std::move(args), env);
    gateway_->pump();
    return result;
  }

  // ctl with a command line split at spaces ("listener get web").
  CtlResult ctl(const std::string& line, const std::vector<std::string>& env = {}) {
    return ctl(words(line), env);
  }

  // ctl(line + " -o json"), which must succeed, parsed.
  template <typename Message>
  Message ctlJson(const std::string& line) {
    const CtlResult result = ctl(line + " -o json");
    Message message;
    EXPECT_EQ(result.code, 0) << line << "\n" << result;
    EXPECT_TRUE(parseJson(result.out, message)) << line;
    return message;
  }

  // The port a listener is bound to, from `listener get NAME -o json`.
  uint16_t listenerPort(const std::string& name) {
    return portOf(ctlJson<v1::Listener>("listener get " + name).bound_address());
  }

  v1::ListFlowsResponse flows() { return ctlJson<v1::ListFlowsResponse>("flow list"); }

  EchoServer backend_;
  TempDir dir_;
  std::unique_ptr<Gateway> gateway_;
};

bool hasFlow(const v1::ListFlowsResponse& list, uint64_t id) {
  return std::any_of(list.flows().begin(), list.flows().end(),
                     [id](const v1::Flow& flow) { return flow.id() == id; });
}

int countEvents(const v1::ListEventsResponse& list, v1::EventOwner owner,
                const std::string& label) {
  return static_cast<int>(std::count_if(
      list.events().begin(), list.events().end(),
      [&](const v1::ReactorEvent& e) { return e.owner() == owner && e.label() == label; }));
}

TEST_F(EvgatectlE2eTest, StatusDescribesTheRunningGateway) {
  const CtlResult table = ctl("status");
  ASSERT_EQ(table.code, 0) << table;
  EXPECT_EQ(field(table.out, "workers"), "2") << table;
  EXPECT_EQ(field(table.out, "listeners"), "1") << table;
  EXPECT_EQ(field(table.out, "clusters"), "1") << table;
  EXPECT_EQ(field(table.out, "draining"), "no") << table;
  EXPECT_EQ(field(table.out, "state_file"), stateFile()) << table;
  EXPECT_EQ(table.err, "");

  const auto status = ctlJson<v1::Status>("status");
  EXPECT_FALSE(status.version().empty());
  EXPECT_EQ(status.workers(), 2u);
  EXPECT_EQ(status.listeners(), 1u);
  EXPECT_EQ(status.clusters(), 1u);
  EXPECT_EQ(status.state_file(), stateFile());
  EXPECT_EQ(status.config_file(), dir_.file("evgate.yaml"));
  EXPECT_FALSE(status.draining());
}

TEST_F(EvgatectlE2eTest, ClusterCommandsDecideWhichEndpointsGetFlows) {
  EchoServer second;
  EchoServer third;
  CtlResult r = ctl({"cluster", "create", "pool", "--endpoint", backend_.address(), "--endpoint",
                     second.address() + "=3", "--lb", "least_connections"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "lb"), "least_connections") << r;
  EXPECT_EQ(field(r.out, "source"), "api") << r;

  auto pool = ctlJson<v1::Cluster>("cluster get pool");
  ASSERT_EQ(pool.endpoints_size(), 2);
  EXPECT_EQ(pool.lb(), v1::LB_POLICY_LEAST_CONNECTIONS);
  EXPECT_EQ(pool.endpoints(1).address(), second.address());
  EXPECT_EQ(pool.endpoints(1).weight(), 3u);
  EXPECT_EQ(pool.source(), v1::SOURCE_API);

  r = ctl("cluster list");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(cell(r.out, "pool", "ENDPOINTS"), "2") << r;
  EXPECT_EQ(cell(r.out, "pool", "SOURCE"), "api") << r;
  EXPECT_EQ(cell(r.out, "backends", "LISTENERS"), "web") << r;
  EXPECT_EQ(cell(r.out, "backends", "SOURCE"), "file") << r;

  // Only the named fields change; endpoints that stay keep their weight.
  r = ctl("cluster update pool --lb round_robin --connect-timeout 2s");
  ASSERT_EQ(r.code, 0) << r;
  pool = ctlJson<v1::Cluster>("cluster get pool");
  EXPECT_EQ(pool.lb(), v1::LB_POLICY_ROUND_ROBIN);
  EXPECT_EQ(pool.connect_timeout().seconds(), 2);
  ASSERT_EQ(pool.endpoints_size(), 2);
  EXPECT_EQ(pool.endpoints(1).weight(), 3u);

  r = ctl({"cluster", "endpoint-add", "pool", third.address(), "--weight", "2"});
  ASSERT_EQ(r.code, 0) << r;
  r = ctl({"cluster", "endpoint", "pool", second.address(), "disabled"});
  ASSERT_EQ(r.code, 0) << r;
  r = ctl({"cluster", "endpoint", "pool", third.address(), "draining"});
  ASSERT_EQ(r.code, 0) << r;
  // The cluster's endpoints are the table after its key-value lines.
  const size_t endpoints = r.out.find("\nENDPOINT ");
  ASSERT_NE(endpoints, std::string::npos) << r;
  EXPECT_EQ(cell(r.out.substr(endpoints + 1), third.address(), "STATE"), "draining") << r;
  pool = ctlJson<v1::Cluster>("cluster get pool");
  ASSERT_EQ(pool.endpoints_size(), 3);
  EXPECT_EQ(pool.endpoints(1).state(), v1::ENDPOINT_STATE_DISABLED);
  EXPECT_EQ(pool.endpoints(2).address(), third.address());
  EXPECT_EQ(pool.endpoints(2).weight(), 2u);
  EXPECT_EQ(pool.endpoints(2).state(), v1::ENDPOINT_STATE_DRAINING);

  // Flows of a listener on the pool go only to the active endpoint.
  const auto api = ctlJson<v1::Listener>("listener create api --bind 127.0.0.1:0 --cluster pool");
  const int before = backend_.accepted();
  for (int i = 0; i < 4; ++i) {
    Fd client(connectTo(portOf(api.bound_address())));
    EXPECT_TRUE(echoes(client.get(), "to the active endpoint " + std::to_string(i)));
  }
  EXPECT_EQ(backend_.accepted() - before, 4);
  EXPECT_EQ(second.accepted(), 0);
  EXPECT_EQ(third.accepted(), 0);

  r = ctl({"cluster", "endpoint-remove", "pool", third.address()});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(ctlJson<v1::Cluster>("cluster get pool").endpoints_size(), 2);

  // A cluster in use is not deleted.
  r = ctl("cluster delete pool");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: FAILED_PRECONDITION: ")) << r;
  EXPECT_NE(r.err.find("api"), std::string::npos) << r;
  EXPECT_EQ(r.out, "");
  r = ctl("cluster delete backends");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: FAILED_PRECONDITION: ")) << r;
  EXPECT_EQ(ctlJson<v1::Cluster>("cluster get pool").endpoints_size(), 2);

  ASSERT_EQ(ctl("listener delete api --drain-timeout 0").code, 0);
  r = ctl("cluster delete pool");
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "cluster \"pool\" deleted\n");
  r = ctl("cluster get pool");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: NOT_FOUND: ")) << r;
}

TEST_F(EvgatectlE2eTest, DryRunValidatesAndChangesNothing) {
  const uint64_t generation = ctlJson<v1::Status>("status").config_generation();

  CtlResult r = ctl({"cluster", "create", "ghost", "--endpoint", backend_.address(), "--dry-run"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_NE(r.err.find("dry run"), std::string::npos) << r;
  r = ctl("cluster get ghost");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: NOT_FOUND: ")) << r;

  r = ctl("listener create ghost --bind 127.0.0.1:0 --cluster backends --dry-run -o json");
  EXPECT_EQ(r.code, 0) << r;
  v1::Listener ghost;
  EXPECT_TRUE(parseJson(r.out, ghost));
  // Answered as if applied, but nothing is bound.
  EXPECT_EQ(ghost.name(), "ghost");
  EXPECT_EQ(ghost.source(), v1::SOURCE_API);
  EXPECT_EQ(ghost.bound_address(), "");
  r = ctl("listener get ghost");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: NOT_FOUND: listener \"ghost\" not found\n");

  // A dry-run pause answers as if applied and leaves the listener accepting.
  r = ctl("listener pause web --dry-run");
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "paused"), "yes") << r;
  EXPECT_EQ(field(r.out, "source"), "api") << r;
  Fd client(connectTo(listenerPort("web")));
  EXPECT_TRUE(echoes(client.get(), "still relayed after a dry-run pause"));
  const auto web = ctlJson<v1::Listener>("listener get web");
  EXPECT_FALSE(web.paused());
  EXPECT_EQ(web.source(), v1::SOURCE_FILE);

  // A dry run is refused like the real thing when it would be.
  r = ctl("cluster delete backends --dry-run");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: FAILED_PRECONDITION: ")) << r;

  EXPECT_EQ(ctlJson<v1::Status>("status").config_generation(), generation);
}

TEST_F(EvgatectlE2eTest, ListenerCommandsRelayPauseResumeUpdateInPlaceAndDelete) {
  const auto created =
      ctlJson<v1::Listener>("listener create api --bind 127.0.0.1:0 --cluster backends");
  const uint16_t port = portOf(created.bound_address());
  ASSERT_NE(port, 0) << created.DebugString();
  EXPECT_EQ(created.cluster(), "backends");
  Fd held(connectTo(port));
  EXPECT_TRUE(echoes(held.get(), "relayed by a listener evgatectl made"));

  CtlResult r = ctl("listener list");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(cell(r.out, "api", "BOUND"), created.bound_address()) << r;
  EXPECT_EQ(cell(r.out, "api", "CLUSTER"), "backends") << r;
  EXPECT_EQ(cell(r.out, "web", "BIND"), "127.0.0.1:0") << r;

  // In place: the same port, and the open flow goes on.
  const auto updated =
      ctlJson<v1::Listener>("listener update api --max-connections 5 --idle-timeout 30s");
  EXPECT_EQ(updated.bound_address(), created.bound_address());
  EXPECT_EQ(updated.max_connections(), 5u);
  EXPECT_EQ(updated.idle_timeout().seconds(), 30);
  EXPECT_TRUE(echoes(held.get(), "the same flow after the update"));
  Fd fresh(connectTo(port));
  EXPECT_TRUE(echoes(fresh.get(), "a new flow after the update"));

  r = ctl("listener pause api");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "paused"), "yes") << r;
  EXPECT_TRUE(ctlJson<v1::Listener>("listener get api").paused());
  // The kernel still completes the handshake (the socket stays bound), but nothing is relayed.
  const std::string queuedBytes = "sent while paused";
  Fd queued(connectTo(port));
  ASSERT_GE(queued.get(), 0) << std::strerror(errno);
  const Exchange whilePaused =
      exchange(queued.get(), queuedBytes, Clock::now() + 300ms, /*toEof=*/false);
  EXPECT_EQ(whilePaused.end, "timeout");
  EXPECT_EQ(whilePaused.received, "");
  EXPECT_TRUE(echoes(held.get(), "open flows go on while paused"));

  r = ctl("listener resume api");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "paused"), "no") << r;
  // The queued client is accepted on resume and its bytes are relayed.
  EXPECT_EQ(receive(queued.get(), queuedBytes.size(), Clock::now() + 5s), queuedBytes);

  r = ctl("listener delete api --drain-timeout 0");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "listener \"api\" deleted; 3 flows draining\n");
  EXPECT_TRUE(closedByPeer(waitClosed(held.get(), Clock::now() + 5s)));
  EXPECT_TRUE(closedByPeer(waitClosed(queued.get(), Clock::now() + 5s)));
  Fd refused(connectTo(port));  // the sockets closed at once
  EXPECT_LT(refused.get(), 0);
  r = ctl("listener get api");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: NOT_FOUND: listener \"api\" not found\n");
}

TEST_F(EvgatectlE2eTest, FlowListShowsAnOpenFlowAndFlowCloseClosesIt) {
  const uint16_t port = listenerPort("web");
  Fd mine(connectTo(port));
  ASSERT_TRUE(echoes(mine.get(), "hello"));
  Fd other(connectTo(port));
  ASSERT_TRUE(echoes(other.get(), "the other one"));
  const std::string client = address(localPort(mine.get()));

  const v1::ListFlowsResponse list = flows();
  ASSERT_EQ(list.flows_size(), 2) << list.DebugString();
  const auto flow = std::find_if(list.flows().begin(), list.flows().end(),
                                 [&](const v1::Flow& f) { return f.client() == client; });
  ASSERT_NE(flow, list.flows().end()) << client << " not in\n" << list.DebugString();
  EXPECT_EQ(flow->listener(), "web");
  EXPECT_EQ(flow->cluster(), "backends");
  EXPECT_EQ(flow->upstream(), backend_.address());
  EXPECT_EQ(flow->state(), v1::FLOW_STATE_ESTABLISHED);
  EXPECT_EQ(flow->bytes_from_client(), 5u);
  EXPECT_EQ(flow->bytes_from_upstream(), 5u);
  const std::string id = std::to_string(flow->id());

  const CtlResult yaml = ctl("flow list -o yaml");
  ASSERT_EQ(yaml.code, 0) << yaml;
  try {
    const YAML::Node document = YAML::Load(yaml.out);
    ASSERT_TRUE(document["flows"].IsSequence()) << yaml;
    ASSERT_EQ(document["flows"].size(), 2u) << yaml;
    bool found = false;
    for (const YAML::Node& node : document["flows"]) {
      if (node["client"].as<std::string>() != client) continue;
      found = true;
      EXPECT_EQ(node["id"].as<std::string>(), id);
      EXPECT_EQ(node["listener"].as<std::string>(), "web");
      EXPECT_EQ(node["upstream"].as<std::string>(), backend_.address());
      EXPECT_EQ(node["bytes_from_client"].as<uint64_t>(), 5u);
    }
    EXPECT_TRUE(found) << client << " not in\n" << yaml;
  } catch (const YAML::Exception& e) {
    FAIL() << "flow list -o yaml does not parse: " << e.what() << "\n" << yaml;
  }

  const CtlResult table = ctl("flow list --listener web");
  ASSERT_EQ(table.code, 0) << table;
  EXPECT_EQ(cell(table.out, id, "CLIENT"), client) << table;
  EXPECT_EQ(cell(table.out, id, "STATE"), "established") << table;

  CtlResult r = ctl("flow close " + id);
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "flow " + id + " closed\n");
  EXPECT_TRUE(closedByPeer(waitClosed(mine.get(), Clock::now() + 5s)));
  EXPECT_TRUE(echoes(other.get(), "only the flow named was closed"));
  EXPECT_TRUE(eventually([&] { return !hasFlow(flows(), flow->id()); }));
  r = ctl("flow close " + id);
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: NOT_FOUND: ")) << r;
}

TEST_F(EvgatectlE2eTest, FlowCloseAllClosesAListenersFlowsAtTheRateGivenWithProgress) {
  const auto other = ctlJson<v1::Listener>(
      "listener create other --bind 127.0.0.1:0 "
      "--cluster backends");
  Fd bystander(connectTo(portOf(other.bound_address())));
  ASSERT_TRUE(echoes(bystander.get(), "on another listener"));
  const uint16_t port = listenerPort("web");
  constexpr int kClients = 25;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(connectTo(port));
    ASSERT_TRUE(echoes(clients.back().get(), "client " + std::to_string(i)));
  }
  ASSERT_EQ(flows().flows_size(), kClients + 1);

  // 100 a second: 10 in the first 100 ms step, so at least two more steps of 100 ms.
  const auto start = Clock::now();
  const CtlResult r = ctl("flow close-all --listener web --rate 100");
  const auto elapsed = Clock::now() - start;
  ASSERT_EQ(r.code, 0) << r;
  std::smatch progress;
  ASSERT_TRUE(std::regex_search(r.out, progress, std::regex("^closed (\\d+), remaining (\\d+)\n")))
      << r;
  EXPECT_EQ(std::stoi(progress[1]) + std::stoi(progress[2]), kClients) << r;
  EXPECT_GT(std::stoi(progress[2]), 0) << r;
  EXPECT_TRUE(r.out.ends_with("done: closed 25\n")) << r;
  EXPECT_GE(elapsed, 200ms);
  for (const Fd& client : clients) {
    EXPECT_TRUE(closedByPeer(waitClosed(client.get(), Clock::now() + 5s)));
  }
  EXPECT_TRUE(echoes(bystander.get(), "not the listener named"));
  EXPECT_TRUE(eventually([&] { return flows().flows_size() == 1; }));
}

TEST_F(EvgatectlE2eTest, EventCommandsScheduleAPauseListAndCancel) {
  EXPECT_EQ(countEvents(ctlJson<v1::ListEventsResponse>("event list"), v1::EVENT_OWNER_LISTENER,
                        "listener web"),
            2);  // one accept event per worker

  CtlResult r = ctl("event create later --after 1h --action resume-listener --listener web");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "trigger"), "after 1h") << r;
  r = ctl("event create soon --after 200ms --action pause-listener --listener web");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "action"), "pause-listener web") << r;
  EXPECT_TRUE(eventually([&] { return ctlJson<v1::Listener>("listener get web").paused(); }));

  // The one-shot event is gone once it fired; "later" waits as a timer on the control loop.
  r = ctl("event list");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\nlater +after 1h +resume-listener web +")))
      << r;
  EXPECT_TRUE(eventually(
      [&] { return ctlJson<v1::ListEventsResponse>("event list").scheduled_events_size() == 1; }));
  v1::ListEventsResponse events = ctlJson<v1::ListEventsResponse>("event list");
  ASSERT_EQ(events.scheduled_events_size(), 1);
  EXPECT_EQ(events.scheduled_events(0).name(), "later");
  EXPECT_EQ(countEvents(events, v1::EVENT_OWNER_SCHEDULED, "scheduled later"), 1);
  // Paused: the accept events are deleted.
  EXPECT_EQ(countEvents(events, v1::EVENT_OWNER_LISTENER, "listener web"), 0);

  r = ctl("event delete later");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "event \"later\" deleted\n");
  events = ctlJson<v1::ListEventsResponse>("event list");
  EXPECT_EQ(events.scheduled_events_size(), 0);
  EXPECT_EQ(countEvents(events, v1::EVENT_OWNER_SCHEDULED, "scheduled later"), 0);
  r = ctl("event delete later");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: NOT_FOUND: ")) << r;

  // An action without its target is a usage error; nothing is sent.
  r = ctl("event create bad --after 1s --action pause-listener");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("--listener"), std::string::npos) << r;
}

TEST_F(EvgatectlE2eTest, WatchPrintsEachChangeAsItHappens) {
  Process watch({EVGATECTL_BINARY, "--address", gateway_->address(), "watch", "-o", "json"},
                ctlEnvironment({}));
  ASSERT_TRUE(watch.started()) << watch.error();
  ASSERT_TRUE(eventually([&] { return ctlJson<v1::Status>("status").watchers() == 1; }));

  ASSERT_EQ(ctl({"cluster", "create", "watched", "--endpoint", backend_.address()}).code, 0);
  const auto created =
      watch.waitForOutput(std::regex("\\{[^\n]*\"cluster\":\"watched\"[^\n]*\\}\n"), kEffectLimit,
                          Process::Stream::kStdout);
  ASSERT_TRUE(created) << watch.out() << watch.err();
  v1::WatchEvent event;
  ASSERT_TRUE(parseJson((*created)[0], event));
  EXPECT_EQ(event.type(), v1::WATCH_EVENT_TYPE_CLUSTER_CREATED);
  EXPECT_GT(event.sequence(), 0u);

  ASSERT_EQ(ctl("listener pause web").code, 0);
  const auto paused =
      watch.waitForOutput(std::regex("\\{[^\n]*\"WATCH_EVENT_TYPE_LISTENER_PAUSED\"[^\n]*\\}\n"),
                          kEffectLimit, Process::Stream::kStdout);
  ASSERT_TRUE(paused) << watch.out() << watch.err();
  v1::WatchEvent next;
  ASSERT_TRUE(parseJson((*paused)[0], next));
  EXPECT_EQ(next.listener(), "web");
  EXPECT_EQ(next.sequence(), event.sequence() + 1);

  ASSERT_TRUE(watch.signal(SIGTERM));
  const auto exit = watch.wait(5s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal(), SIGTERM) << exit->describe();
  EXPECT_TRUE(eventually([&] { return ctlJson<v1::Status>("status").watchers() == 0; }));
}

TEST_F(EvgatectlE2eTest, ExitCodesSayWhoRefused) {
  CtlResult r = ctl("status --bogus");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r;
  r = ctl("-o xml status");
  EXPECT_EQ(r.code, 2) << r;
  // A bad duration is refused before anything is sent: web is not paused.
  r = ctl("listener pause web --for 5x");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("invalid duration"), std::string::npos) << r;
  EXPECT_FALSE(ctlJson<v1::Listener>("listener get web").paused());

  r = ctl("listener get nope");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(r.err, "error: NOT_FOUND: listener \"nope\" not found\n");
  EXPECT_EQ(r.out, "");

  const std::string closed = address(refusedPort());
  r = runCtl({"--address", closed, "--timeout", "1s", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_TRUE(r.err.starts_with("error: cannot reach the gateway at " + closed + ": ")) << r;
  EXPECT_EQ(r.out, "");
}

// A second daemon, whose admin API needs a token.
class EvgatectlTokenTest : public EvgatectlE2eTest {
 protected:
  void SetUp() override {
    writeFile(tokenFile(), "e2e-admin-token\n");
    writeFile(dir_.file("wrong-token"), "not-the-token\n");
    startGateway("{ address: 127.0.0.1:0, token_file: " + tokenFile() + " }");
  }

  std::string tokenFile() const { return dir_.file("token"); }
};

TEST_F(EvgatectlTokenTest, ACallNeedsTheTokenFromTheFlagOrTheEnvironment) {
  CtlResult r = ctl("status");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: UNAUTHENTICATED: ")) << r;
  r = ctl({"--token-file", dir_.file("wrong-token"), "status"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: UNAUTHENTICATED: ")) << r;
  // Refused, so not applied: web still relays.
  r = ctl("listener pause web");
  EXPECT_EQ(r.code, 1) << r;

  r = ctl({"--token-file", tokenFile(), "listener", "get", "web", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r;
  v1::Listener web;
  ASSERT_TRUE(parseJson(r.out, web));
  EXPECT_FALSE(web.paused());
  Fd client(connectTo(portOf(web.bound_address())));
  EXPECT_TRUE(echoes(client.get(), "an unauthenticated pause did nothing"));

  r = ctl("listener pause web", {"EVGATE_TOKEN_FILE=" + tokenFile()});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "paused"), "yes") << r;

  // EVGATE_ADDRESS instead of --address.
  r = runCtl({"status"},
             {"EVGATE_ADDRESS=" + gateway_->address(), "EVGATE_TOKEN_FILE=" + tokenFile()});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "workers"), "2") << r;
  // EVGATE_ADDRESS with the token from the flag.
  r = runCtl({"--token-file", tokenFile(), "--timeout", "1s", "listener", "get", "web"},
             {"EVGATE_ADDRESS=" + gateway_->address()});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(field(r.out, "paused"), "yes") << r;
}

// Last, as in an operator's session: the daemon exits once its open flow ends.
TEST_F(EvgatectlE2eTest, DrainStopsAcceptingAndTheDaemonExitsOnceFlowsEnd) {
  Fd open(connectTo(listenerPort("web")));
  ASSERT_TRUE(echoes(open.get(), "open before the drain"));

  CtlResult r = ctl("drain");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "draining: 1 flows open\n");
  EXPECT_TRUE(ctlJson<v1::Status>("status").draining());
  r = ctl("listener create late --bind 127.0.0.1:0 --cluster backends");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(r.err.starts_with("error: FAILED_PRECONDITION: ")) << r;
  EXPECT_TRUE(echoes(open.get(), "the open flow goes on"));

  open.reset();
  const auto exit = gateway_->process().wait(10s);
  ASSERT_TRUE(exit.has_value()) << "still running 10 s after its last flow ended";
  EXPECT_EQ(exit->code(), 0) << exit->describe() << "\n" << gateway_->log();
  r = ctl("--timeout 1s status");
  EXPECT_EQ(r.code, 3) << r;
}

}  // namespace
}  // namespace evgate::test
