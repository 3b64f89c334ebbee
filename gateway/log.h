#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "gateway/config/config.h"
#include "gateway/log_sink.h"

namespace evgate::gateway {

// The daemon's own log (not the access log): one line per message on stderr, human-readable or
// JSON ({"ts":..., "level":..., "msg":...}). Safe from any thread. Each line is one write(2):
// at once, or, once startLogQueue() has run, from a LogSink's thread, so that a stalled reader
// of stderr never blocks the thread that logs (log_sink.h).
void configureLog(LogFormat format, LogLevel level);
// Moves the log's writes to a LogSink queueing at most `queueLimit` bytes (log.queue_limit).
// For the daemon, once, at start; a later call is ignored. Safe from any thread.
void startLogQueue(size_t queueLimit);
// Writes what is queued (for at most LogSink::kCloseTimeout) and goes back to writing at once.
// For the daemon's exit, from one thread.
void stopLogQueue();
// The queue's figures; nullopt before startLogQueue(). Safe from any thread.
std::optional<LogSink::Stats> logQueueStats();
void logMessage(LogLevel level, std::string_view message);
// The same whatever the configured level: for records that must not be filtered out (the admin
// API's audit trail).
void logUnfiltered(LogLevel level, std::string_view message);
// A warning that log lines were lost ("access log: 3 lines dropped: ..."), whatever the level,
// into room the queue keeps for such reports (LogSink::writeReport). For DropReports.
void logDropReport(std::string_view log, uint64_t dropped, std::string_view why);
inline void logInfo(std::string_view message) { logMessage(LogLevel::kInfo, message); }
inline void logWarn(std::string_view message) { logMessage(LogLevel::kWarn, message); }
inline void logError(std::string_view message) { logMessage(LogLevel::kError, message); }
inline void logDebug(std::string_view message) { logMessage(LogLevel::kDebug, message); }

// `text` as a JSON string literal, quotes included.
std::string jsonQuote(std::string_view text);

}  // namespace evgate::gateway
