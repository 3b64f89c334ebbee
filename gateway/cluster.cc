#include "gateway/cluster.h"

#include <algorithm>

namespace evgate::gateway {

ClusterState::ClusterState(ClusterConfig config, Now now)
    : config_(std::move(config)),
      now_(std::move(now)),
      endpoints_(new Endpoint[config_.endpoints.size()]) {
  for (size_t i = 0; i < config_.endpoints.size(); ++i) {
    endpoints_[i].admin.store(config_.endpoints[i].state, std::memory_order_relaxed);
  }
}

void ClusterState::inheritHealth(const ClusterState& old) {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  for (size_t i = 0; i < config_.endpoints.size(); ++i) {
    const std::optional<size_t> before = old.indexOf(config_.endpoints[i].address);
    if (!before) continue;
    const Endpoint& from = old.endpoints_[*before];
    Endpoint& to = endpoints_[i];
    if (config_.healthCheck) to.healthy.store(from.healthy.load(kRelaxed), kRelaxed);
    if (config_.outlier.consecutiveFailures != 0) {
      to.failures.store(from.failures.load(kRelaxed), kRelaxed);
      to.ejections.store(from.ejections.load(kRelaxed), kRelaxed);
      to.ejectedUntil.store(from.ejectedUntil.load(kRelaxed), kRelaxed);
    }
  }
}

int64_t ClusterState::nowNanos() const {
  const reactor::TimePoint now = now_ ? now_() : std::chrono::steady_clock::now();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
}

bool ClusterState::available(size_t index, int64_t now) const {
  const Endpoint& endpoint = endpoints_[index];
  return endpoint.healthy.load(std::memory_order_relaxed) &&
         endpoint.admin.load(std::memory_order_relaxed) == EndpointAdminState::kActive &&
         now >= endpoint.ejectedUntil.load(std::memory_order_relaxed);
}

void ClusterState::recordConnectFailure(size_t index) {
  const OutlierConfig& outlier = config_.outlier;
  if (outlier.consecutiveFailures == 0) return;
  Endpoint& endpoint = endpoints_[index];
  const int64_t now = nowNanos();
  if (now < endpoint.ejectedUntil.load(std::memory_order_relaxed)) return;
  uint32_t failures = endpoint.failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures < outlier.consecutiveFailures) return;
  // Several workers may cross the threshold at once: only the one that resets the count ejects
  // (a loser's failure is in the count the winner reset, which is the point of the ejection).
  if (!endpoint.failures.compare_exchange_strong(failures, 0, std::memory_order_relaxed)) return;
  const uint32_t previous = endpoint.ejections.fetch_add(1, std::memory_order_relaxed);
  Duration backoff = outlier.baseEjection;
  for (uint32_t i = 0; i < previous && backoff < outlier.maxEjection; ++i) {
    backoff = backoff > outlier.maxEjection / 2 ? outlier.maxEjection : backoff * 2;
  }
  backoff = std::min(backoff, outlier.maxEjection);
  endpoint.ejectedUntil.store(now + backoff.count(), std::memory_order_relaxed);
}

void ClusterState::recordConnectSuccess(size_t index) {
  Endpoint& endpoint = endpoints_[index];
  // Load first: connects succeed far more often than they fail, and a store on every one would
  // bounce this cache line between the workers for nothing.
  if (endpoint.failures.load(std::memory_order_relaxed) != 0) {
    endpoint.failures.store(0, std::memory_order_relaxed);
  }
  if (endpoint.ejections.load(std::memory_order_relaxed) != 0) {
    endpoint.ejections.store(0, std::memory_order_relaxed);
  }
}

std::optional<size_t> ClusterState::indexOf(const reactor::SocketAddress& address) const {
  for (size_t i = 0; i < config_.endpoints.size(); ++i) {
    if (config_.endpoints[i].address == address) return i;
  }
  return std::nullopt;
}

namespace {

std::vector<uint32_t> weightsOf(const ClusterConfig& config) {
  std::vector<uint32_t> weights;
  weights.reserve(config.endpoints.size());
  for (const EndpointConfig& endpoint : config.endpoints) weights.push_back(endpoint.weight);
  return weights;
}

}  // namespace

WorkerCluster::WorkerCluster(std::shared_ptr<ClusterState> state, uint64_t seed, uint32_t worker)
    : state_(std::move(state)),
      balancer_(LoadBalancer::create(state_->config().lb, weightsOf(state_->config()), seed)),
      views_(state_->endpointCount()) {
  if (const auto& counts = state_->stats()) {
    clusterCounters_ = &counts->counters->at(worker);
    for (const auto& endpoint : counts->endpoints) {
      endpointCounters_.push_back(&endpoint->workers.at(worker));
    }
  }
}

const reactor::SocketAddress* WorkerCluster::nextSource(int family) {
  const std::vector<reactor::SocketAddress>& sources = state_->config().sourceAddresses;
  for (size_t i = 0; i < sources.size(); ++i) {
    const size_t index = (nextSource_ + i) % sources.size();
    if (sources[index].family() == family) {
      nextSource_ = (index + 1) % sources.size();
      return &sources[index];
    }
  }
  return nullptr;
}

std::optional<reactor::SocketAddress> WorkerCluster::pick(
    const reactor::SocketAddress& client, std::span<const reactor::SocketAddress> tried) {
  const ClusterConfig& config = state_->config();
  const int64_t now = state_->nowNanos();
  for (size_t i = 0; i < views_.size(); ++i) {
    views_[i] = EndpointView{config.endpoints[i].weight, state_->available(i, now),
                             state_->activeConnections(i)};
  }
  excluded_.clear();
  for (const reactor::SocketAddress& address : tried) {
    if (const auto index = state_->indexOf(address)) excluded_.push_back(*index);
  }
  const std::optional<size_t> chosen =
      balancer_->pick(views_, hashClientAddress(client), excluded_);
  if (!chosen) return std::nullopt;
  return config.endpoints[*chosen].address;
}

void WorkerCluster::onConnectResult(const reactor::SocketAddress& endpoint,
                                    stats::ConnectResult result, Duration elapsed) {
  const auto index = state_->indexOf(endpoint);
  if (!index) return;
  stats::EndpointCounters* counters =
      *index < endpointCounters_.size() ? endpointCounters_[*index] : nullptr;
  if (counters != nullptr) counters->attempts.add(1);
  if (result != stats::ConnectResult::kOk) {
    if (counters != nullptr) counters->failures[static_cast<size_t>(result) - 1].add(1);
    state_->recordConnectFailure(*index);
    return;
  }
  state_->recordConnectSuccess(*index);
  state_->addConnection(*index);
  if (counters != nullptr) counters->activeFlows.add(1);
  if (clusterCounters_ != nullptr) clusterCounters_->connectDuration.observe(elapsed);
}

void WorkerCluster::onFlowEnded(const reactor::SocketAddress& endpoint) {
  const auto index = state_->indexOf(endpoint);
  if (!index) return;
  state_->removeConnection(*index);
  if (*index < endpointCounters_.size()) endpointCounters_[*index]->activeFlows.add(-1);
}

}  // namespace evgate::gateway
