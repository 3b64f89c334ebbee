#include "admin/desired_state.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <netinet/in.h>

#include <cassert>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "admin/resource_convert.h"
#include "gateway/log.h"

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

// A hash that agrees with SocketAddress's operator== (family, port, address; the IPv6 scope id
// only through equality).
struct AddressHash {
  size_t operator()(const reactor::SocketAddress& address) const {
    size_t hash = std::hash<int>()(address.family()) * 31 + address.port();
    if (address.family() == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(address.data());
      return hash * 31 + in->sin_addr.s_addr;
    }
    if (address.family() == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address.data());
      return hash * 31 +
             std::hash<std::string_view>()(std::string_view(
                 reinterpret_cast<const char*>(&in6->sin6_addr), sizeof in6->sin6_addr));
    }
    return hash;
  }
};

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

std::optional<gateway::ListenerConfig> DesiredState::effectiveListener(
    const std::string& name) const {
  if (const auto it = listeners_.find(name); it != listeners_.end()) return it->second;
  if (deletedListeners_.contains(name)) return std::nullopt;
  const gateway::ListenerConfig* base = base_.findListener(name);
  return base != nullptr ? std::optional(*base) : std::nullopt;
}

std::optional<gateway::ClusterConfig> DesiredState::effectiveCluster(
    const std::string& name) const {
  if (const auto it = clusters_.find(name); it != clusters_.end()) return it->second;
  if (deletedClusters_.contains(name)) return std::nullopt;
  const gateway::ClusterConfig* base = base_.findCluster(name);
  return base != nullptr ? std::optional(*base) : std::nullopt;
}

v1::Source DesiredState::listenerSource(const std::string& name) const {
  return listeners_.contains(name) ? v1::SOURCE_API : v1::SOURCE_FILE;
}

v1::Source DesiredState::clusterSource(const std::string& name) const {
  return clusters_.contains(name) ? v1::SOURCE_API : v1::SOURCE_FILE;
}

void DesiredState::beginEdits() {
  assert(!edits_ && "one recording at a time");
  edits_.emplace();
}

void DesiredState::keepEdits() { edits_.reset(); }

namespace {

// Puts back one key of `map` (and of `tombstones`, if given) as `was` says it was.
template <typename T, typename Was>
void restore(const std::string& key, const Was& was, std::map<std::string, T>& map,
             std::set<std::string>* tombstones) {
  if (was.value) {
    map.insert_or_assign(key, *was.value);
  } else {
    map.erase(key);
  }
  if (tombstones == nullptr) return;
  if (was.deleted) {
    tombstones->insert(key);
  } else {
    tombstones->erase(key);
  }
}

}  // namespace

void DesiredState::undoEdits() {
  if (!edits_) return;
  Edits edits = std::move(*edits_);
  edits_.reset();
  if (edits.base) base_ = std::move(*edits.base);
  for (const auto& [name, was] : edits.listeners) {
    restore(name, was, listeners_, &deletedListeners_);
    listenerJson_.erase(name);
  }
  for (const auto& [name, was] : edits.clusters) {
    restore(name, was, clusters_, &deletedClusters_);
    clusterJson_.erase(name);
  }
  for (const auto& [name, was] : edits.events) {
    restore(name, was, events_, nullptr);
    eventJson_.erase(name);
  }
  for (const auto& [name, was] : edits.resumeAt) restore(name, was, resumeAt_, nullptr);
}

std::vector<std::string> DesiredState::touchedListeners() const {
  std::vector<std::string> names;
  if (edits_) {
    for (const auto& [name, was] : edits_->listeners) names.push_back(name);
  }
  return names;
}

std::vector<std::string> DesiredState::touchedClusters() const {
  std::vector<std::string> names;
  if (edits_) {
    for (const auto& [name, was] : edits_->clusters) names.push_back(name);
  }
  return names;
}

namespace {

// Records, the first time only, what `key` of `map` (and of `tombstones`) holds now.
template <typename Record, typename T>
void remember(Record& record, const std::string& key, const std::map<std::string, T>& map,
              const std::set<std::string>* tombstones) {
  if (record.contains(key)) return;
  auto& was = record[key];
  if (const auto it = map.find(key); it != map.end()) was.value = it->second;
  was.deleted = tombstones != nullptr && tombstones->contains(key);
}

}  // namespace

void DesiredState::rememberListener(const std::string& name) {
  if (edits_) remember(edits_->listeners, name, listeners_, &deletedListeners_);
}

void DesiredState::rememberCluster(const std::string& name) {
  if (edits_) remember(edits_->clusters, name, clusters_, &deletedClusters_);
}

void DesiredState::rememberEvent(const std::string& name) {
  if (edits_) remember(edits_->events, name, events_, nullptr);
}

void DesiredState::rememberResumeAt(const std::string& name) {
  if (edits_) remember(edits_->resumeAt, name, resumeAt_, nullptr);
}

void DesiredState::setBase(gateway::Config base) {
  if (edits_ && !edits_->base) edits_->base = std::move(base_);
  base_ = std::move(base);
}

void DesiredState::putListener(const gateway::ListenerConfig& listener) {
  rememberListener(listener.name);
  listenerJson_.erase(listener.name);
  listeners_[listener.name] = listener;
  deletedListeners_.erase(listener.name);
}

void DesiredState::removeListener(const std::string& name) {
  rememberListener(name);
  listenerJson_.erase(name);
  rememberResumeAt(name);
  listeners_.erase(name);
  resumeAt_.erase(name);
  // A tombstone only matters for a listener the file defines.
  if (base_.findListener(name) != nullptr) deletedListeners_.insert(name);
}

void DesiredState::putCluster(const gateway::ClusterConfig& cluster) {
  rememberCluster(cluster.name);
  clusterJson_.erase(cluster.name);
  clusters_[cluster.name] = cluster;
  deletedClusters_.erase(cluster.name);
}

void DesiredState::removeCluster(const std::string& name) {
  rememberCluster(name);
  clusterJson_.erase(name);
  clusters_.erase(name);
  if (base_.findCluster(name) != nullptr) deletedClusters_.insert(name);
}

void DesiredState::putEvent(const v1::ScheduledEvent& event) {
  rememberEvent(event.name());
  eventJson_.erase(event.name());
  events_[event.name()] = event;
}

void DesiredState::removeEvent(const std::string& name) {
  rememberEvent(name);
  eventJson_.erase(name);
  events_.erase(name);
}

void DesiredState::setPauseDeadline(const std::string& listener, Clock::time_point resumeAt) {
  rememberResumeAt(listener);
  resumeAt_[listener] = resumeAt;
}

void DesiredState::clearPauseDeadline(const std::string& listener) {
  rememberResumeAt(listener);
  resumeAt_.erase(listener);
}

namespace {

// `message` as compact JSON with the proto field names (what JsonStringToMessage reads back).
std::string compactJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  std::string json;
  // Our own messages always print.
  (void)google::protobuf::util::MessageToJsonString(message, &json, print);
  return json;
}

std::string quoted(std::string_view text) { return gateway::jsonQuote(text); }

// Appends `"key": [` then each item on a line of its own, then `]`; nothing for no items.
void appendArray(std::string& out, std::string_view key,
                 const std::vector<std::string_view>& items) {
  if (items.empty()) return;
  out += ",\n  ";
  out += quoted(key);
  out += ": [";
  for (size_t i = 0; i < items.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    out += items[i];
  }
  out += "\n  ]";
}

// The JSON of each entry of `map`, from `cache` or made by `print` (and then kept).
template <typename T, typename Print>
std::vector<std::string_view> entriesJson(const std::map<std::string, T>& map,
                                          std::map<std::string, std::string>& cache, Print print) {
  std::vector<std::string_view> items;
  items.reserve(map.size());
  for (const auto& [name, value] : map) {
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, print(value)).first;
    items.emplace_back(it->second);
  }
  return items;
}

}  // namespace

std::string DesiredState::toJson(uint64_t generation) const {
  std::string out = "{\n  \"format\": 1,\n  \"generation\": \"" + std::to_string(generation) + "\"";
  appendArray(out, "listeners",
              entriesJson(listeners_, listenerJson_, [](const gateway::ListenerConfig& listener) {
                v1::Listener proto;
                listenerToProto(listener, proto);
                return compactJson(proto);
              }));
  std::vector<std::string> names;
  const auto nameList = [&](const std::set<std::string>& set) {
    names.clear();
    for (const std::string& name : set) names.push_back(quoted(name));
    return std::vector<std::string_view>(names.begin(), names.end());
  };
  appendArray(out, "deleted_listeners", nameList(deletedListeners_));
  appendArray(out, "clusters",
              entriesJson(clusters_, clusterJson_, [](const gateway::ClusterConfig& cluster) {
                v1::Cluster proto;
                clusterToProto(cluster, proto);
                return compactJson(proto);
              }));
  appendArray(out, "deleted_clusters", nameList(deletedClusters_));
  appendArray(out, "scheduled_events",
              entriesJson(events_, eventJson_,
                          [](const v1::ScheduledEvent& event) { return compactJson(event); }));
  names.clear();
  for (const auto& [listener, resumeAt] : resumeAt_) {
    state::v1::PauseDeadline deadline;
    deadline.set_listener(listener);
    *deadline.mutable_resume_time() = TimeUtil::NanosecondsToTimestamp(
        std::chrono::duration_cast<std::chrono::nanoseconds>(resumeAt.time_since_epoch()).count());
    names.push_back(compactJson(deadline));
  }
  appendArray(out, "pause_deadlines", std::vector<std::string_view>(names.begin(), names.end()));
  out += "\n}\n";
  return out;
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
  // Sets, not nested loops: the whole configuration is checked on every change, and may hold
  // thousands of listeners.
  std::unordered_set<std::string_view> clusters;
  for (const gateway::ClusterConfig& cluster : config.clusters) clusters.insert(cluster.name);
  for (const gateway::ListenerConfig& listener : config.listeners) {
    if (!clusters.contains(listener.cluster)) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "listener " + listener.name + " uses cluster " + listener.cluster +
                              ", which does not exist");
    }
  }
  // The admin and metrics addresses are the daemon's own (as the file's parser checks too).
  const std::pair<const char*, std::optional<reactor::SocketAddress>> reserved[] = {
      {"admin.address", reactor::SocketAddress::parse(config.admin.address)},
      {"metrics.address", reactor::SocketAddress::parse(config.metrics.address)}};
  std::unordered_map<reactor::SocketAddress, const gateway::ListenerConfig*, AddressHash> binds;
  for (const gateway::ListenerConfig& listener : config.listeners) {
    if (listener.bind.port() == 0) continue;
    for (const auto& [what, address] : reserved) {
      if (address && address->port() != 0 && *address == listener.bind) {
        return grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            "listener " + listener.name + ": " + listener.bind.toString() + " is the " + what);
      }
    }
    const auto [first, added] = binds.emplace(listener.bind, &listener);
    if (!added) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "listener " + listener.name + ": " + listener.bind.toString() +
                              " is already used by listener " + first->second->name);
    }
  }
  return grpc::Status::OK;
}

}  // namespace evgate::admin
