#!/usr/bin/env bash
# Sets up, builds and runs every test: `scripts/test.sh [PRESET]` (release by default; also
# debug, asan, tsan). Extra arguments after the preset go to ctest, e.g. `-L reactor`.
set -euo pipefail
cd "$(dirname "$0")/.."

preset=${1:-release}
shift || true

scripts/setup.sh
cmake --preset "$preset"
cmake --build --preset "$preset"
ctest --preset "$preset" -j "$(nproc)" "$@"
