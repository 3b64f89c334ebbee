#include "reactor/timer_heap.h"

#include <algorithm>
#include <cassert>

#include "reactor/event.h"

namespace evgate::reactor {

namespace {

// A 4-ary heap: half the depth of a binary one, and the four children of a node sit next to each
// other in memory, so a sift touches fewer cache lines and moves fewer entries.
constexpr size_t kArity = 4;

size_t parentOf(size_t index) { return (index - 1) / kArity; }
size_t firstChildOf(size_t index) { return kArity * index + 1; }

}  // namespace

// The smallest of the children of `index` (at least one exists).
size_t TimerHeap::smallestChild(size_t index) const {
  const size_t first = firstChildOf(index);
  const size_t end = std::min(first + kArity, entries_.size());
  size_t best = first;
  for (size_t child = first + 1; child < end; ++child) {
    if (entries_[child] < entries_[best]) best = child;
  }
  return best;
}

void TimerHeap::place(size_t index, const Entry& entry) {
  entries_[index] = entry;
  entry.event->heapIndex_ = index;
}

void TimerHeap::siftUp(size_t index, Entry entry) {
  while (index > 0) {
    const size_t parent = parentOf(index);
    if (!(entry < entries_[parent])) break;
    place(index, entries_[parent]);
    index = parent;
  }
  place(index, entry);
}

void TimerHeap::siftDown(size_t index, Entry entry) {
  while (firstChildOf(index) < entries_.size()) {
    const size_t child = smallestChild(index);
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
  if (index > 0 && entry < entries_[parentOf(index)]) {
    siftUp(index, entry);
  } else {
    siftDown(index, entry);
  }
}

// Floyd's bottom-up removal: the hole moves down to a leaf along the smallest children, then the
// last entry fills it and sifts up, usually not at all. Sifting the last entry down from the hole
// would also compare it at every level, and with the arming-order tie-break it goes all the way
// down whenever deadlines are equal.
void TimerHeap::remove(Event& ev) {
  size_t hole = ev.heapIndex_;
  assert(hole < entries_.size() && entries_[hole].event == &ev);
  ev.heapIndex_ = Event::kNotInHeap;
  const Entry last = entries_.back();
  entries_.pop_back();
  const size_t count = entries_.size();
  if (hole == count) return;
  while (firstChildOf(hole) < count) {
    const size_t child = smallestChild(hole);
    place(hole, entries_[child]);
    hole = child;
  }
  siftUp(hole, last);
}

}  // namespace evgate::reactor
