// completion bash: a bash completion script for the command tree, generated from the tree itself
// so that it cannot fall behind the commands.

#include <iostream>
#include <string>
#include <vector>

#include "admin/cli/commands.h"

namespace evgate::admin::cli {
namespace {

struct Level {
  std::string path;      // "", "/listener", "/listener/create", ...
  std::string commands;  // its subcommands, space-separated
  std::string flags;     // its flags, with those of its option groups
};

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  return b.empty() ? a : a + " " + b;
}

// `withHelp` false leaves out -h/--help, which every level has of its own.
std::string flagsOf(const CLI::App& app, bool withHelp = true) {
  std::string words;
  for (const CLI::Option* option : app.get_options()) {
    if (!withHelp && option == app.get_help_ptr()) continue;
    for (const std::string& name : option->get_lnames()) words.append(" --").append(name);
    for (const std::string& name : option->get_snames()) words.append(" -").append(name);
  }
  return words.empty() ? words : words.substr(1);
}

void collect(const CLI::App& app, const std::string& path, std::vector<Level>& out) {
  Level level{path, "", flagsOf(app)};
  std::vector<const CLI::App*> children;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name().empty()) {
      level.flags = join(level.flags, flagsOf(*sub));  // an option group
    } else {
      level.commands = join(level.commands, sub->get_name());
      children.push_back(sub);
    }
  }
  out.push_back(level);
  for (const CLI::App* child : children) collect(*child, path + "/" + child->get_name(), out);
}

std::string bashScript(const CLI::App& root) {
  std::vector<Level> levels;
  collect(root, "", levels);
  const std::string globals = flagsOf(root, false);
  std::string script =
      "# bash completion for evgatectl; load it with: source <(evgatectl completion bash)\n"
      "_evgatectl() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} path=\"\" word i words\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    word=${COMP_WORDS[i]}\n"
      "    case \"$path/$word\" in\n";
  for (size_t i = 1; i < levels.size(); ++i) {
    script += "      " + levels[i].path + ") path=\"$path/$word\" ;;\n";
  }
  script +=
      "    esac\n"
      "  done\n"
      "  case \"$path\" in\n";
  for (const Level& level : levels) {
    // Global flags go before or after the command, so every level offers them.
    const std::string words =
        join(level.commands, level.path.empty() ? globals : join(level.flags, globals));
    script += "    \"" + level.path + "\") words=\"" + words + "\" ;;\n";
  }
  script +=
      "  esac\n"
      "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
      "}\n"
      "complete -F _evgatectl evgatectl\n";
  return script;
}

}  // namespace

void addCompletionCommand(CLI::App& root, Action& action) {
  CLI::App* noun = root.add_subcommand("completion", "Print a shell completion script");
  noun->require_subcommand(1);
  CLI::App* bash =
      noun->add_subcommand("bash",
                           "Bash: source <(evgatectl completion bash), or save it under "
                           "/etc/bash_completion.d/");
  const CLI::App* tree = &root;
  onRun(bash, action, [tree](Session&) { std::cout << bashScript(*tree); });
}

}  // namespace evgate::admin::cli
