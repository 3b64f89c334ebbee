#pragma once

// HAProxy's PROXY protocol (versions 1 and 2, https://www.haproxy.org/download/2.9/doc/
// proxy-protocol.txt): a header a proxy sends before the payload of a TCP connection to tell the
// next hop the original client and destination addresses.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "reactor/buffer.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// The largest v1 header, "\r\n" included (the spec's 107 bytes).
inline constexpr size_t kProxyV1MaxLength = 107;
// The largest v2 header this parser accepts, the 16 fixed bytes included: a TCP header that
// carries the whole PROXY header in the first segment (536 bytes, the minimal MSS) is what the
// spec asks senders for, so anything longer is refused rather than waited for.
inline constexpr size_t kProxyV2MaxLength = 536;
// The most bytes parseProxyHeader() ever needs to decide.
inline constexpr size_t kProxyMaxLength = kProxyV2MaxLength;

struct ProxyHeader {
  // The original client and destination; nullopt for a v2 LOCAL command (a health check from
  // the proxy itself), a v2 PROXY with AF_UNSPEC, or a v1 "PROXY UNKNOWN": the connection's own
  // endpoints apply.
  std::optional<reactor::SocketAddress> source;
  std::optional<reactor::SocketAddress> destination;
  // Bytes the header takes at the front of the input (to drain before relaying the rest).
  size_t length = 0;
  int version = 0;  // 1 or 2
};

enum class ProxyParse {
  kNeedMore,  // the input is a strict prefix of a valid header (or empty)
  kInvalid,   // the input cannot start with a valid header; `error` says why
  kDone,      // a whole header was parsed into `out`
};

// Parses the PROXY header at the front of `input` (which it does not change). Strict: a v1 line
// must be "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with single spaces, addresses of the
// stated family, decimal ports 0..65535 without leading zeros, at most 107 bytes; or
// "PROXY UNKNOWN...\r\n". A v2 header must have the 12-byte signature, version 2, command LOCAL
// or PROXY, for PROXY a family of AF_UNSPEC, or AF_INET / AF_INET6 over STREAM (UNIX and DGRAM
// are refused: this is a TCP gateway), an address block long enough for its family, TLVs
// (skipped) that exactly fill the rest, and at most kProxyV2MaxLength bytes in all. kInvalid is
// returned as soon as the bytes present rule out a valid header. Reads at most kProxyMaxLength
// bytes of the input.
ProxyParse parseProxyHeader(const reactor::Buffer& input, ProxyHeader& out, std::string& error);

// "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (TCP6 if either is IPv6; an IPv4 address is then
// written IPv4-mapped); "PROXY UNKNOWN\r\n" if either address is not IPv4 / IPv6.
std::string encodeProxyV1(const reactor::SocketAddress& src, const reactor::SocketAddress& dst);
// A v2 PROXY command over STREAM without TLVs (AF_INET, or AF_INET6 as for v1); a PROXY command
// with AF_UNSPEC and no addresses if either is not IPv4 / IPv6.
std::string encodeProxyV2(const reactor::SocketAddress& src, const reactor::SocketAddress& dst);

}  // namespace evgate::gateway
