#include "gateway/config/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace evgate::gateway {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Decimal 0..max without sign, spaces or leading zeros.
std::optional<int> parsePrefix(std::string_view text, int max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text.front() == '0')) {
    return std::nullopt;
  }
  int value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

// Whether the first `bits` bits of `a` and `b` are equal.
bool samePrefix(const uint8_t* a, const uint8_t* b, int bits) {
  const int whole = bits / 8;
  if (std::memcmp(a, b, static_cast<size_t>(whole)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

std::optional<Cidr> Cidr::parse(std::string_view text) { return parseImpl(text, false); }

std::optional<Cidr> Cidr::parseMasked(std::string_view text) { return parseImpl(text, true); }

std::optional<Cidr> Cidr::parseImpl(std::string_view text, bool mask) {
  const size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  Cidr cidr;
  cidr.family_ = host.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
  const int maxPrefix = cidr.family_ == AF_INET ? 32 : 128;
  if (!reactor::parseIpAddress(cidr.family_, host, cidr.bytes_.data())) return std::nullopt;
  if (slash == std::string_view::npos) {
    cidr.prefixLength_ = maxPrefix;
    return cidr;
  }
  const std::optional<int> prefix = parsePrefix(text.substr(slash + 1), maxPrefix);
  if (!prefix) return std::nullopt;
  cidr.prefixLength_ = *prefix;

  for (int bit = cidr.prefixLength_; bit < maxPrefix; ++bit) {
    uint8_t& byte = cidr.bytes_[static_cast<size_t>(bit / 8)];
    const auto flag = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((byte & flag) == 0) continue;
    if (!mask) return std::nullopt;
    byte = static_cast<uint8_t>(byte & ~flag);
  }
  return cidr;
}

bool Cidr::contains(const reactor::SocketAddress& address) const {
  // Bring both sides to the network's family: an IPv4 client as ::ffff:a.b.c.d, an IPv4-mapped
  // IPv6 client as a.b.c.d.
  std::array<uint8_t, 16> ip{};
  if (address.family() == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(address.data());
    if (family_ == AF_INET) {
      std::memcpy(ip.data(), &in4->sin_addr, 4);
    } else {
      std::memcpy(ip.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
      std::memcpy(ip.data() + kV4MappedPrefix.size(), &in4->sin_addr, 4);
    }
  } else if (address.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address.data());
    const auto* raw = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    if (family_ == AF_INET6) {
      std::memcpy(ip.data(), raw, 16);
    } else {
      if (std::memcmp(raw, kV4MappedPrefix.data(), kV4MappedPrefix.size()) != 0) return false;
      std::memcpy(ip.data(), raw + kV4MappedPrefix.size(), 4);
    }
  } else {
    return false;
  }
  return samePrefix(ip.data(), bytes_.data(), prefixLength_);
}

std::string Cidr::toString() const {
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(family_, bytes_.data(), text, sizeof text) == nullptr) return "<invalid>";
  return std::string(text) + "/" + std::to_string(prefixLength_);
}

}  // namespace evgate::gateway
