#include "reactor/timer_heap.h"

#include <cassert>

#include "reactor/event.h"

namespace evgate::reactor {

void TimerHeap::place(size_t index, const Entry& entry) {
  entries_[index] = entry;
  entry.event->heapIndex_ = index;
}

void TimerHeap::siftUp(size_t index, Entry entry) {
  while (index > 0) {
    const size_t parent = (index - 1) / 2;
    if (!(entry < entries_[parent])) break;
    place(index, entries_[parent]);
    index = parent;
  }
  place(index, entry);
}

void TimerHeap::siftDown(size_t index, Entry entry) {
  const size_t count = entries_.size();
  for (size_t child = 2 * index + 1; child < count; child = 2 * index + 1) {
    if (child + 1 < count && entries_[child + 1] < entries_[child]) ++child;
    if (!(entries_[child] < entry)) break;
    place(index, entries_[child]);
    index = child;
  }
  place(index, entry);
}

void TimerHeap::push(Event& ev, TimePoint deadline) {
  assert(ev.heapIndex_ == Event::kNotInHeap);
  entries_.push_back(Entry{deadline, nextSequence_++, &ev});
  siftUp(entries_.size() - 1, entries_.back());
}

// One sift from where the event is, instead of a removal plus an insertion.
void TimerHeap::update(Event& ev, TimePoint deadline) {
  const size_t index = ev.heapIndex_;
  assert(index < entries_.size() && entries_[index].event == &ev);
  const Entry entry{deadline, nextSequence_++, &ev};
  if (index > 0 && entry < entries_[(index - 1) / 2]) {
    siftUp(index, entry);
  } else {
    siftDown(index, entry);
  }
}

// Floyd's bottom-up removal: the hole moves down to a leaf along the smaller children (one
// comparison per level), then the last entry fills it and sifts up, usually not at all. Sifting
// the last entry down from the hole needs two comparisons per level, and with the arming-order
// tie-break it goes all the way down whenever deadlines are equal.
void TimerHeap::remove(Event& ev) {
  size_t hole = ev.heapIndex_;
  assert(hole < entries_.size() && entries_[hole].event == &ev);
  ev.heapIndex_ = Event::kNotInHeap;
  const Entry last = entries_.back();
  entries_.pop_back();
  const size_t count = entries_.size();
  if (hole == count) return;
  for (size_t child = 2 * hole + 1; child < count; child = 2 * hole + 1) {
    if (child + 1 < count && entries_[child + 1] < entries_[child]) ++child;
    place(hole, entries_[child]);
    hole = child;
  }
  siftUp(hole, last);
}

}  // namespace evgate::reactor
