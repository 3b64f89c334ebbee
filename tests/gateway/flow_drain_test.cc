// FlowDrain over real loopback flows: the gateway's workers run on their own threads; the test
// thread is the owner and runs the owner's loop, on which the drain ticks.

#include "gateway/flow_drain.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gateway/gateway.h"
#include "reactor/event_base.h"
#include "tests/gateway/gateway_test_util.h"
#include "tests/gateway/notice_recorder.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using testing::baseConfig;
using testing::closedByPeer;
using testing::clusterOf;
using testing::connectTo;
using testing::EchoBackend;
using testing::echoes;
using testing::listenerOf;
using testing::NoticeRecorder;
using testing::UniqueFd;
using testing::waitClosed;

class FlowDrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config = baseConfig();
    config.clusters.push_back(clusterOf("c", {backend_.address()}));
    config.listeners.push_back(listenerOf("web", "c"));
    config.listeners.push_back(listenerOf("api", "c"));
    gateway_ = std::make_unique<Gateway>(config);
    notices_.flows = true;
    gateway_->setNoticeSink(&notices_);
    ASSERT_FALSE(gateway_->start());
  }

  // `count` established flows through listener `index`.
  std::vector<UniqueFd> open(size_t index, int count) {
    std::vector<UniqueFd> clients;
    for (int i = 0; i < count; ++i) {
      clients.push_back(connectTo(gateway_->listeners()[index]->bound));
      EXPECT_TRUE(echoes(clients.back().get(), "hello"));
    }
    return clients;
  }

  // Starts a drain; `done_` records its result.
  void drain(FlowFilter filter, Duration timeout) {
    drain_ = std::make_unique<FlowDrain>(base_, *gateway_, std::move(filter), timeout,
                                         [this](size_t closed) {
                                           ++calls_;
                                           done_ = closed;
                                         });
    drain_->start();
  }

  size_t closedWith(const std::string& reason) const {
    size_t count = 0;
    for (const Notice& notice : notices_.ofType(Notice::Type::kFlowClosed)) {
      count += notice.detail == reason ? 1 : 0;
    }
    return count;
  }

  EchoBackend backend_;
  NoticeRecorder notices_;
  std::unique_ptr<Gateway> gateway_;
  reactor::EventBase base_;
  std::unique_ptr<FlowDrain> drain_;
  int calls_ = 0;
  std::optional<size_t> done_;
};

TEST_F(FlowDrainTest, NothingMatchingFinishesInsideStart) {
  std::vector<UniqueFd> clients = open(0, 2);
  FlowFilter filter;
  filter.listener = "api";
  drain(filter, 10s);
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(done_, 0u);
  EXPECT_TRUE(drain_->finished());
  EXPECT_EQ(base_.eventCount(), 0u);  // its tick is gone
  for (const UniqueFd& client : clients) EXPECT_TRUE(echoes(client.get(), "untouched"));
}

TEST_F(FlowDrainTest, FlowsThatEndByThemselvesAreNotClosed) {
  std::vector<UniqueFd> clients = open(0, 3);
  drain(FlowFilter{}, 10s);
  EXPECT_FALSE(drain_->finished());
  // The flows still relay while the drain waits for them.
  for (const UniqueFd& client : clients) EXPECT_TRUE(echoes(client.get(), "still relaying"));
  clients.clear();  // the clients close: the flows end with client_eof
  ASSERT_TRUE(reactor::testing::loopUntil(base_, [&] { return drain_->finished(); }));
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(done_, 0u);
  EXPECT_EQ(closedWith("drain"), 0u);
  EXPECT_EQ(closedWith("client_eof"), 3u);
}

TEST_F(FlowDrainTest, WhatIsLeftIsClosedGraduallyInTheLastFifthAndAtTheDeadline) {
  std::vector<UniqueFd> clients = open(0, 6);
  UniqueFd other = std::move(open(1, 1).at(0));
  FlowFilter web;
  web.listenerId = gateway_->listeners()[0]->id;
  constexpr auto kTimeout = 500ms;
  const auto start = std::chrono::steady_clock::now();
  drain(web, kTimeout);
  // Watch the count from the owner's loop: when did the first close happen, and what counts were
  // seen on the way down?
  std::optional<std::chrono::steady_clock::duration> firstClose;
  std::set<size_t> seen;
  ASSERT_TRUE(reactor::testing::loopUntil(base_, [&] {
    const size_t left = gateway_->countFlows(web);
    seen.insert(left);
    if (!firstClose && left < 6) firstClose = std::chrono::steady_clock::now() - start;
    return drain_->finished();
  }));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(done_, 6u);
  ASSERT_TRUE(firstClose);
  // Nothing before the last fifth (400 ms); then a few at a time (20 ms ticks, a share
  // proportional to the time left), not all at once; all by the deadline.
  EXPECT_GE(*firstClose, kTimeout * 4 / 5 - 5ms);
  EXPECT_GE(seen.size(), 3u) << "closed all at once";
  EXPECT_LT(took, kTimeout + 1s);
  for (const UniqueFd& client : clients) EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  EXPECT_TRUE(testing::eventually([&] { return closedWith("drain") == 6; }));
  // Only the filter's flows.
  EXPECT_TRUE(echoes(other.get(), "another listener's flow"));
  EXPECT_EQ(gateway_->countFlows(FlowFilter{}), 1u);
}

TEST_F(FlowDrainTest, ZeroTimeoutClosesEverythingAtOnceAndTheCallbackMayDestroyTheDrain) {
  std::vector<UniqueFd> clients = open(1, 3);
  UniqueFd other = std::move(open(0, 1).at(0));
  FlowFilter api;
  api.listener = "api";
  drain_ =
      std::make_unique<FlowDrain>(base_, *gateway_, api, Duration::zero(), [this](size_t closed) {
        ++calls_;
        done_ = closed;
        drain_.reset();
      });
  drain_->start();
  EXPECT_EQ(drain_, nullptr);
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(done_, 3u);
  EXPECT_EQ(gateway_->countFlows(api), 0u);
  for (const UniqueFd& client : clients) EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  EXPECT_TRUE(echoes(other.get(), "untouched"));
}

TEST_F(FlowDrainTest, CloseNowClosesTheRestAndFinishes) {
  std::vector<UniqueFd> clients = open(0, 2);
  drain(FlowFilter{}, 30s);
  ASSERT_FALSE(drain_->finished());
  drain_->closeNow();
  EXPECT_TRUE(drain_->finished());
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(done_, 2u);
  EXPECT_EQ(drain_->closed(), 2u);
  EXPECT_EQ(gateway_->flowCount(), 0u);
  drain_->closeNow();  // finished: nothing more
  EXPECT_EQ(calls_, 1);
}

}  // namespace
}  // namespace evgate::gateway
