#include "gateway/config/config.h"

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

}  // namespace evgate::gateway
