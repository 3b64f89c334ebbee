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
