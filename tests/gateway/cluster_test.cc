// WorkerCluster: a worker's UpstreamPicker over the cluster state all workers share.

#include "gateway/cluster.h"

#include <gtest/gtest.h>

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

TEST(WorkerClusterTest, UnavailableEndpointsAreSkippedAndNoneLeftMeansNoPick) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kRoundRobin));
  WorkerCluster cluster(state, 1);
  state->setAvailable(0, false);
  state->setAvailable(2, false);
  EXPECT_EQ(cluster.pick(address("127.0.0.1:5000"), {}), address("127.0.0.1:9002"));
  state->setAvailable(1, false);
  EXPECT_FALSE(cluster.pick(address("127.0.0.1:5000"), {}).has_value());
}

TEST(WorkerClusterTest, ConnectionCountsAreSharedAcrossWorkersAndSteerLeastConnections) {
  auto state = std::make_shared<ClusterState>(threeEndpoints(LbPolicy::kLeastConnections));
  WorkerCluster first(state, 1);
  WorkerCluster second(state, 2);
  // Two flows connected through the first worker to 9001 and 9002.
  first.onConnectResult(address("127.0.0.1:9001"), true);
  first.onConnectResult(address("127.0.0.1:9002"), true);
  first.onConnectResult(address("127.0.0.1:9003"), false);  // a failure counts nothing
  EXPECT_EQ(state->activeConnections(0), 1u);
  EXPECT_EQ(state->activeConnections(2), 0u);
  // The second worker sees those counts: the idle endpoint wins.
  EXPECT_EQ(second.pick(address("127.0.0.1:5000"), {}), address("127.0.0.1:9003"));
  first.onFlowEnded(address("127.0.0.1:9001"));
  EXPECT_EQ(state->activeConnections(0), 0u);
}

}  // namespace
}  // namespace evgate::gateway
