#!/usr/bin/env bash
# Where the relay's work goes, in instructions (which do not drift with the machine's load, unlike
# seconds): evgate (release build, 1 worker) runs under valgrind's callgrind while evgate-loadgen
# drives one workload at a time through it to a loadgen echo backend, all on loopback. Counters
# are zeroed before and dumped after each workload, so start-up is not counted; the totals include
# every thread of the process (the idle admin and metrics threads add a little).
#
#   scripts/profile-relay.sh                 # about 1 minute
#   PROFILE_DURATION=10 scripts/profile-relay.sh
#
# Prints, per workload: instructions per unit (connection; 64-byte round trip; MiB relayed) and
# the functions with the most instructions of their own. The callgrind files stay in
# build/release/profile-relay/ for callgrind_annotate or kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${PROFILE_OUT:-$PWD/build/release/profile-relay}
duration=${PROFILE_DURATION:-5}
backend_port=${PROFILE_BACKEND_PORT:-19100}
listener_port=${PROFILE_LISTENER_PORT:-19101}
loadgen=$PWD/build/release/bench/loadgen/evgate-loadgen
evgate=$PWD/build/release/daemon/evgate

command -v valgrind >/dev/null || { echo "profile-relay: valgrind is missing" >&2; exit 1; }
cmake --preset release >/dev/null
cmake --build --preset release --target evgate evgate-loadgen >/dev/null
rm -rf "$out"
mkdir -p "$out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$loadgen" serve --listen "127.0.0.1:$backend_port" --duration 3600 >"$out/backend.log" 2>&1 &
pids+=($!)

cat >"$out/evgate.yaml" <<EOF
workers: 1
config_watch: false
access_log: { mode: off }
log: { level: warn }
admin: { address: 127.0.0.1:0 }
metrics: { address: 127.0.0.1:0 }
clusters:
  - { name: echo, endpoints: [ "127.0.0.1:$backend_port" ] }
listeners:
  - { name: relay, bind: "127.0.0.1:$listener_port", cluster: echo }
EOF

valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" --dump-instr=no \
  "$evgate" --config "$out/evgate.yaml" >"$out/evgate.log" 2>&1 &
valgrind_pid=$!
pids+=("$valgrind_pid")

# Ready when the listener accepts (evgate under valgrind takes a few seconds to start).
for _ in $(seq 1 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$listener_port") 2>/dev/null; then break; fi
  sleep 0.1
done

# Runs one workload between a zero and a dump; prints loadgen's JSON line.
profile() {
  local name=$1
  shift
  callgrind_control -z "$valgrind_pid" >/dev/null 2>&1
  "$loadgen" "$@" --target "127.0.0.1:$listener_port" --duration "$duration" --warmup 0 \
    >"$out/$name.json"
  callgrind_control -d "$name" "$valgrind_pid" >/dev/null 2>&1
}

profile connrate connrate --connections 4
profile pingpong pingpong --connections 1
profile throughput throughput --connections 1

kill "$valgrind_pid"
wait "$valgrind_pid" 2>/dev/null || true

field() { sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" "$out/$1.json"; }
dump_of() { grep -l "^desc: Trigger: dump $1\$" "$out"/callgrind.out.* | head -1; }
total_ir() { sed -n 's/^summary: //p' "$1"; }

# The functions with the most instructions of their own in a callgrind file (callgrind_annotate
# 3.19 folds everything into the threads' start routines for these dumps, so this reads the
# format itself: a cost line after `calls=` is the call's inclusive cost, any other is self cost).
top_functions() {
  awk '
    function name(spec,   id) {
      if (match(spec, /^\([0-9]+\)/)) {
        id = substr(spec, 2, RLENGTH - 2)
        if (length(spec) > RLENGTH) names[id] = substr(spec, RLENGTH + 2)
        return names[id]
      }
      return spec
    }
    /^fn=/ { fn = name(substr($0, 4)); next }
    /^cfn=/ { name(substr($0, 5)); next }
    /^calls=/ { inclusive = 1; next }
    /^[-+*0-9]/ { if (inclusive) inclusive = 0; else self[fn] += $2; next }
    END { for (f in self) printf "%d\t%s\n", self[f], f }
  ' "$1" | sort -rn |
    awk -v total="$3" -v n="${2:-15}" -F'\t' \
      'NR <= n { printf "%6.2f%%  %s\n", 100 * $1 / total, substr($2, 1, 110) }'
}

report() {
  local name=$1 units=$2 unit=$3
  local file ir
  file=$(dump_of "$name")
  ir=$(total_ir "$file")
  echo "== $name: $ir instructions, $units $unit"
  awk -v ir="$ir" -v n="$units" -v u="$unit" \
    'BEGIN { if (n > 0) printf "   %.0f instructions per %s\n", ir / n, u }'
  top_functions "$file" 15 "$ir" | sed 's/^/   /'
}

report connrate "$(field connrate completed)" "connection (connect, 64 B echo, close)"
report pingpong "$(field pingpong round_trips)" "64-byte round trip"
rx=$(field throughput rx_bytes)
tx=$(field throughput tx_bytes)
report throughput "$(awk -v a="$rx" -v b="$tx" 'BEGIN { printf "%.1f", (a + b) / 2 / 1048576 }')" \
  "MiB relayed each way"
