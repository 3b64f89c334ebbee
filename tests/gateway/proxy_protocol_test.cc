// PROXY protocol v1 / v2: the parser on valid, partial and malformed headers, and the encoders.

#include "gateway/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reactor/buffer.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {
namespace {

using reactor::Buffer;
using reactor::SocketAddress;

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

SocketAddress addr(const char* text) { return *SocketAddress::parse(text); }

struct Result {
  ProxyParse parse;
  ProxyHeader header;
  std::string error;
};

Result parse(const std::string& bytes) {
  Buffer b;
  b.append(bytes);
  Result r;
  r.parse = parseProxyHeader(b, r.header, r.error);
  EXPECT_EQ(b.length(), bytes.size());  // the input is left alone
  return r;
}

// Every strict prefix needs more; the whole header is done.
void expectByteByByte(const std::string& header) {
  Buffer b;
  for (size_t i = 0; i < header.size(); ++i) {
    ProxyHeader h;
    std::string error;
    EXPECT_EQ(parseProxyHeader(b, h, error), ProxyParse::kNeedMore) << "after " << i << " bytes";
    b.append(header.substr(i, 1));
  }
  ProxyHeader h;
  std::string error;
  EXPECT_EQ(parseProxyHeader(b, h, error), ProxyParse::kDone) << error;
  EXPECT_EQ(h.length, header.size());
}

std::string be16(uint16_t v) {
  return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

// A v2 header: version/command byte, family byte, then `body` (addresses and TLVs).
std::string v2(uint8_t verCmd, uint8_t family, const std::string& body) {
  return kSig + static_cast<char>(verCmd) + static_cast<char>(family) +
         be16(static_cast<uint16_t>(body.size())) + body;
}

std::string v4Body() {
  // 192.0.2.1:56324 -> 198.51.100.7:443
  return std::string("\xc0\x00\x02\x01\xc6\x33\x64\x07", 8) + be16(56324) + be16(443);
}

std::string v6Body() {
  std::string s(32, '\0');
  s[0] = '\x20';
  s[1] = '\x01';
  s[2] = '\x0d';
  s[3] = '\xb8';
  s[15] = '\x01';  // 2001:db8::1
  s[16] = '\x20';
  s[17] = '\x01';
  s[18] = '\x0d';
  s[19] = '\xb8';
  s[31] = '\x02';  // 2001:db8::2
  return s + be16(1234) + be16(80);
}

// ---- v1 ----------------------------------------------------------------------------------------

TEST(ProxyV1, Tcp4) {
  const std::string h = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
  const Result r = parse(h + "payload");
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.version, 1);
  EXPECT_EQ(r.header.length, h.size());
  EXPECT_EQ(r.header.source, addr("192.0.2.1:56324"));
  EXPECT_EQ(r.header.destination, addr("198.51.100.7:443"));
}

TEST(ProxyV1, Tcp6) {
  const Result r = parse("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n");
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.source, addr("[2001:db8::1]:0"));
  EXPECT_EQ(r.header.destination, addr("[::ffff:10.0.0.1]:65535"));
}

TEST(ProxyV1, Unknown) {
  for (const std::string h : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ff::1 whatever 1 2\r\n"}) {
    const Result r = parse(h + "x");
    ASSERT_EQ(r.parse, ProxyParse::kDone) << h << r.error;
    EXPECT_EQ(r.header.length, h.size());
    EXPECT_FALSE(r.header.source);
    EXPECT_FALSE(r.header.destination);
  }
}

TEST(ProxyV1, LongestTcp6LineIsAccepted) {
  const std::string a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string h = "PROXY TCP6 " + a + " " + a + " 65535 65535\r\n";
  ASSERT_EQ(h.size(), kProxyV1MaxLength - 3);  // the spec's 107 counts "UNKNOWN" room
  EXPECT_EQ(parse(h).parse, ProxyParse::kDone);
}

TEST(ProxyV1, ByteByByte) {
  expectByteByByte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  expectByteByByte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
  expectByteByByte("PROXY UNKNOWN\r\n");
}

TEST(ProxyV1, Malformed) {
  const std::vector<std::string> bad = {
      "PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n",     // double space
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n",     // trailing space
      "PROXY  TCP4 192.0.2.1 198.51.100.7 1 2\r\n",     // double space after PROXY
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 65536\r\n",  // port > 65535
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 99999\r\n",  // port > 65535
      "PROXY TCP4 192.0.2.1 198.51.100.7 01 2\r\n",     // leading zero
      "PROXY TCP4 192.0.2.1 198.51.100.7 -1 2\r\n",     // sign
      "PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n",        // missing field
      "PROXY TCP4 192.0.2.1 2001:db8::1 1 2\r\n",       // mixed families
      "PROXY TCP6 192.0.2.1 198.51.100.7 1 2\r\n",      // IPv4 under TCP6
      "PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n",    // bad address
      "PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n",        // short address
      "PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n",      // protocol
      "PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n",      // case
      "PROXY UNKNOWNX\r\n",                             // not UNKNOWN
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n",        // LF only
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\rX",       // CR without LF
      "PROXY TCP4 192.0.2.1\t198.51.100.7 1 2\r\n",     // tab
      "PROXY \r\n",                                     // nothing
      "PROXX TCP4",                                     // bad prefix, early
      "PROXY TCP5",                                     // bad protocol, early
      "PROXY TCP4 1.2.3.4  ",                           // double space, early
      "GET / HTTP/1.1\r\n",                             // garbage
      std::string("\0\0\0\0", 4),                       // garbage
  };
  for (const std::string& b : bad) {
    const Result r = parse(b);
    EXPECT_EQ(r.parse, ProxyParse::kInvalid) << b;
    EXPECT_FALSE(r.error.empty()) << b;
  }
}

TEST(ProxyV1, Overlong) {
  std::string h = "PROXY UNKNOWN " + std::string(200, 'a');
  EXPECT_EQ(parse(h.substr(0, 106)).parse, ProxyParse::kNeedMore);
  EXPECT_EQ(parse(h.substr(0, 107)).parse, ProxyParse::kInvalid);
  EXPECT_EQ(parse(h + "\r\n").parse, ProxyParse::kInvalid);
  // Exactly 107 with its CRLF is fine.
  EXPECT_EQ(parse(h.substr(0, 105) + "\r\n").parse, ProxyParse::kDone);
  EXPECT_EQ(parse(h.substr(0, 106) + "\r\n").parse, ProxyParse::kInvalid);
}

// ---- v2 ----------------------------------------------------------------------------------------

TEST(ProxyV2, ProxyTcp4) {
  const std::string h = v2(0x21, 0x11, v4Body());
  ASSERT_EQ(h.size(), 28u);
  const Result r = parse(h + "payload");
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.version, 2);
  EXPECT_EQ(r.header.length, 28u);
  EXPECT_EQ(r.header.source, addr("192.0.2.1:56324"));
  EXPECT_EQ(r.header.destination, addr("198.51.100.7:443"));
}

TEST(ProxyV2, ProxyTcp6) {
  const Result r = parse(v2(0x21, 0x21, v6Body()));
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.length, 52u);
  EXPECT_EQ(r.header.source, addr("[2001:db8::1]:1234"));
  EXPECT_EQ(r.header.destination, addr("[2001:db8::2]:80"));
}

TEST(ProxyV2, Local) {
  for (const std::string& h :
       {v2(0x20, 0x00, ""), v2(0x20, 0x11, v4Body()), v2(0x20, 0x31, std::string(216, 'u'))}) {
    const Result r = parse(h + "x");
    ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
    EXPECT_EQ(r.header.length, h.size());
    EXPECT_FALSE(r.header.source);
    EXPECT_FALSE(r.header.destination);
  }
}

TEST(ProxyV2, ProxyUnspecIsAcceptedWithoutAddresses) {
  const Result r = parse(v2(0x21, 0x00, "abc"));
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.length, 19u);
  EXPECT_FALSE(r.header.source);
}

TEST(ProxyV2, TlvsAreSkipped) {
  const std::string tlvs = std::string("\x04", 1) + be16(0) +           // NOOP, empty
                           std::string("\x01", 1) + be16(2) + "h2" +    // ALPN
                           std::string("\x02", 1) + be16(5) + "a.com";  // AUTHORITY
  const std::string h = v2(0x21, 0x11, v4Body() + tlvs);
  const Result r = parse(h + "rest");
  ASSERT_EQ(r.parse, ProxyParse::kDone) << r.error;
  EXPECT_EQ(r.header.length, h.size());
  EXPECT_EQ(r.header.source, addr("192.0.2.1:56324"));
  expectByteByByte(h);
}

TEST(ProxyV2, LargestHeader) {
  const std::string fill(kProxyV2MaxLength - 16 - 12 - 3, 'z');
  const std::string h =
      v2(0x21, 0x11,
         v4Body() + std::string("\x04", 1) + be16(static_cast<uint16_t>(fill.size())) + fill);
  ASSERT_EQ(h.size(), kProxyV2MaxLength);
  EXPECT_EQ(parse(h).parse, ProxyParse::kDone);
  // One more byte: refused as soon as the length is known.
  const std::string over = v2(0x21, 0x11,
                              v4Body() + std::string("\x04", 1) +
                                  be16(static_cast<uint16_t>(fill.size() + 1)) + fill + "z");
  EXPECT_EQ(parse(over.substr(0, 16)).parse, ProxyParse::kInvalid);
}

TEST(ProxyV2, ByteByByte) {
  expectByteByByte(v2(0x21, 0x11, v4Body()));
  expectByteByByte(v2(0x21, 0x21, v6Body()));
  expectByteByByte(v2(0x20, 0x00, ""));
}

TEST(ProxyV2, Malformed) {
  std::string badSig = v2(0x21, 0x11, v4Body());
  badSig[6] = 'X';
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"bad signature", badSig},
      {"bad signature early", std::string("\r\n\r\n\0\r\nQUIX", 12)},
      {"\\r then garbage", "\r\nX"},
      {"version 1", v2(0x11, 0x11, v4Body())},
      {"version 3", v2(0x31, 0x11, v4Body())},
      {"command 2", v2(0x22, 0x11, v4Body())},
      {"command 15", v2(0x2f, 0x11, v4Body())},
      {"UDP over IPv4", v2(0x21, 0x12, v4Body())},
      {"UDP over IPv6", v2(0x21, 0x22, v6Body())},
      {"UNIX stream", v2(0x21, 0x31, std::string(216, 'u'))},
      {"family 4", v2(0x21, 0x41, v4Body())},
      {"transport 3", v2(0x21, 0x13, v4Body())},
      {"IPv4 too short", v2(0x21, 0x11, v4Body().substr(0, 11))},
      {"IPv6 too short", v2(0x21, 0x21, v6Body().substr(0, 35))},
      {"IPv6 family, IPv4-sized block", v2(0x21, 0x21, v4Body())},
      {"truncated TLV header", v2(0x21, 0x11, v4Body() + "\x04\x00")},
      {"TLV overruns", v2(0x21, 0x11, v4Body() + std::string("\x04\x00\x05xx", 5))},
      {"length over 536", kSig + "\x21\x11" + be16(521)},
      {"length 65535", kSig + "\x21\x11" + be16(65535)},
  };
  for (const auto& [what, b] : bad) {
    const Result r = parse(b);
    EXPECT_EQ(r.parse, ProxyParse::kInvalid) << what;
    EXPECT_FALSE(r.error.empty()) << what;
  }
  // Invalid already from the signature, version, command or family byte alone.
  EXPECT_EQ(parse(kSig.substr(0, 5) + "X").parse, ProxyParse::kInvalid);
  EXPECT_EQ(parse(kSig + "\x11").parse, ProxyParse::kInvalid);
  EXPECT_EQ(parse(kSig + "\x21\x12").parse, ProxyParse::kInvalid);
}

TEST(ProxyParse, EmptyNeedsMoreGarbageIsInvalid) {
  EXPECT_EQ(parse("").parse, ProxyParse::kNeedMore);
  EXPECT_EQ(parse("P").parse, ProxyParse::kNeedMore);
  EXPECT_EQ(parse("\r").parse, ProxyParse::kNeedMore);
  for (const std::string g : {"G", "SSH-2.0", "\x16\x03\x01", " PROXY"}) {
    EXPECT_EQ(parse(g).parse, ProxyParse::kInvalid) << g;
  }
}

TEST(ProxyParse, HeaderSplitAcrossChunks) {
  // A buffer made of several appends (chunks) parses the same.
  const std::string h = "PROXY TCP4 10.1.2.3 10.9.8.7 1000 2000\r\n";
  Buffer b;
  for (size_t i = 0; i < h.size(); i += 7) {
    Buffer part;
    part.append(h.substr(i, 7));
    b.appendBuffer(part);
  }
  ProxyHeader out;
  std::string error;
  ASSERT_EQ(parseProxyHeader(b, out, error), ProxyParse::kDone) << error;
  EXPECT_EQ(out.source, addr("10.1.2.3:1000"));
}

// ---- encoding ----------------------------------------------------------------------------------

TEST(ProxyEncode, V1Exact) {
  EXPECT_EQ(encodeProxyV1(addr("192.0.2.1:56324"), addr("198.51.100.7:443")),
            "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  EXPECT_EQ(encodeProxyV1(addr("[2001:db8::1]:1"), addr("[::1]:2")),
            "PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
  EXPECT_EQ(encodeProxyV1(addr("10.0.0.1:5"), addr("[::1]:2")),
            "PROXY TCP6 ::ffff:10.0.0.1 ::1 5 2\r\n");
  EXPECT_EQ(encodeProxyV1(SocketAddress(), addr("[::1]:2")), "PROXY UNKNOWN\r\n");
}

TEST(ProxyEncode, V2Exact) {
  EXPECT_EQ(encodeProxyV2(addr("192.0.2.1:56324"), addr("198.51.100.7:443")),
            v2(0x21, 0x11, v4Body()));
  EXPECT_EQ(encodeProxyV2(addr("[2001:db8::1]:1234"), addr("[2001:db8::2]:80")),
            v2(0x21, 0x21, v6Body()));
  EXPECT_EQ(encodeProxyV2(SocketAddress(), addr("1.2.3.4:5")), v2(0x21, 0x00, ""));
}

TEST(ProxyEncode, RoundTrips) {
  const std::vector<std::pair<const char*, const char*>> pairs = {
      {"127.0.0.1:1", "127.0.0.1:2"},
      {"0.0.0.0:0", "255.255.255.255:65535"},
      {"[::1]:443", "[fe80::1:2:3:4]:8080"},
      {"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::]:0"},
  };
  for (const auto& [s, d] : pairs) {
    for (int version : {1, 2}) {
      const std::string h =
          version == 1 ? encodeProxyV1(addr(s), addr(d)) : encodeProxyV2(addr(s), addr(d));
      const Result r = parse(h + "tail");
      ASSERT_EQ(r.parse, ProxyParse::kDone) << s << " v" << version << ": " << r.error;
      EXPECT_EQ(r.header.version, version);
      EXPECT_EQ(r.header.length, h.size());
      EXPECT_EQ(r.header.source, addr(s));
      EXPECT_EQ(r.header.destination, addr(d));
    }
  }
  // Mixed families come back IPv4-mapped.
  const Result r = parse(encodeProxyV2(addr("10.0.0.1:5"), addr("[::1]:2")));
  ASSERT_EQ(r.parse, ProxyParse::kDone);
  EXPECT_EQ(r.header.source, addr("[::ffff:10.0.0.1]:5"));
}

}  // namespace
}  // namespace evgate::gateway
