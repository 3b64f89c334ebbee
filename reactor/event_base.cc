#include "reactor/event_base.h"

#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <list>

#include "reactor/fatal.h"

namespace evgate::reactor {
namespace {

constexpr int kMaxPriorities = 256;
constexpr int kSignalSlots = _NSIG;

// The base whose loop runs on this thread right now, if any.
thread_local EventBase* tlsRunningBase = nullptr;

EventMask interestOf(uint32_t readers, uint32_t writers, uint32_t closers, uint32_t edge,
                     uint32_t exclusive) {
  EventMask mask = 0;
  if (readers > 0) mask |= kRead;
  if (writers > 0) mask |= kWrite;
  if (closers > 0) mask |= kClosed;
  if (mask != 0 && edge > 0) mask |= kEdgeTriggered;
  if (mask != 0 && exclusive > 0) mask |= kExclusive;
  return mask;
}

}  // namespace

// The holder of one EventBase::once() callback; it frees itself when the event fires.
struct EventBase::OnceEvent {
  std::function<void(int, EventMask)> callback;
  std::unique_ptr<Event> event;
  std::list<std::unique_ptr<OnceEvent>>::iterator self;
};

EventBase::EventBase() : EventBase(EventBaseOptions{}) {}

EventBase::EventBase(const EventBaseOptions& options)
    : poller_(Poller::create(options.backend)),
      clock_(options.clock != nullptr ? options.clock : &MonotonicClock::instance()),
      loopThread_(std::this_thread::get_id()),
      activeQueues_(static_cast<size_t>(
          options.priorities < 1 ? 1 : std::min(options.priorities, kMaxPriorities))),
      signalEvents_(kSignalSlots),
      // EFD_NONBLOCK: a wake-up written while the counter is already set must never block the
      // poster, and the loop drains it without blocking.
      wakeFd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  sigemptyset(&signalMask_);
  sigemptyset(&blockedByUs_);
  if (wakeFd_ < 0) fatalSyscall("eventfd");
  wakeEvent_ = makeInternalEvent(wakeFd_, onWakeup, "internal: runInLoop wake-up");
}

EventBase::~EventBase() {
  // The destroying thread becomes the loop thread: a worker's base is often destroyed by the
  // thread that joined the worker.
  loopThread_.store(std::this_thread::get_id());
  // Deferred objects may still own events of this base: let them go first.
  runDeferredDeletes();
  onceEvents_.clear();
  wakeEvent_.reset();
  signalEvent_.reset();
  while (Event* ev = allEvents_.front()) {
    ev->del();
    allEvents_.erase(ev);
    ev->base_ = nullptr;
  }
  for (int sig = 1; sig < kSignalSlots; ++sig) {
    if (sigismember(&blockedByUs_, sig) == 1) unblockSignal(sig);
  }
  if (signalFd_ >= 0) ::close(signalFd_);
  ::close(wakeFd_);
}

std::unique_ptr<Event> EventBase::makeInternalEvent(int fd, EventCallback cb, const char* label) {
  auto ev = std::make_unique<Event>(*this, fd, kRead | kPersist, cb, this);
  ev->flags_ |= Event::kListInternal;
  ev->priority_ = 0;  // as libevent: its own events run before any user event
  ev->setLabel(label);
  if (ev->add() < 0) fatalSyscall("registering an internal event");
  return ev;
}

int EventBase::loop(int flags) {
  if (running_) return -1;  // libevent refuses a reentrant loop too
  running_ = true;
  EventBase* const outerBase = tlsRunningBase;  // a loop may run inside another base's callback
  tlsRunningBase = this;
  loopThread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  gotBreak_ = false;
  gotExit_ = false;
  cachedNow_.reset();

  int result = 0;
  for (bool done = false; !done;) {
    continueFromHigherPriority_ = false;
    if (gotExit_ || gotBreak_) break;
    if (!(flags & kLoopNoExitOnEmpty) && !haveWork()) {
      result = 1;
      break;
    }
    const std::optional<Duration> timeout = pollTimeout(flags);
    cachedNow_.reset();
    ready_.clear();
    if (poller_->wait(timeout, ready_) < 0) {
      (void)std::fprintf(stderr, "evgate: %s wait failed: errno %d\n", poller_->name().data(),
                         errno);
      result = -1;
      break;
    }
    cachedNow_ = clock_->now();
    activateReady();
    processTimeouts();
    if (activeCount_ > 0) {
      const int processed = processActive();
      if ((flags & kLoopOnce) && activeCount_ == 0 && processed != 0) done = true;
    } else if (flags & kLoopNonBlock) {
      done = true;
    }
    runPendingFunctors();
    runDeferredDeletes();
    if (observer_ != nullptr) observer_->onIteration(*cachedNow_, clock_->now());
  }
  cachedNow_.reset();
  running_ = false;
  tlsRunningBase = outerBase;
  return result;
}

void EventBase::loopBreak() {
  assertInLoopThread();
  gotBreak_ = true;
}

int EventBase::loopExit(std::optional<Duration> delay) {
  return once(
      -1, kTimeout, [this](int, EventMask) { gotExit_ = true; }, delay.value_or(Duration::zero()));
}

bool EventBase::haveWork() const {
  return userEventCount_ > 0 || activeCount_ > 0 || !posted_.empty();
}

std::optional<Duration> EventBase::pollTimeout(int flags) {
  if (activeCount_ > 0 || (flags & kLoopNonBlock) || !posted_.empty()) {
    return Duration::zero();
  }
  if (timers_.empty()) return std::nullopt;
  const TimePoint deadline = timers_.topDeadline();
  TimePoint current = clock_->now();
  if (deadline > current) {
    clock_->idleUntil(deadline);
    current = clock_->now();
  }
  return deadline > current ? deadline - current : Duration::zero();
}

TimePoint EventBase::now() const { return cachedNow_ ? *cachedNow_ : clock_->now(); }

// ---- active events -------------------------------------------------------------------------

void EventBase::activateReady() {
  for (const ReadyFd& ready : ready_) {
    if (ready.fd < 0 || static_cast<size_t>(ready.fd) >= fds_.size()) continue;
    // libevent's evmap_io_active_: each event on the fd gets the bits it asked for.
    for (Event* ev = fds_[ready.fd].events.front(); ev != nullptr; ev = Event::MapList::next(ev)) {
      const EventMask fired = ev->events_ & ready.what & (kRead | kWrite | kClosed);
      if (fired != 0) pushActive(*ev, fired, 1);
    }
  }
}

void EventBase::pushActive(Event& ev, EventMask res, int signalCalls) {
  if (ev.flags_ & Event::kListActive) {
    ev.res_ |= res;
    return;
  }
  ev.res_ = res;
  const int priority = std::min<int>(ev.priority_, priorityCount() - 1);
  if (runningPriority_ >= 0 && priority < runningPriority_) continueFromHigherPriority_ = true;
  if (ev.events_ & kSignal) ev.signalCalls_ = signalCalls;
  activeQueues_[priority].pushBack(&ev);
  setListFlag(ev, Event::kListActive, true);
  ++activeCount_;
}

void EventBase::removeActive(Event& ev) {
  Event::ActiveList& queue = activeQueues_[std::min<int>(ev.priority_, priorityCount() - 1)];
  queue.erase(&ev);
  setListFlag(ev, Event::kListActive, false);
  --activeCount_;
}

// Runs the highest-priority non-empty queue. As in libevent, lower priorities wait for a later
// iteration once a user callback has run; internal callbacks alone do not hold them back.
int EventBase::processActive() {
  int result = 0;
  for (int priority = 0; priority < priorityCount(); ++priority) {
    if (activeQueues_[priority].empty()) continue;
    runningPriority_ = priority;
    result = processQueue(activeQueues_[priority]);
    if (result != 0) break;
  }
  runningPriority_ = -1;
  return result;
}

int EventBase::processQueue(Event::ActiveList& queue) {
  int count = 0;
  continueFromHigherPriority_ = false;
  while (Event* ev = queue.front()) {
    // A persistent event stays registered; any other becomes non-pending before its callback,
    // so the callback may add it again.
    if (ev->events_ & kPersist) {
      removeActive(*ev);
    } else {
      ev->del();
    }
    if (!(ev->flags_ & Event::kListInternal)) ++count;
    runEvent(*ev);  // `ev` may be gone from here on
    if (gotBreak_) return -1;
    if (continueFromHigherPriority_) break;
  }
  return count;
}

void EventBase::runEvent(Event& ev) {
  const int fd = ev.fd_;
  const EventMask res = ev.res_;
  const EventCallback cb = ev.callback_;
  void* const arg = ev.arg_;
  if (ev.events_ & kSignal) {
    // One call per delivery. del() from inside the callback zeroes `calls` through the pointer,
    // so the event is never touched again once it may have been destroyed.
    int calls = ev.signalCalls_;
    if (calls != 0) ev.runningSignalCalls_ = &calls;
    while (calls > 0) {
      --calls;
      ev.signalCalls_ = calls;
      if (calls == 0) ev.runningSignalCalls_ = nullptr;
      cb(fd, res, arg);
      if (gotBreak_) {
        if (calls != 0) ev.runningSignalCalls_ = nullptr;
        return;
      }
    }
    return;
  }
  if (ev.events_ & kPersist) persistClosure(ev);
  cb(fd, res, arg);
}

// libevent's event_persist_closure: re-arm a persistent event's timeout before its callback.
// After a timeout the next deadline follows the previous one, so a periodic timer does not
// drift; after I/O (or if the loop fell behind) it counts from now.
void EventBase::persistClosure(Event& ev) {
  if (ev.persistInterval_ <= Duration::zero()) return;
  const TimePoint current = now();
  const TimePoint relativeTo = (ev.res_ & kTimeout) ? ev.deadline_ : current;
  TimePoint runAt = saturatingAdd(relativeTo, ev.persistInterval_);
  if (runAt < current) runAt = saturatingAdd(current, ev.persistInterval_);
  ev.addAt(runAt, std::nullopt);
}

void EventBase::setListFlag(Event& ev, uint8_t flag, bool on) {
  constexpr uint8_t kCounted = Event::kListInserted | Event::kListTimeout | Event::kListActive;
  const bool wasCounted = (ev.flags_ & kCounted) != 0;
  if (on) {
    ev.flags_ |= flag;
  } else {
    ev.flags_ &= static_cast<uint8_t>(~flag);
  }
  const bool counted = (ev.flags_ & kCounted) != 0;
  if (!(ev.flags_ & Event::kListInternal) && wasCounted != counted) {
    if (counted) {
      ++userEventCount_;
    } else {
      --userEventCount_;
    }
  }
}

void EventBase::attach(Event& ev) { allEvents_.pushBack(&ev); }

void EventBase::detach(Event& ev) { allEvents_.erase(&ev); }

// ---- fd map --------------------------------------------------------------------------------

int EventBase::insertMapped(Event& ev) {
  const int fd = ev.fd_;
  if (fd < 0) {
    errno = EBADF;
    return -1;
  }
  if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) + 1);
  FdSlot& slot = fds_[fd];
  const bool edge = (ev.events_ & kEdgeTriggered) != 0;
  const bool exclusive = (ev.events_ & kExclusive) != 0;
  // epoll refuses EPOLLRDHUP on an exclusive registration: refused here, so that every backend
  // agrees (kExclusive in event.h).
  if (exclusive && (ev.events_ & kClosed)) {
    errno = EINVAL;
    return -1;
  }
  // As libevent: one fd is either edge- or level-triggered for all its events. The same for
  // exclusive wake-ups (ours), which the kernel sets per registration too.
  if (!slot.events.empty() && ((slot.edge > 0) != edge || (slot.exclusive > 0) != exclusive)) {
    errno = EINVAL;
    return -1;
  }
  const EventMask before =
      interestOf(slot.readers, slot.writers, slot.closers, slot.edge, slot.exclusive);
  const uint32_t readers = slot.readers + ((ev.events_ & kRead) ? 1 : 0);
  const uint32_t writers = slot.writers + ((ev.events_ & kWrite) ? 1 : 0);
  const uint32_t closers = slot.closers + ((ev.events_ & kClosed) ? 1 : 0);
  const uint32_t edges = slot.edge + (edge ? 1 : 0);
  const uint32_t exclusives = slot.exclusive + (exclusive ? 1 : 0);
  const EventMask after = interestOf(readers, writers, closers, edges, exclusives);
  if (after != before && poller_->update(fd, before, after) < 0) return -1;
  slot.readers = readers;
  slot.writers = writers;
  slot.closers = closers;
  slot.edge = edges;
  slot.exclusive = exclusives;
  // Newest first, as libevent's evmap: the last event added on an fd runs first in a pass.
  slot.events.pushFront(&ev);
  setListFlag(ev, Event::kListInserted, true);
  return 0;
}

void EventBase::removeMapped(Event& ev, bool tellPoller) {
  FdSlot& slot = fds_[ev.fd_];
  const EventMask before =
      interestOf(slot.readers, slot.writers, slot.closers, slot.edge, slot.exclusive);
  if (ev.events_ & kRead) --slot.readers;
  if (ev.events_ & kWrite) --slot.writers;
  if (ev.events_ & kClosed) --slot.closers;
  if (ev.events_ & kEdgeTriggered) --slot.edge;
  if (ev.events_ & kExclusive) --slot.exclusive;
  const EventMask after =
      interestOf(slot.readers, slot.writers, slot.closers, slot.edge, slot.exclusive);
  // A failure here means the fd is already gone; the kernel has forgotten it either way. An fd
  // about to be closed needs no word if the poller forgets closed fds by itself (epoll).
  const bool closing = !tellPoller && after == 0 && poller_->forgetsClosedFds();
  if (after != before && !closing) (void)poller_->update(ev.fd_, before, after);
  slot.events.erase(&ev);
  setListFlag(ev, Event::kListInserted, false);
}

// ---- timers --------------------------------------------------------------------------------

void EventBase::insertTimer(Event& ev, TimePoint deadline) {
  ev.deadline_ = deadline;
  timers_.push(ev, deadline);
  setListFlag(ev, Event::kListTimeout, true);
}

void EventBase::rescheduleTimer(Event& ev, TimePoint deadline) {
  ev.deadline_ = deadline;
  timers_.update(ev, deadline);
}

void EventBase::removeTimer(Event& ev) {
  timers_.remove(ev);
  setListFlag(ev, Event::kListTimeout, false);
}

// libevent's timeout_process: every expired event becomes non-pending, then active with
// kTimeout (a persistent one is re-registered by its closure before its callback).
void EventBase::processTimeouts() {
  const TimePoint current = now();
  while (!timers_.empty() && timers_.topDeadline() <= current) {
    Event* ev = timers_.top();
    ev->del();
    pushActive(*ev, kTimeout, 1);
  }
}

// ---- signals -------------------------------------------------------------------------------

int EventBase::insertSignal(Event& ev) {
  const int sig = ev.fd_;
  if (sig <= 0 || sig >= kSignalSlots) {
    errno = EINVAL;
    return -1;
  }
  if (signalEvents_[sig].empty()) {
    sigset_t one;
    sigset_t previous;
    sigemptyset(&one);
    sigaddset(&one, sig);
    // signalfd only sees signals that are blocked; otherwise the default action would run.
    pthread_sigmask(SIG_BLOCK, &one, &previous);
    signalBlocker_ = pthread_self();
    if (sigismember(&previous, sig) == 0) sigaddset(&blockedByUs_, sig);
    sigaddset(&signalMask_, sig);
    const int fd = signalfd(signalFd_, &signalMask_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
      const int saved = errno;
      sigdelset(&signalMask_, sig);
      if (sigismember(&blockedByUs_, sig) == 1) unblockSignal(sig);
      errno = saved;
      return -1;
    }
    if (signalFd_ < 0) {
      signalFd_ = fd;
      signalEvent_ = makeInternalEvent(fd, onSignalFd, "internal: signalfd");
    }
  }
  signalEvents_[sig].pushFront(&ev);  // newest first, as libevent's evmap
  setListFlag(ev, Event::kListInserted, true);
  return 0;
}

void EventBase::removeSignal(Event& ev) {
  const int sig = ev.fd_;
  signalEvents_[sig].erase(&ev);
  setListFlag(ev, Event::kListInserted, false);
  if (!signalEvents_[sig].empty()) return;
  sigdelset(&signalMask_, sig);
  (void)signalfd(signalFd_, &signalMask_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigismember(&blockedByUs_, sig) == 1) unblockSignal(sig);
}

// Unblocks `sig` if this thread is the one that blocked it. A delivery that arrived but was not
// read yet is consumed first: unblocking it would run its default action (for SIGTERM, death),
// e.g. on a second SIGTERM during a graceful shutdown that deletes the signal events.
void EventBase::unblockSignal(int sig) {
  sigdelset(&blockedByUs_, sig);
  if (!pthread_equal(pthread_self(), signalBlocker_)) return;
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  const timespec now{0, 0};
  while (sigtimedwait(&one, nullptr, &now) == sig) {
  }
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
}

void EventBase::onSignalFd(int fd, EventMask, void* arg) {
  auto* self = static_cast<EventBase*>(arg);
  std::array<int, kSignalSlots> deliveries{};
  signalfd_siginfo info[16];
  for (;;) {
    const ssize_t n = ::read(fd, info, sizeof info);
    if (n <= 0) break;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof info[0]; ++i) {
      const auto sig = static_cast<int>(info[i].ssi_signo);
      if (sig > 0 && sig < kSignalSlots) ++deliveries[sig];
    }
  }
  for (int sig = 1; sig < kSignalSlots; ++sig) {
    if (deliveries[sig] == 0) continue;
    for (Event* ev = self->signalEvents_[sig].front(); ev != nullptr;
         ev = Event::MapList::next(ev)) {
      self->pushActive(*ev, kSignal, deliveries[sig]);
    }
  }
}

// ---- cross-thread work ---------------------------------------------------------------------

void EventBase::runInLoop(std::function<void()> fn) {
  // Only the producer that made the queue non-empty writes the eventfd: for the others a wake-up
  // is already on its way. A caller inside this base's running loop never needs one: the loop
  // polls without blocking while functions are queued. That test uses a thread-local, not the
  // loop thread id, which another thread may read stale while a loop starts.
  if (posted_.push(std::move(fn)) && tlsRunningBase != this) wakeup();
}

void EventBase::wakeup() {
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated: the loop is woken anyway.
  if (::write(wakeFd_, &one, sizeof one) < 0 && errno != EAGAIN) fatalSyscall("eventfd write");
}

void EventBase::onWakeup(int fd, EventMask, void*) {
  uint64_t count = 0;
  (void)::read(fd, &count, sizeof count);  // EAGAIN: someone drained it already
}

void EventBase::runPendingFunctors() {
  if (!posted_.empty()) posted_.runAll();
}

void EventBase::deferDelete(std::unique_ptr<DeferredDeletable> object) {
  assertInLoopThread();
  deferred_.push_back(std::move(object));
}

void EventBase::runDeferredDeletes() {
  // Destructors may defer more deletions; keep going until none are left.
  while (!deferred_.empty()) {
    std::vector<std::unique_ptr<DeferredDeletable>> batch;
    batch.swap(deferred_);
    batch.clear();
  }
}

// ---- once, priorities, dump ----------------------------------------------------------------

int EventBase::once(int fd, EventMask what, std::function<void(int, EventMask)> cb,
                    std::optional<Duration> timeout) {
  assertInLoopThread();
  const EventMask watched = what & (kRead | kWrite | kClosed | kSignal);
  onceEvents_.push_back(std::make_unique<OnceEvent>());
  OnceEvent& holder = *onceEvents_.back();
  holder.self = std::prev(onceEvents_.end());
  holder.callback = std::move(cb);
  holder.event = std::make_unique<Event>(
      *this, watched != 0 ? fd : -1, watched,
      [](int evFd, EventMask fired, void* arg) {
        auto* once = static_cast<OnceEvent*>(arg);
        EventBase* base = once->event->base();
        auto callback = std::move(once->callback);
        base->onceEvents_.erase(once->self);  // destroys the event: safe inside its callback
        callback(evFd, fired);
      },
      &holder);
  holder.event->setLabel("once");
  // As libevent: a pure timer due now is made active at once rather than put on the heap, so it
  // runs in the current pass, after the callbacks already queued ("one idiom for scheduling a
  // callback"). loopExit() relies on it to end the loop after the current pass.
  if (watched == 0 && (!timeout || *timeout <= Duration::zero())) {
    holder.event->activate(kTimeout);
    return 0;
  }
  const int rc = timeout ? holder.event->add(*timeout) : holder.event->add();
  if (rc < 0) onceEvents_.erase(holder.self);
  return rc;
}

int EventBase::setPriorityCount(int priorities) {
  assertInLoopThread();
  // Not while running: the loop holds a reference to the queue it is processing.
  if (running_ || activeCount_ > 0 || priorities < 1 || priorities > kMaxPriorities) return -1;
  activeQueues_ = std::vector<Event::ActiveList>(static_cast<size_t>(priorities));
  return 0;
}

std::vector<EventInfo> EventBase::dumpEvents() const {
  std::vector<EventInfo> rows;
  rows.reserve(allEvents_.size());
  for (const Event* ev = allEvents_.front(); ev != nullptr; ev = Event::AllList::next(ev)) {
    EventInfo row{ev->fd_,
                  ev->events_,
                  ev->state(),
                  ev->isActive() ? ev->res_ : EventMask{0},
                  ev->priority_,
                  std::nullopt,
                  (ev->flags_ & Event::kListInternal) != 0,
                  ev->label()};
    if (ev->flags_ & Event::kListTimeout) row.deadline = ev->deadline_;
    rows.push_back(std::move(row));
  }
  return rows;
}

EventCounts EventBase::eventCounts() const {
  EventCounts counts;
  for (const Event* ev = allEvents_.front(); ev != nullptr; ev = Event::AllList::next(ev)) {
    if (ev->flags_ & Event::kListInternal) continue;
    switch (ev->state()) {
      case EventState::kInitialized:
        ++counts.initialized;
        break;
      case EventState::kPending:
        ++counts.pending;
        break;
      case EventState::kActive:
        ++counts.active;
        break;
    }
    if (ev->flags_ & Event::kListTimeout) ++counts.timers;
  }
  return counts;
}

}  // namespace evgate::reactor
