#pragma once

// Load balancing: which endpoint of a cluster the next flow (or the next connect attempt of a
// flow) goes to. One LoadBalancer per cluster per worker thread, so the pick path takes no lock;
// the policies and their guarantees are described in docs/load-balancing.md.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "gateway/config/config.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

// What a pick sees of one endpoint. The caller fills one view per endpoint of the cluster, in
// configuration order, from the worker's own counters.
struct EndpointView {
  uint32_t weight = 1;
  // Healthy (active checks), not ejected (outlier detection) and admin-active.
  bool available = true;
  // Connections this worker currently has open to the endpoint.
  uint32_t activeConnections = 0;
};

// Chooses endpoints for one cluster.
//
// An endpoint is *eligible* for a pick when it is available, has a non-zero weight and is not
// listed in `exclude`. The endpoint set a balancer serves is identified by the endpoints' count
// and weights: when the views passed to pick() differ in either from what the balancer was built
// for, it rebuilds its state (the only time pick() allocates). Availability and load changes never
// cause a rebuild.
//
// Thread rule: not thread-safe. Each worker owns its instances and calls them from its loop thread
// only.
class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;

  // The index in `endpoints` of the chosen endpoint, or nullopt when no endpoint is eligible
  // (none available, or the flow has already tried every available one). `clientHash` is
  // hashClientAddress() of the client; only kHashClientIp uses it. `exclude` holds indices this
  // flow already tried; a retry gets another endpoint whenever one is eligible. No allocation
  // unless the endpoint set changed.
  virtual std::optional<size_t> pick(std::span<const EndpointView> endpoints, uint64_t clientHash,
                                     std::span<const size_t> exclude) = 0;

  // A balancer for `policy`, prebuilt for endpoints with `weights` (so that the first pick does
  // not allocate). `seed` drives the random choices of kRandomTwo; give each worker its own.
  // kHashClientIp ignores it: every worker must map a client to the same endpoint.
  static std::unique_ptr<LoadBalancer> create(LbPolicy policy, std::span<const uint32_t> weights,
                                              uint64_t seed);
};

// A hash of the client's IP address for kHashClientIp: the port and the IPv6 scope id and flow
// label are ignored, an IPv4-mapped IPv6 address (::ffff:a.b.c.d) hashes as the IPv4 address, and
// IPv4 and IPv6 addresses are told apart. Fixed-key and platform-independent, so the value is the
// same in every worker, process and run. Safe from any thread.
uint64_t hashClientAddress(const reactor::SocketAddress& client);

}  // namespace evgate::gateway
