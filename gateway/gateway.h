#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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
// one Config. It opens every listening socket itself (one SO_REUSEPORT socket per listener per
// worker; a port-0 bind is resolved by the first socket and reused by the others) before any
// worker starts, so a bind error is reported with nothing started.
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
  //   - fields that need a restart (workers, admin, metrics, log, access_log, state_file) are
  //     logged as such and keep their running values.
  // All or nothing: every new socket is opened, then every worker adopts its sockets without
  // accepting on them yet; if any of that fails, everything opened is closed, nothing changes
  // and the error is returned. On success, returns once every worker has applied its part and
  // the summary is logged: "reloaded: +A listeners, -R listeners, U listeners updated, K clusters
  // changed", with " (CAUSE)" after "reloaded" if `cause` is not empty (e.g. "API change").
  std::optional<std::string> reload(Config next, std::string_view cause = {});

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
  // The view as of the last start() or reload(); empty before start() and after stop(). Safe
  // from any thread.
  std::shared_ptr<const MetricsView> metricsView() const;
  // One worker's loop for the metrics.
  struct WorkerMetrics {
    uint32_t index;
    uint64_t iterations;
    stats::HistogramTotal iterationDuration;
    size_t queuedFunctions;
    std::optional<WorkerSample> sample;  // nullopt: the loop did not answer by the deadline
  };
  // Reads every worker's loop counters and asks each loop for a WorkerSample, waiting for the
  // answers until `deadline`. Safe from any thread (stop() waits for a call in progress).
  std::vector<WorkerMetrics> sampleWorkers(std::chrono::steady_clock::time_point deadline) const;

  const Config& config() const { return config_; }
  size_t workerCount() const { return workers_.size(); }
  // Every listener with the address it is bound to, after start(); in config().listeners order.
  const std::vector<std::shared_ptr<ListenerState>>& listeners() const { return listeners_; }
  // Every cluster's shared state, after start(); in config().clusters order.
  const std::vector<std::shared_ptr<ClusterState>>& clusters() const { return clusters_; }

 private:
  // Opens one socket per worker for `listener` (resolving port 0 on the first) and sets its
  // bound address; on failure closes what it opened and returns the error.
  std::optional<std::string> openSockets(ListenerState& listener, std::vector<int>& fds) const;
  // Phase 1 on every worker (Worker::prepare); on failure aborts it on every worker and returns
  // the first error.
  std::optional<std::string> prepareAll(std::vector<std::vector<Worker::Socket>> sockets);
  // Starts the health checker of `cluster` on worker 0 (if it has health_check).
  void startHealthChecker(const std::shared_ptr<ClusterState>& cluster);
  // Sets metricsView() from listeners_ and clusters_ (empty if `clear`).
  void publishMetricsView(bool clear = false);

  Config config_;
  SocketOpener openSocket_;
  NoticeSink* notices_ = nullptr;
  uint32_t workerCount_ = 0;
  AccessLog accessLog_;
  std::vector<std::shared_ptr<ClusterState>> clusters_;
  std::vector<std::shared_ptr<ListenerState>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // Guards workers_ against stop() for sampleWorkers(), the one reader off the owner's thread.
  mutable std::mutex workersMutex_;
  mutable std::mutex viewMutex_;
  std::shared_ptr<const MetricsView> view_;
};

// A non-blocking listening TCP socket with SO_REUSEADDR and SO_REUSEPORT bound to `address`, or
// -1 with errno set.
int openListeningSocket(const reactor::SocketAddress& address);

}  // namespace evgate::gateway
