// A child process for integration tests: the real binaries spawned with posix_spawn, their stdout
// and stderr captured through pipes.
//
//   Process daemon({EVGATE_BINARY, "--config", path});
//   ASSERT_TRUE(daemon.started()) << daemon.error();
//   auto port = daemon.waitForOutput(std::regex("listening on [0-9.]+:(\\d+)"), 10s);
//   daemon.signal(SIGTERM);
//   auto status = daemon.wait(5s);  // nullopt: still running at the deadline
//
// Both pipes are read whenever the test waits for anything (output or exit), so a chatty child
// never blocks on a full pipe. The destructor SIGKILLs a child that is still running and reaps it.
//
// Thread rule: one thread at a time.

#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <regex>
#include <string>
#include <vector>

extern char** environ;

namespace evgate::test {

class Process {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Stream { kStdout, kStderr, kEither };

  // How the child ended.
  struct Exit {
    int raw = 0;  // as waitpid reports it
    bool exited() const { return WIFEXITED(raw); }
    int code() const { return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1; }
    int signal() const { return WIFSIGNALED(raw) ? WTERMSIG(raw) : 0; }
    std::string describe() const {
      if (WIFEXITED(raw)) return "exit " + std::to_string(WEXITSTATUS(raw));
      if (WIFSIGNALED(raw)) return std::string("signal ") + ::strsignal(WTERMSIG(raw));
      return "status " + std::to_string(raw);
    }
  };

  // Spawns args[0] (a path) with `args` as its argv. `env` entries ("NAME=value") are added to
  // the inherited environment, replacing a variable of the same name. stdin is /dev/null.
  explicit Process(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    if (args.empty()) {
      error_ = "no program";
      return;
    }
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('='));
      const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& added) {
        return added.substr(0, added.find('=')) == name;
      });
      if (!replaced) environment.push_back(entry);
    }
    environment.insert(environment.end(), env.begin(), env.end());

    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      error_ = std::string("pipe: ") + std::strerror(errno);
      return;
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
      error_ = std::string("pipe: ") + std::strerror(errno);
      ::close(out[0]);
      ::close(out[1]);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    // The child starts with default signal dispositions and an empty mask, whatever the test
    // process did with its own.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all;
    sigset_t none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) {
      error_ = "posix_spawn " + args[0] + ": " + std::strerror(rc);
      pid_ = -1;
      ::close(out[0]);
      ::close(err[0]);
      return;
    }
    fds_[0] = out[0];
    fds_[1] = err[0];
  }

  ~Process() {
    if (pid_ > 0 && !exit_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (const int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }

  // Sends `sig` to the child; false if it has been reaped already or kill fails.
  bool signal(int sig) { return pid_ > 0 && !exit_ && ::kill(pid_, sig) == 0; }

  // Reads output until `pattern` matches what `stream` has produced so far, or the child closes
  // that stream, or `limit` passes. On a match returns the whole match and its groups.
  std::optional<std::vector<std::string>> waitForOutput(const std::regex& pattern,
                                                        Clock::duration limit,
                                                        Stream stream = Stream::kEither) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      for (const int i : {0, 1}) {
        if (stream == Stream::kStdout && i == 1) continue;
        if (stream == Stream::kStderr && i == 0) continue;
        std::smatch match;
        if (std::regex_search(text_[i], match, pattern)) {
          std::vector<std::string> groups;
          for (const auto& group : match) groups.push_back(group.str());
          return groups;
        }
      }
      const bool open = stream == Stream::kStdout   ? fds_[0] >= 0
                        : stream == Stream::kStderr ? fds_[1] >= 0
                                                    : fds_[0] >= 0 || fds_[1] >= 0;
      if (!open || Clock::now() >= deadline) return std::nullopt;
      pump(deadline);
    }
  }

  // Waits up to `limit` for the child to exit, reading its output meanwhile; then reads what is
  // left in the pipes (to EOF, or until a grandchild holding them is given up on). nullopt if the
  // child still runs at the deadline.
  std::optional<Exit> wait(Clock::duration limit) {
    if (exit_) return exit_;
    if (pid_ <= 0) return std::nullopt;
    const auto deadline = Clock::now() + limit;
    for (;;) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        exit_ = Exit{status};
        break;
      }
      if (done < 0 && errno != EINTR) return std::nullopt;
      const auto now = Clock::now();
      if (now >= deadline) return std::nullopt;
      // The pipes reach EOF as the child exits; when they are closed already, poll the child in
      // short steps instead.
      const auto step = std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(5));
      if (fds_[0] >= 0 || fds_[1] >= 0) {
        pump(now + step);
      } else {
        ::poll(nullptr, 0, static_cast<int>(toMillis(step)));
      }
    }
    const auto drainDeadline = Clock::now() + std::chrono::seconds(1);
    while ((fds_[0] >= 0 || fds_[1] >= 0) && Clock::now() < drainDeadline) pump(drainDeadline);
    return exit_;
  }

  // Everything read so far.
  const std::string& out() const { return text_[0]; }
  const std::string& err() const { return text_[1]; }

 private:
  static long toMillis(Clock::duration d) {
    return static_cast<long>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
  }

  // Waits until `deadline` for output on either open pipe and reads what is there.
  void pump(Clock::time_point deadline) {
    pollfd p[2];
    int count = 0;
    int which[2];
    for (const int i : {0, 1}) {
      if (fds_[i] < 0) continue;
      p[count] = pollfd{fds_[i], POLLIN, 0};
      which[count++] = i;
    }
    if (count == 0) return;
    const auto left = std::max<Clock::duration>(deadline - Clock::now(), Clock::duration::zero());
    const int ready = ::poll(p, static_cast<nfds_t>(count), static_cast<int>(toMillis(left)));
    if (ready <= 0) return;
    for (int k = 0; k < count; ++k) {
      if ((p[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const int i = which[k];
      char buf[65536];
      const ssize_t n = ::read(fds_[i], buf, sizeof buf);
      if (n > 0) {
        text_[i].append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds_[i]);
        fds_[i] = -1;
      }
    }
  }

  pid_t pid_ = -1;
  std::string error_;
  int fds_[2] = {-1, -1};  // stdout, stderr (read ends)
  std::string text_[2];
  std::optional<Exit> exit_;
};

}  // namespace evgate::test
