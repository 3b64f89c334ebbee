// Gateway over real loopback sockets: reload in place and all-or-nothing, pause, listener ids,
// cluster state across reloads, flow queries, the event table and notices. The gateway's workers
// run on their own threads; the test thread is the owner.

#include "gateway/gateway.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/config/cidr.h"
#include "gateway/worker.h"
#include "reactor/socket_address.h"
#include "tests/gateway/gateway_test_util.h"
#include "tests/gateway/notice_recorder.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using reactor::SocketAddress;
using testing::baseConfig;
using testing::closedByPeer;
using testing::clusterOf;
using testing::connectTo;
using testing::EchoBackend;
using testing::echoes;
using testing::eventually;
using testing::listenerOf;
using testing::listening;
using testing::NoticeRecorder;
using testing::receive;
using testing::sendAll;
using testing::UniqueFd;
using testing::waitClosed;

// Connections the listener closed at accept for `reason`, over all workers.
uint64_t rejected(const ListenerState& listener, size_t reason) {
  return stats::sumOver(listener.stats->workers, [reason](const stats::ListenerCounters& c) {
    return c.rejected[reason].value();
  });
}

// A socket opener that records what it opened and can make the N-th call fail (the Gateway's
// test seam). Called on the owner's thread only.
struct Opener {
  enum class Failure { kCannotOpen, kNotListening };

  int calls = 0;
  int failAt = 0;  // 1-based; 0: never
  Failure failure = Failure::kCannotOpen;
  std::vector<SocketAddress> opened;  // each returned socket's local address, in call order

  Gateway::SocketOpener function() {
    return [this](const SocketAddress& address) {
      ++calls;
      int fd = -1;
      if (calls != failAt) {
        fd = openListeningSocket(address);
      } else if (failure == Failure::kNotListening) {
        // A socket Listener::adopt() refuses: not listening.
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      } else {
        errno = EADDRINUSE;
        return -1;
      }
      if (fd >= 0) opened.push_back(SocketAddress::localOf(fd).value_or(SocketAddress()));
      return fd;
    };
  }
};

// The first open flow of `gateway` (there is exactly one in the tests that use it).
FlowInfo onlyFlow(const Gateway& gateway) {
  const std::vector<FlowInfo> flows = gateway.listFlows(FlowFilter{}, 0, 10);
  EXPECT_EQ(flows.size(), 1u);
  return flows.empty() ? FlowInfo{} : flows[0];
}

size_t countLabelled(const std::vector<LoopEvents>& loops, const std::string& label) {
  size_t count = 0;
  for (const LoopEvents& loop : loops) {
    for (const reactor::EventInfo& event : loop.events) count += event.label == label ? 1 : 0;
  }
  return count;
}

// Captures the process log (stderr) while a reload runs; returns the "reloaded..." line.
std::string reloadLogged(Gateway& gateway, Config next, std::string_view cause = {}) {
  ::testing::internal::CaptureStderr();
  const std::optional<std::string> error = gateway.reload(std::move(next), cause);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(error) << *error;
  const size_t at = log.find("reloaded");
  return at == std::string::npos ? log : log.substr(at, log.find('\n', at) - at);
}

// ---- Listener ids
// --------------------------------------------------------------------------------

TEST(GatewayTest, ListenerIdsAreUniqueAndNeverReused) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  config.listeners.push_back(listenerOf("api", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  std::set<uint64_t> ids;
  for (const auto& listener : gateway.listeners()) ids.insert(listener->id);
  EXPECT_EQ(ids.size(), 2u);
  const uint64_t web = gateway.listeners()[0]->id;

  // Updated in place: the same listener.
  Config updated = config;
  updated.listeners[0].maxConnections = 7;
  ASSERT_FALSE(gateway.reload(updated));
  EXPECT_EQ(gateway.listeners()[0]->id, web);

  // A new bind replaces it: a new id.
  Config moved = updated;
  moved.listeners[0].bind = *SocketAddress::parse("127.0.0.2:0");
  ASSERT_FALSE(gateway.reload(moved));
  EXPECT_TRUE(ids.insert(gateway.listeners()[0]->id).second);

  // Deleted, then created again under the same name: another new id.
  Config without = moved;
  without.listeners.erase(without.listeners.begin());
  ASSERT_FALSE(gateway.reload(without));
  ASSERT_FALSE(gateway.reload(moved));
  EXPECT_TRUE(ids.insert(gateway.listeners()[0]->id).second);
  EXPECT_EQ(ids.size(), 4u);

  // Another Gateway in the same process does not reuse them either.
  Gateway second(config);
  ASSERT_FALSE(second.start());
  for (const auto& listener : second.listeners()) EXPECT_TRUE(ids.insert(listener->id).second);
}

// ---- Reload in place
// -----------------------------------------------------------------------------

TEST(GatewayTest, AListenerChangedOnTheSameBindKeepsItsSocketsAndStateAndOpenFlowsKeepTheirs) {
  EchoBackend first;
  EchoBackend second;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("one", {first.address()}));
  config.clusters.push_back(clusterOf("two", {second.address()}));
  config.listeners.push_back(listenerOf("web", "one"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const std::shared_ptr<ListenerState> web = gateway.listeners()[0];
  const SocketAddress bound = web->bound;
  UniqueFd old = connectTo(bound);
  ASSERT_TRUE(echoes(old.get(), "old flow"));

  // Another cluster and a short idle timeout for new flows.
  Config next = config;
  next.listeners[0].cluster = "two";
  next.listeners[0].idleTimeout = 200ms;
  EXPECT_EQ(reloadLogged(gateway, next),
            "reloaded: +0 listeners, -0 listeners, 1 listeners updated, 0 clusters changed");
  ASSERT_EQ(gateway.listeners().size(), 1u);
  EXPECT_EQ(gateway.listeners()[0], web);  // same state, same id, same sockets
  EXPECT_EQ(web->bound, bound);
  EXPECT_EQ(web->config, next.listeners[0]);
  EXPECT_EQ(web->cluster, gateway.clusters()[1]);
  EXPECT_EQ(web->connections.load(), 1u);  // the open flow still counts

  UniqueFd fresh = connectTo(bound);
  ASSERT_TRUE(echoes(fresh.get(), "new flow"));
  EXPECT_EQ(second.accepted(), 1);
  // The new flow has the new idle timeout; the old one keeps 300 s and its cluster.
  EXPECT_EQ(waitClosed(fresh.get()), "eof");
  EXPECT_TRUE(echoes(old.get(), "old flow still relays"));
  EXPECT_EQ(first.accepted(), 1);
  const FlowInfo info = onlyFlow(gateway);
  EXPECT_EQ(info.cluster, "one");
  EXPECT_EQ(info.listenerId, web->id);
}

TEST(GatewayTest, AllowAndMaxConnectionsApplyFromTheNextAccept) {
  EchoBackend backend;
  Config config = baseConfig();
  config.workers = 1;  // the limit is exact with one worker
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const SocketAddress bound = gateway.listeners()[0]->bound;
  UniqueFd open = connectTo(bound);
  ASSERT_TRUE(echoes(open.get(), "open"));

  Config limited = config;
  limited.listeners[0].maxConnections = 1;
  ASSERT_FALSE(gateway.reload(limited));
  {
    UniqueFd over = connectTo(bound);
    EXPECT_TRUE(closedByPeer(waitClosed(over.get())));
  }
  EXPECT_EQ(rejected(*gateway.listeners()[0], stats::kRejectedMaxConnections), 1u);

  Config denied = config;
  denied.listeners[0].allow = {*Cidr::parse("10.0.0.0/8")};
  ASSERT_FALSE(gateway.reload(denied));
  {
    UniqueFd outside = connectTo(bound);
    EXPECT_TRUE(closedByPeer(waitClosed(outside.get())));
  }
  EXPECT_EQ(rejected(*gateway.listeners()[0], stats::kRejectedNotAllowed), 1u);
  EXPECT_TRUE(echoes(open.get(), "the open flow is not cut"));
  EXPECT_EQ(backend.accepted(), 1);
}

// ---- Pause and resume
// ----------------------------------------------------------------------------

// Every worker's accept event of listener `name`: whether each is pending.
std::vector<bool> acceptPending(const Gateway& gateway, const std::string& name) {
  std::vector<bool> pending;
  for (const LoopEvents& loop : gateway.listEvents()) {
    for (const reactor::EventInfo& event : loop.events) {
      if (event.label == "listener " + name) {
        pending.push_back(event.state != reactor::EventState::kInitialized);
      }
    }
  }
  return pending;
}

TEST(GatewayTest, PausedListenerStaysBoundWithoutAcceptingAndResumeTakesTheBacklog) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const std::shared_ptr<ListenerState> web = gateway.listeners()[0];
  EXPECT_FALSE(web->paused.load());
  EXPECT_EQ(acceptPending(gateway, "web"), (std::vector<bool>{true, true}));
  UniqueFd open = connectTo(web->bound);
  ASSERT_TRUE(echoes(open.get(), "before"));

  Config paused = config;
  paused.listeners[0].paused = true;
  EXPECT_EQ(reloadLogged(gateway, paused),
            "reloaded: +0 listeners, -0 listeners, 1 listeners updated, 0 clusters changed");
  EXPECT_TRUE(web->paused.load());
  EXPECT_EQ(gateway.listeners()[0], web);
  EXPECT_EQ(acceptPending(gateway, "web"), (std::vector<bool>{false, false}));
  // Bound: the kernel completes the handshake and queues the client, but no flow starts.
  UniqueFd waiting = connectTo(web->bound);
  ASSERT_GE(waiting.get(), 0) << "a paused listener must stay bound";
  ASSERT_TRUE(sendAll(waiting.get(), "queued"));
  EXPECT_EQ(gateway.countFlows(FlowFilter{}), 1u);
  EXPECT_TRUE(echoes(open.get(), "open flows go on"));

  ASSERT_FALSE(gateway.reload(config));
  EXPECT_FALSE(web->paused.load());
  EXPECT_EQ(acceptPending(gateway, "web"), (std::vector<bool>{true, true}));
  EXPECT_EQ(receive(waiting.get(), 6), "queued");
  EXPECT_EQ(gateway.countFlows(FlowFilter{}), 2u);
}

TEST(GatewayTest, AListenerThatStartsPausedOpensItsSocketsButDoesNotAccept) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  config.listeners[0].paused = true;
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  EXPECT_TRUE(gateway.listeners()[0]->paused.load());
  EXPECT_EQ(acceptPending(gateway, "web"), (std::vector<bool>{false, false}));

  // Created paused by a reload too.
  Config more = config;
  more.listeners.push_back(listenerOf("api", "c"));
  more.listeners[1].paused = true;
  ASSERT_FALSE(gateway.reload(more));
  EXPECT_TRUE(gateway.listeners()[1]->paused.load());
  EXPECT_EQ(acceptPending(gateway, "api"), (std::vector<bool>{false, false}));
  UniqueFd waiting = connectTo(gateway.listeners()[1]->bound);
  ASSERT_GE(waiting.get(), 0);
  ASSERT_TRUE(sendAll(waiting.get(), "hello"));
  EXPECT_EQ(gateway.flowCount(), 0u);

  more.listeners[1].paused = false;
  ASSERT_FALSE(gateway.reload(more));
  EXPECT_EQ(receive(waiting.get(), 5), "hello");
  EXPECT_EQ(acceptPending(gateway, "web"), (std::vector<bool>{false, false}));
}

// ---- All or nothing
// ------------------------------------------------------------------------------

// How the socket opener fails, with either kind of listener sockets (one shared by the two
// workers, or one per worker).
struct RollbackCase {
  Opener::Failure failure;
  ListenerSockets sockets;
};

class ReloadRollbackTest : public ::testing::TestWithParam<RollbackCase> {
 protected:
  Opener::Failure failure() const { return GetParam().failure; }
  bool perWorker() const { return GetParam().sockets == ListenerSockets::kPerWorker; }
  // Sockets a listener opens: one per worker (two), or one for both.
  int socketsPerListener() const { return perWorker() ? 2 : 1; }
  Config config() const {
    Config config = baseConfig();
    config.listenerSockets = GetParam().sockets;
    return config;
  }
};

TEST_P(ReloadRollbackTest, AReloadWhoseSecondNewListenerFailsChangesNothing) {
  EchoBackend backend;
  EchoBackend other;
  Config config = this->config();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Opener opener;
  Gateway gateway(config, opener.function());
  ASSERT_FALSE(gateway.start());
  ASSERT_EQ(opener.calls, socketsPerListener());
  const std::shared_ptr<ClusterState> cluster = gateway.clusters()[0];
  UniqueFd open = connectTo(gateway.listeners()[0]->bound);
  ASSERT_TRUE(echoes(open.get(), "before"));

  // Two new listeners, a changed cluster and a listener changed in place: b's last socket fails.
  Config next = config;
  next.clusters[0] = clusterOf("c", {other.address()});
  next.listeners[0].maxConnections = 5;
  next.listeners[0].paused = true;
  next.listeners.push_back(listenerOf("a", "c"));
  next.listeners.push_back(listenerOf("b", "c"));
  opener.failAt = 3 * socketsPerListener();
  opener.failure = failure();
  const std::optional<std::string> error = gateway.reload(next);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find(failure() == Opener::Failure::kCannotOpen ? "listener b: cannot listen on"
                                                                  : "cannot accept on listener b"),
            std::string::npos)
      << *error;

  EXPECT_EQ(gateway.config(), config);
  ASSERT_EQ(gateway.listeners().size(), 1u);
  EXPECT_EQ(gateway.listeners()[0]->config, config.listeners[0]);
  EXPECT_FALSE(gateway.listeners()[0]->paused.load());
  EXPECT_EQ(gateway.clusters()[0], cluster);
  // a's port (its first socket was opened right after web's) listens nowhere, on no worker.
  const size_t aFirst = static_cast<size_t>(socketsPerListener());
  ASSERT_GT(opener.opened.size(), aFirst);
  EXPECT_FALSE(listening(opener.opened[aFirst])) << opener.opened[aFirst].toString();
  const std::vector<LoopEvents> events = gateway.listEvents();
  EXPECT_EQ(countLabelled(events, "listener web"), 2u);
  EXPECT_EQ(countLabelled(events, "listener a"), 0u);
  EXPECT_EQ(countLabelled(events, "listener b"), 0u);
  // The running listener still accepts, still to the old cluster, and its flow still relays.
  EXPECT_TRUE(echoes(open.get(), "after"));
  UniqueFd fresh = connectTo(gateway.listeners()[0]->bound);
  EXPECT_TRUE(echoes(fresh.get(), "same cluster"));
  EXPECT_EQ(backend.accepted(), 2);
  EXPECT_EQ(other.accepted(), 0);

  // Nothing was left half-done: the same change applies once the sockets can be had.
  opener.failAt = 0;
  ASSERT_FALSE(gateway.reload(next));
  ASSERT_EQ(gateway.listeners().size(), 3u);
  EXPECT_TRUE(gateway.listeners()[0]->paused.load());
  UniqueFd viaA = connectTo(gateway.listeners()[1]->bound);
  EXPECT_TRUE(echoes(viaA.get(), "through a"));
  EXPECT_EQ(other.accepted(), 1);
  EXPECT_EQ(countLabelled(gateway.listEvents(), "listener a"), 2u);
}

TEST_P(ReloadRollbackTest, AStartWhoseSocketFailsLeavesNothingOpenOrRunning) {
  EchoBackend backend;
  Config config = this->config();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  config.listeners.push_back(listenerOf("api", "c"));
  Opener opener;
  opener.failAt = 2 * socketsPerListener();  // api's last socket
  opener.failure = failure();
  Gateway gateway(config, opener.function());
  const std::optional<std::string> error = gateway.start();
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("api"), std::string::npos) << *error;
  EXPECT_EQ(gateway.workerCount(), 0u);
  EXPECT_TRUE(gateway.listeners().empty());
  EXPECT_TRUE(gateway.clusters().empty());
  EXPECT_FALSE(listening(opener.opened[0])) << opener.opened[0].toString();
}

std::string caseName(const ::testing::TestParamInfo<RollbackCase>& info) {
  return std::string(info.param.failure == Opener::Failure::kCannotOpen ? "CannotOpen"
                                                                        : "NotListening") +
         (info.param.sockets == ListenerSockets::kShared ? "Shared" : "PerWorker");
}

INSTANTIATE_TEST_SUITE_P(
    Failures, ReloadRollbackTest,
    ::testing::Values(RollbackCase{Opener::Failure::kCannotOpen, ListenerSockets::kShared},
                      RollbackCase{Opener::Failure::kNotListening, ListenerSockets::kShared},
                      RollbackCase{Opener::Failure::kCannotOpen, ListenerSockets::kPerWorker},
                      RollbackCase{Opener::Failure::kNotListening, ListenerSockets::kPerWorker}),
    caseName);

// ---- Clusters across reloads
// ---------------------------------------------------------------------

TEST(GatewayTest, AnEndpointStateChangeIsSetOnTheRunningClusterState) {
  EchoBackend a;
  EchoBackend b;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {a.address(), b.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  const std::shared_ptr<ClusterState> cluster = gateway.clusters()[0];

  Config next = config;
  next.clusters[0].endpoints[0].state = EndpointAdminState::kDraining;
  EXPECT_EQ(reloadLogged(gateway, next, "API change"),
            "reloaded (API change): +0 listeners, -0 listeners, 0 listeners updated, 1 clusters "
            "changed");
  EXPECT_EQ(gateway.clusters()[0], cluster);
  EXPECT_EQ(gateway.listeners()[0]->cluster, cluster);
  EXPECT_EQ(cluster->adminState(0), EndpointAdminState::kDraining);
  EXPECT_EQ(cluster->adminState(1), EndpointAdminState::kActive);
  EXPECT_EQ(gateway.config().clusters[0].endpoints[0].state, EndpointAdminState::kDraining);

  std::vector<UniqueFd> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(connectTo(gateway.listeners()[0]->bound));
    ASSERT_TRUE(echoes(clients.back().get(), "x"));
  }
  EXPECT_EQ(a.accepted(), 0);
  EXPECT_EQ(b.accepted(), 4);

  ASSERT_FALSE(gateway.reload(config));
  EXPECT_EQ(gateway.clusters()[0], cluster);
  EXPECT_EQ(cluster->adminState(0), EndpointAdminState::kActive);
}

TEST(GatewayTest, AChangedClusterKeepsTheHealthAndEjectionsOfTheEndpointsThatStay) {
  EchoBackend backend;
  EchoBackend added;
  const SocketAddress dead = testing::loopback(testing::refusedPort());
  const SocketAddress ejectedEndpoint = testing::loopback(testing::refusedPort());
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address(), dead, ejectedEndpoint}));
  config.clusters[0].healthCheck = HealthCheckConfig{24h, 1s, 1, 1000};
  config.clusters[0].outlier.baseEjection = 1h;
  config.clusters[0].outlier.maxEjection = 1h;
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ::testing::internal::CaptureStderr();  // the health checker logs "unhealthy"
  ASSERT_FALSE(gateway.start());
  const std::shared_ptr<ClusterState> old = gateway.clusters()[0];
  ASSERT_TRUE(eventually([&] { return !old->healthy(1); }));
  for (uint32_t i = 0; i < config.clusters[0].outlier.consecutiveFailures; ++i) {
    old->recordConnectFailure(2);
  }
  ASSERT_TRUE(old->ejected(2));

  Config next = config;
  next.clusters[0].endpoints.insert(next.clusters[0].endpoints.begin(),
                                    clusterOf("c", {added.address()}).endpoints[0]);
  ASSERT_FALSE(gateway.reload(next));
  (void)::testing::internal::GetCapturedStderr();
  const std::shared_ptr<ClusterState> fresh = gateway.clusters()[0];
  ASSERT_NE(fresh, old);
  EXPECT_EQ(gateway.listeners()[0]->cluster, fresh);
  EXPECT_TRUE(fresh->healthy(0));   // added
  EXPECT_TRUE(fresh->healthy(1));   // backend
  EXPECT_FALSE(fresh->healthy(2));  // dead: still unhealthy, not "healthy until checked"
  EXPECT_TRUE(fresh->ejected(3));   // still ejected
  EXPECT_EQ(fresh->ejectedUntil(3), old->ejectedUntil(2));
}

// ---- Flow queries
// --------------------------------------------------------------------------------

class FlowQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config = baseConfig();
    config.clusters.push_back(clusterOf("one", {first_.address()}));
    config.clusters.push_back(clusterOf("two", {second_.address()}));
    config.listeners.push_back(listenerOf("web", "one"));
    config.listeners.push_back(listenerOf("api", "two"));
    gateway_ = std::make_unique<Gateway>(config);
    ASSERT_FALSE(gateway_->start());
  }

  // A client of listener `index` whose flow is established (one echo went through).
  UniqueFd open(size_t index, std::string_view hello = "hello") {
    UniqueFd fd = connectTo(gateway_->listeners()[index]->bound);
    EXPECT_TRUE(echoes(fd.get(), hello));
    return fd;
  }

  const ListenerState& listener(size_t index) const { return *gateway_->listeners()[index]; }

  EchoBackend first_;
  EchoBackend second_;
  std::unique_ptr<Gateway> gateway_;
};

TEST_F(FlowQueryTest, ListFlowsDescribesEachFlow) {
  UniqueFd client = open(0, "hello");
  const std::vector<FlowInfo> flows = gateway_->listFlows(FlowFilter{}, 0, 100);
  ASSERT_EQ(flows.size(), 1u);
  const FlowInfo& flow = flows[0];
  EXPECT_EQ(flow.worker, Worker::workerOfFlow(flow.id));
  EXPECT_LT(flow.worker, 2u);
  EXPECT_EQ(flow.listener, "web");
  EXPECT_EQ(flow.listenerId, listener(0).id);
  EXPECT_EQ(flow.cluster, "one");
  EXPECT_EQ(flow.client, *SocketAddress::localOf(client.get()));
  EXPECT_EQ(flow.upstream, first_.address());
  EXPECT_EQ(flow.state, Flow::State::kEstablished);
  EXPECT_EQ(flow.bytesFromClient, 5u);
  EXPECT_EQ(flow.bytesFromUpstream, 5u);
  EXPECT_EQ(flow.bufferedBytes, 0u);
  EXPECT_GE(flow.age, Duration::zero());
  EXPECT_GE(flow.idle, Duration::zero());
  EXPECT_LE(flow.idle, flow.age);
  const auto now = std::chrono::system_clock::now();
  EXPECT_LE(flow.startTime, now);
  EXPECT_GT(flow.startTime, now - 1min);
}

TEST_F(FlowQueryTest, FiltersSelectByListenerClusterEndpointAndClient) {
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(open(0));
  clients.push_back(open(1));
  auto count = [&](const FlowFilter& filter) { return gateway_->countFlows(filter); };
  auto listed = [&](const FlowFilter& filter) {
    return gateway_->listFlows(filter, 0, 100).size();
  };

  EXPECT_EQ(count(FlowFilter{}), 4u);
  FlowFilter filter;
  filter.listener = "web";
  EXPECT_EQ(count(filter), 3u);
  EXPECT_EQ(listed(filter), 3u);
  filter = FlowFilter{};
  filter.listenerId = listener(1).id;
  EXPECT_EQ(count(filter), 1u);
  EXPECT_EQ(gateway_->listFlows(filter, 0, 100).at(0).listener, "api");
  filter = FlowFilter{};
  filter.cluster = "two";
  EXPECT_EQ(count(filter), 1u);
  filter = FlowFilter{};
  filter.endpoint = first_.address();
  EXPECT_EQ(count(filter), 3u);
  EXPECT_EQ(listed(filter), 3u);
  filter = FlowFilter{};
  filter.client = *Cidr::parse("127.0.0.0/8");
  EXPECT_EQ(count(filter), 4u);
  filter.client = *Cidr::parse("10.0.0.0/8");
  EXPECT_EQ(count(filter), 0u);
  EXPECT_EQ(listed(filter), 0u);
  filter = FlowFilter{};
  filter.listener = "web";
  filter.cluster = "two";  // every field must match
  EXPECT_EQ(count(filter), 0u);
  filter = FlowFilter{};
  filter.minAge = 1h;
  EXPECT_EQ(count(filter), 0u);
  filter = FlowFilter{};
  filter.listener = "nope";
  EXPECT_EQ(listed(filter), 0u);
}

TEST_F(FlowQueryTest, ListFlowsPagesByIdAcrossWorkers) {
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(open(i % 2));
  const std::vector<FlowInfo> all = gateway_->listFlows(FlowFilter{}, 0, 100);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end(),
                             [](const FlowInfo& a, const FlowInfo& b) { return a.id < b.id; }));
  std::vector<uint64_t> paged;
  uint64_t after = 0;
  for (int page = 0; page < 10; ++page) {
    const std::vector<FlowInfo> flows = gateway_->listFlows(FlowFilter{}, after, 2);
    EXPECT_LE(flows.size(), 2u);
    if (flows.empty()) break;
    for (const FlowInfo& flow : flows) paged.push_back(flow.id);
    after = flows.back().id;
  }
  std::vector<uint64_t> ids;
  for (const FlowInfo& flow : all) ids.push_back(flow.id);
  EXPECT_EQ(paged, ids);
  EXPECT_TRUE(gateway_->listFlows(FlowFilter{}, 0, 0).empty());
}

TEST_F(FlowQueryTest, MinIdleAndMinAgeSelectOlderQuieterFlows) {
  UniqueFd quiet = open(0);
  const uint64_t quietId = onlyFlow(*gateway_).id;
  FlowFilter idle;
  idle.minIdle = 300ms;
  ASSERT_TRUE(eventually([&] { return gateway_->countFlows(idle) == 1; }));
  UniqueFd busy = open(0);
  std::vector<FlowInfo> flows = gateway_->listFlows(idle, 0, 10);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].id, quietId);
  EXPECT_GE(flows[0].idle, 300ms);
  FlowFilter old;
  old.minAge = 300ms;
  flows = gateway_->listFlows(old, 0, 10);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].id, quietId);

  // Activity makes a flow young again for min_idle, not for min_age.
  ASSERT_TRUE(echoes(quiet.get(), "awake"));
  EXPECT_EQ(gateway_->countFlows(idle), 0u);
  EXPECT_EQ(gateway_->countFlows(old), 1u);
}

TEST_F(FlowQueryTest, CloseFlowClosesOneFlowById) {
  UniqueFd doomed = open(0);
  const uint64_t id = onlyFlow(*gateway_).id;
  UniqueFd survivor = open(1);
  EXPECT_TRUE(gateway_->closeFlow(id, CloseReason::kAdmin));
  EXPECT_EQ(waitClosed(doomed.get()), "eof");
  EXPECT_FALSE(gateway_->closeFlow(id, CloseReason::kAdmin));  // already gone
  EXPECT_FALSE(gateway_->closeFlow(uint64_t{7} << Worker::kFlowIdWorkerShift | 1,
                                   CloseReason::kAdmin));  // no worker 7
  EXPECT_FALSE(gateway_->closeFlow(0, CloseReason::kAdmin));
  EXPECT_TRUE(echoes(survivor.get(), "still here"));
  EXPECT_EQ(gateway_->countFlows(FlowFilter{}), 1u);
  EXPECT_EQ(listener(0).connections.load(), 0u);
}

TEST_F(FlowQueryTest, CloseFlowsClosesTheOldestMatchingFlowsFirstAcrossWorkers) {
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(open(0));  // oldest first
  UniqueFd other = open(1);
  FlowFilter web;
  web.listener = "web";
  EXPECT_EQ(gateway_->closeFlows(web, 2, CloseReason::kAdmin), 2u);
  EXPECT_EQ(waitClosed(clients[0].get()), "eof");
  EXPECT_EQ(waitClosed(clients[1].get()), "eof");
  EXPECT_TRUE(echoes(clients[2].get(), "younger"));
  EXPECT_TRUE(echoes(clients[3].get(), "youngest"));
  EXPECT_EQ(gateway_->closeFlows(web, 10, CloseReason::kAdmin), 2u);
  EXPECT_EQ(gateway_->closeFlows(web, 10, CloseReason::kAdmin), 0u);
  EXPECT_EQ(gateway_->closeFlows(FlowFilter{}, 0, CloseReason::kAdmin), 0u);
  EXPECT_TRUE(echoes(other.get(), "another listener's flow"));
  EXPECT_EQ(gateway_->countFlows(FlowFilter{}), 1u);
}

TEST(WorkerQueryTest, AWorkerWhoseLoopIsNotRunningAnswersAtOnce) {
  AccessLog log(AccessLogConfig{AccessLogMode::kOff, ""});
  Worker worker(0, log);
  auto flows = worker.listFlows(FlowFilter{}, 0, 10);
  auto count = worker.countFlows(FlowFilter{});
  auto closed = worker.closeFlows({1, 2}, CloseReason::kAdmin);
  auto events = worker.dumpEvents();
  ASSERT_EQ(flows.wait_for(0s), std::future_status::ready);
  ASSERT_EQ(count.wait_for(0s), std::future_status::ready);
  ASSERT_EQ(closed.wait_for(0s), std::future_status::ready);
  ASSERT_EQ(events.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(flows.get().empty());
  EXPECT_EQ(count.get(), 0u);
  EXPECT_EQ(closed.get(), 0u);
  EXPECT_TRUE(events.get().empty());

  // After stop() too.
  worker.start();
  worker.stop();
  auto later = worker.countFlows(FlowFilter{});
  ASSERT_EQ(later.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(later.get(), 0u);
}

// ---- The event table
// -----------------------------------------------------------------------------

TEST(GatewayTest, ListEventsNamesTheOwnerOfEveryEvent) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.clusters[0].healthCheck = HealthCheckConfig{24h, 1s, 3, 2};
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start());
  UniqueFd client = connectTo(gateway.listeners()[0]->bound);
  ASSERT_TRUE(echoes(client.get(), "hello"));
  const FlowInfo flow = onlyFlow(gateway);

  const std::vector<LoopEvents> loops = gateway.listEvents();
  ASSERT_EQ(loops.size(), 2u);
  EXPECT_EQ(loops[0].loop, "worker-0");
  EXPECT_EQ(loops[1].loop, "worker-1");
  for (const LoopEvents& loop : loops) {
    size_t accepting = 0;
    for (const reactor::EventInfo& event : loop.events) {
      if (event.internal) continue;
      const std::string owner = event.label.substr(0, event.label.find(' '));
      EXPECT_TRUE(owner == "listener" || owner == "flow" || owner == "health")
          << loop.loop << ": " << event.label;
      if (event.label == "listener web") {
        ++accepting;
        EXPECT_EQ(event.state, reactor::EventState::kPending);
      }
    }
    EXPECT_EQ(accepting, 1u) << loop.loop;
  }
  auto find = [&](const LoopEvents& loop, const std::string& label) {
    return std::find_if(loop.events.begin(), loop.events.end(),
                        [&](const reactor::EventInfo& e) { return e.label == label; });
  };
  const LoopEvents& home = loops[flow.worker];
  const std::string prefix = "flow " + std::to_string(flow.id);
  for (const char* suffix : {" client", " upstream", " timer"}) {
    EXPECT_NE(find(home, prefix + suffix), home.events.end()) << prefix + suffix;
  }
  // Each socket is registered once, for reading and writing, for the flow's whole life.
  EXPECT_EQ(find(home, prefix + " client")->state, reactor::EventState::kPending);
  EXPECT_EQ(find(home, prefix + " upstream")->state, reactor::EventState::kPending);
  EXPECT_NE(find(loops[0], "health c " + backend.address().toString()), loops[0].events.end());
}

// ---- Notices
// -------------------------------------------------------------------------------------

TEST(GatewayTest, FlowNoticesArePublishedOnlyWhileTheSinkWantsThem) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  NoticeRecorder notices;
  Gateway gateway(config);
  gateway.setNoticeSink(&notices);
  ASSERT_FALSE(gateway.start());
  {
    UniqueFd unseen = connectTo(gateway.listeners()[0]->bound);
    ASSERT_TRUE(echoes(unseen.get(), "unseen"));
  }
  // Asked once at the accept, once at the close (after the flow left the count).
  ASSERT_TRUE(eventually([&] { return notices.wantsAsked.load() == 2; }));
  EXPECT_EQ(gateway.flowCount(), 0u);
  EXPECT_TRUE(notices.notices().empty());

  notices.flows = true;
  UniqueFd client = connectTo(gateway.listeners()[0]->bound);
  ASSERT_TRUE(echoes(client.get(), "seen"));
  const uint64_t id = onlyFlow(gateway).id;
  const SocketAddress clientAddress = *SocketAddress::localOf(client.get());
  client.reset();
  ASSERT_TRUE(eventually([&] { return notices.notices().size() == 2; }));
  const std::vector<Notice> seen = notices.notices();
  EXPECT_EQ(seen[0].type, Notice::Type::kFlowOpened);
  EXPECT_EQ(seen[0].listener, "web");
  EXPECT_EQ(seen[0].cluster, "c");
  EXPECT_EQ(seen[0].flowId, id);
  EXPECT_EQ(seen[0].client, clientAddress);
  EXPECT_EQ(seen[1].type, Notice::Type::kFlowClosed);
  EXPECT_EQ(seen[1].flowId, id);
  EXPECT_EQ(seen[1].listener, "web");
  EXPECT_EQ(seen[1].endpoint, backend.address().toString());
  EXPECT_EQ(seen[1].detail, "client_eof");
  EXPECT_LE(seen[0].time, seen[1].time);
}

}  // namespace
}  // namespace evgate::gateway
