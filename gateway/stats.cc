#include "gateway/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace evgate::gateway::stats {

Buckets::Buckets(std::vector<double> upperBounds) : seconds(std::move(upperBounds)) {
  if (seconds.size() > Histogram::kMaxBounds) std::abort();  // a programming error
  nanos.reserve(seconds.size());
  for (const double bound : seconds) nanos.push_back(std::llround(bound * 1e9));
}

// The bounds docs/metrics.md lists.
const Buckets& flowDurationBuckets() {
  static const Buckets buckets({0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600});
  return buckets;
}

const Buckets& connectDurationBuckets() {
  static const Buckets buckets({0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1, 0.25, 0.5, 1, 2.5, 5});
  return buckets;
}

const Buckets& loopIterationBuckets() {
  static const Buckets buckets({0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  return buckets;
}

void Histogram::observe(reactor::Duration value) {
  const int64_t nanos =
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(value).count());
  const std::vector<int64_t>& bounds = buckets_->nanos;
  // A linear scan: at most 15 bounds, and short values (the common case) stop early.
  size_t bucket = 0;
  while (bucket < bounds.size() && nanos > bounds[bucket]) ++bucket;
  counts_[bucket].add(1);
  sumNanos_.add(static_cast<uint64_t>(nanos));
}

void HistogramTotal::add(const Histogram& histogram) {
  uint64_t running = 0;
  for (size_t i = 0; i < cumulative.size(); ++i) {
    running += histogram.count(i);
    cumulative[i] += running;
  }
  sumSeconds += static_cast<double>(histogram.sumNanos()) / 1e9;
}

const char* directionName(size_t direction) {
  return direction == 0 ? "client_to_upstream" : "upstream_to_client";
}

const char* rejectReasonName(size_t reason) {
  static constexpr const char* kNames[kRejectReasons] = {"max_connections", "not_allowed",
                                                         "fd_limit", "buffer_budget"};
  return reason < kRejectReasons ? kNames[reason] : "unknown";
}

const char* connectFailureName(size_t index) {
  static constexpr const char* kNames[kConnectFailureReasons] = {"refused", "timeout", "error"};
  return index < kConnectFailureReasons ? kNames[index] : "error";
}

std::shared_ptr<ClusterStats> ClusterStats::make(const ClusterConfig& config, size_t workers,
                                                 const ClusterStats* previous,
                                                 const ClusterConfig* previousConfig) {
  auto made = std::make_shared<ClusterStats>();
  made->counters = previous != nullptr ? previous->counters
                                       : std::make_shared<PerWorker<ClusterCounters>>(workers);
  for (const EndpointConfig& endpoint : config.endpoints) {
    std::shared_ptr<EndpointStats> kept;
    if (previous != nullptr && previousConfig != nullptr) {
      for (size_t i = 0; i < previousConfig->endpoints.size() && i < previous->endpoints.size();
           ++i) {
        if (previousConfig->endpoints[i].address == endpoint.address) kept = previous->endpoints[i];
      }
    }
    made->endpoints.push_back(kept ? std::move(kept) : std::make_shared<EndpointStats>(workers));
  }
  return made;
}

}  // namespace evgate::gateway::stats
