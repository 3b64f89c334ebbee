// The poll(2) backend: a fallback, and the second backend every reactor test runs on.

#include <poll.h>

#include <cerrno>

#include "reactor/poller.h"

namespace evgate::reactor {
namespace {

class PollPoller final : public Poller {
 public:
  std::string_view name() const override { return "poll"; }

  int update(int fd, EventMask before, EventMask after) override {
    (void)before;
    if (fd < 0) {
      errno = EBADF;
      return -1;
    }
    if (static_cast<size_t>(fd) >= indexOf_.size()) indexOf_.resize(fd + 1, -1);
    int& index = indexOf_[fd];
    if (after == 0) {
      if (index < 0) return 0;
      // Swap-remove keeps the pollfd array dense.
      const size_t last = pollFds_.size() - 1;
      if (static_cast<size_t>(index) != last) {
        pollFds_[index] = pollFds_[last];
        indexOf_[pollFds_[index].fd] = index;
      }
      pollFds_.pop_back();
      index = -1;
      return 0;
    }
    // poll has no edge-triggered mode: kEdgeTriggered events behave as level-triggered here. Nor
    // exclusive wake-ups: with kExclusive, every base that polls the fd wakes.
    short events = 0;
    if (after & kRead) events |= POLLIN;
    if (after & kWrite) events |= POLLOUT;
    if (after & kClosed) events |= POLLRDHUP;
    if (index < 0) {
      index = static_cast<int>(pollFds_.size());
      pollFds_.push_back(pollfd{fd, events, 0});
    } else {
      pollFds_[index].events = events;
    }
    return 0;
  }

  int wait(std::optional<Duration> timeout, std::vector<ReadyFd>& ready) override {
    timespec ts{};
    if (timeout) {
      ts.tv_sec = static_cast<time_t>(timeout->count() / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout->count() % 1'000'000'000);
    }
    const int n = ppoll(pollFds_.data(), pollFds_.size(), timeout ? &ts : nullptr, nullptr);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (const pollfd& p : pollFds_) {
      if (p.revents == 0) continue;
      EventMask what = 0;
      // POLLNVAL: the fd was closed while registered. Unlike epoll, poll keeps reporting it, so
      // its events fire on every pass until they are deleted, which is how the owner notices.
      if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) what |= kRead | kWrite;
      if (p.revents & (POLLIN | POLLPRI)) what |= kRead;
      if (p.revents & POLLOUT) what |= kWrite;
      if (p.revents & POLLRDHUP) what |= kClosed;
      ready.push_back(ReadyFd{p.fd, what});
    }
    return 0;
  }

 private:
  std::vector<pollfd> pollFds_;
  std::vector<int> indexOf_;  // fd -> index in pollFds_, or -1
};

}  // namespace

std::unique_ptr<Poller> makePollPoller() { return std::make_unique<PollPoller>(); }

}  // namespace evgate::reactor
