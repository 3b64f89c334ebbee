// The Grafana dashboard (deploy/grafana/evgate.json) as tests read it: its JSON as a
// google::protobuf::Struct, and every PromQL expression in it with the dashboard's variables
// substituted, so that a test can parse each one (promtool) or evaluate it (a live Prometheus).
//
//   for (const DashboardQuery& q : loadDashboardQueries(path, defaultSubstitutions())) {
//     // q.origin: `panel 6 "Bytes relayed" target A`; q.expr: plain PromQL
//   }
//
// Expressions come from panel targets (rows' nested panels included), query variables
// (`label_values(SELECTOR, label)` gives SELECTOR, `query_result(QUERY)` gives QUERY) and
// annotations. Variables are written `$name`, `${name}`, `${name:format}` or `[[name]]`; one that
// `substitutions` lacks is an error, so a misspelt variable cannot hide in a regex matcher.
//
// Depends on protobuf only (link protobuf::libprotobuf). Errors (a file that cannot be read, JSON
// that does not parse, an unknown variable) throw std::runtime_error naming the problem.
// Thread rule: plain functions, no shared state.

#pragma once

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace evgate::test {

// Variable name (without `$`) to the text put in its place.
using Substitutions = std::map<std::string, std::string>;

struct DashboardQuery {
  std::string origin;   // `panel ID "TITLE" target REF`, `variable NAME` or `annotation "NAME"`
  std::string rawExpr;  // as written in the dashboard
  std::string expr;     // with the variables substituted
};

// What makes every expression a plain query over everything: the multi-value variables as the
// regex `.*` (their "All" value), the intervals Grafana computes as 1m, the time range as 1h.
inline Substitutions defaultSubstitutions() {
  return {{"instance", ".*"},
          {"listener", ".*"},
          {"__rate_interval", "1m"},
          {"__interval", "1m"},
          {"__range", "1h"}};
}

inline google::protobuf::Struct loadDashboard(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot read " + path);
  std::stringstream text;
  text << file.rdbuf();
  google::protobuf::Struct dashboard;
  const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &dashboard);
  if (!status.ok()) {
    throw std::runtime_error(path + ": not valid JSON: " + std::string(status.message()));
  }
  return dashboard;
}

// The field `name` of `object`, or nullptr. Read through reflection, not object.fields():
// protobuf 3.21's inline Map code crashes when built with GCC 12's ThreadSanitizer (the tsan
// preset), and reflection runs that code inside libprotobuf instead.
inline const google::protobuf::Value* dashboardField(const google::protobuf::Struct& object,
                                                     const std::string& name) {
  const google::protobuf::Reflection* reflection = object.GetReflection();
  const google::protobuf::FieldDescriptor* fields =
      google::protobuf::Struct::descriptor()->FindFieldByName("fields");
  for (int i = 0; i < reflection->FieldSize(object, fields); ++i) {
    const google::protobuf::Message& entry = reflection->GetRepeatedMessage(object, fields, i);
    const google::protobuf::Descriptor* type = entry.GetDescriptor();
    if (entry.GetReflection()->GetString(entry, type->map_key()) == name) {
      return google::protobuf::DynamicCastToGenerated<google::protobuf::Value>(
          &entry.GetReflection()->GetMessage(entry, type->map_value()));
    }
  }
  return nullptr;
}

// The string field `name` of `object`, or "" when it is missing or not a string.
inline std::string dashboardString(const google::protobuf::Struct& object,
                                   const std::string& name) {
  const google::protobuf::Value* value = dashboardField(object, name);
  return value != nullptr && value->has_string_value() ? value->string_value() : "";
}

// The objects in the list field `name` of `object` (none when it is missing).
inline std::vector<const google::protobuf::Struct*> dashboardObjects(
    const google::protobuf::Struct& object, const std::string& name) {
  std::vector<const google::protobuf::Struct*> objects;
  const google::protobuf::Value* list = dashboardField(object, name);
  if (list == nullptr || !list->has_list_value()) return objects;
  for (const google::protobuf::Value& item : list->list_value().values()) {
    if (item.has_struct_value()) objects.push_back(&item.struct_value());
  }
  return objects;
}

// Every panel in layout order: rows, the panels after them, and the panels nested in collapsed
// rows right after their row.
inline std::vector<const google::protobuf::Struct*> dashboardPanels(
    const google::protobuf::Struct& dashboard) {
  std::vector<const google::protobuf::Struct*> panels;
  for (const google::protobuf::Struct* panel : dashboardObjects(dashboard, "panels")) {
    panels.push_back(panel);
    for (const google::protobuf::Struct* nested : dashboardObjects(*panel, "panels")) {
      panels.push_back(nested);
    }
  }
  return panels;
}

// `panel ID "TITLE"`, for messages.
inline std::string dashboardPanelName(const google::protobuf::Struct& panel) {
  const google::protobuf::Value* id = dashboardField(panel, "id");
  const std::string number = id != nullptr && id->has_number_value()
                                 ? std::to_string(static_cast<long long>(id->number_value()))
                                 : "?";
  return "panel " + number + " \"" + dashboardString(panel, "title") + "\"";
}

// The dashboard's variables (`templating.list`).
inline std::vector<const google::protobuf::Struct*> dashboardVariables(
    const google::protobuf::Struct& dashboard) {
  const google::protobuf::Value* templating = dashboardField(dashboard, "templating");
  if (templating == nullptr || !templating->has_struct_value()) return {};
  return dashboardObjects(templating->struct_value(), "list");
}

// The dashboard's annotation queries (`annotations.list`).
inline std::vector<const google::protobuf::Struct*> dashboardAnnotations(
    const google::protobuf::Struct& dashboard) {
  const google::protobuf::Value* annotations = dashboardField(dashboard, "annotations");
  if (annotations == nullptr || !annotations->has_struct_value()) return {};
  return dashboardObjects(annotations->struct_value(), "list");
}

// `text` with every variable replaced by its value in `values`. `$1` and the like (digits only)
// are regex back-references, not variables, and stay.
inline std::string substituteVariables(const std::string& text, const Substitutions& values) {
  static const std::regex kVariable(R"(\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+))");
  std::string out;
  auto last = text.cbegin();
  for (std::sregex_iterator it(text.begin(), text.end(), kVariable), end; it != end; ++it) {
    const std::smatch& match = *it;
    const std::string name = match[1].matched   ? match[1].str()
                             : match[2].matched ? match[2].str()
                                                : match[3].str();
    out.append(last, match[0].first);
    last = match[0].second;
    if (const auto value = values.find(name); value != values.end()) {
      out += value->second;
    } else if (std::isdigit(static_cast<unsigned char>(name[0])) != 0) {
      out += match[0].str();
    } else {
      throw std::runtime_error("unknown dashboard variable $" + name + " in: " + text);
    }
  }
  out.append(last, text.cend());
  return out;
}

// The PromQL inside a query variable's query, or "" when it has none (`label_values(label)`,
// `label_names()`, `metrics(regex)`).
inline std::string variableQueryExpr(const std::string& query) {
  const auto inside = [&](std::string_view prefix) -> std::string {
    if (!query.starts_with(prefix) || !query.ends_with(")")) return "";
    return query.substr(prefix.size(), query.size() - prefix.size() - 1);
  };
  if (std::string expr = inside("query_result("); !expr.empty()) return expr;
  const std::string arguments = inside("label_values(");
  // The selector is everything before the last comma outside braces, brackets and quotes.
  int depth = 0;
  char quote = 0;
  std::size_t comma = std::string::npos;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const char c = arguments[i];
    if (quote != 0) {
      if (c == '\\') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'' || c == '`') {
      quote = c;
    } else if (c == '{' || c == '(' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ')' || c == ']') {
      --depth;
    } else if (c == ',' && depth == 0) {
      comma = i;
    }
  }
  return comma == std::string::npos ? "" : arguments.substr(0, comma);
}

inline std::vector<DashboardQuery> loadDashboardQueries(const std::string& path,
                                                        const Substitutions& substitutions) {
  const google::protobuf::Struct dashboard = loadDashboard(path);
  std::vector<DashboardQuery> queries;
  const auto add = [&](std::string origin, const std::string& raw) {
    queries.push_back({std::move(origin), raw, substituteVariables(raw, substitutions)});
  };
  for (const google::protobuf::Struct* panel : dashboardPanels(dashboard)) {
    for (const google::protobuf::Struct* target : dashboardObjects(*panel, "targets")) {
      add(dashboardPanelName(*panel) + " target " + dashboardString(*target, "refId"),
          dashboardString(*target, "expr"));
    }
  }
  for (const google::protobuf::Struct* variable : dashboardVariables(dashboard)) {
    if (dashboardString(*variable, "type") != "query") continue;
    const google::protobuf::Value* query = dashboardField(*variable, "query");
    std::string text;  // a plain string, or {query: "...", refId: ...} since Grafana 10
    if (query != nullptr) {
      text = query->has_struct_value() ? dashboardString(query->struct_value(), "query")
                                       : query->string_value();
    }
    if (const std::string expr = variableQueryExpr(text); !expr.empty()) {
      add("variable " + dashboardString(*variable, "name"), expr);
    }
  }
  for (const google::protobuf::Struct* annotation : dashboardAnnotations(dashboard)) {
    if (const std::string expr = dashboardString(*annotation, "expr"); !expr.empty()) {
      add("annotation \"" + dashboardString(*annotation, "name") + "\"", expr);
    }
  }
  return queries;
}

}  // namespace evgate::test
