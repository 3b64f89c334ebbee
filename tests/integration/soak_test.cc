// A soak test of the real evgate daemon (issue 8; docs/reliability.md has the figures of a
// 10-minute run): mixed traffic, admin churn and upstream faults at once, with the daemon's
// resident memory, fds and round-trip latency sampled over time.
//
//   EVGATE_SOAK_SECONDS=600 build/release/tests/integration/integration_soak_test
//   scripts/soak.sh [SECONDS]                      (the same, after building)
//
// Opt-in: without EVGATE_SOAK_SECONDS the suite runs it as a short smoke test (a few seconds),
// which checks every part's correctness but passes no verdict on growth, since a short run is
// all warm-up. With it, the test also fails when memory, fds or latency grow: the last quarter
// of the run is compared with the second (the first is warm-up: allocator arenas, connection
// pools and the kernel's socket caches fill), and once the load stops and the flows end, the
// daemon must hold the fds it held before the load began.
//
// What runs at once:
//   pingers     8 clients, each a connection of 50 to 500 round trips of 64 bytes, then a new one;
//               every round trip timed
//   short       connect, echo 1 KiB, close, about 100 times a second
//   bulk        2 clients streaming checked payloads (8 MiB each way; 1 MiB under sanitizers)
//   faults      in turn: an upstream that resets after 64 KiB, one that echoes 32 KiB and
//               half-closes, one that never answers (closed by idle_timeout: 1s)
//   admin       about 10 cycles a second of: create a cluster and a listener, relay a flow
//               through it, update its limit, ListFlows, delete both; state file on
//   watcher     a Watch stream that reads every event: sequence numbers contiguous, never cut off

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/integration/fault_upstream.h"
#include "tests/integration/figures.h"
#include "tests/integration/grpc_probe.h"
#include "tests/integration/net_util.h"
#include "tests/integration/payload_flow.h"
#include "tests/integration/proc_stat.h"
#include "tests/integration/relay_daemon.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

// How long to run: EVGATE_SOAK_SECONDS, else a smoke run. nullopt: the smoke run.
std::optional<int> soakSeconds() {
  const char* text = std::getenv("EVGATE_SOAK_SECONDS");
  if (text == nullptr || *text == '\0') return std::nullopt;
  return std::max(20, std::atoi(text));
}

// Round trips timed during one sampling window, in microseconds.
class LatencyWindow {
 public:
  void add(Clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    std::lock_guard lock(mutex_);
    samples_.push_back(us);
  }
  // The window's samples, and a fresh window.
  std::vector<int64_t> take() {
    std::lock_guard lock(mutex_);
    std::vector<int64_t> out;
    out.swap(samples_);
    return out;
  }

 private:
  std::mutex mutex_;
  std::vector<int64_t> samples_;
};

int64_t percentile(std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1));
  return sorted[index];
}

// One sample of the daemon over time.
struct Sample {
  double at = 0;  // seconds since the load began
  size_t rss = 0;
  size_t fds = 0;
  size_t roundTrips = 0;
  int64_t p50 = 0;
  int64_t p99 = 0;
  int64_t max = 0;
};

// What went wrong in any load thread: the first few messages, and a count.
class Failures {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (messages_.size() < 10) messages_.push_back(what);
    ++count_;
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }
  std::string describe() {
    std::lock_guard lock(mutex_);
    std::string text;
    for (const std::string& m : messages_) text += "  " + m + "\n";
    return text;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> messages_;
  size_t count_ = 0;
};

// Counts of what each load thread completed.
struct Counters {
  std::atomic<uint64_t> pingConnections{0};
  std::atomic<uint64_t> shortConnections{0};
  std::atomic<uint64_t> bulkFlows{0};
  std::atomic<uint64_t> bulkBytes{0};
  std::atomic<uint64_t> faultFlows{0};
  std::atomic<uint64_t> adminCycles{0};
  std::atomic<uint64_t> watchEvents{0};
};

// Runs `step` until `stop`, at most once per `period` (a rate, not a wait for a condition).
template <typename Step>
void paced(const std::atomic<bool>& stop, Clock::duration period, Step step) {
  Clock::time_point next = Clock::now();
  while (!stop.load()) {
    step();
    next += period;
    const Clock::time_point now = Clock::now();
    if (next > now) {
      std::this_thread::sleep_for(next - now);
    } else {
      next = now;
    }
  }
}

void pinger(uint16_t port, uint64_t seed, const std::atomic<bool>& stop, LatencyWindow& latency,
            Counters& counters, Failures& failures) {
  std::mt19937_64 random(seed);
  const std::string message = randomBytes(64, seed);
  while (!stop.load()) {
    const Fd fd(connectTo(port));
    if (fd.get() < 0) {
      failures.add("pinger: connect failed");
      return;
    }
    const int trips = std::uniform_int_distribution<int>(50, 500)(random);
    for (int i = 0; i < trips && !stop.load(); ++i) {
      const Clock::time_point start = Clock::now();
      if (!echoes(fd.get(), message, 5s)) {
        failures.add("pinger: round trip " + std::to_string(i) + " failed");
        return;
      }
      latency.add(Clock::now() - start);
    }
    counters.pingConnections.fetch_add(1);
  }
}

void shortConnections(uint16_t port, const std::atomic<bool>& stop, Counters& counters,
                      Failures& failures) {
  const std::string message = randomBytes(1024, 7);
  paced(stop, milliseconds(10), [&] {
    const Fd fd(connectTo(port));
    if (fd.get() < 0 || !echoes(fd.get(), message, 5s)) {
      failures.add("short connection failed");
      return;
    }
    counters.shortConnections.fetch_add(1);
  });
}

void bulk(uint16_t port, uint64_t seed, uint64_t size, const std::atomic<bool>& stop,
          Counters& counters, Failures& failures) {
  while (!stop.load()) {
    const FlowOutcome o = streamPayload(port, seed++, size, Clock::now() + 60s);
    if (o.end != "eof" || o.received != size || o.sent != size) {
      failures.add("bulk flow: " + describe(o));
      return;
    }
    counters.bulkFlows.fetch_add(1);
    counters.bulkBytes.fetch_add(2 * size);
  }
}

struct FaultPorts {
  uint16_t reset = 0;
  uint16_t halfClose = 0;
  uint16_t hang = 0;
};

// Each kind of fault in turn; every flow must end the way its fault says, with nothing altered.
void faults(const FaultPorts& ports, const std::atomic<bool>& stop, Counters& counters,
            Failures& failures) {
  for (uint64_t seed = 1000; !stop.load(); ++seed) {
    // Resets after reading 64 KiB: the client sees the reset, and at most what was echoed.
    const FlowOutcome reset = streamPayload(ports.reset, seed, 256 * kKiB, Clock::now() + 10s);
    if (!wasReset(reset) || reset.received > 64 * kKiB || !reset.mismatch.empty()) {
      failures.add("reset upstream: " + describe(reset));
      return;
    }
    // Echoes 32 KiB, then its FIN, and reads the rest: exactly 32 KiB back, all of it sent.
    const FlowOutcome half = streamPayload(ports.halfClose, seed, 256 * kKiB, Clock::now() + 10s);
    if (half.end != "eof" || half.received != 32 * kKiB || half.sent != 256 * kKiB) {
      failures.add("half-closing upstream: " + describe(half));
      return;
    }
    // Never answers: idle_timeout (1 s) closes the flow.
    const Fd hung(connectTo(ports.hang));
    const std::string hello = randomBytes(1024, seed);
    if (hung.get() < 0 || ::send(hung.get(), hello.data(), hello.size(), MSG_NOSIGNAL) < 0 ||
        !closedByPeer(waitClosed(hung.get(), Clock::now() + 10s))) {
      failures.add("hanging upstream: the flow was not closed by its idle timeout");
      return;
    }
    counters.faultFlows.fetch_add(3);
  }
}

// A cycle of changes over the admin API, each of which must succeed, with a flow relayed
// through the listener it creates.
void adminChurn(v1::Admin::Stub& admin, const std::string& echo, const std::atomic<bool>& stop,
                Counters& counters, Failures& failures) {
  int cycle = 0;
  const std::string message = randomBytes(256, 11);
  paced(stop, milliseconds(100), [&] {
    const std::string name = "churn" + std::to_string(cycle++);
    const auto fail = [&](const std::string& step, const grpc::Status& status) {
      failures.add("admin " + step + " " + name + ": " + status.error_message());
    };
    v1::CreateClusterRequest cluster;
    cluster.mutable_cluster()->set_name(name);
    cluster.mutable_cluster()->add_endpoints()->set_address(echo);
    v1::Cluster createdCluster;
    if (auto s = admin.CreateCluster(callContext().get(), cluster, &createdCluster); !s.ok()) {
      return fail("CreateCluster", s);
    }
    v1::CreateListenerRequest listener;
    listener.mutable_listener()->set_name(name);
    listener.mutable_listener()->set_bind("127.0.0.1:0");
    listener.mutable_listener()->set_cluster(name);
    v1::Listener created;
    if (auto s = admin.CreateListener(callContext().get(), listener, &created); !s.ok()) {
      return fail("CreateListener", s);
    }
    {
      const Fd fd(connectTo(portOf(created.bound_address())));
      if (fd.get() < 0 || !echoes(fd.get(), message, 5s)) {
        failures.add("admin: no echo through the new listener " + name);
        return;
      }
    }
    v1::UpdateListenerRequest update;
    update.mutable_listener()->set_name(name);
    update.mutable_listener()->set_max_connections(static_cast<uint32_t>(100 + cycle));
    update.mutable_update_mask()->add_paths("max_connections");
    v1::Listener updated;
    if (auto s = admin.UpdateListener(callContext().get(), update, &updated); !s.ok()) {
      return fail("UpdateListener", s);
    }
    v1::ListFlowsRequest flows;
    flows.set_page_size(100);
    v1::ListFlowsResponse listed;
    if (auto s = admin.ListFlows(callContext().get(), flows, &listed); !s.ok()) {
      return fail("ListFlows", s);
    }
    v1::DeleteListenerRequest deleteListener;
    deleteListener.set_name(name);
    deleteListener.mutable_drain_timeout()->set_seconds(0);
    v1::DeleteListenerResponse deletedListener;
    if (auto s = admin.DeleteListener(callContext().get(), deleteListener, &deletedListener);
        !s.ok()) {
      return fail("DeleteListener", s);
    }
    v1::DeleteClusterRequest deleteCluster;
    deleteCluster.set_name(name);
    v1::DeleteClusterResponse deletedCluster;
    if (auto s = admin.DeleteCluster(callContext().get(), deleteCluster, &deletedCluster);
        !s.ok()) {
      return fail("DeleteCluster", s);
    }
    counters.adminCycles.fetch_add(1);
  });
}

// Reads every event until the context is cancelled; sequence numbers must be contiguous.
void watcher(v1::Admin::Stub& admin, grpc::ClientContext& context, Counters& counters,
             Failures& failures) {
  v1::WatchRequest request;
  const auto stream = admin.Watch(&context, request);
  v1::WatchEvent event;
  uint64_t last = 0;
  while (stream->Read(&event)) {
    if (last != 0 && event.sequence() != last + 1) {
      failures.add("watcher: sequence " + std::to_string(event.sequence()) + " after " +
                   std::to_string(last));
    }
    last = event.sequence();
    counters.watchEvents.fetch_add(1);
  }
  const grpc::Status status = stream->Finish();
  if (status.error_code() != grpc::StatusCode::CANCELLED) {
    failures.add("watcher ended with " + std::to_string(status.error_code()) + ": " +
                 status.error_message());
  }
}

size_t medianOf(std::vector<size_t> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The samples of quarter `q` (0..3) of the run.
std::vector<Sample> quarter(const std::vector<Sample>& samples, int q) {
  const size_t n = samples.size();
  return {samples.begin() + static_cast<ptrdiff_t>(n * static_cast<size_t>(q) / 4),
          samples.begin() + static_cast<ptrdiff_t>(n * static_cast<size_t>(q + 1) / 4)};
}

template <typename Field>
std::vector<size_t> field(const std::vector<Sample>& samples, Field get) {
  std::vector<size_t> values;
  for (const Sample& s : samples) values.push_back(static_cast<size_t>(get(s)));
  return values;
}

TEST(SoakTest, MixedTrafficAdminChurnAndFaultsLeaveNoGrowth) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = limit.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);

  const std::optional<int> soak = soakSeconds();
  const auto duration = soak ? seconds(*soak) : seconds(kSanitized ? 6 : 4);
  const auto interval = soak ? seconds(10) : seconds(1);

  EchoServer echo;
  FaultyUpstream resetting(Fault::kReset, 64 * kKiB);
  FaultyUpstream halfClosing(Fault::kHalfClose, 32 * kKiB);
  FaultyUpstream hanging(Fault::kHang);
  ASSERT_TRUE(resetting.ok() && halfClosing.ok() && hanging.ok());
  TempDir stateDir("evgate-soak");
  RelayDaemon daemon({{"echo", echo.address(), {}},
                      {"reset", resetting.address(), {}},
                      {"halfclose", halfClosing.address(), {}},
                      {"hang", hanging.address(), {"idle_timeout: 1s"}}},
                     /*accessLog=*/false, /*workers=*/2,
                     "state_file: " + stateDir.file("state.yaml") + "\n");
  ASSERT_TRUE(daemon.ok()) << daemon.describe();
  const pid_t pid = daemon.pid();
  // The admin client connects at its first call: make it before counting the daemon's fds.
  v1::GetStatusRequest statusRequest;
  v1::Status status;
  ASSERT_TRUE(daemon.admin().GetStatus(callContext().get(), statusRequest, &status).ok());
  const size_t fdsBefore = openFds(pid).size();
  const std::map<std::string, size_t> kindsBefore = openFdKinds(pid);

  std::atomic<bool> stop{false};
  LatencyWindow latency;
  Counters counters;
  Failures failures;
  std::vector<std::thread> threads;
  for (uint64_t i = 0; i < 8; ++i) {
    threads.emplace_back(
        [&, i] { pinger(daemon.port("echo"), 100 + i, stop, latency, counters, failures); });
  }
  threads.emplace_back([&] { shortConnections(daemon.port("echo"), stop, counters, failures); });
  const uint64_t bulkSize = kSanitized ? 1 * kMiB : 8 * kMiB;
  for (uint64_t i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      bulk(daemon.port("echo"), 1'000'000 * (i + 1), bulkSize, stop, counters, failures);
    });
  }
  const FaultPorts faultPorts{daemon.port("reset"), daemon.port("halfclose"), daemon.port("hang")};
  threads.emplace_back([&] { faults(faultPorts, stop, counters, failures); });
  threads.emplace_back(
      [&] { adminChurn(daemon.admin(), echo.address(), stop, counters, failures); });
  grpc::ClientContext watchContext;
  threads.emplace_back([&] { watcher(daemon.admin(), watchContext, counters, failures); });

  std::printf("[ sample   ] %6s %9s %5s %8s %8s %8s %8s\n", "t(s)", "RSS(KiB)", "fds", "trips",
              "p50(us)", "p99(us)", "max(us)");
  std::vector<Sample> samples;
  const Clock::time_point begin = Clock::now();
  const Clock::time_point end = begin + duration;
  for (Clock::time_point next = begin + interval; next <= end && failures.count() == 0;
       next += interval) {
    std::this_thread::sleep_until(next);  // the sampling clock, not a wait for a condition
    Sample s;
    s.at = std::chrono::duration<double>(Clock::now() - begin).count();
    s.rss = residentBytes(pid);
    s.fds = openFds(pid).size();
    std::vector<int64_t> trips = latency.take();
    std::sort(trips.begin(), trips.end());
    s.roundTrips = trips.size();
    s.p50 = percentile(trips, 0.50);
    s.p99 = percentile(trips, 0.99);
    s.max = trips.empty() ? 0 : trips.back();
    std::printf("[ sample   ] %6.0f %9zu %5zu %8zu %8lld %8lld %8lld\n", s.at, s.rss / 1024, s.fds,
                s.roundTrips, static_cast<long long>(s.p50), static_cast<long long>(s.p99),
                static_cast<long long>(s.max));
    std::fflush(stdout);
    samples.push_back(s);
  }
  stop.store(true);
  watchContext.TryCancel();
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(failures.count(), 0u) << failures.describe();

  // Every part ran.
  EXPECT_GT(counters.pingConnections.load(), 0u);
  EXPECT_GT(counters.shortConnections.load(), 0u);
  EXPECT_GT(counters.bulkFlows.load(), 0u);
  EXPECT_GT(counters.faultFlows.load(), 0u);
  EXPECT_GT(counters.adminCycles.load(), 0u);
  EXPECT_GT(counters.watchEvents.load(), 0u);

  // Once the load stops and its flows end, the daemon holds the fds it held before, except
  // the splice pipes each worker keeps for reuse (at most 32 pairs: gateway/pipe_pool.h). The
  // hung upstream's last flow ends by its idle timeout.
  const auto describeKinds = [](const std::map<std::string, size_t>& kinds) {
    std::string text;
    for (const auto& [kind, count] : kinds) text += " " + kind + "=" + std::to_string(count);
    return text;
  };
  const auto withoutPipes = [](std::map<std::string, size_t> kinds) {
    kinds.erase("pipe");
    return kinds;
  };
  const auto pipes = [](const std::map<std::string, size_t>& kinds) {
    const auto found = kinds.find("pipe");
    return found == kinds.end() ? size_t{0} : found->second;
  };
  std::map<std::string, size_t> kindsAfter;
  EXPECT_TRUE(eventually(
      [&] {
        kindsAfter = openFdKinds(pid);
        return withoutPipes(kindsAfter) == withoutPipes(kindsBefore) &&
               pipes(kindsAfter) <= pipes(kindsBefore) + 2 * 32 * 2;
      },
      10s))
      << "fds before the load:" << describeKinds(kindsBefore)
      << "\nafter:" << describeKinds(kindsAfter);
  const size_t fdsAfter = openFds(pid).size();

  std::printf(
      "[ figure   ] %.0f s: %llu ping connections, %llu short connections, %llu bulk flows "
      "(%llu MiB checked), %llu fault flows, %llu admin cycles (6 changes each), %llu watch "
      "events; fds %zu before the load, %zu after (idle splice pipes included)\n",
      std::chrono::duration<double>(duration).count(),
      static_cast<unsigned long long>(counters.pingConnections.load()),
      static_cast<unsigned long long>(counters.shortConnections.load()),
      static_cast<unsigned long long>(counters.bulkFlows.load()),
      static_cast<unsigned long long>(counters.bulkBytes.load() / kMiB),
      static_cast<unsigned long long>(counters.faultFlows.load()),
      static_cast<unsigned long long>(counters.adminCycles.load()),
      static_cast<unsigned long long>(counters.watchEvents.load()), fdsBefore, fdsAfter);

  if (!soak) {
    std::printf("[ figure   ] smoke run: no growth verdict (EVGATE_SOAK_SECONDS=600 for one)\n");
  } else {
    ASSERT_GE(samples.size(), 8u);
    // Growth: the last quarter against the second (the first is warm-up).
    const std::vector<Sample> second = quarter(samples, 1);
    const std::vector<Sample> last = quarter(samples, 3);
    const size_t rssSecond = medianOf(field(second, [](const Sample& s) { return s.rss; }));
    const size_t rssLast = medianOf(field(last, [](const Sample& s) { return s.rss; }));
    const size_t fdsSecond = medianOf(field(second, [](const Sample& s) { return s.fds; }));
    const size_t fdsLast = medianOf(field(last, [](const Sample& s) { return s.fds; }));
    const size_t p50Second = medianOf(field(second, [](const Sample& s) { return s.p50; }));
    const size_t p50Last = medianOf(field(last, [](const Sample& s) { return s.p50; }));
    const size_t p99Second = medianOf(field(second, [](const Sample& s) { return s.p99; }));
    const size_t p99Last = medianOf(field(last, [](const Sample& s) { return s.p99; }));
    std::printf(
        "[ figure   ] second quarter -> last quarter (medians of the samples): RSS %zu -> %zu "
        "KiB, fds %zu -> %zu, p50 %zu -> %zu us, p99 %zu -> %zu us\n",
        rssSecond / 1024, rssLast / 1024, fdsSecond, fdsLast, p50Second, p50Last, p99Second,
        p99Last);
    // Memory: 5 % and 8 MiB of slack for the allocator's whims; a leak of 100 bytes per
    // connection over this run's connections is well above that.
    EXPECT_LE(rssLast, rssSecond + rssSecond / 20 + 8 * kMiB) << "resident memory grew";
    // fds: the load's connections come and go; the number in use must not creep up.
    EXPECT_LE(fdsLast, fdsSecond + fdsSecond / 10 + 8) << "fds grew";
    // Latency: on a shared VM it wanders; growth here means doubling, not jitter.
    EXPECT_LE(p50Last, 2 * p50Second + 200) << "median round trip grew";
    EXPECT_LE(p99Last, 2 * p99Second + 2000) << "99th percentile round trip grew";
  }
  EXPECT_TRUE(daemon.stop());
}

}  // namespace
}  // namespace evgate::test
