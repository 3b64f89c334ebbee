// A child process for integration tests: the real binaries spawned with posix_spawn, their stdout
// and stderr captured through pipes.
//
//   Process daemon({EVGATE_BINARY, "--config", path});
//   ASSERT_TRUE(daemon.started()) << daemon.error();
//   auto port = daemon.waitForOutput(std::regex("listening on [0-9.]+:(\\d+)"), 10s);
//   daemon.signal(SIGTERM);
//   auto status = daemon.wait(5s);  // nullopt: still running at the deadline
//
// A thread of the Process reads both pipes all the time, so a chatty child never blocks on a
// full pipe, however long the test goes without looking (a pipe may hold as little as 4 KiB:
// Linux shrinks new pipes to one page once a user's pipes pass fs.pipe-user-pages-soft). The
// destructor SIGKILLs a child that is still running and reaps it. pauseReading() stops it, for
// tests of a child whose log reader stalls.
//
// Thread rule: the methods from one thread at a time.

#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
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
    wakeFd_ = ::eventfd(0, EFD_CLOEXEC);
    pipeFds_[0] = out[0];
    pipeFds_[1] = err[0];
    open_[0] = open_[1] = true;
    reader_ = std::thread([this] { readLoop(); });
  }

  ~Process() {
    if (pid_ > 0 && !exit_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    stopReader();
  }

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }

  // Sends `sig` to the child; false if it has been reaped already or kill fails.
  bool signal(int sig) { return pid_ > 0 && !exit_ && ::kill(pid_, sig) == 0; }

  // Waits until `pattern` matches what `stream` has produced so far, or the child closes that
  // stream, or `limit` passes. On a match returns the whole match and its groups.
  std::optional<std::vector<std::string>> waitForOutput(const std::regex& pattern,
                                                        Clock::duration limit,
                                                        Stream stream = Stream::kEither) {
    const auto deadline = Clock::now() + limit;
    std::unique_lock lock(mutex_);
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
      const bool open = stream == Stream::kStdout   ? open_[0]
                        : stream == Stream::kStderr ? open_[1]
                                                    : open_[0] || open_[1];
      if (!open || Clock::now() >= deadline) return std::nullopt;
      grew_.wait_until(lock, deadline);
    }
  }

  // Waits up to `limit` for the child to exit; then for the rest of its output (to EOF, or until
  // a grandchild holding the pipes is given up on). nullopt if the child still runs at the
  // deadline.
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
      // No wait-for-exit-or-timeout call exists for a child: poll it in short steps.
      std::this_thread::sleep_for(
          std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(2)));
    }
    std::unique_lock lock(mutex_);
    grew_.wait_for(lock, std::chrono::seconds(1), [this] { return !open_[0] && !open_[1]; });
    return exit_;
  }

  // Stops reading the child's output until resumeReading(), as a log reader that stalls: the
  // pipes fill and stay full. Each pipe is shrunk to `pipeSize` bytes first (F_SETPIPE_SZ;
  // Linux rounds up to a page). False if a pipe could not be shrunk (it held more than that).
  bool pauseReading(int pipeSize = 4096) {
    bool shrunk = true;
    {
      std::lock_guard lock(mutex_);
      paused_ = true;
      for (const int i : {0, 1}) {
        if (open_[i] && ::fcntl(pipeFds_[i], F_SETPIPE_SZ, pipeSize) < 0) shrunk = false;
      }
    }
    wakeReader();
    return shrunk;
  }
  void resumeReading() {
    {
      std::lock_guard lock(mutex_);
      paused_ = false;
    }
    wakeReader();
  }

  // Everything read so far (a copy: the reader appends meanwhile).
  std::string out() const {
    std::lock_guard lock(mutex_);
    return text_[0];
  }
  std::string err() const {
    std::lock_guard lock(mutex_);
    return text_[1];
  }

 private:
  // The reader thread: appends whatever either pipe brings until both reach EOF or a stop is
  // asked, then closes them. While paused it only waits for wakeFd_.
  void readLoop() {
    char buf[65536];
    for (;;) {
      pollfd p[3];
      int which[3];
      nfds_t count = 0;
      {
        std::lock_guard lock(mutex_);
        if (stopping_ || (!open_[0] && !open_[1])) break;
        for (const int i : {0, 1}) {
          if (!open_[i] || paused_) continue;
          p[count] = pollfd{pipeFds_[i], POLLIN, 0};
          which[count++] = i;
        }
      }
      p[count] = pollfd{wakeFd_, POLLIN, 0};
      which[count++] = -1;
      if (::poll(p, count, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if ((p[count - 1].revents & POLLIN) != 0) {
        uint64_t wakes = 0;
        [[maybe_unused]] const ssize_t reset = ::read(wakeFd_, &wakes, sizeof wakes);
        continue;  // look at the flags again
      }
      for (nfds_t k = 0; k + 1 < count; ++k) {
        if ((p[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const int i = which[k];
        const ssize_t n = ::read(pipeFds_[i], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        std::lock_guard lock(mutex_);
        if (n > 0) {
          text_[i].append(buf, static_cast<size_t>(n));
        } else {
          ::close(pipeFds_[i]);
          open_[i] = false;
        }
        grew_.notify_all();
      }
    }
    std::lock_guard lock(mutex_);
    for (const int i : {0, 1}) {
      if (open_[i]) ::close(pipeFds_[i]);
      open_[i] = false;
    }
    grew_.notify_all();
  }

  void wakeReader() {
    const uint64_t one = 1;
    if (::write(wakeFd_, &one, sizeof one) < 0) std::perror("eventfd write");
  }

  void stopReader() {
    if (!reader_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wakeReader();
    reader_.join();
    ::close(wakeFd_);
  }

  pid_t pid_ = -1;
  std::string error_;
  std::optional<Exit> exit_;
  int wakeFd_ = -1;            // an eventfd: the reader looks at stopping_ and paused_ again
  int pipeFds_[2] = {-1, -1};  // the read ends: stdout, stderr (valid while open_)
  std::thread reader_;
  mutable std::mutex mutex_;  // guards text_, open_, paused_, stopping_
  std::condition_variable grew_;
  std::string text_[2];            // stdout, stderr
  bool open_[2] = {false, false};  // the reader still reads it
  bool paused_ = false;
  bool stopping_ = false;
};

}  // namespace evgate::test
