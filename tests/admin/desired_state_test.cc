// DesiredState: edits made in place and undone exactly, what they touch, and the state file's
// JSON (kept per entry between writes) read back as the same overlay.

#include "admin/desired_state.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace evgate::admin {
namespace {

gateway::ClusterConfig clusterNamed(const std::string& name) {
  gateway::ClusterConfig cluster;
  cluster.name = name;
  gateway::EndpointConfig endpoint;
  endpoint.address = *reactor::SocketAddress::parse("127.0.0.1:9000");
  cluster.endpoints.push_back(endpoint);
  return cluster;
}

gateway::ListenerConfig listenerNamed(const std::string& name, uint16_t port = 0) {
  gateway::ListenerConfig listener;
  listener.name = name;
  listener.bind = reactor::SocketAddress::loopbackV4(port);
  listener.cluster = "c";
  return listener;
}

// A base with a cluster and a listener, and an overlay that puts, changes and deletes.
DesiredState sample() {
  gateway::Config base;
  base.clusters.push_back(clusterNamed("c"));
  base.listeners.push_back(listenerNamed("file", 8080));
  DesiredState state(base);
  state.putListener(listenerNamed("api"));
  gateway::ListenerConfig changed = listenerNamed("file", 8080);
  changed.maxConnections = 7;
  state.putListener(changed);
  state.putCluster(clusterNamed("d"));
  v1::ScheduledEvent event;
  event.set_name("nightly");
  event.mutable_action()->set_pause_listener("api");
  state.putEvent(event);
  state.setPauseDeadline("api",
                         DesiredState::Clock::time_point(std::chrono::seconds(1'800'000'000)));
  return state;
}

// `state`'s JSON read back over the same base.
DesiredState readBack(const DesiredState& state) {
  state::v1::State proto;
  const auto parsed = google::protobuf::util::JsonStringToMessage(state.toJson(9), &proto);
  EXPECT_TRUE(parsed.ok()) << parsed.ToString() << "\n" << state.toJson(9);
  EXPECT_EQ(proto.generation(), 9u);
  DesiredState loaded(state.base());
  const grpc::Status status = loaded.loadOverlay(proto);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return loaded;
}

void expectSameOverlay(const DesiredState& a, const DesiredState& b) {
  EXPECT_EQ(a.effective(), b.effective());
  EXPECT_EQ(a.pauseDeadlines(), b.pauseDeadlines());
  ASSERT_EQ(a.events().size(), b.events().size());
  for (const auto& [name, event] : a.events()) {
    EXPECT_EQ(b.events().at(name).SerializeAsString(), event.SerializeAsString()) << name;
  }
  EXPECT_EQ(a.listenerSource("api"), b.listenerSource("api"));
  EXPECT_EQ(a.listenerSource("file"), b.listenerSource("file"));
}

TEST(DesiredStateTest, TheStateFilesJsonReadsBackAsTheSameOverlay) {
  DesiredState state = sample();
  expectSameOverlay(state, readBack(state));
  state.removeListener("file");  // a tombstone
  state.removeCluster("d");
  expectSameOverlay(state, readBack(state));
  EXPECT_FALSE(readBack(state).effectiveListener("file"));
}

TEST(DesiredStateTest, TheJsonFollowsEveryEditAndUndo) {
  DesiredState state = sample();
  const std::string before = state.toJson(1);  // every entry's text is kept from here on
  state.beginEdits();
  gateway::ListenerConfig api = listenerNamed("api");
  api.maxConnections = 42;
  state.putListener(api);
  state.removeEvent("nightly");
  EXPECT_NE(state.toJson(1).find("\"max_connections\":42"), std::string::npos);
  EXPECT_EQ(state.toJson(1).find("nightly"), std::string::npos);
  expectSameOverlay(state, readBack(state));
  state.undoEdits();
  EXPECT_EQ(state.toJson(1), before);
}

TEST(DesiredStateTest, UndoPutsBackExactlyWhatTheEditsReplaced) {
  DesiredState state = sample();
  const gateway::Config effective = state.effective();
  const auto deadlines = state.pauseDeadlines();
  state.beginEdits();
  state.putListener(listenerNamed("new"));
  state.removeListener("api");   // also its pause deadline
  state.removeListener("file");  // the file's: a tombstone
  gateway::ListenerConfig again = listenerNamed("api");
  again.maxConnections = 1;
  state.putListener(again);
  state.putCluster(clusterNamed("c"));  // the file's, now the API's
  state.removeCluster("d");
  EXPECT_EQ(state.touchedListeners(), (std::vector<std::string>{"api", "file", "new"}));
  EXPECT_EQ(state.touchedClusters(), (std::vector<std::string>{"c", "d"}));
  EXPECT_FALSE(state.baseReplaced());
  state.undoEdits();
  EXPECT_EQ(state.effective(), effective);
  EXPECT_EQ(state.pauseDeadlines(), deadlines);
  EXPECT_EQ(state.listenerSource("file"), v1::SOURCE_API);
  EXPECT_EQ(state.clusterSource("c"), v1::SOURCE_FILE);
  EXPECT_TRUE(state.touchedListeners().empty());

  // Kept edits stay, and a new recording starts from them.
  state.beginEdits();
  state.removeCluster("d");
  state.keepEdits();
  EXPECT_FALSE(state.effectiveCluster("d"));
  state.beginEdits();
  gateway::Config base = state.base();
  base.listeners.clear();
  state.setBase(base);
  EXPECT_TRUE(state.baseReplaced());
  state.undoEdits();
  EXPECT_TRUE(state.effectiveListener("file"));
  EXPECT_FALSE(state.effectiveCluster("d"));
}

}  // namespace
}  // namespace evgate::admin
