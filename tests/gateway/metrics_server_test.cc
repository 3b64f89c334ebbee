// The /metrics HTTP endpoint (gateway/metrics/metrics_server.h) on 127.0.0.1:0, serving fake
// collectables, read with raw HTTP/1.x requests over a loopback socket: status, content type,
// body, HEAD, other paths and methods, malformed requests, a collectable that throws, clients
// that stall or crowd it, stopping, and the errors for an address in use or one that does not
// parse.

#include "gateway/metrics/metrics_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gateway/metrics/http_request.h"
#include "reactor/socket_address.h"
#include "tests/integration/net_util.h"

namespace evgate::gateway::metrics {
namespace {

using namespace std::chrono_literals;
using test::Clock;

// ---- A raw HTTP client

struct Response {
  std::string error;  // empty: a whole response arrived
  std::string statusLine;
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  // The value of header `name` (lowercase), or "" without one.
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Sends `request` as is to `address` ("host:port") and reads the answer until the server
// closes.
Response httpExchange(const std::string& address, const std::string& request,
                      Clock::duration limit = 10s) {
  Response response;
  const std::optional<reactor::SocketAddress> to = reactor::SocketAddress::parse(address);
  if (!to) {
    response.error = "bad address " + address;
    return response;
  }
  const test::Fd fd(::socket(to->family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 || ::connect(fd.get(), to->data(), to->length()) != 0) {
    response.error = "connect to " + address + ": " + std::strerror(errno);
    return response;
  }
  const auto deadline = Clock::now() + limit;
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      response.error = std::string("send: ") + std::strerror(errno);
      return response;
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, test::millisLeft(deadline));
    if (ready == 0) {
      response.error = "timeout; got so far:\n" + raw;
      return response;
    }
    if (ready < 0 && errno == EINTR) continue;
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      response.error = std::string("recv: ") + std::strerror(errno);
      return response;
    }
    raw.append(buf, static_cast<size_t>(n));
  }
  const size_t headEnd = raw.find("\r\n\r\n");
  if (headEnd == std::string::npos) {
    response.error = "no end of headers in:\n" + raw;
    return response;
  }
  const std::string head = raw.substr(0, headEnd);
  response.body = raw.substr(headEnd + 4);
  size_t lineEnd = head.find("\r\n");
  response.statusLine = head.substr(0, lineEnd);
  if (response.statusLine.rfind("HTTP/1.", 0) != 0 || response.statusLine.size() < 12) {
    response.error = "bad status line: " + response.statusLine;
    return response;
  }
  response.status = std::stoi(response.statusLine.substr(9, 3));
  while (lineEnd != std::string::npos) {
    const size_t start = lineEnd + 2;
    lineEnd = head.find("\r\n", start);
    const std::string line =
        head.substr(start, lineEnd == std::string::npos ? std::string::npos : lineEnd - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t valueStart = colon + 1;
    while (valueStart < line.size() && line[valueStart] == ' ') ++valueStart;
    response.headers[lowercase(line.substr(0, colon))] = line.substr(valueStart);
  }
  return response;
}

std::string request(const std::string& method, const std::string& path) {
  return method + " " + path + " HTTP/1.1\r\nHost: evgate\r\nConnection: close\r\n\r\n";
}

Response get(const std::string& address, const std::string& path) {
  return httpExchange(address, request("GET", path));
}

Response get(uint16_t port, const std::string& path) { return get(test::address(port), path); }

uint16_t portOf(const MetricsServer& server) { return test::portOf(server.boundAddress()); }

// ---- Fake collectables

prometheus::ClientMetric::Label label(std::string name, std::string value) {
  return prometheus::ClientMetric::Label{std::move(name), std::move(value)};
}

prometheus::MetricFamily counterFamily() {
  prometheus::MetricFamily family;
  family.name = "fake_requests_total";
  family.help = "Requests the fake saw.";
  family.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric get;
  get.label = {label("method", "get")};
  get.counter.value = 3;
  prometheus::ClientMetric put;
  put.label = {label("method", "put")};
  put.counter.value = 0;
  family.metric = {get, put};
  return family;
}

prometheus::MetricFamily gaugeFamily() {
  prometheus::MetricFamily family;
  family.name = "fake_temperature_celsius";
  family.help = "How warm the fake is.";
  family.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric metric;
  metric.gauge.value = 21.5;
  family.metric = {metric};
  return family;
}

prometheus::MetricFamily histogramFamily() {
  prometheus::MetricFamily family;
  family.name = "fake_latency_seconds";
  family.help = "How long the fake took.";
  family.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric metric;
  metric.label = {label("worker", "0")};
  metric.histogram.bucket = {{1, 0.1}, {3, 1}, {4, std::numeric_limits<double>::infinity()}};
  metric.histogram.sample_count = 4;
  metric.histogram.sample_sum = 2.75;
  family.metric = {metric};
  return family;
}

class FakeCollectable : public prometheus::Collectable {
 public:
  explicit FakeCollectable(std::vector<prometheus::MetricFamily> families)
      : families_(std::move(families)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    calls_.fetch_add(1);
    return families_;
  }
  int calls() const { return calls_.load(); }

 private:
  const std::vector<prometheus::MetricFamily> families_;
  mutable std::atomic<int> calls_{0};
};

class ThrowingCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    throw std::runtime_error("the fake broke");
  }
};

std::unique_ptr<MetricsServer> startOrFail(
    const std::string& address,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
  std::string error;
  std::unique_ptr<MetricsServer> server = MetricsServer::start(address, collectables, error);
  EXPECT_NE(server, nullptr) << error;
  EXPECT_EQ(error, "");
  return server;
}

// ---- Serving

TEST(MetricsServerTest, PortZeroListensOnAChosenPortOfTheConfiguredHost) {
  const auto server = startOrFail("127.0.0.1:0", {});
  ASSERT_NE(server, nullptr);
  const std::string bound = server->boundAddress();
  EXPECT_EQ(bound.rfind("127.0.0.1:", 0), 0u) << bound;
  EXPECT_NE(portOf(*server), 0) << bound;
  const auto parsed = reactor::SocketAddress::parse(bound);
  ASSERT_TRUE(parsed) << bound;
  EXPECT_EQ(parsed->port(), portOf(*server));
}

TEST(MetricsServerTest, GetMetricsAnswersWithTheSerializedFamiliesAsTextFormat004) {
  const auto fake = std::make_shared<FakeCollectable>(
      std::vector<prometheus::MetricFamily>{counterFamily(), gaugeFamily(), histogramFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);

  const Response response = get(portOf(*server), "/metrics");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200) << response.statusLine;
  const std::string contentType = response.header("content-type");
  EXPECT_EQ(contentType.rfind("text/plain; version=0.0.4", 0), 0u) << contentType;
  EXPECT_EQ(response.header("content-length"), std::to_string(response.body.size()));
  EXPECT_EQ(response.body, prometheus::TextSerializer().Serialize(fake->Collect()));
  for (const char* line :
       {"# HELP fake_requests_total Requests the fake saw.\n",
        "# TYPE fake_requests_total counter\n", "fake_requests_total{method=\"get\"} 3\n",
        "fake_requests_total{method=\"put\"} 0\n", "# TYPE fake_temperature_celsius gauge\n",
        "fake_temperature_celsius 21.5\n", "# TYPE fake_latency_seconds histogram\n",
        "fake_latency_seconds_bucket{worker=\"0\",le=\"0.1\"} 1\n",
        "fake_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 4\n",
        "fake_latency_seconds_count{worker=\"0\"} 4\n",
        "fake_latency_seconds_sum{worker=\"0\"} 2.75\n"}) {
    EXPECT_NE(response.body.find(line), std::string::npos) << line << "in:\n" << response.body;
  }
}

TEST(MetricsServerTest, EveryScrapeAsksEveryCollectableInOrder) {
  const auto first =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto second =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{gaugeFamily()});
  const auto empty = std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{});
  const auto server = startOrFail("127.0.0.1:0", {first, empty, second});
  ASSERT_NE(server, nullptr);
  for (int scrape = 1; scrape <= 3; ++scrape) {
    const Response response = get(portOf(*server), "/metrics");
    ASSERT_EQ(response.error, "");
    ASSERT_EQ(response.status, 200);
    EXPECT_EQ(response.body,
              prometheus::TextSerializer().Serialize({counterFamily(), gaugeFamily()}));
    EXPECT_EQ(first->calls(), scrape);
    EXPECT_EQ(second->calls(), scrape);
    EXPECT_EQ(empty->calls(), scrape);
  }
}

TEST(MetricsServerTest, NoCollectablesIsAnEmptyPage) {
  const auto server = startOrFail("127.0.0.1:0", {});
  ASSERT_NE(server, nullptr);
  const Response response = get(portOf(*server), "/metrics");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "");
  EXPECT_EQ(response.header("content-length"), "0");
}

TEST(MetricsServerTest, OtherPathsAreNotFoundAndNotCollected) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/", "/other", "/favicon.ico", "/metric", "/metricsx", "/metrics/",
                           "/metrics/x", "/METRICS", "/other?/metrics"}) {
    const Response response = get(portOf(*server), path);
    ASSERT_EQ(response.error, "") << path;
    EXPECT_EQ(response.status, 404) << path << ": " << response.statusLine;
    EXPECT_EQ(response.body, "metrics are served at /metrics\n") << path;
  }
  EXPECT_EQ(fake->calls(), 0);
}

TEST(MetricsServerTest, AQueryStringIsIgnored) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const Response response = get(portOf(*server), "/metrics?name[]=up&x=1");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200) << response.statusLine;
  EXPECT_EQ(response.body, prometheus::TextSerializer().Serialize({counterFamily()}));
}

TEST(MetricsServerTest, HeadAnswersTheHeadersOfGetWithoutTheBody) {
  const auto fake = std::make_shared<FakeCollectable>(
      std::vector<prometheus::MetricFamily>{counterFamily(), gaugeFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const Response got = get(portOf(*server), "/metrics");
  ASSERT_EQ(got.error, "");
  const Response head = httpExchange(server->boundAddress(), request("HEAD", "/metrics"));
  ASSERT_EQ(head.error, "");
  EXPECT_EQ(head.status, 200) << head.statusLine;
  EXPECT_EQ(head.header("content-type"), got.header("content-type"));
  EXPECT_EQ(head.header("content-length"), std::to_string(got.body.size()));
  EXPECT_EQ(head.body, "");
  const Response missing = httpExchange(server->boundAddress(), request("HEAD", "/other"));
  ASSERT_EQ(missing.error, "");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "");
}

TEST(MetricsServerTest, Http10IsServedToo) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{gaugeFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const Response response = httpExchange(server->boundAddress(), "GET /metrics HTTP/1.0\r\n\r\n");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200) << response.statusLine;
  EXPECT_EQ(response.body, prometheus::TextSerializer().Serialize({gaugeFamily()}));
}

TEST(MetricsServerTest, OtherMethodsOnMetricsAreRefused) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const Response response =
      httpExchange(server->boundAddress(),
                   "POST /metrics HTTP/1.1\r\nHost: evgate\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 405) << response.statusLine;
  EXPECT_EQ(response.header("allow"), "GET, HEAD");
  EXPECT_EQ(response.body, "only GET and HEAD are served\n");
  for (const char* method : {"PUT", "DELETE", "OPTIONS", "PATCH"}) {
    const Response other = httpExchange(server->boundAddress(), request(method, "/metrics"));
    ASSERT_EQ(other.error, "") << method;
    EXPECT_EQ(other.status, 405) << method << ": " << other.statusLine;
  }
  EXPECT_EQ(fake->calls(), 0);
}

TEST(MetricsServerTest, MalformedRequestsGetAClientErrorThatSaysWhy) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  struct Case {
    std::string request;
    int status;
  };
  static constexpr char kWithNul[] = "GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n";
  const std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /metrics\r\n\r\n", 400},
      {"GET  /metrics HTTP/1.1\r\n\r\n", 400},
      {"get /metrics HTTP/1.1\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\n\r\n", 400},
      {"GET http://host/metrics HTTP/1.1\r\n\r\n", 400},
      {"GET /metrics FTP/1.1\r\n\r\n", 400},
      {std::string(kWithNul, sizeof kWithNul - 1), 400},
      {"GET /metrics HTTP/2.0\r\n\r\n", 505},
      {"GET /metrics HTTP/0.9\r\n\r\n", 505},
  };
  for (const Case& c : cases) {
    const Response response = httpExchange(server->boundAddress(), c.request);
    ASSERT_EQ(response.error, "") << c.request;
    EXPECT_EQ(response.status, c.status) << c.request << " -> " << response.statusLine;
    EXPECT_FALSE(response.body.empty()) << "no reason given for " << c.request;
    EXPECT_EQ(response.header("content-length"), std::to_string(response.body.size()));
  }
  // A head longer than the endpoint reads: 431, without waiting for its end.
  const std::string endless =
      "GET /metrics HTTP/1.1\r\nX-Padding: " + std::string(kMaxRequestHead, 'p');
  const Response tooLong = httpExchange(server->boundAddress(), endless);
  ASSERT_EQ(tooLong.error, "");
  EXPECT_EQ(tooLong.status, 431) << tooLong.statusLine;
  EXPECT_EQ(fake->calls(), 0);
  // None of that disturbed the server.
  EXPECT_EQ(get(portOf(*server), "/metrics").status, 200);
}

TEST(MetricsServerTest, AHeadThatArrivesInPiecesIsAnsweredOnceWhole) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const test::Fd fd(test::connectTo(portOf(*server)));
  ASSERT_GE(fd.get(), 0);
  const std::string whole = request("GET", "/metrics");
  for (size_t i = 0; i < whole.size(); i += 7) {
    const std::string piece = whole.substr(i, 7);
    ASSERT_EQ(::send(fd.get(), piece.data(), piece.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(piece.size()));
    if (i + 7 < whole.size()) {
      // Not answered before the blank line: nothing to read.
      pollfd p{fd.get(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 5), 0) << "answered after " << i + 7 << " bytes";
    }
  }
  std::string raw;
  char buf[4096];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10'000), 1);
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(raw.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << raw;
  EXPECT_EQ(fake->calls(), 1);
}

// One loop serves every client: one that sends half a request and stops must not hold up
// another's scrape.
TEST(MetricsServerTest, AStalledClientDoesNotHoldUpAScrape) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const test::Fd stalled(test::connectTo(portOf(*server)));
  ASSERT_GE(stalled.get(), 0);
  ASSERT_EQ(::send(stalled.get(), "GET /metr", 9, MSG_NOSIGNAL), 9);
  // And one that asks and never reads its answer.
  const test::Fd deaf(test::connectTo(portOf(*server)));
  const std::string ask = request("GET", "/metrics");
  ASSERT_EQ(::send(deaf.get(), ask.data(), ask.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(ask.size()));
  const Response response = httpExchange(server->boundAddress(), request("GET", "/metrics"), 2s);
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200);
}

TEST(MetricsServerTest, ConnectionsBeyondTheLimitAreClosedAtAccept) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const uint16_t port = portOf(*server);
  std::vector<test::Fd> idle;
  for (size_t i = 0; i < MetricsServer::kMaxConnections; ++i) {
    idle.emplace_back(test::connectTo(port));
    ASSERT_GE(idle.back().get(), 0) << i;
  }
  // The server takes connections in the order they completed: this one is over the limit.
  {
    const test::Fd over(test::connectTo(port));
    ASSERT_GE(over.get(), 0);
    const std::string ask = request("GET", "/metrics");
    (void)::send(over.get(), ask.data(), ask.size(), MSG_NOSIGNAL);
    std::string got;
    char buf[256];
    for (;;) {
      pollfd p{over.get(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "the connection over the limit was not closed";
      const ssize_t n = ::recv(over.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, "") << "answered over the limit";
  }
  EXPECT_EQ(fake->calls(), 0);
  // Once the idle ones are gone, scrapes are served again.
  idle.clear();
  EXPECT_TRUE(test::eventually([&] { return get(port, "/metrics").status == 200; }));
}

TEST(MetricsServerTest, ACollectableThatThrowsGivesA500ThatSaysWhy) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake, std::make_shared<ThrowingCollectable>()});
  ASSERT_NE(server, nullptr);
  const Response response = get(portOf(*server), "/metrics");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 500) << response.statusLine;
  EXPECT_EQ(response.body, "cannot collect metrics: the fake broke\n");
  EXPECT_EQ(response.header("content-length"), std::to_string(response.body.size()));
  // Not a half page: nothing of the collectable that worked.
  EXPECT_EQ(response.body.find("fake_requests_total"), std::string::npos);
  // The server goes on serving.
  const Response again = get(portOf(*server), "/metrics");
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(again.status, 500);
}

TEST(MetricsServerTest, ConcurrentScrapesAllGetTheWholePage) {
  const auto fake = std::make_shared<FakeCollectable>(
      std::vector<prometheus::MetricFamily>{counterFamily(), gaugeFamily(), histogramFamily()});
  const auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const std::string expected =
      prometheus::TextSerializer().Serialize({counterFamily(), gaugeFamily(), histogramFamily()});
  constexpr int kThreads = 6;
  constexpr int kScrapes = 10;
  std::mutex mutex;
  std::vector<std::string> problems;
  std::vector<std::thread> threads;
  const uint16_t port = portOf(*server);
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kScrapes; ++i) {
        const Response response = get(port, "/metrics");
        if (!response.error.empty() || response.status != 200 || response.body != expected) {
          const std::lock_guard lock(mutex);
          problems.push_back(response.error.empty() ? response.statusLine : response.error);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(problems, std::vector<std::string>{});
  EXPECT_EQ(fake->calls(), kThreads * kScrapes);
}

TEST(MetricsServerTest, DestroyingTheServerClosesItsPort) {
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{counterFamily()});
  auto server = startOrFail("127.0.0.1:0", {fake});
  ASSERT_NE(server, nullptr);
  const uint16_t port = portOf(*server);
  ASSERT_EQ(get(port, "/metrics").status, 200);
  // A client in the middle of its request is cut off, and stopping does not wait for it.
  const test::Fd waiting(test::connectTo(port));
  ASSERT_EQ(::send(waiting.get(), "GET /", 5, MSG_NOSIGNAL), 5);
  const auto before = Clock::now();
  server.reset();
  EXPECT_LT(Clock::now() - before, 1s) << "stopping is immediate";
  EXPECT_TRUE(test::closedByPeer(test::waitClosed(waiting.get(), Clock::now() + 5s)));
  {
    const test::Fd fd(test::connectTo(port));
    EXPECT_LT(fd.get(), 0) << "something still listens on " << port;
    EXPECT_EQ(errno, ECONNREFUSED);
  }
  // The collectables are not used after the server is gone; the test holds the last reference.
  EXPECT_EQ(fake.use_count(), 1);

  // The same address again at once (a restart), though the scrape left a TIME_WAIT behind.
  const std::string again = test::address(port);
  const auto restarted = startOrFail(again, {fake});
  ASSERT_NE(restarted, nullptr);
  EXPECT_EQ(restarted->boundAddress(), again);
  EXPECT_EQ(get(port, "/metrics").status, 200);
}

TEST(MetricsServerTest, AnIPv6LoopbackAddressServesToo) {
  {
    const test::Fd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const auto any = reactor::SocketAddress::parse("[::1]:0");
    if (probe.get() < 0 || ::bind(probe.get(), any->data(), any->length()) != 0) {
      GTEST_SKIP() << "no IPv6 loopback here";
    }
  }
  const auto fake =
      std::make_shared<FakeCollectable>(std::vector<prometheus::MetricFamily>{gaugeFamily()});
  const auto server = startOrFail("[::1]:0", {fake});
  ASSERT_NE(server, nullptr);
  const std::string bound = server->boundAddress();
  EXPECT_EQ(bound.rfind("[::1]:", 0), 0u) << bound;
  EXPECT_NE(test::portOf(bound), 0) << bound;
  const Response response = get(bound, "/metrics");
  ASSERT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, prometheus::TextSerializer().Serialize({gaugeFamily()}));
}

// ---- Errors

TEST(MetricsServerTest, ASecondServerOnTheSamePortFailsNamingTheAddressAndTheReason) {
  const auto first = startOrFail("127.0.0.1:0", {});
  ASSERT_NE(first, nullptr);
  const std::string taken = first->boundAddress();
  std::string error;
  const auto second = MetricsServer::start(taken, {}, error);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(error.find(taken), std::string::npos) << error;
  EXPECT_NE(error.find("Address already in use"), std::string::npos) << error;
  EXPECT_EQ(error, "metrics.address " + taken + ": cannot listen: Address already in use");
  // The first one is not disturbed.
  const Response response = get(portOf(*first), "/metrics");
  EXPECT_EQ(response.error, "");
  EXPECT_EQ(response.status, 200);
}

TEST(MetricsServerTest, APortTakenByAnotherSocketFailsTheSameWay) {
  const test::Fd other(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in any = test::loopback(0);
  ASSERT_EQ(::bind(other.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(other.get(), 1), 0);
  const std::string taken = test::address(test::localPort(other.get()));
  std::string error;
  EXPECT_EQ(MetricsServer::start(taken, {}, error), nullptr);
  EXPECT_EQ(error, "metrics.address " + taken + ": cannot listen: Address already in use");
}

TEST(MetricsServerTest, AnAddressThatDoesNotParseIsRefusedClearly) {
  for (const std::string address : {"", "nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http",
                                    "127.0.0.1:65536", ":9902", "300.0.0.1:9902"}) {
    std::string error;
    const auto server = MetricsServer::start(address, {}, error);
    EXPECT_EQ(server, nullptr) << "\"" << address << "\"";
    EXPECT_EQ(error, "metrics.address " + address + ": not a host:port address")
        << "\"" << address << "\"";
  }
}

}  // namespace
}  // namespace evgate::gateway::metrics
