// Fuzzes the configuration file parser and validator, the code behind `evgate --config` and
// `evgate --check-config`: YAML text in, a Config or a list of errors out. Checks the contract
// of config_parser.h: it never throws, a result has a Config exactly when it has no error, every
// error names the file and a position inside the text, errors come in file order, and parsing
// is deterministic. And the file and the admin API validate alike (gateway/config/limits.h): every
// listener and cluster of a valid file passes the API's checks and round-trips through its
// proto unchanged, as the state file needs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>

#include "admin/resource_convert.h"
#include "gateway/config/config_parser.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using evgate::gateway::ClusterConfig;
using evgate::gateway::Config;
using evgate::gateway::ConfigError;
using evgate::gateway::ConfigResult;
using evgate::gateway::ListenerConfig;
namespace admin = evgate::admin;

constexpr std::string_view kFileName = "fuzz.yaml";

bool inFileOrder(const ConfigError& a, const ConfigError& b) {
  return a.line < b.line || (a.line == b.line && a.column <= b.column);
}

void checkStatus(const grpc::Status& status) {
  if (!status.ok()) std::fprintf(stderr, "admin API refused: %s\n", status.error_message().c_str());
  FUZZ_CHECK(status.ok());
}

// What a valid Config promises beyond each value's own range: unique names, listeners that
// name a cluster that exists, and resources the admin API takes back as they are.
void checkValidConfig(const Config& config) {
  std::set<std::string> names;
  for (const ClusterConfig& cluster : config.clusters) {
    FUZZ_CHECK(names.insert(cluster.name).second);
    FUZZ_CHECK(!cluster.endpoints.empty());
    admin::v1::Cluster proto;
    admin::clusterToProto(cluster, proto);
    ClusterConfig back;
    checkStatus(admin::clusterFromProto(proto, back));
    FUZZ_CHECK(back == cluster);
  }
  names.clear();
  for (const ListenerConfig& listener : config.listeners) {
    FUZZ_CHECK(names.insert(listener.name).second);
    FUZZ_CHECK(config.findCluster(listener.cluster) != nullptr);
    admin::v1::Listener proto;
    admin::listenerToProto(listener, proto);
    ListenerConfig back;
    checkStatus(admin::listenerFromProto(proto, back));
    FUZZ_CHECK(back == listener);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Lines a position may name: each '\n' starts one more, and a parser may point just past
  // the end of the text.
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 2;

  const ConfigResult result = evgate::gateway::parseConfig(text, kFileName);
  FUZZ_CHECK(result.ok() == result.errors.empty());
  for (size_t i = 0; i < result.errors.size(); ++i) {
    const ConfigError& error = result.errors[i];
    FUZZ_CHECK(error.file == kFileName);
    FUZZ_CHECK(!error.message.empty());
    FUZZ_CHECK(error.line >= 1 && error.line <= lines);
    FUZZ_CHECK(error.column >= 1);
    if (i > 0) FUZZ_CHECK(inFileOrder(result.errors[i - 1], error));
  }

  if (result.ok()) checkValidConfig(*result.config);

  const ConfigResult again = evgate::gateway::parseConfig(text, kFileName);
  FUZZ_CHECK(again.errors == result.errors);
  FUZZ_CHECK(again.config == result.config);
  return 0;
}
