// Every arrow of the seed's event lifecycle, each a named test, on every poller backend:
//
//   new -> initialized -> add -> pending -> (fd ready | timeout) -> active -> callback ->
//   non-pending (or pending again with kPersist); del -> non-pending; del of an active event
//   cancels its callback.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "reactor/event.h"
#include "reactor/event_base.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using testing::BackendTest;
using testing::loopUntil;
using testing::makeSocketPair;

using namespace std::chrono_literals;

class EventLifecycleTest : public BackendTest {};
EVGATE_INSTANTIATE_BACKENDS(EventLifecycleTest);

// A callback target that counts calls and remembers what it was given.
struct Calls {
  int count = 0;
  int lastFd = -2;
  EventMask lastWhat = 0;
  std::function<void()> then;

  static void callback(int fd, EventMask what, void* arg) {
    auto* self = static_cast<Calls*>(arg);
    ++self->count;
    self->lastFd = fd;
    self->lastWhat = what;
    if (self->then) self->then();
  }
};

void writeByte(int fd) { ASSERT_EQ(::write(fd, "x", 1), 1); }

TEST_P(EventLifecycleTest, NewEventIsInitializedAndNotPending) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  EXPECT_EQ(ev.state(), EventState::kInitialized);
  EXPECT_FALSE(ev.pending());
  EXPECT_EQ(base.eventCount(), 0u);
  // Nothing registered: dispatch has nothing to wait for.
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 0);
}

TEST_P(EventLifecycleTest, AddMakesInitializedEventPending) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ASSERT_EQ(ev.add(), 0);
  EXPECT_EQ(ev.state(), EventState::kPending);
  EXPECT_TRUE(ev.pending(kRead));
  EXPECT_FALSE(ev.pending(kWrite));
  EXPECT_FALSE(ev.pending(kTimeout));
  EXPECT_EQ(base.eventCount(), 1u);
}

TEST_P(EventLifecycleTest, AddWithTimeoutMakesTimeoutPending) {
  EventBase base(options());
  Calls calls;
  Event timer(base, Calls::callback, &calls);
  ASSERT_EQ(timer.add(10s), 0);
  TimePoint deadline{};
  EXPECT_TRUE(timer.pending(kTimeout, &deadline));
  EXPECT_GT(deadline, base.now() + 9s);
}

TEST_P(EventLifecycleTest, AddOnPendingEventStaysPendingAndRearmsTimeout) {
  FakeClock clock;
  EventBase base(options(&clock));
  Calls calls;
  Event timer(base, Calls::callback, &calls);
  ASSERT_EQ(timer.add(100ms), 0);
  TimePoint first{};
  ASSERT_TRUE(timer.pending(kTimeout, &first));
  clock.advance(60ms);
  ASSERT_EQ(timer.add(100ms), 0);
  TimePoint second{};
  ASSERT_TRUE(timer.pending(kTimeout, &second));
  EXPECT_EQ(second - first, 60ms);
  // The original deadline passes without a callback: the timeout was re-armed, not added twice.
  clock.advance(50ms);
  base.loop(kLoopNonBlock);
  EXPECT_EQ(calls.count, 0);
  EXPECT_EQ(timer.state(), EventState::kPending);
  clock.advance(50ms);
  base.loop(kLoopNonBlock);
  EXPECT_EQ(calls.count, 1);
}

TEST_P(EventLifecycleTest, AddWithoutTimeoutKeepsTheArmedTimeout) {
  FakeClock clock;
  EventBase base(options(&clock));
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ASSERT_EQ(ev.add(100ms), 0);
  ASSERT_EQ(ev.add(), 0);  // libevent's event_add(ev, NULL) leaves the timeout alone
  EXPECT_TRUE(ev.pending(kTimeout));
  clock.advance(100ms);
  base.loop(kLoopNonBlock);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastWhat, kTimeout);
}

TEST_P(EventLifecycleTest, FdReadyMakesPendingEventActive) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls first;
  Calls second;
  Event a(base, pair.a.get(), kRead, Calls::callback, &first);
  Event b(base, pair.a.get(), kRead, Calls::callback, &second);
  EventState seenFromFirst = EventState::kInitialized;
  first.then = [&] { seenFromFirst = b.state(); };
  // The newest event on an fd runs first (as in libevent), so `a`, added last, runs first.
  b.add();
  a.add();
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  // Both became active in the same pass; the second was still active (not yet run) while the
  // first's callback ran.
  EXPECT_EQ(seenFromFirst, EventState::kActive);
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 1);
}

TEST_P(EventLifecycleTest, TimeoutMakesPendingEventActiveWithTimeoutBit) {
  FakeClock clock;
  EventBase base(options(&clock));
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ev.add(5s);
  clock.advance(5s);
  base.loop(kLoopNonBlock);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastWhat, kTimeout);
  EXPECT_EQ(calls.lastFd, pair.a.get());
}

TEST_P(EventLifecycleTest, CallbackMakesNonPersistentEventNonPending) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  bool pendingInside = true;
  calls.then = [&] { pendingInside = ev.pending(); };
  ev.add();
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);  // the only event went non-pending: nothing left
  EXPECT_EQ(calls.count, 1);
  EXPECT_FALSE(pendingInside);
  EXPECT_EQ(ev.state(), EventState::kInitialized);
}

TEST_P(EventLifecycleTest, CallbackLeavesPersistentEventPending) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
  bool pendingInside = false;
  calls.then = [&] {
    pendingInside = ev.pending(kRead);
    if (calls.count == 3) base.loopBreak();
  };
  ev.add();
  writeByte(pair.b.get());  // never read: level-triggered readiness fires on every pass
  EXPECT_EQ(base.dispatch(), 0);
  EXPECT_EQ(calls.count, 3);
  EXPECT_TRUE(pendingInside);
  EXPECT_EQ(ev.state(), EventState::kPending);
}

TEST_P(EventLifecycleTest, DelMakesPendingEventNonPending) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ev.add(1s);
  ASSERT_EQ(ev.del(), 0);
  EXPECT_EQ(ev.state(), EventState::kInitialized);
  EXPECT_FALSE(ev.pending());
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 0);
}

TEST_P(EventLifecycleTest, DelOfActiveEventSkipsItsCallback) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls first;
  Calls second;
  Event a(base, pair.a.get(), kRead, Calls::callback, &first);
  Event b(base, pair.a.get(), kRead, Calls::callback, &second);
  first.then = [&] {
    ASSERT_EQ(b.state(), EventState::kActive);
    b.del();
  };
  // The newest event on an fd runs first (as in libevent), so `a`, added last, runs first.
  b.add();
  a.add();
  writeByte(pair.b.get());
  base.dispatch();
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 0);
  EXPECT_EQ(b.state(), EventState::kInitialized);
}

TEST_P(EventLifecycleTest, DelOnNonPendingEventDoesNothing) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  EXPECT_EQ(ev.del(), 0);
  EXPECT_EQ(ev.del(), 0);
  EXPECT_EQ(ev.state(), EventState::kInitialized);
  EXPECT_EQ(base.eventCount(), 0u);
}

TEST_P(EventLifecycleTest, CallbackGetsFdFiredBitsAndArgument) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead | kWrite, Calls::callback, &calls);
  ev.add();
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastFd, pair.a.get());
  EXPECT_EQ(calls.lastWhat, kRead | kWrite);  // readable and writable at once
}

TEST_P(EventLifecycleTest, AddAgainFromInsideCallbackMakesItPendingAgain) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  calls.then = [&] {
    if (calls.count < 3) ev.add();
  };
  ev.add();
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 3);
}

TEST_P(EventLifecycleTest, DelOwnPersistentEventInsideCallback) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
  calls.then = [&] { ev.del(); };
  ev.add(1s);
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 1);
  EXPECT_FALSE(ev.pending());
}

TEST_P(EventLifecycleTest, DestroyOwnEventInsideCallback) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  auto ev = std::make_unique<Event>(base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
  calls.then = [&] { ev.reset(); };
  ev->add(1s);
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(base.eventCount(), 0u);
}

TEST_P(EventLifecycleTest, DestroyAnotherActiveEventInsideCallback) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls first;
  Calls second;
  auto a = std::make_unique<Event>(base, pair.a.get(), kRead, Calls::callback, &first);
  auto b = std::make_unique<Event>(base, pair.a.get(), kRead, Calls::callback, &second);
  first.then = [&] { b.reset(); };
  b->add();
  a->add();  // newest first: `a` runs before `b`
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 0);
}

TEST_P(EventLifecycleTest, ActivateRunsCallbackOfNonPendingEvent) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  ev.activate(kRead);
  EXPECT_EQ(ev.state(), EventState::kActive);
  EXPECT_TRUE(
      ev.pending(kRead));  // libevent's event_pending reports the fired bits of an active event
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastWhat, kRead);
  EXPECT_EQ(ev.state(), EventState::kInitialized);
}

TEST_P(EventLifecycleTest, ActivatingAnActiveEventAccumulatesBits) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  ev.activate(kRead);
  ev.activate(kWrite);
  base.dispatch();
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastWhat, kRead | kWrite);
}

TEST_P(EventLifecycleTest, ReaddingTimeoutOfEventActiveByTimeoutCancelsTheRun) {
  FakeClock clock;
  EventBase base(options(&clock));
  Calls first;
  Calls second;
  Event a(base, Calls::callback, &first);
  Event b(base, Calls::callback, &second);
  first.then = [&] { b.add(1s); };  // b timed out in the same pass; re-arming cancels that run
  a.add(10ms);
  b.add(20ms);
  clock.advance(20ms);
  base.loop(kLoopNonBlock);
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 0);
  EXPECT_TRUE(b.pending(kTimeout));
}

TEST_P(EventLifecycleTest, SeparateReadAndWriteEventsOnOneFd) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls reads;
  Calls writes;
  Event r(base, pair.a.get(), kRead, Calls::callback, &reads);
  Event w(base, pair.a.get(), kWrite, Calls::callback, &writes);
  r.add();
  w.add();
  base.loop(kLoopOnce);  // writable at once, nothing to read yet
  EXPECT_EQ(writes.count, 1);
  EXPECT_EQ(writes.lastWhat, kWrite);
  EXPECT_EQ(reads.count, 0);
  EXPECT_TRUE(r.pending(kRead));
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  EXPECT_EQ(reads.count, 1);
  EXPECT_EQ(reads.lastWhat, kRead);
}

TEST_P(EventLifecycleTest, PeerCloseWakesReadEvent) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ev.add();
  pair.b.reset();
  base.dispatch();
  EXPECT_EQ(calls.count, 1);
  char c;
  EXPECT_EQ(::read(pair.a.get(), &c, 1), 0);
}

TEST_P(EventLifecycleTest, AssignOnlyChangesNonPendingEvent) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, -1, 0, Calls::callback, &calls);
  ASSERT_EQ(ev.assign(pair.a.get(), kRead, Calls::callback, &calls), 0);
  ev.add();
  EXPECT_EQ(ev.assign(pair.b.get(), kRead, Calls::callback, &calls), -1);
  EXPECT_EQ(ev.fd(), pair.a.get());
}

TEST_P(EventLifecycleTest, DelAfterFdWasClosedIsHarmless) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ev.add();
  pair.a.reset();
  EXPECT_EQ(ev.del(), 0);
  EXPECT_EQ(base.dispatch(), 1);
}

TEST_P(EventLifecycleTest, MixingEdgeAndLevelTriggeredOnOneFdIsRefused) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event level(base, pair.a.get(), kRead, Calls::callback, &calls);
  Event edge(base, pair.a.get(), kRead | kEdgeTriggered, Calls::callback, &calls);
  ASSERT_EQ(level.add(), 0);
  EXPECT_EQ(edge.add(), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_FALSE(edge.pending());
}

TEST_P(EventLifecycleTest, MixingExclusiveAndSharedWakeUpsOnOneFdIsRefused) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event exclusive(base, pair.a.get(), kRead | kExclusive, Calls::callback, &calls);
  Event shared(base, pair.a.get(), kWrite, Calls::callback, &calls);
  ASSERT_EQ(exclusive.add(), 0);
  EXPECT_EQ(shared.add(), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_FALSE(shared.pending());
}

// epoll refuses EPOLLRDHUP with EPOLLEXCLUSIVE; the base refuses the mix on every backend, before
// the poller hears of it, so that the fd keeps its registration as it was.
TEST_P(EventLifecycleTest, AnExclusiveEventThatWaitsForClosedIsRefused) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event closed(base, pair.a.get(), kRead | kClosed | kExclusive, Calls::callback, &calls);
  EXPECT_EQ(closed.add(), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_FALSE(closed.pending());
  Event reader(base, pair.a.get(), kRead | kExclusive, Calls::callback, &calls);
  ASSERT_EQ(reader.add(), 0);
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  EXPECT_EQ(calls.count, 1);
  EXPECT_EQ(calls.lastWhat, kRead) << "kExclusive is not among the bits a callback gets";
}

// epoll refuses to modify an exclusive registration (EPOLL_CTL_MOD fails with EINVAL): adding
// and removing a second exclusive event on the fd must re-register it, not lose it.
TEST_P(EventLifecycleTest, ExclusiveReadAndWriteEventsOnOneFdComeAndGo) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls reads;
  Calls writes;
  Event r(base, pair.a.get(), kRead | kPersist | kExclusive, Calls::callback, &reads);
  Event w(base, pair.a.get(), kWrite | kExclusive, Calls::callback, &writes);
  ASSERT_EQ(r.add(), 0);
  ASSERT_EQ(w.add(), 0);
  base.loop(kLoopOnce);  // writable at once, nothing to read yet
  EXPECT_EQ(writes.count, 1);
  EXPECT_EQ(reads.count, 0);
  EXPECT_TRUE(r.pending(kRead));
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  EXPECT_EQ(reads.count, 1);
  EXPECT_EQ(reads.lastWhat, kRead);
  // The write event again, then gone: the read event keeps its registration throughout.
  ASSERT_EQ(w.add(), 0);
  ASSERT_EQ(w.del(), 0);
  char byte;
  ASSERT_EQ(::read(pair.a.get(), &byte, 1), 1);
  writeByte(pair.b.get());
  ASSERT_TRUE(loopUntil(base, [&] { return reads.count == 2; }));
  EXPECT_EQ(writes.count, 1);
}

TEST_P(EventLifecycleTest, EventOutlivingItsBaseIsDetached) {
  Calls calls;
  std::unique_ptr<Event> ev;
  {
    EventBase base(options());
    ev = std::make_unique<Event>(base, Calls::callback, &calls);
    ev->add(1s);
  }
  EXPECT_EQ(ev->base(), nullptr);
  EXPECT_EQ(ev->add(), -1);
  EXPECT_EQ(ev->state(), EventState::kInitialized);
}

// ---- the loop ------------------------------------------------------------------------------

TEST_P(EventLifecycleTest, DispatchReturnsOneWithNothingRegistered) {
  EventBase base(options());
  EXPECT_EQ(base.dispatch(), 1);
}

TEST_P(EventLifecycleTest, LoopBreakStopsAfterTheCurrentCallback) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls first;
  Calls second;
  Event a(base, pair.a.get(), kRead, Calls::callback, &first);
  Event b(base, pair.a.get(), kRead, Calls::callback, &second);
  first.then = [&] { base.loopBreak(); };
  // The newest event on an fd runs first (as in libevent), so `a`, added last, runs first.
  b.add();
  a.add();
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 0);
  EXPECT_TRUE(base.gotBreak());
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 0);
  EXPECT_EQ(b.state(), EventState::kActive);  // still queued for the next loop
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(second.count, 1);
}

TEST_P(EventLifecycleTest, LoopExitFinishesTheActiveEventsOfTheIteration) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls first;
  Calls second;
  Event a(base, pair.a.get(), kRead | kPersist, Calls::callback, &first);
  Event b(base, pair.a.get(), kRead | kPersist, Calls::callback, &second);
  first.then = [&] { base.loopExit(); };
  // The newest event on an fd runs first (as in libevent), so `a`, added last, runs first.
  b.add();
  a.add();
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 0);
  EXPECT_TRUE(base.gotExit());
  EXPECT_EQ(second.count, first.count);
}

TEST_P(EventLifecycleTest, LoopExitAfterDelayCountsAsAnEvent) {
  FakeClock clock(/*autoAdvance=*/true);
  EventBase base(options(&clock));
  const TimePoint start = clock.now();
  base.loopExit(2s);
  EXPECT_EQ(base.dispatch(), 0);
  EXPECT_EQ(clock.now() - start, 2s);
}

TEST_P(EventLifecycleTest, LoopOnceReturnsAfterActiveEventsRan) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
  ev.add();
  writeByte(pair.b.get());
  EXPECT_EQ(base.loop(kLoopOnce), 0);
  EXPECT_EQ(calls.count, 1);
}

TEST_P(EventLifecycleTest, LoopNonBlockReturnsWithoutWaiting) {
  EventBase base(options());
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead, Calls::callback, &calls);
  ev.add();
  EXPECT_EQ(base.loop(kLoopNonBlock), 0);
  EXPECT_EQ(calls.count, 0);
  EXPECT_TRUE(ev.pending());
}

TEST_P(EventLifecycleTest, ReentrantLoopIsRefused) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  int inner = 0;
  calls.then = [&] { inner = base.dispatch(); };
  ev.activate(kTimeout);
  base.dispatch();
  EXPECT_EQ(inner, -1);
}

TEST_P(EventLifecycleTest, HigherPriorityEventsStarveLowerOnes) {
  EventBaseOptions opts = options();
  opts.priorities = 2;
  EventBase base(opts);
  auto pair = makeSocketPair();
  std::vector<std::string> trace;
  Calls highCalls;
  Calls lowCalls;
  // A readable fd wakes the high-priority event on every pass; as in libevent, a pass that ran a
  // higher-priority callback does not go on to lower priorities.
  Event high(base, pair.a.get(), kRead | kPersist, Calls::callback, &highCalls);
  Event low(base, Calls::callback, &lowCalls);
  ASSERT_EQ(high.setPriority(0), 0);
  ASSERT_EQ(low.setPriority(1), 0);
  EXPECT_EQ(low.setPriority(2), -1);
  highCalls.then = [&] {
    trace.push_back("high");
    if (highCalls.count == 5) high.del();
  };
  lowCalls.then = [&] { trace.push_back("low"); };
  high.add();
  writeByte(pair.b.get());
  low.activate(kTimeout);
  EXPECT_EQ(low.setPriority(0), -1);  // not while active
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(trace, (std::vector<std::string>{"high", "high", "high", "high", "high", "low"}));
}

TEST_P(EventLifecycleTest, HugeTimeoutSaturatesInsteadOfFiringAtOnce) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  ASSERT_EQ(ev.add(Duration::max()), 0);
  TimePoint deadline{};
  ASSERT_TRUE(ev.pending(kTimeout, &deadline));
  EXPECT_EQ(deadline, TimePoint::max());
  base.loop(kLoopNonBlock);
  EXPECT_EQ(calls.count, 0);
  EXPECT_TRUE(ev.pending(kTimeout));
}

TEST_P(EventLifecycleTest, PriorityCountCannotChangeWhileTheLoopRuns) {
  EventBase base(options());
  Calls calls;
  Event ev(base, Calls::callback, &calls);
  int inside = 0;
  calls.then = [&] { inside = base.setPriorityCount(3); };
  ev.activate(kTimeout);
  base.dispatch();
  EXPECT_EQ(inside, -1);
  EXPECT_EQ(base.setPriorityCount(3), 0);
  EXPECT_EQ(base.priorityCount(), 3);
}

TEST_P(EventLifecycleTest, BaseRunOnAWorkerThreadMayBeDestroyedByTheJoiningThread) {
  std::unique_ptr<EventBase> base;
  auto pair = makeSocketPair();
  Calls calls;
  std::unique_ptr<Event> ev;
  std::thread worker([&] {
    base = std::make_unique<EventBase>(options());  // created on its worker, as the gateway does
    ev = std::make_unique<Event>(*base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
    ev->add();
    base->loopExit(std::chrono::milliseconds(1));
    base->dispatch();
    ev.reset();
  });
  worker.join();
  // The base's own events are still registered; destroying it from the joining thread must not
  // trip the loop-thread assertion (Debug and ASan builds abort if it does).
  base.reset();
  EXPECT_EQ(calls.count, 0);
}

TEST_P(EventLifecycleTest, DumpListsEventsWithStateDeadlineAndLabel) {
  FakeClock clock;
  EventBase base(options(&clock));
  auto pair = makeSocketPair();
  Calls calls;
  Event reader(base, pair.a.get(), kRead | kPersist, Calls::callback, &calls);
  reader.setLabel("test reader");
  Event timer(base, Calls::callback, &calls);
  timer.setLabel("test timer");
  reader.add();
  timer.add(3s);
  Event idle(base, Calls::callback, &calls);
  idle.setLabel("idle");

  const auto rows = base.dumpEvents();
  auto find = [&](const std::string& label) {
    for (const auto& row : rows) {
      if (row.label == label) return row;
    }
    ADD_FAILURE() << "no row labelled " << label;
    return EventInfo{};
  };
  const EventInfo r = find("test reader");
  EXPECT_EQ(r.fd, pair.a.get());
  EXPECT_EQ(r.events, kRead | kPersist);
  EXPECT_EQ(r.state, EventState::kPending);
  EXPECT_FALSE(r.deadline.has_value());
  EXPECT_FALSE(r.internal);
  const EventInfo t = find("test timer");
  ASSERT_TRUE(t.deadline.has_value());
  EXPECT_EQ(*t.deadline, clock.now() + 3s);
  EXPECT_EQ(find("idle").state, EventState::kInitialized);
  bool sawInternal = false;
  for (const auto& row : rows) sawInternal = sawInternal || row.internal;
  EXPECT_TRUE(sawInternal);  // the runInLoop wake-up event
}

// A computed label costs no string per event: it is asked for only by dumpEvents(), with the
// owner given, and it can be replaced by a plain label and back.
TEST_P(EventLifecycleTest, ComputedLabelsAreAskedForOnlyWhenDumped) {
  EventBase base(options());
  struct Owner {
    mutable int asked = 0;
    std::string name = "owner";
  } owner;
  const Event::Labeller labeller = [](const Event& ev, const void* arg) {
    const auto* o = static_cast<const Owner*>(arg);
    ++o->asked;
    return o->name + (ev.fd() < 0 ? " timer" : " io");
  };
  Calls calls;
  Event timer(base, Calls::callback, &calls);
  timer.setLabel(labeller, &owner);
  EXPECT_EQ(owner.asked, 0);
  const auto labelOf = [&base](const Event& ev) {
    for (const EventInfo& row : base.dumpEvents()) {
      if (row.fd == ev.fd() && !row.internal) return row.label;
    }
    return std::string("<none>");
  };
  EXPECT_EQ(labelOf(timer), "owner timer");
  EXPECT_EQ(owner.asked, 1);
  owner.name = "renamed";
  EXPECT_EQ(timer.label(), "renamed timer");
  timer.setLabel("plain");
  EXPECT_EQ(labelOf(timer), "plain");
  EXPECT_EQ(owner.asked, 2);
  timer.setLabel(labeller, &owner);
  EXPECT_EQ(timer.label(), "renamed timer");
  timer.setLabel("");
  EXPECT_EQ(labelOf(timer), "");
}

// delBeforeClose() on every backend: the event stops at once, and the fd number, reused by a
// new socket after the close, registers and fires normally (epoll forgot the old file by
// itself; poll was told).
TEST_P(EventLifecycleTest, DelBeforeCloseLetsTheFdNumberBeReused) {
  EventBase base(options());
  Calls first;
  auto pair = makeSocketPair();
  const int fd = pair.a.get();
  Event reader(base, fd, kRead | kPersist, Calls::callback, &first);
  ASSERT_EQ(reader.add(), 0);
  writeByte(pair.b.get());
  EXPECT_EQ(reader.delBeforeClose(), 0);
  EXPECT_EQ(reader.state(), EventState::kInitialized);
  pair.a.reset();
  base.loop(kLoopNonBlock);  // the closed fd reports nothing
  EXPECT_EQ(first.count, 0);

  auto next = makeSocketPair();
  int reused = next.a.get();
  if (reused != fd) {
    // Another thread took the number: move the new socket onto it.
    ASSERT_EQ(::dup3(next.a.get(), fd, O_CLOEXEC), fd);
    next.a.reset(fd);
    reused = fd;
  }
  Calls second;
  Event again(base, reused, kRead | kPersist, Calls::callback, &second);
  ASSERT_EQ(again.add(), 0);
  writeByte(next.b.get());
  ASSERT_TRUE(loopUntil(base, [&] { return second.count > 0; }));
  EXPECT_EQ(first.count, 0);
  again.del();
}

TEST_P(EventLifecycleTest, OnceFiresExactlyOnce) {
  EventBase base(options());
  auto pair = makeSocketPair();
  int fired = 0;
  EventMask what = 0;
  ASSERT_EQ(base.once(
                pair.a.get(), kRead, [&](int, EventMask w) { ++fired, what = w; }, std::nullopt),
            0);
  writeByte(pair.b.get());
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(what, kRead);
}

TEST(EventBaseBackend, EnvironmentPicksTheBackend) {
  ::setenv("EVGATE_REACTOR_BACKEND", "poll", 1);
  EventBase polled;
  ::unsetenv("EVGATE_REACTOR_BACKEND");
  EventBase defaulted;
  EXPECT_EQ(polled.backendName(), "poll");
  EXPECT_EQ(defaulted.backendName(), "epoll");
}

TEST(EventBaseBackend, EpollRefusesRegularFiles) {
  EventBaseOptions opts;
  opts.backend = Backend::kEpoll;
  EventBase base(opts);
  testing::UniqueFd file(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  ASSERT_GE(file.get(), 0);
  Calls calls;
  Event ev(base, file.get(), kRead, Calls::callback, &calls);
  EXPECT_EQ(ev.add(), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_FALSE(ev.pending());
  EXPECT_EQ(base.eventCount(), 0u);
}

TEST(EventBaseBackend, EdgeTriggeredFiresOncePerArrivalOnEpoll) {
  EventBaseOptions opts;
  opts.backend = Backend::kEpoll;
  EventBase base(opts);
  auto pair = makeSocketPair();
  Calls calls;
  Event ev(base, pair.a.get(), kRead | kPersist | kEdgeTriggered, Calls::callback, &calls);
  ev.add();
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  base.loop(kLoopNonBlock);  // the byte is still unread, but no new edge
  EXPECT_EQ(calls.count, 1);
  writeByte(pair.b.get());
  base.loop(kLoopOnce);
  EXPECT_EQ(calls.count, 2);
}

}  // namespace
}  // namespace evgate::reactor
