#pragma once

// docs/metrics.md as data, and its comparison with a scrape: the contract that every metric the
// daemon exposes is documented with its type, labels and (histograms) buckets, and nothing
// documented is missing.
//
//   MetricsDoc doc = parseMetricsDoc(readText(EVGATE_SOURCE_DIR "/docs/metrics.md"));
//   ASSERT_TRUE(doc.errors.empty()) << doc.errors.front();
//   for (const std::string& difference : compareWithDoc(doc, parseExposition(page.body)))
//     ADD_FAILURE() << difference;
//
// A metrics table is any Markdown table whose header row is `| Metric | Type | Labels | Meaning |`,
// under any heading; its rows are `| \`name\` | type | \`label\`, \`label\` | meaning |`, an empty
// labels cell meaning no labels. A buckets table has the header `| Histogram | Buckets |` and rows
// `| \`name\` | 0.001, 0.01, ... |` (the upper bounds, `+Inf` implied). A row of either table that
// does not have its shape is an error, as is a name listed twice. Other tables are not read.
//
// Thread rule: stateless; safe from any thread.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/exposition.h"

namespace evgate::test {

struct DocMetric {
  std::string type;              // counter, gauge, histogram, summary, untyped
  std::set<std::string> labels;  // without `le`
  int line = 0;                  // 1-based, in the document
};

struct MetricsDoc {
  std::map<std::string, DocMetric> metrics;
  std::map<std::string, std::vector<double>> buckets;  // histogram -> upper bounds, in order
  std::vector<std::string> errors;                     // "line N: what is wrong"
};

inline std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace metrics_doc_detail {

inline std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return std::string(text);
}

// The cells of a table row `| a | b |`, trimmed; empty if the line is not a table row.
inline std::vector<std::string> cells(std::string_view line) {
  const std::string row = trimmed(line);
  if (row.size() < 2 || row.front() != '|' || row.back() != '|') return {};
  std::vector<std::string> out;
  size_t start = 1;
  for (size_t bar = row.find('|', start); bar != std::string::npos; bar = row.find('|', start)) {
    out.push_back(trimmed(std::string_view(row).substr(start, bar - start)));
    start = bar + 1;
  }
  return out;
}

// "`name`" -> "name"; "" if the cell is not exactly one code span.
inline std::string codeSpan(const std::string& cell) {
  if (cell.size() < 3 || cell.front() != '`' || cell.back() != '`') return "";
  const std::string inner = cell.substr(1, cell.size() - 2);
  return inner.find('`') == std::string::npos ? inner : "";
}

inline std::string describeBounds(const std::vector<double>& bounds) {
  std::ostringstream out;
  for (size_t i = 0; i < bounds.size(); ++i) out << (i == 0 ? "" : ", ") << bounds[i];
  return out.str();
}

// "" if every series of the histogram `family` has exactly the buckets `bounds` (and +Inf), else
// how the first one that differs does.
inline std::string bucketProblem(const MetricFamily& family, const std::vector<double>& bounds) {
  std::map<std::map<std::string, std::string>, std::vector<double>> series;  // labels -> bounds
  for (const ExpositionSample& sample : family.samples) {
    if (sample.name != family.name + "_bucket") continue;
    auto labels = sample.labels;
    const auto le = labels.find("le");
    if (le == labels.end()) return "a bucket on line " + std::to_string(sample.line) + " has no le";
    const double bound = std::strtod(le->second.c_str(), nullptr);
    labels.erase(le);
    series[labels].push_back(bound);
  }
  for (auto& [labels, found] : series) {
    std::sort(found.begin(), found.end());
    const bool hasInf = !found.empty() && std::isinf(found.back()) && found.back() > 0;
    if (hasInf) found.pop_back();
    const bool same =
        found.size() == bounds.size() &&
        std::equal(found.begin(), found.end(), bounds.begin(), [](double a, double b) {
          return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b));
        });
    if (!same || !hasInf) {
      std::string where;
      for (const auto& [name, value] : labels)
        where += (where.empty() ? "" : ",") + name + "=" + value;
      return "buckets of {" + where + "} are " + describeBounds(found) + (hasInf ? ", +Inf" : "") +
             "; the document says " + describeBounds(bounds) + ", +Inf";
    }
  }
  return "";
}

}  // namespace metrics_doc_detail

inline MetricsDoc parseMetricsDoc(std::string_view markdown) {
  using namespace metrics_doc_detail;
  enum class Table { kNone, kMetrics, kBuckets };
  MetricsDoc doc;
  Table table = Table::kNone;
  int lineNumber = 0;
  size_t start = 0;
  while (start < markdown.size()) {
    size_t end = markdown.find('\n', start);
    if (end == std::string_view::npos) end = markdown.size();
    const std::string_view line = markdown.substr(start, end - start);
    start = end + 1;
    ++lineNumber;
    const std::vector<std::string> row = cells(line);
    if (row.empty()) {
      table = Table::kNone;
      continue;
    }
    if (row == std::vector<std::string>{"Metric", "Type", "Labels", "Meaning"}) {
      table = Table::kMetrics;
      continue;
    }
    if (row == std::vector<std::string>{"Histogram", "Buckets"}) {
      table = Table::kBuckets;
      continue;
    }
    if (table == Table::kNone) continue;
    if (row.front().find_first_not_of("-: ") == std::string::npos) continue;  // | --- | --- |
    const auto fail = [&](const std::string& what) {
      doc.errors.push_back("line " + std::to_string(lineNumber) + ": " + what + ": " +
                           std::string(line));
    };
    const size_t expected = table == Table::kMetrics ? 4 : 2;
    if (row.size() != expected) {
      fail("expected " + std::to_string(expected) + " cells, found " + std::to_string(row.size()));
      continue;
    }
    const std::string name = codeSpan(row[0]);
    if (name.empty()) {
      fail("the first cell is not one `name`");
      continue;
    }
    if (table == Table::kBuckets) {
      std::vector<double> bounds;
      std::stringstream list(row[1]);
      for (std::string item; std::getline(list, item, ',');) {
        const std::string text = trimmed(item);
        char* parsed = nullptr;
        const double bound = std::strtod(text.c_str(), &parsed);
        if (text.empty() || parsed != text.c_str() + text.size() || !std::isfinite(bound) ||
            (!bounds.empty() && bound <= bounds.back())) {
          fail("bucket bounds must be finite numbers in increasing order, got \"" + text + "\"");
          bounds.clear();
          break;
        }
        bounds.push_back(bound);
      }
      if (bounds.empty()) continue;
      if (!doc.buckets.emplace(name, bounds).second) fail(name + ": buckets listed twice");
      continue;
    }
    DocMetric metric;
    metric.type = row[1];
    metric.line = lineNumber;
    if (metric.type != "counter" && metric.type != "gauge" && metric.type != "histogram" &&
        metric.type != "summary" && metric.type != "untyped") {
      fail("unknown type \"" + metric.type + "\"");
      continue;
    }
    bool labelsOk = true;
    std::stringstream labels(row[2]);
    for (std::string item; std::getline(labels, item, ',');) {
      const std::string label = codeSpan(trimmed(item));
      if (label.empty()) {
        fail("a label is not one `name`: \"" + trimmed(item) + "\"");
        labelsOk = false;
        break;
      }
      metric.labels.insert(label);
    }
    if (!labelsOk) continue;
    const auto [it, added] = doc.metrics.emplace(name, metric);
    if (!added) {
      fail(name + " documented twice (first at line " + std::to_string(it->second.line) + ")");
    }
  }
  for (const auto& [name, bounds] : doc.buckets) {
    const auto metric = doc.metrics.find(name);
    if (metric == doc.metrics.end() || metric->second.type != "histogram") {
      doc.errors.push_back(name + ": has buckets but is not a documented histogram");
    }
  }
  return doc;
}

inline std::string describeLabelSet(const std::set<std::string>& labels) {
  std::string out = "{";
  for (const std::string& label : labels) out += (out.size() > 1 ? ", " : "") + label;
  return out + "}";
}

// Every way `exposition` and `doc` disagree, one sentence each: a documented metric missing from
// the exposition or present without samples (its labels cannot be checked), a family in the
// exposition the document lacks, a different type, a different label set, samples of one family
// carrying different label sets, or a histogram series whose buckets are not the documented
// ones. Empty when they agree exactly.
inline std::vector<std::string> compareWithDoc(const MetricsDoc& doc,
                                               const Exposition& exposition) {
  std::vector<std::string> differences;
  for (const auto& [name, documented] : doc.metrics) {
    const MetricFamily* family = exposition.find(name);
    if (family == nullptr) {
      differences.push_back(name + ": documented (line " + std::to_string(documented.line) + ", " +
                            documented.type + " " + describeLabelSet(documented.labels) +
                            ") but not in the exposition");
      continue;
    }
    if (family->type != documented.type) {
      differences.push_back(name + ": type is " + family->type + " in the exposition, " +
                            documented.type + " in the document (line " +
                            std::to_string(documented.line) + ")");
    }
    if (family->samples.empty()) {
      differences.push_back(name +
                            ": in the exposition without samples, so its labels cannot "
                            "be checked (the document says " +
                            describeLabelSet(documented.labels) + ")");
      continue;
    }
    const std::set<std::string> exposed = labelNamesOf(*family);
    if (exposed != documented.labels) {
      differences.push_back(name + ": labels are " + describeLabelSet(exposed) +
                            " in the exposition, " + describeLabelSet(documented.labels) +
                            " in the document (line " + std::to_string(documented.line) + ")");
    }
    if (const auto bounds = doc.buckets.find(name); bounds != doc.buckets.end()) {
      const std::string problem = metrics_doc_detail::bucketProblem(*family, bounds->second);
      if (!problem.empty()) differences.push_back(name + ": " + problem);
    }
    for (const ExpositionSample& sample : family->samples) {
      MetricFamily one{family->name, family->type, "", {sample}};
      if (labelNamesOf(one) != exposed) {
        differences.push_back(name + ": the sample on line " + std::to_string(sample.line) +
                              " has labels " + describeLabelSet(labelNamesOf(one)) +
                              ", others of the family " + describeLabelSet(exposed));
        break;
      }
    }
  }
  for (const MetricFamily& family : exposition.families) {
    if (doc.metrics.count(family.name) != 0) continue;
    differences.push_back(family.name + ": in the exposition (" + family.type + " " +
                          describeLabelSet(labelNamesOf(family)) + ") but not documented");
  }
  return differences;
}

}  // namespace evgate::test
