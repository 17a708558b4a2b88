#!/usr/bin/env bash
# A whole hashdrop cluster on this machine, for trying cluster mode: Redis, PostgreSQL, two
# download nodes (dl1 on 127.0.0.3, dl2 on 127.0.0.4) and the web app on http://127.0.0.1:5000.
# Everything listens on loopback only and keeps its files in one folder (the first argument;
# default /tmp/hashdrop-cluster-$USER), which the next run uses again. Ctrl-C stops it all.
#
#   bash cluster.sh [folder]
#
# Needs Debian's redis-server and postgresql (apt-get install redis-server postgresql); the
# Python packages come from requirements-cluster.txt into .venv. HASHDROP_* settings apply to
# the nodes and the web app (set -a; . loopback.env; set +a keeps libtorrent on loopback).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DIR=$(realpath -m "${1:-${TMPDIR:-/tmp}/hashdrop-cluster-${USER:-$(id -un)}}")
REDIS_PORT=${CLUSTER_REDIS_PORT:-16379}
PG_PORT=${CLUSTER_PG_PORT:-15432}
NODE_SLOTS=${CLUSTER_NODE_SLOTS:-2}
WEB_PID="" NODE_PIDS="" REDIS_PID=""

say() { printf 'cluster.sh: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

command -v redis-server >/dev/null || fail "redis-server is missing: apt-get install redis-server"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
[ -x "$PG_BIN/initdb" ] || fail "PostgreSQL is missing: apt-get install postgresql"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cluster.txt
PY=$ROOT/.venv/bin/python

# PostgreSQL refuses to run as root: then it runs as the postgres user, in a folder it owns.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$DIR"/{pg,redis,dl1,dl2,web}
[ "$(id -u)" = 0 ] && chown postgres "$DIR/pg"
chmod 755 "$DIR"

stop_all() {
  trap - INT TERM EXIT
  say "stopping the web app, then the nodes (they hand their downloads back), then Redis and PostgreSQL"
  for pid in $WEB_PID $NODE_PIDS $REDIS_PID; do  # in this order: a node still needs Redis as it stops
    kill -TERM "$pid" 2>/dev/null || continue
    wait "$pid" 2>/dev/null || true
  done
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  say "stopped; the jobs and files stay in $DIR"
  exit 0
}
trap stop_all INT TERM EXIT

if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
  say "making the job database in $DIR/pg"
  as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -A trust -U postgres -E UTF8 --locale C >"$DIR/pg/initdb.log"
fi
as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pg" start >/dev/null
as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'hashdrop'" | grep -q 1 ||
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hashdrop

# Each in a session of its own (setsid): Ctrl-C reaches this script alone, which stops them in order.
setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --appendonly yes \
  --save "" --logfile "$DIR/redis/redis.log" &
REDIS_PID=$!

export PYTHONUNBUFFERED=1  # the logs as they happen
export HASHDROP_MODE=cluster
export HASHDROP_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
export HASHDROP_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/hashdrop

start_node() {  # name, loopback address, port
  say "node $1@$(hostname) on $2:$3, files in $DIR/$1/downloads, log $DIR/$1/node.log"
  HASHDROP_SAVE_PATH="$DIR/$1/downloads" HASHDROP_DATA_DIR="$DIR/$1/data" \
  HASHDROP_LISTEN_INTERFACES="$2:$3" HASHDROP_OUTGOING_INTERFACES="$2" \
    setsid "$PY" -m celery -A hashdrop_cluster worker --pool threads --concurrency "$NODE_SLOTS" -n "$1@%h" \
    -Q hashdrop.downloads -E --without-mingle --without-gossip -l INFO >"$DIR/$1/node.log" 2>&1 &
  NODE_PIDS="$NODE_PIDS $!"
}
start_node dl1 127.0.0.3 6881
start_node dl2 127.0.0.4 6882

say "web app on http://127.0.0.1:${HASHDROP_PORT:-5000} (log $DIR/web/web.log); Ctrl-C stops everything"
HASHDROP_HOST=127.0.0.1 HASHDROP_SAVE_PATH="$DIR/web/downloads" HASHDROP_DATA_DIR="$DIR/web/data" \
  setsid "$PY" app.py >"$DIR/web/web.log" 2>&1 &
WEB_PID=$!
# Until Ctrl-C, or until one of them ends by itself (then everything stops, and its log says why).
# shellcheck disable=SC2086
wait -n $WEB_PID $NODE_PIDS $REDIS_PID || true
say "a process ended by itself; see the logs in $DIR"
