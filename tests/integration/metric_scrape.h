#pragma once

// One sample of a daemon's /metrics, for tests that watch a counter or a gauge move:
//
//   double open = scrapeMetric(metricsPort, "/metrics", "evgate_admin_watchers", {});
//   ASSERT_TRUE(eventually([&] { return scrapeMetric(...) == 0; }));
//
// Thread rule: stateless; safe from any thread.

#include <cmath>
#include <cstdint>
#include <map>
#include <string>

#include "tests/integration/exposition.h"
#include "tests/integration/http_get.h"

namespace evgate::test {

// The value of `family`'s sample with exactly `labels` on http://127.0.0.1:port`path`; NaN if
// the scrape failed or has no such sample.
inline double scrapeMetric(uint16_t port, const std::string& path, const std::string& family,
                           const std::map<std::string, std::string>& labels) {
  const HttpResponse page = httpGet(port, path);
  if (!page.ok() || page.status != 200) return std::nan("");
  const Exposition exposition = parseExposition(page.body);
  const MetricFamily* found = exposition.find(family);
  if (found == nullptr) return std::nan("");
  for (const ExpositionSample& sample : found->samples) {
    if (sample.name == family && sample.labels == labels) return sample.value;
  }
  return std::nan("");
}

}  // namespace evgate::test
