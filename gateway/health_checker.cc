#include "gateway/health_checker.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "gateway/log.h"
#include "reactor/fatal.h"

namespace evgate::gateway {

namespace {

// strerror's text in the lower case of the rest of the log line ("connection refused").
std::string describe(int error) {
  if (error == 0) return "connection failed";
  std::string text = reactor::errnoText(error);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace

HealthChecker::Target::Target(HealthChecker& checker, size_t endpoint)
    : owner(checker), index(endpoint), timer(checker.base_, onTimer, this) {}

HealthChecker::HealthChecker(reactor::EventBase& base, std::shared_ptr<ClusterState> cluster,
                             NoticeSink* notices)
    : base_(base), cluster_(std::move(cluster)), notices_(notices) {
  targets_.reserve(cluster_->endpointCount());
  for (size_t i = 0; i < cluster_->endpointCount(); ++i) {
    targets_.push_back(std::make_unique<Target>(*this, i));
    targets_.back()->timer.setLabel(eventLabel(i));
  }
}

// The targets' events and probes are destroyed with them: timers del'ed, probes freed (closed).
HealthChecker::~HealthChecker() = default;

void HealthChecker::start() {
  const std::optional<HealthCheckConfig>& config = cluster_->config().healthCheck;
  if (!config) return;
  const Duration spread = std::min<Duration>(config->interval, std::chrono::seconds(1));
  const size_t count = targets_.size();
  for (size_t i = 0; i < count; ++i) {
    // Endpoint i starts i/count of the way into the spread; the first one at once.
    targets_[i]->timer.add(spread * static_cast<int64_t>(i) / static_cast<int64_t>(count));
  }
}

void HealthChecker::onTimer(int, reactor::EventMask, void* arg) {
  auto& target = *static_cast<Target*>(arg);
  HealthChecker& self = target.owner;
  if (target.probe) {
    self.finishCheck(target, false, "timed out");
  } else {
    self.startCheck(target);
  }
}

void HealthChecker::startCheck(Target& target) {
  const HealthCheckConfig& config = *cluster_->config().healthCheck;
  const reactor::SocketAddress& address = cluster_->config().endpoints[target.index].address;
  target.checkStarted = base_.now();
  target.probe = reactor::BufferEvent::create(base_, -1, reactor::BufferEvent::kCloseOnFree);
  target.probe->setLabel(eventLabel(target.index) + " probe");
  target.probe->setCallbacks(nullptr, nullptr, onProbeEvent, &target);
  if (target.probe->connect(address.data(), address.length()) != 0) {
    // Failed at once (no socket, unreachable network...): nothing will be reported.
    finishCheck(target, false, describe(target.probe->socketError()));
    return;
  }
  target.timer.add(config.timeout);
}

void HealthChecker::onProbeEvent(reactor::BufferEvent& bev, short events, void* arg) {
  auto& target = *static_cast<Target*>(arg);
  if ((events & reactor::BufferEvent::kConnected) != 0) {
    target.owner.finishCheck(target, true, "");
  } else {
    target.owner.finishCheck(target, false, describe(bev.socketError()));
  }
}

void HealthChecker::finishCheck(Target& target, bool ok, const std::string& why) {
  const HealthCheckConfig& config = *cluster_->config().healthCheck;
  // Freed inside its own callback, the probe lives until the end of this loop iteration but no
  // further callback of it runs; its socket is closed now.
  target.probe.reset();
  ++target.checksDone;
  const bool healthy = cluster_->healthy(target.index);
  if (ok) {
    target.failures = 0;
    if (!healthy && ++target.successes >= config.healthyThreshold) {
      cluster_->setHealthy(target.index, true);
      const std::string detail = std::to_string(target.successes) + " passed checks";
      logInfo(endpointName(target.index) + ": healthy again (" + detail + ")");
      publish(Notice::Type::kEndpointHealthy, target.index, detail);
      target.successes = 0;
    }
  } else {
    target.successes = 0;
    if (healthy && ++target.failures >= config.unhealthyThreshold) {
      cluster_->setHealthy(target.index, false);
      const std::string detail = std::to_string(target.failures) + " failed checks: " + why;
      logWarn(endpointName(target.index) + ": unhealthy (" + detail + ")");
      publish(Notice::Type::kEndpointUnhealthy, target.index, detail);
      target.failures = 0;
    }
  }
  // The next check is due `interval` after this one started, so a slow check (up to `timeout`,
  // which is below `interval`) does not make the rounds drift.
  const reactor::Duration elapsed = base_.now() - target.checkStarted;
  target.timer.add(std::max<reactor::Duration>(config.interval - elapsed, reactor::Duration{0}));
}

std::string HealthChecker::endpointName(size_t index) const {
  return "cluster " + cluster_->config().name + " endpoint " +
         cluster_->config().endpoints[index].address.toString();
}

std::string HealthChecker::eventLabel(size_t index) const {
  return "health " + cluster_->config().name + " " +
         cluster_->config().endpoints[index].address.toString();
}

void HealthChecker::publish(Notice::Type type, size_t index, std::string detail) const {
  if (notices_ == nullptr) return;
  Notice notice{type,
                "",
                cluster_->config().name,
                cluster_->config().endpoints[index].address.toString(),
                0,
                reactor::SocketAddress(),
                std::move(detail),
                std::chrono::system_clock::now()};
  notices_->publish(std::move(notice));
}

}  // namespace evgate::gateway
