#pragma once

// The text forms of durations and sizes in the configuration file (docs/configuration.md,
// "Units"). Pure functions: safe from any thread.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace evgate::gateway {

using Duration = std::chrono::nanoseconds;

// A decimal number and a unit, nothing else: "250ms", "5s", "10m", "1h", "1.5s", "100us",
// "20ns". Units: ns, us, ms, s, m, h. A fraction is allowed if the result is a whole number of
// nanoseconds ("1.5s" yes, "1.5ns" no). A bare "0" is zero; any other number needs a unit.
// nullopt for signs, spaces, exponents, other units, compound forms ("1h30m") and values that
// overflow the nanosecond count (about 292 years).
std::optional<Duration> parseDuration(std::string_view text);

// A decimal number and an optional binary unit: "512B", "64KiB", "1MiB", "1GiB", "1TiB", or a
// plain number of bytes ("65536"). A fraction is allowed if the result is a whole number of bytes
// ("1.5KiB" yes, "0.1KiB" no). nullopt for signs, spaces, decimal units ("64KB", "64k"), other
// text and values that overflow size_t.
std::optional<size_t> parseSize(std::string_view text);

// The shortest text parseDuration() reads back exactly: the largest unit that divides the value
// ("1h", "90s", "1500ms", "0s"). Negative values print with a leading "-" (for messages only).
std::string formatDuration(Duration duration);

// The largest binary unit that divides the value, so parseSize() reads it back exactly:
// "64KiB", "1MiB", "1536B", "0B".
std::string formatSize(size_t bytes);

}  // namespace evgate::gateway
