#!/usr/bin/env bash
# Builds (release preset) and runs the reactor benchmarks against libevent, then prints a table of
# evgate/libevent time ratios (< 1: ours is faster). See docs/benchmarks.md.
#
#   scripts/bench-reactor.sh            # everything, 5 repetitions, medians
#   BENCH_REPETITIONS=9 scripts/bench-reactor.sh
#
# Single-threaded rows run pinned to one CPU (BENCH_CPU, default 1: latency and CPU cost must not
# include wake-ups on the other vCPU). The cross-thread row needs two: it runs on BENCH_CPUS_MT
# (default 0-1). Raw JSON goes to build/release/bench-reactor/.
set -euo pipefail
cd "$(dirname "$0")/.."

repetitions=${BENCH_REPETITIONS:-5}
cpu=${BENCH_CPU:-1}
cpus_mt=${BENCH_CPUS_MT:-0-1}
out=build/release/bench-reactor
bin=build/release/bench/reactor/evgate-reactor-bench

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target evgate-reactor-bench

if [ "$(nproc)" -lt 2 ]; then
  echo "bench-reactor: fewer than 2 CPUs; the cross-thread row runs on the one there is" >&2
  cpu=0
  cpus_mt=0
fi

mkdir -p "$out"
common=(
  --benchmark_repetitions="$repetitions"
  --benchmark_report_aggregates_only=true
  # Repetitions of all rows in random order, so that drift on a shared VM hits both libraries.
  --benchmark_enable_random_interleaving=true
  --benchmark_out_format=json
)

start=$SECONDS
echo "== single-threaded rows, pinned to CPU $cpu"
single_rows='EventAddDel|TimerChurn|TimerChurnInLoop|BufferAppendMoveDrain|EchoRoundTrip'
taskset -c "$cpu" "$bin" "${common[@]}" \
  --benchmark_filter="^BM_($single_rows)/" \
  --benchmark_out="$out/single.json"
echo "== cross-thread row, CPUs $cpus_mt"
taskset -c "$cpus_mt" "$bin" "${common[@]}" \
  --benchmark_filter='^BM_CrossThreadPost/' \
  --benchmark_out="$out/cross_thread.json"
echo "== ran in $((SECONDS - start)) s"
echo

python3 - "$out/single.json" "$out/cross_thread.json" <<'EOF'
"""Pairs BM_<row>/evgate[/arg] with BM_<row>/libevent[/arg] and prints median time ratios.

Single-threaded rows compare CPU time (the thread's user + system time: robust against other
processes taking turns on the pinned CPU); rows registered with UseRealTime (cross-thread)
compare wall-clock time, which is what their report measures.
"""
import json
import sys

rows = {}
for path in sys.argv[1:]:
    with open(path) as f:
        report = json.load(f)
    for b in report["benchmarks"]:
        if b.get("run_type") != "aggregate":
            continue
        parts = b["run_name"].split("/")
        lib = parts[1]
        key = "/".join([parts[0]] + parts[2:])
        real = key.endswith("/real_time")
        entry = rows.setdefault(key, {}).setdefault(lib, {})
        if b["aggregate_name"] == "median":
            entry["time"] = b["real_time"] if real else b["cpu_time"]
            entry["per_op_ns"] = 1e9 / b["items_per_second"]
            entry["metric"] = "wall" if real else "cpu"
        elif b["aggregate_name"] == "cv":
            entry["cv"] = (b["real_time"] if real else b["cpu_time"]) * 100

print(f"{'row':<34} {'metric':<6} {'evgate/op':>12} {'libevent/op':>12} {'cv ours':>8} "
      f"{'cv lib':>8} {'ratio':>7}")
# The rows in the order of docs/benchmarks.md; any new row follows.
order = ["BM_EventAddDel", "BM_TimerChurn", "BM_TimerChurnInLoop", "BM_CrossThreadPost/real_time",
         "BM_BufferAppendMoveDrain/64", "BM_BufferAppendMoveDrain/16384", "BM_EchoRoundTrip"]
keys = [k for k in order if k in rows] + [k for k in rows if k not in order]
for key in keys:
    libs = rows[key]
    ours, theirs = libs.get("evgate"), libs.get("libevent")
    if not ours or not theirs or "time" not in ours or "time" not in theirs:
        print(f"{key:<34} (missing a side)")
        continue
    ratio = ours["time"] / theirs["time"]
    print(f"{key:<34} {ours['metric']:<6} {ours['per_op_ns']:>10.1f}ns "
          f"{theirs['per_op_ns']:>10.1f}ns {ours.get('cv', 0):>7.1f}% {theirs.get('cv', 0):>7.1f}% "
          f"{ratio:>7.2f}")
print("\nratio = evgate median time / libevent median time (< 1: evgate is faster)")
EOF
