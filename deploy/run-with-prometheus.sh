#!/usr/bin/env bash
# Starts evgate and a Prometheus that scrapes it, both on loopback, to watch the metrics, the
# recording rules and the alerts of deploy/prometheus/rules.yaml at work (docs/observability.md):
#
#   evgate      listener web 127.0.0.1:8080 -> cluster local (127.0.0.1:9000); admin API
#               127.0.0.1:9901; metrics http://127.0.0.1:9902/metrics
#   Prometheus  http://127.0.0.1:9090, scraping evgate every second under job="evgate" (the job
#               name the rules expect), evaluating the rules every second
#
# Sets up and builds (release) first, like scripts/run.sh. Both configurations
# and Prometheus's data live in a temporary directory, removed on exit. Ctrl-C stops both; so
# does either one ending.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
evgate=build/release/daemon/evgate
# Always through the build: a stale binary would run old code without a word.
cmake --preset release >/dev/null
cmake --build --preset release --target evgate evgatectl evgate-echo

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the trap
stop() {
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

cat >"$work/evgate.yaml" <<'EOF'
workers: 2
drain_timeout: 2s
admin:
  address: 127.0.0.1:9901
metrics:
  address: 127.0.0.1:9902
clusters:
  - name: local
    endpoints: [ "127.0.0.1:9000" ]
    connect_timeout: 1s
listeners:
  - name: web
    bind: 127.0.0.1:8080
    cluster: local
EOF

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/rules.yaml
scrape_configs:
  - job_name: evgate  # the job name deploy/prometheus/rules.yaml expects
    static_configs:
      - targets: [ "127.0.0.1:9902" ]
EOF

"$evgate" --config "$work/evgate.yaml" &
pids+=($!)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address=127.0.0.1:9090 --log.level=warn &
pids+=($!)

# True once something accepts connections on 127.0.0.1:PORT, false after about 10 s.
listening() {
  local deadline=$((SECONDS + 10))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
listening 9090 || echo "run-with-prometheus: Prometheus does not listen on 127.0.0.1:9090" >&2
listening 9902 || echo "run-with-prometheus: evgate serves no metrics on 127.0.0.1:9902" >&2

cat <<EOF

evgate      listener web 127.0.0.1:8080 -> 127.0.0.1:9000, admin API 127.0.0.1:9901
            metrics  http://127.0.0.1:9902/metrics
Prometheus  http://127.0.0.1:9090   (/alerts, /rules, /targets; job "evgate", 1 s scrapes)
Dashboard   import deploy/grafana/evgate.json into a Grafana whose Prometheus data source is
            http://127.0.0.1:9090 (docs/observability.md)

Traffic, from another terminal:
  build/release/reactor/examples/evgate-echo --listen 127.0.0.1:9000 &
  echo hello | nc -q1 127.0.0.1 8080
  build/release/admin/cli/evgatectl listener get web

Ctrl-C stops both.
EOF

status=0
wait -n "${pids[@]}" || status=$?
echo "run-with-prometheus: a process ended (status $status); stopping the other" >&2
exit 1
