#include "gateway/config/units.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

namespace evgate::gateway {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

struct DurationCase {
  const char* text;
  Duration expected;
};

TEST(UnitsTest, ParsesDurations) {
  const DurationCase cases[] = {
      {"0", Duration{0}},
      {"0s", Duration{0}},
      {"0ms", Duration{0}},
      {"250ms", milliseconds(250)},
      {"5s", seconds(5)},
      {"10m", minutes(10)},
      {"1h", hours(1)},
      {"1.5s", milliseconds(1500)},
      {"0.3s", milliseconds(300)},
      {"1.50s", milliseconds(1500)},
      {"2.000000000s", seconds(2)},
      {"0.5ms", microseconds(500)},
      {"100us", microseconds(100)},
      {"20ns", nanoseconds(20)},
      {"1.5h", minutes(90)},
      {"0.001s", milliseconds(1)},
      {"0.000000001s", nanoseconds(1)},
      {"007s", seconds(7)},
      {"9223372036854775807ns", Duration::max()},
      {"9223372036s", seconds(9223372036)},
  };
  for (const DurationCase& c : cases) {
    SCOPED_TRACE(c.text);
    const std::optional<Duration> parsed = parseDuration(c.text);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->count(), c.expected.count());
  }
}

TEST(UnitsTest, RejectsBadDurations) {
  const char* const cases[] = {
      "",
      "s",
      "5",
      "00",
      "-5s",
      "+5s",
      "-0s",
      " 5s",
      "5s ",
      "5 s",
      "5S",
      "5sec",
      "5d",
      "1h30m",
      "1.s",
      ".5s",
      "1..5s",
      "1.5.5s",
      "1e3ms",
      "0x10s",
      "1.5ns",
      "0.0000000001s",
      "9223372036854775808ns",
      "9223372037s",
      "18446744073709551616ns",
      "99999999999999999999999h",
      "5ms5",
      "nan",
      "inf",
  };
  for (const char* text : cases) {
    EXPECT_FALSE(parseDuration(text).has_value()) << text;
  }
}

TEST(UnitsTest, RejectsADurationWithAnEmbeddedNul) {
  EXPECT_FALSE(parseDuration(std::string("5\0s", 3)).has_value());
}

struct SizeCase {
  const char* text;
  size_t expected;
};

TEST(UnitsTest, ParsesSizes) {
  const SizeCase cases[] = {
      {"0", 0},
      {"0B", 0},
      {"512B", 512},
      {"65536", 65536},
      {"64KiB", 64 * 1024},
      {"1MiB", 1024 * 1024},
      {"1GiB", size_t{1} << 30},
      {"2TiB", size_t{2} << 40},
      {"1.5KiB", 1536},
      {"0.5MiB", 512 * 1024},
      {"18446744073709551615", std::numeric_limits<size_t>::max()},
      {"16777215TiB", size_t{16777215} << 40},
  };
  for (const SizeCase& c : cases) {
    SCOPED_TRACE(c.text);
    const std::optional<size_t> parsed = parseSize(c.text);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, c.expected);
  }
}

TEST(UnitsTest, RejectsBadSizes) {
  const char* const cases[] = {
      "",
      "B",
      "KiB",
      "-1",
      "+1",
      "-1KiB",
      "64 KiB",
      " 64KiB",
      "64KiB ",
      "64 kilobytes",
      "64KB",
      "64kb",
      "64kib",
      "64k",
      "64K",
      "1.5",
      "1.5B",
      "0.1KiB",
      "1.KiB",
      ".5KiB",
      "1e3",
      "0x10",
      "18446744073709551616",
      "16777216TiB",
      "64KiBB",
  };
  for (const char* text : cases) {
    EXPECT_FALSE(parseSize(text).has_value()) << text;
  }
}

TEST(UnitsTest, FormatsDurationsWithTheLargestExactUnit) {
  EXPECT_EQ(formatDuration(Duration{0}), "0s");
  EXPECT_EQ(formatDuration(hours(2)), "2h");
  EXPECT_EQ(formatDuration(minutes(90)), "90m");
  EXPECT_EQ(formatDuration(seconds(30)), "30s");
  EXPECT_EQ(formatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(formatDuration(microseconds(100)), "100us");
  EXPECT_EQ(formatDuration(nanoseconds(7)), "7ns");
  EXPECT_EQ(formatDuration(seconds(-5)), "-5s");
  EXPECT_EQ(formatDuration(Duration::min()), "-9223372036854775808ns");
}

TEST(UnitsTest, FormatsSizesWithTheLargestExactUnit) {
  EXPECT_EQ(formatSize(0), "0B");
  EXPECT_EQ(formatSize(100), "100B");
  EXPECT_EQ(formatSize(1536), "1536B");
  EXPECT_EQ(formatSize(64 * 1024), "64KiB");
  EXPECT_EQ(formatSize(size_t{3} << 20), "3MiB");
  EXPECT_EQ(formatSize(size_t{1} << 30), "1GiB");
  EXPECT_EQ(formatSize(size_t{1} << 40), "1TiB");
}

TEST(UnitsTest, FormattedValuesParseBack) {
  for (const Duration d : {Duration{0}, Duration{1}, Duration{999}, Duration{1500000},
                           Duration{hours(7)}, Duration::max()}) {
    EXPECT_EQ(parseDuration(formatDuration(d)), d) << formatDuration(d);
  }
  for (const size_t s : {size_t{0}, size_t{1}, size_t{1023}, size_t{65536}, size_t{5} << 30,
                         std::numeric_limits<size_t>::max()}) {
    EXPECT_EQ(parseSize(formatSize(s)), s) << formatSize(s);
  }
}

}  // namespace
}  // namespace evgate::gateway
