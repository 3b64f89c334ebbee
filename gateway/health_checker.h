#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gateway/cluster.h"
#include "gateway/notice.h"
#include "reactor/buffer_event.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::gateway {

// Active TCP health checks for one cluster (config().healthCheck): every `interval` each
// endpoint gets a TCP connect; it passes if the connect completes within `timeout` (the
// connection is then closed at once, nothing is sent). After `unhealthyThreshold` failed checks
// in a row a healthy endpoint is marked unhealthy in the ClusterState (no new flows; flows
// already open go on), after `healthyThreshold` passed checks in a row it is healthy again. Each
// transition is logged. Endpoints start healthy (see ClusterState).
//
// Each endpoint has its own timer. The first checks run soon after start(), staggered over at
// most the first interval (and at most 1 s) so that a cluster's endpoints are not all probed in
// the same instant, and that offset then carries over to every later round.
//
// Each transition is also published to the NoticeSink, if there is one (kEndpointHealthy /
// kEndpointUnhealthy, with the cluster, the endpoint and the why of the log line as detail).
// Events: an endpoint's timer is labelled "health CLUSTER ENDPOINT" in dumpEvents(), its probe's
// socket events "health CLUSTER ENDPOINT probe read|write".
//
// One checker per cluster is enough: the results reach every worker through the shared
// ClusterState. Thread rule: the base's loop thread only, construction and destruction
// included. It must not outlive its base.
class HealthChecker {
 public:
  // `notices`: may be null; if set it must outlive the checker.
  HealthChecker(reactor::EventBase& base, std::shared_ptr<ClusterState> cluster,
                NoticeSink* notices = nullptr);
  // Cancels the timers and any check in flight.
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Schedules the first check of every endpoint. Does nothing if the cluster has no
  // health_check.
  void start();

  // Checks run so far on endpoint `index`, finished ones only (tests).
  uint64_t checksDone(size_t index) const { return targets_[index]->checksDone; }

 private:
  struct Target {
    Target(HealthChecker& checker, size_t endpoint);

    HealthChecker& owner;
    const size_t index;
    // Fires when the next check is due, and while a check runs, when it times out.
    reactor::Event timer;
    // The connect in flight, if any.
    reactor::BufferEvent::Ptr probe;
    reactor::TimePoint checkStarted{};
    // Results in a row in the direction that would change the endpoint's state.
    uint32_t failures = 0;
    uint32_t successes = 0;
    uint64_t checksDone = 0;
  };

  static void onTimer(int fd, reactor::EventMask what, void* arg);
  static void onProbeEvent(reactor::BufferEvent& bev, short events, void* arg);
  void startCheck(Target& target);
  // Ends the check in flight (if any) with its result and schedules the next one.
  void finishCheck(Target& target, bool ok, const std::string& why);
  std::string endpointName(size_t index) const;
  // "health CLUSTER ENDPOINT": the owner label of the endpoint's events.
  std::string eventLabel(size_t index) const;
  void publish(Notice::Type type, size_t index, std::string detail) const;

  reactor::EventBase& base_;
  const std::shared_ptr<ClusterState> cluster_;
  NoticeSink* const notices_;
  std::vector<std::unique_ptr<Target>> targets_;
};

}  // namespace evgate::gateway
