// The epoll backend: the default on Linux.

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>

#include "reactor/fatal.h"
#include "reactor/poller.h"

namespace evgate::reactor {
namespace {

constexpr size_t kInitialEvents = 64;
constexpr size_t kMaxEvents = 4096;

uint32_t toEpoll(EventMask mask) {
  uint32_t events = 0;
  if (mask & kRead) events |= EPOLLIN;
  if (mask & kWrite) events |= EPOLLOUT;
  if (mask & kClosed) events |= EPOLLRDHUP;
  if (mask & kEdgeTriggered) events |= EPOLLET;
  if (mask & kExclusive) events |= EPOLLEXCLUSIVE;
  return events;
}

EventMask fromEpoll(uint32_t events) {
  EventMask what = 0;
  // An error or hang-up wakes readers and writers alike, as in libevent: the callback's read()
  // or write() then sees the error.
  if (events & (EPOLLHUP | EPOLLERR)) what |= kRead | kWrite;
  if (events & (EPOLLIN | EPOLLPRI)) what |= kRead;
  if (events & EPOLLOUT) what |= kWrite;
  if (events & EPOLLRDHUP) what |= kClosed;
  return what;
}

class EpollPoller final : public Poller {
 public:
  EpollPoller() : epollFd_(epoll_create1(EPOLL_CLOEXEC)), events_(kInitialEvents) {
    if (epollFd_ < 0) fatalSyscall("epoll_create1");
  }
  EpollPoller(const EpollPoller&) = delete;
  EpollPoller& operator=(const EpollPoller&) = delete;
  ~EpollPoller() override { ::close(epollFd_); }

  std::string_view name() const override { return "epoll"; }
  bool forgetsClosedFds() const override { return true; }

  int update(int fd, EventMask before, EventMask after) override {
    epoll_event ev{};
    ev.events = toEpoll(after);
    ev.data.fd = fd;
    if (before == 0) {
      if (epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
      // Still registered: the fd was closed and a dup kept the old registration alive.
      if (errno == EEXIST) return modify(fd, ev);
      return -1;
    }
    if (after == 0) {
      if (epoll_ctl(epollFd_, EPOLL_CTL_DEL, fd, &ev) == 0) return 0;
      // Closing an fd removes it from epoll, so a del after close finds nothing; that is fine.
      if (errno == ENOENT || errno == EBADF || errno == EPERM) return 0;
      return -1;
    }
    if ((before | after) & kExclusive) return modify(fd, ev);
    if (epoll_ctl(epollFd_, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    // The fd was closed and reopened under the same number: the kernel forgot the old one.
    if (errno == ENOENT) return epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev);
    return -1;
  }

  int wait(std::optional<Duration> timeout, std::vector<ReadyFd>& ready) override {
    const int n = waitForEvents(timeout);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; ++i) {
      ready.push_back(ReadyFd{events_[i].data.fd, fromEpoll(events_[i].events)});
    }
    // A full batch hints at more ready fds than we asked for: take more next time.
    if (static_cast<size_t>(n) == events_.size() && events_.size() < kMaxEvents) {
      events_.resize(events_.size() * 2);
    }
    return 0;
  }

 private:
  int waitForEvents(std::optional<Duration> timeout) {
    const int maxEvents = static_cast<int>(events_.size());
    if (!timeout) return epoll_wait(epollFd_, events_.data(), maxEvents, -1);
    // epoll_pwait2 takes nanoseconds; epoll_wait would round timers to whole milliseconds.
    if (havePwait2_) {
      timespec ts{};
      ts.tv_sec = static_cast<time_t>(timeout->count() / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout->count() % 1'000'000'000);
      const int n = epoll_pwait2(epollFd_, events_.data(), maxEvents, &ts, nullptr);
      // ENOSYS: a kernel before 5.11. EPERM: a container's seccomp profile that predates the
      // call. Either way, fall back for good.
      if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
      havePwait2_ = false;
    }
    // Round up so that a timer is never woken for before its deadline; clamp first, as "no
    // deadline" may be a huge duration.
    constexpr int64_t kMaxWaitNs = int64_t{INT_MAX} * 1'000'000;
    const auto ms = (std::min<int64_t>(timeout->count(), kMaxWaitNs) + 999'999) / 1'000'000;
    return epoll_wait(epollFd_, events_.data(), maxEvents,
                      static_cast<int>(ms > INT_MAX ? INT_MAX : ms));
  }

  // Replaces the registration of `fd` by `ev`. The kernel refuses EPOLL_CTL_MOD on an
  // exclusive registration (EINVAL, epoll_ctl(2)), so the fd is removed and added again; a
  // readiness that arrives in between is not lost (the fd is level-triggered or, edge-triggered,
  // reported on ADD if ready).
  int modify(int fd, epoll_event& ev) {
    if (!(ev.events & EPOLLEXCLUSIVE) && epoll_ctl(epollFd_, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    (void)epoll_ctl(epollFd_, EPOLL_CTL_DEL, fd, &ev);
    return epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev);
  }

  int epollFd_;
  std::vector<epoll_event> events_;
  bool havePwait2_ = true;
};

}  // namespace

std::unique_ptr<Poller> makeEpollPoller() { return std::make_unique<EpollPoller>(); }

}  // namespace evgate::reactor
