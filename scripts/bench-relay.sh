#!/usr/bin/env bash
# Builds (release preset) and runs the relay benchmark: evgate beside HAProxy (mode tcp) and nginx
# (stream), same worker count, same echo backend, in one run; prints absolute figures and
# evgate/haproxy and evgate/nginx ratios, and writes the table into docs/benchmarks.md
# ("## Relay: evgate vs HAProxy and nginx"). See docs/benchmarks.md.
#
#   scripts/bench-relay.sh                          # about 3 minutes
#   BENCH_ROUNDS=5 BENCH_DURATION=10 scripts/bench-relay.sh
#
# Everything runs inside a private network namespace (`unshare -n`, loopback only), where the
# port range and the TIME_WAIT reuse delay are widened (docs/benchmarks.md); the host's sysctls
# are never touched. The proxies run as plain foreground processes from generated configs.
#
# Environment (defaults in brackets):
#   BENCH_WORKERS [1]        evgate workers = HAProxy nbthread = nginx worker_processes
#   BENCH_PROXY_CPUS [1]     taskset CPU list for the proxies (one at a time is busy)
#   BENCH_LOAD_CPUS [0]      taskset CPU list for evgate-loadgen and the echo backend
#   BENCH_ROUNDS [3]         rounds of throughput/connrate/pingpong; the table shows medians
#   BENCH_DURATION [4]       seconds measured per run (after BENCH_WARMUP [0.5] s)
#   BENCH_TP_CONNS [8]       throughput connections
#   BENCH_CR_CONNS [16]      connrate concurrent loops
#   BENCH_PP_CONNS [1]       pingpong connections
#   BENCH_PP_SAME_CPU [1]    1: during pingpong, loadgen and backend run on the proxies' CPUs too
#   BENCH_IDLE_CONNS [5000]  idle connections (the relay holds two fds each; the limit is 20,000)
#   BENCH_HAPROXY_SPLICE [0] 1: HAProxy `option splice-auto` (evgate and nginx do not splice)
#   BENCH_NO_DOC [0]         1: print the table only, leave docs/benchmarks.md alone
# Raw JSON lines, configs and proxy logs go to build/release/bench-relay/.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-$PWD/build/release/bench-relay}
loadgen=$PWD/build/release/bench/loadgen/evgate-loadgen
evgate=$PWD/build/release/daemon/evgate
workers=${BENCH_WORKERS:-1}
proxy_cpus=${BENCH_PROXY_CPUS:-1}
load_cpus=${BENCH_LOAD_CPUS:-0}
rounds=${BENCH_ROUNDS:-3}
duration=${BENCH_DURATION:-4}
warmup=${BENCH_WARMUP:-0.5}
tp_conns=${BENCH_TP_CONNS:-8}
cr_conns=${BENCH_CR_CONNS:-16}
pp_conns=${BENCH_PP_CONNS:-1}
idle_conns=${BENCH_IDLE_CONNS:-5000}
splice=${BENCH_HAPROXY_SPLICE:-0}
pp_same_cpu=${BENCH_PP_SAME_CPU:-1}
pp_cpus=$load_cpus
[ "$pp_same_cpu" = 1 ] && pp_cpus=$proxy_cpus
nginx_stream_module=/usr/lib/nginx/modules/ngx_stream_module.so

# Ports inside the namespace.
port_backend=19000
declare -A port=([direct]=19000 [evgate]=19001 [haproxy]=19002 [nginx]=19003)
targets=(direct evgate haproxy nginx)

# ---------------------------------------------------------------------------------------------
# Inside the private network namespace: start everything, run every mode, write JSON lines.
if [ "${1:-}" = "--inside" ]; then
  ip link set lo up
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse_delay=100
  rm -rf "$out" && mkdir -p "$out/nginx"
  results=$out/results.jsonl
  : >"$results"

  pids=()
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  cat >"$out/evgate.yaml" <<EOF
workers: $workers
drain_timeout: 0
admin: { address: "127.0.0.1:19901" }
metrics: { address: "127.0.0.1:19902" }
log: { level: warn }
access_log: { mode: "off" }
clusters:
  - name: echo
    endpoints: [ "127.0.0.1:$port_backend" ]
listeners:
  - name: bench
    bind: 127.0.0.1:${port[evgate]}
    cluster: echo
EOF

  cat >"$out/haproxy.cfg" <<EOF
global
  nbthread $workers
  # Two fds per flow, plus two per pipe when splicing: keep both under the 20,000 fd limit.
  maxconn 9000
  maxpipes 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
$([ "$splice" = 1 ] && echo "  option splice-auto")
frontend bench
  bind 127.0.0.1:${port[haproxy]}
  default_backend echo
backend echo
  server echo 127.0.0.1:$port_backend
EOF

  cat >"$out/nginx/nginx.conf" <<EOF
load_module $nginx_stream_module;
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $out/nginx/nginx.pid;
error_log $out/nginx/error.log warn;
events { worker_connections 19000; }
stream {
  upstream echo { server 127.0.0.1:$port_backend; }
  server {
    listen 127.0.0.1:${port[nginx]};
    proxy_pass echo;
  }
}
EOF

  wait_port() {  # PORT: until a TCP connect succeeds (5 s)
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
      sleep 0.05
    done
    echo "bench-relay: nothing listens on port $1" >&2
    return 1
  }

  taskset -c "$load_cpus" "$loadgen" serve --listen "127.0.0.1:$port_backend" --duration 3600 \
    >"$out/backend.log" 2>&1 &
  pids+=($!)
  declare -A pid=([direct]=$!)
  wait_port "$port_backend"

  taskset -c "$proxy_cpus" "$evgate" --config "$out/evgate.yaml" >"$out/evgate.log" 2>&1 &
  pids+=($!)
  pid[evgate]=$!
  taskset -c "$proxy_cpus" haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
  pids+=($!)
  pid[haproxy]=$!
  taskset -c "$proxy_cpus" nginx -p "$out/nginx" -e "$out/nginx/error.log" \
    -c "$out/nginx/nginx.conf" >"$out/nginx.log" 2>&1 &
  pids+=($!)
  nginx_master=$!
  for t in evgate haproxy nginx; do wait_port "${port[$t]}"; done
  # nginx: the workers hold the flows; the master only forks them.
  pid[nginx]=$(pgrep -d ' ' -P "$nginx_master")
  echo "pids: backend ${pid[direct]}, evgate ${pid[evgate]}, haproxy ${pid[haproxy]}," \
    "nginx workers ${pid[nginx]} (master $nginx_master)"

  cpu_ticks() {  # PID...: user + system clock ticks of the processes (all threads)
    local total=0 p
    for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$total"
  }
  hz=$(getconf CLK_TCK)

  run() {  # CPUS TARGET ROUND MODE ARGS...: one loadgen run, tagged, appended to results.jsonl
    local cpus=$1 target=$2 round=$3 mode=$4
    shift 4
    local before after line start end relay_pids
    read -ra relay_pids <<<"${pid[$target]}"  # nginx: one pid per worker
    before=$(cpu_ticks "${relay_pids[@]}")
    start=$(date +%s%N)
    line=$(taskset -c "$cpus" "$loadgen" "$mode" --target "127.0.0.1:${port[$target]}" "$@")
    end=$(date +%s%N)
    after=$(cpu_ticks "${relay_pids[@]}")
    local cpu
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v ns=$((end - start)) \
      'BEGIN { printf "%.0f", 100 * t / hz / (ns / 1e9) }')
    line="{\"relay\":\"$target\",\"round\":$round,\"relay_cpu_pct\":$cpu,${line#\{}"
    echo "$line" >>"$results"
    echo "$line"
  }

  # Idle first, on fresh processes: memory freed by earlier runs would hide the growth.
  for t in "${targets[@]}"; do
    pid_args=()
    for p in ${pid[$t]}; do pid_args+=(--pid "$p"); done
    run "$load_cpus" "$t" 0 idle --connections "$idle_conns" --hold 1 "${pid_args[@]}"
  done
  common=(--duration "$duration" --warmup "$warmup")
  for r in $(seq "$rounds"); do
    echo "== round $r of $rounds"
    for t in "${targets[@]}"; do run "$load_cpus" "$t" "$r" throughput --connections "$tp_conns" "${common[@]}"; done
    for t in "${targets[@]}"; do run "$load_cpus" "$t" "$r" connrate --connections "$cr_conns" "${common[@]}"; done
    # Ping-pong: the loadgen and the backend join the proxies' CPU, so that a round trip is not
    # four wake-ups across vCPUs (30-35 us each on this VM, more than the relay's own work).
    [ "$pp_same_cpu" = 1 ] && taskset -a -p -c "$proxy_cpus" "${pid[direct]}" >/dev/null
    for t in "${targets[@]}"; do run "$pp_cpus" "$t" "$r" pingpong --connections "$pp_conns" "${common[@]}"; done
    [ "$pp_same_cpu" = 1 ] && taskset -a -p -c "$load_cpus" "${pid[direct]}" >/dev/null
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: setup, build, run the namespace part, then the table.
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target evgate evgate-loadgen

if [ "$(nproc)" -lt 2 ]; then
  echo "bench-relay: fewer than 2 CPUs; proxies and load share CPU 0" >&2
  proxy_cpus=0
  load_cpus=0
fi
export BENCH_OUT=$out BENCH_PROXY_CPUS=$proxy_cpus BENCH_LOAD_CPUS=$load_cpus

start=$SECONDS
echo "== relay benchmark: W=$workers, proxies on CPU $proxy_cpus, load + backend on CPU $load_cpus," \
  "$rounds rounds of ${duration}s"
unshare -n "$0" --inside
elapsed=$((SECONDS - start))
echo "== ran in $elapsed s"
echo

python3 - "$out/results.jsonl" "$workers" "$proxy_cpus" "$load_cpus" "$rounds" "$duration" \
  "$elapsed" "$splice" "${BENCH_NO_DOC:-0}" "$pp_cpus" <<'EOF'
"""Medians over the rounds, one row per figure; ratios evgate/haproxy and evgate/nginx."""
import datetime
import json
import re
import statistics
import sys

path, workers, proxy_cpus, load_cpus, rounds, duration, elapsed, splice, no_doc, pp_cpus = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]

def median(target, mode, key):
    values = [r[key] for r in runs if r["relay"] == target and r["mode"] == mode]
    return statistics.median(values) if values else None

conns = {r["mode"]: r["connections"] for r in runs}
rows = [  # label, mode, key, format, better
    (f"throughput, {conns.get('throughput')} conns (Gbit/s echoed)", "throughput", "gbit_s", "{:.2f}", "higher"),
    ("  relay CPU during throughput (%)", "throughput", "relay_cpu_pct", "{:.0f}", "info"),
    (f"connection rate, {conns.get('connrate')} loops (conn/s)", "connrate", "conn_s", "{:,.0f}", "higher"),
    ("  relay CPU during connrate (%)", "connrate", "relay_cpu_pct", "{:.0f}", "info"),
    (f"ping-pong, {conns.get('pingpong')} conn (round trips/s)", "pingpong", "rtt_s", "{:,.0f}", "higher"),
    ("  ping-pong p50 (µs)", "pingpong", "p50_us", "{:.1f}", "lower"),
    ("  ping-pong p99 (µs)", "pingpong", "p99_us", "{:.1f}", "lower"),
    ("  ping-pong p99.9 (µs)", "pingpong", "p999_us", "{:.1f}", "lower"),
    (f"idle flows, {conns.get('idle')} (RSS bytes per flow)", "idle", "rss_bytes_per_conn", "{:,.0f}", "lower"),
]
header = "| figure | direct | evgate | haproxy | nginx | evgate/haproxy | evgate/nginx |"
lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
for label, mode, key, fmt, better in rows:
    cells = []
    values = {}
    for target in ("direct", "evgate", "haproxy", "nginx"):
        v = median(target, mode, key)
        values[target] = v
        cells.append("–" if v is None else fmt.format(v))
    if mode == "idle":
        cells[0] = "(backend)" if values["direct"] is not None else "–"
    ratios = []
    for other in ("haproxy", "nginx"):
        a, b = values["evgate"], values[other]
        ratios.append("–" if a is None or not b or better == "info" else f"{a / b:.2f}")
    lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
table = "\n".join(lines)
print(table)
print("\nratio = evgate / other: above 1 is better for throughput, rates; below 1 is better for"
      " latency and memory")

if no_doc == "1":
    sys.exit(0)
today = datetime.date.today().isoformat()
block = (f"<!-- bench-relay:table:begin (written by scripts/bench-relay.sh) -->\n"
         f"`scripts/bench-relay.sh`, {today}: W={workers} worker(s), proxies on CPU {proxy_cpus}, "
         f"loadgen and backend on CPU {load_cpus} (ping-pong: all on CPU {pp_cpus}), medians of {rounds} rounds of {duration} s "
         f"(idle: one run on fresh processes); HAProxy splice {'on' if splice == '1' else 'off'}; "
         f"the script ran in {elapsed} s.\n\n{table}\n"
         f"<!-- bench-relay:table:end -->")
doc_path = "docs/benchmarks.md"
doc = open(doc_path).read()
pattern = re.compile(r"<!-- bench-relay:table:begin.*?<!-- bench-relay:table:end -->", re.S)
if pattern.search(doc):
    doc = pattern.sub(lambda _: block, doc)
else:
    doc = doc.rstrip("\n") + "\n\n## Relay: evgate vs HAProxy and nginx\n\n" + block + "\n"
open(doc_path, "w").write(doc)
print(f"\nwrote the table into {doc_path}")
EOF
