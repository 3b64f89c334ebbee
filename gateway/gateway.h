#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/cluster.h"
#include "gateway/config/config.h"
#include "gateway/worker.h"

namespace evgate::gateway {

// The data plane: the workers, the listeners they share, and the clusters behind them, built from
// one Config. It opens every listening socket itself (one SO_REUSEPORT socket per listener per
// worker; a port-0 bind is resolved by the first socket and reused by the others) before any
// worker starts, so a bind error is reported with nothing started.
//
// Thread rule: the owner's thread (the daemon's main thread) only.
class Gateway {
 public:
  explicit Gateway(Config config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Opens the sockets and starts the workers. On failure returns what went wrong, and nothing is
  // left open or running.
  std::optional<std::string> start();

  // Applies `next` (already parsed and validated) to the running gateway, changing only what
  // differs, by name (docs/gateway.md, "Reload"):
  //   - a listener that is new, or whose configuration changed, gets new sockets; one that is
  //     gone, or changed, stops accepting and its open flows go on until they end (drain);
  //   - a cluster that is new or changed gets a new ClusterState (and health checker); the
  //     listeners using it pick from it for new flows, open flows keep the old one;
  //   - unchanged listeners and their flows are untouched;
  //   - fields that need a restart (workers, admin, metrics, log, access_log, state_file) are
  //     logged as such and keep their running values.
  // Every new socket is opened first: if one cannot be, all are closed again, nothing changes
  // and the error is returned. On success, returns once every worker has applied its part and
  // the summary ("reloaded: ...") is logged.
  std::optional<std::string> reload(Config next);

  // Closes every listening socket: new clients are refused; flows go on.
  void stopAccepting();
  // Flows open on all workers (each count is read without stopping the workers).
  size_t flowCount() const;
  // Closes up to `perWorker` of the oldest flows on each worker.
  void closeFlows(size_t perWorker, CloseReason reason);
  // Stops every worker (closing what is still open) and joins them.
  void stop();

  const Config& config() const { return config_; }
  size_t workerCount() const { return workers_.size(); }
  // Every listener with the address it is bound to, after start().
  const std::vector<std::shared_ptr<ListenerState>>& listeners() const { return listeners_; }

 private:
  // Opens one socket per worker for `listener` (resolving port 0 on the first) and sets its
  // bound address; on failure closes what it opened and returns the error.
  std::optional<std::string> openSockets(ListenerState& listener, std::vector<int>& fds) const;
  // Starts the health checker of `cluster` on worker 0 (if it has health_check).
  void startHealthChecker(const std::shared_ptr<ClusterState>& cluster);

  Config config_;
  uint32_t workerCount_ = 0;
  AccessLog accessLog_;
  std::vector<std::shared_ptr<ClusterState>> clusters_;
  std::vector<std::shared_ptr<ListenerState>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

// A non-blocking listening TCP socket with SO_REUSEADDR and SO_REUSEPORT bound to `address`, or
// -1 with errno set.
int openListeningSocket(const reactor::SocketAddress& address);

}  // namespace evgate::gateway
