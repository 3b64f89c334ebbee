#pragma once

// A real Prometheus (the `prometheus` binary) as a child process on 127.0.0.1, scraping one
// target as job "evgate" and optionally loading rule files, with its HTTP API read back as
// parsed results:
//
//   PrometheusOptions options;
//   options.binary = PROMETHEUS_BINARY;
//   options.target = "127.0.0.1:" + std::to_string(metricsPort);
//   options.ruleFiles = {rulesPath};
//   PrometheusServer prometheus(options);
//   ASSERT_TRUE(prometheus.ok()) << prometheus.error();
//   PromQueryResult up = prometheus.waitForSeries("up{job=\"evgate\"} == 1", Clock::now() + 15s);
//   ASSERT_FALSE(up.samples.empty()) << up.describe();
//
// Timing (Prometheus 2.42, 1 s intervals): it answers ~0.1 s after start; the first scrape lands
// ~5-6 s later (service discovery hands targets over in 5 s batches), and rate() over a range
// has two points ~7 s after start. Rules are evaluated from the start, every evaluation interval.
//
// The storage and the configuration live in a temporary directory removed with the object; the
// destructor stops the process (SIGTERM, then SIGKILL after 3 s).
//
// Thread rule: one thread at a time (it owns a Process).

#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/http_get.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {

using Labels = std::map<std::string, std::string>;

inline std::string describeLabels(const Labels& labels) {
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ", ";
    out += name + "=\"" + value + "\"";
  }
  return out + "}";
}

// One series of an instant query's result (or the one value of a scalar or string result; for a
// range-vector result, the series with its last value).
struct PromSample {
  Labels labels;       // including __name__ when the result keeps it
  std::string text;    // the value as Prometheus wrote it: "1", "+Inf", "NaN", ...
  double value = 0.0;  // parsed from text
};

struct PromQueryResult {
  std::string status;     // "success" or "error" (Prometheus's), or "" if no answer was parsed
  std::string errorType;  // Prometheus's ("bad_data", "execution", ...), or "transport"/"json"
  std::string error;
  std::string resultType;  // "vector", "scalar", "matrix" or "string"
  std::vector<PromSample> samples;
  std::vector<std::string> warnings;

  bool ok() const { return status == "success"; }
  std::string describe() const {
    std::ostringstream out;
    if (!ok()) {
      out << "error (" << errorType << "): " << error;
      return out.str();
    }
    out << resultType << " with " << samples.size() << " samples";
    for (const PromSample& sample : samples) {
      out << "\n  " << describeLabels(sample.labels) << " " << sample.text;
    }
    for (const std::string& warning : warnings) out << "\n  warning: " << warning;
    return out.str();
  }
};

// A rule as /api/v1/rules reports it.
struct PromRule {
  std::string group;
  std::string name;                 // the recorded series or the alert's name
  std::string type;                 // "recording" or "alerting"
  std::string query;                // the expression as Prometheus formats it
  std::string health;               // "ok", "err" or "unknown" (not evaluated yet)
  std::string lastError;            // empty when the last evaluation succeeded
  std::string state;                // alerting rules: "inactive", "pending" or "firing"
  std::vector<Labels> alertLabels;  // alerting rules: the labels of each active alert
};

// An active alert as /api/v1/alerts reports it.
struct PromAlert {
  Labels labels;      // with alertname
  std::string state;  // "pending" or "firing"
  std::string value;
};

// A scrape target as /api/v1/targets reports it.
struct PromTarget {
  Labels labels;  // job, instance
  std::string scrapeUrl;
  std::string health;  // "up", "down" or "unknown" (not scraped yet)
  std::string lastError;
};

// A list read from the API, or why it could not be.
template <typename T>
struct PromList {
  std::string error;
  std::vector<T> items;
  bool ok() const { return error.empty(); }
};

struct PrometheusOptions {
  std::string binary = "prometheus";  // a path: Process does not search PATH
  std::string target;                 // host:port scraped as job "evgate" at /metrics
  std::chrono::seconds scrapeInterval{1};
  std::chrono::seconds evaluationInterval{1};
  std::vector<std::string> ruleFiles;  // absolute paths
};

namespace prom_detail {

using google::protobuf::Struct;
using google::protobuf::Value;

// A Struct's fields, read through reflection rather than object.fields(): protobuf 3.21's
// inline Map code crashes when built with GCC 12's ThreadSanitizer (the tsan preset); reflection
// runs that code inside libprotobuf instead (as tests/deploy/dashboard.h does).
template <typename Visit>
void forEachField(const Struct& object, const Visit& visit) {
  const google::protobuf::Reflection* reflection = object.GetReflection();
  const google::protobuf::FieldDescriptor* fields = Struct::descriptor()->FindFieldByName("fields");
  for (int i = 0; i < reflection->FieldSize(object, fields); ++i) {
    const google::protobuf::Message& entry = reflection->GetRepeatedMessage(object, fields, i);
    const google::protobuf::Descriptor* type = entry.GetDescriptor();
    const google::protobuf::Reflection* entryReflection = entry.GetReflection();
    const Value* value = google::protobuf::DynamicCastToGenerated<Value>(
        &entryReflection->GetMessage(entry, type->map_value()));
    if (value != nullptr) visit(entryReflection->GetString(entry, type->map_key()), *value);
  }
}

inline const Value* field(const Struct& object, const std::string& name) {
  const Value* found = nullptr;
  forEachField(object, [&](const std::string& key, const Value& value) {
    if (key == name) found = &value;
  });
  return found;
}

inline const Struct* objectField(const Struct& object, const std::string& name) {
  const Value* value = field(object, name);
  return value != nullptr && value->has_struct_value() ? &value->struct_value() : nullptr;
}

inline std::string stringField(const Struct& object, const std::string& name) {
  const Value* value = field(object, name);
  return value != nullptr && value->kind_case() == Value::kStringValue ? value->string_value() : "";
}

inline const google::protobuf::ListValue* listField(const Struct& object, const std::string& name) {
  const Value* value = field(object, name);
  return value != nullptr && value->has_list_value() ? &value->list_value() : nullptr;
}

inline Labels labelsOf(const Struct* object) {
  Labels labels;
  if (object == nullptr) return labels;
  forEachField(*object, [&](const std::string& name, const Value& value) {
    labels[name] = value.string_value();
  });
  return labels;
}

// [timestamp, "value"] as Prometheus writes a sample.
inline bool sampleValue(const Value& pair, PromSample& sample) {
  if (!pair.has_list_value() || pair.list_value().values_size() != 2) return false;
  const Value& text = pair.list_value().values(1);
  if (text.kind_case() != Value::kStringValue) return false;
  sample.text = text.string_value();
  sample.value = std::strtod(sample.text.c_str(), nullptr);  // accepts +Inf, -Inf, NaN
  return true;
}

// The JSON envelope every API answer has: {"status": ..., "data": ..., "errorType", "error"}.
// Returns the parsed document, or nullopt with `error` set.
inline std::optional<Struct> parseEnvelope(const HttpResponse& response, std::string& error) {
  if (!response.ok()) {
    error = "HTTP: " + response.error;
    return std::nullopt;
  }
  Struct document;
  const auto status = google::protobuf::util::JsonStringToMessage(response.body, &document);
  if (!status.ok()) {
    error = "HTTP " + std::to_string(response.status) + ", not JSON (" + status.ToString() +
            "): " + response.body.substr(0, 500);
    return std::nullopt;
  }
  return document;
}

}  // namespace prom_detail

class PrometheusServer {
 public:
  explicit PrometheusServer(const PrometheusOptions& options, Clock::duration startLimit = 10s)
      : dir_("evgate-prometheus") {
    const std::string config = dir_.file("prometheus.yml");
    writeFile(config, configYaml(options));
    process_ = std::make_unique<Process>(std::vector<std::string>{
        options.binary, "--config.file=" + config, "--storage.tsdb.path=" + dir_.file("data"),
        "--web.listen-address=127.0.0.1:0", "--log.level=info"});
    if (!process_->started()) {
      error_ = process_->error();
      return;
    }
    const Clock::time_point deadline = Clock::now() + startLimit;
    const auto listening =
        process_->waitForOutput(std::regex(R"(msg="Listening on" address=127\.0\.0\.1:(\d+))"),
                                startLimit, Process::Stream::kStderr);
    if (!listening) {
      error_ = "prometheus did not log its address; stderr:\n" + process_->err();
      return;
    }
    // The API answers 503 until the TSDB is open and the rules are loaded.
    const auto ready = process_->waitForOutput(
        std::regex(R"(msg="Server is ready to receive web requests\.")"),
        std::max<Clock::duration>(deadline - Clock::now(), Clock::duration::zero()),
        Process::Stream::kStderr);
    if (!ready) {
      error_ = "prometheus did not become ready; stderr:\n" + process_->err();
      return;
    }
    port_ = static_cast<uint16_t>(std::stoi((*listening)[1]));
  }

  ~PrometheusServer() {
    if (process_ != nullptr && process_->signal(SIGTERM)) process_->wait(3s);
  }

  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  bool ok() const { return port_ != 0; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  // Everything Prometheus logged so far (it logs to stderr).
  std::string log() const { return process_->err(); }

  // An instant query at the current time.
  PromQueryResult query(const std::string& expr) const {
    PromQueryResult result;
    const HttpResponse response = httpGet(port_, "/api/v1/query?query=" + urlEncode(expr));
    std::string error;
    const auto document = prom_detail::parseEnvelope(response, error);
    if (!document) {
      result.errorType = response.ok() ? "json" : "transport";
      result.error = error;
      return result;
    }
    using prom_detail::stringField;
    result.status = stringField(*document, "status");
    result.errorType = stringField(*document, "errorType");
    result.error = stringField(*document, "error");
    if (const auto* warnings = prom_detail::listField(*document, "warnings")) {
      for (const auto& warning : warnings->values())
        result.warnings.push_back(warning.string_value());
    }
    const auto* data = prom_detail::objectField(*document, "data");
    if (!result.ok() || data == nullptr) {
      if (result.ok()) {
        result.status = "error";
        result.errorType = "json";
        result.error = "no data in " + response.body.substr(0, 500);
      }
      return result;
    }
    result.resultType = stringField(*data, "resultType");
    const prom_detail::Value* value = prom_detail::field(*data, "result");
    if (value == nullptr) return malformed(result, response.body);
    if (result.resultType == "scalar" || result.resultType == "string") {
      PromSample sample;
      if (!prom_detail::sampleValue(*value, sample)) return malformed(result, response.body);
      result.samples.push_back(std::move(sample));
      return result;
    }
    if (!value->has_list_value()) return malformed(result, response.body);
    for (const auto& series : value->list_value().values()) {
      if (!series.has_struct_value()) return malformed(result, response.body);
      PromSample sample;
      sample.labels =
          prom_detail::labelsOf(prom_detail::objectField(series.struct_value(), "metric"));
      const prom_detail::Value* point = prom_detail::field(series.struct_value(), "value");
      if (result.resultType == "matrix") {
        const auto* points = prom_detail::listField(series.struct_value(), "values");
        point = points != nullptr && points->values_size() > 0
                    ? &points->values(points->values_size() - 1)
                    : nullptr;
      }
      if (point == nullptr || !prom_detail::sampleValue(*point, sample)) {
        return malformed(result, response.body);
      }
      result.samples.push_back(std::move(sample));
    }
    return result;
  }

  // Queries `expr` every 100 ms until it succeeds with at least one sample or `deadline` passes;
  // returns the last answer (check `samples` for emptiness, `describe()` for the reason).
  PromQueryResult waitForSeries(const std::string& expr, Clock::time_point deadline) const {
    for (;;) {
      PromQueryResult result = query(expr);
      if ((result.ok() && !result.samples.empty()) || Clock::now() >= deadline) return result;
      std::this_thread::sleep_for(std::min<Clock::duration>(100ms, deadline - Clock::now()));
    }
  }

  // Every rule of every group loaded from the rule files.
  PromList<PromRule> rules() const {
    PromList<PromRule> list;
    const auto data = getData("/api/v1/rules", list.error);
    if (!data) return list;
    const auto* groups = prom_detail::listField(*data, "groups");
    if (groups == nullptr) {
      list.error = "no groups in /api/v1/rules";
      return list;
    }
    using prom_detail::stringField;
    for (const auto& group : groups->values()) {
      const auto* rules = prom_detail::listField(group.struct_value(), "rules");
      if (rules == nullptr) continue;
      for (const auto& entry : rules->values()) {
        const prom_detail::Struct& object = entry.struct_value();
        PromRule rule;
        rule.group = stringField(group.struct_value(), "name");
        rule.name = stringField(object, "name");
        rule.type = stringField(object, "type");
        rule.query = stringField(object, "query");
        rule.health = stringField(object, "health");
        rule.lastError = stringField(object, "lastError");
        rule.state = stringField(object, "state");
        if (const auto* alerts = prom_detail::listField(object, "alerts")) {
          for (const auto& alert : alerts->values()) {
            rule.alertLabels.push_back(
                prom_detail::labelsOf(prom_detail::objectField(alert.struct_value(), "labels")));
          }
        }
        list.items.push_back(std::move(rule));
      }
    }
    return list;
  }

  // rules() once every rule has been evaluated at least once (health no longer "unknown"), or
  // the last answer when `deadline` passes first.
  PromList<PromRule> waitForRulesEvaluated(Clock::time_point deadline) const {
    for (;;) {
      PromList<PromRule> list = rules();
      const bool evaluated =
          list.ok() && std::none_of(list.items.begin(), list.items.end(),
                                    [](const PromRule& rule) { return rule.health == "unknown"; });
      if (evaluated || Clock::now() >= deadline) return list;
      std::this_thread::sleep_for(std::min<Clock::duration>(100ms, deadline - Clock::now()));
    }
  }

  // The alerts pending or firing now.
  PromList<PromAlert> alerts() const {
    PromList<PromAlert> list;
    const auto data = getData("/api/v1/alerts", list.error);
    if (!data) return list;
    if (const auto* alerts = prom_detail::listField(*data, "alerts")) {
      for (const auto& entry : alerts->values()) {
        const prom_detail::Struct& object = entry.struct_value();
        list.items.push_back(PromAlert{
            prom_detail::labelsOf(prom_detail::objectField(object, "labels")),
            prom_detail::stringField(object, "state"), prom_detail::stringField(object, "value")});
      }
    }
    return list;
  }

  // The active scrape targets (one: the "evgate" job's).
  PromList<PromTarget> targets() const {
    PromList<PromTarget> list;
    const auto data = getData("/api/v1/targets?state=active", list.error);
    if (!data) return list;
    if (const auto* targets = prom_detail::listField(*data, "activeTargets")) {
      for (const auto& entry : targets->values()) {
        const prom_detail::Struct& object = entry.struct_value();
        list.items.push_back(
            PromTarget{prom_detail::labelsOf(prom_detail::objectField(object, "labels")),
                       prom_detail::stringField(object, "scrapeUrl"),
                       prom_detail::stringField(object, "health"),
                       prom_detail::stringField(object, "lastError")});
      }
    }
    return list;
  }

 private:
  static std::string configYaml(const PrometheusOptions& options) {
    std::string yaml =
        "global:\n  scrape_interval: " + std::to_string(options.scrapeInterval.count()) +
        "s\n  scrape_timeout: " + std::to_string(options.scrapeInterval.count()) +
        "s\n  evaluation_interval: " + std::to_string(options.evaluationInterval.count()) + "s\n";
    if (!options.ruleFiles.empty()) {
      yaml += "rule_files:\n";
      for (const std::string& file : options.ruleFiles) yaml += "  - \"" + file + "\"\n";
    }
    yaml +=
        "scrape_configs:\n"
        "  - job_name: evgate\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        "      - targets: [ \"" +
        options.target + "\" ]\n";
    return yaml;
  }

  static PromQueryResult malformed(PromQueryResult& result, const std::string& body) {
    result.status = "error";
    result.errorType = "json";
    result.error = "unexpected result shape: " + body.substr(0, 500);
    return result;
  }

  // GETs `target` and returns the envelope's "data" object, or nullopt with `error` set.
  std::optional<prom_detail::Struct> getData(const std::string& target, std::string& error) const {
    const HttpResponse response = httpGet(port_, target);
    const auto document = prom_detail::parseEnvelope(response, error);
    if (!document) return std::nullopt;
    if (prom_detail::stringField(*document, "status") != "success") {
      error = target + ": " + prom_detail::stringField(*document, "errorType") + ": " +
              prom_detail::stringField(*document, "error");
      return std::nullopt;
    }
    const auto* data = prom_detail::objectField(*document, "data");
    if (data == nullptr) {
      error = target + ": no data in " + response.body.substr(0, 500);
      return std::nullopt;
    }
    return *data;
  }

  TempDir dir_;  // declared before process_: removed only after the process is gone
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
  std::string error_;
};

}  // namespace evgate::test
