#include "admin/admin_runtime.h"

#include <google/protobuf/util/json_util.h>

#include <string>
#include <thread>
#include <utility>

#include "admin/state_file.h"
#include "gateway/log.h"
#include "gateway/metrics/gateway_collector.h"
#include "gateway/metrics/process_collector.h"

namespace evgate::admin {
namespace {

// How long admin calls in progress get to finish at exit.
constexpr auto kShutdownGrace = std::chrono::milliseconds(1000);

}  // namespace

std::optional<std::string> loadStateFile(const std::string& path, DesiredState& state) {
  std::string text;
  if (const auto error = readWholeFile(path, text)) {
    if (error->missing()) return std::nullopt;
    return error->message;
  }
  state::v1::State overlay;
  const auto parsed = google::protobuf::util::JsonStringToMessage(text, &overlay);
  if (!parsed.ok()) return "state file " + path + ": " + parsed.ToString();
  if (const grpc::Status status = state.loadOverlay(overlay); !status.ok()) {
    return "state file " + path + ": " + status.error_message();
  }
  return std::nullopt;
}

AdminRuntime::AdminRuntime(reactor::EventBase& loop, std::string configPath, gateway::Config config,
                           size_t watchQueueLimit)
    : loop_(loop),
      configPath_(std::move(configPath)),
      config_(std::move(config)),
      hub_(config_.admin.maxWatchers, watchQueueLimit),
      notices_(hub_),
      adminMetrics_(std::make_shared<AdminMetrics>(hub_)) {}

AdminRuntime::~AdminRuntime() { stop(); }

std::optional<std::string> AdminRuntime::start() {
  std::string error;
  auth_ = Authenticator::create(config_.admin, error);
  if (auth_ == nullptr) return error;
  for (const std::string& warning : securityWarnings(config_.admin)) gateway::logWarn(warning);

  DesiredState desired(config_);
  if (!config_.stateFile.empty()) {
    if (auto stateError = loadStateFile(config_.stateFile, desired)) {
      return *stateError + " (fix or remove it to start from the configuration file alone)";
    }
    // A kill during a write leaves its temporary file; without this they would pile up, one
    // per crash. A failure here costs only disk space, so it is reported and startup goes on.
    const StaleTemporaries stale = removeStaleTemporaries(config_.stateFile);
    if (stale.removed > 0) {
      gateway::logWarn("removed " + std::to_string(stale.removed) +
                       " temporary file(s) left by an interrupted write of the state file " +
                       config_.stateFile);
    }
    if (stale.error) gateway::logWarn(*stale.error);
  }
  gateway::Config effective = desired.effective();
  if (const grpc::Status status = checkReferences(effective); !status.ok()) {
    return "the state file " + config_.stateFile +
           " does not fit the configuration file: " + status.error_message();
  }
  auto gateway = std::make_unique<gateway::Gateway>(std::move(effective));
  gateway->setNoticeSink(&notices_);
  if (auto startError = gateway->start()) return startError;
  gateway_ = std::move(gateway);
  control_ = std::make_unique<ControlPlane>(
      loop_, *gateway_, std::move(desired), hub_,
      ControlPlane::Options{EVGATE_VERSION, configPath_, config_.stateFile});
  control_->start();
  service_ = std::make_unique<AdminService>(*control_, *auth_, hub_);
  control_->setMetrics(adminMetrics_.get());
  server_ = AdminServer::start(config_.admin, *auth_, *service_, error, adminMetrics_.get());
  if (server_ != nullptr) {
    metricsServer_ = gateway::metrics::MetricsServer::start(
        config_.metrics.address,
        {std::make_shared<gateway::metrics::GatewayCollector>(
             *gateway_, gateway::metrics::GatewayCollector::kDefaultSampleTimeout,
             config_.metrics.listenerDetail),
         std::make_shared<gateway::metrics::ProcessCollector>(EVGATE_VERSION), adminMetrics_},
        error);
  }
  if (server_ == nullptr || metricsServer_ == nullptr) {
    server_.reset();
    service_.reset();
    control_.reset();
    gateway_->stop();
    gateway_.reset();
    return error;
  }
  return std::nullopt;
}

void AdminRuntime::stop() {
  // The collectors read the gateway: no scrape may run once it stops.
  metricsServer_.reset();
  if (server_ != nullptr) {
    control_->close();
    hub_.closeAll();
    // Calls in progress may be waiting for the control loop: keep it running until the server
    // has let them finish.
    std::thread stopper([this] {
      server_->shutdown(kShutdownGrace);
      loop_.runInLoop([this] { loop_.loopBreak(); });
    });
    loop_.loop(reactor::kLoopNoExitOnEmpty);
    stopper.join();
    server_.reset();
  }
  service_.reset();
  control_.reset();
  if (gateway_ != nullptr) gateway_->stop();
}

std::string AdminRuntime::metricsAddress() const {
  return metricsServer_ != nullptr ? metricsServer_->boundAddress() : config_.metrics.address;
}

namespace {

// `configured` with a ":0" port replaced by the port actually bound.
std::string withBoundPort(std::string configured, int port) {
  if (port != 0 && configured.ends_with(":0")) {
    configured.replace(configured.size() - 1, 1, std::to_string(port));
  }
  return configured;
}

}  // namespace

std::string AdminRuntime::adminAddress() const {
  return withBoundPort(config_.admin.address, server_ != nullptr ? server_->port() : 0);
}

std::string AdminRuntime::healthAddress() const {
  return withBoundPort(config_.admin.healthAddress, server_ != nullptr ? server_->healthPort() : 0);
}

}  // namespace evgate::admin
