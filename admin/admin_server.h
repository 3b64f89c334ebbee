#pragma once

#include <grpcpp/server.h>

#include <chrono>
#include <memory>
#include <string>

#include "admin/admin_metrics.h"
#include "admin/auth.h"
#include "gateway/config/config.h"

namespace evgate::admin {

// The admin gRPC server: the Admin service, gRPC health checking and server reflection, on the
// admin address with the configured credentials and message size limit; and, with
// admin.health_address, a second plaintext server answering health checks only (for probes
// that cannot present the admin credentials).
//
// Health services: "" and "evgate.admin.v1.Admin" are readiness (NOT_SERVING once a drain
// starts); "evgate.liveness" stays SERVING until the servers shut down.
//
// Thread rule: the owner's thread; setServing() from any thread.
class AdminServer {
 public:
  // Calls other than Watch streams that may run at once on the admin address (each holds a
  // thread while it runs); one more is answered RESOURCE_EXHAUSTED. Hundreds at once are served.
  static constexpr int kMaxCallsInFlight = 1024;

  // Binds `config.address` and starts serving `service`. On failure returns nullptr and sets
  // `error` (naming the address and the system's reason when the bind fails).
  // `metrics`, if set, counts every answered Admin call (it must outlive the server).
  static std::unique_ptr<AdminServer> start(const gateway::AdminConfig& config,
                                            const Authenticator& auth, grpc::Service& service,
                                            std::string& error, AdminMetrics* metrics = nullptr);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The bound port (the chosen one when the address says port 0).
  int port() const { return port_; }
  // The health server's bound port; 0 without admin.health_address.
  int healthPort() const { return healthPort_; }
  // What health checks answer: SERVING, or NOT_SERVING once a drain has started (so that
  // Kubernetes readiness turns false while the flows finish).
  void setServing(bool serving);
  // Stops accepting calls and waits up to `grace` for the calls in progress; cancels the rest.
  void shutdown(std::chrono::milliseconds grace);

 private:
  AdminServer(std::unique_ptr<grpc::Server> server, int port,
              std::unique_ptr<grpc::Server> healthServer, int healthPort);

  std::unique_ptr<grpc::Server> server_;
  const int port_;
  std::unique_ptr<grpc::Server> healthServer_;  // with admin.health_address
  const int healthPort_;
};

}  // namespace evgate::admin
