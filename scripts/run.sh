#!/usr/bin/env bash
# Sets up, builds (release) and starts evgate. Without arguments it runs on its embedded default
# configuration; arguments go to evgate (e.g. --config docs/examples/local.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target evgate evgate-echo
exec build/release/daemon/evgate "$@"
