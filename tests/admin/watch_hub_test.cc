#include "admin/watch_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace evgate::admin {
namespace {

using Next = WatchHub::Watcher::Next;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Longest a test waits for something that should happen at once; only reached on failure.
constexpr milliseconds kPatience = seconds(10);

v1::WatchEvent event(v1::WatchEventType type, const std::string& listener = "",
                     const std::string& cluster = "", const std::string& client = "") {
  v1::WatchEvent e;
  e.set_type(type);
  e.set_listener(listener);
  e.set_cluster(cluster);
  e.set_client(client);
  return e;
}

v1::WatchEvent flowOpened(const std::string& listener, const std::string& cluster,
                          const std::string& client) {
  return event(v1::WATCH_EVENT_TYPE_FLOW_OPENED, listener, cluster, client);
}

v1::WatchRequest flows(const std::string& listener = "", const std::string& cluster = "",
                       const std::string& clientCidr = "") {
  v1::WatchRequest request;
  request.set_include_flows(true);
  request.mutable_flow_filter()->set_listener(listener);
  request.mutable_flow_filter()->set_cluster(cluster);
  request.mutable_flow_filter()->set_client_cidr(clientCidr);
  return request;
}

// Everything queued for `watcher` now, as sequence numbers.
std::vector<uint64_t> drain(WatchHub::Watcher& watcher) {
  std::vector<uint64_t> sequences;
  v1::WatchEvent out;
  while (watcher.next(out, milliseconds(0)) == Next::kEvent) sequences.push_back(out.sequence());
  return sequences;
}

TEST(WatchHubTest, StampsSequenceFromOneAndTime) {
  WatchHub hub(4, 100);
  EXPECT_EQ(hub.publish(event(v1::WATCH_EVENT_TYPE_CONFIG_RELOADED)), 1u);
  const auto watcher = hub.subscribe(v1::WatchRequest(), nullptr);
  ASSERT_TRUE(watcher);
  const auto before = std::chrono::system_clock::now();
  EXPECT_EQ(hub.publish(event(v1::WATCH_EVENT_TYPE_LISTENER_CREATED, "web")), 2u);
  v1::WatchEvent given = event(v1::WATCH_EVENT_TYPE_LISTENER_DELETED, "web");
  given.mutable_time()->set_seconds(1234);
  EXPECT_EQ(hub.publish(given), 3u);

  v1::WatchEvent out;
  ASSERT_EQ(watcher->next(out, milliseconds(0)), Next::kEvent);
  EXPECT_EQ(out.sequence(), 2u);
  EXPECT_EQ(out.type(), v1::WATCH_EVENT_TYPE_LISTENER_CREATED);
  EXPECT_EQ(out.listener(), "web");
  EXPECT_GE(out.time().seconds(),
            std::chrono::duration_cast<seconds>(before.time_since_epoch()).count());
  ASSERT_EQ(watcher->next(out, milliseconds(0)), Next::kEvent);
  EXPECT_EQ(out.sequence(), 3u);
  EXPECT_EQ(out.time().seconds(), 1234);  // a time the publisher set is kept
  EXPECT_EQ(watcher->next(out, milliseconds(0)), Next::kTimeout);
  EXPECT_EQ(watcher->next(out, milliseconds(20)), Next::kTimeout);
}

// Several threads publish while two watchers read concurrently: each watcher sees every event
// once, in sequence order without gaps, and each publisher's events in the order it made them.
TEST(WatchHubTest, OrderAndSequenceAcrossPublishingThreads) {
  constexpr int kPublishers = 4;
  constexpr int kPerPublisher = 2000;
  constexpr int kTotal = kPublishers * kPerPublisher;
  WatchHub hub(4, kTotal);
  std::vector<std::shared_ptr<WatchHub::Watcher>> watchers;
  for (int i = 0; i < 2; ++i) watchers.push_back(hub.subscribe(v1::WatchRequest(), nullptr));
  ASSERT_TRUE(watchers[0] && watchers[1]);

  std::vector<std::future<std::vector<v1::WatchEvent>>> readers;
  for (const auto& watcher : watchers) {
    readers.push_back(std::async(std::launch::async, [watcher] {
      std::vector<v1::WatchEvent> seen;
      const auto deadline = std::chrono::steady_clock::now() + kPatience;
      v1::WatchEvent out;
      while (seen.size() < kTotal && std::chrono::steady_clock::now() < deadline) {
        if (watcher->next(out, milliseconds(100)) == Next::kEvent) seen.push_back(out);
      }
      return seen;
    }));
  }
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&hub, p] {
      for (int k = 0; k < kPerPublisher; ++k) {
        v1::WatchEvent e = event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED);
        e.set_cluster("c" + std::to_string(p));
        e.set_flow_id(static_cast<uint64_t>(k));
        hub.publish(std::move(e));
      }
    });
  }
  for (std::thread& t : publishers) t.join();

  for (auto& reader : readers) {
    const std::vector<v1::WatchEvent> seen = reader.get();
    ASSERT_EQ(seen.size(), static_cast<size_t>(kTotal));
    std::map<std::string, uint64_t> nextPerPublisher;
    for (size_t i = 0; i < seen.size(); ++i) {
      ASSERT_EQ(seen[i].sequence(), i + 1);
      ASSERT_EQ(seen[i].flow_id(), nextPerPublisher[seen[i].cluster()]++);
    }
    EXPECT_EQ(nextPerPublisher.size(), static_cast<size_t>(kPublishers));
  }
}

TEST(WatchHubTest, FlowEventsGoOnlyToWatchersWhoseFilterMatches) {
  WatchHub hub(8, 100);
  const auto plain = hub.subscribe(v1::WatchRequest(), nullptr);
  const auto all = hub.subscribe(flows(), nullptr);
  const auto web = hub.subscribe(flows("web"), nullptr);
  const auto backends = hub.subscribe(flows("", "backends"), nullptr);
  const auto tenNet = hub.subscribe(flows("", "", "10.0.0.0/8"), nullptr);
  const auto v6 = hub.subscribe(flows("", "", "2001:db8::/32"), nullptr);
  const auto webAndTen = hub.subscribe(flows("web", "backends", "10.1.0.0/16"), nullptr);

  hub.publish(flowOpened("web", "backends", "10.1.2.3:5000"));                            // 1
  hub.publish(flowOpened("api", "backends", "192.168.1.1:5000"));                         // 2
  hub.publish(flowOpened("web", "other", "[2001:db8::7]:5000"));                          // 3
  hub.publish(event(v1::WATCH_EVENT_TYPE_FLOW_CLOSED, "web", "backends", "10.9.9.9:1"));  // 4
  hub.publish(event(v1::WATCH_EVENT_TYPE_LISTENER_PAUSED, "api"));     // 5: not a flow
  hub.publish(flowOpened("web", "backends", "not an address"));        // 6
  hub.publish(flowOpened("web", "backends", "[::ffff:10.1.0.9]:80"));  // 7: mapped IPv4

  EXPECT_EQ(drain(*plain), (std::vector<uint64_t>{5}));
  EXPECT_EQ(drain(*all), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(drain(*web), (std::vector<uint64_t>{1, 3, 4, 5, 6, 7}));
  EXPECT_EQ(drain(*backends), (std::vector<uint64_t>{1, 2, 4, 5, 6, 7}));
  EXPECT_EQ(drain(*tenNet), (std::vector<uint64_t>{1, 4, 5, 7}));
  EXPECT_EQ(drain(*v6), (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(drain(*webAndTen), (std::vector<uint64_t>{1, 5, 7}));
}

TEST(WatchHubTest, WantsFlowEventsWhileAFlowWatcherIsOpen) {
  WatchHub hub(8, 1);
  EXPECT_FALSE(hub.wantsFlowEvents());
  auto plain = hub.subscribe(v1::WatchRequest(), nullptr);
  EXPECT_FALSE(hub.wantsFlowEvents());
  auto first = hub.subscribe(flows(), nullptr);
  auto second = hub.subscribe(flows("web"), nullptr);
  EXPECT_TRUE(hub.wantsFlowEvents());
  first.reset();
  EXPECT_TRUE(hub.wantsFlowEvents());
  second->unsubscribe();
  EXPECT_FALSE(hub.wantsFlowEvents());

  // An overflowed watcher gets nothing more, so it no longer counts.
  auto slow = hub.subscribe(flows(), nullptr);
  EXPECT_TRUE(hub.wantsFlowEvents());
  hub.publish(flowOpened("web", "c", "10.0.0.1:1"));
  hub.publish(flowOpened("web", "c", "10.0.0.1:2"));
  EXPECT_FALSE(hub.wantsFlowEvents());

  auto closing = hub.subscribe(flows(), nullptr);
  EXPECT_TRUE(hub.wantsFlowEvents());
  hub.closeAll();
  EXPECT_FALSE(hub.wantsFlowEvents());
  auto late = hub.subscribe(flows(), nullptr);
  EXPECT_FALSE(hub.wantsFlowEvents());
}

TEST(WatchHubTest, ValidateNamesTheBadField) {
  EXPECT_EQ(WatchHub::validate(v1::WatchRequest()), std::nullopt);
  EXPECT_EQ(WatchHub::validate(flows("web", "backends", "::1")), std::nullopt);
  EXPECT_EQ(WatchHub::validate(flows("", "", "10.0.0.1/8")),
            R"(flow_filter.client_cidr: "10.0.0.1/8" has bits set after the prefix )"
            R"((did you mean "10.0.0.0/8"?))");
  EXPECT_EQ(WatchHub::validate(flows("", "", "ten\n/8")),
            R"(flow_filter.client_cidr: expected a CIDR like 10.0.0.0/8 or 2001:db8::/32, )"
            R"(got "ten\x0a/8")");
  v1::WatchRequest endpoint = flows();
  endpoint.mutable_flow_filter()->set_endpoint("10.0.0.1:80");
  EXPECT_EQ(WatchHub::validate(endpoint),
            "flow_filter.endpoint: Watch cannot filter on it (only listener, cluster, "
            "client_cidr)");
  v1::WatchRequest minIdle = flows();
  minIdle.mutable_flow_filter()->mutable_min_idle()->set_seconds(1);
  EXPECT_EQ(WatchHub::validate(minIdle),
            "flow_filter.min_idle: Watch cannot filter on it (only listener, cluster, "
            "client_cidr)");
  v1::WatchRequest noFlows = flows("web");
  noFlows.set_include_flows(false);
  EXPECT_EQ(WatchHub::validate(noFlows),
            "flow_filter: only applies to flow events; set include_flows");
}

TEST(WatchHubTest, AnInvalidCidrThatSlipsThroughMatchesNoFlow) {
  WatchHub hub(2, 10);
  const auto watcher = hub.subscribe(flows("", "", "bogus"), nullptr);
  EXPECT_FALSE(hub.wantsFlowEvents());
  hub.publish(flowOpened("web", "c", "10.0.0.1:1"));
  hub.publish(event(v1::WATCH_EVENT_TYPE_DRAIN_STARTED));
  EXPECT_EQ(drain(*watcher), (std::vector<uint64_t>{2}));
}

TEST(WatchHubTest, MaxWatchersCapsSubscriptionsAndASlotFreesOnRelease) {
  WatchHub hub(2, 10);
  auto a = hub.subscribe(v1::WatchRequest(), nullptr);
  auto b = hub.subscribe(v1::WatchRequest(), nullptr);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(hub.watcherCount(), 2u);
  EXPECT_EQ(hub.subscribe(v1::WatchRequest(), nullptr), nullptr);
  EXPECT_EQ(hub.watcherCount(), 2u);
  a.reset();
  EXPECT_EQ(hub.watcherCount(), 1u);
  auto c = hub.subscribe(v1::WatchRequest(), nullptr);
  EXPECT_TRUE(c);
  b->unsubscribe();
  b->unsubscribe();  // idempotent
  EXPECT_EQ(hub.watcherCount(), 1u);
  b.reset();
  EXPECT_EQ(hub.watcherCount(), 1u);
}

TEST(WatchHubTest, OverflowCutsTheWatcherOffAndCallsBackOnce) {
  WatchHub hub(4, 3);
  std::atomic<int> slowCalls{0};
  std::atomic<int> fastCalls{0};
  const auto slow = hub.subscribe(v1::WatchRequest(), [&] { ++slowCalls; });
  const auto fast = hub.subscribe(v1::WatchRequest(), [&] { ++fastCalls; });
  v1::WatchEvent out;
  for (int i = 0; i < 3; ++i) hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED));
  EXPECT_EQ(slowCalls, 0);  // exactly full is not overflowed
  EXPECT_EQ(hub.cutOffCount(), 0u);
  EXPECT_EQ(drain(*fast), (std::vector<uint64_t>{1, 2, 3}));

  // The slow watcher never reads: the publisher goes on regardless.
  for (int i = 0; i < 10000; ++i) hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED));
  EXPECT_EQ(slowCalls, 1);
  EXPECT_EQ(slow->next(out, milliseconds(0)), Next::kOverflowed);
  EXPECT_EQ(slow->next(out, milliseconds(0)), Next::kOverflowed);
  EXPECT_EQ(hub.watcherCount(), 2u);  // until its owner lets go

  // The fast one overflowed too (3 at a time), and only once.
  EXPECT_EQ(fastCalls, 1);
  EXPECT_EQ(fast->next(out, milliseconds(0)), Next::kOverflowed);
  // Each cut-off counted once, and the count stays when they leave.
  EXPECT_EQ(hub.cutOffCount(), 2u);
  slow->unsubscribe();
  EXPECT_EQ(hub.cutOffCount(), 2u);
}

TEST(WatchHubTest, OverflowCallbackRunsOutsideTheHubLock) {
  WatchHub hub(4, 1);
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  const auto slow = hub.subscribe(v1::WatchRequest(), [&] {
    entered.set_value();
    released.wait();
  });
  const auto other = hub.subscribe(v1::WatchRequest(), nullptr);
  hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED));
  v1::WatchEvent out;
  ASSERT_EQ(other->next(out, milliseconds(0)), Next::kEvent);  // room for one more
  std::thread overflowing([&] { hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED)); });
  ASSERT_EQ(entered.get_future().wait_for(kPatience), std::future_status::ready);
  // While the callback is stuck, other publishers and readers carry on.
  ASSERT_EQ(other->next(out, milliseconds(0)), Next::kEvent);
  EXPECT_EQ(out.sequence(), 2u);
  auto publishing = std::async(
      std::launch::async, [&] { return hub.publish(event(v1::WATCH_EVENT_TYPE_DRAIN_STARTED)); });
  ASSERT_EQ(publishing.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(publishing.get(), 3u);
  release.set_value();
  overflowing.join();
}

TEST(WatchHubTest, UnsubscribeWaitsForARunningCallbackAndDisarmsIt) {
  WatchHub hub(4, 1);
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> callbackDone{false};
  auto watcher = hub.subscribe(v1::WatchRequest(), [&] {
    entered.set_value();
    released.wait();
    callbackDone = true;
  });
  hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED));
  std::thread overflowing([&] { hub.publish(event(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED)); });
  ASSERT_EQ(entered.get_future().wait_for(kPatience), std::future_status::ready);

  auto unsubscribing = std::async(std::launch::async, [&] {
    watcher->unsubscribe();
    // The owner may now destroy what the callback uses: it must have finished.
    return callbackDone.load();
  });
  // Still blocked behind the callback (a short look; finishing early would be the bug).
  EXPECT_EQ(unsubscribing.wait_for(milliseconds(50)), std::future_status::timeout);
  release.set_value();
  ASSERT_EQ(unsubscribing.wait_for(kPatience), std::future_status::ready);
  EXPECT_TRUE(unsubscribing.get());
  overflowing.join();
}

TEST(WatchHubTest, CloseAllWakesABlockedNext) {
  WatchHub hub(4, 10);
  const auto watcher = hub.subscribe(v1::WatchRequest(), nullptr);
  std::promise<void> waiting;
  auto reader = std::async(std::launch::async, [&] {
    v1::WatchEvent out;
    waiting.set_value();
    const auto start = std::chrono::steady_clock::now();
    const Next result = watcher->next(out, seconds(60));
    return std::make_pair(result, std::chrono::steady_clock::now() - start);
  });
  waiting.get_future().wait();
  hub.closeAll();
  ASSERT_EQ(reader.wait_for(kPatience), std::future_status::ready);
  const auto [result, waited] = reader.get();
  EXPECT_EQ(result, Next::kClosed);
  EXPECT_LT(waited, kPatience);

  // Closed for good: publishing is harmless, a new watcher starts closed.
  hub.publish(event(v1::WATCH_EVENT_TYPE_DRAIN_STARTED));
  v1::WatchEvent out;
  EXPECT_EQ(watcher->next(out, milliseconds(0)), Next::kClosed);
  const auto late = hub.subscribe(v1::WatchRequest(), nullptr);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->next(out, milliseconds(0)), Next::kClosed);
}

TEST(WatchHubTest, NextWakesWhenAnEventArrives) {
  WatchHub hub(4, 10);
  const auto watcher = hub.subscribe(v1::WatchRequest(), nullptr);
  auto reader = std::async(std::launch::async, [&] {
    v1::WatchEvent out;
    const Next result = watcher->next(out, seconds(60));
    return std::make_pair(result, out.sequence());
  });
  hub.publish(event(v1::WATCH_EVENT_TYPE_DRAIN_STARTED));
  ASSERT_EQ(reader.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(reader.get(), std::make_pair(Next::kEvent, uint64_t{1}));
}

TEST(WatchHubTest, WatcherMayOutliveTheHub) {
  auto hub = std::make_unique<WatchHub>(4, 10);
  const auto watcher = hub->subscribe(flows(), nullptr);
  hub.reset();
  v1::WatchEvent out;
  EXPECT_EQ(watcher->next(out, milliseconds(0)), Next::kClosed);
  watcher->unsubscribe();
}

}  // namespace
}  // namespace evgate::admin
