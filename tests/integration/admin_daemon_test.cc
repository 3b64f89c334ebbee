// The admin API of the real evgate daemon on 127.0.0.1: listeners created over gRPC relay, health
// and reflection answer, the Drain RPC, restarts that bring API changes back from the state
// file (also after kill -9 at random points of a churn of changes), SIGHUP next to API changes, a
// scheduled event on the real clock, and the refusal of an exposed admin address without
// credentials.

#include "tests/integration/admin_daemon.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/integration/figures.h"
#include "tests/integration/grpc_probe.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;
using google::protobuf::util::TimeUtil;

constexpr auto kStartLimit = 10s;

using Daemon = AdminDaemon;

std::string configYaml(const EchoServer& backend, const std::string& stateFile,
                       const std::string& listeners = "") {
  return "workers: 2\n"
         "drain_timeout: 5s\n"
         "access_log: { mode: off }\n"
         "admin: { address: 127.0.0.1:0 }\n"
         "metrics: { address: 127.0.0.1:0 }\n" +
         (stateFile.empty() ? "" : "state_file: " + stateFile + "\n") +
         "clusters:\n"
         "  - name: backends\n"
         "    endpoints: [ \"" +
         backend.address() + "\" ]\n" + (listeners.empty() ? "" : "listeners:\n" + listeners);
}

grpc::Status createListener(v1::Admin::Stub& stub, const std::string& name, v1::Listener* out) {
  v1::CreateListenerRequest request;
  request.mutable_listener()->set_name(name);
  request.mutable_listener()->set_bind("127.0.0.1:0");
  request.mutable_listener()->set_cluster("backends");
  v1::Listener ignored;
  return stub.CreateListener(callContext().get(), request, out != nullptr ? out : &ignored);
}

std::set<std::string> listenerNames(v1::Admin::Stub& stub) {
  v1::ListListenersRequest request;
  request.set_page_size(1000);
  v1::ListListenersResponse response;
  EXPECT_TRUE(stub.ListListeners(callContext().get(), request, &response).ok());
  std::set<std::string> names;
  for (const v1::Listener& listener : response.listeners()) names.insert(listener.name());
  return names;
}

Process::Exit stopDaemon(Daemon& daemon) {
  const Process::Exit exit = stopAdminDaemon(daemon);
  EXPECT_NE(exit.raw, -1) << "still running 10 s after SIGTERM";
  return exit;
}

TEST(AdminDaemonTest, AListenerCreatedOverTheApiRelaysAndHealthAndReflectionAnswer) {
  EchoServer backend;
  TempDir dir;
  writeFile(dir.file("evgate.yaml"), configYaml(backend, ""));
  Daemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();

  EXPECT_EQ(healthStatus(daemon.channel(), ""), 1);
  EXPECT_EQ(healthStatus(daemon.channel(), "evgate.admin.v1.Admin"), 1);
  EXPECT_NE(reflectionListServices(daemon.channel()).find("evgate.admin.v1.Admin"),
            std::string::npos);

  v1::Listener listener;
  ASSERT_TRUE(createListener(daemon.stub(), "api", &listener).ok());
  Fd client(connectTo(portOf(listener.bound_address())));
  EXPECT_TRUE(echoes(client.get(), "relayed by a listener made over gRPC"));
  client.reset();
  EXPECT_EQ(stopDaemon(daemon).code(), 0) << daemon.output();
  EXPECT_NE(daemon.output().find("audit: who=local method=CreateListener target=listener/api "
                                 "result=OK"),
            std::string::npos);
}

TEST(AdminDaemonTest, TheDrainRpcTurnsHealthNotServingAndTheDaemonExitsWhenFlowsEnd) {
  EchoServer backend;
  TempDir dir;
  writeFile(dir.file("evgate.yaml"),
            configYaml(backend, "", "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n"));
  Daemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  v1::GetListenerRequest get;
  get.set_name("web");
  v1::Listener web;
  ASSERT_TRUE(daemon.stub().GetListener(callContext().get(), get, &web).ok());
  Fd open(connectTo(portOf(web.bound_address())));
  ASSERT_TRUE(echoes(open.get(), "open before the drain"));

  v1::DrainRequest drain;
  v1::DrainResponse drained;
  ASSERT_TRUE(daemon.stub().Drain(callContext().get(), drain, &drained).ok());
  EXPECT_EQ(drained.active_flows(), 1u);
  EXPECT_EQ(healthStatus(daemon.channel(), ""), 2);  // NOT_SERVING at once
  v1::Status status;
  ASSERT_TRUE(daemon.stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_TRUE(status.draining());
  // Changes are refused while draining.
  EXPECT_EQ(createListener(daemon.stub(), "late", nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(echoes(open.get(), "the open flow goes on"));
  open.reset();
  const auto exit = daemon.process().wait(10s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code(), 0);
}

// admin.health_address: a plaintext health-only port for probes (Kubernetes' grpc probes speak
// neither TLS nor tokens). Readiness ("") turns NOT_SERVING when a drain starts; liveness
// ("evgate.liveness") stays SERVING until the process exits; the Admin service is not there.
TEST(AdminDaemonTest, TheHealthAddressAnswersProbesWithoutCredentialsAndOnlyThem) {
  EchoServer backend;
  TempDir dir;
  writeFile(dir.file("token"), "s3cret-token\n");
  std::string yaml =
      configYaml(backend, "", "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n");
  const std::string adminLine = "admin: { address: 127.0.0.1:0 }\n";
  yaml.replace(yaml.find(adminLine), adminLine.size(),
               "admin: { address: 127.0.0.1:0, health_address: 127.0.0.1:0, token_file: " +
                   dir.file("token") + " }\n");
  writeFile(dir.file("evgate.yaml"), yaml);
  Daemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  const auto healthLine =
      daemon.process().waitForOutput(std::regex(R"(health checks listening on 127\.0\.0\.1:(\d+))"),
                                     kStartLimit, Process::Stream::kStderr);
  ASSERT_TRUE(healthLine) << daemon.output();
  const auto health =
      grpc::CreateChannel("127.0.0.1:" + (*healthLine)[1], grpc::InsecureChannelCredentials());

  EXPECT_EQ(healthStatus(health, ""), 1);
  EXPECT_EQ(healthStatus(health, "evgate.admin.v1.Admin"), 1);
  EXPECT_EQ(healthStatus(health, "evgate.liveness"), 1);
  EXPECT_EQ(healthStatus(daemon.channel(), "evgate.liveness"), 1);
  // Only health checks: the Admin service is not served on this port, token or not.
  auto healthStub = v1::Admin::NewStub(health);
  v1::Status status;
  EXPECT_EQ(healthStub->GetStatus(callContext().get(), {}, &status).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  // The admin port itself still wants the token.
  EXPECT_EQ(daemon.stub().GetStatus(callContext().get(), {}, &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::GetListenerRequest get;
  get.set_name("web");
  v1::Listener web;
  auto withToken = callContext();
  withToken->AddMetadata("authorization", "Bearer s3cret-token");
  ASSERT_TRUE(daemon.stub().GetListener(withToken.get(), get, &web).ok());
  Fd open(connectTo(portOf(web.bound_address())));
  ASSERT_TRUE(echoes(open.get(), "keeps the drain waiting"));
  ASSERT_TRUE(daemon.process().signal(SIGTERM));
  ASSERT_TRUE(eventually([&] { return healthStatus(health, "") == 2; }));
  EXPECT_EQ(healthStatus(health, "evgate.admin.v1.Admin"), 2);
  EXPECT_EQ(healthStatus(daemon.channel(), ""), 2);
  // Draining is alive: a liveness probe must not restart a pod that is finishing its flows.
  EXPECT_EQ(healthStatus(health, "evgate.liveness"), 1);
  EXPECT_EQ(healthStatus(daemon.channel(), "evgate.liveness"), 1);
  open.reset();
  const auto exit = daemon.process().wait(10s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code(), 0) << daemon.output();
}

TEST(AdminDaemonTest, ARestartBringsBackEveryApiChangeFromTheStateFile) {
  EchoServer backend;
  EchoServer second;
  TempDir dir;
  const std::string state = dir.file("state.yaml");
  writeFile(
      dir.file("evgate.yaml"),
      configYaml(backend, state, "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n"));
  {
    Daemon daemon(dir.file("evgate.yaml"));
    ASSERT_TRUE(daemon.ok()) << daemon.output();
    v1::CreateClusterRequest cluster;
    cluster.mutable_cluster()->set_name("pool");
    cluster.mutable_cluster()->add_endpoints()->set_address(backend.address());
    cluster.mutable_cluster()->add_endpoints()->set_address(second.address());
    v1::Cluster created;
    ASSERT_TRUE(daemon.stub().CreateCluster(callContext().get(), cluster, &created).ok());
    v1::SetEndpointStateRequest disable;
    disable.set_cluster("pool");
    disable.set_address(second.address());
    disable.set_state(v1::ENDPOINT_STATE_DISABLED);
    ASSERT_TRUE(daemon.stub().SetEndpointState(callContext().get(), disable, &created).ok());
    v1::CreateListenerRequest listener;
    listener.mutable_listener()->set_name("api");
    listener.mutable_listener()->set_bind("127.0.0.1:0");
    listener.mutable_listener()->set_cluster("pool");
    listener.mutable_listener()->set_max_connections(42);
    v1::Listener made;
    ASSERT_TRUE(daemon.stub().CreateListener(callContext().get(), listener, &made).ok());
    v1::PauseListenerRequest pause;
    pause.set_name("web");
    ASSERT_TRUE(daemon.stub().PauseListener(callContext().get(), pause, &made).ok());
    v1::CreateEventRequest event;
    event.mutable_event()->set_name("tomorrow");
    *event.mutable_event()->mutable_after() = TimeUtil::SecondsToDuration(86400);
    event.mutable_event()->mutable_action()->set_resume_listener("web");
    v1::ScheduledEvent scheduled;
    ASSERT_TRUE(daemon.stub().CreateEvent(callContext().get(), event, &scheduled).ok());
    EXPECT_EQ(stopDaemon(daemon).code(), 0);
  }
  Daemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  v1::GetListenerRequest get;
  get.set_name("api");
  v1::Listener api;
  ASSERT_TRUE(daemon.stub().GetListener(callContext().get(), get, &api).ok());
  EXPECT_EQ(api.cluster(), "pool");
  EXPECT_EQ(api.max_connections(), 42u);
  EXPECT_EQ(api.source(), v1::SOURCE_API);
  get.set_name("web");
  v1::Listener web;
  ASSERT_TRUE(daemon.stub().GetListener(callContext().get(), get, &web).ok());
  EXPECT_TRUE(web.paused());
  v1::GetClusterRequest getCluster;
  getCluster.set_name("pool");
  v1::Cluster pool;
  ASSERT_TRUE(daemon.stub().GetCluster(callContext().get(), getCluster, &pool).ok());
  ASSERT_EQ(pool.endpoints_size(), 2);
  EXPECT_EQ(pool.endpoints(1).state(), v1::ENDPOINT_STATE_DISABLED);
  v1::ListEventsResponse events;
  ASSERT_TRUE(daemon.stub().ListEvents(callContext().get(), {}, &events).ok());
  ASSERT_EQ(events.scheduled_events_size(), 1);
  EXPECT_EQ(events.scheduled_events(0).name(), "tomorrow");
  // The restored listener relays, only to the endpoint that is not disabled.
  Fd client(connectTo(portOf(api.bound_address())));
  EXPECT_TRUE(echoes(client.get(), "after the restart"));
  EXPECT_EQ(second.accepted(), 0);
}

// What the admin API's changes build, as a daemon lists it: listeners with their connection
// limit, clusters with their endpoints.
struct ApiState {
  std::map<std::string, uint32_t> listeners;
  std::map<std::string, std::set<std::string>> clusters;

  bool operator==(const ApiState&) const = default;
};

std::ostream& operator<<(std::ostream& out, const ApiState& state) {
  out << "listeners {";
  for (const auto& [name, limit] : state.listeners) out << ' ' << name << '/' << limit;
  out << " } clusters {";
  for (const auto& [name, endpoints] : state.clusters) {
    out << ' ' << name << '[' << endpoints.size() << ']';
  }
  return out << " }";
}

ApiState listedState(v1::Admin::Stub& stub) {
  ApiState state;
  v1::ListListenersRequest listeners;
  listeners.set_page_size(1000);
  v1::ListListenersResponse listed;
  EXPECT_TRUE(stub.ListListeners(callContext().get(), listeners, &listed).ok());
  for (const v1::Listener& listener : listed.listeners()) {
    state.listeners[listener.name()] = listener.max_connections();
  }
  v1::ListClustersRequest clusters;
  clusters.set_page_size(1000);
  v1::ListClustersResponse clustersListed;
  EXPECT_TRUE(stub.ListClusters(callContext().get(), clusters, &clustersListed).ok());
  for (const v1::Cluster& cluster : clustersListed.clusters()) {
    auto& endpoints = state.clusters[cluster.name()];
    for (const v1::Endpoint& endpoint : cluster.endpoints()) endpoints.insert(endpoint.address());
  }
  return state;
}

// The churn below as a list of changes: every resource kind the state file keeps, created,
// updated and deleted. Change n belongs to cycle n / 6, whose cluster c<k> and listener l<k>
// (k = 6 * cycle) live on after an even cycle and are deleted in an odd one.
struct Change {
  int n;

  int cycle() const { return n / 6; }
  int step() const { return n % 6; }
  std::string cluster() const { return "c" + std::to_string(6 * cycle()); }
  std::string listener() const { return "l" + std::to_string(6 * cycle()); }
  std::string extraEndpoint() const { return "127.0.0.1:" + std::to_string(20000 + cycle()); }
  bool deletes() const { return cycle() % 2 == 1; }
  // The listener's connection limit, set when it is created and by each update.
  uint32_t limit() const { return static_cast<uint32_t>(100 * step() + n); }

  void applyTo(ApiState& state, const std::string& backend) const {
    switch (step()) {
      case 0:
        state.clusters[cluster()] = {backend};
        break;
      case 1:
        state.listeners[listener()] = limit();
        break;
      case 2:
        state.clusters[cluster()].insert(extraEndpoint());
        break;
      case 3:
        state.listeners[listener()] = limit();
        break;
      case 4:
        if (deletes()) {
          state.listeners.erase(listener());
        } else {
          state.clusters[cluster()].erase(extraEndpoint());
        }
        break;
      default:
        if (deletes()) {
          state.clusters.erase(cluster());
        } else {
          state.listeners[listener()] = limit();
        }
    }
  }

  grpc::Status send(v1::Admin::Stub& stub, const std::string& backend) const {
    const auto updateLimit = [&] {
      v1::UpdateListenerRequest request;
      request.mutable_listener()->set_name(listener());
      request.mutable_listener()->set_max_connections(limit());
      request.mutable_update_mask()->add_paths("max_connections");
      v1::Listener response;
      return stub.UpdateListener(callContext().get(), request, &response);
    };
    switch (step()) {
      case 0: {
        v1::CreateClusterRequest request;
        request.mutable_cluster()->set_name(cluster());
        request.mutable_cluster()->add_endpoints()->set_address(backend);
        v1::Cluster response;
        return stub.CreateCluster(callContext().get(), request, &response);
      }
      case 1: {
        v1::CreateListenerRequest request;
        request.mutable_listener()->set_name(listener());
        request.mutable_listener()->set_bind("127.0.0.1:0");
        request.mutable_listener()->set_cluster(cluster());
        request.mutable_listener()->set_max_connections(limit());
        v1::Listener response;
        return stub.CreateListener(callContext().get(), request, &response);
      }
      case 2: {
        v1::AddEndpointRequest request;
        request.set_cluster(cluster());
        request.mutable_endpoint()->set_address(extraEndpoint());
        v1::Cluster response;
        return stub.AddEndpoint(callContext().get(), request, &response);
      }
      case 3:
        return updateLimit();
      case 4: {
        if (!deletes()) {
          v1::RemoveEndpointRequest request;
          request.set_cluster(cluster());
          request.set_address(extraEndpoint());
          v1::Cluster response;
          return stub.RemoveEndpoint(callContext().get(), request, &response);
        }
        v1::DeleteListenerRequest request;
        request.set_name(listener());
        request.mutable_drain_timeout()->set_seconds(0);
        v1::DeleteListenerResponse response;
        return stub.DeleteListener(callContext().get(), request, &response);
      }
      default: {
        if (!deletes()) return updateLimit();
        v1::DeleteClusterRequest request;
        request.set_name(cluster());
        v1::DeleteClusterResponse response;
        return stub.DeleteCluster(callContext().get(), request, &response);
      }
    }
  }
};

// How many of the state file's temporary files (".NAME.tmp-XXXXXX", admin/state_file.h) lie
// next to it.
int temporariesBeside(const std::string& stateFile) {
  const std::filesystem::path path(stateFile);
  const std::string prefix = "." + path.filename().string() + ".tmp-";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path.parent_path())) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) ++count;
  }
  return count;
}

// Kill rounds: EVGATE_KILL_ROUNDS if set, else 32 (release) or 10 (sanitizers, where a daemon's
// start and stop cost several times more).
int killRounds() {
  if (const char* rounds = std::getenv("EVGATE_KILL_ROUNDS")) return std::max(1, std::atoi(rounds));
  return kSanitized ? 10 : 32;
}

// The seed of the kill points: EVGATE_KILL_SEED to replay a failure, else a fresh one.
uint64_t killSeed() {
  if (const char* seed = std::getenv("EVGATE_KILL_SEED")) return std::strtoull(seed, nullptr, 10);
  return std::random_device{}();
}

TEST(AdminDaemonTest, KillNineAtRandomPointsLeavesAStateFileEqualToAPrefixOfTheAcknowledged) {
  EchoServer backend;
  const uint64_t seed = killSeed();
  std::mt19937_64 random(seed);
  const int rounds = killRounds();
  int restoredInFlight = 0;
  int staleRemoved = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " of EVGATE_KILL_SEED=" + std::to_string(seed));
    TempDir dir;
    const std::string state = dir.file("state.yaml");
    writeFile(dir.file("evgate.yaml"), configYaml(backend, state));
    // Each round restarts from an empty state file: the kill point is the variable. Whether a
    // restart also carries the state over is ARestartBringsBackEveryApiChangeFromTheStateFile.
    std::atomic<int> acknowledged{0};
    // A random point: after 1 to 48 acknowledged changes (up to eight cycles, so every kind of
    // change is sometimes the one in flight), then 0 to 3 ms later, so the kill lands anywhere
    // in the next change: validation, the state file's write, fsync and rename, the answer.
    const int killAfter = std::uniform_int_distribution<int>(1, 48)(random);
    const auto delay =
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(random));
    {
      Daemon daemon(dir.file("evgate.yaml"));
      ASSERT_TRUE(daemon.ok()) << daemon.output();
      std::atomic<bool> stop{false};
      std::atomic<bool> failed{false};
      std::string failure;  // written before `failed` is set, read after the join
      std::thread churn([&] {
        for (int n = 0; !stop.load(); ++n) {
          if (const grpc::Status status = Change{n}.send(daemon.stub(), backend.address());
              !status.ok()) {
            failure = "change " + std::to_string(n) + ": " + status.error_message();
            failed.store(true);
            return;  // the daemon is gone
          }
          acknowledged.store(n + 1);
        }
      });
      const auto deadline = std::chrono::steady_clock::now() + 20s;
      while (acknowledged.load() < killAfter && !failed.load() &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      const auto killAt = std::chrono::steady_clock::now() + delay;
      while (std::chrono::steady_clock::now() < killAt) std::this_thread::yield();
      daemon.process().signal(SIGKILL);
      ASSERT_TRUE(daemon.process().wait(10s).has_value());
      stop.store(true);
      churn.join();
      ASSERT_GE(acknowledged.load(), killAfter)
          << "a change failed before the kill: " << failure << "\n"
          << daemon.output();
    }
    const int leftovers = temporariesBeside(state);
    Daemon restarted(dir.file("evgate.yaml"));
    ASSERT_TRUE(restarted.ok()) << restarted.output();
    const ApiState restored = listedState(restarted.stub());
    // Every acknowledged change, and perhaps the one in flight when the kill came (written but
    // not yet answered); nothing else, nothing half applied.
    const int acked = acknowledged.load();
    ApiState expected;
    expected.clusters["backends"] = {backend.address()};
    for (int n = 0; n < acked; ++n) Change{n}.applyTo(expected, backend.address());
    ApiState withInFlight = expected;
    Change{acked}.applyTo(withInFlight, backend.address());
    EXPECT_TRUE(restored == expected || restored == withInFlight)
        << acked << " acknowledged\n restored " << restored << "\n expected " << expected
        << "\n or       " << withInFlight;
    if (restored == withInFlight && !(restored == expected)) ++restoredInFlight;
    // The temporary file of a write the kill cut short is gone after the restart.
    staleRemoved += leftovers;
    EXPECT_EQ(temporariesBeside(state), 0);
    if (leftovers > 0) {
      EXPECT_NE(restarted.output().find("temporary file(s) left by an interrupted write"),
                std::string::npos)
          << restarted.output();
    }
    EXPECT_EQ(stopDaemon(restarted).code(), 0);
  }
  std::cout << "[ figure   ] " << rounds << " kills (EVGATE_KILL_SEED=" << seed << "), "
            << restoredInFlight << " restored the change in flight, " << staleRemoved
            << " temporary file(s) of a cut-off write removed at restart\n";
}

TEST(AdminDaemonTest, SighupReloadsTheFileAndKeepsApiChangesOverIt) {
  EchoServer backend;
  TempDir dir;
  const std::string config = dir.file("evgate.yaml");
  writeFile(config, configYaml(backend, "",
                               "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n"
                               "  - { name: old, bind: 127.0.0.1:0, cluster: backends }\n"));
  Daemon daemon(config);
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  ASSERT_TRUE(createListener(daemon.stub(), "api", nullptr).ok());
  v1::UpdateListenerRequest update;
  update.mutable_listener()->set_name("web");
  update.mutable_listener()->set_max_connections(7);
  update.mutable_update_mask()->add_paths("max_connections");
  v1::Listener updated;
  ASSERT_TRUE(daemon.stub().UpdateListener(callContext().get(), update, &updated).ok());

  // The file now: web with another limit (the API's version wins), "old" gone, "new" added.
  writeFile(config, configYaml(backend, "",
                               "  - { name: web, bind: 127.0.0.1:0, cluster: backends, "
                               "max_connections: 99 }\n"
                               "  - { name: new, bind: 127.0.0.1:0, cluster: backends }\n"));
  v1::WatchRequest watch;
  auto watchContext = callContext();
  auto stream = daemon.stub().Watch(watchContext.get(), watch);
  // Subscribed once GetStatus counts the watcher.
  for (int i = 0; i < 2500; ++i) {
    v1::Status status;
    if (daemon.stub().GetStatus(callContext().get(), {}, &status).ok() && status.watchers() == 1) {
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  daemon.process().signal(SIGHUP);
  v1::WatchEvent event;
  bool reloaded = false;
  while (!reloaded && stream->Read(&event)) {
    reloaded = event.type() == v1::WATCH_EVENT_TYPE_CONFIG_RELOADED;
  }
  ASSERT_TRUE(reloaded);
  watchContext->TryCancel();
  EXPECT_EQ(listenerNames(daemon.stub()), (std::set<std::string>{"api", "new", "web"}));
  v1::GetListenerRequest get;
  get.set_name("web");
  v1::Listener web;
  ASSERT_TRUE(daemon.stub().GetListener(callContext().get(), get, &web).ok());
  EXPECT_EQ(web.max_connections(), 7u);
  EXPECT_EQ(web.source(), v1::SOURCE_API);
}

TEST(AdminDaemonTest, AScheduledEventFiresOnTimeOnTheRealClock) {
  EchoServer backend;
  TempDir dir;
  writeFile(dir.file("evgate.yaml"),
            configYaml(backend, "", "  - { name: web, bind: 127.0.0.1:0, cluster: backends }\n"));
  Daemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  v1::WatchRequest watch;
  auto watchContext = callContext();
  auto stream = daemon.stub().Watch(watchContext.get(), watch);
  v1::CreateEventRequest request;
  request.mutable_event()->set_name("soon");
  *request.mutable_event()->mutable_after() = TimeUtil::MillisecondsToDuration(300);
  request.mutable_event()->mutable_action()->set_pause_listener("web");
  v1::ScheduledEvent created;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(daemon.stub().CreateEvent(callContext().get(), request, &created).ok());
  v1::WatchEvent event;
  bool fired = false;
  while (!fired && stream->Read(&event)) {
    fired = event.type() == v1::WATCH_EVENT_TYPE_SCHEDULED_EVENT_FIRED;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(fired);
  EXPECT_EQ(event.scheduled_event(), "soon");
  EXPECT_EQ(event.detail(), "ok");
  // On time: not early, and late by less than a generous margin for a loaded machine.
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 300ms + 2s);
  watchContext->TryCancel();
}

TEST(AdminDaemonTest, AnExposedAdminAddressNeedsCredentialsOrAnExplicitInsecure) {
  EchoServer backend;
  TempDir dir;
  std::string yaml = configYaml(backend, "");
  yaml.replace(yaml.find("127.0.0.1:0 }"), 13, "0.0.0.0:0 }");
  writeFile(dir.file("exposed.yaml"), yaml);
  Process refused({EVGATE_BINARY, "--config", dir.file("exposed.yaml")});
  const auto exit = refused.wait(kStartLimit);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code(), 1);
  EXPECT_NE(refused.err().find("admin.address"), std::string::npos) << refused.err();

  yaml.replace(yaml.find("0.0.0.0:0 }"), 11, "0.0.0.0:0, insecure: true }");
  writeFile(dir.file("insecure.yaml"), yaml);
  Daemon daemon(dir.file("insecure.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  EXPECT_NE(daemon.output().find("warn"), std::string::npos);
  EXPECT_EQ(stopDaemon(daemon).code(), 0);
}

}  // namespace
}  // namespace evgate::test
