#include "gateway/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <vector>

namespace evgate::gateway {
namespace {

using reactor::SocketAddress;

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV1Unknown = "PROXY UNKNOWN";
constexpr std::array<std::string_view, 3> kV1Protocols{"TCP4 ", "TCP6 ", "UNKNOWN"};
constexpr char kV2SignatureBytes[] = "\r\n\r\n\0\r\nQUIT\n";
constexpr std::string_view kV2Signature(kV2SignatureBytes, 12);
constexpr size_t kV2FixedLength = 16;

constexpr uint8_t kCmdLocal = 0x0;
constexpr uint8_t kCmdProxy = 0x1;
constexpr uint8_t kFamUnspec = 0x00;
constexpr uint8_t kFamTcp4 = 0x11;
constexpr uint8_t kFamTcp6 = 0x21;
constexpr size_t kAddrLenTcp4 = 12;
constexpr size_t kAddrLenTcp6 = 36;

ProxyParse invalid(std::string& error, std::string message) {
  error = std::move(message);
  return ProxyParse::kInvalid;
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// True if the shorter of `a` and `b` is a prefix of the other.
bool prefixCompatible(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  return a.substr(0, n) == b.substr(0, n);
}

SocketAddress makeV4(const void* addr4, uint16_t portHost) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  std::memcpy(&sin.sin_addr, addr4, 4);
  sin.sin_port = htons(portHost);
  return SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
}

SocketAddress makeV6(const void* addr16, uint16_t portHost) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  std::memcpy(&sin6.sin6_addr, addr16, 16);
  sin6.sin6_port = htons(portHost);
  return SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
}

// Decimal 0..65535, one to five digits, no sign, no leading zero (except "0" itself).
std::optional<uint16_t> parsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  uint32_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::optional<SocketAddress> parseAddress(int family, std::string_view text, uint16_t port) {
  // inet_pton needs a NUL-terminated string; v1 addresses are short (at most 45 characters).
  char copy[64];
  if (text.empty() || text.size() >= sizeof copy) return std::nullopt;
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  unsigned char bytes[16];
  if (::inet_pton(family, copy, bytes) != 1) return std::nullopt;
  return family == AF_INET ? makeV4(bytes, port) : makeV6(bytes, port);
}

ProxyParse parseV1Line(std::string_view line, ProxyHeader& out, std::string& error) {
  if (line == kV1Unknown || startsWith(line, std::string(kV1Unknown) + " ")) {
    out.source.reset();
    out.destination.reset();
    return ProxyParse::kDone;
  }
  std::vector<std::string_view> tokens;
  size_t pos = 0;
  while (true) {
    const size_t space = line.find(' ', pos);
    tokens.push_back(line.substr(pos, space == std::string_view::npos ? space : space - pos));
    if (space == std::string_view::npos) break;
    pos = space + 1;
  }
  if (tokens.size() != 6) return invalid(error, "v1: expected 6 space-separated fields");
  for (const std::string_view t : tokens) {
    if (t.empty()) return invalid(error, "v1: empty field (double space?)");
  }
  int family = AF_UNSPEC;
  if (tokens[1] == "TCP4") {
    family = AF_INET;
  } else if (tokens[1] == "TCP6") {
    family = AF_INET6;
  } else {
    return invalid(error, "v1: unknown protocol '" + std::string(tokens[1]) + "'");
  }
  const std::optional<uint16_t> srcPort = parsePort(tokens[4]);
  const std::optional<uint16_t> dstPort = parsePort(tokens[5]);
  if (!srcPort || !dstPort) return invalid(error, "v1: bad port");
  std::optional<SocketAddress> src = parseAddress(family, tokens[2], *srcPort);
  std::optional<SocketAddress> dst = parseAddress(family, tokens[3], *dstPort);
  if (!src || !dst) {
    return invalid(error, "v1: bad " + std::string(tokens[1]) + " address");
  }
  out.source = src;
  out.destination = dst;
  return ProxyParse::kDone;
}

ProxyParse parseV1(std::string_view bytes, ProxyHeader& out, std::string& error) {
  if (!prefixCompatible(bytes, kV1Prefix)) return invalid(error, "v1: missing 'PROXY ' prefix");
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == '\r') {
      if (i + 1 == bytes.size()) break;  // "\n" may follow
      if (bytes[i + 1] != '\n') return invalid(error, "v1: '\\r' not followed by '\\n'");
      if (i < kV1Prefix.size()) return invalid(error, "v1: line ends early");
      out.length = i + 2;
      out.version = 1;
      return parseV1Line(bytes.substr(0, i), out, error);
    }
    if (c == '\n') return invalid(error, "v1: '\\n' without '\\r'");
    if (c < 0x20 || c > 0x7e) return invalid(error, "v1: non-printable byte");
  }
  // No complete line yet: fail early on what is certainly wrong.
  if (bytes.size() >= kProxyV1MaxLength) return invalid(error, "v1: line longer than 107 bytes");
  if (bytes.size() > kV1Prefix.size()) {
    const std::string_view rest = bytes.substr(kV1Prefix.size());
    const bool known = std::any_of(kV1Protocols.begin(), kV1Protocols.end(),
                                   [&](std::string_view p) { return prefixCompatible(rest, p); });
    if (!known) return invalid(error, "v1: unknown protocol");
    if (!startsWith(rest, "UNKNOWN") && rest.find("  ") != std::string_view::npos) {
      return invalid(error, "v1: empty field (double space?)");
    }
  }
  return ProxyParse::kNeedMore;
}

uint16_t readBe16(const unsigned char* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

ProxyParse parseV2(std::string_view bytes, ProxyHeader& out, std::string& error) {
  if (!prefixCompatible(bytes, kV2Signature)) return invalid(error, "v2: bad signature");
  if (bytes.size() <= kV2Signature.size()) return ProxyParse::kNeedMore;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const uint8_t version = b[12] >> 4;
  const uint8_t command = b[12] & 0x0f;
  if (version != 2) return invalid(error, "v2: bad version " + std::to_string(version));
  if (command != kCmdLocal && command != kCmdProxy) {
    return invalid(error, "v2: bad command " + std::to_string(command));
  }
  if (bytes.size() < 14) return ProxyParse::kNeedMore;
  const uint8_t family = b[13];
  if ((family >> 4) > 3 || (family & 0x0f) > 2) return invalid(error, "v2: bad address family");
  size_t addrLen = 0;
  if (command == kCmdProxy) {
    if (family == kFamTcp4) {
      addrLen = kAddrLenTcp4;
    } else if (family == kFamTcp6) {
      addrLen = kAddrLenTcp6;
    } else if (family != kFamUnspec) {
      return invalid(error, "v2: only TCP over IPv4 / IPv6 is supported");
    }
  }
  if (bytes.size() < kV2FixedLength) return ProxyParse::kNeedMore;
  const size_t length = readBe16(b + 14);
  if (kV2FixedLength + length > kProxyV2MaxLength) {
    return invalid(error, "v2: header longer than " + std::to_string(kProxyV2MaxLength));
  }
  if (length < addrLen) return invalid(error, "v2: address block too short");
  if (bytes.size() < kV2FixedLength + length) return ProxyParse::kNeedMore;

  out.length = kV2FixedLength + length;
  out.version = 2;
  out.source.reset();
  out.destination.reset();
  if (addrLen == 0) return ProxyParse::kDone;  // LOCAL, or PROXY over AF_UNSPEC: all skipped
  // TLVs: type, 16-bit length, value; they must exactly fill what follows the addresses.
  const size_t end = kV2FixedLength + length;
  size_t pos = kV2FixedLength + addrLen;
  while (pos < end) {
    if (end - pos < 3) return invalid(error, "v2: truncated TLV");
    const size_t tlvLength = readBe16(b + pos + 1);
    if (end - pos - 3 < tlvLength) return invalid(error, "v2: TLV overruns the header");
    pos += 3 + tlvLength;
  }
  const unsigned char* a = b + kV2FixedLength;
  if (family == kFamTcp4) {
    out.source = makeV4(a, readBe16(a + 8));
    out.destination = makeV4(a + 4, readBe16(a + 10));
  } else {
    out.source = makeV6(a, readBe16(a + 32));
    out.destination = makeV6(a + 16, readBe16(a + 34));
  }
  return ProxyParse::kDone;
}

// An endpoint as 16 address bytes (IPv4 IPv4-mapped when `asV6`) and a port; nullopt for other
// families.
struct Endpoint {
  bool v6 = false;
  unsigned char addr[16] = {};
  uint16_t port = 0;
};

std::optional<Endpoint> endpointOf(const SocketAddress& a) {
  Endpoint e;
  e.port = a.port();
  if (a.family() == AF_INET) {
    std::memcpy(e.addr, &reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr, 4);
    return e;
  }
  if (a.family() == AF_INET6) {
    e.v6 = true;
    std::memcpy(e.addr, &reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_addr, 16);
    return e;
  }
  return std::nullopt;
}

// Makes both endpoints the same family: an IPv4 one becomes IPv4-mapped IPv6 if the other is IPv6.
void widen(Endpoint& e) {
  if (e.v6) return;
  unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  std::memcpy(mapped + 12, e.addr, 4);
  std::memcpy(e.addr, mapped, 16);
  e.v6 = true;
}

bool pairOf(const SocketAddress& src, const SocketAddress& dst, Endpoint& s, Endpoint& d) {
  const std::optional<Endpoint> es = endpointOf(src);
  const std::optional<Endpoint> ed = endpointOf(dst);
  if (!es || !ed) return false;
  s = *es;
  d = *ed;
  if (s.v6 != d.v6) {
    widen(s);
    widen(d);
  }
  return true;
}

std::string addressText(const Endpoint& e) {
  char text[INET6_ADDRSTRLEN];
  ::inet_ntop(e.v6 ? AF_INET6 : AF_INET, e.addr, text, sizeof text);
  return text;
}

void appendBe16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v & 0xff));
}

}  // namespace

ProxyParse parseProxyHeader(const reactor::Buffer& input, ProxyHeader& out, std::string& error) {
  char scratch[kProxyMaxLength];
  const size_t n = input.copyOut(scratch, sizeof scratch);
  if (n == 0) return ProxyParse::kNeedMore;
  const std::string_view bytes(scratch, n);
  if (bytes[0] == 'P') return parseV1(bytes.substr(0, std::min(n, kProxyV1MaxLength)), out, error);
  if (bytes[0] == '\r') return parseV2(bytes, out, error);
  return invalid(error, "not a PROXY protocol header");
}

std::string encodeProxyV1(const SocketAddress& src, const SocketAddress& dst) {
  Endpoint s;
  Endpoint d;
  if (!pairOf(src, dst, s, d)) return "PROXY UNKNOWN\r\n";
  return std::string("PROXY ") + (s.v6 ? "TCP6 " : "TCP4 ") + addressText(s) + " " +
         addressText(d) + " " + std::to_string(s.port) + " " + std::to_string(d.port) + "\r\n";
}

std::string encodeProxyV2(const SocketAddress& src, const SocketAddress& dst) {
  std::string out(kV2Signature);
  out.push_back(static_cast<char>(0x20 | kCmdProxy));
  Endpoint s;
  Endpoint d;
  if (!pairOf(src, dst, s, d)) {
    out.push_back(static_cast<char>(kFamUnspec));
    appendBe16(out, 0);
    return out;
  }
  const size_t addrBytes = s.v6 ? 16 : 4;
  out.push_back(static_cast<char>(s.v6 ? kFamTcp6 : kFamTcp4));
  appendBe16(out, static_cast<uint16_t>(s.v6 ? kAddrLenTcp6 : kAddrLenTcp4));
  out.append(reinterpret_cast<const char*>(s.addr), addrBytes);
  out.append(reinterpret_cast<const char*>(d.addr), addrBytes);
  appendBe16(out, s.port);
  appendBe16(out, d.port);
  return out;
}

}  // namespace evgate::gateway
