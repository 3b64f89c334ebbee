#pragma once

// A line writer that never blocks the threads that log. Lines go to a bounded in-memory queue;
// a thread of the sink's own writes them to the fd. When the fd's reader stops reading (a full
// pipe: a stalled log shipper, a paused terminal), the queue fills and further lines are
// dropped and counted rather than stalling a worker's loop or the admin control plane.
//
//   LogSink sink(STDOUT_FILENO, 4 << 20, "access log", [](uint64_t n) { warn(n); });
//   sink.write(line);  // from any thread; never waits on the fd
//
// Lines keep their order. Each write carries whole lines only, at most PIPE_BUF bytes to
// anything but a regular file (so another writer of the same pipe, e.g. a library logging to
// stderr, never splits a line), and is issued once poll(2) says the fd has room. To a pipe,
// a terminal or a socket it does not block either (a non-blocking description of the pipe or
// terminal of its own, opened through /proc; send(MSG_DONTWAIT) to a socket), so the sink's
// thread never sits in a write it cannot leave and close() keeps its deadline even when another
// writer fills the pipe first or the terminal's output is stopped.
//
// Thread rule: write(), flush() and stats() are safe from any thread; close() is the owner's.
// The fd is the caller's: it must stay open until close() returns (the destructor closes).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace evgate::gateway {

class LogSink {
 public:
  // How long the destructor lets the queue drain before it drops the rest.
  static constexpr std::chrono::milliseconds kCloseTimeout{1000};

  // Called on the sink's thread after it has written a line again, having dropped `dropped`
  // lines since the last call: where the owner says so (the process log, say). It may write to
  // this sink.
  using DropReport = std::function<void(uint64_t dropped)>;

  // `queueLimit`: the most bytes queued or being written at once; a line that would pass it is
  // dropped. `name` is for messages ("access log").
  LogSink(int fd, size_t queueLimit, std::string name, DropReport report = {});
  ~LogSink();
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;

  // Queues `line`, adding '\n' if it lacks one; drops it if the queue is full. After close(),
  // writes it to the fd at once (a blocking write(2), as a plain logger would).
  void write(std::string_view line);
  // The same, for a report of dropped lines (this sink's or another's): it may use
  // kReportReserve bytes past the limit, so the report of a stall is not lost to that stall.
  void writeReport(std::string_view line);
  static constexpr size_t kReportReserve = 4096;
  // Waits until every line queued before the call has been written or dropped; false if
  // `timeout` passed first.
  bool flush(std::chrono::milliseconds timeout);
  // Writes what is queued, for at most `timeout`; drops (and counts) the rest; stops the thread.
  // Later writes go to the fd at once. Called by the owner, once or more, from one thread.
  void close(std::chrono::milliseconds timeout = kCloseTimeout);

  const std::string& name() const { return name_; }

  struct Stats {
    // Lines lost: dropped with the queue full, unwritten at close, or failed to write (EPIPE,
    // a full disk).
    uint64_t droppedLines = 0;
    size_t queuedBytes = 0;  // queued or being written now
    size_t queueLimit = 0;
  };
  Stats stats() const;

 private:
  void enqueue(std::string_view line, size_t limit);
  void run();
  // Writes `batch` (whole lines), waiting for room with poll(2). Returns how many of its lines
  // were not written: failed, or still unwritten when a close's deadline passed.
  uint64_t writeBatch(std::string_view batch);
  // Waits until the fd can take a write (after a pause, with `pause`: the last write found no
  // room); false once a close's deadline has passed.
  bool waitWritable(bool pause) const;

  const int fd_;
  const size_t limit_;
  const std::string name_;
  const DropReport report_;
  size_t chunkLimit_ = 0;  // the most bytes one write carries (PIPE_BUF but to a regular file)
  bool socket_ = false;    // written with send(MSG_DONTWAIT)
  int writeFd_ = -1;       // a non-blocking description of fd_'s pipe or terminal, if opened

  mutable std::mutex mutex_;
  std::condition_variable wake_;     // the thread: lines queued, or close
  std::condition_variable settled_;  // flush(): lines written or dropped
  std::string queue_;                // whole lines, each with its '\n'
  uint64_t queueLines_ = 0;
  size_t batchBytes_ = 0;    // the batch the thread is writing, outside the lock
  uint64_t enqueued_ = 0;    // lines ever queued
  uint64_t done_ = 0;        // of those, lines written or dropped by the thread
  uint64_t dropped_ = 0;     // lines lost, all causes
  uint64_t unreported_ = 0;  // of dropped_, not yet passed to report_
  bool closing_ = false;
  bool closed_ = false;
  std::chrono::steady_clock::time_point closeDeadline_;
  std::thread thread_;
};

}  // namespace evgate::gateway
