#include "gateway/worker.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "gateway/log.h"
#include "reactor/fatal.h"

namespace evgate::gateway {

AccessLog::AccessLog(const AccessLogConfig& config) {
  switch (config.mode) {
    case AccessLogMode::kOff:
      return;
    case AccessLogMode::kStdout:
      fd_ = STDOUT_FILENO;
      break;
    case AccessLogMode::kFile:
      fd_ = ::open(config.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      if (fd_ < 0) {
        error_ = "cannot open access log " + config.path + ": " + reactor::errnoText(errno);
        return;
      }
      ownsFd_ = true;
      break;
  }
  sink_ = std::make_unique<LogSink>(fd_, config.queueLimit, "access log", [](uint64_t dropped) {
    logDropReport("access log", dropped,
                  "its reader fell behind and the queue (access_log.queue_limit) was full");
  });
}

AccessLog::~AccessLog() {
  sink_.reset();  // its thread writes to fd_ until then
  if (ownsFd_) ::close(fd_);
}

void AccessLog::write(const std::string& line) const {
  // A full queue, a full disk or a closed stdout loses the line but never the flow.
  if (sink_) sink_->write(line);
}

std::optional<LogSink::Stats> AccessLog::queueStats() const {
  if (!sink_) return std::nullopt;
  return sink_->stats();
}

ListeningSocket::~ListeningSocket() { ::close(fd_); }

Worker::Worker(uint32_t index, const AccessLog& accessLog, NoticeSink* notices,
               BufferBudget* budget)
    : index_(index), accessLog_(accessLog), notices_(notices), budget_(budget, index) {}

Worker::~Worker() { stop(); }

void Worker::start() {
  std::promise<void> ready;
  std::future<void> started = ready.get_future();
  thread_ = std::thread([this, &ready] { run(ready); });
  started.wait();
}

void Worker::run(std::promise<void>& ready) {
  // splice() into a socket whose peer is gone raises SIGPIPE (it has no MSG_NOSIGNAL). Blocked
  // on this thread, the signal only leaves a pending bit here instead of killing a process that
  // embeds the gateway without ignoring SIGPIPE (the daemon ignores it); the call still fails
  // with EPIPE, which the flow handles.
  sigset_t pipeSignal;
  sigemptyset(&pipeSignal);
  sigaddset(&pipeSignal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipeSignal, nullptr);
  // The base is created on this thread, which makes it the loop thread from the start.
  reactor::EventBase base;
  base.setLoopObserver(this);
  base_ = &base;
  ready.set_value();
  base.loop(reactor::kLoopNoExitOnEmpty);
  // Leaving: whatever is still open is closed (flows delete themselves at the end of the pass).
  // The pickers (in accepting_) go last: a closing flow reports to its picker.
  for (auto& [state, accepting] : accepting_) closeListener(*accepting);
  prepared_.clear();
  closeOldest(flows_.size(), CloseReason::kDrain);
  base.loop(reactor::kLoopNonBlock);
  accepting_.clear();
  owned_.clear();
  base_ = nullptr;
  // stop() may still be inside runInLoop(), writing to the base's wake-up eventfd, after the
  // loopBreak it posted has already run: the base must outlive that call (muduo's EventLoop::quit
  // has the same hazard). Nothing else posts once stop() has been called.
  stopPosted_.wait(false, std::memory_order_acquire);
}

template <typename T>
std::future<T> Worker::call(std::function<T()> fn) const {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> result = promise->get_future();
  reactor::EventBase* base = base_.load();
  if (base == nullptr) {
    promise->set_value(T{});
    return result;
  }
  // If the loop ends before this runs, the function (and the promise) is destroyed unrun: the
  // future then holds broken_promise instead of blocking its reader forever.
  base->runInLoop([promise, fn = std::move(fn)] { promise->set_value(fn()); });
  return result;
}

std::shared_ptr<WorkerCluster> Worker::makePicker(std::shared_ptr<ClusterState> cluster) const {
  return std::make_shared<WorkerCluster>(std::move(cluster), 0x9e3779b97f4a7c15ULL * (index_ + 1),
                                         index_);
}

std::shared_ptr<const Worker::FlowGroup> Worker::makeGroup(
    std::shared_ptr<ListenerState> listener, std::shared_ptr<const ListenerConfig> config,
    std::shared_ptr<WorkerCluster> picker) {
  const ListenerConfig& c = *config;
  stats::ListenerCounters* counters =
      listener->stats ? &listener->stats->workers.at(index_) : nullptr;
  const FlowSettings settings{c.bufferLimit,
                              c.idleTimeout,
                              c.halfCloseTimeout,
                              c.maxLifetime,
                              c.maxLifetimeJitter,
                              c.acceptProxyProtocol,
                              c.proxyProtocolTimeout,
                              counters,
                              &pipes_,
                              c.splice,
                              &budget_};
  return std::make_shared<const FlowGroup>(
      FlowGroup{std::move(listener), std::move(config), std::move(picker), settings});
}

std::unique_ptr<Worker::Accepting> Worker::adopt(const Socket& socket) {
  auto accepting = std::make_unique<Accepting>();
  accepting->worker = this;
  accepting->group = makeGroup(socket.listener, socket.config, makePicker(socket.cluster));
  accepting->socket = socket.socket;
  // The socket closes with its last holder, not with a reactor listener. One reserve fd per
  // worker for the EMFILE trick, not one per listener: with thousands of listeners, the fds
  // go to flows.
  unsigned options = reactor::Listener::kDisabled | reactor::Listener::kSharedReserve;
  if (socket.shared) options |= reactor::Listener::kExclusiveAccept;
  accepting->listener = reactor::Listener::adopt(*base_.load(), onAccept, accepting.get(), options,
                                                 /*backlog=*/0, socket.socket->fd());
  if (!accepting->listener) {
    const int error = errno;
    accepting.reset();
    errno = error;
    return nullptr;
  }
  accepting->listener->setLabel("listener " + socket.config->name);
  accepting->listener->setErrorCallback(onAcceptError, accepting.get());
  return accepting;
}

std::future<std::optional<std::string>> Worker::prepare(std::vector<Socket> sockets) {
  // The sockets belong to the posted function until adopted; if it never runs (the loop is not
  // running, or ends first), they are let go with it.
  auto pending = std::make_shared<std::vector<Socket>>(std::move(sockets));
  return call<std::optional<std::string>>([this, pending]() -> std::optional<std::string> {
    std::vector<std::unique_ptr<Accepting>> adopted;
    for (const Socket& socket : *pending) {
      std::unique_ptr<Accepting> accepting = adopt(socket);
      if (!accepting) {
        const std::string error = "worker " + std::to_string(index_) +
                                  ": cannot accept on listener " + socket.config->name + ": " +
                                  reactor::errnoText(errno);
        // Every socket let go before the answer (the adopted ones as `adopted` goes): once every
        // worker has answered or aborted, the caller may report that nothing listens.
        pending->clear();
        return error;
      }
      adopted.push_back(std::move(accepting));
    }
    pending->clear();
    for (auto& accepting : adopted) prepared_.push_back(std::move(accepting));
    return std::nullopt;
  });
}

std::future<void> Worker::commit(Changes changes) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> applied = done->get_future();
  reactor::EventBase* base = base_.load();
  if (base == nullptr) {
    done->set_value();
    return applied;
  }
  base->runInLoop([this, changes = std::move(changes), done] {
    for (auto& accepting : prepared_) {
      const ListenerConfig& config = *accepting->group->config;
      if (!config.paused && accepting->listener->enable() != 0) {
        logError("worker " + std::to_string(index_) + ": cannot accept on listener " + config.name +
                 ": " + reactor::errnoText(errno));
      }
      const ListenerState* state = accepting->group->listener.get();
      accepting_.emplace(state, std::move(accepting));
    }
    prepared_.clear();
    // Removing destroys the reactor listener and lets go of its socket (closed once no worker
    // holds it); the flows it accepted keep their listener state and picker through their
    // OpenFlow.
    for (const ListenerState* removed : changes.remove) accepting_.erase(removed);
    for (const Update& change : changes.update) update(change);
    done->set_value();
  });
  return applied;
}

std::future<void> Worker::abort() {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> aborted = done->get_future();
  reactor::EventBase* base = base_.load();
  if (base == nullptr) {
    done->set_value();
    return aborted;
  }
  base->runInLoop([this, done] {
    prepared_.clear();
    done->set_value();
  });
  return aborted;
}

void Worker::update(const Update& change) {
  const auto found = accepting_.find(change.listener);
  if (found == accepting_.end()) return;
  Accepting& accepting = *found->second;
  const FlowGroup& current = *accepting.group;
  std::shared_ptr<WorkerCluster> picker = &current.picker->state() == change.cluster.get()
                                              ? current.picker
                                              : makePicker(change.cluster);
  accepting.group = makeGroup(current.listener, change.config, std::move(picker));
  // Null after stopAccepting(): a drain is not undone by a resume.
  if (!accepting.listener) return;
  const int result =
      change.config->paused ? accepting.listener->disable() : accepting.listener->enable();
  if (result != 0) {
    logError("worker " + std::to_string(index_) + ": cannot accept on listener " +
             change.config->name + ": " + reactor::errnoText(errno));
  }
}

void Worker::closeListener(Accepting& accepting) {
  accepting.listener.reset();
  accepting.socket.reset();
}

void Worker::onAccept(reactor::Listener&, int fd, const sockaddr* peer, socklen_t peerLen,
                      void* arg) {
  auto* accepting = static_cast<Accepting*>(arg);
  accepting->worker->accept(*accepting, fd, reactor::SocketAddress::fromSockaddr(peer, peerLen));
}

void Worker::onAcceptError(reactor::Listener&, int error, void* arg) {
  // One call per connection the listener closed for want of an fd (or per pause when not even
  // its reserve fd was free): what an operator needs to see to raise the fd limit. No log line:
  // a flood would turn it into one line per connection.
  if (error != EMFILE && error != ENFILE) return;
  auto* accepting = static_cast<Accepting*>(arg);
  if (stats::ListenerCounters* counters = accepting->group->settings.counters) {
    counters->rejected[stats::kRejectedFdLimit].add(1);
  }
}

void Worker::accept(Accepting& accepting, int fd, const reactor::SocketAddress& peer) {
  const FlowGroup& group = *accepting.group;
  ListenerState& listener = *group.listener;
  const ListenerConfig& config = *group.config;
  stats::ListenerCounters* const counters = group.settings.counters;
  if (!config.allow.empty()) {
    bool allowed = false;
    for (const Cidr& cidr : config.allow) allowed = allowed || cidr.contains(peer);
    if (!allowed) {
      if (counters != nullptr) counters->rejected[stats::kRejectedNotAllowed].add(1);
      ::close(fd);
      return;
    }
  }
  // Read afresh: an idle loop has not refreshed since a reload lowered the budget.
  budget_.refresh();
  if (budget_.full()) {
    // The flows hold the whole memory budget: nobody new until they have drained.
    if (counters != nullptr) counters->rejected[stats::kRejectedBufferBudget].add(1);
    ::close(fd);
    return;
  }
  if (listener.connections.fetch_add(1, std::memory_order_relaxed) >= config.maxConnections) {
    listener.connections.fetch_sub(1, std::memory_order_relaxed);
    if (counters != nullptr) counters->rejected[stats::kRejectedMaxConnections].add(1);
    ::close(fd);
    return;
  }
  // Ids are unique across workers: the worker index in the top bits.
  const uint64_t id = (uint64_t{index_} << kFlowIdWorkerShift) | ++nextFlow_;
  Flow* flow = Flow::start(*base_.load(), id, fd, peer, group.settings, *group.picker, *this);
  const auto it = flows_.emplace(id, OpenFlow{flow, accepting.group}).first;
  flowCount_.store(flows_.size(), std::memory_order_relaxed);
  if (counters != nullptr) counters->accepted.add(1);
  // Flow::start() never calls back before it returns, so the flow is still open here.
  if (notices_ != nullptr && notices_->wantsFlowNotices()) {
    publishFlowNotice(Notice::Type::kFlowOpened, it->second);
  }
}

void Worker::onFlowClosed(Flow& flow) {
  const auto it = flows_.find(flow.id());
  if (it == flows_.end()) return;
  // The flow's group (listener state, settings, picker) stays alive until this returns: the flow
  // may be the last user of a listener or cluster a reload replaced. The flow does not touch its
  // settings or picker after it has told onFlowClosed().
  const OpenFlow ended = std::move(it->second);
  ListenerState& listener = *ended.group->listener;
  listener.connections.fetch_sub(1, std::memory_order_relaxed);
  if (listener.stats) {
    stats::ListenerCounters& counters = listener.stats->workers.at(index_);
    counters.closed[static_cast<size_t>(flow.closeReason())].add(1);
    counters.flowDuration.observe(base_.load()->now() - flow.startTime());
  }
  flows_.erase(it);
  flowCount_.store(flows_.size(), std::memory_order_relaxed);
  if (accessLog_.enabled()) accessLog_.write(accessLogLine(flow, std::chrono::system_clock::now()));
  if (notices_ != nullptr && notices_->wantsFlowNotices()) {
    publishFlowNotice(Notice::Type::kFlowClosed, ended);
  }
}

void Worker::publishFlowNotice(Notice::Type type, const OpenFlow& open) const {
  const Flow& flow = *open.flow;
  Notice notice{type,
                open.group->config->name,
                open.group->picker->state().config().name,
                "",
                flow.id(),
                flow.client(),
                "",
                std::chrono::system_clock::now()};
  if (type == Notice::Type::kFlowClosed) {
    if (flow.upstream()) notice.endpoint = flow.upstream()->toString();
    notice.detail = toString(flow.closeReason());
  }
  notices_->publish(std::move(notice));
}

bool Worker::matches(const OpenFlow& open, const FlowFilter& filter, TimePoint now) const {
  const Flow& flow = *open.flow;
  if (filter.listenerId && *filter.listenerId != open.group->listener->id) return false;
  if (!filter.listener.empty() && filter.listener != open.group->config->name) return false;
  if (!filter.cluster.empty() && filter.cluster != open.group->picker->state().config().name) {
    return false;
  }
  if (filter.endpoint && !(flow.upstream() && *flow.upstream() == *filter.endpoint)) return false;
  if (filter.client && !filter.client->contains(flow.client())) return false;
  if (now - flow.startTime() < filter.minAge) return false;
  return now - flow.lastActivity() >= filter.minIdle;
}

FlowInfo Worker::describe(const OpenFlow& open, TimePoint now) const {
  const Flow& flow = *open.flow;
  FlowInfo info;
  info.id = flow.id();
  info.worker = index_;
  info.listener = open.group->config->name;
  info.listenerId = open.group->listener->id;
  info.cluster = open.group->picker->state().config().name;
  info.client = flow.client();
  info.upstream = flow.upstream();
  info.state = flow.state();
  info.startTime = flow.startWallTime();
  info.age = now - flow.startTime();
  info.idle = now - flow.lastActivity();
  info.bytesFromClient = flow.bytesFromClient();
  info.bytesFromUpstream = flow.bytesFromUpstream();
  info.bufferedBytes = flow.bufferedBytes();
  return info;
}

std::future<std::vector<FlowInfo>> Worker::listFlows(FlowFilter filter, uint64_t afterId,
                                                     size_t limit) const {
  return call<std::vector<FlowInfo>>([this, filter = std::move(filter), afterId, limit] {
    // The clock, not the loop's cached time: this runs after the iteration's callbacks.
    const TimePoint now = base_.load()->clock().now();
    std::vector<FlowInfo> found;
    for (auto it = flows_.upper_bound(afterId); it != flows_.end() && found.size() < limit; ++it) {
      if (matches(it->second, filter, now)) found.push_back(describe(it->second, now));
    }
    return found;
  });
}

std::future<size_t> Worker::countFlows(FlowFilter filter) const {
  return call<size_t>([this, filter = std::move(filter)] {
    if (filter.matchesAll()) return flows_.size();
    const TimePoint now = base_.load()->clock().now();
    size_t count = 0;
    for (const auto& [id, open] : flows_) count += matches(open, filter, now) ? 1 : 0;
    return count;
  });
}

std::future<std::vector<Worker::FlowAge>> Worker::oldestFlows(FlowFilter filter, size_t max) const {
  return call<std::vector<FlowAge>>([this, filter = std::move(filter), max] {
    const TimePoint now = base_.load()->clock().now();
    std::vector<FlowAge> found;
    // By id is by age on one worker.
    for (auto it = flows_.begin(); it != flows_.end() && found.size() < max; ++it) {
      if (matches(it->second, filter, now)) {
        found.push_back(FlowAge{it->second.flow->startTime(), it->first});
      }
    }
    return found;
  });
}

std::future<size_t> Worker::closeFlows(std::vector<uint64_t> ids, CloseReason reason) {
  return call<size_t>([this, ids = std::move(ids), reason] {
    size_t closed = 0;
    for (const uint64_t id : ids) {
      // close() calls onFlowClosed, which erases the flow: look each one up afresh.
      const auto it = flows_.find(id);
      if (it == flows_.end()) continue;
      it->second.flow->close(reason);
      ++closed;
    }
    return closed;
  });
}

std::future<std::vector<reactor::EventInfo>> Worker::dumpEvents() const {
  return call<std::vector<reactor::EventInfo>>([this] { return base_.load()->dumpEvents(); });
}

std::future<WorkerSample> Worker::sample() const {
  return call<WorkerSample>([this] {
    WorkerSample sample;
    sample.events = base_.load()->eventCounts();
    std::unordered_map<std::string_view, size_t> byName;  // index into sample.listeners
    for (const auto& [id, open] : flows_) {
      const std::string& name = open.group->config->name;
      const auto [it, added] = byName.try_emplace(name, sample.listeners.size());
      if (added) sample.listeners.push_back(WorkerSample::Listener{name});
      WorkerSample::Listener& listener = sample.listeners[it->second];
      listener.bufferedBytes += open.flow->bufferedBytes();
      listener.flowsAtLimit += open.flow->atBufferLimit() ? 1 : 0;
    }
    return sample;
  });
}

size_t Worker::queuedFunctions() const {
  const reactor::EventBase* base = base_.load();
  return base != nullptr ? base->queuedFunctions() : 0;
}

void Worker::onIteration(TimePoint polled, TimePoint finished) {
  loopCounters_.iterations.add(1);
  loopCounters_.iterationDuration.observe(finished - polled);
  budget_.refresh();
}

void Worker::stopAccepting() {
  // Only the listening sockets: the flows already accepted keep using their listener's picker.
  if (reactor::EventBase* base = base_.load()) {
    base->runInLoop([this] {
      for (auto& [state, accepting] : accepting_) closeListener(*accepting);
    });
  }
}

void Worker::closeOldest(size_t count, CloseReason reason) {
  // close() calls onFlowClosed, which erases from flows_: take the victims first.
  std::vector<Flow*> victims;
  for (auto it = flows_.begin(); it != flows_.end() && victims.size() < count; ++it) {
    victims.push_back(it->second.flow);
  }
  for (Flow* flow : victims) flow->close(reason);
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
  stopPosted_.store(true, std::memory_order_release);
  stopPosted_.notify_one();
  thread_.join();
}

}  // namespace evgate::gateway
