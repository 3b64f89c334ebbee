#include "admin/cli/output.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>
#include <string>
#include <string_view>

namespace evgate::admin::cli {
namespace {

// YAML 1.1 readers turn "yes", "off", "1:30" (base 60) and "2030-01-02" into non-strings; rather
// than track every such rule, quote every string that starts like a number or is a special word.
bool needsQuotes(const std::string& text) {
  if (text.empty()) return true;
  const char first = text.front();
  if (std::isdigit(static_cast<unsigned char>(first)) || first == '-' || first == '+' ||
      first == '.') {
    return true;
  }
  std::string word = text;
  std::transform(word.begin(), word.end(), word.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::array<std::string_view, 10> kSpecial = {
      "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"};
  return std::find(kSpecial.begin(), kSpecial.end(), word) != kSpecial.end();
}

void emit(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (const auto& entry : node) {
        out << YAML::Key << entry.first.Scalar() << YAML::Value;
        emit(out, entry.second);
      }
      out << YAML::EndMap;
      return;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : node) emit(out, item);
      out << YAML::EndSeq;
      return;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags a quoted scalar "!": in JSON, that is a string; numbers and booleans are
      // plain ("?") and stay plain.
      if (node.Tag() == "!" && needsQuotes(node.Scalar())) {
        out << YAML::DoubleQuoted << node.Scalar();
      } else {
        out << node.Scalar();
      }
      return;
    default:
      out << YAML::Null;
      return;
  }
}

}  // namespace

std::optional<Format> parseFormat(std::string_view text) {
  if (text == "table") return Format::kTable;
  if (text == "json") return Format::kJson;
  if (text == "yaml") return Format::kYaml;
  return std::nullopt;
}

std::string toJson(const google::protobuf::Message& message, bool multiline) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = multiline;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  // Only a message with an Any of an unknown type fails, and the admin API has none.
  if (!status.ok()) throw std::logic_error("cannot print as JSON: " + status.ToString());
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

std::string jsonToYaml(const std::string& json) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, YAML::Load(json));
  return std::string(out.c_str()) + "\n";
}

bool Output::collect(const google::protobuf::Message& message) {
  if (collected_ == nullptr || format_ == Format::kTable) return false;
  collected_->push_back(toJson(message, false));
  return true;
}

void Output::print(const google::protobuf::Message& message, const TablePrinter& table) {
  if (collect(message)) return;
  switch (format_) {
    case Format::kTable:
      table(out_);
      break;
    case Format::kJson:
      out_ << toJson(message, true) << '\n';
      break;
    case Format::kYaml:
      out_ << jsonToYaml(toJson(message, false));
      break;
  }
  out_.flush();
}

void Output::printStreamed(const google::protobuf::Message& message, const TablePrinter& line) {
  if (collect(message)) return;
  switch (format_) {
    case Format::kTable:
      line(out_);
      break;
    case Format::kJson:
      out_ << toJson(message, false) << '\n';
      break;
    case Format::kYaml:
      out_ << "---\n" << jsonToYaml(toJson(message, false));
      break;
  }
  out_.flush();
}

}  // namespace evgate::admin::cli
