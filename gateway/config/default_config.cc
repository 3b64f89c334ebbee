#include "gateway/config/default_config.h"

namespace evgate::gateway {

const char* defaultConfigYaml() {
  return R"(# evgate embedded default configuration; see docs/configuration.md.
workers: 0                  # 0 = one per CPU
drain_timeout: 30s
max_buffered_bytes: 0       # memory budget for relayed bytes; 0: none
state_file: ""              # empty: runtime changes are not persisted
admin:
  address: 127.0.0.1:9901
  token_file: ""
  tls: { cert_file: "", key_file: "", client_ca_file: "" }
metrics:
  address: 127.0.0.1:9902
log:
  format: text
  level: info
  queue_limit: 1MiB           # lines waiting for stderr's reader; beyond, dropped and counted
access_log:
  mode: stdout
  queue_limit: 8MiB
clusters: []
listeners: []
)";
}

}  // namespace evgate::gateway
