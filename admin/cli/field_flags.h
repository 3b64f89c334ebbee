// Flags that each set one field of a resource, for `create` and `update` alike. A flag given on
// the command line writes its field and, for an update, names that field in the update mask:
// fields whose flags are not given are left as they are.
//
//   FieldFlags<v1::Listener> fields;
//   fields.add(command, "--bind", "Address to bind", "bind",
//              [](v1::Listener& l, const std::string& text) { l.set_bind(text); });
//   ...after parsing:
//   fields.apply(*request.mutable_listener(), request.mutable_update_mask());

#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/field_mask.pb.h>
#include <google/protobuf/message.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace evgate::admin::cli {

template <typename Message>
class FieldFlags {
 public:
  using TextSetter = std::function<void(Message&, const std::string&)>;
  using ListSetter = std::function<void(Message&, const std::vector<std::string>&)>;
  using BoolSetter = std::function<void(Message&, bool)>;

  // A flag with one value. `path` is the field's update mask path.
  CLI::Option* add(CLI::App* command, const std::string& flag, const std::string& help,
                   const std::string& path, TextSetter set) {
    Entry& entry = entries_.emplace_back();
    entry.path = path;
    entry.set = [set = std::move(set)](Message& m, const Entry& e) { set(m, e.text); };
    entry.option = command->add_option(flag, entry.text, help);
    return entry.option;
  }

  // A flag that may be repeated (`--allow A --allow B`); the values replace the whole list.
  CLI::Option* addList(CLI::App* command, const std::string& flag, const std::string& help,
                       const std::string& path, ListSetter set) {
    Entry& entry = entries_.emplace_back();
    entry.path = path;
    entry.set = [set = std::move(set)](Message& m, const Entry& e) { set(m, e.list); };
    entry.option = command->add_option(flag, entry.list, help);
    entry.option->allow_extra_args(false)->take_all();
    return entry.option;
  }

  // A switch; `flag` may name its negation too ("--x,!--no-x").
  CLI::Option* addSwitch(CLI::App* command, const std::string& flag, const std::string& help,
                         const std::string& path, BoolSetter set) {
    Entry& entry = entries_.emplace_back();
    entry.path = path;
    entry.set = [set = std::move(set)](Message& m, const Entry& e) { set(m, e.on); };
    entry.option = command->add_flag(flag, entry.on, help);
    return entry.option;
  }

  // Writes every given flag's field into `message` and, if `mask` is not null, adds its path
  // (once, even if two flags share it).
  void apply(Message& message, google::protobuf::FieldMask* mask) const {
    for (const Entry& entry : entries_) {
      if (entry.option->count() == 0) continue;
      entry.set(message, entry);
      if (mask == nullptr) continue;
      const auto& paths = mask->paths();
      if (std::find(paths.begin(), paths.end(), entry.path) == paths.end()) {
        mask->add_paths(entry.path);
      }
    }
  }

  // The top-level fields that given flags set only part of: "health_check" for a flag whose path
  // is "health_check.timeout".
  std::vector<std::string> partlySetFields() const {
    std::vector<std::string> fields;
    for (const Entry& entry : entries_) {
      const size_t dot = entry.path.find('.');
      if (entry.option->count() == 0 || dot == std::string::npos) continue;
      const std::string field = entry.path.substr(0, dot);
      if (std::find(fields.begin(), fields.end(), field) == fields.end()) fields.push_back(field);
    }
    return fields;
  }

  bool anyGiven() const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [](const Entry& entry) { return entry.option->count() > 0; });
  }

 private:
  struct Entry {
    CLI::Option* option = nullptr;
    std::string path;
    std::string text;
    std::vector<std::string> list;
    bool on = false;
    std::function<void(Message&, const Entry&)> set;
  };

  std::deque<Entry> entries_;  // a deque: CLI11 holds pointers into the entries
};

// The admin API takes top-level fields in an update mask only: "health_check.timeout" becomes
// "health_check" (once), so the request must carry that whole field (see copyFields).
inline void collapseToTopLevel(google::protobuf::FieldMask& mask) {
  google::protobuf::FieldMask collapsed;
  for (const std::string& path : mask.paths()) {
    const std::string field = path.substr(0, path.find('.'));
    const auto& done = collapsed.paths();
    if (std::find(done.begin(), done.end(), field) == done.end()) collapsed.add_paths(field);
  }
  mask = std::move(collapsed);
}

// Copies the message fields named in `fields` that are set in `from` into `to`: the current
// value that flags then change part of.
template <typename Message>
void copyFields(const Message& from, const std::vector<std::string>& fields, Message& to) {
  const google::protobuf::Reflection* reflection = Message::GetReflection();
  for (const std::string& name : fields) {
    const google::protobuf::FieldDescriptor* field = Message::descriptor()->FindFieldByName(name);
    if (field == nullptr || !reflection->HasField(from, field)) continue;
    reflection->MutableMessage(&to, field)->CopyFrom(reflection->GetMessage(from, field));
  }
}

}  // namespace evgate::admin::cli
