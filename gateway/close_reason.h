#pragma once

#include <cstdint>

namespace evgate::gateway {

// Why a flow ended. The access log, the admin API and the metrics use toString()'s names.
enum class CloseReason : uint8_t {
  kNone,               // still open
  kClientEof,          // normal end, both directions finished; the client closed first
  kUpstreamEof,        // normal end, both directions finished; the upstream closed first
  kClientReset,        // the client reset the connection or a socket error hit its side
  kUpstreamReset,      // the same on the upstream side
  kIdleTimeout,        // no byte moved either way for idle_timeout
  kHalfCloseTimeout,   // one direction ended and the other did not within half_close_timeout
  kMaxLifetime,        // max_lifetime (+ jitter) passed
  kConnectFailed,      // every connect attempt failed (refused, timed out)
  kNoHealthyUpstream,  // the cluster had no endpoint to offer
  kLimit,              // refused by a connection limit
  kDenied,             // refused by the listener's allow list
  kAdmin,              // closed through the admin API
  kDrain,              // closed when the drain timeout passed
  kProxyProtocol,      // a malformed PROXY header, or none within proxy_protocol_timeout
};

// "client_eof", "upstream_reset", ...; "none" for kNone. Safe from any thread.
const char* toString(CloseReason reason);

}  // namespace evgate::gateway
