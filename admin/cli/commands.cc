#include "admin/cli/commands.h"

#include <utility>

namespace evgate::admin::cli {

void onRun(CLI::App* command, Action& slot, Action run) {
  command->callback([&slot, run = std::move(run)] { slot = run; });
}

CLI::Option* addDryRun(CLI::App* command, bool& dryRun) {
  return command->add_flag("--dry-run", dryRun,
                           "Validate only: the gateway checks the request and changes nothing");
}

}  // namespace evgate::admin::cli
