#pragma once

// The words the configuration file uses for each enum of the model, one table per enum: the
// parser reads with these tables, and whatever prints or accepts these values as text (logs, the
// admin API, the CLI) uses the same words.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

#include "gateway/config/config.h"

namespace evgate::gateway {

template <typename T>
struct EnumName {
  std::string_view name;
  T value;
};

inline constexpr std::array<EnumName<LbPolicy>, 4> kLbPolicyNames{{
    {"round_robin", LbPolicy::kRoundRobin},
    {"least_connections", LbPolicy::kLeastConnections},
    {"random_two", LbPolicy::kRandomTwo},
    {"hash_client_ip", LbPolicy::kHashClientIp},
}};
// A cluster's send_proxy_protocol.
inline constexpr std::array<EnumName<ProxyProtocol>, 3> kProxyProtocolNames{{
    {"none", ProxyProtocol::kNone},
    {"v1", ProxyProtocol::kV1},
    {"v2", ProxyProtocol::kV2},
}};
// A listener's proxy_protocol (ListenerConfig::acceptProxyProtocol).
inline constexpr std::array<EnumName<bool>, 2> kAcceptProxyProtocolNames{{
    {"none", false},
    {"accept", true},
}};
// A listener's splice.
inline constexpr std::array<EnumName<SpliceMode>, 3> kSpliceModeNames{{
    {"auto", SpliceMode::kAuto},
    {"off", SpliceMode::kOff},
    {"always", SpliceMode::kAlways},
}};
inline constexpr std::array<EnumName<EndpointAdminState>, 3> kEndpointAdminStateNames{{
    {"active", EndpointAdminState::kActive},
    {"draining", EndpointAdminState::kDraining},
    {"disabled", EndpointAdminState::kDisabled},
}};
inline constexpr std::array<EnumName<bool>, 2> kBooleanNames{{
    {"true", true},
    {"false", false},
}};
inline constexpr std::array<EnumName<LogFormat>, 2> kLogFormatNames{{
    {"text", LogFormat::kText},
    {"json", LogFormat::kJson},
}};
inline constexpr std::array<EnumName<LogLevel>, 4> kLogLevelNames{{
    {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},
    {"error", LogLevel::kError},
}};
inline constexpr std::array<EnumName<ListenerSockets>, 3> kListenerSocketsNames{{
    {"auto", ListenerSockets::kAuto},
    {"shared", ListenerSockets::kShared},
    {"per_worker", ListenerSockets::kPerWorker},
}};
inline constexpr std::array<EnumName<ListenerDetail>, 2> kListenerDetailNames{{
    {"full", ListenerDetail::kFull},
    {"basic", ListenerDetail::kBasic},
}};
inline constexpr std::array<EnumName<AccessLogMode>, 3> kAccessLogModeNames{{
    {"stdout", AccessLogMode::kStdout},
    {"file", AccessLogMode::kFile},
    {"off", AccessLogMode::kOff},
}};

// The value named `text` in `names` (exact, case-sensitive), or nullopt.
template <typename T, size_t N>
constexpr std::optional<T> parseEnum(std::string_view text,
                                     const std::array<EnumName<T>, N>& names) {
  for (const EnumName<T>& entry : names) {
    if (entry.name == text) return entry.value;
  }
  return std::nullopt;
}

// The name of `value` in `names` (a NUL-terminated literal), or "?" if it has none.
template <typename T, size_t N>
constexpr const char* enumName(T value, const std::array<EnumName<T>, N>& names) {
  for (const EnumName<T>& entry : names) {
    if (entry.value == value) return entry.name.data();
  }
  return "?";
}

inline std::optional<LbPolicy> parseLbPolicy(std::string_view text) {
  return parseEnum(text, kLbPolicyNames);
}
inline std::optional<ProxyProtocol> parseProxyProtocol(std::string_view text) {
  return parseEnum(text, kProxyProtocolNames);
}
inline std::optional<EndpointAdminState> parseEndpointAdminState(std::string_view text) {
  return parseEnum(text, kEndpointAdminStateNames);
}
inline std::optional<LogFormat> parseLogFormat(std::string_view text) {
  return parseEnum(text, kLogFormatNames);
}
inline std::optional<LogLevel> parseLogLevel(std::string_view text) {
  return parseEnum(text, kLogLevelNames);
}

inline const char* toString(LbPolicy policy) { return enumName(policy, kLbPolicyNames); }
inline const char* toString(ProxyProtocol version) {
  return enumName(version, kProxyProtocolNames);
}
inline const char* toString(EndpointAdminState state) {
  return enumName(state, kEndpointAdminStateNames);
}
inline const char* toString(LogFormat format) { return enumName(format, kLogFormatNames); }
inline const char* toString(LogLevel level) { return enumName(level, kLogLevelNames); }
inline const char* toString(ListenerDetail detail) {
  return enumName(detail, kListenerDetailNames);
}
inline const char* toString(ListenerSockets sockets) {
  return enumName(sockets, kListenerSocketsNames);
}
inline const char* toString(AccessLogMode mode) { return enumName(mode, kAccessLogModeNames); }

}  // namespace evgate::gateway
