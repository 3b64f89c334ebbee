#include "gateway/log_sink.h"

#include <fcntl.h>
#include <limits.h>  // PIPE_BUF
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <thread>
#include <utility>

namespace evgate::gateway {
namespace {

// A regular file takes a large write at once. Anything else (a pipe, a socket, a terminal) gets
// at most PIPE_BUF bytes a write: to a pipe that is one piece, never interleaved with another
// writer's bytes (pipe(7)), and once poll(2) reports POLLOUT a pipe has room for that much.
constexpr size_t kFileChunk = size_t{64} * 1024;
// How often a thread waiting for room looks at a close's deadline; also the pause after a write
// that found no room although poll(2) said there was.
constexpr std::chrono::milliseconds kPollSlice{50};

uint64_t countLines(std::string_view text) {
  return static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

LogSink::LogSink(int fd, size_t queueLimit, std::string name, DropReport report)
    : fd_(fd), limit_(queueLimit), name_(std::move(name)), report_(std::move(report)) {
  struct stat st {};
  const bool known = ::fstat(fd, &st) == 0;
  chunkLimit_ = known && S_ISREG(st.st_mode) ? kFileChunk : PIPE_BUF;
  socket_ = known && S_ISSOCK(st.st_mode);
  if (known && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
    // The thread's writes must not block, but O_NONBLOCK on `fd` itself would change the file
    // description it shares with other processes (a shell's terminal, a parent's pipe). A new
    // description of the same pipe or terminal, opened through /proc, is ours alone. Where
    // that fails (no /proc; a FIFO whose reader is gone), the writes block, still only after
    // poll(2) has reported room.
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    const int reopened = ::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (reopened >= 0) writeFd_ = reopened;
  }
  thread_ = std::thread([this] { run(); });
}

LogSink::~LogSink() {
  close();
  if (writeFd_ >= 0) ::close(writeFd_);
}

void LogSink::write(std::string_view line) { enqueue(line, limit_); }

void LogSink::writeReport(std::string_view line) { enqueue(line, limit_ + kReportReserve); }

void LogSink::enqueue(std::string_view line, size_t limit) {
  const bool terminated = !line.empty() && line.back() == '\n';
  const size_t size = line.size() + (terminated ? 0 : 1);
  // Counted as the fd's reader will see them: a message with newlines in it is several lines.
  const uint64_t lines = countLines(line) + (terminated ? 0 : 1);
  std::unique_lock lock(mutex_);
  if (closed_) {
    lock.unlock();
    std::string whole(line);
    if (!terminated) whole += '\n';
    // No thread any more: the plain logger's one write per line. A failure loses the line only.
    (void)::write(fd_, whole.data(), whole.size());
    return;
  }
  if (queue_.size() + batchBytes_ + size > limit) {
    dropped_ += lines;
    unreported_ += lines;
    return;
  }
  queue_.append(line);
  if (!terminated) queue_ += '\n';
  enqueued_ += lines;
  const bool wasEmpty = queueLines_ == 0;
  queueLines_ += lines;
  // The thread sleeps only on an empty queue: only the first line needs to wake it.
  if (wasEmpty) {
    lock.unlock();
    wake_.notify_one();
  }
}

bool LogSink::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const uint64_t target = enqueued_;
  return settled_.wait_for(lock, timeout, [&] { return done_ >= target; });
}

void LogSink::close(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mutex_);
    if (!closing_) {
      closing_ = true;
      closeDeadline_ = std::chrono::steady_clock::now() + timeout;
    }
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

LogSink::Stats LogSink::stats() const {
  std::lock_guard lock(mutex_);
  return Stats{dropped_, queue_.size() + batchBytes_, limit_};
}

void LogSink::run() {
  // Signals are for the threads that wait for them (the daemon's signalfd), whichever thread
  // created the sink.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::string batch;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return queueLines_ > 0 || closing_; });
    if (queueLines_ == 0) break;  // closing, and everything is out
    if (closing_ && std::chrono::steady_clock::now() >= closeDeadline_) {
      // Lines queued after the deadline (a logger still busy at close) are given up at once.
      dropped_ += queueLines_;
      done_ += queueLines_;
      queue_.clear();
      queueLines_ = 0;
      break;
    }
    batch.swap(queue_);  // queue_ takes the last batch's storage: no allocation per batch
    queue_.clear();
    const uint64_t lines = queueLines_;
    queueLines_ = 0;
    batchBytes_ = batch.size();
    lock.unlock();
    const uint64_t lost = writeBatch(batch);
    lock.lock();
    batchBytes_ = 0;
    done_ += lines;
    dropped_ += lost;
    unreported_ += lost;
    settled_.notify_all();
    if (lost < lines && unreported_ > 0 && report_) {
      // Lines get through again: say how many did not.
      const uint64_t dropped = std::exchange(unreported_, 0);
      lock.unlock();
      report_(dropped);
      lock.lock();
    }
  }
  closed_ = true;  // under the lock: a write from now on goes to the fd itself
  settled_.notify_all();
}

uint64_t LogSink::writeBatch(std::string_view batch) {
  uint64_t lost = 0;
  bool pause = false;
  while (!batch.empty()) {
    // Whole lines, at most chunkLimit_ bytes, unless a single line is longer.
    size_t end = batch.size();
    if (end > chunkLimit_) {
      end = batch.rfind('\n', chunkLimit_ - 1) + 1;  // 0 when no line ends within the limit
      if (end == 0) end = batch.find('\n') + 1;      // every batch ends with '\n'
      if (end == 0) end = batch.size();
    }
    const std::string_view chunk = batch.substr(0, end);
    if (!waitWritable(pause)) return lost + countLines(batch);
    pause = false;
    const int fd = writeFd_ >= 0 ? writeFd_ : fd_;
    const ssize_t written =
        socket_ ? ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                : ::write(fd, chunk.data(), chunk.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pause = true;  // room taken by another writer, or a stopped terminal: try again later
        continue;
      }
      lost += countLines(chunk);  // EPIPE, ENOSPC, EBADF...
      batch.remove_prefix(chunk.size());
      continue;
    }
    batch.remove_prefix(static_cast<size_t>(written));  // a short write: the rest goes next
  }
  return lost;
}

bool LogSink::waitWritable(bool pause) const {
  const int fd = writeFd_ >= 0 ? writeFd_ : fd_;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (closing_ && std::chrono::steady_clock::now() >= closeDeadline_) return false;
    }
    if (pause) {
      // poll(2) said there was room and the write found none: poll would say so again at once.
      std::this_thread::sleep_for(kPollSlice);
      pause = false;
      continue;
    }
    pollfd ready{fd, POLLOUT, 0};
    const int n = ::poll(&ready, 1, static_cast<int>(kPollSlice.count()));
    // POLLOUT, or POLLERR/POLLHUP (a reader gone), or a poll error: the write tells which.
    if (n > 0 || (n < 0 && errno != EINTR)) return true;
  }
}

}  // namespace evgate::gateway
