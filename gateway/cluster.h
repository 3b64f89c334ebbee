#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "gateway/config/config.h"
#include "gateway/flow.h"
#include "gateway/load_balancer.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// What every worker shares about one cluster: its configuration and, per endpoint, the live
// connection count (least_connections and random_two read it) and whether it may take new flows.
//
// Consistency: each value is a relaxed atomic. A worker may pick with a count that another
// worker is changing at that moment; the policies only need an approximately current load, and
// no lock ever sits on the accept path. Thread rule: safe from any thread.
class ClusterState {
 public:
  explicit ClusterState(ClusterConfig config);

  const ClusterConfig& config() const { return config_; }
  size_t endpointCount() const { return config_.endpoints.size(); }
  // The index of `address` among the endpoints, or nullopt.
  std::optional<size_t> indexOf(const reactor::SocketAddress& address) const;

  uint32_t activeConnections(size_t index) const {
    return endpoints_[index].active.load(std::memory_order_relaxed);
  }
  void addConnection(size_t index) {
    endpoints_[index].active.fetch_add(1, std::memory_order_relaxed);
  }
  void removeConnection(size_t index) {
    endpoints_[index].active.fetch_sub(1, std::memory_order_relaxed);
  }
  bool available(size_t index) const {
    return endpoints_[index].available.load(std::memory_order_relaxed);
  }
  void setAvailable(size_t index, bool available) {
    endpoints_[index].available.store(available, std::memory_order_relaxed);
  }

 private:
  struct Endpoint {
    std::atomic<uint32_t> active{0};
    std::atomic<bool> available{true};
  };

  ClusterConfig config_;
  std::unique_ptr<Endpoint[]> endpoints_;
};

// One worker's view of a cluster: the UpstreamPicker its flows use. It owns the worker's own
// load balancer (no locks on the pick path) and reads the shared ClusterState.
//
// Thread rule: its worker's loop thread only.
class WorkerCluster final : public UpstreamPicker {
 public:
  WorkerCluster(std::shared_ptr<ClusterState> state, uint64_t seed);

  std::optional<reactor::SocketAddress> pick(
      const reactor::SocketAddress& client, std::span<const reactor::SocketAddress> tried) override;
  void onConnectResult(const reactor::SocketAddress& endpoint, bool ok) override;
  void onFlowEnded(const reactor::SocketAddress& endpoint) override;
  Duration connectTimeout() const override { return state_->config().connectTimeout; }
  uint32_t maxConnectAttempts() const override { return state_->config().maxConnectAttempts; }

  const ClusterState& state() const { return *state_; }

 private:
  std::shared_ptr<ClusterState> state_;
  std::unique_ptr<LoadBalancer> balancer_;
  // Reused on every pick so that picking allocates nothing.
  std::vector<EndpointView> views_;
  std::vector<size_t> excluded_;
};

}  // namespace evgate::gateway
