// The command tree. Each noun's file (commands_<noun>.cc) adds its subcommands under the root;
// a verb's parse callback leaves what it does in `action`, which main runs once parsing is
// complete, so that global flags given after the command are in place (and --help or a usage
// error never reaches the gateway).

#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "admin/cli/session.h"

namespace evgate::admin::cli {

// What a parsed command does. Throws UsageError or RpcError to fail.
using Action = std::function<void(Session&)>;

void addStatusCommands(CLI::App& root, Action& action);     // status, drain
void addListenerCommands(CLI::App& root, Action& action);   // listener ...
void addClusterCommands(CLI::App& root, Action& action);    // cluster ...
void addFlowCommands(CLI::App& root, Action& action);       // flow ...
void addEventCommands(CLI::App& root, Action& action);      // event ...
void addWatchCommand(CLI::App& root, Action& action);       // watch
void addCompletionCommand(CLI::App& root, Action& action);  // completion bash

// Makes `command` leave `run` in `slot` when it is the command parsed.
void onRun(CLI::App* command, Action& slot, Action run);
// The --dry-run flag every mutating command has.
CLI::Option* addDryRun(CLI::App* command, bool& dryRun);

}  // namespace evgate::admin::cli
