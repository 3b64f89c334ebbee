#!/usr/bin/env bash
# The admin benchmark of issue 7 (docs/benchmarks.md, "Admin: listener creation and 10,000
# listeners"): a fresh evgate on its defaults (workers: one per CPU) and an echo backend; then
# evgate-admin-bench creates listeners one by one over the admin API and, for each, relays one
# client through it; it prints create and create->echo latency per window of listeners, the
# elapsed time, the daemon's RSS and fds, and the size and time of a /metrics scrape.
#
#   bench/admin/run.sh                                  # 10,000 listeners
#   BENCH_LISTENERS=2000 BENCH_STATE_FILE=1 bench/admin/run.sh
#
# Runs inside a private network namespace (`unshare -n`, loopback only, wide port range), like
# scripts/bench-relay.sh; the host's sysctls are never touched. Needs root and a release build
# (`cmake --preset release && cmake --build --preset release --target evgate evgate-echo
# evgate-admin-bench`).
#
# Environment (defaults in brackets):
#   BENCH_BUILD [build/release]  the build directory
#   BENCH_LISTENERS [10000]      listeners to create
#   BENCH_WINDOW [1000]          listeners per printed row
#   BENCH_WORKERS [0]            evgate workers (0: one per CPU, the default)
#   BENCH_STATE_FILE [0]         1: run with a state_file (every create is written durably)
#   BENCH_DELETE [0]             1: then delete them one by one and time that too
#   BENCH_NO_TRAFFIC [0]         1: no client through the new listeners (idle listeners' scrape)
#   BENCH_LISTENER_DETAIL [full] metrics.listener_detail: full or basic
#   BENCH_CONFIG_EXTRA []        more top-level YAML lines for evgate's configuration
#   BENCH_NICE [0]               nice value for evgate, the backend and the client (-10: less
#                                disturbed by the other jobs of a shared machine)
# The configuration, the daemon's log and the results go to $BENCH_OUT [$BENCH_BUILD/bench-admin].
set -euo pipefail
cd "$(dirname "$0")/../.."

build=$(realpath "${BENCH_BUILD:-build/release}")
out=${BENCH_OUT:-$build/bench-admin}
listeners=${BENCH_LISTENERS:-10000}
window=${BENCH_WINDOW:-1000}
workers=${BENCH_WORKERS:-0}

if [ "${1:-}" = "--inside" ]; then
  ip link set lo up
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse_delay=100
  rm -rf "$out" && mkdir -p "$out"
  pids=()
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  state_line=""
  [ "${BENCH_STATE_FILE:-0}" = 1 ] && state_line="state_file: $out/state.json"
  cat >"$out/evgate.yaml" <<EOF
workers: $workers
drain_timeout: 0
config_watch: false
admin: { address: "127.0.0.1:19901" }
metrics: { address: "127.0.0.1:19902", listener_detail: ${BENCH_LISTENER_DETAIL:-full} }
access_log: { mode: "off" }
$state_line
${BENCH_CONFIG_EXTRA:-}
EOF

  run() { exec nice -n "${BENCH_NICE:-0}" "$@"; }
  (run "$build/reactor/examples/evgate-echo" --listen 127.0.0.1:19000 >/dev/null) &
  pids+=($!)
  (run "$build/daemon/evgate" --config "$out/evgate.yaml" 2>"$out/evgate.log") &
  evgate_pid=$!
  pids+=("$evgate_pid")
  for _ in $(seq 100); do
    grep -q "admin API listening" "$out/evgate.log" && break
    sleep 0.1
  done
  grep -q "admin API listening" "$out/evgate.log" || { cat "$out/evgate.log"; exit 1; }

  args=(--admin 127.0.0.1:19901 --backend 127.0.0.1:19000 --metrics 127.0.0.1:19902
        --pid "$evgate_pid" --listeners "$listeners" --window "$window")
  [ "${BENCH_DELETE:-0}" = 1 ] && args+=(--delete)
  [ "${BENCH_NO_TRAFFIC:-0}" = 1 ] && args+=(--no-traffic)
  (run "$build/bench/admin/evgate-admin-bench" "${args[@]}" --dump "$out/latencies.txt") |
    tee "$out/results.txt"
  exit "${PIPESTATUS[0]}"
fi

exec unshare -n "$0" --inside
