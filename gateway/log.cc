#include "gateway/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace evgate::gateway {
namespace {

std::atomic<LogFormat> gFormat{LogFormat::kText};
std::atomic<LogLevel> gLevel{LogLevel::kInfo};
// The queue, once started. Never freed before the process exits: a thread may have loaded the
// pointer just before stopLogQueue(), and a stopped sink still writes (at once).
std::atomic<LogSink*> gQueue{nullptr};

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[80];
  (void)std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                      utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                      static_cast<int>(millis));
  return text;
}

std::string formatLine(LogLevel level, std::string_view message) {
  if (gFormat.load(std::memory_order_relaxed) == LogFormat::kJson) {
    return "{\"ts\":\"" + timestamp() + "\",\"level\":\"" + levelName(level) +
           "\",\"msg\":" + jsonQuote(message) + "}\n";
  }
  return timestamp() + " " + levelName(level) + " " + std::string(message) + "\n";
}

// Writes a formatted line: through the queue once there is one (a report into its reserve),
// else at once, one write per line so that lines from different threads never interleave.
void emit(const std::string& line, bool dropReport) {
  if (LogSink* queue = gQueue.load(std::memory_order_acquire)) {
    if (dropReport) {
      queue->writeReport(line);
    } else {
      queue->write(line);
    }
    return;
  }
  (void)::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

void configureLog(LogFormat format, LogLevel level) {
  gFormat.store(format, std::memory_order_relaxed);
  gLevel.store(level, std::memory_order_relaxed);
}

void startLogQueue(size_t queueLimit) {
  static std::once_flag once;
  std::call_once(once, [&] {
    // Leaked on purpose (see gQueue); reachable through gQueue, so no leak checker reports it.
    gQueue.store(new LogSink(STDERR_FILENO, queueLimit, "log",
                             [](uint64_t dropped) {
                               logDropReport("log", dropped,
                                             "stderr's reader fell behind and the log queue "
                                             "(log.queue_limit) was full");
                             }),
                 std::memory_order_release);
  });
}

void stopLogQueue() {
  if (LogSink* queue = gQueue.load(std::memory_order_acquire)) queue->close();
}

std::optional<LogSink::Stats> logQueueStats() {
  if (const LogSink* queue = gQueue.load(std::memory_order_acquire)) return queue->stats();
  return std::nullopt;
}

std::string jsonQuote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          (void)std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void logMessage(LogLevel level, std::string_view message) {
  if (level < gLevel.load(std::memory_order_relaxed)) return;
  logUnfiltered(level, message);
}

void logUnfiltered(LogLevel level, std::string_view message) {
  emit(formatLine(level, message), /*dropReport=*/false);
}

void logDropReport(std::string_view log, uint64_t dropped, std::string_view why) {
  emit(formatLine(LogLevel::kWarn, std::string(log) + ": " + std::to_string(dropped) +
                                       (dropped == 1 ? " line" : " lines") +
                                       " dropped: " + std::string(why)),
       /*dropReport=*/true);
}

}  // namespace evgate::gateway
