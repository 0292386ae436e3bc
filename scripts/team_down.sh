#!/usr/bin/env bash
# Stop what scripts/team_up.sh started, by the PIDs it wrote (worker, Prefect, MLflow, the S3 stand-in, PostgreSQL).
# Data (Postgres, ports) stays in .llmft/team/; team_up.sh starts it again. Idempotent.
#   bash scripts/team_down.sh
set -euo pipefail
TEAM=$(realpath -m "${LLMFT_TEAM_DIR:-$(dirname "$0")/../.llmft/team}")
cd "$(dirname "$0")/.."
stopped=()

# Each service runs in its own session (team_up's setsid): TERM its process group, KILL it after 30 s.
for name in worker prefect mlflow s3; do
  pidfile=$TEAM/run/$name.pid
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    stopped+=("$name")
  fi
  rm -f "$pidfile"
done

PG=$TEAM/postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGBIN=$(dirname "$(readlink -f "$(command -v pg_ctl || echo /nonexistent)")")
if [ -f "$PG/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PG/data" status >/dev/null 2>&1; then
  as_pg "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w -t 60 stop >/dev/null 2>&1 && stopped+=(postgres) ||
    { echo "team_down: postgres did not stop; see $PG/postgres.log" >&2; exit 1; }
fi

if [ ${#stopped[@]} -eq 0 ]; then echo "team_down: nothing was running"; else echo "team_down: stopped ${stopped[*]}"; fi
