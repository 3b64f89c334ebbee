#include "gateway/cluster.h"

namespace evgate::gateway {

ClusterState::ClusterState(ClusterConfig config)
    : config_(std::move(config)), endpoints_(new Endpoint[config_.endpoints.size()]) {}

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

WorkerCluster::WorkerCluster(std::shared_ptr<ClusterState> state, uint64_t seed)
    : state_(std::move(state)),
      balancer_(LoadBalancer::create(state_->config().lb, weightsOf(state_->config()), seed)),
      views_(state_->endpointCount()) {}

std::optional<reactor::SocketAddress> WorkerCluster::pick(
    const reactor::SocketAddress& client, std::span<const reactor::SocketAddress> tried) {
  const ClusterConfig& config = state_->config();
  for (size_t i = 0; i < views_.size(); ++i) {
    views_[i] = EndpointView{config.endpoints[i].weight, state_->available(i),
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

void WorkerCluster::onConnectResult(const reactor::SocketAddress& endpoint, bool ok) {
  if (!ok) return;
  if (const auto index = state_->indexOf(endpoint)) state_->addConnection(*index);
}

void WorkerCluster::onFlowEnded(const reactor::SocketAddress& endpoint) {
  if (const auto index = state_->indexOf(endpoint)) state_->removeConnection(*index);
}

}  // namespace evgate::gateway
