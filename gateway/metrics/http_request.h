#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace evgate::gateway::metrics {

// The head of an HTTP/1.x request, as far as the metrics endpoint needs it.
struct RequestHead {
  std::string method;
  std::string path;  // the target without its query string
};

// What parsing a request head gave: the head, or the status to answer and why.
struct RequestParse {
  std::optional<RequestHead> head;
  int status = 0;      // 400 or 505 when head is empty
  std::string reason;  // for the error body
};

// Parses `head`: the bytes of a request up to (not including) the blank line that ends its
// header fields. Only the request line is interpreted ("GET /metrics?x HTTP/1.1"); header fields
// must be lines but are otherwise ignored.
RequestParse parseRequestHead(std::string_view head);

// The longest request head the endpoint reads before answering 431.
inline constexpr size_t kMaxRequestHead = size_t{8} * 1024;

}  // namespace evgate::gateway::metrics
