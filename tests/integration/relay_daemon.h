#pragma once

// The real evgate daemon for fault, load and soak tests, on a generated configuration: one
// cluster and one listener per route, named alike, plus the admin API and /metrics on
// 127.0.0.1 with ports of the kernel's choosing.
//
//   RelayDaemon daemon({{"echo", echo.address(), {}},
//                       {"hang", hang.address(), {"idle_timeout: 1s"}}},
//                      /*accessLog=*/false);
//   ASSERT_TRUE(daemon.ok()) << daemon.describe();
//   connectTo(daemon.port("echo"));
//   daemon.metric("evgate_listener_connections_active", {{"listener", "echo"}});
//   daemon.admin().ListFlows(...);
//
// Thread rule: metric() and admin() from any thread; the rest from the thread that owns it.

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/integration/metric_scrape.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"

namespace evgate::test {

struct Route {
  std::string name;
  std::string endpoint;
  std::vector<std::string> listenerKeys;  // more "key: value" lines for the listener
};

// `topLevel`: more top-level "key: value" lines (state_file, max_buffered_bytes, ...).
// `logQueueLimit`: log.queue_limit and access_log.queue_limit, if not empty.
inline std::string relayYaml(const std::vector<Route>& routes, bool accessLog, int workers,
                             const std::string& topLevel = "",
                             const std::string& logQueueLimit = "") {
  const std::string queueLimit =
      logQueueLimit.empty() ? std::string() : ", queue_limit: " + logQueueLimit;
  std::string yaml = "workers: " + std::to_string(workers) + "\ndrain_timeout: 5s\n" +
                     "log: { format: text, level: info" + queueLimit + " }\n" +
                     "access_log: { mode: " + (accessLog ? "stdout" : "off") + queueLimit + " }\n" +
                     "admin: { address: 127.0.0.1:0 }\nmetrics: { address: 127.0.0.1:0 }\n" +
                     topLevel + "clusters:\n";
  for (const Route& route : routes) {
    yaml += "  - name: " + route.name + "\n    endpoints: [ \"" + route.endpoint + "\" ]\n";
  }
  yaml += "listeners:\n";
  for (const Route& route : routes) {
    yaml +=
        "  - name: " + route.name + "\n    bind: 127.0.0.1:0\n    cluster: " + route.name + "\n";
    for (const std::string& key : route.listenerKeys) yaml += "    " + key + "\n";
  }
  return yaml;
}

class RelayDaemon {
 public:
  static constexpr auto kStartLimit = std::chrono::seconds(10);

  // With the access log on, it goes to the daemon's stdout (process().out()).
  RelayDaemon(const std::vector<Route>& routes, bool accessLog, int workers = 2,
              const std::string& topLevel = "", const std::string& logQueueLimit = "") {
    path_ = dir_.file("evgate.yaml");
    writeFile(path_, relayYaml(routes, accessLog, workers, topLevel, logQueueLimit));
    process_ =
        std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY, "--config", path_});
    if (!process_->started()) return;
    for (const Route& route : routes) {
      const auto bound = process_->waitForOutput(
          std::regex("listener " + route.name + R"( listening on 127\.0\.0\.1:(\d+))"), kStartLimit,
          Process::Stream::kStderr);
      if (!bound) return;
      ports_[route.name] = static_cast<uint16_t>(std::stoi((*bound)[1]));
    }
    const auto admin =
        process_->waitForOutput(std::regex(R"(admin API listening on (127\.0\.0\.1:\d+))"),
                                kStartLimit, Process::Stream::kStderr);
    if (!admin) return;
    adminChannel_ = grpc::CreateChannel((*admin)[1], grpc::InsecureChannelCredentials());
    admin_ = ::evgate::admin::v1::Admin::NewStub(adminChannel_);
    const auto metrics =
        process_->waitForOutput(std::regex(R"(metrics listening on 127\.0\.0\.1:(\d+)(/\S*))"),
                                kStartLimit, Process::Stream::kStderr);
    if (!metrics) return;
    metricsPort_ = static_cast<uint16_t>(std::stoi((*metrics)[1]));
    metricsPath_ = (*metrics)[2];
  }

  bool ok() const { return metricsPort_ != 0; }
  std::string describe() const { return "stderr so far:\n" + process_->err(); }
  uint16_t port(const std::string& listener) const { return ports_.at(listener); }
  Process& process() { return *process_; }
  pid_t pid() const { return process_->pid(); }
  // A file path in the daemon's own temporary directory (for state_file).
  std::string file(const std::string& name) const { return dir_.file(name); }
  ::evgate::admin::v1::Admin::Stub& admin() { return *admin_; }

  // A sample of the daemon's /metrics: the value of `family` with exactly `labels`, NaN if the
  // scrape failed or has no such series.
  double metric(const std::string& family, const std::map<std::string, std::string>& labels) {
    return scrapeMetric(metricsPort_, metricsPath_, family, labels);
  }

  // SIGTERM and the exit (the access log is complete then). The admin client hangs up first:
  // the daemon's graceful stop waits for connected admin clients (up to a second).
  bool stop() {
    admin_.reset();
    adminChannel_.reset();
    if (!process_->signal(SIGTERM)) return false;
    const auto exit = process_->wait(std::chrono::seconds(10));
    return exit && exit->code() == 0;
  }

 private:
  TempDir dir_{"evgate-relay"};
  std::string path_;
  std::unique_ptr<Process> process_;
  std::map<std::string, uint16_t> ports_;
  std::shared_ptr<grpc::Channel> adminChannel_;
  std::unique_ptr<::evgate::admin::v1::Admin::Stub> admin_;
  uint16_t metricsPort_ = 0;
  std::string metricsPath_;
};

}  // namespace evgate::test
