#include "admin/cli/filter_flags.h"

#include "admin/cli/flags.h"

namespace evgate::admin::cli {

void FlowFilterFlags::addTo(CLI::App* command) {
  command->add_option("--listener", listener, "Flows accepted by this listener");
  command->add_option("--cluster", cluster, "Flows relayed to this cluster");
  command->add_option("--endpoint", endpoint, "Flows connected to this endpoint (ADDR:PORT)");
  command->add_option("--client", client, "Flows from a client in this CIDR (10.0.0.0/8)");
  command->add_option("--min-age", minAge, "Flows open for at least this long")
      ->check(durationText());
  command->add_option("--min-idle", minIdle, "Flows with no byte moved for at least this long")
      ->check(durationText());
}

v1::FlowFilter FlowFilterFlags::toFilter() const {
  v1::FlowFilter filter;
  filter.set_listener(listener);
  filter.set_cluster(cluster);
  filter.set_endpoint(endpoint);
  filter.set_client_cidr(client);
  if (!minAge.empty()) *filter.mutable_min_age() = toDuration(minAge);
  if (!minIdle.empty()) *filter.mutable_min_idle() = toDuration(minIdle);
  return filter;
}

}  // namespace evgate::admin::cli
