// LogSink (gateway/log_sink.h) over real pipes and files: lines arrive whole and in order, a
// reader that stops reading costs dropped (counted) lines but never blocks a writer, close keeps
// its deadline with such a reader, and a failed write is counted.

#include "gateway/log_sink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/net_util.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using reactor::testing::UniqueFd;
using test::eventually;

constexpr size_t kPipeSize = 4096;

// A pipe whose buffer is one page, as Linux gives a user past fs.pipe-user-pages-soft.
struct Pipe {
  UniqueFd reader;
  UniqueFd writer;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) ADD_FAILURE() << std::strerror(errno);
    reader = UniqueFd(fds[0]);
    writer = UniqueFd(fds[1]);
    if (::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kPipeSize)) < 0) {
      ADD_FAILURE() << "F_SETPIPE_SZ: " << std::strerror(errno);
    }
  }
  // Whatever the pipe holds now (never waits for more).
  std::string drain() const {
    std::string out;
    char buf[65536];
    for (;;) {
      pollfd ready{reader.get(), POLLIN, 0};
      if (::poll(&ready, 1, 0) <= 0) return out;
      const ssize_t n = ::read(reader.get(), buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
};

// Reads a pipe on a thread of its own until finish(), which returns everything read.
class BackgroundReader {
 public:
  explicit BackgroundReader(const Pipe& pipe) : pipe_(pipe), thread_([this] { run(); }) {}
  ~BackgroundReader() {
    if (thread_.joinable()) finish();
  }
  BackgroundReader(const BackgroundReader&) = delete;
  BackgroundReader& operator=(const BackgroundReader&) = delete;
  std::string finish() {
    done_ = true;
    thread_.join();
    return read_;
  }

 private:
  void run() {
    while (!done_.load()) {
      pollfd ready{pipe_.reader.get(), POLLIN, 0};
      (void)::poll(&ready, 1, 10);
      read_ += pipe_.drain();
    }
    read_ += pipe_.drain();
  }

  const Pipe& pipe_;
  std::atomic<bool> done_{false};
  std::string read_;
  std::thread thread_;  // last: starts once the rest is there
};

// "line N " padded with '.' to `size` bytes (without the '\n').
std::string numberedLine(size_t n, size_t size = 100) {
  std::string line = "line " + std::to_string(n) + " ";
  line.resize(std::max(size, line.size()), '.');
  return line;
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The numbers of the numbered lines in `text`, in order; any other line, or a numbered line that
// is not whole, is a failure.
std::vector<size_t> numbersIn(const std::string& text, size_t size = 100) {
  std::vector<size_t> numbers;
  for (const std::string& line : splitLines(text)) {
    size_t n = 0;
    if (std::sscanf(line.c_str(), "line %zu ", &n) != 1 || line != numberedLine(n, size)) {
      ADD_FAILURE() << "not a whole line: " << line.substr(0, 120);
      continue;
    }
    numbers.push_back(n);
  }
  return numbers;
}

TEST(LogSinkTest, WritesEveryLineWholeAndInOrder) {
  const Pipe pipe;
  BackgroundReader reader(pipe);
  LogSink sink(pipe.writer.get(), 1 << 20, "test");
  constexpr size_t kLines = 2000;
  for (size_t i = 0; i < kLines; ++i) sink.write(numberedLine(i) + (i % 2 == 0 ? "\n" : ""));
  EXPECT_TRUE(sink.flush(10s));
  const std::string read = reader.finish();
  const std::vector<size_t> numbers = numbersIn(read);
  ASSERT_EQ(numbers.size(), kLines);
  for (size_t i = 0; i < kLines; ++i) ASSERT_EQ(numbers[i], i);
  EXPECT_EQ(sink.stats().droppedLines, 0u);
  EXPECT_EQ(sink.stats().queuedBytes, 0u);
}

// The point of the sink: with nobody reading, writers go on at once; what does not fit is
// dropped and counted, and what arrives is whole lines in order. Once the reader is back, the
// owner hears how many were dropped.
TEST(LogSinkTest, AReaderThatStopsCostsCountedLinesNeverABlockedWriter) {
  const Pipe pipe;
  std::atomic<uint64_t> reported{0};
  constexpr size_t kLimit = 16 * 1024;
  LogSink sink(pipe.writer.get(), kLimit, "test", [&](uint64_t n) { reported += n; });
  constexpr size_t kLines = 5000;  // 505,000 bytes: past the pipe and the queue many times over
  for (size_t i = 0; i < kLines; ++i) sink.write(numberedLine(i));
  const LogSink::Stats stalled = sink.stats();
  EXPECT_LE(stalled.queuedBytes, kLimit);
  EXPECT_EQ(stalled.queueLimit, kLimit);
  // At most the pipe and the queue's worth got anywhere.
  EXPECT_GE(stalled.droppedLines, kLines - (kPipeSize + kLimit) / 101 - 1);

  std::string read;
  ASSERT_TRUE(eventually([&] {
    read += pipe.drain();
    return sink.stats().queuedBytes == 0;
  }));
  // A line written after the drops: once it is out, every drop gets reported.
  sink.write(numberedLine(kLines));
  const std::string last = numberedLine(kLines) + "\n";
  const auto lastIsOut = [&] {
    return read.size() >= last.size() &&
           read.compare(read.size() - last.size(), last.size(), last) == 0;
  };
  ASSERT_TRUE(eventually([&] {
    read += pipe.drain();
    return lastIsOut() && reported.load() == sink.stats().droppedLines;
  })) << reported.load()
      << " of " << sink.stats().droppedLines << " drops reported";
  const std::vector<size_t> numbers = numbersIn(read);
  ASSERT_FALSE(numbers.empty());
  EXPECT_EQ(numbers.front(), 0u);
  EXPECT_EQ(numbers.back(), kLines);
  for (size_t i = 1; i < numbers.size(); ++i) ASSERT_LT(numbers[i - 1], numbers[i]);
  EXPECT_EQ(numbers.size() + sink.stats().droppedLines, kLines + 1);
}

TEST(LogSinkTest, CloseKeepsItsDeadlineWithAReaderThatNeverReads) {
  const Pipe pipe;
  auto sink = std::make_unique<LogSink>(pipe.writer.get(), 1 << 20, "test");
  for (size_t i = 0; i < 1000; ++i) sink->write(numberedLine(i));
  const auto started = std::chrono::steady_clock::now();
  sink->close(100ms);
  // Bounded rather than timed: a close that waited for the reader would never return.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  const LogSink::Stats closed = sink->stats();
  EXPECT_EQ(closed.queuedBytes, 0u);
  const std::vector<size_t> numbers = numbersIn(pipe.drain());
  EXPECT_EQ(numbers.size() + closed.droppedLines, 1000u);
  EXPECT_LT(numbers.size(), 1000u);
}

TEST(LogSinkTest, CloseWritesWhatIsQueuedWhenTheReaderReads) {
  const Pipe pipe;
  BackgroundReader reader(pipe);
  LogSink sink(pipe.writer.get(), 1 << 20, "test");
  for (size_t i = 0; i < 3000; ++i) sink.write(numberedLine(i));
  sink.close(60s);  // a deadline that only a hang would reach
  EXPECT_EQ(numbersIn(reader.finish()).size(), 3000u);
  EXPECT_EQ(sink.stats().droppedLines, 0u);
}

// Two sinks on one pipe that nobody reads (a daemon run as `evgate 2>&1 | shipper` whose
// shipper stalls): both see room, one takes it; the other's write must not block for good, so
// both closes keep their deadlines. The pipe's own description stays blocking.
TEST(LogSinkTest, TwoSinksOnOneStalledPipeBothClose) {
  const Pipe pipe;
  const int flagsBefore = ::fcntl(pipe.writer.get(), F_GETFL);
  LogSink first(pipe.writer.get(), 1 << 20, "first");
  LogSink second(pipe.writer.get(), 1 << 20, "second");
  EXPECT_EQ(::fcntl(pipe.writer.get(), F_GETFL), flagsBefore);
  for (size_t i = 0; i < 500; ++i) {
    first.write(numberedLine(i));
    second.write(numberedLine(i));
  }
  const auto started = std::chrono::steady_clock::now();
  first.close(100ms);
  second.close(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);  // bounded, not timed
  const std::string read = pipe.drain();
  EXPECT_LE(read.size(), kPipeSize);
  EXPECT_EQ(splitLines(read).size() + first.stats().droppedLines + second.stats().droppedLines,
            1000u);
}

// A line longer than the pipe that nobody reads: a blocking write(2) would take a page of it
// and wait for good; the sink's write takes what fits and close() keeps its deadline.
TEST(LogSinkTest, ALineLongerThanAStalledPipeDoesNotHoldUpClose) {
  const Pipe pipe;
  LogSink sink(pipe.writer.get(), 1 << 20, "test");
  sink.write(std::string(3 * kPipeSize, 'x'));
  const auto started = std::chrono::steady_clock::now();
  sink.close(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);  // bounded, not timed
  EXPECT_EQ(sink.stats().droppedLines, 1u);
  EXPECT_EQ(pipe.drain(), std::string(kPipeSize, 'x'));
}

// A socket that is not read (stdout handed over as a socket, as systemd does for the journal):
// the writes do not block, close keeps its deadline, and what got through is whole lines.
TEST(LogSinkTest, ASocketNobodyReadsNeverBlocksTheSink) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0) << std::strerror(errno);
  const UniqueFd mine(fds[0]);
  const UniqueFd peer(fds[1]);
  LogSink sink(mine.get(), 1 << 20, "test");
  constexpr size_t kLines = 20000;  // 2 MB: past any socket buffer
  for (size_t i = 0; i < kLines; ++i) sink.write(numberedLine(i));
  const auto started = std::chrono::steady_clock::now();
  sink.close(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);  // bounded, not timed
  std::string read;
  char buf[65536];
  for (ssize_t n; (n = ::recv(peer.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
    read.append(buf, static_cast<size_t>(n));
  }
  const std::vector<size_t> numbers = numbersIn(read);
  EXPECT_GT(sink.stats().droppedLines, 0u);
  EXPECT_EQ(numbers.size() + sink.stats().droppedLines, kLines);
  for (size_t i = 0; i < numbers.size(); ++i) ASSERT_EQ(numbers[i], i);
}

TEST(LogSinkTest, AfterCloseAWriteGoesStraightToTheFd) {
  const Pipe pipe;
  LogSink sink(pipe.writer.get(), 1 << 20, "test");
  sink.close();
  sink.write("after close");
  EXPECT_EQ(pipe.drain(), "after close\n");
  EXPECT_EQ(sink.stats().droppedLines, 0u);
}

// A line never shares a write with part of another, so another writer of the same pipe (a
// library that logs to stderr itself) cannot split one: every line read back is whole.
TEST(LogSinkTest, AnotherWriterOfThePipeNeverSplitsALine) {
  const Pipe pipe;
  BackgroundReader reader(pipe);
  constexpr size_t kSize = 700;  // five lines fill a PIPE_BUF write but for 596 bytes
  const std::string foreign = std::string(kSize, 'x') + "\n";
  LogSink sink(pipe.writer.get(), 8 << 20, "test");
  std::thread other([&] {
    for (int i = 0; i < 2000; ++i) {
      EXPECT_EQ(::write(pipe.writer.get(), foreign.data(), foreign.size()),
                static_cast<ssize_t>(foreign.size()));
    }
  });
  for (size_t i = 0; i < 4000; ++i) sink.write(numberedLine(i, kSize));
  other.join();
  EXPECT_TRUE(sink.flush(60s));
  sink.close();
  const std::string read = reader.finish();
  std::string own;
  size_t foreignLines = 0;
  for (const std::string& line : splitLines(read)) {
    if (line == foreign.substr(0, kSize)) {
      ++foreignLines;
    } else {
      own += line + "\n";
    }
  }
  EXPECT_EQ(foreignLines, 2000u);
  const std::vector<size_t> numbers = numbersIn(own, kSize);
  ASSERT_EQ(numbers.size(), 4000u);
  for (size_t i = 0; i < numbers.size(); ++i) ASSERT_EQ(numbers[i], i);
}

TEST(LogSinkTest, AWriteThatFailsCountsItsLinesAsDropped) {
  (void)::signal(SIGPIPE, SIG_IGN);  // the daemon's disposition: EPIPE, not death
  Pipe pipe;
  pipe.reader = UniqueFd();  // nobody will ever read
  LogSink sink(pipe.writer.get(), 1 << 20, "test");
  for (size_t i = 0; i < 10; ++i) sink.write(numberedLine(i));
  EXPECT_TRUE(sink.flush(10s));
  EXPECT_EQ(sink.stats().droppedLines, 10u);
}

TEST(LogSinkTest, AFileGetsEveryLine) {
  test::TempDir dir("evgate-log-sink");
  const std::string path = dir.file("access.log");
  const UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  ASSERT_GE(file.get(), 0) << std::strerror(errno);
  {
    LogSink sink(file.get(), 1 << 20, "test");
    for (size_t i = 0; i < 5000; ++i) sink.write(numberedLine(i));
    EXPECT_TRUE(sink.flush(10s));
    EXPECT_EQ(sink.stats().droppedLines, 0u);
  }
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<size_t> numbers = numbersIn(text);
  ASSERT_EQ(numbers.size(), 5000u);
  for (size_t i = 0; i < numbers.size(); ++i) ASSERT_EQ(numbers[i], i);
}

}  // namespace
}  // namespace evgate::gateway
