#pragma once

// Fan-out of WatchEvents to the Watch RPC's streams. Publishers (the control plane, and worker
// loops for flow events) never wait for a watcher: each watcher has a bounded queue, and one
// that falls behind is cut off rather than allowed to slow the gateway or grow without bound.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "evgate/admin/v1/admin.pb.h"
#include "gateway/config/cidr.h"

namespace evgate::admin {

class WatchHub {
  struct Core;
  struct OverflowCallback;

 public:
  // One subscriber: the Watch RPC handler that owns it reads events with next().
  //
  // Thread rule: next() is called by one thread (the owner's); unsubscribe() and the
  // destructor from any thread, but not concurrently with next(). The hub's publishers touch
  // it under its own locks.
  class Watcher {
   public:
    enum class Next {
      kEvent,       // `out` holds the next event
      kTimeout,     // nothing arrived within `wait`
      kOverflowed,  // the queue overflowed: events were lost, this watcher gets no more
      kClosed,      // the hub shut down (closeAll)
    };

    ~Watcher();
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    // The next event for this watcher, waiting up to `wait` for one (0: do not wait). Events
    // come in publish order, so their sequence numbers grow (with gaps for events this
    // watcher's filter skipped).
    Next next(v1::WatchEvent& out, std::chrono::milliseconds wait);

    // Leaves the hub and frees the slot. After it returns the overflow callback is neither
    // running nor will it run. Idempotent; the destructor calls it.
    void unsubscribe();

   private:
    friend class WatchHub;

    Watcher(std::shared_ptr<Core> core, const v1::WatchRequest& request,
            std::function<void()> onOverflow);

    // Whether this watcher wants `event` (publisher side; the filter is immutable).
    bool accepts(const v1::WatchEvent& event) const;

    const std::shared_ptr<Core> core_;
    const std::optional<gateway::Cidr> clientCidr_;  // absent: any client
    const bool includeFlows_;                        // false too for a client_cidr that is invalid
    const std::string listener_;                     // empty: any
    const std::string cluster_;                      // empty: any

    std::mutex mutex_;  // guards the queue and the flags below
    std::condition_variable ready_;
    std::deque<v1::WatchEvent> queue_;
    bool overflowed_ = false;
    bool closed_ = false;

    // Shared with publishers, which call it after releasing the hub's lock: a running callback
    // then holds up only unsubscribe(), never other publishers or next().
    const std::shared_ptr<OverflowCallback> onOverflow_;

    // Guarded by Core::mutex.
    bool subscribed_ = true;
    bool countedAsFlowWatcher_ = false;
  };

  // `maxWatchers` watchers at once; each buffers at most `queueLimit` unread events.
  WatchHub(size_t maxWatchers, size_t queueLimit);
  // Closes every watcher (closeAll). Watchers may outlive the hub: they hold its core.
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Checks a request before subscribe(): a client_cidr that does not parse, or flow filter
  // fields Watch cannot apply, is an INVALID_ARGUMENT message naming the field; nullopt: fine.
  static std::optional<std::string> validate(const v1::WatchRequest& request);

  // Adds a watcher filtered by `request` (which validate() accepted; an invalid client_cidr
  // would match no flow). nullptr when maxWatchers are subscribed. `onOverflow` is called
  // once, on a publisher's thread, if the watcher falls behind: it should make a blocked
  // stream Write() return (ServerContext::TryCancel), must be quick and must not call the hub
  // or this watcher. After closeAll() a new watcher starts closed. Safe from any thread.
  std::shared_ptr<Watcher> subscribe(const v1::WatchRequest& request,
                                     std::function<void()> onOverflow);

  // Stamps `event` with the next sequence number (from 1) and, if unset, the current time, and
  // queues it for every watcher whose filter accepts it. Flow events (FLOW_OPENED /
  // FLOW_CLOSED) go only to watchers with include_flows whose flow filter matches; all other
  // events go to every watcher. Never blocks on a watcher. Returns the sequence number. Safe
  // from any thread; events published by one thread keep their order.
  uint64_t publish(v1::WatchEvent event);

  // Whether any open watcher wants flow events; cheap (one atomic load), so the data path can
  // skip building flow events nobody reads. Safe from any thread.
  bool wantsFlowEvents() const;

  // Wakes every watcher with kClosed, now and for good (shutdown). Safe from any thread.
  void closeAll();

  // Watchers subscribed now (overflowed ones count until unsubscribed). Safe from any thread.
  size_t watcherCount() const;

  // Watchers cut off because they fell behind, since the hub was made. Safe from any thread.
  uint64_t cutOffCount() const;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace evgate::admin
