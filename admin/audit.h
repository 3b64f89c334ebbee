#pragma once

// The audit trail of the admin API: one log line per mutating call, whatever its outcome, so
// an operator can tell who changed what and when from the daemon's log alone.

#include <grpcpp/support/status.h>

#include <string>
#include <string_view>

#include "admin/auth.h"
#include "admin/status_code_name.h"

namespace evgate::admin {

// The audit line, without the log's timestamp and level:
//   audit: who=admin-token method=CreateListener target=listener/web result=OK
//   audit: who=cert:CN=ops method=DeleteCluster target=cluster/x result=FAILED_PRECONDITION: ...
// who, method and target are single words: bytes outside printable ASCII, spaces and
// backslashes are written as \xNN / \\, so no value can end the line, forge another field or
// another line. The result's message keeps its spaces but is escaped the same way otherwise.
// Long values are cut (a "..." marks the cut).
//
// Thread rule: pure function; safe from any thread.
std::string formatAudit(const Caller& caller, std::string_view method, std::string_view target,
                        const grpc::Status& result);

// Writes formatAudit(...) to the daemon log at info level, even when log.level is above info.
// Safe from any thread.
void logAudit(const Caller& caller, std::string_view method, std::string_view target,
              const grpc::Status& result);

}  // namespace evgate::admin
