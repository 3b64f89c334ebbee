#pragma once

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "reactor/clock.h"
#include "reactor/event.h"

namespace evgate::reactor {

// Which readiness mechanism an EventBase uses.
enum class Backend {
  kDefault,  // EVGATE_REACTOR_BACKEND=epoll|poll if set, else epoll
  kEpoll,
  kPoll,
};

// One ready fd reported by a poller: kRead, kWrite and/or kClosed.
struct ReadyFd {
  int fd;
  EventMask what;
};

// The readiness backend of an EventBase: the one seam between the reactor and the kernel's
// multiplexer. The base keeps one interest mask per fd (the union of its events) and tells the
// poller only about changes.
//
// Thread rule: loop thread only.
class Poller {
 public:
  virtual ~Poller() = default;

  virtual std::string_view name() const = 0;

  // Changes the interest in `fd` from `before` to `after`, each a mix of kRead, kWrite,
  // kClosed, kEdgeTriggered and kExclusive (never with kClosed: EventBase refuses that mix);
  // `before` 0 means new, `after` 0 means remove. Returns 0, or -1 with errno if the kernel refuses
  // the fd (e.g. EPERM for a regular file under epoll).
  virtual int update(int fd, EventMask before, EventMask after) = 0;

  // Waits until an fd is ready, a signal interrupts, or `timeout` passes (nullopt: forever), and
  // appends the ready fds to `ready`. Returns 0, or -1 with errno on a failure other than EINTR.
  virtual int wait(std::optional<Duration> timeout, std::vector<ReadyFd>& ready) = 0;

  // Whether closing an fd removes it from the poller by itself, so that removing it first can
  // be skipped (epoll: yes; poll keeps its own list and would report POLLNVAL).
  virtual bool forgetsClosedFds() const { return false; }

  // Creates the backend asked for; kDefault reads EVGATE_REACTOR_BACKEND.
  static std::unique_ptr<Poller> create(Backend backend);
};

std::unique_ptr<Poller> makeEpollPoller();
std::unique_ptr<Poller> makePollPoller();

}  // namespace evgate::reactor
