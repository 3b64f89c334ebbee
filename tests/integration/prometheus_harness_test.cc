// The harness that checks evgate's metrics against a real Prometheus, tested without evgate:
// the HTTP client against a fixture server in this process, the exposition and metrics-doc
// parsers on fixed texts, promtool on a fixed exposition, and a real Prometheus scraping the
// fixture server and evaluating a small rule file.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/exposition.h"
#include "tests/integration/http_get.h"
#include "tests/integration/metrics_doc.h"
#include "tests/integration/net_util.h"
#include "tests/integration/prometheus_server.h"
#include "tests/integration/promtool.h"

namespace evgate::test {
namespace {

// What the fixture server serves at /metrics: counters with escaped label values, a gauge with
// a two-line HELP, a histogram, in the shape prometheus-cpp writes.
constexpr char kExposition[] =
    "# HELP demo_requests_total Requests served.\n"
    "# TYPE demo_requests_total counter\n"
    "demo_requests_total{code=\"200\",path=\"/a\"} 7\n"
    "demo_requests_total{code=\"500\",path=\"/b \\\"quoted\\\" back\\\\slash\\nnext\"} 2\n"
    "# HELP demo_temperature_celsius A gauge\\nwith a second line and a \\\\.\n"
    "# TYPE demo_temperature_celsius gauge\n"
    "demo_temperature_celsius 21.5\n"
    "# HELP demo_latency_seconds Latency of demo requests.\n"
    "# TYPE demo_latency_seconds histogram\n"
    "demo_latency_seconds_count{route=\"x\"} 3\n"
    "demo_latency_seconds_sum{route=\"x\"} 0.75\n"
    "demo_latency_seconds_bucket{route=\"x\",le=\"0.1\"} 1\n"
    "demo_latency_seconds_bucket{route=\"x\",le=\"1\"} 3\n"
    "demo_latency_seconds_bucket{route=\"x\",le=\"+Inf\"} 3\n";

// The path label of the second demo_requests_total series, unescaped.
const std::string kOddPath = "/b \"quoted\" back\\slash\nnext";

// ---------------------------------------------------------------------------------------------
// A fixture HTTP server on 127.0.0.1:0: one thread answers one connection at a time with the
// raw response bytes routed by the request's path (404 otherwise), then closes it.

class FixtureHttpServer {
 public:
  explicit FixtureHttpServer(std::map<std::string, std::string> routes)
      : routes_(std::move(routes)), fd_(listenOnLoopback()) {
    if (fd_ < 0) return;
    port_ = localPort(fd_);
    thread_ = std::thread([this] { serve(); });
  }
  ~FixtureHttpServer() {
    if (fd_ < 0) return;
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  FixtureHttpServer(const FixtureHttpServer&) = delete;
  FixtureHttpServer& operator=(const FixtureHttpServer&) = delete;

  uint16_t port() const { return port_; }
  int requests(const std::string& path) const {
    std::lock_guard lock(mutex_);
    const auto it = counts_.find(path);
    return it == counts_.end() ? 0 : it->second;
  }

  static std::string withLength(const std::string& contentType, const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: " + contentType +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
           body;
  }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      const Fd connection(fd);
      answer(connection.get());
    }
  }

  void answer(int fd) {
    std::string request;
    char buf[4096];
    const auto deadline = Clock::now() + 2s;
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, millisLeft(deadline)) <= 0) return;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    // "GET /path HTTP/1.1"
    const size_t start = request.find(' ') + 1;
    const std::string path = request.substr(start, request.find(' ', start) - start);
    std::string response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    {
      std::lock_guard lock(mutex_);
      ++counts_[path];
      if (const auto it = routes_.find(path); it != routes_.end()) response = it->second;
    }
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t n = ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
  }

  const std::map<std::string, std::string> routes_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, int> counts_;
};

// ---------------------------------------------------------------------------------------------
// 1. The HTTP client.

TEST(HttpGet, UrlEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(urlEncode("up{job=\"evgate\"} == 1"), "up%7Bjob%3D%22evgate%22%7D%20%3D%3D%201");
  EXPECT_EQ(urlEncode("a-b.c_d~e+f/g&h%"), "a-b.c_d~e%2Bf%2Fg%26h%25");
  EXPECT_EQ(urlEncode("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(urlEncode(""), "");
}

TEST(HttpGet, ReadsContentLengthChunkedAndToEofBodies) {
  const std::string big(100000, 'x');  // several reads
  FixtureHttpServer server({
      {"/length", FixtureHttpServer::withLength("text/plain", "hello\r\nworld") + "ignored"},
      {"/big", FixtureHttpServer::withLength("text/plain", big)},
      {"/chunked",
       "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
       "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"},
      {"/eof", "HTTP/1.1 503 Service Unavailable\r\nX-Thing:  spaced  \r\n\r\nto the end"},
  });
  ASSERT_NE(server.port(), 0);

  HttpResponse length = httpGet(server.port(), "/length");
  ASSERT_TRUE(length.ok()) << length.error;
  EXPECT_EQ(length.status, 200);
  EXPECT_EQ(length.body, "hello\r\nworld");
  EXPECT_EQ(length.headers["content-type"], "text/plain");

  HttpResponse large = httpGet(server.port(), "/big");
  ASSERT_TRUE(large.ok()) << large.error;
  EXPECT_EQ(large.body, big);

  HttpResponse chunked = httpGet(server.port(), "/chunked");
  ASSERT_TRUE(chunked.ok()) << chunked.error;
  EXPECT_EQ(chunked.body, "hello 0123456789");

  HttpResponse eof = httpGet(server.port(), "/eof");
  ASSERT_TRUE(eof.ok()) << eof.error;
  EXPECT_EQ(eof.status, 503);
  EXPECT_EQ(eof.headers["x-thing"], "spaced");
  EXPECT_EQ(eof.body, "to the end");

  HttpResponse missing = httpGet(server.port(), "/nothing?q=" + urlEncode("a b"));
  ASSERT_TRUE(missing.ok()) << missing.error;
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(server.requests("/nothing?q=a%20b"), 1);
}

TEST(HttpGet, ReportsTruncatedAndMalformedResponses) {
  FixtureHttpServer server({
      {"/short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"},
      {"/badchunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"},
      {"/cutchunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort"},
      {"/nothttp", "SSH-2.0-OpenSSH\r\n\r\n"},
      {"/nohead", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"},
  });
  ASSERT_NE(server.port(), 0);
  EXPECT_NE(httpGet(server.port(), "/short").error.find("body cut off"), std::string::npos);
  EXPECT_NE(httpGet(server.port(), "/badchunk").error.find("bad chunk size \"zz\""),
            std::string::npos);
  EXPECT_NE(httpGet(server.port(), "/cutchunk").error.find("cut off"), std::string::npos);
  EXPECT_NE(httpGet(server.port(), "/nothttp").error.find("bad status line"), std::string::npos);
  EXPECT_NE(httpGet(server.port(), "/nohead").error.find("no complete response head"),
            std::string::npos);
}

TEST(HttpGet, ReportsARefusedConnectionAndTimesOutOnASilentServer) {
  const uint16_t refused = refusedPort();
  ASSERT_NE(refused, 0);
  const HttpResponse none = httpGet(refused, "/");
  EXPECT_FALSE(none.ok());
  EXPECT_NE(none.error.find("connect to 127.0.0.1:" + std::to_string(refused)), std::string::npos)
      << none.error;
  EXPECT_NE(none.error.find("refused"), std::string::npos) << none.error;

  // Listening but never accepting: the kernel completes the handshake and takes the request;
  // nothing ever answers.
  const Fd silent(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in addr = loopback(0);
  ASSERT_EQ(::bind(silent.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(silent.get(), 4), 0);
  const auto before = Clock::now();
  const HttpResponse late = httpGet(localPort(silent.get()), "/", 300ms);
  const auto took = Clock::now() - before;
  EXPECT_NE(late.error.find("timed out reading the response after 0 bytes"), std::string::npos)
      << late.error;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

// ---------------------------------------------------------------------------------------------
// 2. The exposition parser.

TEST(Exposition, ParsesFamiliesTypesHelpSamplesAndEscapes) {
  const Exposition exposition = parseExposition(kExposition);
  ASSERT_TRUE(exposition.errors.empty()) << exposition.errors.front();
  ASSERT_EQ(exposition.families.size(), 3u);

  const MetricFamily* requests = exposition.find("demo_requests_total");
  ASSERT_NE(requests, nullptr);
  EXPECT_EQ(requests->type, "counter");
  EXPECT_EQ(requests->help, "Requests served.");
  ASSERT_EQ(requests->samples.size(), 2u);
  EXPECT_EQ(requests->samples[0].name, "demo_requests_total");
  EXPECT_EQ(requests->samples[0].value, 7);
  EXPECT_EQ(requests->samples[1].labels.at("code"), "500");
  EXPECT_EQ(requests->samples[1].labels.at("path"), kOddPath);
  EXPECT_EQ(requests->samples[1].line, 4);

  const MetricFamily* temperature = exposition.find("demo_temperature_celsius");
  ASSERT_NE(temperature, nullptr);
  EXPECT_EQ(temperature->type, "gauge");
  EXPECT_EQ(temperature->help, "A gauge\nwith a second line and a \\.");
  ASSERT_EQ(temperature->samples.size(), 1u);
  EXPECT_TRUE(temperature->samples[0].labels.empty());
  EXPECT_EQ(temperature->samples[0].value, 21.5);

  const MetricFamily* latency = exposition.find("demo_latency_seconds");
  ASSERT_NE(latency, nullptr);
  EXPECT_EQ(latency->type, "histogram");
  ASSERT_EQ(latency->samples.size(), 5u);
  EXPECT_EQ(latency->samples[0].name, "demo_latency_seconds_count");
  EXPECT_EQ(latency->samples[1].name, "demo_latency_seconds_sum");
  EXPECT_EQ(latency->samples[4].name, "demo_latency_seconds_bucket");
  EXPECT_EQ(latency->samples[4].labels.at("le"), "+Inf");
  EXPECT_EQ(latency->samples[4].value, 3);

  const auto labels = labelNamesByFamily(exposition);
  EXPECT_EQ(labels.at("demo_requests_total"), (std::set<std::string>{"code", "path"}));
  EXPECT_EQ(labels.at("demo_temperature_celsius"), std::set<std::string>{});
  EXPECT_EQ(labels.at("demo_latency_seconds"), std::set<std::string>{"route"});
}

TEST(Exposition, AcceptsSpecialValuesTimestampsTrailingCommasAndUntypedSamples) {
  const Exposition exposition = parseExposition(
      "# a comment\n"
      "\n"
      "# TYPE x gauge\n"
      "x{a=\"1\",} +Inf 1700000000000\n"
      "x{a=\"2\"} -Inf\n"
      "x{a=\"3\"} Nan\n"
      "x{a=\"4\"} 1.5e-3\n"
      "loose 4\n"
      "# TYPE s summary\n"
      "s{quantile=\"0.5\"} 1\n"
      "s_sum 2\n"
      "s_count 3\n");
  ASSERT_TRUE(exposition.errors.empty()) << exposition.errors.front();
  const MetricFamily* x = exposition.find("x");
  ASSERT_NE(x, nullptr);
  ASSERT_EQ(x->samples.size(), 4u);
  EXPECT_TRUE(std::isinf(x->samples[0].value) && x->samples[0].value > 0);
  EXPECT_TRUE(std::isinf(x->samples[1].value) && x->samples[1].value < 0);
  EXPECT_TRUE(std::isnan(x->samples[2].value));
  EXPECT_DOUBLE_EQ(x->samples[3].value, 0.0015);
  const MetricFamily* loose = exposition.find("loose");
  ASSERT_NE(loose, nullptr);
  EXPECT_EQ(loose->type, "untyped");
  const MetricFamily* s = exposition.find("s");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->samples.size(), 3u);
  EXPECT_EQ(labelNamesOf(*s), std::set<std::string>{});
}

TEST(Exposition, ReportsEachMalformedLineWithItsNumber) {
  const Exposition exposition = parseExposition(
      "# TYPE a counter\n"
      "a{b=\"unterminated} 1\n"
      "a{b=\"x\" c=\"y\"} 1\n"
      "a{b=\"\\q\"} 1\n"
      "a one\n"
      "# TYPE a gauge\n"
      "# TYPE c kounter\n"
      "a{b=\"ok\"} 1\n"
      "a{b=\"ok\"} 2\n"
      "{b=\"x\"} 1\n");
  const std::vector<std::string> expected = {
      "line 2: label b: value not closed",
      "line 3: expected ',' or '}' after label b",
      "line 4: label b: unknown escape \\q",
      "line 5: bad value \"one\"",
      "line 6: second TYPE for a",
      "line 7: unknown type \"kounter\"",
      "line 9: duplicate series",
      "line 10: expected a metric name",
  };
  ASSERT_EQ(exposition.errors.size(), expected.size())
      << ::testing::PrintToString(exposition.errors);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(exposition.errors[i].rfind(expected[i], 0), 0u) << exposition.errors[i];
  }
}

// ---------------------------------------------------------------------------------------------
// 3. The metrics document and its comparison with an exposition.

constexpr char kDoc[] =
    "# Metrics\n"
    "\n"
    "## Requests\n"
    "\n"
    "| Metric | Type | Labels | Meaning |\n"
    "| --- | --- | --- | --- |\n"
    "| `demo_requests_total` | counter | `code`, `path` | Requests. |\n"
    "| `demo_temperature_celsius` | gauge | | A temperature. |\n"
    "\n"
    "### Latency\n"
    "\n"
    "| Metric | Type | Labels | Meaning |\n"
    "| --- | --- | --- | --- |\n"
    "| `demo_latency_seconds` | histogram | `route` | Latency (`le` is implied). |\n"
    "\n"
    "## Label values\n"
    "\n"
    "| Label | Values |\n"
    "| --- | --- |\n"
    "| `code` | an HTTP status |\n"
    "\n"
    "## Buckets\n"
    "\n"
    "| Histogram | Buckets |\n"
    "| --- | --- |\n"
    "| `demo_latency_seconds` | 0.1, 1 |\n";

TEST(MetricsDocTable, ReadsEveryMetricsTableAndIgnoresOthers) {
  const MetricsDoc doc = parseMetricsDoc(kDoc);
  ASSERT_TRUE(doc.errors.empty()) << doc.errors.front();
  ASSERT_EQ(doc.metrics.size(), 3u);
  EXPECT_EQ(doc.metrics.at("demo_requests_total").type, "counter");
  EXPECT_EQ(doc.metrics.at("demo_requests_total").labels, (std::set<std::string>{"code", "path"}));
  EXPECT_EQ(doc.metrics.at("demo_requests_total").line, 7);
  EXPECT_EQ(doc.metrics.at("demo_temperature_celsius").labels, std::set<std::string>{});
  EXPECT_EQ(doc.metrics.at("demo_latency_seconds").type, "histogram");
  EXPECT_EQ(doc.metrics.at("demo_latency_seconds").labels, std::set<std::string>{"route"});
  EXPECT_EQ(doc.buckets,
            (std::map<std::string, std::vector<double>>{{"demo_latency_seconds", {0.1, 1}}}));
}

TEST(MetricsDocTable, ReportsMalformedRowsAndDuplicates) {
  const MetricsDoc doc = parseMetricsDoc(
      "| Metric | Type | Labels | Meaning |\n"
      "| --- | --- | --- | --- |\n"
      "| `a_total` | counter | `x` | ok |\n"
      "| `b` | conter | | typo |\n"
      "| c | gauge | | no code span |\n"
      "| `d` | gauge | x | bare label |\n"
      "| `e` | gauge | |\n"
      "| `a_total` | counter | `x` | again |\n"
      "\n"
      "| Histogram | Buckets |\n"
      "| --- | --- |\n"
      "| `h1` | 1, 0.5 |\n"
      "| `h2` | 1, x |\n"
      "| `a_total` | 1, 2 |\n");
  const std::vector<std::string> expected = {
      "line 4: unknown type \"conter\"",
      "line 5: the first cell is not one `name`",
      "line 6: a label is not one `name`: \"x\"",
      "line 7: expected 4 cells, found 3",
      "line 8: a_total documented twice (first at line 3)",
      "line 12: bucket bounds must be finite numbers in increasing order, got \"0.5\"",
      "line 13: bucket bounds must be finite numbers in increasing order, got \"x\"",
      "a_total: has buckets but is not a documented histogram",
  };
  ASSERT_EQ(doc.errors.size(), expected.size()) << ::testing::PrintToString(doc.errors);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(doc.errors[i].rfind(expected[i], 0), 0u) << doc.errors[i];
  }
  EXPECT_EQ(doc.metrics.size(), 1u);
}

TEST(MetricsDocTable, ComparisonAgreesExactlyOrNamesEveryDifference) {
  EXPECT_EQ(compareWithDoc(parseMetricsDoc(kDoc), parseExposition(kExposition)),
            std::vector<std::string>{});

  const MetricsDoc doc = parseMetricsDoc(
      "| Metric | Type | Labels | Meaning |\n"
      "| --- | --- | --- | --- |\n"
      "| `demo_requests_total` | counter | `code` | fewer labels than exposed |\n"
      "| `demo_temperature_celsius` | counter | | wrong type |\n"
      "| `demo_gone_total` | counter | `x` | not exposed |\n"
      "| `demo_empty` | gauge | `x` | exposed without samples |\n"
      "| `demo_mixed` | gauge | `a` | samples disagree |\n"
      "| `demo_latency_seconds` | histogram | `route` | other buckets |\n"
      "\n"
      "| Histogram | Buckets |\n"
      "| --- | --- |\n"
      "| `demo_latency_seconds` | 0.1, 0.5, 1 |\n");
  ASSERT_TRUE(doc.errors.empty()) << doc.errors.front();
  const std::string text = std::string(kExposition) +
                           "# TYPE demo_empty gauge\n"
                           "# TYPE demo_mixed gauge\n"
                           "demo_mixed{a=\"1\"} 1\n"
                           "demo_mixed{a=\"2\",b=\"2\"} 1\n"
                           "# TYPE demo_extra gauge\n"
                           "demo_extra 1\n";
  const std::vector<std::string> differences = compareWithDoc(doc, parseExposition(text));
  const std::vector<std::string> expected = {
      "demo_empty: in the exposition without samples",
      "demo_gone_total: documented (line 5, counter {x}) but not in the exposition",
      "demo_latency_seconds: buckets of {route=x} are 0.1, 1, +Inf; the document says 0.1, 0.5, "
      "1, +Inf",
      "demo_mixed: labels are {a, b} in the exposition, {a} in the document (line 7)",
      "demo_mixed: the sample on line 17 has labels {a}, others of the family {a, b}",
      "demo_requests_total: labels are {code, path} in the exposition, {code} in the document",
      "demo_temperature_celsius: type is gauge in the exposition, counter in the document",
      "demo_extra: in the exposition (gauge {}) but not documented",
  };
  ASSERT_EQ(differences.size(), expected.size()) << ::testing::PrintToString(differences);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(differences[i].rfind(expected[i], 0), 0u) << differences[i];
  }
}

// The contract itself is well-formed: every row of every metrics table parses, and the names
// follow its own rules (evgate_ or process_ prefix, counters end in _total).
TEST(MetricsDocTable, TheProjectsMetricsDocumentParses) {
  const std::string text = readText(EVGATE_SOURCE_DIR "/docs/metrics.md");
  ASSERT_FALSE(text.empty()) << "cannot read docs/metrics.md";
  const MetricsDoc doc = parseMetricsDoc(text);
  EXPECT_TRUE(doc.errors.empty()) << ::testing::PrintToString(doc.errors);
  EXPECT_GE(doc.metrics.size(), 30u);
  ASSERT_EQ(doc.metrics.count("evgate_listener_connections_accepted_total"), 1u);
  for (const auto& [name, metric] : doc.metrics) {
    if (metric.type == "histogram") {
      EXPECT_EQ(doc.buckets.count(name), 1u) << name;
    }
  }
  EXPECT_EQ(doc.metrics.at("evgate_listener_connections_accepted_total").labels,
            std::set<std::string>{"listener"});
  for (const auto& [name, metric] : doc.metrics) {
    EXPECT_TRUE(name.rfind("evgate_", 0) == 0 || name.rfind("process_", 0) == 0) << name;
    if (metric.type == "counter") {
      EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 4. promtool check metrics.

TEST(Promtool, CheckMetricsAcceptsTheFixtureAndRejectsLintProblems) {
  const PromtoolVerdict good = promtoolCheckMetrics(PROMTOOL_BINARY, kExposition);
  EXPECT_TRUE(good.passed()) << good.describe();

  const PromtoolVerdict lint =
      promtoolCheckMetrics(PROMTOOL_BINARY, "# TYPE demo_requests counter\ndemo_requests 1\n");
  EXPECT_TRUE(lint.error.empty()) << lint.error;
  EXPECT_EQ(lint.code, 3) << lint.describe();
  EXPECT_NE(lint.output.find("_total"), std::string::npos) << lint.output;
  EXPECT_NE(lint.output.find("no help text"), std::string::npos) << lint.output;

  const PromtoolVerdict broken = promtoolCheckMetrics(PROMTOOL_BINARY, "demo{ 1\n");
  EXPECT_FALSE(broken.passed());
  EXPECT_EQ(broken.code, 1) << broken.describe();
}

// ---------------------------------------------------------------------------------------------
// 5. A real Prometheus scraping the fixture server and evaluating rules.

constexpr char kRules[] =
    "groups:\n"
    "  - name: harness\n"
    "    rules:\n"
    "      - record: demo:requests:sum\n"
    "        expr: sum(demo_requests_total)\n"
    // Both series end up with the same labels once the rule's labels remove a and b: an
    // evaluation error, so that rules() is seen reporting one.
    "      - record: demo:clash\n"
    "        expr: label_replace(vector(1), \"a\", \"1\", \"\", \"\") or "
    "label_replace(vector(2), \"b\", \"1\", \"\", \"\")\n"
    "        labels: { a: \"\", b: \"\" }\n"
    "      - alert: DemoFiring\n"
    "        expr: demo_temperature_celsius > 20\n"
    "      - alert: DemoPending\n"
    "        expr: vector(1)\n"
    "        for: 1h\n"
    "      - alert: DemoInactive\n"
    "        expr: demo_temperature_celsius > 100\n";

const PromRule* findRule(const std::vector<PromRule>& rules, const std::string& name) {
  const auto it = std::find_if(rules.begin(), rules.end(),
                               [&](const PromRule& rule) { return rule.name == name; });
  return it == rules.end() ? nullptr : &*it;
}

TEST(PrometheusServerTest, ScrapesQueriesAndEvaluatesRulesAgainstAFixtureTarget) {
  FixtureHttpServer target(
      {{"/metrics",
        FixtureHttpServer::withLength("text/plain; version=0.0.4; charset=utf-8", kExposition)}});
  ASSERT_NE(target.port(), 0);
  TempDir dir("evgate-harness");
  writeFile(dir.file("rules.yaml"), kRules);

  PrometheusOptions options;
  options.binary = PROMETHEUS_BINARY;
  options.target = address(target.port());
  options.ruleFiles = {dir.file("rules.yaml")};
  PrometheusServer prometheus(options);
  ASSERT_TRUE(prometheus.ok()) << prometheus.error();
  // The first scrape lands ~5-6 s after start (see prometheus_server.h).
  const auto deadline = Clock::now() + 20s;

  // Errors come back as errors, before any data is there.
  const PromQueryResult invalid = prometheus.query("sum(");
  EXPECT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status, "error");
  EXPECT_EQ(invalid.errorType, "bad_data");
  EXPECT_NE(invalid.error.find("parse error"), std::string::npos) << invalid.error;
  const PromQueryResult scalar = prometheus.query("1 + 1");
  ASSERT_TRUE(scalar.ok()) << scalar.describe();
  EXPECT_EQ(scalar.resultType, "scalar");
  ASSERT_EQ(scalar.samples.size(), 1u);
  EXPECT_EQ(scalar.samples[0].value, 2);

  const PromQueryResult up = prometheus.waitForSeries("up{job=\"evgate\"} == 1", deadline);
  ASSERT_EQ(up.samples.size(), 1u) << up.describe() << "\nprometheus log:\n" << prometheus.log();
  EXPECT_EQ(up.samples[0].labels.at("instance"), address(target.port()));
  EXPECT_GE(target.requests("/metrics"), 1);

  // A served series, with its escaped label value intact after the round trip.
  const PromQueryResult odd = prometheus.query("demo_requests_total{code=\"500\"}");
  ASSERT_TRUE(odd.ok()) << odd.describe();
  EXPECT_EQ(odd.resultType, "vector");
  ASSERT_EQ(odd.samples.size(), 1u) << odd.describe();
  EXPECT_EQ(odd.samples[0].labels.at("path"), kOddPath);
  EXPECT_EQ(odd.samples[0].labels.at("__name__"), "demo_requests_total");
  EXPECT_EQ(odd.samples[0].value, 2);
  const PromQueryResult bucket = prometheus.query("demo_latency_seconds_bucket{le=\"+Inf\"}");
  ASSERT_EQ(bucket.samples.size(), 1u) << bucket.describe();
  EXPECT_EQ(bucket.samples[0].value, 3);
  const PromQueryResult range = prometheus.query("demo_temperature_celsius[1m]");
  ASSERT_TRUE(range.ok()) << range.describe();
  EXPECT_EQ(range.resultType, "matrix");
  ASSERT_EQ(range.samples.size(), 1u) << range.describe();
  EXPECT_EQ(range.samples[0].value, 21.5);
  const PromQueryResult empty = prometheus.query("demo_requests_total{code=\"404\"}");
  EXPECT_TRUE(empty.ok() && empty.samples.empty()) << empty.describe();

  const PromList<PromTarget> targets = prometheus.targets();
  ASSERT_TRUE(targets.ok()) << targets.error;
  ASSERT_EQ(targets.items.size(), 1u);
  EXPECT_EQ(targets.items[0].labels.at("job"), "evgate");
  EXPECT_EQ(targets.items[0].health, "up");
  EXPECT_EQ(targets.items[0].lastError, "");
  EXPECT_EQ(targets.items[0].scrapeUrl, "http://" + address(target.port()) + "/metrics");

  // The recording rule has data once a scrape has happened and the group ran after it.
  const PromQueryResult recorded = prometheus.waitForSeries("demo:requests:sum", deadline);
  ASSERT_EQ(recorded.samples.size(), 1u) << recorded.describe();
  EXPECT_EQ(recorded.samples[0].value, 9);

  const PromList<PromRule> rules = prometheus.waitForRulesEvaluated(deadline);
  ASSERT_TRUE(rules.ok()) << rules.error;
  ASSERT_EQ(rules.items.size(), 5u);
  for (const PromRule& rule : rules.items) EXPECT_EQ(rule.group, "harness");
  const PromRule* sum = findRule(rules.items, "demo:requests:sum");
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->type, "recording");
  EXPECT_EQ(sum->health, "ok");
  EXPECT_EQ(sum->lastError, "");
  EXPECT_EQ(sum->query, "sum(demo_requests_total)");
  const PromRule* clash = findRule(rules.items, "demo:clash");
  ASSERT_NE(clash, nullptr);
  EXPECT_EQ(clash->health, "err");
  EXPECT_NE(clash->lastError.find("same labelset"), std::string::npos) << clash->lastError;

  // DemoFiring fires once the scraped gauge reaches the rules; poll until it does.
  PromList<PromRule> later = rules;
  while (Clock::now() < deadline) {
    const PromRule* firing = findRule(later.items, "DemoFiring");
    if (firing != nullptr && firing->state == "firing") break;
    std::this_thread::sleep_for(100ms);
    later = prometheus.rules();
  }
  const PromRule* firing = findRule(later.items, "DemoFiring");
  ASSERT_NE(firing, nullptr);
  EXPECT_EQ(firing->type, "alerting");
  EXPECT_EQ(firing->state, "firing");
  ASSERT_EQ(firing->alertLabels.size(), 1u);
  EXPECT_EQ(firing->alertLabels[0].at("alertname"), "DemoFiring");
  EXPECT_EQ(firing->alertLabels[0].at("job"), "evgate");
  const PromRule* pending = findRule(later.items, "DemoPending");
  ASSERT_NE(pending, nullptr);
  EXPECT_EQ(pending->state, "pending");
  const PromRule* inactive = findRule(later.items, "DemoInactive");
  ASSERT_NE(inactive, nullptr);
  EXPECT_EQ(inactive->state, "inactive");
  EXPECT_EQ(inactive->health, "ok");
  EXPECT_TRUE(inactive->alertLabels.empty());

  const PromList<PromAlert> alerts = prometheus.alerts();
  ASSERT_TRUE(alerts.ok()) << alerts.error;
  std::map<std::string, std::string> states;
  for (const PromAlert& alert : alerts.items) states[alert.labels.at("alertname")] = alert.state;
  EXPECT_EQ(states, (std::map<std::string, std::string>{{"DemoFiring", "firing"},
                                                        {"DemoPending", "pending"}}));
}

TEST(PrometheusServerTest, ABadRuleFileIsReportedAtStart) {
  TempDir dir("evgate-harness");
  writeFile(dir.file("rules.yaml"),
            "groups:\n  - name: bad\n    rules:\n      - record: x\n"
            "        expr: sum(\n");
  PrometheusOptions options;
  options.binary = PROMETHEUS_BINARY;
  options.target = address(refusedPort());
  options.ruleFiles = {dir.file("rules.yaml")};
  const PrometheusServer prometheus(options);
  EXPECT_FALSE(prometheus.ok());
  EXPECT_NE(prometheus.error().find("rules.yaml"), std::string::npos) << prometheus.error();
}

}  // namespace
}  // namespace evgate::test
