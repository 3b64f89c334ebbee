#include "admin/control_plane.h"

#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <string_view>
#include <utility>

#include "admin/resource_convert.h"
#include "admin/state_file.h"
#include "admin/update_mask.h"
#include "gateway/config/limits.h"
#include "gateway/log.h"
#include "reactor/fatal.h"

namespace evgate::admin {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

grpc::Status notFound(std::string_view kind, std::string_view name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      std::string(kind) + " \"" + std::string(name) + "\" not found");
}

grpc::Status alreadyExists(std::string_view kind, std::string_view name) {
  return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                      std::string(kind) + " \"" + std::string(name) + "\" already exists");
}

google::protobuf::Timestamp toTimestamp(std::chrono::system_clock::time_point time) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count());
}

v1::WatchEvent notice(v1::WatchEventType type) {
  v1::WatchEvent event;
  event.set_type(type);
  return event;
}

// The page size a request asked for, capped; INVALID_ARGUMENT for a negative one.
grpc::Status pageSize(int requested, int& out) {
  if (requested < 0) return invalidArgument("page_size", "must not be negative");
  out = requested == 0 ? kDefaultPageSize : std::min(requested, kMaxPageSize);
  return grpc::Status::OK;
}

// Resources by name from `page_token` (the last name of the previous page) on.
template <typename T, typename Describe, typename Add>
void paginate(std::vector<const T*> resources, const std::string& token, int size,
              std::string& nextToken, Describe describe, Add add) {
  std::sort(resources.begin(), resources.end(),
            [](const T* a, const T* b) { return a->name < b->name; });
  int taken = 0;
  for (const T* resource : resources) {
    if (!token.empty() && resource->name <= token) continue;
    // A page is full and more follow: the token is the last name on the page.
    if (taken == size) return;
    describe(*resource, add());
    nextToken = resource->name;
    ++taken;
  }
  nextToken.clear();
}

}  // namespace

ControlPlane::ControlPlane(reactor::EventBase& loop, gateway::Gateway& gateway, DesiredState state,
                           WatchHub& hub, Options options)
    : loop_(loop),
      gateway_(gateway),
      state_(std::move(state)),
      hub_(hub),
      options_(std::move(options)),
      startTime_(std::chrono::system_clock::now()),
      lastChange_(startTime_) {}

ControlPlane::~ControlPlane() = default;

grpc::Status ControlPlane::call(const std::function<grpc::Status()>& fn) {
  if (loop_.isInLoopThread()) return fn();
  auto done = std::make_shared<std::promise<grpc::Status>>();
  std::future<grpc::Status> result = done->get_future();
  {
    std::lock_guard<std::mutex> lock(closeMutex_);
    if (closed_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down");
    }
    // The caller waits for the result, so `fn` outlives the task.
    loop_.runInLoop([&fn, done] { done->set_value(fn()); });
  }
  return result.get();
}

void ControlPlane::close() {
  std::lock_guard<std::mutex> lock(closeMutex_);
  closed_ = true;
}

void ControlPlane::publish(v1::WatchEvent event) { hub_.publish(std::move(event)); }

std::optional<std::string> ControlPlane::persist(const DesiredState& state) const {
  if (options_.stateFile.empty()) return std::nullopt;
  return writeFileDurably(options_.stateFile, state.toJson(generation_ + 1));
}

ControlPlane::Change::Change(DesiredState& state, std::vector<v1::WatchEvent> changeNotices,
                             bool changesOverlay, const char* changeCause)
    : edited(state),
      notices(std::move(changeNotices)),
      overlayChanged(changesOverlay),
      cause(changeCause) {
  edited.beginEdits();
}

ControlPlane::Change::~Change() { edited.undoEdits(); }

grpc::Status ControlPlane::checkBinds(const std::vector<gateway::ListenerConfig>& listeners) const {
  for (const gateway::ListenerConfig& listener : listeners) {
    const gateway::ListenerConfig* running = gateway_.findListener(listener.name);
    if (running != nullptr && running->bind == listener.bind) continue;
    bool sharedWithRunning = false;
    for (const gateway::ListenerConfig& other : gateway_.config().listeners) {
      sharedWithRunning =
          sharedWithRunning || (listener.bind.port() != 0 && other.bind == listener.bind);
    }
    // An address a running listener holds is checked by checkReferences (one listener per
    // address); its socket would bind (SO_REUSEPORT) and prove nothing.
    if (sharedWithRunning) continue;
    const int fd = gateway::openListeningSocket(listener.bind);
    if (fd < 0) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "listener " + listener.name + ": cannot listen on " +
                              listener.bind.toString() + ": " + reactor::errnoText(errno));
    }
    ::close(fd);
  }
  return grpc::Status::OK;
}

gateway::Gateway::Delta ControlPlane::deltaOf(const Change& change) const {
  gateway::Gateway::Delta delta;
  for (const std::string& name : change.edited.touchedClusters()) {
    if (auto cluster = change.edited.effectiveCluster(name)) {
      delta.putClusters.push_back(std::move(*cluster));
    } else if (gateway_.findCluster(name) != nullptr) {
      delta.removeClusters.push_back(name);
    }
  }
  for (const std::string& name : change.edited.touchedListeners()) {
    if (auto listener = change.edited.effectiveListener(name)) {
      delta.putListeners.push_back(std::move(*listener));
    } else if (gateway_.findListener(name) != nullptr) {
      delta.removeListeners.push_back(name);
    }
  }
  return delta;
}

grpc::Status ControlPlane::commit(Change& change, bool validateOnly) {
  if (draining_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the gateway is draining; it accepts no more changes");
  }
  // The state file is written once everything that can fail has succeeded, before the workers
  // commit: a write that fails leaves the gateway as it was.
  std::optional<std::string> persistError;
  gateway::Gateway::PreCommit writeState;
  if (change.overlayChanged && !options_.stateFile.empty()) {
    writeState = [this, &persistError]() -> std::optional<std::string> {
      persistError = persist(state_);
      return persistError;
    };
  }
  std::optional<std::string> error;
  if (change.edited.baseReplaced()) {
    // A reload: the whole configuration, checked and diffed as a whole.
    const gateway::Config next = state_.effective();
    if (grpc::Status status = checkReferences(next); !status.ok()) return status;
    if (validateOnly) return checkBinds(next.listeners);
    error = gateway_.reload(next, change.cause, writeState);
  } else {
    const gateway::Gateway::Delta delta = deltaOf(change);
    if (const auto refused = gateway_.check(delta)) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, *refused);
    }
    if (validateOnly) return checkBinds(delta.putListeners);
    const bool touchesGateway = !delta.putListeners.empty() || !delta.removeListeners.empty() ||
                                !delta.putClusters.empty() || !delta.removeClusters.empty();
    if (touchesGateway) {
      error = gateway_.apply(delta, change.cause, writeState);
    } else if (writeState) {
      error = writeState();  // scheduled events and pause deadlines only
    }
  }
  if (persistError) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "cannot write the state file, nothing changed: " + *persistError);
  }
  if (error) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, *error);
  change.edited.keepEdits();
  ++generation_;
  lastChange_ = wallNow();
  if (metrics_ != nullptr)
    metrics_->configApplied(generation_, lastChange_, state_.events().size());
  for (v1::WatchEvent& event : change.notices) publish(std::move(event));
  return grpc::Status::OK;
}

void ControlPlane::setMetrics(AdminMetrics* metrics) {
  metrics_ = metrics;
  if (metrics_ != nullptr)
    metrics_->configApplied(generation_, lastChange_, state_.events().size());
}

grpc::Status ControlPlane::reload(gateway::Config base) {
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_CONFIG_RELOADED)}, false, ""};
  change.edited.setBase(std::move(base));
  change.notices[0].set_detail(options_.configFile);
  return commit(change, false);
}

const gateway::ListenerConfig* ControlPlane::findListener(const std::string& name) const {
  return gateway_.findListener(name);
}

const gateway::ClusterConfig* ControlPlane::findCluster(const std::string& name) const {
  return gateway_.findCluster(name);
}

std::shared_ptr<gateway::ListenerState> ControlPlane::runningListener(
    const std::string& name) const {
  return gateway_.listener(name);
}

std::shared_ptr<gateway::ClusterState> ControlPlane::runningCluster(const std::string& name) const {
  return gateway_.cluster(name);
}

void ControlPlane::describeListener(const gateway::ListenerConfig& config, v1::Listener& out,
                                    bool dryRun) const {
  listenerToProto(config, out);
  // A dry run answers as if applied: the change would put the listener in the API's overlay.
  out.set_source(dryRun ? v1::SOURCE_API : state_.listenerSource(config.name));
  if (const auto running = runningListener(config.name)) {
    out.set_bound_address(running->bound.toString());
    out.set_active_connections(running->connections.load(std::memory_order_relaxed));
  }
  const auto deadline = state_.pauseDeadlines().find(config.name);
  if (config.paused && deadline != state_.pauseDeadlines().end()) {
    *out.mutable_resume_time() = toTimestamp(deadline->second);
  }
}

void ControlPlane::describeCluster(const gateway::ClusterConfig& config, v1::Cluster& out,
                                   bool dryRun) const {
  clusterToProto(config, out);
  out.set_source(dryRun ? v1::SOURCE_API : state_.clusterSource(config.name));
  for (const gateway::ListenerConfig& listener : gateway_.config().listeners) {
    if (listener.cluster == config.name) out.add_listeners(listener.name);
  }
  const auto running = runningCluster(config.name);
  if (running == nullptr) return;
  for (int i = 0; i < out.endpoints_size(); ++i) {
    v1::Endpoint& endpoint = *out.mutable_endpoints(i);
    const auto index = running->indexOf(config.endpoints[static_cast<size_t>(i)].address);
    if (!index) continue;
    endpoint.set_healthy(running->healthy(*index));
    endpoint.set_ejected(running->ejected(*index));
    endpoint.set_active_connections(running->activeConnections(*index));
  }
}

grpc::Status ControlPlane::getStatus(v1::Status& out) const {
  const auto now = wallNow();
  out.set_version(options_.version);
  *out.mutable_start_time() = toTimestamp(startTime_);
  durationToProto(now - startTime_, *out.mutable_uptime());
  out.set_workers(static_cast<uint32_t>(gateway_.workerCount()));
  out.set_listeners(static_cast<uint32_t>(gateway_.config().listeners.size()));
  out.set_clusters(static_cast<uint32_t>(gateway_.config().clusters.size()));
  out.set_scheduled_events(static_cast<uint32_t>(state_.events().size()));
  out.set_active_flows(gateway_.flowCount());
  out.set_config_generation(generation_);
  *out.mutable_last_change_time() = toTimestamp(lastChange_);
  out.set_draining(draining_);
  out.set_watchers(static_cast<uint32_t>(hub_.watcherCount()));
  out.set_config_file(options_.configFile);
  out.set_state_file(options_.stateFile);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::drain(const v1::DrainRequest& request, v1::DrainResponse& out) {
  std::optional<gateway::Duration> timeout;
  if (request.has_timeout()) {
    gateway::Duration value{};
    if (grpc::Status status = durationFromProto(request.timeout(), "timeout", value);
        !status.ok()) {
      return status;
    }
    timeout = value;
  }
  if (draining_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "a drain is already in progress");
  }
  if (!drainStarter_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this gateway cannot drain");
  }
  if (request.validate_only()) return grpc::Status::OK;
  out.set_active_flows(drainStarter_(timeout));
  return grpc::Status::OK;
}

// Listeners.

grpc::Status ControlPlane::createListener(const v1::CreateListenerRequest& request,
                                          v1::Listener& out) {
  gateway::ListenerConfig listener;
  // A new listener accepts unless created paused; output-only fields are ignored.
  v1::Listener input = request.listener();
  input.set_paused(false);
  if (grpc::Status status = listenerFromProto(input, listener); !status.ok()) return status;
  if (findListener(listener.name) != nullptr) return alreadyExists("listener", listener.name);
  if (findCluster(listener.cluster) == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "listener.cluster: cluster \"" + listener.cluster + "\" not found");
  }
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_LISTENER_CREATED)}};
  change.edited.putListener(listener);
  change.notices[0].set_listener(listener.name);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  describeListener(listener, out, request.validate_only());
  return grpc::Status::OK;
}

grpc::Status ControlPlane::getListener(const std::string& name, v1::Listener& out) const {
  const gateway::ListenerConfig* listener = findListener(name);
  if (listener == nullptr) return notFound("listener", name);
  describeListener(*listener, out);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::listListeners(const v1::ListListenersRequest& request,
                                         v1::ListListenersResponse& out) const {
  int size = 0;
  if (grpc::Status status = pageSize(request.page_size(), size); !status.ok()) return status;
  std::vector<const gateway::ListenerConfig*> listeners;
  for (const gateway::ListenerConfig& listener : gateway_.config().listeners) {
    listeners.push_back(&listener);
  }
  paginate(
      std::move(listeners), request.page_token(), size, *out.mutable_next_page_token(),
      [this](const gateway::ListenerConfig& l, v1::Listener* p) { describeListener(l, *p); },
      [&out] { return out.add_listeners(); });
  return grpc::Status::OK;
}

grpc::Status ControlPlane::updateListener(const v1::UpdateListenerRequest& request,
                                          v1::Listener& out) {
  const std::string& name = request.listener().name();
  if (grpc::Status status = checkName(name, "listener.name"); !status.ok()) return status;
  if (grpc::Status status = checkListenerMask(request.update_mask()); !status.ok()) {
    return status;
  }
  const gateway::ListenerConfig* current = findListener(name);
  if (current == nullptr) return notFound("listener", name);
  v1::Listener merged;
  listenerToProto(*current, merged);
  applyListenerUpdate(request.listener(), request.update_mask(), merged);
  gateway::ListenerConfig listener;
  if (grpc::Status status = listenerFromProto(merged, listener); !status.ok()) return status;
  if (findCluster(listener.cluster) == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "listener.cluster: cluster \"" + listener.cluster + "\" not found");
  }
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_LISTENER_UPDATED)}};
  change.edited.putListener(listener);
  change.notices[0].set_listener(name);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  describeListener(listener, out, request.validate_only());
  return grpc::Status::OK;
}

grpc::Status ControlPlane::deleteListener(const v1::DeleteListenerRequest& request,
                                          v1::DeleteListenerResponse& out) {
  const std::string& name = request.name();
  if (grpc::Status status = checkName(name, "name"); !status.ok()) return status;
  if (findListener(name) == nullptr) return notFound("listener", name);
  gateway::Duration drainTimeout = gateway_.config().drainTimeout;
  if (request.has_drain_timeout()) {
    if (grpc::Status status =
            durationFromProto(request.drain_timeout(), "drain_timeout", drainTimeout);
        !status.ok()) {
      return status;
    }
  }
  const auto running = runningListener(name);
  gateway::FlowFilter filter;
  if (running != nullptr) filter.listenerId = running->id;
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_LISTENER_DELETED)}};
  change.edited.removeListener(name);
  change.notices[0].set_listener(name);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  if (request.validate_only() || running == nullptr) return grpc::Status::OK;
  disarm("pause " + name);
  out.set_draining_flows(gateway_.countFlows(filter));
  // `done` may destroy the drain (FlowDrain's contract), even inside start().
  const uint64_t id = ++lastDrainId_;
  auto drain = std::make_unique<gateway::FlowDrain>(
      loop_, gateway_, filter, drainTimeout, [this, id](size_t) {
        std::erase_if(drains_, [id](const ListenerDrain& d) { return d.id == id; });
      });
  gateway::FlowDrain& started = *drain;
  drains_.push_back(ListenerDrain{id, std::move(drain)});
  started.start();
  return grpc::Status::OK;
}

grpc::Status ControlPlane::setPaused(const std::string& name, bool paused,
                                     std::optional<gateway::Duration> duration, bool validateOnly,
                                     v1::Listener& out) {
  if (grpc::Status status = checkName(name, "name"); !status.ok()) return status;
  const gateway::ListenerConfig* current = findListener(name);
  if (current == nullptr) return notFound("listener", name);
  gateway::ListenerConfig listener = *current;
  listener.paused = paused;
  Change change{state_,
                {notice(paused ? v1::WATCH_EVENT_TYPE_LISTENER_PAUSED
                               : v1::WATCH_EVENT_TYPE_LISTENER_RESUMED)}};
  change.edited.putListener(listener);
  change.edited.clearPauseDeadline(name);
  if (duration) {
    const auto resumeAt =
        wallNow() + std::chrono::duration_cast<std::chrono::system_clock::duration>(*duration);
    change.edited.setPauseDeadline(name, resumeAt);
    change.notices[0].set_detail("until " + TimeUtil::ToString(toTimestamp(resumeAt)));
  }
  change.notices[0].set_listener(name);
  if (grpc::Status status = commit(change, validateOnly); !status.ok()) return status;
  if (!validateOnly) {
    disarm("pause " + name);
    if (duration) armPause(name);
  }
  describeListener(listener, out, validateOnly);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::pauseListener(const v1::PauseListenerRequest& request,
                                         v1::Listener& out) {
  std::optional<gateway::Duration> duration;
  if (request.has_duration()) {
    gateway::Duration value{};
    if (grpc::Status status = durationFromProto(request.duration(), "duration", value);
        !status.ok()) {
      return status;
    }
    duration = value;
  }
  return setPaused(request.name(), true, duration, request.validate_only(), out);
}

grpc::Status ControlPlane::resumeListener(const v1::ResumeListenerRequest& request,
                                          v1::Listener& out) {
  return setPaused(request.name(), false, std::nullopt, request.validate_only(), out);
}

// Clusters.

grpc::Status ControlPlane::createCluster(const v1::CreateClusterRequest& request,
                                         v1::Cluster& out) {
  gateway::ClusterConfig cluster;
  if (grpc::Status status = clusterFromProto(request.cluster(), cluster); !status.ok()) {
    return status;
  }
  if (findCluster(cluster.name) != nullptr) return alreadyExists("cluster", cluster.name);
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_CLUSTER_CREATED)}};
  change.edited.putCluster(cluster);
  change.notices[0].set_cluster(cluster.name);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  describeCluster(cluster, out, request.validate_only());
  return grpc::Status::OK;
}

grpc::Status ControlPlane::getCluster(const std::string& name, v1::Cluster& out) const {
  const gateway::ClusterConfig* cluster = findCluster(name);
  if (cluster == nullptr) return notFound("cluster", name);
  describeCluster(*cluster, out);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::listClusters(const v1::ListClustersRequest& request,
                                        v1::ListClustersResponse& out) const {
  int size = 0;
  if (grpc::Status status = pageSize(request.page_size(), size); !status.ok()) return status;
  std::vector<const gateway::ClusterConfig*> clusters;
  for (const gateway::ClusterConfig& cluster : gateway_.config().clusters) {
    clusters.push_back(&cluster);
  }
  paginate(
      std::move(clusters), request.page_token(), size, *out.mutable_next_page_token(),
      [this](const gateway::ClusterConfig& c, v1::Cluster* p) { describeCluster(c, *p); },
      [&out] { return out.add_clusters(); });
  return grpc::Status::OK;
}

grpc::Status ControlPlane::changeCluster(
    const std::string& name, bool validateOnly,
    const std::function<grpc::Status(gateway::ClusterConfig&)>& edit, v1::WatchEvent notice,
    v1::Cluster& out) {
  const gateway::ClusterConfig* current = findCluster(name);
  if (current == nullptr) return notFound("cluster", name);
  gateway::ClusterConfig cluster = *current;
  if (grpc::Status status = edit(cluster); !status.ok()) return status;
  Change change{state_, {std::move(notice)}};
  change.edited.putCluster(cluster);
  change.notices[0].set_cluster(name);
  if (grpc::Status status = commit(change, validateOnly); !status.ok()) return status;
  describeCluster(cluster, out, validateOnly);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::updateCluster(const v1::UpdateClusterRequest& request,
                                         v1::Cluster& out) {
  const std::string& name = request.cluster().name();
  if (grpc::Status status = checkName(name, "cluster.name"); !status.ok()) return status;
  if (grpc::Status status = checkClusterMask(request.update_mask()); !status.ok()) {
    return status;
  }
  return changeCluster(
      name, request.validate_only(),
      [&request](gateway::ClusterConfig& cluster) {
        v1::Cluster merged;
        clusterToProto(cluster, merged);
        applyClusterUpdate(request.cluster(), request.update_mask(), merged);
        return clusterFromProto(merged, cluster);
      },
      notice(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED), out);
}

grpc::Status ControlPlane::deleteCluster(const v1::DeleteClusterRequest& request) {
  const std::string& name = request.name();
  if (grpc::Status status = checkName(name, "name"); !status.ok()) return status;
  if (findCluster(name) == nullptr) return notFound("cluster", name);
  for (const gateway::ListenerConfig& listener : gateway_.config().listeners) {
    if (listener.cluster == name) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "cluster \"" + name + "\" is used by listener \"" + listener.name + "\"");
    }
  }
  Change change{state_, {notice(v1::WATCH_EVENT_TYPE_CLUSTER_DELETED)}};
  change.edited.removeCluster(name);
  change.notices[0].set_cluster(name);
  return commit(change, request.validate_only());
}

grpc::Status ControlPlane::addEndpoint(const v1::AddEndpointRequest& request, v1::Cluster& out) {
  if (grpc::Status status = checkName(request.cluster(), "cluster"); !status.ok()) return status;
  gateway::EndpointConfig endpoint;
  if (grpc::Status status = endpointFromProto(request.endpoint(), endpoint, "endpoint");
      !status.ok()) {
    return status;
  }
  v1::WatchEvent event = notice(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED);
  event.set_endpoint(endpoint.address.toString());
  event.set_detail("endpoint added");
  return changeCluster(
      request.cluster(), request.validate_only(),
      [&endpoint](gateway::ClusterConfig& cluster) {
        for (const gateway::EndpointConfig& other : cluster.endpoints) {
          if (other.address == endpoint.address) {
            return alreadyExists("endpoint", endpoint.address.toString());
          }
        }
        cluster.endpoints.push_back(endpoint);
        return grpc::Status::OK;
      },
      std::move(event), out);
}

grpc::Status ControlPlane::removeEndpoint(const v1::RemoveEndpointRequest& request,
                                          v1::Cluster& out) {
  if (grpc::Status status = checkName(request.cluster(), "cluster"); !status.ok()) return status;
  reactor::SocketAddress address;
  if (grpc::Status status = parseEndpointAddress(request.address(), "address", address);
      !status.ok()) {
    return status;
  }
  v1::WatchEvent event = notice(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED);
  event.set_endpoint(address.toString());
  event.set_detail("endpoint removed");
  return changeCluster(
      request.cluster(), request.validate_only(),
      [&address](gateway::ClusterConfig& cluster) {
        const auto it = std::find_if(
            cluster.endpoints.begin(), cluster.endpoints.end(),
            [&address](const gateway::EndpointConfig& e) { return e.address == address; });
        if (it == cluster.endpoints.end()) return notFound("endpoint", address.toString());
        if (cluster.endpoints.size() == 1) {
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "cannot remove the last endpoint of cluster \"" + cluster.name +
                                  "\" (delete the cluster instead)");
        }
        cluster.endpoints.erase(it);
        return grpc::Status::OK;
      },
      std::move(event), out);
}

grpc::Status ControlPlane::setEndpointState(const v1::SetEndpointStateRequest& request,
                                            v1::Cluster& out) {
  if (grpc::Status status = checkName(request.cluster(), "cluster"); !status.ok()) return status;
  reactor::SocketAddress address;
  gateway::EndpointAdminState state{};
  grpc::Status status = parseEndpointAddress(request.address(), "address", address);
  if (status.ok()) status = endpointStateFromProto(request.state(), state, "state");
  if (!status.ok()) return status;
  v1::WatchEvent event = notice(v1::WATCH_EVENT_TYPE_ENDPOINT_STATE_CHANGED);
  event.set_endpoint(address.toString());
  event.set_detail(gateway::toString(state));
  return changeCluster(
      request.cluster(), request.validate_only(),
      [&address, state](gateway::ClusterConfig& cluster) {
        for (gateway::EndpointConfig& endpoint : cluster.endpoints) {
          if (endpoint.address == address) {
            endpoint.state = state;
            return grpc::Status::OK;
          }
        }
        return notFound("endpoint", address.toString());
      },
      std::move(event), out);
}

grpc::Status ControlPlane::setEndpointWeight(const v1::SetEndpointWeightAction& request,
                                             bool validateOnly, v1::Cluster& out) {
  if (grpc::Status status = checkName(request.cluster(), "cluster"); !status.ok()) return status;
  reactor::SocketAddress address;
  if (grpc::Status status = parseEndpointAddress(request.address(), "address", address);
      !status.ok()) {
    return status;
  }
  if (request.weight() < 1 || request.weight() > gateway::limits::kMaxWeight) {
    return invalidArgument("weight",
                           "expected an integer 1.." + std::to_string(gateway::limits::kMaxWeight));
  }
  v1::WatchEvent event = notice(v1::WATCH_EVENT_TYPE_CLUSTER_UPDATED);
  event.set_endpoint(address.toString());
  event.set_detail("weight " + std::to_string(request.weight()));
  return changeCluster(
      request.cluster(), validateOnly,
      [&address, &request](gateway::ClusterConfig& cluster) {
        for (gateway::EndpointConfig& endpoint : cluster.endpoints) {
          if (endpoint.address == address) {
            endpoint.weight = request.weight();
            return grpc::Status::OK;
          }
        }
        return notFound("endpoint", address.toString());
      },
      std::move(event), out);
}

// Flows.

grpc::Status ControlPlane::listFlows(const v1::ListFlowsRequest& request,
                                     v1::ListFlowsResponse& out) const {
  int size = 0;
  if (grpc::Status status = pageSize(request.page_size(), size); !status.ok()) return status;
  gateway::FlowFilter filter;
  if (grpc::Status status = flowFilterFromProto(request.filter(), filter); !status.ok()) {
    return status;
  }
  uint64_t after = 0;
  if (!request.page_token().empty()) {
    const std::string& token = request.page_token();
    const bool digits = token.size() <= 20 && std::all_of(token.begin(), token.end(), [](char c) {
                          return c >= '0' && c <= '9';
                        });
    if (!digits) return invalidArgument("page_token", "not a token from ListFlows");
    after = std::stoull(token);
  }
  // One more than a page tells whether there is a next page.
  std::vector<gateway::FlowInfo> flows =
      gateway_.listFlows(filter, after, static_cast<size_t>(size) + 1);
  const bool more = flows.size() > static_cast<size_t>(size);
  if (more) flows.resize(static_cast<size_t>(size));
  for (const gateway::FlowInfo& info : flows) {
    v1::Flow& flow = *out.add_flows();
    flow.set_id(info.id);
    flow.set_worker(info.worker);
    flow.set_listener(info.listener);
    flow.set_cluster(info.cluster);
    flow.set_client(info.client.toString());
    if (info.upstream) flow.set_upstream(info.upstream->toString());
    switch (info.state) {
      case gateway::Flow::State::kConnecting:
        flow.set_state(v1::FLOW_STATE_CONNECTING);
        break;
      case gateway::Flow::State::kEstablished:
        flow.set_state(v1::FLOW_STATE_ESTABLISHED);
        break;
      case gateway::Flow::State::kHalfClosed:
        flow.set_state(v1::FLOW_STATE_HALF_CLOSED);
        break;
      case gateway::Flow::State::kClosed:
        break;
    }
    *flow.mutable_start_time() = toTimestamp(info.startTime);
    durationToProto(info.age, *flow.mutable_age());
    durationToProto(info.idle, *flow.mutable_idle());
    flow.set_bytes_from_client(info.bytesFromClient);
    flow.set_bytes_from_upstream(info.bytesFromUpstream);
    flow.set_buffered_bytes(info.bufferedBytes);
  }
  if (more) out.set_next_page_token(std::to_string(flows.back().id));
  return grpc::Status::OK;
}

grpc::Status ControlPlane::closeFlow(const v1::CloseFlowRequest& request) {
  if (request.validate_only()) {
    gateway::FlowFilter all;
    const auto flows = gateway_.listFlows(all, request.id() == 0 ? 0 : request.id() - 1, 1);
    if (flows.empty() || flows[0].id != request.id()) {
      return notFound("flow", std::to_string(request.id()));
    }
    return grpc::Status::OK;
  }
  if (!gateway_.closeFlow(request.id(), gateway::CloseReason::kAdmin)) {
    return notFound("flow", std::to_string(request.id()));
  }
  return grpc::Status::OK;
}

grpc::Status ControlPlane::closeFlowsStep(const gateway::FlowFilter& filter, size_t budget,
                                          uint64_t& closed, uint64_t& remaining) {
  closed = budget == 0 ? 0 : gateway_.closeFlows(filter, budget, gateway::CloseReason::kAdmin);
  remaining = gateway_.countFlows(filter);
  return grpc::Status::OK;
}

}  // namespace evgate::admin
