// Churn: a thousand create/delete cycles of listeners and clusters over the admin API while
// flows run through another listener. Not one of those flows may be dropped or corrupted: the
// changes touch only what they name. Built for the TSan preset as much as for release.

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/admin/admin_test_util.h"
#include "tests/integration/net_util.h"

namespace evgate::admin::testing {
namespace {

using evgate::test::Clock;
using evgate::test::connectTo;
using evgate::test::EchoServer;
using evgate::test::Fd;

constexpr int kCycles = 1000;
constexpr int kFlowThreads = 3;
constexpr size_t kFlowBytes = 256 * 1024;

TEST(AdminChurnTest, CreateDeleteCyclesDropNoFlowOfOtherListeners) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  AdminHarness admin(
      "workers: 2\naccess_log: { mode: off }\nlog: { level: warn }\n"
      "admin: { address: 127.0.0.1:0 }\n"
      "clusters:\n  - name: steady\n    endpoints: [ \"" +
      backend.address() +
      "\" ]\n"
      "listeners:\n  - name: steady\n    bind: 127.0.0.1:0\n    cluster: steady\n");
  ASSERT_TRUE(admin.ok()) << admin.error();
  v1::GetListenerRequest get;
  get.set_name("steady");
  v1::Listener steady;
  ASSERT_TRUE(admin.stub().GetListener(callContext().get(), get, &steady).ok());
  const uint16_t steadyPort = portOf(steady.bound_address());

  std::atomic<bool> churning{true};
  std::atomic<int> flowsOk{0};
  std::atomic<int> flowsFailed{0};
  std::vector<std::thread> flowThreads;
  for (int t = 0; t < kFlowThreads; ++t) {
    flowThreads.emplace_back([&, t] {
      uint64_t seed = static_cast<uint64_t>(t) * 1000003;
      while (churning.load()) {
        const std::string payload = evgate::test::randomBytes(kFlowBytes, ++seed);
        Fd client(connectTo(steadyPort));
        const auto result =
            evgate::test::exchange(client.get(), payload, Clock::now() + std::chrono::seconds(30),
                                   /*toEof=*/true);
        // Echoed in full and in order, then a clean end: the flow was not touched.
        if (result.end == "eof" && result.received == payload) {
          flowsOk.fetch_add(1);
        } else {
          flowsFailed.fetch_add(1);
        }
      }
    });
  }

  int cycles = 0;
  for (; cycles < kCycles; ++cycles) {
    const std::string name = "churn-" + std::to_string(cycles);
    v1::CreateClusterRequest createCluster;
    createCluster.mutable_cluster()->set_name(name);
    createCluster.mutable_cluster()->add_endpoints()->set_address(backend.address());
    v1::Cluster cluster;
    ASSERT_TRUE(admin.stub().CreateCluster(callContext().get(), createCluster, &cluster).ok());
    v1::CreateListenerRequest createListener;
    createListener.mutable_listener()->set_name(name);
    createListener.mutable_listener()->set_bind("127.0.0.1:0");
    createListener.mutable_listener()->set_cluster(name);
    v1::Listener listener;
    ASSERT_TRUE(admin.stub().CreateListener(callContext().get(), createListener, &listener).ok());
    if (cycles % 100 == 0) {
      // Now and then, prove the new listener relays before it goes.
      Fd client(connectTo(portOf(listener.bound_address())));
      ASSERT_TRUE(evgate::test::echoes(client.get(), "churned"));
    }
    v1::DeleteListenerRequest deleteListener;
    deleteListener.set_name(name);
    deleteListener.mutable_drain_timeout()->set_seconds(0);
    v1::DeleteListenerResponse deleted;
    ASSERT_TRUE(admin.stub().DeleteListener(callContext().get(), deleteListener, &deleted).ok());
    v1::DeleteClusterRequest deleteCluster;
    deleteCluster.set_name(name);
    v1::DeleteClusterResponse clusterDeleted;
    ASSERT_TRUE(
        admin.stub().DeleteCluster(callContext().get(), deleteCluster, &clusterDeleted).ok());
  }
  churning.store(false);
  for (std::thread& thread : flowThreads) thread.join();

  EXPECT_EQ(cycles, kCycles);
  EXPECT_EQ(flowsFailed.load(), 0);
  EXPECT_GT(flowsOk.load(), kFlowThreads);
  v1::Status status;
  ASSERT_TRUE(admin.stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_EQ(status.listeners(), 1u);
  EXPECT_EQ(status.clusters(), 1u);
  // A client sees its flow's end (the FIN) a moment before the worker that sent it forgets the
  // flow, so the count reaches zero soon after, not necessarily at once. A flow still listed
  // after the deadline is a leak: print it.
  const bool flowsGone = evgate::test::eventually([&] {
    v1::Status now;
    return admin.stub().GetStatus(callContext().get(), {}, &now).ok() && now.active_flows() == 0;
  });
  if (!flowsGone) {
    v1::ListFlowsResponse flows;
    ASSERT_TRUE(admin.stub().ListFlows(callContext().get(), {}, &flows).ok());
    ADD_FAILURE() << "flows still open: " << flows.DebugString();
  }
}

}  // namespace
}  // namespace evgate::admin::testing
