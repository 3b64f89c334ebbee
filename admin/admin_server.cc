#include "admin/admin_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "reactor/fatal.h"
#include "reactor/socket_address.h"

namespace evgate::admin {
namespace {

constexpr const char* kServiceName = "evgate.admin.v1.Admin";
// Answers SERVING for as long as the process serves at all, draining included: what a liveness
// probe asks (a readiness probe asks "" or kServiceName, which turn NOT_SERVING on a drain).
constexpr const char* kLivenessServiceName = "evgate.liveness";

// gRPC reports a failed bind without the reason; a trial bind finds it (EADDRINUSE,
// EADDRNOTAVAIL, EACCES), so the error can say what to fix.
std::string bindError(const std::string& key, const std::string& address) {
  const auto parsed = reactor::SocketAddress::parse(address);
  if (!parsed) return key + ": not an address: " + address;
  const int fd = ::socket(parsed->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string reason = "gRPC could not listen there";
  if (fd >= 0) {
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, parsed->data(), parsed->length()) != 0 || ::listen(fd, 1) != 0) {
      reason = reactor::errnoText(errno);
    }
    ::close(fd);
  }
  return key + ": cannot listen on " + address + ": " + reason;
}

// The plaintext server for probes: grpc.health.v1 only (the default health service is added to
// every server built while it is enabled, and nothing else is registered).
std::unique_ptr<grpc::Server> startHealthServer(const std::string& address, int& port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Health requests are a few bytes; nothing larger has a reason to arrive here.
  builder.SetMaxReceiveMessageSize(4096);
  grpc::ResourceQuota quota("evgate-health");
  quota.SetMaxThreads(8);
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (port == 0) server.reset();
  return server;
}

}  // namespace

AdminServer::AdminServer(std::unique_ptr<grpc::Server> server, int port,
                         std::unique_ptr<grpc::Server> healthServer, int healthPort)
    : server_(std::move(server)),
      port_(port),
      healthServer_(std::move(healthServer)),
      healthPort_(healthPort) {}

AdminServer::~AdminServer() { shutdown(std::chrono::milliseconds(0)); }

std::unique_ptr<AdminServer> AdminServer::start(const gateway::AdminConfig& config,
                                                const Authenticator& auth, grpc::Service& service,
                                                std::string& error, AdminMetrics* metrics) {
  // Both are process-wide switches that take effect for servers built after them.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.address, auth.serverCredentials(), &port);
  builder.RegisterService(&service);
  // gRPC sets SO_REUSEPORT by default; then a listener created on the admin port would share
  // it and take half of the admin connections. Without it, such a bind fails.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const int maxMessage = static_cast<int>(config.maxMessageSize);
  builder.SetMaxReceiveMessageSize(maxMessage);
  builder.SetMaxSendMessageSize(maxMessage);
  // The sync server holds a thread per Watch stream while it is open, and one per other call
  // while it runs (most wait for the control loop, which runs them one at a time). A call that
  // finds no thread left is not queued: gRPC answers it RESOURCE_EXHAUSTED "Server Threadpool
  // Exhausted", a little before the limit (grpc/grpc#32680). So the limit is a ceiling against a
  // flood, well above what tools do: every watcher, and kMaxCallsInFlight other calls at once.
  grpc::ResourceQuota quota("evgate-admin");
  quota.SetMaxThreads(static_cast<int>(config.maxWatchers) + AdminServer::kMaxCallsInFlight);
  builder.SetResourceQuota(quota);
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
    factories.push_back(metrics->interceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(factories));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    error = bindError("admin.address", config.address);
    return nullptr;
  }
  std::unique_ptr<grpc::Server> healthServer;
  int healthPort = 0;
  if (!config.healthAddress.empty()) {
    healthServer = startHealthServer(config.healthAddress, healthPort);
    if (healthServer == nullptr) {
      error = bindError("admin.health_address", config.healthAddress);
      server->Shutdown(std::chrono::system_clock::now());
      server->Wait();
      return nullptr;
    }
  }
  std::unique_ptr<AdminServer> admin(
      new AdminServer(std::move(server), port, std::move(healthServer), healthPort));
  for (grpc::Server* each : {admin->server_.get(), admin->healthServer_.get()}) {
    if (each == nullptr) continue;
    if (auto* health = each->GetHealthCheckService()) {
      health->SetServingStatus(kLivenessServiceName, true);
    }
  }
  admin->setServing(true);
  return admin;
}

void AdminServer::setServing(bool serving) {
  for (grpc::Server* each : {server_.get(), healthServer_.get()}) {
    if (each == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = each->GetHealthCheckService();
    if (health == nullptr) continue;
    health->SetServingStatus("", serving);
    health->SetServingStatus(kServiceName, serving);
  }
}

void AdminServer::shutdown(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::system_clock::now() + grace;
  if (healthServer_ != nullptr) {
    healthServer_->Shutdown(deadline);
    healthServer_->Wait();
    healthServer_.reset();
  }
  if (server_ == nullptr) return;
  server_->Shutdown(deadline);
  server_->Wait();
  server_.reset();
}

}  // namespace evgate::admin
