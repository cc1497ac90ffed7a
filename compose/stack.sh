#!/usr/bin/env bash
# Native launcher for the stack that runs here without Docker: our Collector, Prometheus, Alertmanager,
# VictoriaLogs and Jaeger v2 as local background processes, from the repo's configs and the binaries compose/build.sh makes.
#
#   compose/stack.sh up              build what is missing, start everything, wait until ready, print URLs
#   compose/stack.sh down            stop everything (data is kept)
#   compose/stack.sh stop SERVICE    stop one service (data and the Collector's disk queue are kept)
#   compose/stack.sh start SERVICE   start one service and wait until it is ready
#   compose/stack.sh kill SERVICE    SIGKILL one service (a crash; the fault tests use it), then `start` it
#   compose/stack.sh status | urls
#
# Data, logs and pid files live under STACK_DIR (default <repo>/.stack). COLLECTOR_OVERLAY picks the
# Collector's store overlay (collector/overlays/<name>.yaml, default local).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(realpath -m "${STACK_DIR:-$ROOT/.stack}")
COLLECTOR_OVERLAY=${COLLECTOR_OVERLAY:-local}
WAIT_SECONDS=${STACK_WAIT_SECONDS:-90}
# Start order: stores before the Collector feeding them, Alertmanager before the Prometheus sending to it.
SERVICES=(victorialogs jaeger alertmanager prometheus collector)
BUILD=$ROOT/compose/build.sh

# VictoriaLogs has no config file: its flags are here, in one place.
VICTORIALOGS_RETENTION=${VICTORIALOGS_RETENTION:-30d}
PROMETHEUS_RETENTION=${PROMETHEUS_RETENTION:-15d}

die() { echo "stack.sh: $*" >&2; exit 1; }

ports() {
  case $1 in
    collector) echo 4317 4318 4319 13133 8888 8889 ;;
    prometheus) echo 9090 ;;
    alertmanager) echo 9093 ;;
    victorialogs) echo 9428 ;;
    jaeger) echo 14317 14318 16685 16686 13134 ;;
  esac
}

health_url() {
  case $1 in
    collector) echo http://127.0.0.1:13133/ ;;
    prometheus) echo http://127.0.0.1:9090/-/ready ;;
    alertmanager) echo http://127.0.0.1:9093/-/ready ;;
    victorialogs) echo http://127.0.0.1:9428/health ;;
    jaeger) echo http://127.0.0.1:13134/status ;;
  esac
}

urls() {
  cat <<EOF
Collector    OTLP gRPC 127.0.0.1:4317, OTLP HTTP http://127.0.0.1:4318, health http://127.0.0.1:13133/
             metrics for Prometheus http://127.0.0.1:8889/metrics (scraped; also pushed to Prometheus's OTLP
             endpoint), internal hop 127.0.0.1:4319 (gRPC), own telemetry http://127.0.0.1:8888/metrics
Prometheus   http://127.0.0.1:9090  (API only: the module build has no web UI assets; OTLP in: /api/v1/otlp)
Alertmanager http://127.0.0.1:9093  (API v2: /api/v2/alerts; receivers: alertmanager/alertmanager.yml)
VictoriaLogs http://127.0.0.1:9428  (LogsQL: /select/logsql/query)
Jaeger       http://127.0.0.1:16686 (HTTP API: /api/traces), gRPC 127.0.0.1:16685
Logs and data: $STACK_DIR
EOF
}

# The command line of a service, one argument per line (binaries come from the build cache).
command_of() {
  local bin
  bin=$("$BUILD" --path "$1")
  case $1 in
    collector)
      local overlay=$ROOT/collector/overlays/$COLLECTOR_OVERLAY.yaml
      [[ -f $overlay ]] || die "no Collector overlay '$COLLECTOR_OVERLAY' ($overlay does not exist)"
      printf '%s\n' "$bin" --config "$ROOT/collector/config.yaml" --config "$overlay" ;;
    prometheus)
      # otlp-receiver: the Collector pushes metrics here from its disk queue. created-timestamp-zero-ingestion:
      # a counter series starts with a 0 sample at its start time, so its first increment (and the first
      # after a Collector restart) counts in increase()/rate() (why: prometheus/prometheus.yml).
      # exemplar-storage: keeps the trace ids the duration histograms carry (a slow bucket links to its trace).
      printf '%s\n' "$bin" --config.file="$ROOT/prometheus/prometheus.yml" \
        --storage.tsdb.path="$STACK_DIR/prometheus/data" \
        --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
        --web.listen-address=127.0.0.1:9090 \
        --web.enable-otlp-receiver \
        --enable-feature=created-timestamp-zero-ingestion,exemplar-storage ;;
    alertmanager)
      # An empty cluster address: a single instance, no gossip port (HA pairs would set it and list peers).
      printf '%s\n' "$bin" --config.file="$ROOT/alertmanager/alertmanager.yml" \
        --storage.path="$STACK_DIR/alertmanager/data" \
        --web.listen-address=127.0.0.1:9093 --cluster.listen-address= ;;
    victorialogs)
      printf '%s\n' "$bin" -storageDataPath="$STACK_DIR/victorialogs/data" \
        -httpListenAddr=127.0.0.1:9428 -retentionPeriod="$VICTORIALOGS_RETENTION" ;;
    jaeger)
      printf '%s\n' "$bin" --config "$ROOT/jaeger/jaeger.yaml" ;;
  esac
}

pid_file() { echo "$STACK_DIR/run/$1.pid"; }
log_file() { echo "$STACK_DIR/logs/$1.log"; }

# The pid of our running instance of a service, or nothing. Each runs in its own directory under
# STACK_DIR, so a recycled pid of an unrelated process is never taken for ours. A live instance whose pid
# file is missing (an interrupted launcher) is found by the port it listens on and adopted.
running_pid() {
  local file pid port
  file=$(pid_file "$1")
  pid=$(cat "$file" 2>/dev/null || true)
  if [[ -z $pid || $(readlink "/proc/$pid/cwd" 2>/dev/null) != "$STACK_DIR/$1" ]]; then
    read -r port _ <<<"$(ports "$1")"
    pid=$(ss -Hltnp "( sport = :$port )" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)
    [[ -n $pid && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$STACK_DIR/$1" ]] || return 0
    echo "$pid" >"$file"
  fi
  echo "$pid"
}

healthy() { curl -fs -o /dev/null --max-time 2 "$(health_url "$1")"; }

# Fails with the port and the process holding it when a port of the service is taken.
check_ports_free() {
  local port listener holder
  for port in $(ports "$1"); do
    listener=$(ss -Hltnp "( sport = :$port )" 2>/dev/null | head -n1)
    if [[ -n $listener ]]; then
      holder=$(grep -o 'users:(([^)]*' <<<"$listener" | sed 's/^users:((//' || true)
      die "cannot start $1: port $port is already taken by ${holder:-another process} ($listener)"
    fi
  done
}

wait_ready() {
  local svc=$1 pid=$2 deadline=$((SECONDS + WAIT_SECONDS))
  until healthy "$svc"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$(log_file "$svc")" >&2 || true
      die "$svc exited during startup; see its log: $(log_file "$svc")"
    fi
    if ((SECONDS >= deadline)); then
      die "$svc (pid $pid) not ready at $(health_url "$svc") after ${WAIT_SECONDS} s; see its log: $(log_file "$svc")"
    fi
    sleep 0.5
  done
}

start_one() {
  local svc=$1 pid bin
  pid=$(running_pid "$svc")
  if [[ -n $pid ]]; then
    wait_ready "$svc" "$pid"
    echo "$svc: already running (pid $pid)"
    return
  fi
  bin=$("$BUILD" --path "$svc")
  [[ -x $bin ]] || "$BUILD" "$svc"
  check_ports_free "$svc"
  mkdir -p "$STACK_DIR/run" "$STACK_DIR/logs" "$STACK_DIR/$svc"
  local cmdline
  cmdline=$(command_of "$svc") # a plain assignment, so a die inside stops this script too
  local -a cmd
  mapfile -t cmd <<<"$cmdline"
  # setsid: the services outlive this script and ignore a Ctrl-C meant for the terminal's foreground job.
  (
    exec 8>&- # the launcher's lock must not stay held by a long-running service
    cd "$STACK_DIR/$svc"
    export OTELCOL_STORAGE_DIR=$STACK_DIR/collector/storage JAEGER_DATA=$STACK_DIR/jaeger/data
    exec setsid "${cmd[@]}" >>"$(log_file "$svc")" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$(pid_file "$svc")"
  wait_ready "$svc" "$pid"
  echo "$svc: started (pid $pid, log $(log_file "$svc"))"
}

stop_one() {
  local svc=$1 pid deadline
  pid=$(running_pid "$svc")
  if [[ -z $pid ]]; then
    rm -f "$(pid_file "$svc")"
    echo "$svc: not running"
    return
  fi
  kill -TERM "$pid"
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$svc: still running 30 s after SIGTERM, sending SIGKILL" >&2
    kill -KILL "$pid"
  fi
  rm -f "$(pid_file "$svc")"
  echo "$svc: stopped"
}

# A crash, not a stop: SIGKILL, then wait until the process is gone (its data stays as the crash left it).
kill_one() {
  local svc=$1 pid
  pid=$(running_pid "$svc")
  [[ -n $pid ]] || die "$svc: not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$(pid_file "$svc")"
  echo "$svc: killed (SIGKILL, pid $pid)"
}

status() {
  local svc pid state rc=0
  for svc in "${SERVICES[@]}"; do
    pid=$(running_pid "$svc")
    if [[ -z $pid ]]; then
      state=stopped
      rc=3
    elif healthy "$svc"; then
      state="running (pid $pid), healthy"
    else
      state="running (pid $pid), NOT ready at $(health_url "$svc")"
      rc=3
    fi
    printf '%-13s %s\n' "$svc" "$state"
  done
  return $rc
}

known_service() {
  local svc
  for svc in "${SERVICES[@]}"; do [[ $svc == "${1:-}" ]] && return 0; done
  die "unknown service '${1:-}' (one of: ${SERVICES[*]})"
}

# One launcher at a time per STACK_DIR: test sessions running side by side may all call `up`.
if [[ ${1:-} =~ ^(up|down|start|stop|kill)$ ]]; then
  mkdir -p "$STACK_DIR/run"
  exec 8>"$STACK_DIR/run/launcher.lock"
  flock 8
fi

case ${1:-} in
  up)
    "$BUILD" "${SERVICES[@]}"
    for svc in "${SERVICES[@]}"; do start_one "$svc"; done
    urls ;;
  down)
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_one "${SERVICES[i]}"; done ;;
  start) known_service "${2:-}"; start_one "$2" ;;
  stop) known_service "${2:-}"; stop_one "$2" ;;
  kill) known_service "${2:-}"; kill_one "$2" ;;
  status) status ;;
  urls) urls ;;
  *) die "usage: stack.sh up|down|stop SERVICE|start SERVICE|kill SERVICE|status|urls (SERVICE: ${SERVICES[*]})" ;;
esac
