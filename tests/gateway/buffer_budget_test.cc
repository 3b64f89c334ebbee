// The memory budget's arithmetic: what each worker publishes, and the per-flow limit and the
// refusal that follow from the total. The behaviour over real sockets is in
// metrics_collector_test.cc (MemoryBudget*).

#include "gateway/buffer_budget.h"

#include <gtest/gtest.h>

namespace evgate::gateway {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

TEST(BufferBudgetTest, WithoutALimitFlowsKeepTheirOwnLimitAndNothingIsRefused) {
  BufferBudget budget(1);
  BufferAccount account(&budget, 0);
  account.change(0, 64 * kMiB);
  account.refresh();
  EXPECT_EQ(account.flowLimit(256 * kKiB), 256 * kKiB);
  EXPECT_FALSE(account.full());
  EXPECT_EQ(budget.used(), 64 * kMiB) << "counted even without a budget (the used gauge)";

  BufferAccount none(nullptr, 0);
  none.change(0, kMiB);
  none.refresh();
  EXPECT_EQ(none.held(), 0u);
  EXPECT_EQ(none.flowLimit(kMiB), kMiB);
  EXPECT_FALSE(none.full());
}

TEST(BufferBudgetTest, AWorkerPublishesInStepsAndAlwaysWhenItHoldsNothing) {
  BufferBudget budget(2);
  BufferAccount first(&budget, 0);
  BufferAccount second(&budget, 1);
  first.change(0, BufferBudget::kPublishStep - 1);
  EXPECT_EQ(first.held(), BufferBudget::kPublishStep - 1);
  EXPECT_EQ(budget.used(), 0u) << "less than a step: not published yet";
  first.change(0, 1);
  EXPECT_EQ(budget.used(), BufferBudget::kPublishStep);
  second.change(0, 3 * BufferBudget::kPublishStep);
  EXPECT_EQ(budget.used(), 4 * BufferBudget::kPublishStep);
  // Going down: published by steps too, and exactly once nothing is held.
  second.change(3 * BufferBudget::kPublishStep, BufferBudget::kPublishStep);
  EXPECT_EQ(budget.used(), 2 * BufferBudget::kPublishStep);
  second.change(BufferBudget::kPublishStep, 0);
  first.change(BufferBudget::kPublishStep, 0);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(BufferBudgetTest, FlowLimitsShrinkFromHalfTheBudgetToTheFloorAndNewFlowsWaitAtTheBudget) {
  BufferBudget budget(2);
  budget.setLimit(8 * kMiB);
  BufferAccount mine(&budget, 0);
  BufferAccount other(&budget, 1);  // the total is what counts, not this worker's part
  const auto at = [&](uint64_t used) {
    other.change(other.held(), used);
    mine.refresh();
  };
  const uint64_t flowBuffer = 256 * kKiB;

  at(4 * kMiB - 1);  // below half: untouched
  EXPECT_EQ(mine.flowLimit(flowBuffer), flowBuffer);
  EXPECT_FALSE(mine.full());
  at(4 * kMiB);  // half: still whole, shrinking from here
  EXPECT_EQ(mine.flowLimit(flowBuffer), flowBuffer);
  at(6 * kMiB);  // three quarters: half the limit
  EXPECT_EQ(mine.flowLimit(flowBuffer), flowBuffer / 2);
  EXPECT_FALSE(mine.full());
  at(8 * kMiB - 64 * kKiB);  // close to the budget: the floor, not less
  EXPECT_EQ(mine.flowLimit(flowBuffer), BufferAccount::kFlowFloor);
  EXPECT_EQ(mine.flowLimit(1 * kKiB), 1 * kKiB) << "a limit below the floor stays as it is";
  EXPECT_FALSE(mine.full());
  at(8 * kMiB);  // the budget: floor, and new connections wait
  EXPECT_EQ(mine.flowLimit(flowBuffer), BufferAccount::kFlowFloor);
  EXPECT_TRUE(mine.full());
  at(12 * kMiB);
  EXPECT_TRUE(mine.full());

  at(2 * kMiB);  // drained
  EXPECT_FALSE(mine.full());
  EXPECT_EQ(mine.flowLimit(flowBuffer), flowBuffer);

  at(12 * kMiB);
  budget.setLimit(0);  // a reload that turns the budget off
  mine.refresh();
  EXPECT_FALSE(mine.full());
  EXPECT_EQ(mine.flowLimit(flowBuffer), flowBuffer);
}

TEST(BufferBudgetTest, AnAccountForAWorkerWithoutASlotCountsNothing) {
  BufferBudget budget(1);
  budget.setLimit(1 * kMiB);
  BufferAccount stray(&budget, 1);
  stray.change(0, 2 * kMiB);
  stray.refresh();
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_FALSE(stray.full());
}

}  // namespace
}  // namespace evgate::gateway
