#!/usr/bin/env bash
# A team's stack on this machine, loopback only, all state under .llmft/team/: PostgreSQL (databases `prefect` and
# `mlflow`), a Prefect server and an MLflow server on it (artifacts on S3), the process work pool `local` with every
# deployment of prefect.yaml, and a process worker. Idempotent: what already runs is kept.
#   bash scripts/team_up.sh && source .llmft/team/env      (PREFECT_API_URL, MLFLOW_TRACKING_URI, ...)
#   bash scripts/team_down.sh                              (stops what this started; data stays in .llmft/team/)
# Settings, from the environment:
#   LLMFT_TEAM_ARTIFACTS   s3://BUCKET/PREFIX for MLflow's artifacts (the bucket must exist); default: a moto S3
#                          stand-in started here (objects kept in memory), bucket llmft-mlflow
#   MLFLOW_S3_ENDPOINT_URL an S3-compatible endpoint for LLMFT_TEAM_ARTIFACTS (leave unset for AWS S3)
#   LLMFT_TEAM_DIR         state folder (default .llmft/team)     LLMFT_VENV   the Python environment (default .venv)
#   LLMFT_TEAM_WORKER_LIMIT  flow runs the worker takes at once (default: no limit); the next waits for a free worker
#   LLMFT_TEAM_TRACKING_URI  an MLflow tracking server the team already has, instead of starting one (nor its database
#                          and S3 stand-in): a SageMaker managed MLflow ARN (arn:aws:sagemaker:REGION:ACCOUNT:
#                          mlflow-tracking-server/NAME; flow runs sign with the worker's AWS credentials) or http(s)://
set -euo pipefail
# Folders given relative are relative to where this is called from.
TEAM=$(realpath -m "${LLMFT_TEAM_DIR:-$(dirname "$0")/../.llmft/team}")
[ -z "${LLMFT_VENV:-}" ] || LLMFT_VENV=$(realpath -m "$LLMFT_VENV")
cd "$(dirname "$0")/.."
ROOT=$PWD
POOL=local  # the work pool every deployment in prefect.yaml names

die() { echo "team_up: $*" >&2; exit 1; }
say() { echo "team_up: $*"; }

VENV=${LLMFT_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/prefect" ] && [ -z "${LLMFT_VENV:-}" ]; then bash scripts/setup.sh; fi
[ -x "$VENV/bin/prefect" ] && [ -x "$VENV/bin/mlflow" ] || die "no prefect/mlflow in $VENV/bin: set LLMFT_VENV to the project's environment"
PY=$VENV/bin/python
"$PY" -c "import psycopg2" 2>/dev/null || die "MLflow's Postgres store needs psycopg2 in $VENV: pip install -e '.[team]'"
INITDB=$(command -v initdb) || die "PostgreSQL's initdb is not on PATH: install PostgreSQL (Debian: apt-get install postgresql) and put its bin/ on PATH"
PGBIN=$(dirname "$(readlink -f "$INITDB")")
for tool in pg_ctl psql; do [ -x "$PGBIN/$tool" ] || die "$PGBIN/$tool is missing: install the PostgreSQL client and server"; done

case ${LLMFT_TEAM_ARTIFACTS:-s3://} in s3://*) ;; *) die "LLMFT_TEAM_ARTIFACTS must be an s3:// URI, got '$LLMFT_TEAM_ARTIFACTS'";; esac
WORKER_LIMIT=()
case ${LLMFT_TEAM_WORKER_LIMIT:-} in
  '') ;;
  *[!0-9]* | 0*) die "LLMFT_TEAM_WORKER_LIMIT must be a number of runs (1 or more), got '$LLMFT_TEAM_WORKER_LIMIT'";;
  *) WORKER_LIMIT=(--limit "$LLMFT_TEAM_WORKER_LIMIT");;
esac
TRACKING=${LLMFT_TEAM_TRACKING_URI:-}
case $TRACKING in
  '' | http://?* | https://?*) ;;
  arn:*)  # the recipes' own check: the ARN's form and the sagemaker-mlflow plugin
    problem=$("$PY" -c 'import sys; from llm_finetune.recipes.base import check_tracking_uri as c
try: c(sys.argv[1])
except ValueError as e: print(e)' "$TRACKING") || die "could not check LLMFT_TEAM_TRACKING_URI with $PY"
    [ -z "$problem" ] || die "LLMFT_TEAM_TRACKING_URI: $problem";;
  *) die "LLMFT_TEAM_TRACKING_URI must be a SageMaker managed MLflow ARN or an http(s):// URL, got '$TRACKING'";;
esac

source scripts/env.sh  # offline Hugging Face settings, no telemetry
export PREFECT_HOME=$TEAM/prefect-home
mkdir -p "$TEAM/run" "$TEAM/logs" "$PREFECT_HOME"
if [ "$(id -u)" = 0 ]; then chmod go+x "$TEAM" "$TEAM/.."; fi  # the postgres user (below) must reach its folder

# A port per service, chosen once and kept, so clients' env files stay valid across restarts.
port_of() {
  local file=$TEAM/run/$1.port
  [ -s "$file" ] || "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$file"
  cat "$file"
}
running() { [ -s "$TEAM/run/$1.pid" ] && kill -0 "$(cat "$TEAM/run/$1.pid")" 2>/dev/null; }
# start NAME COMMAND...: in its own session (team_down stops the whole group), output to logs/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" >"$TEAM/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$TEAM/run/$name.pid"
}
wait_http() {  # NAME URL SECONDS
  local deadline=$((SECONDS + $3))
  until curl -sf -o /dev/null --max-time 5 "$2"; do
    running "$1" || die "$1 exited before answering at $2; see $TEAM/logs/$1.log"
    [ $SECONDS -lt $deadline ] || die "$1 did not answer at $2 within $3 s; see $TEAM/logs/$1.log"
    sleep 1
  done
}

# PostgreSQL refuses to run as root: as root, its folder belongs to the `postgres` user and it runs as that user.
PG=$TEAM/postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_PORT=$(port_of postgres)
if [ ! -f "$PG/data/PG_VERSION" ]; then
  rm -rf "$PG" && mkdir -m 700 "$PG"
  "$PY" -c 'import secrets; print(secrets.token_hex(16))' >"$PG/password"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL"
    chown -R postgres: "$PG"
    as_pg test -x "$PG" || die "the postgres user cannot reach $PG: put LLMFT_TEAM_DIR where every parent folder is searchable (o+x)"
  fi
  as_pg "$PGBIN/initdb" -D "$PG/data" -U llmft --pwfile="$PG/password" --auth=scram-sha-256 -E UTF8 --locale=C \
    >"$TEAM/logs/initdb.log" 2>&1 || die "initdb failed; see $TEAM/logs/initdb.log"
fi
PG_PASSWORD=$(cat "$PG/password")
if as_pg "$PGBIN/pg_ctl" -D "$PG/data" status >/dev/null 2>&1; then
  say "postgres already running"
else
  as_pg "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG" start >/dev/null || die "postgres did not start; see $PG/postgres.log"
fi
DATABASES=(prefect)
[ -n "$TRACKING" ] || DATABASES+=(mlflow)
for db in "${DATABASES[@]}"; do
  PGPASSWORD=$PG_PASSWORD "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U llmft -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    PGPASSWORD=$PG_PASSWORD "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U llmft -d postgres -qc "CREATE DATABASE $db" ||
    die "could not create database $db; see $PG/postgres.log"
done

# S3 for MLflow's artifacts: the one given, else a moto stand-in with its bucket; none for the team's own server.
S3_CREDENTIALS=()  # the environment of the S3 stand-in and of MLflow's artifact proxy
if [ -n "$TRACKING" ]; then
  ARTIFACTS= S3_ENDPOINT=  # the server's own artifact store
elif [ -n "${LLMFT_TEAM_ARTIFACTS:-}" ]; then
  ARTIFACTS=$LLMFT_TEAM_ARTIFACTS
  S3_ENDPOINT=${MLFLOW_S3_ENDPOINT_URL:-}
else
  ARTIFACTS=s3://llmft-mlflow/artifacts
  S3_ENDPOINT=http://127.0.0.1:$(port_of s3)
  # The stand-in's credentials, for it and the MLflow server only: the worker's flow runs keep the machine's own.
  S3_CREDENTIALS=(AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1)
  if running s3; then say "s3 stand-in already running"; else start s3 "$PY" -m moto.server -H 127.0.0.1 -p "${S3_ENDPOINT##*:}"; fi
  wait_http s3 "$S3_ENDPOINT/moto-api/" 60
  env "${S3_CREDENTIALS[@]}" "$PY" - "$S3_ENDPOINT" <<'EOF' || die "could not create bucket llmft-mlflow on the stand-in"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
if "llmft-mlflow" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket="llmft-mlflow")
EOF
fi

# MLflow: runs and registry in Postgres; artifacts proxied to S3 (clients need no S3 credentials). Or the team's own.
ML_URL=${TRACKING:-http://127.0.0.1:$(port_of mlflow)}
if [ -n "$TRACKING" ]; then say "mlflow: the team's server $TRACKING"
elif running mlflow; then say "mlflow already running"; else
  [ -z "$S3_ENDPOINT" ] || S3_CREDENTIALS+=("MLFLOW_S3_ENDPOINT_URL=$S3_ENDPOINT")
  # The password through PGPASSWORD (psycopg2 reads it), not on the command line that `ps` shows.
  start mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false PGPASSWORD="$PG_PASSWORD" "${S3_CREDENTIALS[@]}" \
    "$VENV/bin/mlflow" server --host 127.0.0.1 --port "${ML_URL##*:}" --workers 1 \
    --backend-store-uri "postgresql://llmft@127.0.0.1:$PG_PORT/mlflow" --artifacts-destination "$ARTIFACTS"
fi

# Prefect: its API database in Postgres.
PF_URL=http://127.0.0.1:$(port_of prefect)/api
export PREFECT_API_URL=$PF_URL PREFECT_UI_API_URL=$PF_URL
if running prefect; then say "prefect already running"; else
  PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://llmft:$PG_PASSWORD@127.0.0.1:$PG_PORT/prefect" \
    start prefect "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$(port_of prefect)"
fi
[ -n "$TRACKING" ] || wait_http mlflow "$ML_URL/health" 180
wait_http prefect "$PF_URL/health" 180

# The work pool and every deployment; deployed again when prefect.yaml changes.
export MLFLOW_TRACKING_URI=$ML_URL
"$VENV/bin/prefect" work-pool inspect "$POOL" >/dev/null 2>&1 ||
  "$VENV/bin/prefect" work-pool create "$POOL" --type process >"$TEAM/logs/work-pool.log" 2>&1 ||
  die "could not create work pool $POOL; see $TEAM/logs/work-pool.log"
stamp=$TEAM/run/deployed-$(sha256sum prefect.yaml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  # Without LLMFT_PROJECT_DIR: `prefect deploy` would write its value into each pull step instead of the placeholder.
  env -u LLMFT_PROJECT_DIR "$VENV/bin/prefect" --no-prompt deploy --all >"$TEAM/logs/deploy.log" 2>&1 ||
    die "prefect deploy --all failed; see $TEAM/logs/deploy.log"
  rm -f "$TEAM"/run/deployed-* && touch "$stamp"
fi

# The worker runs each flow run in a child process with this environment (MLFLOW_TRACKING_URI: the team's registry).
if running worker; then say "worker already running"; else
  LLMFT_PROJECT_DIR=$ROOT start worker "$VENV/bin/prefect" worker start --pool "$POOL" --type process \
    "${WORKER_LIMIT[@]}"
fi
# Up once the worker has polled the pool: the deployments then show Ready in the UI.
deadline=$((SECONDS + 90))
until curl -sf "$PF_URL/deployments/name/dialogsum-flan-t5/dialogsum-flan-t5" | grep -Eq '"status": ?"READY"'; do
  running worker || die "the worker exited; see $TEAM/logs/worker.log"
  [ $SECONDS -lt $deadline ] || die "the worker did not poll pool $POOL within 90 s; see $TEAM/logs/worker.log"
  sleep 1
done

{
  echo "# Written by scripts/team_up.sh; \`source\` it to use the team's servers."
  echo "export PREFECT_API_URL=$PF_URL"
  echo "export PREFECT_UI_API_URL=$PF_URL"
  echo "export MLFLOW_TRACKING_URI=$ML_URL"
  echo "export LLMFT_TEAM_ARTIFACTS=$ARTIFACTS"
  echo "export LLMFT_TEAM_S3_ENDPOINT=$S3_ENDPOINT"
} >"$TEAM/env"
say "up: Prefect UI ${PF_URL%/api}, MLflow $ML_URL, artifacts ${ARTIFACTS:-in its store}; now: source ${TEAM#"$ROOT"/}/env"
