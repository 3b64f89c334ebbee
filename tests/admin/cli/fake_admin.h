// A stand-in for the gateway's admin service, for testing clients such as evgatectl: a real
// gRPC server on 127.0.0.1 (port 0) whose every RPC records the request (with its bearer token
// and deadline) and answers what the test set up.
//
//   FakeAdmin fake;
//   ASSERT_TRUE(fake.start());
//   fake.answer("GetListener", listener);                       // canned responses, in order
//   fake.fail("GetListener", grpc::Status(grpc::StatusCode::NOT_FOUND, "..."));
//   ... run the client against fake.address() ...
//   auto request = fake.last<v1::GetListenerRequest>("GetListener");
//
// Thread rule: safe from any thread (gRPC's threads answer while the test thread sets up and
// inspects).

#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"

namespace evgate::test {

namespace v1 = ::evgate::admin::v1;

class FakeAdmin final : public v1::Admin::Service {
 public:
  // One RPC as the server saw it.
  struct Call {
    std::string method;  // "GetListener"
    std::shared_ptr<const google::protobuf::Message> request;
    std::optional<std::string> authorization;  // the "authorization" metadata, if sent
    std::chrono::system_clock::time_point received;
    std::chrono::system_clock::time_point deadline;  // time_point::max() without one
  };

  FakeAdmin() = default;
  ~FakeAdmin() override;

  // Serves on 127.0.0.1 with an OS-chosen port, with `credentials` (default: plaintext).
  bool start(std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  // "127.0.0.1:PORT".
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Queues a response of `method` (a unary RPC): each call takes the next; the last one is
  // answered to every later call. Without any, an empty response.
  void answer(const std::string& method, const google::protobuf::Message& response);
  // Makes every call of `method` end with `status` (overrides answers).
  void fail(const std::string& method, grpc::Status status);
  // The messages a streaming RPC (CloseFlows, Watch) writes, then the status it ends with.
  void stream(const std::string& method,
              std::vector<std::shared_ptr<const google::protobuf::Message>> messages,
              grpc::Status end = grpc::Status::OK);
  // Makes Watch write its first message, then wait for release() (up to 10 s) before the rest:
  // a test can check the client printed a message before the stream ends.
  void holdWatchAfterFirst();
  void release();

  std::vector<Call> calls() const;
  // The calls of `method`.
  std::vector<Call> calls(const std::string& method) const;
  // The last call of `method`, its request as `Request`; fails the test if there is none.
  template <typename Request>
  Request last(const std::string& method) const {
    Request request;
    const std::vector<Call> found = calls(method);
    if (found.empty()) {
      ADD_FAILURE() << "no " << method << " call";
    } else {
      request.CopyFrom(*found.back().request);
    }
    return request;
  }

  // The unary RPCs.
  grpc::Status GetStatus(grpc::ServerContext* c, const v1::GetStatusRequest* q,
                         v1::Status* r) override;
  grpc::Status Drain(grpc::ServerContext* c, const v1::DrainRequest* q,
                     v1::DrainResponse* r) override;
  grpc::Status CreateListener(grpc::ServerContext* c, const v1::CreateListenerRequest* q,
                              v1::Listener* r) override;
  grpc::Status GetListener(grpc::ServerContext* c, const v1::GetListenerRequest* q,
                           v1::Listener* r) override;
  grpc::Status ListListeners(grpc::ServerContext* c, const v1::ListListenersRequest* q,
                             v1::ListListenersResponse* r) override;
  grpc::Status UpdateListener(grpc::ServerContext* c, const v1::UpdateListenerRequest* q,
                              v1::Listener* r) override;
  grpc::Status DeleteListener(grpc::ServerContext* c, const v1::DeleteListenerRequest* q,
                              v1::DeleteListenerResponse* r) override;
  grpc::Status PauseListener(grpc::ServerContext* c, const v1::PauseListenerRequest* q,
                             v1::Listener* r) override;
  grpc::Status ResumeListener(grpc::ServerContext* c, const v1::ResumeListenerRequest* q,
                              v1::Listener* r) override;
  grpc::Status CreateCluster(grpc::ServerContext* c, const v1::CreateClusterRequest* q,
                             v1::Cluster* r) override;
  grpc::Status GetCluster(grpc::ServerContext* c, const v1::GetClusterRequest* q,
                          v1::Cluster* r) override;
  grpc::Status ListClusters(grpc::ServerContext* c, const v1::ListClustersRequest* q,
                            v1::ListClustersResponse* r) override;
  grpc::Status UpdateCluster(grpc::ServerContext* c, const v1::UpdateClusterRequest* q,
                             v1::Cluster* r) override;
  grpc::Status DeleteCluster(grpc::ServerContext* c, const v1::DeleteClusterRequest* q,
                             v1::DeleteClusterResponse* r) override;
  grpc::Status AddEndpoint(grpc::ServerContext* c, const v1::AddEndpointRequest* q,
                           v1::Cluster* r) override;
  grpc::Status RemoveEndpoint(grpc::ServerContext* c, const v1::RemoveEndpointRequest* q,
                              v1::Cluster* r) override;
  grpc::Status SetEndpointState(grpc::ServerContext* c, const v1::SetEndpointStateRequest* q,
                                v1::Cluster* r) override;
  grpc::Status ListFlows(grpc::ServerContext* c, const v1::ListFlowsRequest* q,
                         v1::ListFlowsResponse* r) override;
  grpc::Status CloseFlow(grpc::ServerContext* c, const v1::CloseFlowRequest* q,
                         v1::CloseFlowResponse* r) override;
  grpc::Status ListEvents(grpc::ServerContext* c, const v1::ListEventsRequest* q,
                          v1::ListEventsResponse* r) override;
  grpc::Status CreateEvent(grpc::ServerContext* c, const v1::CreateEventRequest* q,
                           v1::ScheduledEvent* r) override;
  grpc::Status DeleteEvent(grpc::ServerContext* c, const v1::DeleteEventRequest* q,
                           v1::DeleteEventResponse* r) override;

  // The streaming RPCs.
  grpc::Status CloseFlows(grpc::ServerContext* c, const v1::CloseFlowsRequest* q,
                          grpc::ServerWriter<v1::CloseFlowsProgress>* w) override;
  grpc::Status Watch(grpc::ServerContext* c, const v1::WatchRequest* q,
                     grpc::ServerWriter<v1::WatchEvent>* w) override;

 private:
  struct Stream {
    std::vector<std::shared_ptr<const google::protobuf::Message>> messages;
    grpc::Status end;
  };

  void record(const std::string& method, grpc::ServerContext* context,
              const google::protobuf::Message& request);
  grpc::Status unary(const std::string& method, grpc::ServerContext* context,
                     const google::protobuf::Message& request, google::protobuf::Message* response);
  template <typename Message>
  grpc::Status serveStream(const std::string& method, grpc::ServerContext* context,
                           const google::protobuf::Message& request,
                           grpc::ServerWriter<Message>* writer, bool hold);

  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool hold_ = false;
  bool isReleased_ = false;
  std::vector<Call> calls_;
  std::map<std::string, std::deque<std::shared_ptr<const google::protobuf::Message>>> answers_;
  std::map<std::string, grpc::Status> failures_;
  std::map<std::string, Stream> streams_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace evgate::test
