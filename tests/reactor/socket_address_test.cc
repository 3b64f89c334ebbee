#include "reactor/socket_address.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <string>

#include "tests/reactor/reactor_test_util.h"

namespace evgate::reactor {
namespace {

using testing::UniqueFd;

TEST(SocketAddressTest, ParsesIpv4) {
  const std::optional<SocketAddress> address = SocketAddress::parse("1.2.3.4:80");
  ASSERT_TRUE(address);
  EXPECT_EQ(address->family(), AF_INET);
  EXPECT_EQ(address->port(), 80);
  EXPECT_EQ(address->length(), sizeof(sockaddr_in));
  const auto* in4 = reinterpret_cast<const sockaddr_in*>(address->data());
  EXPECT_EQ(ntohl(in4->sin_addr.s_addr), 0x01020304u);
  EXPECT_EQ(address->toString(), "1.2.3.4:80");
}

TEST(SocketAddressTest, ParsesIpv6) {
  const std::optional<SocketAddress> address = SocketAddress::parse("[::1]:8080");
  ASSERT_TRUE(address);
  EXPECT_EQ(address->family(), AF_INET6);
  EXPECT_EQ(address->port(), 8080);
  EXPECT_EQ(address->length(), sizeof(sockaddr_in6));
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address->data());
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
  EXPECT_EQ(address->toString(), "[::1]:8080");
}

TEST(SocketAddressTest, FormatsAndParsesBackTheSameAddress) {
  for (const char* text :
       {"0.0.0.0:0", "127.0.0.1:65535", "255.255.255.255:1", "10.0.0.1:9901", "[::]:0",
        "[::1]:65535", "[2001:db8::1:0:0:1]:443", "[fe80::1]:22", "[::ffff:1.2.3.4]:80"}) {
    SCOPED_TRACE(text);
    const std::optional<SocketAddress> address = SocketAddress::parse(text);
    ASSERT_TRUE(address);
    EXPECT_EQ(address->toString(), text);
    const std::optional<SocketAddress> again = SocketAddress::parse(address->toString());
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *address);
  }
}

// Found by the units fuzzer (tests/fuzz): `Storage storage_{}` zeroed only the union's first
// member, a 16-byte sockaddr, so the rest of an IPv6 address (the scope id) held whatever was in
// memory: under clang, "[::1]:80" parsed with a scope id and printed as "[::1%4273590927]:80".
TEST(SocketAddressTest, DefaultConstructedIsZeroOverAWholeSockaddrIn6) {
  alignas(SocketAddress) unsigned char raw[sizeof(SocketAddress)];
  std::memset(raw, 0xa5, sizeof raw);
  // Default-initialised (no parentheses), as parse() makes the address it fills.
  auto* address = new (raw) SocketAddress;
  const auto* bytes = reinterpret_cast<const unsigned char*>(address->data());
  for (size_t i = 0; i < sizeof(sockaddr_in6); ++i) EXPECT_EQ(bytes[i], 0) << "byte " << i;
  address->~SocketAddress();
}

TEST(SocketAddressTest, ParsedIpv6HasNoScopeId) {
  const std::optional<SocketAddress> address = SocketAddress::parse("[::1]:80");
  ASSERT_TRUE(address);
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(address->data())->sin6_scope_id, 0u);
  EXPECT_EQ(address->toString(), "[::1]:80");
  EXPECT_EQ(SocketAddress::parse(address->toString()), address);
}

TEST(SocketAddressTest, FormatsIpv6InCanonicalForm) {
  const std::optional<SocketAddress> address = SocketAddress::parse("[2001:DB8:0:0:0:0:0:1]:80");
  ASSERT_TRUE(address);
  EXPECT_EQ(address->toString(), "[2001:db8::1]:80");
}

TEST(SocketAddressTest, AcceptsLeadingZerosInThePort) {
  const std::optional<SocketAddress> address = SocketAddress::parse("1.2.3.4:00080");
  ASSERT_TRUE(address);
  EXPECT_EQ(address->port(), 80);
}

TEST(SocketAddressTest, RejectsMalformedText) {
  using namespace std::string_literals;
  for (const std::string& text : {""s,
                                  ":80"s,
                                  "1.2.3.4"s,
                                  "1.2.3.4:"s,
                                  "1.2.3.4:65536"s,
                                  "1.2.3.4:100000"s,
                                  "1.2.3.4:-1"s,
                                  "1.2.3.4:+80"s,
                                  "1.2.3.4: 80"s,
                                  "1.2.3.4:80 "s,
                                  " 1.2.3.4:80"s,
                                  "1.2.3.4:0x50"s,
                                  "1.2.3.4:80:81"s,
                                  "1.2.3:80"s,
                                  "1.2.3.4.5:80"s,
                                  "256.1.1.1:80"s,
                                  "01.2.3.4:80"s,
                                  "localhost:80"s,
                                  "1.2.3.4\0junk:80"s,
                                  "::1:80"s,
                                  "[::1]"s,
                                  "[::1]:"s,
                                  "[::1]80"s,
                                  "[::1:80"s,
                                  "::1]:80"s,
                                  "[::1]]:80"s,
                                  "[[::1]:80"s,
                                  "[]:80"s,
                                  "[1.2.3.4]:80"s,
                                  "[fe80::1%eth0]:80"s,
                                  "[:::1]:80"s,
                                  "[::1]:70000"s}) {
    EXPECT_FALSE(SocketAddress::parse(text)) << '"' << text << '"';
  }
}

TEST(SocketAddressTest, LoopbackV4) {
  EXPECT_EQ(SocketAddress::loopbackV4().toString(), "127.0.0.1:0");
  EXPECT_EQ(SocketAddress::loopbackV4(9901), *SocketAddress::parse("127.0.0.1:9901"));
}

TEST(SocketAddressTest, EqualityComparesFamilyAddressAndPort) {
  const SocketAddress a = *SocketAddress::parse("1.2.3.4:80");
  EXPECT_EQ(a, *SocketAddress::parse("1.2.3.4:80"));
  EXPECT_NE(a, *SocketAddress::parse("1.2.3.4:81"));
  EXPECT_NE(a, *SocketAddress::parse("1.2.3.5:80"));
  EXPECT_NE(a, *SocketAddress::parse("[::ffff:1.2.3.4]:80"));
  EXPECT_NE(a, SocketAddress());
  EXPECT_EQ(SocketAddress(), SocketAddress());
}

TEST(SocketAddressTest, FromSockaddrCopiesTheAddress) {
  const SocketAddress original = *SocketAddress::parse("[2001:db8::7]:1234");
  const SocketAddress copy = SocketAddress::fromSockaddr(original.data(), original.length());
  EXPECT_EQ(copy, original);
  EXPECT_EQ(copy.length(), original.length());
  EXPECT_EQ(copy.toString(), "[2001:db8::7]:1234");
}

TEST(SocketAddressTest, UnspecifiedAddress) {
  const SocketAddress none;
  EXPECT_EQ(none.family(), AF_UNSPEC);
  EXPECT_EQ(none.length(), 0u);
  EXPECT_EQ(none.port(), 0);
  EXPECT_EQ(none.toString(), "<family 0>");
}

TEST(SocketAddressTest, LocalOfAndPeerOfAConnectedPair) {
  UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(server.get(), 0);
  const SocketAddress any = SocketAddress::loopbackV4();
  ASSERT_EQ(::bind(server.get(), any.data(), any.length()), 0);
  ASSERT_EQ(::listen(server.get(), 1), 0);
  const std::optional<SocketAddress> bound = SocketAddress::localOf(server.get());
  ASSERT_TRUE(bound);
  EXPECT_NE(bound->port(), 0);

  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(client.get(), 0);
  ASSERT_EQ(::connect(client.get(), bound->data(), bound->length()), 0);
  UniqueFd accepted(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(accepted.get(), 0);

  EXPECT_EQ(*SocketAddress::peerOf(client.get()), *bound);
  EXPECT_EQ(*SocketAddress::localOf(accepted.get()), *bound);
  EXPECT_EQ(*SocketAddress::peerOf(accepted.get()), *SocketAddress::localOf(client.get()));
}

TEST(SocketAddressTest, LocalOfAnInvalidFdFails) {
  errno = 0;
  EXPECT_FALSE(SocketAddress::localOf(-1));
  EXPECT_EQ(errno, EBADF);
  EXPECT_FALSE(SocketAddress::peerOf(-1));
}

}  // namespace
}  // namespace evgate::reactor
