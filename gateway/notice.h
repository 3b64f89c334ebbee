#pragma once

// What the data plane reports as it happens, for whoever watches (the admin API's Watch stream):
// endpoint health transitions and, only while someone asks for them, every flow opened and closed.

#include <chrono>
#include <cstdint>
#include <string>

#include "reactor/socket_address.h"

namespace evgate::gateway {

struct Notice {
  enum class Type { kEndpointHealthy, kEndpointUnhealthy, kFlowOpened, kFlowClosed };

  Type type;
  std::string listener;  // flow notices: the listener that accepted it
  std::string cluster;   // the endpoint's cluster; for a flow, the cluster it is relayed to
  std::string endpoint;  // endpoint notices: its address; kFlowClosed: the upstream, if any
  uint64_t flowId = 0;
  reactor::SocketAddress client;  // flow notices: the client
  // kFlowClosed: the close reason (toString(CloseReason)); endpoint notices: why, e.g.
  // "3 failed checks: connection refused" or "2 passed checks".
  std::string detail;
  std::chrono::system_clock::time_point time;
};

// Receives notices. The Gateway's workers and health checkers call it from their loop threads,
// so an implementation must be thread-safe and must not block (queue and return).
class NoticeSink {
 public:
  virtual ~NoticeSink() = default;
  // Safe from any thread.
  virtual void publish(Notice notice) = 0;
  // Whether flow notices are wanted now. Asked on every accept and flow close: must be cheap
  // (an atomic load). Safe from any thread.
  virtual bool wantsFlowNotices() const = 0;
};

}  // namespace evgate::gateway
