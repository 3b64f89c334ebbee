#!/usr/bin/env bash
# listener_sockets: shared against per_worker on one busy listener (docs/benchmarks.md, "Admin:
# listener creation and 10,000 listeners"): the same evgate (two workers by default), the same
# echo backend and load, one mode after the other, for a few rounds. Prints one line per run:
# connections/s (connrate: connect, 64 bytes each way, close) or Gbit/s (throughput), and the
# gateway's CPU per connection or per GB, from evgate-loadgen's JSON.
#
#   bench/admin/sockets.sh                    # about a minute
#   BENCH_ROUNDS=5 bench/admin/sockets.sh
#
# Runs inside a private network namespace (`unshare -n`, loopback only, wide port range) like
# scripts/bench-relay.sh; needs root and a release build with evgate, evgate-echo (the backend)
# and evgate-loadgen.
#
# Environment (defaults in brackets):
#   BENCH_BUILD [build/release]  the build directory
#   BENCH_WORKERS [2]            evgate workers
#   BENCH_ROUNDS [3]             rounds of each mode
#   BENCH_DURATION [4]           seconds per run
set -euo pipefail
cd "$(dirname "$0")/../.."

build=$(realpath "${BENCH_BUILD:-build/release}")
out=${BENCH_OUT:-$build/bench-admin-sockets}
workers=${BENCH_WORKERS:-2}
rounds=${BENCH_ROUNDS:-3}
duration=${BENCH_DURATION:-4}
loadgen=$build/bench/loadgen/evgate-loadgen

if [ "${1:-}" = "--inside" ]; then
  ip link set lo up
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse_delay=100
  rm -rf "$out" && mkdir -p "$out"
  pids=()
  # shellcheck disable=SC2317  # called by the trap
  evgate=""
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    for pid in "${pids[@]}" $evgate; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  "$build/reactor/examples/evgate-echo" --listen 127.0.0.1:19000 >/dev/null &
  pids+=($!)
  for round in $(seq "$rounds"); do
    for mode in shared per_worker; do
      cat >"$out/evgate-$mode.yaml" <<EOF
workers: $workers
listener_sockets: $mode
drain_timeout: 0
config_watch: false
admin: { address: "127.0.0.1:19901" }
metrics: { address: "127.0.0.1:19902" }
log: { level: warn }
access_log: { mode: "off" }
clusters:
  - name: echo
    endpoints: [ "127.0.0.1:19000" ]
listeners:
  - name: bench
    bind: 127.0.0.1:19001
    cluster: echo
EOF
      "$build/daemon/evgate" --config "$out/evgate-$mode.yaml" 2>"$out/evgate-$mode.log" &
      evgate=$!
      for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/19001) 2>/dev/null && break
        sleep 0.05
      done
      for load in connrate throughput; do
        if ! json=$("$loadgen" "$load" --target 127.0.0.1:19001 --duration "$duration" \
          --warmup 0.5 --pid "$evgate"); then
          echo "round $round $mode $load: evgate-loadgen failed: $json"
          continue
        fi
        echo "$json" >>"$out/results.jsonl"
        python3 - "$round" "$mode" "$load" "$json" <<'PY'
import json, sys
round_, mode, load, raw = sys.argv[1:5]
r = json.loads(raw)
if load == "connrate":
    print(f"round {round_} {mode:10} connrate   {r['conn_s']:>10.0f} conn/s"
          f"   evgate {r.get('cpu_us_per_conn', 0):6.1f} us CPU/conn")
else:
    print(f"round {round_} {mode:10} throughput {r['gbit_s']:>10.2f} Gbit/s"
          f"   evgate {r.get('cpu_ms_per_gb', 0):6.1f} ms CPU/GB")
PY
      done
      kill "$evgate"
      wait "$evgate" 2>/dev/null || true
      evgate=""
    done
  done
  exit 0
fi

exec unshare -n "$0" --inside
