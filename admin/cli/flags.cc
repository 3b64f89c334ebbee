#include "admin/cli/flags.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <optional>

#include "admin/cli/errors.h"
#include "gateway/config/units.h"

namespace evgate::admin::cli {
namespace {

using google::protobuf::EnumDescriptor;

constexpr std::string_view kUnspecified = "UNSPECIFIED";

std::string prefixOf(const EnumDescriptor* type) {
  const std::string& first = type->value(0)->name();
  return first.substr(0, first.size() - kUnspecified.size());
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::optional<int> findEnum(const EnumDescriptor* type, std::string_view text) {
  std::string name(text);
  std::replace(name.begin(), name.end(), '-', '_');
  for (int i = 0; i < type->value_count(); ++i) {
    const int number = type->value(i)->number();
    if (number != 0 && enumShortName(type, number) == name) return number;
  }
  return std::nullopt;
}

template <typename Unsigned>
std::optional<Unsigned> parseUnsigned(std::string_view text) {
  Unsigned value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<uint32_t> parseCount(std::string_view text) { return parseUnsigned<uint32_t>(text); }

struct EndpointParts {
  std::string address;
  std::optional<uint32_t> weight;  // nullopt: not given
  bool ok = false;
};

// "ADDR:PORT[=WEIGHT]". The address itself is checked by the gateway; here only its shape.
EndpointParts splitEndpoint(std::string_view text) {
  EndpointParts parts;
  const size_t equals = text.rfind('=');
  const std::string_view address = text.substr(0, equals);
  if (address.empty() || address.find(':') == std::string_view::npos) return parts;
  parts.address = std::string(address);
  if (equals != std::string_view::npos) {
    parts.weight = parseCount(text.substr(equals + 1));
    if (!parts.weight) return parts;
  }
  parts.ok = true;
  return parts;
}

}  // namespace

CLI::Validator durationText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (gateway::parseDuration(text)) return {};
        return "invalid duration \"" + text + "\" (use a number and a unit: 250ms, 5s, 10m, 1h)";
      },
      "DURATION");
}

CLI::Validator sizeText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (gateway::parseSize(text)) return {};
        return "invalid size \"" + text + "\" (use bytes or a binary unit: 65536, 64KiB, 1MiB)";
      },
      "SIZE");
}

CLI::Validator timestampText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        google::protobuf::Timestamp parsed;
        if (google::protobuf::util::TimeUtil::FromString(text, &parsed)) return {};
        return "invalid time \"" + text + "\" (use RFC 3339: 2030-01-02T03:04:05Z)";
      },
      "RFC3339");
}

CLI::Validator endpointText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (splitEndpoint(text).ok) return {};
        return "invalid endpoint \"" + text + "\" (use ADDR:PORT or ADDR:PORT=WEIGHT)";
      },
      "ADDR:PORT[=WEIGHT]");
}

CLI::Validator countText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parseCount(text)) return {};
        return "invalid number \"" + text + "\" (use a whole number, 0 to 4294967295)";
      },
      "N");
}

CLI::Validator flowIdText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parseUnsigned<uint64_t>(text)) return {};
        return "invalid flow id \"" + text + "\" (use a whole number)";
      },
      "ID");
}

CLI::Validator enumText(const EnumDescriptor* type) {
  const std::vector<std::string> choices = enumChoices(type);
  std::string list;
  for (const std::string& choice : choices) list += (list.empty() ? "" : "|") + choice;
  return CLI::Validator(
      [type, list](std::string& text) -> std::string {
        if (findEnum(type, text)) return {};
        return "invalid value \"" + text + "\" (use " + list + ")";
      },
      list);
}

google::protobuf::Duration toDuration(std::string_view text) {
  const auto parsed = gateway::parseDuration(text);
  if (!parsed) throw UsageError("invalid duration \"" + std::string(text) + "\"");
  const int64_t nanos = parsed->count();
  google::protobuf::Duration duration;
  duration.set_seconds(nanos / 1'000'000'000);
  duration.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return duration;
}

uint64_t toBytes(std::string_view text) {
  const auto parsed = gateway::parseSize(text);
  if (!parsed) throw UsageError("invalid size \"" + std::string(text) + "\"");
  return *parsed;
}

google::protobuf::Timestamp toTimestamp(std::string_view text) {
  google::protobuf::Timestamp timestamp;
  if (!google::protobuf::util::TimeUtil::FromString(std::string(text), &timestamp)) {
    throw UsageError("invalid time \"" + std::string(text) + "\"");
  }
  return timestamp;
}

v1::Endpoint toEndpoint(std::string_view text) {
  const EndpointParts parts = splitEndpoint(text);
  if (!parts.ok) throw UsageError("invalid endpoint \"" + std::string(text) + "\"");
  v1::Endpoint endpoint;
  endpoint.set_address(parts.address);
  if (parts.weight) endpoint.set_weight(*parts.weight);
  return endpoint;
}

uint32_t toCount(std::string_view text) {
  const auto parsed = parseCount(text);
  if (!parsed) throw UsageError("invalid number \"" + std::string(text) + "\"");
  return *parsed;
}

uint64_t toFlowId(std::string_view text) {
  const auto parsed = parseUnsigned<uint64_t>(text);
  if (!parsed) throw UsageError("invalid flow id \"" + std::string(text) + "\"");
  return *parsed;
}

std::string enumShortName(const EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* found = type->FindValueByNumber(value);
  if (found == nullptr) return std::to_string(value);
  return lower(found->name().substr(prefixOf(type).size()));
}

std::vector<std::string> enumChoices(const EnumDescriptor* type) {
  std::vector<std::string> choices;
  for (int i = 0; i < type->value_count(); ++i) {
    const int number = type->value(i)->number();
    if (number != 0) choices.push_back(enumShortName(type, number));
  }
  return choices;
}

int toEnumNumber(const EnumDescriptor* type, std::string_view text) {
  const auto found = findEnum(type, text);
  if (!found) throw UsageError("invalid value \"" + std::string(text) + "\"");
  return *found;
}

}  // namespace evgate::admin::cli
