#!/usr/bin/env bash
# Runs the fuzz targets (tests/fuzz) for longer than the test suite does, on demand.
#
#   scripts/fuzz.sh TARGET [SECONDS]   one target (config, proxy_protocol, admin_request, buffer,
#                                      units) for SECONDS (default 300)
#   scripts/fuzz.sh all [SECONDS]      every target, one after another, SECONDS each
#
# Builds the fuzz preset first. Each target keeps a working corpus in build/fuzz/corpus/TARGET
# that grows from run to run; the seeds in tests/fuzz/corpus/TARGET are read, never written.
# A crash leaves its input in build/fuzz/artifacts/TARGET/ and stops the script: turn the input
# into a regression test and add it to the seeds (docs/reliability.md).
# Extra libFuzzer flags go in FUZZ_FLAGS, e.g. FUZZ_FLAGS="-jobs=2 -workers=2".
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(config proxy_protocol admin_request buffer units)
usage() {
  local IFS='|'
  echo "usage: scripts/fuzz.sh {${targets[*]}|all} [SECONDS]" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
seconds=${2:-300}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "scripts/fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi
if [ "$1" = all ]; then
  selected=("${targets[@]}")
elif [[ " ${targets[*]} " == *" $1 "* ]]; then
  selected=("$1")
else
  echo "scripts/fuzz.sh: unknown target '$1'" >&2
  usage
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

build=build/fuzz
for target in "${selected[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "$build/corpus/$target" "$build/artifacts/$target"
  # shellcheck disable=SC2086  # FUZZ_FLAGS is a list of flags
  "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$target/" ${FUZZ_FLAGS:-} \
    "$build/corpus/$target" "tests/fuzz/corpus/$target"
done
