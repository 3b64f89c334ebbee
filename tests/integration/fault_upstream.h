#pragma once

// Upstreams that misbehave on purpose, for tests of what a gateway does about it. Each listens on
// 127.0.0.1 with a port of the kernel's choosing.
//
// FaultyUpstream: one thread per connection; every connection checks what it reads as a payload
// stream (payload.h) and then, by its Fault:
//   kNone         echoes until the peer's EOF, then sends its own FIN;
//   kReset        echoes, and after `bytes` read resets the connection (SO_LINGER 0: an RST);
//   kHang         accepts, then neither reads nor writes until stopped;
//   kSlowReader   echoes, reading at most 4 KiB per `pause`;
//   kHalfClose    echoes the first `bytes`, then sends its FIN and goes on reading (and checking)
//                 to the peer's EOF.
// What each connection read is kept (connections()), so a test can check that every byte that
// reached the upstream arrived once and in order.
//
// KillableUpstream: an echo server in a forked child process, for a test to SIGKILL mid-stream.
//
// Thread rule: construct, query and destroy from one thread; the connections run on their own.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/net_util.h"
#include "tests/integration/payload.h"

namespace evgate::test {

enum class Fault { kNone, kReset, kHang, kSlowReader, kHalfClose };

class FaultyUpstream {
 public:
  // What one accepted connection read.
  struct Connection {
    uint64_t seed = 0;
    uint64_t matched = 0;  // bytes read that matched the stream, header included
    std::string error;     // the first mismatch, if any
    bool sawEof = false;   // read to the peer's EOF
  };

  explicit FaultyUpstream(Fault fault, uint64_t bytes = 0,
                          std::chrono::milliseconds pause = std::chrono::milliseconds(2))
      : fault_(fault), bytes_(bytes), pause_(pause), fd_(listenOnLoopback()) {
    if (fd_ < 0) return;
    port_ = localPort(fd_);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~FaultyUpstream() {
    if (fd_ < 0) return;
    stopping_.store(true);
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    acceptor_.join();
    ::close(fd_);
    {
      std::lock_guard lock(mutex_);
      for (const Slot& slot : slots_) {
        if (slot.fd >= 0) ::shutdown(slot.fd, SHUT_RDWR);
      }
    }
    for (std::thread& thread : threads_) thread.join();
    for (const Slot& slot : slots_) {
      if (slot.fd >= 0) ::close(slot.fd);
    }
  }
  FaultyUpstream(const FaultyUpstream&) = delete;
  FaultyUpstream& operator=(const FaultyUpstream&) = delete;

  bool ok() const { return port_ != 0; }
  std::string address() const { return test::address(port_); }

  // A snapshot of every connection accepted so far, in accept order.
  std::vector<Connection> connections() const {
    std::lock_guard lock(mutex_);
    std::vector<Connection> copy;
    for (const Slot& slot : slots_) copy.push_back(slot.seen);
    return copy;
  }

 private:
  // A connection's fd (-1 once this side closed it) and what it read; guarded by mutex_.
  struct Slot {
    int fd = -1;
    Connection seen;
  };

  void acceptLoop() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::lock_guard lock(mutex_);
      slots_.push_back(Slot{fd, {}});
      const size_t index = slots_.size() - 1;
      threads_.emplace_back([this, fd, index] { serve(fd, index); });
    }
  }

  void serve(int fd, size_t index) {
    if (fault_ == Fault::kHang) return;  // the fd stays open, unread, until the destructor
    PayloadChecker checker;
    std::string buf(65536, '\0');
    uint64_t echoed = 0;
    bool writing = true;
    for (;;) {
      size_t want = buf.size();
      if (fault_ == Fault::kSlowReader) want = 4096;
      if (fault_ == Fault::kReset) want = std::min<uint64_t>(want, bytes_ - checker.matched());
      const ssize_t n = ::recv(fd, buf.data(), want, 0);
      if (n <= 0) {
        record(index, checker, n == 0);
        if (n == 0 && writing) ::shutdown(fd, SHUT_WR);
        return;
      }
      checker.feed(buf.data(), static_cast<size_t>(n));
      size_t echo = writing ? static_cast<size_t>(n) : 0;
      if (fault_ == Fault::kHalfClose) echo = std::min<uint64_t>(echo, bytes_ - echoed);
      if (!sendAll(fd, buf.data(), echo)) {
        record(index, checker, false);
        return;
      }
      echoed += echo;
      if (fault_ == Fault::kHalfClose && writing && echoed == bytes_) {
        ::shutdown(fd, SHUT_WR);
        writing = false;
      }
      if (fault_ == Fault::kReset && checker.matched() >= bytes_) {
        record(index, checker, false);
        resetConnection(index);
        return;
      }
      if (fault_ == Fault::kSlowReader) std::this_thread::sleep_for(pause_);  // the fault itself
      if (stopping_.load()) return;
    }
  }

  static bool sendAll(int fd, const char* data, size_t size) {
    for (size_t sent = 0; sent < size;) {
      const ssize_t m = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (m <= 0) return false;
      sent += static_cast<size_t>(m);
    }
    return true;
  }

  void record(size_t index, const PayloadChecker& checker, bool sawEof) {
    std::lock_guard lock(mutex_);
    Connection& seen = slots_[index].seen;
    seen.seed = checker.seed();
    seen.matched = checker.matched();
    seen.error = checker.error();
    seen.sawEof = sawEof;
  }

  // Closed here, under the lock, so that the destructor never shuts down a reused fd number.
  void resetConnection(size_t index) {
    std::lock_guard lock(mutex_);
    int& fd = slots_[index].fd;
    const linger abort{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    ::close(fd);
    fd = -1;
  }

  const Fault fault_;
  const uint64_t bytes_;
  const std::chrono::milliseconds pause_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
  std::vector<std::thread> threads_;
};

// An echo server in a child process: kill() is a SIGKILL, and the kernel closes its connections
// as it would a crashed backend's (an RST where unread bytes wait, else a FIN).
class KillableUpstream {
 public:
  static constexpr int kMaxConnections = 64;

  KillableUpstream() {
    const int fd = listenOnLoopback();
    if (fd < 0) return;
    port_ = localPort(fd);
    pid_ = ::fork();
    if (pid_ == 0) echoForever(fd);  // never returns
    ::close(fd);
  }
  ~KillableUpstream() { kill(); }
  KillableUpstream(const KillableUpstream&) = delete;
  KillableUpstream& operator=(const KillableUpstream&) = delete;

  bool ok() const { return port_ != 0 && pid_ > 0; }
  std::string address() const { return test::address(port_); }

  // SIGKILL, then reaps the child.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  // The child: after fork() in a threaded process only async-signal-safe calls are allowed, so
  // no allocation: poll() over a fixed array, a buffer on the stack, blocking echo writes.
  [[noreturn]] static void echoForever(int listenFd) {
    ::alarm(300);  // an orphan never outlives its test run by much
    pollfd fds[kMaxConnections + 1];
    int count = 1;
    fds[0] = pollfd{listenFd, POLLIN, 0};
    char buf[65536];
    for (;;) {
      if (::poll(fds, static_cast<nfds_t>(count), -1) < 0) continue;
      if ((fds[0].revents & POLLIN) != 0 && count <= kMaxConnections) {
        const int conn = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn >= 0) fds[count++] = pollfd{conn, POLLIN, 0};
      }
      for (int i = 1; i < count; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
        bool done = n <= 0;
        for (ssize_t sent = 0; !done && sent < n;) {
          const ssize_t m =
              ::send(fds[i].fd, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
          done = m <= 0;
          sent += m;
        }
        if (done) {
          ::close(fds[i].fd);
          fds[i--] = fds[--count];
        }
      }
    }
  }

  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace evgate::test
