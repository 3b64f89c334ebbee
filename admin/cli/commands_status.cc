// status, drain.

#include <memory>
#include <ostream>
#include <string>

#include "admin/cli/commands.h"
#include "admin/cli/flags.h"
#include "admin/cli/views.h"

namespace evgate::admin::cli {
namespace {

using Stub = v1::Admin::Stub;

struct DrainFlags {
  std::string timeout;
  bool dryRun = false;
};

void status(Session& s) {
  v1::Status reply;
  s.call(&Stub::GetStatus, v1::GetStatusRequest(), &reply);
  s.out().print(reply, [&](std::ostream& out) { printStatus(out, reply); });
}

void drain(const DrainFlags& f, Session& s) {
  v1::DrainRequest request;
  if (!f.timeout.empty()) *request.mutable_timeout() = toDuration(f.timeout);
  request.set_validate_only(f.dryRun);
  v1::DrainResponse reply;
  s.call(&Stub::Drain, request, &reply);
  s.out().print(reply, [&](std::ostream& out) {
    out << "draining: " << reply.active_flows() << " flows open\n";
  });
  s.noteDryRun(f.dryRun);
}

}  // namespace

void addStatusCommands(CLI::App& root, Action& action) {
  CLI::App* statusCommand =
      root.add_subcommand("status", "The gateway's version, uptime, workers and resource counts");
  onRun(statusCommand, action, status);

  auto flags = std::make_shared<DrainFlags>();
  CLI::App* drainCommand = root.add_subcommand(
      "drain", "Start a drain, as SIGTERM does: stop accepting, let flows finish, exit");
  drainCommand
      ->add_option("--timeout", flags->timeout,
                   "How long flows may go on (default: the configuration's drain_timeout); "
                   "after the command, this is the drain's timeout, not the call's")
      ->check(durationText());
  addDryRun(drainCommand, flags->dryRun);
  onRun(drainCommand, action, [flags](Session& s) { drain(*flags, s); });
}

}  // namespace evgate::admin::cli
