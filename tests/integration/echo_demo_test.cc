// The demo the README's run command starts: the real evgate-echo binary on 127.0.0.1, port 0.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <regex>
#include <string>

#include "tests/integration/process.h"

namespace {

using namespace std::chrono_literals;
using evgate::test::Process;

TEST(EchoDemoTest, EchoesBytesAndStopsCleanlyOnSigterm) {
  Process echo({EVGATE_ECHO_BINARY, "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(echo.started()) << echo.error();
  const auto listening = echo.waitForOutput(std::regex("listening on 127\\.0\\.0\\.1:(\\d+)"), 10s,
                                            Process::Stream::kStdout);
  ASSERT_TRUE(listening) << "output so far: " << echo.out() << echo.err();
  const int port = std::stoi((*listening)[1]);

  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // Larger than one socket buffer round, so the echo goes through several reads and writes.
  std::string sent(300000, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i % 26);
  std::string received;
  size_t written = 0;
  while (received.size() < sent.size()) {
    pollfd p{client, static_cast<short>(POLLIN | (written < sent.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 10000) <= 0) break;  // 10 s without progress: give up, the check fails
    if (p.revents & POLLOUT) {
      const ssize_t n = ::send(client, sent.data() + written,
                               std::min<size_t>(65536, sent.size() - written), MSG_DONTWAIT);
      if (n > 0) written += static_cast<size_t>(n);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      const ssize_t n = ::recv(client, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) break;
      if (n > 0) received.append(buf, static_cast<size_t>(n));
    }
  }
  EXPECT_EQ(received, sent);
  ::close(client);

  ASSERT_TRUE(echo.signal(SIGTERM));
  const auto status = echo.wait(10s);
  ASSERT_TRUE(status) << "still running 10 s after SIGTERM";
  ASSERT_TRUE(status->exited()) << status->describe();
  EXPECT_EQ(status->code(), 0);
  EXPECT_NE(echo.out().find("stopping"), std::string::npos) << echo.out();
  EXPECT_NE(echo.out().find("caught"), std::string::npos) << echo.out();
}

}  // namespace
