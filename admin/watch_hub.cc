#include "admin/watch_hub.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <utility>
#include <vector>

#include "reactor/socket_address.h"

namespace evgate::admin {

struct WatchHub::Core {
  Core(size_t maxWatchersIn, size_t queueLimitIn)
      : maxWatchers(maxWatchersIn), queueLimit(queueLimitIn) {}

  const size_t maxWatchers;
  const size_t queueLimit;

  // Held while an event is stamped and queued to every watcher, so that all watchers see
  // events in sequence order whichever threads publish them. Lock order: this, then a
  // watcher's mutex_; never the other way.
  mutable std::mutex mutex;
  std::vector<Watcher*> watchers;
  uint64_t sequence = 0;
  bool closed = false;
  uint64_t cutOff = 0;  // watchers that overflowed

  // Written under `mutex`, read without it by wantsFlowEvents() on the data path.
  std::atomic<size_t> flowWatchers{0};

  // Under `mutex`: the watcher no longer counts for wantsFlowEvents().
  void stopCountingFlows(Watcher& watcher) {
    if (!watcher.countedAsFlowWatcher_) return;
    watcher.countedAsFlowWatcher_ = false;
    flowWatchers.fetch_sub(1, std::memory_order_relaxed);
  }
};

struct WatchHub::OverflowCallback {
  std::mutex mutex;  // held while the callback runs, and by unsubscribe() to disarm it
  std::function<void()> callback;
};

namespace {

bool isFlowEvent(v1::WatchEventType type) {
  return type == v1::WATCH_EVENT_TYPE_FLOW_OPENED || type == v1::WATCH_EVENT_TYPE_FLOW_CLOSED;
}

void setNow(google::protobuf::Timestamp& time) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now);
  time.set_seconds(seconds.count());
  time.set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - seconds).count()));
}

// `text` quoted for an error message, cut and with unprintable bytes escaped.
std::string quote(std::string_view text) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (const char c : text.substr(0, kMax)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += text.size() > kMax ? "...\"" : "\"";
  return out;
}

}  // namespace

WatchHub::Watcher::Watcher(std::shared_ptr<Core> core, const v1::WatchRequest& request,
                           std::function<void()> onOverflow)
    : core_(std::move(core)),
      clientCidr_(request.flow_filter().client_cidr().empty()
                      ? std::nullopt
                      : gateway::Cidr::parse(request.flow_filter().client_cidr())),
      includeFlows_(request.include_flows() &&
                    (request.flow_filter().client_cidr().empty() || clientCidr_.has_value())),
      listener_(request.flow_filter().listener()),
      cluster_(request.flow_filter().cluster()),
      onOverflow_(std::make_shared<OverflowCallback>()) {
  onOverflow_->callback = std::move(onOverflow);
}

WatchHub::Watcher::~Watcher() { unsubscribe(); }

bool WatchHub::Watcher::accepts(const v1::WatchEvent& event) const {
  if (!isFlowEvent(event.type())) return true;
  if (!includeFlows_) return false;
  if (!listener_.empty() && event.listener() != listener_) return false;
  if (!cluster_.empty() && event.cluster() != cluster_) return false;
  if (!clientCidr_) return true;
  const std::optional<reactor::SocketAddress> client =
      reactor::SocketAddress::parse(event.client());
  return client && clientCidr_->contains(*client);
}

WatchHub::Watcher::Next WatchHub::Watcher::next(v1::WatchEvent& out,
                                                std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, wait, [&] { return closed_ || overflowed_ || !queue_.empty(); });
  if (closed_) return Next::kClosed;
  if (overflowed_) return Next::kOverflowed;
  if (queue_.empty()) return Next::kTimeout;
  out = std::move(queue_.front());
  queue_.pop_front();
  return Next::kEvent;
}

void WatchHub::Watcher::unsubscribe() {
  {
    // Waits for a callback running on a publisher's thread, and disarms it: the caller may
    // destroy what the callback touches (the RPC's ServerContext) as soon as this returns.
    const std::lock_guard lock(onOverflow_->mutex);
    onOverflow_->callback = nullptr;
  }
  const std::lock_guard lock(core_->mutex);
  if (!subscribed_) return;
  subscribed_ = false;
  core_->stopCountingFlows(*this);
  auto& watchers = core_->watchers;
  watchers.erase(std::find(watchers.begin(), watchers.end(), this));
}

WatchHub::WatchHub(size_t maxWatchers, size_t queueLimit)
    : core_(std::make_shared<Core>(maxWatchers, queueLimit)) {
  assert(queueLimit > 0);
}

WatchHub::~WatchHub() { closeAll(); }

std::optional<std::string> WatchHub::validate(const v1::WatchRequest& request) {
  const v1::FlowFilter& filter = request.flow_filter();
  if (!filter.endpoint().empty()) {
    return "flow_filter.endpoint: Watch cannot filter on it (only listener, cluster, "
           "client_cidr)";
  }
  if (filter.has_min_age() || filter.has_min_idle()) {
    return std::string(filter.has_min_age() ? "flow_filter.min_age" : "flow_filter.min_idle") +
           ": Watch cannot filter on it (only listener, cluster, client_cidr)";
  }
  if (!filter.client_cidr().empty() && !gateway::Cidr::parse(filter.client_cidr())) {
    const std::optional<gateway::Cidr> masked = gateway::Cidr::parseMasked(filter.client_cidr());
    if (masked) {
      return "flow_filter.client_cidr: " + quote(filter.client_cidr()) +
             " has bits set after the prefix (did you mean " + quote(masked->toString()) + "?)";
    }
    return "flow_filter.client_cidr: expected a CIDR like 10.0.0.0/8 or 2001:db8::/32, got " +
           quote(filter.client_cidr());
  }
  const bool filtered =
      !filter.listener().empty() || !filter.cluster().empty() || !filter.client_cidr().empty();
  if (filtered && !request.include_flows()) {
    return "flow_filter: only applies to flow events; set include_flows";
  }
  return std::nullopt;
}

std::shared_ptr<WatchHub::Watcher> WatchHub::subscribe(const v1::WatchRequest& request,
                                                       std::function<void()> onOverflow) {
  // Built outside the lock: parsing the filter needs no shared state.
  std::shared_ptr<Watcher> watcher(new Watcher(core_, request, std::move(onOverflow)));
  const std::lock_guard lock(core_->mutex);
  if (core_->watchers.size() >= core_->maxWatchers) {
    // Never registered: the destructor must not try to leave.
    watcher->subscribed_ = false;
    return nullptr;
  }
  core_->watchers.push_back(watcher.get());
  if (core_->closed) {
    const std::lock_guard watcherLock(watcher->mutex_);
    watcher->closed_ = true;
  } else if (watcher->includeFlows_) {
    watcher->countedAsFlowWatcher_ = true;
    core_->flowWatchers.fetch_add(1, std::memory_order_relaxed);
  }
  return watcher;
}

uint64_t WatchHub::publish(v1::WatchEvent event) {
  if (!event.has_time()) setNow(*event.mutable_time());
  // Callbacks of watchers that overflowed now, called after the hub's lock is released so a
  // slow callback never holds up other publishers.
  std::vector<std::shared_ptr<OverflowCallback>> overflowed;
  uint64_t sequence = 0;
  {
    const std::lock_guard lock(core_->mutex);
    sequence = ++core_->sequence;
    event.set_sequence(sequence);
    for (Watcher* watcher : core_->watchers) {
      if (!watcher->accepts(event)) continue;
      {
        const std::lock_guard watcherLock(watcher->mutex_);
        if (watcher->closed_ || watcher->overflowed_) continue;
        if (watcher->queue_.size() < core_->queueLimit) {
          watcher->queue_.push_back(event);
        } else {
          // Dropping the backlog frees its memory at once; the watcher has lost events anyway
          // and its stream ends with RESOURCE_EXHAUSTED.
          watcher->overflowed_ = true;
          std::deque<v1::WatchEvent>().swap(watcher->queue_);
          core_->stopCountingFlows(*watcher);
          ++core_->cutOff;
          overflowed.push_back(watcher->onOverflow_);
        }
      }
      watcher->ready_.notify_one();
    }
  }
  for (const std::shared_ptr<OverflowCallback>& slot : overflowed) {
    const std::lock_guard lock(slot->mutex);
    // Null once the watcher unsubscribed (or the callback already ran): its owner may be gone.
    std::function<void()> callback = std::exchange(slot->callback, nullptr);
    if (callback) callback();
  }
  return sequence;
}

bool WatchHub::wantsFlowEvents() const {
  return core_->flowWatchers.load(std::memory_order_relaxed) > 0;
}

void WatchHub::closeAll() {
  const std::lock_guard lock(core_->mutex);
  core_->closed = true;
  for (Watcher* watcher : core_->watchers) {
    {
      const std::lock_guard watcherLock(watcher->mutex_);
      watcher->closed_ = true;
    }
    core_->stopCountingFlows(*watcher);
    watcher->ready_.notify_all();
  }
}

size_t WatchHub::watcherCount() const {
  const std::lock_guard lock(core_->mutex);
  return core_->watchers.size();
}

uint64_t WatchHub::cutOffCount() const {
  const std::lock_guard lock(core_->mutex);
  return core_->cutOff;
}

}  // namespace evgate::admin
