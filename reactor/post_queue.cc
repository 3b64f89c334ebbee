#include "reactor/post_queue.h"

namespace evgate::reactor {

bool PostQueue::push(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  queued_.push_back(std::move(fn));
  size_.store(queued_.size(), std::memory_order_release);
  return queued_.size() == 1;
}

size_t PostQueue::runAll() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.swap(queued_);
    size_.store(0, std::memory_order_relaxed);
  }
  for (auto& fn : running_) fn();
  const size_t count = running_.size();
  running_.clear();
  return count;
}

}  // namespace evgate::reactor
