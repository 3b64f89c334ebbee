// event list | create | delete: the reactors' event tables and the scheduled events.

#include <algorithm>
#include <array>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "admin/cli/commands.h"
#include "admin/cli/filter_flags.h"
#include "admin/cli/flags.h"
#include "admin/cli/views.h"

namespace evgate::admin::cli {
namespace {

using Stub = v1::Admin::Stub;

struct CreateFlags {
  CLI::App* command = nullptr;
  std::string name;
  std::string after;
  std::string every;
  std::string count;
  std::string at;
  std::string action;
  FlowFilterFlags filter;  // also --listener, --cluster, --endpoint of the other actions
  std::string state;
  std::string weight;
  bool dryRun = false;
};

struct DeleteFlags {
  std::string name;
  bool dryRun = false;
};

// Which target flags each --action needs and which it takes; any other is a usage error, so a
// flag that would be ignored is never silently dropped.
struct ActionSpec {
  std::string_view name;
  std::vector<std::string_view> required;
  std::vector<std::string_view> allowed;
};

const std::vector<ActionSpec>& actionSpecs() {
  static const std::vector<ActionSpec> specs = {
      {"pause-listener", {"--listener"}, {"--listener"}},
      {"resume-listener", {"--listener"}, {"--listener"}},
      {"delete-listener", {"--listener"}, {"--listener"}},
      {"set-endpoint-state",
       {"--cluster", "--endpoint", "--state"},
       {"--cluster", "--endpoint", "--state"}},
      {"set-endpoint-weight",
       {"--cluster", "--endpoint", "--weight"},
       {"--cluster", "--endpoint", "--weight"}},
      {"close-flows",
       {},
       {"--listener", "--cluster", "--endpoint", "--client", "--min-age", "--min-idle"}},
  };
  return specs;
}

constexpr std::array<std::string_view, 8> kTargetFlags = {"--listener", "--cluster", "--endpoint",
                                                          "--client",   "--min-age", "--min-idle",
                                                          "--state",    "--weight"};

void checkTargets(const CreateFlags& f, const ActionSpec& spec) {
  for (const std::string_view flag : kTargetFlags) {
    const bool given = f.command->count(std::string(flag)) > 0;
    const bool allowed =
        std::find(spec.allowed.begin(), spec.allowed.end(), flag) != spec.allowed.end();
    const bool required =
        std::find(spec.required.begin(), spec.required.end(), flag) != spec.required.end();
    if (given && !allowed) {
      throw UsageError(std::string(flag) + " does not apply to --action " + std::string(spec.name));
    }
    if (!given && required) {
      throw UsageError("--action " + std::string(spec.name) + " needs " + std::string(flag));
    }
  }
}

v1::Action toAction(const CreateFlags& f) {
  const auto& specs = actionSpecs();
  const auto spec = std::find_if(specs.begin(), specs.end(),
                                 [&](const ActionSpec& s) { return s.name == f.action; });
  if (spec == specs.end()) throw UsageError("unknown --action " + f.action);
  checkTargets(f, *spec);
  v1::Action action;
  const v1::FlowFilter filter = f.filter.toFilter();
  if (spec->name == "pause-listener") action.set_pause_listener(filter.listener());
  if (spec->name == "resume-listener") action.set_resume_listener(filter.listener());
  if (spec->name == "delete-listener") action.set_delete_listener(filter.listener());
  if (spec->name == "set-endpoint-state") {
    v1::SetEndpointStateAction* set = action.mutable_set_endpoint_state();
    set->set_cluster(filter.cluster());
    set->set_address(filter.endpoint());
    set->set_state(toEnum<v1::EndpointState>(f.state));
  }
  if (spec->name == "set-endpoint-weight") {
    v1::SetEndpointWeightAction* set = action.mutable_set_endpoint_weight();
    set->set_cluster(filter.cluster());
    set->set_address(filter.endpoint());
    set->set_weight(toCount(f.weight));
  }
  if (spec->name == "close-flows") *action.mutable_close_flows() = filter;
  return action;
}

void list(Session& s) {
  v1::ListEventsResponse reply;
  s.call(&Stub::ListEvents, v1::ListEventsRequest(), &reply);
  s.out().print(reply, [&](std::ostream& out) { printEvents(out, reply); });
}

void create(const CreateFlags& f, Session& s) {
  v1::CreateEventRequest request;
  v1::ScheduledEvent* event = request.mutable_event();
  event->set_name(f.name);
  if (!f.after.empty()) *event->mutable_after() = toDuration(f.after);
  if (!f.every.empty()) {
    *event->mutable_every()->mutable_interval() = toDuration(f.every);
    if (!f.count.empty()) event->mutable_every()->set_count(toCount(f.count));
  }
  if (!f.at.empty()) *event->mutable_at() = toTimestamp(f.at);
  *event->mutable_action() = toAction(f);
  request.set_validate_only(f.dryRun);
  v1::ScheduledEvent reply;
  s.call(&Stub::CreateEvent, request, &reply);
  s.out().print(reply, [&](std::ostream& out) { printScheduledEvent(out, reply); });
  s.noteDryRun(f.dryRun);
}

void deleteOne(const DeleteFlags& f, Session& s) {
  v1::DeleteEventRequest request;
  request.set_name(f.name);
  request.set_validate_only(f.dryRun);
  v1::DeleteEventResponse reply;
  s.call(&Stub::DeleteEvent, request, &reply);
  s.out().print(reply, [&](std::ostream& out) { out << "event \"" << f.name << "\" deleted\n"; });
  s.noteDryRun(f.dryRun);
}

void addCreate(CLI::App* noun, Action& action) {
  auto f = std::make_shared<CreateFlags>();
  CLI::App* command = noun->add_subcommand(
      "create", "Schedule a named event: a timer with an action (kept in the state file)");
  f->command = command;
  command->add_option("name", f->name, "The event's name")->required();

  CLI::Option_group* trigger = command->add_option_group("trigger", "When it fires (one of)");
  trigger->add_option("--after", f->after, "Once, this long from now")->check(durationText());
  CLI::Option* every = trigger->add_option("--every", f->every, "Repeatedly, at this interval")
                           ->check(durationText());
  trigger->add_option("--at", f->at, "Once, at this time (RFC 3339)")->check(timestampText());
  trigger->require_option(1);
  command->add_option("--count", f->count, "With --every: firings in all (default: unlimited)")
      ->check(countText())
      ->needs(every);

  std::vector<std::string> actions;
  for (const ActionSpec& spec : actionSpecs()) actions.emplace_back(spec.name);
  command->add_option("--action", f->action, "What it does when it fires")
      ->required()
      ->check(CLI::IsMember(actions));
  f->filter.addTo(command);
  command->add_option("--state", f->state, "set-endpoint-state: the new state")
      ->check(enumText<v1::EndpointState>());
  command->add_option("--weight", f->weight, "set-endpoint-weight: the new weight")
      ->check(countText());
  command->footer(
      "Targets: pause-listener, resume-listener, delete-listener: --listener;\n"
      "set-endpoint-state: --cluster --endpoint --state; set-endpoint-weight: --cluster "
      "--endpoint --weight;\nclose-flows: the filter flags (--listener --cluster --endpoint "
      "--client --min-age --min-idle).");
  addDryRun(command, f->dryRun);
  onRun(command, action, [f](Session& s) { create(*f, s); });
}

}  // namespace

void addEventCommands(CLI::App& root, Action& action) {
  CLI::App* noun = root.add_subcommand("event", "Reactor events and scheduled events");
  noun->require_subcommand(1);

  onRun(noun->add_subcommand("list", "Every event in every reactor, and the scheduled events"),
        action, list);
  addCreate(noun, action);

  auto deleted = std::make_shared<DeleteFlags>();
  CLI::App* deleteCommand = noun->add_subcommand("delete", "Cancel a scheduled event");
  deleteCommand->add_option("name", deleted->name, "The event's name")->required();
  addDryRun(deleteCommand, deleted->dryRun);
  onRun(deleteCommand, action, [deleted](Session& s) { deleteOne(*deleted, s); });
}

}  // namespace evgate::admin::cli
