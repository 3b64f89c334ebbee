#pragma once

// A parser for the Prometheus text exposition format 0.0.4 as prometheus-cpp writes it, for
// tests that look at what a scrape returned family by family:
//
//   Exposition exposition = parseExposition(page.body);
//   ASSERT_TRUE(exposition.errors.empty()) << exposition.errors.front();
//   const MetricFamily* family = exposition.find("evgate_listener_bytes_total");
//   std::map<std::string, std::set<std::string>> labels = labelNamesByFamily(exposition);
//
// Lines: `# HELP name text` (text escapes `\\` and `\n`), `# TYPE name type`, other `#` comments
// (ignored), blank lines, and samples `name{label="value",...} value [timestamp]` (label values
// escape `\\`, `\"` and `\n`; values are floats, `+Inf`, `-Inf`, `NaN` in any case). A sample
// belongs to the family its name announces: `name` itself, or for a histogram `name_bucket`,
// `name_sum` and `name_count`, for a summary `name_sum` and `name_count`. A sample with no TYPE
// before it forms an untyped family of its own name.
//
// Thread rule: stateless; safe from any thread.

#include <cctype>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace evgate::test {

struct ExpositionSample {
  std::string name;  // with its suffix: `x_bucket`, `x_sum`, `x_count` for a histogram `x`
  std::map<std::string, std::string> labels;  // values unescaped
  double value = 0.0;
  int line = 0;  // 1-based, in the parsed text
};

struct MetricFamily {
  std::string name;
  std::string type = "untyped";  // counter, gauge, histogram, summary, untyped
  std::string help;              // unescaped
  std::vector<ExpositionSample> samples;
};

struct Exposition {
  std::vector<MetricFamily> families;  // in the order they first appear
  std::vector<std::string> errors;     // "line N: what is wrong", in text order

  const MetricFamily* find(std::string_view name) const {
    for (const MetricFamily& family : families) {
      if (family.name == name) return &family;
    }
    return nullptr;
  }
};

namespace exposition_detail {

inline bool isNameStart(char c, bool colonAllowed) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_' || (colonAllowed && c == ':');
}

inline bool isNameChar(char c, bool colonAllowed) {
  return isNameStart(c, colonAllowed) || std::isdigit(static_cast<unsigned char>(c)) != 0;
}

// Reads a metric name (colons allowed) or a label name (no colons) at `at`; "" if none.
inline std::string readName(std::string_view line, size_t& at, bool colonAllowed) {
  const size_t start = at;
  if (at >= line.size() || !isNameStart(line[at], colonAllowed)) return "";
  while (at < line.size() && isNameChar(line[at], colonAllowed)) ++at;
  return std::string(line.substr(start, at - start));
}

inline void skipSpaces(std::string_view line, size_t& at) {
  while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
}

// A float as the format allows it (Go's ParseFloat: decimal, exponent, Inf, NaN); false if
// `text` is not one.
inline bool parseValue(std::string_view text, double& value) {
  if (text.empty()) return false;
  const std::string copy(text);
  char* end = nullptr;
  value = std::strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size();
}

// Unescapes HELP text: `\\` and `\n` (any other backslash stays as it is).
inline std::string unescapeHelp(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '\\' || text[i + 1] == 'n')) {
      out.push_back(text[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// `{a="x",b="y"}` at `at` (which is on the `{`); "" on success, else what is wrong.
inline std::string readLabels(std::string_view line, size_t& at,
                              std::map<std::string, std::string>& labels) {
  ++at;  // '{'
  for (;;) {
    skipSpaces(line, at);
    if (at < line.size() && line[at] == '}') {
      ++at;
      return "";
    }
    const std::string name = readName(line, at, /*colonAllowed=*/false);
    if (name.empty()) return "expected a label name at column " + std::to_string(at + 1);
    skipSpaces(line, at);
    if (at >= line.size() || line[at] != '=') return "expected '=' after label " + name;
    ++at;
    skipSpaces(line, at);
    if (at >= line.size() || line[at] != '"') return "expected '\"' to open label " + name;
    ++at;
    std::string value;
    for (;;) {
      if (at >= line.size()) return "label " + name + ": value not closed";
      const char c = line[at++];
      if (c == '"') break;
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (at >= line.size()) return "label " + name + ": escape at end of line";
      const char escaped = line[at++];
      if (escaped == 'n') {
        value.push_back('\n');
      } else if (escaped == '\\' || escaped == '"') {
        value.push_back(escaped);
      } else {
        return "label " + name + ": unknown escape \\" + std::string(1, escaped);
      }
    }
    if (!labels.emplace(name, value).second) return "label " + name + " appears twice";
    skipSpaces(line, at);
    if (at < line.size() && line[at] == ',') {
      ++at;
      continue;
    }
    if (at < line.size() && line[at] == '}') {
      ++at;
      return "";
    }
    return "expected ',' or '}' after label " + name;
  }
}

inline bool hasSuffix(std::string_view name, std::string_view suffix) {
  return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
}

}  // namespace exposition_detail

inline Exposition parseExposition(std::string_view text) {
  using namespace exposition_detail;
  Exposition result;
  std::map<std::string, size_t> index;  // family name -> position in result.families
  std::set<std::string> typed;
  std::set<std::string> helped;
  std::set<std::string> seenSeries;  // name + labels, to catch duplicates
  const auto familyNamed = [&](const std::string& name) -> MetricFamily& {
    const auto [it, added] = index.emplace(name, result.families.size());
    if (added) result.families.push_back(MetricFamily{name, "untyped", "", {}});
    return result.families[it->second];
  };
  // The family a sample of this name belongs to, if one announced it.
  const auto familyOfSample = [&](const std::string& name) -> MetricFamily* {
    if (const auto it = index.find(name); it != index.end()) return &result.families[it->second];
    for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!hasSuffix(name, suffix)) continue;
      const auto it = index.find(name.substr(0, name.size() - suffix.size()));
      if (it == index.end()) continue;
      MetricFamily& family = result.families[it->second];
      if (family.type == "histogram" || (family.type == "summary" && suffix != "_bucket")) {
        return &family;
      }
    }
    return nullptr;
  };

  int lineNumber = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++lineNumber;
    const auto fail = [&](const std::string& what) {
      result.errors.push_back("line " + std::to_string(lineNumber) + ": " + what + ": " +
                              std::string(line));
    };
    size_t at = 0;
    skipSpaces(line, at);
    if (at == line.size()) continue;

    if (line[at] == '#') {
      ++at;
      skipSpaces(line, at);
      const bool isHelp = line.substr(at, 5) == "HELP ";
      const bool isType = line.substr(at, 5) == "TYPE ";
      if (!isHelp && !isType) continue;  // a plain comment
      at += 5;
      skipSpaces(line, at);
      const std::string name = readName(line, at, /*colonAllowed=*/true);
      if (name.empty() || (at < line.size() && line[at] != ' ' && line[at] != '\t')) {
        fail("bad metric name");
        continue;
      }
      skipSpaces(line, at);
      const std::string_view rest = line.substr(at);
      if (isHelp) {
        if (!helped.insert(name).second) fail("second HELP for " + name);
        familyNamed(name).help = unescapeHelp(rest);
        continue;
      }
      const std::string type(rest);
      if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
          type != "untyped") {
        fail("unknown type \"" + type + "\"");
        continue;
      }
      if (!typed.insert(name).second) {
        fail("second TYPE for " + name);
        continue;
      }
      MetricFamily& family = familyNamed(name);
      if (!family.samples.empty()) fail("TYPE for " + name + " after its samples");
      family.type = type;
      continue;
    }

    ExpositionSample sample;
    sample.line = lineNumber;
    sample.name = readName(line, at, /*colonAllowed=*/true);
    if (sample.name.empty()) {
      fail("expected a metric name");
      continue;
    }
    skipSpaces(line, at);
    if (at < line.size() && line[at] == '{') {
      const std::string problem = readLabels(line, at, sample.labels);
      if (!problem.empty()) {
        fail(problem);
        continue;
      }
    }
    skipSpaces(line, at);
    size_t valueEnd = at;
    while (valueEnd < line.size() && line[valueEnd] != ' ' && line[valueEnd] != '\t') ++valueEnd;
    if (!parseValue(line.substr(at, valueEnd - at), sample.value)) {
      fail("bad value \"" + std::string(line.substr(at, valueEnd - at)) + "\"");
      continue;
    }
    at = valueEnd;
    skipSpaces(line, at);
    if (at < line.size()) {
      const std::string_view timestamp = line.substr(at);
      const bool digits = timestamp.find_first_not_of("-0123456789") == std::string_view::npos;
      if (!digits) {
        fail("bad timestamp \"" + std::string(timestamp) + "\"");
        continue;
      }
    }
    std::string key = sample.name;
    for (const auto& [name, value] : sample.labels) key += "\n" + name + "=" + value;
    if (!seenSeries.insert(key).second) {
      fail("duplicate series");
      continue;
    }
    MetricFamily* family = familyOfSample(sample.name);
    if (family == nullptr) family = &familyNamed(sample.name);
    family->samples.push_back(std::move(sample));
  }
  return result;
}

// The label names a family's samples carry (the union over its samples), without `le` for a
// histogram and `quantile` for a summary: the labels a reader chooses series by.
inline std::set<std::string> labelNamesOf(const MetricFamily& family) {
  std::set<std::string> names;
  for (const ExpositionSample& sample : family.samples) {
    for (const auto& [name, value] : sample.labels) {
      if (family.type == "histogram" && name == "le") continue;
      if (family.type == "summary" && name == "quantile") continue;
      names.insert(name);
    }
  }
  return names;
}

inline std::map<std::string, std::set<std::string>> labelNamesByFamily(
    const Exposition& exposition) {
  std::map<std::string, std::set<std::string>> result;
  for (const MetricFamily& family : exposition.families) {
    result[family.name] = labelNamesOf(family);
  }
  return result;
}

}  // namespace evgate::test
