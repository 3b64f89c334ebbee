#include "gateway/config/config_parser.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <utility>

#include "gateway/config/limits.h"
#include "gateway/config/names.h"
#include "gateway/config/units.h"
#include "reactor/fatal.h"

namespace evgate::gateway {
namespace {

// The limits (limits.h) and enum names (names.h) are shared with the admin API's validation.
using namespace limits;  // NOLINT(google-build-using-namespace): kMax*, kMin*, isValidName

constexpr size_t kMaxQuotedLength = 60;
constexpr uint32_t kMaxUint32 = std::numeric_limits<uint32_t>::max();

// `text` in double quotes, with quotes, backslashes and control bytes escaped and long values
// cut, so that a message stays one readable line whatever the file holds.
std::string quote(std::string_view text) {
  std::string out = "\"";
  const bool cut = text.size() > kMaxQuotedLength;
  for (const char c : text.substr(0, kMaxQuotedLength)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += cut ? "...\"" : "\"";
  return out;
}

// What the user wrote, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "null";
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean "bind"?)" when one candidate is a likely typo of `text`, else "".
template <typename Range>
std::string suggestion(std::string_view text, const Range& candidates) {
  std::string_view best;
  size_t bestDistance = std::numeric_limits<size_t>::max();
  for (const auto& candidate : candidates) {
    const std::string_view name = candidate;
    const size_t distance = editDistance(text, name);
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, text.size() / 3));
  if (best.empty() || bestDistance > limit) return "";
  return " (did you mean " + quote(best) + "?)";
}

// A node and what to call it in messages. `mark` is where errors about it point: the node
// itself, or its key when the value is null (yaml-cpp marks an empty value at the next token,
// often on the following line).
struct Value {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;

  std::string child(std::string_view key) const {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  std::string item(size_t index) const { return path + "[" + std::to_string(index) + "]"; }
};

// yaml-cpp 0.7's LoadAll never returns on a token that cannot start a node at the top of a
// document (a stray ',': ",", "- a\n,\n"): the parser hands out empty documents without
// consuming the token, each one allocating, until memory runs out (jbeder/yaml-cpp#1040, fixed
// upstream after 0.8.0; found by tests/fuzz). A document starts on the token the previous one
// started on only when the parser is stuck, so this walks the documents, building nothing, and
// says where it got stuck. Syntax errors it meets are thrown, as LoadAll would throw them.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  YAML::Mark start;
};

std::optional<YAML::Mark> findStuckDocument(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  DocumentStarts documents;
  std::optional<YAML::Mark> previous;
  while (parser.HandleNextDocument(documents)) {
    if (previous && previous->pos == documents.start.pos) return documents.start;
    previous = documents.start;
  }
  return std::nullopt;
}

std::string position(const YAML::Mark& mark) {
  return std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

class Parser;

// The entries of one YAML map, checked against the keys a section knows: unknown and repeated
// keys are reported once, here; the section then takes the values it wants by name.
class MapFields {
 public:
  MapFields(Parser& parser, const Value& map, std::initializer_list<std::string_view> known);

  std::optional<Value> get(std::string_view key) const;

 private:
  struct Field {
    std::string name;
    YAML::Mark keyMark;
    Value value;
  };

  const Field* find(std::string_view key) const;

  std::vector<Field> fields_;
};

class Parser {
 public:
  explicit Parser(std::string_view fileName) : fileName_(fileName) {}

  ConfigResult run(std::string_view text);

  void error(const YAML::Mark& mark, const std::string& message) {
    ConfigError e;
    e.file = fileName_;
    e.line = mark.line < 0 ? 0 : mark.line + 1;
    e.column = mark.line < 0 ? 0 : mark.column + 1;
    e.message = message;
    errors_.push_back(std::move(e));
  }
  void error(const Value& value, const std::string& message) {
    error(value.mark, value.path.empty() ? message : value.path + ": " + message);
  }
  // "PATH: expected WHAT, got VALUE" and an optional hint such as " (did you mean ...?)".
  void expected(const Value& value, const std::string& what, const std::string& hint = "") {
    error(value, "expected " + what + ", got " + describe(value.node) + hint);
  }

 private:
  void parseDocuments(const std::vector<YAML::Node>& documents, Config& config);
  void parseRoot(const Value& root, Config& config);
  void parseAdmin(const Value& value, AdminConfig& admin);
  void parseAdminTls(const Value& value, AdminConfig& admin);
  void parseMetrics(const Value& value, MetricsConfig& metrics);
  void parseLog(const Value& value, LogConfig& log);
  void parseAccessLog(const Value& value, AccessLogConfig& accessLog);
  void parseClusters(const Value& value, std::vector<ClusterConfig>& clusters);
  std::optional<ClusterConfig> parseCluster(const Value& value);
  void parseEndpoints(const Value& value, std::vector<EndpointConfig>& endpoints);
  std::optional<EndpointConfig> parseEndpoint(const Value& value);
  void parseSourceAddresses(const Value& value, std::vector<reactor::SocketAddress>& sources);
  std::optional<HealthCheckConfig> parseHealthCheck(const Value& value);
  void parseOutlier(const Value& value, OutlierConfig& outlier);
  void parseListeners(const Value& value, std::vector<ListenerConfig>& listeners);
  std::optional<ListenerConfig> parseListener(const Value& value);
  void parseAllow(const Value& value, std::vector<Cidr>& allow);

  // Each reader reports what is wrong with the value and returns nullopt, or returns it.
  bool isMap(const Value& value);
  bool isSequence(const Value& value);
  std::optional<std::string> readString(const Value& value);
  std::optional<std::string> readName(const Value& value);
  std::optional<uint32_t> readInteger(const Value& value, uint32_t min, uint32_t max);
  std::optional<Duration> readDuration(const Value& value, bool allowZero);
  std::optional<size_t> readSize(const Value& value, size_t min, size_t max);
  std::optional<reactor::SocketAddress> readAddress(const Value& value, std::string_view example);
  template <typename T, size_t N>
  std::optional<T> readEnum(const Value& value, const std::array<EnumName<T>, N>& names);

  // Optional keys: when present and valid, the value replaces the default in `out`.
  template <typename T, typename Reader>
  void take(const MapFields& fields, std::string_view key, T& out, Reader reader) {
    const std::optional<Value> value = fields.get(key);
    if (!value) return;
    auto parsed = reader(*value);
    if (parsed) out = std::move(*parsed);
  }
  void missing(const Value& map, std::string_view key) {
    error(map, "missing required key " + quote(key));
  }

  // Checks across sections, once everything is read.
  void checkNames(const std::vector<std::pair<std::string, Value>>& names, std::string_view what);
  void checkClusterReferences();
  void checkAddressesAreDistinct();

  std::string fileName_;
  std::vector<ConfigError> errors_;
  // Where each name and address was written, for cross-checks and "(first at L:C)".
  std::vector<std::pair<std::string, Value>> clusterNames_;
  std::vector<std::pair<std::string, Value>> listenerNames_;
  std::vector<std::pair<std::string, Value>> listenerClusters_;
  std::vector<std::pair<reactor::SocketAddress, Value>> boundAddresses_;
};

MapFields::MapFields(Parser& parser, const Value& map,
                     std::initializer_list<std::string_view> known) {
  for (auto it = map.node.begin(); it != map.node.end(); ++it) {
    // Copies: `it->` yields a proxy that dies at the end of the statement.
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      parser.error(key.Mark(), (map.path.empty() ? "" : map.path + ": ") +
                                   "expected a plain key, got " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      parser.error(key.Mark(), (map.path.empty() ? "" : map.path + ": ") + "unknown key " +
                                   quote(name) + suggestion(name, known));
      continue;
    }
    if (const Field* first = find(name)) {
      parser.error(key.Mark(),
                   map.child(name) + ": duplicate key (first at " + position(first->keyMark) + ")");
      continue;
    }
    const YAML::Node node = it->second;
    const YAML::Mark mark = node.IsNull() ? key.Mark() : node.Mark();
    fields_.push_back(Field{name, key.Mark(), Value{node, map.child(name), mark}});
  }
}

const MapFields::Field* MapFields::find(std::string_view key) const {
  for (const Field& field : fields_) {
    if (field.name == key) return &field;
  }
  return nullptr;
}

std::optional<Value> MapFields::get(std::string_view key) const {
  const Field* field = find(key);
  if (field == nullptr) return std::nullopt;
  return field->value;
}

bool Parser::isMap(const Value& value) {
  if (value.node.IsMap()) return true;
  expected(value, "a map");
  return false;
}

bool Parser::isSequence(const Value& value) {
  if (value.node.IsSequence()) return true;
  expected(value, "a sequence");
  return false;
}

std::optional<std::string> Parser::readString(const Value& value) {
  if (value.node.IsScalar()) return value.node.Scalar();
  expected(value, "a string");
  return std::nullopt;
}

std::optional<std::string> Parser::readName(const Value& value) {
  if (value.node.IsScalar() && isValidName(value.node.Scalar())) return value.node.Scalar();
  expected(value, "a name of 1 to " + std::to_string(kMaxNameLength) +
                      " characters from A-Z a-z 0-9 _ . -");
  return std::nullopt;
}

std::optional<uint32_t> Parser::readInteger(const Value& value, uint32_t min, uint32_t max) {
  if (value.node.IsScalar()) {
    const std::string& text = value.node.Scalar();
    uint64_t number = 0;
    bool digits = !text.empty() && text.size() <= 10;
    for (const char c : text) {
      if (c < '0' || c > '9') digits = false;
      if (digits) number = number * 10 + static_cast<uint64_t>(c - '0');
    }
    if (digits && number >= min && number <= max) return static_cast<uint32_t>(number);
  }
  expected(value, max == kMaxUint32
                      ? "an integer of at least " + std::to_string(min)
                      : "an integer " + std::to_string(min) + ".." + std::to_string(max));
  return std::nullopt;
}

std::optional<Duration> Parser::readDuration(const Value& value, bool allowZero) {
  const std::optional<Duration> duration =
      value.node.IsScalar() ? parseDuration(value.node.Scalar()) : std::nullopt;
  if (!duration) {
    expected(value, "a duration like 5s");
  } else if (!allowZero && duration->count() == 0) {
    expected(value, "a duration greater than 0s");
  } else if (*duration > kMaxDuration) {
    expected(value, "a duration of at most " + formatDuration(kMaxDuration));
  } else {
    return duration;
  }
  return std::nullopt;
}

std::optional<size_t> Parser::readSize(const Value& value, size_t min, size_t max) {
  const std::optional<size_t> size =
      value.node.IsScalar() ? parseSize(value.node.Scalar()) : std::nullopt;
  if (!size) {
    expected(value, "a size like 64KiB");
  } else if (*size < min || *size > max) {
    expected(value, "a size from " + formatSize(min) + " to " + formatSize(max));
  } else {
    return size;
  }
  return std::nullopt;
}

std::optional<reactor::SocketAddress> Parser::readAddress(const Value& value,
                                                          std::string_view example) {
  std::optional<reactor::SocketAddress> address =
      value.node.IsScalar() ? reactor::SocketAddress::parse(value.node.Scalar()) : std::nullopt;
  if (!address) expected(value, "an address like " + std::string(example));
  return address;
}

template <typename T, size_t N>
std::optional<T> Parser::readEnum(const Value& value, const std::array<EnumName<T>, N>& names) {
  std::vector<std::string_view> choices;
  for (const EnumName<T>& entry : names) {
    if (value.node.IsScalar() && value.node.Scalar() == entry.name) return entry.value;
    choices.push_back(entry.name);
  }
  std::string list;
  for (const std::string_view choice : choices) {
    list += (list.empty() ? "" : ", ") + std::string(choice);
  }
  expected(value, "one of " + list,
           value.node.IsScalar() ? suggestion(value.node.Scalar(), choices) : "");
  return std::nullopt;
}

void Parser::parseDocuments(const std::vector<YAML::Node>& documents, Config& config) {
  // A second document would be silently ignored; empty ones ("---" at the end) do no harm.
  const auto second = std::find_if(documents.begin() + (documents.empty() ? 0 : 1), documents.end(),
                                   [](const YAML::Node& d) { return !d.IsNull(); });
  if (second != documents.end()) {
    error(second->Mark(), "expected one YAML document, found a second one here");
  }
  if (!documents.empty() && !documents[0].IsNull()) {
    parseRoot(Value{documents[0], "", documents[0].Mark()}, config);
  }
}

ConfigResult Parser::run(std::string_view text) {
  ConfigResult result;
  Config config;
  try {
    const std::string yamlText(text);
    if (const std::optional<YAML::Mark> stuck = findStuckDocument(yamlText)) {
      const auto at = static_cast<size_t>(stuck->pos);
      error(*stuck, at < yamlText.size()
                        ? "YAML syntax error: unexpected '" + std::string(1, yamlText[at]) + "'"
                        : std::string("YAML syntax error: unexpected token"));
    } else {
      parseDocuments(YAML::LoadAll(yamlText), config);
    }
  } catch (const YAML::Exception& e) {
    // A syntax error: the tree is unusable, so this is the only error reported.
    errors_.clear();
    error(e.mark, "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    errors_.clear();
    error(YAML::Mark::null_mark(), std::string("cannot parse: ") + e.what());
  }
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  result.errors = std::move(errors_);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

void Parser::parseRoot(const Value& root, Config& config) {
  if (!root.node.IsMap()) {
    error(root.mark, "expected a map of settings at the top level, got " + describe(root.node));
    return;
  }
  const MapFields fields(
      *this, root,
      {"workers", "listener_sockets", "drain_timeout", "max_buffered_bytes", "state_file",
       "config_watch", "admin", "metrics", "log", "access_log", "clusters", "listeners"});
  take(fields, "workers", config.workers,
       [&](const Value& v) { return readInteger(v, 0, kMaxWorkers); });
  take(fields, "listener_sockets", config.listenerSockets,
       [&](const Value& v) { return readEnum(v, kListenerSocketsNames); });
  take(fields, "drain_timeout", config.drainTimeout,
       [&](const Value& v) { return readDuration(v, true); });
  take(fields, "max_buffered_bytes", config.maxBufferedBytes,
       [&](const Value& v) -> std::optional<uint64_t> {
         const std::optional<size_t> size =
             v.node.IsScalar() ? parseSize(v.node.Scalar()) : std::nullopt;
         if (size && (*size == 0 || (*size >= kMinBufferBudget && *size <= kMaxBufferBudget))) {
           return *size;
         }
         expected(v, "0 (no budget) or a size from " + formatSize(kMinBufferBudget) + " to " +
                         formatSize(kMaxBufferBudget));
         return std::nullopt;
       });
  take(fields, "state_file", config.stateFile, [&](const Value& v) { return readString(v); });
  take(fields, "config_watch", config.configWatch,
       [&](const Value& v) { return readEnum(v, kBooleanNames); });
  if (const auto value = fields.get("admin")) parseAdmin(*value, config.admin);
  if (const auto value = fields.get("metrics")) parseMetrics(*value, config.metrics);
  if (const auto value = fields.get("log")) parseLog(*value, config.log);
  if (const auto value = fields.get("access_log")) parseAccessLog(*value, config.accessLog);
  if (const auto value = fields.get("clusters")) parseClusters(*value, config.clusters);
  if (const auto value = fields.get("listeners")) parseListeners(*value, config.listeners);

  checkNames(clusterNames_, "cluster");
  checkNames(listenerNames_, "listener");
  checkClusterReferences();
  checkAddressesAreDistinct();
}

void Parser::parseAdmin(const Value& value, AdminConfig& admin) {
  if (!isMap(value)) return;
  const MapFields fields(*this, value,
                         {"address", "health_address", "token_file", "read_only_token_file",
                          "insecure", "max_watchers", "max_message_size", "tls"});
  const std::optional<Value> address = fields.get("address");
  bool addressOk = true;
  if (address) {
    const auto parsed = readAddress(*address, "127.0.0.1:9901");
    addressOk = parsed.has_value();
    if (parsed) {
      admin.address = address->node.Scalar();
      boundAddresses_.emplace_back(*parsed, *address);
    }
  }
  if (const auto health = fields.get("health_address")) {
    if (const auto parsed = readAddress(*health, "0.0.0.0:9903")) {
      admin.healthAddress = health->node.Scalar();
      boundAddresses_.emplace_back(*parsed, *health);
    }
  }
  const auto readFile = [&](const Value& v) { return readString(v); };
  take(fields, "token_file", admin.tokenFile, readFile);
  take(fields, "read_only_token_file", admin.readOnlyTokenFile, readFile);
  take(fields, "insecure", admin.insecure,
       [&](const Value& v) { return readEnum(v, kBooleanNames); });
  // Watch streams each hold a queue of events; message sizes bound what one call may allocate.
  constexpr uint32_t kMaxWatchers = 10000;
  constexpr size_t kMinMessageSize = size_t{4} << 10;
  constexpr size_t kMaxMessageSize = size_t{64} << 20;
  take(fields, "max_watchers", admin.maxWatchers,
       [&](const Value& v) { return readInteger(v, 1, kMaxWatchers); });
  take(fields, "max_message_size", admin.maxMessageSize,
       [&](const Value& v) { return readSize(v, kMinMessageSize, kMaxMessageSize); });
  if (const auto tls = fields.get("tls")) parseAdminTls(*tls, admin);

  if (!admin.readOnlyTokenFile.empty()) {
    // A read-only token alone would leave nobody able to change anything; mTLS plus a read-only
    // token likewise, since with both configured the token decides the role.
    if (admin.tokenFile.empty()) {
      error(*fields.get("read_only_token_file"),
            "needs admin.token_file (the read-only token is a second, weaker token)");
    } else if (admin.readOnlyTokenFile == admin.tokenFile) {
      error(*fields.get("read_only_token_file"), "must differ from admin.token_file");
    }
  }
  // Anyone who can reach a non-loopback address could reconfigure the gateway: demand
  // credentials, or an explicit opt-out for networks that are protected some other way.
  if (address && addressOk && !admin.isLoopback() && admin.tokenFile.empty() &&
      admin.tlsClientCaFile.empty() && !admin.insecure) {
    error(*address, admin.address +
                        " is not loopback; set admin.token_file, admin.tls.client_ca_file, or "
                        "admin.insecure: true");
  }
}

void Parser::parseAdminTls(const Value& value, AdminConfig& admin) {
  if (!isMap(value)) return;
  const MapFields fields(*this, value, {"cert_file", "key_file", "client_ca_file"});
  const auto readFile = [&](const Value& v) { return readString(v); };
  take(fields, "cert_file", admin.tlsCertFile, readFile);
  take(fields, "key_file", admin.tlsKeyFile, readFile);
  take(fields, "client_ca_file", admin.tlsClientCaFile, readFile);
  if (admin.tlsCertFile.empty() != admin.tlsKeyFile.empty()) {
    error(value, "cert_file and key_file must be set together");
  } else if (!admin.tlsClientCaFile.empty() && admin.tlsCertFile.empty()) {
    error(*fields.get("client_ca_file"), "needs cert_file and key_file (mutual TLS is TLS first)");
  }
}

void Parser::parseMetrics(const Value& value, MetricsConfig& metrics) {
  if (!isMap(value)) return;
  const MapFields fields(*this, value, {"address", "listener_detail"});
  if (const auto address = fields.get("address")) {
    if (const auto parsed = readAddress(*address, "127.0.0.1:9902")) {
      metrics.address = address->node.Scalar();
      boundAddresses_.emplace_back(*parsed, *address);
    }
  }
  take(fields, "listener_detail", metrics.listenerDetail,
       [&](const Value& v) { return readEnum(v, kListenerDetailNames); });
}

void Parser::parseLog(const Value& value, LogConfig& log) {
  if (!isMap(value)) return;
  const MapFields fields(*this, value, {"format", "level", "queue_limit"});
  take(fields, "format", log.format, [&](const Value& v) { return readEnum(v, kLogFormatNames); });
  take(fields, "level", log.level, [&](const Value& v) { return readEnum(v, kLogLevelNames); });
  take(fields, "queue_limit", log.queueLimit,
       [&](const Value& v) { return readSize(v, kMinLogQueue, kMaxLogQueue); });
}

void Parser::parseAccessLog(const Value& value, AccessLogConfig& accessLog) {
  if (!isMap(value)) return;
  const MapFields fields(*this, value, {"mode", "path", "queue_limit"});
  const std::optional<Value> mode = fields.get("mode");
  const std::optional<Value> path = fields.get("path");
  take(fields, "mode", accessLog.mode,
       [&](const Value& v) { return readEnum(v, kAccessLogModeNames); });
  take(fields, "path", accessLog.path, [&](const Value& v) { return readString(v); });
  take(fields, "queue_limit", accessLog.queueLimit,
       [&](const Value& v) { return readSize(v, kMinLogQueue, kMaxLogQueue); });
  if (mode && mode->node.IsScalar() && mode->node.Scalar() == "file" && accessLog.path.empty()) {
    error(*mode, "\"file\" needs a non-empty access_log.path");
  }
  if (path && mode && mode->node.IsScalar() && mode->node.Scalar() != "file") {
    error(*path, "only used with mode: file");
  } else if (path && !mode) {
    error(*path, "only used with mode: file (the default mode is stdout)");
  }
}

void Parser::parseClusters(const Value& value, std::vector<ClusterConfig>& clusters) {
  if (!isSequence(value)) return;
  for (size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node node = value.node[i];
    if (auto cluster = parseCluster(Value{node, value.item(i), node.Mark()})) {
      clusters.push_back(std::move(*cluster));
    }
  }
}

std::optional<ClusterConfig> Parser::parseCluster(const Value& value) {
  if (!isMap(value)) return std::nullopt;
  const size_t errorsBefore = errors_.size();
  const MapFields fields(*this, value,
                         {"name", "lb", "endpoints", "connect_timeout", "max_connect_attempts",
                          "health_check", "send_proxy_protocol", "outlier", "source_addresses"});
  ClusterConfig cluster;
  if (const auto name = fields.get("name")) {
    if (auto parsed = readName(*name)) {
      cluster.name = *parsed;
      clusterNames_.emplace_back(std::move(*parsed), *name);
    }
  } else {
    missing(value, "name");
  }
  take(fields, "lb", cluster.lb, [&](const Value& v) { return readEnum(v, kLbPolicyNames); });
  if (const auto endpoints = fields.get("endpoints")) {
    parseEndpoints(*endpoints, cluster.endpoints);
  } else {
    missing(value, "endpoints");
  }
  take(fields, "connect_timeout", cluster.connectTimeout,
       [&](const Value& v) { return readDuration(v, false); });
  take(fields, "max_connect_attempts", cluster.maxConnectAttempts,
       [&](const Value& v) { return readInteger(v, kMinConnectAttempts, kMaxConnectAttempts); });
  if (const auto healthCheck = fields.get("health_check")) {
    cluster.healthCheck = parseHealthCheck(*healthCheck);
  }
  take(fields, "send_proxy_protocol", cluster.sendProxyProtocol,
       [&](const Value& v) { return readEnum(v, kProxyProtocolNames); });
  if (const auto outlier = fields.get("outlier")) parseOutlier(*outlier, cluster.outlier);
  if (const auto sources = fields.get("source_addresses")) {
    parseSourceAddresses(*sources, cluster.sourceAddresses);
  }
  if (errors_.size() != errorsBefore) return std::nullopt;
  return cluster;
}

void Parser::parseEndpoints(const Value& value, std::vector<EndpointConfig>& endpoints) {
  if (!isSequence(value)) return;
  if (value.node.size() == 0) {
    error(value, "expected at least one endpoint");
    return;
  }
  std::vector<YAML::Mark> marks;  // marks[i]: where endpoints[i] was written
  for (size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node node = value.node[i];
    const Value item{node, value.item(i), node.Mark()};
    const std::optional<EndpointConfig> endpoint = parseEndpoint(item);
    if (!endpoint) continue;
    const auto first = std::find_if(
        endpoints.begin(), endpoints.end(),
        [&](const EndpointConfig& other) { return other.address == endpoint->address; });
    if (first != endpoints.end()) {
      error(item, "duplicate endpoint " + endpoint->address.toString() + " (first at " +
                      position(marks[static_cast<size_t>(first - endpoints.begin())]) + ")");
      continue;
    }
    endpoints.push_back(*endpoint);
    marks.push_back(item.mark);
  }
}

std::optional<EndpointConfig> Parser::parseEndpoint(const Value& value) {
  constexpr std::string_view kExample = "127.0.0.1:9000 or [::1]:9000";
  const size_t errorsBefore = errors_.size();
  EndpointConfig endpoint;
  Value address = value;
  if (value.node.IsMap()) {
    const MapFields fields(*this, value, {"address", "weight", "state"});
    take(fields, "weight", endpoint.weight,
         [&](const Value& v) { return readInteger(v, kMinWeight, kMaxWeight); });
    take(fields, "state", endpoint.state,
         [&](const Value& v) { return readEnum(v, kEndpointAdminStateNames); });
    const std::optional<Value> field = fields.get("address");
    if (!field) {
      missing(value, "address");
      return std::nullopt;
    }
    address = *field;
  } else if (!value.node.IsScalar()) {
    expected(value, "an endpoint \"ADDRESS:PORT\" or {address: ADDRESS:PORT, weight: N}");
    return std::nullopt;
  }
  if (const auto parsed = readAddress(address, kExample)) {
    if (parsed->port() == 0) {
      expected(address, "an address with a port 1..65535");
    } else {
      endpoint.address = *parsed;
    }
  }
  if (errors_.size() != errorsBefore) return std::nullopt;
  return endpoint;
}

void Parser::parseSourceAddresses(const Value& value,
                                  std::vector<reactor::SocketAddress>& sources) {
  if (!isSequence(value)) return;
  std::vector<YAML::Mark> marks;  // marks[i]: where sources[i] was written
  for (size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node node = value.node[i];
    const Value item{node, value.item(i), node.Mark()};
    const std::optional<reactor::SocketAddress> source =
        node.IsScalar() ? parseSourceAddress(node.Scalar()) : std::nullopt;
    if (!source) {
      expected(item, "an address without a port like 10.0.0.5 or 2001:db8::5");
      continue;
    }
    const auto first = std::find(sources.begin(), sources.end(), *source);
    if (first != sources.end()) {
      error(item, "duplicate source address " + formatSourceAddress(*source) + " (first at " +
                      position(marks[static_cast<size_t>(first - sources.begin())]) + ")");
      continue;
    }
    sources.push_back(*source);
    marks.push_back(item.mark);
  }
}

std::optional<HealthCheckConfig> Parser::parseHealthCheck(const Value& value) {
  if (!isMap(value)) return std::nullopt;
  const size_t errorsBefore = errors_.size();
  const MapFields fields(*this, value,
                         {"interval", "timeout", "unhealthy_threshold", "healthy_threshold"});
  HealthCheckConfig check;
  const auto readPositive = [&](const Value& v) { return readDuration(v, false); };
  const auto readThreshold = [&](const Value& v) {
    return readInteger(v, kMinHealthThreshold, kMaxHealthThreshold);
  };
  take(fields, "interval", check.interval, readPositive);
  take(fields, "timeout", check.timeout, readPositive);
  take(fields, "unhealthy_threshold", check.unhealthyThreshold, readThreshold);
  take(fields, "healthy_threshold", check.healthyThreshold, readThreshold);
  if (errors_.size() != errorsBefore) return std::nullopt;
  if (check.timeout >= check.interval) {
    // Blame the key the user wrote; with both written, the timeout.
    if (const auto timeout = fields.get("timeout")) {
      expected(*timeout, "a duration less than interval (" + formatDuration(check.interval) + ")");
    } else {
      expected(*fields.get("interval"),
               "a duration greater than timeout (" + formatDuration(check.timeout) + ")");
    }
    return std::nullopt;
  }
  return check;
}

void Parser::parseOutlier(const Value& value, OutlierConfig& outlier) {
  if (!isMap(value)) return;
  const size_t errorsBefore = errors_.size();
  const MapFields fields(*this, value, {"consecutive_failures", "base_ejection", "max_ejection"});
  take(fields, "consecutive_failures", outlier.consecutiveFailures,
       [&](const Value& v) { return readInteger(v, 0, kMaxConsecutiveFailures); });
  const auto readPositive = [&](const Value& v) { return readDuration(v, false); };
  take(fields, "base_ejection", outlier.baseEjection, readPositive);
  take(fields, "max_ejection", outlier.maxEjection, readPositive);
  if (errors_.size() != errorsBefore || outlier.baseEjection <= outlier.maxEjection) return;
  if (const auto maxEjection = fields.get("max_ejection")) {
    expected(*maxEjection,
             "a duration of at least base_ejection (" + formatDuration(outlier.baseEjection) + ")");
  } else {
    expected(*fields.get("base_ejection"),
             "a duration of at most max_ejection (" + formatDuration(outlier.maxEjection) + ")");
  }
}

void Parser::parseListeners(const Value& value, std::vector<ListenerConfig>& listeners) {
  if (!isSequence(value)) return;
  for (size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node node = value.node[i];
    if (auto listener = parseListener(Value{node, value.item(i), node.Mark()})) {
      listeners.push_back(std::move(*listener));
    }
  }
}

std::optional<ListenerConfig> Parser::parseListener(const Value& value) {
  if (!isMap(value)) return std::nullopt;
  const size_t errorsBefore = errors_.size();
  const MapFields fields(
      *this, value,
      {"name", "bind", "cluster", "max_connections", "buffer_limit", "idle_timeout",
       "half_close_timeout", "max_lifetime", "max_lifetime_jitter", "allow", "proxy_protocol",
       "proxy_protocol_timeout", "splice", "paused"});
  ListenerConfig listener;
  if (const auto name = fields.get("name")) {
    if (auto parsed = readName(*name)) {
      listener.name = *parsed;
      listenerNames_.emplace_back(std::move(*parsed), *name);
    }
  } else {
    missing(value, "name");
  }
  if (const auto bind = fields.get("bind")) {
    if (const auto parsed = readAddress(*bind, "0.0.0.0:8080 or [::]:8080")) {
      listener.bind = *parsed;
      boundAddresses_.emplace_back(*parsed, *bind);
    }
  } else {
    missing(value, "bind");
  }
  if (const auto cluster = fields.get("cluster")) {
    if (auto parsed = readString(*cluster)) {
      listener.cluster = *parsed;
      listenerClusters_.emplace_back(std::move(*parsed), *cluster);
    }
  } else {
    missing(value, "cluster");
  }
  take(fields, "max_connections", listener.maxConnections,
       [&](const Value& v) { return readInteger(v, kMinMaxConnections, kMaxUint32); });
  take(fields, "buffer_limit", listener.bufferLimit,
       [&](const Value& v) { return readSize(v, kMinBufferLimit, kMaxBufferLimit); });
  const auto readPositive = [&](const Value& v) { return readDuration(v, false); };
  take(fields, "idle_timeout", listener.idleTimeout, readPositive);
  take(fields, "half_close_timeout", listener.halfCloseTimeout, readPositive);
  take(fields, "max_lifetime", listener.maxLifetime, readPositive);
  take(fields, "max_lifetime_jitter", listener.maxLifetimeJitter,
       [&](const Value& v) { return readDuration(v, true); });
  if (const auto allow = fields.get("allow")) parseAllow(*allow, listener.allow);
  take(fields, "proxy_protocol", listener.acceptProxyProtocol,
       [&](const Value& v) { return readEnum(v, kAcceptProxyProtocolNames); });
  take(fields, "proxy_protocol_timeout", listener.proxyProtocolTimeout, readPositive);
  take(fields, "splice", listener.splice,
       [&](const Value& v) { return readEnum(v, kSpliceModeNames); });
  take(fields, "paused", listener.paused,
       [&](const Value& v) { return readEnum(v, kBooleanNames); });
  if (errors_.size() != errorsBefore) return std::nullopt;

  if (listener.maxLifetimeJitter.count() > 0) {
    const Value jitter = *fields.get("max_lifetime_jitter");
    if (!listener.maxLifetime) {
      error(jitter, "needs max_lifetime");
      return std::nullopt;
    }
    if (listener.maxLifetimeJitter >= *listener.maxLifetime) {
      expected(jitter,
               "a duration less than max_lifetime (" + formatDuration(*listener.maxLifetime) + ")");
      return std::nullopt;
    }
  }
  return listener;
}

void Parser::parseAllow(const Value& value, std::vector<Cidr>& allow) {
  if (!isSequence(value)) return;
  for (size_t i = 0; i < value.node.size(); ++i) {
    const YAML::Node node = value.node[i];
    const Value item{node, value.item(i), node.Mark()};
    if (!node.IsScalar()) {
      expected(item, "a CIDR like 10.0.0.0/8 or 2001:db8::/32");
      continue;
    }
    if (const std::optional<Cidr> cidr = Cidr::parse(node.Scalar())) {
      allow.push_back(*cidr);
    } else if (const std::optional<Cidr> masked = Cidr::parseMasked(node.Scalar())) {
      error(item, quote(node.Scalar()) + " has bits set after the prefix (did you mean " +
                      quote(masked->toString()) + "?)");
    } else {
      expected(item, "a CIDR like 10.0.0.0/8 or 2001:db8::/32");
    }
  }
}

void Parser::checkNames(const std::vector<std::pair<std::string, Value>>& names,
                        std::string_view what) {
  for (size_t i = 0; i < names.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (names[j].first != names[i].first) continue;
      error(names[i].second, "duplicate " + std::string(what) + " name " + quote(names[i].first) +
                                 " (first at " + position(names[j].second.mark) + ")");
      break;
    }
  }
}

void Parser::checkClusterReferences() {
  std::vector<std::string> known;
  for (const auto& [name, value] : clusterNames_) known.push_back(name);
  for (const auto& [name, value] : listenerClusters_) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    error(value, "unknown cluster " + quote(name) + suggestion(name, known));
  }
}

void Parser::checkAddressesAreDistinct() {
  for (size_t i = 0; i < boundAddresses_.size(); ++i) {
    // Port 0 asks the kernel for a fresh port each time: never a clash.
    if (boundAddresses_[i].first.port() == 0) continue;
    for (size_t j = 0; j < i; ++j) {
      if (!(boundAddresses_[j].first == boundAddresses_[i].first)) continue;
      error(boundAddresses_[i].second, boundAddresses_[i].first.toString() +
                                           " is already used by " + boundAddresses_[j].second.path +
                                           " (at " + position(boundAddresses_[j].second.mark) +
                                           ")");
      break;
    }
  }
}

}  // namespace

std::string ConfigError::toString() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

ConfigResult parseConfig(std::string_view yamlText, std::string_view fileName) {
  return Parser(fileName).run(yamlText);
}

std::optional<ConfigError> readConfigFile(const std::string& path, std::string& text) {
  // open/read rather than ifstream: the message needs errno (a directory opens fine and fails on
  // read with EISDIR; ifstream hides both).
  text.clear();
  int savedErrno = 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    savedErrno = errno;
  } else {
    char chunk[16384];
    while (true) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n > 0) {
        text.append(chunk, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        savedErrno = errno;
        break;
      }
    }
    ::close(fd);
  }
  if (savedErrno == 0) return std::nullopt;
  return ConfigError{path, 0, 0,
                     std::string("cannot read file: ") + reactor::errnoText(savedErrno)};
}

ConfigResult loadConfigFile(const std::string& path) {
  std::string text;
  if (auto error = readConfigFile(path, text)) {
    ConfigResult result;
    result.errors.push_back(std::move(*error));
    return result;
  }
  return parseConfig(text, path);
}

}  // namespace evgate::gateway
