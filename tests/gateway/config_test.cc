#include "gateway/config/config.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/cidr.h"
#include "gateway/config/config_parser.h"
#include "gateway/config/default_config.h"
#include "gateway/config/limits.h"
#include "gateway/config/names.h"

namespace evgate::gateway {
namespace {

using reactor::SocketAddress;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using Errors = std::vector<std::string>;

// Raw string literals start with a newline for readability; the file starts after it, so that
// line 1 of the YAML is the first line written in the test.
std::string yaml(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return std::string(text);
}

Errors errorsOf(std::string_view text) {
  const ConfigResult result = parseConfig(yaml(text), "t.yaml");
  EXPECT_FALSE(result.ok());
  EXPECT_FALSE(result.config.has_value());
  Errors errors;
  for (const ConfigError& error : result.errors) errors.push_back(error.toString());
  return errors;
}

Config parseOk(std::string_view text) {
  ConfigResult result = parseConfig(yaml(text), "t.yaml");
  for (const ConfigError& error : result.errors) ADD_FAILURE() << error.toString();
  EXPECT_TRUE(result.ok());
  return result.config.value_or(Config{});
}

SocketAddress address(std::string_view text) {
  const std::optional<SocketAddress> parsed = SocketAddress::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(SocketAddress{});
}

Cidr cidr(std::string_view text) {
  const std::optional<Cidr> parsed = Cidr::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(Cidr{});
}

// A valid cluster and listener, to which tests add one broken key.
constexpr std::string_view kMinimal = R"(
clusters:
  - name: backends
    endpoints: [ "127.0.0.1:9000" ]
listeners:
  - name: web
    bind: 0.0.0.0:8080
    cluster: backends
)";

// ---- Defaults and the full example -------------------------------------------------------------

TEST(ConfigParserTest, EmbeddedDefaultParsesToTheModelDefaults) {
  const ConfigResult result = parseConfig(defaultConfigYaml(), "<default>");
  ASSERT_TRUE(result.ok()) << (result.errors.empty() ? "" : result.errors[0].toString());
  EXPECT_TRUE(result.errors.empty());
  EXPECT_EQ(*result.config, Config{});
  EXPECT_EQ(result.config->admin.address, "127.0.0.1:9901");
  EXPECT_EQ(result.config->metrics.address, "127.0.0.1:9902");
  EXPECT_EQ(result.config->workers, 0u);
  EXPECT_EQ(result.config->drainTimeout, seconds(30));
  EXPECT_TRUE(result.config->listeners.empty());
  EXPECT_TRUE(result.config->clusters.empty());
}

TEST(ConfigParserTest, ListenerSocketsAndListenerDetailTakeTheirWordsOnly) {
  EXPECT_EQ(Config{}.listenerSockets, ListenerSockets::kAuto);
  EXPECT_EQ(Config{}.metrics.listenerDetail, ListenerDetail::kFull);
  EXPECT_EQ(parseOk("listener_sockets: shared\n").listenerSockets, ListenerSockets::kShared);
  const ConfigResult bad =
      parseConfig("listener_sockets: reuseport\nmetrics: { listener_detail: none }\n", "t.yaml");
  ASSERT_EQ(bad.errors.size(), 2u);
  EXPECT_NE(
      bad.errors[0].toString().find("listener_sockets: expected one of auto, shared, per_worker"),
      std::string::npos)
      << bad.errors[0].toString();
  EXPECT_NE(bad.errors[1].toString().find("metrics.listener_detail: expected one of full, basic"),
            std::string::npos)
      << bad.errors[1].toString();
}

TEST(ConfigParserTest, EmptyDocumentIsAllDefaults) {
  EXPECT_EQ(parseOk(""), Config{});
  EXPECT_EQ(parseOk("# nothing here\n\n"), Config{});
  EXPECT_EQ(parseOk("---\n"), Config{});
}

TEST(ConfigParserTest, ParsesEveryKey) {
  const Config config = parseOk(R"(
workers: 4
listener_sockets: per_worker
drain_timeout: 45s
max_buffered_bytes: 2GiB
state_file: /var/lib/evgate/state.yaml
admin:
  address: 127.0.0.1:9911
  token_file: /etc/evgate/token
  tls: { cert_file: /etc/evgate/tls.crt, key_file: /etc/evgate/tls.key, client_ca_file: ca.crt }
metrics:
  address: "[::1]:9912"
  listener_detail: basic
log:
  format: json
  level: debug
  queue_limit: 4MiB
access_log:
  mode: file
  path: /var/log/evgate/access.log
  queue_limit: 64MiB
clusters:
  - name: backends
    lb: least_connections
    endpoints: [ "127.0.0.1:9000", { address: "[::1]:9001", weight: 2 } ]
    connect_timeout: 2s
    max_connect_attempts: 4
    health_check: { interval: 10s, timeout: 500ms, unhealthy_threshold: 4, healthy_threshold: 3 }
    send_proxy_protocol: v2
    outlier: { consecutive_failures: 7, base_ejection: 2s, max_ejection: 1m }
  - name: other.pool-2
    lb: hash_client_ip
    endpoints:
      - 10.0.0.1:80
      - address: 10.0.0.2:80
listeners:
  - name: web
    bind: 0.0.0.0:8080
    cluster: backends
    max_connections: 500
    buffer_limit: 1MiB
    idle_timeout: 10m
    half_close_timeout: 15s
    max_lifetime: 1h
    max_lifetime_jitter: 5m
    allow: [ "10.0.0.0/8", "::1", "2001:db8::/32" ]
    proxy_protocol: accept
    proxy_protocol_timeout: 3s
    splice: always
  - name: internal
    bind: "[::]:8081"
    cluster: other.pool-2
)");
  EXPECT_EQ(config.workers, 4u);
  EXPECT_EQ(config.listenerSockets, ListenerSockets::kPerWorker);
  EXPECT_EQ(config.metrics.listenerDetail, ListenerDetail::kBasic);
  EXPECT_EQ(config.drainTimeout, seconds(45));
  EXPECT_EQ(config.maxBufferedBytes, uint64_t{2} << 30);
  EXPECT_EQ(config.stateFile, "/var/lib/evgate/state.yaml");
  EXPECT_EQ(config.admin.address, "127.0.0.1:9911");
  EXPECT_EQ(config.admin.tokenFile, "/etc/evgate/token");
  EXPECT_EQ(config.admin.tlsCertFile, "/etc/evgate/tls.crt");
  EXPECT_EQ(config.admin.tlsKeyFile, "/etc/evgate/tls.key");
  EXPECT_EQ(config.admin.tlsClientCaFile, "ca.crt");
  EXPECT_EQ(config.metrics.address, "[::1]:9912");
  EXPECT_EQ(config.log.format, LogFormat::kJson);
  EXPECT_EQ(config.log.level, LogLevel::kDebug);
  EXPECT_EQ(config.accessLog.mode, AccessLogMode::kFile);
  EXPECT_EQ(config.accessLog.path, "/var/log/evgate/access.log");
  EXPECT_EQ(config.log.queueLimit, size_t{4} << 20);
  EXPECT_EQ(config.accessLog.queueLimit, size_t{64} << 20);

  ASSERT_EQ(config.clusters.size(), 2u);
  const ClusterConfig& backends = config.clusters[0];
  EXPECT_EQ(backends.name, "backends");
  EXPECT_EQ(backends.lb, LbPolicy::kLeastConnections);
  ASSERT_EQ(backends.endpoints.size(), 2u);
  EXPECT_EQ(backends.endpoints[0].address, address("127.0.0.1:9000"));
  EXPECT_EQ(backends.endpoints[0].weight, 1u);
  EXPECT_EQ(backends.endpoints[1].address, address("[::1]:9001"));
  EXPECT_EQ(backends.endpoints[1].weight, 2u);
  EXPECT_EQ(backends.connectTimeout, seconds(2));
  EXPECT_EQ(backends.maxConnectAttempts, 4u);
  ASSERT_TRUE(backends.healthCheck.has_value());
  EXPECT_EQ(backends.healthCheck->interval, seconds(10));
  EXPECT_EQ(backends.healthCheck->timeout, milliseconds(500));
  EXPECT_EQ(backends.healthCheck->unhealthyThreshold, 4u);
  EXPECT_EQ(backends.healthCheck->healthyThreshold, 3u);
  EXPECT_EQ(backends.sendProxyProtocol, ProxyProtocol::kV2);
  EXPECT_EQ(backends.outlier.consecutiveFailures, 7u);
  EXPECT_EQ(backends.outlier.baseEjection, seconds(2));
  EXPECT_EQ(backends.outlier.maxEjection, minutes(1));

  const ClusterConfig& other = config.clusters[1];
  EXPECT_EQ(other.name, "other.pool-2");
  EXPECT_EQ(other.lb, LbPolicy::kHashClientIp);
  ASSERT_EQ(other.endpoints.size(), 2u);
  EXPECT_EQ(other.endpoints[0].address, address("10.0.0.1:80"));
  EXPECT_EQ(other.endpoints[1].address, address("10.0.0.2:80"));
  EXPECT_EQ(other.endpoints[1].weight, 1u);
  EXPECT_FALSE(other.healthCheck.has_value());
  EXPECT_EQ(other.outlier, OutlierConfig{});
  EXPECT_EQ(other.sendProxyProtocol, ProxyProtocol::kNone);

  ASSERT_EQ(config.listeners.size(), 2u);
  const ListenerConfig& web = config.listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.bind, address("0.0.0.0:8080"));
  EXPECT_EQ(web.cluster, "backends");
  EXPECT_EQ(web.maxConnections, 500u);
  EXPECT_EQ(web.bufferLimit, 1024u * 1024u);
  EXPECT_EQ(web.idleTimeout, minutes(10));
  EXPECT_EQ(web.halfCloseTimeout, seconds(15));
  EXPECT_EQ(web.maxLifetime, hours(1));
  EXPECT_EQ(web.maxLifetimeJitter, minutes(5));
  EXPECT_EQ(web.allow,
            (std::vector<Cidr>{cidr("10.0.0.0/8"), cidr("::1/128"), cidr("2001:db8::/32")}));
  EXPECT_TRUE(web.acceptProxyProtocol);
  EXPECT_EQ(web.proxyProtocolTimeout, seconds(3));
  EXPECT_EQ(web.splice, SpliceMode::kAlways);

  const ListenerConfig& internal = config.listeners[1];
  ListenerConfig expected;
  expected.name = "internal";
  expected.bind = address("[::]:8081");
  expected.cluster = "other.pool-2";
  EXPECT_EQ(internal, expected);  // everything else is the default

  EXPECT_EQ(config.findCluster("other.pool-2"), &config.clusters[1]);
  EXPECT_EQ(config.findCluster("nope"), nullptr);
  EXPECT_EQ(config.findListener("internal"), &config.listeners[1]);
  EXPECT_EQ(config.findListener("backends"), nullptr);
}

TEST(ConfigParserTest, OmittedKeysTakeTheModelDefaults) {
  const Config config = parseOk(kMinimal);
  ASSERT_EQ(config.clusters.size(), 1u);
  ClusterConfig cluster;
  cluster.name = "backends";
  cluster.endpoints.push_back(EndpointConfig{address("127.0.0.1:9000"), 1});
  EXPECT_EQ(config.clusters[0], cluster);
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].bufferLimit, 64u * 1024u);
  EXPECT_EQ(config.listeners[0].idleTimeout, seconds(300));
  EXPECT_FALSE(config.listeners[0].maxLifetime.has_value());
  EXPECT_TRUE(config.listeners[0].allow.empty());
}

TEST(ConfigParserTest, HealthCheckWithOnlySomeKeysKeepsTheOtherDefaults) {
  const Config config = parseOk(R"(
clusters:
  - name: c
    endpoints: [ "127.0.0.1:9000" ]
    health_check: { interval: 2s }
)");
  ASSERT_TRUE(config.clusters[0].healthCheck.has_value());
  HealthCheckConfig expected;
  expected.interval = seconds(2);
  EXPECT_EQ(*config.clusters[0].healthCheck, expected);
}

TEST(ConfigParserTest, AcceptsEveryEnumValue) {
  for (const auto& [text, policy] : {std::pair{"round_robin", LbPolicy::kRoundRobin},
                                     std::pair{"least_connections", LbPolicy::kLeastConnections},
                                     std::pair{"random_two", LbPolicy::kRandomTwo},
                                     std::pair{"hash_client_ip", LbPolicy::kHashClientIp}}) {
    const Config config =
        parseOk(std::string("clusters: [ { name: c, endpoints: [ \"1.2.3.4:5\" ], "
                            "lb: ") +
                text + " } ]");
    EXPECT_EQ(config.clusters.at(0).lb, policy) << text;
  }
  EXPECT_EQ(parseOk("log: { level: warn }").log.level, LogLevel::kWarn);
  EXPECT_EQ(parseOk("log: { level: error }").log.level, LogLevel::kError);
  EXPECT_EQ(parseOk("access_log: { mode: off }").accessLog.mode, AccessLogMode::kOff);
  EXPECT_EQ(parseOk("access_log: { mode: stdout }").accessLog.mode, AccessLogMode::kStdout);
}

TEST(ConfigParserTest, PortZeroBindsAreNotClashes) {
  const Config config = parseOk(R"(
clusters: [ { name: c, endpoints: [ "127.0.0.1:9000" ] } ]
listeners:
  - { name: a, bind: "127.0.0.1:0", cluster: c }
  - { name: b, bind: "127.0.0.1:0", cluster: c }
)");
  EXPECT_EQ(config.listeners.size(), 2u);
}

TEST(ConfigParserTest, ZeroIsAllowedWhereItMeansNone) {
  const Config config = parseOk(R"(
drain_timeout: 0
clusters:
  - { name: c, endpoints: [ "127.0.0.1:9000" ], outlier: { consecutive_failures: 0 } }
listeners:
  - { name: l, bind: "127.0.0.1:0", cluster: c, max_lifetime_jitter: 0s }
)");
  EXPECT_EQ(config.drainTimeout.count(), 0);
  EXPECT_EQ(config.clusters[0].outlier.consecutiveFailures, 0u);
}

TEST(ConfigParserTest, MaxBufferedBytes) {
  EXPECT_EQ(parseOk("{}").maxBufferedBytes, 0u) << "no budget by default";
  EXPECT_EQ(parseOk("max_buffered_bytes: 256MiB").maxBufferedBytes, uint64_t{256} << 20);
  EXPECT_EQ(parseOk("max_buffered_bytes: 1TiB").maxBufferedBytes, uint64_t{1} << 40);
  EXPECT_EQ(parseOk("max_buffered_bytes: 0").maxBufferedBytes, 0u);
  for (const char* bad : {"512KiB", "2TiB", "lots", "-1"}) {
    EXPECT_EQ(errorsOf(std::string("max_buffered_bytes: ") + bad),
              (Errors{std::string(R"(t.yaml:1:21: max_buffered_bytes: expected 0 (no budget) )") +
                      R"(or a size from 1MiB to 1TiB, got ")" + bad + R"(")"}))
        << bad;
  }
}

TEST(ConfigParserTest, LogQueueLimits) {
  EXPECT_EQ(parseOk("{}").log.queueLimit, size_t{1} << 20);
  EXPECT_EQ(parseOk("{}").accessLog.queueLimit, size_t{8} << 20);
  EXPECT_EQ(parseOk("log: { queue_limit: 64KiB }").log.queueLimit, size_t{64} << 10);
  EXPECT_EQ(parseOk("access_log: { queue_limit: 1GiB }").accessLog.queueLimit, size_t{1} << 30);
  for (const std::string bad : {"1KiB", "2GiB", "lots"}) {
    const std::string expected =
        std::string("log.queue_limit: expected ") +
        (bad == "lots" ? "a size like 64KiB" : "a size from 4KiB to 1GiB") + ", got \"" + bad +
        "\"";
    EXPECT_EQ(errorsOf("log: { queue_limit: " + bad + " }"), (Errors{"t.yaml:1:21: " + expected}))
        << bad;
    EXPECT_EQ(errorsOf("access_log: { queue_limit: " + bad + " }"),
              (Errors{"t.yaml:1:28: access_" + expected}))
        << bad;
  }
}

// ---- Every problem, in file order --------------------------------------------------------------

TEST(ConfigParserTest, ReportsEveryProblemInFileOrder) {
  EXPECT_EQ(
      errorsOf(R"(
wrkers: 2
drain_timeout: 30 seconds
clusters:
  - name: backends
    lb: round_robbin
    endpoints: [ "127.0.0.1:9000", "127.0.0.1:9000" ]
  - name: backends
    endpoints: []
listeners:
  - name: web
    bnd: 0.0.0.0:8080
    cluster: backends
    buffer_limit: 64 kilobytes
    splice: sometimes
  - name: api
    bind: 0.0.0.0:8081
    cluster: nope
)"),
      (Errors{
          R"(t.yaml:1:1: unknown key "wrkers" (did you mean "workers"?))",
          R"(t.yaml:2:16: drain_timeout: expected a duration like 5s, got "30 seconds")",
          R"(t.yaml:5:9: clusters[0].lb: expected one of round_robin, least_connections, )"
          R"(random_two, hash_client_ip, got "round_robbin" (did you mean "round_robin"?))",
          R"(t.yaml:6:36: clusters[0].endpoints[1]: duplicate endpoint 127.0.0.1:9000 )"
          R"((first at 6:18))",
          R"(t.yaml:7:11: clusters[1].name: duplicate cluster name "backends" (first at 4:11))",
          R"(t.yaml:8:16: clusters[1].endpoints: expected at least one endpoint)",
          R"(t.yaml:10:5: listeners[0]: missing required key "bind")",
          R"(t.yaml:11:5: listeners[0]: unknown key "bnd" (did you mean "bind"?))",
          R"(t.yaml:13:19: listeners[0].buffer_limit: expected a size like 64KiB, )"
          R"(got "64 kilobytes")",
          R"(t.yaml:14:13: listeners[0].splice: expected one of auto, off, always, )"
          R"(got "sometimes")",
          R"(t.yaml:17:14: listeners[1].cluster: unknown cluster "nope")",
      }));
}

TEST(ConfigParserTest, UnknownClusterReferenceSuggestsAClosName) {
  EXPECT_EQ(errorsOf(R"(
listeners:
  - name: web
    bind: 0.0.0.0:8080
    cluster: backend
clusters:
  - name: backends
    endpoints: [ "127.0.0.1:9000" ]
)"),
            (Errors{R"(t.yaml:4:14: listeners[0].cluster: unknown cluster "backend" )"
                    R"((did you mean "backends"?))"}));
}

TEST(ConfigParserTest, ListenerWithoutAnyClustersIsUnknownCluster) {
  EXPECT_EQ(errorsOf(R"(
listeners: [ { name: web, bind: "0.0.0.0:8080", cluster: backends } ]
)"),
            (Errors{R"(t.yaml:1:58: listeners[0].cluster: unknown cluster "backends")"}));
}

TEST(ConfigParserTest, AClusterWithErrorsStillCountsForReferences) {
  // One error for the bad endpoint, none for the listener that names the cluster.
  EXPECT_EQ(errorsOf(R"(
clusters: [ { name: c, endpoints: [ "nowhere" ] } ]
listeners: [ { name: l, bind: "0.0.0.0:80", cluster: c } ]
)"),
            (Errors{R"(t.yaml:1:37: clusters[0].endpoints[0]: expected an address like )"
                    R"(127.0.0.1:9000 or [::1]:9000, got "nowhere")"}));
}

TEST(ConfigParserTest, DuplicateListenerNamesAndAddresses) {
  EXPECT_EQ(errorsOf(R"(
admin: { address: "127.0.0.1:9100" }
metrics: { address: "127.0.0.1:9100" }
clusters: [ { name: c, endpoints: [ "127.0.0.1:9000" ] } ]
listeners:
  - { name: web, bind: "0.0.0.0:8080", cluster: c }
  - { name: web, bind: "0.0.0.0:8080", cluster: c }
  - { name: adm, bind: "127.0.0.1:9100", cluster: c }
)"),
            (Errors{
                R"(t.yaml:2:21: metrics.address: 127.0.0.1:9100 is already used by )"
                R"(admin.address (at 1:19))",
                R"(t.yaml:6:13: listeners[1].name: duplicate listener name "web" (first at 5:13))",
                R"(t.yaml:6:24: listeners[1].bind: 0.0.0.0:8080 is already used by )"
                R"(listeners[0].bind (at 5:24))",
                R"(t.yaml:7:24: listeners[2].bind: 127.0.0.1:9100 is already used by )"
                R"(admin.address (at 1:19))",
            }));
}

TEST(ConfigParserTest, DuplicateKeys) {
  EXPECT_EQ(errorsOf(R"(
workers: 1
workers: 2
admin:
  address: 127.0.0.1:9901
  address: 127.0.0.1:9903
)"),
            (Errors{
                R"(t.yaml:2:1: workers: duplicate key (first at 1:1))",
                R"(t.yaml:5:3: admin.address: duplicate key (first at 4:3))",
            }));
}

// ---- Unknown keys at every level ---------------------------------------------------------------

TEST(ConfigParserTest, UnknownKeysAtEveryLevel) {
  EXPECT_EQ(errorsOf(R"(
admin:
  adress: 127.0.0.1:1
  tls: { cert: x }
metrics: { port: 9 }
log: { colour: true }
access_log: { file: x }
clusters:
  - name: c
    endpoints: [ { address: "127.0.0.1:1", wieght: 2 } ]
    health_check: { intervall: 1s }
    outlier: { failures: 1 }
    retries: 3
listeners:
  - name: l
    bind: 0.0.0.0:1
    cluster: c
    allowed: []
timeouts: {}
)"),
            (Errors{
                R"(t.yaml:2:3: admin: unknown key "adress" (did you mean "address"?))",
                R"(t.yaml:3:10: admin.tls: unknown key "cert")",
                R"(t.yaml:4:12: metrics: unknown key "port")",
                R"(t.yaml:5:8: log: unknown key "colour")",
                R"(t.yaml:6:15: access_log: unknown key "file")",
                R"(t.yaml:9:44: clusters[0].endpoints[0]: unknown key "wieght" )"
                R"((did you mean "weight"?))",
                R"(t.yaml:10:21: clusters[0].health_check: unknown key "intervall" )"
                R"((did you mean "interval"?))",
                R"(t.yaml:11:16: clusters[0].outlier: unknown key "failures")",
                R"(t.yaml:12:5: clusters[0]: unknown key "retries")",
                R"(t.yaml:17:5: listeners[0]: unknown key "allowed" (did you mean "allow"?))",
                R"(t.yaml:18:1: unknown key "timeouts")",
            }));
}

TEST(ConfigParserTest, NonScalarKeysAreRejected) {
  EXPECT_EQ(errorsOf("? [a, b]\n: 1\n"),
            (Errors{R"(t.yaml:1:3: expected a plain key, got a sequence)"}));
}

// ---- Wrong types and bad values ----------------------------------------------------------------

TEST(ConfigParserTest, WrongTypes) {
  EXPECT_EQ(errorsOf(R"(
workers: [1]
state_file: { a: 1 }
admin: "127.0.0.1:9901"
metrics: []
log: text
clusters: { name: c }
listeners: web
)"),
            (Errors{
                R"(t.yaml:1:10: workers: expected an integer 0..1024, got a sequence)",
                R"(t.yaml:2:13: state_file: expected a string, got a map)",
                R"(t.yaml:3:8: admin: expected a map, got "127.0.0.1:9901")",
                R"(t.yaml:4:10: metrics: expected a map, got a sequence)",
                R"(t.yaml:5:6: log: expected a map, got "text")",
                R"(t.yaml:6:11: clusters: expected a sequence, got a map)",
                R"(t.yaml:7:12: listeners: expected a sequence, got "web")",
            }));
}

TEST(ConfigParserTest, WrongTypesInsideClustersAndListeners) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - backends
  - name: c
    endpoints: "127.0.0.1:9000"
    health_check: yes
    outlier: []
listeners:
  - name: [l]
    bind: { address: "0.0.0.0:1" }
    cluster: c
    allow: "10.0.0.0/8"
)"),
            (Errors{
                R"(t.yaml:2:5: clusters[0]: expected a map, got "backends")",
                R"(t.yaml:4:16: clusters[1].endpoints: expected a sequence, got "127.0.0.1:9000")",
                R"(t.yaml:5:19: clusters[1].health_check: expected a map, got "yes")",
                R"(t.yaml:6:14: clusters[1].outlier: expected a map, got a sequence)",
                R"(t.yaml:8:11: listeners[0].name: expected a name of 1 to 64 characters from )"
                R"(A-Z a-z 0-9 _ . -, got a sequence)",
                R"(t.yaml:9:11: listeners[0].bind: expected an address like 0.0.0.0:8080 or )"
                R"([::]:8080, got a map)",
                R"(t.yaml:11:12: listeners[0].allow: expected a sequence, got "10.0.0.0/8")",
            }));
}

TEST(ConfigParserTest, TopLevelMustBeAMap) {
  EXPECT_EQ(errorsOf("- workers: 1\n"),
            (Errors{"t.yaml:1:1: expected a map of settings at the top level, got a sequence"}));
  EXPECT_EQ(errorsOf("hello\n"),
            (Errors{R"(t.yaml:1:1: expected a map of settings at the top level, got "hello")"}));
}

TEST(ConfigParserTest, EmptyValuesAreErrorsAtTheirKey) {
  EXPECT_EQ(errorsOf(R"(
drain_timeout:
state_file: ~
listeners:
)"),
            (Errors{
                R"(t.yaml:1:1: drain_timeout: expected a duration like 5s, got null)",
                R"(t.yaml:2:1: state_file: expected a string, got null)",
                R"(t.yaml:3:1: listeners: expected a sequence, got null)",
            }));
}

TEST(ConfigParserTest, IntegerRanges) {
  EXPECT_EQ(errorsOf(R"(
workers: 1025
clusters:
  - name: c
    endpoints: [ { address: "127.0.0.1:1", weight: 0 }, { address: "127.0.0.1:2", weight: 1001 } ]
    max_connect_attempts: 0
    health_check: { unhealthy_threshold: 0, healthy_threshold: 1.5 }
listeners:
  - { name: l, bind: "0.0.0.0:1", cluster: c, max_connections: 4294967296 }
  - { name: m, bind: "0.0.0.0:2", cluster: c, max_connections: -1 }
  - { name: n, bind: "0.0.0.0:3", cluster: c, max_connections: 0x10 }
)"),
            (Errors{
                R"(t.yaml:1:10: workers: expected an integer 0..1024, got "1025")",
                R"(t.yaml:4:52: clusters[0].endpoints[0].weight: expected an integer 1..1000, )"
                R"(got "0")",
                R"(t.yaml:4:91: clusters[0].endpoints[1].weight: expected an integer 1..1000, )"
                R"(got "1001")",
                R"(t.yaml:5:27: clusters[0].max_connect_attempts: expected an integer 1..100, )"
                R"(got "0")",
                R"(t.yaml:6:42: clusters[0].health_check.unhealthy_threshold: expected an )"
                R"(integer 1..1000, got "0")",
                R"(t.yaml:6:64: clusters[0].health_check.healthy_threshold: expected an )"
                R"(integer 1..1000, got "1.5")",
                R"(t.yaml:8:64: listeners[0].max_connections: expected an integer of at least 1, )"
                R"(got "4294967296")",
                R"(t.yaml:9:64: listeners[1].max_connections: expected an integer of at least 1, )"
                R"(got "-1")",
                R"(t.yaml:10:64: listeners[2].max_connections: expected an integer of at least 1, )"
                R"(got "0x10")",
            }));
}

TEST(ConfigParserTest, DurationsAndSizes) {
  EXPECT_EQ(errorsOf(R"(
drain_timeout: -1s
clusters:
  - name: c
    endpoints: [ "127.0.0.1:1" ]
    connect_timeout: 0s
listeners:
  - name: l
    bind: 0.0.0.0:1
    cluster: c
    buffer_limit: 512B
    idle_timeout: 9000h
    half_close_timeout: 5
    max_lifetime: 1h
    max_lifetime_jitter: 2h
  - name: m
    bind: 0.0.0.0:2
    cluster: c
    buffer_limit: 2GiB
    max_lifetime_jitter: 1s
)"),
            (Errors{
                R"(t.yaml:1:16: drain_timeout: expected a duration like 5s, got "-1s")",
                R"(t.yaml:5:22: clusters[0].connect_timeout: expected a duration greater than 0s, )"
                R"(got "0s")",
                R"(t.yaml:10:19: listeners[0].buffer_limit: expected a size from 1KiB to 1GiB, )"
                R"(got "512B")",
                R"(t.yaml:11:19: listeners[0].idle_timeout: expected a duration of at most 8760h, )"
                R"(got "9000h")",
                R"(t.yaml:12:25: listeners[0].half_close_timeout: expected a duration like 5s, )"
                R"(got "5")",
                R"(t.yaml:18:19: listeners[1].buffer_limit: expected a size from 1KiB to 1GiB, )"
                R"(got "2GiB")",
            }));
}

TEST(ConfigParserTest, JitterMustBeLessThanMaxLifetime) {
  EXPECT_EQ(errorsOf(R"(
clusters: [ { name: c, endpoints: [ "127.0.0.1:1" ] } ]
listeners:
  - { name: l, bind: "0.0.0.0:1", cluster: c, max_lifetime: 1h, max_lifetime_jitter: 1h }
  - { name: m, bind: "0.0.0.0:2", cluster: c, max_lifetime_jitter: 1s }
)"),
            (Errors{
                R"(t.yaml:3:86: listeners[0].max_lifetime_jitter: expected a duration less than )"
                R"(max_lifetime (1h), got "1h")",
                R"(t.yaml:4:68: listeners[1].max_lifetime_jitter: needs max_lifetime)",
            }));
}

TEST(ConfigParserTest, HealthCheckTimeoutMustBeBelowInterval) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - { name: a, endpoints: [ "127.0.0.1:1" ], health_check: { interval: 1s, timeout: 1s } }
  - { name: b, endpoints: [ "127.0.0.1:1" ], health_check: { interval: 500ms } }
  - { name: c, endpoints: [ "127.0.0.1:1" ], health_check: { timeout: 10s } }
)"),
            (Errors{
                R"(t.yaml:2:85: clusters[0].health_check.timeout: expected a duration less than )"
                R"(interval (1s), got "1s")",
                R"(t.yaml:3:72: clusters[1].health_check.interval: expected a duration greater )"
                R"(than timeout (1s), got "500ms")",
                R"(t.yaml:4:71: clusters[2].health_check.timeout: expected a duration less than )"
                R"(interval (5s), got "10s")",
            }));
}

TEST(ConfigParserTest, OutlierBaseMustNotExceedMax) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - { name: a, endpoints: [ "127.0.0.1:1" ], outlier: { base_ejection: 10s, max_ejection: 5s } }
  - { name: b, endpoints: [ "127.0.0.1:1" ], outlier: { base_ejection: 1m } }
)"),
            (Errors{
                R"(t.yaml:2:91: clusters[0].outlier.max_ejection: expected a duration of at least )"
                R"(base_ejection (10s), got "5s")",
                R"(t.yaml:3:72: clusters[1].outlier.base_ejection: expected a duration of at most )"
                R"(max_ejection (30s), got "1m")",
            }));
}

TEST(ConfigParserTest, EnumValues) {
  EXPECT_EQ(
      errorsOf(R"(
log: { format: xml, level: warning }
access_log: { mode: syslog }
clusters: [ { name: c, endpoints: [ "127.0.0.1:1" ], send_proxy_protocol: v3 } ]
listeners: [ { name: l, bind: "0.0.0.0:1", cluster: c, proxy_protocol: true } ]
)"),
      (Errors{
          R"(t.yaml:1:16: log.format: expected one of text, json, got "xml")",
          R"(t.yaml:1:28: log.level: expected one of debug, info, warn, error, got "warning")",
          R"(t.yaml:2:21: access_log.mode: expected one of stdout, file, off, got "syslog")",
          R"(t.yaml:3:75: clusters[0].send_proxy_protocol: expected one of none, v1, v2, )"
          R"(got "v3" (did you mean "v1"?))",
          R"(t.yaml:4:72: listeners[0].proxy_protocol: expected one of none, accept, )"
          R"(got "true")",
      }));
}

TEST(ConfigParserTest, Names) {
  const std::string longName(65, 'a');
  EXPECT_EQ(errorsOf(R"(
clusters:
  - { name: "", endpoints: [ "127.0.0.1:1" ] }
  - { name: "a b", endpoints: [ "127.0.0.1:1" ] }
  - { name: "caf\u00e9", endpoints: [ "127.0.0.1:1" ] }
  - { endpoints: [ "127.0.0.1:1" ] }
)"),
            (Errors{
                R"(t.yaml:2:13: clusters[0].name: expected a name of 1 to 64 characters from )"
                R"(A-Z a-z 0-9 _ . -, got "")",
                R"(t.yaml:3:13: clusters[1].name: expected a name of 1 to 64 characters from )"
                R"(A-Z a-z 0-9 _ . -, got "a b")",
                "t.yaml:4:13: clusters[2].name: expected a name of 1 to 64 characters from "
                "A-Z a-z 0-9 _ . -, got \"caf\xc3\xa9\"",
                R"(t.yaml:5:5: clusters[3]: missing required key "name")",
            }));
  EXPECT_EQ(parseOk("clusters: [ { name: " + std::string(64, 'a') +
                    ", endpoints: [ \"127.0.0.1:1\" ] } ]")
                .clusters.size(),
            1u);
  EXPECT_EQ(errorsOf("clusters: [ { name: " + longName + ", endpoints: [ \"127.0.0.1:1\" ] } ]"),
            (Errors{"t.yaml:1:21: clusters[0].name: expected a name of 1 to 64 characters from "
                    "A-Z a-z 0-9 _ . -, got \"" +
                    std::string(60, 'a') + "...\""}));
}

TEST(ConfigParserTest, MissingRequiredKeys) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - lb: random_two
listeners:
  - max_connections: 5
)"),
            (Errors{
                R"(t.yaml:2:5: clusters[0]: missing required key "name")",
                R"(t.yaml:2:5: clusters[0]: missing required key "endpoints")",
                R"(t.yaml:4:5: listeners[0]: missing required key "name")",
                R"(t.yaml:4:5: listeners[0]: missing required key "bind")",
                R"(t.yaml:4:5: listeners[0]: missing required key "cluster")",
            }));
}

// ---- Endpoints ---------------------------------------------------------------------------------

TEST(ConfigParserTest, EndpointsInBothForms) {
  const Config config = parseOk(R"(
clusters:
  - name: c
    endpoints:
      - 127.0.0.1:9000
      - "[2001:db8::1]:9001"
      - { address: "127.0.0.1:9002" }
      - address: "[::1]:9003"
        weight: 1000
)");
  ASSERT_EQ(config.clusters.size(), 1u);
  EXPECT_EQ(config.clusters[0].endpoints,
            (std::vector<EndpointConfig>{{address("127.0.0.1:9000"), 1},
                                         {address("[2001:db8::1]:9001"), 1},
                                         {address("127.0.0.1:9002"), 1},
                                         {address("[::1]:9003"), 1000}}));
}

TEST(ConfigParserTest, BadEndpoints) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - name: c
    endpoints:
      - localhost:9000
      - 127.0.0.1:0
      - ::1:9000
      - { weight: 2 }
      - { address: 10.0.0.1 }
      - [ "127.0.0.1:1" ]
      - 127.0.0.1:9000
      - { address: 127.0.0.1:9000, weight: 3 }
)"),
            (Errors{
                R"(t.yaml:4:9: clusters[0].endpoints[0]: expected an address like 127.0.0.1:9000 )"
                R"(or [::1]:9000, got "localhost:9000")",
                R"(t.yaml:5:9: clusters[0].endpoints[1]: expected an address with a port )"
                R"(1..65535, got "127.0.0.1:0")",
                R"(t.yaml:6:9: clusters[0].endpoints[2]: expected an address like 127.0.0.1:9000 )"
                R"(or [::1]:9000, got "::1:9000")",
                R"(t.yaml:7:9: clusters[0].endpoints[3]: missing required key "address")",
                R"(t.yaml:8:20: clusters[0].endpoints[4].address: expected an address like )"
                R"(127.0.0.1:9000 or [::1]:9000, got "10.0.0.1")",
                R"(t.yaml:9:9: clusters[0].endpoints[5]: expected an endpoint "ADDRESS:PORT" or )"
                R"({address: ADDRESS:PORT, weight: N}, got a sequence)",
                R"(t.yaml:11:9: clusters[0].endpoints[7]: duplicate endpoint 127.0.0.1:9000 )"
                R"((first at 10:9))",
            }));
}

TEST(ConfigParserTest, SourceAddresses) {
  const Config config = parseOk(R"(
clusters:
  - name: c
    endpoints: [127.0.0.1:9000]
    source_addresses: [127.0.0.2, "127.0.0.3", "2001:db8::5"]
  - name: d
    endpoints: [127.0.0.1:9001]
)");
  const std::vector<reactor::SocketAddress>& sources = config.clusters.at(0).sourceAddresses;
  ASSERT_EQ(sources.size(), 3u);
  EXPECT_EQ(sources[0], *parseSourceAddress("127.0.0.2"));
  EXPECT_EQ(sources[0].family(), AF_INET);
  EXPECT_EQ(sources[0].port(), 0);
  EXPECT_EQ(formatSourceAddress(sources[1]), "127.0.0.3");
  EXPECT_EQ(sources[2].family(), AF_INET6);
  EXPECT_EQ(formatSourceAddress(sources[2]), "2001:db8::5");
  EXPECT_TRUE(config.clusters.at(1).sourceAddresses.empty());  // the default
  // Part of equality, which is what a reload diffs by.
  ClusterConfig other = config.clusters.at(0);
  other.sourceAddresses.pop_back();
  EXPECT_NE(other, config.clusters.at(0));
}

TEST(ConfigParserTest, BadSourceAddresses) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - name: c
    endpoints: [127.0.0.1:9000]
    source_addresses:
      - 127.0.0.2:9000
      - "[::1]"
      - localhost
      - [127.0.0.2]
      - 127.0.0.2
      - 127.0.0.2
)"),
            (Errors{
                R"(t.yaml:5:9: clusters[0].source_addresses[0]: expected an address without a )"
                R"(port like 10.0.0.5 or 2001:db8::5, got "127.0.0.2:9000")",
                R"(t.yaml:6:9: clusters[0].source_addresses[1]: expected an address without a )"
                R"(port like 10.0.0.5 or 2001:db8::5, got "[::1]")",
                R"(t.yaml:7:9: clusters[0].source_addresses[2]: expected an address without a )"
                R"(port like 10.0.0.5 or 2001:db8::5, got "localhost")",
                R"(t.yaml:8:9: clusters[0].source_addresses[3]: expected an address without a )"
                R"(port like 10.0.0.5 or 2001:db8::5, got a sequence)",
                R"(t.yaml:10:9: clusters[0].source_addresses[5]: duplicate source address )"
                R"(127.0.0.2 (first at 9:9))",
            }));
  EXPECT_EQ(
      errorsOf(R"(
clusters:
  - name: c
    endpoints: [127.0.0.1:9000]
    source_addresses: 127.0.0.2
)"),
      (Errors{
          R"(t.yaml:4:23: clusters[0].source_addresses: expected a sequence, got "127.0.0.2")"}));
}

TEST(ConfigParserTest, EndpointAdminStateAndPausedListener) {
  const Config config = parseOk(R"(
clusters:
  - name: c
    endpoints:
      - 127.0.0.1:9000
      - { address: 127.0.0.1:9001, state: draining }
      - { address: 127.0.0.1:9002, state: disabled, weight: 3 }
      - { address: 127.0.0.1:9003, state: active }
listeners:
  - { name: a, bind: 127.0.0.1:0, cluster: c, paused: true }
  - { name: b, bind: 127.0.0.1:0, cluster: c, paused: false }
  - { name: d, bind: 127.0.0.1:0, cluster: c }
)");
  const std::vector<EndpointConfig>& endpoints = config.clusters.at(0).endpoints;
  ASSERT_EQ(endpoints.size(), 4u);
  EXPECT_EQ(endpoints[0].state, EndpointAdminState::kActive);  // the default
  EXPECT_EQ(endpoints[1].state, EndpointAdminState::kDraining);
  EXPECT_EQ(endpoints[2].state, EndpointAdminState::kDisabled);
  EXPECT_EQ(endpoints[2].weight, 3u);
  EXPECT_EQ(endpoints[3].state, EndpointAdminState::kActive);
  ASSERT_EQ(config.listeners.size(), 3u);
  EXPECT_TRUE(config.listeners[0].paused);
  EXPECT_FALSE(config.listeners[1].paused);
  EXPECT_FALSE(config.listeners[2].paused);  // the default

  // Both take part in equality, which is what a reload diffs by.
  EndpointConfig endpoint = endpoints[0];
  endpoint.state = EndpointAdminState::kDraining;
  EXPECT_NE(endpoint, endpoints[0]);
  ListenerConfig listener = config.listeners[1];
  listener.paused = true;
  EXPECT_NE(listener, config.listeners[1]);
}

TEST(ConfigParserTest, BadEndpointStateAndPausedValues) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - name: c
    endpoints: [ { address: 127.0.0.1:9000, state: drainig } ]
listeners:
  - { name: a, bind: 127.0.0.1:0, cluster: c, paused: yes }
)"),
            (Errors{
                R"(t.yaml:3:52: clusters[0].endpoints[0].state: expected one of active, )"
                R"(draining, disabled, got "drainig" (did you mean "draining"?))",
                R"(t.yaml:5:55: listeners[0].paused: expected one of true, false, got "yes")",
            }));
}

// ---- Admin, TLS, access log --------------------------------------------------------------------

TEST(ConfigParserTest, AdminTlsNeedsCertAndKeyTogether) {
  EXPECT_EQ(errorsOf(R"(
admin:
  address: localhost:9901
  tls: { cert_file: a.crt }
---
)"),
            (Errors{
                R"(t.yaml:2:12: admin.address: expected an address like 127.0.0.1:9901, )"
                R"(got "localhost:9901")",
                R"(t.yaml:3:8: admin.tls: cert_file and key_file must be set together)",
            }));
  EXPECT_EQ(errorsOf("admin: { tls: { client_ca_file: ca.crt } }"),
            (Errors{R"(t.yaml:1:33: admin.tls.client_ca_file: needs cert_file and key_file )"
                    R"((mutual TLS is TLS first))"}));
}

TEST(ConfigParserTest, AdminSecurityAndLimitKeys) {
  const AdminConfig defaults;
  EXPECT_EQ(defaults.readOnlyTokenFile, "");
  EXPECT_FALSE(defaults.insecure);
  EXPECT_EQ(defaults.maxWatchers, 64u);
  EXPECT_EQ(defaults.maxMessageSize, size_t{4} << 20);

  const Config config = parseOk(R"(
admin:
  address: 127.0.0.1:9911
  token_file: /etc/evgate/token
  read_only_token_file: /etc/evgate/read-only-token
  insecure: true
  max_watchers: 10000
  max_message_size: 64MiB
)");
  EXPECT_EQ(config.admin.readOnlyTokenFile, "/etc/evgate/read-only-token");
  EXPECT_TRUE(config.admin.insecure);
  EXPECT_EQ(config.admin.maxWatchers, 10000u);
  EXPECT_EQ(config.admin.maxMessageSize, size_t{64} << 20);
  AdminConfig smallest;
  smallest.maxWatchers = 1;
  smallest.maxMessageSize = 4096;
  EXPECT_EQ(parseOk("admin: { max_watchers: 1, max_message_size: 4KiB, insecure: false }").admin,
            smallest);
}

TEST(ConfigParserTest, HealthAddressAndConfigWatch) {
  const Config defaults;
  EXPECT_EQ(defaults.admin.healthAddress, "");
  EXPECT_TRUE(defaults.configWatch);
  const Config config = parseOk("config_watch: false\nadmin: { health_address: 0.0.0.0:9903 }\n");
  EXPECT_FALSE(config.configWatch);
  EXPECT_EQ(config.admin.healthAddress, "0.0.0.0:9903");
  EXPECT_EQ(errorsOf("config_watch: sometimes\nadmin: { health_address: nowhere }\n"),
            (Errors{
                R"(t.yaml:1:15: config_watch: expected one of true, false, got "sometimes")",
                R"(t.yaml:2:26: admin.health_address: expected an address like 0.0.0.0:9903, )"
                R"(got "nowhere")",
            }));
  // The health server binds its own socket: it may not share one with the admin API.
  EXPECT_EQ(errorsOf("admin: { address: 127.0.0.1:9901, health_address: 127.0.0.1:9901 }"),
            (Errors{R"(t.yaml:1:51: admin.health_address: 127.0.0.1:9901 is already used by )"
                    R"(admin.address (at 1:19))"}));
}

TEST(ConfigParserTest, BadAdminSecurityAndLimitValues) {
  EXPECT_EQ(errorsOf(R"(
admin:
  insecure: yes
  max_watchers: 0
  max_message_size: 4095
)"),
            (Errors{
                R"(t.yaml:2:13: admin.insecure: expected one of true, false, got "yes")",
                R"(t.yaml:3:17: admin.max_watchers: expected an integer 1..10000, got "0")",
                R"(t.yaml:4:21: admin.max_message_size: expected a size from 4KiB to 64MiB, )"
                R"(got "4095")",
            }));
  EXPECT_EQ(errorsOf("admin: { max_watchers: 10001, max_message_size: 65MiB }"),
            (Errors{
                R"(t.yaml:1:24: admin.max_watchers: expected an integer 1..10000, got "10001")",
                R"(t.yaml:1:49: admin.max_message_size: expected a size from 4KiB to 64MiB, )"
                R"(got "65MiB")",
            }));
  EXPECT_EQ(errorsOf("admin: { token_file: t, read_only_token_file: [] }"),
            (Errors{R"(t.yaml:1:47: admin.read_only_token_file: expected a string, got a )"
                    R"(sequence)"}));
}

TEST(ConfigParserTest, ReadOnlyTokenNeedsAnAdminTokenInAnotherFile) {
  EXPECT_EQ(errorsOf("admin: { read_only_token_file: ro }"),
            (Errors{R"(t.yaml:1:32: admin.read_only_token_file: needs admin.token_file (the )"
                    R"(read-only token is a second, weaker token))"}));
  EXPECT_EQ(errorsOf("admin: { token_file: t, read_only_token_file: t }"),
            (Errors{R"(t.yaml:1:47: admin.read_only_token_file: must differ from )"
                    R"(admin.token_file)"}));
}

TEST(ConfigParserTest, NonLoopbackAdminNeedsCredentialsOrInsecure) {
  EXPECT_EQ(errorsOf("admin: { address: 0.0.0.0:9901 }"),
            (Errors{R"(t.yaml:1:19: admin.address: 0.0.0.0:9901 is not loopback; set )"
                    R"(admin.token_file, admin.tls.client_ca_file, or admin.insecure: true)"}));
  EXPECT_EQ(errorsOf(R"(admin: { address: "[::]:9901", tls: { cert_file: c, key_file: k } })"),
            (Errors{R"(t.yaml:1:19: admin.address: [::]:9901 is not loopback; set )"
                    R"(admin.token_file, admin.tls.client_ca_file, or admin.insecure: true)"}));
  // Any one of the three is enough.
  parseOk("admin: { address: 10.1.2.3:9901, token_file: /etc/evgate/token }");
  parseOk(R"(admin: { address: 10.1.2.3:9901, tls: { cert_file: c, key_file: k,
                      client_ca_file: ca } })");
  parseOk("admin: { address: 0.0.0.0:9901, insecure: true }");
  // Loopback in every spelling needs nothing.
  parseOk("admin: { address: 127.0.0.1:9901 }");
  parseOk("admin: { address: 127.200.0.1:9901 }");
  parseOk(R"(admin: { address: "[::1]:9901" })");
  parseOk(R"(admin: { address: "[::ffff:127.0.0.1]:9901" })");
}

TEST(ConfigParserTest, AdminIsLoopback) {
  const auto isLoopback = [](std::string address) {
    AdminConfig admin;
    admin.address = std::move(address);
    return admin.isLoopback();
  };
  EXPECT_TRUE(AdminConfig{}.isLoopback());
  EXPECT_TRUE(isLoopback("[::1]:0"));
  EXPECT_FALSE(isLoopback("0.0.0.0:9901"));
  EXPECT_FALSE(isLoopback("[::]:9901"));
  EXPECT_FALSE(isLoopback("128.0.0.1:9901"));
  EXPECT_FALSE(isLoopback("not an address"));
}

TEST(ConfigParserTest, AccessLogFileNeedsAPath) {
  EXPECT_EQ(errorsOf("access_log: { mode: file }"),
            (Errors{R"(t.yaml:1:21: access_log.mode: "file" needs a non-empty access_log.path)"}));
  EXPECT_EQ(errorsOf("access_log: { mode: file, path: \"\" }"),
            (Errors{R"(t.yaml:1:21: access_log.mode: "file" needs a non-empty access_log.path)"}));
  EXPECT_EQ(errorsOf("access_log: { mode: off, path: /tmp/x }"),
            (Errors{R"(t.yaml:1:32: access_log.path: only used with mode: file)"}));
  EXPECT_EQ(errorsOf("access_log: { path: /tmp/x }"),
            (Errors{R"(t.yaml:1:21: access_log.path: only used with mode: file )"
                    R"((the default mode is stdout))"}));
}

// ---- Allow lists -------------------------------------------------------------------------------

TEST(ConfigParserTest, BadAllowEntries) {
  EXPECT_EQ(errorsOf(R"(
clusters: [ { name: c, endpoints: [ "127.0.0.1:1" ] } ]
listeners:
  - name: l
    bind: 0.0.0.0:1
    cluster: c
    allow: [ "10.0.0.1/8", "300.0.0.0/8", { a: 1 }, "10.0.0.0/33", "::/0" ]
)"),
            (Errors{
                R"(t.yaml:6:14: listeners[0].allow[0]: "10.0.0.1/8" has bits set after the )"
                R"(prefix (did you mean "10.0.0.0/8"?))",
                R"(t.yaml:6:28: listeners[0].allow[1]: expected a CIDR like 10.0.0.0/8 or )"
                R"(2001:db8::/32, got "300.0.0.0/8")",
                R"(t.yaml:6:43: listeners[0].allow[2]: expected a CIDR like 10.0.0.0/8 or )"
                R"(2001:db8::/32, got a map)",
                R"(t.yaml:6:53: listeners[0].allow[3]: expected a CIDR like 10.0.0.0/8 or )"
                R"(2001:db8::/32, got "10.0.0.0/33")",
            }));
}

// ---- YAML syntax, documents, files -------------------------------------------------------------

TEST(ConfigParserTest, SyntaxErrorIsOneErrorAtItsPosition) {
  EXPECT_EQ(errorsOf(R"(
workers: 1
clusters: [ { name: c
listeners: []
)"),
            (Errors{R"(t.yaml:3:10: YAML syntax error: end of map flow not found)"}));
  EXPECT_EQ(errorsOf("workers: 1\n  bad: 2\n"),
            (Errors{R"(t.yaml:2:6: YAML syntax error: illegal map value)"}));
  EXPECT_EQ(errorsOf("state_file: \"unterminated"),
            (Errors{R"(t.yaml:1:26: YAML syntax error: illegal EOF in scalar)"}));
}

TEST(ConfigParserTest, OnlyOneDocument) {
  EXPECT_EQ(errorsOf("workers: 1\n---\nworkers: 2\n"),
            (Errors{"t.yaml:3:1: expected one YAML document, found a second one here"}));
  EXPECT_EQ(parseOk("---\nworkers: 1\n---\n").workers, 1u);  // empty documents do no harm
}

// Found by the config fuzzer (tests/fuzz): yaml-cpp 0.7's LoadAll loops forever, allocating,
// on a stray ',' where a document should start. Run in a child that an alarm ends, so that a
// regression fails this test in seconds rather than eating the machine's memory.
TEST(ConfigParserTest, StrayCommaIsASyntaxErrorNotAHang) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(10);
    const bool ok = errorsOf(",") == Errors{"t.yaml:1:1: YAML syntax error: unexpected ','"} &&
                    errorsOf("workers: 1\n---\n,\n") ==
                        Errors{"t.yaml:3:1: YAML syntax error: unexpected ','"} &&
                    errorsOf("- a\n,\n").size() == 1;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the parser did not return (signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong errors for a stray ','";
}

TEST(ConfigParserTest, ValuesInMessagesAreEscaped) {
  EXPECT_EQ(errorsOf("workers: \"a\\\"b\\\\c\\td\"\n"),
            (Errors{R"(t.yaml:1:10: workers: expected an integer 0..1024, got "a\"b\\c\x09d")"}));
}

TEST(ConfigParserTest, EveryPrefixOfAValidFileParsesOrReportsErrors) {
  // Cut the default at every byte and byte-flip it: the parser must neither throw nor return
  // a Config together with errors.
  const std::string full = defaultConfigYaml() + yaml(kMinimal);
  for (size_t length = 0; length <= full.size(); ++length) {
    for (const bool flip : {false, true}) {
      std::string text = full.substr(0, length);
      if (flip && !text.empty()) text.back() = static_cast<char>(text.back() ^ 0x5a);
      const ConfigResult result = parseConfig(text, "t.yaml");
      EXPECT_EQ(result.ok(), result.errors.empty()) << text;
      for (const ConfigError& error : result.errors) EXPECT_FALSE(error.message.empty());
    }
  }
}

TEST(ConfigParserTest, ErrorToString) {
  EXPECT_EQ((ConfigError{"f.yaml", 3, 7, "boom"}).toString(), "f.yaml:3:7: boom");
  EXPECT_EQ((ConfigError{"f.yaml", 0, 0, "cannot read file: x"}).toString(),
            "f.yaml: cannot read file: x");
}

TEST(ConfigParserTest, LoadsAFile) {
  char path[] = "/tmp/evgate_config_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "workers: 3\nbogus: 1\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  const ConfigResult result = loadConfigFile(path);
  unlink(path);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].toString(), std::string(path) + ":2:1: unknown key \"bogus\"");
  EXPECT_FALSE(result.ok());
}

TEST(ConfigParserTest, UnreadableFileIsOneErrorWithoutPosition) {
  const ConfigResult missing = loadConfigFile("/nonexistent/evgate.yaml");
  EXPECT_FALSE(missing.ok());
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].toString(),
            "/nonexistent/evgate.yaml: cannot read file: No such file or directory");
  const ConfigResult directory = loadConfigFile("/tmp");
  ASSERT_EQ(directory.errors.size(), 1u);
  EXPECT_EQ(directory.errors[0].toString(), "/tmp: cannot read file: Is a directory");
}

// ---- Limits and names shared with the admin API -------------------------------------------------

TEST(ConfigLimitsTest, TheParserEnforcesTheSharedLimits) {
  auto cluster = [](const std::string& keys) {
    return "clusters: [ { name: c, endpoints: [ { address: \"1.2.3.4:5\", " + keys + " } ] } ]";
  };
  const std::string maxWeight = std::to_string(limits::kMaxWeight);
  EXPECT_EQ(parseOk(cluster("weight: " + maxWeight)).clusters[0].endpoints[0].weight,
            limits::kMaxWeight);
  EXPECT_EQ(errorsOf(cluster("weight: " + std::to_string(limits::kMaxWeight + 1))).size(), 1u);
  EXPECT_EQ(errorsOf(cluster("weight: " + std::to_string(limits::kMinWeight - 1))).size(), 1u);

  auto attempts = [](uint32_t n) {
    return "clusters: [ { name: c, endpoints: [ \"1.2.3.4:5\" ], max_connect_attempts: " +
           std::to_string(n) + " } ]";
  };
  EXPECT_EQ(parseOk(attempts(limits::kMaxConnectAttempts)).clusters[0].maxConnectAttempts,
            limits::kMaxConnectAttempts);
  EXPECT_EQ(errorsOf(attempts(limits::kMaxConnectAttempts + 1)).size(), 1u);
  EXPECT_EQ(errorsOf(attempts(limits::kMinConnectAttempts - 1)).size(), 1u);

  EXPECT_EQ(parseOk("workers: " + std::to_string(limits::kMaxWorkers)).workers,
            limits::kMaxWorkers);
  EXPECT_EQ(errorsOf("workers: " + std::to_string(limits::kMaxWorkers + 1)).size(), 1u);
  EXPECT_EQ(parseOk("drain_timeout: 8760h").drainTimeout, limits::kMaxDuration);
  EXPECT_EQ(errorsOf("drain_timeout: 8761h").size(), 1u);

  const std::string longest(limits::kMaxNameLength, 'n');
  EXPECT_TRUE(limits::isValidName(longest));
  EXPECT_FALSE(limits::isValidName(longest + "n"));
  EXPECT_EQ(parseOk("clusters: [ { name: " + longest + ", endpoints: [ \"1.2.3.4:5\" ] } ]")
                .clusters[0]
                .name,
            longest);
  EXPECT_EQ(
      errorsOf("clusters: [ { name: " + longest + "n, endpoints: [ \"1.2.3.4:5\" ] } ]").size(),
      1u);
  EXPECT_TRUE(limits::isValidName("web-1.pool_A"));
  EXPECT_FALSE(limits::isValidName(""));
  EXPECT_FALSE(limits::isValidName("a b"));
  EXPECT_FALSE(limits::isValidName("a/b"));
  static_assert(limits::isValidName("compile-time"));
}

TEST(ConfigNamesTest, EveryEnumValueRoundTripsThroughItsName) {
  for (const auto& entry : kLbPolicyNames) {
    EXPECT_EQ(parseLbPolicy(entry.name), entry.value);
    EXPECT_EQ(toString(entry.value), entry.name);
  }
  for (const auto& entry : kProxyProtocolNames) {
    EXPECT_EQ(parseProxyProtocol(entry.name), entry.value);
    EXPECT_EQ(toString(entry.value), entry.name);
  }
  for (const auto& entry : kEndpointAdminStateNames) {
    EXPECT_EQ(parseEndpointAdminState(entry.name), entry.value);
    EXPECT_EQ(toString(entry.value), entry.name);
  }
  for (const auto& entry : kLogLevelNames) EXPECT_EQ(parseLogLevel(entry.name), entry.value);
  for (const auto& entry : kLogFormatNames) EXPECT_EQ(parseLogFormat(entry.name), entry.value);
  EXPECT_STREQ(toString(LbPolicy::kHashClientIp), "hash_client_ip");
  EXPECT_STREQ(toString(EndpointAdminState::kDraining), "draining");
  EXPECT_STREQ(toString(AccessLogMode::kOff), "off");
  EXPECT_EQ(parseLbPolicy("Round_Robin"), std::nullopt);
  EXPECT_EQ(parseEndpointAdminState(""), std::nullopt);
}

// ---- Cidr --------------------------------------------------------------------------------------

TEST(CidrTest, ParsesNetworksAndHostRoutes) {
  EXPECT_EQ(cidr("10.0.0.0/8").toString(), "10.0.0.0/8");
  EXPECT_EQ(cidr("0.0.0.0/0").toString(), "0.0.0.0/0");
  EXPECT_EQ(cidr("192.168.1.7").toString(), "192.168.1.7/32");
  EXPECT_EQ(cidr("192.168.1.7").prefixLength(), 32);
  EXPECT_EQ(cidr("::1").toString(), "::1/128");
  EXPECT_EQ(cidr("2001:db8::/32").toString(), "2001:db8::/32");
  EXPECT_EQ(cidr("::/0").toString(), "::/0");
  EXPECT_EQ(cidr("::ffff:10.0.0.0/104").toString(), "::ffff:10.0.0.0/104");
  EXPECT_EQ(cidr("10.1.0.0/17").family(), AF_INET);
  EXPECT_EQ(cidr("fe80::/10").family(), AF_INET6);
}

TEST(CidrTest, RejectsMalformedText) {
  for (const char* text : {"",
                           "/8",
                           "10.0.0.0/",
                           "10.0.0.0/33",
                           "10.0.0.0/-1",
                           "10.0.0.0/+8",
                           "10.0.0.0/08",
                           "10.0.0.0/8/8",
                           "10.0.0/8",
                           "10.0.0.0.0/8",
                           "010.0.0.0/8",
                           "256.0.0.0/8",
                           " 10.0.0.0/8",
                           "10.0.0.0/8 ",
                           "10.0.0.0 /8",
                           "::/129",
                           "[::1]",
                           "[::1]/128",
                           "fe80::1%eth0",
                           "10.0.0.1/8",
                           "2001:db8::1/32",
                           "10.0.0.0/0x8",
                           "host.example.com",
                           "1.2.3.4:80"}) {
    EXPECT_FALSE(Cidr::parse(text).has_value()) << text;
  }
}

TEST(CidrTest, ParseMaskedClearsHostBits) {
  EXPECT_EQ(Cidr::parseMasked("10.1.2.3/8")->toString(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::parseMasked("10.1.2.3/12")->toString(), "10.0.0.0/12");
  EXPECT_EQ(Cidr::parseMasked("10.31.2.3/12")->toString(), "10.16.0.0/12");
  EXPECT_EQ(Cidr::parseMasked("2001:db8::1/32")->toString(), "2001:db8::/32");
  EXPECT_EQ(Cidr::parseMasked("1.2.3.4/0")->toString(), "0.0.0.0/0");
  EXPECT_FALSE(Cidr::parseMasked("10.0.0.0/33").has_value());
}

TEST(CidrTest, Equality) {
  EXPECT_EQ(cidr("10.0.0.0/8"), cidr("10.0.0.0/8"));
  EXPECT_NE(cidr("10.0.0.0/8"), cidr("10.0.0.0/9"));
  EXPECT_NE(cidr("10.0.0.0/8"), cidr("11.0.0.0/8"));
  EXPECT_EQ(cidr("::1"), cidr("::1/128"));
  EXPECT_EQ(cidr("2001:db8:0::/32"), cidr("2001:db8::/32"));
  EXPECT_NE(cidr("0.0.0.0/0"), cidr("::/0"));
  EXPECT_EQ(Cidr::parse(cidr("2001:db8::/48").toString()), cidr("2001:db8::/48"));
}

TEST(CidrTest, ContainsIpv4) {
  const Cidr ten = cidr("10.0.0.0/8");
  EXPECT_TRUE(ten.contains(address("10.0.0.0:1")));
  EXPECT_TRUE(ten.contains(address("10.255.255.255:1")));
  EXPECT_FALSE(ten.contains(address("11.0.0.0:1")));
  EXPECT_FALSE(ten.contains(address("9.255.255.255:1")));
  const Cidr odd = cidr("192.168.0.0/23");
  EXPECT_TRUE(odd.contains(address("192.168.1.200:1")));
  EXPECT_FALSE(odd.contains(address("192.168.2.1:1")));
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(address("1.2.3.4:5")));
  EXPECT_TRUE(cidr("1.2.3.4").contains(address("1.2.3.4:5")));
  EXPECT_FALSE(cidr("1.2.3.4").contains(address("1.2.3.5:5")));
}

TEST(CidrTest, ContainsIpv6) {
  const Cidr doc = cidr("2001:db8::/32");
  EXPECT_TRUE(doc.contains(address("[2001:db8::1]:80")));
  EXPECT_TRUE(doc.contains(address("[2001:db8:ffff:ffff::]:80")));
  EXPECT_FALSE(doc.contains(address("[2001:db9::]:80")));
  EXPECT_TRUE(cidr("::1").contains(address("[::1]:80")));
  EXPECT_FALSE(cidr("::1").contains(address("[::2]:80")));
  EXPECT_TRUE(cidr("fe80::/10").contains(address("[febf::1]:80")));
  EXPECT_FALSE(cidr("fe80::/10").contains(address("[fec0::1]:80")));
  // An IPv6 network never holds a plain IPv6 address's IPv4 look-alike, and vice versa.
  EXPECT_FALSE(cidr("::/0").contains(SocketAddress{}));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains(address("[::1]:80")));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains(address("[2001:db8::1]:80")));
}

TEST(CidrTest, Ipv4MappedClientsMatchIpv4Networks) {
  // A dual-stack listener ([::]:PORT) sees IPv4 clients as ::ffff:a.b.c.d.
  const Cidr ten = cidr("10.0.0.0/8");
  EXPECT_TRUE(ten.contains(address("[::ffff:10.1.2.3]:5555")));
  EXPECT_FALSE(ten.contains(address("[::ffff:11.1.2.3]:5555")));
  EXPECT_FALSE(ten.contains(address("[::10.1.2.3]:5555")));  // IPv4-compatible, not mapped
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(address("[::ffff:1.2.3.4]:1")));
  // And a plain IPv4 client matches an IPv6 network written in the mapped form.
  EXPECT_TRUE(cidr("::ffff:10.0.0.0/104").contains(address("10.9.9.9:1")));
  EXPECT_FALSE(cidr("::ffff:10.0.0.0/104").contains(address("11.9.9.9:1")));
  EXPECT_TRUE(cidr("::/0").contains(address("10.9.9.9:1")));
  EXPECT_FALSE(cidr("2001:db8::/32").contains(address("10.9.9.9:1")));
}

}  // namespace
}  // namespace evgate::gateway
