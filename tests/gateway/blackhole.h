#pragma once

// A loopback address whose SYNs are dropped, for connect-timeout tests: a listener with a
// backlog of 0 (a queue of one) that never accepts, its queue filled by a few connects. Linux
// drops a SYN to a listener whose accept queue is full (tcp_conn_request: "LISTENOVERFLOWS"),
// SYN cookies or not, so a further connect stays in SYN_SENT until its own timeout.

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <utility>
#include <vector>

#include "reactor/socket_address.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway::testing {

class Blackhole {
 public:
  Blackhole() : listenFd_(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {
    const reactor::SocketAddress any = reactor::SocketAddress::loopbackV4();
    EXPECT_EQ(::bind(listenFd_.get(), any.data(), any.length()), 0);
    EXPECT_EQ(::listen(listenFd_.get(), 0), 0);
    address_ = *reactor::SocketAddress::localOf(listenFd_.get());
    for (int i = 0; i < 3; ++i) {
      reactor::testing::UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
      (void)::connect(c.get(), address_.data(), address_.length());
      fillers_.push_back(std::move(c));
    }
  }
  const reactor::SocketAddress& address() const { return address_; }

 private:
  reactor::testing::UniqueFd listenFd_;
  reactor::SocketAddress address_;
  std::vector<reactor::testing::UniqueFd> fillers_;
};

}  // namespace evgate::gateway::testing
