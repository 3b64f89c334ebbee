// ControlPlane: scheduled events, timed pauses and the reactor event table (ListEvents).

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <limits>

#include "admin/audit.h"
#include "admin/control_plane.h"
#include "admin/resource_convert.h"
#include "gateway/config/limits.h"
#include "gateway/log.h"

namespace evgate::admin {
namespace {

using google::protobuf::util::TimeUtil;
using SystemClock = std::chrono::system_clock;

constexpr auto kMinInterval = std::chrono::milliseconds(10);

SystemClock::time_point fromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return SystemClock::time_point(std::chrono::duration_cast<SystemClock::duration>(
      std::chrono::nanoseconds(TimeUtil::TimestampToNanoseconds(timestamp))));
}

google::protobuf::Timestamp toTimestamp(SystemClock::time_point time) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count());
}

std::string describe(const grpc::Status& status) {
  if (status.ok()) return "ok";
  return std::string(statusCodeName(status.error_code())) + ": " + status.error_message();
}

std::string flagsText(reactor::EventMask mask) {
  std::string out;
  const auto add = [&out, mask](reactor::EventMask bit, const char* name) {
    if ((mask & bit) == 0) return;
    if (!out.empty()) out += '|';
    out += name;
  };
  add(reactor::kRead, "read");
  add(reactor::kWrite, "write");
  add(reactor::kSignal, "signal");
  add(reactor::kTimeout, "timeout");
  add(reactor::kPersist, "persist");
  add(reactor::kEdgeTriggered, "et");
  add(reactor::kClosed, "closed");
  add(reactor::kExclusive, "exclusive");
  return out;
}

v1::EventOwner ownerOf(const reactor::EventInfo& info) {
  const std::string_view label = info.label;
  const std::string_view word = label.substr(0, label.find(' '));
  if (info.internal) return v1::EVENT_OWNER_INTERNAL;
  if (word == "listener") return v1::EVENT_OWNER_LISTENER;
  if (word == "flow") return v1::EVENT_OWNER_FLOW;
  if (word == "health") return v1::EVENT_OWNER_HEALTH_CHECK;
  if (word == "scheduled") return v1::EVENT_OWNER_SCHEDULED;
  return v1::EVENT_OWNER_INTERNAL;
}

}  // namespace

ControlPlane::Timer::Timer(ControlPlane* o, std::string k, reactor::EventBase& base)
    : owner(o), key(std::move(k)), event(base, -1, 0, &ControlPlane::onTimer, this) {}

void ControlPlane::start() {
  for (const auto& [name, event] : state_.events()) armEvent(name);
  for (const auto& [listener, resumeAt] : state_.pauseDeadlines()) armPause(listener);
}

void ControlPlane::disarm(const std::string& key) {
  const auto it = timers_.find(key);
  if (it == timers_.end()) return;
  it->second->event.del();
  // The timer's own callback may be on the stack (a firing that cancels itself).
  loop_.deferDelete(std::move(it->second));
  timers_.erase(it);
}

void ControlPlane::armEvent(const std::string& name) {
  const auto it = state_.events().find(name);
  if (it == state_.events().end()) return;
  const std::string key = "event " + name;
  disarm(key);
  auto timer = std::make_unique<Timer>(this, key, loop_);
  timer->event.setLabel("scheduled " + name);
  const auto delay = std::max(SystemClock::duration::zero(),
                              fromTimestamp(it->second.next_fire_time()) - wallNow());
  timer->event.add(std::chrono::duration_cast<reactor::Duration>(delay));
  timers_[key] = std::move(timer);
}

void ControlPlane::armPause(const std::string& listener) {
  const auto it = state_.pauseDeadlines().find(listener);
  if (it == state_.pauseDeadlines().end()) return;
  const std::string key = "pause " + listener;
  disarm(key);
  auto timer = std::make_unique<Timer>(this, key, loop_);
  timer->event.setLabel("scheduled pause " + listener);
  const auto delay = std::max(SystemClock::duration::zero(), it->second - wallNow());
  timer->event.add(std::chrono::duration_cast<reactor::Duration>(delay));
  timers_[key] = std::move(timer);
}

void ControlPlane::onTimer(int, reactor::EventMask, void* arg) {
  auto* timer = static_cast<Timer*>(arg);
  // Copied: firing may disarm (and so schedule the deletion of) this very timer.
  const std::string key = timer->key;
  timer->owner->fire(key);
}

void ControlPlane::fire(const std::string& key) {
  if (key.starts_with("event ")) {
    fireEvent(key.substr(6));
    return;
  }
  const std::string listener = key.substr(6);
  v1::ResumeListenerRequest request;
  request.set_name(listener);
  v1::Listener out;
  const grpc::Status status = resumeListener(request, out);
  if (!status.ok()) {
    gateway::logWarn("timed pause of listener " + listener + " ended: " + describe(status));
    disarm(key);
    if (findListener(listener) == nullptr) state_.clearPauseDeadline(listener);
  }
}

std::string ControlPlane::runAction(const v1::Action& action) {
  switch (action.kind_case()) {
    case v1::Action::kPauseListener: {
      v1::PauseListenerRequest request;
      request.set_name(action.pause_listener());
      v1::Listener out;
      return describe(pauseListener(request, out));
    }
    case v1::Action::kResumeListener: {
      v1::ResumeListenerRequest request;
      request.set_name(action.resume_listener());
      v1::Listener out;
      return describe(resumeListener(request, out));
    }
    case v1::Action::kDeleteListener: {
      v1::DeleteListenerRequest request;
      request.set_name(action.delete_listener());
      v1::DeleteListenerResponse out;
      return describe(deleteListener(request, out));
    }
    case v1::Action::kSetEndpointState: {
      v1::SetEndpointStateRequest request;
      request.set_cluster(action.set_endpoint_state().cluster());
      request.set_address(action.set_endpoint_state().address());
      request.set_state(action.set_endpoint_state().state());
      v1::Cluster out;
      return describe(setEndpointState(request, out));
    }
    case v1::Action::kSetEndpointWeight: {
      v1::Cluster out;
      return describe(setEndpointWeight(action.set_endpoint_weight(), false, out));
    }
    case v1::Action::kCloseFlows: {
      gateway::FlowFilter filter;
      const grpc::Status status = flowFilterFromProto(action.close_flows(), filter);
      if (!status.ok()) return describe(status);
      const size_t closed = gateway_.closeFlows(filter, std::numeric_limits<size_t>::max(),
                                                gateway::CloseReason::kAdmin);
      return "ok: closed " + std::to_string(closed) + " flows";
    }
    case v1::Action::KIND_NOT_SET:
      break;
  }
  return "no action";
}

void ControlPlane::fireEvent(const std::string& name) {
  const auto it = state_.events().find(name);
  if (it == state_.events().end()) return;
  v1::ScheduledEvent event = it->second;
  const std::string result = runAction(event.action());
  event.set_fired_count(event.fired_count() + 1);
  event.set_last_result(result);

  v1::WatchEvent fired;
  fired.set_type(v1::WATCH_EVENT_TYPE_SCHEDULED_EVENT_FIRED);
  fired.set_scheduled_event(name);
  fired.set_detail(result);
  Change change{state_, {fired}};
  const bool again = event.has_every() &&
                     (event.every().count() == 0 || event.fired_count() < event.every().count());
  if (again) {
    // Drift-free: the next firing is one interval after the one due, unless that is already
    // past (the loop was busy, or the gateway was down): then one interval from now.
    const auto interval = std::chrono::duration_cast<SystemClock::duration>(
        std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(event.every().interval())));
    auto next = fromTimestamp(event.next_fire_time()) + interval;
    if (next <= wallNow()) next = wallNow() + interval;
    *event.mutable_next_fire_time() = toTimestamp(next);
    change.edited.putEvent(event);
  } else {
    change.edited.removeEvent(name);
    v1::WatchEvent deleted;
    deleted.set_type(v1::WATCH_EVENT_TYPE_SCHEDULED_EVENT_DELETED);
    deleted.set_scheduled_event(name);
    deleted.set_detail("ran its last firing");
    change.notices.push_back(std::move(deleted));
  }
  const grpc::Status status = commit(change, false);
  if (!status.ok()) {
    gateway::logError("scheduled event " + name +
                      ": cannot record its firing: " + describe(status));
  }
  gateway::logInfo("scheduled event " + name + " fired: " + result);
  if (again && status.ok()) {
    armEvent(name);
  } else if (!again) {
    disarm("event " + name);
  }
}

grpc::Status ControlPlane::checkAction(const v1::Action& action, std::string_view path) const {
  const std::string at(path);
  const auto listenerExists = [this](const std::string& name, const std::string& field) {
    if (grpc::Status status = checkName(name, field); !status.ok()) return status;
    if (findListener(name) == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          field + ": listener \"" + name + "\" not found");
    }
    return grpc::Status::OK;
  };
  const auto endpointExists = [this](const std::string& cluster, const std::string& address,
                                     const std::string& field) {
    if (grpc::Status status = checkName(cluster, field + ".cluster"); !status.ok()) return status;
    reactor::SocketAddress parsed;
    if (grpc::Status status = parseEndpointAddress(address, field + ".address", parsed);
        !status.ok()) {
      return status;
    }
    const gateway::ClusterConfig* config = findCluster(cluster);
    if (config == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          field + ".cluster: cluster \"" + cluster + "\" not found");
    }
    for (const gateway::EndpointConfig& endpoint : config->endpoints) {
      if (endpoint.address == parsed) return grpc::Status::OK;
    }
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        field + ".address: endpoint " + parsed.toString() + " not in cluster \"" + cluster + "\"");
  };
  switch (action.kind_case()) {
    case v1::Action::kPauseListener:
      return listenerExists(action.pause_listener(), at + ".pause_listener");
    case v1::Action::kResumeListener:
      return listenerExists(action.resume_listener(), at + ".resume_listener");
    case v1::Action::kDeleteListener:
      return listenerExists(action.delete_listener(), at + ".delete_listener");
    case v1::Action::kSetEndpointState: {
      const v1::SetEndpointStateAction& change = action.set_endpoint_state();
      gateway::EndpointAdminState state{};
      const std::string field = at + ".set_endpoint_state";
      if (grpc::Status status = endpointStateFromProto(change.state(), state, field + ".state");
          !status.ok()) {
        return status;
      }
      return endpointExists(change.cluster(), change.address(), field);
    }
    case v1::Action::kSetEndpointWeight: {
      const v1::SetEndpointWeightAction& change = action.set_endpoint_weight();
      const std::string field = at + ".set_endpoint_weight";
      if (change.weight() < 1 || change.weight() > gateway::limits::kMaxWeight) {
        return invalidArgument(field + ".weight", "expected an integer 1.." +
                                                      std::to_string(gateway::limits::kMaxWeight));
      }
      return endpointExists(change.cluster(), change.address(), field);
    }
    case v1::Action::kCloseFlows: {
      gateway::FlowFilter filter;
      return flowFilterFromProto(action.close_flows(), filter, at + ".close_flows");
    }
    case v1::Action::KIND_NOT_SET:
      break;
  }
  return invalidArgument(at,
                         "expected one action (pause_listener, resume_listener, "
                         "delete_listener, set_endpoint_state, set_endpoint_weight, "
                         "close_flows)");
}

grpc::Status ControlPlane::createEvent(const v1::CreateEventRequest& request,
                                       v1::ScheduledEvent& out) {
  const v1::ScheduledEvent& in = request.event();
  if (grpc::Status status = checkName(in.name(), "event.name"); !status.ok()) return status;
  if (state_.events().contains(in.name())) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        "scheduled event \"" + in.name() + "\" already exists");
  }
  const auto now = wallNow();
  SystemClock::time_point next;
  gateway::Duration delay{};
  switch (in.trigger_case()) {
    case v1::ScheduledEvent::kAfter:
      if (grpc::Status status = durationFromProto(in.after(), "event.after", delay); !status.ok()) {
        return status;
      }
      next = now + std::chrono::duration_cast<SystemClock::duration>(delay);
      break;
    case v1::ScheduledEvent::kEvery:
      if (grpc::Status status =
              durationFromProto(in.every().interval(), "event.every.interval", delay);
          !status.ok()) {
        return status;
      }
      if (delay < kMinInterval) {
        return invalidArgument("event.every.interval", "expected at least 10ms");
      }
      next = now + std::chrono::duration_cast<SystemClock::duration>(delay);
      break;
    case v1::ScheduledEvent::kAt:
      // Timestamp's own range: years 1 to 9999, nanos 0..999999999.
      if (in.at().seconds() < TimeUtil::kTimestampMinSeconds ||
          in.at().seconds() > TimeUtil::kTimestampMaxSeconds || in.at().nanos() < 0 ||
          in.at().nanos() > 999999999) {
        return invalidArgument("event.at", "not a valid timestamp");
      }
      next = fromTimestamp(in.at());
      break;
    case v1::ScheduledEvent::TRIGGER_NOT_SET:
      return invalidArgument("event", "expected a trigger: after, every or at");
  }
  if (grpc::Status status = checkAction(in.action(), "event.action"); !status.ok()) return status;

  v1::ScheduledEvent event;
  event.set_name(in.name());
  switch (in.trigger_case()) {
    case v1::ScheduledEvent::kAfter:
      *event.mutable_after() = in.after();
      break;
    case v1::ScheduledEvent::kEvery:
      *event.mutable_every() = in.every();
      break;
    default:
      *event.mutable_at() = in.at();
      break;
  }
  *event.mutable_action() = in.action();
  *event.mutable_next_fire_time() = toTimestamp(next);

  v1::WatchEvent created;
  created.set_type(v1::WATCH_EVENT_TYPE_SCHEDULED_EVENT_CREATED);
  created.set_scheduled_event(event.name());
  Change change{state_, {created}};
  change.edited.putEvent(event);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  if (!request.validate_only()) armEvent(event.name());
  out = event;
  return grpc::Status::OK;
}

grpc::Status ControlPlane::deleteEvent(const v1::DeleteEventRequest& request) {
  const std::string& name = request.name();
  if (grpc::Status status = checkName(name, "name"); !status.ok()) return status;
  if (!state_.events().contains(name)) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "scheduled event \"" + name + "\" not found");
  }
  v1::WatchEvent deleted;
  deleted.set_type(v1::WATCH_EVENT_TYPE_SCHEDULED_EVENT_DELETED);
  deleted.set_scheduled_event(name);
  Change change{state_, {deleted}};
  change.edited.removeEvent(name);
  if (grpc::Status status = commit(change, request.validate_only()); !status.ok()) {
    return status;
  }
  if (!request.validate_only()) disarm("event " + name);
  return grpc::Status::OK;
}

grpc::Status ControlPlane::listEvents(v1::ListEventsResponse& out) const {
  std::vector<gateway::LoopEvents> loops = gateway_.listEvents();
  loops.push_back(gateway::LoopEvents{"control", loop_.dumpEvents()});
  const reactor::TimePoint monotonicNow = loop_.now();
  const SystemClock::time_point wallTime = wallNow();
  for (const gateway::LoopEvents& loop : loops) {
    for (const reactor::EventInfo& info : loop.events) {
      // Only registered events: an initialized one (e.g. a retry timer not armed) waits for
      // nothing.
      if (info.state == reactor::EventState::kInitialized) continue;
      v1::ReactorEvent& event = *out.add_events();
      event.set_loop(loop.loop);
      event.set_fd(info.fd);
      if ((info.events & reactor::kSignal) != 0) {
        event.set_kind(v1::EVENT_KIND_SIGNAL);
      } else if ((info.events & (reactor::kRead | reactor::kWrite | reactor::kClosed)) != 0) {
        event.set_kind(v1::EVENT_KIND_IO);
      } else {
        event.set_kind(v1::EVENT_KIND_TIMER);
      }
      event.set_flags(flagsText(info.events));
      event.set_state(info.state == reactor::EventState::kActive ? v1::EVENT_STATE_ACTIVE
                                                                 : v1::EVENT_STATE_PENDING);
      if (info.deadline) {
        *event.mutable_deadline() =
            toTimestamp(wallTime + std::chrono::duration_cast<SystemClock::duration>(
                                       *info.deadline - monotonicNow));
      }
      event.set_owner(ownerOf(info));
      event.set_label(info.label);
      event.set_priority(info.priority);
    }
  }
  for (const auto& [name, scheduled] : state_.events()) *out.add_scheduled_events() = scheduled;
  return grpc::Status::OK;
}

}  // namespace evgate::admin
