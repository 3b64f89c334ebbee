#include "gateway/worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "gateway/log.h"

namespace evgate::gateway {

AccessLog::AccessLog(const AccessLogConfig& config) {
  switch (config.mode) {
    case AccessLogMode::kOff:
      return;
    case AccessLogMode::kStdout:
      fd_ = STDOUT_FILENO;
      return;
    case AccessLogMode::kFile:
      fd_ = ::open(config.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      if (fd_ < 0) {
        error_ = "cannot open access log " + config.path + ": " + std::strerror(errno);
      }
      ownsFd_ = fd_ >= 0;
      return;
  }
}

AccessLog::~AccessLog() {
  if (ownsFd_) ::close(fd_);
}

void AccessLog::write(const std::string& line) const {
  if (fd_ < 0) return;
  std::string withNewline = line + "\n";
  // One write per line so lines from different workers never interleave; a full disk or a closed
  // stdout loses the line but never the flow.
  (void)::write(fd_, withNewline.data(), withNewline.size());
}

Worker::Worker(uint32_t index, const AccessLog& accessLog) : index_(index), accessLog_(accessLog) {}

Worker::~Worker() { stop(); }

void Worker::start(std::vector<Socket> sockets) {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread(
      [this, sockets = std::move(sockets), &ready]() mutable { run(std::move(sockets), ready); });
  started.wait();
}

void Worker::run(std::vector<Socket> sockets, std::promise<void>& ready) {
  // The base is created on this thread, which makes it the loop thread from the start.
  reactor::EventBase base;
  base_ = &base;
  for (Socket& socket : sockets) addListener(std::move(socket));
  ready.set_value();
  base.loop(reactor::kLoopNoExitOnEmpty);
  // Leaving: whatever is still open is closed (flows delete themselves at the end of the pass).
  // The pickers (in accepting_) go last: a closing flow reports to its picker.
  for (auto& accepting : accepting_) accepting->listener.reset();
  closeFlows(flows_.size(), CloseReason::kDrain);
  base.loop(reactor::kLoopNonBlock);
  accepting_.clear();
  owned_.clear();
  base_ = nullptr;
}

std::shared_ptr<WorkerCluster> Worker::makePicker(std::shared_ptr<ClusterState> cluster) const {
  return std::make_shared<WorkerCluster>(std::move(cluster), 0x9e3779b97f4a7c15ULL * (index_ + 1));
}

void Worker::addListener(Socket socket) {
  auto accepting = std::make_unique<Accepting>();
  accepting->worker = this;
  accepting->state = socket.listener;
  accepting->cluster = makePicker(socket.listener->cluster);
  const ListenerConfig& config = socket.listener->config;
  accepting->settings =
      FlowSettings{config.bufferLimit,         config.idleTimeout,       config.halfCloseTimeout,
                   config.maxLifetime,         config.maxLifetimeJitter, config.acceptProxyProtocol,
                   config.proxyProtocolTimeout};
  accepting->listener =
      reactor::Listener::adopt(*base_.load(), onAccept, accepting.get(),
                               reactor::Listener::kCloseOnFree, /*backlog=*/0, socket.fd);
  if (!accepting->listener) {
    logError("worker " + std::to_string(index_) + ": cannot accept on listener " + config.name +
             ": " + std::strerror(errno));
    ::close(socket.fd);
    return;
  }
  accepting_.push_back(std::move(accepting));
}

std::future<void> Worker::apply(Changes changes) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> applied = done->get_future();
  reactor::EventBase* base = base_.load();
  if (base == nullptr) {
    for (const Socket& socket : changes.add) ::close(socket.fd);
    done->set_value();
    return applied;
  }
  base->runInLoop([this, changes = std::move(changes), done]() mutable {
    for (Socket& socket : changes.add) addListener(std::move(socket));
    // Removing destroys the reactor listener (closing its socket); the flows it accepted keep
    // their listener state and picker through their OpenFlow.
    std::erase_if(accepting_, [&changes](const std::unique_ptr<Accepting>& accepting) {
      return std::find(changes.remove.begin(), changes.remove.end(), accepting->state.get()) !=
             changes.remove.end();
    });
    for (auto& [state, cluster] : changes.repick) {
      for (auto& accepting : accepting_) {
        if (accepting->state.get() == state) accepting->cluster = makePicker(cluster);
      }
    }
    done->set_value();
  });
  return applied;
}

void Worker::onAccept(reactor::Listener&, int fd, const sockaddr* peer, socklen_t peerLen,
                      void* arg) {
  auto* accepting = static_cast<Accepting*>(arg);
  accepting->worker->accept(*accepting, fd, reactor::SocketAddress::fromSockaddr(peer, peerLen));
}

void Worker::accept(Accepting& accepting, int fd, const reactor::SocketAddress& peer) {
  ListenerState& listener = *accepting.state;
  const ListenerConfig& config = listener.config;
  if (!config.allow.empty()) {
    bool allowed = false;
    for (const Cidr& cidr : config.allow) allowed = allowed || cidr.contains(peer);
    if (!allowed) {
      listener.refusedNotAllowed.fetch_add(1, std::memory_order_relaxed);
      ::close(fd);
      return;
    }
  }
  if (listener.connections.fetch_add(1, std::memory_order_relaxed) >= config.maxConnections) {
    listener.connections.fetch_sub(1, std::memory_order_relaxed);
    listener.refusedOverLimit.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
    return;
  }
  // Ids are unique across workers: the worker index in the top bits.
  const uint64_t id = (uint64_t{index_} << 48) | ++nextFlow_;
  Flow* flow =
      Flow::start(*base_.load(), id, fd, peer, accepting.settings, *accepting.cluster, *this);
  flows_.emplace(id, OpenFlow{flow, accepting.state, accepting.cluster});
  flowCount_.store(flows_.size(), std::memory_order_relaxed);
}

void Worker::onFlowClosed(Flow& flow) {
  const auto it = flows_.find(flow.id());
  if (it == flows_.end()) return;
  // The flow's listener state and picker stay alive until this returns: the flow may be the
  // last user of a listener or cluster a reload replaced.
  const OpenFlow ended = std::move(it->second);
  ended.listener->connections.fetch_sub(1, std::memory_order_relaxed);
  flows_.erase(it);
  flowCount_.store(flows_.size(), std::memory_order_relaxed);
  accessLog_.write(accessLogLine(flow, std::chrono::system_clock::now()));
}

void Worker::stopAccepting() {
  // Only the listening sockets: the flows already accepted keep using their listener's picker.
  if (reactor::EventBase* base = base_.load()) {
    base->runInLoop([this] {
      for (auto& accepting : accepting_) accepting->listener.reset();
    });
  }
}

void Worker::closeFlows(size_t count, CloseReason reason) {
  auto closeOldest = [this, count, reason] {
    // close() calls onFlowClosed, which erases from flows_: take the victims first.
    std::vector<Flow*> victims;
    for (auto it = flows_.begin(); it != flows_.end() && victims.size() < count; ++it) {
      victims.push_back(it->second.flow);
    }
    for (Flow* flow : victims) flow->close(reason);
  };
  reactor::EventBase* base = base_.load();
  if (base != nullptr && !base->isInLoopThread()) {
    base->runInLoop(closeOldest);
  } else {
    closeOldest();
  }
}

void Worker::own(std::string key, std::function<std::shared_ptr<void>(reactor::EventBase&)> make) {
  reactor::EventBase* base = base_.load();
  if (base == nullptr) return;
  base->runInLoop([this, base, key = std::move(key), make = std::move(make)] {
    // The old object (if any) is destroyed before the new one starts.
    owned_.erase(key);
    owned_.emplace(key, make(*base));
  });
}

void Worker::disown(std::string key) {
  reactor::EventBase* base = base_.load();
  if (base == nullptr) return;
  base->runInLoop([this, key = std::move(key)] { owned_.erase(key); });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  if (reactor::EventBase* base = base_.load()) base->runInLoop([base] { base->loopBreak(); });
  thread_.join();
}

}  // namespace evgate::gateway
