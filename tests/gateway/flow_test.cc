// Flow over real loopback sockets: one EventBase in the test thread runs the gateway's listener
// (accepting into Flow::start), the flows, the fake upstream servers and the test clients.

#include "gateway/flow.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "gateway/proxy_protocol.h"
#include "reactor/buffer_event.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"
#include "tests/gateway/blackhole.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::gateway {
namespace {

using testing::Blackhole;

using namespace std::chrono_literals;
using reactor::BufferEvent;
using reactor::EventBase;
using reactor::Listener;
using reactor::SocketAddress;
using reactor::testing::loopUntil;
using reactor::testing::UniqueFd;
using stats::ConnectResult;

constexpr size_t kKiB = 1024;
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv(uint64_t h, const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= kFnvPrime;
  }
  return h;
}

uint64_t hashOf(const std::string& s) { return fnv(kFnvOffset, s.data(), s.size()); }

std::string randomPayload(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
  }
  return s;
}

// One end of a test connection (a client of the gateway, or an upstream server's accepted
// connection): sends a payload with its own flow control, hashes what it receives, and can echo,
// half-close, reset or stop reading on demand.
class TestConn {
 public:
  static constexpr size_t kWindow = 1 << 20;

  TestConn(EventBase& base, int fd)
      : bev_(BufferEvent::create(base, fd, BufferEvent::kCloseOnFree)) {
    bev_->setCallbacks(onRead, onWrite, onEvent, this);
    bev_->setWatermark(reactor::kWrite, kWindow / 4, 0);
    bev_->setMaxSingleRead(64 * kKiB);
    bev_->enable(reactor::kRead);
  }

  // Configuration.
  bool echo = false;           // write back what arrives
  bool shutdownOnEof = false;  // after the peer's EOF: flush, then shutdown(SHUT_WR)
  bool sendOnEof = false;      // start sending the payload only after the peer's EOF
  bool shutdownAfterPayload = false;
  size_t resetAfterBytes = SIZE_MAX;  // RST once this many bytes arrived

  // State.
  uint64_t hash = kFnvOffset;
  size_t received = 0;
  bool connected = false;
  bool eof = false;
  bool error = false;
  int err = 0;
  bool shutdownSent = false;
  bool resetDone = false;
  size_t sent = 0;  // bytes handed to the socket buffer so far (of the payload)

  BufferEvent* bev() { return bev_.get(); }

  void connectTo(const SocketAddress& address) {
    ASSERT_EQ(bev_->connect(address.data(), address.length()), 0);
  }

  void send(const std::string& payload, bool thenShutdown) {
    payload_ = &payload;
    shutdownAfterPayload = thenShutdown;
    pump();
  }

  void write(std::string_view s) { bev_->write(s.data(), s.size()); }

  void shutdownWhenFlushed() {
    wantShutdown_ = true;
    maybeShutdown();
  }

  void pauseReading() { bev_->disable(reactor::kRead); }
  void resumeReading() { bev_->enable(reactor::kRead); }

  void reset() {
    const linger lg{1, 0};
    ::setsockopt(bev_->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    bev_.reset();
    resetDone = true;
  }

  size_t unsent() const { return payload_ != nullptr ? payload_->size() - sent : 0; }

 private:
  static void onRead(BufferEvent& bev, void* arg) { static_cast<TestConn*>(arg)->handleRead(bev); }
  static void onWrite(BufferEvent&, void* arg) { static_cast<TestConn*>(arg)->handleWrite(); }
  static void onEvent(BufferEvent&, short what, void* arg) {
    static_cast<TestConn*>(arg)->handleEvent(what);
  }

  void handleRead(BufferEvent& bev) {
    if (echo) {
      received += bev.input().length();
      bev.write(bev.input());
      if (bev.output().length() > 4 * kWindow) {
        echoPaused_ = true;
        bev.disable(reactor::kRead);
      }
      return;
    }
    char scratch[64 * 1024];
    size_t n;
    while ((n = bev.input().remove(scratch, sizeof scratch)) > 0) {
      hash = fnv(hash, scratch, n);
      received += n;
    }
    if (received >= resetAfterBytes && !resetDone) reset();
  }

  void handleWrite() {
    if (echoPaused_ && bev_->output().length() <= kWindow) {
      echoPaused_ = false;
      bev_->enable(reactor::kRead);
    }
    pump();
    maybeShutdown();
  }

  void handleEvent(short what) {
    if ((what & BufferEvent::kConnected) != 0) {
      connected = true;
      return;
    }
    if ((what & BufferEvent::kEof) != 0 && (what & BufferEvent::kReading) != 0) {
      eof = true;
      if (echo || shutdownOnEof) shutdownWhenFlushed();
      if (sendOnEof) {
        sendOnEof = false;
        pump();
      }
      return;
    }
    error = true;
    err = errno;
  }

  void pump() {
    if (payload_ == nullptr || sendOnEof || !bev_) return;
    while (sent < payload_->size() && bev_->output().length() < kWindow) {
      const size_t n = std::min<size_t>(256 * kKiB, payload_->size() - sent);
      bev_->write(payload_->data() + sent, n);
      sent += n;
    }
    if (sent == payload_->size() && shutdownAfterPayload) shutdownWhenFlushed();
  }

  void maybeShutdown() {
    if (!wantShutdown_ || shutdownSent || !bev_ || !bev_->output().empty()) return;
    if (payload_ != nullptr && sent < payload_->size()) return;
    ::shutdown(bev_->fd(), SHUT_WR);
    shutdownSent = true;
  }

  BufferEvent::Ptr bev_;
  const std::string* payload_ = nullptr;
  bool wantShutdown_ = false;
  bool echoPaused_ = false;
};

// A fake upstream: a listener whose accepted connections are TestConns set up by `setup`.
class FakeServer {
 public:
  FakeServer(EventBase& base, std::function<void(TestConn&)> setup)
      : base_(base), setup_(std::move(setup)) {
    listener_ =
        Listener::bind(base, onAccept, this, Listener::kCloseOnFree | Listener::kReuseAddress, -1,
                       SocketAddress::loopbackV4());
    EXPECT_NE(listener_, nullptr);
    address_ = *listener_->localAddress();
  }

  const SocketAddress& address() const { return address_; }
  std::vector<std::unique_ptr<TestConn>>& conns() { return conns_; }
  TestConn& conn(size_t i = 0) { return *conns_.at(i); }
  // The peer (getpeername) of each accepted connection, in accept order.
  const std::vector<SocketAddress>& peers() const { return peers_; }

 private:
  static void onAccept(Listener&, int fd, const sockaddr*, socklen_t, void* arg) {
    auto* self = static_cast<FakeServer*>(arg);
    self->peers_.push_back(SocketAddress::peerOf(fd).value_or(SocketAddress()));
    auto conn = std::make_unique<TestConn>(self->base_, fd);
    if (self->setup_) self->setup_(*conn);
    self->conns_.push_back(std::move(conn));
  }

  EventBase& base_;
  std::function<void(TestConn&)> setup_;
  std::unique_ptr<Listener> listener_;
  SocketAddress address_;
  std::vector<std::unique_ptr<TestConn>> conns_;
  std::vector<SocketAddress> peers_;
};

class FakePicker : public UpstreamPicker {
 public:
  std::vector<SocketAddress> endpoints;
  Duration timeout = 2s;
  uint32_t attempts = 3;
  std::vector<std::pair<SocketAddress, ConnectResult>> results;
  std::vector<Duration> connectTimes;
  std::vector<SocketAddress> ended;
  std::vector<SocketAddress> pickedFor;  // the client address of every pick
  ProxyProtocol send = ProxyProtocol::kNone;
  std::vector<SocketAddress> sources;  // nextSource(): those of the family, in turn
  size_t sourceTurn = 0;

  std::optional<SocketAddress> pick(const SocketAddress& client,
                                    std::span<const SocketAddress> tried) override {
    pickedFor.push_back(client);
    for (const SocketAddress& e : endpoints) {
      if (std::find(tried.begin(), tried.end(), e) == tried.end()) return e;
    }
    return std::nullopt;
  }
  void onConnectResult(const SocketAddress& endpoint, ConnectResult result,
                       Duration elapsed) override {
    results.emplace_back(endpoint, result);
    connectTimes.push_back(elapsed);
  }
  void onFlowEnded(const SocketAddress& endpoint) override { ended.push_back(endpoint); }
  Duration connectTimeout() const override { return timeout; }
  uint32_t maxConnectAttempts() const override { return attempts; }
  ProxyProtocol sendProxyProtocol() const override { return send; }
  const SocketAddress* nextSource(int family) override {
    for (size_t i = 0; i < sources.size(); ++i) {
      const SocketAddress& source = sources[sourceTurn++ % sources.size()];
      if (source.family() == family) return &source;
    }
    return nullptr;
  }
};

struct ClosedFlow {
  uint64_t id;
  CloseReason reason;
  uint64_t bytesIn;
  uint64_t bytesOut;
  std::optional<SocketAddress> upstream;
  std::string logLine;
  std::chrono::steady_clock::time_point at;
};

class Registry : public FlowObserver {
 public:
  std::map<uint64_t, Flow*> live;
  std::vector<ClosedFlow> closed;

  void onFlowClosed(Flow& flow) override {
    EXPECT_EQ(flow.state(), Flow::State::kClosed);
    EXPECT_EQ(flow.bufferedBytes(), 0u);
    closed.push_back({flow.id(), flow.closeReason(), flow.bytesFromClient(),
                      flow.bytesFromUpstream(), flow.upstream(),
                      accessLogLine(flow, std::chrono::system_clock::now()),
                      std::chrono::steady_clock::now()});
    live.erase(flow.id());
  }
};

// A port on 127.0.0.1 with nothing listening: connects are refused.
SocketAddress refusedAddress() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  SocketAddress a = SocketAddress::loopbackV4();
  EXPECT_EQ(::bind(fd.get(), a.data(), a.length()), 0);
  return *SocketAddress::localOf(fd.get());
}

class FlowTest : public ::testing::Test {
 protected:
  // How the flows move bulk bytes; the production default unless a suite says otherwise.
  virtual SpliceMode spliceMode() const { return SpliceMode::kAuto; }

  void SetUp() override {
    settings_.pipes = &pipes_;
    settings_.splice = spliceMode();
    settings_.bufferLimit = 64 * kKiB;
    settings_.idleTimeout = 30s;
    settings_.halfCloseTimeout = 30s;
    gateway_ =
        Listener::bind(base_, onAccept, this, Listener::kCloseOnFree | Listener::kReuseAddress, -1,
                       SocketAddress::loopbackV4());
    ASSERT_NE(gateway_, nullptr);
    gatewayAddress_ = *gateway_->localAddress();
  }

  void TearDown() override {
    while (!registry_.live.empty()) registry_.live.begin()->second->close(CloseReason::kDrain);
    clients_.clear();
    servers_.clear();
    gateway_.reset();
    base_.loop(reactor::kLoopNonBlock);
  }

  static void onAccept(Listener&, int fd, const sockaddr* peer, socklen_t peerLen, void* arg) {
    auto* self = static_cast<FlowTest*>(arg);
    // A flow keeps its settings by reference: each gets the fixture's as they are now.
    const FlowSettings& settings = self->flowSettings_.emplace_back(self->settings_);
    Flow* flow =
        Flow::start(self->base_, ++self->nextId_, fd, SocketAddress::fromSockaddr(peer, peerLen),
                    settings, self->picker_, self->registry_);
    self->registry_.live[flow->id()] = flow;
  }

  FakeServer& server(std::function<void(TestConn&)> setup) {
    servers_.push_back(std::make_unique<FakeServer>(base_, std::move(setup)));
    return *servers_.back();
  }

  TestConn& client() {
    clients_.push_back(std::make_unique<TestConn>(base_, -1));
    clients_.back()->connectTo(gatewayAddress_);
    return *clients_.back();
  }

  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    return loopUntil(base_, done, limit);
  }

  // Runs the loop for `d` of real time (a deadline, not a sleep: everything keeps flowing).
  void runFor(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    loopUntil(
        base_, [&] { return std::chrono::steady_clock::now() >= until; }, d + 1s);
  }

  Flow* onlyFlow() { return registry_.live.size() == 1 ? registry_.live.begin()->second : nullptr; }

  bool closedCount(size_t n) { return registry_.closed.size() >= n; }

  // Both directions at once: the client sends A and half-closes, the upstream sends B and
  // half-closes; each side receives exactly the other's bytes; the flow ends normally.
  void relayBothWays(size_t size) {
    const std::string a = randomPayload(size, 1);
    const std::string b = randomPayload(size, 2);
    FakeServer& up = server([&](TestConn& c) { c.send(b, true); });
    picker_.endpoints = {up.address()};
    TestConn& cl = client();
    cl.send(a, true);
    ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof && up.conn().eof; }, 60s));
    ASSERT_EQ(up.conns().size(), 1u);
    EXPECT_EQ(cl.received, size);
    EXPECT_EQ(cl.hash, hashOf(b));
    EXPECT_EQ(up.conn().received, size);
    EXPECT_EQ(up.conn().hash, hashOf(a));
    const ClosedFlow& f = registry_.closed[0];
    EXPECT_TRUE(f.reason == CloseReason::kClientEof || f.reason == CloseReason::kUpstreamEof)
        << toString(f.reason);
    EXPECT_EQ(f.bytesIn, size);
    EXPECT_EQ(f.bytesOut, size);
    EXPECT_EQ(f.upstream, up.address());
    EXPECT_EQ(picker_.ended.size(), 1u);
    // A closed flow holds no pipe.
    EXPECT_EQ(pipes_.lent(), 0u);
  }

  // First, so that they outlive every flow.
  PipePool pipes_{64, 8};
  std::deque<FlowSettings> flowSettings_;  // each flow's, from settings_ at its accept
  EventBase base_;
  FakePicker picker_;
  Registry registry_;
  FlowSettings settings_;
  std::unique_ptr<Listener> gateway_;
  SocketAddress gatewayAddress_;
  std::vector<std::unique_ptr<FakeServer>> servers_;
  std::vector<std::unique_ptr<TestConn>> clients_;
  uint64_t nextId_ = 0;
};

// ---- relay -------------------------------------------------------------------------------------

class FlowRelayTest : public FlowTest, public ::testing::WithParamInterface<size_t> {};

// The data-path cases once per splice mode: copied (off), switched by chunk size (auto), and
// spliced from the first byte (always).
class FlowModeTest : public FlowTest, public ::testing::WithParamInterface<SpliceMode> {
 protected:
  SpliceMode spliceMode() const override { return GetParam(); }

  // What a flow held back by a peer that does not read holds at least: half its limit when
  // copying; with splice, what the pipe took before it was full, which depends on how the
  // kernel cut the stream into buffers (a pipe has 16 slots, not a byte count).
  size_t heldBackAtLeast() const {
    return GetParam() == SpliceMode::kOff ? settings_.bufferLimit / 2 : 1;
  }
};

std::string modeName(const ::testing::TestParamInfo<SpliceMode>& info) {
  switch (info.param) {
    case SpliceMode::kAuto:
      return "Auto";
    case SpliceMode::kOff:
      return "Off";
    case SpliceMode::kAlways:
      return "Always";
  }
  return "Unknown";
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

TEST_P(FlowRelayTest, BothDirectionsAtOnceArriveIntact) {
  const size_t size = GetParam();
  // A gibibyte each way takes a few seconds in an optimised build and minutes under a sanitizer,
  // which the smaller sizes already cover.
  if (kSanitized && size > (size_t{64} << 20)) GTEST_SKIP() << "1 GiB runs unsanitized only";
  relayBothWays(size);
}

TEST_P(FlowModeTest, BothDirectionsAtOnceArriveIntact) {
  relayBothWays(size_t{8} << 20);
  if (GetParam() == SpliceMode::kOff) {
    EXPECT_EQ(pipes_.open(), 0u);
  } else {
    EXPECT_GT(pipes_.open(), 0u);  // the bytes went through pipes
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, FlowRelayTest,
                         ::testing::Values(size_t{1024}, size_t{1} << 20, size_t{32} << 20,
                                           size_t{1} << 30));

TEST_P(FlowModeTest, ManyConcurrentFlowsEcho) {
  constexpr size_t kFlows = 200;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  std::vector<std::string> payloads;
  payloads.reserve(kFlows);
  for (size_t i = 0; i < kFlows; ++i) payloads.push_back(randomPayload(16 * kKiB + i * 97, i));
  for (size_t i = 0; i < kFlows; ++i) client().send(payloads[i], true);
  ASSERT_TRUE(runUntil(
      [&] {
        return closedCount(kFlows) &&
               std::all_of(clients_.begin(), clients_.end(), [](auto& c) { return c->eof; });
      },
      60s))
      << registry_.closed.size();
  for (size_t i = 0; i < kFlows; ++i) {
    EXPECT_EQ(clients_[i]->received, payloads[i].size()) << i;
    EXPECT_EQ(clients_[i]->hash, hashOf(payloads[i])) << i;
  }
  for (const ClosedFlow& f : registry_.closed) EXPECT_EQ(f.reason, CloseReason::kClientEof);
  EXPECT_EQ(picker_.ended.size(), kFlows);
}

// ---- half-close --------------------------------------------------------------------------------

TEST_P(FlowModeTest, HalfCloseClientFirstOtherDirectionKeepsFlowing) {
  const std::string reply = randomPayload(1 << 20, 3);
  // The upstream starts answering only after it saw the client's EOF.
  FakeServer& up = server([&](TestConn& c) {
    c.sendOnEof = true;
    c.send(reply, true);
  });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("request");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return !up.conns().empty() && up.conn().eof; }));
  EXPECT_EQ(up.conn().received, 7u);
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(onlyFlow()->state(), Flow::State::kHalfClosed);
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  EXPECT_EQ(cl.hash, hashOf(reply));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kClientEof);
}

TEST_P(FlowModeTest, HalfCloseUpstreamFirstOtherDirectionKeepsFlowing) {
  const std::string upload = randomPayload(1 << 20, 4);
  FakeServer& up = server([](TestConn& c) {
    c.write("banner");
    c.shutdownWhenFlushed();
  });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  ASSERT_TRUE(runUntil([&] { return cl.eof; }));
  EXPECT_EQ(cl.received, 6u);
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(onlyFlow()->state(), Flow::State::kHalfClosed);
  cl.send(upload, true);
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && up.conn().eof; }));
  EXPECT_EQ(up.conn().hash, hashOf(upload));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kUpstreamEof);
  EXPECT_EQ(registry_.closed[0].bytesIn, upload.size());
}

TEST_F(FlowTest, HalfCloseTimeout) {
  settings_.halfCloseTimeout = 200ms;
  FakeServer& up = server(nullptr);  // reads, never closes
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("x");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return !up.conns().empty() && up.conn().eof; }));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 5s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kHalfCloseTimeout);
  EXPECT_GE(registry_.closed[0].at - t0, 150ms);
  EXPECT_TRUE(runUntil([&] { return cl.eof || cl.error; }));
}

// ---- resets ------------------------------------------------------------------------------------

TEST_P(FlowModeTest, ClientResetClosesUpstreamPromptly) {
  FakeServer& up = server(nullptr);
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("hello");
  ASSERT_TRUE(runUntil([&] { return !up.conns().empty() && up.conn().received == 5; }));
  cl.reset();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 2s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kClientReset);
  // The reset is passed on as a reset.
  ASSERT_TRUE(runUntil([&] { return up.conn().error || up.conn().eof; }, 2s));
  EXPECT_TRUE(up.conn().error);
  EXPECT_EQ(up.conn().err, ECONNRESET);
}

TEST_P(FlowModeTest, UpstreamResetClosesClientPromptly) {
  FakeServer& up = server([](TestConn& c) { c.resetAfterBytes = 5; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("hello");
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 2s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kUpstreamReset);
  ASSERT_TRUE(runUntil([&] { return cl.error || cl.eof; }, 2s));
  EXPECT_TRUE(cl.error);
  EXPECT_EQ(cl.err, ECONNRESET);
}

INSTANTIATE_TEST_SUITE_P(Modes, FlowModeTest,
                         ::testing::Values(SpliceMode::kOff, SpliceMode::kAuto,
                                           SpliceMode::kAlways),
                         modeName);

// ---- splice ------------------------------------------------------------------------------------

// Auto: small chunks are copied (no pipe is ever taken), a bulk transfer is spliced, and an idle
// flow holds no pipe once its bytes have arrived.
TEST_F(FlowTest, AutoSplicesBulkOnlyAndHoldsNoPipeWhenIdle) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  std::string echoed;
  for (int i = 0; i < 50; ++i) {
    const std::string message = randomPayload(64, 100 + i);
    echoed += message;
    cl.write(message);
    ASSERT_TRUE(runUntil([&] { return cl.received == echoed.size(); }));
  }
  EXPECT_EQ(cl.hash, hashOf(echoed));
  EXPECT_EQ(pipes_.open(), 0u);
  EXPECT_EQ(pipes_.refused(), 0u);

  const std::string bulk = randomPayload(size_t{16} << 20, 9);
  echoed += bulk;
  cl.send(bulk, false);
  ASSERT_TRUE(runUntil([&] { return cl.received == echoed.size(); }, 60s));
  EXPECT_EQ(cl.hash, hashOf(echoed));
  EXPECT_GT(pipes_.open(), 0u);
  // Everything arrived and the flow is idle (still open): its pipes are back in the pool.
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(pipes_.lent(), 0u);
  EXPECT_EQ(onlyFlow()->bufferedBytes(), 0u);
}

TEST_F(FlowTest, NoPipeLeftCopiesInstead) {
  PipePool none(0, 0);
  settings_.pipes = &none;
  settings_.splice = SpliceMode::kAlways;
  const std::string a = randomPayload(size_t{4} << 20, 10);
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.send(a, true);
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }, 60s));
  EXPECT_EQ(cl.hash, hashOf(a));
  EXPECT_GT(none.refused(), 0u);
  EXPECT_EQ(none.open(), 0u);
}

// Spliced bytes that the client never takes count as buffered, within the limit, and a close
// gives the pipe's bytes up with a reset, like an output's.
TEST_F(FlowTest, AlwaysPipeHoldsBackpressuredBytes) {
  settings_.splice = SpliceMode::kAlways;
  const std::string flood = randomPayload(16 << 20, 11);
  FakeServer& up = server([&](TestConn& c) { c.send(flood, true); });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.pauseReading();
  ASSERT_TRUE(runUntil([&] { return onlyFlow() != nullptr && onlyFlow()->bufferedBytes() > 0; }));
  runFor(300ms);
  ASSERT_FALSE(up.conns().empty());
  EXPECT_GT(up.conn().unsent(), 0u);  // held back: the flow stopped reading
  EXPECT_EQ(pipes_.lent(), 1u);
  EXPECT_GT(onlyFlow()->bufferedBytes(), 0u);
  EXPECT_LE(onlyFlow()->bufferedBytes(), settings_.bufferLimit);
  onlyFlow()->close(CloseReason::kAdmin);
  EXPECT_EQ(pipes_.lent(), 0u);
  cl.resumeReading();
  ASSERT_TRUE(runUntil([&] { return cl.error || cl.eof; }, 5s));
  EXPECT_TRUE(cl.error);
  EXPECT_EQ(cl.err, ECONNRESET);
}

// ---- connecting --------------------------------------------------------------------------------

TEST_F(FlowTest, RefusedEndpointRetriesNextAndHoldsEarlyBytes) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  const SocketAddress refused = refusedAddress();
  picker_.endpoints = {refused, up.address()};
  TestConn& cl = client();
  cl.write("early bytes");  // sent before any upstream exists
  ASSERT_TRUE(runUntil([&] { return cl.received == 11; }));
  ASSERT_EQ(picker_.results.size(), 2u);
  EXPECT_EQ(picker_.results[0], std::make_pair(refused, ConnectResult::kRefused));
  EXPECT_EQ(picker_.results[1], std::make_pair(up.address(), ConnectResult::kOk));
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(onlyFlow()->upstream(), up.address());
  EXPECT_EQ(onlyFlow()->triedEndpoints().size(), 2u);
  EXPECT_EQ(cl.hash, hashOf("early bytes"));
}

// Host part of an address, for comparing a peer (any port) with a source address.
std::string hostOf(const SocketAddress& address) { return formatSourceAddress(address); }

TEST_F(FlowTest, SourceAddressesAreBoundInTurn) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  picker_.sources = {*parseSourceAddress("127.0.0.2"), *parseSourceAddress("127.0.0.3")};
  constexpr size_t kFlows = 4;
  for (size_t i = 0; i < kFlows; ++i) {
    TestConn& cl = client();
    cl.write("x");
    // One at a time, so that the accept order is the connect order.
    ASSERT_TRUE(runUntil([&] { return cl.received == 1; }));
  }
  ASSERT_EQ(up.peers().size(), kFlows);
  for (size_t i = 0; i < kFlows; ++i) {
    EXPECT_EQ(hostOf(up.peers()[i]), i % 2 == 0 ? "127.0.0.2" : "127.0.0.3") << i;
    EXPECT_NE(up.peers()[i].port(), 0);
  }
  ASSERT_EQ(picker_.results.size(), kFlows);
  for (const auto& result : picker_.results) EXPECT_EQ(result.second, ConnectResult::kOk);
}

TEST_F(FlowTest, SourceOfAnotherFamilyIsNotBound) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  picker_.sources = {*parseSourceAddress("::1")};
  TestConn& cl = client();
  cl.write("x");
  ASSERT_TRUE(runUntil([&] { return cl.received == 1; }));
  ASSERT_EQ(up.peers().size(), 1u);
  EXPECT_EQ(hostOf(up.peers()[0]), "127.0.0.1");  // the kernel's choice: no bind
}

TEST_F(FlowTest, SourceBindFailureIsAFailedAttempt) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  // TEST-NET-1: not an address of this host, so bind() fails (EADDRNOTAVAIL); then 127.0.0.2.
  picker_.endpoints = {refusedAddress(), up.address()};
  picker_.sources = {*parseSourceAddress("192.0.2.1"), *parseSourceAddress("127.0.0.2")};
  TestConn& cl = client();
  cl.write("x");
  ASSERT_TRUE(runUntil([&] { return cl.received == 1; }));
  ASSERT_EQ(picker_.results.size(), 2u);
  EXPECT_EQ(picker_.results[0].second, ConnectResult::kError);  // the bind, not a refusal
  EXPECT_EQ(picker_.results[1], std::make_pair(up.address(), ConnectResult::kOk));
  ASSERT_EQ(up.peers().size(), 1u);
  EXPECT_EQ(hostOf(up.peers()[0]), "127.0.0.2");
}

TEST_F(FlowTest, EarlyBytesAreBoundedWhileConnecting) {
  settings_.bufferLimit = 16 * kKiB;
  Blackhole hole;
  picker_.endpoints = {hole.address()};
  picker_.timeout = 10s;
  const std::string big = randomPayload(4 << 20, 5);
  TestConn& cl = client();
  cl.send(big, false);
  ASSERT_TRUE(runUntil([&] { return onlyFlow() != nullptr; }));
  runFor(300ms);
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(onlyFlow()->state(), Flow::State::kConnecting);
  EXPECT_LE(onlyFlow()->bufferedBytes(), settings_.bufferLimit);
  EXPECT_GT(cl.unsent(), 0u);
}

TEST_F(FlowTest, AllEndpointsRefuseConnectFailed) {
  const SocketAddress r1 = refusedAddress();
  const SocketAddress r2 = refusedAddress();
  picker_.endpoints = {r1, r2};
  TestConn& cl = client();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kConnectFailed);
  EXPECT_FALSE(registry_.closed[0].upstream.has_value());
  EXPECT_EQ(picker_.results.size(), 2u);
  EXPECT_TRUE(picker_.ended.empty());
  EXPECT_TRUE(runUntil([&] { return cl.eof || cl.error; }));
}

// Out of fds, the flow cannot make its upstream socket: that is this host's shortage, so the
// flow ends (connect_failed) without a failed attempt charged to the endpoint, which outlier
// detection would count towards ejecting a healthy endpoint.
TEST_F(FlowTest, NoSocketForTheUpstreamIsNotTheEndpointsFailure) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  // One flow from accept to close first: the fd limit below leaves no fd for anything else
  // (UBSan's vptr checks, for one, need a pipe on a cache miss).
  TestConn& first = client();
  first.write("x");
  ASSERT_TRUE(runUntil([&] { return first.received == 1; }));
  ASSERT_EQ(picker_.results.size(), 1u);
  onlyFlow()->close(CloseReason::kAdmin);
  ASSERT_EQ(registry_.closed.size(), 1u);
  // Its deletion too (deferred to the end of a loop pass, which the client's EOF comes after):
  // UBSan checks the type of what it deletes, and a check's first time needs an fd.
  ASSERT_TRUE(runUntil([&] { return first.eof || first.error; }));

  // The client socket exists before the limit drops; the accept takes the last fd there is.
  TestConn& starved = client();
  rlimit original{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &original), 0);
  const int lowestFree = ::dup(0);
  ASSERT_GE(lowestFree, 0);
  ::close(lowestFree);
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(lowestFree) + 1;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  const bool closed = runUntil([&] { return closedCount(2); }, 5s);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &original), 0);

  ASSERT_TRUE(closed);
  EXPECT_EQ(registry_.closed[1].reason, CloseReason::kConnectFailed);
  EXPECT_FALSE(registry_.closed[1].upstream.has_value());
  EXPECT_EQ(picker_.results.size(), 1u) << "a failed attempt was charged to the endpoint";
  EXPECT_TRUE(runUntil([&] { return starved.eof || starved.error; }));
}

TEST_F(FlowTest, AttemptsAreBoundedByMaxConnectAttempts) {
  picker_.endpoints = {refusedAddress(), refusedAddress(), refusedAddress()};
  picker_.attempts = 2;
  client();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kConnectFailed);
  EXPECT_EQ(picker_.results.size(), 2u);
}

TEST_F(FlowTest, NoEndpointNoHealthyUpstream) {
  TestConn& cl = client();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kNoHealthyUpstream);
  EXPECT_TRUE(picker_.results.empty());
  EXPECT_TRUE(runUntil([&] { return cl.eof || cl.error; }));
}

TEST_F(FlowTest, ConnectTimeoutToBlackhole) {
  Blackhole hole;
  picker_.endpoints = {hole.address()};
  picker_.timeout = 200ms;
  picker_.attempts = 1;
  client();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 5s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kConnectFailed);
  EXPECT_GE(registry_.closed[0].at - t0, 150ms);
  ASSERT_EQ(picker_.results.size(), 1u);
  EXPECT_EQ(picker_.results[0], std::make_pair(hole.address(), ConnectResult::kTimeout));
  // The attempt's time, on the loop's clock, is the connect timeout it waited for.
  EXPECT_GE(picker_.connectTimes[0], 150ms);
}

TEST_F(FlowTest, ConnectTimeoutThenNextEndpoint) {
  Blackhole hole;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {hole.address(), up.address()};
  picker_.timeout = 150ms;
  TestConn& cl = client();
  cl.write("ping");
  ASSERT_TRUE(runUntil([&] { return cl.received == 4; }, 5s));
  ASSERT_EQ(picker_.results.size(), 2u);
  EXPECT_EQ(picker_.results[0].second, ConnectResult::kTimeout);
  EXPECT_EQ(picker_.results[1].second, ConnectResult::kOk);
}

TEST_F(FlowTest, ClientEofWhileConnectingIsPassedOnAfterConnect) {
  Blackhole hole;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {hole.address(), up.address()};
  picker_.timeout = 150ms;
  TestConn& cl = client();
  cl.write("request");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return onlyFlow() != nullptr; }));
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }, 5s));
  EXPECT_EQ(cl.hash, hashOf("request"));
  EXPECT_TRUE(up.conn().eof);
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kClientEof);
}

// ---- timeouts ----------------------------------------------------------------------------------

TEST_F(FlowTest, IdleTimeout) {
  settings_.idleTimeout = 200ms;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  // Activity keeps it open past one idle period.
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 1; i <= 4; ++i) {
    cl.write("x");
    const size_t want = i;
    ASSERT_TRUE(runUntil([&] { return cl.received == want; }));
    runFor(100ms);
  }
  EXPECT_TRUE(registry_.closed.empty());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 5s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kIdleTimeout);
  EXPECT_TRUE(runUntil([&] { return cl.eof; }));
  EXPECT_TRUE(runUntil([&] { return up.conn().eof; }));
}

TEST_F(FlowTest, MaxLifetime) {
  settings_.maxLifetime = 200ms;
  settings_.maxLifetimeJitter = 50ms;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  const auto t0 = std::chrono::steady_clock::now();
  cl.write("x");
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }, 5s));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kMaxLifetime);
  EXPECT_GE(registry_.closed[0].at - t0, 190ms);
  EXPECT_LT(registry_.closed[0].at - t0, 2s);
}

// ---- backpressure ------------------------------------------------------------------------------

// The upstream floods 64 MiB at a client that does not read: the flow's buffers stay bounded
// (sampled every loop pass and by a 1 ms timer), the upstream is held back by TCP, and once the
// client reads everything arrives intact.
TEST_P(FlowModeTest, BackpressureClientNeverReads) {
  const size_t limit = settings_.bufferLimit;
  const std::string flood = randomPayload(64 << 20, 6);
  FakeServer& up = server([&](TestConn& c) { c.send(flood, true); });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.pauseReading();
  size_t peak = 0;
  const auto sample = [&] {
    if (Flow* f = onlyFlow()) peak = std::max(peak, f->bufferedBytes());
  };
  reactor::Event sampler(
      base_, -1, reactor::kPersist,
      [](int, reactor::EventMask, void* arg) { (*static_cast<decltype(sample)*>(arg))(); },
      const_cast<void*>(static_cast<const void*>(&sample)));
  sampler.add(1ms);
  ASSERT_TRUE(runUntil([&] {
    sample();
    return onlyFlow() != nullptr && onlyFlow()->bufferedBytes() >= heldBackAtLeast();
  }));
  runFor(300ms);
  sample();
  ASSERT_FALSE(up.conns().empty());
  // The upstream could not send it all: TCP pushed back through the flow.
  EXPECT_GT(up.conn().unsent(), 0u);
  cl.resumeReading();
  ASSERT_TRUE(runUntil(
      [&] {
        sample();
        return cl.eof;
      },
      60s));
  EXPECT_EQ(cl.received, flood.size());
  EXPECT_EQ(cl.hash, hashOf(flood));
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kUpstreamEof);
  EXPECT_LE(peak, 2 * limit + 64 * kKiB);
  EXPECT_GE(peak, heldBackAtLeast());
  RecordProperty("peak_buffered_bytes", std::to_string(peak));
}

// The other direction: the upstream never reads while the client floods.
TEST_P(FlowModeTest, BackpressureUpstreamNeverReads) {
  const size_t limit = settings_.bufferLimit;
  const std::string flood = randomPayload(16 << 20, 7);
  FakeServer& up = server([](TestConn& c) { c.pauseReading(); });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.send(flood, true);
  size_t peak = 0;
  ASSERT_TRUE(runUntil([&] {
    if (Flow* f = onlyFlow()) peak = std::max(peak, f->bufferedBytes());
    return onlyFlow() != nullptr && onlyFlow()->bufferedBytes() >= heldBackAtLeast();
  }));
  runFor(300ms);
  EXPECT_GT(cl.unsent(), 0u);
  ASSERT_FALSE(up.conns().empty());
  up.conn().resumeReading();
  ASSERT_TRUE(runUntil(
      [&] {
        if (Flow* f = onlyFlow()) peak = std::max(peak, f->bufferedBytes());
        return up.conn().received == flood.size();
      },
      60s));
  EXPECT_EQ(up.conn().hash, hashOf(flood));
  EXPECT_LE(peak, 2 * limit + 64 * kKiB);
}

// ---- admin close and access log
// -------------------------------------------------------------------

TEST_F(FlowTest, AdminCloseClosesBothSides) {
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("hi");
  ASSERT_TRUE(runUntil([&] { return cl.received == 2; }));
  ASSERT_NE(onlyFlow(), nullptr);
  EXPECT_EQ(onlyFlow()->state(), Flow::State::kEstablished);
  onlyFlow()->close(CloseReason::kAdmin);
  ASSERT_EQ(registry_.closed.size(), 1u);
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kAdmin);
  EXPECT_TRUE(runUntil([&] { return cl.eof && up.conn().eof; }, 2s));
  EXPECT_EQ(picker_.ended.size(), 1u);
}

// Closing a side whose output still holds bytes sends a RST: those bytes will never arrive.
TEST_P(FlowModeTest, AdminCloseWithUnsentBytesResetsThatSide) {
  const std::string flood = randomPayload(16 << 20, 8);
  FakeServer& up = server([&](TestConn& c) { c.send(flood, true); });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.pauseReading();
  ASSERT_TRUE(runUntil([&] { return onlyFlow() != nullptr && onlyFlow()->bufferedBytes() > 0; }));
  onlyFlow()->close(CloseReason::kAdmin);
  cl.resumeReading();
  ASSERT_TRUE(runUntil([&] { return cl.error || cl.eof; }, 5s));
  EXPECT_TRUE(cl.error);
  EXPECT_EQ(cl.err, ECONNRESET);
  EXPECT_LT(cl.received, flood.size());
}

std::optional<std::string> jsonField(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = line.find(k);
  if (at == std::string::npos) return std::nullopt;
  size_t begin = at + k.size();
  if (line[begin] == '"') {
    const size_t end = line.find('"', begin + 1);
    return line.substr(begin + 1, end - begin - 1);
  }
  const size_t end = line.find_first_of(",}", begin);
  return line.substr(begin, end - begin);
}

TEST_F(FlowTest, AccessLogLine) {
  FakeServer& up = server([](TestConn& c) {
    c.write("0123456789");
    c.shutdownOnEof = true;
  });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write("abc");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  const std::string& line = registry_.closed[0].logLine;
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(jsonField(line, "id"), "1");
  EXPECT_TRUE(std::regex_match(*jsonField(line, "start"),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << line;
  EXPECT_TRUE(std::regex_match(*jsonField(line, "duration_ms"), std::regex(R"(\d+)"))) << line;
  EXPECT_EQ(jsonField(line, "client"), SocketAddress::localOf(cl.bev()->fd())->toString());
  EXPECT_EQ(jsonField(line, "upstream"), up.address().toString());
  EXPECT_EQ(jsonField(line, "bytes_in"), "3");
  EXPECT_EQ(jsonField(line, "bytes_out"), "10");
  EXPECT_EQ(jsonField(line, "reason"), "client_eof");
}

TEST_F(FlowTest, AccessLogLineWithoutUpstream) {
  client();
  ASSERT_TRUE(runUntil([&] { return closedCount(1); }));
  const std::string& line = registry_.closed[0].logLine;
  EXPECT_EQ(jsonField(line, "upstream"), "null");
  EXPECT_EQ(jsonField(line, "reason"), "no_healthy_upstream");
  EXPECT_EQ(jsonField(line, "bytes_in"), "0");
}

// ---- PROXY protocol ----------------------------------------------------------------------------

const char kV1Header[] = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";

TEST_F(FlowTest, ProxyAcceptV1ThenRelays) {
  settings_.acceptProxyProtocol = true;
  FakeServer& up = server([](TestConn& c) { c.echo = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write(std::string(kV1Header) + "hello");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  ASSERT_EQ(up.conns().size(), 1u);
  EXPECT_EQ(up.conn().received, 5u);  // the header is consumed, not relayed
  EXPECT_EQ(cl.received, 5u);
  EXPECT_EQ(cl.hash, hashOf("hello"));
  const ClosedFlow& f = registry_.closed[0];
  EXPECT_EQ(f.reason, CloseReason::kClientEof);
  EXPECT_EQ(f.bytesIn, 5u);
  EXPECT_EQ(jsonField(f.logLine, "client"), "192.0.2.1:56324");
  ASSERT_EQ(picker_.pickedFor.size(), 1u);
  EXPECT_EQ(picker_.pickedFor[0], *SocketAddress::parse("192.0.2.1:56324"));
}

// A v2 header in pieces, the payload in the same segment as its last piece; nothing connects
// before the header is whole.
TEST_F(FlowTest, ProxyAcceptV2InPiecesThenRelays) {
  settings_.acceptProxyProtocol = true;
  const std::string payload = randomPayload(256 * kKiB, 7);
  FakeServer& up = server([](TestConn& c) { c.shutdownOnEof = true; });
  picker_.endpoints = {up.address()};
  const std::string header =
      encodeProxyV2(*SocketAddress::parse("[2001:db8::5]:4242"), gatewayAddress_);
  TestConn& cl = client();
  cl.write(header.substr(0, 5));
  runFor(50ms);
  cl.write(header.substr(5, 12));
  runFor(50ms);
  EXPECT_TRUE(picker_.pickedFor.empty());
  EXPECT_TRUE(up.conns().empty());
  cl.write(header.substr(17));
  cl.send(payload, true);
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }, 30s));
  EXPECT_EQ(up.conn().received, payload.size());
  EXPECT_EQ(up.conn().hash, hashOf(payload));
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kClientEof);
  EXPECT_EQ(jsonField(registry_.closed[0].logLine, "client"), "[2001:db8::5]:4242");
}

TEST_F(FlowTest, ProxyAcceptLocalKeepsTheSocketPeer) {
  settings_.acceptProxyProtocol = true;
  FakeServer& up = server([](TestConn& c) { c.shutdownOnEof = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write(std::string("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16) + "xy");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  EXPECT_EQ(up.conn().received, 2u);
  EXPECT_EQ(jsonField(registry_.closed[0].logLine, "client"),
            SocketAddress::localOf(cl.bev()->fd())->toString());
}

TEST_F(FlowTest, ProxyAcceptMalformedClosesClient) {
  settings_.acceptProxyProtocol = true;
  FakeServer& up = server(nullptr);
  picker_.endpoints = {up.address()};
  for (const std::string bad :
       {"PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n", "GET / HTTP/1.1\r\n\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n"}) {
    client().write(bad);
  }
  ASSERT_TRUE(runUntil([&] {
    return closedCount(3) && std::all_of(clients_.begin(), clients_.end(),
                                         [](auto& c) { return c->eof || c->error; });
  }));
  for (const ClosedFlow& f : registry_.closed) {
    EXPECT_EQ(f.reason, CloseReason::kProxyProtocol);
    EXPECT_EQ(jsonField(f.logLine, "reason"), "proxy_protocol_error");
    EXPECT_FALSE(f.upstream);
  }
  EXPECT_TRUE(picker_.pickedFor.empty());
  runFor(20ms);
  EXPECT_TRUE(up.conns().empty());
}

TEST_F(FlowTest, ProxyAcceptTruncatedByEof) {
  settings_.acceptProxyProtocol = true;
  picker_.endpoints = {refusedAddress()};
  TestConn& partial = client();
  partial.write("PROXY TCP4 1.2.3.4");
  partial.shutdownWhenFlushed();
  TestConn& silent = client();
  silent.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(2); }));
  std::map<uint64_t, CloseReason> reasons;
  for (const ClosedFlow& f : registry_.closed) reasons[f.id] = f.reason;
  EXPECT_EQ(reasons[1], CloseReason::kProxyProtocol);
  EXPECT_EQ(reasons[2], CloseReason::kClientEof);  // nothing sent: a plain EOF
  EXPECT_TRUE(picker_.pickedFor.empty());
}

TEST_F(FlowTest, ProxyAcceptTimeout) {
  settings_.acceptProxyProtocol = true;
  settings_.proxyProtocolTimeout = 200ms;
  FakeServer& up = server(nullptr);
  picker_.endpoints = {up.address()};
  const auto start = std::chrono::steady_clock::now();
  TestConn& cl = client();
  cl.write("PROXY TCP4 ");
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  EXPECT_GE(registry_.closed[0].at - start, 190ms);
  EXPECT_EQ(registry_.closed[0].reason, CloseReason::kProxyProtocol);
  EXPECT_TRUE(up.conns().empty());
}

// With a one-byte buffer limit the flow still reads the whole header before deciding.
TEST_F(FlowTest, ProxyAcceptWithTinyBufferLimit) {
  settings_.acceptProxyProtocol = true;
  settings_.bufferLimit = 1;
  FakeServer& up = server([](TestConn& c) { c.shutdownOnEof = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write(std::string(kV1Header) + "0123456789");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  EXPECT_EQ(up.conn().received, 10u);
  EXPECT_EQ(up.conn().hash, hashOf("0123456789"));
}

std::string proxyVersionName(const ::testing::TestParamInfo<ProxyProtocol>& p) {
  return p.param == ProxyProtocol::kV1 ? "v1" : "v2";
}

class FlowProxySendTest : public FlowTest, public ::testing::WithParamInterface<ProxyProtocol> {};

TEST_P(FlowProxySendTest, UpstreamGetsTheHeaderThenThePayload) {
  picker_.send = GetParam();
  FakeServer& up = server([](TestConn& c) { c.shutdownOnEof = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  const SocketAddress clientAddress = *SocketAddress::localOf(cl.bev()->fd());
  const std::string payload = randomPayload(100 * kKiB, 9);
  cl.send(payload, true);
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  const std::string header = GetParam() == ProxyProtocol::kV1
                                 ? encodeProxyV1(clientAddress, gatewayAddress_)
                                 : encodeProxyV2(clientAddress, gatewayAddress_);
  EXPECT_EQ(up.conn().received, header.size() + payload.size());
  EXPECT_EQ(up.conn().hash, hashOf(header + payload));
  EXPECT_EQ(registry_.closed[0].bytesIn, payload.size());
}

// Accept and send chained: the accepted header's addresses go on.
TEST_P(FlowProxySendTest, AcceptedAddressesArePassedOn) {
  settings_.acceptProxyProtocol = true;
  picker_.send = GetParam();
  FakeServer& up = server([](TestConn& c) { c.shutdownOnEof = true; });
  picker_.endpoints = {up.address()};
  TestConn& cl = client();
  cl.write(std::string(kV1Header) + "data");
  cl.shutdownWhenFlushed();
  ASSERT_TRUE(runUntil([&] { return closedCount(1) && cl.eof; }));
  const SocketAddress src = *SocketAddress::parse("192.0.2.1:56324");
  const SocketAddress dst = *SocketAddress::parse("198.51.100.7:443");
  const std::string header =
      GetParam() == ProxyProtocol::kV1 ? encodeProxyV1(src, dst) : encodeProxyV2(src, dst);
  EXPECT_EQ(up.conn().received, header.size() + 4);
  EXPECT_EQ(up.conn().hash, hashOf(header + "data"));
}

INSTANTIATE_TEST_SUITE_P(Versions, FlowProxySendTest,
                         ::testing::Values(ProxyProtocol::kV1, ProxyProtocol::kV2),
                         proxyVersionName);

TEST(CloseReason, Names) {
  EXPECT_STREQ(toString(CloseReason::kClientEof), "client_eof");
  EXPECT_STREQ(toString(CloseReason::kUpstreamEof), "upstream_eof");
  EXPECT_STREQ(toString(CloseReason::kClientReset), "client_reset");
  EXPECT_STREQ(toString(CloseReason::kUpstreamReset), "upstream_reset");
  EXPECT_STREQ(toString(CloseReason::kIdleTimeout), "idle_timeout");
  EXPECT_STREQ(toString(CloseReason::kHalfCloseTimeout), "half_close_timeout");
  EXPECT_STREQ(toString(CloseReason::kMaxLifetime), "max_lifetime");
  EXPECT_STREQ(toString(CloseReason::kConnectFailed), "connect_failed");
  EXPECT_STREQ(toString(CloseReason::kNoHealthyUpstream), "no_healthy_upstream");
  EXPECT_STREQ(toString(CloseReason::kLimit), "limit");
  EXPECT_STREQ(toString(CloseReason::kDenied), "denied");
  EXPECT_STREQ(toString(CloseReason::kAdmin), "admin");
  EXPECT_STREQ(toString(CloseReason::kDrain), "drain");
  EXPECT_STREQ(toString(CloseReason::kProxyProtocol), "proxy_protocol_error");
}

}  // namespace
}  // namespace evgate::gateway
