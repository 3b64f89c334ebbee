// The metrics' values (docs/metrics.md) read by GatewayCollector::Collect() from a real Gateway
// with two workers, driven over loopback sockets: what a scrape would serialize, checked against
// what the clients did. Counters move on the workers' threads as flows end, so a value that
// follows a client's action is waited for (a deadline on a condition, never a guessed sleep).
// Also the ProcessCollector's process_* values and evgate_build_info.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gateway/config/cidr.h"
#include "gateway/gateway.h"
#include "gateway/metrics/gateway_collector.h"
#include "gateway/metrics/process_collector.h"
#include "gateway/proxy_protocol.h"
#include "reactor/socket_address.h"
#include "tests/gateway/blackhole.h"
#include "tests/gateway/gateway_test_util.h"

namespace evgate::gateway {
namespace {

using namespace std::chrono_literals;
using metrics::GatewayCollector;
using metrics::ProcessCollector;
using reactor::SocketAddress;
using testing::baseConfig;
using testing::Blackhole;
using testing::closedByPeer;
using testing::clusterOf;
using testing::connectTo;
using testing::EchoBackend;
using testing::echoes;
using testing::eventually;
using testing::HoldingBackend;
using testing::listenerOf;
using testing::loopback;
using testing::sendAll;
using testing::UniqueFd;
using testing::waitClosed;
using testing::writeUntilStalled;
using Clock = std::chrono::steady_clock;

// A label set, compared as a set (order does not matter).
using Labels = std::map<std::string, std::string>;

std::string describe(const Labels& labels) {
  std::string text = "{";
  for (const auto& [name, value] : labels) {
    if (text.size() > 1) text += ",";
    text.append(name).append("=\"").append(value).append("\"");
  }
  return text + "}";
}

Labels labelsOf(const prometheus::ClientMetric& metric) {
  Labels labels;
  for (const auto& label : metric.label) labels[label.name] = label.value;
  return labels;
}

// What one Collect() returned, with lookups by family name and exact label set.
class Scrape {
 public:
  explicit Scrape(std::vector<prometheus::MetricFamily> families)
      : families_(std::move(families)) {}

  const std::vector<prometheus::MetricFamily>& families() const { return families_; }

  const prometheus::MetricFamily* family(const std::string& name) const {
    for (const auto& family : families_) {
      if (family.name == name) return &family;
    }
    return nullptr;
  }

  // The series of family `name` with exactly `labels`.
  const prometheus::ClientMetric* series(const std::string& name, const Labels& labels) const {
    const prometheus::MetricFamily* found = family(name);
    if (found == nullptr) return nullptr;
    const prometheus::ClientMetric* match = nullptr;
    for (const auto& metric : found->metric) {
      if (labelsOf(metric) != labels) continue;
      EXPECT_EQ(match, nullptr) << name << describe(labels) << " appears twice";
      match = &metric;
    }
    return match;
  }

  // A counter's or gauge's value.
  std::optional<double> value(const std::string& name, const Labels& labels) const {
    const prometheus::ClientMetric* metric = series(name, labels);
    if (metric == nullptr) return std::nullopt;
    switch (family(name)->type) {
      case prometheus::MetricType::Counter:
        return metric->counter.value;
      case prometheus::MetricType::Gauge:
        return metric->gauge.value;
      default:
        ADD_FAILURE() << name << " is neither a counter nor a gauge";
        return std::nullopt;
    }
  }

  // A histogram's count of observations.
  std::optional<uint64_t> count(const std::string& name, const Labels& labels) const {
    const prometheus::ClientMetric* metric = series(name, labels);
    if (metric == nullptr) return std::nullopt;
    EXPECT_EQ(family(name)->type, prometheus::MetricType::Histogram) << name;
    return metric->histogram.sample_count;
  }

  std::optional<double> sum(const std::string& name, const Labels& labels) const {
    const prometheus::ClientMetric* metric = series(name, labels);
    if (metric == nullptr) return std::nullopt;
    return metric->histogram.sample_sum;
  }

  // The sum of a gauge or counter over every series whose labels include `labels`.
  double total(const std::string& name, const Labels& labels) const {
    const prometheus::MetricFamily* found = family(name);
    double sum = 0;
    if (found == nullptr) return sum;
    for (const auto& metric : found->metric) {
      const Labels has = labelsOf(metric);
      bool matches = true;
      for (const auto& [label, want] : labels) {
        const auto it = has.find(label);
        matches = matches && it != has.end() && it->second == want;
      }
      if (matches)
        sum += found->type == prometheus::MetricType::Counter ? metric.counter.value
                                                              : metric.gauge.value;
    }
    return sum;
  }

  // The families with a series labelled `label`=`value`.
  std::vector<std::string> familiesWith(const std::string& label, const std::string& value) const {
    std::vector<std::string> names;
    for (const auto& family : families_) {
      for (const auto& metric : family.metric) {
        const Labels labels = labelsOf(metric);
        const auto it = labels.find(label);
        if (it != labels.end() && it->second == value) {
          names.push_back(family.name);
          break;
        }
      }
    }
    return names;
  }

  // The series of family `name` (their label sets).
  std::set<Labels> labelSets(const std::string& name) const {
    std::set<Labels> sets;
    if (const prometheus::MetricFamily* found = family(name)) {
      for (const auto& metric : found->metric) sets.insert(labelsOf(metric));
    }
    return sets;
  }

  std::string text() const { return prometheus::TextSerializer().Serialize(families_); }

 private:
  std::vector<prometheus::MetricFamily> families_;
};

// The close reasons a flow can end with: the documented values of flows_closed_total's reason.
const std::vector<std::string> kCloseReasons = {
    "client_eof",     "upstream_eof",   "client_reset",
    "upstream_reset", "idle_timeout",   "half_close_timeout",
    "max_lifetime",   "connect_failed", "no_healthy_upstream",
    "admin",          "drain",          "proxy_protocol_error"};

// A blocking client connected to `to` whose socket buffer `option` (SO_SNDBUF or SO_RCVBUF) is
// set small before connecting: a receive buffer shrunk after the handshake can make the kernel
// drop what the window had already promised, and the sender's retransmits back off for seconds.
UniqueFd connectWithSmallBuffer(const SocketAddress& to, int option) {
  UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int small = 4096;
  if (fd.get() < 0 || ::setsockopt(fd.get(), SOL_SOCKET, option, &small, sizeof small) != 0 ||
      ::connect(fd.get(), to.data(), to.length()) != 0) {
    ADD_FAILURE() << "cannot connect to " << to.toString() << ": " << std::strerror(errno);
    fd.reset();
  }
  return fd;
}

// One echo flow through `bound` that the client ends with a FIN after sending `data`: true if
// the bytes came back and the gateway closed the client side.
bool echoFlow(const SocketAddress& bound, const std::string& data) {
  const UniqueFd fd = connectTo(bound);
  if (fd.get() < 0) return false;
  const test::Exchange result = test::exchange(fd.get(), data, Clock::now() + 10s, /*toEof=*/true);
  return result.end == "eof" && result.received == data;
}

// ---------------------------------------------------------------------------------------------

class MetricsCollectorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    collector_.reset();
    gateway_.reset();
  }

  void start(const Config& config, NoticeSink* notices = nullptr) {
    gateway_ = std::make_unique<Gateway>(config);
    if (notices != nullptr) gateway_->setNoticeSink(notices);
    const std::optional<std::string> error = gateway_->start();
    ASSERT_FALSE(error) << *error;
    // A generous sample timeout: sanitizer builds answer slowly, and a missing answer would
    // leave the loop-only gauges out of the scrape.
    collector_ = std::make_unique<GatewayCollector>(*gateway_, 10s, config.metrics.listenerDetail);
  }

  void reload(const Config& next) {
    const std::optional<std::string> error = gateway_->reload(next);
    ASSERT_FALSE(error) << *error;
  }

  Scrape scrape() const { return Scrape(collector_->Collect()); }

  SocketAddress bound(const std::string& listener) const {
    for (const auto& state : gateway_->listeners()) {
      if (state->config.name == listener) return state->bound;
    }
    ADD_FAILURE() << "no listener " << listener;
    return SocketAddress();
  }

  // Waits until the counter or gauge `name{labels}` holds `condition` (described by `what`).
  ::testing::AssertionResult settles(const std::string& name, const Labels& labels,
                                     const std::function<bool(double)>& condition,
                                     const std::string& what, Clock::duration limit = 10s) const {
    std::optional<double> last;
    const bool held = eventually(
        [&] {
          last = scrape().value(name, labels);
          return last && condition(*last);
        },
        limit);
    if (held) return ::testing::AssertionSuccess();
    auto failure = ::testing::AssertionFailure() << name << describe(labels) << " is ";
    if (last) {
      failure << *last;
    } else {
      failure << "absent";
    }
    return failure << "; expected " << what << "\nthe last scrape:\n" << scrape().text();
  }

  ::testing::AssertionResult settlesAt(const std::string& name, const Labels& labels,
                                       double expected) const {
    return settles(
        name, labels, [expected](double v) { return v == expected; }, std::to_string(expected));
  }

  // Waits until the histogram `name{labels}` has counted `expected` observations.
  ::testing::AssertionResult countSettlesAt(const std::string& name, const Labels& labels,
                                            uint64_t expected) const {
    std::optional<uint64_t> last;
    if (eventually([&] {
          last = scrape().count(name, labels);
          return last && *last == expected;
        })) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << name << describe(labels) << " count is "
           << (last ? std::to_string(*last) : std::string("absent")) << "; expected " << expected;
  }

  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<GatewayCollector> collector_;
};

// ---- Before start, after stop

TEST_F(MetricsCollectorTest, NothingBeforeStartOrAfterStop) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  Gateway gateway(config);
  const GatewayCollector collector(gateway);
  EXPECT_TRUE(collector.Collect().empty()) << Scrape(collector.Collect()).text();
  ASSERT_FALSE(gateway.start());
  EXPECT_FALSE(collector.Collect().empty());
  gateway.stop();
  EXPECT_TRUE(collector.Collect().empty()) << Scrape(collector.Collect()).text();
}

// A NoticeSink that holds up the loop that hands it the first flow's end until released: a way
// to make one worker's loop stop answering (a real sink must never block; notice.h).
class LoopHolder final : public NoticeSink {
 public:
  void publish(Notice notice) override {
    if (notice.type != Notice::Type::kFlowClosed) return;
    std::unique_lock lock(mutex_);
    if (held_) return;  // one loop only
    held_ = Worker::workerOfFlow(notice.flowId);
    changed_.notify_all();
    changed_.wait(lock, [&] { return free_; });
  }
  bool wantsFlowNotices() const override { return true; }
  // The index of the worker held, once one is (nullopt if none is by `limit`).
  std::optional<uint32_t> waitHeld(std::chrono::seconds limit) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return held_.has_value(); });
    return held_;
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      free_ = true;
    }
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<uint32_t> held_;
  bool free_ = false;
};

// A loop that does not answer by the deadline is left out of what only the loop can tell; what
// is read without the loop is still there for every worker. The loop is held up by a notice
// sink that blocks (LoopHolder) on the first flow's end.
TEST_F(MetricsCollectorTest, ALoopThatDoesNotAnswerInTimeIsLeftOutOfTheLoopOnlyValues) {
  LoopHolder holder;
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config, &holder);
  // However the test ends, the held loop is let go before the gateway stops.
  struct ReleaseThenStop {
    LoopHolder& holder;
    std::unique_ptr<GatewayCollector>& collector;
    std::unique_ptr<Gateway>& gateway;
    ~ReleaseThenStop() {
      holder.release();
      collector.reset();
      gateway->stop();
    }
  } releaseThenStop{holder, collector_, gateway_};
  // Long enough for a loop that is not held to answer on a loaded machine; the held one never
  // does while it is held.
  const GatewayCollector impatient(*gateway_, 2s);
  const std::set<Labels> perWorker{{{"worker", "0"}}, {{"worker", "1"}}};

  // One flow: its end holds the loop of the worker that had it.
  ASSERT_TRUE(echoFlow(bound("web"), "one line"));
  const std::optional<uint32_t> held = holder.waitHeld(10s);
  ASSERT_TRUE(held) << "the flow's end never reached the notice sink";
  const std::string stuck = std::to_string(*held);
  const Scrape partial(impatient.Collect());
  ASSERT_EQ(partial.labelSets("evgate_reactor_timers"),
            (std::set<Labels>{{{"worker", stuck == "0" ? "1" : "0"}}}))
      << partial.text();

  // Read without the loop: there for both workers, and the counters are all there.
  EXPECT_EQ(partial.labelSets("evgate_reactor_loop_iterations_total"), perWorker);
  EXPECT_EQ(partial.labelSets("evgate_reactor_loop_iteration_duration_seconds"), perWorker);
  EXPECT_EQ(partial.labelSets("evgate_reactor_queued_functions"), perWorker);
  EXPECT_EQ(partial.value("evgate_listener_connections_accepted_total", {{"listener", "web"}}),
            1.0);
  EXPECT_EQ(partial.labelSets("evgate_listener_flows_closed_total").size(), kCloseReasons.size());
  // Only the loop can tell: the stuck worker's events are left out, and the per-listener
  // gauges altogether (a partial sum would look like a drop).
  EXPECT_EQ(partial.labelSets("evgate_reactor_events").size(), 3u);
  EXPECT_EQ(partial.value("evgate_reactor_events", {{"worker", stuck}, {"state", "pending"}}),
            std::nullopt);
  EXPECT_EQ(partial.value("evgate_backpressure_buffered_bytes", {{"listener", "web"}}),
            std::nullopt);
  EXPECT_EQ(partial.value("evgate_backpressure_flows_at_limit", {{"listener", "web"}}),
            std::nullopt);
  // The next scrape sees the sample posted by the last one still waiting in the stuck loop.
  const Scrape again(impatient.Collect());
  EXPECT_GE(again.value("evgate_reactor_queued_functions", {{"worker", stuck}}).value_or(0), 1.0)
      << again.text();
  EXPECT_EQ(again.labelSets("evgate_reactor_timers").size(), 1u);

  // Released, the loop answers again, and its queue empties.
  holder.release();
  EXPECT_TRUE(eventually([&] {
    const Scrape s(impatient.Collect());
    return s.labelSets("evgate_reactor_timers") == perWorker &&
           s.value("evgate_backpressure_buffered_bytes", {{"listener", "web"}}) == 0.0;
  }));
  EXPECT_TRUE(eventually([&] {
    return scrape().value("evgate_reactor_queued_functions", {{"worker", stuck}}) == 0.0;
  }));
}

// ---- Listeners: bytes, accepted, closed, duration

TEST_F(MetricsCollectorTest, EveryReasonAndDirectionIsPresentFromTheStartAtZero) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const Scrape s = scrape();
  const Labels web{{"listener", "web"}};

  std::set<Labels> closed;
  for (const std::string& reason : kCloseReasons) {
    closed.insert({{"listener", "web"}, {"reason", reason}});
    EXPECT_EQ(
        s.value("evgate_listener_flows_closed_total", {{"listener", "web"}, {"reason", reason}}),
        0.0)
        << reason;
  }
  EXPECT_EQ(s.labelSets("evgate_listener_flows_closed_total"), closed)
      << "exactly the documented close reasons (no \"none\", no accept-time refusals)";
  EXPECT_EQ(s.labelSets("evgate_listener_connections_rejected_total"),
            (std::set<Labels>{{{"listener", "web"}, {"reason", "max_connections"}},
                              {{"listener", "web"}, {"reason", "not_allowed"}},
                              {{"listener", "web"}, {"reason", "fd_limit"}},
                              {{"listener", "web"}, {"reason", "buffer_budget"}}}));
  for (const char* family : {"evgate_listener_bytes_total", "evgate_backpressure_read_pauses_total",
                             "evgate_backpressure_paused_seconds_total"}) {
    EXPECT_EQ(s.labelSets(family),
              (std::set<Labels>{{{"listener", "web"}, {"direction", "client_to_upstream"}},
                                {{"listener", "web"}, {"direction", "upstream_to_client"}}}))
        << family;
    EXPECT_EQ(s.total(family, web), 0.0) << family;
  }
  EXPECT_EQ(s.total("evgate_listener_connections_rejected_total", web), 0.0);
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", web), 0.0);
  EXPECT_EQ(s.value("evgate_listener_connections_active", web), 0.0);
  EXPECT_EQ(s.value("evgate_listener_max_connections", web), 10000.0);
  EXPECT_EQ(s.value("evgate_listener_paused", web), 0.0);
  EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", web), 0u);
  EXPECT_EQ(s.value("evgate_backpressure_buffered_bytes", web), 0.0);
  EXPECT_EQ(s.value("evgate_backpressure_flows_at_limit", web), 0.0);
}

TEST_F(MetricsCollectorTest, BasicListenerDetailExportsConnectionsAndBytesOnly) {
  EchoBackend backend;
  Config config = baseConfig();
  config.metrics.listenerDetail = ListenerDetail::kBasic;
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  UniqueFd client = connectTo(bound("web"));
  ASSERT_TRUE(echoes(client.get(), "12345"));
  client.reset();
  ASSERT_TRUE(eventually([&] { return gateway_->flowCount() == 0; }));

  const Scrape s = scrape();
  const Labels web{{"listener", "web"}};
  std::vector<std::string> families = s.familiesWith("listener", "web");
  std::sort(families.begin(), families.end());
  EXPECT_EQ(families,
            (std::vector<std::string>{
                "evgate_listener_bytes_total", "evgate_listener_connections_accepted_total",
                "evgate_listener_connections_active", "evgate_listener_connections_rejected_total",
                "evgate_listener_max_connections", "evgate_listener_paused"}));
  size_t series = 0;
  for (const std::string& family : families) series += s.family(family)->metric.size();
  EXPECT_EQ(series, 10u);
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", web), 1.0);
  EXPECT_EQ(s.total("evgate_listener_bytes_total", web), 10.0);
  // The other families are whole as ever.
  EXPECT_NE(s.family("evgate_upstream_connect_attempts_total"), nullptr);
  EXPECT_NE(s.family("evgate_reactor_loop_iterations_total"), nullptr);
}

TEST_F(MetricsCollectorTest, BytesPerDirectionAreExactlyWhatTheEchoClientsSentAndReceived) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const SocketAddress web = bound("web");

  // Sizes around and well past a read's chunk, on whichever workers the kernel picks.
  const std::vector<size_t> sizes = {1, 1000, 65536, 300'001};
  size_t sent = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(echoFlow(web, test::randomBytes(sizes[i], i + 1))) << "flow " << i;
    sent += sizes[i];
  }
  const Labels labels{{"listener", "web"}};
  const Labels c2u{{"listener", "web"}, {"direction", "client_to_upstream"}};
  const Labels u2c{{"listener", "web"}, {"direction", "upstream_to_client"}};
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "client_eof"}}, 4));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_listener_bytes_total", c2u), static_cast<double>(sent));
  EXPECT_EQ(s.value("evgate_listener_bytes_total", u2c), static_cast<double>(sent));
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", labels), 4.0);
  EXPECT_EQ(s.value("evgate_listener_connections_active", labels), 0.0);
  EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", labels), 4u);
  EXPECT_GT(s.sum("evgate_listener_flow_duration_seconds", labels).value_or(0), 0.0);
  // Every flow ended with the client's EOF: no other reason counted.
  EXPECT_EQ(s.total("evgate_listener_flows_closed_total", labels), 4.0);

  // A flow with bytes in one direction only: the client sends, the backend's echo is all the
  // other direction gets, so the two stay equal; a flow that sends nothing adds nothing.
  ASSERT_TRUE(echoFlow(web, ""));
  EXPECT_TRUE(settlesAt("evgate_listener_connections_accepted_total", labels, 5));
  EXPECT_TRUE(countSettlesAt("evgate_listener_flow_duration_seconds", labels, 5));
  const Scrape after = scrape();
  EXPECT_EQ(after.value("evgate_listener_bytes_total", c2u), static_cast<double>(sent));
  EXPECT_EQ(after.value("evgate_listener_bytes_total", u2c), static_cast<double>(sent));
}

TEST_F(MetricsCollectorTest, BytesAreCountedWhileAFlowIsStillOpen) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const UniqueFd client = connectTo(bound("web"));
  ASSERT_GE(client.get(), 0);
  ASSERT_TRUE(echoes(client.get(), "12345"));
  // The echo is back: both relays happened, the flow is open.
  const Labels c2u{{"listener", "web"}, {"direction", "client_to_upstream"}};
  const Labels u2c{{"listener", "web"}, {"direction", "upstream_to_client"}};
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total", c2u), 5.0);
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total", u2c), 5.0);
  const Labels web{{"listener", "web"}};
  EXPECT_EQ(scrape().value("evgate_listener_connections_active", web), 1.0);
  EXPECT_EQ(scrape().value("evgate_listener_connections_accepted_total", web), 1.0);
  EXPECT_EQ(scrape().count("evgate_listener_flow_duration_seconds", web), 0u)
      << "only ended flows are observed";
  ASSERT_TRUE(echoes(client.get(), std::string(70'000, 'z')));
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total", c2u), 70'005.0);
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total", u2c), 70'005.0);
}

TEST_F(MetricsCollectorTest, ConnectionsActiveCountsOpenFlowsAcrossWorkers) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const Labels web{{"listener", "web"}};
  const Labels endpoint{{"cluster", "c"}, {"endpoint", backend.address().toString()}};
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(connectTo(bound("web")));
    ASSERT_TRUE(echoes(clients.back().get(), "open " + std::to_string(i)));
    EXPECT_EQ(scrape().value("evgate_listener_connections_active", web), i + 1.0);
    EXPECT_EQ(scrape().value("evgate_upstream_flows_active", endpoint), i + 1.0);
  }
  clients.pop_back();  // closed: the flow ends (client_reset or client_eof)
  EXPECT_TRUE(settlesAt("evgate_listener_connections_active", web, 3));
  EXPECT_TRUE(settlesAt("evgate_upstream_flows_active", endpoint, 3));
  clients.clear();
  EXPECT_TRUE(settlesAt("evgate_listener_connections_active", web, 0));
  EXPECT_TRUE(settlesAt("evgate_upstream_flows_active", endpoint, 0));
  EXPECT_TRUE(countSettlesAt("evgate_listener_flow_duration_seconds", web, 4));
  EXPECT_EQ(scrape().total("evgate_listener_flows_closed_total", web), 4.0);
}

// Every close reason a test can bring about, each under its own name on its own listener, and
// nothing under any other reason.
TEST_F(MetricsCollectorTest, EveryCloseReasonIsCountedUnderItsOwnName) {
  EchoBackend echo;
  HoldingBackend stalled;
  const SocketAddress refused = loopback(test::refusedPort());
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("echo", {echo.address()}));
  config.clusters.push_back(clusterOf("stalled", {stalled.address()}));
  config.clusters.push_back(clusterOf("refused", {refused}));
  config.clusters[2].outlier.consecutiveFailures = 0;
  config.clusters.push_back(clusterOf("none", {echo.address()}));
  config.clusters[3].endpoints[0].state = EndpointAdminState::kDisabled;
  const auto add = [&config](const std::string& name, const std::string& cluster) {
    config.listeners.push_back(listenerOf(name, cluster));
    return &config.listeners.back();
  };
  add("client_eof", "echo");
  add("upstream_eof", "stalled");
  add("client_reset", "stalled");
  add("upstream_reset", "stalled");
  add("idle_timeout", "stalled")->idleTimeout = 100ms;
  add("half_close_timeout", "stalled")->halfCloseTimeout = 100ms;
  add("max_lifetime", "stalled")->maxLifetime = 100ms;
  add("connect_failed", "refused");
  add("no_healthy_upstream", "none");
  add("admin", "stalled");
  add("drain", "stalled");
  add("proxy_protocol_error", "echo")->acceptProxyProtocol = true;
  start(config);

  // A flow to the stalled backend, connected: the backend accepted it and the gateway saw its
  // connect succeed (before that, a reset from the backend is a failed connect). Its index at
  // the backend.
  size_t upstreams = 0;
  const auto connectedFlow = [&](const std::string& listener, UniqueFd& client) {
    client = connectTo(bound(listener));
    EXPECT_GE(client.get(), 0) << listener;
    EXPECT_TRUE(eventually([&] { return stalled.accepted() == upstreams + 1; })) << listener;
    EXPECT_TRUE(countSettlesAt("evgate_upstream_connect_duration_seconds", {{"cluster", "stalled"}},
                               upstreams + 1))
        << listener;
    return upstreams++;
  };
  UniqueFd client;

  ASSERT_TRUE(echoFlow(bound("client_eof"), "bye"));

  const size_t upstreamEof = connectedFlow("upstream_eof", client);
  stalled.endWrite(upstreamEof);
  EXPECT_EQ(waitClosed(client.get()), "eof");  // the upstream's FIN, passed on
  ::shutdown(client.get(), SHUT_WR);
  client.reset();

  connectedFlow("client_reset", client);
  const linger abort{1, 0};
  ASSERT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort), 0);
  client.reset();

  stalled.reset(connectedFlow("upstream_reset", client));
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));

  connectedFlow("idle_timeout", client);
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));

  connectedFlow("half_close_timeout", client);
  ::shutdown(client.get(), SHUT_WR);  // the upstream never ends its half
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));

  connectedFlow("max_lifetime", client);
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));

  for (const char* listener : {"connect_failed", "no_healthy_upstream"}) {
    client = connectTo(bound(listener));
    EXPECT_TRUE(closedByPeer(waitClosed(client.get()))) << listener;
  }

  for (const auto& [listener, reason] :
       {std::pair{"admin", CloseReason::kAdmin}, std::pair{"drain", CloseReason::kDrain}}) {
    connectedFlow(listener, client);
    FlowFilter filter;
    filter.listener = listener;
    EXPECT_EQ(gateway_->closeFlows(filter, 10, reason), 1u) << listener;
    EXPECT_TRUE(closedByPeer(waitClosed(client.get()))) << listener;
  }

  client = connectTo(bound("proxy_protocol_error"));
  ASSERT_TRUE(testing::sendAll(client.get(), "NOT A PROXY HEADER\r\n"));
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  client.reset();

  // Each listener is named after the one reason its flow must have ended with.
  for (const std::string& listener : kCloseReasons) {
    EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                          {{"listener", listener}, {"reason", listener}}, 1));
  }
  const Scrape s = scrape();
  for (const std::string& listener : kCloseReasons) {
    EXPECT_EQ(s.total("evgate_listener_flows_closed_total", {{"listener", listener}}), 1.0)
        << listener << " counted a flow under another reason too";
    EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", {{"listener", listener}}), 1u)
        << listener;
    EXPECT_EQ(s.value("evgate_listener_connections_active", {{"listener", listener}}), 0.0)
        << listener;
  }
}

TEST_F(MetricsCollectorTest, FlowDurationIsObservedInTheRightBucket) {
  HoldingBackend stalled;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("stalled", {stalled.address()}));
  config.listeners.push_back(listenerOf("web", "stalled"));
  config.listeners[0].idleTimeout = 150ms;
  start(config);
  const UniqueFd client = connectTo(bound("web"));
  const auto opened = Clock::now();
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  const double lasted = std::chrono::duration<double>(Clock::now() - opened).count();
  const Labels web{{"listener", "web"}};
  ASSERT_TRUE(countSettlesAt("evgate_listener_flow_duration_seconds", web, 1));
  const Scrape s = scrape();
  const prometheus::ClientMetric* metric = s.series("evgate_listener_flow_duration_seconds", web);
  ASSERT_NE(metric, nullptr);
  // Buckets 0.001, 0.01, 0.1, 0.5, ...: a flow of 150 ms (idle timeout) and less than 0.5 s is
  // in le="0.5" and not in le="0.1".
  std::map<double, uint64_t> cumulative;
  for (const auto& bucket : metric->histogram.bucket) {
    cumulative[bucket.upper_bound] = bucket.cumulative_count;
  }
  EXPECT_EQ(cumulative[0.1], 0u);
  if (lasted < 0.45) {
    EXPECT_EQ(cumulative[0.5], 1u) << "the flow lasted " << lasted << " s";
  }
  EXPECT_EQ(cumulative[std::numeric_limits<double>::infinity()], 1u);
  EXPECT_EQ(metric->histogram.bucket.size(), 13u) << "12 documented bounds and +Inf";
  EXPECT_GE(metric->histogram.sample_sum, 0.15);
  EXPECT_LE(metric->histogram.sample_sum, lasted + 0.05);
}

TEST_F(MetricsCollectorTest, ProxyProtocolHeadersAreNotRelayedBytes) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.clusters.push_back(clusterOf("sending", {backend.address()}));
  config.clusters[1].sendProxyProtocol = ProxyProtocol::kV1;
  config.listeners.push_back(listenerOf("receiving", "c"));
  config.listeners[0].acceptProxyProtocol = true;
  config.listeners.push_back(listenerOf("sending", "sending"));
  start(config);

  // The client's header is taken off; only what follows is relayed (and echoed).
  {
    const UniqueFd client = connectTo(bound("receiving"));
    ASSERT_TRUE(
        testing::sendAll(client.get(), "PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\npayload"));
    EXPECT_EQ(testing::receive(client.get(), 7), "payload");
  }
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "receiving"}, {"reason", "client_eof"}}, 1));
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total",
                           {{"listener", "receiving"}, {"direction", "client_to_upstream"}}),
            7.0);
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total",
                           {{"listener", "receiving"}, {"direction", "upstream_to_client"}}),
            7.0);

  // The header the gateway sends is not a relayed byte; the echo of it coming back is.
  {
    const UniqueFd client = connectTo(bound("sending"));
    ASSERT_GE(client.get(), 0);
    const std::string header =
        encodeProxyV1(*SocketAddress::localOf(client.get()), *SocketAddress::peerOf(client.get()));
    ASSERT_TRUE(testing::sendAll(client.get(), "abc"));
    EXPECT_EQ(testing::receive(client.get(), header.size() + 3), header + "abc");
    ::shutdown(client.get(), SHUT_WR);
    EXPECT_EQ(waitClosed(client.get()), "eof");
    EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                          {{"listener", "sending"}, {"reason", "client_eof"}}, 1));
    EXPECT_EQ(scrape().value("evgate_listener_bytes_total",
                             {{"listener", "sending"}, {"direction", "client_to_upstream"}}),
              3.0);
    EXPECT_EQ(scrape().value("evgate_listener_bytes_total",
                             {{"listener", "sending"}, {"direction", "upstream_to_client"}}),
              static_cast<double>(header.size() + 3));
  }
}

// ---- Listeners: rejections, paused

TEST_F(MetricsCollectorTest, RejectedByMaxConnectionsAndByTheAllowList) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("limited", "c"));
  config.listeners[0].maxConnections = 1;
  config.listeners.push_back(listenerOf("guarded", "c"));
  config.listeners[1].allow = {*Cidr::parse("10.0.0.0/8")};
  start(config);
  const Labels limited{{"listener", "limited"}};
  EXPECT_EQ(scrape().value("evgate_listener_max_connections", limited), 1.0);

  const UniqueFd held = connectTo(bound("limited"));
  ASSERT_TRUE(echoes(held.get(), "the one allowed flow"));
  for (int i = 0; i < 2; ++i) {
    const UniqueFd over = connectTo(bound("limited"));
    EXPECT_TRUE(closedByPeer(waitClosed(over.get())));
  }
  EXPECT_TRUE(settlesAt("evgate_listener_connections_rejected_total",
                        {{"listener", "limited"}, {"reason", "max_connections"}}, 2));
  {
    const UniqueFd outside = connectTo(bound("guarded"));
    EXPECT_TRUE(closedByPeer(waitClosed(outside.get())));
  }
  EXPECT_TRUE(settlesAt("evgate_listener_connections_rejected_total",
                        {{"listener", "guarded"}, {"reason", "not_allowed"}}, 1));

  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_listener_connections_rejected_total",
                    {{"listener", "limited"}, {"reason", "not_allowed"}}),
            0.0);
  EXPECT_EQ(s.value("evgate_listener_connections_rejected_total",
                    {{"listener", "guarded"}, {"reason", "max_connections"}}),
            0.0);
  // A rejected connection is neither accepted, nor active, nor a flow that ended.
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", limited), 1.0);
  EXPECT_EQ(s.value("evgate_listener_connections_active", limited), 1.0);
  EXPECT_EQ(s.total("evgate_listener_flows_closed_total", limited), 0.0);
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", {{"listener", "guarded"}}), 0.0);
  EXPECT_EQ(s.total("evgate_listener_flows_closed_total", {{"listener", "guarded"}}), 0.0);
  EXPECT_EQ(backend.accepted(), 1);
}

TEST_F(MetricsCollectorTest, PausedFollowsTheConfigurationThroughReloads) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  config.listeners.push_back(listenerOf("api", "c"));
  config.listeners[1].paused = true;  // paused from the start
  start(config);
  const Labels web{{"listener", "web"}};
  const Labels api{{"listener", "api"}};
  EXPECT_EQ(scrape().value("evgate_listener_paused", web), 0.0);
  EXPECT_EQ(scrape().value("evgate_listener_paused", api), 1.0);

  Config paused = config;
  paused.listeners[0].paused = true;
  paused.listeners[1].paused = false;
  paused.listeners[1].maxConnections = 5;
  reload(paused);
  // reload() returns once every worker applied it: no waiting.
  EXPECT_EQ(scrape().value("evgate_listener_paused", web), 1.0);
  EXPECT_EQ(scrape().value("evgate_listener_paused", api), 0.0);
  EXPECT_EQ(scrape().value("evgate_listener_max_connections", api), 5.0);

  reload(config);
  EXPECT_EQ(scrape().value("evgate_listener_paused", web), 0.0);
  EXPECT_EQ(scrape().value("evgate_listener_paused", api), 1.0);
  EXPECT_EQ(scrape().value("evgate_listener_max_connections", api), 10000.0);
}

// ---- Upstreams

TEST_F(MetricsCollectorTest, ASuccessfulConnectCountsAnAttemptADurationAndAnActiveFlow) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const std::string endpoint = backend.address().toString();
  const Labels labels{{"cluster", "c"}, {"endpoint", endpoint}};
  const Labels cluster{{"cluster", "c"}};
  {
    const Scrape s = scrape();
    EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", labels), 0.0);
    EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", cluster), 0u);
    EXPECT_EQ(s.value("evgate_upstream_flows_active", labels), 0.0);
    for (const char* reason : {"refused", "timeout", "error"}) {
      EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                        {{"cluster", "c"}, {"endpoint", endpoint}, {"reason", reason}}),
                0.0)
          << reason;
    }
  }

  UniqueFd client = connectTo(bound("web"));
  ASSERT_TRUE(echoes(client.get(), "connected"));
  {
    // Counted on connect, before any byte was relayed to the upstream.
    const Scrape s = scrape();
    EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", labels), 1.0);
    EXPECT_EQ(s.total("evgate_upstream_connect_failures_total", labels), 0.0);
    EXPECT_EQ(s.value("evgate_upstream_flows_active", labels), 1.0);
    EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", cluster), 1u);
    const double seconds = s.sum("evgate_upstream_connect_duration_seconds", cluster).value_or(-1);
    EXPECT_GE(seconds, 0.0);
    EXPECT_LT(seconds, 5.0);
  }
  client.reset();
  EXPECT_TRUE(settlesAt("evgate_upstream_flows_active", labels, 0));
  EXPECT_EQ(scrape().value("evgate_upstream_connect_attempts_total", labels), 1.0);
  EXPECT_EQ(scrape().count("evgate_upstream_connect_duration_seconds", cluster), 1u);
}

TEST_F(MetricsCollectorTest, ARefusedEndpointCountsRefusedFailuresAndConnectFailedCloses) {
  const uint16_t port = test::refusedPort();
  ASSERT_NE(port, 0);
  const SocketAddress refused = loopback(port);
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("down", {refused}));
  config.clusters[0].outlier.consecutiveFailures = 0;  // never ejected: every flow tries
  config.listeners.push_back(listenerOf("web", "down"));
  start(config);
  for (int i = 0; i < 3; ++i) {
    const UniqueFd client = connectTo(bound("web"));
    ASSERT_GE(client.get(), 0);
    EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  }
  const Labels web{{"listener", "web"}};
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "connect_failed"}}, 3));
  const Scrape s = scrape();
  const Labels endpoint{{"cluster", "down"}, {"endpoint", refused.toString()}};
  EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", endpoint), 3.0)
      << "one attempt per flow: the cluster has no other endpoint";
  EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                    {{"cluster", "down"}, {"endpoint", refused.toString()}, {"reason", "refused"}}),
            3.0);
  EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                    {{"cluster", "down"}, {"endpoint", refused.toString()}, {"reason", "timeout"}}),
            0.0);
  EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                    {{"cluster", "down"}, {"endpoint", refused.toString()}, {"reason", "error"}}),
            0.0);
  EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", {{"cluster", "down"}}), 0u)
      << "successful attempts only";
  EXPECT_EQ(s.value("evgate_upstream_flows_active", endpoint), 0.0);
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", web), 3.0);
  EXPECT_EQ(s.total("evgate_listener_flows_closed_total", web), 3.0);
  EXPECT_EQ(s.total("evgate_listener_bytes_total", web), 0.0);
  EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", web), 3u);
  // Health checks are off and ejection too: the endpoint stays available.
  EXPECT_EQ(s.value("evgate_endpoint_healthy", endpoint), 1.0);
  EXPECT_EQ(s.value("evgate_endpoint_ejected", endpoint), 0.0);
  EXPECT_EQ(s.value("evgate_cluster_endpoints_available", {{"cluster", "down"}}), 1.0);
}

TEST_F(MetricsCollectorTest, AFailedAttemptAndTheRetryThatSucceedsAreBothCounted) {
  EchoBackend backend;
  const SocketAddress refused = loopback(test::refusedPort());
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {refused, backend.address()}));
  config.clusters[0].outlier.consecutiveFailures = 0;
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  // Round robin on each worker: some flows try the refusing endpoint first, then the other.
  constexpr int kFlows = 6;
  for (int i = 0; i < kFlows; ++i) {
    ASSERT_TRUE(echoFlow(bound("web"), "flow " + std::to_string(i)));
  }
  const Labels web{{"listener", "web"}};
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "client_eof"}}, kFlows));
  const Scrape s = scrape();
  const Labels bad{{"cluster", "c"}, {"endpoint", refused.toString()}};
  const Labels good{{"cluster", "c"}, {"endpoint", backend.address().toString()}};
  const double failed = s.value("evgate_upstream_connect_attempts_total", bad).value_or(-1);
  EXPECT_GE(failed, 1.0) << "no flow tried the refusing endpoint first";
  EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                    {{"cluster", "c"}, {"endpoint", refused.toString()}, {"reason", "refused"}}),
            failed);
  EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", good), kFlows * 1.0);
  EXPECT_EQ(s.total("evgate_upstream_connect_failures_total", good), 0.0);
  EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", {{"cluster", "c"}}),
            static_cast<uint64_t>(kFlows));
  EXPECT_EQ(s.value("evgate_listener_flows_closed_total",
                    {{"listener", "web"}, {"reason", "connect_failed"}}),
            0.0);
  EXPECT_EQ(backend.accepted(), kFlows);
}

TEST_F(MetricsCollectorTest, AConnectTimeoutCountsATimeoutFailure) {
  Blackhole hole;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("hole", {hole.address()}));
  config.clusters[0].connectTimeout = 100ms;
  config.clusters[0].outlier.consecutiveFailures = 0;
  config.listeners.push_back(listenerOf("web", "hole"));
  start(config);
  const UniqueFd client = connectTo(bound("web"));
  ASSERT_GE(client.get(), 0);
  EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  const std::string endpoint = hole.address().toString();
  EXPECT_TRUE(settlesAt("evgate_upstream_connect_failures_total",
                        {{"cluster", "hole"}, {"endpoint", endpoint}, {"reason", "timeout"}}, 1));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total",
                    {{"cluster", "hole"}, {"endpoint", endpoint}}),
            1.0);
  EXPECT_EQ(s.value("evgate_upstream_connect_failures_total",
                    {{"cluster", "hole"}, {"endpoint", endpoint}, {"reason", "refused"}}),
            0.0);
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "connect_failed"}}, 1));
}

TEST_F(MetricsCollectorTest, AnAttemptCutShortByItsFlowClosingIsNotCounted) {
  Blackhole hole;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("hole", {hole.address()}));
  config.clusters[0].connectTimeout = 30s;
  config.listeners.push_back(listenerOf("web", "hole"));
  start(config);
  {
    UniqueFd client = connectTo(bound("web"));
    ASSERT_GE(client.get(), 0);
    ASSERT_TRUE(eventually([&] { return gateway_->flowCount() == 1; }));
    const linger abort{1, 0};
    ASSERT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort), 0);
  }
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "client_reset"}}, 1));
  const Labels endpoint{{"cluster", "hole"}, {"endpoint", hole.address().toString()}};
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", endpoint), 0.0);
  EXPECT_EQ(s.total("evgate_upstream_connect_failures_total", endpoint), 0.0);
  EXPECT_EQ(s.value("evgate_upstream_flows_active", endpoint), 0.0);
  EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", {{"cluster", "hole"}}), 0u);
}

TEST_F(MetricsCollectorTest, EndpointAdminStateIsAStateSetAndAvailableFollowsIt) {
  EchoBackend a;
  EchoBackend b;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {a.address(), b.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const std::string first = a.address().toString();
  const std::string second = b.address().toString();
  // The state-set of one endpoint: {active, draining, disabled} -> value.
  const auto states = [this](const std::string& endpoint) {
    const Scrape s = scrape();
    std::map<std::string, double> values;
    for (const char* state : {"active", "draining", "disabled"}) {
      values[state] = s.value("evgate_endpoint_admin_state",
                              {{"cluster", "c"}, {"endpoint", endpoint}, {"state", state}})
                          .value_or(-1);
    }
    return values;
  };
  using StateSet = std::map<std::string, double>;
  const StateSet active{{"active", 1}, {"draining", 0}, {"disabled", 0}};
  const StateSet draining{{"active", 0}, {"draining", 1}, {"disabled", 0}};
  const StateSet disabled{{"active", 0}, {"draining", 0}, {"disabled", 1}};
  const Labels cluster{{"cluster", "c"}};
  EXPECT_EQ(states(first), active);
  EXPECT_EQ(states(second), active);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints", cluster), 2.0);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", cluster), 2.0);
  EXPECT_EQ(scrape().labelSets("evgate_endpoint_admin_state").size(), 6u);

  Config next = config;
  next.clusters[0].endpoints[0].state = EndpointAdminState::kDraining;
  reload(next);
  EXPECT_EQ(states(first), draining);
  EXPECT_EQ(states(second), active);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints", cluster), 2.0);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", cluster), 1.0);

  next.clusters[0].endpoints[0].state = EndpointAdminState::kDisabled;
  next.clusters[0].endpoints[1].state = EndpointAdminState::kDraining;
  reload(next);
  EXPECT_EQ(states(first), disabled);
  EXPECT_EQ(states(second), draining);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", cluster), 0.0);
  // Nothing may take a flow now: the next one ends at once, without a connect attempt.
  {
    const UniqueFd client = connectTo(bound("web"));
    EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  }
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "no_healthy_upstream"}}, 1));
  EXPECT_EQ(scrape().total("evgate_upstream_connect_attempts_total", cluster), 0.0);

  reload(config);
  EXPECT_EQ(states(first), active);
  EXPECT_EQ(states(second), active);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", cluster), 2.0);
}

TEST_F(MetricsCollectorTest, HealthAndEjectionShowInTheGaugesAndInAvailable) {
  const SocketAddress refused = loopback(test::refusedPort());
  Config config = baseConfig();
  // Ejected after one failed connect, for long enough to outlast the test.
  config.clusters.push_back(clusterOf("ejecting", {refused}));
  config.clusters[0].outlier.consecutiveFailures = 1;
  config.clusters[0].outlier.baseEjection = 1h;
  config.clusters[0].outlier.maxEjection = 1h;
  // Marked down by its first failed active check.
  config.clusters.push_back(clusterOf("checked", {refused}));
  config.clusters[1].healthCheck =
      HealthCheckConfig{std::chrono::milliseconds(50), std::chrono::milliseconds(50), 1, 1};
  config.listeners.push_back(listenerOf("web", "ejecting"));
  start(config);
  const Labels ejecting{{"cluster", "ejecting"}, {"endpoint", refused.toString()}};
  const Labels checked{{"cluster", "checked"}, {"endpoint", refused.toString()}};
  EXPECT_EQ(scrape().value("evgate_endpoint_ejected", ejecting), 0.0);

  {
    const UniqueFd client = connectTo(bound("web"));
    EXPECT_TRUE(closedByPeer(waitClosed(client.get())));
  }
  EXPECT_TRUE(settlesAt("evgate_endpoint_ejected", ejecting, 1));
  EXPECT_EQ(scrape().value("evgate_endpoint_healthy", ejecting), 1.0);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", {{"cluster", "ejecting"}}), 0.0);

  EXPECT_TRUE(settlesAt("evgate_endpoint_healthy", checked, 0));
  EXPECT_EQ(scrape().value("evgate_endpoint_ejected", checked), 0.0);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints_available", {{"cluster", "checked"}}), 0.0);
  EXPECT_EQ(scrape().value("evgate_cluster_endpoints", {{"cluster", "checked"}}), 1.0);
  // Health checks are not connect attempts of flows.
  EXPECT_EQ(scrape().total("evgate_upstream_connect_attempts_total", {{"cluster", "checked"}}),
            0.0);
}

// ---- Backpressure

TEST_F(MetricsCollectorTest, BackpressureCountsPausesBufferedBytesAndTimePaused) {
  HoldingBackend backend;
  constexpr size_t kLimit = 1024;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("stalled", {backend.address()}));
  config.listeners.push_back(listenerOf("bp", "stalled"));
  config.listeners[0].bufferLimit = kLimit;
  start(config);
  const Labels bp{{"listener", "bp"}};
  const Labels c2u{{"listener", "bp"}, {"direction", "client_to_upstream"}};
  const Labels u2c{{"listener", "bp"}, {"direction", "upstream_to_client"}};

  const auto opened = Clock::now();
  UniqueFd client = connectWithSmallBuffer(bound("bp"), SO_SNDBUF);
  ASSERT_GE(client.get(), 0);
  // Nothing reads at the far end: the path fills up and the client can write no more.
  const std::optional<size_t> written = writeUntilStalled(client.get(), 300ms, Clock::now() + 20s);
  ASSERT_TRUE(written) << "the flow to a backend that does not read was never held back";
  ASSERT_TRUE(eventually([&] { return backend.accepted() == 1; }));

  // Stalled: the flow is at its limit, holding at least a limit's worth of bytes (the upstream
  // output is only paused once it reached the limit) and not much more.
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp, 1));
  {
    const Scrape s = scrape();
    const double buffered = s.value("evgate_backpressure_buffered_bytes", bp).value_or(-1);
    EXPECT_GE(buffered, static_cast<double>(kLimit));
    EXPECT_LE(buffered, static_cast<double>(2 * kLimit + size_t{64} * 1024));
    EXPECT_GE(s.value("evgate_backpressure_read_pauses_total", c2u).value_or(0), 1.0);
    EXPECT_EQ(s.value("evgate_backpressure_read_pauses_total", u2c), 0.0)
        << "the upstream sent nothing: its reading was never held back";
    EXPECT_EQ(s.value("evgate_backpressure_paused_seconds_total", u2c), 0.0);
    EXPECT_LE(s.value("evgate_listener_bytes_total", c2u).value_or(-1),
              static_cast<double>(*written));
  }
  // The ongoing pause is counted when it ends (earlier ones, while the path filled up, are).
  const double pausedBefore =
      scrape().value("evgate_backpressure_paused_seconds_total", c2u).value_or(-1);
  ASSERT_GE(pausedBefore, 0.0);

  backend.release(0);
  ASSERT_TRUE(eventually([&] { return backend.bytesRead() == *written; }, 20s))
      << backend.bytesRead() << " of " << *written << " bytes arrived";
  // Reading resumed: the stall is counted, in seconds (never more than the flow has lasted).
  EXPECT_TRUE(settles(
      "evgate_backpressure_paused_seconds_total", c2u,
      [pausedBefore](double v) { return v > pausedBefore; },
      "more than " + std::to_string(pausedBefore)));
  EXPECT_LE(scrape().value("evgate_backpressure_paused_seconds_total", c2u).value_or(1e9),
            std::chrono::duration<double>(Clock::now() - opened).count());
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp, 0));
  EXPECT_TRUE(settlesAt("evgate_backpressure_buffered_bytes", bp, 0));
  EXPECT_EQ(scrape().value("evgate_listener_bytes_total", c2u), static_cast<double>(*written));

  // The flow ends cleanly; the counters stay.
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(waitClosed(client.get()), "eof");
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "bp"}, {"reason", "client_eof"}}, 1));
  const Scrape s = scrape();
  EXPECT_GE(s.value("evgate_backpressure_read_pauses_total", c2u).value_or(0), 1.0);
  EXPECT_GT(s.value("evgate_backpressure_paused_seconds_total", c2u).value_or(0), pausedBefore);
  EXPECT_EQ(s.value("evgate_backpressure_buffered_bytes", bp), 0.0);
  EXPECT_EQ(s.value("evgate_backpressure_flows_at_limit", bp), 0.0);
}

// A pause that ends because the flow is closed is counted then.
TEST_F(MetricsCollectorTest, APauseEndedByTheFlowClosingIsCounted) {
  HoldingBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("stalled", {backend.address()}));
  config.listeners.push_back(listenerOf("bp", "stalled"));
  config.listeners[0].bufferLimit = 1024;
  start(config);
  const Labels bp{{"listener", "bp"}};
  const Labels c2u{{"listener", "bp"}, {"direction", "client_to_upstream"}};
  const auto opened = Clock::now();
  const UniqueFd client = connectWithSmallBuffer(bound("bp"), SO_SNDBUF);
  ASSERT_GE(client.get(), 0);
  ASSERT_TRUE(writeUntilStalled(client.get(), 300ms, Clock::now() + 20s));
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp, 1));
  const double pausedBefore =
      scrape().value("evgate_backpressure_paused_seconds_total", c2u).value_or(-1);
  ASSERT_GE(pausedBefore, 0.0);

  FlowFilter filter;
  filter.listener = "bp";
  EXPECT_EQ(gateway_->closeFlows(filter, 10, CloseReason::kAdmin), 1u);
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "bp"}, {"reason", "admin"}}, 1));
  const Scrape s = scrape();
  const double paused = s.value("evgate_backpressure_paused_seconds_total", c2u).value_or(-1);
  EXPECT_GT(paused, pausedBefore);
  EXPECT_LE(paused, std::chrono::duration<double>(Clock::now() - opened).count());
  EXPECT_EQ(s.value("evgate_backpressure_flows_at_limit", bp), 0.0);
  EXPECT_EQ(s.value("evgate_backpressure_buffered_bytes", bp), 0.0);
}

// ---- Memory budget (max_buffered_bytes)

class MemoryBudgetTest : public MetricsCollectorTest {
 protected:
  static constexpr uint64_t kKiB = 1024;
  static constexpr uint64_t kMiB = 1024 * kKiB;

  // One worker (its count is exact) relaying listener "bp" to `backend`, copying: a spliced
  // direction held back stops at the pipe's 16 buffers, short of any buffer_limit these use.
  static Config budgetConfig(const HoldingBackend& backend, size_t bufferLimit) {
    Config config = baseConfig();
    config.workers = 1;
    config.clusters.push_back(clusterOf("stalled", {backend.address()}));
    config.listeners.push_back(listenerOf("bp", "stalled"));
    config.listeners[0].bufferLimit = bufferLimit;
    config.listeners[0].splice = SpliceMode::kOff;
    return config;
  }

  const Labels bp_{{"listener", "bp"}};
};

// A stalled flow with an 8 MiB buffer_limit: the 1 MiB budget, not the limit, caps what it
// holds (a flow's limit shrinks from half the budget on; it may overshoot by what one loop pass
// reads, 4 × 64 KiB, before the next refresh, plus one publish step).
TEST_F(MemoryBudgetTest, OneFlowHoldsNoMoreThanTheBudgetWhateverItsBufferLimit) {
  HoldingBackend backend;
  Config config = budgetConfig(backend, 8 * kMiB);
  config.maxBufferedBytes = kMiB;
  start(config);
  const UniqueFd client = connectWithSmallBuffer(bound("bp"), SO_SNDBUF);
  ASSERT_GE(client.get(), 0);
  ASSERT_TRUE(writeUntilStalled(client.get(), 300ms, Clock::now() + 20s));
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp_, 1));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_buffer_budget_bytes", {}), static_cast<double>(kMiB));
  const double held = s.value("evgate_backpressure_buffered_bytes", bp_).value_or(-1);
  EXPECT_GE(held, static_cast<double>(kMiB / 2)) << "it reads freely up to half the budget";
  EXPECT_LE(held, static_cast<double>(kMiB + 5 * 64 * kKiB)) << "the budget caps it";
  const double used = s.value("evgate_buffer_budget_used_bytes", {}).value_or(-1);
  EXPECT_NEAR(used, held, static_cast<double>(BufferBudget::kPublishStep));
  // The figure docs/reliability.md quotes.
  std::printf("[ figure   ] one stalled flow, buffer_limit 8 MiB, budget 1 MiB: holds %.0f B\n",
              held);
}

// Flows that hold more than a budget lowered by a reload: new connections are refused (counted
// as buffer_budget) while the flows already open go on; once they drain, new ones are accepted.
TEST_F(MemoryBudgetTest, AFullBudgetRefusesNewConnectionsUntilTheFlowsDrain) {
  HoldingBackend backend;
  Config config = budgetConfig(backend, 512 * kKiB);
  start(config);
  constexpr size_t kFlows = 3;
  std::vector<UniqueFd> clients;
  for (size_t i = 0; i < kFlows; ++i) {
    clients.push_back(connectWithSmallBuffer(bound("bp"), SO_SNDBUF));
    ASSERT_GE(clients.back().get(), 0);
    ASSERT_TRUE(writeUntilStalled(clients.back().get(), 300ms, Clock::now() + 20s));
  }
  ASSERT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp_, kFlows));
  // Without a budget the bytes are counted all the same (what to set it from).
  EXPECT_TRUE(settles(
      "evgate_buffer_budget_used_bytes", {},
      [](double v) { return v >= static_cast<double>(kFlows * 512 * kKiB - 64 * kKiB); },
      "about 1.5 MiB"));
  EXPECT_EQ(scrape().value("evgate_buffer_budget_bytes", {}), 0.0);

  Config lowered = config;
  lowered.maxBufferedBytes = kMiB;
  reload(lowered);
  {
    UniqueFd refused = connectTo(bound("bp"));
    ASSERT_GE(refused.get(), 0);
    EXPECT_TRUE(closedByPeer(waitClosed(refused.get())));
  }
  const Labels byBudget{{"listener", "bp"}, {"reason", "buffer_budget"}};
  EXPECT_TRUE(settlesAt("evgate_listener_connections_rejected_total", byBudget, 1));
  EXPECT_EQ(backend.accepted(), kFlows) << "a refused client never reaches the upstream";

  for (size_t i = 0; i < kFlows; ++i) backend.release(i);
  EXPECT_TRUE(settlesAt("evgate_buffer_budget_used_bytes", {}, 0));
  UniqueFd accepted = connectTo(bound("bp"));
  ASSERT_TRUE(sendAll(accepted.get(), "x"));
  EXPECT_TRUE(eventually([&] { return backend.accepted() == kFlows + 1; }));
  EXPECT_TRUE(settlesAt("evgate_listener_connections_rejected_total", byBudget, 1));
}

// The other direction: a client that does not read while its echo comes back. Reading from the
// upstream is held back first (upstream_to_client).
TEST_F(MetricsCollectorTest, BackpressureOnTheWayBackIsCountedUnderUpstreamToClient) {
  EchoBackend backend;
  constexpr size_t kLimit = 1024;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("bp", "c"));
  config.listeners[0].bufferLimit = kLimit;
  start(config);
  const Labels bp{{"listener", "bp"}};
  const Labels u2c{{"listener", "bp"}, {"direction", "upstream_to_client"}};
  const Labels c2u{{"listener", "bp"}, {"direction", "client_to_upstream"}};

  const auto opened = Clock::now();
  UniqueFd client = connectWithSmallBuffer(bound("bp"), SO_RCVBUF);
  ASSERT_GE(client.get(), 0);
  const std::optional<size_t> written = writeUntilStalled(client.get(), 300ms, Clock::now() + 20s);
  ASSERT_TRUE(written) << "a client that does not read was never held back";
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp, 1));
  EXPECT_TRUE(settles(
      "evgate_backpressure_read_pauses_total", u2c, [](double v) { return v >= 1; }, ">= 1"));
  const double pausedBefore =
      scrape().value("evgate_backpressure_paused_seconds_total", u2c).value_or(-1);
  ASSERT_GE(pausedBefore, 0.0);

  // The client reads its echo: everything comes back and the pauses end.
  const std::string echoed = testing::receive(client.get(), *written, 20s);
  EXPECT_EQ(echoed.size(), *written);
  EXPECT_TRUE(settles(
      "evgate_backpressure_paused_seconds_total", u2c,
      [pausedBefore](double v) { return v > pausedBefore; },
      "more than " + std::to_string(pausedBefore)));
  EXPECT_LE(scrape().value("evgate_backpressure_paused_seconds_total", u2c).value_or(1e9),
            std::chrono::duration<double>(Clock::now() - opened).count());
  EXPECT_TRUE(settlesAt("evgate_backpressure_flows_at_limit", bp, 0));
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(waitClosed(client.get()), "eof");
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "bp"}, {"reason", "client_eof"}}, 1));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_listener_bytes_total", c2u), static_cast<double>(*written));
  EXPECT_EQ(s.value("evgate_listener_bytes_total", u2c), static_cast<double>(*written));
  EXPECT_EQ(s.value("evgate_backpressure_buffered_bytes", bp), 0.0);
}

// ---- Reactor

TEST_F(MetricsCollectorTest, ReactorFamiliesHaveASeriesPerWorker) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const Scrape first = scrape();
  const std::set<Labels> perWorker{{{"worker", "0"}}, {{"worker", "1"}}};
  EXPECT_EQ(first.labelSets("evgate_reactor_loop_iterations_total"), perWorker);
  EXPECT_EQ(first.labelSets("evgate_reactor_loop_iteration_duration_seconds"), perWorker);
  EXPECT_EQ(first.labelSets("evgate_reactor_timers"), perWorker);
  EXPECT_EQ(first.labelSets("evgate_reactor_queued_functions"), perWorker);
  std::set<Labels> byState;
  for (const char* worker : {"0", "1"}) {
    for (const char* state : {"initialized", "pending", "active"}) {
      byState.insert(Labels{{"worker", worker}, {"state", state}});
    }
  }
  EXPECT_EQ(first.labelSets("evgate_reactor_events"), byState);

  for (const char* worker : {"0", "1"}) {
    const Labels w{{"worker", worker}};
    // Each listener's accept event is pending on every worker.
    EXPECT_GE(first.value("evgate_reactor_events", {{"worker", worker}, {"state", "pending"}})
                  .value_or(0),
              1.0);
    // Every scrape posts a sample to each loop: that alone makes iterations, which are timed.
    const double iterations = first.value("evgate_reactor_loop_iterations_total", w).value_or(0);
    EXPECT_TRUE(settles(
        "evgate_reactor_loop_iterations_total", w,
        [iterations](double v) { return v > iterations; },
        "more than " + std::to_string(iterations)));
    EXPECT_GE(scrape().count("evgate_reactor_loop_iteration_duration_seconds", w).value_or(0), 1u);
    // An idle loop has run everything posted to it (the previous scrape's sample included).
    EXPECT_TRUE(settlesAt("evgate_reactor_queued_functions", w, 0));
  }

  // An open flow adds its events (both sides reading, its timer).
  const auto sumOf = [this](const Labels& labels, const char* family) {
    return scrape().total(family, labels);
  };
  const double pending = sumOf({{"state", "pending"}}, "evgate_reactor_events");
  const double timers = sumOf({}, "evgate_reactor_timers");
  {
    const UniqueFd client = connectTo(bound("web"));
    ASSERT_TRUE(echoes(client.get(), "events"));
    EXPECT_TRUE(eventually([&] {
      return sumOf({{"state", "pending"}}, "evgate_reactor_events") >= pending + 2 &&
             sumOf({}, "evgate_reactor_timers") >= timers + 1;
    })) << scrape().text();
  }
  // Closed: back to what the idle loops had.
  EXPECT_TRUE(eventually([&] {
    return sumOf({{"state", "pending"}}, "evgate_reactor_events") == pending &&
           sumOf({}, "evgate_reactor_timers") == timers;
  })) << scrape().text();
}

// ---- Log queues

// The access log written to a FIFO nobody reads (its buffer one page): the workers go on relaying
// and answering scrapes, and the lines that do not fit are counted as dropped.
TEST_F(MetricsCollectorTest, AnAccessLogNobodyReadsCostsDroppedLinesNotAStalledLoop) {
  test::TempDir dir("evgate-metrics-fifo");
  const std::string fifo = dir.file("access.log");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0) << std::strerror(errno);
  ASSERT_EQ(::fcntl(reader.get(), F_SETPIPE_SZ, 4096), 4096) << std::strerror(errno);
  EchoBackend backend;
  Config config = baseConfig();
  config.accessLog.mode = AccessLogMode::kFile;
  config.accessLog.path = fifo;
  config.accessLog.queueLimit = 8192;  // about 40 lines
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const Labels access{{"log", "access"}};
  EXPECT_EQ(scrape().value("evgate_log_queue_limit_bytes", access), 8192.0);
  EXPECT_EQ(scrape().value("evgate_log_lines_dropped_total", access), 0.0);

  constexpr int kFlows = 200;  // about 40 KiB of lines: five times the pipe and the queue
  for (int i = 0; i < kFlows; ++i) {
    ASSERT_TRUE(echoFlow(bound("web"), "one line")) << "flow " << i;
  }
  // Every flow's line is written, queued or dropped once its flow has closed on the worker.
  EXPECT_TRUE(settlesAt("evgate_listener_connections_active", {{"listener", "web"}}, 0));
  const Scrape stalled = scrape();
  // Both loops answer (the loop-only families are there for each).
  EXPECT_EQ(stalled.labelSets("evgate_reactor_timers").size(), 2u) << stalled.text();
  EXPECT_GT(stalled.value("evgate_log_lines_dropped_total", access).value_or(0), 0.0);
  EXPECT_LE(stalled.value("evgate_log_queue_bytes", access).value_or(-1), 8192.0);
  // A whole line per write: what the FIFO holds is whole lines.
  char buf[8192];
  const ssize_t n = ::read(reader.get(), buf, sizeof buf);
  ASSERT_GT(n, 0) << std::strerror(errno);
  EXPECT_EQ(buf[n - 1], '\n');
  EXPECT_EQ(buf[0], '{');
  // Gone (its access log closed: LogSink::kCloseTimeout with nobody reading) while the FIFO
  // still has its reader: a write(2) to a FIFO without one would raise SIGPIPE.
  collector_.reset();
  gateway_.reset();
}

TEST_F(MetricsCollectorTest, NoAccessLogQueueWhenTheAccessLogIsOff) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  EXPECT_EQ(scrape().value("evgate_log_queue_limit_bytes", {{"log", "access"}}), std::nullopt);
}

// ---- Series across reloads

TEST_F(MetricsCollectorTest, ADeletedListenerAndClusterLeaveTheNextScrape) {
  EchoBackend backend;
  EchoBackend other;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.clusters.push_back(clusterOf("gone", {other.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  config.listeners.push_back(listenerOf("old", "gone"));
  start(config);
  ASSERT_TRUE(echoFlow(bound("old"), "counted"));
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "old"}, {"reason", "client_eof"}}, 1));
  EXPECT_FALSE(scrape().familiesWith("listener", "old").empty());
  EXPECT_FALSE(scrape().familiesWith("cluster", "gone").empty());

  Config next = config;
  next.listeners.pop_back();
  next.clusters.pop_back();
  reload(next);
  const Scrape s = scrape();
  EXPECT_EQ(s.familiesWith("listener", "old"), std::vector<std::string>{}) << s.text();
  EXPECT_EQ(s.familiesWith("cluster", "gone"), std::vector<std::string>{}) << s.text();
  EXPECT_EQ(s.familiesWith("endpoint", other.address().toString()), std::vector<std::string>{});
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", {{"listener", "web"}}), 0.0);
  EXPECT_EQ(s.value("evgate_cluster_endpoints", {{"cluster", "c"}}), 1.0);

  // Created again under the same name: a new series, from 0.
  reload(config);
  const Scrape again = scrape();
  EXPECT_EQ(again.value("evgate_listener_connections_accepted_total", {{"listener", "old"}}), 0.0);
  EXPECT_EQ(again.value("evgate_upstream_connect_attempts_total",
                        {{"cluster", "gone"}, {"endpoint", other.address().toString()}}),
            0.0);
}

TEST_F(MetricsCollectorTest, AListenerReplacedThroughAReloadKeepsItsCounters) {
  EchoBackend backend;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  const SocketAddress before = bound("web");
  ASSERT_TRUE(echoFlow(before, "first"));
  ASSERT_TRUE(echoFlow(before, "second!"));
  UniqueFd draining = connectTo(before);
  ASSERT_TRUE(echoes(draining.get(), "open across the reload"));
  const Labels web{{"listener", "web"}};
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "client_eof"}}, 2));

  Config moved = config;
  moved.listeners[0].bind = *SocketAddress::parse("127.0.0.2:0");
  reload(moved);
  const SocketAddress after = bound("web");
  ASSERT_NE(after, before);
  {
    // One series per label set: the replaced listener's are the same series.
    const Scrape s = scrape();
    EXPECT_EQ(s.labelSets("evgate_listener_connections_accepted_total"), (std::set<Labels>{web}));
    EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", web), 3.0);
    EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", web), 2u);
  }

  ASSERT_TRUE(echoFlow(after, "third"));
  // The flow the old listener still has goes on counting into the same series.
  ASSERT_TRUE(echoes(draining.get(), "still relayed"));
  ::shutdown(draining.get(), SHUT_WR);
  EXPECT_EQ(waitClosed(draining.get()), "eof");
  const double bytes = 5 + 7 + 22 + 13 + 5;
  EXPECT_TRUE(settlesAt("evgate_listener_flows_closed_total",
                        {{"listener", "web"}, {"reason", "client_eof"}}, 4));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_listener_connections_accepted_total", web), 4.0);
  EXPECT_EQ(s.value("evgate_listener_bytes_total",
                    {{"listener", "web"}, {"direction", "client_to_upstream"}}),
            bytes);
  EXPECT_EQ(s.value("evgate_listener_bytes_total",
                    {{"listener", "web"}, {"direction", "upstream_to_client"}}),
            bytes);
  EXPECT_EQ(s.count("evgate_listener_flow_duration_seconds", web), 4u);
}

TEST_F(MetricsCollectorTest, AClusterChangedThroughAReloadKeepsItsCountersByEndpoint) {
  EchoBackend a;
  EchoBackend b;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {a.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);
  ASSERT_TRUE(echoFlow(bound("web"), "to a"));
  ASSERT_TRUE(echoFlow(bound("web"), "to a again"));
  const Labels first{{"cluster", "c"}, {"endpoint", a.address().toString()}};
  const Labels second{{"cluster", "c"}, {"endpoint", b.address().toString()}};
  const Labels cluster{{"cluster", "c"}};
  EXPECT_TRUE(settlesAt("evgate_upstream_connect_attempts_total", first, 2));

  // Another endpoint and a timeout: a new ClusterState with the counters it keeps.
  Config next = config;
  next.clusters[0] = clusterOf("c", {a.address(), b.address()});
  next.clusters[0].connectTimeout = 2s;
  const std::shared_ptr<ClusterState> oldState = gateway_->clusters()[0];
  reload(next);
  ASSERT_NE(gateway_->clusters()[0], oldState) << "the change must make a new ClusterState";
  {
    const Scrape s = scrape();
    EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", first), 2.0);
    EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", second), 0.0);
    EXPECT_EQ(s.count("evgate_upstream_connect_duration_seconds", cluster), 2u);
    EXPECT_EQ(s.value("evgate_cluster_endpoints", cluster), 2.0);
  }
  // Round robin over both: four flows, two each.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(echoFlow(bound("web"), "after " + std::to_string(i)));
  EXPECT_TRUE(countSettlesAt("evgate_upstream_connect_duration_seconds", cluster, 6));
  const Scrape s = scrape();
  EXPECT_EQ(s.value("evgate_upstream_connect_attempts_total", first).value_or(0) +
                s.value("evgate_upstream_connect_attempts_total", second).value_or(0),
            6.0);
  EXPECT_GE(s.value("evgate_upstream_connect_attempts_total", second).value_or(0), 1.0);
  EXPECT_EQ(static_cast<double>(a.accepted()),
            s.value("evgate_upstream_connect_attempts_total", first).value_or(-1));
  EXPECT_EQ(static_cast<double>(b.accepted()),
            s.value("evgate_upstream_connect_attempts_total", second).value_or(-1));
}

// ---- Collecting while the gateway changes

TEST_F(MetricsCollectorTest, CollectFromAnotherThreadWhileReloadingAndRelaying) {
  EchoBackend backend;
  EchoBackend other;
  Config config = baseConfig();
  config.clusters.push_back(clusterOf("c", {backend.address()}));
  config.listeners.push_back(listenerOf("web", "c"));
  start(config);

  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0};
  std::mutex problemsMutex;
  std::vector<std::string> problems;
  std::thread scraper([&] {
    while (!stop.load()) {
      const Scrape s = scrape();
      // Whatever listener is in the scrape has its whole set of series.
      const std::set<Labels> closed = s.labelSets("evgate_listener_flows_closed_total");
      for (const Labels& labels : s.labelSets("evgate_listener_connections_accepted_total")) {
        const std::string& name = labels.at("listener");
        const auto reasons = std::count_if(closed.begin(), closed.end(), [&](const Labels& l) {
          return l.at("listener") == name;
        });
        if (static_cast<size_t>(reasons) != kCloseReasons.size()) {
          const std::lock_guard lock(problemsMutex);
          problems.push_back(name + " has " + std::to_string(reasons) + " close reasons");
        }
      }
      scrapes.fetch_add(1);
    }
  });

  Config grown = config;
  grown.clusters.push_back(clusterOf("extra", {other.address()}));
  grown.listeners.push_back(listenerOf("extra", "extra"));
  for (int i = 0; i < 8; ++i) {
    reload(grown);
    ASSERT_TRUE(echoFlow(bound("extra"), "extra " + std::to_string(i)));
    ASSERT_TRUE(echoFlow(bound("web"), "web " + std::to_string(i)));
    Config changed = grown;
    changed.clusters[0].endpoints[0].state =
        i % 2 == 0 ? EndpointAdminState::kActive : EndpointAdminState::kDraining;
    changed.clusters[0].connectTimeout = std::chrono::seconds(1 + i);
    reload(changed);
    reload(config);
  }
  ASSERT_TRUE(eventually([&] { return scrapes.load() >= 3; }));
  stop = true;
  scraper.join();
  EXPECT_EQ(problems, std::vector<std::string>{});
  EXPECT_TRUE(settlesAt("evgate_listener_connections_accepted_total", {{"listener", "web"}}, 8));
}

// ---- Process

std::optional<double> processValue(const std::string& name) {
  return Scrape(ProcessCollector("1.2.3-test").Collect()).value(name, {});
}

TEST(ProcessCollectorTest, BuildInfoNamesTheVersion) {
  const Scrape s(ProcessCollector("1.2.3-test").Collect());
  const prometheus::MetricFamily* info = s.family("evgate_build_info");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->type, prometheus::MetricType::Gauge);
  EXPECT_EQ(s.labelSets("evgate_build_info"), (std::set<Labels>{{{"version", "1.2.3-test"}}}));
  EXPECT_EQ(s.value("evgate_build_info", {{"version", "1.2.3-test"}}), 1.0);
}

TEST(ProcessCollectorTest, EveryStandardProcessMetricWithItsType) {
  const Scrape s(ProcessCollector("v").Collect());
  const std::map<std::string, prometheus::MetricType> expected = {
      {"process_cpu_seconds_total", prometheus::MetricType::Counter},
      {"process_resident_memory_bytes", prometheus::MetricType::Gauge},
      {"process_virtual_memory_bytes", prometheus::MetricType::Gauge},
      {"process_open_fds", prometheus::MetricType::Gauge},
      {"process_max_fds", prometheus::MetricType::Gauge},
      {"process_start_time_seconds", prometheus::MetricType::Gauge},
      {"evgate_build_info", prometheus::MetricType::Gauge},
  };
  std::map<std::string, prometheus::MetricType> got;
  for (const auto& family : s.families()) {
    got[family.name] = family.type;
    EXPECT_EQ(family.metric.size(), 1u) << family.name;
  }
  EXPECT_EQ(got, expected) << s.text();
}

TEST(ProcessCollectorTest, OpenFdsFollowsFilesOpenedAndClosed) {
  const std::optional<double> before = processValue("process_open_fds");
  ASSERT_TRUE(before);
  EXPECT_GE(*before, 3.0);  // stdin, stdout, stderr at least
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(processValue("process_open_fds"), *before + 1);
  const int second = ::dup(fd);
  ASSERT_GE(second, 0);
  EXPECT_EQ(processValue("process_open_fds"), *before + 2);
  ::close(second);
  ::close(fd);
  EXPECT_EQ(processValue("process_open_fds"), *before);
}

TEST(ProcessCollectorTest, MaxFdsIsTheSoftLimit) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(processValue("process_max_fds"), static_cast<double>(limit.rlim_cur));
  // Lowered (reversibly: the hard limit stays), the value follows the soft limit.
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur > 256) {
    rlimit lowered = limit;
    lowered.rlim_cur = limit.rlim_cur - 1;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
    EXPECT_EQ(processValue("process_max_fds"), static_cast<double>(lowered.rlim_cur));
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
}

TEST(ProcessCollectorTest, StartTimeIsWithinTheLastHourAndStaysPut) {
  const std::optional<double> start = processValue("process_start_time_seconds");
  ASSERT_TRUE(start);
  const double now = static_cast<double>(std::time(nullptr));
  // btime is whole seconds and the start is in clock ticks: allow a second or two of rounding.
  EXPECT_LE(*start, now + 2);
  EXPECT_GE(*start, now - 3600) << "this test process started more than an hour ago?";
  EXPECT_EQ(processValue("process_start_time_seconds"), *start);
}

TEST(ProcessCollectorTest, CpuAndMemoryMove) {
  const double cpuBefore = processValue("process_cpu_seconds_total").value_or(-1);
  ASSERT_GE(cpuBefore, 0.0);
  // Burn 200 ms of CPU time (measured by the process's own CPU clock).
  timespec begin{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &begin);
  volatile uint64_t sink = 0;
  for (;;) {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<uint64_t>(i);
    timespec now{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    const double spent = static_cast<double>(now.tv_sec - begin.tv_sec) +
                         static_cast<double>(now.tv_nsec - begin.tv_nsec) / 1e9;
    if (spent >= 0.2) break;
  }
  EXPECT_GE(processValue("process_cpu_seconds_total").value_or(-1), cpuBefore + 0.1);

  const double resident = processValue("process_resident_memory_bytes").value_or(-1);
  const double virtualSize = processValue("process_virtual_memory_bytes").value_or(-1);
  EXPECT_GT(resident, 0.0);
  EXPECT_GE(virtualSize, resident);
  // 64 MiB touched page by page is resident.
  constexpr size_t kSize = size_t{64} << 20;
  constexpr double kHalf = kSize / 2.0;
  std::unique_ptr<char[]> block(new char[kSize]);
  for (size_t i = 0; i < kSize; i += 4096) block[i] = static_cast<char>(i);
  EXPECT_GE(processValue("process_resident_memory_bytes").value_or(-1), resident + kHalf);
  EXPECT_GE(processValue("process_virtual_memory_bytes").value_or(-1), virtualSize + kHalf);
  sink = sink + static_cast<uint64_t>(block[kSize - 4096]);  // the writes are used
}

}  // namespace
}  // namespace evgate::gateway
