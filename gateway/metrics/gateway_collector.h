#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <vector>

#include "gateway/gateway.h"

namespace evgate::gateway::metrics {

// The data plane's metrics (docs/metrics.md: listeners, upstreams, backpressure, reactor), read
// from a running Gateway at scrape time: the workers' counter slots added up, the shared states'
// atomics, and a sample posted to each worker's loop (answered within `sampleTimeout`, or that
// worker's loop-only values are left out of the scrape).
//
// Thread rule: Collect() runs on the HTTP server's threads; it uses only the Gateway's
// thread-safe readers (metricsView, sampleWorkers). The gateway must outlive the collector's
// registration with the server.
class GatewayCollector : public prometheus::Collectable {
 public:
  static constexpr std::chrono::milliseconds kDefaultSampleTimeout{250};

  // `detail` (metrics.listener_detail): with kBasic, each listener exports its connection
  // counts and gauges and its bytes only (8 series rather than 27): what 10,000 listeners need
  // to keep a scrape small.
  explicit GatewayCollector(const Gateway& gateway,
                            std::chrono::milliseconds sampleTimeout = kDefaultSampleTimeout,
                            ListenerDetail detail = ListenerDetail::kFull)
      : gateway_(gateway), sampleTimeout_(sampleTimeout), detail_(detail) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Gateway& gateway_;
  const std::chrono::milliseconds sampleTimeout_;
  const ListenerDetail detail_;
};

}  // namespace evgate::gateway::metrics
