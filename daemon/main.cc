// evgate: the TCP gateway daemon.
//
//   evgate                       run on the embedded default configuration
//   evgate --config FILE         run on FILE
//   evgate --check-config FILE   print every problem in FILE as file:line:col: message on
//                                stderr and exit 1, or print "ok" and exit 0
//   evgate --version
//
// What the running daemon does with signals and the admin API: daemon/daemon.h.

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/daemon.h"
#include "gateway/config/config_parser.h"
#include "gateway/config/names.h"

namespace evgate::daemon {
namespace {

constexpr std::string_view kUsage =
    "usage: evgate [--config FILE] [--log-format text|json] [--log-level LEVEL]\n"
    "       evgate --check-config FILE\n"
    "       evgate --version | --help\n"
    "  --config FILE        run on FILE (default: the embedded configuration)\n"
    "  --check-config FILE  print every problem in FILE as file:line:col: message, or ok\n"
    "  --log-format F       text (default) or json; overrides log.format\n"
    "  --log-level L        debug, info (default), warn or error; overrides log.level\n";

int usageError() {
  (void)std::fputs(kUsage.data(), stderr);
  return 2;
}

int checkConfig(const std::string& path) {
  const gateway::ConfigResult result = gateway::loadConfigFile(path);
  if (!result.ok()) {
    for (const gateway::ConfigError& error : result.errors) {
      (void)std::fprintf(stderr, "%s\n", error.toString().c_str());
    }
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

int mainWithArgs(const std::vector<std::string_view>& args) {
  if (args.size() == 1 && (args[0] == "--version" || args[0] == "-V")) {
    std::printf("evgate %s\n", EVGATE_VERSION);
    return 0;
  }
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    (void)std::fputs(kUsage.data(), stdout);
    return 0;
  }
  if (args.size() == 2 && args[0] == "--check-config") return checkConfig(std::string(args[1]));
  Options options;
  for (size_t i = 0; i < args.size(); i += 2) {
    if (i + 1 >= args.size()) return usageError();
    const std::string_view value = args[i + 1];
    if (args[i] == "--config" && options.configPath.empty() && !value.empty()) {
      options.configPath = value;
    } else if (args[i] == "--log-format" && gateway::parseLogFormat(value)) {
      options.logFormat = gateway::parseLogFormat(value);
    } else if (args[i] == "--log-level" && gateway::parseLogLevel(value)) {
      options.logLevel = gateway::parseLogLevel(value);
    } else {
      return usageError();
    }
  }
  return run(options);
}

}  // namespace
}  // namespace evgate::daemon

int main(int argc, char** argv) {
  return evgate::daemon::mainWithArgs(std::vector<std::string_view>(argv + 1, argv + argc));
}
