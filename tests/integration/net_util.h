#pragma once

// Loopback helpers for tests that drive real daemons and in-process gateways: blocking client
// sockets with deadlines, a threaded echo backend, and eventually() for a condition that another
// thread makes true. Every wait has a deadline.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace evgate::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Sockets.

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A blocking connect to 127.0.0.1:port: the fd, or -1 with errno set.
inline int connectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

inline uint16_t localPort(int fd) {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return 0;
  return ntohs(addr.sin_port);
}

// A port on 127.0.0.1 that refuses connections: bound to get a free one, then closed.
inline uint16_t refusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in addr = loopback(0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return 0;
  const uint16_t port = localPort(fd);
  ::close(fd);
  return port;
}

inline std::string address(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// The port of "host:port".
inline uint16_t portOf(const std::string& hostPort) {
  return static_cast<uint16_t>(std::stoi(hostPort.substr(hostPort.rfind(':') + 1)));
}

inline int millisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Polls `condition` every millisecond until it holds or `limit` passes: the way a test waits for
// something that happens on another thread without sleeping for a guessed time.
inline bool eventually(const std::function<bool()>& condition, Clock::duration limit = 10s) {
  const Clock::time_point deadline = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// What a client saw: the bytes it read and how reading ended ("complete", "eof", "reset",
// "timeout" or an error).
struct Exchange {
  std::string received;
  std::string end;
};

// Sends `data` on `fd` while reading what comes back. With `toEof`, shuts the write half once
// everything is sent and reads until the peer closes; otherwise stops once data.size() bytes are
// back ("complete").
inline Exchange exchange(int fd, std::string_view data, Clock::time_point deadline, bool toEof) {
  Exchange result;
  size_t written = 0;
  bool shut = false;
  std::string buf(65536, '\0');
  for (;;) {
    if (!toEof && result.received.size() >= data.size()) {
      result.end = "complete";
      return result;
    }
    if (toEof && written == data.size() && !shut) {
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
    if (Clock::now() >= deadline) {
      result.end = "timeout";
      return result;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (written < data.size() ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, millisLeft(deadline));
    if (ready < 0 && errno != EINTR) {
      result.end = std::string("poll: ") + std::strerror(errno);
      return result;
    }
    if (ready <= 0) continue;
    if ((p.revents & POLLOUT) != 0 && written < data.size()) {
      const ssize_t n =
          ::send(fd, data.data() + written, std::min<size_t>(65536, data.size() - written),
                 MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        result.end = std::string("send: ") + std::strerror(errno);
        return result;
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n > 0) {
        result.received.append(buf.data(), static_cast<size_t>(n));
      } else if (n == 0) {
        result.end = "eof";
        return result;
      } else if (errno == ECONNRESET) {
        result.end = "reset";
        return result;
      } else if (errno != EAGAIN && errno != EINTR) {
        result.end = std::string("recv: ") + std::strerror(errno);
        return result;
      }
    }
  }
}

// Sends `data` and reads the same number of bytes back; true if they are equal.
inline bool echoes(int fd, std::string_view data, Clock::duration limit = 5s) {
  const Exchange result = exchange(fd, data, Clock::now() + limit, /*toEof=*/false);
  return result.end == "complete" && result.received == data;
}

// Waits for the peer to close `fd` (bytes that arrive are discarded): "eof", "reset" or
// "timeout".
inline std::string waitClosed(int fd, Clock::time_point deadline) {
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, millisLeft(deadline));
    if (ready == 0) return "timeout";
    if (ready < 0) {
      if (errno == EINTR) continue;
      return std::string("poll: ") + std::strerror(errno);
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return "eof";
    if (n < 0 && errno == ECONNRESET) return "reset";
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return std::string("recv: ") + std::strerror(errno);
    }
  }
}

inline bool closedByPeer(const std::string& outcome) {
  return outcome == "eof" || outcome == "reset";
}

// An fd closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

inline std::string randomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// A listening TCP socket on 127.0.0.1 with a port of the kernel's choosing, or -1. With
// `receiveBuffer` > 0, SO_RCVBUF is set first (the accepted sockets inherit it).
inline int listenOnLoopback(int receiveBuffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in addr = loopback(0);
  if (fd < 0 ||
      (receiveBuffer > 0 &&
       ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, sizeof receiveBuffer) != 0) ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Writes to `fd` (never blocking) until it takes nothing for `idle` (the path is held back by
// backpressure) or `deadline` passes. The bytes written, or nullopt if it never stalled or the
// socket failed.
inline std::optional<size_t> writeUntilStalled(int fd, std::chrono::milliseconds idle,
                                               Clock::time_point deadline) {
  const std::string chunk(65536, 'x');
  size_t written = 0;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, std::min(static_cast<int>(idle.count()), millisLeft(deadline)));
    if (ready == 0) return Clock::now() < deadline ? std::optional<size_t>(written) : std::nullopt;
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0 || (p.revents & (POLLERR | POLLHUP)) != 0) return std::nullopt;
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) written += static_cast<size_t>(n);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return std::nullopt;
  }
  return std::nullopt;
}

// A backend: a threaded echo server on 127.0.0.1:0. Each connection echoes until the peer's EOF,
// then sends its own FIN and closes. stop() (or the destructor) ends everything. A connection's
// fd and thread go as soon as it ends, so a long test may open any number of connections.

class EchoServer {
 public:
  EchoServer() : fd_(listenOnLoopback()) {
    if (fd_ < 0) return;
    port_ = localPort(fd_);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~EchoServer() { stop(); }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  bool ok() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  std::string address() const { return test::address(port_); }
  int accepted() const { return accepted_.load(); }

  void stop() {
    if (fd_ < 0) return;
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    if (acceptor_.joinable()) acceptor_.join();
    ::close(fd_);
    fd_ = -1;
    std::list<Connection> ending;
    {
      std::lock_guard lock(mutex_);
      // Only open fds: an ended connection closed its own, and the number may be reused.
      for (const Connection& c : connections_) {
        if (!c.ended) ::shutdown(c.fd, SHUT_RDWR);
      }
      ending.swap(connections_);
    }
    for (Connection& c : ending) c.thread.join();
  }

 private:
  struct Connection {
    int fd = -1;
    bool ended = false;  // its fd is closed; guarded by mutex_
    std::thread thread;
  };

  void acceptLoop() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      accepted_.fetch_add(1);
      std::lock_guard lock(mutex_);
      // Reap the connections that ended (their threads are returning or gone).
      for (auto it = connections_.begin(); it != connections_.end();) {
        if (!it->ended) {
          ++it;
          continue;
        }
        it->thread.join();
        it = connections_.erase(it);
      }
      Connection& c = connections_.emplace_back();
      c.fd = fd;
      c.thread = std::thread([this, &c] { serve(c); });
    }
  }

  void serve(Connection& c) {
    std::string buf(65536, '\0');
    bool clean = true;
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      size_t sent = 0;
      while (clean && sent < static_cast<size_t>(n)) {
        const ssize_t m =
            ::send(c.fd, buf.data() + sent, static_cast<size_t>(n) - sent, MSG_NOSIGNAL);
        if (m <= 0) clean = false;
        if (m > 0) sent += static_cast<size_t>(m);
      }
      if (!clean) break;
    }
    if (clean) ::shutdown(c.fd, SHUT_WR);
    std::lock_guard lock(mutex_);
    ::close(c.fd);
    c.ended = true;
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::list<Connection> connections_;  // std::list: a thread holds its element by reference
};

// A backend that accepts and does not read until told to: a flow to it is held back by
// backpressure once the kernel buffers on the way are full. Its sockets' receive buffers are
// small (4 KiB) so that happens after a few MiB.
class HoldingServer {
 public:
  HoldingServer() : fd_(listenOnLoopback(4096)) {
    if (fd_ < 0) return;
    port_ = localPort(fd_);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~HoldingServer() {
    if (fd_ < 0) return;
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    if (acceptor_.joinable()) acceptor_.join();
    ::close(fd_);
    std::lock_guard lock(mutex_);
    for (const int fd : connections_) {
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& thread : readers_) thread.join();
    for (const int fd : connections_) {
      if (fd >= 0) ::close(fd);
    }
  }
  HoldingServer(const HoldingServer&) = delete;
  HoldingServer& operator=(const HoldingServer&) = delete;

  bool ok() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  std::string address() const { return test::address(port_); }
  size_t accepted() const {
    std::lock_guard lock(mutex_);
    return connections_.size();
  }
  uint64_t bytesRead() const { return read_.load(); }

  // Starts reading (and discarding) connection `index` (in accept order) until its EOF, then
  // ends its write half.
  void release(size_t index) {
    std::lock_guard lock(mutex_);
    const int fd = connections_.at(index);
    readers_.emplace_back([this, fd] {
      char buf[65536];
      for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        read_.fetch_add(static_cast<uint64_t>(n));
      }
      ::shutdown(fd, SHUT_WR);
    });
  }

  // Ends connection `index`'s write half (a FIN to the peer).
  void endWrite(size_t index) {
    std::lock_guard lock(mutex_);
    ::shutdown(connections_.at(index), SHUT_WR);
  }

  // Resets connection `index` (closed with SO_LINGER 0: an RST to the peer).
  void reset(size_t index) {
    std::lock_guard lock(mutex_);
    int& fd = connections_.at(index);
    const linger abort{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    ::close(fd);
    fd = -1;
  }

 private:
  void acceptLoop() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::lock_guard lock(mutex_);
      connections_.push_back(fd);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<int> connections_;  // closed by the destructor (or reset(): -1)
  std::vector<std::thread> readers_;
  std::atomic<uint64_t> read_{0};
};

// A temporary directory for one test's files, removed with everything in it at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "evgate-test") {
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter_));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

}  // namespace evgate::test
