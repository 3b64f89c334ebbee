// evgate: the TCP gateway daemon.
//
//   evgate                       run on the embedded default configuration
//   evgate --config FILE         run on FILE
//   evgate --check-config FILE   print every problem in FILE as file:line:col: message on
//                                stderr and exit 1, or print "ok" and exit 0
//   evgate --version
//
// SIGTERM/SIGINT drain: stop accepting, let flows finish for up to drain_timeout, closing the
// rest spread over the last fifth of that window, then exit 0. A second signal closes what is
// left at once.
//
// SIGHUP reloads --config FILE: re-reads and validates it, then applies only what changed
// (docs/gateway.md, "Reload"). An invalid file changes nothing; its problems are logged.

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/config/config_parser.h"
#include "gateway/config/default_config.h"
#include "gateway/gateway.h"
#include "gateway/log.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::gateway {
namespace {

constexpr std::string_view kUsage =
    "usage: evgate [--config FILE] [--log-format text|json] [--log-level LEVEL]\n"
    "       evgate --check-config FILE\n"
    "       evgate --version | --help\n"
    "  --config FILE        run on FILE (default: the embedded configuration)\n"
    "  --check-config FILE  print every problem in FILE as file:line:col: message, or ok\n"
    "  --log-format F       text (default) or json; overrides log.format\n"
    "  --log-level L        debug, info (default), warn or error; overrides log.level\n";

// What the command line asked for.
struct Options {
  std::string configPath;  // empty: the embedded default
  std::optional<LogFormat> logFormat;
  std::optional<LogLevel> logLevel;
};

// How often a drain looks at the flows left; closing happens in these steps, so the end of a
// drain is spread over many passes of every worker.
constexpr auto kDrainTick = std::chrono::milliseconds(20);
// The share of drain_timeout at the end of which the remaining flows are closed gradually.
constexpr double kClosingWindow = 0.2;

const char* signalName(int sig) {
  switch (sig) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "signal";
  }
}

void printErrors(const ConfigResult& result) {
  for (const ConfigError& error : result.errors) {
    std::fprintf(stderr, "%s\n", error.toString().c_str());
  }
}

// The main thread's loop: signals and the drain timer.
class Daemon {
 public:
  // `path`: the configuration file SIGHUP re-reads; empty with the embedded default.
  Daemon(Gateway& gateway, std::string path)
      : gateway_(gateway),
        path_(std::move(path)),
        sigterm_(base_, SIGTERM, reactor::kSignal | reactor::kPersist, onStopSignal, this),
        sigint_(base_, SIGINT, reactor::kSignal | reactor::kPersist, onStopSignal, this),
        sighup_(base_, SIGHUP, reactor::kSignal | reactor::kPersist, onReloadSignal, this),
        drainTick_(base_, -1, reactor::kPersist, onDrainTick, this) {
    sigterm_.add();
    sigint_.add();
    sighup_.add();
  }

  void run() { base_.dispatch(); }

 private:
  static void onStopSignal(int sig, reactor::EventMask, void* arg) {
    auto* self = static_cast<Daemon*>(arg);
    if (self->draining_) {
      logWarn(std::string("second ") + signalName(sig) + ": closing every flow now");
      self->deadline_ = self->base_.now();
      return;
    }
    self->draining_ = true;
    const Duration timeout = self->gateway_.config().drainTimeout;
    self->deadline_ = self->base_.now() + timeout;
    self->closingFrom_ =
        self->deadline_ - std::chrono::duration_cast<Duration>(timeout * kClosingWindow);
    self->gateway_.stopAccepting();
    logInfo(std::string(signalName(sig)) + ": draining " +
            std::to_string(self->gateway_.flowCount()) + " flows for up to " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
            "ms");
    self->drainTick_.add(kDrainTick);
    onDrainTick(-1, reactor::kTimeout, self);
  }

  static void onReloadSignal(int, reactor::EventMask, void* arg) {
    auto* self = static_cast<Daemon*>(arg);
    if (self->draining_) {
      logWarn("SIGHUP: draining; reload ignored");
      return;
    }
    if (self->path_.empty()) {
      logWarn("SIGHUP: running on the embedded default configuration; there is no file to reload");
      return;
    }
    logInfo("SIGHUP: reloading " + self->path_);
    ConfigResult result = loadConfigFile(self->path_);
    if (!result.ok()) {
      for (const ConfigError& error : result.errors) logError(error.toString());
      logError("reload failed; configuration unchanged");
      return;
    }
    if (const auto error = self->gateway_.reload(std::move(*result.config))) {
      logError(*error);
      logError("reload failed; configuration unchanged");
    }
  }

  static void onDrainTick(int, reactor::EventMask, void* arg) {
    auto* self = static_cast<Daemon*>(arg);
    const size_t left = self->gateway_.flowCount();
    if (left == 0) {
      logInfo("drained; exiting");
      self->base_.loopBreak();
      return;
    }
    const reactor::TimePoint now = self->base_.now();
    if (now >= self->deadline_) {
      self->gateway_.closeFlows(left, CloseReason::kDrain);
      return;
    }
    if (now < self->closingFrom_) return;
    // Close a share of what is left proportional to the time left, so the closes are spread
    // evenly over the closing window instead of all landing at the deadline.
    const double share = std::chrono::duration<double>(kDrainTick) /
                         std::chrono::duration<double>(self->deadline_ - now);
    const size_t perWorker =
        static_cast<size_t>(std::ceil(static_cast<double>(left) * std::min(1.0, share) /
                                      static_cast<double>(self->gateway_.workerCount())));
    self->gateway_.closeFlows(std::max<size_t>(perWorker, 1), CloseReason::kDrain);
  }

  Gateway& gateway_;
  const std::string path_;
  reactor::EventBase base_;
  reactor::Event sigterm_;
  reactor::Event sigint_;
  reactor::Event sighup_;
  reactor::Event drainTick_;
  bool draining_ = false;
  reactor::TimePoint deadline_{};
  reactor::TimePoint closingFrom_{};
};

int checkConfig(const std::string& path) {
  const ConfigResult result = loadConfigFile(path);
  if (!result.ok()) {
    printErrors(result);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

int run(const Options& options) {
  const std::string& path = options.configPath;
  const ConfigResult result =
      path.empty() ? parseConfig(defaultConfigYaml(), "<embedded default>") : loadConfigFile(path);
  if (!result.ok()) {
    printErrors(result);
    return 1;
  }
  const Config& config = *result.config;
  configureLog(options.logFormat.value_or(config.log.format),
               options.logLevel.value_or(config.log.level));

  // Workers inherit the mask: the signals reach only the main thread's signalfd.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer that resets while we write must not kill the process (Buffer sends with MSG_NOSIGNAL;
  // this covers anything else).
  signal(SIGPIPE, SIG_IGN);

  Gateway gateway(config);
  if (const auto error = gateway.start()) {
    logError(*error);
    return 1;
  }
  logInfo("evgate " EVGATE_VERSION " started with " + std::to_string(gateway.workerCount()) +
          " workers (" + (path.empty() ? std::string("embedded default configuration") : path) +
          ")");
  for (const auto& listener : gateway.listeners()) {
    logInfo("listener " + listener->config.name + " listening on " + listener->bound.toString() +
            " -> cluster " + listener->config.cluster);
  }
  if (gateway.listeners().empty()) logInfo("no listeners configured");
  logInfo("admin API (" + config.admin.address + ") and metrics (" + config.metrics.address +
          ") are configured but not served by this version");
  Daemon daemon(gateway, path);
  daemon.run();
  gateway.stop();
  return 0;
}

}  // namespace
}  // namespace evgate::gateway

namespace evgate::gateway {
namespace {

int usageError() {
  std::fputs(kUsage.data(), stderr);
  return 2;
}

std::optional<LogFormat> parseLogFormat(std::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return std::nullopt;
}

std::optional<LogLevel> parseLogLevel(std::string_view text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warn") return LogLevel::kWarn;
  if (text == "error") return LogLevel::kError;
  return std::nullopt;
}

int mainWithArgs(const std::vector<std::string_view>& args) {
  if (args.size() == 1 && (args[0] == "--version" || args[0] == "-V")) {
    std::printf("evgate %s\n", EVGATE_VERSION);
    return 0;
  }
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(kUsage.data(), stdout);
    return 0;
  }
  if (args.size() == 2 && args[0] == "--check-config") return checkConfig(std::string(args[1]));
  Options options;
  for (size_t i = 0; i < args.size(); i += 2) {
    if (i + 1 >= args.size()) return usageError();
    const std::string_view value = args[i + 1];
    if (args[i] == "--config" && options.configPath.empty() && !value.empty()) {
      options.configPath = value;
    } else if (args[i] == "--log-format" && parseLogFormat(value)) {
      options.logFormat = parseLogFormat(value);
    } else if (args[i] == "--log-level" && parseLogLevel(value)) {
      options.logLevel = parseLogLevel(value);
    } else {
      return usageError();
    }
  }
  return run(options);
}

}  // namespace
}  // namespace evgate::gateway

int main(int argc, char** argv) {
  return evgate::gateway::mainWithArgs(std::vector<std::string_view>(argv + 1, argv + argc));
}
