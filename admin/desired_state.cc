#include "admin/desired_state.h"

#include <google/protobuf/util/time_util.h>

#include "admin/resource_convert.h"

namespace evgate::admin {
namespace {

using google::protobuf::util::TimeUtil;

// The base's resources in file order with the overlay applied, then the overlay's new ones.
template <typename T>
std::vector<T> merge(const std::vector<T>& base, const std::map<std::string, T>& put,
                     const std::set<std::string>& deleted) {
  std::vector<T> out;
  std::set<std::string> seen;
  for (const T& resource : base) {
    seen.insert(resource.name);
    if (deleted.contains(resource.name)) continue;
    const auto it = put.find(resource.name);
    out.push_back(it != put.end() ? it->second : resource);
  }
  for (const auto& [name, resource] : put) {
    if (!seen.contains(name)) out.push_back(resource);
  }
  return out;
}

template <typename T>
bool inBase(const std::vector<T>& base, const std::string& name) {
  for (const T& resource : base) {
    if (resource.name == name) return true;
  }
  return false;
}

std::string indexed(std::string_view field, int index) {
  return std::string(field) + "[" + std::to_string(index) + "]";
}

}  // namespace

gateway::Config DesiredState::effective() const {
  gateway::Config config = base_;
  config.listeners = merge(base_.listeners, listeners_, deletedListeners_);
  config.clusters = merge(base_.clusters, clusters_, deletedClusters_);
  return config;
}

v1::Source DesiredState::listenerSource(const std::string& name) const {
  return listeners_.contains(name) ? v1::SOURCE_API : v1::SOURCE_FILE;
}

v1::Source DesiredState::clusterSource(const std::string& name) const {
  return clusters_.contains(name) ? v1::SOURCE_API : v1::SOURCE_FILE;
}

void DesiredState::putListener(const gateway::ListenerConfig& listener) {
  listeners_[listener.name] = listener;
  deletedListeners_.erase(listener.name);
}

void DesiredState::removeListener(const std::string& name) {
  listeners_.erase(name);
  resumeAt_.erase(name);
  // A tombstone only matters for a listener the file defines.
  if (inBase(base_.listeners, name)) deletedListeners_.insert(name);
}

void DesiredState::putCluster(const gateway::ClusterConfig& cluster) {
  clusters_[cluster.name] = cluster;
  deletedClusters_.erase(cluster.name);
}

void DesiredState::removeCluster(const std::string& name) {
  clusters_.erase(name);
  if (inBase(base_.clusters, name)) deletedClusters_.insert(name);
}

state::v1::State DesiredState::toProto(uint64_t generation) const {
  state::v1::State state;
  state.set_format(1);
  state.set_generation(generation);
  for (const auto& [name, listener] : listeners_) listenerToProto(listener, *state.add_listeners());
  for (const std::string& name : deletedListeners_) state.add_deleted_listeners(name);
  for (const auto& [name, cluster] : clusters_) clusterToProto(cluster, *state.add_clusters());
  for (const std::string& name : deletedClusters_) state.add_deleted_clusters(name);
  for (const auto& [name, event] : events_) *state.add_scheduled_events() = event;
  for (const auto& [listener, resumeAt] : resumeAt_) {
    state::v1::PauseDeadline& deadline = *state.add_pause_deadlines();
    deadline.set_listener(listener);
    *deadline.mutable_resume_time() = TimeUtil::NanosecondsToTimestamp(
        std::chrono::duration_cast<std::chrono::nanoseconds>(resumeAt.time_since_epoch()).count());
  }
  return state;
}

grpc::Status DesiredState::loadOverlay(const state::v1::State& state) {
  if (state.format() != 1) {
    return invalidArgument("format", "expected 1, got " + std::to_string(state.format()));
  }
  DesiredState next(base_);
  for (int i = 0; i < state.listeners_size(); ++i) {
    gateway::ListenerConfig listener;
    grpc::Status status = listenerFromProto(state.listeners(i), listener, indexed("listeners", i));
    if (!status.ok()) return status;
    next.listeners_[listener.name] = listener;
  }
  for (int i = 0; i < state.deleted_listeners_size(); ++i) {
    grpc::Status status = checkName(state.deleted_listeners(i), indexed("deleted_listeners", i));
    if (!status.ok()) return status;
    next.deletedListeners_.insert(state.deleted_listeners(i));
  }
  for (int i = 0; i < state.clusters_size(); ++i) {
    gateway::ClusterConfig cluster;
    grpc::Status status = clusterFromProto(state.clusters(i), cluster, indexed("clusters", i));
    if (!status.ok()) return status;
    next.clusters_[cluster.name] = cluster;
  }
  for (int i = 0; i < state.deleted_clusters_size(); ++i) {
    grpc::Status status = checkName(state.deleted_clusters(i), indexed("deleted_clusters", i));
    if (!status.ok()) return status;
    next.deletedClusters_.insert(state.deleted_clusters(i));
  }
  for (int i = 0; i < state.scheduled_events_size(); ++i) {
    const v1::ScheduledEvent& event = state.scheduled_events(i);
    grpc::Status status = checkName(event.name(), indexed("scheduled_events", i) + ".name");
    if (!status.ok()) return status;
    next.events_[event.name()] = event;
  }
  for (int i = 0; i < state.pause_deadlines_size(); ++i) {
    const state::v1::PauseDeadline& deadline = state.pause_deadlines(i);
    grpc::Status status =
        checkName(deadline.listener(), indexed("pause_deadlines", i) + ".listener");
    if (!status.ok()) return status;
    next.resumeAt_[deadline.listener()] =
        Clock::time_point(std::chrono::duration_cast<Clock::duration>(
            std::chrono::nanoseconds(TimeUtil::TimestampToNanoseconds(deadline.resume_time()))));
  }
  *this = std::move(next);
  return grpc::Status::OK;
}

grpc::Status checkReferences(const gateway::Config& config) {
  for (const gateway::ListenerConfig& listener : config.listeners) {
    if (config.findCluster(listener.cluster) == nullptr) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "listener " + listener.name + " uses cluster " + listener.cluster +
                              ", which does not exist");
    }
  }
  // The admin and metrics addresses are the daemon's own (as the file's parser checks too).
  const std::pair<const char*, std::optional<reactor::SocketAddress>> reserved[] = {
      {"admin.address", reactor::SocketAddress::parse(config.admin.address)},
      {"metrics.address", reactor::SocketAddress::parse(config.metrics.address)}};
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const gateway::ListenerConfig& listener = config.listeners[i];
    if (listener.bind.port() == 0) continue;
    for (const auto& [what, address] : reserved) {
      if (address && address->port() != 0 && *address == listener.bind) {
        return grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            "listener " + listener.name + ": " + listener.bind.toString() + " is the " + what);
      }
    }
    for (size_t j = 0; j < i; ++j) {
      if (config.listeners[j].bind == listener.bind) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "listener " + listener.name + ": " + listener.bind.toString() +
                                " is already used by listener " + config.listeners[j].name);
      }
    }
  }
  return grpc::Status::OK;
}

}  // namespace evgate::admin
