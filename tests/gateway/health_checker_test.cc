// HealthChecker: active TCP checks over real loopback sockets, on short intervals; every wait is
// a deadline on a condition, never a sleep that hopes to be long enough.

#include "gateway/health_checker.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gateway/gateway.h"
#include "reactor/event_base.h"
#include "reactor/socket_address.h"
#include "tests/gateway/blackhole.h"
#include "tests/gateway/notice_recorder.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway {
namespace {

using testing::Blackhole;

using namespace std::chrono_literals;
using reactor::SocketAddress;
using reactor::testing::UniqueFd;

// A listening socket on 127.0.0.1 that never accepts (a completed connect is all a check needs).
UniqueFd listenOn(const SocketAddress& address, int backlog = SOMAXCONN) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int on = 1;
  EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on), 0);
  EXPECT_EQ(::bind(fd.get(), address.data(), address.length()), 0) << address.toString();
  EXPECT_EQ(::listen(fd.get(), backlog), 0);
  return fd;
}

ClusterConfig checkedCluster(std::vector<SocketAddress> endpoints, Duration interval,
                             Duration timeout, uint32_t unhealthy, uint32_t healthy) {
  ClusterConfig config;
  config.name = "hc";
  for (const SocketAddress& endpoint : endpoints) config.endpoints.push_back({endpoint, 1});
  config.healthCheck = HealthCheckConfig{interval, timeout, unhealthy, healthy};
  return config;
}

class HealthCheckerTest : public ::testing::Test {
 protected:
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    return reactor::testing::loopUntil(base_, done, limit);
  }

  reactor::EventBase base_;
};

TEST_F(HealthCheckerTest, ThresholdsAreCountedExactlyBothWays) {
  UniqueFd listener = listenOn(SocketAddress::loopbackV4());
  const SocketAddress address = *SocketAddress::localOf(listener.get());
  auto state = std::make_shared<ClusterState>(checkedCluster({address}, 30ms, 20ms, 3, 2));
  HealthChecker checker(base_, state);
  checker.start();
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 2; }));
  EXPECT_TRUE(state->healthy(0));

  // Closed between two checks (none is in flight right after one finished): every later check
  // is refused.
  listener.reset();
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 4; }));
  EXPECT_TRUE(state->healthy(0));
  EXPECT_TRUE(state->available(0));
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 5; }));
  EXPECT_FALSE(state->healthy(0));
  EXPECT_FALSE(state->available(0));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("cluster hc endpoint " + address.toString() +
                     ": unhealthy (3 failed checks: connection refused)"),
            std::string::npos)
      << log;

  // Back on the same port: unhealthy after one pass, healthy after the second.
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 6; }));
  listener = listenOn(address);
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 7; }));
  EXPECT_FALSE(state->healthy(0));
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 8; }));
  EXPECT_TRUE(state->healthy(0));
  EXPECT_TRUE(state->available(0));
}

TEST_F(HealthCheckerTest, TransitionsArePublishedAsNotices) {
  UniqueFd listener = listenOn(SocketAddress::loopbackV4());
  const SocketAddress address = *SocketAddress::localOf(listener.get());
  auto state = std::make_shared<ClusterState>(checkedCluster({address}, 20ms, 15ms, 1, 1));
  testing::NoticeRecorder notices;
  HealthChecker checker(base_, state, &notices);
  checker.start();
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(0) == 1; }));
  EXPECT_TRUE(notices.notices().empty());  // healthy and still healthy: no transition

  listener.reset();
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(runUntil([&] { return !state->healthy(0); }));
  listener = listenOn(address);
  ASSERT_TRUE(runUntil([&] { return state->healthy(0); }));
  (void)::testing::internal::GetCapturedStderr();

  const std::vector<Notice> seen = notices.notices();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].type, Notice::Type::kEndpointUnhealthy);
  EXPECT_EQ(seen[0].cluster, "hc");
  EXPECT_EQ(seen[0].endpoint, address.toString());
  EXPECT_EQ(seen[0].detail, "1 failed checks: connection refused");
  EXPECT_EQ(seen[1].type, Notice::Type::kEndpointHealthy);
  EXPECT_EQ(seen[1].endpoint, address.toString());
  EXPECT_EQ(seen[1].detail, "1 passed checks");
  EXPECT_LE(seen[0].time, seen[1].time);
  EXPECT_EQ(notices.wantsAsked.load(), 0);  // health notices are always published
}

TEST_F(HealthCheckerTest, ItsEventsAreLabelledWithTheClusterAndEndpoint) {
  Blackhole hole;
  auto state = std::make_shared<ClusterState>(checkedCluster({hole.address()}, 1s, 500ms, 1, 1));
  HealthChecker checker(base_, state);
  checker.start();
  // The first check starts at once and then waits for its timeout: timer and probe both exist.
  base_.loop(reactor::kLoopNonBlock);
  const std::string owner = "health hc " + hole.address().toString();
  bool timer = false;
  bool probe = false;
  for (const reactor::EventInfo& row : base_.dumpEvents()) {
    if (row.internal) continue;
    timer = timer || (row.label == owner && row.state == reactor::EventState::kPending);
    probe = probe || (row.label == owner + " probe write" && row.fd >= 0);
    EXPECT_EQ(row.label.rfind(owner, 0), 0u) << row.label;
  }
  EXPECT_TRUE(timer);
  EXPECT_TRUE(probe);
}

TEST_F(HealthCheckerTest, AnEndpointThatNeverAnswersFailsByTimeout) {
  Blackhole hole;
  auto state = std::make_shared<ClusterState>(checkedCluster({hole.address()}, 60ms, 30ms, 2, 1));
  HealthChecker checker(base_, state);
  ::testing::internal::CaptureStderr();
  const auto t0 = std::chrono::steady_clock::now();
  checker.start();
  ASSERT_TRUE(runUntil([&] { return !state->healthy(0); }));
  // First check at once, timing out at 30 ms; the second starts at 60 ms and times out at 90 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 85ms);
  EXPECT_EQ(checker.checksDone(0), 2u);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("unhealthy (2 failed checks: timed out)"), std::string::npos) << log;
}

TEST_F(HealthCheckerTest, OnlyTheFailingEndpointIsTakenOutOfThePicks) {
  UniqueFd up = listenOn(SocketAddress::loopbackV4());
  const SocketAddress upAddress = *SocketAddress::localOf(up.get());
  UniqueFd gone = listenOn(SocketAddress::loopbackV4());
  const SocketAddress goneAddress = *SocketAddress::localOf(gone.get());
  gone.reset();
  auto state =
      std::make_shared<ClusterState>(checkedCluster({goneAddress, upAddress}, 20ms, 15ms, 2, 2));
  HealthChecker checker(base_, state);
  checker.start();
  WorkerCluster cluster(state, 1);
  ASSERT_TRUE(runUntil([&] { return !state->healthy(0); }));
  ASSERT_TRUE(runUntil([&] { return checker.checksDone(1) >= 4; }));
  EXPECT_TRUE(state->healthy(1));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(cluster.pick(SocketAddress::loopbackV4(), {}), upAddress);
  }
}

TEST_F(HealthCheckerTest, DestroyingItWithACheckInFlightIsClean) {
  Blackhole hole;
  auto state = std::make_shared<ClusterState>(checkedCluster({hole.address()}, 1s, 500ms, 1, 1));
  auto checker = std::make_unique<HealthChecker>(base_, state);
  checker->start();
  // The first check starts at once and then waits for its timeout.
  base_.loop(reactor::kLoopNonBlock);
  EXPECT_EQ(checker->checksDone(0), 0u);
  checker.reset();
  EXPECT_EQ(base_.eventCount(), 0u);
  EXPECT_TRUE(state->healthy(0));
}

TEST(GatewayHealthCheckTest, TheGatewayChecksOnAWorkerAndStopsCleanly) {
  UniqueFd gone = listenOn(SocketAddress::loopbackV4());
  const SocketAddress goneAddress = *SocketAddress::localOf(gone.get());
  gone.reset();
  Config config;
  config.workers = 2;
  config.accessLog.mode = AccessLogMode::kOff;
  config.clusters.push_back(checkedCluster({goneAddress}, 20ms, 10ms, 2, 1));
  ListenerConfig listener;
  listener.name = "in";
  listener.bind = SocketAddress::loopbackV4();
  listener.cluster = "hc";
  config.listeners.push_back(listener);
  Gateway gateway(config);
  ASSERT_FALSE(gateway.start().has_value());
  const std::shared_ptr<ClusterState> state = gateway.listeners().at(0)->cluster;
  // Another thread runs the checks: poll the shared state up to a deadline.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (state->healthy(0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_FALSE(state->healthy(0));
  gateway.stop();
}

}  // namespace
}  // namespace evgate::gateway
