#pragma once

// gRPC's own log lines (a refused TLS handshake, a port it cannot bind) into evgate's log: the
// same format (text or JSON) and the same queue, so a stalled reader of stderr does not block
// the gRPC thread that logs either (gateway/log.h). Each line reads
// "grpc: FILE:LINE: MESSAGE" at the level gRPC gave it (GRPC_VERBOSITY still chooses which
// gRPC writes at all). gRPC's assertion failures, which abort right after, are written to
// stderr at once.
//
// Thread rule: call once, from the main thread, before the admin server starts.

namespace evgate::admin {

void routeGrpcLogToEvgateLog();

}  // namespace evgate::admin
