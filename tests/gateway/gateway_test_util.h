#pragma once

// Helpers for tests of a whole Gateway on loopback: its workers run on their own threads and the
// test thread is the owner, so backends run on a thread of their own and clients are blocking
// sockets with deadlines. A wait is a deadline on a condition, never a sleep that hopes to be long
// enough.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gateway/config/config.h"
#include "reactor/buffer_event.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway::testing {

using namespace std::chrono_literals;
using reactor::testing::UniqueFd;

// An echo server on 127.0.0.1 (port 0) with its own thread and loop.
class EchoBackend {
 public:
  EchoBackend() {
    std::promise<void> ready;
    std::future<void> started = ready.get_future();
    thread_ = std::thread([this, &ready] { run(ready); });
    started.wait();
  }
  ~EchoBackend() {
    base_.load()->runInLoop([this] { base_.load()->loopBreak(); });
    thread_.join();
  }
  EchoBackend(const EchoBackend&) = delete;
  EchoBackend& operator=(const EchoBackend&) = delete;

  const reactor::SocketAddress& address() const { return address_; }
  int accepted() const { return accepted_.load(); }

 private:
  void run(std::promise<void>& ready) {
    reactor::EventBase base;
    base_ = &base;
    std::unique_ptr<reactor::Listener> listener =
        reactor::Listener::bind(base, onAccept, this, reactor::Listener::kCloseOnFree, -1,
                                reactor::SocketAddress::loopbackV4());
    EXPECT_TRUE(listener);
    if (listener) address_ = *listener->localAddress();
    ready.set_value();
    base.loop(reactor::kLoopNoExitOnEmpty);
    listener.reset();
    connections_.clear();
  }
  static void onAccept(reactor::Listener& listener, int fd, const sockaddr*, socklen_t, void* arg) {
    auto* self = static_cast<EchoBackend*>(arg);
    ++self->accepted_;
    auto bev =
        reactor::BufferEvent::create(listener.base(), fd, reactor::BufferEvent::kCloseOnFree);
    bev->setCallbacks(onRead, nullptr, onEvent, self);
    bev->enable(reactor::kRead);
    self->connections_.emplace(bev.get(), std::move(bev));
  }
  static void onRead(reactor::BufferEvent& bev, void*) { bev.write(bev.input()); }
  static void onEvent(reactor::BufferEvent& bev, short, void* arg) {
    // EOF, reset or error: done with this client.
    static_cast<EchoBackend*>(arg)->connections_.erase(&bev);
  }

  std::thread thread_;
  std::atomic<reactor::EventBase*> base_{nullptr};
  reactor::SocketAddress address_;
  std::atomic<int> accepted_{0};
  std::map<reactor::BufferEvent*, reactor::BufferEvent::Ptr> connections_;  // loop thread
};

// Polls `done` every millisecond until it holds or `limit` passes; returns done().
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

// A blocking TCP client connected to `to` (the kernel completes the handshake from the listen
// queue, whether or not anyone accepts); -1 on failure with errno set.
inline UniqueFd connectTo(const reactor::SocketAddress& to) {
  UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 || ::connect(fd.get(), to.data(), to.length()) != 0) {
    const int saved = errno;
    fd.reset();
    errno = saved;
  }
  return fd;
}

inline int millisLeft(std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

inline bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads exactly `size` bytes within `limit`; fewer if the peer closes or time runs out.
inline std::string receive(int fd, size_t size, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::string got;
  char buf[4096];
  while (got.size() < size) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, millisLeft(deadline)) <= 0) break;
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, size - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Sends `data` and reads it back through the gateway and an echo backend.
inline bool echoes(int fd, std::string_view data, std::chrono::milliseconds limit = 5s) {
  return sendAll(fd, data) && receive(fd, data.size(), limit) == data;
}

// Waits for the peer to close `fd` (bytes that arrive are discarded): "eof", "reset" or
// "timeout".
inline std::string waitClosed(int fd, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, millisLeft(deadline)) <= 0) return "timeout";
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return "eof";
    if (n < 0) return errno == ECONNRESET ? "reset" : "error";
  }
}

inline bool closedByPeer(const std::string& outcome) {
  return outcome == "eof" || outcome == "reset";
}

// A port on 127.0.0.1 that nothing listens on (bound, then closed at once).
inline uint16_t freePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const reactor::SocketAddress any = reactor::SocketAddress::loopbackV4();
  if (::bind(fd.get(), any.data(), any.length()) != 0) return 0;
  return reactor::SocketAddress::localOf(fd.get())->port();
}

inline reactor::SocketAddress loopback(uint16_t port) {
  return *reactor::SocketAddress::parse("127.0.0.1:" + std::to_string(port));
}

// Whether a client can connect to `address` now (false: refused, nothing listens).
inline bool listening(const reactor::SocketAddress& address) {
  return connectTo(address).get() >= 0;
}

inline ClusterConfig clusterOf(const std::string& name,
                               const std::vector<reactor::SocketAddress>& endpoints) {
  ClusterConfig cluster;
  cluster.name = name;
  for (const reactor::SocketAddress& endpoint : endpoints) {
    EndpointConfig config;
    config.address = endpoint;
    cluster.endpoints.push_back(config);
  }
  return cluster;
}

inline ListenerConfig listenerOf(
    const std::string& name, const std::string& cluster,
    reactor::SocketAddress bind = reactor::SocketAddress::loopbackV4()) {
  ListenerConfig listener;
  listener.name = name;
  listener.bind = bind;
  listener.cluster = cluster;
  return listener;
}

// Two workers, no access log.
inline Config baseConfig() {
  Config config;
  config.workers = 2;
  config.accessLog.mode = AccessLogMode::kOff;
  return config;
}

}  // namespace evgate::gateway::testing
