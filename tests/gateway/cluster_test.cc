// WorkerCluster: a worker's UpstreamPicker over the cluster state all workers share.

#include "gateway/cluster.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <vector>

namespace evgate::gateway {
namespace {

reactor::SocketAddress address(const char* text) { return *reactor::SocketAddress::parse(text); }

ClusterConfig threeEndpoints(LbPolicy lb) {
  ClusterConfig config;
  config.name = "backends";
  config.lb = lb;
  config.maxConnectAttempts = 2;
  config.connectTimeout = std::chrono::milliseconds(250);
  for (const char* text : {"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}) {
    config.endpoints.push_back(EndpointConfig{address(text), 1});
  }
  return config;
}

TEST(WorkerClusterTest, PicksEveryEndpointInTurnAndPassesOnTheClusterSettings) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kRoundRobin));
  WorkerCluster cluster(state, 1);
  std::vector<reactor::SocketAddress> picked;
  for (int i = 0; i < 3; ++i) picked.push_back(*cluster.pick(address("127.0.0.1:5000"), {}));
  std::sort(picked.begin(), picked.end(),
            [](const auto& a, const auto& b) { return a.toString() < b.toString(); });
  EXPECT_EQ(picked[0], address("127.0.0.1:9001"));
  EXPECT_EQ(picked[1], address("127.0.0.1:9002"));
  EXPECT_EQ(picked[2], address("127.0.0.1:9003"));
  EXPECT_EQ(cluster.maxConnectAttempts(), 2u);
  EXPECT_EQ(cluster.connectTimeout(), std::chrono::milliseconds(250));
}

TEST(WorkerClusterTest, SourceAddressesInTurnPerWorkerSkippingOtherFamilies) {
  ClusterConfig config = threeEndpoints(LbPolicy::kRoundRobin);
  for (const char* text : {"127.0.0.2", "::1", "127.0.0.3"}) {
    config.sourceAddresses.push_back(*parseSourceAddress(text));
  }
  auto state = std::make_shared<ClusterState>(config);
  WorkerCluster first(state, 1, 0);
  WorkerCluster second(state, 2, 0);
  const auto next = [](WorkerCluster& cluster, int family) {
    const reactor::SocketAddress* source = cluster.nextSource(family);
    return source == nullptr ? std::string("none") : formatSourceAddress(*source);
  };
  EXPECT_EQ(next(first, AF_INET), "127.0.0.2");
  EXPECT_EQ(next(first, AF_INET), "127.0.0.3");  // ::1 skipped
  EXPECT_EQ(next(first, AF_INET6), "::1");
  EXPECT_EQ(next(first, AF_INET), "127.0.0.3");  // the turn goes on after ::1
  EXPECT_EQ(next(first, AF_INET), "127.0.0.2");
  EXPECT_EQ(next(second, AF_INET), "127.0.0.2");  // each worker has its own turn
  EXPECT_EQ(next(first, AF_INET6), "::1");
  EXPECT_EQ(next(first, AF_INET6), "::1");

  auto v4Only = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kRoundRobin));
  WorkerCluster none(v4Only, 1);
  EXPECT_EQ(none.nextSource(AF_INET), nullptr);  // no source addresses: no bind
  ClusterConfig onlyV4 = threeEndpoints(LbPolicy::kRoundRobin);
  onlyV4.sourceAddresses.push_back(*parseSourceAddress("127.0.0.2"));
  WorkerCluster mismatch(std::make_shared<ClusterState>(onlyV4), 1);
  EXPECT_EQ(mismatch.nextSource(AF_INET6), nullptr);  // no address of that family
}

TEST(WorkerClusterTest, TriedEndpointsAreNotPickedAgain) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kRoundRobin));
  WorkerCluster cluster(state, 1);
  const std::vector<reactor::SocketAddress> tried = {address("127.0.0.1:9001"),
                                                     address("127.0.0.1:9003")};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(cluster.pick(address("127.0.0.1:5000"), tried), address("127.0.0.1:9002"));
  }
  const std::vector<reactor::SocketAddress> all = {
      address("127.0.0.1:9001"), address("127.0.0.1:9002"), address("127.0.0.1:9003")};
  EXPECT_FALSE(cluster.pick(address("127.0.0.1:5000"), all).has_value());
}

TEST(WorkerClusterTest, UnhealthyEndpointsAreSkippedAndNoneLeftMeansNoPick) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kRoundRobin));
  WorkerCluster cluster(state, 1);
  state->setHealthy(0, false);
  state->setHealthy(2, false);
  EXPECT_EQ(cluster.pick(address("127.0.0.1:5000"), {}), address("127.0.0.1:9002"));
  state->setHealthy(1, false);
  EXPECT_FALSE(cluster.pick(address("127.0.0.1:5000"), {}).has_value());
}

TEST(WorkerClusterTest, ConnectionCountsAreSharedAcrossWorkersAndSteerLeastConnections) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kLeastConnections));
  WorkerCluster first(state, 1);
  WorkerCluster second(state, 2);
  // Two flows connected through the first worker to 9001 and 9002.
  first.onConnectResult(address("127.0.0.1:9001"), stats::ConnectResult::kOk, {});
  first.onConnectResult(address("127.0.0.1:9002"), stats::ConnectResult::kOk, {});
  first.onConnectResult(address("127.0.0.1:9003"), stats::ConnectResult::kRefused,
                        {});  // a failure counts nothing
  EXPECT_EQ(state->activeConnections(0), 1u);
  EXPECT_EQ(state->activeConnections(2), 0u);
  // The second worker sees those counts: the idle endpoint wins.
  EXPECT_EQ(second.pick(address("127.0.0.1:5000"), {}), address("127.0.0.1:9003"));
  first.onFlowEnded(address("127.0.0.1:9001"));
  EXPECT_EQ(state->activeConnections(0), 0u);
}

// A clock for ejection deadlines that moves only when told (thread-safe, as ClusterState needs).
struct FakeTime {
  std::atomic<int64_t> nanos{std::chrono::nanoseconds(std::chrono::hours(24)).count()};
  ClusterState::Now now() {
    return [this] { return reactor::TimePoint(std::chrono::nanoseconds(nanos.load())); };
  }
  void advance(std::chrono::nanoseconds d) { nanos.fetch_add(d.count()); }
};

ClusterConfig ejecting(uint32_t failures) {
  ClusterConfig config = threeEndpoints(LbPolicy::kRoundRobin);
  config.outlier.consecutiveFailures = failures;
  config.outlier.baseEjection = std::chrono::seconds(1);
  config.outlier.maxEjection = std::chrono::seconds(3);
  return config;
}

void failTimes(WorkerCluster& cluster, const char* endpoint, int times) {
  for (int i = 0; i < times; ++i)
    cluster.onConnectResult(address(endpoint), stats::ConnectResult::kRefused, {});
}

TEST(ClusterStateTest, ConsecutiveConnectFailuresEjectForTheBackOff) {
  FakeTime time;
  auto state = std::make_shared<ClusterState>(ejecting(3), time.now());
  WorkerCluster cluster(state, 1);
  failTimes(cluster, "127.0.0.1:9001", 2);
  EXPECT_TRUE(state->available(0));
  failTimes(cluster, "127.0.0.1:9001", 1);
  EXPECT_FALSE(state->available(0));
  EXPECT_TRUE(state->ejected(0));
  EXPECT_TRUE(state->healthy(0));  // ejection is not health
  for (int i = 0; i < 6; ++i) {
    EXPECT_NE(cluster.pick(address("127.0.0.1:5000"), {}), address("127.0.0.1:9001"));
  }
  time.advance(std::chrono::milliseconds(999));
  EXPECT_FALSE(state->available(0));
  time.advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(state->available(0));
}

TEST(ClusterStateTest, ASuccessBetweenFailuresStartsTheCountAgain) {
  FakeTime time;
  auto state = std::make_shared<ClusterState>(ejecting(3), time.now());
  WorkerCluster cluster(state, 1);
  failTimes(cluster, "127.0.0.1:9002", 2);
  cluster.onConnectResult(address("127.0.0.1:9002"), stats::ConnectResult::kOk, {});
  failTimes(cluster, "127.0.0.1:9002", 2);
  EXPECT_TRUE(state->available(1));
  failTimes(cluster, "127.0.0.1:9002", 1);
  EXPECT_FALSE(state->available(1));
}

TEST(ClusterStateTest, EachFurtherEjectionDoublesTheBackOffUpToTheMaximum) {
  FakeTime time;
  auto state = std::make_shared<ClusterState>(ejecting(2), time.now());
  WorkerCluster cluster(state, 1);
  const auto ejectionLength = [&] {
    failTimes(cluster, "127.0.0.1:9003", 2);
    EXPECT_FALSE(state->available(2));
    return std::chrono::nanoseconds(state->ejectedUntil(2) - state->nowNanos());
  };
  EXPECT_EQ(ejectionLength(), std::chrono::seconds(1));
  // Failures of attempts still in flight while ejected do not count towards another ejection.
  failTimes(cluster, "127.0.0.1:9003", 5);
  EXPECT_EQ(std::chrono::nanoseconds(state->ejectedUntil(2) - state->nowNanos()),
            std::chrono::seconds(1));
  time.advance(std::chrono::seconds(1));
  EXPECT_TRUE(state->available(2));
  EXPECT_EQ(ejectionLength(), std::chrono::seconds(2));
  time.advance(std::chrono::seconds(2));
  EXPECT_EQ(ejectionLength(), std::chrono::seconds(3));  // 4 s, capped at max_ejection
  time.advance(std::chrono::seconds(3));
  EXPECT_EQ(ejectionLength(), std::chrono::seconds(3));
  // A successful connect resets the back-off to base_ejection.
  time.advance(std::chrono::seconds(3));
  cluster.onConnectResult(address("127.0.0.1:9003"), stats::ConnectResult::kOk, {});
  EXPECT_EQ(ejectionLength(), std::chrono::seconds(1));
}

TEST(ClusterStateTest, ZeroConsecutiveFailuresTurnsEjectionOff) {
  auto state = std::make_shared<ClusterState>(ejecting(0));
  WorkerCluster cluster(state, 1);
  failTimes(cluster, "127.0.0.1:9001", 100);
  EXPECT_TRUE(state->available(0));
  EXPECT_EQ(state->ejectedUntil(0), 0);
}

TEST(ClusterStateTest, FailuresFromEveryWorkerCountTogether) {
  FakeTime time;
  auto state = std::make_shared<ClusterState>(ejecting(4), time.now());
  WorkerCluster first(state, 1);
  WorkerCluster second(state, 2);
  failTimes(first, "127.0.0.1:9001", 2);
  failTimes(second, "127.0.0.1:9001", 2);
  EXPECT_FALSE(state->available(0));
}

TEST(ClusterStateTest, DrainingAndDisabledEndpointsAreNeverPickedButKeepTheirFlows) {
  for (const LbPolicy lb : {LbPolicy::kRoundRobin, LbPolicy::kLeastConnections,
                            LbPolicy::kRandomTwo, LbPolicy::kHashClientIp}) {
    auto state = std::make_shared<ClusterState>(threeEndpoints(lb));
    WorkerCluster cluster(state, 7);
    cluster.onConnectResult(address("127.0.0.1:9001"), stats::ConnectResult::kOk,
                            {});  // a flow open on 9001
    state->setAdminState(0, EndpointAdminState::kDraining);
    state->setAdminState(2, EndpointAdminState::kDisabled);
    EXPECT_EQ(state->adminState(0), EndpointAdminState::kDraining);
    std::set<std::string> picked;
    for (int i = 0; i < 50; ++i) {
      const std::string client = "10.0.0." + std::to_string(i) + ":5000";
      picked.insert(cluster.pick(address(client.c_str()), {})->toString());
    }
    EXPECT_EQ(picked, std::set<std::string>{"127.0.0.1:9002"});
    // The open flow is not affected: it still counts, and it ends normally.
    EXPECT_EQ(state->activeConnections(0), 1u);
    cluster.onFlowEnded(address("127.0.0.1:9001"));
    EXPECT_EQ(state->activeConnections(0), 0u);
    state->setAdminState(0, EndpointAdminState::kActive);
    EXPECT_TRUE(state->available(0));
  }
}

TEST(ClusterStateTest, AdminStatesStartAsTheConfigurationSays) {
  ClusterConfig config = threeEndpoints(LbPolicy::kRoundRobin);
  config.endpoints[1].state = EndpointAdminState::kDraining;
  config.endpoints[2].state = EndpointAdminState::kDisabled;
  ClusterState state(config);
  EXPECT_EQ(state.adminState(0), EndpointAdminState::kActive);
  EXPECT_EQ(state.adminState(1), EndpointAdminState::kDraining);
  EXPECT_EQ(state.adminState(2), EndpointAdminState::kDisabled);
  EXPECT_TRUE(state.available(0));
  EXPECT_FALSE(state.available(1));
  EXPECT_FALSE(state.available(2));
}

TEST(ClusterStateTest, InheritHealthTakesOverWhatWasLearnedAboutTheEndpointsThatStay) {
  FakeTime time;
  ClusterConfig before = ejecting(2);
  before.healthCheck = HealthCheckConfig{};
  auto old = std::make_shared<ClusterState>(before, time.now());
  WorkerCluster worker(old, 1);
  old->setHealthy(0, false);               // 9001: failed its checks
  failTimes(worker, "127.0.0.1:9002", 2);  // 9002: ejected
  failTimes(worker, "127.0.0.1:9003", 1);  // 9003: one failure towards an ejection
  worker.onConnectResult(address("127.0.0.1:9003"), stats::ConnectResult::kOk,
                         {});  // ... then a flow, counted
  failTimes(worker, "127.0.0.1:9003", 1);
  ASSERT_TRUE(old->ejected(1));

  // The same endpoints in another order, one gone, one new, and a changed admin state.
  ClusterConfig after = before;
  after.endpoints = {EndpointConfig{address("127.0.0.1:9003"), 1},
                     EndpointConfig{address("127.0.0.1:9002"), 5, EndpointAdminState::kDraining},
                     EndpointConfig{address("127.0.0.1:9004"), 1},
                     EndpointConfig{address("127.0.0.1:9001"), 1}};
  ClusterState fresh(after, time.now());
  fresh.inheritHealth(*old);
  EXPECT_FALSE(fresh.healthy(3));  // 9001
  EXPECT_TRUE(fresh.ejected(1));   // 9002, for what is left of its back-off
  EXPECT_EQ(fresh.ejectedUntil(1), old->ejectedUntil(1));
  EXPECT_EQ(fresh.adminState(1), EndpointAdminState::kDraining);  // from the configuration
  EXPECT_TRUE(fresh.healthy(2));                                  // 9004: new, starts healthy
  EXPECT_FALSE(fresh.ejected(2));
  EXPECT_EQ(fresh.activeConnections(0), 0u);  // counts stay with the old state's flows
  // 9003's failure in a row carries over: one more ejects it (the threshold is 2).
  auto nextState = std::make_shared<ClusterState>(after, time.now());
  nextState->inheritHealth(*old);
  WorkerCluster next(nextState, 1);
  failTimes(next, "127.0.0.1:9003", 1);
  EXPECT_TRUE(nextState->ejected(0));
  time.advance(std::chrono::seconds(2));
  EXPECT_FALSE(fresh.ejected(1));
}

TEST(ClusterStateTest, InheritHealthDropsWhatTheNewClusterCannotUndo) {
  FakeTime time;
  ClusterConfig before = ejecting(1);
  before.healthCheck = HealthCheckConfig{};
  auto old = std::make_shared<ClusterState>(before, time.now());
  WorkerCluster worker(old, 1);
  old->setHealthy(0, false);
  failTimes(worker, "127.0.0.1:9002", 1);
  ASSERT_TRUE(old->ejected(1));

  // Without health checks nothing would mark 9001 healthy again; with ejection off nothing
  // would have ejected 9002.
  ClusterConfig after = before;
  after.healthCheck.reset();
  after.outlier.consecutiveFailures = 0;
  ClusterState fresh(after, time.now());
  fresh.inheritHealth(*old);
  EXPECT_TRUE(fresh.healthy(0));
  EXPECT_FALSE(fresh.ejected(1));
  EXPECT_TRUE(fresh.available(0));
  EXPECT_TRUE(fresh.available(1));
}

TEST(ClusterStateTest, AdminStatesHaveTheirConfigurationNames) {
  EXPECT_STREQ(toString(EndpointAdminState::kActive), "active");
  EXPECT_STREQ(toString(EndpointAdminState::kDraining), "draining");
  EXPECT_STREQ(toString(EndpointAdminState::kDisabled), "disabled");
}

}  // namespace
}  // namespace evgate::gateway
