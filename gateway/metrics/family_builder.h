#pragma once

// Builds prometheus-cpp MetricFamily values for a Collectable: what a scrape returns.

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gateway/stats.h"

namespace evgate::gateway::metrics {

using Labels = std::vector<prometheus::ClientMetric::Label>;

// One family: name, help and type, and the samples added to it.
class FamilyBuilder {
 public:
  FamilyBuilder(std::string name, std::string help, prometheus::MetricType type) {
    family_.name = std::move(name);
    family_.help = std::move(help);
    family_.type = type;
  }

  FamilyBuilder& add(Labels labels, double value) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    if (family_.type == prometheus::MetricType::Counter) {
      metric.counter.value = value;
    } else {
      metric.gauge.value = value;
    }
    family_.metric.push_back(std::move(metric));
    return *this;
  }

  FamilyBuilder& add(Labels labels, const stats::HistogramTotal& histogram) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    const std::vector<double>& bounds = histogram.buckets->seconds;
    for (size_t i = 0; i < bounds.size(); ++i) {
      metric.histogram.bucket.push_back({histogram.cumulative[i], bounds[i]});
    }
    metric.histogram.bucket.push_back(
        {histogram.cumulative.back(), std::numeric_limits<double>::infinity()});
    metric.histogram.sample_count = histogram.cumulative.back();
    metric.histogram.sample_sum = histogram.sumSeconds;
    family_.metric.push_back(std::move(metric));
    return *this;
  }

  // Moves the family into `out`; a family without samples is left out (nothing to say).
  void moveTo(std::vector<prometheus::MetricFamily>& out) {
    if (!family_.metric.empty()) out.push_back(std::move(family_));
  }

 private:
  prometheus::MetricFamily family_;
};

inline FamilyBuilder counterFamily(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help), prometheus::MetricType::Counter);
}
inline FamilyBuilder gaugeFamily(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help), prometheus::MetricType::Gauge);
}
inline FamilyBuilder histogramFamily(std::string name, std::string help) {
  return FamilyBuilder(std::move(name), std::move(help), prometheus::MetricType::Histogram);
}

}  // namespace evgate::gateway::metrics
