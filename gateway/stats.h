#pragma once

// The data plane's counters: what the metrics endpoint reports (docs/metrics.md), kept so that
// the relay path never pays for them more than a plain add.
//
// Every counter here has one writer thread: each worker counts into its own slot (PerWorker) of a
// listener's, cluster's or endpoint's counters, one cache line per worker, so no two threads
// write the same line and no add needs a locked instruction (a relaxed load and store of the
// worker's own value). Any thread may read: the scrape adds the slots up.

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gateway/close_reason.h"
#include "gateway/config/config.h"
#include "reactor/clock.h"

namespace evgate::gateway::stats {

// A counter with one writer thread; any thread reads it.
class Counter {
 public:
  void add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A gauge with one writer thread (it goes up and down); any thread reads it. The sum over the
// workers is the value: one worker's slot may be negative on its own only if a decrement is
// made on another worker than its increment, which the users here never do.
class Gauge {
 public:
  void add(int64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Upper bounds of a histogram's buckets, in seconds and in nanoseconds (what observe() compares).
struct Buckets {
  std::vector<double> seconds;
  std::vector<int64_t> nanos;
  explicit Buckets(std::vector<double> upperBounds);
};
const Buckets& flowDurationBuckets();
const Buckets& connectDurationBuckets();
const Buckets& loopIterationBuckets();

// A histogram with one writer thread: per-bucket (not cumulative) counts, the +Inf bucket last,
// and the sum in nanoseconds. The counts live inline, so a histogram in a worker's slot stays on
// that worker's cache lines.
class Histogram {
 public:
  static constexpr size_t kMaxBounds = 15;

  explicit Histogram(const Buckets& buckets) : buckets_(&buckets) {}
  void observe(reactor::Duration value);
  const Buckets& buckets() const { return *buckets_; }
  // Bucket i's own count (i == bounds: the +Inf bucket).
  uint64_t count(size_t bucket) const { return counts_[bucket].value(); }
  uint64_t sumNanos() const { return sumNanos_.value(); }

 private:
  const Buckets* buckets_;
  std::array<Counter, kMaxBounds + 1> counts_;
  Counter sumNanos_;
};

// What a scrape reads out of histograms: cumulative bucket counts (bounds() + 1, the last is the
// total count) and the sum in seconds. Adds histograms of the same buckets.
struct HistogramTotal {
  explicit HistogramTotal(const Buckets& b) : buckets(&b), cumulative(b.nanos.size() + 1, 0) {}
  void add(const Histogram& histogram);
  const Buckets* buckets;
  std::vector<uint64_t> cumulative;
  double sumSeconds = 0;
};

// One T per worker, each on its own cache lines.
template <typename T>
class PerWorker {
 public:
  template <typename... Args>
  explicit PerWorker(size_t workers, const Args&... args) : size_(workers) {
    slots_.reserve(workers);
    for (size_t w = 0; w < workers; ++w) slots_.push_back(std::make_unique<Slot>(args...));
  }
  T& at(size_t worker) { return slots_[worker]->value; }
  const T& at(size_t worker) const { return slots_[worker]->value; }
  size_t size() const { return size_; }

 private:
  struct alignas(64) Slot {
    template <typename... Args>
    explicit Slot(const Args&... args) : value(args...) {}
    T value;
  };
  size_t size_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

// Index 0: bytes from the client to the upstream; 1: from the upstream to the client. The same
// as Flow's sides: what is read from side i goes in direction i.
inline constexpr size_t kDirections = 2;
const char* directionName(size_t direction);

inline constexpr size_t kCloseReasons = static_cast<size_t>(CloseReason::kProxyProtocol) + 1;

// Why a connection was closed at accept.
inline constexpr size_t kRejectedMaxConnections = 0;
inline constexpr size_t kRejectedNotAllowed = 1;
// Out of fds (EMFILE/ENFILE): the listener closed the connection at once with its reserve fd,
// or, not even that fd being free, paused accepting (reactor/listener.h).
inline constexpr size_t kRejectedFdLimit = 2;
inline constexpr size_t kRejectedBufferBudget = 3;  // max_buffered_bytes reached
inline constexpr size_t kRejectReasons = 4;
// "max_connections", "not_allowed", "fd_limit", "buffer_budget".
const char* rejectReasonName(size_t reason);

// One worker's counts for one listener.
struct ListenerCounters {
  ListenerCounters() : flowDuration(flowDurationBuckets()) {}
  Counter accepted;
  std::array<Counter, kRejectReasons> rejected;
  std::array<Counter, kDirections> bytes;
  std::array<Counter, kCloseReasons> closed;
  Histogram flowDuration;
  // Backpressure, by the direction held back.
  std::array<Counter, kDirections> readPauses;
  std::array<Counter, kDirections> pausedNanos;
};

// The sum over every worker of what `read` reads from one worker's T.
template <typename T, typename Read>
uint64_t sumOver(const PerWorker<T>& perWorker, Read read) {
  uint64_t sum = 0;
  for (size_t w = 0; w < perWorker.size(); ++w) sum += read(perWorker.at(w));
  return sum;
}

// A listener's counters, kept by name: a listener updated in place or replaced by a reload
// (new bind) keeps them; a deleted one's go with it. Flows still draining may count into them
// after that; nobody reads them then.
struct ListenerStats {
  ListenerStats(std::string listenerName, size_t workerCount)
      : name(std::move(listenerName)), workers(workerCount) {}
  const std::string name;
  PerWorker<ListenerCounters> workers;
};

// Why a connect attempt ended.
enum class ConnectResult : uint8_t { kOk, kRefused, kTimeout, kError };
inline constexpr size_t kConnectFailureReasons = 3;  // kRefused, kTimeout, kError
// "refused", "timeout", "error" for failure index 0..2 (ConnectResult - 1).
const char* connectFailureName(size_t index);

// One worker's counts for one endpoint.
struct EndpointCounters {
  Counter attempts;
  std::array<Counter, kConnectFailureReasons> failures;
  Gauge activeFlows;
};

// An endpoint's counters, kept by cluster name and endpoint address across cluster changes.
struct EndpointStats {
  explicit EndpointStats(size_t workerCount) : workers(workerCount) {}
  PerWorker<EndpointCounters> workers;
};

struct ClusterCounters {
  ClusterCounters() : connectDuration(connectDurationBuckets()) {}
  Histogram connectDuration;
};

// A cluster's counters: the cluster's own and one EndpointStats per endpoint, in the order of its
// configuration's endpoints.
struct ClusterStats {
  std::shared_ptr<PerWorker<ClusterCounters>> counters;
  std::vector<std::shared_ptr<EndpointStats>> endpoints;

  // Fresh counters for `config`, or, with `previous` (the same cluster before a change), its
  // cluster counters and the counters of every endpoint it keeps (same address).
  static std::shared_ptr<ClusterStats> make(const ClusterConfig& config, size_t workers,
                                            const ClusterStats* previous,
                                            const ClusterConfig* previousConfig);
};

// One worker's loop: iterations and how long each ran its callbacks. Written on every iteration:
// on cache lines of its own.
struct alignas(64) LoopCounters {
  LoopCounters() : iterationDuration(loopIterationBuckets()) {}
  Counter iterations;
  Histogram iterationDuration;
};

}  // namespace evgate::gateway::stats
