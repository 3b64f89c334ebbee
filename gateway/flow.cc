#include "gateway/flow.h"

#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <memory>
#include <random>

#include "gateway/proxy_protocol.h"

namespace evgate::gateway {
namespace {

using reactor::BufferEvent;

// A write syscall may take the whole output at once: it never adds memory, and fewer calls move
// the same bytes.
constexpr size_t kMinSingleWrite = size_t{256} * 1024;

Duration lifetimeJitter(Duration jitter) {
  if (jitter <= Duration::zero()) return Duration::zero();
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<Duration::rep> dist(0, jitter.count());
  return Duration(dist(rng));
}

// SO_LINGER with a zero timeout: close() then sends a RST and drops unsent bytes.
void armReset(int fd) {
  if (fd < 0) return;
  const linger lg{1, 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

}  // namespace

Flow* Flow::start(reactor::EventBase& base, uint64_t id, int clientFd,
                  const reactor::SocketAddress& client, const FlowSettings& settings,
                  UpstreamPicker& picker, FlowObserver& observer) {
  base.assertInLoopThread();
  return new Flow(base, id, clientFd, client, settings, picker, observer);
}

Flow::Flow(reactor::EventBase& base, uint64_t id, int clientFd,
           const reactor::SocketAddress& client, const FlowSettings& settings,
           UpstreamPicker& picker, FlowObserver& observer)
    : base_(base),
      id_(id),
      peer_(client),
      client_(client),
      settings_(settings),
      limit_(std::max<size_t>(settings.bufferLimit, 1)),
      picker_(picker),
      observer_(observer),
      startTime_(base.now()),
      startWallTime_(std::chrono::system_clock::now()),
      lastActivity_(startTime_),
      timer_(base, onTimer, this) {
  timer_.setLabel("flow " + std::to_string(id) + " timer");
  if (settings.maxLifetime && *settings.maxLifetime > Duration::zero()) {
    lifetimeDeadline_ =
        startTime_ + *settings.maxLifetime + lifetimeJitter(settings.maxLifetimeJitter);
  }
  auto& bev = peers_[kClient].bev;
  bev = BufferEvent::create(base, clientFd, BufferEvent::kCloseOnFree);
  bev->setLabel("flow " + std::to_string(id) + " client");
  bev->setCallbacks(onRead, onWrite, onEvent, this);
  // The read high watermark holds the client's early bytes to bufferLimit while connecting;
  // once connected, the input is emptied after every read and the watermark never bites.
  bev->setWatermark(reactor::kRead, 0, limit_);
  bev->setWatermark(reactor::kWrite, limit_ / 2, 0);
  bev->setMaxSingleRead(std::min(kMaxSingleRead, limit_));
  bev->setMaxSingleWrite(std::max(kMinSingleWrite, limit_));
  if (settings.acceptProxyProtocol) {
    awaitingProxyHeader_ = true;
    if (settings.proxyProtocolTimeout > Duration::zero()) {
      proxyDeadline_ = startTime_ + settings.proxyProtocolTimeout;
    }
    // Room for the largest header even with a tiny bufferLimit, so that the parser can decide.
    const size_t headerRoom = std::max(limit_, kProxyMaxLength);
    bev->setWatermark(reactor::kRead, 0, headerRoom);
    bev->setMaxSingleRead(std::min(kMaxSingleRead, headerRoom));
  }
  bev->enable(reactor::kRead);
  // The first connect runs from the loop, so that start() never calls the observer.
  timer_.activate(reactor::kTimeout);
}

Flow::~Flow() = default;

size_t Flow::bufferedBytes() const {
  size_t total = 0;
  for (const Peer& p : peers_) {
    if (p.bev) total += p.bev->input().length() + p.bev->output().length();
  }
  return total;
}

Flow::Side Flow::sideOf(const BufferEvent& bev) const {
  return &bev == peers_[kClient].bev.get() ? kClient : kUpstream;
}

// ---- callbacks ---------------------------------------------------------------------------------

void Flow::onRead(BufferEvent& bev, void* arg) {
  auto* self = static_cast<Flow*>(arg);
  const Side side = self->sideOf(bev);
  if (side == kClient && self->awaitingProxyHeader_) {
    self->readProxyHeader(false);
    return;
  }
  self->relay(side);
}

void Flow::onWrite(BufferEvent& bev, void* arg) {
  auto* self = static_cast<Flow*>(arg);
  self->drained(self->sideOf(bev));
}

void Flow::onEvent(BufferEvent& bev, short what, void* arg) {
  auto* self = static_cast<Flow*>(arg);
  const Side side = self->sideOf(bev);
  if ((what & BufferEvent::kConnected) != 0) {
    self->connected();
    return;
  }
  if (side == kClient && self->awaitingProxyHeader_) {
    if ((what & BufferEvent::kEof) != 0 && (what & BufferEvent::kReading) != 0) {
      self->readProxyHeader(true);
    } else {
      self->close(CloseReason::kClientReset);
    }
    return;
  }
  if (side == kUpstream && self->state_ == State::kConnecting) {
    // A connect that failed (refused, unreachable): try the next endpoint.
    self->connectFailed(bev.socketError() == ECONNREFUSED ? stats::ConnectResult::kRefused
                                                          : stats::ConnectResult::kError);
    return;
  }
  if ((what & BufferEvent::kEof) != 0 && (what & BufferEvent::kReading) != 0) {
    self->peerEof(side);
    return;
  }
  // A read or write error (ECONNRESET, EPIPE, ...), or a write that made no progress.
  self->close(side == kClient ? CloseReason::kClientReset : CloseReason::kUpstreamReset);
}

void Flow::onTimer(int, reactor::EventMask, void* arg) { static_cast<Flow*>(arg)->handleTimer(); }

// ---- PROXY protocol ----------------------------------------------------------------------------

// The client's input may hold a PROXY header (`eof`: and the client has sent all it will).
void Flow::readProxyHeader(bool eof) {
  BufferEvent& bev = *peers_[kClient].bev;
  ProxyHeader header;
  std::string error;
  switch (parseProxyHeader(bev.input(), header, error)) {
    case ProxyParse::kNeedMore:
      // A client that closes without sending anything is a plain EOF (a port probe).
      if (eof) close(bev.input().empty() ? CloseReason::kClientEof : CloseReason::kProxyProtocol);
      return;
    case ProxyParse::kInvalid:
      close(CloseReason::kProxyProtocol);
      return;
    case ProxyParse::kDone:
      break;
  }
  awaitingProxyHeader_ = false;
  proxyDeadline_.reset();
  if (header.source) client_ = *header.source;
  proxyDestination_ = header.destination;
  bev.input().drain(header.length);
  bev.setWatermark(reactor::kRead, 0, limit_);
  bev.setMaxSingleRead(std::min(kMaxSingleRead, limit_));
  lastActivity_ = base_.now();
  if (eof) peerEof(kClient);
  if (state_ != State::kClosed) connectNext();
}

// ---- connecting --------------------------------------------------------------------------------

void Flow::connectNext() {
  const uint32_t maxAttempts = std::max<uint32_t>(picker_.maxConnectAttempts(), 1);
  if (tried_.size() >= maxAttempts) {
    close(CloseReason::kConnectFailed);
    return;
  }
  const std::optional<reactor::SocketAddress> endpoint = picker_.pick(client_, tried_);
  if (!endpoint) {
    close(tried_.empty() ? CloseReason::kNoHealthyUpstream : CloseReason::kConnectFailed);
    return;
  }
  tried_.push_back(*endpoint);
  auto& bev = peers_[kUpstream].bev;
  bev = BufferEvent::create(base_, -1, BufferEvent::kCloseOnFree);
  bev->setLabel("flow " + std::to_string(id_) + " upstream");
  bev->setCallbacks(onRead, onWrite, onEvent, this);
  bev->setWatermark(reactor::kRead, 0, limit_);
  bev->setWatermark(reactor::kWrite, limit_ / 2, 0);
  bev->setMaxSingleRead(std::min(kMaxSingleRead, limit_));
  bev->setMaxSingleWrite(std::max(kMinSingleWrite, limit_));
  connectStart_ = base_.now();
  if (bev->connect(endpoint->data(), endpoint->length()) < 0) {
    // Failed at once (no route, no socket): nothing will be reported; count it as an attempt.
    connectFailed(stats::ConnectResult::kError);
    return;
  }
  const Duration timeout = picker_.connectTimeout();
  if (timeout > Duration::zero()) {
    connectDeadline_ = base_.now() + timeout;
  } else {
    connectDeadline_.reset();
  }
  scheduleTimer();
}

void Flow::connectFailed(stats::ConnectResult result) {
  picker_.onConnectResult(tried_.back(), result, base_.now() - connectStart_);
  peers_[kUpstream].bev.reset();
  connectDeadline_.reset();
  connectNext();
}

void Flow::connected() {
  picker_.onConnectResult(tried_.back(), stats::ConnectResult::kOk, base_.now() - connectStart_);
  upstream_ = tried_.back();
  connectDeadline_.reset();
  state_ = firstEof_ == CloseReason::kNone ? State::kEstablished : State::kHalfClosed;
  lastActivity_ = base_.now();
  peers_[kUpstream].bev->enable(reactor::kRead);
  const ProxyProtocol send = picker_.sendProxyProtocol();
  if (send != ProxyProtocol::kNone) {
    std::optional<reactor::SocketAddress> destination = proxyDestination_;
    if (!destination) destination = reactor::SocketAddress::localOf(peers_[kClient].bev->fd());
    const reactor::SocketAddress dst = destination.value_or(reactor::SocketAddress());
    const std::string header =
        send == ProxyProtocol::kV1 ? encodeProxyV1(client_, dst) : encodeProxyV2(client_, dst);
    peers_[kUpstream].bev->write(header.data(), header.size());
  }
  // The client's early bytes, then its EOF if it came while connecting.
  relay(kClient);
  if (peers_[kUpstream].shutdownPending) sendShutdown(kUpstream);
  if (state_ != State::kClosed) scheduleTimer();
}

// ---- relaying ----------------------------------------------------------------------------------

void Flow::relay(Side from) {
  if (state_ == State::kConnecting || state_ == State::kClosed) return;
  BufferEvent& src = *peers_[from].bev;
  const size_t n = src.input().length();
  if (n == 0) return;
  // Relinks the input's chunks onto the other side's output: no byte is copied.
  peers_[other(from)].bev->write(src.input());
  (from == kClient ? bytesFromClient_ : bytesFromUpstream_) += n;
  if (settings_.counters != nullptr) settings_.counters->bytes[from].add(n);
  lastActivity_ = base_.now();
  gateReading(from);
}

// Reading from `from` is allowed only while the other side's output is below the limit, and each
// read takes no more than the room left: that output never passes the limit.
void Flow::gateReading(Side from) {
  Peer& src = peers_[from];
  const size_t queued = peers_[other(from)].bev->output().length();
  if (queued >= limit_) {
    if (!src.paused) {
      src.paused = true;
      src.bev->disable(reactor::kRead);
      pauseStarted(from);
    }
    return;
  }
  src.bev->setMaxSingleRead(std::min(kMaxSingleRead, limit_ - queued));
}

// `to`'s output drained to its low watermark (limit / 2) or below.
void Flow::drained(Side to) {
  if (state_ == State::kClosed) return;
  lastActivity_ = base_.now();
  Peer& src = peers_[other(to)];
  // The output drained below the limit: backpressure on `src` is over (even if `src` has
  // already sent EOF and will not be read again).
  pauseEnded(other(to));
  if (src.paused && !src.eof && state_ != State::kConnecting) {
    src.paused = false;
    gateReading(other(to));
    if (!src.paused) {
      src.bev->enable(reactor::kRead);
    } else {
      pauseStarted(other(to));
    }
  }
  if (peers_[to].shutdownPending) sendShutdown(to);
}

// ---- half-close --------------------------------------------------------------------------------

void Flow::peerEof(Side side) {
  peers_[side].eof = true;
  if (firstEof_ == CloseReason::kNone) {
    firstEof_ = side == kClient ? CloseReason::kClientEof : CloseReason::kUpstreamEof;
    if (settings_.halfCloseTimeout > Duration::zero()) {
      halfCloseDeadline_ = base_.now() + settings_.halfCloseTimeout;
    }
    if (state_ == State::kEstablished) state_ = State::kHalfClosed;
  }
  relay(side);
  sendShutdown(other(side));
  if (state_ != State::kClosed) scheduleTimer();
}

// Passes an EOF on to `to` once its output is flushed (and, for the upstream, once connected).
void Flow::sendShutdown(Side to) {
  Peer& p = peers_[to];
  if (p.shutdownSent) return;
  if ((to == kUpstream && state_ == State::kConnecting) || !p.bev->output().empty()) {
    p.shutdownPending = true;
    return;
  }
  p.shutdownPending = false;
  p.shutdownSent = true;
  // ENOTCONN after the peer reset: the error surfaces on the next read or write.
  (void)::shutdown(p.bev->fd(), SHUT_WR);
  checkFinished();
}

void Flow::checkFinished() {
  const bool clientDone = peers_[kClient].eof && peers_[kUpstream].shutdownSent;
  const bool upstreamDone = peers_[kUpstream].eof && peers_[kClient].shutdownSent;
  if (clientDone && upstreamDone) close(firstEof_);
}

// ---- timeouts ----------------------------------------------------------------------------------

void Flow::handleTimer() {
  armedDeadline_.reset();
  if (state_ == State::kConnecting && tried_.empty() && !awaitingProxyHeader_) {
    connectNext();
    return;
  }
  const TimePoint now = base_.now();
  if (proxyDeadline_ && now >= *proxyDeadline_) {
    close(CloseReason::kProxyProtocol);
    return;
  }
  if (connectDeadline_ && now >= *connectDeadline_) {
    connectFailed(stats::ConnectResult::kTimeout);
    return;
  }
  if (lifetimeDeadline_ && now >= *lifetimeDeadline_) {
    close(CloseReason::kMaxLifetime);
    return;
  }
  if (halfCloseDeadline_ && now >= *halfCloseDeadline_) {
    close(CloseReason::kHalfCloseTimeout);
    return;
  }
  if (state_ != State::kConnecting && settings_.idleTimeout > Duration::zero() &&
      now >= lastActivity_ + settings_.idleTimeout) {
    close(CloseReason::kIdleTimeout);
    return;
  }
  scheduleTimer();
}

std::optional<TimePoint> Flow::nextDeadline() const {
  std::optional<TimePoint> next;
  const auto consider = [&next](const std::optional<TimePoint>& t) {
    if (t && (!next || *t < *next)) next = t;
  };
  consider(connectDeadline_);
  consider(lifetimeDeadline_);
  consider(halfCloseDeadline_);
  consider(proxyDeadline_);
  if (state_ != State::kConnecting && settings_.idleTimeout > Duration::zero()) {
    consider(lastActivity_ + settings_.idleTimeout);
  }
  return next;
}

// Lazy: a timer already armed for an earlier time is left alone (it re-computes when it fires),
// so activity costs a timestamp, not a timer-heap operation.
void Flow::scheduleTimer() {
  // Activated by start() and not run yet: it computes the deadline itself.
  if (timer_.isActive()) return;
  const std::optional<TimePoint> next = nextDeadline();
  if (!next) return;
  if (armedDeadline_ && *armedDeadline_ <= *next) return;
  timer_.add(std::max(Duration::zero(), *next - base_.now()));
  armedDeadline_ = next;
}

// ---- closing -----------------------------------------------------------------------------------

void Flow::close(CloseReason reason) {
  if (state_ == State::kClosed) return;
  base_.assertInLoopThread();
  const bool wasConnected = upstream_.has_value();
  state_ = State::kClosed;
  closeReason_ = reason;
  pauseEnded(kClient);
  pauseEnded(kUpstream);
  timer_.del();
  armedDeadline_.reset();
  closeSide(kClient, reason == CloseReason::kUpstreamReset);
  closeSide(kUpstream, reason == CloseReason::kClientReset);
  if (wasConnected) picker_.onFlowEnded(*upstream_);
  observer_.onFlowClosed(*this);
  base_.deferDelete(std::unique_ptr<reactor::DeferredDeletable>(this));
}

void Flow::closeSide(Side side, bool peerReset) {
  Peer& p = peers_[side];
  if (!p.bev) return;
  if (peerReset || !p.bev->output().empty()) armReset(p.bev->fd());
  p.bev.reset();
}

void Flow::pauseStarted(Side from) {
  if (pausedSince_[from]) return;
  pausedSince_[from] = base_.now();
  if (settings_.counters != nullptr) settings_.counters->readPauses[from].add(1);
}

void Flow::pauseEnded(Side from) {
  if (!pausedSince_[from]) return;
  const Duration paused = base_.now() - *pausedSince_[from];
  pausedSince_[from].reset();
  if (settings_.counters != nullptr) {
    settings_.counters->pausedNanos[from].add(static_cast<uint64_t>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(paused).count())));
  }
}

// ---- printing ----------------------------------------------------------------------------------

const char* toString(Flow::State state) {
  switch (state) {
    case Flow::State::kConnecting:
      return "connecting";
    case Flow::State::kEstablished:
      return "established";
    case Flow::State::kHalfClosed:
      return "half_closed";
    case Flow::State::kClosed:
      return "closed";
  }
  return "unknown";
}

std::string accessLogLine(const Flow& flow, std::chrono::system_clock::time_point now) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const auto start = flow.startWallTime();
  const auto sinceEpoch = duration_cast<milliseconds>(start.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(sinceEpoch / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char startText[96];
  (void)std::snprintf(startText, sizeof startText, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, static_cast<int>(sinceEpoch % 1000));
  const int64_t durationMs = std::max<int64_t>(0, duration_cast<milliseconds>(now - start).count());
  // Addresses and reason names are plain ASCII without quotes or backslashes: no escaping needed.
  std::string line = "{\"id\":" + std::to_string(flow.id()) + ",\"start\":\"" + startText +
                     "\",\"duration_ms\":" + std::to_string(durationMs) + ",\"client\":\"" +
                     flow.client().toString() + "\",\"upstream\":";
  line += flow.upstream() ? "\"" + flow.upstream()->toString() + "\"" : std::string("null");
  line += ",\"bytes_in\":" + std::to_string(flow.bytesFromClient()) +
          ",\"bytes_out\":" + std::to_string(flow.bytesFromUpstream()) + ",\"reason\":\"" +
          toString(flow.closeReason()) + "\"}";
  return line;
}

}  // namespace evgate::gateway
