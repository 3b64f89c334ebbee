// The real evgate daemon's /metrics against its contract and a real Prometheus:
//
//   MetricsDoc        every family in a live scrape and every metric in docs/metrics.md agree
//                     exactly (name, type, label set, histogram buckets), after traffic that
//                     gives every family a series: relayed flows, refused connects, an unhealthy
//                     cluster, a paused listener, max_connections and allow-list rejections,
//                     backpressure, admin calls and a SIGHUP reload; and a few values show that
//                     traffic as the document's meanings say.
//   PromtoolCheckMetrics  the same scrape passes `promtool check metrics`.
//   PrometheusEvaluatesDashboardAndRules  a Prometheus scraping the daemon every second with
//                     deploy/prometheus/rules.yaml evaluates every dashboard and rule expression
//                     (deploy/grafana/evgate.json, through tests/deploy/dashboard.h) without
//                     error and with data, every rule is healthy, and the alerts this traffic
//                     sets off (failing connects, no available endpoint, a listener at
//                     max_connections) are pending or firing.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "evgate/admin/v1/admin.grpc.pb.h"
#include "tests/deploy/dashboard.h"
#include "tests/integration/exposition.h"
#include "tests/integration/grpc_probe.h"
#include "tests/integration/http_get.h"
#include "tests/integration/metrics_doc.h"
#include "tests/integration/net_util.h"
#include "tests/integration/process.h"
#include "tests/integration/prometheus_server.h"
#include "tests/integration/promtool.h"

namespace evgate::test {
namespace {

namespace v1 = ::evgate::admin::v1;

constexpr auto kStartLimit = 10s;
constexpr auto kPrompt = 2s;

// ---------------------------------------------------------------------------------------------
// A client connection the gateway should close without relaying: true if it did so promptly.
bool closedPromptly(uint16_t port) {
  const Fd fd(connectTo(port));
  return fd.get() >= 0 && closedByPeer(waitClosed(fd.get(), Clock::now() + kPrompt));
}

// One relayed echo flow that the client then ends: true if the bytes came back and it closed.
bool echoFlow(uint16_t port, const std::string& data) {
  const Fd fd(connectTo(port));
  if (fd.get() < 0) return false;
  const Exchange result = exchange(fd.get(), data, Clock::now() + kPrompt, /*toEof=*/true);
  return result.end == "eof" && result.received == data;
}

// The value of the sample `name{labels}` (exactly those labels), if the exposition has it.
std::optional<double> valueOf(const Exposition& exposition, const std::string& name,
                              const Labels& labels) {
  for (const MetricFamily& family : exposition.families) {
    for (const ExpositionSample& sample : family.samples) {
      if (sample.name == name && sample.labels == labels) return sample.value;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The daemon: one worker (so max_connections is exact) and a listener for each situation.
//
//   relay         -> live       an echo backend
//   backpressure  -> stalled    a backend that does not read; buffer_limit 1KiB
//   refusing      -> refusing   an endpoint that refuses, no health check, no ejection: every
//                               flow makes a failing connect attempt
//   unhealthy     -> unhealthy  the same endpoint with an active health check: marked down,
//                               so the cluster has no endpoint available
//   paused        -> live       paused: true
//   limited       -> live       max_connections: 1
//   guarded       -> live       allow: 10.0.0.0/8 (the test's 127.0.0.1 is refused)

const std::vector<std::string> kListeners = {"relay",  "backpressure", "refusing", "unhealthy",
                                             "paused", "limited",      "guarded"};

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(echo_.ok());
    ASSERT_TRUE(holding_.ok());
    refused_ = refusedPort();
    ASSERT_NE(refused_, 0);
    configPath_ = dir_.file("evgate.yaml");
    writeFile(configPath_, configYaml());
    daemon_ =
        std::make_unique<Process>(std::vector<std::string>{EVGATE_BINARY, "--config", configPath_});
    ASSERT_TRUE(daemon_->started()) << daemon_->error();
    const auto admin =
        daemon_->waitForOutput(std::regex(R"(admin API listening on 127\.0\.0\.1:(\d+))"),
                               kStartLimit, Process::Stream::kStderr);
    ASSERT_TRUE(admin) << "stderr so far:\n" << daemon_->err();
    adminPort_ = static_cast<uint16_t>(std::stoi((*admin)[1]));
    admin_ = v1::Admin::NewStub(
        grpc::CreateChannel(address(adminPort_), grpc::InsecureChannelCredentials()));
    // Logged right after the admin address.
    const auto metrics =
        daemon_->waitForOutput(std::regex(R"(metrics listening on 127\.0\.0\.1:(\d+)(/\S*))"),
                               kStartLimit, Process::Stream::kStderr);
    ASSERT_TRUE(metrics) << "no \"metrics listening on\" line; stderr:\n" << daemon_->err();
    metricsPort_ = static_cast<uint16_t>(std::stoi((*metrics)[1]));
    metricsPath_ = (*metrics)[2];
    const std::string log = daemon_->err();
    for (const std::string& name : kListeners) {
      std::smatch match;
      const std::regex line("listener " + name +
                            R"((?: \(paused\))? listening on 127\.0\.0\.1:(\d+) -> cluster)");
      ASSERT_TRUE(std::regex_search(log, match, line))
          << "no address for listener " << name << "; stderr:\n"
          << log;
      ports_[name] = static_cast<uint16_t>(std::stoi(match[1].str()));
    }
  }

  void TearDown() override {
    if (daemon_ != nullptr && daemon_->signal(SIGTERM)) daemon_->wait(5s);
  }

  std::string configYaml() const {
    const std::string refused = address(refused_);
    return "workers: 1\n"
           "drain_timeout: 1s\n"
           "log: { format: text, level: info }\n"
           "access_log: { mode: off }\n"
           "admin: { address: 127.0.0.1:0 }\n"
           "metrics: { address: 127.0.0.1:0 }\n"
           "clusters:\n"
           "  - { name: live, endpoints: [ \"" +
           echo_.address() +
           "\" ] }\n"
           "  - { name: stalled, endpoints: [ \"" +
           holding_.address() +
           "\" ] }\n"
           "  - name: refusing\n"
           "    endpoints: [ \"" +
           refused +
           "\" ]\n"
           "    max_connect_attempts: 1\n"
           "    outlier: { consecutive_failures: 0 }\n"
           "  - name: unhealthy\n"
           "    endpoints: [ \"" +
           refused +
           "\" ]\n"
           "    max_connect_attempts: 1\n"
           "    health_check: { interval: 200ms, timeout: 100ms, unhealthy_threshold: 1, "
           "healthy_threshold: 1 }\n"
           "listeners:\n"
           "  - { name: relay, bind: 127.0.0.1:0, cluster: live }\n"
           "  - { name: backpressure, bind: 127.0.0.1:0, cluster: stalled, buffer_limit: 1KiB }\n"
           "  - { name: refusing, bind: 127.0.0.1:0, cluster: refusing }\n"
           "  - { name: unhealthy, bind: 127.0.0.1:0, cluster: unhealthy }\n"
           "  - { name: paused, bind: 127.0.0.1:0, cluster: live, paused: true }\n"
           "  - { name: limited, bind: 127.0.0.1:0, cluster: live, max_connections: 1 }\n"
           "  - { name: guarded, bind: 127.0.0.1:0, cluster: live, allow: [ \"10.0.0.0/8\" ] }\n";
  }

  HttpResponse scrape() const { return httpGet(metricsPort_, metricsPath_); }

  // One round of the traffic that can repeat: a relayed flow, a refused and an unavailable
  // upstream, and the two kinds of rejection. False (with `what`) at the first thing that did
  // not happen as expected.
  bool trafficRound(std::string& what) const {
    const auto fail = [&](const char* why) {
      what = why;
      return false;
    };
    if (!echoFlow(ports_.at("relay"), "relayed by the gateway")) return fail("relay: no echo");
    if (!closedPromptly(ports_.at("refusing"))) return fail("refusing: flow not closed");
    if (!closedPromptly(ports_.at("unhealthy"))) return fail("unhealthy: flow not closed");
    if (!closedPromptly(ports_.at("limited"))) return fail("limited: not rejected");
    if (!closedPromptly(ports_.at("guarded"))) return fail("guarded: not rejected");
    return true;
  }

  // Everything that gives every family a series, once; leaves flows open (one on "limited",
  // one held back on "backpressure") for the gauges.
  void driveTraffic() {
    // Admin calls: one answered OK, one NOT_FOUND.
    v1::Status status;
    ASSERT_TRUE(admin_->GetStatus(callContext().get(), {}, &status).ok());
    v1::GetListenerRequest missing;
    missing.set_name("no-such-listener");
    v1::Listener listener;
    ASSERT_EQ(admin_->GetListener(callContext().get(), missing, &listener).error_code(),
              grpc::StatusCode::NOT_FOUND);

    // The one flow "limited" allows, held open; the round's extra connect is rejected.
    limitedHeld_ = Fd(connectTo(ports_.at("limited")));
    ASSERT_GE(limitedHeld_.get(), 0);
    ASSERT_TRUE(echoes(limitedHeld_.get(), "the one allowed flow"));
    for (int i = 0; i < 3; ++i) {
      std::string what;
      ASSERT_TRUE(trafficRound(what)) << what;
    }

    // Backpressure: a first flow is held back, then released (its paused time is counted when
    // reading resumes) and ended; a second one stays held back.
    Fd first(connectTo(ports_.at("backpressure")));
    ASSERT_GE(first.get(), 0);
    const auto written = writeUntilStalled(first.get(), 300ms, Clock::now() + 10s);
    ASSERT_TRUE(written) << "the flow to a backend that does not read was never held back";
    ASSERT_TRUE(eventually([&] { return holding_.accepted() == 1; }, kPrompt));
    holding_.release(0);
    ASSERT_TRUE(eventually([&] { return holding_.bytesRead() == *written; }, 10s))
        << holding_.bytesRead() << " of " << *written << " bytes arrived";
    ::shutdown(first.get(), SHUT_WR);
    EXPECT_TRUE(closedByPeer(waitClosed(first.get(), Clock::now() + 5s)));
    backpressureHeld_ = Fd(connectTo(ports_.at("backpressure")));
    ASSERT_GE(backpressureHeld_.get(), 0);
    ASSERT_TRUE(writeUntilStalled(backpressureHeld_.get(), 300ms, Clock::now() + 10s));

    // A reload of the unchanged file.
    ASSERT_TRUE(daemon_->signal(SIGHUP));
    ASSERT_TRUE(
        daemon_->waitForOutput(std::regex("SIGHUP: reloading"), kPrompt, Process::Stream::kStderr));
  }

  // Two configuration changes through the admin API: listener "paused" resumed and paused
  // again.
  void changeConfiguration() {
    v1::ResumeListenerRequest resume;
    resume.set_name("paused");
    v1::PauseListenerRequest pause;
    pause.set_name("paused");
    v1::Listener listener;
    ASSERT_TRUE(admin_->ResumeListener(callContext().get(), resume, &listener).ok());
    ASSERT_TRUE(admin_->PauseListener(callContext().get(), pause, &listener).ok());
  }

  // The values this traffic must show (beyond the families existing): how the scrape is known
  // to have caught up, and that the documented meanings hold. Empty when all hold.
  std::vector<std::string> expectedValues(const Exposition& exposition) const {
    struct Expectation {
      std::string name;
      Labels labels;
      double atLeast;
      double atMost;
    };
    const std::string refused = address(refused_);
    const std::vector<Expectation> expectations = {
        {"evgate_listener_paused", {{"listener", "paused"}}, 1, 1},
        {"evgate_listener_paused", {{"listener", "relay"}}, 0, 0},
        {"evgate_listener_max_connections", {{"listener", "limited"}}, 1, 1},
        {"evgate_listener_connections_active", {{"listener", "limited"}}, 1, 1},
        {"evgate_listener_connections_rejected_total",
         {{"listener", "limited"}, {"reason", "max_connections"}},
         3,
         1e9},
        {"evgate_listener_connections_rejected_total",
         {{"listener", "guarded"}, {"reason", "not_allowed"}},
         3,
         1e9},
        {"evgate_listener_connections_accepted_total", {{"listener", "relay"}}, 3, 1e9},
        {"evgate_listener_bytes_total",
         {{"listener", "relay"}, {"direction", "client_to_upstream"}},
         66,
         1e12},
        {"evgate_upstream_connect_failures_total",
         {{"cluster", "refusing"}, {"endpoint", refused}, {"reason", "refused"}},
         3,
         1e9},
        {"evgate_endpoint_healthy", {{"cluster", "unhealthy"}, {"endpoint", refused}}, 0, 0},
        {"evgate_endpoint_healthy", {{"cluster", "refusing"}, {"endpoint", refused}}, 1, 1},
        {"evgate_cluster_endpoints_available", {{"cluster", "unhealthy"}}, 0, 0},
        {"evgate_cluster_endpoints", {{"cluster", "unhealthy"}}, 1, 1},
        {"evgate_backpressure_flows_at_limit", {{"listener", "backpressure"}}, 1, 1},
        {"evgate_backpressure_read_pauses_total",
         {{"listener", "backpressure"}, {"direction", "client_to_upstream"}},
         2,
         1e9},
        {"evgate_config_reloads_total", {{"result", "success"}}, 1, 1},
        {"evgate_config_last_reload_successful", {}, 1, 1},
        {"evgate_admin_requests_total", {{"method", "GetListener"}, {"code", "NOT_FOUND"}}, 1, 1},
    };
    std::vector<std::string> problems;
    for (const Expectation& e : expectations) {
      const auto value = valueOf(exposition, e.name, e.labels);
      if (!value) {
        problems.push_back(e.name + describeLabels(e.labels) + ": no such sample");
      } else if (*value < e.atLeast || *value > e.atMost) {
        problems.push_back(e.name + describeLabels(e.labels) + " is " + std::to_string(*value) +
                           ", expected " + std::to_string(e.atLeast) + " to " +
                           std::to_string(e.atMost));
      }
    }
    return problems;
  }

  TempDir dir_{"evgate-metrics"};
  EchoServer echo_;
  HoldingServer holding_;
  uint16_t refused_ = 0;
  std::string configPath_;
  std::unique_ptr<Process> daemon_;
  uint16_t adminPort_ = 0;
  std::unique_ptr<v1::Admin::Stub> admin_;
  uint16_t metricsPort_ = 0;
  std::string metricsPath_;
  std::map<std::string, uint16_t> ports_;
  Fd limitedHeld_;
  Fd backpressureHeld_;
};

// ---------------------------------------------------------------------------------------------
// (a) The scrape and docs/metrics.md agree exactly.

TEST_F(MetricsTest, MetricsDoc) {
  const MetricsDoc doc = parseMetricsDoc(readText(EVGATE_SOURCE_DIR "/docs/metrics.md"));
  ASSERT_TRUE(doc.errors.empty()) << ::testing::PrintToString(doc.errors);
  ASSERT_FALSE(doc.metrics.empty());
  ASSERT_NO_FATAL_FAILURE(driveTraffic());

  // Counters move on the worker as the clients see their flows end; scrape until the values
  // caught up, then report everything that still differs.
  HttpResponse page;
  Exposition exposition;
  std::vector<std::string> differences;
  std::vector<std::string> wrongValues;
  const auto deadline = Clock::now() + 3s;
  for (;;) {
    page = scrape();
    ASSERT_TRUE(page.ok()) << page.error;
    ASSERT_EQ(page.status, 200) << page.body;
    exposition = parseExposition(page.body);
    differences = compareWithDoc(doc, exposition);
    wrongValues = expectedValues(exposition);
    if ((differences.empty() && wrongValues.empty()) || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(page.headers["content-type"].find("text/plain"), std::string::npos)
      << page.headers["content-type"];
  EXPECT_TRUE(exposition.errors.empty()) << ::testing::PrintToString(exposition.errors);
  for (const std::string& difference : differences) {
    ADD_FAILURE() << "docs/metrics.md and the scrape differ: " << difference;
  }
  for (const std::string& wrong : wrongValues) ADD_FAILURE() << wrong;
  if (HasFailure()) {
    std::cerr << "the scrape:\n" << page.body << "\nthe daemon's stderr:\n" << daemon_->err();
  }
}

// ---------------------------------------------------------------------------------------------
// (b) Prometheus's own linter accepts the scrape.

TEST_F(MetricsTest, PromtoolCheckMetrics) {
  ASSERT_NO_FATAL_FAILURE(driveTraffic());
  const HttpResponse page = scrape();
  ASSERT_TRUE(page.ok()) << page.error;
  ASSERT_EQ(page.status, 200) << page.body;
  const PromtoolVerdict verdict = promtoolCheckMetrics(PROMTOOL_BINARY, page.body);
  EXPECT_TRUE(verdict.passed()) << verdict.describe() << "\nthe scrape:\n" << page.body;
}

// ---------------------------------------------------------------------------------------------
// (c) A real Prometheus evaluates the dashboard and the rules.

// Repeats trafficRound() from a thread until stopped, so rates are non-zero while Prometheus
// scrapes. Counts rounds and remembers the first thing that went wrong.
class TrafficLoop {
 public:
  explicit TrafficLoop(std::function<bool(std::string&)> round) : round_(std::move(round)) {
    thread_ = std::thread([this] { run(); });
  }
  ~TrafficLoop() { stop(); }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int rounds() const { return rounds_.load(); }
  std::string firstProblem() const {
    std::lock_guard lock(mutex_);
    return problem_;
  }

 private:
  void run() {
    while (!stopping_) {
      std::string what;
      if (!round_(what)) {
        std::lock_guard lock(mutex_);
        if (problem_.empty()) problem_ = what;
      }
      rounds_.fetch_add(1);
      // A round every ~200 ms: steady rates without flooding the 1 s scrapes.
      for (int i = 0; i < 20 && !stopping_; ++i) std::this_thread::sleep_for(10ms);
    }
  }

  std::function<bool(std::string&)> round_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> rounds_{0};
  mutable std::mutex mutex_;
  std::string problem_;
  std::thread thread_;
};

const PromRule* ruleNamed(const std::vector<PromRule>& rules, const std::string& name) {
  const auto it = std::find_if(rules.begin(), rules.end(),
                               [&](const PromRule& rule) { return rule.name == name; });
  return it == rules.end() ? nullptr : &*it;
}

// An alert the traffic must set off, for the series whose `label` is `value`.
struct ExpectedAlert {
  std::string alert;
  std::string label;
  std::string value;
};

bool activeFor(const PromRule& rule, const ExpectedAlert& expected) {
  if (rule.state != "pending" && rule.state != "firing") return false;
  return std::any_of(rule.alertLabels.begin(), rule.alertLabels.end(), [&](const Labels& labels) {
    const auto it = labels.find(expected.label);
    return it != labels.end() && it->second == expected.value;
  });
}

TEST_F(MetricsTest, PrometheusEvaluatesDashboardAndRules) {
  const auto start = Clock::now();
  const auto deadline = start + 35s;
  const std::string rulesFile = EVGATE_SOURCE_DIR "/deploy/prometheus/rules.yaml";
  const std::string dashboardFile = EVGATE_SOURCE_DIR "/deploy/grafana/evgate.json";
  std::vector<DashboardQuery> dashboard;
  try {
    dashboard = loadDashboardQueries(dashboardFile, defaultSubstitutions());
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  ASSERT_FALSE(dashboard.empty()) << dashboardFile << " has no queries";

  // Prometheus first: its first scrape takes ~5 s, the traffic runs meanwhile.
  ASSERT_EQ(metricsPath_, "/metrics") << "the scrape job reads /metrics";
  PrometheusOptions options;
  options.binary = PROMETHEUS_BINARY;
  options.target = address(metricsPort_);
  options.ruleFiles = {rulesFile};
  PrometheusServer prometheus(options);
  ASSERT_TRUE(prometheus.ok()) << prometheus.error();

  ASSERT_NO_FATAL_FAILURE(driveTraffic());
  TrafficLoop traffic([this](std::string& what) { return trafficRound(what); });

  const PromQueryResult up = prometheus.waitForSeries("up{job=\"evgate\"} == 1", deadline);
  const PromList<PromTarget> targets = prometheus.targets();
  ASSERT_EQ(up.samples.size(), 1u)
      << up.describe()
      << "\nscrape error: " << (targets.items.empty() ? targets.error : targets.items[0].lastError);
  // A change Prometheus sees happen, for the dashboard's annotation of configuration changes.
  ASSERT_NO_FATAL_FAILURE(changeConfiguration());
  // rate() needs two scrapes with an increase between them.
  const PromQueryResult rated = prometheus.waitForSeries(
      "rate(evgate_listener_connections_accepted_total{listener=\"relay\"}[1m]) > 0", deadline);
  ASSERT_FALSE(rated.samples.empty()) << rated.describe();

  // Every dashboard expression and every rule's expression: no error, and data (alert
  // expressions are conditions, empty while they do not hold). Polled until all have data, so
  // that the recording rules the dashboard reads have run on the new samples.
  const PromList<PromRule> loaded = prometheus.waitForRulesEvaluated(deadline);
  ASSERT_TRUE(loaded.ok()) << loaded.error;
  ASSERT_FALSE(loaded.items.empty()) << rulesFile << " has no rules";
  struct Check {
    std::string origin;
    std::string expr;
    bool needsData;
  };
  std::vector<Check> checks;
  for (const DashboardQuery& query : dashboard) {
    checks.push_back({"dashboard " + query.origin, query.expr, true});
  }
  for (const PromRule& rule : loaded.items) {
    checks.push_back({rule.type + " rule " + rule.group + "/" + rule.name, rule.query,
                      rule.type == "recording"});
  }
  std::vector<std::string> problems;
  for (;;) {
    problems.clear();
    for (const Check& check : checks) {
      const PromQueryResult result = prometheus.query(check.expr);
      if (!result.ok()) {
        problems.push_back(check.origin + ": " + check.expr + "\n  " + result.describe());
      } else if (check.needsData && result.samples.empty()) {
        problems.push_back(check.origin + ": " + check.expr + "\n  no data");
      }
    }
    if (problems.empty() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(250ms);
  }
  for (const std::string& problem : problems) ADD_FAILURE() << problem;

  // Every rule healthy, and the alerts this traffic sets off pending or firing (their `for`
  // is longer than the test) for the series that set them off.
  const std::vector<ExpectedAlert> expectedAlerts = {
      {"EvgateUpstreamConnectFailureRatioHigh", "cluster", "refusing"},
      {"EvgateClusterNoHealthyEndpoint", "cluster", "unhealthy"},
      {"EvgateListenerNearMaxConnections", "listener", "limited"},
  };
  PromList<PromRule> rules = prometheus.rules();
  for (;;) {
    const bool settled =
        rules.ok() &&
        std::all_of(expectedAlerts.begin(), expectedAlerts.end(), [&](const ExpectedAlert& e) {
          const PromRule* rule = ruleNamed(rules.items, e.alert);
          return rule == nullptr || activeFor(*rule, e);
        });
    if (settled || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(250ms);
    rules = prometheus.rules();
  }
  ASSERT_TRUE(rules.ok()) << rules.error;
  for (const PromRule& rule : rules.items) {
    EXPECT_EQ(rule.health, "ok") << rule.group << "/" << rule.name << ": " << rule.lastError;
    EXPECT_EQ(rule.lastError, "") << rule.group << "/" << rule.name;
  }
  for (const ExpectedAlert& expected : expectedAlerts) {
    const PromRule* rule = ruleNamed(rules.items, expected.alert);
    ASSERT_NE(rule, nullptr) << rulesFile << " has no alert " << expected.alert;
    std::string active;
    for (const Labels& labels : rule->alertLabels) active += "\n  " + describeLabels(labels);
    EXPECT_TRUE(activeFor(*rule, expected))
        << expected.alert << " is " << rule->state << "; expected pending or firing for "
        << expected.label << "=\"" << expected.value << "\"; its alerts:" << active;
  }

  traffic.stop();
  EXPECT_EQ(traffic.firstProblem(), "") << "after " << traffic.rounds() << " rounds";
  EXPECT_LT(Clock::now() - start, 40s);
}

}  // namespace
}  // namespace evgate::test
