#!/usr/bin/env bash
# The platform as a cluster on this machine: a private PostgreSQL, three `platform-server serve`
# replicas and HAProxy in front, balancing each gRPC call (HTTP/2) and draining a replica whose
# /health answers 503. docs/deploy.md describes the same on several machines.
#
# Usage: scripts/cluster.sh start|stop|status|restart-replica N|kill-replica N|failover-postgres|url
# Everything is configurable by environment (defaults in brackets):
#   CLUSTER_DIR [/tmp/platform-cluster-$PG_PORT]  data, logs and pid files
#   PG_PORT [55432]        the private PostgreSQL (never the machine's shared 5432)
#   LB_PORT [50050]        where kiosks connect (the balancer)
#   REPLICA_PORTS ["50061 50062 50063"]   one gRPC port per replica; /health on port + 100
#   FACE_PROCESSES [-1]    [face] processes per replica (-1: one per core)
#   UWB_PORT []            the UWB gateway's port URL; every replica starts a worker, one drives it
#   MAX_WORKERS [64 for one replica, 32 each for more]  request threads per replica: replicas that
#                          share this machine's cores do better with fewer (docs/deploy.md)
#   POOL_SIZE [0]          database connections per replica (0: one per request thread + 4)
#   PG_STANDBY_PORT []     also a streaming standby on this port, synchronous (a completion waits for
#                          it), and the replicas' URL naming both servers with target_session_attrs=
#                          read-write; `failover-postgres` then stops the primary at once and promotes
#                          the standby
#   PLATFORM_DATA_KEY      the data key (a development key is made and kept in CLUSTER_DIR if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PG_PORT=${PG_PORT:-55432}
LB_PORT=${LB_PORT:-50050}
REPLICA_PORTS=${REPLICA_PORTS:-"50061 50062 50063"}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/platform-cluster-$PG_PORT}
FACE_PROCESSES=${FACE_PROCESSES:--1}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGDATA_DIR="$CLUSTER_DIR/pg"
PG_STANDBY_PORT=${PG_STANDBY_PORT:-}
STANDBY_DIR="$CLUSTER_DIR/pg-standby"
if [ -n "$PG_STANDBY_PORT" ]; then
  # libpq tries the hosts in turn and keeps the one that takes writes: after a failover, the promoted one.
  DB_URL="postgresql+psycopg://checkin:checkin@/checkin?host=127.0.0.1:${PG_PORT}&host=127.0.0.1:${PG_STANDBY_PORT}&target_session_attrs=read-write"
else
  DB_URL="postgresql+psycopg://checkin:checkin@127.0.0.1:${PG_PORT}/checkin"
fi

as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
health_port() { echo $(($1 + 100)); }
# Request threads per replica when MAX_WORKERS is unset. Measured here (load suite, 200 kiosks, ID-only):
# one replica 349-360 check-ins/s with 64 against 207-236 with 32; three replicas 306-340 with 32 or 24
# against 260-271 with 64 and 162-175 with 12 (docs/performance.md).
default_max_workers() { if [ "$(n_replicas)" -gt 1 ]; then echo 32; else echo 64; fi; }

refuse_old_primary() {
  # After a failover the old primary must stay down: started again it would be a second primary,
  # first in the replicas' URL, and check-ins would go to two databases.
  if [ -f "$CLUSTER_DIR/failed-over" ]; then
    echo "cluster.sh: $(cat "$CLUSTER_DIR/failed-over"); the old primary in $PGDATA_DIR stays down" >&2
    echo "cluster.sh: stop everything and remove $CLUSTER_DIR to start afresh" >&2
    exit 1
  fi
}

start_postgres() {
  refuse_old_primary
  mkdir -p "$CLUSTER_DIR"; chmod 755 "$CLUSTER_DIR"
  if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDATA_DIR"
    # Trust on loopback only: a development cluster. Production: docs/deploy.md.
    as_postgres "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
      -o "$(pg_options "$PG_PORT" "$PGDATA_DIR")" start >/dev/null
  fi
  local psql=("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtA)
  as_postgres "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='checkin'" | grep -q 1 \
    || as_postgres "${psql[@]}" -c "CREATE ROLE checkin LOGIN PASSWORD 'checkin'"
  as_postgres "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='checkin'" | grep -q 1 \
    || as_postgres "${psql[@]}" -c "CREATE DATABASE checkin OWNER checkin"
  if [ -n "$PG_STANDBY_PORT" ]; then start_standby; fi
}

pg_options() {  # $1: port, $2: socket directory
  echo "-p $1 -c listen_addresses=127.0.0.1 -k $2 -c max_connections=500"
}

start_standby() {
  local psql=("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtA)
  if [ ! -f "$STANDBY_DIR/PG_VERSION" ]; then
    mkdir -p "$STANDBY_DIR"; chmod 700 "$STANDBY_DIR"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$STANDBY_DIR"
    # A copy of the primary that streams its WAL (-R: standby.signal and primary_conninfo, naming it "standby").
    # --checkpoint=fast: the default spread checkpoint makes the copy wait minutes for nothing.
    as_postgres "$PG_BIN/pg_basebackup" -D "$STANDBY_DIR" -R -X stream --checkpoint=fast \
      -d "host=127.0.0.1 port=$PG_PORT user=postgres application_name=standby" \
      >"$CLUSTER_DIR/pg_basebackup.log" 2>&1 || { cat "$CLUSTER_DIR/pg_basebackup.log" >&2; exit 1; }
  fi
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" status >/dev/null 2>&1; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" -l "$STANDBY_DIR/server.log" -w -t 60 \
      -o "$(pg_options "$PG_STANDBY_PORT" "$STANDBY_DIR")" start >/dev/null
  fi
  # Set after the copy was taken, so a promoted standby does not wait for a standby of its own.
  as_postgres "${psql[@]}" -c "ALTER SYSTEM SET synchronous_standby_names = 'standby'" >/dev/null
  as_postgres "${psql[@]}" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 600); do  # up to 60 s until the standby streams and confirms synchronously
    if [ "$(as_postgres "${psql[@]}" -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'")" = sync ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "cluster.sh: the standby on port $PG_STANDBY_PORT did not become a synchronous standby" >&2
  exit 1
}

failover_postgres() {
  [ -n "$PG_STANDBY_PORT" ] || { echo "cluster.sh: failover-postgres needs PG_STANDBY_PORT" >&2; exit 2; }
  # The primary's machine lost: no shutdown checkpoint, no goodbye to its clients.
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null
  echo "failed over to the standby on port $PG_STANDBY_PORT at $(date -u +%FT%TZ)" > "$CLUSTER_DIR/failed-over"
  as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" -w -t 60 promote >/dev/null
}

data_key() {
  if [ -n "${PLATFORM_DATA_KEY:-}" ]; then echo "$PLATFORM_DATA_KEY"; return; fi
  [ -f "$CLUSTER_DIR/data_key" ] || .venv/bin/platform-server keygen > "$CLUSTER_DIR/data_key"
  cat "$CLUSTER_DIR/data_key"
}

start_replica() {  # $1: replica number (1-based)
  local n=$1 port; port=$(echo "$REPLICA_PORTS" | cut -d' ' -f"$n")
  [ -f "$CLUSTER_DIR/replica-$n.pid" ] && kill -0 "$(cat "$CLUSTER_DIR/replica-$n.pid")" 2>/dev/null && return
  # One machine, plaintext kiosks on loopback (development switch, logged loudly at start);
  # docs/deploy.md gives the TLS set-up of a real deployment.
  PLATFORM_DB_URL="$DB_URL" PLATFORM_DATA_KEY="$(data_key)" PLATFORM_SECURITY_INSECURE_KIOSKS="${INSECURE_KIOSKS:-1}" \
    PLATFORM_SERVER_HEALTH_LISTEN="127.0.0.1:$(health_port "$port")" PLATFORM_SERVER_DRAIN_S="${DRAIN_S:-3}" \
    PLATFORM_SERVER_MAX_WORKERS="${MAX_WORKERS:-$(default_max_workers)}" PLATFORM_DATABASE_POOL_SIZE="${POOL_SIZE:-0}" \
    PLATFORM_FACE_PROCESSES="$FACE_PROCESSES" PLATFORM_UWB_PORT="${UWB_PORT:-}" \
    setsid "$ROOT/.venv/bin/platform-server" serve --listen "127.0.0.1:$port" \
    >>"$CLUSTER_DIR/replica-$n.log" 2>&1 </dev/null &
  echo $! > "$CLUSTER_DIR/replica-$n.pid"
}

wait_healthy() {  # $1: replica number; up to 120 s (the first start migrates and loads face models)
  local port; port=$(echo "$REPLICA_PORTS" | cut -d' ' -f"$1")
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$(health_port "$port")/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "cluster.sh: replica $1 did not become healthy; see $CLUSTER_DIR/replica-$1.log" >&2; return 1
}

write_haproxy() {
  local servers="" n=1
  for port in $REPLICA_PORTS; do
    servers+="  server r$n 127.0.0.1:$port proto h2 check port $(health_port "$port") check-proto h1"$'\n'
    n=$((n + 1))
  done
  cat > "$CLUSTER_DIR/haproxy.cfg" <<CFG
global
  maxconn 4096
  stats socket $CLUSTER_DIR/haproxy.sock mode 600 level admin
  tune.bufsize 1048576        # a whole IdentifyExpert with face captures is buffered, so it can be retried

defaults
  mode http
  timeout connect 2s
  timeout client 1h           # organiser event streams stay open
  timeout server 1h
  timeout http-request 30s
  timeout check 2s            # a health check may be slow on a busy machine: that is not a failure
  retries 3
  option redispatch 1
  # A call that never reached a replica, or whose replica died before answering, goes to another one.
  # Safe: every kiosk call carries a request id and the platform answers a repeat with the first answer.
  retry-on conn-failure empty-response junk-response response-timeout 502 503

frontend kiosks
  bind 127.0.0.1:$LB_PORT proto h2
  default_backend replicas

backend replicas
  balance roundrobin          # per call: each HTTP/2 stream is balanced on its own
  option httpchk GET /health
  http-check expect status 200
  # Two failed checks (1 s) take a replica out: one slow answer on a loaded machine does not.
  default-server inter 500ms fall 2 rise 2
$servers
CFG
}

start_balancer() {
  write_haproxy
  if [ -f "$CLUSTER_DIR/haproxy.pid" ] && kill -0 "$(cat "$CLUSTER_DIR/haproxy.pid")" 2>/dev/null; then
    stop_pidfile "$CLUSTER_DIR/haproxy.pid" TERM  # a plain daemon does not reload: start afresh
  fi
  haproxy -D -f "$CLUSTER_DIR/haproxy.cfg" -p "$CLUSTER_DIR/haproxy.pid"
}

stop_pidfile() {  # $1: pid file, $2: signal; waits up to 30 s
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -"$2" "$pid" 2>/dev/null; then
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

n_replicas() { echo "$REPLICA_PORTS" | wc -w; }

case "${1:-start}" in
  start)
    command -v haproxy >/dev/null || { echo "cluster.sh: haproxy missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
    start_postgres
    PLATFORM_DB_URL="$DB_URL" PLATFORM_DATA_KEY="$(data_key)" .venv/bin/platform-server db upgrade >/dev/null
    for n in $(seq 1 "$(n_replicas)"); do start_replica "$n"; done
    for n in $(seq 1 "$(n_replicas)"); do wait_healthy "$n"; done
    start_balancer
    echo "cluster up: kiosks -> 127.0.0.1:$LB_PORT (HAProxy), replicas $REPLICA_PORTS, database $DB_URL"
    ;;
  stop)
    stop_pidfile "$CLUSTER_DIR/haproxy.pid" TERM
    for n in $(seq 1 "$(n_replicas)"); do stop_pidfile "$CLUSTER_DIR/replica-$n.pid" TERM; done
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
    if [ -f "$STANDBY_DIR/PG_VERSION" ]; then
      as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" -m fast stop >/dev/null 2>&1 || true
    fi
    ;;
  status)
    for n in $(seq 1 "$(n_replicas)"); do
      port=$(echo "$REPLICA_PORTS" | cut -d' ' -f"$n")
      echo "replica $n (:$port): $(curl -s "http://127.0.0.1:$(health_port "$port")/health" || echo down)"
    done
    ;;
  start-postgres) start_postgres ;;  # the database alone (a load run seeds it before the replicas start)
  restart-replica)  # drain (SIGTERM: 503, drain_s, grace), then start again and wait until healthy
    stop_pidfile "$CLUSTER_DIR/replica-$2.pid" TERM; start_replica "$2"; wait_healthy "$2" ;;
  kill-replica) stop_pidfile "$CLUSTER_DIR/replica-$2.pid" KILL ;;
  start-replica) start_replica "$2"; wait_healthy "$2" ;;
  restart-postgres) refuse_old_primary; as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w restart \
      -o "$(pg_options "$PG_PORT" "$PGDATA_DIR")" >/dev/null ;;
  failover-postgres) failover_postgres ;;
  url) echo "$DB_URL" ;;
  *) echo "usage: $0 start|stop|status|start-postgres|restart-replica N|kill-replica N|start-replica N|restart-postgres|failover-postgres|url" >&2; exit 2 ;;
esac
