#include "gateway/close_reason.h"

namespace evgate::gateway {

const char* toString(CloseReason reason) {
  switch (reason) {
    case CloseReason::kNone:
      return "none";
    case CloseReason::kClientEof:
      return "client_eof";
    case CloseReason::kUpstreamEof:
      return "upstream_eof";
    case CloseReason::kClientReset:
      return "client_reset";
    case CloseReason::kUpstreamReset:
      return "upstream_reset";
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kHalfCloseTimeout:
      return "half_close_timeout";
    case CloseReason::kMaxLifetime:
      return "max_lifetime";
    case CloseReason::kConnectFailed:
      return "connect_failed";
    case CloseReason::kNoHealthyUpstream:
      return "no_healthy_upstream";
    case CloseReason::kLimit:
      return "limit";
    case CloseReason::kDenied:
      return "denied";
    case CloseReason::kAdmin:
      return "admin";
    case CloseReason::kDrain:
      return "drain";
    case CloseReason::kProxyProtocol:
      return "proxy_protocol_error";
  }
  return "unknown";
}

}  // namespace evgate::gateway
