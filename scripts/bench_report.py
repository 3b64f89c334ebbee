#!/usr/bin/python3
"""The relay benchmark's report: JSON lines from scripts/bench-relay.sh in; relay.json, PNG
charts, the goal table and the results tables out (printed, and in full mode written between the
markers of docs/benchmarks.md).

Run with /usr/bin/python3 (Debian's, which has python3-matplotlib); scripts/bench-relay.sh calls
it with every argument. Every goal is a ratio of evgate's median to the best peer's median in the
same runs file, so no goal can be reported as met against a figure from another run.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
from dataclasses import dataclass

# Every relay the script knows, in table order: id -> (label, kind, workers).
TARGETS = {
    "direct": ("direct (no relay)", "direct", 0),
    "evgate-w1": ("evgate, 1 worker", "evgate", 1),
    "evgate-copy-w1": ("evgate, 1 worker, splice off", "evgate", 1),
    "haproxy-w1": ("HAProxy, 1 thread", "haproxy", 1),
    "haproxy-splice-w1": ("HAProxy splice, 1 thread", "haproxy", 1),
    "nginx-w1": ("nginx, 1 worker", "nginx", 1),
    "lerelay-w1": ("lerelay (libevent)", "lerelay", 1),
    "evgate-w2": ("evgate, 2 workers", "evgate", 2),
    "haproxy-w2": ("HAProxy, 2 threads", "haproxy", 2),
    "haproxy-splice-w2": ("HAProxy splice, 2 threads", "haproxy", 2),
    "nginx-w2": ("nginx, 2 workers", "nginx", 2),
}
COLORS = {"direct": "0.6", "evgate": "tab:blue", "haproxy": "tab:orange", "nginx": "tab:green",
          "lerelay": "tab:purple"}


@dataclass(frozen=True)
class Figure:
    id: str
    workload: str
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    fmt: str
    vs_direct: bool  # charted as a fraction of the direct connection


FIGURES = [
    Figure("bulk1", "bulk1", "gbit_s", "bulk, 1 stream", "Gbit/s echoed", "higher", "{:.2f}", True),
    Figure("bulk8", "bulk8", "gbit_s", "bulk, 8 streams", "Gbit/s echoed", "higher", "{:.2f}",
           True),
    Figure("connrate", "connrate", "conn_s", "connection rate, 64 loops", "conn/s", "higher",
           "{:,.0f}", True),
    Figure("connrate-stock", "connrate-stock", "conn_s",
           "connection rate, 64 loops, stock sysctls", "conn/s", "higher", "{:,.0f}", True),
    Figure("connrate-stock-src", "connrate-stock-src", "conn_s",
           "connection rate, 64 loops, stock sysctls, 16 upstream source addresses", "conn/s",
           "higher", "{:,.0f}", True),
    Figure("pingpong64", "pingpong64", "rtt_s", "ping-pong, 64 connections", "round trips/s",
           "higher", "{:,.0f}", True),
    Figure("core-cpu-conn", "core-connrate", "cpu_us_per_conn",
           "one core: relay CPU per connection", "µs", "lower", "{:.1f}", False),
    Figure("core-cpu-rtt", "core-pingpong1", "cpu_us_per_rtt",
           "one core: relay CPU per 64-byte round trip", "µs", "lower", "{:.2f}", False),
    Figure("core-cpu-gb", "core-bulk1", "cpu_ms_per_gb", "one core: relay CPU per GB relayed", "ms",
           "lower", "{:.0f}", False),
    Figure("core-p50", "core-pingpong1", "p50_us", "one core: 64-byte round trip p50", "µs",
           "lower", "{:.1f}", False),
    Figure("core-p99", "core-pingpong1", "p99_us", "one core: 64-byte round trip p99", "µs",
           "lower", "{:.1f}", False),
    Figure("idle", "idle", "rss_slope_bytes_per_flow", "memory per idle relayed flow",
           "bytes (VmRSS slope)", "lower", "{:,.0f}", False),
]
FIG = {f.id: f for f in FIGURES}


@dataclass(frozen=True)
class Goal:
    figure: str
    workers: int
    ratio: float  # evgate / best peer must be >= this ("higher") or <= this ("lower")
    absolute: float | None = None  # and evgate's own figure at most this (memory)
    note: str = ""


GOALS = [
    Goal("bulk1", 1, 1.1), Goal("bulk1", 2, 1.1),
    Goal("bulk8", 1, 1.1), Goal("bulk8", 2, 1.1),
    Goal("connrate", 1, 1.1), Goal("connrate", 2, 1.1),
    Goal("pingpong64", 1, 1.1), Goal("pingpong64", 2, 1.1),
    Goal("core-cpu-conn", 1, 0.8),
    Goal("core-cpu-rtt", 1, 0.8),
    Goal("core-cpu-gb", 1, 0.7),
    Goal("core-p50", 1, 1.0),
    Goal("idle", 1, 0.5, absolute=1000),
    Goal("connrate-stock", 1, 1.1, note="variant of the connection-rate goal"),
    Goal("connrate-stock", 2, 1.1, note="variant of the connection-rate goal"),
    Goal("connrate-stock-src", 1, 1.1,
         note="variant: every relay binds 16 upstream source addresses"),
    Goal("connrate-stock-src", 2, 1.1,
         note="variant: every relay binds 16 upstream source addresses"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, help="runs.jsonl written by bench-relay.sh")
    p.add_argument("--json", required=True, help="where relay.json goes")
    p.add_argument("--charts", required=True, help="directory for relay-*.png")
    p.add_argument("--doc", help="docs/benchmarks.md: rewrite the text between its markers")
    p.add_argument("--mode", default="full")
    p.add_argument("--command", default="scripts/bench-relay.sh")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--evgate", default="", help="the evgate binary that ran")
    p.add_argument("--elapsed", type=int, default=0)
    p.add_argument("--loadavg-start", default="")
    p.add_argument("--loadavg-end", default="")
    for name in ("rounds", "sources", "idle-flows", "idle-baseline", "core-cpu"):
        p.add_argument(f"--{name}", type=int, default=0)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--warmup", type=float, default=0)
    return p.parse_args()


def load(path):
    runs, phases = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            (phases if obj.get("kind") == "phase" else runs).append(obj)
    return runs, phases


def summarize(runs):
    """figure id -> target -> {min, median, max, rounds: {round: value}}"""
    out = {}
    for fig in FIGURES:
        per_target = {}
        for r in runs:
            if r["workload"] != fig.workload or "error" in r or fig.key not in r:
                continue
            per_target.setdefault(r["relay"], {})[r["round"]] = r[fig.key]
        out[fig.id] = {
            t: {"min": min(v.values()), "median": statistics.median(v.values()),
                "max": max(v.values()), "rounds": v}
            for t, v in per_target.items()
        }
    return out


def add_foreign_cpu(runs):
    """Per run: the share of the machine's CPU (all CPUs) that went to processes other than the
    loadgen, the relay and the backend during the measured window (steal included)."""
    for r in runs:
        if "machine_busy_s" not in r or not r.get("seconds"):
            continue
        ours = r["cpu_s"] + r.get("backend_cpu_s", 0) + r["self_cpu_s"]
        r["foreign_cpu_pct"] = round(
            max(0.0, 100 * (r["machine_busy_s"] - ours) / (r["cpus"] * r["seconds"])), 1)


def relay_cpu_pct(runs):
    """workload -> target -> median relay CPU % over the measured window (info)."""
    acc = {}
    for r in runs:
        if "cpu_s" in r and r.get("seconds"):
            acc.setdefault(r["workload"], {}).setdefault(r["relay"], []).append(
                100 * r["cpu_s"] / r["seconds"])
    return {w: {t: statistics.median(v) for t, v in d.items()} for w, d in acc.items()}


def better(fig, a, b):
    return a > b if fig.better == "higher" else a < b


def evaluate(goal, summaries, runs):
    fig = FIG[goal.figure]
    data = summaries[fig.id]
    me = f"evgate-w{goal.workers}"
    peers = [t for t, (_, kind, w) in TARGETS.items()
             if w == goal.workers and kind not in ("evgate", "direct") and t in data]
    best = None
    for t in peers:
        if best is None or better(fig, data[t]["median"], data[best]["median"]):
            best = t
    sign = ">=" if fig.better == "higher" else "<="
    target_text = f"{sign} {goal.ratio:g}×"
    if goal.absolute is not None:
        target_text += f" and <= {goal.absolute:,.0f} B"
    row = {"figure": fig.id, "label": fig.label, "unit": fig.unit, "workers": goal.workers,
           "evgate": me, "target": target_text, "note": goal.note, "best_peer": best,
           "status": "not measured", "command": None}
    cmd = [r["cmd"] for r in runs if r["workload"] == fig.workload and r["relay"] == me]
    if cmd:
        row["command"] = cmd[0]
    if me not in data or best is None or not data[best]["median"]:
        return row
    mine, theirs = data[me], data[best]
    ratio = mine["median"] / theirs["median"]
    per_round = [mine["rounds"][k] / theirs["rounds"][k] for k in mine["rounds"]
                 if k in theirs["rounds"] and theirs["rounds"][k]]
    met = ratio >= goal.ratio if fig.better == "higher" else ratio <= goal.ratio
    threshold = goal.ratio * theirs["median"]  # the figure evgate needs
    if goal.absolute is not None:
        met = met and mine["median"] <= goal.absolute
        threshold = min(threshold, goal.absolute)
    row.update({"evgate_median": mine["median"], "best_peer_median": theirs["median"],
                "ratio": ratio, "round_ratio_min": min(per_round) if per_round else None,
                "round_ratio_max": max(per_round) if per_round else None,
                "threshold": threshold, "status": "met" if met else "not met"})
    return row


def cell(fig, s, rounds):
    if s is None:
        return "–"
    text = fig.fmt.format(s["median"])
    if rounds > 1:
        text += f" ({fig.fmt.format(s['min'])}–{fig.fmt.format(s['max'])})"
    return text


def goal_table(goals):
    lines = ["| goal | evgate | best peer, same run | ratio (per-round range) | target | status "
             "| command (evgate's run) |",
             "|---|---:|---|---:|---|---|---|"]
    for g in goals:
        fig = FIG[g["figure"]]
        label = f"{fig.label} ({fig.unit}), W={g['workers']}"
        if g["note"]:
            label += f"; {g['note']}"
        if g["status"] == "not measured":
            mine = fig.fmt.format(g["evgate_median"]) if "evgate_median" in g else "–"
            peer = TARGETS[g["best_peer"]][0] if g["best_peer"] else "–"
            lines.append(f"| {label} | {mine} | {peer} | – | {g['target']} | not measured | "
                         f"{'`' + g['command'] + '`' if g['command'] else '–'} |")
            continue
        rng = ""
        if g["round_ratio_min"] is not None and g["round_ratio_min"] != g["round_ratio_max"]:
            rng = f" ({g['round_ratio_min']:.2f}–{g['round_ratio_max']:.2f})"
        status = "**met**" if g["status"] == "met" else "not met"
        lines.append(
            f"| {label} | {fig.fmt.format(g['evgate_median'])} | "
            f"{TARGETS[g['best_peer']][0]}: {fig.fmt.format(g['best_peer_median'])} | "
            f"{g['ratio']:.2f}{rng} | {g['target']} | {status} | `{g['command']}` |")
    return "\n".join(lines)


def results_tables(summaries, rounds):
    present = [t for t in TARGETS if any(t in summaries[f.id] for f in FIGURES)]
    out = []
    cols = ["bulk1", "bulk8", "connrate", "connrate-stock", "connrate-stock-src", "pingpong64",
            "idle"]
    out.append("Unpinned (both CPUs shared by loadgen, relay and backend)"
               + (", median (min–max) over the rounds" if rounds > 1 else "") + ":\n")
    out.append("| relay | " + " | ".join(f"{FIG[c].label} ({FIG[c].unit})" for c in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))
    for t in present:
        cells = [cell(FIG[c], summaries[c].get(t), rounds) for c in cols]
        out.append(f"| {TARGETS[t][0]} | " + " | ".join(cells) + " |")
    rate_cols = [c for c in cols if FIG[c].vs_direct]
    out.append("\nThe same medians as a fraction of the direct connection (the issue's peer "
               "figures are given this way):\n")
    out.append("| relay | " + " | ".join(FIG[c].label for c in rate_cols) + " |")
    out.append("|---|" + "---:|" * len(rate_cols))
    for t in present:
        if t == "direct":
            continue
        cells = []
        for c in rate_cols:
            s, d = summaries[c].get(t), summaries[c].get("direct")
            cells.append(f"{s['median'] / d['median']:.2f}" if s and d and d["median"] else "–")
        out.append(f"| {TARGETS[t][0]} | " + " | ".join(cells) + " |")
    core = ["core-cpu-conn", "core-cpu-rtt", "core-cpu-gb", "core-p50", "core-p99"]
    out.append("\nOne core (loadgen, relay and backend all on one CPU); CPU is the relay "
               "process's (the backend's for direct):\n")
    out.append("| relay | " + " | ".join(f"{FIG[c].label[10:]} ({FIG[c].unit})" for c in core)
               + " |")
    out.append("|---|" + "---:|" * len(core))
    for t in present:
        if not any(t in summaries[c] for c in core):
            continue
        cells = [cell(FIG[c], summaries[c].get(t), rounds) for c in core]
        out.append(f"| {TARGETS[t][0]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def charts(summaries, goals, directory, stamp):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []
    for fig in FIGURES:
        data = summaries[fig.id]
        # Rates are drawn as a fraction of direct; the direct run's "relay CPU" is the backend's.
        skip_direct = fig.vs_direct or fig.key.startswith("cpu_")
        names = [t for t in TARGETS if t in data and not (skip_direct and t == "direct")]
        if not names:
            continue
        scale = 1.0
        ylabel = fig.unit
        if fig.vs_direct:
            direct = data.get("direct")
            if not direct or not direct["median"]:
                continue
            scale = 1 / direct["median"]
            ylabel = f"fraction of direct ({fig.fmt.format(direct['median'])} {fig.unit})"
        med = [data[t]["median"] * scale for t in names]
        err = [[(data[t]["median"] - data[t]["min"]) * scale for t in names],
               [(data[t]["max"] - data[t]["median"]) * scale for t in names]]
        colors = [COLORS[TARGETS[t][1]] for t in names]
        f, ax = plt.subplots(figsize=(9, 4.2))
        ax.bar(range(len(names)), med, yerr=err, capsize=3, color=colors)
        ax.set_xticks(range(len(names)), [TARGETS[t][0] for t in names], rotation=30, ha="right",
                      fontsize=8)
        for i, (v, t) in enumerate(zip(med, names)):  # above the whisker, clear of its cap
            ax.annotate(f"{v:.2f}" if fig.vs_direct else fig.fmt.format(v),
                        (i, data[t]["max"] * scale), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 3), textcoords="offset points")
        for g in goals:
            if g["figure"] != fig.id or "best_peer_median" not in g:
                continue
            ax.axhline(g["threshold"] * scale, ls="--" if g["workers"] == 1 else ":", lw=1,
                       color="tab:red",
                       label=f"goal for evgate, W={g['workers']} ({g['target'].split(' and')[0]} "
                             f"{TARGETS[g['best_peer']][0]})")
        if any(g["figure"] == fig.id and "best_peer_median" in g for g in goals):
            ax.legend(fontsize=7, loc="best")
        ax.set_ylabel(ylabel, fontsize=8)
        better_text = "higher is better" if fig.better == "higher" else "lower is better"
        ax.set_title(f"{fig.label} ({better_text}); bars: median, whiskers: min–max\n{stamp}",
                     fontsize=9)
        f.tight_layout()
        path = os.path.join(directory, f"relay-{fig.id}.png")
        f.savefig(path, dpi=110)
        plt.close(f)
        written.append(path)
    return written


def replace_block(doc, name, body):
    pattern = re.compile(rf"<!-- bench-relay:{name}:begin.*?<!-- bench-relay:{name}:end -->", re.S)
    if not pattern.search(doc):
        sys.exit(f"bench_report: docs/benchmarks.md lacks the bench-relay:{name} markers")
    block = (f"<!-- bench-relay:{name}:begin (written by scripts/bench-relay.sh) -->\n{body}\n"
             f"<!-- bench-relay:{name}:end -->")
    return pattern.sub(lambda _: block, doc)


def main():
    a = parse_args()
    runs, phases = load(a.runs)
    add_foreign_cpu(runs)
    foreign = sorted(r["foreign_cpu_pct"] for r in runs if "foreign_cpu_pct" in r)
    summaries = summarize(runs)
    goals = [evaluate(g, summaries, runs) for g in GOALS]
    failed = [r for r in runs if "error" in r]
    today = datetime.date.today().isoformat()
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu_model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                             "")
    except OSError:
        pass
    result = {
        "date": today,
        "commit": a.commit,
        "mode": a.mode,
        "command": a.command,
        "elapsed_s": a.elapsed,
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model, "kernel": platform.release(),
                    "loadavg_start": a.loadavg_start, "loadavg_end": a.loadavg_end,
                    "loadavg1_per_run_max": max((r.get("loadavg1", 0) for r in runs), default=0),
                    "foreign_cpu_pct_median": statistics.median(foreign) if foreign else None,
                    "foreign_cpu_pct_max": foreign[-1] if foreign else None},
        "settings": {"evgate_binary": a.evgate, "rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup,
                     "sources": a.sources, "idle_flows": a.idle_flows,
                     "idle_baseline": a.idle_baseline, "core_cpu": a.core_cpu,
                     "namespaces": phases},
        "figures": {f.id: {"workload": f.workload, "key": f.key, "label": f.label,
                           "unit": f.unit, "better": f.better} for f in FIGURES},
        "summaries": {fid: {t: {k: v for k, v in s.items() if k != "rounds"}
                            | {"per_round": [s["rounds"][k] for k in sorted(s["rounds"])]}
                            for t, s in d.items()} for fid, d in summaries.items()},
        "relay_cpu_pct_median": relay_cpu_pct(runs),
        "goals": goals,
        "failed_runs": len(failed),
        "runs": runs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")

    stamp = (f"scripts/bench-relay.sh ({a.mode}), {today}, commit {a.commit}, {a.rounds} round(s) "
             f"of {a.duration:g} s")
    if foreign:
        stamp += f"; other processes took {statistics.median(foreign):.0f} % of the CPU"
    pngs = charts(summaries, goals, a.charts, stamp)

    header = (f"`{a.command}` ({a.mode} mode), {today}, commit {a.commit}: {a.rounds} round(s), "
              f"{a.duration:g} s measured after {a.warmup:g} s warm-up per run, client sources "
              f"127.0.0.1–{a.sources}, idle slope from {a.idle_baseline:,} to {a.idle_flows:,} "
              f"flows, one-core layout on CPU {a.core_cpu}; load average (1, 5, 15 min) "
              f"{a.loadavg_start} at the start, {a.loadavg_end} at the end; the script ran in "
              f"{a.elapsed} s.")
    if foreign:
        header += (f" Processes outside the benchmark took {statistics.median(foreign):.0f} % of "
                   f"the machine's CPU during a measured window (median over runs; max "
                   f"{foreign[-1]:.0f} %).")
    if failed:
        header += f" **{len(failed)} run(s) failed** (see `failed_runs` in the JSON)."
    gtable = goal_table(goals)
    rtables = results_tables(summaries, a.rounds)
    print(header + "\n\nGoals (evgate / best peer with the same worker count, medians):\n")
    print(gtable)
    print("\n" + rtables)
    print(f"\nwrote {a.json} and {len(pngs)} charts in {a.charts}")
    if failed:
        for r in failed:
            print(f"failed: {r['workload']} on {r['relay']}, round {r['round']}: {r['error']}",
                  file=sys.stderr)
    if not a.doc:
        return
    with open(a.doc, encoding="utf-8") as f:
        doc = f.read()
    chart_links = ", ".join(
        f"[{FIG[os.path.basename(p)[6:-4]].label}]({os.path.relpath(p, os.path.dirname(a.doc))})"
        for p in pngs)
    doc = replace_block(doc, "goals", f"{header}\n\n{gtable}")
    doc = replace_block(doc, "table", f"{rtables}\n\nCharts: {chart_links}. Raw figures: "
                        f"[relay.json]({os.path.relpath(a.json, os.path.dirname(a.doc))}).")
    with open(a.doc, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"wrote the goal and results tables into {a.doc}")


if __name__ == "__main__":
    main()
