#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "reactor/socket_address.h"

namespace evgate::gateway {

// An IPv4 or IPv6 network: an address and a prefix length, as in a listener's allow list.
//
// Thread rule: a plain value; safe from any thread as long as each copy is used by one thread.
class Cidr {
 public:
  // "10.0.0.0/8", "2001:db8::/32", or a bare address for a host route ("10.1.2.3" = /32,
  // "::1" = /128). Strict: the bits after the prefix must be zero ("10.0.0.1/8" is rejected, as
  // it is more likely a typo than a network), the prefix is decimal without leading zeros and
  // at most 32 / 128, no brackets, zone ids or spaces. Anything else yields nullopt.
  static std::optional<Cidr> parse(std::string_view text);
  // As parse(), but bits after the prefix are cleared instead of rejected ("10.0.0.1/8" gives
  // 10.0.0.0/8). For error messages that suggest the network the user probably meant.
  static std::optional<Cidr> parseMasked(std::string_view text);

  // Whether `address` (its IP; the port is ignored) is inside this network. IPv4 and IPv6 meet
  // through IPv4-mapped addresses: a client ::ffff:10.1.2.3 (an IPv4 client of a dual-stack
  // socket) is inside 10.0.0.0/8, and a client 10.1.2.3 is inside ::ffff:10.0.0.0/104. Other
  // families are inside nothing.
  bool contains(const reactor::SocketAddress& address) const;

  // "10.0.0.0/8", "2001:db8::/32"; always with the prefix, so parse(toString()) == *this.
  std::string toString() const;

  int family() const { return family_; }
  int prefixLength() const { return prefixLength_; }

  friend bool operator==(const Cidr& a, const Cidr& b) = default;

 private:
  static std::optional<Cidr> parseImpl(std::string_view text, bool mask);

  int family_ = 0;  // AF_INET or AF_INET6
  int prefixLength_ = 0;
  std::array<uint8_t, 16> bytes_{};  // network byte order; IPv4 uses the first 4
};

}  // namespace evgate::gateway
