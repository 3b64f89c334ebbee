#include "daemon/daemon.h"

#include <signal.h>

#include <cstdio>
#include <memory>
#include <utility>

#include "admin/admin_runtime.h"
#include "gateway/config/config_parser.h"
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
  Daemon(std::string configPath, gateway::Config config)
      : runtime_(base_, configPath, std::move(config)),
        configPath_(std::move(configPath)),
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
    logStarted();
    sigterm_.add();
    sigint_.add();
    sighup_.add();
    base_.dispatch();
    sigterm_.del();
    sigint_.del();
    sighup_.del();
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
    logInfo("admin API listening on " + runtime_.adminAddress());
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
    gateway::ConfigResult result = gateway::loadConfigFile(self->configPath_);
    if (!result.ok()) {
      for (const gateway::ConfigError& error : result.errors) logError(error.toString());
      logError("reload failed; configuration unchanged");
      self->runtime_.metrics().reloadFinished(false);
      return;
    }
    if (const grpc::Status status = self->runtime_.control().reload(std::move(*result.config));
        !status.ok()) {
      logError(status.error_message());
      logError("reload failed; configuration unchanged");
      self->runtime_.metrics().reloadFinished(false);
      return;
    }
    self->runtime_.metrics().reloadFinished(true);
  }

  reactor::EventBase base_;
  admin::AdminRuntime runtime_;
  const std::string configPath_;
  reactor::Event sigterm_;
  reactor::Event sigint_;
  reactor::Event sighup_;
  std::unique_ptr<gateway::FlowDrain> drain_;  // set when a drain starts
};

}  // namespace

int run(const Options& options) {
  const std::string& path = options.configPath;
  gateway::ConfigResult result =
      path.empty() ? gateway::parseConfig(gateway::defaultConfigYaml(), "<embedded default>")
                   : gateway::loadConfigFile(path);
  if (!result.ok()) {
    for (const gateway::ConfigError& error : result.errors) {
      std::fprintf(stderr, "%s\n", error.toString().c_str());
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
  signal(SIGPIPE, SIG_IGN);

  Daemon daemon(path, std::move(*result.config));
  return daemon.run();
}

}  // namespace evgate::daemon
