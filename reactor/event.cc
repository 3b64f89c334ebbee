#include "reactor/event.h"

#include <cerrno>

#include "reactor/event_base.h"

namespace evgate::reactor {

const char* toString(EventState state) {
  switch (state) {
    case EventState::kInitialized:
      return "initialized";
    case EventState::kPending:
      return "pending";
    case EventState::kActive:
      return "active";
  }
  return "unknown";
}

Event::Event(EventBase& base, int fd, EventMask what, EventCallback cb, void* arg)
    : base_(&base),
      fd_(fd),
      events_(what),
      priority_(static_cast<int16_t>(base.priorityCount() / 2)),
      callback_(cb),
      arg_(arg) {
  base.attach(*this);
}

Event::~Event() {
  clearLabel();
  if (base_ == nullptr) return;
  del();
  base_->detach(*this);
}

void Event::setLabel(std::string label) {
  clearLabel();
  if (label.empty()) return;
  labelOwner_ = new std::string(std::move(label));
  labeller_ = ownedLabel;
}

void Event::setLabel(Labeller labeller, const void* owner) {
  clearLabel();
  labeller_ = labeller;
  labelOwner_ = owner;
}

std::string Event::label() const {
  return labeller_ != nullptr ? labeller_(*this, labelOwner_) : std::string();
}

std::string Event::ownedLabel(const Event&, const void* text) {
  return *static_cast<const std::string*>(text);
}

void Event::clearLabel() {
  if (labeller_ == ownedLabel) delete static_cast<const std::string*>(labelOwner_);
  labeller_ = nullptr;
  labelOwner_ = nullptr;
}

int Event::assign(int fd, EventMask what, EventCallback cb, void* arg) {
  if (base_ == nullptr || (flags_ & (kListInserted | kListTimeout | kListActive)) != 0) return -1;
  base_->assertInLoopThread();
  fd_ = fd;
  events_ = what;
  callback_ = cb;
  arg_ = arg;
  persistInterval_ = Duration::zero();
  return 0;
}

int Event::add() { return addAt(std::nullopt, std::nullopt); }

int Event::add(Duration timeout) {
  if (base_ == nullptr) {
    errno = EBADF;
    return -1;
  }
  if (timeout < Duration::zero()) timeout = Duration::zero();
  return addAt(saturatingAdd(base_->now(), timeout), timeout);
}

// libevent's event_add_nolock_: register the fd or signal unless already registered (or active:
// an event activated by its timeout is re-registered by its persist closure, not here), then
// (re-)arm the timeout if one is given.
int Event::addAt(std::optional<TimePoint> deadline, std::optional<Duration> relative) {
  if (base_ == nullptr) {
    errno = EBADF;
    return -1;
  }
  base_->assertInLoopThread();
  if ((events_ & (kRead | kWrite | kClosed | kSignal)) != 0 &&
      (flags_ & (kListInserted | kListActive)) == 0) {
    const int rc = (events_ & kSignal) ? base_->insertSignal(*this) : base_->insertMapped(*this);
    if (rc < 0) return -1;
  }
  if (!deadline) return 0;
  if (relative && (events_ & kPersist) && !(events_ & kSignal)) persistInterval_ = *relative;
  // Re-arming the timeout of an event that is active because of that timeout cancels the run.
  if ((flags_ & kListActive) && (res_ & kTimeout)) {
    stopSignalDeliveries();
    base_->removeActive(*this);
  }
  if (flags_ & kListTimeout) {
    base_->rescheduleTimer(*this, *deadline);
  } else {
    base_->insertTimer(*this, *deadline);
  }
  return 0;
}

int Event::del() { return remove(true); }

int Event::delBeforeClose() { return remove(false); }

int Event::remove(bool tellPoller) {
  if (base_ == nullptr) {
    errno = EBADF;
    return -1;
  }
  base_->assertInLoopThread();
  stopSignalDeliveries();
  if (flags_ & kListTimeout) base_->removeTimer(*this);
  if (flags_ & kListActive) base_->removeActive(*this);
  if (flags_ & kListInserted) {
    if (events_ & kSignal) {
      base_->removeSignal(*this);
    } else {
      base_->removeMapped(*this, tellPoller);
    }
  }
  return 0;
}

// A signal callback running in a loop of deliveries stops after the current one. The pointer is
// dropped too: it points into the dispatcher's frame, which is gone once the loop stops.
void Event::stopSignalDeliveries() {
  if (runningSignalCalls_ == nullptr) return;
  *runningSignalCalls_ = 0;
  runningSignalCalls_ = nullptr;
}

int Event::removeTimer() {
  if (base_ == nullptr) {
    errno = EBADF;
    return -1;
  }
  base_->assertInLoopThread();
  if (flags_ & kListTimeout) {
    base_->removeTimer(*this);
    persistInterval_ = Duration::zero();
  }
  return 0;
}

void Event::activate(EventMask res) {
  if (base_ == nullptr) return;
  base_->assertInLoopThread();
  base_->pushActive(*this, res, 1);
}

bool Event::pending(EventMask what, TimePoint* deadline) const {
  EventMask flags = 0;
  if (flags_ & kListInserted) flags |= events_ & (kRead | kWrite | kClosed | kSignal);
  if (flags_ & kListActive) flags |= res_;
  if (flags_ & kListTimeout) {
    flags |= kTimeout;
    if (deadline != nullptr && (what & kTimeout)) *deadline = deadline_;
  }
  return (flags & what & (kRead | kWrite | kClosed | kSignal | kTimeout)) != 0;
}

EventState Event::state() const {
  if (flags_ & kListActive) return EventState::kActive;
  if (flags_ & (kListInserted | kListTimeout)) return EventState::kPending;
  return EventState::kInitialized;
}

int Event::setPriority(int priority) {
  if (base_ == nullptr || (flags_ & kListActive) || priority < 0 ||
      priority >= base_->priorityCount()) {
    return -1;
  }
  base_->assertInLoopThread();
  priority_ = static_cast<int16_t>(priority);
  return 0;
}

}  // namespace evgate::reactor
