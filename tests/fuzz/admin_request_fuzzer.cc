// Fuzzes the admin API's request validation: bytes are parsed as one of the request messages
// (the first byte says which), then validated and converted as the control plane does before it
// changes anything (admin/resource_convert.h, admin/update_mask.h). Checks that a refused
// request is INVALID_ARGUMENT naming the field at fault and leaves the output alone, and that an
// accepted one gives a resource within the configuration's limits that round-trips through its
// proto unchanged (what the state file relies on); an accepted update applied twice changes
// nothing more.

#include <google/protobuf/field_mask.pb.h>
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>

#include "admin/resource_convert.h"
#include "admin/update_mask.h"
#include "gateway/config/limits.h"
#include "reactor/socket_address.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace admin = evgate::admin;
namespace gw = evgate::gateway;
namespace limits = evgate::gateway::limits;
namespace v1 = evgate::admin::v1;
using evgate::reactor::SocketAddress;

// A refusal must be INVALID_ARGUMENT "PATH: message" with PATH under one of `prefixes`.
void checkRefusal(const grpc::Status& status, std::initializer_list<std::string_view> prefixes) {
  FUZZ_CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  const std::string& message = status.error_message();
  bool named = false;
  for (const std::string_view prefix : prefixes) named = named || message.rfind(prefix, 0) == 0;
  if (!named) std::fprintf(stderr, "refusal names no expected field: \"%s\"\n", message.c_str());
  FUZZ_CHECK(named);
  FUZZ_CHECK(message.find(": ") != std::string::npos);
}

gw::ListenerConfig sentinelListener(const std::string& name) {
  gw::ListenerConfig listener;
  listener.name = name;
  listener.bind = SocketAddress::loopbackV4(8080);
  listener.cluster = "backends";
  return listener;
}

gw::ClusterConfig sentinelCluster(const std::string& name) {
  gw::ClusterConfig cluster;
  cluster.name = name;
  cluster.endpoints.push_back({*SocketAddress::parse("127.0.0.1:9000")});
  return cluster;
}

bool withinLimits(gw::Duration d) { return d.count() >= 0 && d <= limits::kMaxDuration; }

void checkListener(const gw::ListenerConfig& listener) {
  FUZZ_CHECK(limits::isValidName(listener.name) && limits::isValidName(listener.cluster));
  FUZZ_CHECK(listener.bufferLimit >= limits::kMinBufferLimit &&
             listener.bufferLimit <= limits::kMaxBufferLimit);
  FUZZ_CHECK(listener.maxConnections >= limits::kMinMaxConnections);
  FUZZ_CHECK(withinLimits(listener.idleTimeout) && listener.idleTimeout.count() > 0);
  FUZZ_CHECK(withinLimits(listener.halfCloseTimeout) && listener.halfCloseTimeout.count() > 0);
  FUZZ_CHECK(withinLimits(listener.maxLifetimeJitter));
  if (listener.maxLifetime) {
    FUZZ_CHECK(withinLimits(*listener.maxLifetime) && listener.maxLifetime->count() > 0);
    FUZZ_CHECK(listener.maxLifetimeJitter < *listener.maxLifetime);
  } else {
    FUZZ_CHECK(listener.maxLifetimeJitter.count() == 0);
  }
  v1::Listener proto;
  admin::listenerToProto(listener, proto);
  gw::ListenerConfig back;
  FUZZ_CHECK(admin::listenerFromProto(proto, back).ok());
  FUZZ_CHECK(back == listener);
}

void checkCluster(const gw::ClusterConfig& cluster) {
  FUZZ_CHECK(limits::isValidName(cluster.name));
  FUZZ_CHECK(!cluster.endpoints.empty());
  for (const gw::EndpointConfig& endpoint : cluster.endpoints) {
    FUZZ_CHECK(endpoint.weight >= limits::kMinWeight && endpoint.weight <= limits::kMaxWeight);
    FUZZ_CHECK(endpoint.address.port() != 0);
  }
  FUZZ_CHECK(cluster.maxConnectAttempts >= limits::kMinConnectAttempts &&
             cluster.maxConnectAttempts <= limits::kMaxConnectAttempts);
  FUZZ_CHECK(withinLimits(cluster.connectTimeout) && cluster.connectTimeout.count() > 0);
  if (cluster.healthCheck) FUZZ_CHECK(cluster.healthCheck->timeout < cluster.healthCheck->interval);
  FUZZ_CHECK(cluster.outlier.baseEjection <= cluster.outlier.maxEjection);
  v1::Cluster proto;
  admin::clusterToProto(cluster, proto);
  gw::ClusterConfig back;
  FUZZ_CHECK(admin::clusterFromProto(proto, back).ok());
  FUZZ_CHECK(back == cluster);
}

void createListener(const v1::CreateListenerRequest& request) {
  v1::Listener input = request.listener();
  input.set_paused(false);  // as ControlPlane::createListener: a new listener accepts
  const gw::ListenerConfig sentinel = sentinelListener("sentinel");
  gw::ListenerConfig out = sentinel;
  const grpc::Status status = admin::listenerFromProto(input, out);
  if (!status.ok()) {
    checkRefusal(status, {"listener."});
    FUZZ_CHECK(out == sentinel);
    return;
  }
  checkListener(out);
}

// UpdateListener against a current listener of the requested name, as the control plane merges.
grpc::Status updateListener(const v1::UpdateListenerRequest& request, gw::ListenerConfig& current) {
  if (grpc::Status status = admin::checkName(request.listener().name(), "listener.name");
      !status.ok()) {
    return status;
  }
  if (grpc::Status status = admin::checkListenerMask(request.update_mask()); !status.ok()) {
    return status;
  }
  v1::Listener merged;
  admin::listenerToProto(current, merged);
  admin::applyListenerUpdate(request.listener(), request.update_mask(), merged);
  return admin::listenerFromProto(merged, current);
}

void updateListener(const v1::UpdateListenerRequest& request) {
  const gw::ListenerConfig before = sentinelListener(request.listener().name());
  gw::ListenerConfig listener = before;
  const grpc::Status status = updateListener(request, listener);
  if (!status.ok()) {
    checkRefusal(status, {"listener.", "update_mask: "});
    FUZZ_CHECK(listener == before);
    return;
  }
  checkListener(listener);
  gw::ListenerConfig twice = listener;
  FUZZ_CHECK(updateListener(request, twice).ok());
  FUZZ_CHECK(twice == listener);
}

void createCluster(const v1::CreateClusterRequest& request) {
  const gw::ClusterConfig sentinel = sentinelCluster("sentinel");
  gw::ClusterConfig out = sentinel;
  const grpc::Status status = admin::clusterFromProto(request.cluster(), out);
  if (!status.ok()) {
    checkRefusal(status, {"cluster."});
    FUZZ_CHECK(out == sentinel);
    return;
  }
  checkCluster(out);
}

grpc::Status updateCluster(const v1::UpdateClusterRequest& request, gw::ClusterConfig& current) {
  if (grpc::Status status = admin::checkName(request.cluster().name(), "cluster.name");
      !status.ok()) {
    return status;
  }
  if (grpc::Status status = admin::checkClusterMask(request.update_mask()); !status.ok()) {
    return status;
  }
  v1::Cluster merged;
  admin::clusterToProto(current, merged);
  admin::applyClusterUpdate(request.cluster(), request.update_mask(), merged);
  return admin::clusterFromProto(merged, current);
}

void updateCluster(const v1::UpdateClusterRequest& request) {
  const gw::ClusterConfig before = sentinelCluster(request.cluster().name());
  gw::ClusterConfig cluster = before;
  const grpc::Status status = updateCluster(request, cluster);
  if (!status.ok()) {
    checkRefusal(status, {"cluster.", "update_mask: "});
    FUZZ_CHECK(cluster == before);
    return;
  }
  checkCluster(cluster);
  gw::ClusterConfig twice = cluster;
  FUZZ_CHECK(updateCluster(request, twice).ok());
  FUZZ_CHECK(twice == cluster);
}

void addEndpoint(const v1::AddEndpointRequest& request) {
  gw::EndpointConfig out;
  out.weight = 7;
  const gw::EndpointConfig before = out;
  const grpc::Status status = admin::endpointFromProto(request.endpoint(), out, "endpoint");
  if (!status.ok()) {
    checkRefusal(status, {"endpoint."});
    FUZZ_CHECK(out == before);
    return;
  }
  v1::Endpoint proto;
  admin::endpointToProto(out, proto);
  gw::EndpointConfig back;
  FUZZ_CHECK(admin::endpointFromProto(proto, back, "endpoint").ok());
  FUZZ_CHECK(back == out);
}

void setEndpointState(const v1::SetEndpointStateRequest& request) {
  SocketAddress address;
  grpc::Status status = admin::parseEndpointAddress(request.address(), "address", address);
  if (!status.ok()) {
    checkRefusal(status, {"address: "});
    FUZZ_CHECK(address == SocketAddress());
    return;
  }
  FUZZ_CHECK(SocketAddress::parse(address.toString()) == address);
  gw::EndpointAdminState state = gw::EndpointAdminState::kActive;
  status = admin::endpointStateFromProto(request.state(), state, "state");
  if (!status.ok()) {
    checkRefusal(status, {"state: "});
    return;
  }
  FUZZ_CHECK(admin::endpointStateToProto(state) == request.state());
}

void listFlows(const v1::ListFlowsRequest& request) {
  gw::FlowFilter out;
  out.listener = "sentinel";
  const grpc::Status status = admin::flowFilterFromProto(request.filter(), out);
  if (!status.ok()) {
    checkRefusal(status, {"filter."});
    FUZZ_CHECK(out.listener == "sentinel");
    return;
  }
  FUZZ_CHECK(out.listener == request.filter().listener());
  FUZZ_CHECK(out.cluster == request.filter().cluster());
  FUZZ_CHECK(out.endpoint.has_value() == !request.filter().endpoint().empty());
  FUZZ_CHECK(out.client.has_value() == !request.filter().client_cidr().empty());
}

void drain(const v1::DrainRequest& request) {
  gw::Duration out{12345};
  const grpc::Status status = admin::durationFromProto(request.timeout(), "timeout", out);
  if (!status.ok()) {
    checkRefusal(status, {"timeout: "});
    FUZZ_CHECK(out.count() == 12345);
    return;
  }
  FUZZ_CHECK(withinLimits(out));
  google::protobuf::Duration proto;
  admin::durationToProto(out, proto);
  FUZZ_CHECK(proto.seconds() == request.timeout().seconds());
  FUZZ_CHECK(proto.nanos() == request.timeout().nanos());
}

// Parses `bytes` as a `Request` and runs `check` on it; bytes that are no such message are
// refused by gRPC before any of our code runs, so they end here.
template <typename Request, typename Check>
void run(std::string_view bytes, Check check) {
  Request request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  check(request);
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses (and refuses the message); at
// thousands of inputs a second that log buries libFuzzer's. Errors that matter abort anyway.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 8) {
    case 0:
      run<v1::CreateListenerRequest>(bytes, createListener);
      break;
    case 1:
      run<v1::UpdateListenerRequest>(bytes, [](const auto& r) { updateListener(r); });
      break;
    case 2:
      run<v1::CreateClusterRequest>(bytes, createCluster);
      break;
    case 3:
      run<v1::UpdateClusterRequest>(bytes, [](const auto& r) { updateCluster(r); });
      break;
    case 4:
      run<v1::AddEndpointRequest>(bytes, addEndpoint);
      break;
    case 5:
      run<v1::SetEndpointStateRequest>(bytes, setEndpointState);
      break;
    case 6:
      run<v1::ListFlowsRequest>(bytes, listFlows);
      break;
    case 7:
      run<v1::DrainRequest>(bytes, drain);
      break;
  }
  return 0;
}
