#pragma once

// A minimal blocking HTTP/1.1 GET over a loopback TCP socket, for tests that read a metrics page
// or a JSON API (Prometheus) without an HTTP library:
//
//   HttpResponse page = httpGet(port, "/api/v1/query?query=" + urlEncode("up == 1"));
//   ASSERT_TRUE(page.ok()) << page.error;   // transport or framing problem
//   EXPECT_EQ(page.status, 200) << page.body;
//
// One request per connection (`Connection: close`); the answer is read to EOF and framed by
// `Transfer-Encoding: chunked` or `Content-Length` (or EOF when it has neither). Every step is
// bounded by one deadline: connect, send and each read wait in poll().
//
// Thread rule: stateless; safe from any thread.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "tests/integration/net_util.h"

namespace evgate::test {

struct HttpResponse {
  std::string error;  // empty when a complete response arrived; says what went wrong otherwise
  int status = 0;     // the status code, e.g. 200
  std::map<std::string, std::string> headers;  // names lowercased; a repeated header keeps the last
  std::string body;                            // de-chunked

  bool ok() const { return error.empty(); }
};

// Percent-encodes everything but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~), so the
// result is safe as a query parameter's value (PromQL's `{`, `"`, `+`, `=`, spaces...).
inline std::string urlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    }
  }
  return out;
}

namespace http_detail {

inline std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

inline std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// Decodes a chunked body (RFC 9112 section 7.1: hex size, optional extensions, CRLF, data, CRLF,
// ..., a zero-size chunk, optional trailers). Returns "" on success, else what is malformed.
inline std::string dechunk(std::string_view raw, std::string* body) {
  size_t at = 0;
  for (;;) {
    const size_t lineEnd = raw.find("\r\n", at);
    if (lineEnd == std::string_view::npos) return "chunked body: a chunk size line is cut off";
    std::string_view sizeText = raw.substr(at, lineEnd - at);
    sizeText = trim(sizeText.substr(0, sizeText.find(';')));
    if (sizeText.empty() || sizeText.size() > 15) {
      return "chunked body: bad chunk size \"" + std::string(sizeText) + "\"";
    }
    uint64_t size = 0;
    for (const char c : sizeText) {
      const int digit = std::isdigit(static_cast<unsigned char>(c)) != 0 ? c - '0'
                        : (c >= 'a' && c <= 'f')                         ? c - 'a' + 10
                        : (c >= 'A' && c <= 'F')                         ? c - 'A' + 10
                                                                         : -1;
      if (digit < 0) return "chunked body: bad chunk size \"" + std::string(sizeText) + "\"";
      size = size * 16 + static_cast<uint64_t>(digit);
    }
    at = lineEnd + 2;
    if (size == 0) return "";  // trailers, if any, are not needed
    if (raw.size() < at + size + 2) return "chunked body: a chunk is cut off";
    body->append(raw.substr(at, size));
    at += size;
    if (raw.substr(at, 2) != "\r\n") return "chunked body: no CRLF after a chunk";
    at += 2;
  }
}

// Parses a complete response (everything up to EOF) into `response`.
inline void parseResponse(std::string_view raw, HttpResponse& response) {
  const size_t headEnd = raw.find("\r\n\r\n");
  if (headEnd == std::string_view::npos) {
    response.error = "no complete response head in " + std::to_string(raw.size()) + " bytes";
    return;
  }
  const std::string_view head = raw.substr(0, headEnd);
  const std::string_view rest = raw.substr(headEnd + 4);
  size_t lineEnd = head.find("\r\n");
  const std::string_view statusLine = head.substr(0, lineEnd);
  // "HTTP/1.1 200 OK"
  if (statusLine.rfind("HTTP/1.", 0) != 0 || statusLine.size() < 12 || statusLine[8] != ' ' ||
      std::isdigit(static_cast<unsigned char>(statusLine[9])) == 0 ||
      std::isdigit(static_cast<unsigned char>(statusLine[10])) == 0 ||
      std::isdigit(static_cast<unsigned char>(statusLine[11])) == 0) {
    response.error = "bad status line \"" + std::string(statusLine) + "\"";
    return;
  }
  response.status = std::stoi(std::string(statusLine.substr(9, 3)));
  while (lineEnd != std::string_view::npos) {
    const size_t start = lineEnd + 2;
    lineEnd = head.find("\r\n", start);
    const std::string_view line = head.substr(
        start, lineEnd == std::string_view::npos ? std::string_view::npos : lineEnd - start);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      response.error = "bad header line \"" + std::string(line) + "\"";
      return;
    }
    response.headers[lowercase(std::string(line.substr(0, colon)))] =
        std::string(trim(line.substr(colon + 1)));
  }

  if (const auto te = response.headers.find("transfer-encoding"); te != response.headers.end()) {
    if (lowercase(te->second) != "chunked") {
      response.error = "unsupported transfer-encoding \"" + te->second + "\"";
      return;
    }
    response.error = dechunk(rest, &response.body);
    return;
  }
  if (const auto cl = response.headers.find("content-length"); cl != response.headers.end()) {
    const std::string& text = cl->second;
    if (text.empty() || text.size() > 15 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
      response.error = "bad content-length \"" + text + "\"";
      return;
    }
    const size_t length = std::stoull(text);
    if (rest.size() < length) {
      response.error = "body cut off: content-length " + text + ", got " +
                       std::to_string(rest.size()) + " bytes";
      return;
    }
    response.body = std::string(rest.substr(0, length));
    return;
  }
  response.body = std::string(rest);
}

// Connects without blocking past `deadline`: the fd, or -1 with `error` set.
inline int connectBefore(uint16_t port, Clock::time_point deadline, std::string& error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  const sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      error = "connect to " + address(port) + ": " + std::strerror(errno);
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int ready = 0;
    do {
      ready = ::poll(&p, 1, millisLeft(deadline));
    } while (ready < 0 && errno == EINTR);
    int soError = 0;
    socklen_t length = sizeof soError;
    if (ready <= 0) {
      error = "connect to " + address(port) + ": timed out";
    } else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) != 0 || soError != 0) {
      error = "connect to " + address(port) + ": " + std::strerror(soError != 0 ? soError : errno);
    }
    if (!error.empty()) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

}  // namespace http_detail

// GET http://127.0.0.1:port`target` (target: path and query, already URL-encoded). Gives up
// once `limit` has passed, with `error` saying at which step.
inline HttpResponse httpGet(uint16_t port, const std::string& target,
                            Clock::duration limit = std::chrono::seconds(5)) {
  HttpResponse response;
  const Clock::time_point deadline = Clock::now() + limit;
  const Fd fd(http_detail::connectBefore(port, deadline, response.error));
  if (fd.get() < 0) return response;

  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + address(port) +
                              "\r\nUser-Agent: evgate-test\r\nAccept: */*\r\n"
                              "Connection: close\r\n\r\n";
  size_t sent = 0;
  std::string raw;
  char buf[65536];
  for (;;) {
    pollfd p{fd.get(), static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    const int ready = ::poll(&p, 1, millisLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      response.error = std::string("poll: ") + std::strerror(errno);
      return response;
    }
    if (ready == 0) {
      response.error = std::string("timed out ") +
                       (sent < request.size() ? "sending the request"
                                              : "reading the response after " +
                                                    std::to_string(raw.size()) + " bytes");
      return response;
    }
    if (sent < request.size()) {
      const ssize_t n =
          ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        response.error = std::string("send: ") + std::strerror(errno);
        return response;
      }
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EAGAIN && errno != EINTR) {
      response.error = std::string("recv: ") + std::strerror(errno) + " after " +
                       std::to_string(raw.size()) + " bytes";
      return response;
    }
  }
  http_detail::parseResponse(raw, response);
  return response;
}

}  // namespace evgate::test
