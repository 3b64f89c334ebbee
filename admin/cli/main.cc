// evgatectl: the command line over evgate's admin API (DESIGN.md, "The CLI").
//
//   evgatectl [global flags] NOUN VERB [args] [flags]     global flags may also follow
//
// Exit codes: 0 ok; 1 the gateway answered with an error; 2 usage error; 3 the gateway cannot
// be reached.

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <string>

#include "admin/cli/commands.h"
#include "admin/cli/errors.h"
#include "admin/cli/flags.h"
#include "admin/cli/fleet.h"
#include "admin/cli/output.h"
#include "admin/cli/session.h"

namespace evgate::admin::cli {
namespace {

constexpr int kUsageError = 2;

constexpr const char* kFooter =
    "Environment: EVGATE_ADDRESS and EVGATE_TOKEN_FILE stand in for --address and --token-file\n"
    "(the flags win).\n"
    "Several gateways: --address A --address B, or --fanout --address NAME:PORT for every\n"
    "address NAME resolves to; one result per gateway, exit 0 only if all succeeded.\n"
    "Exit codes: 0 ok; 1 the gateway answered with an error; 2 usage error; 3 the gateway cannot\n"
    "be reached.";

void addGlobalOptions(CLI::App& app, GlobalOptions& g) {
  app.add_option("--address", g.addresses,
                 "The gateway's admin address, HOST:PORT; repeat it (or separate with commas) "
                 "to run the command on each of several gateways")
      ->envname("EVGATE_ADDRESS")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--fanout", g.fanout,
               "Resolve each --address name and run the command on every address it resolves to "
               "(e.g. a Kubernetes headless Service); prints one result per gateway");
  app.add_option("--token-file", g.connection.tokenFile,
                 "A file holding the bearer token (trailing whitespace is dropped)")
      ->envname("EVGATE_TOKEN_FILE");
  app.add_option("--tls-ca", g.connection.tlsCa,
                 "Use TLS, trusting the CA certificates in this PEM file");
  app.add_option("--tls-cert", g.connection.tlsCert, "With --tls-ca: client certificate (mTLS)");
  app.add_option("--tls-key", g.connection.tlsKey, "With --tls-ca: client private key (mTLS)");
  app.add_option("--timeout", g.timeout,
                 "Deadline of each call (watch and flow close-all run until done)")
      ->check(durationText())
      ->capture_default_str();
  app.add_option("-o,--output", g.output, "Output format")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
}

std::string failureMessage(const CLI::App*, const CLI::Error& e) {
  return "error: " + std::string(e.what()) + "\nRun with --help for more information.\n";
}

int run(int argc, char** argv) {
  CLI::App app("Manage a running evgate gateway through its admin API.", "evgatectl");
  // Global flags may follow the command: a subcommand hands flags it does not know to its parent.
  app.fallthrough();
  app.require_subcommand(1);
  app.footer(kFooter);
  app.failure_message(failureMessage);

  GlobalOptions globals;
  addGlobalOptions(app, globals);
  Action action;
  addStatusCommands(app, action);
  addListenerCommands(app, action);
  addClusterCommands(app, action);
  addFlowCommands(app, action);
  addEventCommands(app, action);
  addWatchCommand(app, action);
  addCompletionCommand(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success) ? 0 : kUsageError;
  }

  const Format format = *parseFormat(globals.output);
  if (globals.addresses.size() > 1 || globals.fanout) {
    if (app.got_subcommand("watch")) {
      std::cerr << "error: watch follows one gateway: give one --address, without --fanout\n";
      return kUsageError;
    }
    return runOnFleet(resolveFleet(globals.addresses, globals.fanout), globals, format, action,
                      std::cout, std::cerr);
  }
  if (globals.addresses.empty()) {
    std::cerr << "error: --address is empty\n";
    return kUsageError;
  }
  globals.connection.address = globals.addresses.front();
  Output output(format, std::cout);
  Session session(globals, output);
  try {
    action(session);
    return 0;
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kUsageError;
  } catch (const RpcError& e) {
    return session.connection().report(e.status(), std::cerr);
  }
}

}  // namespace
}  // namespace evgate::admin::cli

int main(int argc, char** argv) {
  try {
    return evgate::admin::cli::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
