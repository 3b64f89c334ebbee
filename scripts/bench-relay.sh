#!/usr/bin/env bash
# The relay benchmark (issue 7): evgate beside HAProxy, nginx and a libevent bufferevent relay
# (evgate-lerelay, the seed's reference), same worker count, same echo backend, in one run; see
# docs/benchmarks.md ("## Relay: evgate vs HAProxy and nginx") for the method.
#
#   scripts/bench-relay.sh            # full: every peer and workload, 3 rounds (~11 min); writes
#                                     # docs/benchmarks/relay.json, docs/benchmarks/relay-*.png and
#                                     # the goal and results tables in docs/benchmarks.md
#   scripts/bench-relay.sh --quick    # ~1 min: evgate, HAProxy and nginx at 1 worker, 1 short
#                                     # round; prints the tables, writes under the build dir only
#   BENCH_QUICK=1 scripts/bench-relay.sh                  # the same as --quick
#   BENCH_NO_DOC=1 scripts/bench-relay.sh                 # full, but leave docs/ alone
#
# Everything runs inside private network namespaces (`unshare -n`, loopback only, 127.0.0.0/8):
# the main one widens the port range and shortens the TIME_WAIT reuse delay inside it; a second
# one keeps the kernel's stock values for the two "connection rate, stock sysctls" workloads
# (connrate-stock as configured elsewhere; connrate-stock-src with every relay binding 16 upstream
# source addresses, IP_BIND_ADDRESS_NO_PORT; lerelay has no such option). The host's sysctls are never touched. Relays and the echo backend run as plain foreground
# processes from generated configs, started fresh for every run and stopped after it; every run
# is bounded in time (the loadgen's own duration, under `timeout`), and a trap kills whatever is
# still running however the script ends.
#
# Environment (defaults in brackets):
#   BENCH_QUICK [0]          1: quick mode (as --quick)
#   BENCH_BUILD_DIR [build/release]  where evgate, evgate-loadgen and evgate-lerelay are built;
#                            build/release is built with `cmake --preset release`, any other
#                            directory is configured (Ninja, RelWithDebInfo) if needed and built
#   BENCH_SKIP_BUILD [0]     1: use the binaries already in BENCH_BUILD_DIR (and skip setup.sh)
#   BENCH_ROUNDS [3; quick 1]       rounds; each figure is reported as min/median/max over them
#   BENCH_DURATION [2; quick 1]     seconds measured per run, after BENCH_WARMUP [0.5; quick 0.3]
#   BENCH_CORE_CPU [1]       the CPU of the one-core layout (loadgen, relay and backend)
#   BENCH_SOURCES [16]       client source addresses 127.0.0.1..N (evgate-loadgen --sources)
#   BENCH_IDLE_FLOWS [9500]  idle flows (two fds each in the relay; a process may hold 20,000)
#   BENCH_IDLE_BASELINE [1000]  the idle slope is measured from this many flows to BENCH_IDLE_FLOWS
#   BENCH_TARGETS [all; quick: direct evgate-w1 haproxy-w1 nginx-w1]  which relays run
#   BENCH_NO_DOC [0]         1: full mode, but results go to the build dir, not docs/
#   BENCH_COMMIT [this checkout's HEAD, "+dirty" with uncommitted changes]  the commit recorded
#                            with the figures; set it when BENCH_BUILD_DIR was built from another
#                            tree (a `git archive` of a commit, say)
# Raw JSON lines, configs and logs go to BENCH_BUILD_DIR/bench-relay/.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---------------------------------------------------------------------------------------------
# Settings shared by the outside and the inside (the inside gets them through the environment).
user_settings=""  # the BENCH_* settings given, as a command prefix (recorded with the results)
while IFS='=' read -r key value; do
  [[ $value =~ ^[A-Za-z0-9_./:,-]*$ ]] || value="'$value'"
  user_settings+="$key=$value "
done < <(env | grep '^BENCH_' | sort || true)
quick_flag=""
if [ "${1:-}" = "--quick" ]; then
  export BENCH_QUICK=1
  quick_flag=" --quick"
  shift
fi
quick=${BENCH_QUICK:-0}
build_dir=${BENCH_BUILD_DIR:-build/release}
case "$build_dir" in /*) ;; *) build_dir=$PWD/$build_dir ;; esac
out=$build_dir/bench-relay
loadgen=$build_dir/bench/loadgen/evgate-loadgen
lerelay=$build_dir/bench/lerelay/evgate-lerelay
evgate=$build_dir/daemon/evgate
nginx_stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
if [ "$quick" = 1 ]; then
  rounds=${BENCH_ROUNDS:-1}
  duration=${BENCH_DURATION:-1}
  warmup=${BENCH_WARMUP:-0.3}
  default_targets="direct evgate-w1 haproxy-w1 nginx-w1"
else
  rounds=${BENCH_ROUNDS:-3}
  duration=${BENCH_DURATION:-2}
  warmup=${BENCH_WARMUP:-0.5}
  default_targets="direct evgate-w1 evgate-copy-w1 evgate-w2 haproxy-w1 haproxy-w2 haproxy-splice-w1"
  default_targets+=" haproxy-splice-w2 nginx-w1 nginx-w2 lerelay-w1"
fi
read -ra targets <<<"${BENCH_TARGETS:-$default_targets}"
core_cpu=${BENCH_CORE_CPU:-1}
sources=${BENCH_SOURCES:-16}
idle_flows=${BENCH_IDLE_FLOWS:-9500}
idle_baseline=${BENCH_IDLE_BASELINE:-1000}

port_backend=19000
declare -A port=([direct]=19000 [evgate-w1]=19001 [evgate-w2]=19002 [haproxy-w1]=19003
  [haproxy-w2]=19004 [haproxy-splice-w1]=19005 [haproxy-splice-w2]=19006 [nginx-w1]=19007
  [nginx-w2]=19008 [lerelay-w1]=19009 [evgate-copy-w1]=19010)
for t in "${targets[@]}"; do
  [ -n "${port[$t]:-}" ] || { echo "bench-relay: unknown target $t" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# Inside a private network namespace: run one phase ("wide" or "stock"), append JSON lines.
if [ "${1:-}" = "--inside" ]; then
  phase=$2
  ip link set lo up
  # The listening ports must never be handed out as ephemeral ports (a connect()'s source port,
  # live or in TIME_WAIT, would make the next relay's bind() fail): reserve them. The stock range
  # (32768-60999) does not reach them.
  sysctl -q -w net.ipv4.ip_local_reserved_ports="$port_backend-19010"
  if [ "$phase" = wide ]; then
    sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse_delay=100
  fi
  results=$out/runs.jsonl
  live=()  # pids of what runs now: the backend and the relay (nginx: its master)
  nginx_workers=""
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    local p
    # shellcheck disable=SC2086  # nginx_workers: a list of pids
    for p in "${live[@]}" $nginx_workers; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  printf '{"kind":"phase","phase":"%s","ip_local_port_range":"%s",' "$phase" \
    "$(sysctl -n net.ipv4.ip_local_port_range | tr -s '\t ' ' ')" >>"$results"
  printf '"tcp_tw_reuse":%s,"tcp_tw_reuse_delay":%s}\n' "$(sysctl -n net.ipv4.tcp_tw_reuse)" \
    "$(sysctl -n net.ipv4.tcp_tw_reuse_delay 2>/dev/null || echo null)" >>"$results"

  wait_port() {  # PORT: until a TCP connect succeeds (5 s)
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
      sleep 0.05
    done
    echo "bench-relay: nothing listens on port $1" >&2
    return 1
  }

  stop() {  # PID: SIGTERM, then SIGKILL after 5 s
    local p=$1
    kill "$p" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  }

  # The relays' configs, one per target, in DIR. With SOURCES (the connrate-stock-src workload)
  # every relay binds its upstream connects to 16 source addresses, 127.0.0.2..17 (all on lo),
  # each in its own way: evgate's cluster source_addresses, one HAProxy server per address
  # (`source`), nginx's proxy_bind over split_clients. All three set IP_BIND_ADDRESS_NO_PORT,
  # so the kernel picks the port at connect() with the whole 4-tuple: 16 times the 4-tuples
  # towards the backend, and no port search through TIME_WAIT.
  write_configs() {  # DIR SOURCES(0|1)
    local dir=$1 with_sources=$2 t w i evgate_sources="" haproxy_servers nginx_bind=""
    local addresses=()
    if [ "$with_sources" = 1 ]; then
      for i in $(seq 2 17); do addresses+=("127.0.0.$i"); done
      evgate_sources="    source_addresses: [ $(printf '"%s", ' "${addresses[@]}" | sed 's/, $//') ]"
      haproxy_servers=$(for i in "${!addresses[@]}"; do
        printf '  server echo%d 127.0.0.1:%s source %s\n' "$i" "$port_backend" "${addresses[i]}"
      done)
      nginx_bind="split_clients \"\$remote_port\" \$upstream_source {"
      for i in "${!addresses[@]}"; do
        if [ "$i" -lt $((${#addresses[@]} - 1)) ]; then
          nginx_bind+=" 6.25% ${addresses[i]};"
        else
          nginx_bind+=" * ${addresses[i]};"
        fi
      done
      nginx_bind+=" }
  proxy_bind \$upstream_source;"
    else
      haproxy_servers="  server echo 127.0.0.1:$port_backend"
    fi
    mkdir -p "$dir"
    for w in 1 2; do
      cat >"$dir/evgate-w$w.yaml" <<EOF
workers: $w
drain_timeout: 0
config_watch: false
admin: { address: "127.0.0.1:0" }
metrics: { address: "127.0.0.1:0" }
log: { level: warn }
access_log: { mode: "off" }
clusters:
  - name: echo
    endpoints: [ "127.0.0.1:$port_backend" ]
$evgate_sources
listeners:
  - name: bench
    bind: 127.0.0.1:${port[evgate-w$w]}
    cluster: echo
    max_connections: 9800
EOF
      if [ "$w" = 1 ]; then
        # The same relay copying every byte through user space: what splice() is worth.
        sed -e "s/:${port[evgate-w1]}\$/:${port[evgate-copy-w1]}/" \
          -e '$a\    splice: "off"' "$dir/evgate-w1.yaml" >"$dir/evgate-copy-w1.yaml"
      fi
      for t in haproxy-w$w haproxy-splice-w$w; do
        cat >"$dir/$t.cfg" <<EOF
global
  nbthread $w
  # Two fds per flow and two per pipe: maxconn 9600 and maxpipes 128 stay under the 20,000 limit.
  maxconn 9600
  maxpipes 128
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
$([ "$t" = "haproxy-splice-w$w" ] && printf '  option splice-request\n  option splice-response')
frontend bench
  bind 127.0.0.1:${port[$t]}
  default_backend echo
backend echo
  balance roundrobin
$(printf '%b' "$haproxy_servers")
EOF
      done
      mkdir -p "$dir/nginx-w$w"
      cat >"$dir/nginx-w$w/nginx.conf" <<EOF
load_module $nginx_stream_module;
daemon off;
master_process on;
worker_processes $w;
worker_rlimit_nofile 20000;
pid $dir/nginx-w$w/nginx.pid;
error_log $dir/nginx-w$w/error.log warn;
events { worker_connections 19500; }
stream {
  upstream echo { server 127.0.0.1:$port_backend; }
  $nginx_bind
  server {
    listen 127.0.0.1:${port[nginx-w$w]};
    proxy_pass echo;
  }
}
EOF
    done
  }
  conf=$out/conf  # the configs relay_command uses; conf-src for connrate-stock-src
  write_configs "$out/conf" 0
  if [ "$phase" = stock ]; then write_configs "$out/conf-src" 1; fi

  relay_command() {  # TARGET: the relay's command line (empty for direct)
    case "$1" in
      direct) ;;
      evgate-*) echo "$evgate --config $conf/$1.yaml" ;;
      haproxy-*) echo "haproxy -db -f $conf/$1.cfg" ;;
      nginx-*) echo "nginx -p $conf/$1 -e $conf/$1/error.log -c $conf/$1/nginx.conf" ;;
      lerelay-*) echo "$lerelay --listen 127.0.0.1:${port[$1]} --target 127.0.0.1:$port_backend" ;;
    esac
  }

  # Starts the backend and the relay of TARGET (under taskset -c CPUS unless CPUS is empty); sets
  # measured_pids: the processes that hold the flows (nginx: the workers; direct: the backend),
  # and backend_pid.
  start() {  # TARGET CPUS
    local target=$1 cpus=$2 pin=() cmd main workers
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    "${pin[@]}" "$loadgen" serve --listen "127.0.0.1:$port_backend" --duration 3600 \
      >>"$out/backend.log" 2>&1 &
    live=($!)
    backend_pid=$!
    measured_pids=$!
    wait_port "$port_backend"
    [ "$target" = direct ] && return 0
    cmd=$(relay_command "$target")
    # shellcheck disable=SC2086  # the command line is words without quoting
    "${pin[@]}" $cmd >>"$out/$target.log" 2>&1 &
    main=$!
    live+=("$main")
    wait_port "${port[$target]}"
    measured_pids=$main
    if [[ $target == nginx-* ]]; then
      for _ in $(seq 100); do  # until every worker is forked
        workers=$(pgrep -d ' ' -P "$main" || true)
        [ "$(wc -w <<<"$workers")" -ge "${target#nginx-w}" ] && break
        sleep 0.05
      done
      measured_pids=$workers
      nginx_workers=$workers
    fi
  }

  stop_all() {
    local i p
    for ((i = ${#live[@]} - 1; i >= 0; i--)); do stop "${live[i]}"; done
    live=()
    # nginx's workers leave with their master; if it had to be killed, they may not have.
    for p in $nginx_workers; do kill -9 "$p" 2>/dev/null || true; done
    nginx_workers=""
  }

  json_string() { sed 's/\\/\\\\/g; s/"/\\"/g' <<<"$1"; }

  # One run: fresh backend and relay, one loadgen mode, one tagged JSON line in runs.jsonl.
  run() {  # LAYOUT WORKLOAD TARGET ROUND MODE ARGS...
    local layout=$1 workload=$2 target=$3 round=$4 mode=$5
    shift 5
    local cpus="" pin=() pid_args=() p line cmd rc=0 bound
    [ "$layout" = one-core ] && cpus=$core_cpu && pin=(taskset -c "$cpus")
    start "$target" "$cpus"
    for p in $measured_pids; do pid_args+=(--pid "$p"); done
    [ "$target" != direct ] && [ "$mode" != idle ] && pid_args+=(--backend-pid "$backend_pid")
    cmd="$mode --target 127.0.0.1:${port[$target]} $* --sources $sources ${pid_args[*]}"
    bound=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 90 }')
    # shellcheck disable=SC2086  # cmd is plain words
    line=$(timeout "$bound" "${pin[@]}" "$loadgen" $cmd) || rc=$?
    stop_all
    local tags
    tags="\"kind\":\"run\",\"phase\":\"$phase\",\"layout\":\"$layout\",\"workload\":\"$workload\""
    tags+=",\"relay\":\"$target\",\"round\":$round,\"loadavg1\":$(cut -d' ' -f1 /proc/loadavg)"
    tags+=",\"cmd\":\"$(json_string "${pin[*]}${pin:+ }evgate-loadgen $cmd")\""
    tags+=",\"relay_cmd\":\"$(json_string "${pin[*]}${pin:+ }$(relay_command "$target")")\""
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
      echo "bench-relay: $workload on $target failed (exit $rc)" >&2
      line="{$tags,\"error\":\"exit $rc\"}"
    else
      line="{$tags,${line#\{}"
    fi
    echo "$line" >>"$results"
    printf '%-9s %-15s %-18s r%s %s\n' "$layout" "$workload" "$target" "$round" \
      "$(sed -E 's/.*"(gbit_s|conn_s|rtt_s|rss_slope_bytes_per_flow)":([0-9.]+).*/\1=\2/' \
        <<<"$line")"
  }

  common=(--duration "$duration" --warmup "$warmup")
  one_worker=()
  for t in "${targets[@]}"; do [[ $t == *-w2 ]] || one_worker+=("$t"); done
  rotated() {  # ROUND TARGET...: the targets rotated by ROUND, so no relay always goes first
    local r=$1 i
    shift
    local list=("$@") n=$#
    for ((i = 0; i < n; i++)); do echo "${list[(i + r) % n]}"; done
  }

  # One workload on every target of its layout, in this round's order (round r, lists all, w1).
  each() {  # LAYOUT WORKLOAD MODE ARGS...
    local layout=$1 workload=$2 t list
    shift 2
    if [ "$layout" = one-core ]; then list=("${w1[@]}"); else list=("${all[@]}"); fi
    for t in "${list[@]}"; do
      [ "$workload" = idle ] && [ "$t" = direct ] && continue  # the backend is no relay
      # lerelay has no source-address option; direct stays as the reference.
      [ "$workload" = connrate-stock-src ] && [[ $t == lerelay-* ]] && continue
      # The stock reuse delay is 1 s: let the previous run's TIME_WAIT sockets age first.
      [[ $workload == connrate-stock* ]] && sleep 1.2
      run "$layout" "$workload" "$t" "$r" "$@"
    done
  }

  for r in $(seq "$rounds"); do
    echo "== $phase: round $r of $rounds"
    mapfile -t all < <(rotated "$r" "${targets[@]}")
    mapfile -t w1 < <(rotated "$r" "${one_worker[@]}")
    if [ "$phase" = stock ]; then
      each unpinned connrate-stock connrate --connections 64 "${common[@]}"
      conf=$out/conf-src
      each unpinned connrate-stock-src connrate --connections 64 "${common[@]}"
      conf=$out/conf
      continue
    fi
    each unpinned bulk1 throughput --connections 1 "${common[@]}"
    each unpinned bulk8 throughput --connections 8 "${common[@]}"
    each unpinned connrate connrate --connections 64 "${common[@]}"
    each unpinned pingpong64 pingpong --connections 64 "${common[@]}"
    each one-core core-connrate connrate --connections 64 "${common[@]}"
    each one-core core-pingpong1 pingpong --connections 1 "${common[@]}"
    each one-core core-bulk1 throughput --connections 1 "${common[@]}"
    each unpinned idle idle --connections "$idle_flows" --baseline "$idle_baseline" --hold 0.5
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: setup and build, the two namespace phases, then the report.
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  scripts/setup.sh
  if [ "$build_dir" = "$PWD/build/release" ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release --target evgate evgate-loadgen evgate-lerelay
  else
    [ -f "$build_dir/CMakeCache.txt" ] ||
      cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build_dir" --target evgate evgate-loadgen evgate-lerelay
  fi
fi
for bin in "$evgate" "$loadgen" "$lerelay"; do
  [ -x "$bin" ] || { echo "bench-relay: $bin is missing" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "bench-relay: the one-core layout uses CPU $core_cpu; this machine has fewer CPUs" >&2
  exit 1
fi

rm -rf "$out" && mkdir -p "$out"
export BENCH_QUICK=$quick BENCH_BUILD_DIR=$build_dir BENCH_ROUNDS=$rounds BENCH_DURATION=$duration
export BENCH_WARMUP=$warmup BENCH_TARGETS="${targets[*]}"
inside=""
# shellcheck disable=SC2317  # called by the trap
cleanup_outside() {
  if [ -n "$inside" ]; then kill "$inside" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup_outside EXIT
trap 'exit 130' INT TERM

mode_name=full
[ "$quick" = 1 ] && mode_name=quick
command="${user_settings}scripts/bench-relay.sh$quick_flag"
commit=${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  git diff --quiet HEAD 2>/dev/null || echo +dirty)}
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
echo "== relay benchmark ($mode_name): ${targets[*]};" \
  "$rounds round(s) of ${duration}s + ${warmup}s warm-up"
for phase in wide stock; do
  unshare -n "$0" --inside "$phase" &
  inside=$!
  wait "$inside"
  inside=""
done
elapsed=$((SECONDS - start))
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== ran in $elapsed s"
echo

# Only a full run that may touch docs/ writes there; everything else stays in the build dir.
report_args=(--runs "$out/runs.jsonl" --mode "$mode_name" --command "$command"
  --elapsed "$elapsed" --loadavg-start "$loadavg_start" --loadavg-end "$loadavg_end"
  --rounds "$rounds" --duration "$duration" --warmup "$warmup" --sources "$sources"
  --idle-flows "$idle_flows" --idle-baseline "$idle_baseline" --core-cpu "$core_cpu"
  --evgate "$evgate" --commit "$commit")
if [ "$quick" = 0 ] && [ "${BENCH_NO_DOC:-0}" != 1 ]; then
  report_args+=(--json docs/benchmarks/relay.json --charts docs/benchmarks
    --doc docs/benchmarks.md)
else
  report_args+=(--json "$out/relay.json" --charts "$out")
fi
/usr/bin/python3 scripts/bench_report.py "${report_args[@]}"
