#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/cluster.h"
#include "gateway/config/config.h"
#include "gateway/flow.h"
#include "gateway/flow_query.h"
#include "gateway/log_sink.h"
#include "gateway/notice.h"
#include "gateway/stats.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// Where the access log goes: one JSON line per ended flow. Safe from any thread. The lines are
// written by a LogSink's thread (log_sink.h): a worker never waits on the log's reader, and
// when the queue (access_log.queue_limit) is full, lines are dropped and counted, not the flow.
class AccessLog {
 public:
  explicit AccessLog(const AccessLogConfig& config);
  // Writes what is queued (for at most LogSink::kCloseTimeout), then closes the file.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  // Empty if the log is usable, else what went wrong (e.g. the file cannot be opened).
  const std::string& error() const { return error_; }
  // Whether write() goes anywhere: callers skip formatting a line nobody will read.
  bool enabled() const { return sink_ != nullptr; }
  void write(const std::string& line) const;
  // The queue's figures; nullopt when the log is off.
  std::optional<LogSink::Stats> queueStats() const;

 private:
  int fd_ = -1;
  bool ownsFd_ = false;
  std::string error_;
  std::unique_ptr<LogSink> sink_;  // set when fd_ is
};

// One listener as every worker shares it: its identity, the address it is bound to, and the
// connection count that max_connections limits (a relaxed atomic: the limit may be overshot by at
// most one connection per worker at the same instant). A reload that changes a listener in place
// keeps its ListenerState (and so its count); one that replaces it makes a new one.
//
// Thread rule: `config` and `cluster` belong to the owner (the Gateway's thread), which changes
// them on reload (under the lock that Gateway::metricsView() reads max_connections under); the
// workers keep their own copies and never read these two. `id` is fixed, and
// the atomics are safe from any thread. `bound` is set before any worker sees the listener.
struct ListenerState {
  ListenerState(uint64_t listenerId, ListenerConfig listenerConfig)
      : id(listenerId), config(std::move(listenerConfig)), paused(config.paused) {}

  // Unique in the process and never reused: flows of a deleted listener can be told from those
  // of a new listener of the same name.
  const uint64_t id;
  ListenerConfig config;
  reactor::SocketAddress bound;
  std::shared_ptr<ClusterState> cluster;
  std::atomic<uint32_t> connections{0};
  // config.paused as the workers apply it: bound but not accepting.
  std::atomic<bool> paused;
  // The metrics' counters, kept by name across a replacement (Gateway); set before any worker
  // sees the listener. Null: not counted.
  std::shared_ptr<stats::ListenerStats> stats;
  // The listening sockets it holds: one that every worker shares, or one per worker. Set before
  // any worker sees the listener.
  uint32_t sockets = 0;
};

// A listening socket, closed when the last of its holders lets go: with listener_sockets: shared,
// every worker holds the listener's one socket; with per_worker, each its own. Immutable: safe
// from any thread.
class ListeningSocket {
 public:
  explicit ListeningSocket(int fd) : fd_(fd) {}
  ~ListeningSocket();
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

  int fd() const { return fd_; }

 private:
  const int fd_;
};

// What a worker's loop knows only on its own thread, read for a metrics scrape (Worker::sample).
struct WorkerSample {
  reactor::EventCounts events;
  // Per listener (by name) with open flows on this worker.
  struct Listener {
    std::string name;
    uint64_t bufferedBytes = 0;
    uint64_t flowsAtLimit = 0;
  };
  std::vector<Listener> listeners;
};

// One worker thread with its own EventBase: it accepts on every listener (on the listener's one
// socket, which all workers wait on, or on this worker's own SO_REUSEPORT socket of it) and relays
// the flows it accepted until they end ("one loop per thread"; a flow never leaves its worker).
//
// Listeners change in two phases so that a change applies on every worker or on none:
// prepare() adopts the new sockets without accepting on them (the only step that can fail);
// then commit() starts accepting on them and applies the rest, or abort() closes them.
//
// Events: each listener's accept event is labelled "listener NAME" in dumpEvents(); flows and
// health checks label theirs (flow.h, health_checker.h).
//
// Thread rule: the public methods are safe from any thread (they post to the worker's loop
// with runInLoop), except start() and stop(), which the owner calls. The ones that return a
// future must not be waited on from this worker's own loop thread. If the loop is not running,
// or stops before the posted work runs, the future is ready at once (holding a default value or,
// when the loop stopped first, a broken_promise error).
class Worker : private FlowObserver, private reactor::LoopObserver {
 public:
  // A listening socket for this worker, the listener it belongs to, and what this worker's flows
  // from it start with: the listener's settings and its cluster. `shared`: the other workers
  // accept on the same socket (the worker then registers it for exclusive wake-ups, so that a new
  // connection wakes one loop, not all).
  struct Socket {
    std::shared_ptr<ListenerState> listener;
    std::shared_ptr<ListeningSocket> socket;
    bool shared;
    std::shared_ptr<const ListenerConfig> config;
    std::shared_ptr<ClusterState> cluster;
  };

  // Flow ids carry the worker index in their top bits (unique across workers).
  static constexpr int kFlowIdWorkerShift = 48;
  static uint32_t workerOfFlow(uint64_t flowId) {
    return static_cast<uint32_t>(flowId >> kFlowIdWorkerShift);
  }

  // `notices`: may be null; if set it must outlive the worker's thread (stop()). `budget`: the
  // process's memory budget, slot `index` of which is this worker's; null: none. It must
  // outlive the worker.
  Worker(uint32_t index, const AccessLog& accessLog, NoticeSink* notices = nullptr,
         BufferBudget* budget = nullptr);
  // Stops the loop if it still runs and joins the thread.
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread and its loop (with no listener yet); returns once the loop is set up.
  void start();

  // Stops accepting and lets go of this worker's listening sockets (a shared one closes when the
  // last worker lets go): new clients are refused, flows go on.
  void stopAccepting();
  // Stops the loop (flows still open are closed with kDrain first) and joins the thread. Called
  // by the owner only (not concurrently with itself).
  void stop();
  // Runs `make` on the loop thread and keeps what it returns under `key` until disown(key) or
  // the loop ends; it is then destroyed on the loop thread, before the EventBase (e.g. a
  // cluster's HealthChecker). Owning under a key already in use replaces (destroys) the old
  // object. Does nothing if the loop is not running.
  void own(std::string key, std::function<std::shared_ptr<void>(reactor::EventBase&)> make);
  // Destroys, on the loop thread, what own() keeps under `key`, if anything.
  void disown(std::string key);

  // Phase 1: adopts `sockets` (the worker holds them from now on) as listeners that do not
  // accept yet, kept until commit() or abort(). If one cannot be adopted (Listener::adopt
  // fails), the worker lets go of every socket of this call before answering, nothing is kept,
  // and the result is the error. If the loop is not running, it lets go of them; the result is
  // then no error.
  std::future<std::optional<std::string>> prepare(std::vector<Socket> sockets);

  // A listener that stays, with its new settings (or only a new cluster).
  struct Update {
    const ListenerState* listener;
    // New flows use these; flows already open keep the settings they started with. Its
    // max_connections and allow apply from the next accept, and `paused` stops or starts
    // accepting (the socket stays bound; clients wait in the backlog meanwhile).
    std::shared_ptr<const ListenerConfig> config;
    // New flows use a picker for this cluster (a new one if it differs from the current one);
    // flows already open keep theirs until they end.
    std::shared_ptr<ClusterState> cluster;
  };
  // Phase 2 of a change (see Gateway::reload).
  struct Changes {
    // Listeners to stop accepting on: their sockets close, their open flows go on (drain).
    std::vector<const ListenerState*> remove;
    std::vector<Update> update;
  };
  // Starts accepting on every prepared listener (unless its config says paused), then removes
  // and updates, in that order (a replaced listener's new sockets accept before its old ones
  // close); the future is ready once all of it is applied (at once if the loop is not running).
  std::future<void> commit(Changes changes);
  // Closes every prepared listener's socket instead.
  std::future<void> abort();

  // Flow queries and commands (gateway/flow_query.h); `filter` is matched on the loop.
  // The matching flows with id > afterId, by id, at most `limit`.
  std::future<std::vector<FlowInfo>> listFlows(FlowFilter filter, uint64_t afterId,
                                               size_t limit) const;
  std::future<size_t> countFlows(FlowFilter filter) const;
  // The start time (the loop's clock, comparable across workers) and id of the `max` oldest
  // matching flows, oldest first.
  struct FlowAge {
    TimePoint start;
    uint64_t id = 0;
  };
  std::future<std::vector<FlowAge>> oldestFlows(FlowFilter filter, size_t max) const;
  // Closes the flows with these ids that are still open; the result is how many it closed.
  std::future<size_t> closeFlows(std::vector<uint64_t> ids, CloseReason reason);
  // The loop's event table (EventBase::dumpEvents()).
  std::future<std::vector<reactor::EventInfo>> dumpEvents() const;
  // Event counts and, per listener, the bytes buffered in its flows and how many are at their
  // buffer limit (metrics).
  std::future<WorkerSample> sample() const;
  // The loop's iterations and their durations. Safe from any thread (the worker writes them).
  const stats::LoopCounters& loopCounters() const { return loopCounters_; }
  // Functions posted to the loop and not run yet (0 if the loop is not running). Safe from any
  // thread while the worker runs.
  size_t queuedFunctions() const;

  size_t flowCount() const { return flowCount_.load(std::memory_order_relaxed); }
  uint32_t index() const { return index_; }

 private:
  // What the flows a listener accepts between two changes of it share, and keep alive while
  // they are open: the listener's state, its config as they started, this worker's picker for
  // its cluster, and the FlowSettings each flow refers to (one copy per group, not per flow).
  // Never changed once flows use it: a change makes a new group for the flows after it.
  struct FlowGroup {
    std::shared_ptr<ListenerState> listener;
    std::shared_ptr<const ListenerConfig> config;
    std::shared_ptr<WorkerCluster> picker;
    FlowSettings settings;  // settings.counters: this worker's slot of the listener's stats
  };
  // A listener on this worker: the reactor listener and the group new flows join.
  struct Accepting {
    Worker* worker = nullptr;
    std::shared_ptr<const FlowGroup> group;
    // The socket outlives the reactor listener on it (declared first, destroyed last).
    std::shared_ptr<ListeningSocket> socket;
    std::unique_ptr<reactor::Listener> listener;
  };
  struct OpenFlow {
    Flow* flow;
    std::shared_ptr<const FlowGroup> group;  // the flow's settings and picker live here
  };

  void run(std::promise<void>& ready);
  // Posts `fn` to the loop; the future gets its result (see the class comment).
  template <typename T>
  std::future<T> call(std::function<T()> fn) const;
  // Adopts `socket` as a listener that does not accept yet (loop thread); nullptr with errno if
  // it cannot be.
  std::unique_ptr<Accepting> adopt(const Socket& socket);
  // The group for new flows of `listener` with `config` and `picker`.
  std::shared_ptr<const FlowGroup> makeGroup(std::shared_ptr<ListenerState> listener,
                                             std::shared_ptr<const ListenerConfig> config,
                                             std::shared_ptr<WorkerCluster> picker);
  void update(const Update& change);
  // Stops accepting on `accepting` and lets go of its socket (loop thread).
  static void closeListener(Accepting& accepting);
  std::shared_ptr<WorkerCluster> makePicker(std::shared_ptr<ClusterState> cluster) const;
  static void onAccept(reactor::Listener& listener, int fd, const sockaddr* peer, socklen_t peerLen,
                       void* arg);
  // An accept error: out of fds, it is counted (the rest the reactor listener handles alone).
  static void onAcceptError(reactor::Listener& listener, int error, void* arg);
  void accept(Accepting& accepting, int fd, const reactor::SocketAddress& peer);
  void onFlowClosed(Flow& flow) override;
  void onIteration(TimePoint polled, TimePoint finished) override;
  bool matches(const OpenFlow& open, const FlowFilter& filter, TimePoint now) const;
  FlowInfo describe(const OpenFlow& open, TimePoint now) const;
  void publishFlowNotice(Notice::Type type, const OpenFlow& open) const;
  // Closes up to `count` flows, oldest first (loop thread).
  void closeOldest(size_t count, CloseReason reason);

  const uint32_t index_;
  const AccessLog& accessLog_;
  NoticeSink* const notices_;
  std::thread thread_;
  // Lives on the worker thread's stack while it runs; set before start() returns, cleared when the
  // loop has ended.
  std::atomic<reactor::EventBase*> base_{nullptr};
  // Set by stop() once it no longer touches the base; the loop thread waits for it before the
  // base is destroyed.
  std::atomic<bool> stopPosted_{false};

  // Loop thread only.
  // By listener: a change finds what it removes or updates at once, among thousands.
  std::unordered_map<const ListenerState*, std::unique_ptr<Accepting>> accepting_;
  // Adopted by prepare(), not accepting until commit().
  std::vector<std::unique_ptr<Accepting>> prepared_;
  std::map<uint64_t, OpenFlow> flows_;  // by id, which grows with age: oldest first
  uint64_t nextFlow_ = 0;

  std::atomic<size_t> flowCount_{0};
  stats::LoopCounters loopCounters_;
  // Pipes for splice(), lent to flows while bulk bytes are in flight; loop thread only. At most
  // 256 open (512 fds) per worker; 32 empty ones kept for reuse.
  PipePool pipes_{256, 32};
  // This worker's share of the memory budget: its flows report to it; refreshed every loop pass.
  BufferAccount budget_;

  // What own() made, by key; loop thread only.
  std::map<std::string, std::shared_ptr<void>> owned_;
};

}  // namespace evgate::gateway
