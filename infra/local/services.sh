#!/usr/bin/env bash
# The local service stack, without docker: an S3-compatible server (moto), an MLflow tracking
# server that proxies artifacts to it, a Prefect server, a process work pool and a worker.
#   infra/local/services.sh start | stop | status
# Ports, folders and the bucket come from the environment (defaults below), so tests can run
# a stack on free ports beside yours. Logs: $STACK_DIR/logs/{s3,mlflow,prefect,worker}.log.
# MLFLOW_BACKEND=postgresql puts MLflow's store in a private PostgreSQL cluster on PG_PORT
# (log: $STACK_DIR/logs/postgres.log) instead of sqlite; it needs psycopg2 ('.[services]').
# STACK_OWNER_PID=<pid> ties the stack to that process: when it dies, however it dies (a test
# run SIGKILLed), infra/local/reaper.py stops every server this script started. Unset, the
# stack runs until `stop` (what `make services` wants).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."

BIN=${BIN:-.venv/bin}
STACK_DIR=$(realpath -m "${STACK_DIR:-work/services}")
S3_PORT=${S3_PORT:-9000}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
PREFECT_PORT=${PREFECT_PORT:-4200}
ARTIFACT_BUCKET=${ARTIFACT_BUCKET:-detector-artifacts}
WORK_POOL=${WORK_POOL:-detector-pool}
MLFLOW_BACKEND=${MLFLOW_BACKEND:-sqlite}
PG_PORT=${PG_PORT:-5433}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
# moto accepts any credentials; against real S3 or MinIO, export your own (never commit them).
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local-stack}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local-stack}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export MLFLOW_S3_ENDPOINT_URL=${MLFLOW_S3_ENDPOINT_URL:-http://127.0.0.1:$S3_PORT}
export PREFECT_HOME=$STACK_DIR/prefect-home
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
# MLflow's server-side job runners (GenAI judges, trace roll-ups) serve nothing the detector does,
# and start seven more Python processes with the server: 16 s of CPU on a 2-core host.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
LOGS=$STACK_DIR/logs
PIDS=$STACK_DIR/pids

refuse_placeholders() {  # the example files' change-me values are public: never start with one
  local name bad=()
  for name in AWS_SECRET_ACCESS_KEY MLFLOW_TRACKING_PASSWORD PREFECT_API_AUTH_STRING; do
    case "${!name:-}" in *change-me*) bad+=("$name") ;; esac
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "Refusing to start: ${bad[*]} still hold(s) an example value (change-me…); set real secrets." >&2; exit 2
  fi
}

launch() {  # name, command...: start in the background, remember the pid, log to a file
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

wait_for() {  # name, url: poll until it answers, at most 120 s
  local name=$1 url=$2
  for _ in $(seq 1 600); do
    if "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
      echo "  $name ready at $url"; return 0
    fi
    if ! kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null; then
      echo "  $name exited; see $LOGS/$name.log" >&2; tail -20 "$LOGS/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
  echo "  $name did not answer at $url within 120 s; see $LOGS/$name.log" >&2; return 1
}

pg_data() {  # as root the cluster must sit where 'postgres' can reach it; a link keeps it findable
  if [ "$(id -u)" = 0 ] && [ ! -e "$STACK_DIR/postgres" ]; then
    local data; data=$(mktemp -d /var/tmp/detector-postgres.XXXXXX)
    chown postgres: "$data"; ln -s "$data" "$STACK_DIR/postgres"
  fi
  mkdir -p "$STACK_DIR/postgres"; realpath "$STACK_DIR/postgres"
}

start_postgres() {  # sets $backend; loopback only with trust auth: a local development store
  local data as_postgres=()
  # PostgreSQL refuses to run as root; as root, its tools run as the 'postgres' user.
  [ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)
  data=$(pg_data)
  [ -s "$data/PG_VERSION" ] || "${as_postgres[@]}" "$PG_BIN/initdb" -D "$data" -U mlflow --auth=trust >"$LOGS/postgres-init.log"
  launch postgres "${as_postgres[@]}" "$PG_BIN/postgres" -D "$data" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$data"
  for _ in $(seq 1 300); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.2; done
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U mlflow -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" \
    | grep -q 1 || "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U mlflow mlflow
  echo "  postgres ready at 127.0.0.1:$PG_PORT"
  backend="postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT/mlflow"
}

start() {
  refuse_placeholders
  mkdir -p "$LOGS" "$PIDS" "$STACK_DIR/mlflow" "$PREFECT_HOME"
  if [ -n "${STACK_OWNER_PID:-}" ]; then
    setsid "$BIN/python" infra/local/reaper.py "$STACK_OWNER_PID" --pid-dir "$PIDS" >"$LOGS/reaper.log" 2>&1 </dev/null &
  fi
  case "$MLFLOW_BACKEND" in
    sqlite) backend="sqlite:///$STACK_DIR/mlflow/mlflow.db" ;;
    postgresql) start_postgres ;;
    *) echo "MLFLOW_BACKEND must be sqlite or postgresql. Received: MLFLOW_BACKEND=$MLFLOW_BACKEND" >&2; exit 2 ;;
  esac
  launch s3 "$BIN/python" -m moto.server -H 127.0.0.1 -p "$S3_PORT"
  wait_for s3 "$MLFLOW_S3_ENDPOINT_URL"
  "$BIN/python" - "$ARTIFACT_BUCKET" <<'PY'
import sys
from components.data.s3data import s3_client
client = s3_client()
if sys.argv[1] not in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]:
    client.create_bucket(Bucket=sys.argv[1])
PY
  launch mlflow "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    --backend-store-uri "$backend" \
    --artifacts-destination "s3://$ARTIFACT_BUCKET/mlflow" --serve-artifacts
  launch prefect "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_for mlflow "$MLFLOW_TRACKING_URI/health"
  wait_for prefect "$PREFECT_API_URL/health"
  "$BIN/prefect" work-pool create "$WORK_POOL" --type process --overwrite >/dev/null
  launch worker "$BIN/prefect" worker start --pool "$WORK_POOL"
  # It holds the S3 secret key: readable by its owner only, from the moment it exists.
  (umask 077 && : >"$STACK_DIR/env") && chmod 600 "$STACK_DIR/env"
  cat >"$STACK_DIR/env" <<ENV
export PREFECT_API_URL=$PREFECT_API_URL
export MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI
export MLFLOW_S3_ENDPOINT_URL=$MLFLOW_S3_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION
ENV
  echo "Stack up. In your shell: source $STACK_DIR/env   (logs in $LOGS/)"
}

stop() {
  # Reverse start order: the worker deregisters while the Prefect server still answers.
  for name in worker prefect mlflow s3 postgres; do
    pid_file=$PIDS/$name.pid
    [ -e "$pid_file" ] || continue
    pid=$(cat "$pid_file")
    # Prefect and MLflow run child processes (uvicorn/gunicorn workers): end the whole group,
    # and give it 20 s to shut down cleanly before it is killed. Prefect 3.9's worker, idle,
    # ignores SIGTERM and SIGINT (still up 120 s later), so it gets 3 s, not a 20 s wait per stop.
    grace=100; [ "$name" = worker ] && grace=15  # in 0.2 s steps
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pid_file"
  done
  echo "Stack stopped."
}

status() {
  for pid_file in "$PIDS"/*.pid; do
    [ -e "$pid_file" ] || { echo "not running"; return 0; }
    name=$(basename "$pid_file" .pid)
    if kill -0 "$(cat "$pid_file")" 2>/dev/null; then echo "$name: running"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
