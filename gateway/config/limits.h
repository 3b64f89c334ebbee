#pragma once

// The numeric limits of the configuration model, in one place: the parser enforces them, and the
// admin API validates its requests against the same numbers (docs/configuration.md lists them).
// Rules that relate two values (health check timeout < interval, max_lifetime_jitter <
// max_lifetime, base_ejection <= max_ejection) and "a duration > 0" are stated where they apply.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace evgate::gateway::limits {

// `workers`: 0 (one per CPU) .. this.
inline constexpr uint32_t kMaxWorkers = 1024;
// Every duration, in any key.
inline constexpr std::chrono::nanoseconds kMaxDuration = std::chrono::hours(24 * 365);
// A listener's `buffer_limit`.
inline constexpr size_t kMinBufferLimit = size_t{1} << 10;
inline constexpr size_t kMaxBufferLimit = size_t{1} << 30;
// max_buffered_bytes: 0 (no budget) or this range.
inline constexpr size_t kMinBufferBudget = size_t{1} << 20;
inline constexpr size_t kMaxBufferBudget = size_t{1} << 40;
// `log.queue_limit` and `access_log.queue_limit`: a line longer than the queue is always dropped,
// so the least is a page of lines.
inline constexpr size_t kMinLogQueue = size_t{4} << 10;
inline constexpr size_t kMaxLogQueue = size_t{1} << 30;
// A listener's `max_connections` (at most UINT32_MAX).
inline constexpr uint32_t kMinMaxConnections = 1;
// An endpoint's `weight`.
inline constexpr uint32_t kMinWeight = 1;
inline constexpr uint32_t kMaxWeight = 1000;
// A cluster's `max_connect_attempts`.
inline constexpr uint32_t kMinConnectAttempts = 1;
inline constexpr uint32_t kMaxConnectAttempts = 100;
// `health_check.unhealthy_threshold` and `health_check.healthy_threshold`.
inline constexpr uint32_t kMinHealthThreshold = 1;
inline constexpr uint32_t kMaxHealthThreshold = 1000;
// `outlier.consecutive_failures`: 0 (off) .. this.
inline constexpr uint32_t kMaxConsecutiveFailures = 1000;
// Listener and cluster names.
inline constexpr size_t kMaxNameLength = 64;

// A listener or cluster name: 1 to kMaxNameLength characters from A-Z a-z 0-9 _ . -
constexpr bool isValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

}  // namespace evgate::gateway::limits
