#include "gateway/flow.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// Each side's socket: both directions, edge-triggered, so that it is registered once and
// backpressure or a full socket never costs an epoll_ctl.
// kClosed (EPOLLRDHUP) tells that a FIN is queued behind the bytes: a short read then does not
// mean the socket is empty, the EOF is still to be read, and no further edge would announce it.
constexpr reactor::EventMask kIoEvents = reactor::kRead | reactor::kWrite | reactor::kClosed |
                                         reactor::kPersist | reactor::kEdgeTriggered;

// Reads one socket at most this often per wake-up before letting other flows run; the rest is
// read on the next pass of the loop (the event is re-activated, not re-polled).
constexpr int kMaxReadsPerWake = 4;

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

// Where a chunk lands between its read and its send when the other side's output is empty: one
// per worker thread, reused by every flow of that loop (a loop runs one callback at a time).
char* scratch() {
  thread_local const std::unique_ptr<char[]> buffer(new char[Flow::kMaxSingleRead]);
  // NOLINTNEXTLINE(clang-analyzer-cplusplus.NewDelete): it runs the destructor on return.
  return buffer.get();
}

ssize_t readSome(int fd, char* data, size_t n) {
  ssize_t got = 0;
  do {
    got = ::read(fd, data, n);
  } while (got < 0 && errno == EINTR);
  return got;
}

ssize_t sendSome(int fd, const char* data, size_t n) {
  ssize_t sent = 0;
  do {
    sent = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

// splice() between a socket and a pipe, both non-blocking.
ssize_t spliceSome(int from, int to, size_t n) {
  ssize_t moved = 0;
  do {
    moved = ::splice(from, nullptr, to, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } while (moved < 0 && errno == EINTR);
  return moved;
}

bool retriable(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// A connect finished (1), still going (0) or failed (-1, errno set): what SO_ERROR says.
int connectOutcome(int fd) {
  int err = 0;
  socklen_t length = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) < 0) return -1;
  if (err == 0) return 1;
  if (err == EINPROGRESS || err == EINTR) return 0;
  errno = err;
  return -1;
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
      settings_(settings),
      picker_(picker),
      observer_(observer),
      startTime_(base.now()),
      startWallTime_(std::chrono::system_clock::now()),
      lastActivity_(startTime_),
      peers_{Peer(base), Peer(base)},
      timer_(base, onTimer, this) {
  timer_.setLabel(eventLabel, this);
  peers_[kClient].io.setLabel(eventLabel, this);
  peers_[kUpstream].io.setLabel(eventLabel, this);
  if (settings.maxLifetime && *settings.maxLifetime > Duration::zero()) {
    lifetimeDeadline_ =
        startTime_ + *settings.maxLifetime + lifetimeJitter(settings.maxLifetimeJitter);
  }
  if (settings.acceptProxyProtocol) {
    awaitingProxyHeader_ = true;
    if (settings.proxyProtocolTimeout > Duration::zero()) {
      proxyDeadline_ = startTime_ + settings.proxyProtocolTimeout;
    }
  }
  peers_[kClient].connected = true;
  if (settings.splice == SpliceMode::kAlways && settings.pipes != nullptr) {
    peers_[kClient].bulk = true;
    peers_[kUpstream].bulk = true;
  }
  // accept4() made it non-blocking; a refusal by epoll is reported from the loop, as the first
  // connect is: start() never calls the observer.
  clientRefused_ = !attach(kClient, clientFd);
  timer_.activate(reactor::kTimeout);
}

Flow::~Flow() = default;

size_t Flow::bufferedBytes() const { return pending(kClient) + pending(kUpstream); }

std::string Flow::eventLabel(const reactor::Event& ev, const void* owner) {
  const auto& flow = *static_cast<const Flow*>(owner);
  const char* what = &ev == &flow.timer_               ? " timer"
                     : &ev == &flow.peers_[kClient].io ? " client"
                                                       : " upstream";
  return "flow " + std::to_string(flow.id_) + what;
}

bool Flow::attach(Side side, int fd) {
  Peer& p = peers_[side];
  p.fd = fd;
  p.readable = false;
  p.finQueued = false;
  p.writable = true;
  p.io.assign(fd, kIoEvents, side == kClient ? onClientIo : onUpstreamIo, this);
  return p.io.add() == 0;
}

// ---- callbacks ---------------------------------------------------------------------------------

void Flow::onClientIo(int, reactor::EventMask what, void* arg) {
  static_cast<Flow*>(arg)->handleIo(kClient, what);
}

void Flow::onUpstreamIo(int, reactor::EventMask what, void* arg) {
  static_cast<Flow*>(arg)->handleIo(kUpstream, what);
}

void Flow::onTimer(int, reactor::EventMask, void* arg) { static_cast<Flow*>(arg)->handleTimer(); }

// An edge on one side's socket. Write first: a connect finishing, or room for a queued output,
// can unblock the reads that follow.
void Flow::handleIo(Side side, reactor::EventMask what) {
  if (state_ == State::kClosed) return;
  relayIo(side, what);
  if (state_ == State::kClosed) return;
  // A pipe is held only while bytes are in flight.
  if (peers_[kClient].pipe) returnIdlePipe(kClient);
  if (peers_[kUpstream].pipe) returnIdlePipe(kUpstream);
  if (settings_.budget != nullptr) reportBuffered(bufferedBytes());
}

void Flow::reportBuffered(size_t now) {
  settings_.budget->change(reportedBuffered_, now);
  reportedBuffered_ = static_cast<uint32_t>(now);
}

void Flow::relayIo(Side side, reactor::EventMask what) {
  Peer& p = peers_[side];
  if ((what & reactor::kWrite) != 0) {
    p.writable = true;
    if (!p.connected) {
      finishConnect(what);
      if (state_ == State::kClosed || !p.connected) return;
    } else {
      flush(side);
      if (state_ == State::kClosed) return;
    }
  }
  if ((what & reactor::kClosed) != 0) p.finQueued = true;
  if ((what & (reactor::kRead | reactor::kClosed)) != 0) {
    p.readable = true;
    pump(side);
  }
}

// ---- PROXY protocol ----------------------------------------------------------------------------

// The upstream's output holds what the client sent so far, which may start with a PROXY header
// (`eof`: and the client has sent all it will).
void Flow::readProxyHeader(bool eof) {
  reactor::Buffer& input = peers_[kUpstream].out;
  ProxyHeader header;
  std::string error;
  switch (parseProxyHeader(input, header, error)) {
    case ProxyParse::kNeedMore:
      // A client that closes without sending anything is a plain EOF (a port probe).
      if (eof) close(input.empty() ? CloseReason::kClientEof : CloseReason::kProxyProtocol);
      return;
    case ProxyParse::kInvalid:
      close(CloseReason::kProxyProtocol);
      return;
    case ProxyParse::kDone:
      break;
  }
  awaitingProxyHeader_ = false;
  proxyDeadline_ = kNever;
  if (header.source) proxiedClient_ = std::make_unique<reactor::SocketAddress>(*header.source);
  if (header.destination) {
    proxyDestination_ = std::make_unique<reactor::SocketAddress>(*header.destination);
  }
  input.drain(header.length);
  countRelayed(kClient, input.length());
  if (input.length() >= limit() && !peers_[kClient].paused) {
    peers_[kClient].paused = true;
    pauseStarted(kClient);
  }
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
  const std::optional<reactor::SocketAddress> endpoint = picker_.pick(client(), tried_.all());
  if (!endpoint) {
    close(tried_.empty() ? CloseReason::kNoHealthyUpstream : CloseReason::kConnectFailed);
    return;
  }
  const int fd = ::socket(endpoint->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    // No socket (the fd limit, or no kernel memory): this host's shortage, not the endpoint's.
    // Reported to the picker as a failed attempt, it would feed outlier detection, and a burst
    // of clients at the fd limit would eject every healthy endpoint: the cluster would refuse
    // flows for up to max_ejection after fds came back. Another endpoint would fail the same.
    close(CloseReason::kConnectFailed);
    return;
  }
  tried_.push_back(*endpoint);
  connectStart_ = base_.now();
  if (const reactor::SocketAddress* source = picker_.nextSource(endpoint->family())) {
    // No port at bind(): connect() picks one with the whole 4-tuple, so ports in TIME_WAIT
    // towards other endpoints do not count, and each source address has its own port range.
    const int on = 1;
    if (::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on) != 0 ||
        ::bind(fd, source->data(), source->length()) != 0) {
      ::close(fd);
      connectFailed(stats::ConnectResult::kError);
      return;
    }
  }
  if (::connect(fd, endpoint->data(), endpoint->length()) != 0 && errno != EINPROGRESS &&
      errno != EINTR) {
    const bool refused = errno == ECONNREFUSED;
    ::close(fd);
    connectFailed(refused ? stats::ConnectResult::kRefused : stats::ConnectResult::kError);
    return;
  }
  // The write edge (or an error) tells when the connect is over.
  if (!attach(kUpstream, fd)) {
    connectFailed(stats::ConnectResult::kError);
    return;
  }
  const Duration timeout = picker_.connectTimeout();
  if (timeout > Duration::zero()) {
    connectDeadline_ = base_.now() + timeout;
  } else {
    connectDeadline_ = kNever;
  }
  scheduleTimer();
}

void Flow::finishConnect(reactor::EventMask what) {
  // Writable and nothing else is a connect that succeeded: a failed one also reports an error
  // or hang-up, which the reactor passes on as readable too. Otherwise SO_ERROR decides.
  const int outcome = what == reactor::kWrite ? 1 : connectOutcome(peers_[kUpstream].fd);
  if (outcome == 0) return;
  if (outcome < 0) {
    connectFailed(errno == ECONNREFUSED ? stats::ConnectResult::kRefused
                                        : stats::ConnectResult::kError);
    return;
  }
  connected();
}

void Flow::connectFailed(stats::ConnectResult result) {
  picker_.onConnectResult(tried_.back(), result, base_.now() - connectStart_);
  Peer& up = peers_[kUpstream];
  if (up.fd >= 0) {
    up.io.delBeforeClose();
    ::close(up.fd);
    up.fd = -1;
  }
  connectDeadline_ = kNever;
  connectNext();
}

void Flow::connected() {
  picker_.onConnectResult(tried_.back(), stats::ConnectResult::kOk, base_.now() - connectStart_);
  upstreamConnected_ = true;
  connectDeadline_ = kNever;
  state_ = firstEof_ == CloseReason::kNone ? State::kEstablished : State::kHalfClosed;
  lastActivity_ = base_.now();
  Peer& up = peers_[kUpstream];
  up.connected = true;
  const ProxyProtocol send = picker_.sendProxyProtocol();
  if (send != ProxyProtocol::kNone) {
    std::optional<reactor::SocketAddress> destination;
    if (proxyDestination_) {
      destination = *proxyDestination_;
    } else {
      destination = reactor::SocketAddress::localOf(peers_[kClient].fd);
    }
    const reactor::SocketAddress dst = destination.value_or(reactor::SocketAddress());
    const std::string header =
        send == ProxyProtocol::kV1 ? encodeProxyV1(client(), dst) : encodeProxyV2(client(), dst);
    // Ahead of the client's early bytes, which wait in the output already.
    up.out.prepend(header.data(), header.size());
  }
  // The client's early bytes (and its EOF, if it came while connecting), then whatever more the
  // client has sent meanwhile.
  flush(kUpstream);
  if (state_ == State::kClosed) return;
  if (up.out.empty() && up.shutdownPending) sendShutdown(kUpstream);
  if (state_ == State::kClosed) return;
  if (peers_[kClient].readable) pump(kClient);
  if (state_ != State::kClosed) scheduleTimer();
}

// ---- relaying ----------------------------------------------------------------------------------

void Flow::pump(Side from) {
  Peer& src = peers_[from];
  const Side to = other(from);
  Peer& dst = peers_[to];
  // Before the PROXY header is parsed the client's bytes are read for the parser, which may need
  // more than bufferLimit to decide.
  const size_t readLimit = awaitingProxyHeader_ ? std::max(limit(), kProxyMaxLength) : limit();
  size_t spliced = 0;  // on this pass
  for (int reads = 0; src.readable && !src.eof && !src.paused; ++reads) {
    if (reads == kMaxReadsPerWake) {
      // Fairness: the rest waits for the next pass, without asking epoll again.
      src.io.activate(reactor::kRead);
      return;
    }
    const size_t queued = pending(to);
    if (queued >= readLimit) {
      src.paused = true;
      pauseStarted(from);
      return;
    }
    const size_t want = std::min(kMaxSingleRead, readLimit - queued);
    if (dst.pipe || (dst.bulk && spliceTo(to))) {
      const ssize_t n = spliceSome(src.fd, dst.pipe->writeFd, want);
      if (n == 0) {
        src.readable = false;
        peerEof(from);
        return;
      }
      if (n < 0) {
        if (!retriable(errno)) {
          sideFailed(from);
          return;
        }
        if (dst.pipe->bytes > 0) {
          // The pipe is full, or the socket empty: which one, the other socket's write edge
          // tells (drained() reads again). Not counted as backpressure: the limit is not hit.
          src.paused = true;
          return;
        }
        // Emptied, unlike a short splice, which may only mean a full pipe.
        src.readable = false;
        if (spliced < kSmallWake && settings_.splice == SpliceMode::kAuto) dst.bulk = false;
        return;
      }
      const auto got = static_cast<size_t>(n);
      dst.pipe->bytes += got;
      spliced += got;
      lastActivity_ = base_.now();
      countRelayed(from, got);
      flushPipe(to);
      if (state_ == State::kClosed) return;
      continue;
    }
    // The common case: nothing queued towards a connected, writable peer. The bytes go through
    // the scratch buffer straight to the other socket.
    const bool through = queued == 0 && dst.connected && dst.writable && !awaitingProxyHeader_;
    const ssize_t n = through ? readSome(src.fd, scratch(), want) : dst.out.readFrom(src.fd, want);
    if (n == 0) {
      src.readable = false;
      if (awaitingProxyHeader_) {
        readProxyHeader(true);
      } else {
        peerEof(from);
      }
      return;
    }
    if (n < 0) {
      src.readable = false;
      if (!retriable(errno)) sideFailed(from);
      return;
    }
    const auto got = static_cast<size_t>(n);
    // A short read emptied the socket (unless a FIN waits behind it); the next edge says when
    // there is more.
    if (got < want && !src.finQueued) src.readable = false;
    if (got >= kBulkRead && settings_.splice == SpliceMode::kAuto && settings_.pipes != nullptr) {
      dst.bulk = true;
    }
    lastActivity_ = base_.now();
    if (awaitingProxyHeader_) {
      readProxyHeader(false);
      if (state_ == State::kClosed) return;
      if (awaitingProxyHeader_) continue;
      // The header is parsed and the first connect started: the rest waits for it.
      return;
    }
    countRelayed(from, got);
    if (through) {
      sendThrough(other(from), scratch(), got);
    } else if (dst.connected) {
      flush(other(from));
    }
    if (state_ == State::kClosed) return;
  }
}

void Flow::countRelayed(Side from, size_t n) {
  if (n == 0) return;
  (from == kClient ? bytesFromClient_ : bytesFromUpstream_) += n;
  if (settings_.counters != nullptr) settings_.counters->bytes[from].add(n);
}

void Flow::sendThrough(Side to, const char* data, size_t n) {
  Peer& p = peers_[to];
  const ssize_t sent = sendSome(p.fd, data, n);
  size_t taken = 0;
  if (sent >= 0) {
    taken = static_cast<size_t>(sent);
  } else if (!retriable(errno)) {
    sideFailed(to);
    return;
  }
  if (taken < n) {
    // The socket is full: keep the rest until its next write edge.
    p.writable = false;
    p.out.append(data + taken, n - taken);
  }
}

bool Flow::spliceTo(Side to) {
  Peer& dst = peers_[to];
  if (dst.pipe) return true;
  // Bytes in `out` go first, so a pipe is taken only while it is empty.
  if (!dst.bulk || !dst.out.empty() || !dst.connected || awaitingProxyHeader_) return false;
  dst.pipe = settings_.pipes->acquire();
  // None left: copy until the next large read tries again.
  if (!dst.pipe) dst.bulk = false;
  return dst.pipe != nullptr;
}

void Flow::flushPipe(Side to) {
  Peer& p = peers_[to];
  if (!p.pipe || p.pipe->bytes == 0 || !p.writable) return;
  const ssize_t n = spliceSome(p.pipe->readFd, p.fd, p.pipe->bytes);
  if (n < 0) {
    if (!retriable(errno)) {
      sideFailed(to);
      return;
    }
    p.writable = false;
    return;
  }
  p.pipe->bytes -= static_cast<size_t>(n);
  if (p.pipe->bytes > 0) p.writable = false;
  if (n > 0) drained(to);
}

void Flow::returnIdlePipe(Side side) {
  Peer& p = peers_[side];
  if (p.pipe && p.pipe->bytes == 0) settings_.pipes->release(std::move(p.pipe));
}

void Flow::flush(Side to) {
  Peer& p = peers_[to];
  if (p.pipe && p.pipe->bytes > 0) {
    // `out` is empty while the pipe holds bytes.
    flushPipe(to);
    return;
  }
  if (!p.out.empty() && p.writable) {
    const ssize_t n = p.out.writeTo(p.fd);
    if (n < 0) {
      if (!retriable(errno)) {
        sideFailed(to);
        return;
      }
      p.writable = false;
    } else if (!p.out.empty()) {
      p.writable = false;
    }
    if (n > 0) drained(to);
  } else if (p.out.empty()) {
    drained(to);
  }
}

void Flow::drained(Side to) {
  if (state_ == State::kClosed) return;
  Peer& p = peers_[to];
  Peer& src = peers_[other(to)];
  if (pending(to) > limit() / 2) return;
  lastActivity_ = base_.now();
  // The output drained below the limit: backpressure on `src` is over (even if `src` has
  // already sent EOF and will not be read again).
  pauseEnded(other(to));
  if (src.paused) {
    src.paused = false;
    // Bytes may have been waiting in its socket all along; read them on this pass.
    if (src.readable && !src.eof) src.io.activate(reactor::kRead);
  }
  if (pending(to) == 0 && p.shutdownPending) sendShutdown(to);
}

void Flow::sideFailed(Side side) {
  close(side == kClient ? CloseReason::kClientReset : CloseReason::kUpstreamReset);
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
  sendShutdown(other(side));
  if (state_ != State::kClosed) scheduleTimer();
}

// Passes an EOF on to `to` once its output is flushed (and, for the upstream, once connected).
void Flow::sendShutdown(Side to) {
  Peer& p = peers_[to];
  if (p.shutdownSent) return;
  if (!p.connected || pending(to) != 0) {
    p.shutdownPending = true;
    return;
  }
  p.shutdownPending = false;
  p.shutdownSent = true;
  // When `to` has ended its own direction too, the flow is over and close() sends the FIN.
  const bool last = p.eof;
  if (!last) {
    // ENOTCONN after the peer reset: the error surfaces on the next read or write.
    (void)::shutdown(p.fd, SHUT_WR);
  }
  checkFinished();
}

void Flow::checkFinished() {
  const bool clientDone = peers_[kClient].eof && peers_[kUpstream].shutdownSent;
  const bool upstreamDone = peers_[kUpstream].eof && peers_[kClient].shutdownSent;
  if (clientDone && upstreamDone) close(firstEof_);
}

// ---- timeouts ----------------------------------------------------------------------------------

void Flow::handleTimer() {
  armedDeadline_ = kNever;
  if (clientRefused_) {
    close(CloseReason::kClientReset);
    return;
  }
  if (state_ == State::kConnecting && tried_.empty() && !awaitingProxyHeader_) {
    connectNext();
    return;
  }
  const TimePoint now = base_.now();
  if (now >= proxyDeadline_) {
    close(CloseReason::kProxyProtocol);
    return;
  }
  if (now >= connectDeadline_) {
    connectFailed(stats::ConnectResult::kTimeout);
    return;
  }
  if (now >= lifetimeDeadline_) {
    close(CloseReason::kMaxLifetime);
    return;
  }
  if (now >= halfCloseDeadline_) {
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

TimePoint Flow::nextDeadline() const {
  TimePoint next =
      std::min({connectDeadline_, lifetimeDeadline_, halfCloseDeadline_, proxyDeadline_});
  if (state_ != State::kConnecting && settings_.idleTimeout > Duration::zero()) {
    next = std::min(next, lastActivity_ + settings_.idleTimeout);
  }
  return next;
}

// Lazy: a timer already armed for an earlier time is left alone (it re-computes when it fires),
// so activity costs a timestamp, not a timer-heap operation.
void Flow::scheduleTimer() {
  // Activated by start() and not run yet: it computes the deadline itself.
  if (timer_.isActive()) return;
  const TimePoint next = nextDeadline();
  if (next == kNever || armedDeadline_ <= next) return;
  timer_.add(std::max(Duration::zero(), next - base_.now()));
  armedDeadline_ = next;
}

// ---- closing -----------------------------------------------------------------------------------

void Flow::close(CloseReason reason) {
  if (state_ == State::kClosed) return;
  base_.assertInLoopThread();
  const bool wasConnected = upstreamConnected_;
  state_ = State::kClosed;
  closeReason_ = reason;
  pauseEnded(kClient);
  pauseEnded(kUpstream);
  timer_.del();
  armedDeadline_ = kNever;
  closeSide(kClient, reason == CloseReason::kUpstreamReset);
  closeSide(kUpstream, reason == CloseReason::kClientReset);
  if (settings_.budget != nullptr) reportBuffered(0);
  if (wasConnected) picker_.onFlowEnded(tried_.back());
  observer_.onFlowClosed(*this);
  base_.deferDelete(std::unique_ptr<reactor::DeferredDeletable>(this));
}

void Flow::closeSide(Side side, bool peerReset) {
  Peer& p = peers_[side];
  if (p.fd >= 0) {
    if (peerReset || pending(side) != 0) armReset(p.fd);
    p.io.delBeforeClose();
    ::close(p.fd);
    p.fd = -1;
  }
  // Nothing more will be sent (or, never connected, nothing was): the memory goes back now.
  p.out.clear();
  if (p.pipe) settings_.pipes->release(std::move(p.pipe));
}

void Flow::pauseStarted(Side from) {
  if (pausedSince_[from] != kNever) return;
  pausedSince_[from] = base_.now();
  if (settings_.counters != nullptr) settings_.counters->readPauses[from].add(1);
}

void Flow::pauseEnded(Side from) {
  if (pausedSince_[from] == kNever) return;
  const Duration paused = base_.now() - pausedSince_[from];
  pausedSince_[from] = kNever;
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
  const auto secs = static_cast<std::time_t>(sinceEpoch / 1000);
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
