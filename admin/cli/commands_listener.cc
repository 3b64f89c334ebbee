// listener list | get | create | update | delete | pause | resume.

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
using google::protobuf::Duration;

struct ListenerFlags {
  std::string name;
  FieldFlags<v1::Listener> fields;
  std::string drainTimeout;  // delete
  std::string pauseFor;      // pause
  bool dryRun = false;
};

using DurationField = Duration* (v1::Listener::*)();

FieldFlags<v1::Listener>::TextSetter setDuration(DurationField field) {
  return [field](v1::Listener& l, const std::string& text) { *(l.*field)() = toDuration(text); };
}

// The writable fields of a listener; `create` marks the ones a new listener needs.
void addFields(CLI::App* command, FieldFlags<v1::Listener>& f, bool create) {
  CLI::Option* bind = f.add(command, "--bind", "Address to bind, ADDR:PORT (port 0: any)", "bind",
                            [](v1::Listener& l, const std::string& v) { l.set_bind(v); });
  CLI::Option* cluster =
      f.add(command, "--cluster", "The cluster its flows are relayed to", "cluster",
            [](v1::Listener& l, const std::string& v) { l.set_cluster(v); });
  if (create) {
    bind->required();
    cluster->required();
  }
  f.add(command, "--max-connections", "Open connections allowed at once", "max_connections",
        [](v1::Listener& l, const std::string& v) { l.set_max_connections(toCount(v)); })
      ->check(countText());
  f.add(command, "--buffer-limit", "Bytes buffered per direction per flow (64KiB)",
        "buffer_limit_bytes",
        [](v1::Listener& l, const std::string& v) { l.set_buffer_limit_bytes(toBytes(v)); })
      ->check(sizeText());
  f.add(command, "--idle-timeout", "Close a flow idle this long", "idle_timeout",
        setDuration(&v1::Listener::mutable_idle_timeout))
      ->check(durationText());
  f.add(command, "--half-close-timeout", "After one direction ends, the other must end within",
        "half_close_timeout", setDuration(&v1::Listener::mutable_half_close_timeout))
      ->check(durationText());
  f.add(command, "--max-lifetime", "Close a flow after this long whatever it does", "max_lifetime",
        setDuration(&v1::Listener::mutable_max_lifetime))
      ->check(durationText());
  f.add(command, "--max-lifetime-jitter", "A random extra of up to this on --max-lifetime",
        "max_lifetime_jitter", setDuration(&v1::Listener::mutable_max_lifetime_jitter))
      ->check(durationText());
  f.addList(command, "--allow", "Client CIDR allowed to connect (repeat for more)", "allow",
            [](v1::Listener& l, const std::vector<std::string>& cidrs) {
              *l.mutable_allow() = {cidrs.begin(), cidrs.end()};
            });
  if (!create) {
    f.addSwitch(command, "--allow-all", "Clear the allow list: every client may connect", "allow",
                [](v1::Listener& l, bool) { l.clear_allow(); })
        ->excludes("--allow");
  }
  f.addSwitch(command, "--proxy-protocol,!--no-proxy-protocol",
              "Expect a PROXY protocol v1/v2 header from each client first",
              "accept_proxy_protocol",
              [](v1::Listener& l, bool on) { l.set_accept_proxy_protocol(on); });
  f.add(command, "--proxy-protocol-timeout", "The whole PROXY header must arrive within this",
        "proxy_protocol_timeout", setDuration(&v1::Listener::mutable_proxy_protocol_timeout))
      ->check(durationText());
  f.add(command, "--splice", "How flows move bulk bytes: splice() when bulk (auto), never, always",
        "splice",
        [](v1::Listener& l, const std::string& v) { l.set_splice(toEnum<v1::SpliceMode>(v)); })
      ->check(enumText<v1::SpliceMode>());
}

void list(Session& s) {
  v1::ListListenersResponse all;
  v1::ListListenersRequest request;
  do {
    v1::ListListenersResponse page;
    s.call(&Stub::ListListeners, request, &page);
    for (v1::Listener& l : *page.mutable_listeners()) *all.add_listeners() = std::move(l);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  s.out().print(all, [&](std::ostream& out) { printListeners(out, all); });
}

void printOne(Session& s, const v1::Listener& listener) {
  s.out().print(listener, [&](std::ostream& out) { printListener(out, listener); });
}

void get(const ListenerFlags& f, Session& s) {
  v1::GetListenerRequest request;
  request.set_name(f.name);
  v1::Listener reply;
  s.call(&Stub::GetListener, request, &reply);
  printOne(s, reply);
}

void create(const ListenerFlags& f, Session& s) {
  v1::CreateListenerRequest request;
  request.mutable_listener()->set_name(f.name);
  f.fields.apply(*request.mutable_listener(), nullptr);
  request.set_validate_only(f.dryRun);
  v1::Listener reply;
  s.call(&Stub::CreateListener, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void update(const ListenerFlags& f, Session& s) {
  // An empty mask means "every writable field", which would reset what the user did not name.
  if (!f.fields.anyGiven()) throw UsageError("listener update: give at least one field flag");
  v1::UpdateListenerRequest request;
  request.mutable_listener()->set_name(f.name);
  f.fields.apply(*request.mutable_listener(), request.mutable_update_mask());
  request.set_validate_only(f.dryRun);
  v1::Listener reply;
  s.call(&Stub::UpdateListener, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void deleteOne(const ListenerFlags& f, Session& s) {
  v1::DeleteListenerRequest request;
  request.set_name(f.name);
  if (!f.drainTimeout.empty()) *request.mutable_drain_timeout() = toDuration(f.drainTimeout);
  request.set_validate_only(f.dryRun);
  v1::DeleteListenerResponse reply;
  s.call(&Stub::DeleteListener, request, &reply);
  s.out().print(reply, [&](std::ostream& out) {
    out << "listener \"" << f.name << "\" deleted; " << reply.draining_flows()
        << " flows draining\n";
  });
  s.noteDryRun(f.dryRun);
}

void pause(const ListenerFlags& f, Session& s) {
  v1::PauseListenerRequest request;
  request.set_name(f.name);
  if (!f.pauseFor.empty()) *request.mutable_duration() = toDuration(f.pauseFor);
  request.set_validate_only(f.dryRun);
  v1::Listener reply;
  s.call(&Stub::PauseListener, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

void resume(const ListenerFlags& f, Session& s) {
  v1::ResumeListenerRequest request;
  request.set_name(f.name);
  request.set_validate_only(f.dryRun);
  v1::Listener reply;
  s.call(&Stub::ResumeListener, request, &reply);
  printOne(s, reply);
  s.noteDryRun(f.dryRun);
}

struct Verb {
  CLI::App* command;
  ListenerFlags& flags;  // lives as long as the command tree
};

// A verb taking the listener's name.
Verb verb(CLI::App* noun, Action& action, const std::string& name, const std::string& help,
          void (*run)(const ListenerFlags&, Session&)) {
  auto flags = std::make_shared<ListenerFlags>();
  CLI::App* command = noun->add_subcommand(name, help);
  command->add_option("name", flags->name, "The listener's name")->required();
  onRun(command, action, [flags, run](Session& s) { run(*flags, s); });
  return {command, *flags};
}

}  // namespace

void addListenerCommands(CLI::App& root, Action& action) {
  CLI::App* noun =
      root.add_subcommand("listener", "Listeners: bound addresses relayed to clusters");
  noun->require_subcommand(1);

  onRun(noun->add_subcommand("list", "Every listener"), action, list);
  verb(noun, action, "get", "One listener", get);

  const Verb created =
      verb(noun, action, "create", "Create a listener; it accepts when this returns", create);
  addFields(created.command, created.flags.fields, true);
  addDryRun(created.command, created.flags.dryRun);

  const Verb updated = verb(noun, action, "update",
                            "Change the fields whose flags are given (only those are sent in the "
                            "update mask)",
                            update);
  addFields(updated.command, updated.flags.fields, false);
  addDryRun(updated.command, updated.flags.dryRun);

  const Verb deleted = verb(noun, action, "delete",
                            "Delete a listener: its sockets close now, its flows drain", deleteOne);
  deleted.command
      ->add_option("--drain-timeout", deleted.flags.drainTimeout,
                   "How long its flows may go on (default: the configuration's drain_timeout; "
                   "0: close them now)")
      ->check(durationText());
  addDryRun(deleted.command, deleted.flags.dryRun);

  const Verb paused =
      verb(noun, action, "pause", "Stop accepting (clients queue in the backlog)", pause);
  paused.command->add_option("--for", paused.flags.pauseFor, "Resume by itself after this long")
      ->check(durationText());
  addDryRun(paused.command, paused.flags.dryRun);

  const Verb resumed = verb(noun, action, "resume", "Accept again", resume);
  addDryRun(resumed.command, resumed.flags.dryRun);
}

}  // namespace evgate::admin::cli
