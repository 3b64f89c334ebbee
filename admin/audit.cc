#include "admin/audit.h"

#include "gateway/log.h"

namespace evgate::admin {
namespace {

// Enough for any name or message the service produces; a caller cannot flood the log through
// a huge target or a message that quotes its input.
constexpr size_t kMaxFieldBytes = 512;

void appendEscaped(std::string& out, std::string_view text, bool keepSpaces) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool cut = text.size() > kMaxFieldBytes;
  for (const char c : text.substr(0, kMaxFieldBytes)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if ((byte > 0x20 && byte < 0x7f) || (byte == 0x20 && keepSpaces)) {
      out += c;
    } else {
      // Control bytes (a newline would start a forged line), DEL and every non-ASCII byte
      // (U+2028 or bidi overrides can fake a line break or reorder text in a viewer).
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  if (cut) out += "...";
}

}  // namespace

const char* statusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::DO_NOT_USE:
      break;
  }
  return "UNKNOWN";
}

std::string formatAudit(const Caller& caller, std::string_view method, std::string_view target,
                        const grpc::Status& result) {
  std::string line = "audit: who=";
  appendEscaped(line, caller.identity, false);
  line += " method=";
  appendEscaped(line, method, false);
  line += " target=";
  appendEscaped(line, target.empty() ? "-" : target, false);
  line += " result=";
  line += statusCodeName(result.error_code());
  if (!result.ok() && !result.error_message().empty()) {
    line += ": ";
    appendEscaped(line, result.error_message(), true);
  }
  return line;
}

void logAudit(const Caller& caller, std::string_view method, std::string_view target,
              const grpc::Status& result) {
  // Audit lines are kept whatever log.level says: the trail must not depend on verbosity.
  gateway::logUnfiltered(gateway::LogLevel::kInfo, formatAudit(caller, method, target, result));
}

}  // namespace evgate::admin
