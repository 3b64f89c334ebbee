#include "gateway/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace evgate::gateway {
namespace {

std::atomic<LogFormat> gFormat{LogFormat::kText};
std::atomic<LogLevel> gLevel{LogLevel::kInfo};

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

}  // namespace

void configureLog(LogFormat format, LogLevel level) {
  gFormat.store(format, std::memory_order_relaxed);
  gLevel.store(level, std::memory_order_relaxed);
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
  std::string line;
  if (gFormat.load(std::memory_order_relaxed) == LogFormat::kJson) {
    line = "{\"ts\":\"" + timestamp() + "\",\"level\":\"" + levelName(level) +
           "\",\"msg\":" + jsonQuote(message) + "}\n";
  } else {
    line = timestamp() + " " + levelName(level) + " " + std::string(message) + "\n";
  }
  // One write per line, so lines from different workers never interleave.
  (void)::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace evgate::gateway
