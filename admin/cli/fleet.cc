#include "admin/cli/fleet.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <sstream>

#include "admin/cli/errors.h"
#include "gateway/log.h"
#include "reactor/socket_address.h"

namespace evgate::admin::cli {
namespace {

constexpr int kUsageError = 2;
constexpr int kUnreachable = 3;
// Gateways called at once: enough for a large fleet to finish in a few timeouts, few enough not
// to open hundreds of channels at the same moment.
constexpr size_t kParallelCalls = 16;

struct TargetResult {
  int exitCode = 0;
  std::string table;                 // table mode: what the command printed
  std::vector<std::string> results;  // json/yaml: each printed message as compact JSON
  std::string error;                 // what failed, without the "error: " prefix
};

std::string withoutErrorPrefix(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.rfind("error: ", 0) == 0) text.erase(0, 7);
  return text;
}

TargetResult runOne(const FleetTarget& target, const GlobalOptions& globals, Format format,
                    const Action& action) {
  TargetResult result;
  if (!target.error.empty()) {
    result.exitCode = kUnreachable;
    result.error = target.error;
    return result;
  }
  GlobalOptions options = globals;
  options.connection.address = target.address;
  std::ostringstream table;
  Output output(format, table, &result.results);
  Session session(options, output);
  try {
    action(session);
  } catch (const UsageError& e) {
    result.exitCode = kUsageError;
    result.error = e.what();
  } catch (const RpcError& e) {
    std::ostringstream message;
    result.exitCode = session.connection().report(e.status(), message);
    result.error = withoutErrorPrefix(message.str());
  }
  result.table = table.str();
  return result;
}

void printResult(const FleetTarget& target, const TargetResult& result, Format format,
                 std::ostream& out) {
  const bool ok = result.exitCode == 0;
  if (format == Format::kTable) {
    out << "== " << target.address << ": "
        << (ok ? std::string("ok") : "failed (exit " + std::to_string(result.exitCode) + ")")
        << '\n';
    out << result.table;
    if (!ok) out << "error: " << result.error << '\n';
    return;
  }
  std::string json = "{\"target\":" + gateway::jsonQuote(target.address) +
                     ",\"ok\":" + (ok ? "true" : "false") +
                     ",\"exit_code\":" + std::to_string(result.exitCode) + ",\"results\":[";
  for (size_t i = 0; i < result.results.size(); ++i) {
    json += (i == 0 ? "" : ",") + result.results[i];
  }
  json += "]";
  if (!ok) json += ",\"error\":" + gateway::jsonQuote(result.error);
  json += "}";
  if (format == Format::kJson) {
    out << json << '\n';
  } else {
    out << "---\n" << jsonToYaml(json);
  }
}

}  // namespace

bool splitHostPort(const std::string& address, std::string& host, std::string& port) {
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return false;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) return false;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  return !host.empty() && !port.empty();
}

std::vector<FleetTarget> resolveFleet(const std::vector<std::string>& addresses, bool fanout) {
  std::vector<FleetTarget> targets;
  const auto add = [&](FleetTarget target) {
    const bool seen = std::any_of(targets.begin(), targets.end(), [&](const FleetTarget& t) {
      return t.error.empty() && target.error.empty() && t.address == target.address;
    });
    if (!seen) targets.push_back(std::move(target));
  };
  for (const std::string& address : addresses) {
    if (!fanout) {
      add({address, ""});
      continue;
    }
    std::string host;
    std::string port;
    if (!splitHostPort(address, host, port)) {
      add({address, "--fanout needs HOST:PORT, got \"" + address + "\""});
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      add({address, "cannot resolve " + host + ": " + ::gai_strerror(rc)});
      continue;
    }
    for (const addrinfo* each = found; each != nullptr; each = each->ai_next) {
      add({reactor::SocketAddress::fromSockaddr(each->ai_addr, each->ai_addrlen).toString(), ""});
    }
    ::freeaddrinfo(found);
  }
  return targets;
}

int runOnFleet(const std::vector<FleetTarget>& targets, const GlobalOptions& globals, Format format,
               const Action& action, std::ostream& out, std::ostream& err) {
  std::vector<TargetResult> results(targets.size());
  for (size_t first = 0; first < targets.size(); first += kParallelCalls) {
    std::vector<std::future<TargetResult>> running;
    const size_t last = std::min(targets.size(), first + kParallelCalls);
    for (size_t i = first; i < last; ++i) {
      running.push_back(std::async(std::launch::async, runOne, std::cref(targets[i]),
                                   std::cref(globals), format, std::cref(action)));
    }
    for (size_t i = first; i < last; ++i) results[i] = running[i - first].get();
  }
  int exitCode = 0;
  size_t failed = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    printResult(targets[i], results[i], format, out);
    exitCode = std::max(exitCode, results[i].exitCode);
    if (results[i].exitCode != 0) ++failed;
  }
  out.flush();
  err << (targets.size() - failed) << " of " << targets.size() << " gateways ok";
  if (failed != 0) err << ", " << failed << " failed";
  err << '\n';
  return exitCode;
}

}  // namespace evgate::admin::cli
