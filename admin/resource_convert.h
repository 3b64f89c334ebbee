#pragma once

// API resources (proto) <-> the gateway's configuration model. The *FromProto functions validate
// every field against the rules of the configuration file (gateway/config/limits.h) and answer
// INVALID_ARGUMENT naming the first bad field ("listener.buffer_limit_bytes: expected ...");
// they never change `out` on failure. The *ToProto functions fill the writable fields only; the
// caller adds the output-only ones. listenerFromProto(listenerToProto(c)) == c, and the same for
// clusters, so a resource can round-trip through the state file.
//
// Pure functions: safe from any thread.

#include <grpcpp/support/status.h>

#include <string>
#include <string_view>

#include "evgate/admin/v1/admin.pb.h"
#include "gateway/config/config.h"
#include "gateway/flow_query.h"

namespace evgate::admin {

grpc::Status listenerFromProto(const v1::Listener& in, gateway::ListenerConfig& out,
                               std::string_view path = "listener");
void listenerToProto(const gateway::ListenerConfig& in, v1::Listener& out);

grpc::Status clusterFromProto(const v1::Cluster& in, gateway::ClusterConfig& out,
                              std::string_view path = "cluster");
void clusterToProto(const gateway::ClusterConfig& in, v1::Cluster& out);

grpc::Status endpointFromProto(const v1::Endpoint& in, gateway::EndpointConfig& out,
                               std::string_view path);
void endpointToProto(const gateway::EndpointConfig& in, v1::Endpoint& out);

// An endpoint state that must be set (UNSPECIFIED is INVALID_ARGUMENT).
grpc::Status endpointStateFromProto(v1::EndpointState in, gateway::EndpointAdminState& out,
                                    std::string_view path);
v1::EndpointState endpointStateToProto(gateway::EndpointAdminState state);

// Endpoint and client_cidr are parsed; names are taken as given (an unknown name matches
// nothing).
grpc::Status flowFilterFromProto(const v1::FlowFilter& in, gateway::FlowFilter& out,
                                 std::string_view path = "filter");

// A resource name: 1 to 64 characters from A-Z a-z 0-9 _ . -
grpc::Status checkName(std::string_view name, std::string_view path);
// "host:port" with a port 1..65535 (an endpoint or a flow's upstream).
grpc::Status parseEndpointAddress(std::string_view text, std::string_view path,
                                  reactor::SocketAddress& out);

// A Duration that is set, not negative and well formed, as nanoseconds; INVALID_ARGUMENT
// otherwise.
grpc::Status durationFromProto(const google::protobuf::Duration& in, std::string_view path,
                               gateway::Duration& out);
void durationToProto(gateway::Duration in, google::protobuf::Duration& out);

// INVALID_ARGUMENT "PATH: MESSAGE".
grpc::Status invalidArgument(std::string_view path, std::string_view message);

}  // namespace evgate::admin
