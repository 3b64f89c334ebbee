#include "gateway/gateway.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <thread>
#include <utility>

#include "gateway/health_checker.h"
#include "gateway/log.h"

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

std::optional<std::string> Gateway::openSockets(ListenerState& listener,
                                                std::vector<int>& fds) const {
  reactor::SocketAddress address = listener.config.bind;
  for (uint32_t w = 0; w < workerCount_; ++w) {
    const int fd = openListeningSocket(address);
    if (fd < 0) {
      const std::string error = "listener " + listener.config.name + ": cannot listen on " +
                                address.toString() + ": " + std::strerror(errno);
      for (const int open : fds) ::close(open);
      fds.clear();
      return error;
    }
    // Port 0: the first socket got a port from the kernel; the others share it.
    if (w == 0) address = *reactor::SocketAddress::localOf(fd);
    fds.push_back(fd);
  }
  listener.bound = address;
  return std::nullopt;
}

void Gateway::startHealthChecker(const std::shared_ptr<ClusterState>& cluster) {
  if (!cluster->config().healthCheck) return;
  workers_.front()->own("health:" + cluster->config().name,
                        [cluster](reactor::EventBase& base) -> std::shared_ptr<void> {
                          auto checker = std::make_shared<HealthChecker>(base, cluster);
                          checker->start();
                          return checker;
                        });
}

std::optional<std::string> Gateway::start() {
  if (!accessLog_.error().empty()) return accessLog_.error();
  workerCount_ =
      config_.workers != 0 ? config_.workers : std::max(1u, std::thread::hardware_concurrency());

  for (const ClusterConfig& cluster : config_.clusters) {
    clusters_.push_back(std::make_shared<ClusterState>(cluster));
  }
  // Every socket is opened before any worker starts; on failure all of them are closed again.
  std::vector<std::vector<Worker::Socket>> sockets(workerCount_);
  for (const ListenerConfig& listenerConfig : config_.listeners) {
    auto listener = std::make_shared<ListenerState>();
    listener->config = listenerConfig;
    for (size_t i = 0; i < config_.clusters.size(); ++i) {
      if (config_.clusters[i].name == listenerConfig.cluster) listener->cluster = clusters_[i];
    }
    std::vector<int> fds;
    if (auto error = openSockets(*listener, fds)) {
      for (auto& perWorker : sockets) {
        for (Worker::Socket& socket : perWorker) ::close(socket.fd);
      }
      clusters_.clear();
      listeners_.clear();
      return error;
    }
    for (uint32_t w = 0; w < workerCount_; ++w)
      sockets[w].push_back(Worker::Socket{listener, fds[w]});
    listeners_.push_back(std::move(listener));
  }
  for (uint32_t w = 0; w < workerCount_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, accessLog_));
    workers_.back()->start(std::move(sockets[w]));
  }
  // Active health checks run on worker 0's loop: one prober per cluster is enough, and the
  // results reach every worker through the shared ClusterState.
  for (const auto& cluster : clusters_) startHealthChecker(cluster);
  return std::nullopt;
}

std::optional<std::string> Gateway::reload(Config next) {
  if (workers_.empty()) return std::string("reload: the gateway is not running");

  // What only a restart can change keeps its running value.
  auto needsRestart = [](bool changed, const char* what) {
    if (changed) {
      logWarn(std::string("reload: ") + what +
              " changed; it needs a restart, the running value stays");
    }
  };
  needsRestart(next.workers != config_.workers, "workers");
  needsRestart(next.admin != config_.admin, "admin");
  needsRestart(next.metrics != config_.metrics, "metrics");
  needsRestart(next.log != config_.log, "log");
  needsRestart(next.accessLog != config_.accessLog, "access_log");
  needsRestart(next.stateFile != config_.stateFile, "state_file");
  next.workers = config_.workers;
  next.admin = config_.admin;
  next.metrics = config_.metrics;
  next.log = config_.log;
  next.accessLog = config_.accessLog;
  next.stateFile = config_.stateFile;

  // Clusters, by name: an unchanged one keeps its state (counts, health, ejections).
  std::vector<std::shared_ptr<ClusterState>> clusters;
  std::vector<std::shared_ptr<ClusterState>> checkersToStart;
  std::vector<std::string> checkersToStop;
  size_t clustersChanged = 0;
  for (const ClusterConfig& cluster : next.clusters) {
    const ClusterConfig* old = config_.findCluster(cluster.name);
    if (old != nullptr && *old == cluster) {
      for (const auto& state : clusters_) {
        if (state->config().name == cluster.name) clusters.push_back(state);
      }
      continue;
    }
    ++clustersChanged;
    clusters.push_back(std::make_shared<ClusterState>(cluster));
    if (old != nullptr && old->healthCheck) checkersToStop.push_back(cluster.name);
    if (cluster.healthCheck) checkersToStart.push_back(clusters.back());
  }
  for (const ClusterConfig& old : config_.clusters) {
    if (next.findCluster(old.name) != nullptr) continue;
    ++clustersChanged;
    if (old.healthCheck) checkersToStop.push_back(old.name);
  }
  auto clusterNamed = [&](const std::string& name) -> std::shared_ptr<ClusterState> {
    for (size_t i = 0; i < next.clusters.size(); ++i) {
      if (next.clusters[i].name == name) return clusters[i];
    }
    return nullptr;  // the parser rejects a dangling reference
  };

  // Listeners, by name. A changed one is replaced: new sockets (opened while the old ones still
  // accept), and the old one drains.
  std::vector<std::shared_ptr<ListenerState>> listeners;
  std::vector<Worker::Changes> changes(workers_.size());
  std::vector<std::shared_ptr<ListenerState>> added;
  std::vector<std::pair<ListenerState*, std::shared_ptr<ClusterState>>> repicked;
  size_t removedCount = 0;
  auto closeAdded = [&changes] {
    for (Worker::Changes& change : changes) {
      for (const Worker::Socket& socket : change.add) ::close(socket.fd);
    }
  };
  for (const ListenerConfig& config : next.listeners) {
    std::shared_ptr<ListenerState> old;
    for (const auto& state : listeners_) {
      if (state->config.name == config.name) old = state;
    }
    if (old != nullptr && old->config == config) {
      std::shared_ptr<ClusterState> cluster = clusterNamed(config.cluster);
      if (cluster != old->cluster) {
        for (Worker::Changes& change : changes) change.repick.emplace_back(old.get(), cluster);
        repicked.emplace_back(old.get(), std::move(cluster));
      }
      listeners.push_back(std::move(old));
      continue;
    }
    auto listener = std::make_shared<ListenerState>();
    listener->config = config;
    listener->cluster = clusterNamed(config.cluster);
    std::vector<int> fds;
    if (auto error = openSockets(*listener, fds)) {
      closeAdded();
      return error;
    }
    for (size_t w = 0; w < workers_.size(); ++w) {
      changes[w].add.push_back(Worker::Socket{listener, fds[w]});
    }
    if (old != nullptr) {
      for (Worker::Changes& change : changes) change.remove.push_back(old.get());
      ++removedCount;
    }
    added.push_back(listener);
    listeners.push_back(std::move(listener));
  }
  for (const auto& old : listeners_) {
    if (next.findListener(old->config.name) != nullptr) continue;
    for (Worker::Changes& change : changes) change.remove.push_back(old.get());
    ++removedCount;
  }

  // Nothing can fail from here on. The workers never read ListenerState::cluster after they
  // started accepting on a listener, so the owner may update it.
  for (auto& [listener, cluster] : repicked) listener->cluster = cluster;
  std::vector<std::future<void>> applied;
  for (size_t w = 0; w < workers_.size(); ++w) {
    applied.push_back(workers_[w]->apply(std::move(changes[w])));
  }
  for (const std::string& name : checkersToStop) workers_.front()->disown("health:" + name);
  for (const auto& cluster : checkersToStart) startHealthChecker(cluster);
  for (std::future<void>& future : applied) future.wait();

  listeners_ = std::move(listeners);
  clusters_ = std::move(clusters);
  config_ = std::move(next);
  for (const auto& listener : added) {
    logInfo("listener " + listener->config.name + " listening on " + listener->bound.toString() +
            " -> cluster " + listener->config.cluster);
  }
  logInfo("reloaded: +" + std::to_string(added.size()) + " listeners, -" +
          std::to_string(removedCount) + " listeners, " + std::to_string(clustersChanged) +
          " clusters changed");
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
