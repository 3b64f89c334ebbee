#include "reactor/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace evgate::reactor {
namespace {

// Decimal 0..65535, digits only: no sign, no spaces, no hex (strtoul would take all three).
std::optional<uint16_t> parsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

// inet_pton wants a NUL-terminated string; a NUL inside `host` would silently cut it short.
bool parseIpAddress(int family, std::string_view host, void* out) {
  char text[INET6_ADDRSTRLEN];
  if (host.empty() || host.size() >= sizeof text) return false;
  if (host.find('\0') != std::string_view::npos) return false;
  std::memcpy(text, host.data(), host.size());
  text[host.size()] = '\0';
  return inet_pton(family, text, out) == 1;
}

std::optional<SocketAddress> SocketAddress::parse(std::string_view text) {
  std::string_view host;
  std::string_view portText;
  const bool v6 = !text.empty() && text.front() == '[';
  if (v6) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
  } else {
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    portText = text.substr(colon + 1);
  }
  const std::optional<uint16_t> port = parsePort(portText);
  if (!port) return std::nullopt;

  SocketAddress address;
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage_);
    if (!parseIpAddress(AF_INET6, host, &in6->sin6_addr)) return std::nullopt;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(*port);
    address.length_ = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
    if (!parseIpAddress(AF_INET, host, &in4->sin_addr)) return std::nullopt;
    in4->sin_family = AF_INET;
    in4->sin_port = htons(*port);
    address.length_ = sizeof(sockaddr_in);
  }
  return address;
}

SocketAddress SocketAddress::loopbackV4(uint16_t port) {
  SocketAddress address;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(port);
  in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.length_ = sizeof(sockaddr_in);
  return address;
}

SocketAddress SocketAddress::fromSockaddr(const sockaddr* address, socklen_t length) {
  SocketAddress result;
  result.length_ = std::min<socklen_t>(length, sizeof result.storage_);
  std::memcpy(&result.storage_, address, result.length_);
  return result;
}

std::optional<SocketAddress> SocketAddress::localOf(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return std::nullopt;
  return fromSockaddr(reinterpret_cast<const sockaddr*>(&storage),
                      std::min<socklen_t>(length, sizeof storage));
}

std::optional<SocketAddress> SocketAddress::peerOf(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return std::nullopt;
  return fromSockaddr(reinterpret_cast<const sockaddr*>(&storage),
                      std::min<socklen_t>(length, sizeof storage));
}

uint16_t SocketAddress::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    default:
      return 0;
  }
}

std::string SocketAddress::toString() const {
  char text[INET6_ADDRSTRLEN];
  switch (family()) {
    case AF_INET: {
      const auto* in4 = reinterpret_cast<const sockaddr_in*>(&storage_);
      inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text);
      return std::string(text) + ":" + std::to_string(port());
    }
    case AF_INET6: {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      std::string result = std::string("[") + text;
      if (in6->sin6_scope_id != 0) result += "%" + std::to_string(in6->sin6_scope_id);
      return result + "]:" + std::to_string(port());
    }
    default:
      return "<family " + std::to_string(family()) + ">";
  }
}

// Field by field: a memcmp of the storage would also compare sin_zero, the flow label and
// whatever a kernel left in the padding.
bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  switch (a.family()) {
    case AF_INET: {
      const auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage_);
      const auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage_);
      return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
      const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage_);
      const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage_);
      return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
             std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    default:
      return a.length_ == b.length_ && std::memcmp(&a.storage_, &b.storage_, a.length_) == 0;
  }
}

}  // namespace evgate::reactor
