// Signal events through signalfd, on every poller backend. Signals are sent to this thread
// (raise / pthread_sigqueue), which is the loop thread.

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <functional>
#include <memory>

#include "reactor/event.h"
#include "reactor/event_base.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using testing::BackendTest;
using testing::loopUntil;

class SignalTest : public BackendTest {};
EVGATE_INSTANTIATE_BACKENDS(SignalTest);

struct SignalCalls {
  int count = 0;
  int lastFd = 0;
  EventMask lastWhat = 0;
  std::function<void()> then;
  static void callback(int fd, EventMask what, void* arg) {
    auto* self = static_cast<SignalCalls*>(arg);
    ++self->count;
    self->lastFd = fd;
    self->lastWhat = what;
    if (self->then) self->then();
  }
};

bool isBlocked(int sig) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, sig) == 1;
}

void queueToSelf(int sig, int value) {
  sigval v{};
  v.sival_int = value;
  ASSERT_EQ(pthread_sigqueue(pthread_self(), sig, v), 0);
}

TEST_P(SignalTest, SignalMakesSignalEventActive) {
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGUSR1, kSignal | kPersist, SignalCalls::callback, &calls);
  ASSERT_EQ(ev.add(), 0);
  EXPECT_TRUE(ev.pending(kSignal));
  EXPECT_TRUE(isBlocked(SIGUSR1));
  ASSERT_EQ(raise(SIGUSR1), 0);
  ASSERT_TRUE(loopUntil(base, [&] { return calls.count == 1; }));
  EXPECT_EQ(calls.lastFd, SIGUSR1);
  EXPECT_EQ(calls.lastWhat, kSignal);
  EXPECT_TRUE(ev.pending(kSignal));  // persistent
}

TEST_P(SignalTest, NonPersistentSignalEventBecomesNonPendingAndRestoresTheMask) {
  ASSERT_FALSE(isBlocked(SIGUSR2));
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGUSR2, kSignal, SignalCalls::callback, &calls);
  ev.add();
  ASSERT_EQ(raise(SIGUSR2), 0);
  EXPECT_EQ(base.dispatch(), 1);  // nothing left once it ran
  EXPECT_EQ(calls.count, 1);
  EXPECT_FALSE(ev.pending());
  EXPECT_FALSE(isBlocked(SIGUSR2));
}

TEST_P(SignalTest, EveryEventOfASignalFires) {
  EventBase base(options());
  SignalCalls first;
  SignalCalls second;
  Event a(base, SIGUSR1, kSignal, SignalCalls::callback, &first);
  Event b(base, SIGUSR1, kSignal, SignalCalls::callback, &second);
  a.add();
  b.add();
  ASSERT_EQ(raise(SIGUSR1), 0);
  base.dispatch();
  EXPECT_EQ(first.count, 1);
  EXPECT_EQ(second.count, 1);
}

TEST_P(SignalTest, CallbackRunsOncePerQueuedDelivery) {
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGRTMIN, kSignal | kPersist, SignalCalls::callback, &calls);
  ev.add();
  // Real-time signals queue; all three are read in one pass and reported one call each.
  queueToSelf(SIGRTMIN, 1);
  queueToSelf(SIGRTMIN, 2);
  queueToSelf(SIGRTMIN, 3);
  base.loop(kLoopOnce);
  EXPECT_EQ(calls.count, 3);
}

TEST_P(SignalTest, DelInsideTheCallbackStopsTheRemainingDeliveries) {
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGRTMIN + 1, kSignal | kPersist, SignalCalls::callback, &calls);
  calls.then = [&] { ev.del(); };
  ev.add();
  queueToSelf(SIGRTMIN + 1, 1);
  queueToSelf(SIGRTMIN + 1, 2);
  queueToSelf(SIGRTMIN + 1, 3);
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(calls.count, 1);
}

TEST_P(SignalTest, DestroyAfterDelMidDeliveriesIsSafe) {
  EventBase base(options());
  SignalCalls calls;
  auto ev = std::make_unique<Event>(base, SIGRTMIN + 2, kSignal | kPersist, SignalCalls::callback,
                                    &calls);
  calls.then = [&] { ev->del(); };
  ev->add();
  queueToSelf(SIGRTMIN + 2, 1);
  queueToSelf(SIGRTMIN + 2, 2);
  base.loop(kLoopOnce);
  EXPECT_EQ(calls.count, 1);
  // The event must not keep a pointer into the dispatcher's finished frame (ASan would catch the
  // write when it is destroyed).
  ev.reset();
  EXPECT_EQ(base.dispatch(), 1);
}

TEST_P(SignalTest, DeletingTheLastEventConsumesAnUnreadSignalInsteadOfDying) {
  ASSERT_FALSE(isBlocked(SIGUSR2));
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGUSR2, kSignal | kPersist, SignalCalls::callback, &calls);
  ev.add();
  ASSERT_EQ(raise(SIGUSR2), 0);  // pending in the signalfd, never read
  ev.del();                      // unblocking it as is would run SIGUSR2's default action: exit
  EXPECT_FALSE(isBlocked(SIGUSR2));
  EXPECT_EQ(calls.count, 0);
}

TEST_P(SignalTest, SignalEventKeepsTheLoopRunning) {
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, SIGUSR1, kSignal | kPersist, SignalCalls::callback, &calls);
  ev.add();
  EXPECT_EQ(base.eventCount(), 1u);
  ASSERT_EQ(base.loop(kLoopNonBlock), 0);
  ev.del();
  EXPECT_EQ(base.dispatch(), 1);
}

TEST_P(SignalTest, InvalidSignalNumberIsRefused) {
  EventBase base(options());
  SignalCalls calls;
  Event ev(base, 0, kSignal, SignalCalls::callback, &calls);
  EXPECT_EQ(ev.add(), -1);
  Event big(base, 1000, kSignal, SignalCalls::callback, &calls);
  EXPECT_EQ(big.add(), -1);
  EXPECT_EQ(base.eventCount(), 0u);
}

}  // namespace
}  // namespace evgate::reactor
