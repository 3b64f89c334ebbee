#!/usr/bin/env bash
# Sets up, builds (release) and starts evgate's demo on its embedded defaults. Arguments are passed
# to the program. Until the gateway exists this is the reactor's echo server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target evgate-echo
exec build/release/reactor/examples/evgate-echo "$@"
