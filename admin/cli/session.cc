#include "admin/cli/session.h"

#include <iostream>

#include "gateway/config/units.h"

namespace evgate::admin::cli {

Session::Session(const GlobalOptions& options, Output& output)
    : options_(options), output_(output) {}

Connection& Session::connection() {
  if (!connection_) {
    ConnectionOptions connection = options_.connection;
    const auto timeout = gateway::parseDuration(options_.timeout);
    if (!timeout) throw UsageError("--timeout: invalid duration \"" + options_.timeout + "\"");
    connection.timeout = *timeout;
    connection_ = std::make_unique<Connection>(connection);
  }
  return *connection_;
}

void Session::noteDryRun(bool dryRun) const {
  if (dryRun && output_.format() == Format::kTable) {
    std::cerr << "dry run: the gateway accepted the request; nothing changed\n";
  }
}

}  // namespace evgate::admin::cli
