// BufferEvent: libevent's socket bufferevent over AF_UNIX socketpairs and loopback TCP, on every
// poller backend.

#include "reactor/buffer_event.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "reactor/socket_address.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using std::chrono::milliseconds;
using testing::BackendTest;
using testing::loopUntil;
using testing::makeSocketPair;
using testing::SocketPair;
using testing::UniqueFd;

// Records every callback of one BufferEvent; the hooks let a test act from inside a callback.
// Once `freed` is set (by a hook that freed the BufferEvent), any further callback is a bug.
struct Recorder {
  int reads = 0;
  int writes = 0;
  std::vector<short> events;
  std::vector<int> eventErrnos;
  std::vector<size_t> outputAtWrite;  // output().length() seen by each write callback
  bool freed = false;
  std::function<void(BufferEvent&)> onRead;
  std::function<void(BufferEvent&)> onWrite;
  std::function<void(BufferEvent&, short)> onEvent;

  void attach(BufferEvent& bev) { bev.setCallbacks(readCb, writeCb, eventCb, this); }

  static void readCb(BufferEvent& bev, void* arg) {
    auto* self = static_cast<Recorder*>(arg);
    EXPECT_FALSE(self->freed) << "read callback after free";
    ++self->reads;
    if (self->onRead) self->onRead(bev);
  }
  static void writeCb(BufferEvent& bev, void* arg) {
    auto* self = static_cast<Recorder*>(arg);
    EXPECT_FALSE(self->freed) << "write callback after free";
    ++self->writes;
    self->outputAtWrite.push_back(bev.output().length());
    if (self->onWrite) self->onWrite(bev);
  }
  static void eventCb(BufferEvent& bev, short what, void* arg) {
    auto* self = static_cast<Recorder*>(arg);
    EXPECT_FALSE(self->freed) << "event callback after free";
    self->events.push_back(what);
    self->eventErrnos.push_back(errno);
    if (self->onEvent) self->onEvent(bev, what);
  }
};

std::string contents(Buffer& buf) {
  std::string s(buf.length(), '\0');
  buf.copyOut(s.data(), s.size());
  return s;
}

// Everything readable on a non-blocking fd right now.
std::string readAvailable(int fd) {
  std::string out;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    out.append(chunk, static_cast<size_t>(n));
  }
  return out;
}

void writeAll(int fd, const std::string& data) {
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
}

size_t kernelReadable(int fd) {
  int n = 0;
  EXPECT_EQ(::ioctl(fd, FIONREAD, &n), 0);
  return static_cast<size_t>(n);
}

bool fdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

// Loops without blocking a fixed number of times: for checking that nothing (more) happens.
void spin(EventBase& base, int passes = 20) {
  for (int i = 0; i < passes; ++i) base.loop(kLoopNonBlock);
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

// A listening TCP socket on 127.0.0.1, port chosen by the kernel.
class TcpListener {
 public:
  TcpListener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {
    address_ = loopback(0);
    socklen_t length = sizeof address_;
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address_), sizeof address_), 0);
    EXPECT_EQ(::listen(fd_.get(), 16), 0);
    EXPECT_EQ(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address_), &length), 0);
  }
  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&address_); }
  socklen_t length() const { return sizeof address_; }
  // A pending connection, or an invalid fd if none is queued yet.
  UniqueFd accept() {
    return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  }

 private:
  UniqueFd fd_;
  sockaddr_in address_;
};

// A loopback port that nothing listens on: bound by the kernel's choice, then released.
sockaddr_in closedPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = loopback(0);
  socklen_t length = sizeof addr;
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  return addr;
}

// An AF_UNIX stream socket bound to a fresh abstract name: connect() to it completes (listening)
// or is refused (not listening) inside the connect() call itself.
struct UnixEndpoint {
  UniqueFd fd;
  sockaddr_un address{};
  socklen_t length = 0;

  explicit UnixEndpoint(bool listening) : fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    static std::atomic<int> counter{0};
    const std::string name =
        "evgate-bev-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
    if (listening) {
      EXPECT_EQ(::listen(fd.get(), 4), 0);
    }
  }
  const sockaddr* sockaddrPtr() const { return reinterpret_cast<const sockaddr*>(&address); }
};

const EventInfo* findEvent(const std::vector<EventInfo>& rows, const std::string& label) {
  for (const EventInfo& row : rows) {
    if (row.label == label) return &row;
  }
  return nullptr;
}

class BufferEventTest : public BackendTest {};

// ---- enablement, reading, writing ------------------------------------------------------------

TEST_P(BufferEventTest, WriteIsEnabledAndReadIsNotByDefault) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  EXPECT_EQ(bev->enabled(), kWrite);

  writeAll(sp.b.get(), "hello");
  spin(base);
  EXPECT_EQ(rec.reads, 0);
  EXPECT_TRUE(bev->input().empty());
  EXPECT_EQ(kernelReadable(sp.a.get()), 5u);

  ASSERT_EQ(bev->enable(kRead), 0);
  EXPECT_EQ(bev->enabled(), kRead | kWrite);
  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 1; }));
  EXPECT_EQ(contents(bev->input()), "hello");

  // Writing needs no enable().
  ASSERT_EQ(bev->write("world", 5), 0);
  std::string got;
  ASSERT_TRUE(loopUntil(base, [&] {
    got += readAvailable(sp.b.get());
    return got.size() == 5;
  }));
  EXPECT_EQ(got, "world");
}

TEST_P(BufferEventTest, ReadCallbackGetsTheData) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  std::string got;
  rec.onRead = [&](BufferEvent& b) {
    char chunk[64];
    const size_t n = b.read(chunk, sizeof chunk);
    got.append(chunk, n);
  };
  rec.attach(*bev);
  bev->enable(kRead);

  writeAll(sp.b.get(), "first");
  ASSERT_TRUE(loopUntil(base, [&] { return got == "first"; }));
  writeAll(sp.b.get(), "second");
  ASSERT_TRUE(loopUntil(base, [&] { return got == "firstsecond"; }));
  EXPECT_EQ(rec.reads, 2);
  EXPECT_TRUE(bev->input().empty());
  EXPECT_TRUE(rec.events.empty());
}

TEST_P(BufferEventTest, WriteCallbackRunsWhenOutputDrainsAndWriteEventGoesIdle) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  const std::string writeLabel = "bufferevent fd " + std::to_string(sp.a.get()) + " write";

  // Appending to output() directly starts the writer too.
  bev->output().append("via output()");
  const auto before = base.dumpEvents();
  const EventInfo* pending = findEvent(before, writeLabel);
  ASSERT_NE(pending, nullptr);
  EXPECT_EQ(pending->state, EventState::kPending);

  ASSERT_TRUE(loopUntil(base, [&] { return rec.writes == 1; }));
  EXPECT_EQ(rec.outputAtWrite, std::vector<size_t>{0});
  EXPECT_EQ(readAvailable(sp.b.get()), "via output()");
  const auto rows = base.dumpEvents();
  const EventInfo* idle = findEvent(rows, writeLabel);
  ASSERT_NE(idle, nullptr);
  EXPECT_EQ(idle->state, EventState::kInitialized);
  spin(base);
  EXPECT_EQ(rec.writes, 1);
}

// libevent: enable(EV_WRITE) adds the write event even with an empty output, so the write
// callback runs once ("drained") and the event is removed again.
TEST_P(BufferEventTest, EnableWriteWithEmptyOutputRunsWriteCallbackOnce) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  spin(base);
  EXPECT_EQ(rec.writes, 0);  // created with writing enabled, but nothing added

  bev->enable(kWrite);
  ASSERT_TRUE(loopUntil(base, [&] { return rec.writes == 1; }));
  spin(base);
  EXPECT_EQ(rec.writes, 1);
}

TEST_P(BufferEventTest, DisabledWriteHoldsOutputUntilEnabled) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  bev->disable(kWrite);
  bev->write("held", 4);
  spin(base);
  EXPECT_EQ(kernelReadable(sp.b.get()), 0u);
  EXPECT_EQ(bev->output().length(), 4u);

  bev->enable(kWrite);
  std::string got;
  ASSERT_TRUE(loopUntil(base, [&] {
    got += readAvailable(sp.b.get());
    return got == "held";
  }));
}

TEST_P(BufferEventTest, WriteBufferMovesChunksWithoutCopying) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  const std::string data = pattern(100000);
  Buffer src;
  src.append(data);
  iovec before[1];
  ASSERT_EQ(src.peek(before), 1u);

  ASSERT_EQ(bev->write(src), 0);
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(bev->output().length(), data.size());
  iovec after[1];
  ASSERT_EQ(bev->output().peek(after), 1u);
  EXPECT_EQ(after[0].iov_base, before[0].iov_base);  // the same chunk, relinked

  std::string got;
  ASSERT_TRUE(loopUntil(base, [&] {
    got += readAvailable(sp.b.get());
    return got.size() == data.size();
  }));
  EXPECT_EQ(got, data);
}

// ---- watermarks --------------------------------------------------------------------------------

TEST_P(BufferEventTest, ReadLowWatermarkHoldsTheCallbackBack) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setWatermark(kRead, 10, 0);
  bev->enable(kRead);

  writeAll(sp.b.get(), "1234");
  ASSERT_TRUE(loopUntil(base, [&] { return bev->input().length() == 4; }));
  spin(base);
  EXPECT_EQ(rec.reads, 0);

  writeAll(sp.b.get(), "567890");
  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 1; }));
  EXPECT_EQ(contents(bev->input()), "1234567890");
}

TEST_P(BufferEventTest, ReadHighWatermarkStopsReadingAndResumesWhenDrained) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  constexpr size_t kHigh = 1000;
  bev->setWatermark(kRead, 0, kHigh);
  bev->enable(kRead);
  const std::string data = pattern(5000);
  writeAll(sp.b.get(), data);

  ASSERT_TRUE(loopUntil(base, [&] { return bev->input().length() == kHigh; }));
  spin(base);
  EXPECT_EQ(bev->input().length(), kHigh);
  EXPECT_EQ(kernelReadable(sp.a.get()), data.size() - kHigh);  // the kernel keeps the rest
  EXPECT_EQ(bev->enabled() & kRead, kRead);                    // suspended, not disabled

  std::string got;
  ASSERT_TRUE(loopUntil(base, [&] {
    EXPECT_LE(bev->input().length(), kHigh);
    got += contents(bev->input());
    bev->input().clear();  // draining below the watermark resumes reading
    return got.size() == data.size();
  }));
  EXPECT_EQ(got, data);
}

// A slow consumer: the peer floods 4 MiB while we do not drain. Our input stays at the high
// watermark, the rest waits in the kernel and in the sender's own output; once we drain,
// everything arrives intact.
TEST_P(BufferEventTest, HighWatermarkBoundsMemoryUnderBackpressure) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto receiver = BufferEvent::create(base, sp.a.get(), 0);
  auto sender = BufferEvent::create(base, sp.b.get(), 0);
  constexpr size_t kHigh = size_t{64} * 1024;
  const std::string data = pattern(size_t{4} * 1024 * 1024);

  Recorder rec;
  bool draining = false;
  size_t maxInput = 0;
  std::string got;
  rec.onRead = [&](BufferEvent& b) {
    maxInput = std::max(maxInput, b.input().length());
    if (!draining) return;
    got += contents(b.input());
    b.input().clear();
  };
  rec.attach(*receiver);
  receiver->setWatermark(kRead, 0, kHigh);
  receiver->enable(kRead);
  sender->write(data.data(), data.size());

  // Run until the sender can no longer write: the socket buffers are full.
  size_t lastOutput = SIZE_MAX;
  ASSERT_TRUE(loopUntil(base, [&] {
    const size_t now = sender->output().length();
    const bool stalled = now == lastOutput && receiver->input().length() == kHigh;
    lastOutput = now;
    return stalled;
  }));
  const int readsAtWatermark = rec.reads;
  spin(base);
  EXPECT_EQ(receiver->input().length(), kHigh);
  EXPECT_EQ(maxInput, kHigh);
  EXPECT_EQ(rec.reads, readsAtWatermark);  // no callback per loop pass while stuck
  EXPECT_GT(sender->output().length(), 0u);
  EXPECT_GT(kernelReadable(sp.a.get()), 0u);

  draining = true;
  got = contents(receiver->input());
  receiver->input().clear();
  ASSERT_TRUE(loopUntil(base, [&] { return got.size() == data.size(); }));
  EXPECT_EQ(maxInput, kHigh);
  EXPECT_TRUE(got == data) << "the stream arrived corrupted";
  EXPECT_TRUE(sender->output().empty());
}

// Our deliberate difference from libevent 2.1.12, which re-runs the read callback endlessly
// while input() sits at the high watermark undrained (one non-blocking pass never returns).
TEST_P(BufferEventTest, ReadCallbackRunsOnceAtHighWatermarkUntilInputChanges) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setWatermark(kRead, 0, 1024);
  bev->enable(kRead);
  writeAll(sp.b.get(), pattern(8192));

  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 1; }));
  spin(base, 100);
  EXPECT_EQ(rec.reads, 1);
  EXPECT_EQ(bev->input().length(), 1024u);

  // The input changes: draining a little lets the next bytes in, and the callback runs again.
  bev->input().drain(100);
  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 2; }));
  EXPECT_EQ(bev->input().length(), 1024u);
  spin(base, 100);
  EXPECT_EQ(rec.reads, 2);
}

TEST_P(BufferEventTest, WriteCallbackRunsAtOrBelowWriteLowWatermark) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setMaxSingleWrite(1000);  // one write per writable event: 5000, 4000, ... 0
  bev->setWatermark(kWrite, 2500, 0);
  const std::string data = pattern(5000);
  bev->write(data.data(), data.size());

  ASSERT_TRUE(loopUntil(base, [&] { return bev->output().empty() && rec.writes == 3; }));
  EXPECT_EQ(rec.outputAtWrite, (std::vector<size_t>{2000, 1000, 0}));
  EXPECT_EQ(readAvailable(sp.b.get()), data);
}

TEST_P(BufferEventTest, LoweringTheHighWatermarkSuspendsAndClearingItResumes) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  bev->enable(kRead);
  writeAll(sp.b.get(), pattern(3000));
  ASSERT_TRUE(loopUntil(base, [&] { return bev->input().length() == 3000; }));

  bev->setWatermark(kRead, 0, 1000);  // below what input() holds: reading stops
  writeAll(sp.b.get(), pattern(500));
  spin(base);
  EXPECT_EQ(bev->input().length(), 3000u);
  EXPECT_EQ(kernelReadable(sp.a.get()), 500u);

  bev->setWatermark(kRead, 0, 0);  // unlimited again
  ASSERT_TRUE(loopUntil(base, [&] { return bev->input().length() == 3500; }));
}

// ---- end of stream and errors ------------------------------------------------------------------

TEST_P(BufferEventTest, PeerCloseReportsReadingEofAndDisablesReading) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->enable(kRead);
  writeAll(sp.b.get(), "bye");
  sp.b.reset();

  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kReading | BufferEvent::kEof});
  EXPECT_EQ(contents(bev->input()), "bye");
  EXPECT_EQ(bev->enabled() & kRead, 0);
  spin(base);
  EXPECT_EQ(rec.events.size(), 1u);
}

TEST_P(BufferEventTest, WritingToAClosedPeerReportsWritingError) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  sp.b.reset();
  bev->write("lost", 4);  // MSG_NOSIGNAL: EPIPE, not SIGPIPE

  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kWriting | BufferEvent::kError});
  EXPECT_TRUE(bev->socketError() == EPIPE || bev->socketError() == ECONNRESET)
      << bev->socketError();
  EXPECT_EQ(rec.eventErrnos[0], bev->socketError());
  EXPECT_EQ(bev->enabled() & kWrite, 0);
  EXPECT_EQ(rec.writes, 0);
}

// ---- timeouts
// ------------------------------------------------------------------------------------

TEST_P(BufferEventTest, ReadTimeoutReportsReadingTimeout) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setTimeouts(milliseconds(50), std::nullopt);
  const auto start = std::chrono::steady_clock::now();
  bev->enable(kRead);

  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(45));
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kReading | BufferEvent::kTimeout});
  EXPECT_EQ(bev->enabled() & kRead, 0);
}

TEST_P(BufferEventTest, DataInTimeRestartsTheReadTimeout) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  size_t received = 0;
  rec.onRead = [&](BufferEvent& b) {
    received += b.input().length();
    b.input().clear();
  };
  rec.attach(*bev);
  bev->setTimeouts(milliseconds(150), std::nullopt);
  bev->enable(kRead);
  const auto start = std::chrono::steady_clock::now();
  // A byte every 30 ms for 300 ms: twice the timeout, yet it never fires.
  for (int i = 1; i <= 10; ++i) {
    loopUntil(base,
              [&] { return std::chrono::steady_clock::now() - start >= milliseconds(30 * i); });
    writeAll(sp.b.get(), "x");
  }
  ASSERT_TRUE(loopUntil(base, [&] { return received == 10; }));
  EXPECT_TRUE(rec.events.empty());

  bev->setTimeouts(std::nullopt, std::nullopt);  // cleared on the pending event
  loopUntil(
      base, [] { return false; }, milliseconds(250));
  EXPECT_TRUE(rec.events.empty());
}

// A persistent event remembers its last timeout across del(); clearing the timeout while reading
// is disabled must still keep it from coming back after the next read.
TEST_P(BufferEventTest, ReadTimeoutClearedWhileDisabledStaysCleared) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setTimeouts(milliseconds(50), std::nullopt);
  bev->enable(kRead);
  bev->disable(kRead);
  bev->setTimeouts(std::nullopt, std::nullopt);
  bev->enable(kRead);
  writeAll(sp.b.get(), "x");
  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 1; }));
  loopUntil(
      base, [] { return false; }, milliseconds(150));
  EXPECT_TRUE(rec.events.empty());
  EXPECT_EQ(bev->enabled() & kRead, kRead);
}

TEST_P(BufferEventTest, WriteTimeoutReportsWritingTimeoutWhenThePeerStopsReading) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.attach(*bev);
  bev->setTimeouts(std::nullopt, milliseconds(50));
  const std::string data =
      pattern(size_t{8} * 1024 * 1024);  // far more than the socket buffers hold
  const auto start = std::chrono::steady_clock::now();
  bev->write(data.data(), data.size());

  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(45));
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kWriting | BufferEvent::kTimeout});
  EXPECT_EQ(bev->enabled() & kWrite, 0);
  EXPECT_GT(bev->output().length(), 0u);
}

// ---- connect
// -------------------------------------------------------------------------------------

TEST_P(BufferEventTest, ConnectOverTcpAllocatesASocketAndReportsConnected) {
  EventBase base(options());
  TcpListener listener;
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  Recorder rec;
  std::string got;
  rec.onRead = [&](BufferEvent& b) {
    got += contents(b.input());
    b.input().clear();
  };
  rec.attach(*bev);
  ASSERT_EQ(bev->enable(kRead), 0);
  bev->write("ping", 4);  // queued before the connect; sent once connected

  ASSERT_EQ(bev->connect(listener.address(), listener.length()), 0);
  EXPECT_GE(bev->fd(), 0);
  EXPECT_TRUE(rec.events.empty());  // never reported inline

  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty() && rec.writes == 1; }));
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kConnected});

  UniqueFd server;
  std::string atServer;
  ASSERT_TRUE(loopUntil(base, [&] {
    if (server.get() < 0) server = listener.accept();
    if (server.get() >= 0) atServer += readAvailable(server.get());
    return atServer == "ping";
  }));
  writeAll(server.get(), "pong");
  ASSERT_TRUE(loopUntil(base, [&] { return got == "pong"; }));
  bev->write("again", 5);
  ASSERT_TRUE(loopUntil(base, [&] {
    atServer += readAvailable(server.get());
    return atServer == "pingagain";
  }));
  EXPECT_EQ(rec.events.size(), 1u);
}

TEST_P(BufferEventTest, ConnectedWithNothingToWriteDoesNotRunWriteCallback) {
  EventBase base(options());
  TcpListener listener;
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  Recorder rec;
  rec.attach(*bev);
  ASSERT_EQ(bev->connect(listener.address(), listener.length()), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  spin(base);
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kConnected});
  EXPECT_EQ(rec.writes, 0);
}

TEST_P(BufferEventTest, ConnectRefusedReportsErrorFromTheLoop) {
  EventBase base(options());
  const sockaddr_in closed = closedPort();
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  Recorder rec;
  rec.attach(*bev);
  bev->enable(kRead | kWrite);

  ASSERT_EQ(bev->connect(reinterpret_cast<const sockaddr*>(&closed), sizeof closed), 0);
  EXPECT_TRUE(rec.events.empty());
  ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
  spin(base);
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kError});
  EXPECT_EQ(bev->socketError(), ECONNREFUSED);
  EXPECT_EQ(rec.eventErrnos[0], ECONNREFUSED);
  EXPECT_EQ(rec.reads, 0);
  EXPECT_EQ(rec.writes, 0);
  EXPECT_EQ(bev->enabled(), kRead | kWrite);  // as libevent: the events go, the flags stay
}

// AF_UNIX connects finish inside connect(): refused (bound, not listening) and accepted alike are
// still reported from the loop.
TEST_P(BufferEventTest, ImmediateConnectOutcomesAreReportedFromTheLoop) {
  EventBase base(options());
  {
    UnixEndpoint notListening(false);
    auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
    Recorder rec;
    rec.attach(*bev);
    ASSERT_EQ(bev->connect(notListening.sockaddrPtr(), notListening.length), 0);
    EXPECT_TRUE(rec.events.empty());
    ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
    EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kError});
    EXPECT_EQ(bev->socketError(), ECONNREFUSED);
  }
  {
    UnixEndpoint listening(true);
    auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
    Recorder rec;
    rec.attach(*bev);
    ASSERT_EQ(bev->connect(listening.sockaddrPtr(), listening.length), 0);
    EXPECT_TRUE(rec.events.empty());
    ASSERT_TRUE(loopUntil(base, [&] { return !rec.events.empty(); }));
    spin(base);
    EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kConnected});
    EXPECT_EQ(rec.writes, 0);
  }
}

TEST_P(BufferEventTest, ConnectThatFailsAtOnceReturnsMinusOneAndReportsNothing) {
  EventBase base(options());
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  Recorder rec;
  rec.attach(*bev);
  const sockaddr_in addr = loopback(80);
  ASSERT_EQ(bev->connect(reinterpret_cast<const sockaddr*>(&addr), 4), -1);  // bad length
  EXPECT_EQ(bev->socketError(), EINVAL);
  EXPECT_EQ(bev->fd(), -1);  // the allocated socket was closed again
  spin(base);
  EXPECT_TRUE(rec.events.empty());
}

TEST_P(BufferEventTest, SetFdMovesTheEventsAndLabelsThem) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, -1, 0);
  Recorder rec;
  rec.attach(*bev);
  EXPECT_EQ(bev->enable(kRead), 0);  // fine before there is an fd, as in libevent
  ASSERT_EQ(bev->setFd(sp.a.get()), 0);
  const std::string prefix = "bufferevent fd " + std::to_string(sp.a.get());
  const auto rows = base.dumpEvents();
  const EventInfo* read = findEvent(rows, prefix + " read");
  ASSERT_NE(read, nullptr);
  EXPECT_EQ(read->state, EventState::kPending);
  ASSERT_NE(findEvent(rows, prefix + " write"), nullptr);

  writeAll(sp.b.get(), "x");
  ASSERT_TRUE(loopUntil(base, [&] { return rec.reads == 1; }));
  EXPECT_EQ(rec.writes, 1);  // libevent re-adds the enabled write event, which finds nothing to do
}

TEST_P(BufferEventTest, SetLabelNamesBothEventsAndSurvivesSetFd) {
  EventBase base(options());
  SocketPair first = makeSocketPair();
  SocketPair second = makeSocketPair();
  auto bev = BufferEvent::create(base, first.a.get(), 0);
  bev->setLabel("flow 7 client");
  ASSERT_EQ(bev->enable(kRead), 0);
  auto rows = base.dumpEvents();
  const EventInfo* read = findEvent(rows, "flow 7 client read");
  ASSERT_NE(read, nullptr);
  EXPECT_EQ(read->fd, first.a.get());
  EXPECT_EQ(read->state, EventState::kPending);
  ASSERT_NE(findEvent(rows, "flow 7 client write"), nullptr);
  EXPECT_EQ(findEvent(rows, "bufferevent fd " + std::to_string(first.a.get()) + " read"), nullptr);

  // A new fd (as connect() gives one) keeps the owner's label.
  ASSERT_EQ(bev->setFd(second.a.get()), 0);
  rows = base.dumpEvents();
  read = findEvent(rows, "flow 7 client read");
  ASSERT_NE(read, nullptr);
  EXPECT_EQ(read->fd, second.a.get());
  ASSERT_NE(findEvent(rows, "flow 7 client write"), nullptr);

  // Empty: the default labels again.
  bev->setLabel("");
  rows = base.dumpEvents();
  const std::string prefix = "bufferevent fd " + std::to_string(second.a.get());
  EXPECT_NE(findEvent(rows, prefix + " read"), nullptr);
  EXPECT_NE(findEvent(rows, prefix + " write"), nullptr);
  EXPECT_EQ(findEvent(rows, "flow 7 client read"), nullptr);
}

TEST_P(BufferEventTest, SetLabelBeforeConnectLabelsTheAllocatedSocketsEvents) {
  EventBase base(options());
  UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const SocketAddress loopback = SocketAddress::loopbackV4();
  ASSERT_EQ(::bind(server.get(), loopback.data(), loopback.length()), 0);
  ASSERT_EQ(::listen(server.get(), 4), 0);
  const SocketAddress to = *SocketAddress::localOf(server.get());
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  bev->setLabel("flow 9 upstream");
  ASSERT_EQ(bev->connect(to.data(), to.length()), 0);
  ASSERT_GE(bev->fd(), 0);
  const auto rows = base.dumpEvents();
  const EventInfo* write = findEvent(rows, "flow 9 upstream write");
  ASSERT_NE(write, nullptr);
  EXPECT_EQ(write->fd, bev->fd());
  EXPECT_EQ(write->state, EventState::kPending);  // connecting
  EXPECT_NE(findEvent(rows, "flow 9 upstream read"), nullptr);
}

// ---- freeing
// -------------------------------------------------------------------------------------

TEST_P(BufferEventTest, FreeFromReadCallbackStopsEverything) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.onRead = [&](BufferEvent& b) {
    EXPECT_EQ(contents(b.input()), "data");
    bev.reset();
    rec.freed = true;
  };
  rec.attach(*bev);
  bev->enable(kRead);
  bev->write("out", 3);  // the write event is pending in the same pass
  writeAll(sp.b.get(), "data");
  // An EOF waits behind the data; the peer still reads, so the write (which runs first: the
  // newest event on an fd goes first, as in libevent) succeeds.
  ASSERT_EQ(::shutdown(sp.b.get(), SHUT_WR), 0);

  ASSERT_TRUE(loopUntil(base, [&] { return rec.freed; }));
  spin(base);
  EXPECT_EQ(rec.reads, 1);
  EXPECT_TRUE(rec.events.empty());
  EXPECT_TRUE(fdIsOpen(sp.a.get()));  // not ours to close
}

TEST_P(BufferEventTest, FreeFromWriteCallbackStopsEverything) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.release(), BufferEvent::kCloseOnFree);
  Recorder rec;
  rec.onWrite = [&](BufferEvent&) {
    bev.reset();
    rec.freed = true;
  };
  rec.attach(*bev);
  bev->enable(kRead);
  bev->write("last words", 10);
  writeAll(sp.b.get(), "incoming");

  ASSERT_TRUE(loopUntil(base, [&] { return rec.freed; }));
  spin(base);
  EXPECT_EQ(rec.writes, 1);
  EXPECT_TRUE(rec.events.empty());
  // Freed with kCloseOnFree: the peer gets the bytes, then EOF.
  std::string got;
  ASSERT_TRUE(loopUntil(base, [&] {
    char chunk[64];
    const ssize_t n = ::read(sp.b.get(), chunk, sizeof chunk);
    if (n > 0) got.append(chunk, static_cast<size_t>(n));
    return n == 0;
  }));
  EXPECT_EQ(got, "last words");
}

TEST_P(BufferEventTest, FreeFromEventCallbackOnEof) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  Recorder rec;
  rec.onEvent = [&](BufferEvent&, short) {
    bev.reset();
    rec.freed = true;
  };
  rec.attach(*bev);
  bev->enable(kRead);
  sp.b.reset();

  ASSERT_TRUE(loopUntil(base, [&] { return rec.freed; }));
  spin(base);
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kReading | BufferEvent::kEof});
}

// The connect handler goes on to write after kConnected; freeing in that callback must stop it.
TEST_P(BufferEventTest, FreeFromConnectedCallbackSkipsTheQueuedWrite) {
  EventBase base(options());
  TcpListener listener;
  auto bev = BufferEvent::create(base, -1, BufferEvent::kCloseOnFree);
  Recorder rec;
  rec.onEvent = [&](BufferEvent&, short) {
    bev.reset();
    rec.freed = true;
  };
  rec.attach(*bev);
  bev->write("never sent", 10);
  ASSERT_EQ(bev->connect(listener.address(), listener.length()), 0);

  ASSERT_TRUE(loopUntil(base, [&] { return rec.freed; }));
  spin(base);
  EXPECT_EQ(rec.events, std::vector<short>{BufferEvent::kConnected});
  EXPECT_EQ(rec.writes, 0);
  UniqueFd server;
  ASSERT_TRUE(loopUntil(base, [&] {
    if (server.get() < 0) server = listener.accept();
    return server.get() >= 0;
  }));
  char c;
  ASSERT_TRUE(loopUntil(base, [&] { return ::read(server.get(), &c, 1) == 0; }));  // EOF only
}

TEST_P(BufferEventTest, FreeOutsideCallbacksDeletesAtOnce) {
  EventBase base(options());
  SocketPair sp = makeSocketPair();
  auto bev = BufferEvent::create(base, sp.a.get(), 0);
  bev->enable(kRead);
  bev->write("pending", 7);
  bev.reset();
  for (const EventInfo& row : base.dumpEvents()) {
    EXPECT_EQ(row.label.find("bufferevent"), std::string::npos) << row.label;
  }
  EXPECT_EQ(base.eventCount(), 0u);
}

TEST_P(BufferEventTest, CloseOnFreeClosesTheFdAndItsAbsenceKeepsItOpen) {
  EventBase base(options());
  SocketPair owned = makeSocketPair();
  const int ownedFd = owned.a.release();
  auto closing = BufferEvent::create(base, ownedFd, BufferEvent::kCloseOnFree);
  closing.reset();
  EXPECT_FALSE(fdIsOpen(ownedFd));
  char c;
  EXPECT_EQ(::read(owned.b.get(), &c, 1), 0);  // the peer sees EOF

  SocketPair kept = makeSocketPair();
  auto keeping = BufferEvent::create(base, kept.a.get(), 0);
  keeping.reset();
  EXPECT_TRUE(fdIsOpen(kept.a.get()));
  writeAll(kept.a.get(), "still usable");
  EXPECT_EQ(readAvailable(kept.b.get()), "still usable");
}

EVGATE_INSTANTIATE_BACKENDS(BufferEventTest);

}  // namespace
}  // namespace evgate::reactor
