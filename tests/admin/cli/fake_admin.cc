#include "tests/admin/cli/fake_admin.h"

#include <utility>

namespace evgate::test {

FakeAdmin::~FakeAdmin() {
  release();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

bool FakeAdmin::start(std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (!credentials) credentials = grpc::InsecureServerCredentials();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  return server_ != nullptr && port_ > 0;
}

void FakeAdmin::answer(const std::string& method, const google::protobuf::Message& response) {
  std::shared_ptr<google::protobuf::Message> copy(response.New());
  copy->CopyFrom(response);
  std::lock_guard lock(mutex_);
  answers_[method].push_back(std::move(copy));
}

void FakeAdmin::fail(const std::string& method, grpc::Status status) {
  std::lock_guard lock(mutex_);
  failures_[method] = std::move(status);
}

void FakeAdmin::stream(const std::string& method,
                       std::vector<std::shared_ptr<const google::protobuf::Message>> messages,
                       grpc::Status end) {
  std::lock_guard lock(mutex_);
  streams_[method] = Stream{std::move(messages), std::move(end)};
}

void FakeAdmin::holdWatchAfterFirst() {
  std::lock_guard lock(mutex_);
  hold_ = true;
}

void FakeAdmin::release() {
  {
    std::lock_guard lock(mutex_);
    isReleased_ = true;
  }
  released_.notify_all();
}

std::vector<FakeAdmin::Call> FakeAdmin::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

std::vector<FakeAdmin::Call> FakeAdmin::calls(const std::string& method) const {
  std::vector<Call> found;
  for (Call& call : calls()) {
    if (call.method == method) found.push_back(std::move(call));
  }
  return found;
}

void FakeAdmin::record(const std::string& method, grpc::ServerContext* context,
                       const google::protobuf::Message& request) {
  Call call;
  call.method = method;
  std::shared_ptr<google::protobuf::Message> copy(request.New());
  copy->CopyFrom(request);
  call.request = std::move(copy);
  const auto& metadata = context->client_metadata();
  if (const auto found = metadata.find("authorization"); found != metadata.end()) {
    call.authorization = std::string(found->second.data(), found->second.size());
  }
  call.received = std::chrono::system_clock::now();
  call.deadline = context->deadline();
  std::lock_guard lock(mutex_);
  calls_.push_back(std::move(call));
}

grpc::Status FakeAdmin::unary(const std::string& method, grpc::ServerContext* context,
                              const google::protobuf::Message& request,
                              google::protobuf::Message* response) {
  record(method, context, request);
  std::lock_guard lock(mutex_);
  if (const auto failure = failures_.find(method); failure != failures_.end()) {
    return failure->second;
  }
  auto& queue = answers_[method];
  if (queue.empty()) return grpc::Status::OK;
  response->CopyFrom(*queue.front());
  if (queue.size() > 1) queue.pop_front();
  return grpc::Status::OK;
}

template <typename Message>
grpc::Status FakeAdmin::serveStream(const std::string& method, grpc::ServerContext* context,
                                    const google::protobuf::Message& request,
                                    grpc::ServerWriter<Message>* writer, bool hold) {
  record(method, context, request);
  Stream stream;
  {
    std::lock_guard lock(mutex_);
    if (const auto failure = failures_.find(method); failure != failures_.end()) {
      return failure->second;
    }
    stream = streams_[method];
  }
  for (size_t i = 0; i < stream.messages.size(); ++i) {
    Message message;
    message.CopyFrom(*stream.messages[i]);
    if (!writer->Write(message)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    if (i == 0 && hold) {
      std::unique_lock lock(mutex_);
      released_.wait_for(lock, std::chrono::seconds(10), [this] { return isReleased_; });
    }
  }
  return stream.end;
}

// The unary RPCs differ only in their types and name.
#define EVGATE_FAKE_UNARY(Method, Request, Response)                                              \
  grpc::Status FakeAdmin::Method(grpc::ServerContext* c, const v1::Request* q, v1::Response* r) { \
    return unary(#Method, c, *q, r);                                                              \
  }

EVGATE_FAKE_UNARY(GetStatus, GetStatusRequest, Status)
EVGATE_FAKE_UNARY(Drain, DrainRequest, DrainResponse)
EVGATE_FAKE_UNARY(CreateListener, CreateListenerRequest, Listener)
EVGATE_FAKE_UNARY(GetListener, GetListenerRequest, Listener)
EVGATE_FAKE_UNARY(ListListeners, ListListenersRequest, ListListenersResponse)
EVGATE_FAKE_UNARY(UpdateListener, UpdateListenerRequest, Listener)
EVGATE_FAKE_UNARY(DeleteListener, DeleteListenerRequest, DeleteListenerResponse)
EVGATE_FAKE_UNARY(PauseListener, PauseListenerRequest, Listener)
EVGATE_FAKE_UNARY(ResumeListener, ResumeListenerRequest, Listener)
EVGATE_FAKE_UNARY(CreateCluster, CreateClusterRequest, Cluster)
EVGATE_FAKE_UNARY(GetCluster, GetClusterRequest, Cluster)
EVGATE_FAKE_UNARY(ListClusters, ListClustersRequest, ListClustersResponse)
EVGATE_FAKE_UNARY(UpdateCluster, UpdateClusterRequest, Cluster)
EVGATE_FAKE_UNARY(DeleteCluster, DeleteClusterRequest, DeleteClusterResponse)
EVGATE_FAKE_UNARY(AddEndpoint, AddEndpointRequest, Cluster)
EVGATE_FAKE_UNARY(RemoveEndpoint, RemoveEndpointRequest, Cluster)
EVGATE_FAKE_UNARY(SetEndpointState, SetEndpointStateRequest, Cluster)
EVGATE_FAKE_UNARY(ListFlows, ListFlowsRequest, ListFlowsResponse)
EVGATE_FAKE_UNARY(CloseFlow, CloseFlowRequest, CloseFlowResponse)
EVGATE_FAKE_UNARY(ListEvents, ListEventsRequest, ListEventsResponse)
EVGATE_FAKE_UNARY(CreateEvent, CreateEventRequest, ScheduledEvent)
EVGATE_FAKE_UNARY(DeleteEvent, DeleteEventRequest, DeleteEventResponse)

#undef EVGATE_FAKE_UNARY

grpc::Status FakeAdmin::CloseFlows(grpc::ServerContext* c, const v1::CloseFlowsRequest* q,
                                   grpc::ServerWriter<v1::CloseFlowsProgress>* w) {
  return serveStream("CloseFlows", c, *q, w, false);
}

grpc::Status FakeAdmin::Watch(grpc::ServerContext* c, const v1::WatchRequest* q,
                              grpc::ServerWriter<v1::WatchEvent>* w) {
  bool hold = false;
  {
    std::lock_guard lock(mutex_);
    hold = hold_;
  }
  return serveStream("Watch", c, *q, w, hold);
}

}  // namespace evgate::test
