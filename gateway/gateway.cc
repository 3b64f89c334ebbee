#include "gateway/gateway.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "gateway/health_checker.h"
#include "gateway/log.h"
#include "reactor/fatal.h"

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

std::optional<std::string> Gateway::addSockets(const std::shared_ptr<ListenerState>& listener,
                                               std::vector<std::vector<Worker::Socket>>& sockets,
                                               size_t& socketCount) const {
  const ListenerSockets mode = config_.listenerSockets;
  const bool perWorker =
      mode == ListenerSockets::kPerWorker ||
      (mode == ListenerSockets::kAuto && socketCount + workerCount_ <= autoSocketBudget_);
  const auto snapshot = std::make_shared<const ListenerConfig>(listener->config);
  reactor::SocketAddress address = listener->config.bind;
  std::vector<std::shared_ptr<ListeningSocket>> opened;
  for (uint32_t w = 0; w < workerCount_; ++w) {
    if (!opened.empty() && !perWorker) {
      opened.push_back(opened.front());
      continue;
    }
    const int fd = openSocket_(address);
    if (fd < 0) {
      return "listener " + listener->config.name + ": cannot listen on " + address.toString() +
             ": " + reactor::errnoText(errno);  // `opened` closes what it holds as it goes
    }
    // Port 0: the first socket got a port from the kernel; the others (per worker) share it.
    if (w == 0) address = reactor::SocketAddress::localOf(fd).value_or(address);
    opened.push_back(std::make_shared<ListeningSocket>(fd));
  }
  listener->bound = address;
  listener->sockets = perWorker ? workerCount_ : 1;
  socketCount += listener->sockets;
  for (uint32_t w = 0; w < workerCount_; ++w) {
    sockets[w].push_back(Worker::Socket{listener, std::move(opened[w]),
                                        !perWorker && workerCount_ > 1, snapshot,
                                        listener->cluster});
  }
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
  abortAll();
  return error;
}

void Gateway::abortAll() {
  std::vector<std::future<void>> aborted;
  for (auto& worker : workers_) aborted.push_back(worker->abort());
  for (auto& future : aborted) future.wait();
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
  std::unordered_map<std::string_view, std::shared_ptr<ClusterState>> clusterByName;
  for (const auto& cluster : clusters_) clusterByName.emplace(cluster->config().name, cluster);
  // listener_sockets: auto gives listeners their own socket per worker while all of them
  // together stay within an eighth of the fd limit: the rest is for flows (two fds each).
  rlimit limit{};
  autoSocketBudget_ = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                          ? static_cast<size_t>(limit.rlim_cur) / 8
                          : size_t{1} << 20;
  // Every socket is opened before any worker starts; on failure all of them are closed again.
  std::vector<std::vector<Worker::Socket>> sockets(workerCount_);
  socketsInUse_ = 0;
  for (const ListenerConfig& listenerConfig : config_.listeners) {
    auto listener = std::make_shared<ListenerState>(nextListenerId(), listenerConfig);
    listener->stats = std::make_shared<stats::ListenerStats>(listenerConfig.name, workerCount_);
    listener->cluster = clusterByName[listenerConfig.cluster];
    if (auto error = addSockets(listener, sockets, socketsInUse_)) {
      clusters_.clear();
      listeners_.clear();
      socketsInUse_ = 0;
      return error;  // `sockets` closes what it holds as it goes
    }
    listeners_.push_back(std::move(listener));
  }
  {
    const std::lock_guard lock(workersMutex_);
    budget_ = std::make_unique<BufferBudget>(workerCount_);
    budget_->setLimit(config_.maxBufferedBytes);
  }
  for (uint32_t w = 0; w < workerCount_; ++w) {
    auto worker = std::make_unique<Worker>(w, accessLog_, notices_, budget_.get());
    worker->start();
    const std::lock_guard lock(workersMutex_);
    workers_.push_back(std::move(worker));
  }
  if (auto error = prepareAll(std::move(sockets))) {
    stop();
    clusters_.clear();
    listeners_.clear();
    socketsInUse_ = 0;
    return error;
  }
  std::vector<std::future<void>> committed;
  for (auto& worker : workers_) committed.push_back(worker->commit({}));
  for (auto& future : committed) future.wait();
  // Active health checks run on worker 0's loop: one prober per cluster is enough, and the
  // results reach every worker through the shared ClusterState.
  for (const auto& cluster : clusters_) startHealthChecker(cluster);
  reindex();
  const std::lock_guard lock(viewMutex_);
  viewLive_ = true;
  viewStale_ = true;
  return std::nullopt;
}

// What a change does, worked out before anything changes (plan()), then done (execute()).
struct Gateway::Plan {
  // Clusters. A put cluster that is not the same as the running one either keeps its state and
  // only gets new endpoint admin states, or gets a new ClusterState (by name in `newClusters`).
  std::unordered_map<std::string_view, std::shared_ptr<ClusterState>> newClusters;
  std::vector<std::pair<std::shared_ptr<ClusterState>, const ClusterConfig*>> adminStates;
  std::unordered_set<std::string_view> removedClusters;
  std::vector<std::shared_ptr<ClusterState>> checkersToStart;
  std::vector<std::string> checkersToStop;
  size_t clustersChanged = 0;

  // Listeners. New ones (created, or replaced for a new bind) with their sockets; the ones
  // changed in place; the ones that go.
  std::vector<std::vector<Worker::Socket>> sockets;  // by worker
  std::vector<Worker::Changes> changes;              // by worker
  std::vector<std::shared_ptr<ListenerState>> added;
  struct InPlace {
    std::shared_ptr<ListenerState> listener;
    const ListenerConfig* config;
    std::shared_ptr<ClusterState> cluster;
  };
  std::vector<InPlace> inPlace;
  size_t removedCount = 0;
  size_t updatedCount = 0;
};

std::optional<size_t> Gateway::listenerIndex(std::string_view name) const {
  const auto found = listenerIndex_.find(name);
  if (found == listenerIndex_.end()) return std::nullopt;
  return found->second;
}

std::optional<size_t> Gateway::clusterIndex(std::string_view name) const {
  const auto found = clusterIndex_.find(name);
  if (found == clusterIndex_.end()) return std::nullopt;
  return found->second;
}

const ListenerConfig* Gateway::findListener(std::string_view name) const {
  const auto index = listenerIndex(name);
  return index ? &config_.listeners[*index] : nullptr;
}

std::shared_ptr<ListenerState> Gateway::listener(std::string_view name) const {
  const auto index = listenerIndex(name);
  return index && *index < listeners_.size() ? listeners_[*index] : nullptr;
}

const ClusterConfig* Gateway::findCluster(std::string_view name) const {
  const auto index = clusterIndex(name);
  return index ? &config_.clusters[*index] : nullptr;
}

std::shared_ptr<ClusterState> Gateway::cluster(std::string_view name) const {
  const auto index = clusterIndex(name);
  return index && *index < clusters_.size() ? clusters_[*index] : nullptr;
}

void Gateway::reindex() {
  listenerIndex_.clear();
  for (size_t i = 0; i < config_.listeners.size(); ++i) {
    listenerIndex_.emplace(config_.listeners[i].name, i);
  }
  clusterIndex_.clear();
  for (size_t i = 0; i < config_.clusters.size(); ++i) {
    clusterIndex_.emplace(config_.clusters[i].name, i);
  }
}

std::optional<std::string> Gateway::makePlan(const Delta& delta, Plan& plan) const {
  plan.sockets.resize(workers_.size());
  plan.changes.resize(workers_.size());

  // Clusters, by name: an unchanged one keeps its state (counts, health, ejections), and so does
  // one whose endpoints only changed admin state (set in execute(), once nothing can fail).
  // What only the planned change may read: `delta` and the plan hold every name it sees.
  for (const ClusterConfig& cluster : delta.putClusters) {
    const ClusterConfig* old = findCluster(cluster.name);
    const std::shared_ptr<ClusterState> oldState = this->cluster(cluster.name);
    if (old != nullptr && *old == cluster) continue;
    ++plan.clustersChanged;
    if (old != nullptr && onlyEndpointStatesDiffer(*old, cluster)) {
      plan.adminStates.emplace_back(oldState, &cluster);
      continue;
    }
    auto state = std::make_shared<ClusterState>(cluster);
    if (oldState) state->inheritHealth(*oldState);
    // Counters are kept by name (and endpoint address): rates don't jump on a change.
    state->setStats(stats::ClusterStats::make(cluster, workers_.size(),
                                              oldState ? oldState->stats().get() : nullptr,
                                              oldState ? &oldState->config() : nullptr));
    plan.newClusters.emplace(cluster.name, state);
    if (old != nullptr && old->healthCheck) plan.checkersToStop.push_back(cluster.name);
    if (cluster.healthCheck) plan.checkersToStart.push_back(std::move(state));
  }
  for (const std::string& name : delta.removeClusters) {
    const ClusterConfig* old = findCluster(name);
    if (old == nullptr) continue;
    ++plan.clustersChanged;
    plan.removedClusters.insert(name);
    if (old->healthCheck) plan.checkersToStop.push_back(name);
  }
  // The cluster state a listener's flows pick from after the change (never null for apply(),
  // whose check() rules out a missing cluster, nor for reload(), whose configuration is checked
  // as a whole).
  auto clusterNamed = [&](const std::string& name) -> std::shared_ptr<ClusterState> {
    if (const auto found = plan.newClusters.find(name); found != plan.newClusters.end()) {
      return found->second;
    }
    return plan.removedClusters.contains(name) ? nullptr : this->cluster(name);
  };

  // Listeners, by name. One on the same address is updated in place; one whose bind changed is
  // replaced: new sockets (opened while the old ones still accept), and the old one drains.
  std::unordered_set<std::string_view> touched;
  size_t socketCount = socketsInUse_;  // with the new ones, for listener_sockets: auto
  for (const ListenerConfig& config : delta.putListeners) {
    touched.insert(config.name);
    std::shared_ptr<ListenerState> old = listener(config.name);
    std::shared_ptr<ClusterState> cluster = clusterNamed(config.cluster);
    if (old != nullptr && old->config.bind == config.bind) {
      if (old->config != config || cluster != old->cluster) {
        // Only a new ClusterState (same configuration) is not counted: the listener is the same.
        if (old->config != config) ++plan.updatedCount;
        plan.inPlace.push_back(Plan::InPlace{old, &config, cluster});
      }
      continue;
    }
    auto listener = std::make_shared<ListenerState>(nextListenerId(), config);
    listener->cluster = cluster;
    // A replaced listener (new bind) keeps its counters: they are kept by name.
    listener->stats = old != nullptr
                          ? old->stats
                          : std::make_shared<stats::ListenerStats>(config.name, workers_.size());
    // On failure, the plan closes the sockets it holds as it goes.
    if (auto error = addSockets(listener, plan.sockets, socketCount)) return error;
    if (old != nullptr) {
      for (Worker::Changes& change : plan.changes) change.remove.push_back(old.get());
      ++plan.removedCount;
    }
    plan.added.push_back(std::move(listener));
  }
  for (const std::string& name : delta.removeListeners) {
    const std::shared_ptr<ListenerState> old = listener(name);
    if (old == nullptr || !touched.insert(name).second) continue;
    for (Worker::Changes& change : plan.changes) change.remove.push_back(old.get());
    ++plan.removedCount;
  }
  // The listeners the change does not name, but whose cluster gets a new state, pick from it.
  if (!plan.newClusters.empty()) {
    for (const auto& state : listeners_) {
      if (touched.contains(state->config.name)) continue;
      const auto found = plan.newClusters.find(state->config.cluster);
      if (found == plan.newClusters.end()) continue;
      plan.inPlace.push_back(Plan::InPlace{state, &state->config, found->second});
    }
  }
  for (const Plan::InPlace& change : plan.inPlace) {
    auto snapshot = std::make_shared<const ListenerConfig>(*change.config);
    for (Worker::Changes& workerChange : plan.changes) {
      workerChange.update.push_back(
          Worker::Update{change.listener.get(), snapshot, change.cluster});
    }
  }
  return std::nullopt;
}

std::optional<std::string> Gateway::execute(Plan& plan, const PreCommit& preCommit) {
  // Every worker takes its new sockets, not accepting yet; if one cannot, none changes anything.
  if (auto error = prepareAll(std::move(plan.sockets))) return error;
  if (preCommit) {
    if (auto error = preCommit()) {
      abortAll();
      return error;
    }
  }

  // Nothing can fail from here on. The workers keep their own copies of what they read, so the
  // owner may update the shared states.
  for (const auto& [state, config] : plan.adminStates) {
    for (size_t i = 0; i < config->endpoints.size(); ++i) {
      state->setAdminState(i, config->endpoints[i].state);
    }
  }
  {
    // metricsView() reads max_connections from here: it changes under the view's lock.
    const std::lock_guard lock(viewMutex_);
    for (const Plan::InPlace& change : plan.inPlace) {
      if (&change.listener->config != change.config) change.listener->config = *change.config;
      change.listener->cluster = change.cluster;
    }
    viewStale_ = true;
  }
  std::vector<std::future<void>> applied;
  for (size_t w = 0; w < workers_.size(); ++w) {
    applied.push_back(workers_[w]->commit(std::move(plan.changes[w])));
  }
  for (const std::string& name : plan.checkersToStop) workers_.front()->disown("health:" + name);
  for (const auto& cluster : plan.checkersToStart) startHealthChecker(cluster);
  for (std::future<void>& future : applied) future.wait();
  // After the workers applied it: paused is what they do, not what they are about to do.
  for (const Plan::InPlace& change : plan.inPlace) {
    change.listener->paused = change.listener->config.paused;
  }
  return std::nullopt;
}

namespace {

// Erases the elements of `items` (and of its parallel `states`) whose names are in `names`,
// keeping the order of the others, and fixes `index` (name -> position); O(n) for any number.
template <typename Config, typename State, typename Index>
void eraseNamed(std::vector<Config>& items, std::vector<State>& states,
                const std::vector<std::string>& names, Index& index) {
  size_t first = items.size();
  for (const std::string& name : names) {
    const auto found = index.find(name);
    if (found == index.end()) continue;
    first = std::min(first, found->second);
    index.erase(found);
  }
  if (first == items.size()) return;
  size_t kept = first;
  for (size_t i = first; i < items.size(); ++i) {
    if (!index.contains(items[i].name)) continue;  // erased above
    if (kept != i) {
      items[kept] = std::move(items[i]);
      states[kept] = std::move(states[i]);
    }
    index.find(items[kept].name)->second = kept;
    ++kept;
  }
  items.resize(kept);
  states.resize(kept);
}

}  // namespace

void Gateway::record(const Delta& delta, const Plan& plan) {
  // Each put definition (and its state, if new) takes the place of the old one or goes at the
  // end; removals keep the order of the others.
  for (const ClusterConfig& cluster : delta.putClusters) {
    const auto found = plan.newClusters.find(cluster.name);
    if (const auto index = clusterIndex(cluster.name)) {
      config_.clusters[*index] = cluster;
      if (found != plan.newClusters.end()) clusters_[*index] = found->second;
      continue;
    }
    clusterIndex_.emplace(cluster.name, config_.clusters.size());
    config_.clusters.push_back(cluster);
    clusters_.push_back(found->second);
  }
  eraseNamed(config_.clusters, clusters_, delta.removeClusters, clusterIndex_);
  std::unordered_map<std::string_view, std::shared_ptr<ListenerState>> added;
  for (const auto& listener : plan.added) {
    added.emplace(listener->config.name, listener);
    socketsInUse_ += listener->sockets;
  }
  for (const ListenerConfig& config : delta.putListeners) {
    const auto found = added.find(config.name);
    if (const auto index = listenerIndex(config.name)) {
      config_.listeners[*index] = config;
      if (found != added.end()) {
        socketsInUse_ -= listeners_[*index]->sockets;  // replaced: its sockets close
        listeners_[*index] = found->second;
      }
      continue;
    }
    listenerIndex_.emplace(config.name, config_.listeners.size());
    config_.listeners.push_back(config);
    listeners_.push_back(found->second);
  }
  for (const std::string& name : delta.removeListeners) {
    if (const auto removed = listener(name); removed && !added.contains(name)) {
      socketsInUse_ -= removed->sockets;
    }
  }
  eraseNamed(config_.listeners, listeners_, delta.removeListeners, listenerIndex_);
}

void Gateway::report(const Plan& plan, std::string_view cause) const {
  for (const auto& listener : plan.added) {
    logInfo("listener " + listener->config.name + (listener->config.paused ? " (paused)" : "") +
            " listening on " + listener->bound.toString() + " -> cluster " +
            listener->config.cluster);
  }
  logInfo("reloaded" + (cause.empty() ? std::string() : " (" + std::string(cause) + ")") + ": +" +
          std::to_string(plan.added.size()) + " listeners, -" + std::to_string(plan.removedCount) +
          " listeners, " + std::to_string(plan.updatedCount) + " listeners updated, " +
          std::to_string(plan.clustersChanged) + " clusters changed");
}

std::optional<std::string> Gateway::check(const Delta& delta) const {
  std::unordered_set<std::string_view> putClusters;
  for (const ClusterConfig& cluster : delta.putClusters) {
    if (!putClusters.insert(cluster.name).second) {
      return "cluster " + cluster.name + " appears twice in one change";
    }
  }
  std::unordered_set<std::string_view> removedClusters;
  for (const std::string& name : delta.removeClusters) {
    if (putClusters.contains(name) || !removedClusters.insert(name).second) {
      return "cluster " + name + " appears twice in one change";
    }
  }
  std::unordered_set<std::string_view> named;
  for (const ListenerConfig& listener : delta.putListeners) {
    if (!named.insert(listener.name).second) {
      return "listener " + listener.name + " appears twice in one change";
    }
  }
  for (const std::string& name : delta.removeListeners) {
    if (!named.insert(name).second) return "listener " + name + " appears twice in one change";
  }
  const auto clusterExists = [&](const std::string& name) {
    return putClusters.contains(name) ||
           (!removedClusters.contains(name) && findCluster(name) != nullptr);
  };
  const auto missingCluster = [](const ListenerConfig& listener) {
    return "listener " + listener.name + " uses cluster " + listener.cluster +
           ", which does not exist";
  };
  for (const ListenerConfig& listener : delta.putListeners) {
    if (!clusterExists(listener.cluster)) return missingCluster(listener);
  }
  // Running listeners the delta does not name keep their cluster: it must stay.
  if (!removedClusters.empty()) {
    for (const ListenerConfig& listener : config_.listeners) {
      if (!named.contains(listener.name) && removedClusters.contains(listener.cluster)) {
        return missingCluster(listener);
      }
    }
  }
  // The admin and metrics addresses are the daemon's own (as the file's parser checks too);
  // every other bind (port 0 excepted) belongs to one listener.
  const std::pair<const char*, std::optional<reactor::SocketAddress>> reserved[] = {
      {"admin.address", reactor::SocketAddress::parse(config_.admin.address)},
      {"metrics.address", reactor::SocketAddress::parse(config_.metrics.address)}};
  for (size_t i = 0; i < delta.putListeners.size(); ++i) {
    const ListenerConfig& listener = delta.putListeners[i];
    if (listener.bind.port() == 0) continue;
    for (const auto& [what, address] : reserved) {
      if (address && address->port() != 0 && *address == listener.bind) {
        return "listener " + listener.name + ": " + listener.bind.toString() + " is the " + what;
      }
    }
    const auto usedBy = [&listener](const std::string& other) {
      return "listener " + listener.name + ": " + listener.bind.toString() +
             " is already used by listener " + other;
    };
    for (size_t j = 0; j < i; ++j) {
      if (delta.putListeners[j].bind == listener.bind) return usedBy(delta.putListeners[j].name);
    }
    // The running listener of the same name keeps its bind or lets it go: not a conflict.
    if (const ListenerConfig* running = findListener(listener.name);
        running != nullptr && running->bind == listener.bind) {
      continue;
    }
    // One pass over the running listeners: compares of addresses, no allocation.
    for (const ListenerConfig& other : config_.listeners) {
      if (other.bind == listener.bind && !named.contains(other.name)) return usedBy(other.name);
    }
  }
  return std::nullopt;
}

std::optional<std::string> Gateway::apply(const Delta& delta, std::string_view cause,
                                          const PreCommit& preCommit) {
  if (workers_.empty()) return std::string("change: the gateway is not running");
  if (auto refused = check(delta)) return refused;
  Plan plan;
  if (auto error = makePlan(delta, plan)) return error;
  if (auto error = execute(plan, preCommit)) return error;
  {
    const std::lock_guard lock(viewMutex_);
    record(delta, plan);
    viewStale_ = true;
  }
  report(plan, cause);
  return std::nullopt;
}

std::optional<std::string> Gateway::reload(Config next, std::string_view cause,
                                           const PreCommit& preCommit) {
  if (workers_.empty()) return std::string("reload: the gateway is not running");

  // What only a restart can change keeps its running value.
  auto needsRestart = [](bool changed, const char* what) {
    if (changed) {
      logWarn(std::string("reload: ") + what +
              " changed; it needs a restart, the running value stays");
    }
  };
  needsRestart(next.workers != config_.workers, "workers");
  needsRestart(next.listenerSockets != config_.listenerSockets, "listener_sockets");
  needsRestart(next.admin != config_.admin, "admin");
  needsRestart(next.metrics != config_.metrics, "metrics");
  needsRestart(next.log != config_.log, "log");
  needsRestart(next.accessLog != config_.accessLog, "access_log");
  needsRestart(next.stateFile != config_.stateFile, "state_file");
  needsRestart(next.configWatch != config_.configWatch, "config_watch");
  next.workers = config_.workers;
  next.listenerSockets = config_.listenerSockets;
  next.configWatch = config_.configWatch;
  next.admin = config_.admin;
  next.metrics = config_.metrics;
  next.log = config_.log;
  next.accessLog = config_.accessLog;
  next.stateFile = config_.stateFile;

  // The difference, by name, as a delta; then the same steps as apply().
  Delta delta;
  std::unordered_set<std::string_view> names;
  for (const ClusterConfig& cluster : next.clusters) {
    names.insert(cluster.name);
    const ClusterConfig* old = findCluster(cluster.name);
    if (old == nullptr || *old != cluster) delta.putClusters.push_back(cluster);
  }
  for (const ClusterConfig& old : config_.clusters) {
    if (!names.contains(old.name)) delta.removeClusters.push_back(old.name);
  }
  names.clear();
  for (const ListenerConfig& listener : next.listeners) {
    names.insert(listener.name);
    const ListenerConfig* old = findListener(listener.name);
    if (old == nullptr || *old != listener) delta.putListeners.push_back(listener);
  }
  for (const ListenerConfig& old : config_.listeners) {
    if (!names.contains(old.name)) delta.removeListeners.push_back(old.name);
  }
  Plan plan;
  if (auto error = makePlan(delta, plan)) return error;
  if (auto error = execute(plan, preCommit)) return error;
  {
    const std::lock_guard lock(viewMutex_);
    record(delta, plan);
    // The running configuration is `next`, in its order.
    std::vector<std::shared_ptr<ListenerState>> listeners;
    listeners.reserve(next.listeners.size());
    for (const ListenerConfig& config : next.listeners) listeners.push_back(listener(config.name));
    std::vector<std::shared_ptr<ClusterState>> clusters;
    clusters.reserve(next.clusters.size());
    for (const ClusterConfig& config : next.clusters) clusters.push_back(cluster(config.name));
    listeners_ = std::move(listeners);
    clusters_ = std::move(clusters);
    config_ = std::move(next);
    reindex();
    viewStale_ = true;
  }
  // The workers see a new budget at their next loop pass.
  budget_->setLimit(config_.maxBufferedBytes);
  report(plan, cause);
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
  {
    const std::lock_guard lock(viewMutex_);
    viewLive_ = false;
    view_.reset();
  }
  const std::lock_guard lock(workersMutex_);
  for (auto& worker : workers_) worker->stop();
  workers_.clear();
}

std::shared_ptr<const Gateway::MetricsView> Gateway::metricsView() const {
  const std::lock_guard lock(viewMutex_);
  if (!viewLive_) return std::make_shared<const MetricsView>();
  // Built when asked (at most once per change): a change among thousands of listeners does not
  // pay for a view nobody reads.
  if (viewStale_ || !view_) {
    auto view = std::make_shared<MetricsView>();
    view->listeners.reserve(listeners_.size());
    for (const auto& listener : listeners_) {
      view->listeners.push_back(MetricsView::Listener{listener, listener->config.maxConnections});
    }
    view->clusters = clusters_;
    view_ = std::move(view);
    viewStale_ = false;
  }
  return view_;
}

std::optional<Gateway::BudgetUse> Gateway::bufferBudget() const {
  const std::lock_guard lock(workersMutex_);
  if (!budget_ || workers_.empty()) return std::nullopt;
  return BudgetUse{budget_->limit(), budget_->used()};
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
