#include "gateway/config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace evgate::gateway {
namespace {

template <typename T>
const T* findByName(const std::vector<T>& items, const std::string& name) {
  const auto it =
      std::find_if(items.begin(), items.end(), [&](const T& item) { return item.name == name; });
  return it == items.end() ? nullptr : &*it;
}

}  // namespace

const ClusterConfig* Config::findCluster(const std::string& name) const {
  return findByName(clusters, name);
}

const ListenerConfig* Config::findListener(const std::string& name) const {
  return findByName(listeners, name);
}

bool AdminConfig::isLoopback() const {
  const std::optional<reactor::SocketAddress> parsed = reactor::SocketAddress::parse(address);
  if (!parsed) return false;
  // 127.0.0.0/8 also covers ::ffff:127.x.y.z (Cidr::contains maps IPv4 into IPv6).
  static const Cidr kLoopbackV4 = *Cidr::parse("127.0.0.0/8");
  static const Cidr kLoopbackV6 = *Cidr::parse("::1");
  return kLoopbackV4.contains(*parsed) || kLoopbackV6.contains(*parsed);
}

std::optional<reactor::SocketAddress> parseSourceAddress(std::string_view text) {
  sockaddr_in6 v6{};
  if (reactor::parseIpAddress(AF_INET6, text, &v6.sin6_addr)) {
    v6.sin6_family = AF_INET6;
    return reactor::SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
  }
  sockaddr_in v4{};
  if (reactor::parseIpAddress(AF_INET, text, &v4.sin_addr)) {
    v4.sin_family = AF_INET;
    return reactor::SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  return std::nullopt;
}

std::string formatSourceAddress(const reactor::SocketAddress& address) {
  char text[INET6_ADDRSTRLEN] = {};
  const sockaddr* any = address.data();
  if (address.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(any)->sin_addr, text, sizeof text);
  } else if (address.family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(any)->sin6_addr, text, sizeof text);
  } else {
    return address.toString();
  }
  return text;
}

}  // namespace evgate::gateway
