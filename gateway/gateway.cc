#include "gateway/gateway.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "gateway/health_checker.h"

namespace evgate::gateway {

int openListeningSocket(const reactor::SocketAddress& address) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int on = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
      ::bind(fd, address.data(), address.length()) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

Gateway::Gateway(Config config) : config_(std::move(config)), accessLog_(config_.accessLog) {}

Gateway::~Gateway() { stop(); }

std::optional<std::string> Gateway::start() {
  if (!accessLog_.error().empty()) return accessLog_.error();
  const uint32_t workerCount =
      config_.workers != 0 ? config_.workers : std::max(1u, std::thread::hardware_concurrency());

  for (const ClusterConfig& cluster : config_.clusters) {
    clusters_.push_back(std::make_shared<ClusterState>(cluster));
  }
  // Every socket is opened before any worker starts; on failure all of them are closed again.
  std::vector<std::vector<Worker::Socket>> sockets(workerCount);
  auto closeAll = [&sockets] {
    for (auto& perWorker : sockets) {
      for (Worker::Socket& socket : perWorker) ::close(socket.fd);
    }
  };
  for (const ListenerConfig& listenerConfig : config_.listeners) {
    auto listener = std::make_shared<ListenerState>();
    listener->config = listenerConfig;
    for (size_t i = 0; i < config_.clusters.size(); ++i) {
      if (config_.clusters[i].name == listenerConfig.cluster) listener->cluster = clusters_[i];
    }
    reactor::SocketAddress address = listenerConfig.bind;
    for (uint32_t w = 0; w < workerCount; ++w) {
      const int fd = openListeningSocket(address);
      if (fd < 0) {
        const std::string error = "listener " + listenerConfig.name + ": cannot listen on " +
                                  address.toString() + ": " + std::strerror(errno);
        closeAll();
        clusters_.clear();
        listeners_.clear();
        return error;
      }
      // Port 0: the first socket got a port from the kernel; the others share it.
      if (w == 0) address = *reactor::SocketAddress::localOf(fd);
      sockets[w].push_back(Worker::Socket{listener, fd});
    }
    listener->bound = address;
    listeners_.push_back(std::move(listener));
  }
  for (uint32_t w = 0; w < workerCount; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, accessLog_));
    workers_.back()->start(std::move(sockets[w]));
  }
  // Active health checks run on worker 0's loop: one prober per cluster is enough, and the
  // results reach every worker through the shared ClusterState.
  for (const auto& cluster : clusters_) {
    if (!cluster->config().healthCheck) continue;
    workers_.front()->own([cluster](reactor::EventBase& base) -> std::shared_ptr<void> {
      auto checker = std::make_shared<HealthChecker>(base, cluster);
      checker->start();
      return checker;
    });
  }
  return std::nullopt;
}

void Gateway::stopAccepting() {
  for (auto& worker : workers_) worker->stopAccepting();
}

size_t Gateway::flowCount() const {
  size_t count = 0;
  for (const auto& worker : workers_) count += worker->flowCount();
  return count;
}

void Gateway::closeFlows(size_t perWorker, CloseReason reason) {
  for (auto& worker : workers_) worker->closeFlows(perWorker, reason);
}

void Gateway::stop() {
  for (auto& worker : workers_) worker->stop();
  workers_.clear();
}

}  // namespace evgate::gateway
