#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

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
// A plain value that the control plane owns and changes in place: a change begins recording
// (beginEdits), makes its edits, and either keeps them (keepEdits) or undoes them exactly
// (undoEdits), so that a refused change costs nothing and an accepted one costs what it touches,
// however many listeners there are.
class DesiredState {
 public:
  using Clock = std::chrono::system_clock;

  DesiredState() = default;
  explicit DesiredState(gateway::Config base) : base_(std::move(base)) {}

  const gateway::Config& base() const { return base_; }
  void setBase(gateway::Config base);

  // The configuration to run: the base's listeners and clusters in file order (each replaced by
  // the overlay's definition of the same name, deleted ones left out), then the overlay's new
  // ones by name.
  gateway::Config effective() const;
  // One resource of effective(), by name; nullopt if it has none of that name.
  std::optional<gateway::ListenerConfig> effectiveListener(const std::string& name) const;
  std::optional<gateway::ClusterConfig> effectiveCluster(const std::string& name) const;

  // Edits: from beginEdits() on, every change below records what it replaces, until keepEdits()
  // forgets the record or undoEdits() puts it all back. One recording at a time.
  void beginEdits();
  void keepEdits();
  void undoEdits();
  // Since beginEdits(): whether setBase() was called, and the listener and cluster names that a
  // put or remove touched (what effective() may differ in, unless the base was replaced).
  bool baseReplaced() const { return edits_ && edits_->base.has_value(); }
  std::vector<std::string> touchedListeners() const;
  std::vector<std::string> touchedClusters() const;

  // Where a listener's / cluster's definition comes from in effective().
  v1::Source listenerSource(const std::string& name) const;
  v1::Source clusterSource(const std::string& name) const;

  void putListener(const gateway::ListenerConfig& listener);
  void removeListener(const std::string& name);
  void putCluster(const gateway::ClusterConfig& cluster);
  void removeCluster(const std::string& name);

  // Scheduled events by name (with their runtime progress: next_fire_time, fired_count).
  const std::map<std::string, v1::ScheduledEvent>& events() const { return events_; }
  void putEvent(const v1::ScheduledEvent& event);
  void removeEvent(const std::string& name);

  // Listeners paused until a time, by name.
  const std::map<std::string, Clock::time_point>& pauseDeadlines() const { return resumeAt_; }
  void setPauseDeadline(const std::string& listener, Clock::time_point resumeAt);
  void clearPauseDeadline(const std::string& listener);

  // The overlay as the state file stores it: state::v1::State as JSON, one entry per line. Each
  // listener's, cluster's and scheduled event's JSON is kept from one call to the next and made
  // again only for the entries edited in between (or put back by undoEdits()): writing the
  // state of 10,000 listeners after one change costs copying their text, not printing it.
  // Const, but it fills that cache: like every other method, one thread at a time (the control
  // loop's).
  std::string toJson(uint64_t generation) const;
  // Replaces the overlay with `state`, validating every resource as the API does; on failure
  // nothing changes and the status names the bad entry ("listeners[2].bind: ...").
  grpc::Status loadOverlay(const state::v1::State& state);

 private:
  // What the edits since beginEdits() replaced, per key, as it was before the first of them.
  template <typename T>
  struct Was {
    std::optional<T> value;  // the overlay's entry, if any
    bool deleted = false;    // the tombstone, if any (listeners and clusters)
  };
  struct Edits {
    std::optional<gateway::Config> base;
    std::map<std::string, Was<gateway::ListenerConfig>> listeners;
    std::map<std::string, Was<gateway::ClusterConfig>> clusters;
    std::map<std::string, Was<v1::ScheduledEvent>> events;
    std::map<std::string, Was<Clock::time_point>> resumeAt;
  };
  void rememberListener(const std::string& name);
  void rememberCluster(const std::string& name);
  void rememberEvent(const std::string& name);
  void rememberResumeAt(const std::string& name);

  gateway::Config base_;
  std::map<std::string, gateway::ListenerConfig> listeners_;
  std::set<std::string> deletedListeners_;
  std::map<std::string, gateway::ClusterConfig> clusters_;
  std::set<std::string> deletedClusters_;
  std::map<std::string, v1::ScheduledEvent> events_;
  std::map<std::string, Clock::time_point> resumeAt_;
  std::optional<Edits> edits_;  // set from beginEdits() until keepEdits() or undoEdits()
  // toJson()'s text of each entry of listeners_, clusters_ and events_, by name; an entry is
  // dropped whenever its resource changes.
  mutable std::map<std::string, std::string> listenerJson_;
  mutable std::map<std::string, std::string> clusterJson_;
  mutable std::map<std::string, std::string> eventJson_;
};

// Checks what only the whole configuration can show: every listener's cluster exists, and no
// two listeners bind the same address (port 0 excepted). FAILED_PRECONDITION naming the
// conflict, e.g. "listener web uses cluster backends, which does not exist".
grpc::Status checkReferences(const gateway::Config& config);

}  // namespace evgate::admin
