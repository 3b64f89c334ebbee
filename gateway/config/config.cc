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

}  // namespace evgate::gateway
