#pragma once

// Helpers for tests of a whole Gateway on loopback: its workers run on their own threads and the
// test thread is the owner, so backends run on a thread of their own and clients are blocking
// sockets with deadlines. A wait is a deadline on a condition, never a sleep that hopes to be long
// enough.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/config.h"
#include "reactor/socket_address.h"
#include "tests/integration/net_util.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway::testing {

using namespace std::chrono_literals;
using reactor::testing::UniqueFd;
using test::closedByPeer;
using test::echoes;
using test::eventually;
using test::refusedPort;
using test::writeUntilStalled;

// 127.0.0.1:port as a SocketAddress.
inline reactor::SocketAddress loopback(uint16_t port) {
  return *reactor::SocketAddress::parse(test::address(port));
}

// test::EchoServer with its address as the SocketAddress a gateway Config takes.
class EchoBackend : public test::EchoServer {
 public:
  EchoBackend() { EXPECT_TRUE(ok()); }

  reactor::SocketAddress address() const { return loopback(port()); }
};

// test::HoldingServer (accepts, reads only when released) with its address as a SocketAddress.
class HoldingBackend : public test::HoldingServer {
 public:
  HoldingBackend() { EXPECT_TRUE(ok()); }

  reactor::SocketAddress address() const { return loopback(port()); }
};

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
  const auto deadline = test::Clock::now() + limit;
  std::string got;
  char buf[4096];
  while (got.size() < size) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, test::millisLeft(deadline)) <= 0) break;
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, size - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// test::waitClosed with a limit rather than a deadline: "eof", "reset" or "timeout".
inline std::string waitClosed(int fd, std::chrono::milliseconds limit = 5s) {
  return test::waitClosed(fd, test::Clock::now() + limit);
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
