#include "admin/cli/format.h"

#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <cstdint>

#include "gateway/config/units.h"

namespace evgate::admin::cli {
namespace {

std::chrono::nanoseconds toNanos(const google::protobuf::Duration& duration) {
  return std::chrono::seconds(duration.seconds()) + std::chrono::nanoseconds(duration.nanos());
}

// "07" for 7: the second unit of "5m07s" always has two digits.
std::string twoDigits(int64_t value) { return (value < 10 ? "0" : "") + std::to_string(value); }

}  // namespace

std::string durationText(const google::protobuf::Duration* duration) {
  if (duration == nullptr) return "-";
  return gateway::formatDuration(toNanos(*duration));
}

std::string elapsedText(const google::protobuf::Duration& duration) {
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(toNanos(duration)).count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60'000) return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
  const int64_t s = ms / 1000;
  if (s < 3600) return std::to_string(s / 60) + "m" + twoDigits(s % 60) + "s";
  if (s < 86'400) return std::to_string(s / 3600) + "h" + twoDigits(s % 3600 / 60) + "m";
  return std::to_string(s / 86'400) + "d" + twoDigits(s % 86'400 / 3600) + "h";
}

std::string timeText(const google::protobuf::Timestamp* timestamp) {
  if (timestamp == nullptr) return "-";
  return google::protobuf::util::TimeUtil::ToString(*timestamp);
}

std::string yesNo(bool value) { return value ? "yes" : "no"; }

std::string orDash(const std::string& text) { return text.empty() ? "-" : text; }

std::string listText(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return orDash(text);
}

}  // namespace evgate::admin::cli
