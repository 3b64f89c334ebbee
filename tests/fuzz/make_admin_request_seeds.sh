#!/usr/bin/env bash
# Writes the admin_request fuzzer's seeds (corpus/admin_request/) from the text-format requests
# below: one byte naming the request type (as admin_request_fuzzer.cc numbers them), then the
# request in protobuf's wire format, encoded by protoc. Run again after changing a seed here.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/admin_request
proto_dir=../../proto
mkdir -p "$out"

# seed NAME KIND MESSAGE TEXT
seed() {
  local name=$1 kind=$2 message=$3 text=$4
  {
    printf "\\x$(printf %02x "$kind")"
    printf '%s\n' "$text" |
      protoc --encode="evgate.admin.v1.$message" -I "$proto_dir" "$proto_dir/evgate/admin/v1/admin.proto"
  } >"$out/$name"
}

seed create_listener 0 CreateListenerRequest '
listener { name: "web" bind: "0.0.0.0:8080" cluster: "backends" max_connections: 500
  buffer_limit_bytes: 1048576 idle_timeout { seconds: 600 } half_close_timeout { seconds: 15 }
  max_lifetime { seconds: 3600 } max_lifetime_jitter { seconds: 300 }
  allow: "10.0.0.0/8" allow: "::1" accept_proxy_protocol: true
  proxy_protocol_timeout { nanos: 500000000 } splice: SPLICE_MODE_OFF }'
seed create_listener_bad_bind 0 CreateListenerRequest '
listener { name: "web" bind: "localhost:80" cluster: "backends" }'
seed create_listener_host_bits 0 CreateListenerRequest '
listener { name: "web" bind: "[::]:0" cluster: "b" allow: "10.0.0.1/8" }'
seed update_listener 1 UpdateListenerRequest '
listener { name: "web" idle_timeout { seconds: 30 } allow: "2001:db8::/32" }
update_mask { paths: "idle_timeout" paths: "allow" }'
seed update_listener_bad_mask 1 UpdateListenerRequest '
listener { name: "web" } update_mask { paths: "bound_address" }'
seed create_cluster 2 CreateClusterRequest '
cluster { name: "backends" lb: LB_POLICY_LEAST_CONNECTIONS
  endpoints { address: "127.0.0.1:9000" } endpoints { address: "[::1]:9001" weight: 2
  state: ENDPOINT_STATE_DRAINING }
  connect_timeout { seconds: 2 } max_connect_attempts: 4
  health_check { interval { seconds: 10 } timeout { nanos: 500000000 } unhealthy_threshold: 4
  healthy_threshold: 3 }
  outlier { consecutive_failures: 0 base_ejection { seconds: 2 } max_ejection { seconds: 60 } }
  send_proxy_protocol: PROXY_PROTOCOL_VERSION_V2 source_addresses: "10.0.0.5"
  source_addresses: "2001:db8::5" }'
seed create_cluster_duplicate 2 CreateClusterRequest '
cluster { name: "b" endpoints { address: "127.0.0.1:9000" } endpoints { address: "127.0.0.1:9000" } }'
seed update_cluster 3 UpdateClusterRequest '
cluster { name: "backends" health_check { timeout { seconds: 1 } } }
update_mask { paths: "health_check.timeout" }'
seed update_cluster_all 3 UpdateClusterRequest '
cluster { name: "backends" endpoints { address: "10.1.2.3:80" weight: 1000 } }'
seed add_endpoint 4 AddEndpointRequest '
cluster: "backends" endpoint { address: "[fe80::1]:443" weight: 3 state: ENDPOINT_STATE_DISABLED }'
seed set_endpoint_state 5 SetEndpointStateRequest '
cluster: "backends" address: "127.0.0.1:9000" state: ENDPOINT_STATE_ACTIVE'
seed list_flows 6 ListFlowsRequest '
filter { listener: "web" endpoint: "127.0.0.1:9000" client_cidr: "::ffff:10.0.0.0/104"
  min_age { seconds: 1 } min_idle { nanos: 1 } }'
seed drain 7 DrainRequest 'timeout { seconds: 315360000 nanos: 999999999 }'
seed drain_negative 7 DrainRequest 'timeout { seconds: -1 }'
