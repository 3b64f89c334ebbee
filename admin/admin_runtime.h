#pragma once

#include <memory>
#include <optional>
#include <string>

#include "admin/admin_metrics.h"
#include "admin/admin_server.h"
#include "admin/admin_service.h"
#include "admin/auth.h"
#include "admin/control_plane.h"
#include "admin/notice_forwarder.h"
#include "admin/watch_hub.h"
#include "gateway/config/config.h"
#include "gateway/gateway.h"
#include "gateway/metrics/metrics_server.h"
#include "reactor/event_base.h"

namespace evgate::admin {

// A running gateway with its control plane: the configuration file with the state file over it,
// the workers, the control plane on `loop`, and the admin gRPC server. The daemon adds signals
// and the drain; tests run the same composition in process.
//
// Thread rule: `loop`'s thread, which runs the loop between start() and stop().
class AdminRuntime {
 public:
  // Events each Watch stream may have queued before it is cut off.
  static constexpr size_t kDefaultWatchQueueLimit = 4096;

  AdminRuntime(reactor::EventBase& loop, std::string configPath, gateway::Config config,
               size_t watchQueueLimit = kDefaultWatchQueueLimit);
  ~AdminRuntime();
  AdminRuntime(const AdminRuntime&) = delete;
  AdminRuntime& operator=(const AdminRuntime&) = delete;

  // Checks the admin credentials, loads the state file (a missing one is empty), starts the
  // workers on the effective configuration, the control plane and the admin server. On failure
  // returns the error, and nothing is left running.
  std::optional<std::string> start();
  // Refuses new admin calls, lets those in progress finish (running `loop` meanwhile, since they
  // may be waiting for it), shuts the server down and stops the workers. Call once the loop has
  // returned; idempotent.
  void stop();

  gateway::Gateway& gateway() { return *gateway_; }
  ControlPlane& control() { return *control_; }
  AdminServer& server() { return *server_; }
  WatchHub& hub() { return hub_; }
  const gateway::Config& fileConfig() const { return config_; }
  // "host:port" the admin server listens on (the chosen port for port 0).
  std::string adminAddress() const;
  // "host:port" the plaintext health server listens on (the chosen port for port 0); empty
  // without admin.health_address.
  std::string healthAddress() const;
  // "host:port" the metrics server listens on (the chosen port for port 0).
  std::string metricsAddress() const;
  // The control plane's metrics (the daemon reports reloads of the configuration file here).
  AdminMetrics& metrics() { return *adminMetrics_; }

 private:
  reactor::EventBase& loop_;
  const std::string configPath_;
  const gateway::Config config_;
  WatchHub hub_;
  NoticeForwarder notices_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<gateway::Gateway> gateway_;
  std::unique_ptr<ControlPlane> control_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<AdminServer> server_;
  std::shared_ptr<AdminMetrics> adminMetrics_;
  // Serves the gateway's, the process's and the control plane's metrics; stopped first.
  std::unique_ptr<gateway::metrics::MetricsServer> metricsServer_;
};

// Lays the state file at `path` over `state` (which holds the configuration file). A missing
// file is an empty overlay; an unreadable or invalid one is an error naming the file and entry.
std::optional<std::string> loadStateFile(const std::string& path, DesiredState& state);

}  // namespace evgate::admin
