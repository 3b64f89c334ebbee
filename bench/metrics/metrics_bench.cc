// What the metrics cost (issue 5): counting a relayed chunk on a worker, observing a histogram,
// and a scrape on the thread that serves /metrics. scripts/bench-metrics.sh measures the relay
// end to end; these rows isolate the pieces (docs/benchmarks.md, "Metrics: what counting and
// scraping cost").
//
// BM_CountChunk/<way>: one count of one relayed chunk (Flow::relay adds the chunk's bytes), one
// per iteration, into a counter reached through a pointer as the flow reaches its listener's.
// Every way adds to the same counter back to back, so the plain and relaxed rows measure the
// store-to-load dependency through memory, the worst case for them. Rows with ->Threads(2) run
// one benchmark thread per CPU (run the binary with `taskset -c 0-1`): for "private" ways each
// thread has its own cache line, for "shared" ways both threads add to one, which is what a
// single process-wide counter costs when two workers relay at once. Each thread of such a row is
// pinned to a CPU of its own. Compare CPU time: the time a worker's thread spends per count (Google
// Benchmark divides the threads' summed CPU time by their summed iterations). Real time is the
// threads' average wall time over the same sum: about half the CPU time when both ran at once.
//
// BM_HistogramObserve/<way>/<value>: one observation.
//
// BM_LoopIteration/<part>: what each event-loop iteration pays for the loop metrics.
//
// BM_Scrape/listeners:N/flows:F: GatewayCollector::Collect() and prometheus-cpp's TextSerializer
// for a running Gateway (2 workers) with N listeners, each with a cluster of 2 endpoints, and F
// idle flows open. CPU time is the scraping thread's own; real time includes waiting for the
// workers' loops to answer the sample; the workers_cpu_us counter is what answering it cost the
// workers, per scrape.
// BM_Collect: Collect() alone, the rest of BM_Scrape is the serializer.

#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gateway/config/config.h"
#include "gateway/gateway.h"
#include "gateway/metrics/gateway_collector.h"
#include "gateway/stats.h"
#include "reactor/clock.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {
namespace {

using reactor::SocketAddress;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "evgate-metrics-bench: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

// ---- counting one relayed chunk ------------------------------------------------------------

constexpr size_t kMaxThreads = 2;
// A relayed chunk's size (Flow reads at most kMaxSingleRead, 64 KiB, at a time); any value does.
constexpr uint64_t kChunkBytes = uint64_t{16} * 1024;

// In a row with several threads, each benchmark thread runs on a CPU of its own (the N-th of the
// process's allowed CPUs) while the object lives, so that the threads really run at the same time:
// left to the scheduler on a busy 2-vCPU machine, both often share one CPU and take turns, which
// hides any contention. Restores the thread's affinity when it goes.
class OwnCpu {
 public:
  explicit OwnCpu(const benchmark::State& state) {
    if (state.threads() < 2) return;
    if (pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_) != 0) {
      die("pthread_getaffinity_np");
    }
    int seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &saved_) || seen++ != state.thread_index()) continue;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) {
        die("pthread_setaffinity_np");
      }
      pinned_ = true;
      return;
    }
  }
  ~OwnCpu() {
    if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_);
  }
  OwnCpu(const OwnCpu&) = delete;
  OwnCpu& operator=(const OwnCpu&) = delete;

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
};

// The chunk size, opaque to the optimizer so that no add is folded into another.
uint64_t chunkBytes() {
  uint64_t n = kChunkBytes;
  benchmark::DoNotOptimize(n);
  return n;
}

// Reference: a non-atomic add to memory. Not safe to read from a scrape's thread.
void BM_CountChunk_plain(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  static stats::PerWorker<uint64_t> slots(kMaxThreads);
  uint64_t* const counter = &slots.at(state.thread_index());
  const uint64_t n = chunkBytes();
  for (auto _ : state) {
    *counter += n;
    benchmark::ClobberMemory();  // the store happens every iteration
  }
}

// Ours: the worker's own slot of a listener's counters, as Flow::relay counts.
void BM_CountChunk_stats(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  static stats::PerWorker<stats::Counter> slots(kMaxThreads);
  stats::Counter* const counter = &slots.at(state.thread_index());
  const uint64_t n = chunkBytes();
  for (auto _ : state) {
    counter->add(n);
    benchmark::ClobberMemory();
  }
}

// A locked add (lock xadd) on a line only this thread writes.
void BM_CountChunk_atomicPrivate(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  static stats::PerWorker<std::atomic<uint64_t>> slots(kMaxThreads);
  std::atomic<uint64_t>* const counter = &slots.at(state.thread_index());
  const uint64_t n = chunkBytes();
  for (auto _ : state) {
    counter->fetch_add(n, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
}

// The same locked add on one line that every thread writes: a process-wide counter.
void BM_CountChunk_atomicShared(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  static stats::PerWorker<std::atomic<uint64_t>> shared(1);
  std::atomic<uint64_t>* const counter = &shared.at(0);
  const uint64_t n = chunkBytes();
  for (auto _ : state) {
    counter->fetch_add(n, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
}

// prometheus-cpp's Counter (an atomic<double> changed by a compare-exchange loop, in the shared
// library), one per thread on its own line.
void BM_CountChunk_prometheusPrivate(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  static stats::PerWorker<prometheus::Counter> slots(kMaxThreads);
  prometheus::Counter* const counter = &slots.at(state.thread_index());
  const auto n = static_cast<double>(chunkBytes());
  for (auto _ : state) {
    counter->Increment(n);
    benchmark::ClobberMemory();
  }
}

// prometheus-cpp as it is meant to be used: one Counter per label set, registered in a family,
// incremented by every worker.
prometheus::Counter& sharedPrometheusCounter() {
  static const auto registry = std::make_shared<prometheus::Registry>();
  static prometheus::Counter& counter = prometheus::BuildCounter()
                                            .Name("evgate_listener_bytes_total")
                                            .Help("Bytes relayed, by direction.")
                                            .Register(*registry)
                                            .Add({{"listener", "bench"}, {"direction", "in"}});
  return counter;
}

void BM_CountChunk_prometheusShared(benchmark::State& state) {
  const OwnCpu ownCpu(state);
  prometheus::Counter* const counter = &sharedPrometheusCounter();
  const auto n = static_cast<double>(chunkBytes());
  for (auto _ : state) {
    counter->Increment(n);
    benchmark::ClobberMemory();
  }
}

// ---- observing a histogram -----------------------------------------------------------------

// Values: 5 µs, an event-loop iteration (the first bucket of loopIterationBuckets(), observed
// once per loop iteration), and 45 s, a flow's lifetime (the ninth bucket of
// flowDurationBuckets(), observed once per flow).
void BM_HistogramObserve_stats(benchmark::State& state, const stats::Buckets& buckets,
                               std::chrono::nanoseconds value) {
  stats::Histogram histogram(buckets);
  for (auto _ : state) {
    int64_t nanos = value.count();
    benchmark::DoNotOptimize(nanos);
    histogram.observe(std::chrono::nanoseconds(nanos));
    benchmark::ClobberMemory();
  }
}

// prometheus-cpp's Histogram (a mutex around the bucket counts), the same bounds and values.
void BM_HistogramObserve_prometheus(benchmark::State& state, const stats::Buckets& buckets,
                                    std::chrono::nanoseconds value) {
  prometheus::Histogram histogram(buckets.seconds);
  for (auto _ : state) {
    double observed = std::chrono::duration<double>(value).count();
    benchmark::DoNotOptimize(observed);
    histogram.Observe(observed);
    benchmark::ClobberMemory();
  }
}

// ---- an event-loop iteration ---------------------------------------------------------------

// What every loop iteration pays for the loop metrics: EventBase reads its clock after the
// callbacks, and Worker::onIteration counts the iteration and observes its duration (here the
// time since the previous one: the first bucket, as for most iterations of a busy worker).
void BM_LoopIteration_observer(benchmark::State& state) {
  reactor::Clock& clock = reactor::MonotonicClock::instance();
  stats::LoopCounters counters;
  reactor::TimePoint previous = clock.now();
  for (auto _ : state) {
    const reactor::TimePoint finished = clock.now();
    counters.iterations.add(1);
    counters.iterationDuration.observe(finished - previous);
    previous = finished;
    benchmark::ClobberMemory();
  }
}

// The clock read alone, through the same interface.
void BM_LoopIteration_clockRead(benchmark::State& state) {
  reactor::Clock& clock = reactor::MonotonicClock::instance();
  for (auto _ : state) {
    reactor::TimePoint now = clock.now();
    benchmark::DoNotOptimize(now);
  }
}

// ---- a scrape ------------------------------------------------------------------------------

// A listening socket that never accepts: connects to it complete in the kernel (up to the
// backlog), so a flow to it stays open and idle.
class SilentBackend {
 public:
  SilentBackend() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const SocketAddress any = SocketAddress::loopbackV4();
    if (fd_ < 0 || ::bind(fd_, any.data(), any.length()) != 0 || ::listen(fd_, 4096) != 0) {
      die("backend socket");
    }
    address_ = *SocketAddress::localOf(fd_);
  }
  ~SilentBackend() { ::close(fd_); }
  SilentBackend(const SilentBackend&) = delete;
  SilentBackend& operator=(const SilentBackend&) = delete;

  const SocketAddress& address() const { return address_; }

 private:
  int fd_;
  SocketAddress address_;
};

// A running gateway with `listeners` listeners (each its own cluster of two endpoints) and
// `flows` idle flows spread over them.
class ScrapedGateway {
 public:
  ScrapedGateway(size_t listeners, size_t flows) {
    Config config;
    config.workers = 2;
    config.accessLog.mode = AccessLogMode::kOff;
    config.log.level = LogLevel::kWarn;
    for (size_t i = 0; i < listeners; ++i) {
      const std::string name = "listener-" + std::to_string(i);
      ClusterConfig cluster;
      cluster.name = "cluster-" + std::to_string(i);
      for (const SilentBackend& backend : backends_) {
        EndpointConfig endpoint;
        endpoint.address = backend.address();
        cluster.endpoints.push_back(endpoint);
      }
      config.clusters.push_back(cluster);
      ListenerConfig listener;
      listener.name = name;
      listener.bind = SocketAddress::loopbackV4();
      listener.cluster = cluster.name;
      config.listeners.push_back(listener);
    }
    gateway_ = std::make_unique<Gateway>(std::move(config));
    if (const auto error = gateway_->start()) {
      std::fprintf(stderr, "evgate-metrics-bench: gateway: %s\n", error->c_str());
      std::abort();
    }
    openFlows(flows);
  }
  ~ScrapedGateway() {
    for (const int fd : clients_) ::close(fd);
    gateway_->stop();
  }
  ScrapedGateway(const ScrapedGateway&) = delete;
  ScrapedGateway& operator=(const ScrapedGateway&) = delete;

  const Gateway& gateway() const { return *gateway_; }

 private:
  void openFlows(size_t flows) {
    const auto& listeners = gateway_->listeners();
    for (size_t i = 0; i < flows; ++i) {
      const SocketAddress& to = listeners[i % listeners.size()]->bound;
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0 || ::connect(fd, to.data(), to.length()) != 0) die("client connect");
      clients_.push_back(fd);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (gateway_->flowCount() < flows) {
      if (std::chrono::steady_clock::now() > deadline) die("flows did not open");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  SilentBackend backends_[2];
  std::unique_ptr<Gateway> gateway_;
  std::vector<int> clients_;
};

double cpuSeconds(clockid_t clock) {
  timespec now{};
  if (::clock_gettime(clock, &now) != 0) die("clock_gettime");
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

void BM_Scrape(benchmark::State& state) {
  const ScrapedGateway scraped(static_cast<size_t>(state.range(0)),
                               static_cast<size_t>(state.range(1)));
  const metrics::GatewayCollector collector(scraped.gateway());
  const prometheus::TextSerializer serializer;
  size_t bytes = 0;
  size_t series = 0;
  // The process's CPU time less this thread's: the workers answering the sample (they are idle
  // otherwise).
  const double processStart = cpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  const double threadStart = cpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  for (auto _ : state) {
    const std::vector<prometheus::MetricFamily> families = collector.Collect();
    const std::string text = serializer.Serialize(families);
    benchmark::DoNotOptimize(text.data());
    bytes = text.size();
    series = 0;
    for (const auto& family : families) series += family.metric.size();
  }
  const double others = (cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - processStart) -
                        (cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - threadStart);
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["series"] = static_cast<double>(series);
  state.counters["workers_cpu_us"] = 1e6 * others / static_cast<double>(state.iterations());
}

// Collect() alone: BM_Scrape less this is the serializer's share.
void BM_Collect(benchmark::State& state) {
  const ScrapedGateway scraped(static_cast<size_t>(state.range(0)),
                               static_cast<size_t>(state.range(1)));
  const metrics::GatewayCollector collector(scraped.gateway());
  for (auto _ : state) {
    const std::vector<prometheus::MetricFamily> families = collector.Collect();
    benchmark::DoNotOptimize(families.data());
  }
}

// Rows, by group. Each CountChunk way runs alone and, where two workers would share it or not,
// on two threads.
BENCHMARK(BM_CountChunk_plain)->Name("BM_CountChunk/plain")->Threads(1);
BENCHMARK(BM_CountChunk_stats)->Name("BM_CountChunk/stats_counter")->Threads(1)->Threads(2);
BENCHMARK(BM_CountChunk_atomicPrivate)
    ->Name("BM_CountChunk/atomic_private")
    ->Threads(1)
    ->Threads(2);
BENCHMARK(BM_CountChunk_atomicShared)->Name("BM_CountChunk/atomic_shared")->Threads(2);
BENCHMARK(BM_CountChunk_prometheusPrivate)
    ->Name("BM_CountChunk/prometheus_private")
    ->Threads(1)
    ->Threads(2);
BENCHMARK(BM_CountChunk_prometheusShared)->Name("BM_CountChunk/prometheus_shared")->Threads(2);

using std::chrono::microseconds;
using std::chrono::seconds;
BENCHMARK_CAPTURE(BM_HistogramObserve_stats, loop_5us, stats::loopIterationBuckets(),
                  microseconds(5))
    ->Name("BM_HistogramObserve/stats/loop_5us");
BENCHMARK_CAPTURE(BM_HistogramObserve_stats, flow_45s, stats::flowDurationBuckets(), seconds(45))
    ->Name("BM_HistogramObserve/stats/flow_45s");
BENCHMARK_CAPTURE(BM_HistogramObserve_prometheus, loop_5us, stats::loopIterationBuckets(),
                  microseconds(5))
    ->Name("BM_HistogramObserve/prometheus/loop_5us");
BENCHMARK_CAPTURE(BM_HistogramObserve_prometheus, flow_45s, stats::flowDurationBuckets(),
                  seconds(45))
    ->Name("BM_HistogramObserve/prometheus/flow_45s");

BENCHMARK(BM_LoopIteration_observer)->Name("BM_LoopIteration/clock_count_observe");
BENCHMARK(BM_LoopIteration_clockRead)->Name("BM_LoopIteration/clock_read");

BENCHMARK(BM_Scrape)
    ->ArgNames({"listeners", "flows"})
    ->Args({1, 0})
    ->Args({100, 0})
    ->Args({100, 1000})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Collect)
    ->ArgNames({"listeners", "flows"})
    ->Args({1, 0})
    ->Args({100, 0})
    ->Args({100, 1000})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace evgate::gateway

BENCHMARK_MAIN();
