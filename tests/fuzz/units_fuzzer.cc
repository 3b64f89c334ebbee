// Fuzzes the configuration's value parsers: durations, sizes, socket addresses, CIDRs and
// source addresses. Whatever a parser accepts, its formatter must print as text the parser reads
// back to the same value; and every value the formatters can print must parse back.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "gateway/config/cidr.h"
#include "gateway/config/config.h"
#include "gateway/config/units.h"
#include "reactor/socket_address.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using evgate::gateway::Cidr;
using evgate::gateway::Duration;
using evgate::reactor::SocketAddress;
namespace gw = evgate::gateway;

void checkDuration(std::string_view text) {
  const auto duration = gw::parseDuration(text);
  if (!duration) return;
  FUZZ_CHECK(duration->count() >= 0);
  const std::string formatted = gw::formatDuration(*duration);
  FUZZ_CHECK(gw::parseDuration(formatted) == duration);
  // Formatting is canonical: what it prints it prints again.
  FUZZ_CHECK(gw::formatDuration(*gw::parseDuration(formatted)) == formatted);
}

void checkSize(std::string_view text) {
  const auto size = gw::parseSize(text);
  if (!size) return;
  const std::string formatted = gw::formatSize(*size);
  FUZZ_CHECK(gw::parseSize(formatted) == size);
}

// The network address of `cidr` as a SocketAddress (port 0), to check that it contains itself.
SocketAddress networkAddress(const Cidr& cidr) {
  const std::string text = cidr.toString();
  const std::string host = text.substr(0, text.find('/'));
  const auto address =
      SocketAddress::parse(cidr.family() == AF_INET6 ? "[" + host + "]:0" : host + ":0");
  FUZZ_CHECK(address.has_value());
  return *address;
}

void checkCidr(std::string_view text) {
  const auto masked = Cidr::parseMasked(text);
  const auto strict = Cidr::parse(text);
  // parse() is parseMasked() restricted to networks without host bits.
  if (strict) FUZZ_CHECK(masked == strict);
  if (!masked) {
    FUZZ_CHECK(!strict);
    return;
  }
  FUZZ_CHECK(masked->family() == AF_INET || masked->family() == AF_INET6);
  FUZZ_CHECK(masked->prefixLength() >= 0 &&
             masked->prefixLength() <= (masked->family() == AF_INET ? 32 : 128));
  const std::string formatted = masked->toString();
  FUZZ_CHECK(Cidr::parse(formatted) == masked);
  FUZZ_CHECK(masked->contains(networkAddress(*masked)));
}

void checkSocketAddress(std::string_view text) {
  const auto address = SocketAddress::parse(text);
  if (!address) return;
  FUZZ_CHECK(address->family() == AF_INET || address->family() == AF_INET6);
  FUZZ_CHECK(SocketAddress::parse(address->toString()) == address);
}

void checkSourceAddress(std::string_view text) {
  const auto address = gw::parseSourceAddress(text);
  if (!address) return;
  FUZZ_CHECK(address->port() == 0);
  FUZZ_CHECK(gw::parseSourceAddress(gw::formatSourceAddress(*address)) == address);
}

// The other direction: any count the formatters are given comes back from the parsers.
void checkFormatters(const uint8_t* data, size_t size) {
  uint64_t raw = 0;
  std::memcpy(&raw, data, std::min(size, sizeof raw));
  const Duration duration{static_cast<Duration::rep>(raw >> 1)};  // every non-negative count
  FUZZ_CHECK(gw::parseDuration(gw::formatDuration(duration)) == duration);
  FUZZ_CHECK(gw::parseSize(gw::formatSize(raw)) == raw);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  checkDuration(text);
  checkSize(text);
  checkCidr(text);
  checkSocketAddress(text);
  checkSourceAddress(text);
  checkFormatters(data, size);
  return 0;
}
