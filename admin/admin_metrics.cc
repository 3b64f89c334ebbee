#include "admin/admin_metrics.h"

#include "admin/status_code_name.h"
#include "admin/watch_hub.h"
#include "evgate/admin/v1/admin.grpc.pb.h"
#include "gateway/metrics/family_builder.h"

namespace evgate::admin {
namespace {

using gateway::metrics::counterFamily;
using gateway::metrics::gaugeFamily;

constexpr std::string_view kAdminPrefix = "/evgate.admin.v1.Admin/";

// Reads the status a call answers with and counts it.
class RequestCounter : public grpc::experimental::Interceptor {
 public:
  RequestCounter(AdminMetrics& metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_.countRequest(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  AdminMetrics& metrics_;
  const std::string method_;
};

class RequestCounterFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RequestCounterFactory(AdminMetrics& metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const std::string_view method = info->method() != nullptr ? info->method() : "";
    if (!method.starts_with(kAdminPrefix)) return nullptr;
    return new RequestCounter(metrics_, std::string(method));
  }

 private:
  AdminMetrics& metrics_;
};

}  // namespace

AdminMetrics::AdminMetrics(const WatchHub& hub) : hub_(hub) {}

void AdminMetrics::countRequest(const std::string& fullMethod, grpc::StatusCode code) {
  if (!std::string_view(fullMethod).starts_with(kAdminPrefix)) return;
  std::string method = fullMethod.substr(kAdminPrefix.size());
  // Only the service's own methods: the name a client sends is not trusted as a label.
  static const google::protobuf::ServiceDescriptor* const service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::Admin::service_full_name());
  if (service == nullptr || service->FindMethodByName(method) == nullptr) return;
  const std::lock_guard lock(mutex_);
  ++requests_[{std::move(method), code}];
}

void AdminMetrics::configApplied(uint64_t generation,
                                 std::chrono::system_clock::time_point lastChange,
                                 size_t scheduledEvents) {
  generation_.store(generation, std::memory_order_relaxed);
  lastChangeSeconds_.store(std::chrono::duration<double>(lastChange.time_since_epoch()).count(),
                           std::memory_order_relaxed);
  scheduledEvents_.store(scheduledEvents, std::memory_order_relaxed);
}

void AdminMetrics::reloadFinished(bool succeeded) {
  (succeeded ? reloadSuccesses_ : reloadFailures_).fetch_add(1, std::memory_order_relaxed);
  lastReloadSucceeded_.store(succeeded, std::memory_order_relaxed);
}

std::vector<prometheus::MetricFamily> AdminMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  {
    auto requests = counterFamily("evgate_admin_requests_total",
                                  "Admin API calls answered, by RPC method and status code.");
    const std::lock_guard lock(mutex_);
    for (const auto& [key, count] : requests_) {
      requests.add({{"method", key.first}, {"code", statusCodeName(key.second)}},
                   static_cast<double>(count));
    }
    requests.moveTo(out);
  }
  constexpr auto kRelaxed = std::memory_order_relaxed;
  gaugeFamily("evgate_admin_watchers", "Watch streams open now.")
      .add({}, static_cast<double>(hub_.watcherCount()))
      .moveTo(out);
  counterFamily("evgate_admin_watchers_cut_off_total",
                "Watch streams cut off because they fell behind (their queue overflowed).")
      .add({}, static_cast<double>(hub_.cutOffCount()))
      .moveTo(out);
  gaugeFamily("evgate_admin_scheduled_events", "Scheduled events waiting to fire.")
      .add({}, static_cast<double>(scheduledEvents_.load(kRelaxed)))
      .moveTo(out);
  gaugeFamily("evgate_config_generation", "The configuration generation (+1 per applied change).")
      .add({}, static_cast<double>(generation_.load(kRelaxed)))
      .moveTo(out);
  gaugeFamily("evgate_config_last_change_timestamp_seconds",
              "Unix time of the last applied configuration change.")
      .add({}, lastChangeSeconds_.load(kRelaxed))
      .moveTo(out);
  counterFamily("evgate_config_reloads_total",
                "Configuration file reloads (SIGHUP or a change of the file), by result.")
      .add({{"result", "success"}}, static_cast<double>(reloadSuccesses_.load(kRelaxed)))
      .add({{"result", "failure"}}, static_cast<double>(reloadFailures_.load(kRelaxed)))
      .moveTo(out);
  gaugeFamily("evgate_config_last_reload_successful", "0 if the last reload failed, else 1.")
      .add({}, lastReloadSucceeded_.load(kRelaxed) ? 1 : 0)
      .moveTo(out);
  return out;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
AdminMetrics::interceptorFactory() {
  return std::make_unique<RequestCounterFactory>(*this);
}

}  // namespace evgate::admin
