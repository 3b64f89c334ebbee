#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "reactor/clock.h"

namespace evgate::reactor {

class Event;

// The timer min-heap of an EventBase: events ordered by deadline, and by arming order among equal
// deadlines (so timers due together fire first-armed first; libevent leaves that unspecified).
// Each entry carries its key, so sifting compares entries in this array without touching the
// events themselves; an event remembers its index for O(log n) removal and re-arming.
//
// Not thread-safe: the base's loop thread only.
class TimerHeap {
 public:
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  // The earliest deadline and its event. Not on an empty heap.
  TimePoint topDeadline() const { return entries_.front().deadline; }
  Event* top() const { return entries_.front().event; }

  void push(Event& ev, TimePoint deadline);
  // Re-arms an event already in the heap in place (libevent's min_heap_adjust_).
  void update(Event& ev, TimePoint deadline);
  void remove(Event& ev);

 private:
  struct Entry {
    TimePoint deadline;
    uint64_t sequence = 0;
    Event* event = nullptr;
    bool operator<(const Entry& other) const {
      return deadline != other.deadline ? deadline < other.deadline : sequence < other.sequence;
    }
  };

  size_t smallestChild(size_t index) const;
  void place(size_t index, const Entry& entry);
  void siftUp(size_t index, Entry entry);
  void siftDown(size_t index, Entry entry);

  std::vector<Entry> entries_;
  uint64_t nextSequence_ = 0;
};

}  // namespace evgate::reactor
