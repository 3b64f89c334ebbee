#pragma once

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "reactor/event.h"
#include "reactor/event_base.h"
#include "reactor/socket_address.h"

namespace evgate::reactor {

// A listening TCP socket that accepts connections on an EventBase: libevent's evconnlistener.
// A persistent read event on the socket accepts (accept4, non-blocking and close-on-exec) in a
// loop until EAGAIN, at most kMaxAcceptsPerWake times per readiness so that one busy listener
// cannot starve the other events of the loop (the rest wait for the next iteration: the event is
// level-triggered). Each new connection goes to the accept callback, which owns the new fd.
//
// Accept errors, and how they are handled:
// - EAGAIN: nothing left, wait for the next readiness.
// - EINTR, ECONNABORTED and the network errors accept(2) passes on from the dequeued connection
//   (EPROTO, ENETDOWN, EHOSTUNREACH, ...): at most that one connection is lost; keep accepting.
// - EMFILE / ENFILE (out of fds): the pending connection would stay ready and make the loop spin
//   at 100% CPU. The listener keeps a reserve fd (/dev/null; its own, or with kSharedReserve one
//   for all such listeners of its thread): it closes it, accepts the connection, closes that at
//   once (the client sees a prompt close instead of hanging in the backlog), reopens the
//   reserve, reports the error (one call per connection dropped) and goes on. If the reserve
//   cannot be had, it reports the error, stops accepting for kRetryDelay (connections wait in
//   the backlog) and then tries again. Without a reserve, the pause can also follow an accept
//   that took the last fd and emptied the queue: accept() fails with EMFILE before it looks at
//   the queue.
// - Anything else (ENOBUFS, ENOMEM, EPERM from a security module, EINVAL on a socket that was
//   shut down, ...): the connection stays queued, so the error is reported, then the same pause:
//   a lasting error costs one wake-up per kRetryDelay rather than a spin.
// The error callback gets the errno value; without one, errors are handled the same, silently.
//
// The accept and error callbacks may disable the listener, change its callbacks, or destroy it
// (directly, or with base().deferDelete()): once destroyed, the listener stops accepting
// immediately and touches nothing of itself again.
//
// Thread rule: loop thread only (the loop thread of `base`), including construction and
// destruction. Ownership: the caller owns the Listener, which must not outlive its base; the
// listening fd is closed on destruction only with kCloseOnFree (as in libevent, even for the
// socket bind() creates).
class Listener final : public DeferredDeletable {
 public:
  // Option bits; the values are libevent's LEV_OPT_*.
  static constexpr unsigned kCloseOnFree = 0x02;   // close the listening fd on destruction
  static constexpr unsigned kReuseAddress = 0x08;  // bind(): SO_REUSEADDR
  static constexpr unsigned kDisabled = 0x20;      // start disabled: enable() to accept
  static constexpr unsigned kReusePort = 0x80;     // bind(): SO_REUSEPORT (one per worker)
  // Our extensions, beyond libevent's options (so far from its bits):
  // The accept event is registered with kExclusive (event.h): for one listening socket that
  // several loops accept on (each with its own Listener over the same fd), a new connection
  // wakes one loop rather than every one (nginx's EPOLLEXCLUSIVE accept). The fd stays open
  // while the other loops wait on it, so such a listener unregisters with Event::del(), never
  // delBeforeClose(), and at most the last of them to go may be kCloseOnFree (better: none, the
  // socket's owner closes it once every listener on it is gone).
  static constexpr unsigned kExclusiveAccept = 0x10000;
  // The EMFILE reserve fd is the loop thread's: one /dev/null fd shared by every listener with
  // this option on the thread (opened by the first, closed with the last), instead of one per
  // listener. What a process with thousands of listeners needs; the trick is the same, as only
  // one callback runs at a time on a thread. Such a listener must be destroyed on the thread
  // that made it (asserted), which the thread rule below already asks.
  static constexpr unsigned kSharedReserve = 0x20000;

  // Accepts per readiness before the loop gets a turn.
  static constexpr int kMaxAcceptsPerWake = 64;
  // Pause after an accept error that the listener cannot clear itself.
  static constexpr std::chrono::milliseconds kRetryDelay{100};

  // A new connection: `fd` (non-blocking, close-on-exec; the callback owns it) from `peer`.
  using AcceptCallback = void (*)(Listener& listener, int fd, const sockaddr* peer,
                                  socklen_t peerLen, void* arg);
  // An accept error: `error` is the errno value (EMFILE, ENFILE, ENOBUFS, ...).
  using ErrorCallback = void (*)(Listener& listener, int error, void* arg);

  // libevent's evconnlistener_new_bind: a socket (non-blocking, close-on-exec) with the
  // kReuseAddress / kReusePort options, bound to `address`, listening with `backlog` (passed to
  // listen(); negative: the system maximum, net.core.somaxconn). Accepting starts at once unless
  // kDisabled. Returns nullptr with errno set (EADDRINUSE, ...) on failure, after closing the
  // socket. A null `cb` is allowed: see setCallback(). Pass kCloseOnFree, or the socket outlives
  // the listener (libevent's rule).
  // Loop thread only.
  static std::unique_ptr<Listener> bind(EventBase& base, AcceptCallback cb, void* arg,
                                        unsigned options, int backlog,
                                        const SocketAddress& address);
  // libevent's evconnlistener_new: takes `fd`, a stream socket, and makes it non-blocking.
  // `backlog` 0: fd is already listening; otherwise as in bind(). Returns nullptr with errno set
  // if listen() fails, the fd is not a listening socket (EINVAL) or the base refuses it; the fd
  // is then left open, even with kCloseOnFree.
  // A factory rather than libevent's plain constructor so that these failures can be reported.
  // Loop thread only.
  static std::unique_ptr<Listener> adopt(EventBase& base, AcceptCallback cb, void* arg,
                                         unsigned options, int backlog, int fd);

  // Stops accepting; closes the listening fd with kCloseOnFree. Safe from inside the listener's
  // own callbacks. Loop thread only.
  ~Listener() override;

  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Starts / stops accepting; the socket stays open and the kernel keeps queueing connections
  // in its backlog while disabled. Return 0, or -1 with errno if the base refused the fd.
  // Loop thread only.
  int enable();
  int disable();
  // True after enable() (or construction without kDisabled) until disable(). The listener
  // accepts only while enabled, with an accept callback, and not paused after an error.
  // Loop thread only.
  bool enabled() const { return enabled_; }

  // A null `cb` stops accepting until a callback is set again; connections wait in the backlog
  // (libevent's evconnlistener_set_cb). Loop thread only.
  void setCallback(AcceptCallback cb, void* arg);
  // Loop thread only.
  void setErrorCallback(ErrorCallback cb, void* arg);

  // The owner label of the accept event in EventBase::dumpEvents() (the retry timer's is the
  // label + " accept retry"). By default "listener ADDRESS". Loop thread only.
  void setLabel(const std::string& label);

  // Fixed at construction: safe from any thread.
  int fd() const { return fd_; }
  EventBase& base() const { return base_; }
  // The bound address (with the port the kernel picked for a port-0 bind); nullopt with errno
  // if getsockname fails. Safe from any thread.
  std::optional<SocketAddress> localAddress() const;

 private:
  Listener(EventBase& base, AcceptCallback cb, void* arg, unsigned options, int fd);

  static void onReadable(int fd, EventMask what, void* arg);
  static void onRetry(int fd, EventMask what, void* arg);
  void acceptReady(const bool& destroyed);
  // What the reserve-fd trick achieved: a connection dropped, nothing was queued, or the queued
  // connection is still there.
  enum class Shed { kDropped, kQueueEmpty, kStuck };
  Shed shedConnection();
  void pause();
  int updateInterest();
  // The reserve fd this listener uses: its own, or its thread's (kSharedReserve).
  int& reserveFd();
  // The kSharedReserve listeners' reserve on this thread, and how many use it.
  struct SharedReserve;
  static SharedReserve& threadReserve();

  EventBase& base_;
  const int fd_;
  unsigned options_;
  AcceptCallback acceptCb_;
  void* acceptArg_;
  ErrorCallback errorCb_ = nullptr;
  void* errorArg_ = nullptr;
  bool enabled_ = false;
  bool paused_ = false;
  int ownReserveFd_ = -1;
  // With kSharedReserve: the thread's reserve, which this listener counts as a user.
  SharedReserve* sharedReserve_ = nullptr;
  // While the accept event's callback runs: points at a flag on its stack that the destructor
  // sets (what libevent's refcount and folly's DestructorGuard are for).
  bool* destroyed_ = nullptr;
  Event acceptEvent_;
  Event retryEvent_;
};

}  // namespace evgate::reactor
