#include "admin/grpc_log.h"

#include <grpc/support/log.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <string_view>

#include "gateway/log.h"

namespace evgate::admin {
namespace {

gateway::LogLevel levelOf(gpr_log_severity severity) {
  switch (severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      return gateway::LogLevel::kDebug;
    case GPR_LOG_SEVERITY_INFO:
      return gateway::LogLevel::kInfo;
    case GPR_LOG_SEVERITY_ERROR:
      return gateway::LogLevel::kError;
  }
  return gateway::LogLevel::kError;
}

void forward(gpr_log_func_args* args) {
  const std::string_view file = args->file != nullptr ? args->file : "?";
  const size_t slash = file.rfind('/');
  std::string line = "grpc: ";
  line += slash == std::string_view::npos ? file : file.substr(slash + 1);
  line += ":" + std::to_string(args->line) + ": ";
  line += args->message != nullptr ? args->message : "";
  const bool aborting =
      args->message != nullptr && std::strncmp(args->message, "assertion failed", 16) == 0;
  if (aborting) {
    // GPR_ASSERT aborts when this returns: a queued line would never be written.
    line += "\n";
    (void)::write(STDERR_FILENO, line.data(), line.size());
    return;
  }
  gateway::logMessage(levelOf(args->severity), line);
}

}  // namespace

void routeGrpcLogToEvgateLog() { gpr_set_log_function(&forward); }

}  // namespace evgate::admin
