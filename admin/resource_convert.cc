#include "admin/resource_convert.h"

#include <google/protobuf/util/time_util.h>

#include <utility>

#include "gateway/config/limits.h"
#include "gateway/config/units.h"

namespace evgate::admin {
namespace {

using google::protobuf::util::TimeUtil;
namespace limits = gateway::limits;

std::string join(std::string_view path, std::string_view field) {
  std::string out(path);
  out += '.';
  out += field;
  return out;
}

std::string item(std::string_view path, int index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

// An optional duration field: unset keeps `out`; set must be valid and within [min, max].
grpc::Status optionalDuration(const google::protobuf::Duration& in, bool set, std::string_view path,
                              bool allowZero, gateway::Duration& out) {
  if (!set) return grpc::Status::OK;
  gateway::Duration value{};
  if (grpc::Status status = durationFromProto(in, path, value); !status.ok()) return status;
  if (!allowZero && value.count() == 0) {
    return invalidArgument(path, "expected a duration greater than 0s");
  }
  if (value > limits::kMaxDuration) {
    return invalidArgument(
        path, "expected a duration of at most " + gateway::formatDuration(limits::kMaxDuration));
  }
  out = value;
  return grpc::Status::OK;
}

grpc::Status lbFromProto(v1::LbPolicy in, std::string_view path, gateway::LbPolicy& out) {
  switch (in) {
    case v1::LB_POLICY_UNSPECIFIED:
    case v1::LB_POLICY_ROUND_ROBIN:
      out = gateway::LbPolicy::kRoundRobin;
      return grpc::Status::OK;
    case v1::LB_POLICY_LEAST_CONNECTIONS:
      out = gateway::LbPolicy::kLeastConnections;
      return grpc::Status::OK;
    case v1::LB_POLICY_RANDOM_TWO:
      out = gateway::LbPolicy::kRandomTwo;
      return grpc::Status::OK;
    case v1::LB_POLICY_HASH_CLIENT_IP:
      out = gateway::LbPolicy::kHashClientIp;
      return grpc::Status::OK;
    default:
      return invalidArgument(path, "unknown policy " + std::to_string(in));
  }
}

v1::LbPolicy lbToProto(gateway::LbPolicy policy) {
  switch (policy) {
    case gateway::LbPolicy::kRoundRobin:
      return v1::LB_POLICY_ROUND_ROBIN;
    case gateway::LbPolicy::kLeastConnections:
      return v1::LB_POLICY_LEAST_CONNECTIONS;
    case gateway::LbPolicy::kRandomTwo:
      return v1::LB_POLICY_RANDOM_TWO;
    case gateway::LbPolicy::kHashClientIp:
      return v1::LB_POLICY_HASH_CLIENT_IP;
  }
  return v1::LB_POLICY_UNSPECIFIED;
}

grpc::Status proxyFromProto(v1::ProxyProtocolVersion in, std::string_view path,
                            gateway::ProxyProtocol& out) {
  switch (in) {
    case v1::PROXY_PROTOCOL_VERSION_UNSPECIFIED:
    case v1::PROXY_PROTOCOL_VERSION_NONE:
      out = gateway::ProxyProtocol::kNone;
      return grpc::Status::OK;
    case v1::PROXY_PROTOCOL_VERSION_V1:
      out = gateway::ProxyProtocol::kV1;
      return grpc::Status::OK;
    case v1::PROXY_PROTOCOL_VERSION_V2:
      out = gateway::ProxyProtocol::kV2;
      return grpc::Status::OK;
    default:
      return invalidArgument(path, "unknown version " + std::to_string(in));
  }
}

v1::ProxyProtocolVersion proxyToProto(gateway::ProxyProtocol version) {
  switch (version) {
    case gateway::ProxyProtocol::kNone:
      return v1::PROXY_PROTOCOL_VERSION_NONE;
    case gateway::ProxyProtocol::kV1:
      return v1::PROXY_PROTOCOL_VERSION_V1;
    case gateway::ProxyProtocol::kV2:
      return v1::PROXY_PROTOCOL_VERSION_V2;
  }
  return v1::PROXY_PROTOCOL_VERSION_UNSPECIFIED;
}

grpc::Status spliceFromProto(v1::SpliceMode in, std::string_view path, gateway::SpliceMode& out) {
  switch (in) {
    case v1::SPLICE_MODE_UNSPECIFIED:
    case v1::SPLICE_MODE_AUTO:
      out = gateway::SpliceMode::kAuto;
      return grpc::Status::OK;
    case v1::SPLICE_MODE_OFF:
      out = gateway::SpliceMode::kOff;
      return grpc::Status::OK;
    case v1::SPLICE_MODE_ALWAYS:
      out = gateway::SpliceMode::kAlways;
      return grpc::Status::OK;
    default:
      return invalidArgument(path, "unknown mode " + std::to_string(in));
  }
}

v1::SpliceMode spliceToProto(gateway::SpliceMode mode) {
  switch (mode) {
    case gateway::SpliceMode::kAuto:
      return v1::SPLICE_MODE_AUTO;
    case gateway::SpliceMode::kOff:
      return v1::SPLICE_MODE_OFF;
    case gateway::SpliceMode::kAlways:
      return v1::SPLICE_MODE_ALWAYS;
  }
  return v1::SPLICE_MODE_UNSPECIFIED;
}

grpc::Status cidrFromText(std::string_view text, std::string_view path, gateway::Cidr& out) {
  if (const auto cidr = gateway::Cidr::parse(text)) {
    out = *cidr;
    return grpc::Status::OK;
  }
  if (const auto masked = gateway::Cidr::parseMasked(text)) {
    return invalidArgument(path, "\"" + std::string(text) +
                                     "\" has bits set after the prefix (did you mean \"" +
                                     masked->toString() + "\"?)");
  }
  return invalidArgument(
      path, "expected a CIDR like 10.0.0.0/8 or 2001:db8::/32, got \"" + std::string(text) + "\"");
}

grpc::Status healthCheckFromProto(const v1::HealthCheck& in, std::string_view path,
                                  gateway::HealthCheckConfig& out) {
  gateway::HealthCheckConfig check;
  grpc::Status status = optionalDuration(in.interval(), in.has_interval(), join(path, "interval"),
                                         false, check.interval);
  if (status.ok()) {
    status = optionalDuration(in.timeout(), in.has_timeout(), join(path, "timeout"), false,
                              check.timeout);
  }
  if (!status.ok()) return status;
  if (in.unhealthy_threshold() != 0) check.unhealthyThreshold = in.unhealthy_threshold();
  if (in.healthy_threshold() != 0) check.healthyThreshold = in.healthy_threshold();
  if (check.unhealthyThreshold > limits::kMaxHealthThreshold) {
    return invalidArgument(join(path, "unhealthy_threshold"),
                           "expected an integer 1.." + std::to_string(limits::kMaxHealthThreshold));
  }
  if (check.healthyThreshold > limits::kMaxHealthThreshold) {
    return invalidArgument(join(path, "healthy_threshold"),
                           "expected an integer 1.." + std::to_string(limits::kMaxHealthThreshold));
  }
  if (check.timeout >= check.interval) {
    return invalidArgument(
        join(path, "timeout"),
        "expected a duration less than interval (" + gateway::formatDuration(check.interval) + ")");
  }
  out = check;
  return grpc::Status::OK;
}

grpc::Status outlierFromProto(const v1::Outlier& in, std::string_view path,
                              gateway::OutlierConfig& out) {
  gateway::OutlierConfig outlier;
  if (in.has_consecutive_failures()) {
    if (in.consecutive_failures() > limits::kMaxConsecutiveFailures) {
      return invalidArgument(
          join(path, "consecutive_failures"),
          "expected an integer 0.." + std::to_string(limits::kMaxConsecutiveFailures));
    }
    outlier.consecutiveFailures = in.consecutive_failures();
  }
  grpc::Status status = optionalDuration(in.base_ejection(), in.has_base_ejection(),
                                         join(path, "base_ejection"), false, outlier.baseEjection);
  if (status.ok()) {
    status = optionalDuration(in.max_ejection(), in.has_max_ejection(), join(path, "max_ejection"),
                              false, outlier.maxEjection);
  }
  if (!status.ok()) return status;
  if (outlier.baseEjection > outlier.maxEjection) {
    return invalidArgument(join(path, "max_ejection"),
                           "expected a duration of at least base_ejection (" +
                               gateway::formatDuration(outlier.baseEjection) + ")");
  }
  out = outlier;
  return grpc::Status::OK;
}

}  // namespace

grpc::Status invalidArgument(std::string_view path, std::string_view message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      std::string(path) + ": " + std::string(message));
}

grpc::Status checkName(std::string_view name, std::string_view path) {
  if (gateway::limits::isValidName(name)) return grpc::Status::OK;
  if (name.empty()) return invalidArgument(path, "required");
  return invalidArgument(path, "expected a name of 1 to " + std::to_string(limits::kMaxNameLength) +
                                   " characters from A-Z a-z 0-9 _ . -");
}

grpc::Status parseEndpointAddress(std::string_view text, std::string_view path,
                                  reactor::SocketAddress& out) {
  const auto address = reactor::SocketAddress::parse(text);
  if (!address || address->port() == 0) {
    return invalidArgument(path,
                           "expected an address with a port like 127.0.0.1:9000 or "
                           "[::1]:9000, got \"" +
                               std::string(text) + "\"");
  }
  out = *address;
  return grpc::Status::OK;
}

grpc::Status durationFromProto(const google::protobuf::Duration& in, std::string_view path,
                               gateway::Duration& out) {
  // Duration's own rules: |seconds| within ~10,000 years, |nanos| below a second, both with the
  // same sign.
  const bool inRange = in.seconds() >= TimeUtil::kDurationMinSeconds &&
                       in.seconds() <= TimeUtil::kDurationMaxSeconds && in.nanos() > -1000000000 &&
                       in.nanos() < 1000000000;
  if (!inRange ||
      (in.seconds() != 0 && in.nanos() != 0 && (in.seconds() < 0) != (in.nanos() < 0))) {
    return invalidArgument(path, "not a valid duration");
  }
  if (in.seconds() < 0 || in.nanos() < 0) return invalidArgument(path, "must not be negative");
  if (in.seconds() > limits::kMaxDuration.count() / 1'000'000'000) {
    return invalidArgument(
        path, "expected a duration of at most " + gateway::formatDuration(limits::kMaxDuration));
  }
  out = std::chrono::seconds(in.seconds()) + std::chrono::nanoseconds(in.nanos());
  return grpc::Status::OK;
}

void durationToProto(gateway::Duration in, google::protobuf::Duration& out) {
  out = TimeUtil::NanosecondsToDuration(in.count());
}

grpc::Status listenerFromProto(const v1::Listener& in, gateway::ListenerConfig& out,
                               std::string_view path) {
  gateway::ListenerConfig listener;
  if (grpc::Status status = checkName(in.name(), join(path, "name")); !status.ok()) return status;
  listener.name = in.name();

  const auto bind = reactor::SocketAddress::parse(in.bind());
  if (!bind) {
    return invalidArgument(
        join(path, "bind"),
        in.bind().empty()
            ? std::string("required")
            : "expected an address like 0.0.0.0:8080 or [::]:8080, got \"" + in.bind() + "\"");
  }
  listener.bind = *bind;
  if (grpc::Status status = checkName(in.cluster(), join(path, "cluster")); !status.ok()) {
    return status;
  }
  listener.cluster = in.cluster();
  if (in.max_connections() != 0) listener.maxConnections = in.max_connections();
  if (in.buffer_limit_bytes() != 0) {
    if (in.buffer_limit_bytes() < limits::kMinBufferLimit ||
        in.buffer_limit_bytes() > limits::kMaxBufferLimit) {
      return invalidArgument(join(path, "buffer_limit_bytes"),
                             "expected a size from " +
                                 gateway::formatSize(limits::kMinBufferLimit) + " to " +
                                 gateway::formatSize(limits::kMaxBufferLimit));
    }
    listener.bufferLimit = in.buffer_limit_bytes();
  }
  grpc::Status status = optionalDuration(in.idle_timeout(), in.has_idle_timeout(),
                                         join(path, "idle_timeout"), false, listener.idleTimeout);
  if (status.ok()) {
    status = optionalDuration(in.half_close_timeout(), in.has_half_close_timeout(),
                              join(path, "half_close_timeout"), false, listener.halfCloseTimeout);
  }
  if (status.ok() && in.has_max_lifetime()) {
    gateway::Duration lifetime{};
    status = optionalDuration(in.max_lifetime(), true, join(path, "max_lifetime"), false, lifetime);
    listener.maxLifetime = lifetime;
  }
  if (status.ok()) {
    status = optionalDuration(in.max_lifetime_jitter(), in.has_max_lifetime_jitter(),
                              join(path, "max_lifetime_jitter"), true, listener.maxLifetimeJitter);
  }
  if (status.ok()) {
    status = optionalDuration(in.proxy_protocol_timeout(), in.has_proxy_protocol_timeout(),
                              join(path, "proxy_protocol_timeout"), false,
                              listener.proxyProtocolTimeout);
  }
  if (status.ok()) status = spliceFromProto(in.splice(), join(path, "splice"), listener.splice);
  if (!status.ok()) return status;
  if (listener.maxLifetimeJitter.count() > 0) {
    if (!listener.maxLifetime) {
      return invalidArgument(join(path, "max_lifetime_jitter"), "needs max_lifetime");
    }
    if (listener.maxLifetimeJitter >= *listener.maxLifetime) {
      return invalidArgument(join(path, "max_lifetime_jitter"),
                             "expected a duration less than max_lifetime (" +
                                 gateway::formatDuration(*listener.maxLifetime) + ")");
    }
  }
  for (int i = 0; i < in.allow_size(); ++i) {
    gateway::Cidr cidr;
    status = cidrFromText(in.allow(i), item(join(path, "allow"), i), cidr);
    if (!status.ok()) return status;
    listener.allow.push_back(cidr);
  }
  listener.acceptProxyProtocol = in.accept_proxy_protocol();
  listener.paused = in.paused();
  out = std::move(listener);
  return grpc::Status::OK;
}

void listenerToProto(const gateway::ListenerConfig& in, v1::Listener& out) {
  out.set_name(in.name);
  out.set_bind(in.bind.toString());
  out.set_cluster(in.cluster);
  out.set_max_connections(in.maxConnections);
  out.set_buffer_limit_bytes(in.bufferLimit);
  durationToProto(in.idleTimeout, *out.mutable_idle_timeout());
  durationToProto(in.halfCloseTimeout, *out.mutable_half_close_timeout());
  if (in.maxLifetime) {
    durationToProto(*in.maxLifetime, *out.mutable_max_lifetime());
  } else {
    out.clear_max_lifetime();
  }
  durationToProto(in.maxLifetimeJitter, *out.mutable_max_lifetime_jitter());
  out.clear_allow();
  for (const gateway::Cidr& cidr : in.allow) out.add_allow(cidr.toString());
  out.set_accept_proxy_protocol(in.acceptProxyProtocol);
  durationToProto(in.proxyProtocolTimeout, *out.mutable_proxy_protocol_timeout());
  out.set_splice(spliceToProto(in.splice));
  out.set_paused(in.paused);
}

grpc::Status endpointStateFromProto(v1::EndpointState in, gateway::EndpointAdminState& out,
                                    std::string_view path) {
  switch (in) {
    case v1::ENDPOINT_STATE_ACTIVE:
      out = gateway::EndpointAdminState::kActive;
      return grpc::Status::OK;
    case v1::ENDPOINT_STATE_DRAINING:
      out = gateway::EndpointAdminState::kDraining;
      return grpc::Status::OK;
    case v1::ENDPOINT_STATE_DISABLED:
      out = gateway::EndpointAdminState::kDisabled;
      return grpc::Status::OK;
    default:
      return invalidArgument(path, "expected ENDPOINT_STATE_ACTIVE, _DRAINING or _DISABLED");
  }
}

v1::EndpointState endpointStateToProto(gateway::EndpointAdminState state) {
  switch (state) {
    case gateway::EndpointAdminState::kActive:
      return v1::ENDPOINT_STATE_ACTIVE;
    case gateway::EndpointAdminState::kDraining:
      return v1::ENDPOINT_STATE_DRAINING;
    case gateway::EndpointAdminState::kDisabled:
      return v1::ENDPOINT_STATE_DISABLED;
  }
  return v1::ENDPOINT_STATE_UNSPECIFIED;
}

grpc::Status endpointFromProto(const v1::Endpoint& in, gateway::EndpointConfig& out,
                               std::string_view path) {
  gateway::EndpointConfig endpoint;
  grpc::Status status = parseEndpointAddress(in.address(), join(path, "address"), endpoint.address);
  if (!status.ok()) return status;
  if (in.weight() != 0) endpoint.weight = in.weight();
  if (endpoint.weight > limits::kMaxWeight) {
    return invalidArgument(join(path, "weight"),
                           "expected an integer 1.." + std::to_string(limits::kMaxWeight));
  }
  if (in.state() != v1::ENDPOINT_STATE_UNSPECIFIED) {
    status = endpointStateFromProto(in.state(), endpoint.state, join(path, "state"));
    if (!status.ok()) return status;
  }
  out = endpoint;
  return grpc::Status::OK;
}

void endpointToProto(const gateway::EndpointConfig& in, v1::Endpoint& out) {
  out.set_address(in.address.toString());
  out.set_weight(in.weight);
  out.set_state(endpointStateToProto(in.state));
}

grpc::Status clusterFromProto(const v1::Cluster& in, gateway::ClusterConfig& out,
                              std::string_view path) {
  gateway::ClusterConfig cluster;
  if (grpc::Status status = checkName(in.name(), join(path, "name")); !status.ok()) return status;
  cluster.name = in.name();
  grpc::Status status = lbFromProto(in.lb(), join(path, "lb"), cluster.lb);
  if (!status.ok()) return status;
  if (in.endpoints_size() == 0) {
    return invalidArgument(join(path, "endpoints"), "expected at least one endpoint");
  }
  for (int i = 0; i < in.endpoints_size(); ++i) {
    const std::string at = item(join(path, "endpoints"), i);
    gateway::EndpointConfig endpoint;
    status = endpointFromProto(in.endpoints(i), endpoint, at);
    if (!status.ok()) return status;
    for (const gateway::EndpointConfig& other : cluster.endpoints) {
      if (other.address == endpoint.address) {
        return invalidArgument(at, "duplicate endpoint " + endpoint.address.toString());
      }
    }
    cluster.endpoints.push_back(endpoint);
  }
  status = optionalDuration(in.connect_timeout(), in.has_connect_timeout(),
                            join(path, "connect_timeout"), false, cluster.connectTimeout);
  if (!status.ok()) return status;
  if (in.max_connect_attempts() != 0) cluster.maxConnectAttempts = in.max_connect_attempts();
  if (cluster.maxConnectAttempts > limits::kMaxConnectAttempts) {
    return invalidArgument(join(path, "max_connect_attempts"),
                           "expected an integer 1.." + std::to_string(limits::kMaxConnectAttempts));
  }
  if (in.has_health_check()) {
    gateway::HealthCheckConfig check;
    status = healthCheckFromProto(in.health_check(), join(path, "health_check"), check);
    if (!status.ok()) return status;
    cluster.healthCheck = check;
  }
  if (in.has_outlier()) {
    status = outlierFromProto(in.outlier(), join(path, "outlier"), cluster.outlier);
    if (!status.ok()) return status;
  }
  status = proxyFromProto(in.send_proxy_protocol(), join(path, "send_proxy_protocol"),
                          cluster.sendProxyProtocol);
  if (!status.ok()) return status;
  for (int i = 0; i < in.source_addresses_size(); ++i) {
    const std::string at = item(join(path, "source_addresses"), i);
    const std::optional<reactor::SocketAddress> source =
        gateway::parseSourceAddress(in.source_addresses(i));
    if (!source) {
      return invalidArgument(at,
                             "expected an address without a port like 10.0.0.5 or "
                             "2001:db8::5, got \"" +
                                 in.source_addresses(i) + "\"");
    }
    for (const reactor::SocketAddress& other : cluster.sourceAddresses) {
      if (other == *source) {
        return invalidArgument(at,
                               "duplicate source address " + gateway::formatSourceAddress(*source));
      }
    }
    cluster.sourceAddresses.push_back(*source);
  }
  out = std::move(cluster);
  return grpc::Status::OK;
}

void clusterToProto(const gateway::ClusterConfig& in, v1::Cluster& out) {
  out.set_name(in.name);
  out.set_lb(lbToProto(in.lb));
  out.clear_endpoints();
  for (const gateway::EndpointConfig& endpoint : in.endpoints) {
    endpointToProto(endpoint, *out.add_endpoints());
  }
  durationToProto(in.connectTimeout, *out.mutable_connect_timeout());
  out.set_max_connect_attempts(in.maxConnectAttempts);
  if (in.healthCheck) {
    v1::HealthCheck& check = *out.mutable_health_check();
    durationToProto(in.healthCheck->interval, *check.mutable_interval());
    durationToProto(in.healthCheck->timeout, *check.mutable_timeout());
    check.set_unhealthy_threshold(in.healthCheck->unhealthyThreshold);
    check.set_healthy_threshold(in.healthCheck->healthyThreshold);
  } else {
    out.clear_health_check();
  }
  v1::Outlier& outlier = *out.mutable_outlier();
  outlier.set_consecutive_failures(in.outlier.consecutiveFailures);
  durationToProto(in.outlier.baseEjection, *outlier.mutable_base_ejection());
  durationToProto(in.outlier.maxEjection, *outlier.mutable_max_ejection());
  out.set_send_proxy_protocol(proxyToProto(in.sendProxyProtocol));
  out.clear_source_addresses();
  for (const reactor::SocketAddress& source : in.sourceAddresses) {
    out.add_source_addresses(gateway::formatSourceAddress(source));
  }
}

grpc::Status flowFilterFromProto(const v1::FlowFilter& in, gateway::FlowFilter& out,
                                 std::string_view path) {
  gateway::FlowFilter filter;
  filter.listener = in.listener();
  filter.cluster = in.cluster();
  if (!in.endpoint().empty()) {
    reactor::SocketAddress endpoint;
    grpc::Status status = parseEndpointAddress(in.endpoint(), join(path, "endpoint"), endpoint);
    if (!status.ok()) return status;
    filter.endpoint = endpoint;
  }
  if (!in.client_cidr().empty()) {
    gateway::Cidr cidr;
    grpc::Status status = cidrFromText(in.client_cidr(), join(path, "client_cidr"), cidr);
    if (!status.ok()) return status;
    filter.client = cidr;
  }
  grpc::Status status =
      optionalDuration(in.min_age(), in.has_min_age(), join(path, "min_age"), true, filter.minAge);
  if (status.ok()) {
    status = optionalDuration(in.min_idle(), in.has_min_idle(), join(path, "min_idle"), true,
                              filter.minIdle);
  }
  if (!status.ok()) return status;
  out = std::move(filter);
  return grpc::Status::OK;
}

}  // namespace evgate::admin
