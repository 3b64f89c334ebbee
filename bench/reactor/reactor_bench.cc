// The reactor next to libevent 2.1, row by row. Each row is written twice, once per library, with
// the same work per iteration; the names differ only in the library part
// (BM_EventAddDel/evgate, BM_EventAddDel/libevent), so scripts/bench-reactor.sh can pair them.
//
// Both sides use epoll without a changelist: ours always, libevent because
// EVENT_BASE_FLAG_IGNORE_ENV keeps EVENT_EPOLL_USE_CHANGELIST out and poll/select are avoided.
// Single-threaded libevent bases are made with EVENT_BASE_FLAG_NOLOCK, as a program that never
// calls evthread_use_pthreads() gets them; only the cross-thread row turns libevent's locking on.

#include <benchmark/benchmark.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include "reactor/buffer.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::reactor {
namespace {

// ---- shared fixtures -----------------------------------------------------------------------

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::abort();
}

// Two connected non-blocking Unix stream sockets.
class SocketPair {
 public:
  SocketPair() {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_.data()) != 0) {
      die("socketpair");
    }
  }
  ~SocketPair() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;

  int first() const { return fds_[0]; }
  int second() const { return fds_[1]; }

 private:
  std::array<int, 2> fds_{};
};

// A short write would break the ping-pong's accounting; on a socketpair with an empty buffer it
// cannot happen, so it is a bug in the benchmark.
void writeAll(int fd, const void* data, size_t n) {
  if (::write(fd, data, n) != static_cast<ssize_t>(n)) die("write");
}

// The callback of both libraries: same signature, (fd, what, arg).
void countCall(int, short, void* arg) { ++*static_cast<int64_t*>(arg); }

EventBaseOptions epollOptions() {
  EventBaseOptions options;
  options.backend = Backend::kEpoll;
  return options;
}

struct LibeventBaseFree {
  void operator()(event_base* base) const { event_base_free(base); }
};
struct LibeventEventFree {
  void operator()(event* ev) const { event_free(ev); }
};
struct LibeventBufferFree {
  void operator()(evbuffer* buffer) const { evbuffer_free(buffer); }
};
using LibeventBasePtr = std::unique_ptr<event_base, LibeventBaseFree>;
using LibeventEventPtr = std::unique_ptr<event, LibeventEventFree>;
using LibeventBufferPtr = std::unique_ptr<evbuffer, LibeventBufferFree>;

enum class Locking { kOff, kOn };

// An epoll base. kOff: EVENT_BASE_FLAG_NOLOCK, what a single-threaded program gets.
LibeventBasePtr newLibeventBase(Locking locking) {
  event_config* config = event_config_new();
  if (config == nullptr) die("event_config_new");
  int flags = EVENT_BASE_FLAG_IGNORE_ENV;
  if (locking == Locking::kOff) flags |= EVENT_BASE_FLAG_NOLOCK;
  event_config_set_flag(config, flags);
  event_config_avoid_method(config, "poll");
  event_config_avoid_method(config, "select");
  LibeventBasePtr base(event_base_new_with_config(config));
  event_config_free(config);
  if (base == nullptr || std::string_view(event_base_get_method(base.get())) != "epoll") {
    die("event_base_new_with_config (epoll)");
  }
  return base;
}

LibeventEventPtr newLibeventEvent(event_base* base, int fd, short what, event_callback_fn cb,
                                  void* arg) {
  LibeventEventPtr ev(event_new(base, fd, what, cb, arg));
  if (ev == nullptr) die("event_new");
  return ev;
}

// ---- 1. event add/del ----------------------------------------------------------------------
// A read event on a socketpair fd, added with no timeout and deleted: on both sides one
// epoll_ctl(ADD) and one epoll_ctl(DEL) plus the bookkeeping around them.

void BM_EventAddDel_evgate(benchmark::State& state) {
  SocketPair sockets;
  EventBase base(epollOptions());
  int64_t calls = 0;
  Event ev(base, sockets.first(), kRead, countCall, &calls);
  for (auto _ : state) {
    const int added = ev.add();
    const int deleted = ev.del();
    benchmark::DoNotOptimize(added);
    benchmark::DoNotOptimize(deleted);
    if (added != 0 || deleted != 0) {
      state.SkipWithError("add/del failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EventAddDel_libevent(benchmark::State& state) {
  SocketPair sockets;
  LibeventBasePtr base = newLibeventBase(Locking::kOff);
  int64_t calls = 0;
  LibeventEventPtr ev = newLibeventEvent(base.get(), sockets.first(), EV_READ, countCall, &calls);
  for (auto _ : state) {
    const int added = event_add(ev.get(), nullptr);
    const int deleted = event_del(ev.get());
    benchmark::DoNotOptimize(added);
    benchmark::DoNotOptimize(deleted);
    if (added != 0 || deleted != 0) {
      state.SkipWithError("add/del failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- 2. timer churn ------------------------------------------------------------------------
// Per iteration, for kTimers pure timers: arm each with a distinct far timeout (1 s + a shuffled
// number of microseconds), re-arm each with another distinct far timeout (the idle-timeout reset
// of a busy connection), re-arm each with a zero timeout, then run the loop once without blocking
// so every one of them fires. Heap inserts, removals from the middle, pops and callbacks.

constexpr int kTimers = 1000;

// Two fixed permutations of 0..kTimers-1, the same for both libraries.
struct TimerPlan {
  std::vector<int> first;
  std::vector<int> second;
};

const TimerPlan& timerPlan() {
  static const TimerPlan plan = [] {
    TimerPlan p;
    p.first.resize(kTimers);
    std::iota(p.first.begin(), p.first.end(), 0);
    p.second = p.first;
    std::mt19937 rng(42);
    std::shuffle(p.first.begin(), p.first.end(), rng);
    std::shuffle(p.second.begin(), p.second.end(), rng);
    return p;
  }();
  return plan;
}

Duration farTimeout(int micros) {
  return std::chrono::seconds(1) + std::chrono::microseconds(micros);
}

timeval farTimeval(int micros) { return timeval{1, micros}; }

void BM_TimerChurn_evgate(benchmark::State& state) {
  const TimerPlan& plan = timerPlan();
  EventBase base(epollOptions());
  int64_t fired = 0;
  std::vector<std::unique_ptr<Event>> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(std::make_unique<Event>(base, countCall, &fired));
  }
  for (auto _ : state) {
    fired = 0;
    for (int i = 0; i < kTimers; ++i) timers[i]->add(farTimeout(plan.first[i]));
    for (int i = 0; i < kTimers; ++i) timers[i]->add(farTimeout(plan.second[i]));
    for (int i = 0; i < kTimers; ++i) timers[i]->add(Duration::zero());
    base.loop(kLoopNonBlock);
    benchmark::DoNotOptimize(fired);
    if (fired != kTimers) {
      state.SkipWithError("not every timer fired");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kTimers);
}

void BM_TimerChurn_libevent(benchmark::State& state) {
  const TimerPlan& plan = timerPlan();
  LibeventBasePtr base = newLibeventBase(Locking::kOff);
  int64_t fired = 0;
  std::vector<LibeventEventPtr> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(newLibeventEvent(base.get(), -1, 0, countCall, &fired));
  }
  const timeval zero{0, 0};
  for (auto _ : state) {
    fired = 0;
    for (int i = 0; i < kTimers; ++i) {
      const timeval tv = farTimeval(plan.first[i]);
      event_add(timers[i].get(), &tv);
    }
    for (int i = 0; i < kTimers; ++i) {
      const timeval tv = farTimeval(plan.second[i]);
      event_add(timers[i].get(), &tv);
    }
    for (int i = 0; i < kTimers; ++i) event_add(timers[i].get(), &zero);
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    benchmark::DoNotOptimize(fired);
    if (fired != kTimers) {
      state.SkipWithError("not every timer fired");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kTimers);
}

// The same churn armed from inside a callback, where both libraries take the loop's cached time
// instead of reading the clock: a driver event is activated, its callback arms, re-arms and
// zeroes the timers, and the same non-blocking loop fires them on its next turn. This is how a
// gateway re-arms idle timeouts (from its read callbacks), so it isolates the timer structures.

struct EvgateTimerDriver {
  std::vector<std::unique_ptr<Event>>* timers;
  const TimerPlan* plan;
};

void armEvgateTimers(int, short, void* arg) {
  auto* driver = static_cast<EvgateTimerDriver*>(arg);
  std::vector<std::unique_ptr<Event>>& timers = *driver->timers;
  for (int i = 0; i < kTimers; ++i) timers[i]->add(farTimeout(driver->plan->first[i]));
  for (int i = 0; i < kTimers; ++i) timers[i]->add(farTimeout(driver->plan->second[i]));
  for (int i = 0; i < kTimers; ++i) timers[i]->add(Duration::zero());
}

struct LibeventTimerDriver {
  std::vector<LibeventEventPtr>* timers;
  const TimerPlan* plan;
};

void armLibeventTimers(int, short, void* arg) {
  auto* driver = static_cast<LibeventTimerDriver*>(arg);
  std::vector<LibeventEventPtr>& timers = *driver->timers;
  for (int i = 0; i < kTimers; ++i) {
    const timeval tv = farTimeval(driver->plan->first[i]);
    event_add(timers[i].get(), &tv);
  }
  for (int i = 0; i < kTimers; ++i) {
    const timeval tv = farTimeval(driver->plan->second[i]);
    event_add(timers[i].get(), &tv);
  }
  const timeval zero{0, 0};
  for (int i = 0; i < kTimers; ++i) event_add(timers[i].get(), &zero);
}

void BM_TimerChurnInLoop_evgate(benchmark::State& state) {
  EventBase base(epollOptions());
  int64_t fired = 0;
  std::vector<std::unique_ptr<Event>> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(std::make_unique<Event>(base, countCall, &fired));
  }
  EvgateTimerDriver driver{&timers, &timerPlan()};
  Event arm(base, armEvgateTimers, &driver);
  for (auto _ : state) {
    fired = 0;
    arm.activate(kTimeout);
    base.loop(kLoopNonBlock);
    benchmark::DoNotOptimize(fired);
    if (fired != kTimers) {
      state.SkipWithError("not every timer fired");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kTimers);
}

void BM_TimerChurnInLoop_libevent(benchmark::State& state) {
  LibeventBasePtr base = newLibeventBase(Locking::kOff);
  int64_t fired = 0;
  std::vector<LibeventEventPtr> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(newLibeventEvent(base.get(), -1, 0, countCall, &fired));
  }
  LibeventTimerDriver driver{&timers, &timerPlan()};
  LibeventEventPtr arm = newLibeventEvent(base.get(), -1, 0, armLibeventTimers, &driver);
  for (auto _ : state) {
    fired = 0;
    event_active(arm.get(), EV_TIMEOUT, 0);
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    benchmark::DoNotOptimize(fired);
    if (fired != kTimers) {
      state.SkipWithError("not every timer fired");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kTimers);
}

// ---- 4. buffer append/move/drain ------------------------------------------------------------
// Per iteration: kAppends appends of range(0) bytes into `in`, all of `in` moved to `out` without
// copying, then `out` drained range(0) bytes at a time. Buffer::append / appendBuffer / drain
// against evbuffer_add / evbuffer_add_buffer / evbuffer_drain.

constexpr int kAppends = 16;

void BM_BufferAppendMoveDrain_evgate(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  std::vector<char> data(size, 'x');
  benchmark::DoNotOptimize(data.data());
  Buffer in;
  Buffer out;
  for (auto _ : state) {
    for (int i = 0; i < kAppends; ++i) in.append(data.data(), size);
    out.appendBuffer(in);
    size_t drained = 0;
    while (!out.empty()) drained += out.drain(size);
    benchmark::DoNotOptimize(drained);
  }
  state.SetItemsProcessed(state.iterations() * kAppends);
  state.SetBytesProcessed(state.iterations() * kAppends * state.range(0));
}

void BM_BufferAppendMoveDrain_libevent(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  std::vector<char> data(size, 'x');
  benchmark::DoNotOptimize(data.data());
  LibeventBufferPtr in(evbuffer_new());
  LibeventBufferPtr out(evbuffer_new());
  if (in == nullptr || out == nullptr) die("evbuffer_new");
  for (auto _ : state) {
    for (int i = 0; i < kAppends; ++i) evbuffer_add(in.get(), data.data(), size);
    evbuffer_add_buffer(out.get(), in.get());
    size_t drained = 0;
    while (evbuffer_get_length(out.get()) != 0) {
      const size_t before = evbuffer_get_length(out.get());
      evbuffer_drain(out.get(), size);
      drained += before - evbuffer_get_length(out.get());
    }
    benchmark::DoNotOptimize(drained);
  }
  state.SetItemsProcessed(state.iterations() * kAppends);
  state.SetBytesProcessed(state.iterations() * kAppends * state.range(0));
}

// ---- 5. socketpair echo round trip -----------------------------------------------------------
// One loop, both ends of a socketpair, a persistent read event on each. The ping end writes a
// kMessageSize message; the pong end's callback reads it and writes it back; the ping end's
// callback reads the echo and sends the next message, kRoundTrips times per iteration, then
// breaks the loop. Plain read()/write() on both sides, so the row measures the loop.

constexpr size_t kMessageSize = 64;
constexpr int kRoundTrips = 1000;

struct Echo {
  int ping = -1;
  int left = 0;
  size_t received = 0;
  void (*stop)(void* base) = nullptr;
  void* base = nullptr;
  std::array<char, kMessageSize> message{};
  std::array<char, 4096> scratch{};
};

void onPongReadable(int fd, short, void* arg) {
  auto* echo = static_cast<Echo*>(arg);
  const ssize_t n = ::read(fd, echo->scratch.data(), echo->scratch.size());
  if (n > 0) writeAll(fd, echo->scratch.data(), static_cast<size_t>(n));
}

void onPingReadable(int fd, short, void* arg) {
  auto* echo = static_cast<Echo*>(arg);
  const ssize_t n = ::read(fd, echo->scratch.data(), echo->scratch.size());
  if (n <= 0) return;
  echo->received += static_cast<size_t>(n);
  while (echo->received >= kMessageSize) {
    echo->received -= kMessageSize;
    if (--echo->left == 0) {
      echo->stop(echo->base);
      return;
    }
    writeAll(echo->ping, echo->message.data(), kMessageSize);
  }
}

void BM_EchoRoundTrip_evgate(benchmark::State& state) {
  SocketPair sockets;
  EventBase base(epollOptions());
  Echo echo;
  echo.ping = sockets.first();
  echo.stop = [](void* b) { static_cast<EventBase*>(b)->loopBreak(); };
  echo.base = &base;
  Event ping(base, sockets.first(), kRead | kPersist, onPingReadable, &echo);
  Event pong(base, sockets.second(), kRead | kPersist, onPongReadable, &echo);
  ping.add();
  pong.add();
  for (auto _ : state) {
    echo.left = kRoundTrips;
    writeAll(echo.ping, echo.message.data(), kMessageSize);
    base.dispatch();
    if (echo.left != 0) {
      state.SkipWithError("the loop stopped early");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kRoundTrips);
}

void BM_EchoRoundTrip_libevent(benchmark::State& state) {
  SocketPair sockets;
  LibeventBasePtr base = newLibeventBase(Locking::kOff);
  Echo echo;
  echo.ping = sockets.first();
  echo.stop = [](void* b) { event_base_loopbreak(static_cast<event_base*>(b)); };
  echo.base = base.get();
  LibeventEventPtr ping =
      newLibeventEvent(base.get(), sockets.first(), EV_READ | EV_PERSIST, onPingReadable, &echo);
  LibeventEventPtr pong =
      newLibeventEvent(base.get(), sockets.second(), EV_READ | EV_PERSIST, onPongReadable, &echo);
  event_add(ping.get(), nullptr);
  event_add(pong.get(), nullptr);
  for (auto _ : state) {
    echo.left = kRoundTrips;
    writeAll(echo.ping, echo.message.data(), kMessageSize);
    event_base_dispatch(base.get());
    if (echo.left != 0) {
      state.SkipWithError("the loop stopped early");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kRoundTrips);
}

// ---- 3. cross-thread post throughput ---------------------------------------------------------
// Per iteration a producer thread posts kPosts closures (std::function<void()> on both sides) to
// a loop blocked in the benchmark thread; the last one breaks the loop. Wall-clock time, as the
// producer's work counts.
//
// Ours: EventBase::runInLoop (mutex-protected vector, eventfd write only when it was empty).
// libevent has no such door, so it gets the idiomatic equivalent built the same way: a
// mutex-protected vector, and event_active() on a non-pending fd-less event when it was empty,
// with evthread_use_pthreads() on, so event_active takes the base lock and wakes the loop
// through libevent's own notification eventfd. Its callback swaps the vector out under the
// mutex and runs it unlocked, as runInLoop's drain does.

constexpr int kPosts = 10000;

// Puts the loop (the calling thread) and the producer on two different CPUs for the lifetime of
// the object, so that every iteration measures a post across CPUs: left to the scheduler, a
// freshly started producer sometimes shares the loop's CPU and posts its whole batch in one time
// slice, and the row turned bimodal (a coefficient of variation near 100%). With one CPU allowed,
// nothing is pinned.
class CrossCpuPlacement {
 public:
  CrossCpuPlacement() {
    pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_);
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu) {
      if (!CPU_ISSET(cpu, &saved_)) continue;
      (found == 0 ? loopCpu_ : producerCpu_) = cpu;
      ++found;
    }
    if (producerCpu_ >= 0) pinTo(loopCpu_);
  }
  ~CrossCpuPlacement() { pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_); }
  CrossCpuPlacement(const CrossCpuPlacement&) = delete;
  CrossCpuPlacement& operator=(const CrossCpuPlacement&) = delete;

  // Call from the producer thread.
  void pinProducer() const {
    if (producerCpu_ >= 0) pinTo(producerCpu_);
  }

 private:
  static void pinTo(int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) {
      die("pthread_setaffinity_np");
    }
  }

  cpu_set_t saved_{};
  int loopCpu_ = -1;
  int producerCpu_ = -1;
};

void BM_CrossThreadPost_evgate(benchmark::State& state) {
  const CrossCpuPlacement placement;
  EventBase base(epollOptions());
  for (auto _ : state) {
    int ran = 0;
    std::thread producer([&placement, &base, &ran] {
      placement.pinProducer();
      for (int i = 0; i < kPosts; ++i) {
        base.runInLoop([&base, &ran] {
          if (++ran == kPosts) base.loopBreak();
        });
      }
    });
    base.loop(kLoopNoExitOnEmpty);
    producer.join();
    if (ran != kPosts) {
      state.SkipWithError("not every closure ran");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kPosts);
}

class LibeventPostQueue {
 public:
  explicit LibeventPostQueue(event_base* base)
      : event_(newLibeventEvent(base, -1, 0, &LibeventPostQueue::onActive, this)) {}

  // Safe from any thread.
  void post(std::function<void()> fn) {
    bool wasEmpty;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      wasEmpty = queue_.empty();
      queue_.push_back(std::move(fn));
    }
    if (wasEmpty) event_active(event_.get(), EV_READ, 0);
  }

 private:
  static void onActive(int, short, void* arg) {
    auto* self = static_cast<LibeventPostQueue*>(arg);
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->running_.swap(self->queue_);
    }
    for (auto& fn : self->running_) fn();
    self->running_.clear();
  }

  LibeventEventPtr event_;
  std::mutex mutex_;
  std::vector<std::function<void()>> queue_;
  std::vector<std::function<void()>> running_;
};

void BM_CrossThreadPost_libevent(benchmark::State& state) {
  static const int threads = evthread_use_pthreads();
  if (threads != 0) die("evthread_use_pthreads");
  LibeventBasePtr base = newLibeventBase(Locking::kOn);
  LibeventPostQueue queue(base.get());
  event_base* const rawBase = base.get();
  const CrossCpuPlacement placement;
  for (auto _ : state) {
    int ran = 0;
    std::thread producer([&placement, &queue, &ran, rawBase] {
      placement.pinProducer();
      for (int i = 0; i < kPosts; ++i) {
        queue.post([&ran, rawBase] {
          if (++ran == kPosts) event_base_loopbreak(rawBase);
        });
      }
    });
    event_base_loop(rawBase, EVLOOP_NO_EXIT_ON_EMPTY);
    producer.join();
    if (ran != kPosts) {
      state.SkipWithError("not every closure ran");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kPosts);
}

// Registration order is run order: each row's two sides back to back. The cross-thread row
// comes last, as it is the one that turns libevent's locking on for the rest of the process.
BENCHMARK(BM_EventAddDel_evgate)->Name("BM_EventAddDel/evgate");
BENCHMARK(BM_EventAddDel_libevent)->Name("BM_EventAddDel/libevent");
BENCHMARK(BM_TimerChurn_evgate)->Name("BM_TimerChurn/evgate");
BENCHMARK(BM_TimerChurn_libevent)->Name("BM_TimerChurn/libevent");
BENCHMARK(BM_TimerChurnInLoop_evgate)->Name("BM_TimerChurnInLoop/evgate");
BENCHMARK(BM_TimerChurnInLoop_libevent)->Name("BM_TimerChurnInLoop/libevent");
BENCHMARK(BM_BufferAppendMoveDrain_evgate)
    ->Name("BM_BufferAppendMoveDrain/evgate")
    ->Arg(64)
    ->Arg(16 * 1024);
BENCHMARK(BM_BufferAppendMoveDrain_libevent)
    ->Name("BM_BufferAppendMoveDrain/libevent")
    ->Arg(64)
    ->Arg(16 * 1024);
BENCHMARK(BM_EchoRoundTrip_evgate)->Name("BM_EchoRoundTrip/evgate");
BENCHMARK(BM_EchoRoundTrip_libevent)->Name("BM_EchoRoundTrip/libevent");
BENCHMARK(BM_CrossThreadPost_evgate)->Name("BM_CrossThreadPost/evgate")->UseRealTime();
BENCHMARK(BM_CrossThreadPost_libevent)->Name("BM_CrossThreadPost/libevent")->UseRealTime();

}  // namespace
}  // namespace evgate::reactor

int main(int argc, char** argv) {
  // Without this, draining a buffer of 256 KiB frees enough to make glibc give the top of the heap
  // back to the kernel (brk) every iteration and fault it in again on the next: about 40 page
  // faults per iteration of the 16 KiB buffer row, on both sides alike, which drowned what the
  // buffers themselves do. A long-running gateway's heap does not breathe like that.
  mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
