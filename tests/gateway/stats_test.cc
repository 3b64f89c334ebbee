// The data plane's counters (gateway/stats.h): histogram bucket placement and the cumulative sums
// a scrape reads, a cluster's counters kept across a change by endpoint address, and PerWorker's
// one-cache-line-per-worker layout.

#include "gateway/stats.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gateway/config/config.h"
#include "reactor/socket_address.h"

namespace evgate::gateway::stats {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

constexpr uintptr_t kCacheLine = 64;

// Every bucket's own count, the +Inf bucket last.
std::vector<uint64_t> countsOf(const Histogram& histogram) {
  std::vector<uint64_t> counts;
  for (size_t i = 0; i <= histogram.buckets().nanos.size(); ++i) {
    counts.push_back(histogram.count(i));
  }
  return counts;
}

// One count in bucket `bucket` (of `size` buckets including +Inf), none elsewhere.
std::vector<uint64_t> onlyIn(size_t bucket, size_t size) {
  std::vector<uint64_t> counts(size, 0);
  counts.at(bucket) = 1;
  return counts;
}

// ---- Buckets

TEST(StatsBucketsTest, TheDocumentedBoundsInSecondsAndNanoseconds) {
  const std::vector<double> flow = {0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
  EXPECT_EQ(flowDurationBuckets().seconds, flow);
  const std::vector<double> connect = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
  EXPECT_EQ(connectDurationBuckets().seconds, connect);
  const std::vector<double> loop = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                    0.0005,  0.001,    0.0025,  0.005,  0.01,
                                    0.025,   0.05,     0.1,     0.25,   1};
  EXPECT_EQ(loopIterationBuckets().seconds, loop);

  // The nanosecond bounds are the exact values, not a float's truncation (0.00025 s * 1e9 is
  // 249999.99... in binary).
  EXPECT_EQ(connectDurationBuckets().nanos[1], 250'000);
  EXPECT_EQ(loopIterationBuckets().nanos[1], 25'000);
  EXPECT_EQ(flowDurationBuckets().nanos.back(), 3'600'000'000'000);
  for (const Buckets* buckets :
       {&flowDurationBuckets(), &connectDurationBuckets(), &loopIterationBuckets()}) {
    ASSERT_EQ(buckets->nanos.size(), buckets->seconds.size());
    for (size_t i = 1; i < buckets->nanos.size(); ++i) {
      EXPECT_LT(buckets->nanos[i - 1], buckets->nanos[i]);
    }
  }
}

// ---- Histogram

TEST(StatsHistogramTest, AValueEqualToABoundGoesInThatBucketAndOneAboveInTheNext) {
  const Buckets& buckets = connectDurationBuckets();
  const size_t size = buckets.nanos.size() + 1;
  for (size_t i = 0; i < buckets.nanos.size(); ++i) {
    Histogram at(buckets);
    at.observe(nanoseconds(buckets.nanos[i]));
    EXPECT_EQ(countsOf(at), onlyIn(i, size)) << "a value equal to bound " << buckets.seconds[i];

    Histogram above(buckets);
    above.observe(nanoseconds(buckets.nanos[i] + 1));
    EXPECT_EQ(countsOf(above), onlyIn(i + 1, size)) << "1 ns above bound " << buckets.seconds[i];

    Histogram below(buckets);
    below.observe(nanoseconds(buckets.nanos[i] - 1));
    EXPECT_EQ(countsOf(below), onlyIn(i, size)) << "1 ns below bound " << buckets.seconds[i];
  }
}

TEST(StatsHistogramTest, AboveTheLastBoundGoesToInfAndZeroAndNegativeToTheFirst) {
  const Buckets& buckets = flowDurationBuckets();
  const size_t size = buckets.nanos.size() + 1;
  Histogram histogram(buckets);
  histogram.observe(3601s);
  EXPECT_EQ(countsOf(histogram), onlyIn(size - 1, size));
  histogram.observe(24h * 365);
  EXPECT_EQ(histogram.count(size - 1), 2u);

  Histogram small(buckets);
  small.observe(nanoseconds(0));
  small.observe(-5s);  // a clock that went back: counted as 0, not subtracted from the sum
  std::vector<uint64_t> expected(size, 0);
  expected[0] = 2;
  EXPECT_EQ(countsOf(small), expected);
  EXPECT_EQ(small.sumNanos(), 0u);
}

TEST(StatsHistogramTest, TheSumIsInNanoseconds) {
  Histogram histogram(loopIterationBuckets());
  histogram.observe(1500ns);
  histogram.observe(2ms);
  histogram.observe(3s);
  EXPECT_EQ(histogram.sumNanos(), 1'500u + 2'000'000u + 3'000'000'000u);
}

// ---- HistogramTotal

TEST(StatsHistogramTotalTest, CumulativeCountsAndSumOverSeveralHistograms) {
  const Buckets& buckets = flowDurationBuckets();  // 0.001, 0.01, 0.1, 0.5, 1, 5, ...
  Histogram a(buckets);
  a.observe(1ms);   // bucket 0 (le 0.001)
  a.observe(50ms);  // bucket 2 (le 0.1)
  a.observe(2h);    // +Inf
  Histogram b(buckets);
  b.observe(500us);      // bucket 0
  b.observe(1s);         // bucket 4 (le 1)
  Histogram c(buckets);  // empty: adds nothing

  HistogramTotal total(buckets);
  EXPECT_EQ(total.cumulative, std::vector<uint64_t>(buckets.nanos.size() + 1, 0));
  total.add(a);
  total.add(b);
  total.add(c);
  //                                   0.001 0.01 0.1 0.5 1  5  10 30 60 300 900 3600 +Inf
  const std::vector<uint64_t> expected = {2, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5};
  EXPECT_EQ(total.cumulative, expected);
  EXPECT_EQ(total.cumulative.back(), 5u) << "the last cumulative count is the total count";
  EXPECT_NEAR(total.sumSeconds, 0.001 + 0.05 + 7200 + 0.0005 + 1, 1e-9);
  EXPECT_EQ(total.buckets, &buckets);

  // Adding again adds again: a scrape makes a fresh total every time.
  total.add(b);
  EXPECT_EQ(total.cumulative.front(), 3u);
  EXPECT_EQ(total.cumulative.back(), 7u);
}

TEST(StatsHistogramTotalTest, CumulativeCountsNeverDecrease) {
  const Buckets& buckets = loopIterationBuckets();
  Histogram h(buckets);
  for (int64_t ns = 1; ns < 2'000'000'000; ns = ns * 3 + 7) h.observe(nanoseconds(ns));
  HistogramTotal total(buckets);
  total.add(h);
  for (size_t i = 1; i < total.cumulative.size(); ++i) {
    EXPECT_LE(total.cumulative[i - 1], total.cumulative[i]) << "bucket " << i;
  }
  uint64_t observed = 0;
  for (size_t i = 0; i <= buckets.nanos.size(); ++i) observed += h.count(i);
  EXPECT_EQ(total.cumulative.back(), observed);
}

// ---- Counter, Gauge, sumOver

TEST(StatsCounterTest, CountersAndGaugesAddAndSumOverWorkers) {
  PerWorker<EndpointCounters> perWorker(3);
  perWorker.at(0).attempts.add();
  perWorker.at(1).attempts.add(4);
  perWorker.at(2).attempts.add(10);
  perWorker.at(0).activeFlows.add(2);
  perWorker.at(0).activeFlows.add(-1);
  perWorker.at(2).activeFlows.add(-3);  // a slot alone may go negative; the sum is the value
  EXPECT_EQ(sumOver(perWorker, [](const EndpointCounters& c) { return c.attempts.value(); }), 15u);
  int64_t flows = 0;
  for (size_t w = 0; w < perWorker.size(); ++w) flows += perWorker.at(w).activeFlows.value();
  EXPECT_EQ(flows, -2);
}

// ---- Label names

TEST(StatsNamesTest, LabelValuesAreTheDocumentedOnes) {
  EXPECT_STREQ(directionName(0), "client_to_upstream");
  EXPECT_STREQ(directionName(1), "upstream_to_client");
  EXPECT_STREQ(rejectReasonName(kRejectedMaxConnections), "max_connections");
  EXPECT_STREQ(rejectReasonName(kRejectedNotAllowed), "not_allowed");
  EXPECT_STREQ(rejectReasonName(kRejectedFdLimit), "fd_limit");
  EXPECT_STREQ(rejectReasonName(kRejectedBufferBudget), "buffer_budget");
  // Failure index = ConnectResult - 1.
  EXPECT_STREQ(connectFailureName(static_cast<size_t>(ConnectResult::kRefused) - 1), "refused");
  EXPECT_STREQ(connectFailureName(static_cast<size_t>(ConnectResult::kTimeout) - 1), "timeout");
  EXPECT_STREQ(connectFailureName(static_cast<size_t>(ConnectResult::kError) - 1), "error");
  EXPECT_EQ(kCloseReasons, static_cast<size_t>(CloseReason::kProxyProtocol) + 1);
}

// ---- ClusterStats::make

reactor::SocketAddress at(const std::string& text) { return *reactor::SocketAddress::parse(text); }

ClusterConfig clusterWith(const std::vector<std::string>& addresses) {
  ClusterConfig config;
  config.name = "c";
  for (const std::string& address : addresses) {
    EndpointConfig endpoint;
    endpoint.address = at(address);
    config.endpoints.push_back(endpoint);
  }
  return config;
}

TEST(StatsClusterStatsTest, FreshCountersHaveOneEndpointEntryPerEndpointAndOneSlotPerWorker) {
  const ClusterConfig config = clusterWith({"127.0.0.1:1001", "127.0.0.1:1002"});
  const std::shared_ptr<ClusterStats> made = ClusterStats::make(config, 3, nullptr, nullptr);
  ASSERT_NE(made->counters, nullptr);
  EXPECT_EQ(made->counters->size(), 3u);
  ASSERT_EQ(made->endpoints.size(), 2u);
  EXPECT_NE(made->endpoints[0], made->endpoints[1]);
  for (const auto& endpoint : made->endpoints) {
    ASSERT_NE(endpoint, nullptr);
    EXPECT_EQ(endpoint->workers.size(), 3u);
    EXPECT_EQ(endpoint->workers.at(2).attempts.value(), 0u);
  }
}

TEST(StatsClusterStatsTest, AChangeKeepsTheClusterCountersAndTheEndpointsItKeepsByAddress) {
  const ClusterConfig before = clusterWith({"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"});
  const std::shared_ptr<ClusterStats> old = ClusterStats::make(before, 2, nullptr, nullptr);
  old->endpoints[0]->workers.at(0).attempts.add(5);
  old->endpoints[1]->workers.at(1).attempts.add(7);
  old->endpoints[1]->workers.at(1).failures[0].add(2);
  old->endpoints[1]->workers.at(0).activeFlows.add(1);
  old->endpoints[2]->workers.at(0).attempts.add(11);
  old->counters->at(1).connectDuration.observe(1ms);

  // 1002 and 1001 kept (in another order), 1003 gone, 1004 new.
  const ClusterConfig after = clusterWith({"127.0.0.1:1002", "127.0.0.1:1004", "127.0.0.1:1001"});
  const std::shared_ptr<ClusterStats> made = ClusterStats::make(after, 2, old.get(), &before);
  EXPECT_EQ(made->counters, old->counters) << "the cluster's own counters (connect durations)";
  ASSERT_EQ(made->endpoints.size(), 3u);
  EXPECT_EQ(made->endpoints[0], old->endpoints[1]) << "127.0.0.1:1002 kept by address";
  EXPECT_EQ(made->endpoints[2], old->endpoints[0]) << "127.0.0.1:1001 kept by address";
  for (const auto& previous : old->endpoints) {
    EXPECT_NE(made->endpoints[1], previous) << "127.0.0.1:1004 is new: fresh counters";
  }
  EXPECT_EQ(made->endpoints[0]->workers.at(1).attempts.value(), 7u);
  EXPECT_EQ(made->endpoints[0]->workers.at(1).failures[0].value(), 2u);
  EXPECT_EQ(made->endpoints[0]->workers.at(0).activeFlows.value(), 1);
  EXPECT_EQ(made->endpoints[2]->workers.at(0).attempts.value(), 5u);
  EXPECT_EQ(made->endpoints[1]->workers.at(0).attempts.value(), 0u);
  EXPECT_EQ(made->counters->at(1).connectDuration.count(3), 1u);  // 1 ms: le 0.001

  // What the old ClusterState's flows still count shows through the new one.
  old->endpoints[1]->workers.at(0).activeFlows.add(-1);
  EXPECT_EQ(made->endpoints[0]->workers.at(0).activeFlows.value(), 0);

  // An endpoint is matched on host and port: the same host on another port is new.
  const ClusterConfig otherPort = clusterWith({"127.0.0.1:2002"});
  const std::shared_ptr<ClusterStats> moved = ClusterStats::make(otherPort, 2, made.get(), &after);
  ASSERT_EQ(moved->endpoints.size(), 1u);
  for (const auto& previous : made->endpoints) EXPECT_NE(moved->endpoints[0], previous);
}

TEST(StatsClusterStatsTest, WithoutAPreviousConfigNoEndpointIsKept) {
  const ClusterConfig config = clusterWith({"127.0.0.1:1001"});
  const std::shared_ptr<ClusterStats> old = ClusterStats::make(config, 1, nullptr, nullptr);
  const std::shared_ptr<ClusterStats> made = ClusterStats::make(config, 1, old.get(), nullptr);
  EXPECT_EQ(made->counters, old->counters);
  ASSERT_EQ(made->endpoints.size(), 1u);
  EXPECT_NE(made->endpoints[0], old->endpoints[0]);
}

// ---- PerWorker layout

// Whether [a, a + aSize) and [b, b + bSize) share a cache line.
bool shareACacheLine(const void* a, size_t aSize, const void* b, size_t bSize) {
  const auto first = [](const void* p) { return reinterpret_cast<uintptr_t>(p) / kCacheLine; };
  const auto last = [](const void* p, size_t size) {
    return (reinterpret_cast<uintptr_t>(p) + size - 1) / kCacheLine;
  };
  return first(a) <= last(b, bSize) && first(b) <= last(a, aSize);
}

template <typename T>
void expectSlotsOnTheirOwnCacheLines(const PerWorker<T>& perWorker) {
  ASSERT_GE(perWorker.size(), 2u);
  for (size_t w = 0; w < perWorker.size(); ++w) {
    const T& slot = perWorker.at(w);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(&slot) % kCacheLine, 0u) << "worker " << w;
    for (size_t other = w + 1; other < perWorker.size(); ++other) {
      EXPECT_FALSE(shareACacheLine(&slot, sizeof(T), &perWorker.at(other), sizeof(T)))
          << "workers " << w << " and " << other << " share a cache line";
    }
  }
}

TEST(StatsPerWorkerTest, EverySlotStartsOnItsOwnCacheLineAndSharesNoneWithAnother) {
  // Small types (one counter) and types larger than a line.
  expectSlotsOnTheirOwnCacheLines(PerWorker<Counter>(8));
  expectSlotsOnTheirOwnCacheLines(PerWorker<EndpointCounters>(4));
  expectSlotsOnTheirOwnCacheLines(PerWorker<ListenerCounters>(4));
  expectSlotsOnTheirOwnCacheLines(PerWorker<ClusterCounters>(3));
  EXPECT_GT(sizeof(ListenerCounters), kCacheLine);
}

TEST(StatsPerWorkerTest, SlotsAreIndependentAndTakeTheConstructorArguments) {
  PerWorker<Histogram> histograms(2, connectDurationBuckets());
  EXPECT_EQ(&histograms.at(0).buckets(), &connectDurationBuckets());
  EXPECT_EQ(&histograms.at(1).buckets(), &connectDurationBuckets());
  histograms.at(1).observe(6s);  // above the last bound (5 s)
  EXPECT_EQ(histograms.at(1).count(connectDurationBuckets().nanos.size()), 1u);
  EXPECT_EQ(histograms.at(0).count(connectDurationBuckets().nanos.size()), 0u);

  ListenerStats listener("web", 2);
  EXPECT_EQ(listener.name, "web");
  EXPECT_EQ(listener.workers.size(), 2u);
  listener.workers.at(0).bytes[0].add(10);
  listener.workers.at(1).bytes[0].add(32);
  EXPECT_EQ(sumOver(listener.workers, [](const ListenerCounters& c) { return c.bytes[0].value(); }),
            42u);
  EXPECT_EQ(listener.workers.at(0).bytes[1].value(), 0u);
}

}  // namespace
}  // namespace evgate::gateway::stats
