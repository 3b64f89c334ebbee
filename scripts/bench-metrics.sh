#!/usr/bin/env bash
# Builds (release preset) and runs the metrics benchmark: evgate's relay with nobody scraping
# /metrics and with /metrics scraped every 100 ms, side by side in one run (the same process,
# the scraper switched on and off, the order alternating per round); prints the medians and the
# scraped/unscraped ratio of every figure, and writes the table into docs/benchmarks.md
# ("## Metrics: what counting and scraping cost"). See docs/benchmarks.md.
#
#   scripts/bench-metrics.sh                        # about 2.5 minutes
#   BENCH_ROUNDS=9 scripts/bench-metrics.sh         # more rounds on a busy machine
#   BENCH_PRE=1 scripts/bench-metrics.sh            # also the relay of the commit before the
#                                                   # metrics (a second build: ~5 min the first time)
#
# Everything runs inside a private network namespace (`unshare -n`, loopback only), where the
# port range and the TIME_WAIT reuse delay are widened as in scripts/bench-relay.sh; the host's
# sysctls are never touched. The loadgen modes and their pinning are bench-relay's.
#
# Environment (defaults in brackets):
#   BENCH_WORKERS [1]          evgate workers
#   BENCH_PROXY_CPUS [1]       taskset CPU list for evgate (its workers and its metrics thread)
#   BENCH_LOAD_CPUS [0]        taskset CPU list for evgate-loadgen and the echo backend
#   BENCH_SCRAPE_CPUS [=LOAD]  taskset CPU list for the scraper (a bash loop)
#   BENCH_SCRAPE_INTERVAL [0.1] seconds between scrape starts (Prometheus's usual is 15)
#   BENCH_ROUNDS [5]           rounds of throughput/connrate/pingpong; the table shows medians
#   BENCH_DURATION [4]         seconds measured per run (after BENCH_WARMUP [0.5] s)
#   BENCH_TP_CONNS [8]         throughput connections
#   BENCH_CR_CONNS [16]        connrate concurrent loops
#   BENCH_PP_CONNS [1]         pingpong connections
#   BENCH_PP_SAME_CPU [1]      1: during pingpong, loadgen and backend run on evgate's CPUs too
#   BENCH_EXTRA_LISTENERS [0]  idle listeners (each with a cluster) added to make scrapes bigger
#   BENCH_PRE [0]              1: also run the relay built from BENCH_PRE_COMMIT [3ea17bb^], the
#                              commit before the metrics, built in build/bench-metrics-pre/
#   BENCH_NO_DOC [0]           1: print the table only, leave docs/benchmarks.md alone
# Raw JSON lines, configs, logs and the scrape logs go to build/release/bench-metrics/.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-$PWD/build/release/bench-metrics}
loadgen=$PWD/build/release/bench/loadgen/evgate-loadgen
evgate=$PWD/build/release/daemon/evgate
pre=${BENCH_PRE:-0}
pre_commit=${BENCH_PRE_COMMIT:-3ea17bb^}
pre_dir=$PWD/build/bench-metrics-pre
evgate_pre=$pre_dir/build/daemon/evgate
workers=${BENCH_WORKERS:-1}
proxy_cpus=${BENCH_PROXY_CPUS:-1}
load_cpus=${BENCH_LOAD_CPUS:-0}
scrape_cpus=${BENCH_SCRAPE_CPUS:-$load_cpus}
interval=${BENCH_SCRAPE_INTERVAL:-0.1}
rounds=${BENCH_ROUNDS:-5}
duration=${BENCH_DURATION:-4}
warmup=${BENCH_WARMUP:-0.5}
tp_conns=${BENCH_TP_CONNS:-8}
cr_conns=${BENCH_CR_CONNS:-16}
pp_conns=${BENCH_PP_CONNS:-1}
pp_same_cpu=${BENCH_PP_SAME_CPU:-1}
extra_listeners=${BENCH_EXTRA_LISTENERS:-0}
pp_cpus=$load_cpus
[ "$pp_same_cpu" = 1 ] && pp_cpus=$proxy_cpus

# Ports inside the namespace. "unscraped" and "scraped" are the same evgate process.
port_backend=19000
declare -A port=([pre]=19011 [unscraped]=19001 [scraped]=19001)
port_metrics=19902

# ---------------------------------------------------------------------------------------------
# Inside the private network namespace: start everything, run every mode, write JSON lines.
if [ "${1:-}" = "--inside" ]; then
  ip link set lo up
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse_delay=100
  rm -rf "$out" && mkdir -p "$out"
  results=$out/results.jsonl
  : >"$results"

  pids=()
  scraper=
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  write_config() {  # FILE LISTEN_PORT ADMIN_PORT METRICS_PORT EXTRA_LISTENERS_BASE_PORT
    {
      cat <<EOF
workers: $workers
drain_timeout: 0
admin: { address: "127.0.0.1:$3" }
metrics: { address: "127.0.0.1:$4" }
log: { level: warn }
access_log: { mode: "off" }
clusters:
  - name: echo
    endpoints: [ "127.0.0.1:$port_backend" ]
EOF
      for i in $(seq "$extra_listeners"); do
        echo "  - { name: extra-$i, endpoints: [ \"127.0.0.1:$port_backend\" ] }"
      done
      cat <<EOF
listeners:
  - name: bench
    bind: 127.0.0.1:$2
    cluster: echo
EOF
      for i in $(seq "$extra_listeners"); do
        echo "  - { name: extra-$i, bind: \"127.0.0.1:$(($5 + i))\", cluster: extra-$i }"
      done
    } >"$1"
  }
  write_config "$out/evgate.yaml" "${port[unscraped]}" 19901 "$port_metrics" 20000
  write_config "$out/evgate-pre.yaml" "${port[pre]}" 19911 19912 21000

  wait_port() {  # PORT: until a TCP connect succeeds (5 s)
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
      sleep 0.05
    done
    echo "bench-metrics: nothing listens on port $1" >&2
    return 1
  }

  taskset -c "$load_cpus" "$loadgen" serve --listen "127.0.0.1:$port_backend" --duration 3600 \
    >"$out/backend.log" 2>&1 &
  pids+=($!)
  backend=$!
  wait_port "$port_backend"

  taskset -c "$proxy_cpus" "$evgate" --config "$out/evgate.yaml" >"$out/evgate.log" 2>&1 &
  pids+=($!)
  declare -A pid=([unscraped]=$! [scraped]=$!)
  variants=(unscraped scraped)
  wait_port "${port[unscraped]}"
  wait_port "$port_metrics"
  if [ "$pre" = 1 ]; then
    taskset -c "$proxy_cpus" "$evgate_pre" --config "$out/evgate-pre.yaml" \
      >"$out/evgate-pre.log" 2>&1 &
    pids+=($!)
    pid[pre]=$!
    variants=(pre unscraped scraped)
    wait_port "${port[pre]}"
  fi
  echo "pids: backend $backend, evgate ${pid[unscraped]}, evgate before the metrics ${pid[pre]:--}"

  # The scraper: GET /metrics on a fresh connection (the server answers one request per
  # connection) every `interval` seconds, timed from the start of the previous scrape. Bash
  # builtins only, so that a scrape forks nothing and costs the scraper's CPU about half a
  # millisecond: /dev/tcp, `read -N` (which reads a socket in large blocks) and, to sleep, a
  # `read -t` on a FIFO nobody writes to. curl is not among scripts/setup.sh's packages.
  mkfifo "$out/sleep.fifo"
  scrape_once() {  # LOG: one scrape; appends "MICROSECONDS BYTES STATUS-LINE" to LOG
    local start end body='' chunk='' status=failed
    start=${EPOCHREALTIME/./}
    if {
      printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
      while IFS= read -r -d '' -N 65536 -u 3 chunk; do body+=$chunk; done
      body+=$chunk
    } 3<>"/dev/tcp/127.0.0.1/$port_metrics" 2>/dev/null; then :; fi
    end=${EPOCHREALTIME/./}
    [ -n "$body" ] && status=${body%%$'\r'*}
    printf '%d %d %s\n' "$((end - start))" "${#body}" "$status" >>"$1"
  }
  interval_us=$(awk -v s="$interval" 'BEGIN { printf "%d", s * 1e6 }')
  scrape_loop() {  # LOG: scrapes until killed
    local next now wait_us seconds sleep_fd
    exec {sleep_fd}<>"$out/sleep.fifo"
    next=${EPOCHREALTIME/./}
    while :; do
      scrape_once "$1"
      next=$((next + interval_us))
      now=${EPOCHREALTIME/./}
      wait_us=$((next - now))
      if [ "$wait_us" -le 0 ]; then
        next=$now  # a scrape took longer than the interval: start the next one now
        continue
      fi
      printf -v seconds '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000))
      read -r -t "$seconds" -u "$sleep_fd" _ || true
    done
  }

  scrape_once "$out/check.log"
  read -r _ scrape_bytes scrape_status <"$out/check.log"
  if [[ "$scrape_status" != HTTP/1.[01]\ 200* ]]; then
    echo "bench-metrics: GET /metrics did not answer 200: $scrape_status" >&2
    exit 1
  fi
  echo "/metrics answers 200 with $scrape_bytes bytes (headers included)"

  # PID: CPU time of the process's threads in ns (schedstat: finer than /proc/PID/stat's clock
  # ticks, which cannot show a scrape's cost). %.0f: mawk's %d stops at 2^31.
  cpu_ns() {
    cat "/proc/$1/task/"*/schedstat | awk '{ t += $1 } END { printf "%.0f", t }'
  }

  # One run, tagged, appended to results.jsonl: a loadgen mode, or "idle" (no load for
  # BENCH_DURATION s: what the scrapes alone cost evgate).
  run() {  # CPUS VARIANT ROUND MODE ARGS...
    local cpus=$1 variant=$2 round=$3 mode=$4
    shift 4
    local before after line start end cpu scrape_log=$out/scrapes-$mode-$round.log
    if [ "$variant" = scraped ]; then
      : >"$scrape_log"
      scrape_loop "$scrape_log" &
      scraper=$!
      taskset -a -p -c "$scrape_cpus" "$scraper" >/dev/null
    fi
    before=$(cpu_ns "${pid[$variant]}")
    start=$(date +%s%N)
    if [ "$mode" = idle ]; then
      sleep "$duration"
      line="{\"mode\":\"idle\",\"seconds\":$duration}"
    else
      line=$(taskset -c "$cpus" "$loadgen" "$mode" --target "127.0.0.1:${port[$variant]}" "$@")
    fi
    end=$(date +%s%N)
    after=$(cpu_ns "${pid[$variant]}")
    local extra=
    if [ "$variant" = scraped ]; then
      kill "$scraper"
      wait "$scraper" 2>/dev/null || true
      scraper=
      # Scrapes made, how many did not answer 200, the median scrape time (µs) and size.
      extra=$(sort -n "$scrape_log" | awk '
        { t[NR] = $1; bytes = $2; if ($4 != "200") bad++ }
        END { printf "\"scrapes\":%d,\"scrapes_failed\":%d,\"scrape_p50_us\":%d,\"scrape_bytes\":%d,",
              NR, bad, NR ? t[int((NR + 1) / 2)] : 0, bytes }')
    fi
    cpu=$(awk -v t=$((after - before)) -v ns=$((end - start)) 'BEGIN { printf "%.2f", 100 * t / ns }')
    line="{\"variant\":\"$variant\",\"round\":$round,\"relay_cpu_pct\":$cpu,$extra${line#\{}"
    echo "$line" >>"$results"
    echo "$line"
  }

  common=(--duration "$duration" --warmup "$warmup")
  for r in $(seq "$rounds"); do
    # Odd rounds in one order, even rounds in the reverse: neither variant always goes first.
    order=("${variants[@]}")
    if [ $((r % 2)) = 0 ]; then
      order=()
      for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[$i]}"); done
    fi
    echo "== round $r of $rounds: ${order[*]}"
    for v in "${order[@]}"; do run "$load_cpus" "$v" "$r" throughput --connections "$tp_conns" "${common[@]}"; done
    for v in "${order[@]}"; do run "$load_cpus" "$v" "$r" connrate --connections "$cr_conns" "${common[@]}"; done
    # Ping-pong: the loadgen and the backend join evgate's CPU (bench-relay.sh says why).
    [ "$pp_same_cpu" = 1 ] && taskset -a -p -c "$proxy_cpus" "$backend" >/dev/null
    for v in "${order[@]}"; do run "$pp_cpus" "$v" "$r" pingpong --connections "$pp_conns" "${common[@]}"; done
    [ "$pp_same_cpu" = 1 ] && taskset -a -p -c "$load_cpus" "$backend" >/dev/null
    for v in "${order[@]}"; do run "$load_cpus" "$v" "$r" idle; done
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: setup, build, run the namespace part, then the table.

# The relay as of BENCH_PRE_COMMIT, from `git archive` (the working tree and the repository's
# refs are left alone), in its own build directory; rebuilt only when the commit changes.
build_pre() {
  local commit src=$pre_dir/src
  commit=$(git rev-parse --verify "$pre_commit^{commit}")
  if [ "$(cat "$pre_dir/commit" 2>/dev/null || true)" != "$commit" ]; then
    rm -rf "$pre_dir"
    mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
  fi
  cmake -S "$src" -B "$pre_dir/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DEVGATE_BUILD_TESTS=OFF -DEVGATE_BUILD_BENCH=OFF >/dev/null
  cmake --build "$pre_dir/build" --target evgate
  echo "$commit" >"$pre_dir/commit"
}

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target evgate evgate-loadgen
pre_label=
if [ "$pre" = 1 ]; then
  build_pre
  pre_label="$(git rev-parse --short "$pre_commit^{commit}")"
  pre_label+=" ($(git log -1 --format=%s "$pre_commit" | cut -c1-60))"
fi

if [ "$(nproc)" -lt 2 ]; then
  echo "bench-metrics: fewer than 2 CPUs; evgate and the load share CPU 0" >&2
  proxy_cpus=0
  load_cpus=0
  scrape_cpus=0
fi
export BENCH_OUT=$out BENCH_PROXY_CPUS=$proxy_cpus BENCH_LOAD_CPUS=$load_cpus \
  BENCH_SCRAPE_CPUS=$scrape_cpus

start=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== metrics benchmark: W=$workers, evgate on CPU $proxy_cpus, load + backend on CPU" \
  "$load_cpus, scraper on CPU $scrape_cpus every ${interval}s, $rounds rounds of ${duration}s" \
  "(load average $load_before)"
unshare -n "$0" --inside
elapsed=$((SECONDS - start))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== ran in $elapsed s (load average before $load_before, after $load_after)"
echo

python3 - "$out/results.jsonl" "$workers" "$proxy_cpus" "$load_cpus" \
  "$scrape_cpus" "$interval" "$rounds" "$duration" "$elapsed" "${BENCH_NO_DOC:-0}" "$pp_cpus" \
  "$pre_label" "$extra_listeners" "$load_before" "$load_after" <<'EOF'
"""Medians over the rounds, one row per figure, and two ratios: of the medians, and the median
(with the range) of the ratios within each round, whose two runs were back to back and so shared
whatever else the machine was doing. Scraped/unscraped, and against the relay before the metrics
when it ran."""
import datetime
import json
import re
import statistics
import sys

(path, workers, proxy_cpus, load_cpus, scrape_cpus, interval, rounds, duration, elapsed, no_doc,
 pp_cpus, pre_label, extra_listeners, load_before, load_after) = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]

# Derived per run: the relay's CPU time per unit of work, which stays comparable when the relay
# is not saturated (its CPU % then follows the offered load, not its cost).
for r in runs:
    share = r["relay_cpu_pct"] / 100
    if r["mode"] == "throughput" and r.get("gbit_s"):
        r["cpu_ms_per_gb"] = 1e3 * share / (r["gbit_s"] / 8)
    elif r["mode"] == "connrate" and r.get("conn_s"):
        r["cpu_us_per_conn"] = 1e6 * share / r["conn_s"]
    elif r["mode"] == "pingpong" and r.get("rtt_s"):
        r["cpu_us_per_rtt"] = 1e6 * share / r["rtt_s"]

def value(variant, mode, key, round_):
    for r in runs:
        if r["variant"] == variant and r["mode"] == mode and r["round"] == round_ and key in r:
            return r[key]
    return None

def median(variant, mode, key):
    values = [r[key] for r in runs if r["variant"] == variant and r["mode"] == mode and key in r]
    return statistics.median(values) if values else None

def ratio_of_medians(a, b, mode, key):
    x, y = median(a, mode, key), median(b, mode, key)
    return "–" if x is None or not y else f"{x / y:.2f}"

def per_round(a, b, mode, key):
    ratios = []
    for round_ in sorted({r["round"] for r in runs}):
        x, y = value(a, mode, key, round_), value(b, mode, key, round_)
        if x is not None and y:
            ratios.append(x / y)
    if not ratios:
        return "–"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"

conns = {r["mode"]: r["connections"] for r in runs if "connections" in r}
rows = [  # label, mode, key, format
    (f"throughput, {conns.get('throughput')} conns (Gbit/s echoed)", "throughput", "gbit_s", "{:.2f}"),
    ("  relay CPU during throughput (%)", "throughput", "relay_cpu_pct", "{:.0f}"),
    ("  relay CPU per GB echoed (ms)", "throughput", "cpu_ms_per_gb", "{:.0f}"),
    (f"connection rate, {conns.get('connrate')} loops (conn/s)", "connrate", "conn_s", "{:,.0f}"),
    ("  relay CPU during connrate (%)", "connrate", "relay_cpu_pct", "{:.0f}"),
    ("  relay CPU per connection (µs)", "connrate", "cpu_us_per_conn", "{:.1f}"),
    (f"ping-pong, {conns.get('pingpong')} conn (round trips/s)", "pingpong", "rtt_s", "{:,.0f}"),
    ("  ping-pong p50 (µs)", "pingpong", "p50_us", "{:.1f}"),
    ("  ping-pong p99 (µs)", "pingpong", "p99_us", "{:.1f}"),
    ("  ping-pong p99.9 (µs)", "pingpong", "p999_us", "{:.1f}"),
    ("  relay CPU during ping-pong (%)", "pingpong", "relay_cpu_pct", "{:.0f}"),
    ("  relay CPU per round trip (µs)", "pingpong", "cpu_us_per_rtt", "{:.2f}"),
    (f"no load, {duration} s: relay CPU (%)", "idle", "relay_cpu_pct", "{:.2f}"),
]
header = "| figure | unscraped | scraped | scraped/unscraped | per round: median (range) |"
rule = "|---|---:|---:|---:|---:|"
if pre_label:
    header = ("| figure | before metrics | unscraped | scraped | scraped/unscraped "
              "| per round: median (range) | unscraped/before | per round: median (range) |")
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
lines = [header, rule]
for label, mode, key, fmt in rows:
    cell = lambda v: "–" if median(v, mode, key) is None else fmt.format(median(v, mode, key))
    cells = [cell("unscraped"), cell("scraped"),
             ratio_of_medians("scraped", "unscraped", mode, key),
             per_round("scraped", "unscraped", mode, key)]
    if pre_label:
        cells = [cell("pre")] + cells + [ratio_of_medians("unscraped", "pre", mode, key),
                                         per_round("unscraped", "pre", mode, key)]
    if mode == "idle":  # a ratio of two near-zero figures says nothing: see the note below
        cells = [c if i < (3 if pre_label else 2) else "–" for i, c in enumerate(cells)]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
table = "\n".join(lines)

scraped_runs = [r for r in runs if r["variant"] == "scraped"]
scrapes = sum(r.get("scrapes", 0) for r in scraped_runs)
failed = sum(r.get("scrapes_failed", 0) for r in scraped_runs)
p50s = [r["scrape_p50_us"] for r in scraped_runs if r.get("scrapes")]
per_run = statistics.median([r["scrapes"] for r in scraped_runs]) if scraped_runs else 0
scrape_bytes = max((r.get("scrape_bytes", 0) for r in scraped_runs), default=0)
# What one scrape costs evgate's CPU, from the runs without load: the extra CPU time over the
# unscraped run of the same round, divided by the scrapes made.
costs = []
for r in scraped_runs:
    if r["mode"] != "idle" or not r.get("scrapes"):
        continue
    base = value("unscraped", "idle", "relay_cpu_pct", r["round"])
    if base is not None:
        costs.append((r["relay_cpu_pct"] - base) / 100 * float(duration) / r["scrapes"] * 1e3)
notes = []
if p50s:
    notes.append(f"Scraped runs: {scrapes} scrapes in all ({per_run:.0f} per run, {failed} without a "
                 f"200), {scrape_bytes:,} bytes each (headers included), median scrape "
                 f"{statistics.median(p50s) / 1e3:.1f} ms as the scraper saw it.")
if costs:
    notes.append(f"Without load, a scrape cost evgate {statistics.median(costs):.2f} ms of CPU "
                 f"(median over the rounds, {min(costs):.2f}–{max(costs):.2f}): at one scrape per "
                 f"{float(interval) * 1e3:.0f} ms, {statistics.median(costs) / float(interval) / 10:.2f} % "
                 f"of a CPU.")
note = "\n".join(notes)
print(table)
print()
print(note)
print("ratio above 1: more of it when scraped (better for rates, worse for latency and CPU)")

if no_doc == "1":
    sys.exit(0)
today = datetime.date.today().isoformat()
pre_text = (f" \"before metrics\" is the relay built from {pre_label}, run in the same rounds on "
            f"the same CPU." if pre_label else "")
extra_text = f" {extra_listeners} idle extra listeners and clusters." if extra_listeners != "0" else ""
block = (f"<!-- bench-metrics:table:begin (written by scripts/bench-metrics.sh) -->\n"
         f"`scripts/bench-metrics.sh`, {today}: W={workers} worker(s), evgate on CPU {proxy_cpus}, "
         f"loadgen and backend on CPU {load_cpus} (ping-pong: all on CPU {pp_cpus}), scraper on CPU "
         f"{scrape_cpus} every {float(interval) * 1000:.0f} ms, medians of {rounds} rounds of "
         f"{duration} s, order alternating per round;{extra_text} load average {load_before} "
         f"before, {load_after} after; the script ran in {elapsed} s.{pre_text}\n\n"
         f"{table}\n\n{note}\n"
         f"<!-- bench-metrics:table:end -->")
doc_path = "docs/benchmarks.md"
doc = open(doc_path).read()
pattern = re.compile(r"<!-- bench-metrics:table:begin.*?<!-- bench-metrics:table:end -->", re.S)
if pattern.search(doc):
    doc = pattern.sub(lambda _: block, doc)
else:
    doc = doc.rstrip("\n") + "\n\n## Metrics: what counting and scraping cost\n\n" + block + "\n"
open(doc_path, "w").write(doc)
print(f"\nwrote the table into {doc_path}")
EOF
