#include "admin/cli/views.h"

#include <string>
#include <vector>

#include "admin/cli/flags.h"
#include "admin/cli/format.h"
#include "admin/cli/table.h"
#include "gateway/config/units.h"

namespace evgate::admin::cli {
namespace {

template <typename Enum>
std::string enumText(Enum value) {
  if (static_cast<int>(value) == 0) return "-";
  return enumShortName(google::protobuf::GetEnumDescriptor<Enum>(), static_cast<int>(value));
}

// Zero means "the configuration's default" for a created resource's limits.
std::string numberOrDefault(uint64_t value) {
  return value == 0 ? "default" : std::to_string(value);
}

std::string healthCheckText(const v1::Cluster& cluster) {
  if (!cluster.has_health_check()) return "-";
  const v1::HealthCheck& check = cluster.health_check();
  return "interval " + durationText(check.has_interval() ? &check.interval() : nullptr) +
         ", timeout " + durationText(check.has_timeout() ? &check.timeout() : nullptr) +
         ", unhealthy after " + numberOrDefault(check.unhealthy_threshold()) + ", healthy after " +
         numberOrDefault(check.healthy_threshold());
}

std::string outlierText(const v1::Cluster& cluster) {
  if (!cluster.has_outlier()) return "-";
  const v1::Outlier& outlier = cluster.outlier();
  const std::string failures = outlier.has_consecutive_failures()
                                   ? std::to_string(outlier.consecutive_failures())
                                   : std::string("default");
  return "after " + failures + " failures, base " +
         durationText(outlier.has_base_ejection() ? &outlier.base_ejection() : nullptr) + ", max " +
         durationText(outlier.has_max_ejection() ? &outlier.max_ejection() : nullptr);
}

std::string triggerText(const v1::ScheduledEvent& event) {
  switch (event.trigger_case()) {
    case v1::ScheduledEvent::kAfter:
      return "after " + durationText(&event.after());
    case v1::ScheduledEvent::kEvery: {
      const v1::Every& every = event.every();
      std::string text = "every " + durationText(&every.interval());
      if (every.count() != 0) text += " x" + std::to_string(every.count());
      return text;
    }
    case v1::ScheduledEvent::kAt:
      return "at " + timeText(&event.at());
    default:
      return "-";
  }
}

std::string actionText(const v1::Action& action) {
  switch (action.kind_case()) {
    case v1::Action::kPauseListener:
      return "pause-listener " + action.pause_listener();
    case v1::Action::kResumeListener:
      return "resume-listener " + action.resume_listener();
    case v1::Action::kDeleteListener:
      return "delete-listener " + action.delete_listener();
    case v1::Action::kSetEndpointState: {
      const v1::SetEndpointStateAction& set = action.set_endpoint_state();
      return "set-endpoint-state " + set.cluster() + " " + set.address() + " " +
             enumText(set.state());
    }
    case v1::Action::kSetEndpointWeight: {
      const v1::SetEndpointWeightAction& set = action.set_endpoint_weight();
      return "set-endpoint-weight " + set.cluster() + " " + set.address() + " " +
             std::to_string(set.weight());
    }
    case v1::Action::kCloseFlows:
      return "close-flows " + filterText(action.close_flows());
    default:
      return "-";
  }
}

std::string subjectText(const v1::WatchEvent& event) {
  std::string text;
  const auto add = [&text](const std::string& key, const std::string& value) {
    if (!value.empty()) text += (text.empty() ? "" : " ") + key + "=" + value;
  };
  add("listener", event.listener());
  add("cluster", event.cluster());
  add("endpoint", event.endpoint());
  add("event", event.scheduled_event());
  if (event.flow_id() != 0) add("flow", std::to_string(event.flow_id()));
  add("client", event.client());
  return orDash(text);
}

}  // namespace

std::string filterText(const v1::FlowFilter& filter) {
  std::string text;
  const auto add = [&text](const std::string& key, const std::string& value) {
    if (!value.empty()) text += (text.empty() ? "" : " ") + key + "=" + value;
  };
  add("listener", filter.listener());
  add("cluster", filter.cluster());
  add("endpoint", filter.endpoint());
  add("client", filter.client_cidr());
  if (filter.has_min_age()) add("min-age", durationText(&filter.min_age()));
  if (filter.has_min_idle()) add("min-idle", durationText(&filter.min_idle()));
  return text.empty() ? "all" : text;
}

void printStatus(std::ostream& out, const v1::Status& status) {
  KeyValues lines;
  lines.add("version", orDash(status.version()));
  lines.add("start_time", timeText(status.has_start_time() ? &status.start_time() : nullptr));
  lines.add("uptime", status.has_uptime() ? elapsedText(status.uptime()) : "-");
  lines.add("workers", std::to_string(status.workers()));
  lines.add("listeners", std::to_string(status.listeners()));
  lines.add("clusters", std::to_string(status.clusters()));
  lines.add("scheduled_events", std::to_string(status.scheduled_events()));
  lines.add("active_flows", std::to_string(status.active_flows()));
  lines.add("config_generation", std::to_string(status.config_generation()));
  lines.add("last_change_time",
            timeText(status.has_last_change_time() ? &status.last_change_time() : nullptr));
  lines.add("draining", yesNo(status.draining()));
  lines.add("watchers", std::to_string(status.watchers()));
  lines.add("config_file", orDash(status.config_file()));
  lines.add("state_file", orDash(status.state_file()));
  lines.print(out);
}

void printListener(std::ostream& out, const v1::Listener& l) {
  const auto duration = [](bool set, const google::protobuf::Duration& d) {
    return durationText(set ? &d : nullptr);
  };
  KeyValues lines;
  lines.add("name", l.name());
  lines.add("bind", orDash(l.bind()));
  lines.add("bound_address", orDash(l.bound_address()));
  lines.add("cluster", orDash(l.cluster()));
  lines.add("max_connections", numberOrDefault(l.max_connections()));
  lines.add("buffer_limit",
            l.buffer_limit_bytes() == 0 ? "default" : gateway::formatSize(l.buffer_limit_bytes()));
  lines.add("idle_timeout", duration(l.has_idle_timeout(), l.idle_timeout()));
  lines.add("half_close_timeout", duration(l.has_half_close_timeout(), l.half_close_timeout()));
  lines.add("max_lifetime", duration(l.has_max_lifetime(), l.max_lifetime()));
  lines.add("max_lifetime_jitter", duration(l.has_max_lifetime_jitter(), l.max_lifetime_jitter()));
  lines.add("allow", listText(l.allow()));
  lines.add("accept_proxy_protocol", yesNo(l.accept_proxy_protocol()));
  lines.add("proxy_protocol_timeout",
            duration(l.has_proxy_protocol_timeout(), l.proxy_protocol_timeout()));
  lines.add("splice", enumText(l.splice()));
  lines.add("paused", yesNo(l.paused()));
  lines.add("resume_time", timeText(l.has_resume_time() ? &l.resume_time() : nullptr));
  lines.add("active_connections", std::to_string(l.active_connections()));
  lines.add("source", enumText(l.source()));
  lines.print(out);
}

void printListeners(std::ostream& out, const v1::ListListenersResponse& list) {
  Table table({"NAME", "BIND", "BOUND", "CLUSTER", "CONNECTIONS", "PAUSED", "SOURCE"});
  for (const v1::Listener& l : list.listeners()) {
    table.addRow({l.name(), orDash(l.bind()), orDash(l.bound_address()), orDash(l.cluster()),
                  std::to_string(l.active_connections()), yesNo(l.paused()), enumText(l.source())});
  }
  table.print(out);
}

void printCluster(std::ostream& out, const v1::Cluster& c) {
  KeyValues lines;
  lines.add("name", c.name());
  lines.add("lb", enumText(c.lb()));
  lines.add("connect_timeout",
            durationText(c.has_connect_timeout() ? &c.connect_timeout() : nullptr));
  lines.add("max_connect_attempts", numberOrDefault(c.max_connect_attempts()));
  lines.add("health_check", healthCheckText(c));
  lines.add("outlier", outlierText(c));
  lines.add("send_proxy_protocol", enumText(c.send_proxy_protocol()));
  lines.add("source_addresses", listText(c.source_addresses()));
  lines.add("listeners", listText(c.listeners()));
  lines.add("source", enumText(c.source()));
  lines.print(out);
  out << '\n';
  Table endpoints({"ENDPOINT", "WEIGHT", "STATE", "HEALTHY", "EJECTED", "CONNECTIONS"});
  for (const v1::Endpoint& e : c.endpoints()) {
    endpoints.addRow({e.address(), std::to_string(e.weight() == 0 ? 1 : e.weight()),
                      e.state() == v1::ENDPOINT_STATE_UNSPECIFIED ? "active" : enumText(e.state()),
                      yesNo(e.healthy()), yesNo(e.ejected()),
                      std::to_string(e.active_connections())});
  }
  endpoints.print(out);
}

void printClusters(std::ostream& out, const v1::ListClustersResponse& list) {
  Table table({"NAME", "LB", "ENDPOINTS", "HEALTHY", "CONNECTIONS", "LISTENERS", "SOURCE"});
  for (const v1::Cluster& c : list.clusters()) {
    int healthy = 0;
    uint64_t connections = 0;
    for (const v1::Endpoint& e : c.endpoints()) {
      healthy += e.healthy() && !e.ejected() ? 1 : 0;
      connections += e.active_connections();
    }
    table.addRow({c.name(), enumText(c.lb()), std::to_string(c.endpoints_size()),
                  std::to_string(healthy), std::to_string(connections), listText(c.listeners()),
                  enumText(c.source())});
  }
  table.print(out);
}

void printFlows(std::ostream& out, const v1::ListFlowsResponse& list) {
  Table table({"ID", "WORKER", "LISTENER", "CLUSTER", "CLIENT", "UPSTREAM", "STATE", "AGE", "IDLE",
               "FROM_CLIENT", "FROM_UPSTREAM", "BUFFERED"});
  for (const v1::Flow& f : list.flows()) {
    table.addRow({std::to_string(f.id()), std::to_string(f.worker()), f.listener(), f.cluster(),
                  orDash(f.client()), orDash(f.upstream()), enumText(f.state()),
                  elapsedText(f.age()), elapsedText(f.idle()),
                  std::to_string(f.bytes_from_client()), std::to_string(f.bytes_from_upstream()),
                  std::to_string(f.buffered_bytes())});
  }
  table.print(out);
}

void printProgress(std::ostream& out, const v1::CloseFlowsProgress& progress) {
  if (progress.done()) {
    out << "done: closed " << progress.closed() << '\n';
    return;
  }
  out << "closed " << progress.closed() << ", remaining " << progress.remaining() << '\n';
}

void printEvents(std::ostream& out, const v1::ListEventsResponse& list) {
  out << "SCHEDULED EVENTS\n";
  Table scheduled({"NAME", "TRIGGER", "ACTION", "NEXT_FIRE", "FIRED", "LAST_RESULT"});
  for (const v1::ScheduledEvent& e : list.scheduled_events()) {
    scheduled.addRow({e.name(), triggerText(e), actionText(e.action()),
                      timeText(e.has_next_fire_time() ? &e.next_fire_time() : nullptr),
                      std::to_string(e.fired_count()), orDash(e.last_result())});
  }
  scheduled.print(out);
  out << "\nREACTOR EVENTS\n";
  Table reactor({"LOOP", "FD", "KIND", "FLAGS", "STATE", "DEADLINE", "OWNER", "LABEL", "PRIORITY"});
  for (const v1::ReactorEvent& e : list.events()) {
    reactor.addRow({e.loop(), std::to_string(e.fd()), enumText(e.kind()), orDash(e.flags()),
                    enumText(e.state()), timeText(e.has_deadline() ? &e.deadline() : nullptr),
                    enumText(e.owner()), orDash(e.label()), std::to_string(e.priority())});
  }
  reactor.print(out);
}

void printScheduledEvent(std::ostream& out, const v1::ScheduledEvent& e) {
  KeyValues lines;
  lines.add("name", e.name());
  lines.add("trigger", triggerText(e));
  lines.add("action", actionText(e.action()));
  lines.add("next_fire_time", timeText(e.has_next_fire_time() ? &e.next_fire_time() : nullptr));
  lines.add("fired_count", std::to_string(e.fired_count()));
  lines.add("last_result", orDash(e.last_result()));
  lines.print(out);
}

void printWatchEvent(std::ostream& out, const v1::WatchEvent& event) {
  out << event.sequence() << ' ' << timeText(event.has_time() ? &event.time() : nullptr) << ' '
      << enumText(event.type()) << ' ' << subjectText(event) << ' ' << orDash(event.detail())
      << '\n';
}

}  // namespace evgate::admin::cli
