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
  Config config_;
  AccessLog accessLog_;
  std::vector<std::shared_ptr<ClusterState>> clusters_;
  std::vector<std::shared_ptr<ListenerState>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

// A non-blocking listening TCP socket with SO_REUSEADDR and SO_REUSEPORT bound to `address`, or
// -1 with errno set.
int openListeningSocket(const reactor::SocketAddress& address);

}  // namespace evgate::gateway
