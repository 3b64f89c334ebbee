#include "admin/admin_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "admin/audit.h"
#include "admin/resource_convert.h"

namespace evgate::admin {
namespace {

// CloseFlows: the default and largest rate, and how often progress is reported.
constexpr uint32_t kDefaultClosePerSecond = 1000;
constexpr uint32_t kMaxClosePerSecond = 100000;
constexpr auto kCloseStep = std::chrono::milliseconds(100);
// Watch: how often a quiet stream checks whether its client went away.
constexpr auto kWatchPoll = std::chrono::milliseconds(250);

std::string target(std::string_view kind, std::string_view name) {
  return std::string(kind) + "/" + std::string(name);
}

}  // namespace

AdminService::AdminService(ControlPlane& control, const Authenticator& auth, WatchHub& hub)
    : control_(control), auth_(auth), hub_(hub) {}

grpc::Status AdminService::read(grpc::ServerContext* context,
                                const std::function<grpc::Status()>& body) {
  Caller caller;
  if (grpc::Status status = auth_.authenticate(*context, caller); !status.ok()) return status;
  if (grpc::Status status = Authenticator::authorize(caller, false); !status.ok()) return status;
  return control_.call(body);
}

grpc::Status AdminService::mutate(grpc::ServerContext* context, std::string_view method,
                                  std::string_view target, bool validateOnly,
                                  const std::function<grpc::Status()>& body) {
  Caller caller;
  grpc::Status status = auth_.authenticate(*context, caller);
  if (status.ok()) status = Authenticator::authorize(caller, true);
  if (status.ok()) status = control_.call(body);
  logAudit(caller, validateOnly ? std::string(method) + "(validate_only)" : std::string(method),
           target, status);
  return status;
}

grpc::Status AdminService::GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest*,
                                     v1::Status* response) {
  return read(context, [&] { return control_.getStatus(*response); });
}

grpc::Status AdminService::Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                                 v1::DrainResponse* response) {
  return mutate(context, "Drain", "gateway", request->validate_only(),
                [&] { return control_.drain(*request, *response); });
}

grpc::Status AdminService::CreateListener(grpc::ServerContext* context,
                                          const v1::CreateListenerRequest* request,
                                          v1::Listener* response) {
  return mutate(context, "CreateListener", target("listener", request->listener().name()),
                request->validate_only(),
                [&] { return control_.createListener(*request, *response); });
}

grpc::Status AdminService::GetListener(grpc::ServerContext* context,
                                       const v1::GetListenerRequest* request,
                                       v1::Listener* response) {
  return read(context, [&] { return control_.getListener(request->name(), *response); });
}

grpc::Status AdminService::ListListeners(grpc::ServerContext* context,
                                         const v1::ListListenersRequest* request,
                                         v1::ListListenersResponse* response) {
  return read(context, [&] { return control_.listListeners(*request, *response); });
}

grpc::Status AdminService::UpdateListener(grpc::ServerContext* context,
                                          const v1::UpdateListenerRequest* request,
                                          v1::Listener* response) {
  return mutate(context, "UpdateListener", target("listener", request->listener().name()),
                request->validate_only(),
                [&] { return control_.updateListener(*request, *response); });
}

grpc::Status AdminService::DeleteListener(grpc::ServerContext* context,
                                          const v1::DeleteListenerRequest* request,
                                          v1::DeleteListenerResponse* response) {
  return mutate(context, "DeleteListener", target("listener", request->name()),
                request->validate_only(),
                [&] { return control_.deleteListener(*request, *response); });
}

grpc::Status AdminService::PauseListener(grpc::ServerContext* context,
                                         const v1::PauseListenerRequest* request,
                                         v1::Listener* response) {
  return mutate(context, "PauseListener", target("listener", request->name()),
                request->validate_only(),
                [&] { return control_.pauseListener(*request, *response); });
}

grpc::Status AdminService::ResumeListener(grpc::ServerContext* context,
                                          const v1::ResumeListenerRequest* request,
                                          v1::Listener* response) {
  return mutate(context, "ResumeListener", target("listener", request->name()),
                request->validate_only(),
                [&] { return control_.resumeListener(*request, *response); });
}

grpc::Status AdminService::CreateCluster(grpc::ServerContext* context,
                                         const v1::CreateClusterRequest* request,
                                         v1::Cluster* response) {
  return mutate(context, "CreateCluster", target("cluster", request->cluster().name()),
                request->validate_only(),
                [&] { return control_.createCluster(*request, *response); });
}

grpc::Status AdminService::GetCluster(grpc::ServerContext* context,
                                      const v1::GetClusterRequest* request, v1::Cluster* response) {
  return read(context, [&] { return control_.getCluster(request->name(), *response); });
}

grpc::Status AdminService::ListClusters(grpc::ServerContext* context,
                                        const v1::ListClustersRequest* request,
                                        v1::ListClustersResponse* response) {
  return read(context, [&] { return control_.listClusters(*request, *response); });
}

grpc::Status AdminService::UpdateCluster(grpc::ServerContext* context,
                                         const v1::UpdateClusterRequest* request,
                                         v1::Cluster* response) {
  return mutate(context, "UpdateCluster", target("cluster", request->cluster().name()),
                request->validate_only(),
                [&] { return control_.updateCluster(*request, *response); });
}

grpc::Status AdminService::DeleteCluster(grpc::ServerContext* context,
                                         const v1::DeleteClusterRequest* request,
                                         v1::DeleteClusterResponse*) {
  return mutate(context, "DeleteCluster", target("cluster", request->name()),
                request->validate_only(), [&] { return control_.deleteCluster(*request); });
}

grpc::Status AdminService::AddEndpoint(grpc::ServerContext* context,
                                       const v1::AddEndpointRequest* request,
                                       v1::Cluster* response) {
  return mutate(context, "AddEndpoint",
                target("cluster", request->cluster()) + "/" + request->endpoint().address(),
                request->validate_only(),
                [&] { return control_.addEndpoint(*request, *response); });
}

grpc::Status AdminService::RemoveEndpoint(grpc::ServerContext* context,
                                          const v1::RemoveEndpointRequest* request,
                                          v1::Cluster* response) {
  return mutate(
      context, "RemoveEndpoint", target("cluster", request->cluster()) + "/" + request->address(),
      request->validate_only(), [&] { return control_.removeEndpoint(*request, *response); });
}

grpc::Status AdminService::SetEndpointState(grpc::ServerContext* context,
                                            const v1::SetEndpointStateRequest* request,
                                            v1::Cluster* response) {
  return mutate(
      context, "SetEndpointState", target("cluster", request->cluster()) + "/" + request->address(),
      request->validate_only(), [&] { return control_.setEndpointState(*request, *response); });
}

grpc::Status AdminService::ListFlows(grpc::ServerContext* context,
                                     const v1::ListFlowsRequest* request,
                                     v1::ListFlowsResponse* response) {
  return read(context, [&] { return control_.listFlows(*request, *response); });
}

grpc::Status AdminService::CloseFlow(grpc::ServerContext* context,
                                     const v1::CloseFlowRequest* request, v1::CloseFlowResponse*) {
  return mutate(context, "CloseFlow", target("flow", std::to_string(request->id())),
                request->validate_only(), [&] { return control_.closeFlow(*request); });
}

grpc::Status AdminService::CloseFlows(grpc::ServerContext* context,
                                      const v1::CloseFlowsRequest* request,
                                      grpc::ServerWriter<v1::CloseFlowsProgress>* writer) {
  const auto body = [&]() -> grpc::Status {
    gateway::FlowFilter filter;
    if (grpc::Status status = flowFilterFromProto(request->filter(), filter); !status.ok()) {
      return status;
    }
    if (request->max_per_second() > kMaxClosePerSecond) {
      return invalidArgument("max_per_second",
                             "expected at most " + std::to_string(kMaxClosePerSecond));
    }
    const uint32_t rate =
        request->max_per_second() == 0 ? kDefaultClosePerSecond : request->max_per_second();
    v1::CloseFlowsProgress progress;
    uint64_t closedTotal = 0;
    const auto started = std::chrono::steady_clock::now();
    while (true) {
      // The budget grows with time at `rate`, starting with one step's worth.
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started + kCloseStep)
              .count();
      const auto allowed = static_cast<uint64_t>(elapsed * rate);
      const size_t budget = request->validate_only() || allowed <= closedTotal
                                ? 0
                                : static_cast<size_t>(allowed - closedTotal);
      uint64_t closed = 0;
      uint64_t remaining = 0;
      grpc::Status status =
          control_.call([&] { return control_.closeFlowsStep(filter, budget, closed, remaining); });
      if (!status.ok()) return status;
      closedTotal += closed;
      progress.set_closed(closedTotal);
      progress.set_remaining(remaining);
      progress.set_done(remaining == 0 || request->validate_only());
      if (!writer->Write(progress)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      if (progress.done()) return grpc::Status::OK;
      if (context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
      }
      std::this_thread::sleep_for(kCloseStep);
    }
  };
  Caller caller;
  grpc::Status status = auth_.authenticate(*context, caller);
  if (status.ok()) status = Authenticator::authorize(caller, true);
  if (status.ok()) status = body();
  logAudit(caller, request->validate_only() ? "CloseFlows(validate_only)" : "CloseFlows", "flows",
           status);
  return status;
}

grpc::Status AdminService::ListEvents(grpc::ServerContext* context, const v1::ListEventsRequest*,
                                      v1::ListEventsResponse* response) {
  return read(context, [&] { return control_.listEvents(*response); });
}

grpc::Status AdminService::CreateEvent(grpc::ServerContext* context,
                                       const v1::CreateEventRequest* request,
                                       v1::ScheduledEvent* response) {
  return mutate(context, "CreateEvent", target("event", request->event().name()),
                request->validate_only(),
                [&] { return control_.createEvent(*request, *response); });
}

grpc::Status AdminService::DeleteEvent(grpc::ServerContext* context,
                                       const v1::DeleteEventRequest* request,
                                       v1::DeleteEventResponse*) {
  return mutate(context, "DeleteEvent", target("event", request->name()), request->validate_only(),
                [&] { return control_.deleteEvent(*request); });
}

grpc::Status AdminService::Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                                 grpc::ServerWriter<v1::WatchEvent>* writer) {
  Caller caller;
  if (grpc::Status status = auth_.authenticate(*context, caller); !status.ok()) return status;
  if (grpc::Status status = Authenticator::authorize(caller, false); !status.ok()) return status;
  if (const auto error = WatchHub::validate(*request)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *error);
  }
  // A watcher that falls behind is cut off. If its handler is blocked in Write() (the client
  // does not read), only cancelling the call frees it: the client sees CANCELLED. Otherwise the
  // handler finds the overflow on its next read and ends the stream with RESOURCE_EXHAUSTED.
  // The two flags are a Dekker pair: whichever side moves second sees the other's flag.
  std::atomic<bool> overflowed{false};
  std::atomic<bool> writing{false};
  const auto watcher = hub_.subscribe(*request, [context, &overflowed, &writing] {
    overflowed.store(true);
    if (writing.load()) context->TryCancel();
  });
  if (watcher == nullptr) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many watchers; raise admin.max_watchers or close one");
  }
  grpc::Status fellBehind(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "the watcher fell behind and was disconnected");
  const auto stream = [&]() -> grpc::Status {
    v1::WatchEvent event;
    while (true) {
      switch (watcher->next(event, kWatchPoll)) {
        case WatchHub::Watcher::Next::kEvent: {
          writing.store(true);
          if (overflowed.load()) return fellBehind;
          const bool written = writer->Write(event);
          writing.store(false);
          if (!written) return grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away");
          break;
        }
        case WatchHub::Watcher::Next::kTimeout:
          if (context->IsCancelled()) {
            return grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away");
          }
          break;
        case WatchHub::Watcher::Next::kOverflowed:
          return fellBehind;
        case WatchHub::Watcher::Next::kClosed:
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down");
      }
    }
  };
  grpc::Status result = stream();
  // After this the overflow callback, which uses this frame's flags, can no longer run.
  watcher->unsubscribe();
  return result;
}

}  // namespace evgate::admin
