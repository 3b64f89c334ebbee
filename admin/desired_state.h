#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "evgate/admin/state/v1/state.pb.h"
#include "evgate/admin/v1/admin.pb.h"
#include "gateway/config/config.h"

namespace evgate::admin {

// What the gateway should run: the configuration file (the base) with the changes made through
// the admin API laid over it (the overlay). The rule (docs/admin-api.md, "The file and the API"):
//   - the API's changes are kept per resource name, as whole definitions: a listener or cluster
//     created or changed through the API replaces the file's one of the same name, and one the
//     API deleted stays deleted, whatever the file says, until the API creates it again;
//   - a reload (SIGHUP) replaces the base and keeps the overlay, so API changes survive it;
//   - the overlay is what the state file holds; deleting the state file (with the gateway
//     stopped) returns to the file alone.
// Scheduled events and timed pauses exist only in the overlay.
//
// A plain value: the control plane owns one and replaces it whole on each accepted change.
class DesiredState {
 public:
  using Clock = std::chrono::system_clock;

  DesiredState() = default;
  explicit DesiredState(gateway::Config base) : base_(std::move(base)) {}

  const gateway::Config& base() const { return base_; }
  void setBase(gateway::Config base) { base_ = std::move(base); }

  // The configuration to run: the base's listeners and clusters in file order (each replaced by
  // the overlay's definition of the same name, deleted ones left out), then the overlay's new
  // ones by name.
  gateway::Config effective() const;

  // Where a listener's / cluster's definition comes from in effective().
  v1::Source listenerSource(const std::string& name) const;
  v1::Source clusterSource(const std::string& name) const;

  void putListener(const gateway::ListenerConfig& listener);
  void removeListener(const std::string& name);
  void putCluster(const gateway::ClusterConfig& cluster);
  void removeCluster(const std::string& name);

  // Scheduled events by name (with their runtime progress: next_fire_time, fired_count).
  const std::map<std::string, v1::ScheduledEvent>& events() const { return events_; }
  void putEvent(const v1::ScheduledEvent& event) { events_[event.name()] = event; }
  void removeEvent(const std::string& name) { events_.erase(name); }

  // Listeners paused until a time, by name.
  const std::map<std::string, Clock::time_point>& pauseDeadlines() const { return resumeAt_; }
  void setPauseDeadline(const std::string& listener, Clock::time_point resumeAt) {
    resumeAt_[listener] = resumeAt;
  }
  void clearPauseDeadline(const std::string& listener) { resumeAt_.erase(listener); }

  // The overlay as the state file stores it.
  state::v1::State toProto(uint64_t generation) const;
  // Replaces the overlay with `state`, validating every resource as the API does; on failure
  // nothing changes and the status names the bad entry ("listeners[2].bind: ...").
  grpc::Status loadOverlay(const state::v1::State& state);

 private:
  gateway::Config base_;
  std::map<std::string, gateway::ListenerConfig> listeners_;
  std::set<std::string> deletedListeners_;
  std::map<std::string, gateway::ClusterConfig> clusters_;
  std::set<std::string> deletedClusters_;
  std::map<std::string, v1::ScheduledEvent> events_;
  std::map<std::string, Clock::time_point> resumeAt_;
};

// Checks what only the whole configuration can show: every listener's cluster exists, and no
// two listeners bind the same address (port 0 excepted). FAILED_PRECONDITION naming the
// conflict, e.g. "listener web uses cluster backends, which does not exist".
grpc::Status checkReferences(const gateway::Config& config);

}  // namespace evgate::admin
