#pragma once

// Text -> Config: parses and validates a YAML configuration file (docs/configuration.md), and
// reports every problem it finds, each pointing at the offending line and column, so that a user
// fixes a file in one pass. Pure functions: safe from any thread, never throw.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/config.h"

namespace evgate::gateway {

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the problem has no position (the file cannot be read)
  int column = 0;  // 1-based; 0 with line 0
  std::string message;

  // "file:line:col: message", or "file: message" when line is 0.
  std::string toString() const;

  friend bool operator==(const ConfigError& a, const ConfigError& b) = default;
};

struct ConfigResult {
  std::optional<Config> config;     // set iff errors is empty
  std::vector<ConfigError> errors;  // in file order (line, then column)

  bool ok() const { return config.has_value(); }
};

// Parses `yamlText`; `fileName` only labels the errors. An empty document (nothing but comments
// or whitespace) is the all-defaults Config. A YAML syntax error yields exactly one error at the
// position yaml-cpp reports; otherwise every unknown key, wrong type, bad value, duplicate name
// and dangling reference is reported. A config with any error yields no Config.
ConfigResult parseConfig(std::string_view yamlText, std::string_view fileName);

// Reads all of `path` into `text`. On failure returns one error with line 0:
// "path: cannot read file: No such file or directory".
std::optional<ConfigError> readConfigFile(const std::string& path, std::string& text);

// Reads `path` and parses it. A file that cannot be read yields one error with line 0:
// "path: cannot read file: No such file or directory".
ConfigResult loadConfigFile(const std::string& path);

}  // namespace evgate::gateway
