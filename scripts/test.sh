#!/usr/bin/env bash
# Sets up, builds and runs every test through ctest.
#
#   scripts/test.sh                  release, then asan (ASan+UBSan), then tsan, then fuzz (every
#                                    fuzz target for 20 s, clang-14): what CI runs
#   scripts/test.sh PRESET [ARGS]    one preset (release, debug, asan, tsan, fuzz); ARGS go to
#                                    ctest, e.g. scripts/test.sh debug -L reactor
#
# Stops at the first preset with a failing build or test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

run_preset() {
  local preset=$1
  shift
  echo "== test preset: $preset"
  cmake --preset "$preset"
  cmake --build --preset "$preset"
  ctest --preset "$preset" -j "$(nproc)" "$@"
}

if [ $# -eq 0 ]; then
  for preset in release asan tsan fuzz; do
    run_preset "$preset"
  done
else
  run_preset "$@"
fi
