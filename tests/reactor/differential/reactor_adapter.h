#pragma once

// The seam of the differential tests: one small interface over "a libevent-style reactor", with
// one implementation on libevent itself (libevent_reactor.h) and one on ours (evgate_reactor.h).
// A scenario is written once against this interface and run on both; each run records a trace of
// callbacks, and the test compares the traces.
//
// Flags are neutral bits, deliberately not libevent's values: each adapter translates them, so a
// translation that forgets a bit shows up as a trace difference instead of passing by accident.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace evgate::reactor::testing::differential {

using Millis = std::chrono::milliseconds;

// What an event waits for or what fired (libevent's EV_*).
namespace what {
inline constexpr unsigned kTimeout = 1u << 0;
inline constexpr unsigned kRead = 1u << 1;
inline constexpr unsigned kWrite = 1u << 2;
inline constexpr unsigned kSignal = 1u << 3;
inline constexpr unsigned kPersist = 1u << 4;
inline constexpr unsigned kClosed = 1u << 5;
}  // namespace what

// Loop flags (libevent's EVLOOP_*); 0 is a plain dispatch.
namespace loopflag {
inline constexpr unsigned kOnce = 1u << 0;
inline constexpr unsigned kNonBlock = 1u << 1;
inline constexpr unsigned kNoExitOnEmpty = 1u << 2;
}  // namespace loopflag

// What a bufferevent's event callback reports (libevent's BEV_EVENT_*).
namespace bevent {
inline constexpr unsigned kReading = 1u << 0;
inline constexpr unsigned kWriting = 1u << 1;
inline constexpr unsigned kEof = 1u << 2;
inline constexpr unsigned kError = 1u << 3;
inline constexpr unsigned kTimeout = 1u << 4;
inline constexpr unsigned kConnected = 1u << 5;
}  // namespace bevent

// "READ|TIMEOUT": the bits of an event mask by name, in a fixed order, for traces.
inline std::string whatString(unsigned bits) {
  static constexpr std::pair<unsigned, std::string_view> kNames[] = {
      {what::kTimeout, "TIMEOUT"}, {what::kRead, "READ"},       {what::kWrite, "WRITE"},
      {what::kSignal, "SIGNAL"},   {what::kPersist, "PERSIST"}, {what::kClosed, "CLOSED"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((bits & bit) == 0) continue;
    if (!out.empty()) out += '|';
    out += name;
    bits &= ~bit;
  }
  if (bits != 0) out += (out.empty() ? "" : "|") + std::string("UNKNOWN");
  return out.empty() ? "0" : out;
}

// "EOF|READING": the bits of a bufferevent event by name.
inline std::string beventString(unsigned bits) {
  static constexpr std::pair<unsigned, std::string_view> kNames[] = {
      {bevent::kEof, "EOF"},         {bevent::kError, "ERROR"},
      {bevent::kTimeout, "TIMEOUT"}, {bevent::kConnected, "CONNECTED"},
      {bevent::kReading, "READING"}, {bevent::kWriting, "WRITING"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((bits & bit) == 0) continue;
    if (!out.empty()) out += '|';
    out += name;
    bits &= ~bit;
  }
  if (bits != 0) out += (out.empty() ? "" : "|") + std::string("UNKNOWN");
  return out.empty() ? "0" : out;
}

// The callback of an event: the bits that fired. The fd is not passed: scenarios know it and
// trace it by a symbolic name, since fd numbers legitimately differ between runs.
using EventFn = std::function<void(unsigned fired)>;

// One event (libevent's struct event). Destroying it dels it.
class EventHandle {
 public:
  virtual ~EventHandle() = default;
  // event_add with an optional timeout.
  virtual int add(std::optional<Millis> timeout = std::nullopt) = 0;
  virtual int del() = 0;
  // event_active with `fired` as the result bits.
  virtual void activate(unsigned fired) = 0;
  // event_pending for `bits`.
  virtual bool pending(unsigned bits) = 0;
  // event_priority_set.
  virtual int setPriority(int priority) = 0;
};

// One socket bufferevent (libevent's bufferevent_socket_new on a connected fd, or a connecting
// one). It owns its fd and closes it when destroyed (BEV_OPT_CLOSE_ON_FREE).
class BufferEventHandle {
 public:
  using DataFn = std::function<void()>;
  using EventsFn = std::function<void(unsigned events)>;

  virtual ~BufferEventHandle() = default;
  virtual void setCallbacks(DataFn onRead, DataFn onWrite, EventsFn onEvent) = 0;
  // `bits`: what::kRead and/or what::kWrite.
  virtual int enable(unsigned bits) = 0;
  virtual int disable(unsigned bits) = 0;
  virtual unsigned enabled() = 0;
  virtual void setWatermark(unsigned bits, size_t low, size_t high) = 0;
  virtual int write(const void* data, size_t n) = 0;
  virtual size_t inputLength() = 0;
  virtual size_t outputLength() = 0;
  virtual size_t drainInput(size_t n) = 0;
  // bufferevent_set_timeouts; nullopt: no timeout.
  virtual void setTimeouts(std::optional<Millis> read, std::optional<Millis> write) = 0;
  // bufferevent_set_max_single_read: the most one read from the socket may take.
  virtual void setMaxSingleRead(size_t n) = 0;
};

// A TCP listener on 127.0.0.1, port 0; calls back once per accepted connection with the new fd,
// which the callback then owns.
class ListenerHandle {
 public:
  virtual ~ListenerHandle() = default;
  virtual uint16_t port() = 0;
};

struct ReactorOptions {
  int priorities = 1;
};

// One event base and the objects made on it. Every handle must be destroyed before its reactor.
class Reactor {
 public:
  virtual ~Reactor() = default;

  // A short name for messages ("libevent/epoll", "evgate/poll").
  virtual std::string name() const = 0;

  // fd -1 (and no kRead/kWrite/kSignal): a pure timer. kSignal: `fd` is the signal number.
  virtual std::unique_ptr<EventHandle> newEvent(int fd, unsigned bits, EventFn cb) = 0;
  // event_base_loop; flags 0 is event_base_dispatch.
  virtual int loop(unsigned flags) = 0;
  virtual int loopExit(std::optional<Millis> delay = std::nullopt) = 0;
  virtual int loopBreak() = 0;
  virtual bool gotExit() = 0;
  virtual bool gotBreak() = 0;
  // event_base_once.
  virtual int once(int fd, unsigned bits, EventFn cb, std::optional<Millis> timeout) = 0;

  // A bufferevent on a connected socket; takes ownership of `fd`.
  virtual std::unique_ptr<BufferEventHandle> newBufferEvent(int fd) = 0;
  // A bufferevent without a socket that connects to 127.0.0.1:`port` (bufferevent_socket_new
  // with fd -1, then bufferevent_socket_connect); the outcome arrives as an event callback.
  virtual std::unique_ptr<BufferEventHandle> connectBufferEvent(
      uint16_t port, BufferEventHandle::DataFn onRead, BufferEventHandle::DataFn onWrite,
      BufferEventHandle::EventsFn onEvent) = 0;
  // A listener bound to 127.0.0.1:0.
  virtual std::unique_ptr<ListenerHandle> newListener(std::function<void(int fd)> onAccept) = 0;
};

// Builds a fresh reactor; the tests compare one made by each factory.
using ReactorFactory = std::function<std::unique_ptr<Reactor>(const ReactorOptions&)>;

// The callback trace of one scenario run.
class Trace {
 public:
  void add(std::string line) { lines_.push_back(std::move(line)); }
  void operator()(std::string line) { add(std::move(line)); }
  const std::vector<std::string>& lines() const { return lines_; }
  size_t count(std::string_view line) const {
    size_t n = 0;
    for (const auto& l : lines_) n += l == line ? 1 : 0;
    return n;
  }
  // Runs of equal lines folded into "line x N", so that a trace of a thousand identical
  // callbacks still prints readably when a comparison fails.
  std::vector<std::string> folded() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < lines_.size();) {
      size_t j = i;
      while (j < lines_.size() && lines_[j] == lines_[i]) ++j;
      out.push_back(j - i == 1 ? lines_[i] : lines_[i] + " x" + std::to_string(j - i));
      i = j;
    }
    return out;
  }

 private:
  std::vector<std::string> lines_;
};

}  // namespace evgate::reactor::testing::differential
