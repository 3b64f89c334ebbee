#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace evgate::admin {

class WatchHub;

// The control plane's metrics (docs/metrics.md, "Admin and configuration"): admin calls by
// method and code, Watch streams, the configuration generation and last change, scheduled events,
// and reloads of the configuration file.
//
// Thread rule: every method is safe from any thread (gRPC threads count calls, the control loop
// records changes, the metrics server collects).
class AdminMetrics : public prometheus::Collectable {
 public:
  // `hub`: where the watcher count comes from; must outlive the metrics server's use of this.
  explicit AdminMetrics(const WatchHub& hub);

  // One answered call of an Admin RPC; calls to other services or unknown methods are not counted
  // (a client must not be able to make up label values).
  void countRequest(const std::string& fullMethod, grpc::StatusCode code);
  // The configuration as applied now: its generation, when it last changed, how many scheduled
  // events wait.
  void configApplied(uint64_t generation, std::chrono::system_clock::time_point lastChange,
                     size_t scheduledEvents);
  // A reload of the configuration file ended (SIGHUP).
  void reloadFinished(bool succeeded);

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Counts every answered call of the server it is installed in (AdminServer::start).
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> interceptorFactory();

 private:
  const WatchHub& hub_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, grpc::StatusCode>, uint64_t> requests_;  // by method, code
  std::atomic<uint64_t> generation_{0};
  std::atomic<double> lastChangeSeconds_{0};
  std::atomic<uint64_t> scheduledEvents_{0};
  std::atomic<uint64_t> reloadSuccesses_{0};
  std::atomic<uint64_t> reloadFailures_{0};
  std::atomic<bool> lastReloadSucceeded_{true};
};

}  // namespace evgate::admin
