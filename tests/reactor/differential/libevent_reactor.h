#pragma once

// The reference side of the differential tests: the adapter interface on libevent 2.1 itself.

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "reactor/poller.h"
#include "tests/reactor/differential/reactor_adapter.h"

namespace evgate::reactor::testing::differential {

namespace libevent_detail {

inline short toEv(unsigned bits) {
  short ev = 0;
  if (bits & what::kTimeout) ev |= EV_TIMEOUT;
  if (bits & what::kRead) ev |= EV_READ;
  if (bits & what::kWrite) ev |= EV_WRITE;
  if (bits & what::kSignal) ev |= EV_SIGNAL;
  if (bits & what::kPersist) ev |= EV_PERSIST;
  if (bits & what::kClosed) ev |= EV_CLOSED;
  return ev;
}

inline unsigned fromEv(short ev) {
  unsigned bits = 0;
  if (ev & EV_TIMEOUT) bits |= what::kTimeout;
  if (ev & EV_READ) bits |= what::kRead;
  if (ev & EV_WRITE) bits |= what::kWrite;
  if (ev & EV_SIGNAL) bits |= what::kSignal;
  if (ev & EV_PERSIST) bits |= what::kPersist;
  if (ev & EV_CLOSED) bits |= what::kClosed;
  return bits;
}

inline unsigned fromBevEvents(short ev) {
  unsigned bits = 0;
  if (ev & BEV_EVENT_READING) bits |= bevent::kReading;
  if (ev & BEV_EVENT_WRITING) bits |= bevent::kWriting;
  if (ev & BEV_EVENT_EOF) bits |= bevent::kEof;
  if (ev & BEV_EVENT_ERROR) bits |= bevent::kError;
  if (ev & BEV_EVENT_TIMEOUT) bits |= bevent::kTimeout;
  if (ev & BEV_EVENT_CONNECTED) bits |= bevent::kConnected;
  return bits;
}

inline timeval toTimeval(Millis ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

class LibeventEvent final : public EventHandle {
 public:
  LibeventEvent(event_base* base, int fd, unsigned bits, EventFn cb) : cb_(std::move(cb)) {
    ev_ = event_new(base, fd, toEv(bits), &LibeventEvent::trampoline, this);
  }
  ~LibeventEvent() override { event_free(ev_); }

  int add(std::optional<Millis> timeout) override {
    if (!timeout) return event_add(ev_, nullptr);
    const timeval tv = toTimeval(*timeout);
    return event_add(ev_, &tv);
  }
  int del() override { return event_del(ev_); }
  void activate(unsigned fired) override { event_active(ev_, toEv(fired), 1); }
  bool pending(unsigned bits) override { return event_pending(ev_, toEv(bits), nullptr) != 0; }
  int setPriority(int priority) override { return event_priority_set(ev_, priority); }

 private:
  static void trampoline(evutil_socket_t, short fired, void* arg) {
    static_cast<LibeventEvent*>(arg)->cb_(fromEv(fired));
  }

  event* ev_;
  EventFn cb_;
};

class LibeventBufferEvent final : public BufferEventHandle {
 public:
  explicit LibeventBufferEvent(bufferevent* bev) : bev_(bev) {
    bufferevent_setcb(bev_, &LibeventBufferEvent::onRead, &LibeventBufferEvent::onWrite,
                      &LibeventBufferEvent::onEvent, this);
  }
  ~LibeventBufferEvent() override { bufferevent_free(bev_); }

  bufferevent* raw() { return bev_; }

  void setCallbacks(DataFn onRead, DataFn onWrite, EventsFn onEvent) override {
    read_ = std::move(onRead);
    write_ = std::move(onWrite);
    event_ = std::move(onEvent);
  }
  int enable(unsigned bits) override { return bufferevent_enable(bev_, toEv(bits)); }
  int disable(unsigned bits) override { return bufferevent_disable(bev_, toEv(bits)); }
  unsigned enabled() override { return fromEv(bufferevent_get_enabled(bev_)); }
  void setWatermark(unsigned bits, size_t low, size_t high) override {
    bufferevent_setwatermark(bev_, toEv(bits), low, high);
  }
  int write(const void* data, size_t n) override { return bufferevent_write(bev_, data, n); }
  size_t inputLength() override { return evbuffer_get_length(bufferevent_get_input(bev_)); }
  size_t outputLength() override { return evbuffer_get_length(bufferevent_get_output(bev_)); }
  size_t drainInput(size_t n) override {
    evbuffer* in = bufferevent_get_input(bev_);
    const size_t before = evbuffer_get_length(in);
    evbuffer_drain(in, n);
    return before - evbuffer_get_length(in);
  }
  void setTimeouts(std::optional<Millis> read, std::optional<Millis> write) override {
    const timeval r = toTimeval(read.value_or(Millis(0)));
    const timeval w = toTimeval(write.value_or(Millis(0)));
    bufferevent_set_timeouts(bev_, read ? &r : nullptr, write ? &w : nullptr);
  }
  void setMaxSingleRead(size_t n) override { bufferevent_set_max_single_read(bev_, n); }

 private:
  static void onRead(bufferevent*, void* arg) {
    auto* self = static_cast<LibeventBufferEvent*>(arg);
    if (self->read_) self->read_();
  }
  static void onWrite(bufferevent*, void* arg) {
    auto* self = static_cast<LibeventBufferEvent*>(arg);
    if (self->write_) self->write_();
  }
  static void onEvent(bufferevent*, short events, void* arg) {
    auto* self = static_cast<LibeventBufferEvent*>(arg);
    if (self->event_) self->event_(fromBevEvents(events));
  }

  bufferevent* bev_;
  DataFn read_;
  DataFn write_;
  EventsFn event_;
};

class LibeventListener final : public ListenerHandle {
 public:
  LibeventListener(event_base* base, std::function<void(int)> onAccept)
      : onAccept_(std::move(onAccept)) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener_ = evconnlistener_new_bind(base, &LibeventListener::onConnection, this,
                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                        reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  }
  ~LibeventListener() override {
    if (listener_ != nullptr) evconnlistener_free(listener_);
  }

  uint16_t port() override {
    if (listener_ == nullptr) return 0;
    sockaddr_in sin{};
    socklen_t len = sizeof sin;
    getsockname(evconnlistener_get_fd(listener_), reinterpret_cast<sockaddr*>(&sin), &len);
    return ntohs(sin.sin_port);
  }

 private:
  static void onConnection(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    static_cast<LibeventListener*>(arg)->onAccept_(fd);
  }

  evconnlistener* listener_;
  std::function<void(int)> onAccept_;
};

}  // namespace libevent_detail

// libevent on the backend that matches ours (epoll or poll), so that both sides see the kernel
// through the same mechanism.
class LibeventReactor final : public Reactor {
 public:
  LibeventReactor(Backend backend, const ReactorOptions& options) {
    event_config* cfg = event_config_new();
    // The environment must not pick libevent's backend behind the test's back.
    event_config_set_flag(cfg, EVENT_BASE_FLAG_IGNORE_ENV);
    // By default libevent reads CLOCK_MONOTONIC_COARSE (a few ms of resolution); ours reads
    // CLOCK_MONOTONIC. Give libevent the precise clock so timer scenarios compare semantics, not
    // clock granularity.
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    if (backend == Backend::kPoll) {
      event_config_avoid_method(cfg, "epoll");
      event_config_avoid_method(cfg, "select");
    } else {
      event_config_avoid_method(cfg, "poll");
      event_config_avoid_method(cfg, "select");
    }
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (options.priorities > 1) event_base_priority_init(base_, options.priorities);
  }
  ~LibeventReactor() override { event_base_free(base_); }

  std::string name() const override {
    return std::string("libevent/") + event_base_get_method(base_);
  }

  std::unique_ptr<EventHandle> newEvent(int fd, unsigned bits, EventFn cb) override {
    return std::make_unique<libevent_detail::LibeventEvent>(base_, fd, bits, std::move(cb));
  }
  int loop(unsigned flags) override {
    int ev = 0;
    if (flags & loopflag::kOnce) ev |= EVLOOP_ONCE;
    if (flags & loopflag::kNonBlock) ev |= EVLOOP_NONBLOCK;
    if (flags & loopflag::kNoExitOnEmpty) ev |= EVLOOP_NO_EXIT_ON_EMPTY;
    return event_base_loop(base_, ev);
  }
  int loopExit(std::optional<Millis> delay) override {
    if (!delay) return event_base_loopexit(base_, nullptr);
    const timeval tv = libevent_detail::toTimeval(*delay);
    return event_base_loopexit(base_, &tv);
  }
  int loopBreak() override { return event_base_loopbreak(base_); }
  bool gotExit() override { return event_base_got_exit(base_) != 0; }
  bool gotBreak() override { return event_base_got_break(base_) != 0; }

  int once(int fd, unsigned bits, EventFn cb, std::optional<Millis> timeout) override {
    auto* holder = new EventFn(std::move(cb));
    const auto trampoline = [](evutil_socket_t, short fired, void* arg) {
      std::unique_ptr<EventFn> fn(static_cast<EventFn*>(arg));
      (*fn)(libevent_detail::fromEv(fired));
    };
    timeval tv{};
    if (timeout) tv = libevent_detail::toTimeval(*timeout);
    const int rc = event_base_once(base_, fd, libevent_detail::toEv(bits), trampoline, holder,
                                   timeout ? &tv : nullptr);
    if (rc != 0) delete holder;
    return rc;
  }

  std::unique_ptr<BufferEventHandle> newBufferEvent(int fd) override {
    return std::make_unique<libevent_detail::LibeventBufferEvent>(
        bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE));
  }
  std::unique_ptr<BufferEventHandle> connectBufferEvent(
      uint16_t port, BufferEventHandle::DataFn onRead, BufferEventHandle::DataFn onWrite,
      BufferEventHandle::EventsFn onEvent) override {
    auto bev = std::make_unique<libevent_detail::LibeventBufferEvent>(
        bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE));
    bev->setCallbacks(std::move(onRead), std::move(onWrite), std::move(onEvent));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    if (bufferevent_socket_connect(bev->raw(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) !=
        0) {
      return nullptr;
    }
    return bev;
  }
  std::unique_ptr<ListenerHandle> newListener(std::function<void(int fd)> onAccept) override {
    return std::make_unique<libevent_detail::LibeventListener>(base_, std::move(onAccept));
  }

 private:
  event_base* base_;
};

}  // namespace evgate::reactor::testing::differential
