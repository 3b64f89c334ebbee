#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/cluster.h"
#include "gateway/config/config.h"
#include "gateway/flow_query.h"
#include "gateway/notice.h"
#include "gateway/worker.h"
#include "reactor/event_base.h"

namespace evgate::gateway {

// One loop's event table (Gateway::listEvents).
struct LoopEvents {
  std::string loop;  // "worker-0", "worker-1", ...
  std::vector<reactor::EventInfo> events;
};

// The data plane: the workers, the listeners they share, and the clusters behind them, built from
// one Config. It opens every listening socket itself before any worker starts, so a bind error is
// reported with nothing started: per listener one SO_REUSEPORT socket per worker (the kernel
// spreads connections; a port-0 bind is resolved by the first socket and reused by the others)
// or one socket that every worker accepts on (one fd per listener, so that 10,000 listeners fit
// in the fd limit): listener_sockets (docs/gateway.md, "Listener sockets").
//
// Thread rule: the owner's thread (the daemon's main thread) only, for every method. The ones
// that ask the workers (flow queries, listEvents, reload) post to each worker's loop and wait
// for the answers: never call them from a worker's loop thread. They return promptly if a worker's
// loop is not running (its share is then empty).
class Gateway {
 public:
  // Opens one listening socket (non-blocking, SO_REUSEADDR and SO_REUSEPORT, listening) bound to
  // the address, or returns -1 with errno set. The default is openListeningSocket(); tests pass
  // another to make the N-th socket fail.
  using SocketOpener = std::function<int(const reactor::SocketAddress& address)>;

  explicit Gateway(Config config, SocketOpener openSocket = nullptr);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Where endpoint health transitions and (while it wants them) flow opened/closed notices go;
  // null: nowhere. Before start(); the sink must outlive the workers (stop()).
  void setNoticeSink(NoticeSink* sink) { notices_ = sink; }

  // Opens the sockets and starts the workers. On failure returns what went wrong, and nothing is
  // left open or running.
  std::optional<std::string> start();

  // Called by reload() and apply() once every step that can fail has succeeded (sockets open,
  // every worker prepared) and before anything changes: an error it returns aborts the change
  // (nothing changes) and is returned. The control plane writes its state file here.
  using PreCommit = std::function<std::optional<std::string>()>;

  // Applies `next` (already parsed and validated) to the running gateway, changing only what
  // differs, by name (docs/gateway.md, "Reload"):
  //   - a new listener gets its sockets (and accepts on them unless `paused`); one that is gone
  //     stops accepting and its open flows go on until they end (drain);
  //   - a listener whose `bind` changed is replaced: new sockets (opened while the old ones still
  //     accept) and a new ListenerState, and the old one drains;
  //   - a listener whose other fields changed is updated in place: same sockets, same
  //     ListenerState (id, connection count); new flows get the new settings, open flows keep
  //     theirs; max_connections and allow apply from the next accept; `paused` stops or starts
  //     accepting (the sockets stay bound);
  //   - a cluster whose only change is endpoint admin states gets them set on its ClusterState;
  //     any other change to a cluster makes a new ClusterState (and health checker), which takes
  //     over the health and ejection state of the endpoints it keeps (ClusterState::
  //     inheritHealth); the listeners using it pick from it for new flows, open flows keep the
  //     old one;
  //   - unchanged listeners and their flows are untouched;
  //   - fields that need a restart (workers, listener_sockets, admin, metrics, log, access_log,
  //     state_file, config_watch) are logged as such and keep their running values.
  // All or nothing: every new socket is opened, then every worker adopts its sockets without
  // accepting on them yet, then `preCommit` runs; if any of that fails, everything opened is
  // closed, nothing changes and the error is returned. On success, returns once every worker has
  // applied its part (a new listener accepts on every worker) and the summary is logged:
  // "reloaded: +A listeners, -R listeners, U listeners updated, K clusters changed", with
  // " (CAUSE)" after "reloaded" if `cause` is not empty (e.g. "API change"). O(listeners +
  // clusters); config().listeners and listeners() are in `next`'s order afterwards.
  std::optional<std::string> reload(Config next, std::string_view cause = {},
                                    const PreCommit& preCommit = nullptr);

  // A change to some listeners and clusters, by name (what an admin API call makes): each put
  // definition creates or replaces the one of its name, each removed name goes (a name that is
  // not running is ignored). Each definition must be valid on its own (parsed and checked as the
  // configuration file's are); check() says whether the result is valid as a whole.
  struct Delta {
    std::vector<ListenerConfig> putListeners;
    std::vector<std::string> removeListeners;
    std::vector<ClusterConfig> putClusters;
    std::vector<std::string> removeClusters;
  };
  // Why apply(delta) would be refused before it opens anything, or nullopt: a name that appears
  // twice among the delta's listeners (or clusters); a listener whose cluster does not exist
  // after the change ("listener web uses cluster backends, which does not exist", also for a
  // running listener whose cluster the delta removes); a bind that is the admin or metrics
  // address or that another listener keeps or gets ("listener b: 127.0.0.1:8080 is already used
  // by listener a"; port 0 excepted). What a check of the whole configuration would find, in
  // time proportional to the delta times the listeners it adds (no allocation per listener).
  std::optional<std::string> check(const Delta& delta) const;
  // What reload(config() with `delta` applied) would do, with the same guarantees and log line
  // (and first check(delta): a delta it refuses changes nothing and its error is returned),
  // in time proportional to the delta rather than to the configuration (a cluster that gets a
  // new state also visits every listener; a removal moves the listeners after it): creating one
  // listener among 10,000 costs what it costs among ten. A new listener goes at the end of
  // config().listeners; the others keep their order.
  std::optional<std::string> apply(const Delta& delta, std::string_view cause = {},
                                   const PreCommit& preCommit = nullptr);

  // Closes every listening socket: new clients are refused; flows go on.
  void stopAccepting();
  // Flows open on all workers (each count is read without stopping the workers).
  size_t flowCount() const;

  // The open flows that match `filter` with an id greater than `afterId`, by id, at most `limit`
  // (for paging: pass the last id of one page as afterId of the next).
  std::vector<FlowInfo> listFlows(const FlowFilter& filter, uint64_t afterId, size_t limit) const;
  // How many open flows match `filter`.
  size_t countFlows(const FlowFilter& filter) const;
  // Closes flow `id` with `reason`; false if no such flow is open.
  bool closeFlow(uint64_t id, CloseReason reason);
  // Closes up to `max` of the matching flows, oldest first across all workers; returns how many
  // it closed.
  size_t closeFlows(const FlowFilter& filter, size_t max, CloseReason reason);
  // Every worker loop's events, each with its owner label ("listener NAME", "flow ID ...",
  // "health CLUSTER ENDPOINT"; the reactor's own are marked internal).
  std::vector<LoopEvents> listEvents() const;

  // Stops every worker (closing what is still open) and joins them.
  void stop();

  // What the metrics collector (gateway/metrics/) reads: the current listeners and clusters.
  struct MetricsView {
    struct Listener {
      std::shared_ptr<ListenerState> state;  // its stats, connections and paused are safe to read
      uint32_t maxConnections;
    };
    std::vector<Listener> listeners;
    std::vector<std::shared_ptr<ClusterState>> clusters;
  };
  // The view as of the last start(), reload() or apply(); empty before start() and after
  // stop(). Built on the first call after a change. Safe from any thread.
  std::shared_ptr<const MetricsView> metricsView() const;
  // One worker's loop for the metrics.
  struct WorkerMetrics {
    uint32_t index = 0;
    uint64_t iterations = 0;
    stats::HistogramTotal iterationDuration;
    size_t queuedFunctions = 0;
    std::optional<WorkerSample> sample;  // nullopt: the loop did not answer by the deadline
  };
  // Reads every worker's loop counters and asks each loop for a WorkerSample, waiting for the
  // answers until `deadline`. Safe from any thread (stop() waits for a call in progress).
  std::vector<WorkerMetrics> sampleWorkers(std::chrono::steady_clock::time_point deadline) const;

  const Config& config() const { return config_; }
  // By name, in constant time: the running definition or shared state, or null.
  const ListenerConfig* findListener(std::string_view name) const;
  std::shared_ptr<ListenerState> listener(std::string_view name) const;
  const ClusterConfig* findCluster(std::string_view name) const;
  std::shared_ptr<ClusterState> cluster(std::string_view name) const;
  size_t workerCount() const { return workers_.size(); }
  // The memory budget (max_buffered_bytes; 0: none) and the bytes the flows hold by the
  // workers' last counts (buffer_budget.h); nullopt unless running (start() to stop()). Safe
  // from any thread.
  struct BudgetUse {
    uint64_t limit = 0;
    uint64_t used = 0;
  };
  std::optional<BudgetUse> bufferBudget() const;
  // The access log's queue (log_sink.h); nullopt when the log is off. Safe from any thread.
  std::optional<LogSink::Stats> accessLogQueue() const { return accessLog_.queueStats(); }
  // Every listener with the address it is bound to, after start(); in config().listeners order.
  const std::vector<std::shared_ptr<ListenerState>>& listeners() const { return listeners_; }
  // Every cluster's shared state, after start(); in config().clusters order.
  const std::vector<std::shared_ptr<ClusterState>>& clusters() const { return clusters_; }

 private:
  // Opens `listener`'s socket, or one per worker (listener_sockets: per_worker, or auto while
  // `socketCount` and these stay within autoSocketBudget_; port 0 is resolved by the first),
  // sets its bound address and sockets, adds them to `socketCount` and appends each worker's
  // Socket to sockets[worker]; on failure closes what it opened and returns the error.
  std::optional<std::string> addSockets(const std::shared_ptr<ListenerState>& listener,
                                        std::vector<std::vector<Worker::Socket>>& sockets,
                                        size_t& socketCount) const;
  // Phase 1 on every worker (Worker::prepare); on failure aborts it on every worker and returns
  // the first error.
  std::optional<std::string> prepareAll(std::vector<std::vector<Worker::Socket>> sockets);
  // Closes what every worker prepared (Worker::abort) and waits for it.
  void abortAll();

  // The steps of a change (reload, apply): plan it (new states, sockets opened, what each worker
  // does), execute it (prepare, preCommit, commit: all or nothing), record it in config_,
  // listeners_ and clusters_, and report it in the log.
  struct Plan;
  std::optional<std::string> makePlan(const Delta& delta, Plan& plan) const;
  std::optional<std::string> execute(Plan& plan, const PreCommit& preCommit);
  void record(const Delta& delta, const Plan& plan);
  void report(const Plan& plan, std::string_view cause) const;
  std::optional<size_t> listenerIndex(std::string_view name) const;
  std::optional<size_t> clusterIndex(std::string_view name) const;
  // Rebuilds listenerIndex_ and clusterIndex_ from config_.
  void reindex();
  // Starts the health checker of `cluster` on worker 0 (if it has health_check).
  void startHealthChecker(const std::shared_ptr<ClusterState>& cluster);

  Config config_;
  SocketOpener openSocket_;
  NoticeSink* notices_ = nullptr;
  uint32_t workerCount_ = 0;
  // Listening sockets the running listeners hold, and how many listener_sockets: auto lets them
  // hold before new listeners get one shared socket (an eighth of the fd limit).
  size_t socketsInUse_ = 0;
  size_t autoSocketBudget_ = 0;
  AccessLog accessLog_;
  // Parallel to config_.clusters and config_.listeners, with their positions by name.
  std::vector<std::shared_ptr<ClusterState>> clusters_;
  std::vector<std::shared_ptr<ListenerState>> listeners_;
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const { return std::hash<std::string_view>()(name); }
  };
  using NameIndex = std::unordered_map<std::string, size_t, NameHash, std::equal_to<>>;
  NameIndex clusterIndex_;
  NameIndex listenerIndex_;
  // Made by start() (under workersMutex_), one slot per worker; outlives the workers.
  std::unique_ptr<BufferBudget> budget_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // Guards workers_ against stop() for sampleWorkers(), the one reader off the owner's thread,
  // and budget_ for bufferBudget().
  mutable std::mutex workersMutex_;
  // metricsView() reads listeners_, clusters_ and each listener's config.maxConnections from
  // any thread: while the view is live (start() to stop()), the owner changes them under this
  // lock and marks the view stale.
  mutable std::mutex viewMutex_;
  mutable std::shared_ptr<const MetricsView> view_;
  mutable bool viewStale_ = true;
  bool viewLive_ = false;
};

// A non-blocking listening TCP socket with SO_REUSEADDR and SO_REUSEPORT bound to `address`, or
// -1 with errno set.
int openListeningSocket(const reactor::SocketAddress& address);

}  // namespace evgate::gateway
