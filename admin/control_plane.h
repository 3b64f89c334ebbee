#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "admin/admin_metrics.h"
#include "admin/desired_state.h"
#include "admin/watch_hub.h"
#include "evgate/admin/v1/admin.pb.h"
#include "gateway/flow_drain.h"
#include "gateway/gateway.h"
#include "reactor/event.h"
#include "reactor/event_base.h"

namespace evgate::admin {

// The control plane: owns the desired state (DesiredState) and turns admin requests, SIGHUP
// reloads and scheduled events into changes of the running Gateway.
//
// Every change is made the same way (commit()): its edits are made to the desired state in
// place (recorded, so that they can be undone), what they touch is checked against the rest,
// Gateway::apply applies it on every worker (all or nothing; it returns once every worker has
// applied it), and the overlay is written to the state file once every step that can fail has
// succeeded and before the workers commit (Gateway::PreCommit). If anything fails, nothing runs
// and the edits are undone: an acknowledged change is always on disk, and nothing
// unacknowledged runs. A change costs what it touches, not what the gateway holds (creating the
// 10,000th listener costs what the first did), except writing the state file, which holds the
// whole overlay. A SIGHUP reload replaces the base: the whole effective configuration is
// checked and Gateway::reload applies the difference. With validate_only, the same checks run
// (including a trial bind of new addresses) and nothing is applied or written.
//
// Scheduled events and timed pauses are timers on the control loop, labelled "scheduled NAME"
// / "scheduled pause NAME" in ListEvents. When one fires, its action runs as a change like any
// other (its result is recorded in the event's last_result and published to watchers).
//
// Thread rule: one control loop (the daemon's main loop). call() is safe from any thread and is
// how gRPC threads get in; every other method runs on the control loop only.
class ControlPlane {
 public:
  struct Options {
    std::string version;
    std::string configFile;  // empty: the embedded default
    std::string stateFile;   // empty: changes are not persisted
  };
  // Starts a drain of the whole gateway (Drain RPC); returns the flows open when it started.
  using DrainStarter = std::function<uint64_t(std::optional<gateway::Duration> timeout)>;

  // `gateway` must run the effective configuration of `state` (the daemon starts it that way).
  ControlPlane(reactor::EventBase& loop, gateway::Gateway& gateway, DesiredState state,
               WatchHub& hub, Options options);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Any thread: runs `fn` on the control loop and returns its status once it has run (directly
  // when called on the loop). UNAVAILABLE once close() was called.
  grpc::Status call(const std::function<grpc::Status()>& fn);
  // Any thread: refuses every later call(). Calls already queued still run when the loop runs.
  void close();

  // Arms the timers of the scheduled events and timed pauses found in the state file.
  void start();
  void setDrainStarter(DrainStarter starter) { drainStarter_ = std::move(starter); }
  void setDraining(bool draining) { draining_ = draining; }

  // SIGHUP: replaces the configuration file's part of the desired state; API changes stay.
  grpc::Status reload(gateway::Config base);

  grpc::Status getStatus(v1::Status& out) const;
  grpc::Status drain(const v1::DrainRequest& request, v1::DrainResponse& out);

  grpc::Status createListener(const v1::CreateListenerRequest& request, v1::Listener& out);
  grpc::Status getListener(const std::string& name, v1::Listener& out) const;
  grpc::Status listListeners(const v1::ListListenersRequest& request,
                             v1::ListListenersResponse& out) const;
  grpc::Status updateListener(const v1::UpdateListenerRequest& request, v1::Listener& out);
  grpc::Status deleteListener(const v1::DeleteListenerRequest& request,
                              v1::DeleteListenerResponse& out);
  grpc::Status pauseListener(const v1::PauseListenerRequest& request, v1::Listener& out);
  grpc::Status resumeListener(const v1::ResumeListenerRequest& request, v1::Listener& out);

  grpc::Status createCluster(const v1::CreateClusterRequest& request, v1::Cluster& out);
  grpc::Status getCluster(const std::string& name, v1::Cluster& out) const;
  grpc::Status listClusters(const v1::ListClustersRequest& request,
                            v1::ListClustersResponse& out) const;
  grpc::Status updateCluster(const v1::UpdateClusterRequest& request, v1::Cluster& out);
  grpc::Status deleteCluster(const v1::DeleteClusterRequest& request);
  grpc::Status addEndpoint(const v1::AddEndpointRequest& request, v1::Cluster& out);
  grpc::Status removeEndpoint(const v1::RemoveEndpointRequest& request, v1::Cluster& out);
  grpc::Status setEndpointState(const v1::SetEndpointStateRequest& request, v1::Cluster& out);
  grpc::Status setEndpointWeight(const v1::SetEndpointWeightAction& request, bool validateOnly,
                                 v1::Cluster& out);

  grpc::Status listFlows(const v1::ListFlowsRequest& request, v1::ListFlowsResponse& out) const;
  grpc::Status closeFlow(const v1::CloseFlowRequest& request);
  // One step of CloseFlows: closes up to `budget` matching flows; reports how many it closed and
  // how many match afterwards.
  grpc::Status closeFlowsStep(const gateway::FlowFilter& filter, size_t budget, uint64_t& closed,
                              uint64_t& remaining);

  grpc::Status listEvents(v1::ListEventsResponse& out) const;
  grpc::Status createEvent(const v1::CreateEventRequest& request, v1::ScheduledEvent& out);
  grpc::Status deleteEvent(const v1::DeleteEventRequest& request);

  // The wall clock that scheduled events and timed pauses are planned on (tests that run the
  // control loop on a FakeClock pass one derived from it).
  using WallClock = std::function<std::chrono::system_clock::time_point()>;
  void setWallClock(WallClock clock) { wallClock_ = std::move(clock); }

  uint64_t generation() const { return generation_; }
  // Where the applied configuration's generation, last change and scheduled events are reported
  // (now, and after every change); null: nowhere. Must outlive the control plane.
  void setMetrics(AdminMetrics* metrics);
  const DesiredState& desired() const { return state_; }

 private:
  // A change to commit: its edits, made to the desired state in place through `edited` (recorded
  // from construction on), and what to tell watchers once it is applied. commit() keeps the
  // edits of an applied change; those of a change that is refused, only validated or never
  // committed are undone when the Change goes. One Change at a time.
  struct Change {
    Change(DesiredState& state, std::vector<v1::WatchEvent> changeNotices,
           bool changesOverlay = true, const char* changeCause = "API change");
    ~Change();
    Change(const Change&) = delete;
    Change& operator=(const Change&) = delete;

    DesiredState& edited;  // the control plane's desired state, recording
    std::vector<v1::WatchEvent> notices;
    bool overlayChanged;  // false for a reload: nothing new to write
    const char* cause;    // for the gateway's "reloaded (...)" log line
  };

  grpc::Status commit(Change& change, bool validateOnly);
  // What the edits of `change` do to the running configuration, by name.
  gateway::Gateway::Delta deltaOf(const Change& change) const;
  // Trial-binds the addresses of `listeners` that the running gateway does not hold
  // (validate_only).
  grpc::Status checkBinds(const std::vector<gateway::ListenerConfig>& listeners) const;
  std::optional<std::string> persist(const DesiredState& state) const;
  void publish(v1::WatchEvent event);
  std::chrono::system_clock::time_point wallNow() const { return wallClock_(); }

  const gateway::ListenerConfig* findListener(const std::string& name) const;
  const gateway::ClusterConfig* findCluster(const std::string& name) const;
  std::shared_ptr<gateway::ListenerState> runningListener(const std::string& name) const;
  std::shared_ptr<gateway::ClusterState> runningCluster(const std::string& name) const;
  // The resource with its live state; `dryRun`: as a validate_only call would leave it.
  void describeListener(const gateway::ListenerConfig& config, v1::Listener& out,
                        bool dryRun = false) const;
  void describeCluster(const gateway::ClusterConfig& config, v1::Cluster& out,
                       bool dryRun = false) const;
  grpc::Status changeCluster(const std::string& name, bool validateOnly,
                             const std::function<grpc::Status(gateway::ClusterConfig&)>& edit,
                             v1::WatchEvent notice, v1::Cluster& out);
  grpc::Status setPaused(const std::string& name, bool paused,
                         std::optional<gateway::Duration> duration, bool validateOnly,
                         v1::Listener& out);

  // Scheduled events and timed pauses (control_plane_schedule.cc).
  grpc::Status checkAction(const v1::Action& action, std::string_view path) const;
  void armEvent(const std::string& name);
  void armPause(const std::string& listener);
  void disarm(const std::string& key);
  static void onTimer(int fd, reactor::EventMask what, void* arg);
  void fire(const std::string& key);
  void fireEvent(const std::string& name);
  std::string runAction(const v1::Action& action);

  reactor::EventBase& loop_;
  gateway::Gateway& gateway_;
  DesiredState state_;
  WatchHub& hub_;
  const Options options_;
  DrainStarter drainStarter_;
  bool draining_ = false;
  AdminMetrics* metrics_ = nullptr;

  WallClock wallClock_ = [] { return std::chrono::system_clock::now(); };
  uint64_t generation_ = 1;
  std::chrono::system_clock::time_point startTime_;
  std::chrono::system_clock::time_point lastChange_;

  // A timer on the control loop, keyed "event NAME" or "pause NAME".
  struct Timer : reactor::DeferredDeletable {
    ControlPlane* owner;
    std::string key;
    reactor::Event event;
    Timer(ControlPlane* o, std::string k, reactor::EventBase& base);
  };
  std::map<std::string, std::unique_ptr<Timer>> timers_;
  // Listener deletions whose flows are still draining.
  struct ListenerDrain {
    uint64_t id;
    std::unique_ptr<gateway::FlowDrain> drain;
  };
  std::vector<ListenerDrain> drains_;
  uint64_t lastDrainId_ = 0;

  std::mutex closeMutex_;
  bool closed_ = false;
};

}  // namespace evgate::admin
