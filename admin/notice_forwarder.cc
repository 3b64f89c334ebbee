#include "admin/notice_forwarder.h"

#include <google/protobuf/util/time_util.h>

namespace evgate::admin {

void NoticeForwarder::publish(gateway::Notice notice) {
  v1::WatchEvent event;
  switch (notice.type) {
    case gateway::Notice::Type::kEndpointHealthy:
      event.set_type(v1::WATCH_EVENT_TYPE_ENDPOINT_HEALTHY);
      break;
    case gateway::Notice::Type::kEndpointUnhealthy:
      event.set_type(v1::WATCH_EVENT_TYPE_ENDPOINT_UNHEALTHY);
      break;
    case gateway::Notice::Type::kFlowOpened:
      event.set_type(v1::WATCH_EVENT_TYPE_FLOW_OPENED);
      break;
    case gateway::Notice::Type::kFlowClosed:
      event.set_type(v1::WATCH_EVENT_TYPE_FLOW_CLOSED);
      break;
  }
  const bool flow = notice.type == gateway::Notice::Type::kFlowOpened ||
                    notice.type == gateway::Notice::Type::kFlowClosed;
  if (notice.time.time_since_epoch().count() != 0) {
    *event.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
        std::chrono::duration_cast<std::chrono::nanoseconds>(notice.time.time_since_epoch())
            .count());
  }
  event.set_listener(std::move(notice.listener));
  event.set_cluster(std::move(notice.cluster));
  event.set_endpoint(std::move(notice.endpoint));
  event.set_flow_id(notice.flowId);
  if (flow) event.set_client(notice.client.toString());
  event.set_detail(std::move(notice.detail));
  hub_.publish(std::move(event));
}

}  // namespace evgate::admin
