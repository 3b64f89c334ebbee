#include "daemon/daemon.h"

#include <signal.h>

#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "admin/admin_runtime.h"
#include "admin/grpc_log.h"
#include "gateway/config/config_parser.h"
#include "gateway/config/config_watcher.h"
#include "gateway/config/default_config.h"
#include "gateway/flow_drain.h"
#include "gateway/log.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::daemon {
namespace {

using gateway::logError;
using gateway::logInfo;
using gateway::logWarn;

// How long the configuration file's directory must stay quiet before a change is read: long
// enough to take a truncate-and-write or a ConfigMap swap as one change.
constexpr auto kConfigSettle = std::chrono::milliseconds(100);

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

// The main thread's loop (the control loop) and what only the daemon does on it: signals and
// the drain.
class Daemon {
 public:
  Daemon(std::string configPath, std::string configText, gateway::Config config)
      : runtime_(base_, configPath, std::move(config)),
        configPath_(std::move(configPath)),
        lastConfigText_(std::move(configText)),
        sigterm_(base_, SIGTERM, reactor::kSignal | reactor::kPersist, onStopSignal, this),
        sigint_(base_, SIGINT, reactor::kSignal | reactor::kPersist, onStopSignal, this),
        sighup_(base_, SIGHUP, reactor::kSignal | reactor::kPersist, onReloadSignal, this) {}

  int run() {
    if (const auto error = runtime_.start()) {
      logError(*error);
      return 1;
    }
    runtime_.control().setDrainStarter([this](std::optional<gateway::Duration> timeout) {
      const uint64_t flows = runtime_.gateway().flowCount();
      startDrain("Drain RPC", timeout.value_or(runtime_.gateway().config().drainTimeout));
      return flows;
    });
    if (!configPath_.empty() && runtime_.fileConfig().configWatch) {
      watcher_ = std::make_unique<gateway::ConfigWatcher>(base_, configPath_, kConfigSettle,
                                                          [this] { onConfigFileChanged(); });
      if (const auto error = watcher_->start()) {
        // Reloads still work through SIGHUP: worth a warning, not a refusal to start.
        logWarn(*error + "; reload with SIGHUP instead");
        watcher_.reset();
      }
    }
    logStarted();
    sigterm_.add();
    sigint_.add();
    sighup_.add();
    base_.dispatch();
    sigterm_.del();
    sigint_.del();
    sighup_.del();
    watcher_.reset();
    runtime_.stop();
    return 0;
  }

 private:
  void logStarted() {
    const gateway::Config& config = runtime_.fileConfig();
    logInfo("evgate " EVGATE_VERSION " started with " +
            std::to_string(runtime_.gateway().workerCount()) + " workers (" +
            (configPath_.empty() ? std::string("embedded default configuration") : configPath_) +
            (config.stateFile.empty() ? "" : ", state file " + config.stateFile) + ")");
    for (const auto& listener : runtime_.gateway().listeners()) {
      logInfo("listener " + listener->config.name + (listener->config.paused ? " (paused)" : "") +
              " listening on " + listener->bound.toString() + " -> cluster " +
              listener->config.cluster);
    }
    if (runtime_.gateway().listeners().empty()) logInfo("no listeners configured");
    if (watcher_ != nullptr) logInfo("watching " + configPath_ + " for changes");
    logInfo("admin API listening on " + runtime_.adminAddress());
    if (const std::string health = runtime_.healthAddress(); !health.empty()) {
      logInfo("health checks listening on " + health);
    }
    logInfo("metrics listening on " + runtime_.metricsAddress() + "/metrics");
  }

  // Stops accepting and drains every flow; the loop ends when they are gone.
  void startDrain(const std::string& why, gateway::Duration timeout) {
    if (drain_ != nullptr) return;
    gateway::Gateway& gateway = runtime_.gateway();
    runtime_.server().setServing(false);
    runtime_.control().setDraining(true);
    admin::v1::WatchEvent event;
    event.set_type(admin::v1::WATCH_EVENT_TYPE_DRAIN_STARTED);
    event.set_detail(why);
    runtime_.hub().publish(std::move(event));
    gateway.stopAccepting();
    logInfo(why + ": draining " + std::to_string(gateway.flowCount()) + " flows for up to " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
            "ms");
    drain_ = std::make_unique<gateway::FlowDrain>(base_, gateway, gateway::FlowFilter{}, timeout,
                                                  [this](size_t) {
                                                    logInfo("drained; exiting");
                                                    base_.loopBreak();
                                                  });
    drain_->start();
  }

  static void onStopSignal(int sig, reactor::EventMask, void* arg) {
    auto* self = static_cast<Daemon*>(arg);
    if (self->drain_ != nullptr) {
      logWarn(std::string("second ") + signalName(sig) + ": closing every flow now");
      self->drain_->closeNow();
      return;
    }
    self->startDrain(signalName(sig), self->runtime_.gateway().config().drainTimeout);
  }

  static void onReloadSignal(int, reactor::EventMask, void* arg) {
    auto* self = static_cast<Daemon*>(arg);
    if (self->drain_ != nullptr) {
      logWarn("SIGHUP: draining; reload ignored");
      return;
    }
    if (self->configPath_.empty()) {
      logWarn("SIGHUP: running on the embedded default configuration; there is no file to reload");
      return;
    }
    logInfo("SIGHUP: reloading " + self->configPath_);
    std::string text;
    if (auto error = gateway::readConfigFile(self->configPath_, text)) {
      self->reloadFailed({std::move(*error)});
      return;
    }
    self->reload(std::move(text));
  }

  // The watcher saw the file's directory change. Reloads only when the content differs from the
  // last text tried (applied or refused): a ConfigMap resync, another file in the directory, or
  // a rewrite with the same bytes changes nothing and logs nothing.
  void onConfigFileChanged() {
    if (drain_ != nullptr) return;
    std::string text;
    if (auto error = gateway::readConfigFile(configPath_, text)) {
      // Removed or being replaced: a later event brings the new file. Said once per state.
      if (lastConfigText_.has_value()) {
        logWarn("config watch: " + error->toString() + "; the running configuration stays");
        lastConfigText_.reset();
      }
      return;
    }
    if (text == lastConfigText_) return;
    logInfo("config watch: " + configPath_ + " changed; reloading");
    reload(std::move(text));
  }

  // Parses `text` (the file's content) and applies the difference; all or nothing.
  void reload(std::string text) {
    gateway::ConfigResult result = gateway::parseConfig(text, configPath_);
    lastConfigText_ = std::move(text);
    if (!result.ok()) {
      reloadFailed(result.errors);
      return;
    }
    if (const grpc::Status status = runtime_.control().reload(std::move(*result.config));
        !status.ok()) {
      logError(status.error_message());
      reloadFailed({});
      return;
    }
    runtime_.metrics().reloadFinished(true);
  }

  void reloadFailed(const std::vector<gateway::ConfigError>& errors) {
    for (const gateway::ConfigError& error : errors) logError(error.toString());
    logError("reload failed; configuration unchanged");
    runtime_.metrics().reloadFinished(false);
  }

  reactor::EventBase base_;
  admin::AdminRuntime runtime_;
  const std::string configPath_;
  // The configuration file's content as last read for a start or reload (nullopt after it could
  // not be read), so the watcher reloads only on a real change.
  std::optional<std::string> lastConfigText_;
  std::unique_ptr<gateway::ConfigWatcher> watcher_;  // set with config_watch and a --config file
  reactor::Event sigterm_;
  reactor::Event sigint_;
  reactor::Event sighup_;
  std::unique_ptr<gateway::FlowDrain> drain_;  // set when a drain starts
};

}  // namespace

int run(const Options& options) {
  const std::string& path = options.configPath;
  std::string text;
  gateway::ConfigResult result;
  if (path.empty()) {
    result = gateway::parseConfig(gateway::defaultConfigYaml(), "<embedded default>");
  } else if (auto error = gateway::readConfigFile(path, text)) {
    result.errors.push_back(std::move(*error));
  } else {
    result = gateway::parseConfig(text, path);
  }
  if (!result.ok()) {
    for (const gateway::ConfigError& error : result.errors) {
      (void)std::fprintf(stderr, "%s\n", error.toString().c_str());
    }
    return 1;
  }
  gateway::configureLog(options.logFormat.value_or(result.config->log.format),
                        options.logLevel.value_or(result.config->log.level));

  // Every thread started from here on (workers, gRPC) inherits the mask: the signals reach only
  // the main thread's signalfd.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer that resets while we write must not kill the process (Buffer sends with MSG_NOSIGNAL;
  // this covers anything else).
  (void)signal(SIGPIPE, SIG_IGN);  // cannot fail for a valid signal and handler

  // From here on the log, gRPC's lines included, is written by its own thread (started after
  // the mask, like every other): a stalled reader of stderr costs lines, counted, never a
  // stalled worker or admin call. Flushed on every way out of run().
  gateway::startLogQueue(result.config->log.queueLimit);
  admin::routeGrpcLogToEvgateLog();
  struct FlushLogAtExit {
    FlushLogAtExit() = default;
    FlushLogAtExit(const FlushLogAtExit&) = delete;
    FlushLogAtExit& operator=(const FlushLogAtExit&) = delete;
    ~FlushLogAtExit() { gateway::stopLogQueue(); }
  } flushLogAtExit;

  Daemon daemon(path, std::move(text), std::move(*result.config));
  return daemon.run();
}

}  // namespace evgate::daemon
