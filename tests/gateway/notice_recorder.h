#pragma once

// A NoticeSink for tests: keeps every notice it is given; flow notices only while `flows` is set.

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "gateway/notice.h"

namespace evgate::gateway::testing {

class NoticeRecorder final : public NoticeSink {
 public:
  void publish(Notice notice) override {
    std::lock_guard lock(mutex_);
    notices_.push_back(std::move(notice));
  }
  bool wantsFlowNotices() const override {
    wantsAsked.fetch_add(1, std::memory_order_relaxed);
    return flows.load(std::memory_order_relaxed);
  }

  std::vector<Notice> notices() const {
    std::lock_guard lock(mutex_);
    return notices_;
  }
  std::vector<Notice> ofType(Notice::Type type) const {
    std::vector<Notice> found;
    for (Notice& notice : notices()) {
      if (notice.type == type) found.push_back(std::move(notice));
    }
    return found;
  }

  std::atomic<bool> flows{false};
  mutable std::atomic<int> wantsAsked{0};

 private:
  mutable std::mutex mutex_;
  std::vector<Notice> notices_;
};

}  // namespace evgate::gateway::testing
