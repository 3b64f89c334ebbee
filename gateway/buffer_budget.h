#pragma once

// The process-wide memory budget for relayed bytes (the top-level `max_buffered_bytes`): a cap
// on the bytes all flows hold in their buffers and pipes, waiting for a slow peer.
//
// What it does as the total grows (docs/gateway.md, "Memory budget"):
//   below half the budget      every flow may hold its listener's buffer_limit per direction;
//   half the budget and above  each flow's limit shrinks in proportion, to kFlowFloor at the
//                              budget (a flow over its new limit stops reading until it drains);
//   at the budget              new connections are refused at accept (reason buffer_budget).
// So a flood of slow readers cannot take the process's memory: what the flows already hold
// drains, and nobody new joins until it has.
//
// Counting stays off the hot path. Each worker counts its own flows' bytes exactly
// (BufferAccount, loop thread only) and publishes its count to its own slot only when it has
// moved by kPublishStep since the last time, so a busy worker does not write a shared cache
// line per chunk. Once per loop pass a worker reads every slot (one relaxed load each) and
// derives what its flows follow. The total the decisions use is therefore within
// workers × kPublishStep of the truth.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace evgate::gateway {

class BufferBudget {
 public:
  // A worker publishes its count when it moved this much since its last publish.
  static constexpr uint64_t kPublishStep = uint64_t{64} * 1024;

  // One slot per worker, indices 0..workers-1.
  explicit BufferBudget(size_t workers);
  BufferBudget(const BufferBudget&) = delete;
  BufferBudget& operator=(const BufferBudget&) = delete;
  ~BufferBudget() = default;

  // The budget in bytes; 0: none (the default). Safe from any thread (a reload sets it).
  void setLimit(uint64_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }
  uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  // The sum of the workers' published counts. Safe from any thread.
  uint64_t used() const;
  size_t workers() const { return workers_; }

 private:
  friend class BufferAccount;
  // Its own cache line each: a worker's publish does not disturb another's.
  struct alignas(64) Slot {
    std::atomic<uint64_t> bytes{0};
  };
  const size_t workers_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> limit_{0};
};

// One worker's view of the budget: the exact count of its flows' bytes, and what its flows
// follow until the next refresh(). Thread rule: the worker's loop thread only.
class BufferAccount {
 public:
  // The least a flow may hold per direction when the budget is reached (or its buffer_limit,
  // if smaller): enough to keep relaying, slowly.
  static constexpr size_t kFlowFloor = size_t{4} * 1024;

  // `budget` null: no budget (flowLimit() is the identity, full() is false).
  BufferAccount(BufferBudget* budget, size_t worker);
  BufferAccount(const BufferAccount&) = delete;
  BufferAccount& operator=(const BufferAccount&) = delete;
  ~BufferAccount() = default;

  // A flow's bytes went from `before` to `after`.
  void change(uint64_t before, uint64_t after) {
    if (budget_ == nullptr || before == after) return;
    held_ += after - before;  // unsigned wrap-around adds a negative change correctly
    const uint64_t moved = held_ > published_ ? held_ - published_ : published_ - held_;
    if (moved >= BufferBudget::kPublishStep || (held_ == 0 && published_ != 0)) publish();
  }
  // Reads the total and derives flowLimit() and full() from it (once per loop pass).
  void refresh();

  // The limit per direction for a flow of a listener with `bufferLimit`.
  size_t flowLimit(size_t bufferLimit) const {
    if (scale_ == kFullScale) return bufferLimit;
    const size_t floor = bufferLimit < kFlowFloor ? bufferLimit : kFlowFloor;
    // No overflow: buffer_limit is at most 2^30 and scale_ less than 2^16.
    const auto scaled = static_cast<size_t>((uint64_t{bufferLimit} * scale_) >> kScaleBits);
    return scaled > floor ? scaled : floor;
  }
  // The budget is reached: refuse new connections.
  bool full() const { return full_; }
  // This worker's exact count.
  uint64_t held() const { return held_; }

 private:
  static constexpr int kScaleBits = 16;
  static constexpr uint32_t kFullScale = uint32_t{1} << kScaleBits;

  void publish();

  BufferBudget* const budget_;
  const size_t worker_;
  uint64_t held_ = 0;
  uint64_t published_ = 0;
  uint32_t scale_ = kFullScale;  // flowLimit = bufferLimit × scale_ / kFullScale
  bool full_ = false;
};

}  // namespace evgate::gateway
