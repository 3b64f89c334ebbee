#pragma once

#include "admin/watch_hub.h"
#include "gateway/notice.h"

namespace evgate::admin {

// Passes the data plane's notices (endpoint health, flows opened and closed) to the Watch
// streams. Thread rule: safe from any thread, like the hub.
class NoticeForwarder final : public gateway::NoticeSink {
 public:
  explicit NoticeForwarder(WatchHub& hub) : hub_(hub) {}

  void publish(gateway::Notice notice) override;
  bool wantsFlowNotices() const override { return hub_.wantsFlowEvents(); }

 private:
  WatchHub& hub_;
};

}  // namespace evgate::admin
