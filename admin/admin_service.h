#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "admin/auth.h"
#include "admin/control_plane.h"
#include "admin/watch_hub.h"
#include "evgate/admin/v1/admin.grpc.pb.h"

namespace evgate::admin {

// The evgate.admin.v1.Admin service: for each call, authenticates the caller, checks its role,
// runs the request on the control loop (ControlPlane::call) and, for a mutating call, writes an
// audit line with the outcome. Streams (CloseFlows, Watch) hold a gRPC thread for their length
// and reach the control loop once per step.
//
// Thread rule: gRPC's handler threads, concurrently; the referenced objects must outlive the
// server.
class AdminService final : public v1::Admin::Service {
 public:
  AdminService(ControlPlane& control, const Authenticator& auth, WatchHub& hub);

  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::Status* response) override;
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override;

  grpc::Status CreateListener(grpc::ServerContext* context,
                              const v1::CreateListenerRequest* request,
                              v1::Listener* response) override;
  grpc::Status GetListener(grpc::ServerContext* context, const v1::GetListenerRequest* request,
                           v1::Listener* response) override;
  grpc::Status ListListeners(grpc::ServerContext* context, const v1::ListListenersRequest* request,
                             v1::ListListenersResponse* response) override;
  grpc::Status UpdateListener(grpc::ServerContext* context,
                              const v1::UpdateListenerRequest* request,
                              v1::Listener* response) override;
  grpc::Status DeleteListener(grpc::ServerContext* context,
                              const v1::DeleteListenerRequest* request,
                              v1::DeleteListenerResponse* response) override;
  grpc::Status PauseListener(grpc::ServerContext* context, const v1::PauseListenerRequest* request,
                             v1::Listener* response) override;
  grpc::Status ResumeListener(grpc::ServerContext* context,
                              const v1::ResumeListenerRequest* request,
                              v1::Listener* response) override;

  grpc::Status CreateCluster(grpc::ServerContext* context, const v1::CreateClusterRequest* request,
                             v1::Cluster* response) override;
  grpc::Status GetCluster(grpc::ServerContext* context, const v1::GetClusterRequest* request,
                          v1::Cluster* response) override;
  grpc::Status ListClusters(grpc::ServerContext* context, const v1::ListClustersRequest* request,
                            v1::ListClustersResponse* response) override;
  grpc::Status UpdateCluster(grpc::ServerContext* context, const v1::UpdateClusterRequest* request,
                             v1::Cluster* response) override;
  grpc::Status DeleteCluster(grpc::ServerContext* context, const v1::DeleteClusterRequest* request,
                             v1::DeleteClusterResponse* response) override;
  grpc::Status AddEndpoint(grpc::ServerContext* context, const v1::AddEndpointRequest* request,
                           v1::Cluster* response) override;
  grpc::Status RemoveEndpoint(grpc::ServerContext* context,
                              const v1::RemoveEndpointRequest* request,
                              v1::Cluster* response) override;
  grpc::Status SetEndpointState(grpc::ServerContext* context,
                                const v1::SetEndpointStateRequest* request,
                                v1::Cluster* response) override;

  grpc::Status ListFlows(grpc::ServerContext* context, const v1::ListFlowsRequest* request,
                         v1::ListFlowsResponse* response) override;
  grpc::Status CloseFlow(grpc::ServerContext* context, const v1::CloseFlowRequest* request,
                         v1::CloseFlowResponse* response) override;
  grpc::Status CloseFlows(grpc::ServerContext* context, const v1::CloseFlowsRequest* request,
                          grpc::ServerWriter<v1::CloseFlowsProgress>* writer) override;

  grpc::Status ListEvents(grpc::ServerContext* context, const v1::ListEventsRequest* request,
                          v1::ListEventsResponse* response) override;
  grpc::Status CreateEvent(grpc::ServerContext* context, const v1::CreateEventRequest* request,
                           v1::ScheduledEvent* response) override;
  grpc::Status DeleteEvent(grpc::ServerContext* context, const v1::DeleteEventRequest* request,
                           v1::DeleteEventResponse* response) override;

  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override;

 private:
  // A call that only reads: authenticated, any role.
  grpc::Status read(grpc::ServerContext* context, const std::function<grpc::Status()>& body);
  // A call that changes something: authenticated, admin role, audited as METHOD on TARGET.
  grpc::Status mutate(grpc::ServerContext* context, std::string_view method,
                      std::string_view target, bool validateOnly,
                      const std::function<grpc::Status()>& body);

  ControlPlane& control_;
  const Authenticator& auth_;
  WatchHub& hub_;
};

}  // namespace evgate::admin
