// The three output formats (`-o table|json|yaml`) of a command's result.
//
//   json   the response message as protobuf's JSON mapping, proto field names, every field
//   yaml   that JSON as a block-style YAML document
//   table  whatever the command's table printer writes (see views.h)
//
// Thread rule: one thread.

#pragma once

#include <google/protobuf/message.h>

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace evgate::admin::cli {

enum class Format { kTable, kJson, kYaml };

// nullopt for anything but "table", "json" and "yaml".
std::optional<Format> parseFormat(std::string_view text);

class Output {
 public:
  using TablePrinter = std::function<void(std::ostream&)>;

  Output(Format format, std::ostream& out) : format_(format), out_(out) {}
  // For a fleet command: json and yaml results are kept as compact JSON values in `collected`
  // (one per message) for the caller to print per gateway; tables still go to `out`.
  Output(Format format, std::ostream& out, std::vector<std::string>* collected)
      : format_(format), out_(out), collected_(collected) {}

  Format format() const { return format_; }

  // One result: `message` as JSON or YAML, or `table` in table mode.
  void print(const google::protobuf::Message& message, const TablePrinter& table);
  // One message of a stream, flushed at once so a pipe sees it as it comes: one JSON object per
  // line, one YAML document (after "---"), or `line` in table mode.
  void printStreamed(const google::protobuf::Message& message, const TablePrinter& line);

 private:
  // True when `message` went to collected_ instead of out_.
  bool collect(const google::protobuf::Message& message);

  Format format_;
  std::ostream& out_;
  std::vector<std::string>* collected_ = nullptr;
};

// `message` in protobuf's JSON mapping with proto field names and every field; `multiline`
// indents it for people.
std::string toJson(const google::protobuf::Message& message, bool multiline);
// A JSON document as block-style YAML, ending in a newline. Strings that YAML would read as
// something else (numbers, booleans, null, times, "host:port") are quoted.
std::string jsonToYaml(const std::string& json);

}  // namespace evgate::admin::cli
