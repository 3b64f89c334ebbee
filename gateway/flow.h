#pragma once

// A Flow relays one client connection and one upstream connection on a worker's loop.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gateway/buffer_budget.h"
#include "gateway/close_reason.h"
#include "gateway/config/config.h"
#include "gateway/pipe_pool.h"
#include "gateway/stats.h"
#include "reactor/buffer.h"
#include "reactor/clock.h"
#include "reactor/event.h"
#include "reactor/event_base.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

using Duration = reactor::Duration;
using TimePoint = reactor::TimePoint;

class Flow;

// What a flow needs from its cluster; implemented per worker by the cluster (tests: a fake).
// Thread rule: called on the flow's loop thread only.
class UpstreamPicker {
 public:
  virtual ~UpstreamPicker() = default;
  // The next endpoint for a flow from `client`, not among `tried`; nullopt: none available.
  virtual std::optional<reactor::SocketAddress> pick(
      const reactor::SocketAddress& client, std::span<const reactor::SocketAddress> tried) = 0;
  // The outcome of one connect attempt (health / outlier input, metrics) and how long it took
  // (the loop's clock, from the attempt's start).
  virtual void onConnectResult(const reactor::SocketAddress& endpoint, stats::ConnectResult result,
                               Duration elapsed) = 0;
  // Once per flow that connected to `endpoint` (after onConnectResult(endpoint, true)), when the
  // flow ends: connection counts.
  virtual void onFlowEnded(const reactor::SocketAddress& endpoint) = 0;
  // Per attempt; <= 0: no timeout.
  virtual Duration connectTimeout() const = 0;
  // Attempts in all, the first included; 0 counts as 1.
  virtual uint32_t maxConnectAttempts() const = 0;
  // The PROXY protocol header to send to a connected upstream before any client byte.
  virtual ProxyProtocol sendProxyProtocol() const { return ProxyProtocol::kNone; }
  // The local address (port 0) the next connect attempt to an endpoint of `family` binds, with
  // IP_BIND_ADDRESS_NO_PORT; null: no bind (the kernel picks address and port at connect()).
  // The pointer stays valid until the picker is destroyed.
  virtual const reactor::SocketAddress* nextSource(int /*family*/) { return nullptr; }
};

// Told when a flow ends. Thread rule: called on the flow's loop thread.
class FlowObserver {
 public:
  virtual ~FlowObserver() = default;
  // The flow is closed (closeReason() is set, its sockets are closed) and will be deleted at the
  // end of this loop iteration: log it, count it, drop it from registries. Must not call close().
  virtual void onFlowClosed(Flow& flow) = 0;
};

// The listener's settings a flow follows (ListenerConfig's buffer_limit, idle_timeout,
// half_close_timeout, max_lifetime and its jitter, proxy_protocol and proxy_protocol_timeout).
// A duration <= 0 disables that timeout.
struct FlowSettings {
  size_t bufferLimit = size_t{64} * 1024;  // per direction; 0 counts as 1
  Duration idleTimeout = std::chrono::seconds(300);
  Duration halfCloseTimeout = std::chrono::seconds(30);
  std::optional<Duration> maxLifetime;  // absent: unlimited
  Duration maxLifetimeJitter{0};        // a uniform random [0, jitter] is added per flow
  bool acceptProxyProtocol = false;     // expect a PROXY v1/v2 header from the client first
  Duration proxyProtocolTimeout = std::chrono::seconds(5);  // for that whole header
  // Where the flow counts relayed bytes and backpressure: its listener's counters, this worker's
  // slot. Null: not counted. Must outlive the flow.
  stats::ListenerCounters* counters = nullptr;
  // The worker's pipes for splice(); null: bytes are always copied. Must outlive the flow.
  PipePool* pipes = nullptr;
  SpliceMode splice = SpliceMode::kAuto;
  // The worker's share of the memory budget (buffer_budget.h): the flow reports its bytes to it
  // and follows its flowLimit(). Null: no budget. Must outlive the flow.
  BufferAccount* budget = nullptr;
};

// Relays a client connection and an upstream connection on one loop. Each side is a
// non-blocking socket registered once, edge-triggered, for reading and writing (one epoll_ctl
// per socket for the flow's whole life), plus an output Buffer for the bytes the socket could not
// take yet.
//
// The data path: a readable side is read into the worker's scratch buffer and written straight
// to the other side (write-through); only what that socket does not take is copied into its
// output, and while an output holds bytes, reads from the other side go straight into it (one
// copy, no allocation per chunk once the output has room). So a flow whose peers keep up
// allocates nothing and holds no buffer memory between chunks, and a chunk costs one read and one
// send, no epoll_ctl and no extra loop pass.
//
// Bulk: when a read brings kBulkRead bytes or more (settings.splice auto; always: from the
// start), the direction switches to splice(): the bytes go from one socket into a pipe taken from
// the worker's PipePool and from the pipe into the other socket, never through user space. The pipe
// counts as part of that side's output (same limit), is taken only while it holds bytes and is
// given back as soon as it is empty. A wake-up that splices less than kSmallWake bytes in all
// switches the direction back to copying (small chunks cost fewer syscalls that way). No pipe
// available (the pool's limit, fd exhaustion): the bytes are copied.
//
// Backpressure: reading from a side stops while the other side's output holds bufferLimit bytes
// or more and resumes when that output drains to bufferLimit / 2; each read takes at most
// min(64 KiB, bufferLimit - that output's length). So each direction holds at most bufferLimit
// bytes, whatever the peers do: bufferedBytes() <= 2 * bufferLimit. While the upstream connects,
// the client's early bytes wait in the upstream's output, bounded the same way.
//
// Half-close: EOF from one side becomes shutdown(SHUT_WR) on the other side once that side's
// output is flushed; the other direction keeps flowing. The flow ends normally (client_eof or
// upstream_eof: who closed first) when both directions have ended, or with half_close_timeout
// if the second does not end within halfCloseTimeout of the first. The last EOF is passed on by
// close() itself (a FIN), not by a shutdown() right before it.
//
// Closing: a reset or socket error on one side (client_reset / upstream_reset) aborts the other
// side with a RST (SO_LINGER 0): a FIN would tell that peer its stream ended cleanly, which is
// false. Any other close (timeouts, admin, drain) sends a FIN to a side whose output is empty and
// a RST to one with unsent bytes (they will never arrive; the peer must not take the stream as
// complete).
//
// Timeouts: one timer per flow, armed at the earliest of the connect deadline (per attempt), the
// idle deadline, the half-close deadline and the lifetime deadline. Activity (bytes read from
// either side, or an output draining to its low watermark) only records the loop's cached time;
// the idle deadline is checked, and the timer re-armed, when the timer fires.
//
// Connecting: each attempt asks the picker for an endpoint not tried yet; a refused, failed or
// timed-out attempt is reported to the picker and the next endpoint is tried, up to
// maxConnectAttempts(). No endpoint at the first attempt: no_healthy_upstream; otherwise
// connect_failed. When picker.nextSource() gives a source address, the upstream socket binds it
// with IP_BIND_ADDRESS_NO_PORT before connect(); a failed bind is a failed attempt (kError).
//
// PROXY protocol (proxy_protocol.h). With settings.acceptProxyProtocol the flow first reads the
// client until a whole v1 / v2 header is parsed (it reads no more than bufferLimit, or the
// largest header if that is more), within proxyProtocolTimeout; a malformed or truncated header
// or the timeout closes the client (proxy_protocol_error). The header's source, if it has one,
// becomes client() (picking, hashing, logs); the bytes after it are relayed as usual, and only
// then does the first connect start. With picker.sendProxyProtocol() != kNone, a connected
// upstream first gets a v1 / v2 header: source client(), destination the accepted header's
// destination if there was one, else the client socket's local address (the listener's).
//
// Events: in EventBase::dumpEvents() a flow's events are labelled "flow ID client",
// "flow ID upstream" (each side's socket, read and write) and "flow ID timer".
//
// Thread rule: loop thread only, for every method; a flow lives and dies on its loop.
// Ownership: a flow owns itself. When it ends it closes both sockets, calls
// observer.onFlowClosed() and deletes itself at the end of that loop iteration
// (EventBase::deferDelete). The picker and the observer must outlive it.
class Flow : public reactor::DeferredDeletable {
 public:
  enum class State : uint8_t { kConnecting, kEstablished, kHalfClosed, kClosed };

  // The most one read from a socket takes (never more than bufferLimit).
  static constexpr size_t kMaxSingleRead = size_t{64} * 1024;
  // A read at least this large makes a direction bulk (splice() from then on, settings.splice
  // auto), and a wake-up that splices less than kSmallWake in all makes it copy again.
  static constexpr size_t kBulkRead = size_t{16} * 1024;
  static constexpr size_t kSmallWake = size_t{4} * 1024;

  // Starts relaying `clientFd` (an accepted, connected socket; the flow owns it from now on).
  // The first connect attempt starts from the loop, so the observer is never called before
  // start() returns. The returned pointer stays valid until the end of the loop iteration in
  // which onFlowClosed() is called. `settings` are kept by reference (flows of one listener
  // share them; a flow is mostly idle memory) and must not change or go before the flow is
  // deleted. Loop thread only.
  static Flow* start(reactor::EventBase& base, uint64_t id, int clientFd,
                     const reactor::SocketAddress& client, const FlowSettings& settings,
                     UpstreamPicker& picker, FlowObserver& observer);

  Flow(const Flow&) = delete;
  Flow& operator=(const Flow&) = delete;
  ~Flow() override;

  // Closes both sides now (admin, drain, limit, ...): see the class comment for FIN vs RST.
  // Does nothing on a closed flow. Loop thread only.
  void close(CloseReason reason);

  uint64_t id() const { return id_; }
  // On the loop's clock, and on the wall clock (for logs).
  TimePoint startTime() const { return startTime_; }
  std::chrono::system_clock::time_point startWallTime() const { return startWallTime_; }
  // The client: the source of an accepted PROXY header, or else the socket's peer.
  const reactor::SocketAddress& client() const { return proxiedClient_ ? *proxiedClient_ : peer_; }
  // The client socket's peer (the proxy in front when a PROXY header was accepted).
  const reactor::SocketAddress& peer() const { return peer_; }
  // The connected endpoint; nullopt while connecting or if no connect succeeded.
  std::optional<reactor::SocketAddress> upstream() const {
    if (!upstreamConnected_) return std::nullopt;
    return tried_.back();
  }
  // Bytes read from each side to be passed on to the other (a PROXY header not included; bytes
  // read while the upstream connects count even if no connect succeeds).
  uint64_t bytesFromClient() const { return bytesFromClient_; }
  uint64_t bytesFromUpstream() const { return bytesFromUpstream_; }
  // Bytes held in both sides' inputs and outputs right now.
  size_t bufferedBytes() const;
  // The loop's time of the last activity (a byte read from either side, an output drained to its
  // low watermark, or the start): what idle_timeout measures from.
  TimePoint lastActivity() const { return lastActivity_; }
  State state() const { return state_; }
  // kNone until the flow is closed.
  CloseReason closeReason() const { return closeReason_; }
  // Endpoints tried so far, in order (the connected one last).
  std::span<const reactor::SocketAddress> triedEndpoints() const { return tried_.all(); }
  // Whether reading from a side is stopped by backpressure now (the flow is at its buffer limit
  // in at least one direction).
  bool atBufferLimit() const {
    return pausedSince_[kClient] != kNever || pausedSince_[kUpstream] != kNever;
  }

 private:
  enum Side : uint8_t { kClient = 0, kUpstream = 1 };

  // One side's socket and what has happened to it.
  struct Peer {
    explicit Peer(reactor::EventBase& base) : io(base, -1, 0, nullptr, nullptr) {}

    reactor::Event io;    // edge-triggered read + write, registered while fd >= 0
    reactor::Buffer out;  // bytes from the other side this socket has not taken yet
    // Bytes from the other side on their way by splice(), after everything in `out`; held only
    // while it has bytes (and during the pass that fills it).
    std::unique_ptr<Pipe> pipe;
    int fd = -1;
    // One bit each, beside fd: a flow is mostly idle memory.
    bool connected : 1 = false;        // the client from the start; the upstream once connected
    bool readable : 1 = false;         // a read edge came and the socket may still hold bytes
    bool finQueued : 1 = false;        // the peer's FIN has arrived (EPOLLRDHUP): read until EOF
    bool writable : 1 = true;          // no send has hit a full socket since the last write edge
    bool eof : 1 = false;              // EOF read from this side
    bool shutdownSent : 1 = false;     // SHUT_WR sent to this side (or the flow ended after EOF)
    bool shutdownPending : 1 = false;  // SHUT_WR to send once the output is flushed
    bool paused : 1 = false;           // reading stopped by backpressure
    bool bulk : 1 = false;             // bytes to this side come in bulk: splice them
  };

  Flow(reactor::EventBase& base, uint64_t id, int clientFd, const reactor::SocketAddress& client,
       const FlowSettings& settings, UpstreamPicker& picker, FlowObserver& observer);

  static void onClientIo(int fd, reactor::EventMask what, void* arg);
  static void onUpstreamIo(int fd, reactor::EventMask what, void* arg);
  static void onTimer(int fd, reactor::EventMask what, void* arg);
  // "flow ID client|upstream|timer", computed only when dumpEvents() asks.
  static std::string eventLabel(const reactor::Event& ev, const void* owner);

  static Side other(Side side) { return side == kClient ? kUpstream : kClient; }

  // Registers `fd` as `side`'s socket (the flow owns it from now on); false if epoll refused it.
  bool attach(Side side, int fd);
  void handleIo(Side side, reactor::EventMask what);
  void relayIo(Side side, reactor::EventMask what);
  void readProxyHeader(bool eof);
  void connectNext();
  void finishConnect(reactor::EventMask what);
  void connectFailed(stats::ConnectResult result);
  void connected();
  // Reads `from` while it has bytes and the other side's output has room, passing them on.
  void pump(Side from);
  // Sends what `to`'s output holds, as far as its socket takes it.
  void flush(Side to);
  // Whether the next read from the other side goes to `to` by splice(); takes a pipe if needed.
  bool spliceTo(Side to);
  // Moves what `to`'s pipe holds into its socket, as far as it takes it (on a socket error the
  // flow is closed).
  void flushPipe(Side to);
  // The buffer limit per direction: bufferLimit (at least 1), less while the memory budget is
  // tight.
  size_t limit() const {
    const size_t own = std::max<size_t>(settings_.bufferLimit, 1);
    return settings_.budget != nullptr ? settings_.budget->flowLimit(own) : own;
  }
  // Tells the budget how many bytes the flow holds now (after each event, and 0 at close).
  void reportBuffered(size_t now);
  // Gives `side`'s pipe back to the pool if it is empty.
  void returnIdlePipe(Side side);
  // Bytes waiting for `to`: its output and its pipe.
  size_t pending(Side to) const {
    const Peer& p = peers_[to];
    return p.out.length() + (p.pipe ? p.pipe->bytes : 0);
  }
  // Sends `n` bytes of scratch memory to `to` (its output empty); keeps what it does not take.
  void sendThrough(Side to, const char* data, size_t n);
  // After bytes left `to`'s output: resumes reading into it, passes on a pending EOF.
  void drained(Side to);
  void countRelayed(Side from, size_t n);
  void peerEof(Side side);
  void sendShutdown(Side to);
  void checkFinished();
  void handleTimer();
  void scheduleTimer();
  // The earliest deadline; kNever if none.
  TimePoint nextDeadline() const;
  void closeSide(Side side, bool reset);
  // A socket error on `side` (reading from it or writing to it).
  void sideFailed(Side side);
  // Backpressure on reading from `from` started / ended (metrics: pauses and time paused).
  void pauseStarted(Side from);
  void pauseEnded(Side from);

  reactor::EventBase& base_;
  const uint64_t id_;
  const reactor::SocketAddress peer_;
  // From an accepted PROXY header (rare: kept out of line, a flow is mostly idle memory).
  std::unique_ptr<const reactor::SocketAddress> proxiedClient_;
  std::unique_ptr<const reactor::SocketAddress> proxyDestination_;
  const FlowSettings& settings_;
  UpstreamPicker& picker_;
  FlowObserver& observer_;

  const TimePoint startTime_;
  const std::chrono::system_clock::time_point startWallTime_;
  // Deadlines and times that may be unset hold kNever (not optionals: 8 bytes each, not 16).
  static constexpr TimePoint kNever = TimePoint::max();
  TimePoint lifetimeDeadline_ = kNever;
  TimePoint connectDeadline_ = kNever;
  TimePoint halfCloseDeadline_ = kNever;
  TimePoint proxyDeadline_ = kNever;
  TimePoint lastActivity_;
  TimePoint connectStart_;                       // the current attempt's
  TimePoint pausedSince_[2] = {kNever, kNever};  // per side read from, while paused

  Peer peers_[2];
  // The endpoints tried, in order: inline while there is one (almost every flow), in a vector
  // from the second attempt on.
  class Tried {
   public:
    std::span<const reactor::SocketAddress> all() const {
      if (more_) return *more_;
      return {&first_, first_.length() == 0 ? 0u : 1u};
    }
    bool empty() const { return all().empty(); }
    size_t size() const { return all().size(); }
    const reactor::SocketAddress& back() const { return all().back(); }
    // NOLINTNEXTLINE(readability-identifier-naming): named as std::vector's, like the rest.
    void push_back(const reactor::SocketAddress& endpoint) {
      if (!more_ && first_.length() == 0) {
        first_ = endpoint;
        return;
      }
      if (!more_) more_ = std::make_unique<std::vector<reactor::SocketAddress>>(1, first_);
      more_->push_back(endpoint);
    }

   private:
    reactor::SocketAddress first_;  // length 0: none yet
    std::unique_ptr<std::vector<reactor::SocketAddress>> more_;
  };
  Tried tried_;
  uint64_t bytesFromClient_ = 0;
  uint64_t bytesFromUpstream_ = 0;
  State state_ = State::kConnecting;
  bool upstreamConnected_ = false;    // tried_.back() is the connected endpoint
  bool awaitingProxyHeader_ = false;  // reading the client's PROXY header; no connect yet
  bool clientRefused_ = false;        // epoll refused the client socket: close at the first turn
  CloseReason closeReason_ = CloseReason::kNone;
  CloseReason firstEof_ = CloseReason::kNone;
  // bufferedBytes() as last reported to settings_.budget (at most 2 × 1 GiB + a PROXY header).
  uint32_t reportedBuffered_ = 0;

  reactor::Event timer_;
  TimePoint armedDeadline_ = kNever;
};

const char* toString(Flow::State state);

// One access-log record: a JSON object without a trailing newline, with id, start (RFC 3339,
// UTC, milliseconds), duration_ms (to `now`), client, upstream (null if none), bytes_in (from
// the client), bytes_out (to the client), reason. Loop thread only (reads the flow).
std::string accessLogLine(const Flow& flow, std::chrono::system_clock::time_point now);

}  // namespace evgate::gateway
