#include "gateway/log_sink.h"

#include <limits.h>  // PIPE_BUF
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace evgate::gateway {
namespace {

// A regular file takes a large write at once. A pipe or a socket takes PIPE_BUF bytes in one
// piece (pipe(7): never interleaved with another writer's bytes), and once poll(2) reports
// POLLOUT it has room for at least that much, so the write does not block.
constexpr size_t kFileChunk = 64 * 1024;
// How often a thread waiting for room looks at a close's deadline.
constexpr std::chrono::milliseconds kPollSlice{50};

size_t chunkLimitFor(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) return PIPE_BUF;
  return kFileChunk;
}

uint64_t countLines(std::string_view text) {
  return static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

LogSink::LogSink(int fd, size_t queueLimit, std::string name, DropReport report)
    : fd_(fd),
      limit_(queueLimit),
      name_(std::move(name)),
      report_(std::move(report)),
      chunkLimit_(chunkLimitFor(fd)) {
  thread_ = std::thread([this] { run(); });
}

LogSink::~LogSink() { close(); }

void LogSink::write(std::string_view line) { enqueue(line, limit_); }

void LogSink::writeReport(std::string_view line) { enqueue(line, limit_ + kReportReserve); }

void LogSink::enqueue(std::string_view line, size_t limit) {
  const bool terminated = !line.empty() && line.back() == '\n';
  const size_t size = line.size() + (terminated ? 0 : 1);
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
    ++dropped_;
    ++unreported_;
    return;
  }
  queue_.append(line);
  if (!terminated) queue_ += '\n';
  ++enqueued_;
  // The thread sleeps only on an empty queue: only the first line needs to wake it.
  if (++queueLines_ == 1) {
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
  while (!batch.empty()) {
    // Whole lines, at most chunkLimit_ bytes, unless a single line is longer.
    size_t end = batch.size();
    if (end > chunkLimit_) {
      end = batch.rfind('\n', chunkLimit_ - 1) + 1;  // 0 when no line ends within the limit
      if (end == 0) end = batch.find('\n') + 1;      // every batch ends with '\n'
      if (end == 0) end = batch.size();
    }
    const std::string_view chunk = batch.substr(0, end);
    if (!waitWritable()) return lost + countLines(batch);
    const ssize_t written = ::write(fd_, chunk.data(), chunk.size());
    if (written < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: someone set O_NONBLOCK
      lost += countLines(chunk);                        // EPIPE, ENOSPC, EBADF...
      batch.remove_prefix(chunk.size());
      continue;
    }
    batch.remove_prefix(static_cast<size_t>(written));  // a short write: the rest goes next
  }
  return lost;
}

bool LogSink::waitWritable() const {
  for (;;) {
    pollfd ready{fd_, POLLOUT, 0};
    const int n = ::poll(&ready, 1, static_cast<int>(kPollSlice.count()));
    // POLLOUT, or POLLERR/POLLHUP (a reader gone), or a poll error: write(2) tells which.
    if (n > 0 || (n < 0 && errno != EINTR)) return true;
    std::lock_guard lock(mutex_);
    if (closing_ && std::chrono::steady_clock::now() >= closeDeadline_) return false;
  }
}

}  // namespace evgate::gateway
