#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

namespace evgate::reactor {

// The queue behind EventBase::runInLoop: many producers, one consumer (the loop thread).
// Producers append under a mutex held only for the push_back; the consumer swaps the whole batch
// out under the mutex and runs it unlocked, so producers never wait for functions to run and
// functions may post more. (A lock-free stack was measured slower here: a heap node per
// function, allocated on the producer's thread and freed on the loop's, costs more in glibc's
// malloc than the short lock does.)
//
// Thread rule: push(), empty() and size() are safe from any thread; runAll() is the consumer's
// only.
class PostQueue {
 public:
  // Queues `fn`. Returns true if the queue was empty: only then may the consumer need waking;
  // otherwise whoever made it non-empty took care of that.
  bool push(std::function<void()> fn);

  bool empty() const { return size_.load(std::memory_order_acquire) == 0; }
  // Functions queued and not taken by runAll() yet (a metric: may be stale by the time it is read).
  size_t size() const { return size_.load(std::memory_order_relaxed); }

  // Runs the functions queued before the call, in the order they were pushed; functions they
  // post wait for the next call. Returns how many ran. Functions never run are destroyed with
  // the queue.
  size_t runAll();

 private:
  std::mutex mutex_;
  std::vector<std::function<void()>> queued_;
  std::vector<std::function<void()>> running_;  // kept to reuse its capacity
  std::atomic<size_t> size_{0};                 // queued_.size(), readable without the lock
};

}  // namespace evgate::reactor
