#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace evgate::gateway::metrics {

// The standard process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds)
// read from /proc/self at scrape time, and evgate_build_info{version}. A value /proc cannot give
// is left out of that scrape. Thread rule: Collect() from any thread.
class ProcessCollector : public prometheus::Collectable {
 public:
  explicit ProcessCollector(std::string version) : version_(std::move(version)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string version_;
};

}  // namespace evgate::gateway::metrics
