#!/usr/bin/env bash
# Where the relay's work goes, in instructions (which do not drift with the machine's load, unlike
# seconds): evgate (release build, 1 worker) runs under valgrind's callgrind while evgate-loadgen
# drives one workload at a time through it to a loadgen echo backend, all on loopback, ports found
# at run time. Counters are zeroed before and dumped after each run, so start-up is not counted;
# the totals include every thread of the process (the idle admin and metrics threads add 0.1 to
# 0.2 %). Each workload runs once uncounted, then 3 times, and the cheapest run counts.
# scripts/relay_instructions.py does the work; the suite's perf_instructions test (tests/perf,
# `ctest -L perf`) runs the same measurement against a committed baseline.
#
#   scripts/profile-relay.sh                    # about 35 s once built
#   PROFILE_DURATION=5 scripts/profile-relay.sh  # seconds per run (default 2)
#   scripts/profile-relay.sh --update-baseline  # rewrites tests/perf/instructions_baseline.json
#
# Prints, per workload: instructions per unit (connection; 64-byte round trip; MiB relayed each
# way) and the functions of the cheapest run with the most instructions of their own, then a
# table against the baseline. The callgrind files stay in build/release/profile-relay/ for
# callgrind_annotate or kcachegrind. --update-baseline measures exactly as the test does (0.5 s
# per run; PROFILE_DURATION is ignored) and writes the result with the date and commit; commit
# the file.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${PROFILE_OUT:-$PWD/build/release/profile-relay}
duration=${PROFILE_DURATION:-2}
baseline=tests/perf/instructions_baseline.json

command -v valgrind >/dev/null || { echo "profile-relay: valgrind is missing" >&2; exit 1; }
cmake --preset release >/dev/null
if ! build_log=$(cmake --build --preset release --target evgate evgate-loadgen 2>&1); then
  echo "$build_log" >&2
  exit 1
fi

measure=(/usr/bin/python3 scripts/relay_instructions.py --evgate build/release/daemon/evgate
         --loadgen build/release/bench/loadgen/evgate-loadgen --out "$out" --baseline "$baseline")
case "${1:-}" in
  --update-baseline) exec "${measure[@]}" --write-baseline ;;
  "") exec "${measure[@]}" --duration "$duration" --top 15 ;;
  *) echo "usage: scripts/profile-relay.sh [--update-baseline]" >&2; exit 2 ;;
esac
