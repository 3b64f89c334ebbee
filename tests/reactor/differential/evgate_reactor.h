#pragma once

// The side under test: the adapter interface on evgate's reactor.

#include <memory>
#include <string>
#include <utility>

#include "reactor/buffer_event.h"
#include "reactor/event.h"
#include "reactor/event_base.h"
#include "reactor/listener.h"
#include "reactor/socket_address.h"
#include "tests/reactor/differential/reactor_adapter.h"

namespace evgate::reactor::testing::differential {

namespace evgate_detail {

inline EventMask toMask(unsigned bits) {
  EventMask mask = 0;
  if (bits & what::kTimeout) mask |= kTimeout;
  if (bits & what::kRead) mask |= kRead;
  if (bits & what::kWrite) mask |= kWrite;
  if (bits & what::kSignal) mask |= kSignal;
  if (bits & what::kPersist) mask |= kPersist;
  if (bits & what::kClosed) mask |= kClosed;
  return mask;
}

inline unsigned fromMask(EventMask mask) {
  unsigned bits = 0;
  if (mask & kTimeout) bits |= what::kTimeout;
  if (mask & kRead) bits |= what::kRead;
  if (mask & kWrite) bits |= what::kWrite;
  if (mask & kSignal) bits |= what::kSignal;
  if (mask & kPersist) bits |= what::kPersist;
  if (mask & kClosed) bits |= what::kClosed;
  return bits;
}

class EvgateEvent final : public EventHandle {
 public:
  EvgateEvent(EventBase& base, int fd, unsigned bits, EventFn cb)
      : cb_(std::move(cb)), ev_(base, fd, toMask(bits), &EvgateEvent::trampoline, this) {}

  int add(std::optional<Millis> timeout) override {
    return timeout ? ev_.add(Duration(*timeout)) : ev_.add();
  }
  int del() override { return ev_.del(); }
  void activate(unsigned fired) override { ev_.activate(toMask(fired)); }
  bool pending(unsigned bits) override { return ev_.pending(toMask(bits)); }
  int setPriority(int priority) override { return ev_.setPriority(priority); }

 private:
  static void trampoline(int, EventMask fired, void* arg) {
    static_cast<EvgateEvent*>(arg)->cb_(fromMask(fired));
  }

  EventFn cb_;
  Event ev_;
};

inline unsigned fromBevEvents(short events) {
  unsigned bits = 0;
  if (events & BufferEvent::kReading) bits |= bevent::kReading;
  if (events & BufferEvent::kWriting) bits |= bevent::kWriting;
  if (events & BufferEvent::kEof) bits |= bevent::kEof;
  if (events & BufferEvent::kError) bits |= bevent::kError;
  if (events & BufferEvent::kTimeout) bits |= bevent::kTimeout;
  if (events & BufferEvent::kConnected) bits |= bevent::kConnected;
  return bits;
}

class EvgateBufferEvent final : public BufferEventHandle {
 public:
  explicit EvgateBufferEvent(BufferEvent::Ptr bev) : bev_(std::move(bev)) {
    bev_->setCallbacks(&EvgateBufferEvent::onRead, &EvgateBufferEvent::onWrite,
                       &EvgateBufferEvent::onEvent, this);
  }

  BufferEvent& raw() { return *bev_; }

  void setCallbacks(DataFn onRead, DataFn onWrite, EventsFn onEvent) override {
    read_ = std::move(onRead);
    write_ = std::move(onWrite);
    event_ = std::move(onEvent);
  }
  int enable(unsigned bits) override { return bev_->enable(toMask(bits)); }
  int disable(unsigned bits) override { return bev_->disable(toMask(bits)); }
  unsigned enabled() override { return fromMask(bev_->enabled()); }
  void setWatermark(unsigned bits, size_t low, size_t high) override {
    bev_->setWatermark(toMask(bits), low, high);
  }
  int write(const void* data, size_t n) override { return bev_->write(data, n); }
  size_t inputLength() override { return bev_->input().length(); }
  size_t outputLength() override { return bev_->output().length(); }
  size_t drainInput(size_t n) override { return bev_->input().drain(n); }
  void setTimeouts(std::optional<Millis> read, std::optional<Millis> write) override {
    bev_->setTimeouts(read ? std::optional<Duration>(*read) : std::nullopt,
                      write ? std::optional<Duration>(*write) : std::nullopt);
  }
  void setMaxSingleRead(size_t n) override { bev_->setMaxSingleRead(n); }

 private:
  static void onRead(BufferEvent&, void* arg) {
    auto* self = static_cast<EvgateBufferEvent*>(arg);
    if (self->read_) self->read_();
  }
  static void onWrite(BufferEvent&, void* arg) {
    auto* self = static_cast<EvgateBufferEvent*>(arg);
    if (self->write_) self->write_();
  }
  static void onEvent(BufferEvent&, short events, void* arg) {
    auto* self = static_cast<EvgateBufferEvent*>(arg);
    if (self->event_) self->event_(fromBevEvents(events));
  }

  BufferEvent::Ptr bev_;
  DataFn read_;
  DataFn write_;
  EventsFn event_;
};

class EvgateListener final : public ListenerHandle {
 public:
  EvgateListener(EventBase& base, std::function<void(int)> onAccept)
      : onAccept_(std::move(onAccept)),
        listener_(Listener::bind(base, &EvgateListener::onConnection, this,
                                 Listener::kCloseOnFree | Listener::kReuseAddress, -1,
                                 SocketAddress::loopbackV4(0))) {}

  uint16_t port() override {
    if (!listener_) return 0;
    const auto address = listener_->localAddress();
    return address ? address->port() : 0;
  }

 private:
  static void onConnection(Listener&, int fd, const sockaddr*, socklen_t, void* arg) {
    static_cast<EvgateListener*>(arg)->onAccept_(fd);
  }

  std::function<void(int)> onAccept_;
  std::unique_ptr<Listener> listener_;
};

}  // namespace evgate_detail

class EvgateReactor final : public Reactor {
 public:
  EvgateReactor(Backend backend, const ReactorOptions& options)
      : base_(EventBaseOptions{
            .backend = backend, .clock = nullptr, .priorities = options.priorities}) {}

  std::string name() const override { return "evgate/" + std::string(base_.backendName()); }

  std::unique_ptr<EventHandle> newEvent(int fd, unsigned bits, EventFn cb) override {
    return std::make_unique<evgate_detail::EvgateEvent>(base_, fd, bits, std::move(cb));
  }
  int loop(unsigned flags) override {
    int ours = 0;
    if (flags & loopflag::kOnce) ours |= kLoopOnce;
    if (flags & loopflag::kNonBlock) ours |= kLoopNonBlock;
    if (flags & loopflag::kNoExitOnEmpty) ours |= kLoopNoExitOnEmpty;
    return base_.loop(ours);
  }
  int loopExit(std::optional<Millis> delay) override {
    return delay ? base_.loopExit(Duration(*delay)) : base_.loopExit();
  }
  int loopBreak() override {
    base_.loopBreak();
    return 0;
  }
  bool gotExit() override { return base_.gotExit(); }
  bool gotBreak() override { return base_.gotBreak(); }

  int once(int fd, unsigned bits, EventFn cb, std::optional<Millis> timeout) override {
    return base_.once(
        fd, evgate_detail::toMask(bits),
        [cb = std::move(cb)](int, EventMask fired) { cb(evgate_detail::fromMask(fired)); },
        timeout ? std::optional<Duration>(*timeout) : std::nullopt);
  }

  std::unique_ptr<BufferEventHandle> newBufferEvent(int fd) override {
    return std::make_unique<evgate_detail::EvgateBufferEvent>(
        BufferEvent::create(base_, fd, BufferEvent::kCloseOnFree));
  }
  std::unique_ptr<BufferEventHandle> connectBufferEvent(
      uint16_t port, BufferEventHandle::DataFn onRead, BufferEventHandle::DataFn onWrite,
      BufferEventHandle::EventsFn onEvent) override {
    auto bev = std::make_unique<evgate_detail::EvgateBufferEvent>(
        BufferEvent::create(base_, -1, BufferEvent::kCloseOnFree));
    bev->setCallbacks(std::move(onRead), std::move(onWrite), std::move(onEvent));
    const SocketAddress address = SocketAddress::loopbackV4(port);
    if (bev->raw().connect(address.data(), address.length()) != 0) return nullptr;
    return bev;
  }
  std::unique_ptr<ListenerHandle> newListener(std::function<void(int fd)> onAccept) override {
    return std::make_unique<evgate_detail::EvgateListener>(base_, std::move(onAccept));
  }

 private:
  EventBase base_;
};

}  // namespace evgate::reactor::testing::differential
