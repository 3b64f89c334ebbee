#pragma once

// Selecting and describing open flows across the workers (Gateway::listFlows, countFlows,
// closeFlows; FlowDrain).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "gateway/config/cidr.h"
#include "gateway/flow.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// Which flows: every field that is set must match (empty string, nullopt and zero: any).
struct FlowFilter {
  std::optional<uint64_t> listenerId;  // ListenerState::id of the listener that accepted it
  std::string listener;                // that listener's name
  std::string cluster;                 // the cluster it is relayed to
  std::optional<reactor::SocketAddress> endpoint;  // its connected upstream
  std::optional<Cidr> client;                      // Flow::client() is in this network
  Duration minAge{0};                              // open for at least this long
  Duration minIdle{0};                             // no activity for at least this long

  // True if the filter selects every flow.
  bool matchesAll() const {
    return !listenerId && listener.empty() && cluster.empty() && !endpoint && !client &&
           minAge <= Duration::zero() && minIdle <= Duration::zero();
  }
};

// One open flow, as seen on its worker at one instant.
struct FlowInfo {
  uint64_t id = 0;
  uint32_t worker = 0;
  std::string listener;
  uint64_t listenerId = 0;
  std::string cluster;
  reactor::SocketAddress client;
  std::optional<reactor::SocketAddress> upstream;  // nullopt while connecting
  Flow::State state = Flow::State::kConnecting;
  std::chrono::system_clock::time_point startTime;
  Duration age{0};
  Duration idle{0};  // since Flow::lastActivity()
  uint64_t bytesFromClient = 0;
  uint64_t bytesFromUpstream = 0;
  size_t bufferedBytes = 0;
};

}  // namespace evgate::gateway
