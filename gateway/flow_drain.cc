#include "gateway/flow_drain.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace evgate::gateway {

FlowDrain::FlowDrain(reactor::EventBase& base, Gateway& gateway, FlowFilter filter,
                     Duration timeout, Done done)
    : base_(base),
      gateway_(gateway),
      filter_(std::move(filter)),
      timeout_(std::max(timeout, Duration::zero())),
      done_(std::move(done)),
      tick_(base, -1, reactor::kPersist, onTick, this) {
  tick_.setLabel("drain tick");
}

void FlowDrain::start() {
  deadline_ = base_.now() + timeout_;
  closingFrom_ = deadline_ - std::chrono::duration_cast<Duration>(timeout_ * kClosingWindow);
  tick_.add(kTick);
  tick();
}

void FlowDrain::closeNow() {
  if (finished_) return;
  deadline_ = base_.now();
  tick();
}

void FlowDrain::onTick(int, reactor::EventMask, void* arg) { static_cast<FlowDrain*>(arg)->tick(); }

size_t FlowDrain::matching() const {
  // Everything: the workers' counters, without a round trip to each loop.
  return filter_.matchesAll() ? gateway_.flowCount() : gateway_.countFlows(filter_);
}

void FlowDrain::tick() {
  if (finished_) return;
  const size_t left = matching();
  if (left == 0) {
    finish();
    return;
  }
  const reactor::TimePoint now = base_.now();
  if (now >= deadline_) {
    closed_ +=
        gateway_.closeFlows(filter_, std::numeric_limits<size_t>::max(), CloseReason::kDrain);
    finish();
    return;
  }
  if (now < closingFrom_) return;
  // Close a share of what is left proportional to the time left, so the closes are spread
  // evenly over the closing window instead of all landing at the deadline.
  const double share =
      std::chrono::duration<double>(kTick) / std::chrono::duration<double>(deadline_ - now);
  const auto count =
      static_cast<size_t>(std::ceil(static_cast<double>(left) * std::min(1.0, share)));
  closed_ += gateway_.closeFlows(filter_, std::max<size_t>(count, 1), CloseReason::kDrain);
}

void FlowDrain::finish() {
  finished_ = true;
  tick_.del();
  // The callback may destroy this object: take it out first, and touch nothing after it.
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(closed_);
}

}  // namespace evgate::gateway
