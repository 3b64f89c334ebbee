#include "gateway/buffer_budget.h"

namespace evgate::gateway {

BufferBudget::BufferBudget(size_t workers)
    : workers_(workers), slots_(std::make_unique<Slot[]>(workers)) {}

uint64_t BufferBudget::used() const {
  uint64_t total = 0;
  for (size_t i = 0; i < workers_; ++i) total += slots_[i].bytes.load(std::memory_order_relaxed);
  return total;
}

BufferAccount::BufferAccount(BufferBudget* budget, size_t worker)
    : budget_(budget != nullptr && worker < budget->workers() ? budget : nullptr),
      worker_(worker) {}

void BufferAccount::publish() {
  budget_->slots_[worker_].bytes.store(held_, std::memory_order_relaxed);
  published_ = held_;
}

void BufferAccount::refresh() {
  if (budget_ == nullptr) return;
  const uint64_t limit = budget_->limit();
  if (limit == 0) {
    scale_ = kFullScale;
    full_ = false;
    return;
  }
  const uint64_t used = budget_->used();
  full_ = used >= limit;
  const uint64_t half = limit / 2;
  if (used < half) {
    scale_ = kFullScale;
  } else if (full_) {
    scale_ = 0;  // flowLimit() gives the floor
  } else {
    // From the full limit at half the budget down to 0 (the floor) at the budget.
    const uint64_t left = limit - used;  // (0, limit - half]
    const uint64_t span = limit - half;  // > 0 since used < limit and used >= half
    // No overflow: max_buffered_bytes is at most 2^40.
    scale_ = static_cast<uint32_t>((left << kScaleBits) / span);
  }
}

}  // namespace evgate::gateway
