#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

#include "gateway/flow_query.h"
#include "gateway/gateway.h"
#include "reactor/clock.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::gateway {

// Ends the flows that match a filter gracefully, within a timeout: it waits for them to end by
// themselves; in the last fifth of the timeout (kClosingWindow) it closes what is left a little at
// a time, on each kTick a share proportional to the time left, so that the peers do not all
// reconnect at the same instant; at the timeout it closes the rest. Every close it makes has
// CloseReason::kDrain. Then (or as soon as no matching flow is left) it calls `done` once with
// the number of flows it closed itself. A timeout of 0 closes everything at once.
//
// It only closes flows: stopping whatever creates new matching flows (stopAccepting, removing a
// listener) is the caller's business, before start().
//
// Thread rule: the loop thread of `base`, which must be the Gateway owner's thread (it calls the
// Gateway's flow queries). Ownership: the caller owns it; `done` may destroy it.
class FlowDrain {
 public:
  static constexpr std::chrono::milliseconds kTick{20};
  static constexpr double kClosingWindow = 0.2;

  using Done = std::function<void(size_t closed)>;

  FlowDrain(reactor::EventBase& base, Gateway& gateway, FlowFilter filter, Duration timeout,
            Done done);
  FlowDrain(const FlowDrain&) = delete;
  FlowDrain& operator=(const FlowDrain&) = delete;
  ~FlowDrain() = default;

  // Starts the clock and looks at the flows at once: `done` runs inside start() if none matches
  // (or the timeout is 0).
  void start();
  // Closes every matching flow now and finishes (e.g. a second SIGTERM).
  void closeNow();

  bool finished() const { return finished_; }
  // Flows this drain has closed so far.
  size_t closed() const { return closed_; }

 private:
  static void onTick(int fd, reactor::EventMask what, void* arg);
  void tick();
  size_t matching() const;
  void finish();

  reactor::EventBase& base_;
  Gateway& gateway_;
  const FlowFilter filter_;
  const Duration timeout_;
  Done done_;
  reactor::Event tick_;
  reactor::TimePoint deadline_{};
  reactor::TimePoint closingFrom_{};
  size_t closed_ = 0;
  bool finished_ = false;
};

}  // namespace evgate::gateway
