#include "gateway/gateway.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

namespace {

// Listener ids: unique in the process, whatever Gateway made the listener.
std::atomic<uint64_t> lastListenerId{0};

uint64_t nextListenerId() { return lastListenerId.fetch_add(1, std::memory_order_relaxed) + 1; }

// The value a worker's future holds, or `fallback` if the worker's loop ended before answering.
template <typename T>
T resultOf(std::future<T>& future, T fallback) {
  try {
    return future.get();
  } catch (const std::future_error&) {
    return fallback;
  }
}

// Whether `a` and `b` differ in nothing but their endpoints' admin states.
bool onlyEndpointStatesDiffer(const ClusterConfig& a, const ClusterConfig& b) {
  if (a.endpoints.size() != b.endpoints.size()) return false;
  ClusterConfig withStates = a;
  for (size_t i = 0; i < a.endpoints.size(); ++i) {
    withStates.endpoints[i].state = b.endpoints[i].state;
  }
  return withStates == b;
}

}  // namespace

Gateway::Gateway(Config config, SocketOpener openSocket)
    : config_(std::move(config)),
      openSocket_(openSocket ? std::move(openSocket) : SocketOpener(openListeningSocket)),
      accessLog_(config_.accessLog) {}

Gateway::~Gateway() { stop(); }

std::optional<std::string> Gateway::openSockets(ListenerState& listener,
                                                std::vector<int>& fds) const {
  reactor::SocketAddress address = listener.config.bind;
  for (uint32_t w = 0; w < workerCount_; ++w) {
    const int fd = openSocket_(address);
    if (fd < 0) {
      const std::string error = "listener " + listener.config.name + ": cannot listen on " +
                                address.toString() + ": " + std::strerror(errno);
      for (const int open : fds) ::close(open);
      fds.clear();
      return error;
    }
    // Port 0: the first socket got a port from the kernel; the others share it.
    if (w == 0) address = reactor::SocketAddress::localOf(fd).value_or(address);
    fds.push_back(fd);
  }
  listener.bound = address;
  return std::nullopt;
}

std::optional<std::string> Gateway::prepareAll(std::vector<std::vector<Worker::Socket>> sockets) {
  std::vector<std::future<std::optional<std::string>>> prepared;
  for (size_t w = 0; w < workers_.size(); ++w) {
    prepared.push_back(workers_[w]->prepare(std::move(sockets[w])));
  }
  std::optional<std::string> error;
  for (auto& future : prepared) {
    std::optional<std::string> result = resultOf(future, std::optional<std::string>());
    if (result && !error) error = std::move(result);
  }
  if (!error) return std::nullopt;
  std::vector<std::future<void>> aborted;
  for (auto& worker : workers_) aborted.push_back(worker->abort());
  for (auto& future : aborted) future.wait();
  return error;
}

void Gateway::startHealthChecker(const std::shared_ptr<ClusterState>& cluster) {
  if (!cluster->config().healthCheck) return;
  NoticeSink* notices = notices_;
  workers_.front()->own("health:" + cluster->config().name,
                        [cluster, notices](reactor::EventBase& base) -> std::shared_ptr<void> {
                          auto checker = std::make_shared<HealthChecker>(base, cluster, notices);
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
    clusters_.back()->setStats(stats::ClusterStats::make(cluster, workerCount_, nullptr, nullptr));
  }
  // Every socket is opened before any worker starts; on failure all of them are closed again.
  std::vector<std::vector<Worker::Socket>> sockets(workerCount_);
  auto fail = [&](std::string error) {
    for (auto& perWorker : sockets) {
      for (Worker::Socket& socket : perWorker) ::close(socket.fd);
    }
    clusters_.clear();
    listeners_.clear();
    return std::optional<std::string>(std::move(error));
  };
  for (const ListenerConfig& listenerConfig : config_.listeners) {
    auto listener = std::make_shared<ListenerState>(nextListenerId(), listenerConfig);
    listener->stats = std::make_shared<stats::ListenerStats>(listenerConfig.name, workerCount_);
    for (size_t i = 0; i < config_.clusters.size(); ++i) {
      if (config_.clusters[i].name == listenerConfig.cluster) listener->cluster = clusters_[i];
    }
    std::vector<int> fds;
    if (auto error = openSockets(*listener, fds)) return fail(std::move(*error));
    auto snapshot = std::make_shared<const ListenerConfig>(listenerConfig);
    for (uint32_t w = 0; w < workerCount_; ++w) {
      sockets[w].push_back(Worker::Socket{listener, fds[w], snapshot, listener->cluster});
    }
    listeners_.push_back(std::move(listener));
  }
  for (uint32_t w = 0; w < workerCount_; ++w) {
    auto worker = std::make_unique<Worker>(w, accessLog_, notices_);
    worker->start();
    const std::lock_guard lock(workersMutex_);
    workers_.push_back(std::move(worker));
  }
  if (auto error = prepareAll(std::move(sockets))) {
    stop();
    clusters_.clear();
    listeners_.clear();
    return error;
  }
  std::vector<std::future<void>> committed;
  for (auto& worker : workers_) committed.push_back(worker->commit({}));
  for (auto& future : committed) future.wait();
  // Active health checks run on worker 0's loop: one prober per cluster is enough, and the
  // results reach every worker through the shared ClusterState.
  for (const auto& cluster : clusters_) startHealthChecker(cluster);
  publishMetricsView();
  return std::nullopt;
}

std::optional<std::string> Gateway::reload(Config next, std::string_view cause) {
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
  needsRestart(next.configWatch != config_.configWatch, "config_watch");
  next.workers = config_.workers;
  next.configWatch = config_.configWatch;
  next.admin = config_.admin;
  next.metrics = config_.metrics;
  next.log = config_.log;
  next.accessLog = config_.accessLog;
  next.stateFile = config_.stateFile;

  // Clusters, by name: an unchanged one keeps its state (counts, health, ejections), and so does
  // one whose endpoints only changed admin state (set below, once nothing can fail).
  std::vector<std::shared_ptr<ClusterState>> clusters;  // parallel to next.clusters
  std::vector<std::shared_ptr<ClusterState>> adminStatesChanged;
  std::vector<std::shared_ptr<ClusterState>> checkersToStart;
  std::vector<std::string> checkersToStop;
  size_t clustersChanged = 0;
  for (const ClusterConfig& cluster : next.clusters) {
    const ClusterConfig* old = config_.findCluster(cluster.name);
    std::shared_ptr<ClusterState> oldState;
    for (const auto& state : clusters_) {
      if (state->config().name == cluster.name) oldState = state;
    }
    if (old != nullptr && *old == cluster) {
      clusters.push_back(oldState);
      continue;
    }
    ++clustersChanged;
    if (old != nullptr && onlyEndpointStatesDiffer(*old, cluster)) {
      clusters.push_back(oldState);
      adminStatesChanged.push_back(oldState);
      continue;
    }
    auto state = std::make_shared<ClusterState>(cluster);
    if (oldState) state->inheritHealth(*oldState);
    // Counters are kept by name (and endpoint address): rates don't jump on a change.
    state->setStats(stats::ClusterStats::make(cluster, workers_.size(),
                                              oldState ? oldState->stats().get() : nullptr,
                                              oldState ? &oldState->config() : nullptr));
    clusters.push_back(state);
    if (old != nullptr && old->healthCheck) checkersToStop.push_back(cluster.name);
    if (cluster.healthCheck) checkersToStart.push_back(std::move(state));
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

  // Listeners, by name. One on the same address is updated in place; one whose bind changed is
  // replaced: new sockets (opened while the old ones still accept), and the old one drains.
  std::vector<std::shared_ptr<ListenerState>> listeners;
  std::vector<std::vector<Worker::Socket>> sockets(workers_.size());
  std::vector<Worker::Changes> changes(workers_.size());
  std::vector<std::shared_ptr<ListenerState>> added;
  struct InPlace {
    std::shared_ptr<ListenerState> listener;
    const ListenerConfig* config;
    std::shared_ptr<ClusterState> cluster;
  };
  std::vector<InPlace> inPlace;
  size_t removedCount = 0;
  size_t updatedCount = 0;
  auto closeAdded = [&sockets] {
    for (auto& perWorker : sockets) {
      for (const Worker::Socket& socket : perWorker) ::close(socket.fd);
    }
  };
  for (const ListenerConfig& config : next.listeners) {
    std::shared_ptr<ListenerState> old;
    for (const auto& state : listeners_) {
      if (state->config.name == config.name) old = state;
    }
    std::shared_ptr<ClusterState> cluster = clusterNamed(config.cluster);
    if (old != nullptr && old->config.bind == config.bind) {
      if (old->config != config || cluster != old->cluster) {
        // Only a new ClusterState (same configuration) is not counted: the listener is the same.
        if (old->config != config) ++updatedCount;
        auto snapshot = std::make_shared<const ListenerConfig>(config);
        for (Worker::Changes& change : changes) {
          change.update.push_back(Worker::Update{old.get(), snapshot, cluster});
        }
        inPlace.push_back(InPlace{old, &config, cluster});
      }
      listeners.push_back(std::move(old));
      continue;
    }
    auto listener = std::make_shared<ListenerState>(nextListenerId(), config);
    listener->cluster = cluster;
    // A replaced listener (new bind) keeps its counters: they are kept by name.
    listener->stats = old != nullptr
                          ? old->stats
                          : std::make_shared<stats::ListenerStats>(config.name, workers_.size());
    std::vector<int> fds;
    if (auto error = openSockets(*listener, fds)) {
      closeAdded();
      return error;
    }
    auto snapshot = std::make_shared<const ListenerConfig>(config);
    for (size_t w = 0; w < workers_.size(); ++w) {
      sockets[w].push_back(Worker::Socket{listener, fds[w], snapshot, cluster});
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

  // Every worker takes its new sockets, not accepting yet; if one cannot, none changes anything.
  if (auto error = prepareAll(std::move(sockets))) return error;

  // Nothing can fail from here on. The workers keep their own copies of what they read, so the
  // owner may update the shared states.
  for (const auto& state : adminStatesChanged) {
    const ClusterConfig& config = *next.findCluster(state->config().name);
    for (size_t i = 0; i < config.endpoints.size(); ++i) {
      state->setAdminState(i, config.endpoints[i].state);
    }
  }
  for (const InPlace& change : inPlace) {
    change.listener->config = *change.config;
    change.listener->cluster = change.cluster;
  }
  std::vector<std::future<void>> applied;
  for (size_t w = 0; w < workers_.size(); ++w) {
    applied.push_back(workers_[w]->commit(std::move(changes[w])));
  }
  for (const std::string& name : checkersToStop) workers_.front()->disown("health:" + name);
  for (const auto& cluster : checkersToStart) startHealthChecker(cluster);
  for (std::future<void>& future : applied) future.wait();
  // After the workers applied it: paused is what they do, not what they are about to do.
  for (const InPlace& change : inPlace) change.listener->paused = change.config->paused;

  listeners_ = std::move(listeners);
  clusters_ = std::move(clusters);
  config_ = std::move(next);
  publishMetricsView();
  for (const auto& listener : added) {
    logInfo("listener " + listener->config.name + (listener->config.paused ? " (paused)" : "") +
            " listening on " + listener->bound.toString() + " -> cluster " +
            listener->config.cluster);
  }
  logInfo("reloaded" + (cause.empty() ? std::string() : " (" + std::string(cause) + ")") + ": +" +
          std::to_string(added.size()) + " listeners, -" + std::to_string(removedCount) +
          " listeners, " + std::to_string(updatedCount) + " listeners updated, " +
          std::to_string(clustersChanged) + " clusters changed");
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

std::vector<FlowInfo> Gateway::listFlows(const FlowFilter& filter, uint64_t afterId,
                                         size_t limit) const {
  std::vector<std::future<std::vector<FlowInfo>>> parts;
  for (const auto& worker : workers_) parts.push_back(worker->listFlows(filter, afterId, limit));
  std::vector<FlowInfo> flows;
  // Each worker sent its `limit` lowest ids: the lowest `limit` of all are among them.
  for (auto& part : parts) {
    for (FlowInfo& flow : resultOf(part, std::vector<FlowInfo>())) flows.push_back(std::move(flow));
  }
  std::sort(flows.begin(), flows.end(),
            [](const FlowInfo& a, const FlowInfo& b) { return a.id < b.id; });
  if (flows.size() > limit) flows.resize(limit);
  return flows;
}

size_t Gateway::countFlows(const FlowFilter& filter) const {
  std::vector<std::future<size_t>> parts;
  for (const auto& worker : workers_) parts.push_back(worker->countFlows(filter));
  size_t count = 0;
  for (auto& part : parts) count += resultOf(part, size_t{0});
  return count;
}

bool Gateway::closeFlow(uint64_t id, CloseReason reason) {
  const uint32_t worker = Worker::workerOfFlow(id);
  if (worker >= workers_.size()) return false;
  std::future<size_t> closed = workers_[worker]->closeFlows({id}, reason);
  return resultOf(closed, size_t{0}) == 1;
}

size_t Gateway::closeFlows(const FlowFilter& filter, size_t max, CloseReason reason) {
  if (max == 0 || workers_.empty()) return 0;
  std::vector<std::future<std::vector<Worker::FlowAge>>> parts;
  for (const auto& worker : workers_) parts.push_back(worker->oldestFlows(filter, max));
  std::vector<Worker::FlowAge> oldest;
  for (auto& part : parts) {
    for (const Worker::FlowAge& flow : resultOf(part, std::vector<Worker::FlowAge>())) {
      oldest.push_back(flow);
    }
  }
  // The loops share the monotonic clock, so start times compare across workers.
  std::sort(oldest.begin(), oldest.end(), [](const Worker::FlowAge& a, const Worker::FlowAge& b) {
    return a.start != b.start ? a.start < b.start : a.id < b.id;
  });
  if (oldest.size() > max) oldest.resize(max);
  std::vector<std::vector<uint64_t>> ids(workers_.size());
  for (const Worker::FlowAge& flow : oldest) ids[Worker::workerOfFlow(flow.id)].push_back(flow.id);
  std::vector<std::future<size_t>> closing;
  for (size_t w = 0; w < workers_.size(); ++w) {
    if (!ids[w].empty()) closing.push_back(workers_[w]->closeFlows(std::move(ids[w]), reason));
  }
  size_t closed = 0;
  for (auto& future : closing) closed += resultOf(future, size_t{0});
  return closed;
}

std::vector<LoopEvents> Gateway::listEvents() const {
  std::vector<std::future<std::vector<reactor::EventInfo>>> parts;
  for (const auto& worker : workers_) parts.push_back(worker->dumpEvents());
  std::vector<LoopEvents> loops;
  for (size_t w = 0; w < workers_.size(); ++w) {
    loops.push_back(LoopEvents{"worker-" + std::to_string(w),
                               resultOf(parts[w], std::vector<reactor::EventInfo>())});
  }
  return loops;
}

void Gateway::stop() {
  publishMetricsView(/*clear=*/true);
  const std::lock_guard lock(workersMutex_);
  for (auto& worker : workers_) worker->stop();
  workers_.clear();
}

void Gateway::publishMetricsView(bool clear) {
  auto view = std::make_shared<MetricsView>();
  if (!clear) {
    view->listeners.reserve(listeners_.size());
    for (const auto& listener : listeners_) {
      view->listeners.push_back(MetricsView::Listener{listener, listener->config.maxConnections});
    }
    view->clusters = clusters_;
  }
  const std::lock_guard lock(viewMutex_);
  view_ = std::move(view);
}

std::shared_ptr<const Gateway::MetricsView> Gateway::metricsView() const {
  const std::lock_guard lock(viewMutex_);
  return view_ ? view_ : std::make_shared<const MetricsView>();
}

std::vector<Gateway::WorkerMetrics> Gateway::sampleWorkers(
    std::chrono::steady_clock::time_point deadline) const {
  const std::lock_guard lock(workersMutex_);
  // The counters first: the sample posted next would count as a queued function.
  std::vector<WorkerMetrics> result;
  for (const auto& worker : workers_) {
    result.push_back(WorkerMetrics{worker->index(), worker->loopCounters().iterations.value(),
                                   stats::HistogramTotal(stats::loopIterationBuckets()),
                                   worker->queuedFunctions(), std::nullopt});
    result.back().iterationDuration.add(worker->loopCounters().iterationDuration);
  }
  std::vector<std::future<WorkerSample>> samples;
  samples.reserve(workers_.size());
  for (const auto& worker : workers_) samples.push_back(worker->sample());
  for (size_t w = 0; w < workers_.size(); ++w) {
    WorkerMetrics& metrics = result[w];
    if (samples[w].wait_until(deadline) == std::future_status::ready) {
      try {
        metrics.sample = samples[w].get();
      } catch (const std::future_error&) {
        // The loop ended before answering: no sample.
      }
    }
  }
  return result;
}

}  // namespace evgate::gateway
