// runInLoop: the one door into a loop from other threads. Run under TSan too.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "reactor/event.h"
#include "reactor/event_base.h"
#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using testing::BackendTest;
using testing::loopUntil;

using namespace std::chrono_literals;

class RunInLoopTest : public BackendTest {};
EVGATE_INSTANTIATE_BACKENDS(RunInLoopTest);

TEST_P(RunInLoopTest, ManyThreadsPostAndEveryFunctionRunsOnTheLoopThreadInOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  EventBase base(options());
  std::vector<int> next(kThreads, 0);  // touched only on the loop thread
  int outOfOrder = 0;
  int offThread = 0;
  int done = 0;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        base.runInLoop([&, t, i] {
          if (!base.isInLoopThread()) ++offThread;
          if (next[t] != i) ++outOfOrder;
          next[t] = i + 1;
          if (++done == kThreads * kPerThread) base.loopBreak();
        });
      }
    });
  }
  // Nothing else is registered: queued functions alone keep dispatch() going; while the queue
  // is momentarily empty the loop would return 1, so keep it alive until all have run.
  Event keepAlive(
      base, -1, kPersist, [](int, EventMask, void*) {}, nullptr);
  keepAlive.add(10s);
  EXPECT_EQ(base.dispatch(), 0);
  for (auto& p : producers) p.join();
  EXPECT_EQ(done, kThreads * kPerThread);
  EXPECT_EQ(outOfOrder, 0);
  EXPECT_EQ(offThread, 0);
}

TEST_P(RunInLoopTest, WakesALoopBlockedWithoutTimers) {
  EventBase base(options());
  auto pair = testing::makeSocketPair();
  // A read event that never fires: the loop blocks in the poller with no timeout.
  Event idle(
      base, pair.a.get(), kRead, [](int, EventMask, void*) {}, nullptr);
  idle.add();
  std::atomic<bool> ran{false};
  std::thread poster([&] {
    // Post only once the loop is (very likely) asleep; correctness does not depend on it.
    std::this_thread::sleep_for(20ms);
    base.runInLoop([&] {
      ran = true;
      base.loopBreak();
    });
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(base.dispatch(), 0);
  poster.join();
  EXPECT_TRUE(ran);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_P(RunInLoopTest, NeverRunsInlineEvenOnTheLoopThread) {
  EventBase base(options());
  bool ran = false;
  base.runInLoop([&] { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_TRUE(ran);
}

TEST_P(RunInLoopTest, FunctionPostedFromAFunctionRunsWithoutBlocking) {
  EventBase base(options());
  int depth = 0;
  std::function<void()> chain = [&] {
    if (++depth < 100) base.runInLoop(chain);
  };
  base.runInLoop(chain);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(base.dispatch(), 1);
  EXPECT_EQ(depth, 100);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_P(RunInLoopTest, DeferredDeleteRunsAfterTheCallbackReturns) {
  EventBase base(options());
  struct Tracked : DeferredDeletable {
    explicit Tracked(bool* flag) : destroyed(flag) {}
    ~Tracked() override { *destroyed = true; }
    bool* destroyed;
  };
  bool destroyed = false;
  bool destroyedInsideCallback = true;
  base.runInLoop([&] {
    base.deferDelete(std::make_unique<Tracked>(&destroyed));
    destroyedInsideCallback = destroyed;
  });
  base.dispatch();
  EXPECT_FALSE(destroyedInsideCallback);
  EXPECT_TRUE(destroyed);
}

TEST_P(RunInLoopTest, QueuedFunctionsNeverRunAfterTheBaseIsGone) {
  auto ran = std::make_shared<std::atomic<int>>(0);
  {
    EventBase base(options());
    base.runInLoop([ran] { ++*ran; });
  }
  EXPECT_EQ(ran->load(), 0);
  EXPECT_EQ(ran.use_count(), 1);  // the queued function (and its capture) was destroyed
}

}  // namespace
}  // namespace evgate::reactor
