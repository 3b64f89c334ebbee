// Fleet control: one command applied to several gateways (repeated --address, or --fanout to a
// DNS name that resolves to many, such as a Kubernetes headless Service), each result printed
// under its gateway's address.
//
//   table  "== ADDRESS: ok" or "== ADDRESS: failed (exit N)", then that gateway's table or
//          error; a summary line on stderr
//   json   one object per gateway and line: {"target", "ok", "exit_code", "results", "error"};
//          results holds the messages the command printed (one, or many for a stream)
//   yaml   the same objects as YAML documents
//
// The exit code is 0 when every gateway succeeded, otherwise the largest of theirs (3 when one
// could not be reached or resolved, 1 when one refused, 2 for a usage error).
//
// Thread rule: the CLI's main thread; the gateways are called in parallel from worker threads.

#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "admin/cli/commands.h"
#include "admin/cli/session.h"

namespace evgate::admin::cli {

struct FleetTarget {
  std::string address;  // HOST:PORT (an IP address after --fanout)
  std::string error;    // set: the name did not resolve; the command is not run
};

// Splits "HOST:PORT" or "[IPV6]:PORT"; false when there is no port.
bool splitHostPort(const std::string& address, std::string& host, std::string& port);

// The gateways to call: every address as given, or with `fanout` every address each name
// resolves to (IPv4 and IPv6, without duplicates, in order).
std::vector<FleetTarget> resolveFleet(const std::vector<std::string>& addresses, bool fanout);

// Runs `action` against each target with `globals` (their address replaced), prints the results
// to `out` and the errors and summary to `err`, and returns the exit code.
int runOnFleet(const std::vector<FleetTarget>& targets, const GlobalOptions& globals, Format format,
               const Action& action, std::ostream& out, std::ostream& err);

}  // namespace evgate::admin::cli
