#include "reactor/clock.h"

namespace evgate::reactor {

MonotonicClock& MonotonicClock::instance() {
  static MonotonicClock clock;
  return clock;
}

void FakeClock::idleUntil(TimePoint deadline) {
  if (autoAdvance_ && deadline > now_) {
    now_ = deadline;
  }
}

}  // namespace evgate::reactor
