#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "reactor/clock.h"
#include "reactor/intrusive_list.h"

namespace evgate::reactor {

class EventBase;

// What an event waits for, and what fired. The values are libevent's EV_* bits, so a libevent
// user reads them the same way.
using EventMask = short;
inline constexpr EventMask kTimeout = 0x01;        // EV_TIMEOUT: the timeout passed
inline constexpr EventMask kRead = 0x02;           // EV_READ: the fd is readable
inline constexpr EventMask kWrite = 0x04;          // EV_WRITE: the fd is writable
inline constexpr EventMask kSignal = 0x08;         // EV_SIGNAL: fd is a signal number
inline constexpr EventMask kPersist = 0x10;        // EV_PERSIST: stays pending after its callback
inline constexpr EventMask kEdgeTriggered = 0x20;  // EV_ET: edge-triggered (epoll backend)
inline constexpr EventMask kClosed = 0x80;         // EV_CLOSED: the peer closed (EPOLLRDHUP)
// Our extension, no libevent equivalent (libevent has no 0x100 bit, so a libevent user's masks
// mean what they meant): for an fd that several bases wait on at once (one listening socket
// shared by every worker), a readiness wakes one of the loops rather than all of them
// (EPOLLEXCLUSIVE, Linux 4.5). The poll backend accepts it and wakes every loop, as without it.
// Rules, checked by add() on every backend (-1 with EINVAL otherwise, nothing changed):
//   - for fd events with kRead and/or kWrite only: not with kClosed (epoll refuses
//     EPOLLRDHUP with EPOLLEXCLUSIVE); ignored by a pure timer and by signal events;
//   - as with kEdgeTriggered, one base's events on an fd are either all exclusive or none.
// It never appears in what a callback is given. The epoll backend re-registers the fd (DEL then
// ADD) where it would modify it, because epoll_ctl refuses EPOLL_CTL_MOD on an exclusive
// registration (EINVAL, epoll_ctl(2)).
inline constexpr EventMask kExclusive = 0x100;

// The callback of an event: the fd (or signal number), the bits that fired, and the argument
// given when the event was set up.
using EventCallback = void (*)(int fd, EventMask what, void* arg);

// The seed's lifecycle, coarsely: an event is *initialized* (non-pending) until add(), *pending*
// while registered, and *active* once its condition is met and until its callback runs.
enum class EventState : uint8_t { kInitialized, kPending, kActive };
const char* toString(EventState state);

// One event: an fd (or signal number, or nothing for a pure timer), what to wait for, and a
// callback. It follows libevent's lifecycle exactly:
//
//   constructed            -> initialized (non-pending)
//   add(timeout?)          -> pending        (add again: stays pending, a given timeout re-arms)
//   fd ready / timeout     -> active         (queued on the base's active list)
//   callback runs          -> non-pending    unless kPersist: then pending again
//   del()                  -> non-pending    (if active and not yet run, the callback never runs)
//
// Thread rule: loop thread only (the thread running the base's loop, or the thread that owns
// a base that is not running). Ownership: the caller owns the Event; it must not outlive its
// base (if it does, every operation on it fails). Destroying an event dels it, so an Event may
// be deleted from inside any callback, its own included.
class Event {
 public:
  // A pure timer: no fd, only a timeout (libevent's evtimer_new).
  Event(EventBase& base, EventCallback cb, void* arg) : Event(base, -1, 0, cb, arg) {}
  Event(EventBase& base, int fd, EventMask what, EventCallback cb, void* arg);
  ~Event();

  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Changes fd, what, callback and argument of a non-pending, non-active event
  // (libevent's event_assign). Returns -1 if the event is pending or active.
  int assign(int fd, EventMask what, EventCallback cb, void* arg);

  // Makes the event pending with no timeout; a timeout already armed stays armed, as in
  // libevent's event_add(ev, NULL). Returns 0, or -1 (with errno) if the poller refused the fd.
  int add();
  // Makes the event pending; `timeout` (re-)arms its timeout, measured from the loop's cached
  // time. For a persistent event the timeout is re-armed each time the event fires.
  int add(Duration timeout);
  // Makes the event non-pending and non-active. Does nothing on a non-pending event.
  int del();
  // del() for an fd the caller is about to close (ours, no libevent equivalent): when this was
  // the fd's last event, the poller is not told, because closing the fd takes it out of epoll
  // anyway; one epoll_ctl saved per socket. Only if no other descriptor (a dup, a child's copy)
  // refers to the same open socket, which would keep the registration alive.
  int delBeforeClose();
  // Disarms the timeout but leaves the fd or signal registered (libevent's
  // event_remove_timer); a persistent event also forgets its re-arm interval.
  int removeTimer();
  // Makes the event active with `res` as if its condition had been met, pending or not
  // (libevent's event_active). An already active event accumulates the bits.
  void activate(EventMask res);

  // libevent's event_pending: true if the event is pending or active for any of `what`
  // (kRead | kWrite | kSignal | kTimeout). If it has a timeout and `deadline` is not null,
  // stores the deadline there.
  bool pending(EventMask what = kRead | kWrite | kSignal | kTimeout | kClosed,
               TimePoint* deadline = nullptr) const;
  EventState state() const;
  bool isActive() const { return (flags_ & kListActive) != 0; }

  // Lower numbers run first. The default is the middle of the base's range. Fails (-1) while
  // the event is active or if out of range.
  int setPriority(int priority);
  int priority() const { return priority_; }

  // An owner label shown in EventBase::dumpEvents() (e.g. "listener web").
  void setLabel(std::string label);
  // A label computed only when dumpEvents() asks for it, as labeller(*this, owner): an owner
  // with many events (a relayed flow has three) then keeps no string per event in memory.
  using Labeller = std::string (*)(const Event& ev, const void* owner);
  void setLabel(Labeller labeller, const void* owner);
  std::string label() const;

  int fd() const { return fd_; }
  EventMask events() const { return events_; }
  EventCallback callback() const { return callback_; }
  void* arg() const { return arg_; }
  // Null once the base is gone.
  EventBase* base() const { return base_; }

 private:
  friend class EventBase;
  friend class TimerHeap;

  // Which of the base's structures hold the event (libevent's EVLIST_* flags).
  enum ListFlags : uint8_t {
    kListInserted = 0x01,  // in the fd map or the signal map
    kListTimeout = 0x02,   // in the timer heap
    kListActive = 0x04,    // in an active queue
    kListInternal = 0x08,  // the base's own; does not keep the loop running
  };
  static constexpr size_t kNotInHeap = static_cast<size_t>(-1);

  int addAt(std::optional<TimePoint> deadline, std::optional<Duration> relative);
  int remove(bool tellPoller);
  void stopSignalDeliveries();

  // Packed: a gateway keeps three events per relayed flow (136 bytes each).
  EventBase* base_;
  int fd_;
  EventMask events_;
  EventMask res_ = 0;
  uint8_t flags_ = 0;
  int16_t priority_;  // below the base's priorityCount(), at most 256 as in libevent
  // Signal deliveries still to report (see runningSignalCalls_ below).
  int signalCalls_ = 0;
  EventCallback callback_;
  void* arg_;

  // Timer state: the deadline (kept after it fires, for the persist closure), the index in the
  // base's TimerHeap while armed, and for persistent events the interval to re-arm.
  TimePoint deadline_{};
  size_t heapIndex_ = kNotInHeap;
  Duration persistInterval_{0};

  // Points at the dispatcher's count of signal deliveries while calling back, so that del()
  // from inside the callback stops the remaining calls.
  int* runningSignalCalls_ = nullptr;

  // setLabel(std::string) keeps its own copy, labelled by ownedLabel().
  static std::string ownedLabel(const Event& ev, const void* text);
  void clearLabel();
  Labeller labeller_ = nullptr;
  const void* labelOwner_ = nullptr;

  ListLinks<Event> activeLinks_;  // the active queue of its priority
  ListLinks<Event> mapLinks_;     // the event list of its fd or signal
  ListLinks<Event> allLinks_;     // every event of the base, for dumpEvents()

  using ActiveList = IntrusiveList<Event, &Event::activeLinks_>;
  using MapList = IntrusiveList<Event, &Event::mapLinks_>;
  using AllList = IntrusiveList<Event, &Event::allLinks_>;
};

}  // namespace evgate::reactor
