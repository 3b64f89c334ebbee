#pragma once

#include <cassert>
#include <cstddef>

namespace evgate::reactor {

// Links embedded in an element so it can sit in an IntrusiveList without an allocation, and be
// unlinked in O(1) from wherever it is (the active queue, an fd's event list, ...).
template <class T>
struct ListLinks {
  T* prev = nullptr;
  T* next = nullptr;
};

// A doubly linked list threaded through `T::*Links`. It never owns its elements.
//
// Not thread-safe: used by one loop thread.
template <class T, ListLinks<T> T::*Links>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  ~IntrusiveList() = default;
  // Elements point at each other, never at the list, so a list moves by taking the ends.
  IntrusiveList(IntrusiveList&& other) noexcept
      : head_(other.head_), tail_(other.tail_), size_(other.size_) {
    other.head_ = other.tail_ = nullptr;
    other.size_ = 0;
  }
  IntrusiveList& operator=(IntrusiveList&&) = delete;

  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }
  static T* next(const T* item) { return (item->*Links).next; }
  // Whether `item` is in this list. The links carry no flag of their own (an element keeps
  // three of them, and owners keep the membership in their own flags anyway), so an element
  // with no neighbours is in the list only if it is its head.
  bool contains(const T* item) const {
    const ListLinks<T>& links = item->*Links;
    return links.prev != nullptr || links.next != nullptr || head_ == item;
  }

  void pushBack(T* item) {
    ListLinks<T>& links = item->*Links;
    assert(!contains(item));
    links.prev = tail_;
    links.next = nullptr;
    if (tail_ != nullptr) {
      (tail_->*Links).next = item;
    } else {
      head_ = item;
    }
    tail_ = item;
    ++size_;
  }

  void pushFront(T* item) {
    ListLinks<T>& links = item->*Links;
    assert(!contains(item));
    links.prev = nullptr;
    links.next = head_;
    if (head_ != nullptr) {
      (head_->*Links).prev = item;
    } else {
      tail_ = item;
    }
    head_ = item;
    ++size_;
  }

  void erase(T* item) {
    ListLinks<T>& links = item->*Links;
    assert(contains(item));
    if (links.prev != nullptr) {
      (links.prev->*Links).next = links.next;
    } else {
      head_ = links.next;
    }
    if (links.next != nullptr) {
      (links.next->*Links).prev = links.prev;
    } else {
      tail_ = links.prev;
    }
    links = ListLinks<T>{};
    --size_;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace evgate::reactor
