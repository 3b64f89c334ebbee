// The admin API of the real evgate daemon under load while traffic flows (issue 8; the row
// "Admin under load" of docs/reliability.md):
//
//   - clients ping-pong checked payloads (payload.h) through a listener for the whole test, and
//     every round trip is timed, before the load and during it;
//   - waves of hundreds of unary calls in flight at once, from several connections: reads of
//     every kind, and writes on distinct names (clusters and listeners created, endpoints added,
//     listeners updated and deleted, clusters deleted), so that the final state is known;
//   - watchers that read: each sees every write's event, in the same order, and one that takes
//     flow events too sees contiguous sequence numbers; admin.max_watchers holds;
//   - a watcher that never reads while a stream of short flows makes flow events: the server
//     cuts it off (evgate_admin_watchers falls, evgate_admin_watchers_cut_off_total counts it),
//     its client sees RESOURCE_EXHAUSTED or CANCELLED, and nothing else notices.
//
// Sizes shrink under sanitizers (figures.h).

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "admin/status_code_name.h"
#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/integration/admin_daemon.h"
#include "tests/integration/figures.h"
#include "tests/integration/grpc_probe.h"
#include "tests/integration/metric_scrape.h"
#include "tests/integration/net_util.h"
#include "tests/integration/payload.h"
#include "tests/integration/process.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;

// ---------------------------------------------------------------------------------------------
// Traffic: clients that send a payload chunk, wait for its echo, check it and time the round
// trip, over and over, until told to stop.

constexpr size_t kChunk = 1024;

enum class Phase { kBefore, kDuring, kAfter };

struct TrafficClient {
  std::atomic<uint64_t> trips{0};
  std::atomic<bool> failed{false};  // `error` is set
  std::vector<double> beforeMs;     // round trips before the load
  std::vector<double> duringMs;     // round trips during the load
  std::string error;                // empty while every byte came back in time and intact
  uint64_t received = 0;
};

void runTrafficClient(uint16_t port, uint64_t seed, const std::atomic<Phase>& phase,
                      TrafficClient& out) {
  const Fd fd(connectTo(port));
  if (fd.get() < 0) {
    out.error = std::string("connect: ") + std::strerror(errno);
    out.failed = true;
    return;
  }
  PayloadSource source(seed);
  PayloadChecker checker(seed);
  std::string chunk(kChunk, '\0');
  while (phase.load() != Phase::kAfter) {
    const Phase now = phase.load();
    source.fill(chunk.data(), chunk.size());
    const auto start = Clock::now();
    // A generous bound: a round trip over 5 s is a failure, not a figure.
    const Exchange echo = exchange(fd.get(), chunk, start + 5s, /*toEof=*/false);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (echo.end != "complete") {
      out.error = "round trip " + std::to_string(out.trips.load()) + " ended " + echo.end;
      out.failed = true;
      return;
    }
    if (!checker.feed(echo.received.data(), echo.received.size())) {
      out.error = "mismatch: " + checker.error();
      out.failed = true;
      return;
    }
    out.received += echo.received.size();
    (now == Phase::kBefore ? out.beforeMs : out.duringMs).push_back(ms);
    out.trips.fetch_add(1);
  }
  // The flow is still open: the gateway closed nothing under it.
  if (waitClosed(fd.get(), Clock::now()) != "timeout") out.error = "closed by the gateway";
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const size_t at = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size()))) - 1;
  return values[std::min(at, values.size() - 1)];
}

std::string ms(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f ms", value);
  return text;
}

// ---------------------------------------------------------------------------------------------
// The upstream of the short flows that make flow events: an echo server on one thread and a
// level-triggered epoll, which closes each connection at the peer's EOF. Thousands of short flows
// cost it no thread each (EchoServer starts a thread per connection, and one of thousands now and
// then took seconds to be scheduled: a short flow's echo timed out with its byte in the socket).

class ShortFlowEcho {
 public:
  ShortFlowEcho()
      : listenFd_(listenOnLoopback()),
        epollFd_(::epoll_create1(EPOLL_CLOEXEC)),
        wakeFd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (listenFd_ < 0 || epollFd_ < 0 || wakeFd_ < 0) return;
    ::fcntl(listenFd_, F_SETFL, O_NONBLOCK);
    if (!watch(listenFd_) || !watch(wakeFd_)) return;
    port_ = localPort(listenFd_);
    thread_ = std::thread([this] { run(); });
  }
  ~ShortFlowEcho() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      (void)::write(wakeFd_, &one, sizeof one);
      thread_.join();
    }
    for (const int fd : open_) ::close(fd);
    for (const int fd : {listenFd_, epollFd_, wakeFd_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  ShortFlowEcho(const ShortFlowEcho&) = delete;
  ShortFlowEcho& operator=(const ShortFlowEcho&) = delete;

  bool ok() const { return port_ != 0; }
  std::string address() const { return test::address(port_); }

 private:
  bool watch(int fd) {
    epoll_event event{EPOLLIN, {.fd = fd}};
    return ::epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &event) == 0;
  }

  void run() {
    epoll_event events[64];
    char buf[4096];
    for (;;) {
      const int ready = ::epoll_wait(epollFd_, events, 64, -1);
      if (ready < 0 && errno != EINTR) return;
      for (int i = 0; i < ready; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wakeFd_) return;
        if (fd == listenFd_) {
          const int accepted = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (accepted >= 0 && watch(accepted)) open_.insert(accepted);
          continue;
        }
        // Blocking sends of what one read returned: a short flow sends a byte or two.
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 && ::send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL) == n) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        open_.erase(fd);
      }
    }
  }

  int listenFd_ = -1;
  int epollFd_ = -1;
  int wakeFd_ = -1;
  uint16_t port_ = 0;
  std::set<int> open_;  // the server thread's until it is joined
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Unary calls in flight at once: started on a completion queue, every answer collected.

struct Answer {
  std::string what;  // "CreateListener l-3"
  grpc::Status status;
};

class CallWave {
 public:
  // Starts the call `prepare` makes (a stub's PrepareAsync method) with `request`; finish()
  // collects its answer. Each call has 30 s to be answered.
  template <typename Response, typename Request, typename Prepare>
  void start(std::string what, const Request& request, Prepare prepare) {
    auto call = std::make_unique<Call<Response>>();
    call->what = std::move(what);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->reader = prepare(&call->context, request, &queue_);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call.get());
    pending_.push_back(std::move(call));
  }

  size_t started() const { return pending_.size(); }

  // Waits for every call's answer.
  std::vector<Answer> finish() {
    std::vector<Answer> answers;
    for (size_t left = pending_.size(); left > 0; --left) {
      void* tag = nullptr;
      bool ok = false;
      if (!queue_.Next(&tag, &ok)) break;
      const auto* call = static_cast<const PendingCall*>(tag);
      answers.push_back({call->what, call->status});
    }
    pending_.clear();
    return answers;
  }

  ~CallWave() {
    queue_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
    }
  }

 private:
  struct PendingCall {
    virtual ~PendingCall() = default;
    std::string what;
    grpc::ClientContext context;
    grpc::Status status;
  };
  template <typename Response>
  struct Call : PendingCall {
    Response response;
    std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  };

  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<PendingCall>> pending_;
};

// The channels the calls spread over: each its own connection, as separate tools would have.
std::vector<std::unique_ptr<v1::Admin::Stub>> connections(const std::string& address, size_t n) {
  std::vector<std::unique_ptr<v1::Admin::Stub>> stubs;
  for (size_t i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::Admin::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

std::string clusterName(size_t i) { return "c-" + std::to_string(i); }
std::string listenerName(size_t i) { return "l-" + std::to_string(i); }

// What the waves do to name i (besides creating c-i with one endpoint, l-i on it, and adding a
// second endpoint to c-i): i % 4 == 1 updates l-i's max_connections to 1000 + i; i % 4 == 3
// deletes l-i, then c-i.
bool updated(size_t i) { return i % 4 == 1; }
bool deleted(size_t i) { return i % 4 == 3; }

// Reads of every kind, `n` of them, spread over `stubs`.
void startReads(CallWave& wave, std::vector<std::unique_ptr<v1::Admin::Stub>>& stubs, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    v1::Admin::Stub& stub = *stubs[i % stubs.size()];
    switch (i % 5) {
      case 0:
        wave.start<v1::Status>(
            "GetStatus", v1::GetStatusRequest(),
            [&](auto* c, const auto& r, auto* q) { return stub.PrepareAsyncGetStatus(c, r, q); });
        break;
      case 1: {
        v1::ListListenersRequest request;
        request.set_page_size(1000);
        wave.start<v1::ListListenersResponse>("ListListeners", request,
                                              [&](auto* c, const auto& r, auto* q) {
                                                return stub.PrepareAsyncListListeners(c, r, q);
                                              });
        break;
      }
      case 2: {
        v1::ListClustersRequest request;
        request.set_page_size(1000);
        wave.start<v1::ListClustersResponse>("ListClusters", request,
                                             [&](auto* c, const auto& r, auto* q) {
                                               return stub.PrepareAsyncListClusters(c, r, q);
                                             });
        break;
      }
      case 3:
        wave.start<v1::ListFlowsResponse>(
            "ListFlows", v1::ListFlowsRequest(),
            [&](auto* c, const auto& r, auto* q) { return stub.PrepareAsyncListFlows(c, r, q); });
        break;
      default: {
        v1::GetListenerRequest request;
        request.set_name("traffic");
        wave.start<v1::Listener>("GetListener", request, [&](auto* c, const auto& r, auto* q) {
          return stub.PrepareAsyncGetListener(c, r, q);
        });
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Watchers.

struct SeenEvent {
  uint64_t sequence;
  v1::WatchEventType type;
  std::string name;  // the listener or cluster concerned

  bool operator==(const SeenEvent&) const = default;
};

// A watcher that reads until it has seen the sentinel cluster's creation (or its stream ends).
struct ReadingWatcher {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> stream;
  std::vector<SeenEvent> changes;   // every event but flow events
  std::vector<uint64_t> sequences;  // every event's sequence number
  bool sawSentinel = false;
  grpc::Status ended;  // how the stream ended (CANCELLED by this side after the sentinel)
  std::atomic<bool> done{false};  // the fields above are final
};

constexpr const char* kSentinel = "sentinel";

void readUntilSentinel(ReadingWatcher& watcher) {
  v1::WatchEvent event;
  while (watcher.stream->Read(&event)) {
    watcher.sequences.push_back(event.sequence());
    if (event.type() == v1::WATCH_EVENT_TYPE_FLOW_OPENED ||
        event.type() == v1::WATCH_EVENT_TYPE_FLOW_CLOSED) {
      continue;
    }
    watcher.changes.push_back({event.sequence(), event.type(),
                               event.listener().empty() ? event.cluster() : event.listener()});
    if (event.type() == v1::WATCH_EVENT_TYPE_CLUSTER_CREATED && event.cluster() == kSentinel) {
      watcher.sawSentinel = true;
      watcher.context->TryCancel();
    }
  }
  watcher.ended = watcher.stream->Finish();
  watcher.done = true;
}

// The events the waves imply for cluster c-i, then for listener l-i, each in the order its writes
// were acknowledged (AddEndpoint and CreateListener share a wave: their order is the server's).
using Change = std::pair<v1::WatchEventType, std::string>;
std::vector<Change> expectedClusterEvents(size_t i) {
  std::vector<Change> events{{v1::WATCH_EVENT_TYPE_CLUSTER_CREATED, clusterName(i)},
                             {v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED, clusterName(i)}};
  if (deleted(i)) events.emplace_back(v1::WATCH_EVENT_TYPE_CLUSTER_DELETED, clusterName(i));
  return events;
}
std::vector<Change> expectedListenerEvents(size_t i) {
  std::vector<Change> events{{v1::WATCH_EVENT_TYPE_LISTENER_CREATED, listenerName(i)}};
  if (updated(i)) events.emplace_back(v1::WATCH_EVENT_TYPE_LISTENER_UPDATED, listenerName(i));
  if (deleted(i)) events.emplace_back(v1::WATCH_EVENT_TYPE_LISTENER_DELETED, listenerName(i));
  return events;
}

// ---------------------------------------------------------------------------------------------

std::string configYaml(const EchoServer& echo, const ShortFlowEcho& shortEcho, size_t maxWatchers) {
  return "workers: 2\n"
         "drain_timeout: 5s\n"
         "access_log: { mode: off }\n"
         "admin: { address: 127.0.0.1:0, max_watchers: " +
         std::to_string(maxWatchers) +
         " }\n"
         "metrics: { address: 127.0.0.1:0 }\n"
         "clusters:\n"
         "  - name: echo\n"
         "    endpoints: [ \"" +
         echo.address() +
         "\" ]\n"
         "  - name: short\n"
         "    endpoints: [ \"" +
         shortEcho.address() +
         "\" ]\n"
         "listeners:\n"
         "  - { name: traffic, bind: 127.0.0.1:0, cluster: echo }\n"
         "  - { name: churn, bind: 127.0.0.1:0, cluster: short }\n";
}

TEST(AdminLoadTest, HundredsOfCallsAndWatchersWhileTrafficFlowsAndAStalledWatcherIsCutOff) {
  const size_t kClients = kSanitized ? 8 : 32;
  const size_t kNames = kSanitized ? 24 : 96;  // clusters and listeners the API makes
  const size_t kReadsPerWave = kSanitized ? 60 : 240;
  const size_t kReaders = kSanitized ? 12 : 48;  // watchers that read changes only
  const size_t kConnections = 8;                 // admin connections the calls spread over
  // The readers, one that reads flow events too, and the one that never reads.
  const size_t kMaxWatchers = kReaders + 2;
  // Threads making short flows (each one after the other) for the flow events.
  const size_t kChurners = 4;
  // Reads in one burst on one more connection, as one tool firing its calls at once would.
  const size_t kBurst = kSanitized ? 100 : 400;

  EchoServer echo;
  EchoServer second;  // the endpoint each API cluster gets added
  ShortFlowEcho shortEcho;
  ASSERT_TRUE(echo.ok());
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(shortEcho.ok());
  TempDir dir("evgate-admin-load");
  writeFile(dir.file("evgate.yaml"), configYaml(echo, shortEcho, kMaxWatchers));
  AdminDaemon daemon(dir.file("evgate.yaml"));
  ASSERT_TRUE(daemon.ok()) << daemon.output();
  const auto metricsLine =
      daemon.process().waitForOutput(std::regex(R"(metrics listening on 127\.0\.0\.1:(\d+)(/\S*))"),
                                     AdminDaemon::kStartLimit, Process::Stream::kStderr);
  ASSERT_TRUE(metricsLine) << daemon.output();
  const auto metricsPort = static_cast<uint16_t>(std::stoi((*metricsLine)[1]));
  const std::string metricsPath = (*metricsLine)[2];
  const auto metric = [&](const std::string& family) {
    return scrapeMetric(metricsPort, metricsPath, family, {});
  };
  const auto portOfListener = [&](const std::string& name) -> uint16_t {
    v1::GetListenerRequest get;
    get.set_name(name);
    v1::Listener listener;
    if (!daemon.stub().GetListener(callContext().get(), get, &listener).ok()) return 0;
    return portOf(listener.bound_address());
  };
  const uint16_t trafficPort = portOfListener("traffic");
  const uint16_t churnPort = portOfListener("churn");
  ASSERT_NE(trafficPort, 0);
  ASSERT_NE(churnPort, 0);
  // The daemon logs a line per listener and an audit line per change: its stderr must be read
  // while the test waits, or a full pipe would stall it.
  const auto waitPumping = [&](const std::function<bool()>& condition, Clock::duration limit) {
    const auto deadline = Clock::now() + limit;
    while (!condition()) {
      if (Clock::now() >= deadline) return false;
      if (daemon.process().wait(10ms)) std::this_thread::sleep_for(10ms);  // exited: no output
    }
    return true;
  };

  // 1. Traffic, and its round trips before any load.
  std::atomic<Phase> phase{Phase::kBefore};
  std::vector<TrafficClient> clients(kClients);
  std::vector<std::thread> traffic;
  for (size_t i = 0; i < kClients; ++i) {
    traffic.emplace_back(
        [&, i] { runTrafficClient(trafficPort, 0x10ad0000 + i, phase, clients[i]); });
  }
  const auto stopTraffic = [&] {
    phase = Phase::kAfter;
    for (std::thread& thread : traffic) thread.join();
    traffic.clear();
  };
  const bool warmedUp = waitPumping(
      [&] {
        return std::all_of(clients.begin(), clients.end(), [](const TrafficClient& c) {
          return c.trips.load() >= 100 || c.failed;
        });
      },
      20s);
  if (!warmedUp) stopTraffic();
  ASSERT_TRUE(warmedUp) << "the traffic never got going";

  // 2. Watchers: the readers, the flow reader, the one that never reads; one more is refused.
  std::vector<ReadingWatcher> readers(kReaders + 1);  // the last one takes flow events
  auto watchChannel =
      grpc::CreateChannel(daemon.adminAddress(), grpc::InsecureChannelCredentials());
  auto watchStub = v1::Admin::NewStub(watchChannel);
  for (size_t i = 0; i < readers.size(); ++i) {
    v1::WatchRequest request;
    if (i == kReaders) {
      request.set_include_flows(true);
      request.mutable_flow_filter()->set_listener("churn");
    }
    readers[i].context = callContext(std::chrono::milliseconds(60000));
    readers[i].stream = watchStub->Watch(readers[i].context.get(), request);
  }
  // A client that buffers little: no window growth (BDP probing) and a small lookahead, so that
  // not reading soon blocks the server's writes, as a stalled client over a real network would
  // (as in tests/admin/admin_service_test.cc).
  grpc::ChannelArguments small;
  small.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  small.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stalledStub = v1::Admin::NewStub(
      grpc::CreateCustomChannel(daemon.adminAddress(), grpc::InsecureChannelCredentials(), small));
  v1::WatchRequest flows;
  flows.set_include_flows(true);
  flows.mutable_flow_filter()->set_listener("churn");
  auto stalledContext = callContext(std::chrono::milliseconds(60000));
  auto stalled = stalledStub->Watch(stalledContext.get(), flows);  // never read until the end
  const bool allWatching = waitPumping(
      [&] { return metric("evgate_admin_watchers") == static_cast<double>(kMaxWatchers); }, 10s);
  EXPECT_TRUE(allWatching) << "watchers: " << metric("evgate_admin_watchers");
  auto overContext = callContext();
  auto over = watchStub->Watch(overContext.get(), v1::WatchRequest());
  v1::WatchEvent event;
  EXPECT_FALSE(over->Read(&event));
  EXPECT_EQ(over->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  std::vector<std::thread> watching;
  for (ReadingWatcher& reader : readers) {
    watching.emplace_back([&reader] { readUntilSentinel(reader); });
  }

  // 3. The load: short flows for flow events (until the stalled watcher is cut off), and the
  // waves of calls.
  phase = Phase::kDuring;
  const auto loadStart = Clock::now();
  std::atomic<bool> churning{true};
  std::atomic<uint64_t> churned{0};
  std::atomic<bool> churnFailed{false};
  std::string churnWhy;  // by the thread that set churnFailed first
  const auto churnFailure = [&](const std::string& why) {
    if (!churnFailed.exchange(true)) churnWhy = why;
  };
  std::vector<std::thread> churn;
  for (size_t i = 0; i < kChurners; ++i) {
    churn.emplace_back([&] {
      while (churning.load()) {
        const Fd client(connectTo(churnPort));
        if (client.get() < 0) {
          churnFailure(std::string("connect: ") + std::strerror(errno));
          return;
        }
        const Exchange answer = exchange(client.get(), "c", Clock::now() + 5s, /*toEof=*/false);
        if (answer.end != "complete") {
          churnFailure("echo: " + answer.end);
          return;
        }
        churned.fetch_add(1);
      }
    });
  }
  std::atomic<bool> cutOffSeen{false};
  std::vector<Answer> answers;
  size_t mostInFlight = 0;
  Clock::duration slowestWave{};
  Clock::duration wavesTime{};
  size_t unanswered = 0;
  std::thread load([&] {
    auto stubs = connections(daemon.adminAddress(), kConnections);
    auto burst = connections(daemon.adminAddress(), 1);
    const auto runWave = [&](const std::function<void(CallWave&)>& writes) {
      const auto started = Clock::now();
      CallWave wave;
      writes(wave);
      startReads(wave, stubs, kReadsPerWave);
      const size_t calls = wave.started();
      std::vector<Answer> done = wave.finish();
      unanswered += calls - done.size();
      slowestWave = std::max(slowestWave, Clock::now() - started);
      wavesTime += Clock::now() - started;
      mostInFlight = std::max(mostInFlight, done.size());
      answers.insert(answers.end(), done.begin(), done.end());
    };
    const auto stubFor = [&](size_t i) -> v1::Admin::Stub& { return *stubs[i % stubs.size()]; };
    runWave([&](CallWave& wave) {
      startReads(wave, burst, kBurst);
      for (size_t i = 0; i < kNames; ++i) {
        v1::CreateClusterRequest request;
        request.mutable_cluster()->set_name(clusterName(i));
        request.mutable_cluster()->add_endpoints()->set_address(echo.address());
        wave.start<v1::Cluster>("CreateCluster " + clusterName(i), request,
                                [&](auto* c, const auto& r, auto* q) {
                                  return stubFor(i).PrepareAsyncCreateCluster(c, r, q);
                                });
      }
    });
    runWave([&](CallWave& wave) {
      for (size_t i = 0; i < kNames; ++i) {
        v1::AddEndpointRequest add;
        add.set_cluster(clusterName(i));
        add.mutable_endpoint()->set_address(second.address());
        wave.start<v1::Cluster>("AddEndpoint " + clusterName(i), add,
                                [&](auto* c, const auto& r, auto* q) {
                                  return stubFor(i).PrepareAsyncAddEndpoint(c, r, q);
                                });
        v1::CreateListenerRequest create;
        create.mutable_listener()->set_name(listenerName(i));
        create.mutable_listener()->set_bind("127.0.0.1:0");
        create.mutable_listener()->set_cluster(clusterName(i));
        wave.start<v1::Listener>("CreateListener " + listenerName(i), create,
                                 [&](auto* c, const auto& r, auto* q) {
                                   return stubFor(i + 1).PrepareAsyncCreateListener(c, r, q);
                                 });
      }
    });
    runWave([&](CallWave& wave) {
      for (size_t i = 0; i < kNames; ++i) {
        if (updated(i)) {
          v1::UpdateListenerRequest request;
          request.mutable_listener()->set_name(listenerName(i));
          request.mutable_listener()->set_max_connections(static_cast<uint32_t>(1000 + i));
          request.mutable_update_mask()->add_paths("max_connections");
          wave.start<v1::Listener>("UpdateListener " + listenerName(i), request,
                                   [&](auto* c, const auto& r, auto* q) {
                                     return stubFor(i).PrepareAsyncUpdateListener(c, r, q);
                                   });
        } else if (deleted(i)) {
          v1::DeleteListenerRequest request;
          request.set_name(listenerName(i));
          wave.start<v1::DeleteListenerResponse>(
              "DeleteListener " + listenerName(i), request, [&](auto* c, const auto& r, auto* q) {
                return stubFor(i).PrepareAsyncDeleteListener(c, r, q);
              });
        }
      }
    });
    runWave([&](CallWave& wave) {
      for (size_t i = 0; i < kNames; ++i) {
        if (!deleted(i)) continue;
        v1::DeleteClusterRequest request;
        request.set_name(clusterName(i));
        wave.start<v1::DeleteClusterResponse>(
            "DeleteCluster " + clusterName(i), request, [&](auto* c, const auto& r, auto* q) {
              return stubFor(i).PrepareAsyncDeleteCluster(c, r, q);
            });
      }
    });
    // The sentinel: its event comes after every event of the acknowledged writes above. It
    // waits for the cut-off, so that every reader still watches when it happens.
    eventually([&] { return cutOffSeen.load(); }, 30s);
    v1::CreateClusterRequest sentinel;
    sentinel.mutable_cluster()->set_name(kSentinel);
    sentinel.mutable_cluster()->add_endpoints()->set_address(echo.address());
    v1::Cluster created;
    answers.push_back({"CreateCluster sentinel",
                       daemon.stub().CreateCluster(callContext().get(), sentinel, &created)});
  });
  // The stalled watcher is cut off by the server while the load goes on, and only it: the gauge
  // falls by one.
  double watchersAtCutOff = 0;
  const bool cutOff = waitPumping(
      [&] {
        watchersAtCutOff = metric("evgate_admin_watchers");
        return (metric("evgate_admin_watchers_cut_off_total") == 1.0 &&
                watchersAtCutOff == static_cast<double>(kMaxWatchers - 1)) ||
               churnFailed;
      },
      30s);
  const uint64_t churnedAtCutOff = churned.load();
  const auto cutOffAfter = Clock::now() - loadStart;
  cutOffSeen = true;
  churning = false;
  for (std::thread& thread : churn) thread.join();
  // The waves end; daemon output is read meanwhile.
  std::atomic<bool> loadDone{false};
  std::thread joiner([&] {
    load.join();
    loadDone = true;
  });
  const bool wavesEnded = waitPumping([&] { return loadDone.load(); }, 60s);
  joiner.join();
  const bool readersDone = waitPumping(
      [&] {
        return std::all_of(readers.begin(), readers.end(),
                           [](const ReadingWatcher& r) { return r.done.load(); });
      },
      30s);
  if (!readersDone) {
    for (ReadingWatcher& reader : readers) reader.context->TryCancel();
  }
  for (std::thread& thread : watching) thread.join();
  const double cutOffTotal = metric("evgate_admin_watchers_cut_off_total");

  // The load is over; the traffic stops, and every flow is checked.
  stopTraffic();
  EXPECT_TRUE(wavesEnded);
  EXPECT_TRUE(readersDone);
  EXPECT_FALSE(churnFailed) << "a short flow failed after " << churned.load() << ": " << churnWhy;

  // The data path: every byte back intact, no flow closed, no round trip near a second.
  std::vector<double> before;
  std::vector<double> during;
  uint64_t bytes = 0;
  size_t broken = 0;  // clients that saw a mismatch, a timeout or a close
  for (size_t i = 0; i < clients.size(); ++i) {
    EXPECT_EQ(clients[i].error, "") << "client " << i;
    broken += clients[i].error.empty() ? 0 : 1;
    EXPECT_FALSE(clients[i].duringMs.empty()) << "client " << i << " made no trip under load";
    before.insert(before.end(), clients[i].beforeMs.begin(), clients[i].beforeMs.end());
    during.insert(during.end(), clients[i].duringMs.begin(), clients[i].duringMs.end());
    bytes += clients[i].received;
  }
  const double worst = during.empty() ? 0 : *std::max_element(during.begin(), during.end());
  EXPECT_LT(worst, 1000.0) << "worst round trip under load";

  // Every call answered OK: no write lost, no read refused.
  std::map<std::string, size_t> codes;
  size_t failed = 0;
  for (const Answer& answer : answers) {
    ++codes[admin::statusCodeName(answer.status.error_code())];
    if (!answer.status.ok()) {
      if (++failed <= 5) {
        ADD_FAILURE() << answer.what << ": " << answer.status.error_code() << " "
                      << answer.status.error_message();
      }
    }
  }
  EXPECT_EQ(failed, 0u) << "calls that failed";
  EXPECT_EQ(unanswered, 0u) << "calls never answered";

  // The cut-off: seen by the server (the gauge fell by one while every reader was still
  // watching, the counter says why) and by the client (its stream ends so).
  EXPECT_TRUE(cutOff) << "the stalled watcher was never cut off after " << churned.load()
                      << " short flows; watchers " << watchersAtCutOff;
  EXPECT_EQ(cutOffTotal, 1.0);
  while (stalled->Read(&event)) {
  }
  const grpc::StatusCode stalledCode = stalled->Finish().error_code();
  EXPECT_TRUE(stalledCode == grpc::StatusCode::RESOURCE_EXHAUSTED ||
              stalledCode == grpc::StatusCode::CANCELLED)
      << stalledCode;
  EXPECT_TRUE(waitPumping([&] { return metric("evgate_admin_watchers") == 0.0; }, 10s))
      << "watchers left open: " << metric("evgate_admin_watchers");

  // Every reader saw every write's event, all in the same order; the flow reader's sequence
  // numbers are contiguous.
  std::multiset<Change> expected{{v1::WATCH_EVENT_TYPE_CLUSTER_CREATED, kSentinel}};
  for (size_t i = 0; i < kNames; ++i) {
    for (const auto& events : {expectedClusterEvents(i), expectedListenerEvents(i)}) {
      expected.insert(events.begin(), events.end());
    }
  }
  const ReadingWatcher& reference = readers.front();
  ASSERT_TRUE(reference.sawSentinel)
      << reference.ended.error_code() << " " << reference.ended.error_message();
  std::multiset<Change> seen;
  for (const SeenEvent& change : reference.changes) seen.emplace(change.type, change.name);
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(reference.changes.back().name, kSentinel);
  // Per resource, in the order of its writes.
  const auto eventsOf = [&](const std::string& name) {
    std::vector<Change> events;
    for (const SeenEvent& change : reference.changes) {
      if (change.name == name) events.emplace_back(change.type, change.name);
    }
    return events;
  };
  for (size_t i = 0; i < kNames; ++i) {
    EXPECT_EQ(eventsOf(clusterName(i)), expectedClusterEvents(i));
    EXPECT_EQ(eventsOf(listenerName(i)), expectedListenerEvents(i));
  }
  for (size_t r = 0; r < readers.size(); ++r) {
    const ReadingWatcher& reader = readers[r];
    ASSERT_TRUE(reader.sawSentinel) << "reader " << r << " ended " << reader.ended.error_code()
                                    << " " << reader.ended.error_message();
    EXPECT_EQ(reader.changes, reference.changes) << "reader " << r;
    for (size_t k = 1; k < reader.sequences.size(); ++k) {
      ASSERT_LT(reader.sequences[k - 1], reader.sequences[k]) << "reader " << r;
    }
  }
  const ReadingWatcher& flowReader = readers.back();
  size_t flowEvents = flowReader.sequences.size() - flowReader.changes.size();
  for (size_t k = 1; k < flowReader.sequences.size(); ++k) {
    ASSERT_EQ(flowReader.sequences[k], flowReader.sequences[k - 1] + 1) << "at event " << k;
  }

  // The final state is what the acknowledged writes imply, and the listeners made by the API
  // relay.
  v1::ListListenersRequest listListeners;
  listListeners.set_page_size(1000);
  v1::ListListenersResponse listeners;
  ASSERT_TRUE(daemon.stub().ListListeners(callContext().get(), listListeners, &listeners).ok());
  std::map<std::string, v1::Listener> byName;
  for (const v1::Listener& listener : listeners.listeners()) byName[listener.name()] = listener;
  v1::ListClustersRequest listClusters;
  listClusters.set_page_size(1000);
  v1::ListClustersResponse clusters;
  ASSERT_TRUE(daemon.stub().ListClusters(callContext().get(), listClusters, &clusters).ok());
  std::map<std::string, v1::Cluster> clusterByName;
  for (const v1::Cluster& cluster : clusters.clusters()) clusterByName[cluster.name()] = cluster;
  EXPECT_EQ(byName.size(), 2 + kNames - kNames / 4);         // with traffic and churn
  EXPECT_EQ(clusterByName.size(), 3 + kNames - kNames / 4);  // with echo, short, sentinel
  size_t relayed = 0;
  for (size_t i = 0; i < kNames; ++i) {
    SCOPED_TRACE("name " + std::to_string(i));
    const auto listener = byName.find(listenerName(i));
    const auto cluster = clusterByName.find(clusterName(i));
    if (deleted(i)) {
      EXPECT_EQ(listener, byName.end());
      EXPECT_EQ(cluster, clusterByName.end());
      continue;
    }
    ASSERT_NE(listener, byName.end());
    ASSERT_NE(cluster, clusterByName.end());
    EXPECT_EQ(listener->second.max_connections(), updated(i) ? 1000 + i : 10000u);
    ASSERT_EQ(cluster->second.endpoints_size(), 2);
    const Fd client(connectTo(portOf(listener->second.bound_address())));
    relayed += echoes(client.get(), "relayed by " + listenerName(i)) ? 1 : 0;
  }
  EXPECT_EQ(relayed, kNames - kNames / 4);

  EXPECT_EQ(stopAdminDaemon(daemon).code(), 0) << daemon.output();

  std::string codeList;
  for (const auto& [code, count] : codes) {
    codeList += (codeList.empty() ? "" : ", ") + code + ": " + std::to_string(count);
  }
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  report("traffic: " + std::to_string(kClients) + " clients, " + std::to_string(bytes / 1024) +
         " KiB echoed and checked, " + std::to_string(broken) +
         " broken; round trip before load p50 " + ms(percentile(before, 0.5)) + " p99 " +
         ms(percentile(before, 0.99)) + " max " + ms(percentile(before, 1.0)) +
         "; under load p50 " + ms(percentile(during, 0.5)) + " p99 " +
         ms(percentile(during, 0.99)) + " max " + ms(worst) + " (" + std::to_string(during.size()) +
         " trips)");
  report("calls: " + std::to_string(answers.size()) + " in 4 waves of " +
         std::to_string(seconds(wavesTime)) + " s, up to " + std::to_string(mostInFlight) +
         " started at once over " + std::to_string(kConnections + 1) +
         " connections, slowest wave " + std::to_string(seconds(slowestWave)) + " s; codes {" +
         codeList + "}");
  report("watchers: " + std::to_string(kReaders) + " readers saw " +
         std::to_string(reference.changes.size()) + " changes each in one order, flow reader " +
         std::to_string(flowEvents) + " flow events contiguous; one over max_watchers refused; " +
         "stalled watcher cut off after " + std::to_string(seconds(cutOffAfter)) + " s (" +
         std::to_string(churnedAtCutOff) + " short flows), ended " +
         admin::statusCodeName(stalledCode) + ", evgate_admin_watchers " +
         std::to_string(kMaxWatchers) + " -> " +
         std::to_string(static_cast<int>(watchersAtCutOff)));
}

}  // namespace
}  // namespace evgate::test
