#include "reactor/listener.h"

#include <fcntl.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <fstream>
#include <string>
#include <utility>

namespace evgate::reactor {
namespace {

// listen()'s backlog for a negative request: the kernel's cap, net.core.somaxconn (4096 on
// recent kernels), read rather than assumed so that a tuned host gets what it was tuned for.
int listenBacklog(int backlog) {
  if (backlog >= 0) return backlog;
  std::ifstream file("/proc/sys/net/core/somaxconn");
  int value = 0;
  if (file >> value && value > 0) return value;
  return SOMAXCONN;
}

void closeKeepingErrno(int fd) {
  const int saved = errno;
  ::close(fd);
  errno = saved;
}

int openReserve() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

// Errors accept(2) passes on from a connection it has already taken off the queue (the man
// page's "pending network errors" for TCP/IP, plus ECONNABORTED), and EINTR: nothing stays
// queued because of them, so accepting goes on.
bool isConnectionError(int error) {
  switch (error) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENONET:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

}  // namespace

// Listeners are made, used and destroyed on their loop thread: a thread_local needs no lock.
struct Listener::SharedReserve {
  int fd = -1;
  size_t users = 0;
  SharedReserve() = default;
  SharedReserve(const SharedReserve&) = delete;
  SharedReserve& operator=(const SharedReserve&) = delete;
  ~SharedReserve() {
    if (fd >= 0) ::close(fd);
  }
};

Listener::SharedReserve& Listener::threadReserve() {
  thread_local SharedReserve reserve;
  return reserve;
}

std::unique_ptr<Listener> Listener::bind(EventBase& base, AcceptCallback cb, void* arg,
                                         unsigned options, int backlog,
                                         const SocketAddress& address) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  const int on = 1;
  if (((options & kReuseAddress) &&
       ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) ||
      ((options & kReusePort) && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      ::bind(fd, address.data(), address.length()) != 0 ||
      ::listen(fd, listenBacklog(backlog)) != 0) {
    closeKeepingErrno(fd);
    return nullptr;
  }
  std::unique_ptr<Listener> listener = adopt(base, cb, arg, options, 0, fd);
  if (!listener) closeKeepingErrno(fd);
  return listener;
}

std::unique_ptr<Listener> Listener::adopt(EventBase& base, AcceptCallback cb, void* arg,
                                          unsigned options, int backlog, int fd) {
  base.assertInLoopThread();
  if (backlog != 0 && ::listen(fd, listenBacklog(backlog)) != 0) return nullptr;
  // A socket that is not listening polls as hung up and fails accept() with EINVAL: refuse it
  // here rather than report it every kRetryDelay.
  int listening = 0;
  socklen_t length = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) return nullptr;
  if (listening == 0) {
    errno = EINVAL;
    return nullptr;
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return nullptr;
  std::unique_ptr<Listener> listener(new Listener(base, cb, arg, options, fd));
  if (!(options & kDisabled) && listener->enable() != 0) {
    const int saved = errno;
    listener->options_ &= ~kCloseOnFree;  // on failure the caller keeps its fd
    listener.reset();
    errno = saved;
  }
  return listener;
}

Listener::Listener(EventBase& base, AcceptCallback cb, void* arg, unsigned options, int fd)
    : base_(base),
      fd_(fd),
      options_(options),
      acceptCb_(cb),
      acceptArg_(arg),
      acceptEvent_(base, fd, kRead | kPersist | ((options & kExclusiveAccept) ? kExclusive : 0),
                   onReadable, this),
      retryEvent_(base, onRetry, this) {
  if (options & kSharedReserve) {
    sharedReserve_ = &threadReserve();
    ++sharedReserve_->users;
  }
  if (reserveFd() < 0) reserveFd() = openReserve();
  const std::optional<SocketAddress> local = SocketAddress::localOf(fd);
  setLabel("listener " + (local ? local->toString() : "fd " + std::to_string(fd)));
}

void Listener::setLabel(const std::string& label) {
  acceptEvent_.setLabel(label);
  retryEvent_.setLabel(label + " accept retry");
}

Listener::~Listener() {
  if (destroyed_ != nullptr) *destroyed_ = true;
  assert((sharedReserve_ == nullptr || sharedReserve_ == &threadReserve()) &&
         "a kSharedReserve listener is destroyed on the thread that made it");
  // Unregister before closing, so the poller is told about an fd that still exists. Always
  // del(), never delBeforeClose(): the fd may stay open (kExclusiveAccept, or not kCloseOnFree),
  // and then epoll would keep a registration that nobody removes.
  acceptEvent_.del();
  retryEvent_.del();
  if (sharedReserve_ == nullptr || --sharedReserve_->users == 0) {
    int& reserve = reserveFd();
    if (reserve >= 0) ::close(std::exchange(reserve, -1));
  }
  if (options_ & kCloseOnFree) ::close(fd_);
}

int& Listener::reserveFd() {
  return sharedReserve_ != nullptr ? sharedReserve_->fd : ownReserveFd_;
}

int Listener::enable() {
  enabled_ = true;
  return updateInterest();
}

int Listener::disable() {
  enabled_ = false;
  return updateInterest();
}

void Listener::setCallback(AcceptCallback cb, void* arg) {
  acceptCb_ = cb;
  acceptArg_ = arg;
  // Adding can only fail for an fd the base refuses, and adopt() (or, with kDisabled, the
  // caller's enable()) has already reported that.
  (void)updateInterest();
}

void Listener::setErrorCallback(ErrorCallback cb, void* arg) {
  errorCb_ = cb;
  errorArg_ = arg;
}

std::optional<SocketAddress> Listener::localAddress() const { return SocketAddress::localOf(fd_); }

// The accept event is pending exactly when all three conditions hold; add() and del() are no-ops
// when it already is (or is not).
int Listener::updateInterest() {
  if (enabled_ && acceptCb_ != nullptr && !paused_) return acceptEvent_.add();
  return acceptEvent_.del();
}

void Listener::onReadable(int, EventMask, void* arg) {
  auto* self = static_cast<Listener*>(arg);
  // The callbacks may destroy the listener: the destructor reports it through this flag, and
  // nothing touches `self` once it is set.
  bool destroyed = false;
  self->destroyed_ = &destroyed;
  self->acceptReady(destroyed);
  if (!destroyed) self->destroyed_ = nullptr;
}

void Listener::acceptReady(const bool& destroyed) {
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    sockaddr_storage peer{};
    socklen_t peerLen = sizeof peer;
    const int conn =
        ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &peerLen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) {
      assert(acceptCb_ != nullptr && "the accept event is pending only with a callback");
      acceptCb_(*this, conn, reinterpret_cast<const sockaddr*>(&peer), peerLen, acceptArg_);
    } else {
      const int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) return;
      if (isConnectionError(error)) continue;
      const Shed shed = (error == EMFILE || error == ENFILE) ? shedConnection() : Shed::kStuck;
      if (shed == Shed::kQueueEmpty) return;
      if (shed == Shed::kStuck) pause();
      if (errorCb_ != nullptr) errorCb_(*this, error, errorArg_);
      if (shed == Shed::kStuck) return;
    }
    // The callback may have destroyed the listener, disabled it, or taken its callback away.
    if (destroyed || !acceptEvent_.pending(kRead)) return;
  }
}

// Out of fds, the connection at the head of the queue cannot be accepted, so the socket stays
// readable and a level-triggered loop would spin on it. The reserve-fd trick (libev's manual,
// "The special problem of accept()ing when you can't"; muduo's Acceptor::idleFd_) frees one fd,
// takes the connection, closes it, and takes the fd back. The client gets a prompt close rather
// than a connection that hangs in the backlog until it times out.
// accept() checks for a free fd before it looks at the queue, so EMFILE does not mean that a
// connection is waiting: EAGAIN with the reserve freed says the queue is empty.
Listener::Shed Listener::shedConnection() {
  int& reserve = reserveFd();
  if (reserve < 0) return Shed::kStuck;
  ::close(reserve);
  const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  const int error = errno;
  if (conn >= 0) ::close(conn);
  reserve = openReserve();
  if (conn >= 0 || isConnectionError(error)) return Shed::kDropped;
  if (error == EAGAIN || error == EWOULDBLOCK) return Shed::kQueueEmpty;
  return Shed::kStuck;  // another thread took the freed fd, or a different error
}

// Stops accepting for kRetryDelay: the error that stopped accept() is not one the listener can
// clear, and polling a socket that stays readable would spin.
void Listener::pause() {
  paused_ = true;
  (void)updateInterest();
  retryEvent_.add(kRetryDelay);
}

void Listener::onRetry(int, EventMask, void* arg) {
  auto* self = static_cast<Listener*>(arg);
  self->paused_ = false;
  if (self->reserveFd() < 0) self->reserveFd() = openReserve();
  if (self->updateInterest() != 0 && self->errorCb_ != nullptr) {
    self->errorCb_(*self, errno, self->errorArg_);
  }
}

}  // namespace evgate::reactor
