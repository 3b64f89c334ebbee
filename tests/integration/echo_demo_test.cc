// The demo the README's run command starts: the real evgate-echo binary on 127.0.0.1, port 0.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <regex>
#include <string>

extern char** environ;

namespace {

using namespace std::chrono_literals;

// Reads from `fd` until `pattern` matches the text so far or `limit` passes.
std::smatch waitForOutput(int fd, const std::regex& pattern, std::string& text,
                          std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::smatch match;
  while (!std::regex_search(text, match, pattern)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return match;
}

class EchoDemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    char* argv[] = {const_cast<char*>(EVGATE_ECHO_BINARY), const_cast<char*>("--listen"),
                    const_cast<char*>("127.0.0.1:0"), nullptr};
    ASSERT_EQ(posix_spawn(&pid_, EVGATE_ECHO_BINARY, &actions, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    stdout_ = out[0];
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }

  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string output_;
};

TEST_F(EchoDemoTest, EchoesBytesAndStopsCleanlyOnSigterm) {
  const std::smatch listening =
      waitForOutput(stdout_, std::regex("listening on 127\\.0\\.0\\.1:(\\d+)"), output_, 10s);
  ASSERT_FALSE(listening.empty()) << "output so far: " << output_;
  const int port = std::stoi(listening[1].str());

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

  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  waitForOutput(stdout_, std::regex("stopping"), output_, 5s);
  EXPECT_NE(output_.find("caught"), std::string::npos) << output_;
}

}  // namespace
