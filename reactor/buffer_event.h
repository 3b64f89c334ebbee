#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "reactor/buffer.h"
#include "reactor/clock.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::reactor {

// A socket with an input and an output Buffer: libevent's socket bufferevent
// (bufferevent_sock.c, 2.1). The loop reads from the socket into input() and calls the read
// callback; write() (or anything appended to output()) is written out when the socket is
// writable, and the write callback runs once output() has drained to the write low watermark.
// EOF, errors, timeouts and the end of a connect() go to the event callback.
//
// Events: a read event (kRead | kPersist, read timeout) that is pending while reading is enabled
// and not suspended, and a write event (kWrite | kPersist, write timeout) that is pending while
// writing is enabled and there is something to write, or while connecting. As in libevent,
// enable(kWrite) adds the write event even with an empty output, so the write callback then runs
// once from the loop. Both are labelled "bufferevent fd N read|write" in dumpEvents(), or
// "PREFIX read|write" after setLabel(PREFIX).
//
// Read watermarks: the read callback runs only when input() holds at least `low` bytes; reading
// from the socket stops while input() holds `high` bytes or more (the kernel keeps the rest and
// the peer is slowed down by TCP flow control), and resumes as soon as input() drops below
// `high`. Suspension is a set of reasons (watermark, connecting): reading happens only when it is
// enabled and no reason is set.
//
// One deliberate difference from libevent 2.1.12: when input() is at the read high watermark and
// the read callback does not drain it, libevent re-runs the read callback over and over (its
// bufferevent_inbuf_wm_check re-triggers a deferred callback after each run, so one non-blocking
// loop pass never ends). Here the read callback runs once, and then only when new bytes arrive,
// which needs input() to drop below the high watermark first.
//
// Other differences: reading is not attempted while connecting (a failed connect is reported
// once, as kError, by the write side); a kCloseOnFree fd is closed by free() itself rather than
// by a finalizer on the next loop pass; a timeout cleared while its direction is disabled stays
// cleared (libevent 2.1.12 re-arms the old one after the next read or write).
//
// Thread rule: loop thread only, for every method (the thread running the base's loop, or the
// thread that owns a base that is not running).
//
// Ownership: create() returns a Ptr; destroying it (or calling free()) releases the object. It
// may be freed from inside any of its own callbacks: the memory then lives until the end of the
// loop iteration (EventBase::deferDelete) and no further callback of it runs. The fd is owned
// only with kCloseOnFree. input() and output() are owned by the BufferEvent; their change
// callbacks are the BufferEvent's and must not be replaced. The BufferEvent must not outlive its
// base.
// The destructor is private on purpose: a BufferEvent is freed through DeferredDeletable.
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor)
class BufferEvent : public DeferredDeletable {
 public:
  // Option bits for create() (BEV_OPT_*).
  static constexpr int kCloseOnFree = 0x01;

  // Event callback bits (BEV_EVENT_*).
  static constexpr short kReading = 0x01;
  static constexpr short kWriting = 0x02;
  static constexpr short kEof = 0x10;
  static constexpr short kError = 0x20;
  static constexpr short kTimeout = 0x40;
  static constexpr short kConnected = 0x80;

  // libevent's MAX_SINGLE_READ_DEFAULT and MAX_SINGLE_WRITE_DEFAULT.
  static constexpr size_t kDefaultMaxSingleRead = 16384;
  static constexpr size_t kDefaultMaxSingleWrite = 16384;

  using DataCallback = void (*)(BufferEvent& bev, void* arg);
  using EventCallback = void (*)(BufferEvent& bev, short events, void* arg);

  struct Deleter {
    void operator()(BufferEvent* bev) const { bev->free(); }
  };
  using Ptr = std::unique_ptr<BufferEvent, Deleter>;

  // bufferevent_socket_new. `fd` may be -1 (then connect() allocates a socket, or setFd() gives
  // one); a given fd is made non-blocking. Writing is enabled and reading is not; nothing is
  // pending until there is something to do. `options`: kCloseOnFree or 0.
  // Loop thread only.
  static Ptr create(EventBase& base, int fd, int options);

  BufferEvent(const BufferEvent&) = delete;
  BufferEvent& operator=(const BufferEvent&) = delete;

  // bufferevent_free: drops the callbacks, makes both events non-pending, closes the fd if
  // kCloseOnFree, and deletes the object: now, or at the end of the loop iteration when one of
  // its callbacks is on the stack. Ptr's deleter calls it. Loop thread only.
  void free();

  // bufferevent_setcb. Any callback may be null; `arg` is passed to each of them, not owned.
  // Loop thread only.
  void setCallbacks(DataCallback readcb, DataCallback writecb, EventCallback eventcb, void* arg);

  // bufferevent_enable / bufferevent_disable of kRead and/or kWrite. Enabling (re-)arms the
  // matching timeout. Disabling kWrite while connecting keeps the connect going. Return 0, or -1
  // if the poller refused the fd. Loop thread only.
  int enable(short what);
  int disable(short what);
  // What is enabled (bufferevent_get_enabled). Loop thread only.
  short enabled() const { return enabled_; }

  // Appends a copy of `data` to output() (bufferevent_write). Returns 0. Loop thread only.
  int write(const void* data, size_t n);
  // Moves all of `buf` to output() without copying its bytes; `buf` ends empty
  // (bufferevent_write_buffer). Returns 0. Loop thread only.
  int write(Buffer& buf);
  // Removes up to n bytes from the front of input() into `data`; returns how many
  // (bufferevent_read). Loop thread only.
  size_t read(void* data, size_t n);

  // The buffers; see the class comment for the ownership of their callbacks. Loop thread only.
  Buffer& input() { return input_; }
  Buffer& output() { return output_; }

  // bufferevent_setwatermark for kRead and/or kWrite. Read: `low` gates the read callback,
  // `high` (0: unlimited) stops reading from the socket. Write: the write callback runs when
  // output() drains to `low` or below; `high` means nothing to a socket, as in libevent.
  // Loop thread only.
  void setWatermark(short what, size_t low, size_t high);

  // bufferevent_set_timeouts: how long reading (writing) may wait for the socket before the
  // event callback gets kReading (kWriting) | kTimeout and that direction is disabled. A
  // persistent event's timeout restarts whenever the socket is ready. nullopt or a duration
  // <= 0: no timeout. Applies at once to a pending event. Loop thread only.
  void setTimeouts(std::optional<Duration> read, std::optional<Duration> write);

  // bufferevent_socket_connect: connects the fd (allocating a non-blocking SOCK_STREAM socket of
  // the address family when the fd is -1; owned as the fd from then on). The outcome is reported
  // from the loop, never inline: kConnected, or kError with socketError() set (also for
  // ECONNREFUSED returned at once). Returns 0 once the connect is under way, or -1 (nothing
  // reported) if the socket could not be made or connect() failed at once with another error;
  // then socketError() tells why and an allocated socket is closed again. A null `address`
  // waits for a connect the caller already started on the fd. Loop thread only.
  int connect(const sockaddr* address, socklen_t length);

  // The socket, or -1 (bufferevent_getfd). Loop thread only.
  int fd() const { return fd_; }
  // bufferevent_setfd: makes the events watch `fd` (made non-blocking; -1: none) and re-adds
  // what is enabled. The previous fd is not closed. Returns 0. Loop thread only.
  int setFd(int fd);

  EventBase& base() const { return base_; }

  // Names the owner in dumpEvents(): the read and write events are labelled "`prefix` read" and
  // "`prefix` write" from now on, whatever fd they watch (e.g. "flow 42 upstream"). Empty: back
  // to "bufferevent fd N read|write". Loop thread only.
  void setLabel(std::string prefix);

  // The errno of the last failed read, write, connect or socket call (0 if none): what
  // EVUTIL_SOCKET_ERROR() gives a libevent event callback. errno is also set to it before an
  // event callback reporting kError runs. Loop thread only.
  int socketError() const { return socketError_; }

  // bufferevent_set_max_single_read / _write: the most one read (write) syscall moves. 0 restores
  // the default. Loop thread only.
  size_t maxSingleRead() const { return maxSingleRead_; }
  void setMaxSingleRead(size_t n) { maxSingleRead_ = n != 0 ? n : kDefaultMaxSingleRead; }
  size_t maxSingleWrite() const { return maxSingleWrite_; }
  void setMaxSingleWrite(size_t n) { maxSingleWrite_ = n != 0 ? n : kDefaultMaxSingleWrite; }

 private:
  // Why reading is suspended while enabled (libevent's bufferevent_suspend_flags).
  enum SuspendReason : uint8_t {
    kSuspendWatermark = 0x01,   // input() is at the read high watermark
    kSuspendConnecting = 0x02,  // connect() has not finished
  };

  BufferEvent(EventBase& base, int fd, int options);
  ~BufferEvent() override;

  static void onReadEvent(int fd, EventMask what, void* arg);
  static void onWriteEvent(int fd, EventMask what, void* arg);
  static void onInputChanged(Buffer& buffer, const BufferChange& change, void* arg);
  static void onOutputChanged(Buffer& buffer, const BufferChange& change, void* arg);

  void handleRead(EventMask what);
  void handleWrite(EventMask what);
  // Returns false when the write handler must stop (still connecting, or connect failed, or the
  // callback freed us); sets `connected` when the connect finished just now.
  bool finishConnect(bool& connected);

  int addEvent(Event& ev, const std::optional<Duration>& timeout);
  void adjustTimeout(Event& ev, EventMask io, const std::optional<Duration>& timeout);
  void assignEvents();
  void suspendRead(uint8_t reason);
  void unsuspendRead(uint8_t reason);
  void recordError(int err);
  void applyLabels();

  // Run a user callback (if set). The callback may free this object, so the read and write
  // callbacks are always the last thing a handler does; runEventCallback returns false if it
  // freed us.
  void runReadCallback();
  void runWriteCallback();
  bool runEventCallback(short what);

  // Counts the handlers on the stack so that free() knows when to defer the delete.
  class CallbackScope;

  EventBase& base_;
  int fd_;
  int options_;
  Buffer input_;
  Buffer output_;
  Event readEvent_;
  Event writeEvent_;

  DataCallback readCb_ = nullptr;
  DataCallback writeCb_ = nullptr;
  EventCallback eventCb_ = nullptr;
  void* cbArg_ = nullptr;

  short enabled_;
  uint8_t readSuspended_ = 0;
  bool connecting_ = false;
  bool connectionRefused_ = false;
  bool freed_ = false;
  int callbackDepth_ = 0;
  int socketError_ = 0;

  size_t readLow_ = 0;
  size_t readHigh_ = 0;
  size_t writeLow_ = 0;
  std::optional<Duration> readTimeout_;
  std::optional<Duration> writeTimeout_;
  size_t maxSingleRead_ = kDefaultMaxSingleRead;
  size_t maxSingleWrite_ = kDefaultMaxSingleWrite;
  std::string labelPrefix_;  // empty: "bufferevent fd N"
};

}  // namespace evgate::reactor
