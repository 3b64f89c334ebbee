#!/usr/bin/python3
"""Instructions per unit of relay work, counted by callgrind: scripts/profile-relay.sh and the
suite's instruction-count regression check (tests/perf) both run this.

evgate (1 worker, access log off) runs under `valgrind --tool=callgrind` while evgate-loadgen
drives one workload at a time through it to an echo backend (`evgate-loadgen serve`), all on
127.0.0.1 with ports found at run time. Around each workload the counters are zeroed and dumped
(`callgrind_control -z` / `-d`), so start-up and the other workloads are not counted, and the
dump waits until evgate has closed every socket of the run, so its teardown is. A dump sums every
thread of the process: the worker does the relaying, and the others (the control loop, gRPC's and
the metrics server's threads) add 4,000-19,000 instructions per run while idle, 0.1-0.2 % of a
run; a cost moved from the worker to another thread still counts.

    relay_instructions.py --evgate BIN --loadgen BIN --out DIR [--duration S] [--runs N]
                          [--top N] [--baseline FILE [--check | --write-baseline]]

Prints instructions per unit (connection, 64-byte round trip, MiB relayed each way); with --top,
the functions with the most instructions of their own; with --baseline, a table against the
baseline file; with --check, exits 1 when a workload costs more than its baseline times the
tolerance; with --write-baseline, rewrites the baseline file from this measurement. Plain stdlib.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Fails the check: a workload costing more than its baseline times this. Over 14 measurements of
# one build (load average 4-9, three of them at once beside a busy loop), the figures spread by
# 1.2 % (connections), 0.7 % (round trips) and 7 % (bulk); 3 of the 42 single bulk runs cost
# over 1.25 times the floor (up to 1.7 times). 1.25 is more than three times the widest spread,
# and catches a change the size of the access-log line formatted for nothing (+49 % per
# connection) or one more allocation per relayed chunk on bulk (about +30 %). A workload over it
# is measured again before it fails: bad luck in three runs does not repeat, a regression does.
TOLERANCE = 1.25
# Each workload runs RUNS times in a row, DURATION seconds each, and its cheapest run counts.
# Per unit, a run costs what the relay's code costs plus what the run's timing adds: a bulk
# stream read in smaller pieces, or one event per loop pass where there could be several, takes
# more passes per MiB or per connection. That part varies with the machine's load and only ever
# adds (up to 70 % on bulk once the relay stopped copying bytes in user space); the cheapest of
# three runs is within a few percent of the floor. A run before them is not counted: the first
# run of a workload after start-up costs more (up to 85 % on bulk).
# 0.5 s is 500-2,500 connections, 1,500-9,000 round trips, 50-230 MiB under callgrind.
RUNS = 3
DURATION = 0.5
REFRESH_COMMAND = "scripts/profile-relay.sh --update-baseline"
START_TIMEOUT = 120.0  # evgate under valgrind loads gRPC: 1.3-3.7 s, 9 s with 3 copies at once
SETTLE_TIMEOUT = 60.0
LISTENING = re.compile(r"listener relay listening on 127\.0\.0\.1:(\d+) ")
MIB = 1024 * 1024


class Failure(Exception):
    """A measurement that could not be made (not a regression)."""


@dataclass(frozen=True)
class Workload:
    name: str
    args: tuple  # evgate-loadgen's mode and options, less --target and the durations
    unit: str
    describe: str

    def units(self, result):
        """The units of work in loadgen's JSON result."""
        if self.name == "connrate":
            return result["completed"]
        if self.name == "pingpong":
            return result["round_trips"]
        return (result["rx_bytes"] + result["tx_bytes"]) / 2 / MIB


WORKLOADS = (
    Workload("connrate", ("connrate", "--connections", "4"), "connection",
             "connect, 64 B echo, close; 4 concurrent"),
    Workload("pingpong", ("pingpong", "--connections", "1"), "round trip",
             "64-byte round trips on 1 connection"),
    Workload("throughput", ("throughput", "--connections", "1"), "MiB",
             "MiB relayed each way, 1 stream of 64 KiB writes"),
)


def wait_for(what, poll, timeout, interval=0.05):
    """Calls poll() until it returns something true, for at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_sockets(pid):
    """How many sockets process pid holds."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        raise Failure(f"evgate (pid {pid}) is gone") from None
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return count


def tail(path, lines=20):
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Callgrind's files (https://valgrind.org/docs/manual/cl-format.html).


def dump_named(out, name):
    """The file of the dump made with `callgrind_control -d name`, or None."""
    trigger = f"desc: Trigger: dump {name}\n"
    for path in Path(out).glob("callgrind.out.*"):
        with open(path, errors="replace") as f:
            if trigger in (f.readline() for _ in range(40)):
                return path
    return None


def total_instructions(path):
    """The file's total Ir: its `summary:` line (`totals:` when there is none)."""
    totals = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
            if line.startswith("totals:"):
                totals = int(line.split()[1])
    if totals is None:
        raise Failure(f"{path}: no summary or totals line")
    return totals


def self_costs(path):
    """Ir of each function's own instructions. callgrind_annotate 3.19 folds everything into the
    threads' start routines for these dumps, so this reads the format itself: the cost line after
    `calls=` is the call's inclusive cost, any other cost line is the current function's own."""
    names = {}

    def name(spec):
        match = re.match(r"\((\d+)\)(?: (.*))?$", spec)
        if not match:
            return spec
        if match.group(2) is not None:
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), spec)

    costs = {}
    function = None
    inclusive = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                function = name(line[3:].rstrip("\n"))
            elif line.startswith("cfn="):
                name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                inclusive = True
            elif line[:1] in "+-*0123456789" and line.strip():
                if inclusive:
                    inclusive = False
                else:
                    fields = line.split()
                    costs[function] = costs.get(function, 0) + int(fields[1])
    return costs


# ---------------------------------------------------------------------------------------------
# The processes.


class Relay:
    """The echo backend and evgate under callgrind, on 127.0.0.1; a context manager."""

    def __init__(self, evgate, loadgen, out):
        self.evgate = evgate
        self.loadgen = loadgen
        self.out = Path(out)
        self.processes = []
        self.pid = None
        self.port = None
        self.startup_seconds = None

    def __enter__(self):
        try:
            backend_port = self.start_backend()
            self.start_evgate(backend_port)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        return False

    def start(self, argv, log):
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def start_backend(self):
        """`evgate-loadgen serve` takes only a fixed port: a free one, tried again if another
        process takes it before the backend binds it (the backend then exits)."""
        for _ in range(5):
            port = free_port()
            with open(self.out / "backend.log", "w") as log:
                backend = self.start([self.loadgen, "serve", "--listen", f"127.0.0.1:{port}",
                                      "--duration", "3600"], log)
            try:
                wait_for("the echo backend accepting",
                         lambda: backend.poll() is not None or accepts(port), 10)
            except Failure:
                raise Failure(f"{tail(self.out / 'backend.log')}\nthe echo backend did not start")
            if backend.poll() is None:
                return port
        raise Failure(f"{tail(self.out / 'backend.log')}\nthe echo backend could not bind a port")

    def start_evgate(self, backend_port):
        config = self.out / "evgate.yaml"
        # Log level info, the default: evgate logs nothing per flow at info, and it prints the
        # listener's port (bound on port 0).
        config.write_text(f"""\
workers: 1
config_watch: false
drain_timeout: 0s
access_log: {{ mode: off }}
log: {{ level: info }}
admin: {{ address: 127.0.0.1:0 }}
metrics: {{ address: 127.0.0.1:0 }}
clusters:
  - {{ name: echo, endpoints: [ "127.0.0.1:{backend_port}" ] }}
listeners:
  - {{ name: relay, bind: "127.0.0.1:0", cluster: echo }}
""")
        log_path = self.out / "evgate.log"
        with open(log_path, "w") as log:
            evgate = self.start(["valgrind", "--tool=callgrind", "--dump-instr=no",
                                 f"--callgrind-out-file={self.out / 'callgrind.out'}",
                                 self.evgate, "--config", str(config)], log)
        self.pid = evgate.pid

        def listening():
            if evgate.poll() is not None:
                raise Failure(f"{tail(log_path)}\nevgate exited with {evgate.returncode}")
            match = LISTENING.search(log_path.read_text(errors="replace"))
            return int(match.group(1)) if match else None

        started = time.monotonic()
        self.port = wait_for("evgate under valgrind listening", listening, START_TIMEOUT)
        wait_for("evgate's listener relaying a round trip", self.round_trip, 10)
        self.startup_seconds = time.monotonic() - started

    def round_trip(self):
        """64 bytes through the relay and back: the relay is ready (and warm)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(b"w" * 64)
                got = b""
                while len(got) < 64:
                    chunk = s.recv(64 - len(got))
                    if not chunk:
                        return False
                    got += chunk
                return True
        except OSError:
            return False

    def callgrind_control(self, *args):
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def drive(self, workload, duration, label):
        """Runs evgate-loadgen; returns its JSON result once evgate has closed the run's sockets."""
        sockets = open_sockets(self.pid)
        result = subprocess.run(
            [self.loadgen, *workload.args, "--target", f"127.0.0.1:{self.port}",
             "--duration", str(duration), "--warmup", "0"],
            capture_output=True, text=True, timeout=duration + 60)
        (self.out / f"{label}.json").write_text(result.stdout)
        if result.returncode != 0:
            raise Failure(f"evgate-loadgen {label} failed: {result.stderr.strip()}")
        wait_for(f"evgate closing the sockets of {label}",
                 lambda: open_sockets(self.pid) <= sockets, SETTLE_TIMEOUT)
        return result

    def measure(self, workload, duration, label):
        """One run of a workload: (callgrind file, instructions, units). Files are named label."""
        self.callgrind_control("-z")
        result = self.drive(workload, duration, label)
        self.callgrind_control("-d", label)
        path = wait_for(f"callgrind's dump of {label}", lambda: dump_named(self.out, label), 10)
        units = workload.units(json.loads(result.stdout))
        if units <= 0:
            raise Failure(f"{label}: no work done: {result.stdout.strip()}")
        return path, total_instructions(path), units

    def cheapest(self, workload, duration, runs, first=1):
        """The run of the workload with the fewest instructions per unit, of runs in a row after
        one that is not counted. The runs' files are named workload.first, workload.first+1..."""
        self.drive(workload, duration, f"{workload.name}.{first - 1}.warm-up")
        results = [self.measure(workload, duration, f"{workload.name}.{run}")
                   for run in range(first, first + runs)]
        per_unit = [instructions / units for _, instructions, units in results]
        return per_unit, results[per_unit.index(min(per_unit))]


# ---------------------------------------------------------------------------------------------
# The baseline.


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def write_baseline(path, measured, args):
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True,
                              text=True).stdout.strip()
    baseline = {
        "about": "Instructions per unit of work of the release evgate under callgrind, checked by "
                 "the ctest test perf_instructions (tests/perf). Refresh: " + REFRESH_COMMAND,
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "valgrind": valgrind,
        "runs": args.runs,
        "duration_s": args.duration,
        "workloads": {
            w.name: {"unit": w.unit, "describe": w.describe,
                     "instructions_per_unit": round(per_unit)}
            for w, per_unit in measured
        },
    }
    Path(path).write_text(json.dumps(baseline, indent=2) + "\n")
    print(f"wrote {path} (commit {commit})")


def load_baseline(path):
    baseline = json.loads(Path(path).read_text())
    missing = [w.name for w in WORKLOADS if w.name not in baseline["workloads"]]
    if missing:
        raise Failure(f"{path} has no {', '.join(missing)}; refresh it: {REFRESH_COMMAND}")
    return baseline


def compare(path, baseline, measured, tolerance):
    """Prints the table against the baseline; returns the names of the workloads over it."""
    print(f"baseline: {path}, commit {baseline['commit']}, {baseline['date']}; "
          f"limit = baseline x {tolerance}")
    print(f"{'workload':<12} {'unit':<15} {'baseline':>10} {'measured':>10} {'ratio':>6} "
          f"{'limit':>10}")
    over, cheaper = [], []
    for w, per_unit in measured:
        base = baseline["workloads"][w.name]["instructions_per_unit"]
        ratio = per_unit / base
        verdict = ""
        if ratio > tolerance:
            over.append(w.name)
            verdict = "  REGRESSION"
        elif ratio < 1 / tolerance:
            cheaper.append(w.name)
            verdict = "  cheaper"
        print(f"{w.name:<12} {'per ' + w.unit:<15} {base:>10,} {per_unit:>10,.0f} {ratio:>6.2f} "
              f"{base * tolerance:>10,.0f}{verdict}")
    if cheaper:
        print(f"note: {', '.join(cheaper)} cost less than baseline / {tolerance}: if that is the "
              f"change you meant, lock it in with `{REFRESH_COMMAND}` and commit {path}")
    if over:
        print(f"FAIL: {', '.join(over)} cost more than baseline x {tolerance}. Find where with "
              f"scripts/profile-relay.sh (it lists the functions with the most instructions); if "
              f"the cost is intended, refresh the baseline with `{REFRESH_COMMAND}` and commit it")
    return over


# ---------------------------------------------------------------------------------------------


def measure_workload(relay, w, args, limit):
    """The workload's instructions per unit: the cheapest of its runs, and of as many again when
    that is over limit. Prints the runs and, with --top, the cheapest run's functions."""
    began = time.monotonic()
    runs, (path, instructions, units) = relay.cheapest(w, args.duration, args.runs)
    if limit is not None and min(runs) > limit:
        print(f"   {w.name}: {min(runs):,.0f} per {w.unit} is over {limit:,.0f}: measuring again")
        more, again = relay.cheapest(w, args.duration, args.runs, first=args.runs + 1)
        if min(more) < min(runs):
            path, instructions, units = again
        runs += more
    print(f"== {w.name} ({w.describe}), instructions per {w.unit}: "
          f"{' '.join(f'{x:,.0f}' for x in runs)} -> {min(runs):,.0f} "
          f"({instructions:,} for {units:,.1f}) [{time.monotonic() - began:.1f} s]")
    if args.top:
        costs = sorted(self_costs(path).items(), key=lambda kv: -kv[1])
        for function, cost in costs[:args.top]:
            print(f"   {100 * cost / instructions:6.2f}%  {function[:110]}")
    return min(runs)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evgate", required=True, help="the release evgate binary")
    parser.add_argument("--loadgen", required=True, help="the evgate-loadgen binary")
    parser.add_argument("--out", required=True, help="folder for configs, logs, callgrind files")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per run")
    parser.add_argument("--runs", type=int, default=RUNS, help="counted runs per workload")
    parser.add_argument("--top", type=int, default=0, help="functions to list per workload")
    parser.add_argument("--baseline", help="the baseline file to compare with (or to write)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 on a regression")
    mode.add_argument("--write-baseline", action="store_true")
    args = parser.parse_args()
    if (args.check or args.write_baseline) and not args.baseline:
        parser.error("--check and --write-baseline need --baseline")
    return args


def main():
    args = parse_args()
    started = time.monotonic()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    measured = []
    try:
        baseline = None
        if args.baseline and not args.write_baseline:
            baseline = load_baseline(args.baseline)
        with Relay(args.evgate, args.loadgen, out) as relay:
            print(f"evgate under callgrind: ready in {relay.startup_seconds:.1f} s")
            for w in WORKLOADS:
                limit = None
                if args.check:
                    limit = baseline["workloads"][w.name]["instructions_per_unit"] * args.tolerance
                measured.append((w, measure_workload(relay, w, args, limit)))
    except (Failure, subprocess.SubprocessError) as failure:
        print(f"relay_instructions: {failure}", file=sys.stderr)
        return 2
    print(f"measured in {time.monotonic() - started:.1f} s; callgrind files in {out}")
    if args.write_baseline:
        write_baseline(args.baseline, measured, args)
        return 0
    if baseline is not None:
        over = compare(args.baseline, baseline, measured, args.tolerance)
        if over and args.check:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
