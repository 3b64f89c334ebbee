// Lints the Grafana dashboard deploy/grafana/evgate.json, which no Grafana checks here: valid
// JSON, unique panel ids, current panel types, the ${datasource} variable everywhere, a
// description on every panel, every expression filtered by $instance with Grafana's intervals,
// every recorded series it reads defined in deploy/prometheus/rules.yaml, and every expression
// valid PromQL by promtool's own parser.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/deploy/dashboard.h"

namespace evgate::test {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

const std::string kDashboardPath = EVGATE_SOURCE_DIR "/deploy/grafana/evgate.json";
const std::string kRulesPath = EVGATE_SOURCE_DIR "/deploy/prometheus/rules.yaml";

const Struct& dashboard() {
  static const Struct loaded = loadDashboard(kDashboardPath);
  return loaded;
}

bool isRow(const Struct& panel) { return dashboardString(panel, "type") == "row"; }

::testing::AssertionResult usesDatasourceVariable(const Struct& object) {
  const Value* datasource = dashboardField(object, "datasource");
  if (datasource == nullptr) return ::testing::AssertionFailure() << "has no datasource";
  if (!datasource->has_struct_value()) {
    return ::testing::AssertionFailure() << "has a datasource that is not {type, uid}";
  }
  const std::string type = dashboardString(datasource->struct_value(), "type");
  const std::string uid = dashboardString(datasource->struct_value(), "uid");
  if (type != "prometheus" || uid != "${datasource}") {
    return ::testing::AssertionFailure() << "has datasource {type: " << type << ", uid: " << uid
                                         << "}, not {type: prometheus, uid: ${datasource}}";
  }
  return ::testing::AssertionSuccess();
}

const Struct* findVariable(const std::string& name) {
  for (const Struct* variable : dashboardVariables(dashboard())) {
    if (dashboardString(*variable, "name") == name) return variable;
  }
  return nullptr;
}

bool flag(const Struct& object, const std::string& name) {
  const Value* value = dashboardField(object, name);
  return value != nullptr && value->has_bool_value() && value->bool_value();
}

struct CommandResult {
  int exitCode = -1;
  std::string output;  // stdout and stderr
};

CommandResult runCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) {
    result.output.append(buffer, n);
  }
  const int status = ::pclose(pipe);
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string shellQuoted(const std::string& text) { return "'" + text + "'"; }

// `text` as a YAML double-quoted scalar.
std::string yamlQuoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A fresh directory under the test's temporary directory, removed with what it holds.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = ::testing::TempDir() + "deploy_dashboard_XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }  // empty if mkdtemp failed

 private:
  std::filesystem::path path_;
};

TEST(DashboardLint, IsJsonWithASchemaVersion) {
  ASSERT_NO_THROW(loadDashboard(kDashboardPath));
  const Value* version = dashboardField(dashboard(), "schemaVersion");
  ASSERT_NE(version, nullptr);
  EXPECT_TRUE(version->has_number_value());
}

TEST(DashboardLint, PanelIdsAreUniqueAcrossRows) {
  std::set<double> seen;
  int nested = 0;
  for (const Struct* row : dashboardObjects(dashboard(), "panels")) {
    nested += static_cast<int>(dashboardObjects(*row, "panels").size());
  }
  EXPECT_GT(nested, 0) << "no collapsed row: the nested-panel case is not exercised";
  for (const Struct* panel : dashboardPanels(dashboard())) {
    const Value* id = dashboardField(*panel, "id");
    ASSERT_TRUE(id != nullptr && id->has_number_value())
        << dashboardPanelName(*panel) << " has no id";
    EXPECT_TRUE(seen.insert(id->number_value()).second)
        << dashboardPanelName(*panel) << ": id again";
  }
}

TEST(DashboardLint, PanelsAreRowsTimeseriesOrStats) {
  for (const Struct* panel : dashboardPanels(dashboard())) {
    const std::string type = dashboardString(*panel, "type");
    EXPECT_TRUE(type == "row" || type == "timeseries" || type == "stat")
        << dashboardPanelName(*panel) << " is of type \"" << type << "\"";
  }
}

TEST(DashboardLint, DatasourceVariableExists) {
  const Struct* variable = findVariable("datasource");
  ASSERT_NE(variable, nullptr);
  EXPECT_EQ(dashboardString(*variable, "type"), "datasource");
  EXPECT_EQ(dashboardString(*variable, "query"), "prometheus");
}

TEST(DashboardLint, EverythingQueriesThroughTheDatasourceVariable) {
  for (const Struct* panel : dashboardPanels(dashboard())) {
    if (isRow(*panel)) continue;
    EXPECT_TRUE(usesDatasourceVariable(*panel)) << dashboardPanelName(*panel);
    for (const Struct* target : dashboardObjects(*panel, "targets")) {
      EXPECT_TRUE(usesDatasourceVariable(*target))
          << dashboardPanelName(*panel) << " target " << dashboardString(*target, "refId");
    }
  }
  for (const Struct* variable : dashboardVariables(dashboard())) {
    if (dashboardString(*variable, "type") != "query") continue;
    EXPECT_TRUE(usesDatasourceVariable(*variable))
        << "variable " << dashboardString(*variable, "name");
  }
  for (const Struct* annotation : dashboardAnnotations(dashboard())) {
    EXPECT_TRUE(usesDatasourceVariable(*annotation))
        << "annotation " << dashboardString(*annotation, "name");
  }
}

TEST(DashboardLint, InstanceAndListenerAreMultiValueVariablesWithAll) {
  for (const std::string name : {"instance", "listener"}) {
    const Struct* variable = findVariable(name);
    ASSERT_NE(variable, nullptr) << name;
    EXPECT_EQ(dashboardString(*variable, "type"), "query") << name;
    EXPECT_TRUE(flag(*variable, "multi")) << name;
    EXPECT_TRUE(flag(*variable, "includeAll")) << name;
  }
}

TEST(DashboardLint, EveryPanelHasADescription) {
  for (const Struct* panel : dashboardPanels(dashboard())) {
    EXPECT_FALSE(dashboardString(*panel, "description").empty()) << dashboardPanelName(*panel);
  }
}

TEST(DashboardLint, EveryTargetHasAnExpressionAndItsOwnRefId) {
  for (const Struct* panel : dashboardPanels(dashboard())) {
    if (isRow(*panel)) continue;
    const std::vector<const Struct*> targets = dashboardObjects(*panel, "targets");
    EXPECT_FALSE(targets.empty()) << dashboardPanelName(*panel) << " has no target";
    std::set<std::string> refIds;
    for (const Struct* target : targets) {
      const std::string refId = dashboardString(*target, "refId");
      EXPECT_FALSE(dashboardString(*target, "expr").empty())
          << dashboardPanelName(*panel) << " " << refId;
      EXPECT_TRUE(!refId.empty() && refIds.insert(refId).second)
          << dashboardPanelName(*panel) << ": refId \"" << refId << "\" empty or again";
    }
  }
}

// Every query follows the instance picker, and ranges scale with the scrape interval and the
// zoom ($__rate_interval, $__range) instead of a fixed [5m]: fixed windows belong in rules.yaml.
TEST(DashboardLint, ExpressionsFilterByInstanceWithGrafanaRanges) {
  const std::regex fixedRange(R"(\[[0-9]+[a-z]+(:[0-9a-z]*)?\])");
  for (const DashboardQuery& query : loadDashboardQueries(kDashboardPath, defaultSubstitutions())) {
    if (query.origin == "variable instance") continue;  // it lists the instances
    EXPECT_NE(query.rawExpr.find("$instance"), std::string::npos) << query.origin;
    EXPECT_FALSE(std::regex_search(query.rawExpr, fixedRange))
        << query.origin << ": " << query.rawExpr;
  }
}

// A misspelt recording rule name would be valid PromQL that never returns anything.
TEST(DashboardLint, RecordedSeriesAreRecordedByTheRules) {
  std::ifstream rules(kRulesPath);
  ASSERT_TRUE(rules) << kRulesPath;
  std::set<std::string> recorded;
  const std::regex recordLine(R"(^\s*-?\s*record:\s*(\S+)\s*$)");
  for (std::string line; std::getline(rules, line);) {
    if (std::smatch match; std::regex_match(line, match, recordLine)) recorded.insert(match[1]);
  }
  ASSERT_FALSE(recorded.empty());

  const std::regex quoted(R"("(\\.|[^"\\])*")");
  const std::regex recordedName(R"((^|[^A-Za-z0-9_:])([A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_:]+))");
  int used = 0;
  for (const DashboardQuery& query : loadDashboardQueries(kDashboardPath, defaultSubstitutions())) {
    const std::string unquoted = std::regex_replace(query.expr, quoted, "\"\"");
    for (std::sregex_iterator it(unquoted.begin(), unquoted.end(), recordedName), end; it != end;
         ++it) {
      ++used;
      EXPECT_TRUE(recorded.contains((*it)[2]))
          << query.origin << " reads " << (*it)[2] << ", which rules.yaml does not record";
    }
  }
  EXPECT_GT(used, 0) << "the dashboard reads no recorded series";
}

TEST(DashboardLint, EveryExpressionParsesAsPromQL) {
  const std::vector<DashboardQuery> queries =
      loadDashboardQueries(kDashboardPath, defaultSubstitutions());
  ASSERT_FALSE(queries.empty());
  ScratchDir dir;
  ASSERT_FALSE(dir.path().empty()) << "mkdtemp failed";
  const std::filesystem::path rulesPath = dir.path() / "dashboard_rules.yaml";
  std::string index;  // record name = where the expression is, for a failure message
  {
    std::ofstream rules(rulesPath);
    rules << "groups:\n  - name: dashboard\n    rules:\n";
    for (std::size_t i = 0; i < queries.size(); ++i) {
      const std::string record = "dashboard:query_" + std::to_string(i) + ":check";
      rules << "      - record: " << record << "\n        expr: " << yamlQuoted(queries[i].expr)
            << "\n";
      index += record + " = " + queries[i].origin + ": " + queries[i].expr + "\n";
    }
    ASSERT_TRUE(rules.good()) << rulesPath;
  }
  const CommandResult check =
      runCommand(shellQuoted(PROMTOOL_BINARY) + " check rules " + shellQuoted(rulesPath.string()));
  EXPECT_EQ(check.exitCode, 0) << check.output << "\n" << index;
}

TEST(DashboardQueries, SubstitutesEveryVariableSyntax) {
  const Substitutions values = {{"instance", "a|b"}, {"__rate_interval", "1m"}};
  EXPECT_EQ(substituteVariables(R"(rate(x{instance=~"$instance"}[$__rate_interval]))", values),
            R"(rate(x{instance=~"a|b"}[1m]))");
  EXPECT_EQ(substituteVariables("${instance} ${instance:regex} [[instance]]", values),
            "a|b a|b a|b");
  EXPECT_EQ(substituteVariables(R"q(label_replace(x, "y", "$1", "z", "(.*)"))q", values),
            R"q(label_replace(x, "y", "$1", "z", "(.*)"))q");
  EXPECT_THROW(substituteVariables(R"(x{instance=~"$instnace"})", values), std::runtime_error);
}

TEST(DashboardQueries, TakesTheSelectorOutOfVariableQueries) {
  EXPECT_EQ(variableQueryExpr("label_values(evgate_build_info, instance)"), "evgate_build_info");
  EXPECT_EQ(variableQueryExpr(R"(label_values(x{a=~"$a", b="1,2"}, listener))"),
            R"(x{a=~"$a", b="1,2"})");
  EXPECT_EQ(variableQueryExpr("query_result(topk(3, x))"), "topk(3, x)");
  EXPECT_EQ(variableQueryExpr("label_values(instance)"), "");
  EXPECT_EQ(variableQueryExpr("metrics(evgate_.*)"), "");
}

TEST(DashboardQueries, CoverTargetsVariablesAndAnnotations) {
  const std::vector<DashboardQuery> queries =
      loadDashboardQueries(kDashboardPath, defaultSubstitutions());
  std::size_t targets = 0;
  for (const Struct* panel : dashboardPanels(dashboard())) {
    targets += dashboardObjects(*panel, "targets").size();
  }
  const std::size_t annotations = dashboardAnnotations(dashboard()).size();
  // instance and listener each give their selector.
  EXPECT_EQ(queries.size(), targets + 2 + annotations);
  for (const DashboardQuery& query : queries) {
    EXPECT_EQ(query.expr.find('$'), std::string::npos) << query.origin << ": " << query.expr;
  }
}

}  // namespace
}  // namespace evgate::test
