#pragma once

// An upstream that floods: it accepts any number of connections and writes to each as fast as
// the connection takes bytes, up to a cap per connection, until the peer goes or the server
// stops. What a gateway's clients
// that never read are attacked with. One thread and an edge-triggered epoll, so that thousands
// of connections cost no thread each.
//
//   FloodingUpstream flood;
//   ... connect 9,000 clients through the gateway ...
//   flood.accepted(); flood.sent();
//
// Thread rule: construct, query and destroy from one thread; the server runs on its own.

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <unordered_map>

#include "tests/integration/net_util.h"

namespace evgate::test {

class FloodingUpstream {
 public:
  // `sendBuffer` > 0: SO_SNDBUF of every accepted connection, so that the kernel holds little of
  // the flood on this side (the point is what the gateway holds). `cap`: the most any one
  // connection is sent, which bounds the kernel memory thousands of stalled connections hold.
  explicit FloodingUpstream(int sendBuffer, uint64_t cap)
      : sendBuffer_(sendBuffer),
        cap_(cap),
        listenFd_(listenOnLoopback()),
        epollFd_(::epoll_create1(EPOLL_CLOEXEC)),
        wakeFd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (listenFd_ < 0 || epollFd_ < 0 || wakeFd_ < 0) return;
    ::fcntl(listenFd_, F_SETFL, O_NONBLOCK);
    epoll_event listen{EPOLLIN, {.fd = listenFd_}};
    epoll_event wake{EPOLLIN, {.fd = wakeFd_}};
    if (::epoll_ctl(epollFd_, EPOLL_CTL_ADD, listenFd_, &listen) != 0 ||
        ::epoll_ctl(epollFd_, EPOLL_CTL_ADD, wakeFd_, &wake) != 0) {
      return;
    }
    port_ = localPort(listenFd_);
    thread_ = std::thread([this] { run(); });
  }

  ~FloodingUpstream() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      (void)::write(wakeFd_, &one, sizeof one);
      thread_.join();
    }
    for (const auto& [fd, sent] : connections_) ::close(fd);
    for (const int fd : {listenFd_, epollFd_, wakeFd_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  FloodingUpstream(const FloodingUpstream&) = delete;
  FloodingUpstream& operator=(const FloodingUpstream&) = delete;

  bool ok() const { return port_ != 0; }
  std::string address() const { return test::address(port_); }
  // Connections accepted so far, and bytes the kernel took from all of them.
  uint64_t accepted() const { return accepted_.load(); }
  uint64_t sent() const { return sent_.load(); }

 private:
  void run() {
    epoll_event events[256];
    for (;;) {
      const int ready = ::epoll_wait(epollFd_, events, 256, -1);
      if (ready < 0 && errno != EINTR) return;
      for (int i = 0; i < ready; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wakeFd_) return;
        if (fd == listenFd_) {
          acceptAll();
        } else {
          flood(fd);
        }
      }
    }
  }

  void acceptAll() {
    for (;;) {
      const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN: the backlog is empty (or out of fds: the next readiness retries)
      }
      if (sendBuffer_ > 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sendBuffer_, sizeof sendBuffer_);
      }
      // Edge-triggered: one wake-up per time the socket becomes writable again.
      epoll_event event{EPOLLOUT | EPOLLET, {.fd = fd}};
      if (::epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &event) != 0) {
        ::close(fd);
        continue;
      }
      connections_.emplace(fd, 0);
      accepted_.fetch_add(1);
    }
  }

  // Writes until the socket takes no more or the cap is reached; a peer that went is let go.
  void flood(int fd) {
    uint64_t& sent = connections_.at(fd);
    while (sent < cap_) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk_.size(), cap_ - sent));
      const ssize_t n = ::send(fd, chunk_.data(), want, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<uint64_t>(n);
        sent_.fetch_add(static_cast<uint64_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, fd, nullptr);
      ::close(fd);
      connections_.erase(fd);
      return;
    }
  }

  const int sendBuffer_;
  const uint64_t cap_;
  const std::string chunk_ = std::string(65536, 'f');
  int listenFd_ = -1;
  int epollFd_ = -1;
  int wakeFd_ = -1;
  uint16_t port_ = 0;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> sent_{0};
  std::unordered_map<int, uint64_t> connections_;  // fd -> bytes sent; the server thread's
  std::thread thread_;
};

}  // namespace evgate::test
