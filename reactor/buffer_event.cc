#include "reactor/buffer_event.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <string>
#include <utility>

namespace evgate::reactor {
namespace {

constexpr EventMask kReadEvents = kRead | kPersist;
constexpr EventMask kWriteEvents = kWrite | kPersist;

// libevent's EVUTIL_ERR_RW_RETRIABLE: the socket has nothing to give or take right now; the
// persistent event simply fires again. (EWOULDBLOCK is EAGAIN on Linux.)
bool retriable(int err) { return err == EAGAIN || err == EINTR; }

// A blocking socket would stall the whole loop on a short read or write.
void makeNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) (void)::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// libevent's evutil_socket_finished_connecting_: 1 connected, 0 still connecting, -1 failed with
// errno set. A writable socket whose connect failed carries the reason in SO_ERROR.
int finishedConnecting(int fd) {
  int err = 0;
  socklen_t length = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) < 0) return -1;
  if (err == 0) return 1;
  if (err == EINTR || err == EINPROGRESS) return 0;
  errno = err;
  return -1;
}

}  // namespace

// libevent holds a reference across its readcb/writecb (bufferevent_incref_and_lock_); this is
// the same, as a count of our handlers on the stack.
class BufferEvent::CallbackScope {
 public:
  explicit CallbackScope(BufferEvent& bev) : bev_(bev) { ++bev_.callbackDepth_; }
  ~CallbackScope() { --bev_.callbackDepth_; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  BufferEvent& bev_;
};

BufferEvent::Ptr BufferEvent::create(EventBase& base, int fd, int options) {
  base.assertInLoopThread();
  if (fd >= 0) makeNonBlocking(fd);
  return Ptr(new BufferEvent(base, fd, options));
}

// As bufferevent_init_common_: writing starts enabled so that write() sends without further
// ado, reading must be asked for. Nothing is added yet.
BufferEvent::BufferEvent(EventBase& base, int fd, int options)
    : base_(base),
      fd_(fd),
      options_(options),
      readEvent_(base, fd, kReadEvents, onReadEvent, this),
      writeEvent_(base, fd, kWriteEvents, onWriteEvent, this),
      enabled_(kWrite) {
  applyLabels();
  input_.setCallback(onInputChanged, this);
  output_.setCallback(onOutputChanged, this);
}

BufferEvent::~BufferEvent() = default;

void BufferEvent::free() {
  base_.assertInLoopThread();
  assert(!freed_ && "BufferEvent freed twice");
  freed_ = true;
  setCallbacks(nullptr, nullptr, nullptr, nullptr);
  // Events first: the poller must forget the fd before it is closed and its number reused.
  readEvent_.del();
  writeEvent_.del();
  input_.setCallback(nullptr, nullptr);
  output_.setCallback(nullptr, nullptr);
  if ((options_ & kCloseOnFree) != 0 && fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  // A handler of ours is on the stack and will look at freed_ when the callback returns.
  if (callbackDepth_ > 0) {
    base_.deferDelete(std::unique_ptr<DeferredDeletable>(this));
    return;
  }
  delete this;
}

void BufferEvent::setCallbacks(DataCallback readcb, DataCallback writecb, EventCallback eventcb,
                               void* arg) {
  readCb_ = readcb;
  writeCb_ = writecb;
  eventCb_ = eventcb;
  cbArg_ = arg;
}

// bufferevent_enable + be_socket_enable: both re-add the event even if it is pending, which
// re-arms its timeout; a suspended read is only marked enabled.
int BufferEvent::enable(short what) {
  base_.assertInLoopThread();
  what &= kRead | kWrite;
  enabled_ |= what;
  int rc = 0;
  if ((what & kRead) != 0 && readSuspended_ == 0 && addEvent(readEvent_, readTimeout_) < 0) {
    rc = -1;
  }
  if ((what & kWrite) != 0 && addEvent(writeEvent_, writeTimeout_) < 0) rc = -1;
  return rc;
}

// bufferevent_disable + be_socket_disable: the write event also watches a connect in progress,
// so it stays until the connect is over.
int BufferEvent::disable(short what) {
  base_.assertInLoopThread();
  enabled_ &= static_cast<short>(~what);
  if ((what & kRead) != 0) readEvent_.del();
  if ((what & kWrite) != 0 && !connecting_) writeEvent_.del();
  return 0;
}

int BufferEvent::write(const void* data, size_t n) {
  output_.append(data, n);
  return 0;
}

int BufferEvent::write(Buffer& buf) {
  output_.appendBuffer(buf);
  return 0;
}

size_t BufferEvent::read(void* data, size_t n) { return input_.remove(data, n); }

// bufferevent_setwatermark. A new read high watermark takes effect at once: input() already
// above it stops reading, input() below it resumes.
void BufferEvent::setWatermark(short what, size_t low, size_t high) {
  if ((what & kWrite) != 0) writeLow_ = low;
  if ((what & kRead) == 0) return;
  readLow_ = low;
  readHigh_ = high;
  // Exactly at a new high watermark nothing changes (libevent's test is strict both ways).
  if (high != 0 && input_.length() > high) {
    suspendRead(kSuspendWatermark);
  } else if (high == 0 || input_.length() < high) {
    unsuspendRead(kSuspendWatermark);
  }
}

void BufferEvent::setTimeouts(std::optional<Duration> read, std::optional<Duration> write) {
  // libevent treats a zero timeval as "no timeout".
  const auto normalize = [](std::optional<Duration> d) {
    return d && *d > Duration::zero() ? d : std::nullopt;
  };
  const bool hadRead = readTimeout_.has_value();
  const bool hadWrite = writeTimeout_.has_value();
  readTimeout_ = normalize(read);
  writeTimeout_ = normalize(write);
  if (readTimeout_ || hadRead) adjustTimeout(readEvent_, kRead, readTimeout_);
  if (writeTimeout_ || hadWrite) adjustTimeout(writeEvent_, kWrite, writeTimeout_);
}

// bufferevent_generic_adj_existing_timeouts_: a pending event takes the new timeout now; one that
// is not pending takes it when next added.
void BufferEvent::adjustTimeout(Event& ev, EventMask io, const std::optional<Duration>& timeout) {
  if (timeout) {
    if (ev.pending(io)) ev.add(*timeout);
    return;
  }
  // Event has no event_remove_timer, and a persistent event remembers its last timeout across
  // del() (as libevent's ev_io_timeout does) and re-arms it after its next callback, so add()
  // alone would bring the old timeout back. assign() on a non-pending event forgets it; a
  // pending one is taken down and put back, keeping a run that is already queued.
  const bool wasPending = ev.pending(io);
  const bool wasActive = ev.isActive();
  ev.del();
  ev.assign(ev.fd(), ev.events(), ev.callback(), ev.arg());
  if (wasPending) ev.add();
  if (wasActive) ev.activate(io);
}

int BufferEvent::connect(const sockaddr* address, socklen_t length) {
  base_.assertInLoopThread();
  int fd = fd_;
  bool ownFd = false;
  if (fd < 0) {
    if (address == nullptr) return -1;
    fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      recordError(errno);
      return -1;
    }
    ownFd = true;
  }
  // As evutil_socket_connect_: 0 in progress (EINTR too: a non-blocking connect goes on in the
  // background), 1 connected at once (AF_UNIX), 2 refused at once.
  int state = 0;
  if (address != nullptr) {
    if (::connect(fd, address, length) == 0) {
      state = 1;
    } else if (errno == ECONNREFUSED) {
      state = 2;
    } else if (errno != EINPROGRESS && errno != EINTR) {
      const int err = errno;
      recordError(err);
      if (ownFd) ::close(fd);
      errno = err;
      return -1;
    }
  }
  // Suspended before setFd() re-adds what is enabled: a connecting socket has nothing to read,
  // and a failed one polls readable too, where a read would consume SO_ERROR (the reason) and
  // report kReading | kError before the write side could tell. libevent gets away with it only
  // because its newest event on an fd runs first; here the write side alone decides.
  connecting_ = true;
  connectionRefused_ = false;
  suspendRead(kSuspendConnecting);
  setFd(fd);
  if (state == 0) {
    if (addEvent(writeEvent_, writeTimeout_) == 0) return 0;
    recordError(errno);
    connecting_ = false;
    unsuspendRead(kSuspendConnecting);
    return -1;
  }
  // The outcome is already known, but it is reported from the loop, as libevent does: the
  // caller is still inside connect() and may not expect a callback yet.
  connectionRefused_ = state == 2;
  writeEvent_.activate(kWrite);
  return 0;
}

// be_socket_setfd: the events move to the new fd and whatever is enabled is re-added (so with
// writing enabled, the write callback runs once even with nothing to write, as in libevent).
int BufferEvent::setFd(int fd) {
  base_.assertInLoopThread();
  readEvent_.del();
  writeEvent_.del();
  if (fd >= 0) makeNonBlocking(fd);
  fd_ = fd;
  readEvent_.assign(fd, kReadEvents, onReadEvent, this);
  writeEvent_.assign(fd, kWriteEvents, onWriteEvent, this);
  applyLabels();
  if (fd >= 0) enable(enabled_);
  return 0;
}

void BufferEvent::setLabel(std::string prefix) {
  base_.assertInLoopThread();
  labelPrefix_ = std::move(prefix);
  applyLabels();
}

void BufferEvent::applyLabels() {
  const std::string prefix =
      labelPrefix_.empty() ? "bufferevent fd " + std::to_string(fd_) : labelPrefix_;
  readEvent_.setLabel(prefix + " read");
  writeEvent_.setLabel(prefix + " write");
}

int BufferEvent::addEvent(Event& ev, const std::optional<Duration>& timeout) {
  // libevent's evmap accepts (and ignores) an event on fd -1, so a bufferevent may be enabled
  // before connect() gives it a socket; setFd() adds the events for real.
  if (fd_ < 0) return 0;
  return timeout ? ev.add(*timeout) : ev.add();
}

void BufferEvent::suspendRead(uint8_t reason) {
  if (readSuspended_ == 0) readEvent_.del();
  readSuspended_ |= reason;
}

void BufferEvent::unsuspendRead(uint8_t reason) {
  readSuspended_ &= static_cast<uint8_t>(~reason);
  if (readSuspended_ == 0 && (enabled_ & kRead) != 0) addEvent(readEvent_, readTimeout_);
}

void BufferEvent::recordError(int err) { socketError_ = err; }

// ---- handlers --------------------------------------------------------------------------------

void BufferEvent::onReadEvent(int, EventMask what, void* arg) {
  auto* self = static_cast<BufferEvent*>(arg);
  CallbackScope scope(*self);
  self->handleRead(what);
}

void BufferEvent::onWriteEvent(int, EventMask what, void* arg) {
  auto* self = static_cast<BufferEvent*>(arg);
  CallbackScope scope(*self);
  self->handleWrite(what);
}

// bufferevent_inbuf_wm_cb: every change to input() (a read from the socket, or the user
// draining it) re-decides whether the read high watermark suspends reading.
void BufferEvent::onInputChanged(Buffer& buffer, const BufferChange&, void* arg) {
  auto* self = static_cast<BufferEvent*>(arg);
  if (self->readHigh_ == 0) return;
  if (buffer.length() >= self->readHigh_) {
    self->suspendRead(kSuspendWatermark);
  } else {
    self->unsuspendRead(kSuspendWatermark);
  }
}

// bufferevent_socket_outbuf_cb: bytes appended to output() by any means start the writer. An
// already pending write event keeps its timeout running.
void BufferEvent::onOutputChanged(Buffer&, const BufferChange& change, void* arg) {
  auto* self = static_cast<BufferEvent*>(arg);
  if (change.added == 0 || (self->enabled_ & kWrite) == 0 || self->writeEvent_.pending(kWrite)) {
    return;
  }
  self->addEvent(self->writeEvent_, self->writeTimeout_);
}

// bufferevent_readcb.
void BufferEvent::handleRead(EventMask what) {
  // Only a bare timeout counts: kTimeout | kRead means data came in time.
  if (what == reactor::kTimeout) {
    disable(kRead);
    runEventCallback(kReading | kTimeout);
    return;
  }
  size_t howmuch = maxSingleRead_;
  if (readHigh_ != 0) {
    // The watermark was lowered below what input() holds.
    if (input_.length() >= readHigh_) {
      suspendRead(kSuspendWatermark);
      return;
    }
    howmuch = std::min(howmuch, readHigh_ - input_.length());
  }
  // Reaching the high watermark suspends reading from inside readFrom (onInputChanged), before
  // the callback runs; that is what keeps a slow consumer's input() bounded.
  const ssize_t n = input_.readFrom(fd_, howmuch);
  if (n > 0) {
    if (input_.length() >= readLow_) runReadCallback();
    return;
  }
  short result = kReading;
  if (n == 0) {
    result |= kEof;
  } else {
    const int err = errno;
    if (retriable(err)) return;
    recordError(err);
    result |= kError;
  }
  disable(kRead);
  runEventCallback(result);
}

// bufferevent_writecb.
void BufferEvent::handleWrite(EventMask what) {
  if (what == reactor::kTimeout) {
    disable(kWrite);
    runEventCallback(kWriting | kTimeout);
    return;
  }
  bool connected = false;
  if (connecting_ && !finishConnect(connected)) return;
  ssize_t n = 0;
  if (!output_.empty()) {
    n = output_.writeTo(fd_, maxSingleWrite_);
    if (n < 0 && retriable(errno)) return;
    if (n <= 0) {
      short result = kWriting;
      if (n == 0) {
        result |= kEof;
      } else {
        recordError(errno);
        result |= kError;
      }
      disable(kWrite);
      runEventCallback(result);
      return;
    }
  }
  if (output_.empty()) writeEvent_.del();
  // libevent's `res || !connected`: the connect just finishing with nothing written is not a
  // drain; an empty output found by an enabled write event is.
  if ((n > 0 || !connected) && output_.length() <= writeLow_) runWriteCallback();
}

bool BufferEvent::finishConnect(bool& connected) {
  int c = finishedConnecting(fd_);
  int err = errno;
  // Refused inside connect() itself: SO_ERROR was consumed by that call.
  if (connectionRefused_) {
    connectionRefused_ = false;
    c = -1;
    err = ECONNREFUSED;
  }
  if (c == 0) return false;
  connecting_ = false;
  if (c < 0) {
    // As libevent: both events go, but what is enabled stays as it was.
    writeEvent_.del();
    readEvent_.del();
    readSuspended_ &= static_cast<uint8_t>(~kSuspendConnecting);
    recordError(err);
    runEventCallback(kError);
    return false;
  }
  connected = true;
  unsuspendRead(kSuspendConnecting);
  if (!runEventCallback(kConnected)) return false;
  if ((enabled_ & kWrite) == 0) {
    writeEvent_.del();
    return false;
  }
  return true;
}

void BufferEvent::runReadCallback() {
  if (readCb_ != nullptr) readCb_(*this, cbArg_);
}

void BufferEvent::runWriteCallback() {
  if (writeCb_ != nullptr) writeCb_(*this, cbArg_);
}

bool BufferEvent::runEventCallback(short what) {
  if (eventCb_ != nullptr) {
    // A libevent event callback reads the reason from errno (EVUTIL_SOCKET_ERROR).
    if ((what & kError) != 0) errno = socketError_;
    eventCb_(*this, what, cbArg_);
  }
  return !freed_;
}

}  // namespace evgate::reactor
