#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace evgate::reactor {

// An IPv4 or IPv6 socket address (a copy of a sockaddr_in / sockaddr_in6, 32 bytes in all, not a
// 128-byte sockaddr_storage: a gateway keeps a few per relayed flow): a small value type to bind,
// connect and print endpoints.
//
// Thread rule: a plain value; safe from any thread as long as each copy is used by one thread.
class SocketAddress {
 public:
  // The unspecified address: family AF_UNSPEC, length 0.
  SocketAddress() = default;

  // Parses "1.2.3.4:80" or "[::1]:80". The port is required and decimal (0..65535, at most five
  // digits); IPv6 addresses must be bracketed. No name lookup, no zone ids ("%eth0"), no spaces.
  // Anything else yields nullopt.
  static std::optional<SocketAddress> parse(std::string_view text);
  // 127.0.0.1:`port` (0: let the kernel pick when binding).
  static SocketAddress loopbackV4(uint16_t port = 0);
  // Copies `length` bytes of `address`, at most sizeof(sockaddr_in6). Other families than
  // AF_INET / AF_INET6 keep only what fits: family() works, port() is 0, and operator== compares
  // those bytes only (an AF_UNIX path is cut after 26 bytes); they are not for connecting.
  static SocketAddress fromSockaddr(const sockaddr* address, socklen_t length);
  // getsockname() / getpeername() of `fd`; nullopt with errno set if the call fails.
  static std::optional<SocketAddress> localOf(int fd);
  static std::optional<SocketAddress> peerOf(int fd);

  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  int family() const { return storage_.any.sa_family; }
  // Host byte order; 0 for families without a port.
  uint16_t port() const;

  // "1.2.3.4:80", "[::1]:80"; parse(toString()) gives the address back, except that a non-zero
  // IPv6 scope id prints as "[fe80::1%2]:80", which parse() rejects. Other families print as
  // "<family N>".
  std::string toString() const;

  // Same family, address and port (and scope id for IPv6); the IPv6 flow label is ignored.
  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  // `{}` zero-initialises a union's first member only, so the largest one comes first: every
  // byte of the storage starts at zero (with a 16-byte sockaddr first, an IPv6 scope id was
  // left indeterminate, which clang leaves as garbage).
  union Storage {
    sockaddr_in6 v6;
    sockaddr_in v4;
    sockaddr any;
  };
  static_assert(sizeof(Storage) == sizeof(sockaddr_in6));
  Storage storage_{};
  socklen_t length_ = 0;
};

// Parses a bare IPv4 (AF_INET) or IPv6 (AF_INET6) address, without brackets or port, into `out`
// (an in_addr or in6_addr). Strict: no surrounding spaces, no embedded NUL.
bool parseIpAddress(int family, std::string_view host, void* out);

}  // namespace evgate::reactor
