// Timers on the min-heap: ordering, re-arm, persistence, cancellation from callbacks and volume,
// on a fake clock; then a few real-clock cases with tolerances, grouped apart.

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "reactor/event.h"
#include "reactor/event_base.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using testing::BackendTest;
using testing::makeSocketPair;

using namespace std::chrono_literals;

// A timer that records when (on the base's clock) and with which bits it fired.
struct Timer {
  Timer(EventBase& base, std::vector<int>* firedOrder, int timerId, EventMask what = 0)
      : order(firedOrder), id(timerId), event(base, -1, what, callback, this) {}

  static void callback(int, EventMask what, void* arg) {
    auto* self = static_cast<Timer*>(arg);
    self->fired.push_back(self->event.base()->now());
    self->lastWhat = what;
    if (self->order != nullptr) self->order->push_back(self->id);
    if (self->then) self->then();
  }

  std::vector<int>* order;
  int id;
  Event event;
  std::vector<TimePoint> fired;
  EventMask lastWhat = 0;
  std::function<void()> then;
};

class FakeClockTimerTest : public BackendTest {
 protected:
  FakeClock clock_{/*autoAdvance=*/true};
  EventBase base_{options(&clock_)};
  const TimePoint start_ = clock_.now();
};
EVGATE_INSTANTIATE_BACKENDS(FakeClockTimerTest);

TEST_P(FakeClockTimerTest, FireInDeadlineOrder) {
  std::vector<int> order;
  Timer a(base_, &order, 1);
  Timer b(base_, &order, 2);
  Timer c(base_, &order, 3);
  a.event.add(30ms);
  b.event.add(10ms);
  c.event.add(20ms);
  EXPECT_EQ(base_.dispatch(), 1);
  EXPECT_EQ(order, (std::vector<int>{2, 3, 1}));
  EXPECT_EQ(b.fired.at(0) - start_, 10ms);
  EXPECT_EQ(c.fired.at(0) - start_, 20ms);
  EXPECT_EQ(a.fired.at(0) - start_, 30ms);
  EXPECT_EQ(a.lastWhat, kTimeout);
}

TEST_P(FakeClockTimerTest, EqualDeadlinesFireInTheOrderArmed) {
  std::vector<int> order;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < 8; ++i) {
    timers.push_back(std::make_unique<Timer>(base_, &order, i));
    timers.back()->event.add(5ms);
  }
  base_.dispatch();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST_P(FakeClockTimerTest, ReArmPushesTheDeadlineBack) {
  Timer a(base_, nullptr, 1);
  Timer rearm(base_, nullptr, 2);
  a.event.add(50ms);
  rearm.then = [&] { a.event.add(50ms); };
  rearm.event.add(30ms);
  base_.dispatch();
  ASSERT_EQ(a.fired.size(), 1u);
  EXPECT_EQ(a.fired[0] - start_, 80ms);
}

TEST_P(FakeClockTimerTest, PersistentTimerKeepsAFixedPeriodWithoutDrift) {
  Timer tick(base_, nullptr, 1, kPersist);
  tick.then = [&] {
    clock_.advance(3ms);  // a slow callback must not push the next deadlines back
    if (tick.fired.size() == 5) tick.event.del();
  };
  tick.event.add(10ms);
  base_.dispatch();
  ASSERT_EQ(tick.fired.size(), 5u);
  for (size_t i = 0; i < tick.fired.size(); ++i) {
    EXPECT_EQ(tick.fired[i] - start_, 10ms * static_cast<int>(i + 1)) << "tick " << i;
  }
}

TEST_P(FakeClockTimerTest, PersistentTimerThatFellBehindFiresOnceAndReschedulesFromNow) {
  Timer tick(base_, nullptr, 1, kPersist);
  tick.then = [&] {
    if (tick.fired.size() == 2) tick.event.del();
  };
  tick.event.add(10ms);
  clock_.setAutoAdvance(false);
  clock_.advance(45ms);  // the loop did not run through four periods
  base_.loop(kLoopNonBlock);
  ASSERT_EQ(tick.fired.size(), 1u);  // once, not once per missed period
  clock_.setAutoAdvance(true);
  base_.dispatch();
  ASSERT_EQ(tick.fired.size(), 2u);
  // 20ms was already in the past when it fired at 45ms, so the next one counts from then.
  EXPECT_EQ(tick.fired[1] - start_, 55ms);
}

TEST_P(FakeClockTimerTest, PersistentReadEventTimeoutCountsFromLastActivity) {
  auto pair = makeSocketPair();
  std::vector<EventMask> whats;
  std::vector<TimePoint> when;
  struct Ctx {
    std::vector<EventMask>* whats;
    std::vector<TimePoint>* when;
    EventBase* base;
    int fd;
  } ctx{&whats, &when, &base_, pair.a.get()};
  Event ev(
      base_, pair.a.get(), kRead | kPersist,
      [](int fd, EventMask what, void* arg) {
        auto* c = static_cast<Ctx*>(arg);
        c->whats->push_back(what);
        c->when->push_back(c->base->now());
        char buf[16];
        (void)::read(fd, buf, sizeof buf);
        if (c->whats->size() == 2) c->base->loopExit();
      },
      &ctx);
  ev.add(100ms);
  clock_.setAutoAdvance(false);
  clock_.advance(60ms);
  ASSERT_EQ(::write(pair.b.get(), "x", 1), 1);
  base_.loop(kLoopOnce);  // read at 60ms: the timeout now counts from here
  clock_.setAutoAdvance(true);
  base_.dispatch();
  ASSERT_EQ(whats.size(), 2u);
  EXPECT_EQ(whats[0], kRead);
  EXPECT_EQ(whats[1], kTimeout);
  EXPECT_EQ(when[1] - start_, 160ms);
}

TEST_P(FakeClockTimerTest, CancelADueTimerFromAnotherTimersCallback) {
  std::vector<int> order;
  Timer a(base_, &order, 1);
  Timer b(base_, &order, 2);
  a.then = [&] { b.event.del(); };
  a.event.add(10ms);
  b.event.add(10ms);  // due in the same pass, already active when a runs
  EXPECT_EQ(base_.dispatch(), 1);
  EXPECT_EQ(order, std::vector<int>{1});
}

TEST_P(FakeClockTimerTest, DestroyATimerFromItsOwnCallback) {
  std::vector<int> order;
  auto a = std::make_unique<Timer>(base_, &order, 1, kPersist);
  a->then = [&] { a.reset(); };
  a->event.add(10ms);
  EXPECT_EQ(base_.dispatch(), 1);
  EXPECT_EQ(order, std::vector<int>{1});
}

TEST_P(FakeClockTimerTest, TimerAddedInACallbackCountsFromTheCachedLoopTime) {
  Timer later(base_, nullptr, 2);
  Timer first(base_, nullptr, 1);
  first.then = [&] {
    clock_.advance(7ms);  // time spent in the callback
    later.event.add(10ms);
  };
  first.event.add(10ms);
  base_.dispatch();
  ASSERT_EQ(later.fired.size(), 1u);
  // libevent measures from the time cached at the start of the pass, not the wall time now.
  EXPECT_EQ(later.fired[0] - start_, 20ms);
}

TEST_P(FakeClockTimerTest, ManyTimersFireSortedByDeadline) {
  constexpr int kCount = 20000;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> delayMs(0, 5000);
  std::vector<int> order;
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<std::pair<int, int>> expected;  // (delay, arm order) sorts like the heap
  for (int i = 0; i < kCount; ++i) {
    const int delay = delayMs(rng);
    timers.push_back(std::make_unique<Timer>(base_, &order, i));
    timers.back()->event.add(std::chrono::milliseconds(delay));
    expected.emplace_back(delay, i);
  }
  // Cancel every third one before it fires, re-arm every fifth to a later time.
  for (int i = 0; i < kCount; i += 3) {
    timers[i]->event.del();
    expected[i].first = -1;
  }
  for (int i = 1; i < kCount; i += 5) {
    if (expected[i].first < 0) continue;
    timers[i]->event.add(6000ms);
    expected[i] = {6000, kCount + i};
  }
  std::sort(expected.begin(), expected.end());
  std::vector<int> expectedOrder;
  for (const auto& [delay, seq] : expected) {
    if (delay >= 0) expectedOrder.push_back(seq >= kCount ? seq - kCount : seq);
  }
  EXPECT_EQ(base_.dispatch(), 1);
  EXPECT_EQ(order, expectedOrder);
}

TEST_P(FakeClockTimerTest, ZeroTimeoutFiresOnTheNextPass) {
  Timer a(base_, nullptr, 1);
  a.event.add(0ms);
  base_.loop(kLoopNonBlock);
  EXPECT_EQ(a.fired.size(), 1u);
  EXPECT_EQ(a.fired[0], start_);
}

// ---- real clock ---------------------------------------------------------------------------
// Lower bounds are exact (a timer never fires early); upper bounds are loose because these
// machines are shared.

class RealClockTimerTest : public BackendTest {};
EVGATE_INSTANTIATE_BACKENDS(RealClockTimerTest);

TEST_P(RealClockTimerTest, TimerNeverFiresEarly) {
  EventBase base(options());
  Timer a(base, nullptr, 1);
  const auto start = std::chrono::steady_clock::now();
  a.event.add(25ms);
  EXPECT_EQ(base.dispatch(), 1);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 25ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_P(RealClockTimerTest, SubMillisecondTimerIsNotRoundedToZero) {
  EventBase base(options());
  Timer a(base, nullptr, 1);
  const auto start = std::chrono::steady_clock::now();
  a.event.add(300us);
  base.dispatch();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300us);
}

TEST_P(RealClockTimerTest, LoopExitAfterDelay) {
  EventBase base(options());
  const auto start = std::chrono::steady_clock::now();
  base.loopExit(30ms);
  EXPECT_EQ(base.dispatch(), 0);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 30ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_P(RealClockTimerTest, PersistentTimerTicks) {
  EventBase base(options());
  Timer tick(base, nullptr, 1, kPersist);
  tick.then = [&] {
    if (tick.fired.size() == 4) tick.event.del();
  };
  const auto start = std::chrono::steady_clock::now();
  tick.event.add(10ms);
  base.dispatch();
  EXPECT_EQ(tick.fired.size(), 4u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 40ms);
}

}  // namespace
}  // namespace evgate::reactor
