#!/usr/bin/env bash
# Runs the soak test (tests/integration/soak_test.cc) for real: mixed traffic, admin churn and
# upstream faults against the evgate daemon for SECONDS (default 600), sampling its resident
# memory, fds and round-trip latency every 10 s, and failing if any of them grows.
#
#   scripts/soak.sh [SECONDS]
#
# Builds the release preset's daemon and test first. Loopback only; stops by itself. The suite
# (scripts/test.sh) runs the same test as a few seconds of smoke, without the growth verdict.
# The figures of a run are in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]] || [ "$seconds" -lt 20 ]; then
  echo "scripts/soak.sh: SECONDS must be an integer of at least 20, got '$seconds'" >&2
  exit 2
fi

scripts/setup.sh
cmake --preset release
cmake --build --preset release --target evgate integration_soak_test
EVGATE_SOAK_SECONDS=$seconds build/release/tests/integration/integration_soak_test
