// cluster list | get | create | update | delete | endpoint | endpoint-add | endpoint-remove.

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "admin/cli/commands.h"
#include "admin/cli/field_flags.h"
#include "admin/cli/flags.h"
#include "admin/cli/views.h"

namespace evgate::admin::cli {
namespace {

using Stub = v1::Admin::Stub;
using Fields = FieldFlags<v1::Cluster>;

struct ClusterFlags {
  std::string name;
  Fields fields;
  // endpoint, endpoint-add, endpoint-remove
  std::string address;
  std::string state;
  std::string weight;
  bool dryRun = false;
};

Fields::TextSetter setDuration(google::protobuf::Duration* (*field)(v1::Cluster&)) {
  return [field](v1::Cluster& c, const std::string& text) { *field(c) = toDuration(text); };
}

void addHealthFields(CLI::App* command, Fields& f, bool create) {
  const std::vector<std::string> flags = {"--health-interval", "--health-timeout",
                                          "--unhealthy-threshold", "--healthy-threshold"};
  f.add(command, flags[0], "Active health checks: time between checks of an endpoint",
        "health_check.interval",
        setDuration([](v1::Cluster& c) { return c.mutable_health_check()->mutable_interval(); }))
      ->check(durationText());
  f.add(command, flags[1], "Active health checks: a connect must complete within this",
        "health_check.timeout",
        setDuration([](v1::Cluster& c) { return c.mutable_health_check()->mutable_timeout(); }))
      ->check(durationText());
  f.add(command, flags[2], "Active health checks: failures in a row that mark it unhealthy",
        "health_check.unhealthy_threshold",
        [](v1::Cluster& c, const std::string& v) {
          c.mutable_health_check()->set_unhealthy_threshold(toCount(v));
        })
      ->check(countText());
  f.add(command, flags[3], "Active health checks: passes in a row that mark it healthy",
        "health_check.healthy_threshold",
        [](v1::Cluster& c, const std::string& v) {
          c.mutable_health_check()->set_healthy_threshold(toCount(v));
        })
      ->check(countText());
  if (create) return;
  CLI::Option* off =
      f.addSwitch(command, "--no-health-check", "Turn active health checks off", "health_check",
                  [](v1::Cluster& c, bool) { c.clear_health_check(); });
  for (const std::string& flag : flags) off->excludes(flag);
}

void addOutlierFields(CLI::App* command, Fields& f) {
  f.add(command, "--outlier-failures", "Connect failures in a row that eject an endpoint (0: off)",
        "outlier.consecutive_failures",
        [](v1::Cluster& c, const std::string& v) {
          c.mutable_outlier()->set_consecutive_failures(toCount(v));
        })
      ->check(countText());
  f.add(command, "--outlier-base-ejection", "The first ejection's length, doubled on each more",
        "outlier.base_ejection",
        setDuration([](v1::Cluster& c) { return c.mutable_outlier()->mutable_base_ejection(); }))
      ->check(durationText());
  f.add(command, "--outlier-max-ejection", "The longest ejection", "outlier.max_ejection",
        setDuration([](v1::Cluster& c) { return c.mutable_outlier()->mutable_max_ejection(); }))
      ->check(durationText());
}

// The writable fields of a cluster; `create` marks the ones a new cluster needs.
void addFields(CLI::App* command, Fields& f, bool create) {
  CLI::Option* endpoints =
      f.addList(command, "--endpoint",
                "An endpoint, ADDR:PORT or ADDR:PORT=WEIGHT (repeat for more; replaces the list)",
                "endpoints", [](v1::Cluster& c, const std::vector<std::string>& texts) {
                  c.clear_endpoints();
                  for (const std::string& text : texts) *c.add_endpoints() = toEndpoint(text);
                });
  endpoints->check(endpointText());
  if (create) endpoints->required();
  f.add(command, "--lb", "Load-balancing policy (default round_robin)", "lb",
        [](v1::Cluster& c, const std::string& v) { c.set_lb(toEnum<v1::LbPolicy>(v)); })
      ->check(enumText<v1::LbPolicy>());
  f.add(command, "--connect-timeout", "Per connect attempt", "connect_timeout",
        setDuration([](v1::Cluster& c) { return c.mutable_connect_timeout(); }))
      ->check(durationText());
  f.add(command, "--max-connect-attempts", "Connect attempts per flow in all",
        "max_connect_attempts",
        [](v1::Cluster& c, const std::string& v) { c.set_max_connect_attempts(toCount(v)); })
      ->check(countText());
  addHealthFields(command, f, create);
  addOutlierFields(command, f);
  f.add(command, "--send-proxy-protocol", "The PROXY header sent to each upstream",
        "send_proxy_protocol",
        [](v1::Cluster& c, const std::string& v) {
          c.set_send_proxy_protocol(toEnum<v1::ProxyProtocolVersion>(v));
        })
      ->check(enumText<v1::ProxyProtocolVersion>());
  f.addList(command, "--source-address",
            "A local address (no port) upstream connects bind, round-robin (repeat for more; "
            "replaces the list)",
            "source_addresses", [](v1::Cluster& c, const std::vector<std::string>& addresses) {
              *c.mutable_source_addresses() = {addresses.begin(), addresses.end()};
            });
  if (!create) {
    f.addSwitch(command, "--no-source-addresses",
                "Clear the source address list: upstream connects bind nothing", "source_addresses",
                [](v1::Cluster& c, bool) { c.clear_source_addresses(); })
        ->excludes("--source-address");
  }
}

void printOne(Session& s, const v1::Cluster& cluster) {
  s.out().print(cluster, [&](std::ostream& out) { printCluster(out, cluster); });
}

void list(Session& s) {
  v1::ListClustersResponse all;
  v1::ListClustersRequest request;
  do {
    v1::ListClustersResponse page;
    s.call(&Stub::ListClusters, request, &page);
    for (v1::Cluster& c : *page.mutable_clusters()) *all.add_clusters() = std::move(c);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  s.out().print(all, [&](std::ostream& out) { printClusters(out, all); });
}

void get(const ClusterFlags& f, Session& s) {
  v1::GetClusterRequest request;
  request.set_name(f.name);
  v1::Cluster reply;
  s.call(&Stub::GetCluster, request, &reply);
  printOne(s, reply);
}

void create(const ClusterFlags& f, Session& s) {
  v1::CreateClusterRequest request;
  request.mutable_cluster()->set_name(f.name);
  f.fields.apply(*request.mutable_cluster(), nullptr);
  request.set_validate_only(f.dryRun);
  v1::Cluster reply;
  s.call(&Stub::CreateCluster, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void update(const ClusterFlags& f, Session& s) {
  // An empty mask means "every writable field", which would reset what the user did not name.
  if (!f.fields.anyGiven()) throw UsageError("cluster update: give at least one field flag");
  v1::UpdateClusterRequest request;
  v1::Cluster& cluster = *request.mutable_cluster();
  cluster.set_name(f.name);
  // The gateway replaces health_check and outlier whole, so a flag that changes one of their
  // settings sends the cluster's current settings with that one changed.
  const std::vector<std::string> partial = f.fields.partlySetFields();
  if (!partial.empty()) {
    v1::GetClusterRequest get;
    get.set_name(f.name);
    v1::Cluster current;
    s.call(&Stub::GetCluster, get, &current);
    copyFields(current, partial, cluster);
  }
  f.fields.apply(cluster, request.mutable_update_mask());
  collapseToTopLevel(*request.mutable_update_mask());
  request.set_validate_only(f.dryRun);
  v1::Cluster reply;
  s.call(&Stub::UpdateCluster, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void deleteOne(const ClusterFlags& f, Session& s) {
  v1::DeleteClusterRequest request;
  request.set_name(f.name);
  request.set_validate_only(f.dryRun);
  v1::DeleteClusterResponse reply;
  s.call(&Stub::DeleteCluster, request, &reply);
  s.out().print(reply, [&](std::ostream& out) { out << "cluster \"" << f.name << "\" deleted\n"; });
  s.noteDryRun(f.dryRun);
}

void setEndpointState(const ClusterFlags& f, Session& s) {
  v1::SetEndpointStateRequest request;
  request.set_cluster(f.name);
  request.set_address(f.address);
  request.set_state(toEnum<v1::EndpointState>(f.state));
  request.set_validate_only(f.dryRun);
  v1::Cluster reply;
  s.call(&Stub::SetEndpointState, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void addEndpoint(const ClusterFlags& f, Session& s) {
  v1::AddEndpointRequest request;
  request.set_cluster(f.name);
  *request.mutable_endpoint() = toEndpoint(f.address);
  if (!f.weight.empty()) request.mutable_endpoint()->set_weight(toCount(f.weight));
  if (!f.state.empty()) {
    request.mutable_endpoint()->set_state(toEnum<v1::EndpointState>(f.state));
  }
  request.set_validate_only(f.dryRun);
  v1::Cluster reply;
  s.call(&Stub::AddEndpoint, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void removeEndpoint(const ClusterFlags& f, Session& s) {
  v1::RemoveEndpointRequest request;
  request.set_cluster(f.name);
  request.set_address(f.address);
  request.set_validate_only(f.dryRun);
  v1::Cluster reply;
  s.call(&Stub::RemoveEndpoint, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

struct Verb {
  CLI::App* command;
  ClusterFlags& flags;  // lives as long as the command tree
};

// A verb taking the cluster's name first.
Verb verb(CLI::App* noun, Action& action, const std::string& name, const std::string& help,
          void (*run)(const ClusterFlags&, Session&)) {
  auto flags = std::make_shared<ClusterFlags>();
  CLI::App* command = noun->add_subcommand(name, help);
  command
      ->add_option(name.starts_with("endpoint") ? "cluster" : "name", flags->name,
                   "The cluster's name")
      ->required();
  onRun(command, action, [flags, run](Session& s) { run(*flags, s); });
  return {command, *flags};
}

void addEndpointVerbs(CLI::App* noun, Action& action) {
  const Verb state = verb(noun, action, "endpoint",
                          "Set an endpoint's admin state: active, draining (no new flows) or "
                          "disabled",
                          setEndpointState);
  state.command->add_option("address", state.flags.address, "The endpoint, ADDR:PORT")->required();
  state.command->add_option("state", state.flags.state, "The new state")
      ->required()
      ->check(enumText<v1::EndpointState>());
  addDryRun(state.command, state.flags.dryRun);

  const Verb added = verb(noun, action, "endpoint-add", "Add an endpoint", addEndpoint);
  added.command->add_option("address", added.flags.address, "The endpoint, ADDR:PORT")
      ->required()
      ->check(endpointText());
  added.command->add_option("--weight", added.flags.weight, "Relative share of new flows")
      ->check(countText());
  added.command->add_option("--state", added.flags.state, "The admin state (default: active)")
      ->check(enumText<v1::EndpointState>());
  addDryRun(added.command, added.flags.dryRun);

  const Verb removed = verb(noun, action, "endpoint-remove",
                            "Remove an endpoint (its open flows go on)", removeEndpoint);
  removed.command->add_option("address", removed.flags.address, "The endpoint, ADDR:PORT")
      ->required();
  addDryRun(removed.command, removed.flags.dryRun);
}

}  // namespace

void addClusterCommands(CLI::App& root, Action& action) {
  CLI::App* noun = root.add_subcommand("cluster", "Clusters: endpoints and how to pick among them");
  noun->require_subcommand(1);

  onRun(noun->add_subcommand("list", "Every cluster"), action, list);
  verb(noun, action, "get", "One cluster, with live endpoint health and load", get);

  const Verb created = verb(noun, action, "create", "Create a cluster", create);
  addFields(created.command, created.flags.fields, true);
  addDryRun(created.command, created.flags.dryRun);

  const Verb updated = verb(noun, action, "update",
                            "Change the fields whose flags are given (only those are sent in "
                            "the update mask; endpoints that stay keep their state)",
                            update);
  addFields(updated.command, updated.flags.fields, false);
  addDryRun(updated.command, updated.flags.dryRun);

  const Verb deleted = verb(noun, action, "delete", "Delete a cluster no listener uses", deleteOne);
  addDryRun(deleted.command, deleted.flags.dryRun);

  addEndpointVerbs(noun, action);
}

}  // namespace evgate::admin::cli
