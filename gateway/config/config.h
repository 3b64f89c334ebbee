#pragma once

// The gateway's configuration model: what the YAML file says, validated and typed. Keys and
// defaults are documented in docs/configuration.md; the parser (config_parser.h) is the only
// code that builds these from text.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/cidr.h"
#include "reactor/socket_address.h"

namespace evgate::gateway {

using Duration = std::chrono::nanoseconds;

enum class LbPolicy { kRoundRobin, kLeastConnections, kRandomTwo, kHashClientIp };

enum class ProxyProtocol { kNone, kV1, kV2 };
// How a listener's flows move bulk bytes: splice() through a kernel pipe when reads come in
// large chunks (auto), never, or always (every chunk; for tests and comparisons).
enum class SpliceMode : uint8_t { kAuto, kOff, kAlways };

// What an operator allows an endpoint to do. kDraining: no new flows, the flows it has go on;
// kDisabled: the same for the data plane (flows already open are not cut either).
enum class EndpointAdminState : uint8_t { kActive, kDraining, kDisabled };

struct EndpointConfig {
  reactor::SocketAddress address;
  uint32_t weight = 1;  // 1..1000
  EndpointAdminState state = EndpointAdminState::kActive;

  bool operator==(const EndpointConfig&) const = default;
};

struct HealthCheckConfig {
  Duration interval = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(1);
  uint32_t unhealthyThreshold = 3;
  uint32_t healthyThreshold = 2;

  bool operator==(const HealthCheckConfig&) const = default;
};

// Passive ejection: an endpoint that fails this many connects in a row is skipped for a
// back-off that doubles on each ejection, up to the maximum.
struct OutlierConfig {
  uint32_t consecutiveFailures = 5;  // 0: off
  Duration baseEjection = std::chrono::seconds(1);
  Duration maxEjection = std::chrono::seconds(30);

  bool operator==(const OutlierConfig&) const = default;
};

struct ClusterConfig {
  std::string name;
  LbPolicy lb = LbPolicy::kRoundRobin;
  std::vector<EndpointConfig> endpoints;
  Duration connectTimeout = std::chrono::seconds(5);
  uint32_t maxConnectAttempts = 3;
  std::optional<HealthCheckConfig> healthCheck;  // absent: no active checks
  OutlierConfig outlier;
  ProxyProtocol sendProxyProtocol = ProxyProtocol::kNone;
  // Local addresses (port 0) each upstream connect binds round-robin, per worker, with
  // IP_BIND_ADDRESS_NO_PORT (the port is picked at connect() with the whole 4-tuple). An address
  // of another family than the endpoint's is skipped. Empty: no bind.
  std::vector<reactor::SocketAddress> sourceAddresses;

  bool operator==(const ClusterConfig&) const = default;
};

struct ListenerConfig {
  std::string name;
  reactor::SocketAddress bind;
  std::string cluster;
  uint32_t maxConnections = 10000;
  size_t bufferLimit = size_t{64} * 1024;  // per direction
  Duration idleTimeout = std::chrono::seconds(300);
  Duration halfCloseTimeout = std::chrono::seconds(30);
  std::optional<Duration> maxLifetime;  // absent: unlimited
  Duration maxLifetimeJitter{0};
  std::vector<Cidr> allow;  // empty: everyone
  bool acceptProxyProtocol = false;
  Duration proxyProtocolTimeout = std::chrono::seconds(5);
  SpliceMode splice = SpliceMode::kAuto;
  bool paused = false;  // bound, but not accepting: connections wait in the backlog

  bool operator==(const ListenerConfig&) const = default;
};

struct AdminConfig {
  std::string address = "127.0.0.1:9901";
  // Set: a second, plaintext gRPC server here answers grpc.health.v1 only (no Admin service,
  // no credentials), for probes that cannot speak the admin port's TLS or token (Kubernetes).
  std::string healthAddress;
  std::string tokenFile;          // set: every call needs this token (or the read-only one)
  std::string readOnlyTokenFile;  // a second token allowed GetStatus, Get*, List*, Watch only
  std::string tlsCertFile;
  std::string tlsKeyFile;
  std::string tlsClientCaFile;  // set: mutual TLS
  bool insecure = false;        // allows a non-loopback address with neither token nor mTLS
  uint32_t maxWatchers = 64;    // Watch streams open at once
  size_t maxMessageSize = size_t{4} * 1024 * 1024;  // largest request or response, bytes

  bool operator==(const AdminConfig&) const = default;

  // Whether `address` is in 127.0.0.0/8 or is ::1, so only this host can reach the API. False
  // for an address that does not parse.
  bool isLoopback() const;
};

// Which series each listener exports (metrics.listener_detail).
enum class ListenerDetail {
  kFull,   // every listener family of docs/metrics.md
  kBasic,  // connections (accepted, rejected, active, max, paused) and bytes only
};

struct MetricsConfig {
  std::string address = "127.0.0.1:9902";
  ListenerDetail listenerDetail = ListenerDetail::kFull;

  bool operator==(const MetricsConfig&) const = default;
};

enum class AccessLogMode { kStdout, kFile, kOff };

struct AccessLogConfig {
  AccessLogMode mode = AccessLogMode::kStdout;
  std::string path;  // with kFile
  // The most bytes of lines waiting for the access log's writer thread; lines beyond are dropped
  // and counted (gateway/log_sink.h).
  size_t queueLimit = size_t{8} << 20;

  bool operator==(const AccessLogConfig&) const = default;
};

enum class LogFormat { kText, kJson };
enum class LogLevel { kDebug, kInfo, kWarn, kError };

struct LogConfig {
  LogFormat format = LogFormat::kText;
  LogLevel level = LogLevel::kInfo;
  // The most bytes of lines waiting for the log's writer thread (gateway/log.h).
  size_t queueLimit = size_t{1} << 20;

  bool operator==(const LogConfig&) const = default;
};

// How the workers accept on each listener (listener_sockets).
enum class ListenerSockets {
  // kPerWorker for the first listeners, while all listeners' sockets together stay within an
  // eighth of the process's fd limit (RLIMIT_NOFILE); kShared for the ones after. A listener
  // keeps what it got for its life.
  kAuto,
  // One socket per listener; every worker's loop waits on it with exclusive wake-ups, and the
  // worker that is free first accepts. One fd per listener.
  kShared,
  // One SO_REUSEPORT socket per listener per worker; the kernel spreads new connections over
  // them by a hash of the client's address and port. One fd per listener per worker.
  kPerWorker,
};

struct Config {
  uint32_t workers = 0;  // 0: one per CPU
  ListenerSockets listenerSockets = ListenerSockets::kAuto;
  Duration drainTimeout = std::chrono::seconds(30);
  // The memory budget for bytes all flows hold waiting for a slow peer (buffer_budget.h);
  // 0: none. Reloadable.
  uint64_t maxBufferedBytes = 0;
  std::string stateFile;  // empty: runtime changes are not persisted
  // Watch the --config file's directory and reload when the file's content changes (as on
  // SIGHUP); a Kubernetes ConfigMap update, a symlink swap, arrives this way.
  bool configWatch = true;
  AdminConfig admin;
  MetricsConfig metrics;
  LogConfig log;
  AccessLogConfig accessLog;
  std::vector<ClusterConfig> clusters;
  std::vector<ListenerConfig> listeners;

  bool operator==(const Config&) const = default;

  const ClusterConfig* findCluster(const std::string& name) const;
  const ListenerConfig* findListener(const std::string& name) const;
};

// A cluster's source address: a bare IPv4 or IPv6 address ("10.0.0.5", "2001:db8::5"; no
// brackets, no port) as a SocketAddress with port 0; nullopt for anything else.
std::optional<reactor::SocketAddress> parseSourceAddress(std::string_view text);
// The address of a source address, without port: parseSourceAddress(formatSourceAddress(a)) == a.
std::string formatSourceAddress(const reactor::SocketAddress& address);

}  // namespace evgate::gateway
