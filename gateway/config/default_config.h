#pragma once

namespace evgate::gateway {

// The configuration `evgate` runs with when given no --config file: admin API and metrics on
// loopback, one worker per CPU, no listeners or clusters (add them through the admin API).
// Every value equals the default in config.h (the one source of truth), so it parses to
// Config{}; the keys are spelled out so that a reader sees what can be set.
const char* defaultConfigYaml();

}  // namespace evgate::gateway
