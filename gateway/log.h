#pragma once

#include <string_view>

#include "gateway/config/config.h"

namespace evgate::gateway {

// The daemon's own log (not the access log): one line per message on stderr, human-readable or
// JSON ({"ts":..., "level":..., "msg":...}). Safe from any thread: each line is one write(2).
void configureLog(LogFormat format, LogLevel level);
void logMessage(LogLevel level, std::string_view message);
// The same whatever the configured level: for records that must not be filtered out (the admin
// API's audit trail).
void logUnfiltered(LogLevel level, std::string_view message);
inline void logInfo(std::string_view message) { logMessage(LogLevel::kInfo, message); }
inline void logWarn(std::string_view message) { logMessage(LogLevel::kWarn, message); }
inline void logError(std::string_view message) { logMessage(LogLevel::kError, message); }
inline void logDebug(std::string_view message) { logMessage(LogLevel::kDebug, message); }

// `text` as a JSON string literal, quotes included.
std::string jsonQuote(std::string_view text);

}  // namespace evgate::gateway
