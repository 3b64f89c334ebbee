#pragma once

// UpdateListener and UpdateCluster: which fields a request's update_mask may name, and how the
// named fields of the request's resource replace those of the current one. Apart from the
// control plane so that the admin request fuzzer (tests/fuzz) drives the same code.
//
// Pure functions: safe from any thread.

#include <google/protobuf/field_mask.pb.h>
#include <grpcpp/support/status.h>

#include "evgate/admin/v1/admin.pb.h"

namespace evgate::admin {

// OK if every path names a field of the resource ("idle_timeout", or a nested one like
// "health_check.timeout") under a writable top-level field (not the name, not output-only);
// INVALID_ARGUMENT "update_mask: \"PATH\" is not a writable listener field" otherwise.
grpc::Status checkListenerMask(const google::protobuf::FieldMask& mask);
grpc::Status checkClusterMask(const google::protobuf::FieldMask& mask);

// Copies the fields `mask` names (every writable field when it is empty) from `update` into
// `current`; messages and lists are replaced whole, not merged. `mask` must have passed the
// check above.
void applyListenerUpdate(const v1::Listener& update, const google::protobuf::FieldMask& mask,
                         v1::Listener& current);
void applyClusterUpdate(const v1::Cluster& update, const google::protobuf::FieldMask& mask,
                        v1::Cluster& current);

}  // namespace evgate::admin
