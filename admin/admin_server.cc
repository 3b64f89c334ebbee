#include "admin/admin_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "reactor/socket_address.h"

namespace evgate::admin {
namespace {

constexpr const char* kServiceName = "evgate.admin.v1.Admin";

// gRPC reports a failed bind without the reason; a trial bind finds it (EADDRINUSE,
// EADDRNOTAVAIL, EACCES), so the error can say what to fix.
std::string bindError(const std::string& address) {
  const auto parsed = reactor::SocketAddress::parse(address);
  if (!parsed) return "admin.address: not an address: " + address;
  const int fd = ::socket(parsed->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string reason = "gRPC could not listen there";
  if (fd >= 0) {
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, parsed->data(), parsed->length()) != 0 || ::listen(fd, 1) != 0) {
      reason = std::strerror(errno);
    }
    ::close(fd);
  }
  return "admin: cannot listen on " + address + ": " + reason;
}

}  // namespace

AdminServer::AdminServer(std::unique_ptr<grpc::Server> server, int port)
    : server_(std::move(server)), port_(port) {}

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
  // Each Watch stream holds a thread; the rest serve unary calls. Beyond this, calls fail with
  // RESOURCE_EXHAUSTED instead of piling up threads.
  grpc::ResourceQuota quota("evgate-admin");
  quota.SetMaxThreads(static_cast<int>(config.maxWatchers) + 32);
  builder.SetResourceQuota(quota);
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
    factories.push_back(metrics->interceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(factories));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    error = bindError(config.address);
    return nullptr;
  }
  std::unique_ptr<AdminServer> admin(new AdminServer(std::move(server), port));
  admin->setServing(true);
  return admin;
}

void AdminServer::setServing(bool serving) {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

void AdminServer::shutdown(std::chrono::milliseconds grace) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace evgate::admin
