#pragma once

#include <chrono>

namespace evgate::reactor {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// `t + d` clamped to TimePoint::max(): "no timeout" is often spelt as a huge duration, and signed
// overflow would make it fire at once.
inline TimePoint saturatingAdd(TimePoint t, Duration d) {
  if (d > Duration::zero() && t > TimePoint::max() - d) return TimePoint::max();
  return t + d;
}

// The time source of an EventBase: the seam that lets timer tests run on a fake clock.
//
// Thread rule: an EventBase calls its clock from its loop thread only.
class Clock {
 public:
  virtual ~Clock() = default;

  // The current monotonic time.
  virtual TimePoint now() = 0;

  // The loop has nothing to do until `deadline` and is about to wait for I/O until then. A real
  // clock lets the time pass inside the poller; a fake clock may jump to `deadline` so that
  // timer tests run instantly and deterministically.
  virtual void idleUntil(TimePoint deadline) { (void)deadline; }
};

// std::chrono::steady_clock (CLOCK_MONOTONIC): unaffected by wall-clock changes.
class MonotonicClock final : public Clock {
 public:
  TimePoint now() override { return std::chrono::steady_clock::now(); }

  // One shared instance; stateless, so safe from any thread.
  static MonotonicClock& instance();
};

// A clock that only moves when told. With `autoAdvance` on, it jumps to the next timer deadline
// whenever the loop would otherwise sleep, so `dispatch()` runs timer-only programs instantly.
//
// Thread rule: loop thread only (tests drive it from the thread that runs the loop).
class FakeClock final : public Clock {
 public:
  explicit FakeClock(bool autoAdvance = false) : autoAdvance_(autoAdvance) {}

  TimePoint now() override { return now_; }
  void idleUntil(TimePoint deadline) override;

  void advance(Duration d) { now_ += d; }
  void setAutoAdvance(bool on) { autoAdvance_ = on; }

 private:
  // Starts well away from the epoch so that "deadline - timeout" never underflows in tests.
  TimePoint now_{std::chrono::hours(24)};
  bool autoAdvance_;
};

}  // namespace evgate::reactor
