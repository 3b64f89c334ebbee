// The admin API in process: every RPC against a real gateway on 127.0.0.1 (two workers), with
// real backends and clients. Each test checks what the RPC answers and what the data plane
// does afterwards (a created listener relays, a paused one does not accept, ...).

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gateway/gateway.h"
#include "tests/admin/admin_test_util.h"
#include "tests/integration/net_util.h"

namespace evgate::admin::testing {
namespace {

using evgate::test::connectTo;
using evgate::test::echoes;
using evgate::test::EchoServer;
using evgate::test::Fd;
using evgate::test::waitClosed;
using google::protobuf::util::TimeUtil;

std::string baseYaml(const EchoServer& backend, const std::string& extra = "") {
  return "workers: 2\n"
         "drain_timeout: 2s\n"
         "access_log: { mode: off }\n"
         "log: { level: warn }\n"
         "admin: { address: 127.0.0.1:0 }\n" +
         extra +
         "clusters:\n"
         "  - name: backends\n"
         "    endpoints: [ \"" +
         backend.address() +
         "\" ]\n"
         "listeners:\n"
         "  - name: web\n"
         "    bind: 127.0.0.1:0\n"
         "    cluster: backends\n";
}

v1::Listener listenerNamed(const std::string& name, const std::string& cluster = "backends") {
  v1::Listener listener;
  listener.set_name(name);
  listener.set_bind("127.0.0.1:0");
  listener.set_cluster(cluster);
  return listener;
}

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(backend_.ok());
    start(baseYaml(backend_));
  }

  void start(const std::string& yaml) {
    admin_ = std::make_unique<AdminHarness>(yaml);
    ASSERT_TRUE(admin_->ok()) << admin_->error();
  }

  v1::Admin::Stub& stub() { return admin_->stub(); }

  grpc::Status createListener(const v1::Listener& listener, v1::Listener& out,
                              bool validateOnly = false) {
    v1::CreateListenerRequest request;
    *request.mutable_listener() = listener;
    request.set_validate_only(validateOnly);
    return stub().CreateListener(callContext().get(), request, &out);
  }

  grpc::Status getListener(const std::string& name, v1::Listener& out) {
    v1::GetListenerRequest request;
    request.set_name(name);
    return stub().GetListener(callContext().get(), request, &out);
  }

  uint16_t portOfListener(const std::string& name) {
    v1::Listener listener;
    EXPECT_TRUE(getListener(name, listener).ok());
    return listener.bound_address().empty() ? 0 : portOf(listener.bound_address());
  }

  EchoServer backend_;
  std::unique_ptr<AdminHarness> admin_;
};

TEST_F(AdminServiceTest, GetStatusDescribesTheGateway) {
  v1::Status status;
  ASSERT_TRUE(stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_FALSE(status.version().empty());
  EXPECT_EQ(status.workers(), 2u);
  EXPECT_EQ(status.listeners(), 1u);
  EXPECT_EQ(status.clusters(), 1u);
  EXPECT_EQ(status.active_flows(), 0u);
  EXPECT_GE(status.config_generation(), 1u);
  EXPECT_FALSE(status.draining());
}

TEST_F(AdminServiceTest, ACreatedListenerAcceptsWhenTheCallReturns) {
  v1::Listener created;
  ASSERT_TRUE(createListener(listenerNamed("api"), created).ok());
  EXPECT_EQ(created.name(), "api");
  EXPECT_EQ(created.source(), v1::SOURCE_API);
  ASSERT_FALSE(created.bound_address().empty());
  // No wait: the listener accepts on every worker once the call has returned.
  Fd client(connectTo(portOf(created.bound_address())));
  ASSERT_GE(client.get(), 0);
  EXPECT_TRUE(echoes(client.get(), "through the new listener"));

  v1::ListListenersResponse list;
  ASSERT_TRUE(stub().ListListeners(callContext().get(), {}, &list).ok());
  ASSERT_EQ(list.listeners_size(), 2);
  EXPECT_EQ(list.listeners(0).name(), "api");
  EXPECT_EQ(list.listeners(1).name(), "web");
  EXPECT_EQ(list.listeners(1).source(), v1::SOURCE_FILE);
}

// Listeners the API test creates one by one (the 10,000 of the admin goal are the gateway test's
// and the benchmark's: bench/admin).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(NDEBUG)
constexpr int kApiListeners = 100;
#else
constexpr int kApiListeners = 500;
#endif

TEST_F(AdminServiceTest, ListenersCreatedOneByOneEachRelayAsSoonAsTheCallReturns) {
  for (int i = 0; i < kApiListeners; ++i) {
    v1::Listener created;
    const std::string name = "api-" + std::to_string(i);
    ASSERT_TRUE(createListener(listenerNamed(name), created).ok()) << name;
    // No wait: the first client right after the answer is accepted and relayed.
    Fd client(connectTo(portOf(created.bound_address())));
    ASSERT_TRUE(echoes(client.get(), "x")) << name;
  }
  v1::ListListenersRequest request;
  request.set_page_size(1000);
  v1::ListListenersResponse list;
  ASSERT_TRUE(stub().ListListeners(callContext().get(), request, &list).ok());
  EXPECT_EQ(list.listeners_size(), kApiListeners + 1);
  v1::Status status;
  ASSERT_TRUE(stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_EQ(status.listeners(), static_cast<uint32_t>(kApiListeners + 1));

  // Deleted one by one, the others go on relaying.
  for (int i = 0; i < kApiListeners; i += 2) {
    v1::DeleteListenerRequest del;
    del.set_name("api-" + std::to_string(i));
    v1::DeleteListenerResponse deleted;
    ASSERT_TRUE(stub().DeleteListener(callContext().get(), del, &deleted).ok());
  }
  for (int i = 1; i < kApiListeners; i += 50) {
    Fd client(connectTo(portOfListener("api-" + std::to_string(i))));
    EXPECT_TRUE(echoes(client.get(), "still there")) << i;
  }
  ASSERT_TRUE(stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_EQ(status.listeners(), static_cast<uint32_t>(kApiListeners / 2 + 1));
}

TEST_F(AdminServiceTest, CreateListenerErrorsNameTheProblemAndChangeNothing) {
  v1::Listener out;
  v1::Listener bad = listenerNamed("bad");
  bad.set_bind("not-an-address");
  grpc::Status status = createListener(bad, out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("listener.bind"), std::string::npos)
      << status.error_message();

  bad = listenerNamed("bad");
  bad.set_buffer_limit_bytes(10);
  status = createListener(bad, out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("listener.buffer_limit_bytes"), std::string::npos);

  bad = listenerNamed("bad");
  bad.set_splice(static_cast<v1::SpliceMode>(42));
  status = createListener(bad, out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("listener.splice: unknown mode 42"), std::string::npos)
      << status.error_message();

  bad = listenerNamed("bad/name");
  EXPECT_EQ(createListener(bad, out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(createListener(listenerNamed("web"), out).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  status = createListener(listenerNamed("orphan", "nowhere"), out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("nowhere"), std::string::npos);

  // A port another socket holds (without SO_REUSEPORT): the bind fails with the system's reason.
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in any = evgate::test::loopback(0);
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  v1::Listener taken = listenerNamed("taken");
  taken.set_bind(evgate::test::address(evgate::test::localPort(holder.get())));
  status = createListener(taken, out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("Address already in use"), std::string::npos)
      << status.error_message();
  // The same with validate_only: the trial bind finds it too.
  EXPECT_EQ(createListener(taken, out, true).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // The admin API's own port cannot be shared (gRPC's socket has no SO_REUSEPORT).
  v1::Listener onAdmin = listenerNamed("on-admin");
  onAdmin.set_bind(admin_->address());
  EXPECT_EQ(createListener(onAdmin, out).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  v1::Status gatewayStatus;
  ASSERT_TRUE(stub().GetStatus(callContext().get(), {}, &gatewayStatus).ok());
  EXPECT_EQ(gatewayStatus.listeners(), 1u);
}

TEST_F(AdminServiceTest, ValidateOnlyChangesNothing) {
  v1::Listener out;
  ASSERT_TRUE(createListener(listenerNamed("dry"), out, true).ok());
  v1::Listener got;
  EXPECT_EQ(getListener("dry", got).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::DeleteListenerRequest del;
  del.set_name("web");
  del.set_validate_only(true);
  v1::DeleteListenerResponse deleted;
  ASSERT_TRUE(stub().DeleteListener(callContext().get(), del, &deleted).ok());
  Fd client(connectTo(portOfListener("web")));
  EXPECT_TRUE(echoes(client.get(), "still here"));

  v1::CreateClusterRequest cluster;
  cluster.mutable_cluster()->set_name("dry");
  cluster.mutable_cluster()->add_endpoints()->set_address(backend_.address());
  cluster.set_validate_only(true);
  v1::Cluster clusterOut;
  ASSERT_TRUE(stub().CreateCluster(callContext().get(), cluster, &clusterOut).ok());
  v1::GetClusterRequest get;
  get.set_name("dry");
  EXPECT_EQ(stub().GetCluster(callContext().get(), get, &clusterOut).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::Status status;
  ASSERT_TRUE(stub().GetStatus(callContext().get(), {}, &status).ok());
  EXPECT_EQ(status.config_generation(), 1u);
}

TEST_F(AdminServiceTest, UpdateListenerChangesLimitsInPlaceAndKeepsOpenFlows) {
  const uint16_t port = portOfListener("web");
  Fd open(connectTo(port));
  ASSERT_TRUE(echoes(open.get(), "before"));

  v1::UpdateListenerRequest update;
  update.mutable_listener()->set_name("web");
  update.mutable_listener()->set_max_connections(1);
  update.mutable_update_mask()->add_paths("max_connections");
  v1::Listener updated;
  ASSERT_TRUE(stub().UpdateListener(callContext().get(), update, &updated).ok());
  EXPECT_EQ(updated.max_connections(), 1u);
  EXPECT_EQ(portOf(updated.bound_address()), port);  // same sockets
  EXPECT_EQ(updated.source(), v1::SOURCE_API);

  // The open flow goes on; a second client is over the new limit.
  EXPECT_TRUE(echoes(open.get(), "after"));
  Fd second(connectTo(port));
  EXPECT_TRUE(
      evgate::test::closedByPeer(waitClosed(second.get(), evgate::test::Clock::now() + 5s)));

  update.mutable_update_mask()->set_paths(0, "bound_address");
  EXPECT_EQ(stub().UpdateListener(callContext().get(), update, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  update.mutable_listener()->set_name("missing");
  update.mutable_update_mask()->set_paths(0, "max_connections");
  EXPECT_EQ(stub().UpdateListener(callContext().get(), update, &updated).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, DeleteListenerRefusesNewClientsAndDrainsOpenFlows) {
  const uint16_t port = portOfListener("web");
  Fd open(connectTo(port));
  ASSERT_TRUE(echoes(open.get(), "before"));

  v1::DeleteListenerRequest request;
  request.set_name("web");
  *request.mutable_drain_timeout() = TimeUtil::MillisecondsToDuration(300);
  v1::DeleteListenerResponse response;
  ASSERT_TRUE(stub().DeleteListener(callContext().get(), request, &response).ok());
  EXPECT_EQ(response.draining_flows(), 1u);

  EXPECT_LT(connectTo(port), 0);  // refused at once
  EXPECT_TRUE(echoes(open.get(), "still relayed while draining"));
  // Closed when the drain timeout has passed.
  EXPECT_TRUE(evgate::test::closedByPeer(waitClosed(open.get(), evgate::test::Clock::now() + 5s)));

  v1::Listener got;
  EXPECT_EQ(getListener("web", got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stub().DeleteListener(callContext().get(), request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, PauseStopsAcceptingAndResumeStartsAgain) {
  const uint16_t port = portOfListener("web");
  v1::PauseListenerRequest pause;
  pause.set_name("web");
  v1::Listener paused;
  ASSERT_TRUE(stub().PauseListener(callContext().get(), pause, &paused).ok());
  EXPECT_TRUE(paused.paused());

  // The socket stays bound: the kernel completes the handshake into the backlog, but nobody
  // accepts, so nothing is relayed.
  Fd waiting(connectTo(port));
  ASSERT_GE(waiting.get(), 0);
  const auto exchange = evgate::test::exchange(waiting.get(), "x",
                                               evgate::test::Clock::now() + 200ms, /*toEof=*/false);
  EXPECT_EQ(exchange.end, "timeout");

  v1::ResumeListenerRequest resume;
  resume.set_name("web");
  v1::Listener resumed;
  ASSERT_TRUE(stub().ResumeListener(callContext().get(), resume, &resumed).ok());
  EXPECT_FALSE(resumed.paused());
  // The client that waited in the backlog is accepted now: its "x" comes back.
  const auto after = evgate::test::exchange(waiting.get(), "y", evgate::test::Clock::now() + 5s,
                                            /*toEof=*/false);
  EXPECT_EQ(after.received.substr(0, 1), "x") << after.end;
}

TEST_F(AdminServiceTest, ATimedPauseEndsByItself) {
  v1::PauseListenerRequest pause;
  pause.set_name("web");
  *pause.mutable_duration() = TimeUtil::MillisecondsToDuration(100);
  v1::Listener paused;
  ASSERT_TRUE(stub().PauseListener(callContext().get(), pause, &paused).ok());
  EXPECT_TRUE(paused.paused());
  EXPECT_TRUE(paused.has_resume_time());
  EXPECT_TRUE(eventually([&] {
    v1::Listener now;
    return getListener("web", now).ok() && !now.paused();
  }));
  Fd client(connectTo(portOfListener("web")));
  EXPECT_TRUE(echoes(client.get(), "resumed"));
}

TEST_F(AdminServiceTest, ClusterLifecycleAndEndpointStates) {
  EchoServer second;
  v1::CreateClusterRequest create;
  v1::Cluster& cluster = *create.mutable_cluster();
  cluster.set_name("pool");
  cluster.set_lb(v1::LB_POLICY_LEAST_CONNECTIONS);
  cluster.add_endpoints()->set_address(backend_.address());
  v1::Cluster created;
  ASSERT_TRUE(stub().CreateCluster(callContext().get(), create, &created).ok());
  EXPECT_EQ(created.endpoints(0).state(), v1::ENDPOINT_STATE_ACTIVE);
  EXPECT_TRUE(created.endpoints(0).healthy());
  EXPECT_EQ(stub().CreateCluster(callContext().get(), create, &created).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::AddEndpointRequest add;
  add.set_cluster("pool");
  add.mutable_endpoint()->set_address(second.address());
  add.mutable_endpoint()->set_weight(3);
  v1::Cluster withTwo;
  ASSERT_TRUE(stub().AddEndpoint(callContext().get(), add, &withTwo).ok());
  ASSERT_EQ(withTwo.endpoints_size(), 2);
  EXPECT_EQ(withTwo.endpoints(1).weight(), 3u);
  EXPECT_EQ(stub().AddEndpoint(callContext().get(), add, &withTwo).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // A listener on it; the first endpoint draining: new flows all go to the second.
  v1::Listener listener;
  ASSERT_TRUE(createListener(listenerNamed("pooled", "pool"), listener).ok());
  v1::SetEndpointStateRequest drain;
  drain.set_cluster("pool");
  drain.set_address(backend_.address());
  drain.set_state(v1::ENDPOINT_STATE_DRAINING);
  v1::Cluster drained;
  ASSERT_TRUE(stub().SetEndpointState(callContext().get(), drain, &drained).ok());
  EXPECT_EQ(drained.endpoints(0).state(), v1::ENDPOINT_STATE_DRAINING);
  const int firstBefore = backend_.accepted();
  for (int i = 0; i < 6; ++i) {
    Fd client(connectTo(portOf(listener.bound_address())));
    EXPECT_TRUE(echoes(client.get(), "to the second endpoint"));
  }
  EXPECT_EQ(backend_.accepted(), firstBefore);
  EXPECT_EQ(second.accepted(), 6);

  drain.set_state(v1::ENDPOINT_STATE_UNSPECIFIED);
  EXPECT_EQ(stub().SetEndpointState(callContext().get(), drain, &drained).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  drain.set_state(v1::ENDPOINT_STATE_ACTIVE);
  drain.set_address("127.0.0.1:1");
  EXPECT_EQ(stub().SetEndpointState(callContext().get(), drain, &drained).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // In use: the cluster cannot be deleted.
  v1::DeleteClusterRequest del;
  del.set_name("pool");
  v1::DeleteClusterResponse deleted;
  grpc::Status status = stub().DeleteCluster(callContext().get(), del, &deleted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("pooled"), std::string::npos);

  v1::RemoveEndpointRequest remove;
  remove.set_cluster("pool");
  remove.set_address(second.address());
  v1::Cluster withOne;
  ASSERT_TRUE(stub().RemoveEndpoint(callContext().get(), remove, &withOne).ok());
  EXPECT_EQ(withOne.endpoints_size(), 1);
  remove.set_address(backend_.address());
  EXPECT_EQ(stub().RemoveEndpoint(callContext().get(), remove, &withOne).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // the last one

  v1::DeleteListenerRequest delListener;
  delListener.set_name("pooled");
  v1::DeleteListenerResponse deletedListener;
  ASSERT_TRUE(stub().DeleteListener(callContext().get(), delListener, &deletedListener).ok());
  ASSERT_TRUE(stub().DeleteCluster(callContext().get(), del, &deleted).ok());
  v1::ListClustersResponse clusters;
  ASSERT_TRUE(stub().ListClusters(callContext().get(), {}, &clusters).ok());
  ASSERT_EQ(clusters.clusters_size(), 1);
  EXPECT_EQ(clusters.clusters(0).name(), "backends");
  EXPECT_EQ(clusters.clusters(0).listeners(0), "web");
}

TEST_F(AdminServiceTest, ClusterSourceAddressesRoundTripAndBadOnesAreRejected) {
  v1::UpdateClusterRequest update;
  update.mutable_cluster()->set_name("backends");
  update.mutable_cluster()->add_source_addresses("127.0.0.2");
  update.mutable_cluster()->add_source_addresses("::1");
  update.mutable_update_mask()->add_paths("source_addresses");
  v1::Cluster updated;
  ASSERT_TRUE(stub().UpdateCluster(callContext().get(), update, &updated).ok());
  ASSERT_EQ(updated.source_addresses_size(), 2);
  EXPECT_EQ(updated.source_addresses(0), "127.0.0.2");
  EXPECT_EQ(updated.source_addresses(1), "::1");
  v1::GetClusterRequest get;
  get.set_name("backends");
  v1::Cluster got;
  ASSERT_TRUE(stub().GetCluster(callContext().get(), get, &got).ok());
  ASSERT_EQ(got.source_addresses_size(), 2);
  EXPECT_EQ(got.source_addresses(0), "127.0.0.2");
  // Flows still relay, from 127.0.0.2 now.
  Fd client(connectTo(portOfListener("web")));
  EXPECT_TRUE(echoes(client.get(), "from a source address"));

  for (const char* bad : {"127.0.0.2:80", "[::1]", "localhost", ""}) {
    update.mutable_cluster()->set_source_addresses(1, bad);
    const grpc::Status status = stub().UpdateCluster(callContext().get(), update, &updated);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(status.error_message().find("cluster.source_addresses[1]"), std::string::npos)
        << status.error_message();
  }
  update.mutable_cluster()->set_source_addresses(1, "127.0.0.2");
  const grpc::Status status = stub().UpdateCluster(callContext().get(), update, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("duplicate source address 127.0.0.2"), std::string::npos)
      << status.error_message();
}

TEST_F(AdminServiceTest, UpdateClusterReplacesEndpointsAndRejectsBadOnes) {
  EchoServer replacement;
  v1::UpdateClusterRequest update;
  update.mutable_cluster()->set_name("backends");
  update.mutable_cluster()->add_endpoints()->set_address(replacement.address());
  update.mutable_update_mask()->add_paths("endpoints");
  v1::Cluster updated;
  ASSERT_TRUE(stub().UpdateCluster(callContext().get(), update, &updated).ok());
  ASSERT_EQ(updated.endpoints_size(), 1);
  EXPECT_EQ(updated.endpoints(0).address(), replacement.address());
  Fd client(connectTo(portOfListener("web")));
  EXPECT_TRUE(echoes(client.get(), "to the replacement"));
  EXPECT_EQ(replacement.accepted(), 1);

  // A nested path changes one field of a message and keeps the others.
  v1::UpdateClusterRequest nested;
  nested.mutable_cluster()->set_name("backends");
  nested.mutable_cluster()->mutable_outlier()->set_consecutive_failures(9);
  nested.mutable_update_mask()->add_paths("outlier.consecutive_failures");
  ASSERT_TRUE(stub().UpdateCluster(callContext().get(), nested, &updated).ok());
  EXPECT_EQ(updated.outlier().consecutive_failures(), 9u);
  EXPECT_EQ(updated.outlier().max_ejection().seconds(), 30);
  EXPECT_EQ(updated.endpoints_size(), 1);
  nested.mutable_update_mask()->set_paths(0, "outlier.no_such_field");
  EXPECT_EQ(stub().UpdateCluster(callContext().get(), nested, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  update.mutable_cluster()->mutable_endpoints(0)->set_address("127.0.0.1");  // no port
  grpc::Status status = stub().UpdateCluster(callContext().get(), update, &updated);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("cluster.endpoints[0].address"), std::string::npos)
      << status.error_message();
}

TEST_F(AdminServiceTest, ListFlowsFiltersAndPaginatesAndCloseFlowEndsOne) {
  const uint16_t port = portOfListener("web");
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) {
    clients.emplace_back(connectTo(port));
    ASSERT_TRUE(echoes(clients.back().get(), "open"));
  }
  std::vector<uint64_t> ids;
  std::string token;
  do {
    v1::ListFlowsRequest request;
    request.mutable_filter()->set_listener("web");
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListFlowsResponse page;
    ASSERT_TRUE(stub().ListFlows(callContext().get(), request, &page).ok());
    EXPECT_LE(page.flows_size(), 2);
    for (const v1::Flow& flow : page.flows()) {
      ids.push_back(flow.id());
      EXPECT_EQ(flow.listener(), "web");
      EXPECT_EQ(flow.cluster(), "backends");
      EXPECT_EQ(flow.upstream(), backend_.address());
      EXPECT_EQ(flow.state(), v1::FLOW_STATE_ESTABLISHED);
      EXPECT_EQ(flow.bytes_from_client(), 4u);
    }
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()).size(), 5u);

  v1::ListFlowsRequest other;
  other.mutable_filter()->set_client_cidr("10.0.0.0/8");
  v1::ListFlowsResponse none;
  ASSERT_TRUE(stub().ListFlows(callContext().get(), other, &none).ok());
  EXPECT_EQ(none.flows_size(), 0);
  other.mutable_filter()->set_client_cidr("10.0.0.1/8");
  EXPECT_EQ(stub().ListFlows(callContext().get(), other, &none).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::CloseFlowRequest close;
  close.set_id(ids[0]);
  v1::CloseFlowResponse closed;
  ASSERT_TRUE(stub().CloseFlow(callContext().get(), close, &closed).ok());
  EXPECT_EQ(stub().CloseFlow(callContext().get(), close, &closed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  int closedClients = 0;
  for (Fd& client : clients) {
    const std::string seen = waitClosed(client.get(), evgate::test::Clock::now() + 100ms);
    if (evgate::test::closedByPeer(seen)) ++closedClients;
  }
  EXPECT_EQ(closedClients, 1);
}

TEST_F(AdminServiceTest, CloseFlowsStreamsProgressUntilNoneIsLeft) {
  const uint16_t port = portOfListener("web");
  std::vector<Fd> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back(connectTo(port));
    ASSERT_TRUE(echoes(clients.back().get(), "open"));
  }
  v1::CloseFlowsRequest request;
  request.mutable_filter()->set_listener("web");
  request.set_validate_only(true);
  auto dryContext = callContext();
  auto dry = stub().CloseFlows(dryContext.get(), request);
  v1::CloseFlowsProgress progress;
  ASSERT_TRUE(dry->Read(&progress));
  EXPECT_EQ(progress.closed(), 0u);
  EXPECT_EQ(progress.remaining(), 20u);
  EXPECT_TRUE(progress.done());
  EXPECT_TRUE(dry->Finish().ok());

  request.set_validate_only(false);
  request.set_max_per_second(50);  // 20 flows: about four 100 ms steps
  auto context = callContext();
  auto stream = stub().CloseFlows(context.get(), request);
  std::vector<v1::CloseFlowsProgress> steps;
  while (stream->Read(&progress)) steps.push_back(progress);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_GE(steps.size(), 2u);  // paced: not all at once
  EXPECT_TRUE(steps.back().done());
  EXPECT_EQ(steps.back().closed(), 20u);
  EXPECT_EQ(steps.back().remaining(), 0u);
  for (size_t i = 1; i < steps.size(); ++i) EXPECT_GE(steps[i].closed(), steps[i - 1].closed());
  for (Fd& client : clients) {
    EXPECT_TRUE(
        evgate::test::closedByPeer(waitClosed(client.get(), evgate::test::Clock::now() + 5s)));
  }
}

TEST_F(AdminServiceTest, ListEventsShowsEveryLoopsEventsWithTheirOwners) {
  Fd client(connectTo(portOfListener("web")));
  ASSERT_TRUE(echoes(client.get(), "open"));
  v1::ListEventsResponse events;
  ASSERT_TRUE(stub().ListEvents(callContext().get(), {}, &events).ok());
  std::set<std::string> loops;
  int acceptEvents = 0;
  int flowEvents = 0;
  for (const v1::ReactorEvent& event : events.events()) {
    loops.insert(event.loop());
    if (event.owner() == v1::EVENT_OWNER_LISTENER) {
      EXPECT_EQ(event.label(), "listener web");
      EXPECT_EQ(event.kind(), v1::EVENT_KIND_IO);
      EXPECT_NE(event.flags().find("read"), std::string::npos);
      ++acceptEvents;
    }
    if (event.owner() == v1::EVENT_OWNER_FLOW) ++flowEvents;
    EXPECT_EQ(event.state(), v1::EVENT_STATE_PENDING);
  }
  EXPECT_EQ(loops, (std::set<std::string>{"worker-0", "worker-1", "control"}));
  EXPECT_EQ(acceptEvents, 2);  // one socket per worker
  EXPECT_GE(flowEvents, 2);    // the flow's two sockets at least
}

TEST_F(AdminServiceTest, AScheduledEventFiresItsActionAndIsListedUntilThen) {
  v1::CreateEventRequest request;
  v1::ScheduledEvent& event = *request.mutable_event();
  event.set_name("pause-web");
  *event.mutable_after() = TimeUtil::MillisecondsToDuration(150);
  event.mutable_action()->set_pause_listener("web");
  v1::ScheduledEvent created;
  ASSERT_TRUE(stub().CreateEvent(callContext().get(), request, &created).ok());
  EXPECT_TRUE(created.has_next_fire_time());

  v1::ListEventsResponse events;
  ASSERT_TRUE(stub().ListEvents(callContext().get(), {}, &events).ok());
  ASSERT_EQ(events.scheduled_events_size(), 1);
  const bool timerListed =
      std::any_of(events.events().begin(), events.events().end(), [](const v1::ReactorEvent& e) {
        return e.owner() == v1::EVENT_OWNER_SCHEDULED && e.label() == "scheduled pause-web" &&
               e.kind() == v1::EVENT_KIND_TIMER && e.has_deadline();
      });
  EXPECT_TRUE(timerListed);

  EXPECT_TRUE(eventually([&] {
    v1::Listener web;
    return getListener("web", web).ok() && web.paused();
  }));
  // A one-shot event is gone once it has fired.
  EXPECT_TRUE(eventually([&] {
    v1::ListEventsResponse after;
    return stub().ListEvents(callContext().get(), {}, &after).ok() &&
           after.scheduled_events_size() == 0;
  }));
}

TEST(AdminScheduleTest, ScheduledEventsFireOnTheControlLoopsClock) {
  EchoServer backend;
  reactor::FakeClock clock;
  AdminHarness admin(baseYaml(backend), &clock);
  ASSERT_TRUE(admin.ok()) << admin.error();
  const auto advance = [&](reactor::Duration by) {
    admin.onControlLoop([&](AdminRuntime&) { clock.advance(by); });
  };
  const auto scheduled = [&]() {
    v1::ListEventsResponse events;
    EXPECT_TRUE(admin.stub().ListEvents(callContext().get(), {}, &events).ok());
    return events;
  };
  v1::CreateEventRequest once;
  once.mutable_event()->set_name("in-an-hour");
  *once.mutable_event()->mutable_after() = TimeUtil::SecondsToDuration(3600);
  once.mutable_event()->mutable_action()->set_pause_listener("web");
  v1::ScheduledEvent created;
  ASSERT_TRUE(admin.stub().CreateEvent(callContext().get(), once, &created).ok());
  v1::CreateEventRequest thrice;
  thrice.mutable_event()->set_name("every-ten-minutes");
  *thrice.mutable_event()->mutable_every()->mutable_interval() = TimeUtil::SecondsToDuration(600);
  thrice.mutable_event()->mutable_every()->set_count(3);
  thrice.mutable_event()->mutable_action()->mutable_close_flows()->set_listener("web");
  ASSERT_TRUE(admin.stub().CreateEvent(callContext().get(), thrice, &created).ok());

  // Ten minutes at a time: the repeating event fires at 10, 20 and 30 minutes and is then gone;
  // at 59 minutes the hourly one has still not fired.
  for (int minute = 10; minute <= 50; minute += 10) {
    advance(std::chrono::minutes(10));
    if (minute <= 30) {
      ASSERT_TRUE(eventually([&] {
        const v1::ListEventsResponse now = scheduled();
        for (const auto& e : now.scheduled_events()) {
          if (e.name() == "every-ten-minutes") return e.fired_count() == uint32_t(minute / 10);
        }
        return minute == 30;  // gone after its third firing
      })) << minute;
    }
  }
  advance(std::chrono::minutes(9));
  v1::ListEventsResponse events = scheduled();
  ASSERT_EQ(events.scheduled_events_size(), 1);
  EXPECT_EQ(events.scheduled_events(0).name(), "in-an-hour");
  EXPECT_EQ(events.scheduled_events(0).fired_count(), 0u);
  v1::GetListenerRequest get;
  get.set_name("web");
  v1::Listener web;
  ASSERT_TRUE(admin.stub().GetListener(callContext().get(), get, &web).ok());
  EXPECT_FALSE(web.paused());

  advance(std::chrono::minutes(1) + std::chrono::milliseconds(1));
  EXPECT_TRUE(eventually([&] {
    return admin.stub().GetListener(callContext().get(), get, &web).ok() && web.paused();
  }));
  EXPECT_EQ(scheduled().scheduled_events_size(), 0);
}

TEST_F(AdminServiceTest, DeleteEventCancelsARepeatingEvent) {
  EchoServer second;
  v1::AddEndpointRequest add;
  add.set_cluster("backends");
  add.mutable_endpoint()->set_address(second.address());
  v1::Cluster cluster;
  ASSERT_TRUE(stub().AddEndpoint(callContext().get(), add, &cluster).ok());

  v1::CreateEventRequest request;
  v1::ScheduledEvent& event = *request.mutable_event();
  event.set_name("flip");
  event.mutable_every()->set_count(0);
  *event.mutable_every()->mutable_interval() = TimeUtil::MillisecondsToDuration(20);
  auto& weight = *event.mutable_action()->mutable_set_endpoint_weight();
  weight.set_cluster("backends");
  weight.set_address(second.address());
  weight.set_weight(7);
  v1::ScheduledEvent created;
  ASSERT_TRUE(stub().CreateEvent(callContext().get(), request, &created).ok());
  EXPECT_EQ(stub().CreateEvent(callContext().get(), request, &created).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  uint32_t fired = 0;
  EXPECT_TRUE(eventually([&] {
    v1::ListEventsResponse events;
    if (!stub().ListEvents(callContext().get(), {}, &events).ok()) return false;
    fired = events.scheduled_events_size() == 1 ? events.scheduled_events(0).fired_count() : 0;
    return fired >= 2;
  }));
  v1::GetClusterRequest get;
  get.set_name("backends");
  ASSERT_TRUE(stub().GetCluster(callContext().get(), get, &cluster).ok());
  EXPECT_EQ(cluster.endpoints(1).weight(), 7u);

  v1::DeleteEventRequest del;
  del.set_name("flip");
  v1::DeleteEventResponse deleted;
  ASSERT_TRUE(stub().DeleteEvent(callContext().get(), del, &deleted).ok());
  EXPECT_EQ(stub().DeleteEvent(callContext().get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ListEventsResponse events;
  ASSERT_TRUE(stub().ListEvents(callContext().get(), {}, &events).ok());
  EXPECT_EQ(events.scheduled_events_size(), 0);
  for (const v1::ReactorEvent& e : events.events()) EXPECT_NE(e.label(), "scheduled flip");
}

TEST_F(AdminServiceTest, CreateEventRejectsBadTriggersAndActions) {
  v1::CreateEventRequest request;
  v1::ScheduledEvent& event = *request.mutable_event();
  event.set_name("bad");
  event.mutable_action()->set_pause_listener("web");
  v1::ScheduledEvent out;
  grpc::Status status = stub().CreateEvent(callContext().get(), request, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // no trigger

  *event.mutable_every()->mutable_interval() = TimeUtil::MillisecondsToDuration(1);
  status = stub().CreateEvent(callContext().get(), request, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("event.every.interval"), std::string::npos);

  *event.mutable_after() = TimeUtil::SecondsToDuration(1);
  event.mutable_action()->set_pause_listener("missing");
  status = stub().CreateEvent(callContext().get(), request, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("event.action.pause_listener"), std::string::npos);

  event.mutable_action()->Clear();
  status = stub().CreateEvent(callContext().get(), request, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, WatchStreamsChangesInOrderAndFlowsOnlyWhenAsked) {
  v1::WatchRequest request;
  request.set_include_flows(true);
  request.mutable_flow_filter()->set_listener("web");
  auto context = callContext();
  auto stream = stub().Watch(context.get(), request);
  // The watcher is subscribed once GetStatus counts it.
  ASSERT_TRUE(eventually([&] {
    v1::Status status;
    return stub().GetStatus(callContext().get(), {}, &status).ok() && status.watchers() == 1;
  }));

  v1::Listener created;
  ASSERT_TRUE(createListener(listenerNamed("watched"), created).ok());
  {
    Fd client(connectTo(portOfListener("web")));
    ASSERT_TRUE(echoes(client.get(), "flow"));
  }
  std::vector<v1::WatchEvent> seen;
  v1::WatchEvent event;
  while (seen.size() < 3 && stream->Read(&event)) seen.push_back(event);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].type(), v1::WATCH_EVENT_TYPE_LISTENER_CREATED);
  EXPECT_EQ(seen[0].listener(), "watched");
  EXPECT_EQ(seen[1].type(), v1::WATCH_EVENT_TYPE_FLOW_OPENED);
  EXPECT_EQ(seen[2].type(), v1::WATCH_EVENT_TYPE_FLOW_CLOSED);
  EXPECT_EQ(seen[2].flow_id(), seen[1].flow_id());
  EXPECT_FALSE(seen[2].detail().empty());
  EXPECT_LT(seen[0].sequence(), seen[1].sequence());
  EXPECT_LT(seen[1].sequence(), seen[2].sequence());
  context->TryCancel();
}

TEST(AdminWatchTest, AWatcherThatNeverReadsIsCutOffAndNothingElseWaits) {
  EchoServer backend;
  std::string yaml = baseYaml(backend);
  const std::string adminLine = "admin: { address: 127.0.0.1:0 }";
  yaml.replace(yaml.find(adminLine), adminLine.size(),
               "admin: { address: 127.0.0.1:0, max_watchers: 2 }");
  AdminHarness admin(yaml, nullptr, /*watchQueueLimit=*/32);
  ASSERT_TRUE(admin.ok()) << admin.error();
  v1::WatchRequest request;
  request.set_include_flows(true);
  // A client that buffers little: no window growth (BDP probing) and a small lookahead, so that
  // not reading soon blocks the server's writes, as a stalled client would over a real network.
  grpc::ChannelArguments small;
  small.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stalled = v1::Admin::NewStub(
      grpc::CreateCustomChannel(admin.address(), grpc::InsecureChannelCredentials(), small));
  auto stuckContext = callContext(std::chrono::milliseconds(60000));
  auto stuck = stalled->Watch(stuckContext.get(), request);  // never read until the end
  auto otherContext = callContext(std::chrono::milliseconds(60000));
  auto other = admin.stub().Watch(otherContext.get(), request);
  ASSERT_TRUE(eventually([&] {
    v1::Status status;
    return admin.stub().GetStatus(callContext().get(), {}, &status).ok() && status.watchers() == 2;
  }));
  // The cap: a third watcher is refused.
  auto thirdContext = callContext();
  auto third = admin.stub().Watch(thirdContext.get(), request);
  v1::WatchEvent event;
  EXPECT_FALSE(third->Read(&event));
  EXPECT_EQ(third->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  otherContext->TryCancel();
  (void)other->Finish();

  // Flow events until the stuck watcher's stream and queue are full: it is disconnected, and
  // every client meanwhile is relayed as usual.
  v1::GetListenerRequest get;
  get.set_name("web");
  v1::Listener web;
  ASSERT_TRUE(admin.stub().GetListener(callContext().get(), get, &web).ok());
  const uint16_t port = portOf(web.bound_address());
  bool cutOff = false;
  for (int i = 0; i < 5000 && !cutOff; ++i) {
    Fd client(connectTo(port));
    ASSERT_TRUE(echoes(client.get(), "x"));
    if (i % 50 == 49) {
      v1::Status status;
      ASSERT_TRUE(admin.stub().GetStatus(callContext().get(), {}, &status).ok());
      cutOff = status.watchers() == 0;
    }
  }
  EXPECT_TRUE(cutOff);
  while (stuck->Read(&event)) {
  }
  const grpc::StatusCode code = stuck->Finish().error_code();
  EXPECT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::RESOURCE_EXHAUSTED)
      << code;
}

TEST(AdminWatchTest, EndpointHealthTransitionsAreStreamed) {
  EchoServer backend;
  AdminHarness admin(baseYaml(backend));
  ASSERT_TRUE(admin.ok()) << admin.error();
  v1::WatchRequest request;
  auto context = callContext();
  auto stream = admin.stub().Watch(context.get(), request);
  ASSERT_TRUE(eventually([&] {
    v1::Status status;
    return admin.stub().GetStatus(callContext().get(), {}, &status).ok() && status.watchers() == 1;
  }));
  // A cluster whose only endpoint refuses: its first failed check marks it unhealthy.
  v1::CreateClusterRequest create;
  v1::Cluster& cluster = *create.mutable_cluster();
  cluster.set_name("down");
  const std::string refused = evgate::test::address(evgate::test::refusedPort());
  cluster.add_endpoints()->set_address(refused);
  *cluster.mutable_health_check()->mutable_interval() = TimeUtil::MillisecondsToDuration(50);
  *cluster.mutable_health_check()->mutable_timeout() = TimeUtil::MillisecondsToDuration(40);
  cluster.mutable_health_check()->set_unhealthy_threshold(1);
  v1::Cluster created;
  ASSERT_TRUE(admin.stub().CreateCluster(callContext().get(), create, &created).ok());
  v1::WatchEvent event;
  bool unhealthy = false;
  while (!unhealthy && stream->Read(&event)) {
    unhealthy = event.type() == v1::WATCH_EVENT_TYPE_ENDPOINT_UNHEALTHY;
  }
  ASSERT_TRUE(unhealthy);
  EXPECT_EQ(event.cluster(), "down");
  EXPECT_EQ(event.endpoint(), refused);
  v1::GetClusterRequest get;
  get.set_name("down");
  ASSERT_TRUE(admin.stub().GetCluster(callContext().get(), get, &created).ok());
  EXPECT_FALSE(created.endpoints(0).healthy());
  context->TryCancel();
}

TEST(AdminLimitsTest, OversizedRequestsAndPagesAreBounded) {
  EchoServer backend;
  std::string yaml = baseYaml(backend);
  const std::string adminLine = "admin: { address: 127.0.0.1:0 }";
  yaml.replace(yaml.find(adminLine), adminLine.size(),
               "admin: { address: 127.0.0.1:0, max_message_size: 4KiB }");
  AdminHarness admin(yaml);
  ASSERT_TRUE(admin.ok()) << admin.error();
  v1::CreateClusterRequest big;
  big.mutable_cluster()->set_name("big");
  for (int i = 1; i <= 1000; ++i) {
    big.mutable_cluster()->add_endpoints()->set_address("127.0.0.1:" + std::to_string(i));
  }
  v1::Cluster cluster;
  EXPECT_EQ(admin.stub().CreateCluster(callContext().get(), big, &cluster).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::GetClusterRequest get;
  get.set_name("big");
  EXPECT_EQ(admin.stub().GetCluster(callContext().get(), get, &cluster).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ListListenersRequest list;
  list.set_page_size(-1);
  v1::ListListenersResponse listeners;
  EXPECT_EQ(admin.stub().ListListeners(callContext().get(), list, &listeners).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_size(1000000);  // capped, not refused
  EXPECT_TRUE(admin.stub().ListListeners(callContext().get(), list, &listeners).ok());
  EXPECT_EQ(listeners.listeners_size(), 1);
}

TEST(AdminStateFileTest, ChangesSurviveARestartAndAnUnwritableFileRefusesTheChange) {
  EchoServer backend;
  ASSERT_TRUE(backend.ok());
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("evgate-state-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string stateFile = (dir / "state.yaml").string();
  const std::string yaml = baseYaml(backend, "state_file: " + stateFile + "\n");
  {
    AdminHarness admin(yaml);
    ASSERT_TRUE(admin.ok()) << admin.error();
    v1::CreateListenerRequest create;
    *create.mutable_listener() = listenerNamed("api");
    v1::Listener listener;
    ASSERT_TRUE(admin.stub().CreateListener(callContext().get(), create, &listener).ok());
    v1::DeleteListenerRequest del;
    del.set_name("web");
    v1::DeleteListenerResponse deleted;
    ASSERT_TRUE(admin.stub().DeleteListener(callContext().get(), del, &deleted).ok());
    v1::CreateEventRequest event;
    event.mutable_event()->set_name("later");
    *event.mutable_event()->mutable_after() = TimeUtil::SecondsToDuration(3600);
    event.mutable_event()->mutable_action()->set_pause_listener("api");
    v1::ScheduledEvent scheduled;
    ASSERT_TRUE(admin.stub().CreateEvent(callContext().get(), event, &scheduled).ok());
    EXPECT_TRUE(std::filesystem::exists(stateFile));
  }
  {
    AdminHarness admin(yaml);
    ASSERT_TRUE(admin.ok()) << admin.error();
    v1::ListListenersResponse list;
    ASSERT_TRUE(admin.stub().ListListeners(callContext().get(), {}, &list).ok());
    ASSERT_EQ(list.listeners_size(), 1);
    EXPECT_EQ(list.listeners(0).name(), "api");  // web stays deleted, api is back
    EXPECT_EQ(list.listeners(0).source(), v1::SOURCE_API);
    v1::ListEventsResponse events;
    ASSERT_TRUE(admin.stub().ListEvents(callContext().get(), {}, &events).ok());
    ASSERT_EQ(events.scheduled_events_size(), 1);
    EXPECT_EQ(events.scheduled_events(0).name(), "later");

    // The state file's directory is gone: the change cannot be saved, so it is not made.
    std::filesystem::remove_all(dir);
    v1::CreateListenerRequest create;
    *create.mutable_listener() = listenerNamed("unsaved");
    v1::Listener listener;
    const grpc::Status status = admin.stub().CreateListener(callContext().get(), create, &listener);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    v1::GetListenerRequest get;
    get.set_name("unsaved");
    EXPECT_EQ(admin.stub().GetListener(callContext().get(), get, &listener).error_code(),
              grpc::StatusCode::NOT_FOUND);
    // Its sockets were opened, then closed again: no worker waits on them.
    v1::ListEventsResponse table;
    ASSERT_TRUE(admin.stub().ListEvents(callContext().get(), {}, &table).ok());
    for (const v1::ReactorEvent& event : table.events()) {
      EXPECT_EQ(event.label().find("unsaved"), std::string::npos) << event.label();
    }
    // And the desired state forgot it: the next change that is saved does not bring it back.
    std::filesystem::create_directories(dir);
    *create.mutable_listener() = listenerNamed("saved");
    ASSERT_TRUE(admin.stub().CreateListener(callContext().get(), create, &listener).ok());
  }
  {
    AdminHarness admin(yaml);
    ASSERT_TRUE(admin.ok()) << admin.error();
    v1::ListListenersResponse list;
    ASSERT_TRUE(admin.stub().ListListeners(callContext().get(), {}, &list).ok());
    std::vector<std::string> names;
    for (const v1::Listener& l : list.listeners()) names.push_back(l.name());
    EXPECT_EQ(names, (std::vector<std::string>{"api", "saved"}));
  }
  std::filesystem::remove_all(dir);
}

TEST(AdminStateFileTest, AnInvalidStateFileRefusesToStartAndNamesTheEntry) {
  EchoServer backend;
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("evgate-bad-state-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(file) << R"({"format": 1, "listeners": [{"name": "x", "bind": "nope"}]})";
  AdminHarness admin(baseYaml(backend, "state_file: " + file.string() + "\n"));
  EXPECT_FALSE(admin.ok());
  EXPECT_NE(admin.error().find("listeners[0].bind"), std::string::npos) << admin.error();
  std::filesystem::remove(file);
}

TEST(AdminReloadTest, AReloadKeepsApiChangesOverTheNewFile) {
  EchoServer backend;
  AdminHarness admin(baseYaml(backend));
  ASSERT_TRUE(admin.ok()) << admin.error();
  v1::CreateListenerRequest create;
  *create.mutable_listener() = listenerNamed("api");
  v1::Listener listener;
  ASSERT_TRUE(admin.stub().CreateListener(callContext().get(), create, &listener).ok());

  // The new file drops "web" and adds "file2".
  const std::string next =
      "workers: 2\nadmin: { address: 127.0.0.1:0 }\n"
      "access_log: { mode: off }\n"
      "clusters:\n  - name: backends\n    endpoints: [ \"" +
      backend.address() +
      "\" ]\n"
      "listeners:\n  - name: file2\n    bind: 127.0.0.1:0\n"
      "    cluster: backends\n";
  grpc::Status reloaded;
  admin.onControlLoop([&](AdminRuntime& runtime) {
    reloaded = runtime.control().reload(*gateway::parseConfig(next, "next.yaml").config);
  });
  ASSERT_TRUE(reloaded.ok()) << reloaded.error_message();
  v1::ListListenersResponse list;
  ASSERT_TRUE(admin.stub().ListListeners(callContext().get(), {}, &list).ok());
  std::vector<std::string> names;
  for (const v1::Listener& l : list.listeners()) names.push_back(l.name());
  EXPECT_EQ(names, (std::vector<std::string>{"api", "file2"}));
  Fd client(connectTo(portOf(listener.bound_address())));
  EXPECT_TRUE(echoes(client.get(), "the API listener kept its socket"));
}

TEST(AdminAuthTest, TokensGateEveryCallByRole) {
  EchoServer backend;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("evgate-tokens-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "admin") << "admin-secret\n";
  std::ofstream(dir / "reader") << "reader-secret\n";
  const std::string yaml =
      "workers: 1\naccess_log: { mode: off }\nlog: { level: warn }\n"
      "admin: { address: 127.0.0.1:0, token_file: " +
      (dir / "admin").string() + ", read_only_token_file: " + (dir / "reader").string() + " }\n";
  AdminHarness secured(yaml);
  ASSERT_TRUE(secured.ok()) << secured.error();
  const auto withToken = [](const std::string& token) {
    auto context = callContext();
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  };
  v1::Status status;
  v1::CreateClusterRequest create;
  create.mutable_cluster()->set_name("c");
  create.mutable_cluster()->add_endpoints()->set_address(backend.address());
  v1::Cluster cluster;

  EXPECT_EQ(secured.stub().GetStatus(withToken("").get(), {}, &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status wrong = secured.stub().GetStatus(withToken("guess").get(), {}, &status);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_message().find("guess"), std::string::npos);
  EXPECT_EQ(secured.stub().CreateCluster(withToken("").get(), create, &cluster).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  EXPECT_TRUE(secured.stub().GetStatus(withToken("reader-secret").get(), {}, &status).ok());
  EXPECT_EQ(
      secured.stub().CreateCluster(withToken("reader-secret").get(), create, &cluster).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(secured.stub().CreateCluster(withToken("admin-secret").get(), create, &cluster).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace evgate::admin::testing
