#include "gateway/config/units.h"

#include <array>
#include <cstdint>
#include <limits>
#include <numeric>

namespace evgate::gateway {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

constexpr std::array<Unit, 6> kDurationUnits{{
    {"h", 3'600'000'000'000},
    {"m", 60'000'000'000},
    {"s", 1'000'000'000},
    {"ms", 1'000'000},
    {"us", 1'000},
    {"ns", 1},
}};

constexpr std::array<Unit, 5> kSizeUnits{{
    {"TiB", uint64_t{1} << 40},
    {"GiB", uint64_t{1} << 30},
    {"MiB", uint64_t{1} << 20},
    {"KiB", uint64_t{1} << 10},
    {"B", 1},
}};

// A 64-bit fraction can hold 19 decimal digits; more significant digits than this can never
// give a whole number of nanoseconds or bytes with our largest units (about 3.6e12).
constexpr size_t kMaxFractionDigits = 18;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// `number` is "D+" or "D+.D+"; the result is number * factor, if that is a whole number that
// fits in uint64. Exact integer arithmetic: no double rounding ("0.3s" is exactly 300ms).
std::optional<uint64_t> scale(std::string_view number, uint64_t factor) {
  const size_t dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  std::string_view fraction =
      dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && fraction.empty())) return std::nullopt;

  uint64_t value = 0;
  for (const char c : whole) {
    if (!isDigit(c)) return std::nullopt;
    if (__builtin_mul_overflow(value, 10, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(c - '0'), &value)) {
      return std::nullopt;
    }
  }
  for (const char c : fraction) {
    if (!isDigit(c)) return std::nullopt;
  }
  if (__builtin_mul_overflow(value, factor, &value)) return std::nullopt;

  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (fraction.empty()) return value;
  if (fraction.size() > kMaxFractionDigits) return std::nullopt;
  uint64_t numerator = 0;
  uint64_t denominator = 1;
  for (const char c : fraction) {
    numerator = numerator * 10 + static_cast<uint64_t>(c - '0');
    denominator *= 10;
  }
  // numerator / denominator * factor is whole iff numerator is a multiple of
  // denominator / gcd(denominator, factor); dividing first keeps every step in range.
  const uint64_t common = std::gcd(denominator, factor);
  const uint64_t step = denominator / common;
  if (numerator % step != 0) return std::nullopt;
  const uint64_t part = numerator / step * (factor / common);
  if (__builtin_add_overflow(value, part, &value)) return std::nullopt;
  return value;
}

template <size_t N>
std::optional<uint64_t> parseWithUnits(std::string_view text, const std::array<Unit, N>& units) {
  for (const Unit& unit : units) {
    if (text.size() <= unit.suffix.size() || !text.ends_with(unit.suffix)) continue;
    const std::string_view number = text.substr(0, text.size() - unit.suffix.size());
    // "5ms" also ends with "s": the number part of the wrong split is not a number, so the loop
    // goes on to the right unit.
    if (!isDigit(number.back())) continue;
    return scale(number, unit.factor);
  }
  return std::nullopt;
}

template <size_t N>
std::string formatWithUnits(uint64_t value, const std::array<Unit, N>& units,
                            std::string_view zero) {
  for (const Unit& unit : units) {
    if (value != 0 && value % unit.factor == 0) {
      return std::to_string(value / unit.factor) + std::string(unit.suffix);
    }
  }
  return std::string(zero);
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  if (text == "0") return Duration{0};
  const std::optional<uint64_t> nanos = parseWithUnits(text, kDurationUnits);
  if (!nanos || *nanos > static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max())) {
    return std::nullopt;
  }
  return Duration{static_cast<Duration::rep>(*nanos)};
}

std::optional<size_t> parseSize(std::string_view text) {
  std::optional<uint64_t> bytes;
  if (!text.empty() && isDigit(text.back())) {
    bytes = scale(text, 1);
    // A plain byte count is an integer: "1.5" bytes is not a size.
    if (text.find('.') != std::string_view::npos) return std::nullopt;
  } else {
    bytes = parseWithUnits(text, kSizeUnits);
  }
  if (!bytes || *bytes > std::numeric_limits<size_t>::max()) return std::nullopt;
  return static_cast<size_t>(*bytes);
}

std::string formatDuration(Duration duration) {
  const Duration::rep count = duration.count();
  if (count < 0) {
    // -(INT64_MIN) does not fit in int64 but does in uint64.
    return "-" + formatWithUnits(0 - static_cast<uint64_t>(count), kDurationUnits, "0s");
  }
  return formatWithUnits(static_cast<uint64_t>(count), kDurationUnits, "0s");
}

std::string formatSize(size_t bytes) { return formatWithUnits(bytes, kSizeUnits, "0B"); }

}  // namespace evgate::gateway
