// watch: the gateway's changes and lifecycle events as they happen.

#include <memory>
#include <ostream>
#include <string>

#include "admin/cli/commands.h"
#include "admin/cli/views.h"

namespace evgate::admin::cli {
namespace {

struct WatchFlags {
  bool flows = false;
  std::string listener;
  std::string cluster;
  std::string client;
};

// Runs until the gateway ends the stream (or the user interrupts); no deadline.
void watch(const WatchFlags& f, Session& s) {
  v1::WatchRequest request;
  request.set_include_flows(f.flows);
  request.mutable_flow_filter()->set_listener(f.listener);
  request.mutable_flow_filter()->set_cluster(f.cluster);
  request.mutable_flow_filter()->set_client_cidr(f.client);
  if (!f.flows) request.clear_flow_filter();
  Connection& connection = s.connection();
  const auto context = connection.streamContext();
  const auto reader = connection.stub().Watch(context.get(), request);
  v1::WatchEvent event;
  while (reader->Read(&event)) {
    s.out().printStreamed(event, [&](std::ostream& out) { printWatchEvent(out, event); });
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) throw RpcError(std::move(status));
}

}  // namespace

void addWatchCommand(CLI::App& root, Action& action) {
  auto f = std::make_shared<WatchFlags>();
  CLI::App* command = root.add_subcommand(
      "watch",
      "Print every change and lifecycle event as it happens (one line each; -o json: one JSON "
      "object per line)");
  CLI::Option* flows = command->add_flag("--flows", f->flows, "Also flows opened and closed");
  command->add_option("--listener", f->listener, "With --flows: flows of this listener")
      ->needs(flows);
  command->add_option("--cluster", f->cluster, "With --flows: flows of this cluster")->needs(flows);
  command->add_option("--client", f->client, "With --flows: flows from a client in this CIDR")
      ->needs(flows);
  onRun(command, action, [f](Session& s) { watch(*f, s); });
}

}  // namespace evgate::admin::cli
