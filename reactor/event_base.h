#pragma once

#include <signal.h>

#include <atomic>
#include <cassert>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "reactor/clock.h"
#include "reactor/event.h"
#include "reactor/poller.h"
#include "reactor/post_queue.h"
#include "reactor/timer_heap.h"

namespace evgate::reactor {

// Flags for EventBase::loop(), libevent's EVLOOP_* values.
inline constexpr int kLoopOnce = 0x01;           // block for active events, run them, return
inline constexpr int kLoopNonBlock = 0x02;       // run what is ready now, never block
inline constexpr int kLoopNoExitOnEmpty = 0x04;  // keep running with no events registered

struct EventBaseOptions {
  Backend backend = Backend::kDefault;
  // Null: the monotonic clock. Otherwise not owned; must outlive the base.
  Clock* clock = nullptr;
  // Number of priority levels for active events (libevent's event_base_priority_init).
  int priorities = 1;
};

// One row of EventBase::dumpEvents().
struct EventInfo {
  int fd;
  EventMask events;  // what it waits for
  EventState state;
  EventMask firing;  // while active: the bits that fired
  int priority;
  std::optional<TimePoint> deadline;
  bool internal;  // the base's own (wake-up, signals)
  std::string label;
};

// How many events a base has in each lifecycle state (EventBase::eventCounts()).
struct EventCounts {
  size_t initialized = 0;  // set up (constructed or deleted) but not pending
  size_t pending = 0;
  size_t active = 0;
  size_t timers = 0;  // events with a pending timeout
};

// Told about every loop iteration (the metrics' loop lag). Called on the loop thread at the end of
// each iteration with the time its poll returned and the time its callbacks, posted functions
// and deferred deletions were done: the longest an event that became ready in that poll waited.
class LoopObserver {
 public:
  virtual ~LoopObserver() = default;
  virtual void onIteration(TimePoint polled, TimePoint finished) = 0;
};

// An object that must die on a later loop turn because one of its callbacks may still be on the
// stack (Envoy's DeferredDeletable).
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

// The event loop: libevent's event_base. It owns a poller, a timer min-heap on its clock, a
// signalfd for signal events, and the active queues; it runs callbacks by priority.
//
// Thread rule: one loop thread. Every method is loop-thread-only except runInLoop() and
// isInLoopThread(), which are safe from any thread. The loop thread is the thread that created
// the base until a thread calls loop()/dispatch(); from then on it is that thread.
// Signal events: the signal is blocked in the loop thread and read from a signalfd. Block it in
// every other thread of the process too (e.g. before starting them), or the kernel may deliver
// it to one of them instead.
class EventBase {
 public:
  EventBase();
  explicit EventBase(const EventBaseOptions& options);
  // Events still alive are detached (their operations fail from then on); deferred deletions
  // and queued functions that never ran are destroyed.
  ~EventBase();

  EventBase(const EventBase&) = delete;
  EventBase& operator=(const EventBase&) = delete;

  // Runs until no events are registered (returns 1), or loopBreak()/loopExit() (returns 0).
  // Returns -1 if the poller fails, or if called while already running.
  int dispatch() { return loop(0); }
  // libevent's event_base_loop with kLoopOnce / kLoopNonBlock / kLoopNoExitOnEmpty.
  int loop(int flags);

  // Stops the loop after the callback now running; active events not yet run stay active.
  void loopBreak();
  // Stops the loop after `delay` (none: at the end of this iteration), once the active events
  // of that iteration have run. The pending exit counts as an event (as in libevent).
  int loopExit(std::optional<Duration> delay = std::nullopt);
  bool gotBreak() const { return gotBreak_; }
  bool gotExit() const { return gotExit_; }

  // Queues `fn` to run on the loop thread at the end of a loop iteration; never runs it inline,
  // so callers may hold their own locks. Wakes a sleeping loop only when the queue was empty.
  // Queued functions keep dispatch() from returning for lack of events.
  // Safe from any thread.
  void runInLoop(std::function<void()> fn);
  // Safe from any thread.
  bool isInLoopThread() const {
    return loopThread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  // Aborts (debug builds) if called off the loop thread. Inline: free in release builds, where it
  // guards every add, del and activate.
  void assertInLoopThread() const {
    assert(isInLoopThread() && "EventBase used from a thread other than its loop thread");
  }

  // Destroys `object` at the end of this loop iteration, after every callback on the stack has
  // returned.
  void deferDelete(std::unique_ptr<DeferredDeletable> object);

  // Calls `cb` once, when `fd` is ready for `what` or `timeout` passes, then forgets it
  // (libevent's event_base_once). `what` without kRead/kWrite/kSignal: a pure timer.
  int once(int fd, EventMask what, std::function<void(int fd, EventMask what)> cb,
           std::optional<Duration> timeout);

  // Every event on this base, registered or not, with its state and owner label.
  std::vector<EventInfo> dumpEvents() const;
  // The user events (not the base's internal ones) by state; O(events).
  EventCounts eventCounts() const;
  // Functions posted with runInLoop() and not run yet. Safe from any thread.
  size_t queuedFunctions() const { return posted_.size(); }
  // Null: none (the default). Not owned; must outlive the loop's use of it. Costs one clock read
  // per iteration while set.
  void setLoopObserver(LoopObserver* observer) { observer_ = observer; }

  // The loop's cached time while callbacks run (libevent's event_base_gettimeofday_cached);
  // outside the loop, the clock's current time.
  TimePoint now() const;
  Clock& clock() const { return *clock_; }
  std::string_view backendName() const { return poller_->name(); }

  // libevent's event_base_priority_init; fails (-1) while events are active.
  int setPriorityCount(int priorities);
  int priorityCount() const { return static_cast<int>(activeQueues_.size()); }

  // Events that keep dispatch() running: user events that are pending or active.
  size_t eventCount() const { return userEventCount_; }
  bool running() const { return running_; }

 private:
  friend class Event;

  // Per-fd registration: the events on the fd and how many want each kind of readiness, so the
  // poller hears the union only when it changes (libevent's evmap_io).
  struct FdSlot {
    Event::MapList events;
    uint32_t readers = 0;
    uint32_t writers = 0;
    uint32_t closers = 0;
    uint32_t edge = 0;
    uint32_t exclusive = 0;
  };

  // Event bookkeeping, called by Event.
  int insertMapped(Event& ev);
  // `tellPoller` false: the fd is closed next, and a registration left with no interest goes
  // with it (Event::delBeforeClose).
  void removeMapped(Event& ev, bool tellPoller = true);
  void insertTimer(Event& ev, TimePoint deadline);
  void removeTimer(Event& ev);
  void rescheduleTimer(Event& ev, TimePoint deadline);
  void pushActive(Event& ev, EventMask res, int signalCalls);
  void removeActive(Event& ev);
  void setListFlag(Event& ev, uint8_t flag, bool on);
  void attach(Event& ev);
  void detach(Event& ev);

  // Loop steps.
  std::optional<Duration> pollTimeout(int flags);
  void activateReady();
  void processTimeouts();
  int processActive();
  int processQueue(Event::ActiveList& queue);
  void runEvent(Event& ev);
  void persistClosure(Event& ev);
  void runPendingFunctors();
  void runDeferredDeletes();
  bool haveWork() const;

  // Signals.
  int insertSignal(Event& ev);
  void removeSignal(Event& ev);
  void unblockSignal(int sig);
  static void onSignalFd(int fd, EventMask what, void* arg);
  static void onWakeup(int fd, EventMask what, void* arg);
  void wakeup();
  std::unique_ptr<Event> makeInternalEvent(int fd, EventCallback cb, const char* label);

  struct OnceEvent;

  std::unique_ptr<Poller> poller_;
  Clock* clock_;
  std::atomic<std::thread::id> loopThread_;

  std::vector<FdSlot> fds_;
  std::vector<ReadyFd> ready_;
  TimerHeap timers_;
  std::vector<Event::ActiveList> activeQueues_;
  Event::AllList allEvents_;
  size_t userEventCount_ = 0;
  size_t activeCount_ = 0;
  int runningPriority_ = -1;
  bool continueFromHigherPriority_ = false;

  std::optional<TimePoint> cachedNow_;
  bool running_ = false;
  bool gotBreak_ = false;
  bool gotExit_ = false;

  // Signals: one signalfd for every signal with an event; the events of each signal.
  int signalFd_ = -1;
  sigset_t signalMask_{};
  sigset_t blockedByUs_{};
  pthread_t signalBlocker_{};  // the thread whose mask blocked our signals
  std::vector<Event::MapList> signalEvents_;
  std::unique_ptr<Event> signalEvent_;

  // runInLoop: a lock-free queue and an eventfd to wake the loop.
  int wakeFd_;
  std::unique_ptr<Event> wakeEvent_;
  PostQueue posted_;

  std::vector<std::unique_ptr<DeferredDeletable>> deferred_;
  std::list<std::unique_ptr<OnceEvent>> onceEvents_;
  LoopObserver* observer_ = nullptr;
};

}  // namespace evgate::reactor
