#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "gateway/config/config.h"
#include "gateway/config/names.h"
#include "gateway/flow.h"
#include "gateway/load_balancer.h"
#include "gateway/stats.h"
#include "reactor/clock.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// What every worker shares about one cluster: its configuration and, per endpoint, the live
// connection count (least_connections and random_two read it) and the inputs that decide
// whether it may take new flows:
//   available(i) = healthy (active checks) && admin state kActive && not ejected (passive).
// Endpoints start healthy: traffic flows before the first check has run, as with no checks at
// all, and an endpoint that is really down is found by the checks or by passive ejection. Each
// starts in the admin state its EndpointConfig says; adminState(i) is the current one from then on
// (config().endpoints[i].state stays what the state was created with).
//
// Passive ejection (config().outlier): every worker reports its connect results here; after
// `consecutiveFailures` failed connects in a row the endpoint is ejected for a back-off that
// starts at `baseEjection` and doubles on each further ejection up to `maxEjection`. A
// successful connect resets both the failure count and the back-off. Failures reported while
// the endpoint is ejected (attempts that started before the ejection) are not counted, so they
// cannot stack a second ejection on the first.
//
// Consistency: each value is a relaxed atomic. A worker may pick with a count that another
// worker is changing at that moment; the policies only need an approximately current load, and
// no lock ever sits on the accept path. Thread rule: safe from any thread.
class ClusterState {
 public:
  // The time source for ejection deadlines (tests pass a fake one); null: steady_clock. Called
  // from any thread, so it must be thread-safe.
  using Now = std::function<reactor::TimePoint()>;

  explicit ClusterState(ClusterConfig config, Now now = nullptr);

  // Takes over, for every endpoint that `old` also has (same address), what `old` learned about
  // it: the health flag (only if this cluster has health_check: without checks nothing would
  // ever mark it healthy again) and the passive-ejection state (failures in a row, ejections,
  // ejected-until; only if this cluster's outlier detection is on). Connection counts and admin
  // states are not taken: flows count against the state they started with, and the admin state
  // comes from the configuration. Call before any other thread uses this state (a reload).
  void inheritHealth(const ClusterState& old);

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

  // May the endpoint take new flows now? See the class comment.
  bool available(size_t index) const { return available(index, nowNanos()); }
  // The same at `now` (steady_clock nanoseconds): a pick reads the clock once for all endpoints.
  bool available(size_t index, int64_t now) const;

  // Active health: written by the cluster's HealthChecker only.
  bool healthy(size_t index) const {
    return endpoints_[index].healthy.load(std::memory_order_relaxed);
  }
  void setHealthy(size_t index, bool healthy) {
    endpoints_[index].healthy.store(healthy, std::memory_order_relaxed);
  }

  EndpointAdminState adminState(size_t index) const {
    return endpoints_[index].admin.load(std::memory_order_relaxed);
  }
  void setAdminState(size_t index, EndpointAdminState state) {
    endpoints_[index].admin.store(state, std::memory_order_relaxed);
  }

  // Passive ejection inputs: the outcome of one connect attempt to the endpoint.
  void recordConnectFailure(size_t index);
  void recordConnectSuccess(size_t index);
  // Whether the endpoint is ejected now, and until when (steady_clock nanoseconds; 0: never
  // ejected).
  bool ejected(size_t index) const { return nowNanos() < ejectedUntil(index); }
  int64_t ejectedUntil(size_t index) const {
    return endpoints_[index].ejectedUntil.load(std::memory_order_relaxed);
  }

  // The clock the ejection deadlines are on, in nanoseconds.
  int64_t nowNanos() const;

  // The metrics' counters (gateway/stats.h); null: not counted (tests). Set by the owner before
  // any worker uses this state, like inheritHealth().
  void setStats(std::shared_ptr<stats::ClusterStats> clusterStats) {
    stats_ = std::move(clusterStats);
  }
  const std::shared_ptr<stats::ClusterStats>& stats() const { return stats_; }

 private:
  struct Endpoint {
    std::atomic<uint32_t> active{0};
    std::atomic<bool> healthy{true};
    std::atomic<EndpointAdminState> admin{EndpointAdminState::kActive};
    // Connect failures in a row since the last success or ejection.
    std::atomic<uint32_t> failures{0};
    // Ejections since the last successful connect: the exponent of the back-off.
    std::atomic<uint32_t> ejections{0};
    std::atomic<int64_t> ejectedUntil{0};
  };

  ClusterConfig config_;
  Now now_;
  std::unique_ptr<Endpoint[]> endpoints_;
  std::shared_ptr<stats::ClusterStats> stats_;
};

// One worker's view of a cluster: the UpstreamPicker its flows use. It owns the worker's own
// load balancer (no locks on the pick path) and reads the shared ClusterState. It counts connect
// results and connected flows into worker `worker`'s slot of the cluster's stats, if it has any.
//
// Thread rule: its worker's loop thread only.
class WorkerCluster final : public UpstreamPicker {
 public:
  WorkerCluster(std::shared_ptr<ClusterState> state, uint64_t seed, uint32_t worker = 0);

  std::optional<reactor::SocketAddress> pick(
      const reactor::SocketAddress& client, std::span<const reactor::SocketAddress> tried) override;
  void onConnectResult(const reactor::SocketAddress& endpoint, stats::ConnectResult result,
                       Duration elapsed) override;
  void onFlowEnded(const reactor::SocketAddress& endpoint) override;
  Duration connectTimeout() const override { return state_->config().connectTimeout; }
  uint32_t maxConnectAttempts() const override { return state_->config().maxConnectAttempts; }
  ProxyProtocol sendProxyProtocol() const override { return state_->config().sendProxyProtocol; }
  // The cluster's source_addresses round-robin (this worker's own turn), skipping other families.
  const reactor::SocketAddress* nextSource(int family) override;

  const ClusterState& state() const { return *state_; }

 private:
  std::shared_ptr<ClusterState> state_;
  std::unique_ptr<LoadBalancer> balancer_;
  // Reused on every pick so that picking allocates nothing.
  std::vector<EndpointView> views_;
  std::vector<size_t> excluded_;
  size_t nextSource_ = 0;  // index into config().sourceAddresses
  // This worker's slots of the cluster's stats (empty / null without stats).
  std::vector<stats::EndpointCounters*> endpointCounters_;
  stats::ClusterCounters* clusterCounters_ = nullptr;
};

}  // namespace evgate::gateway
