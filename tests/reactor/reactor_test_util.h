#pragma once

// Shared helpers for reactor tests: backend parameterisation, fds that close themselves, and a
// loop runner that waits for a condition with a deadline instead of sleeping.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::reactor::testing {

// Every test suite that takes an EventBase runs on each backend.
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  EventBaseOptions options(Clock* clock = nullptr) const {
    EventBaseOptions opts;
    opts.backend = GetParam();
    opts.clock = clock;
    return opts;
  }
};

inline std::string backendParamName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kPoll ? "poll" : "epoll";
}

#define EVGATE_INSTANTIATE_BACKENDS(Suite)                                                      \
  INSTANTIATE_TEST_SUITE_P(                                                                     \
      Backends, Suite,                                                                          \
      ::testing::Values(::evgate::reactor::Backend::kEpoll, ::evgate::reactor::Backend::kPoll), \
      ::evgate::reactor::testing::backendParamName)

// An fd that closes itself.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A connected, non-blocking AF_UNIX stream pair.
struct SocketPair {
  UniqueFd a;
  UniqueFd b;
};

inline SocketPair makeSocketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    ADD_FAILURE() << "socketpair failed";
    return {};
  }
  return SocketPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Runs the loop until `done()` holds or `limit` of real time passes; returns done(). A short
// persistent timer bounds each blocking wait so the condition is re-checked even when nothing
// else happens.
inline bool loopUntil(EventBase& base, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  Event tick(
      base, -1, kPersist, [](int, EventMask, void*) {}, nullptr);
  tick.setLabel("test: loopUntil tick");
  tick.add(std::chrono::milliseconds(5));
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    base.loop(kLoopOnce);
  }
  return done();
}

}  // namespace evgate::reactor::testing
