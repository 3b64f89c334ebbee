// Command-line text to API values: durations, sizes, times, enum names and endpoints. The
// validators reject bad text while CLI11 parses, so it is a usage error (exit 2) before anything
// is sent; the conversions then read text the validators accepted. Pure functions.

#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/generated_enum_reflection.h>
#include <google/protobuf/timestamp.pb.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "evgate/admin/v1/admin.pb.h"

namespace evgate::admin::cli {

// "250ms", "5s", "10m", "1h" (gateway/config/units.h).
CLI::Validator durationText();
// "65536", "64KiB", "1MiB".
CLI::Validator sizeText();
// RFC 3339: "2030-01-02T03:04:05Z", "2030-01-02T03:04:05.5+01:00".
CLI::Validator timestampText();
// "ADDR:PORT" with an optional "=WEIGHT" (a whole number).
CLI::Validator endpointText();
// A whole number from 0 to 4294967295.
CLI::Validator countText();
// A flow id: a whole number from 0 to 2^64-1.
CLI::Validator flowIdText();
// One of an enum's short names (see enumChoices).
CLI::Validator enumText(const google::protobuf::EnumDescriptor* type);

google::protobuf::Duration toDuration(std::string_view text);
uint64_t toBytes(std::string_view text);
google::protobuf::Timestamp toTimestamp(std::string_view text);
v1::Endpoint toEndpoint(std::string_view text);
uint32_t toCount(std::string_view text);
uint64_t toFlowId(std::string_view text);

// An enum value's short name: its name without the type's prefix, in lower case
// (LB_POLICY_ROUND_ROBIN -> round_robin). The prefix is the one of the *_UNSPECIFIED value.
std::string enumShortName(const google::protobuf::EnumDescriptor* type, int value);
// The short names a flag accepts: every value but *_UNSPECIFIED.
std::vector<std::string> enumChoices(const google::protobuf::EnumDescriptor* type);
// The value named by a short name ('-' and '_' alike).
int toEnumNumber(const google::protobuf::EnumDescriptor* type, std::string_view text);

template <typename Enum>
Enum toEnum(std::string_view text) {
  return static_cast<Enum>(toEnumNumber(google::protobuf::GetEnumDescriptor<Enum>(), text));
}
template <typename Enum>
CLI::Validator enumText() {
  return enumText(google::protobuf::GetEnumDescriptor<Enum>());
}

}  // namespace evgate::admin::cli
