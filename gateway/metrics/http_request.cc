#include "gateway/metrics/http_request.h"

#include <algorithm>

namespace evgate::gateway::metrics {
namespace {

RequestParse failure(int status, std::string reason) {
  RequestParse result;
  result.status = status;
  result.reason = std::move(reason);
  return result;
}

bool isToken(std::string_view s) {
  // Methods are upper-case tokens (GET, HEAD, POST, ...).
  return !s.empty() && std::ranges::all_of(s, [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

RequestParse parseRequestHead(std::string_view head) {
  const size_t lineEnd = head.find("\r\n");
  const std::string_view line = head.substr(0, lineEnd);
  const size_t firstSpace = line.find(' ');
  const size_t secondSpace = firstSpace == std::string_view::npos ? std::string_view::npos
                                                                  : line.find(' ', firstSpace + 1);
  if (secondSpace == std::string_view::npos ||
      line.find(' ', secondSpace + 1) != std::string_view::npos) {
    return failure(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, firstSpace);
  const std::string_view target = line.substr(firstSpace + 1, secondSpace - firstSpace - 1);
  const std::string_view version = line.substr(secondSpace + 1);
  if (!isToken(method)) return failure(400, "malformed method");
  if (target.empty() || target.front() != '/') return failure(400, "the target must be a path");
  if (!version.starts_with("HTTP/")) return failure(400, "malformed HTTP version");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return failure(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  for (const char c : head) {
    if (c == '\0') return failure(400, "NUL byte in the request head");
  }
  RequestParse result;
  result.head = RequestHead{std::string(method), std::string(target.substr(0, target.find('?')))};
  return result;
}

}  // namespace evgate::gateway::metrics
