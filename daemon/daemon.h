#pragma once

#include <optional>
#include <string>

#include "gateway/config/config.h"

namespace evgate::daemon {

// What the command line asked for.
struct Options {
  std::string configPath;  // empty: the embedded default
  std::optional<gateway::LogFormat> logFormat;
  std::optional<gateway::LogLevel> logLevel;
};

// Runs the gateway until it has drained: loads the configuration and the state file over it,
// starts the workers and the admin API, then serves signals, admin calls and scheduled events
// on the main thread's loop (the control loop) until a drain (SIGTERM, SIGINT or the Drain
// RPC) ends. Returns the process's exit code: 0 after a drain, 1 if it could not start.
//
//   SIGTERM / SIGINT  drain: the admin health check turns NOT_SERVING, listeners stop
//                     accepting, flows finish for up to drain_timeout (the last fifth closes
//                     what is left, spread over time); a second signal closes the rest at once.
//   SIGHUP            reload the configuration file; API changes stay over it
//                     (docs/admin-api.md, "The file and the API").
int run(const Options& options);

}  // namespace evgate::daemon
