#!/usr/bin/env bash
# Starts the machine's PostgreSQL 15 cluster without systemd and makes the test role and database.
# Prints the SQLAlchemy URL on stdout. Usage: scripts/postgres.sh [start|url|stop]
set -euo pipefail
PG_VERSION=15
PG_CLUSTER=main
DB_USER=checkin
DB_PASS=checkin
DB_NAME=checkin_test
URL="postgresql+psycopg://${DB_USER}:${DB_PASS}@127.0.0.1:5432/${DB_NAME}"

as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

case "${1:-start}" in
  start)
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1,$2}' | grep -q "^${PG_VERSION} ${PG_CLUSTER}$"; then
      pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >/dev/null
    fi
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
      pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start >&2
    fi
    # Wait with a deadline for the server to accept connections.
    for _ in $(seq 1 100); do
      as_postgres pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 0.1
    done
    as_postgres pg_isready -q -h 127.0.0.1 -p 5432 || { echo "postgres.sh: server did not start" >&2; exit 1; }
    as_postgres psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='${DB_USER}'" | grep -q 1 \
      || as_postgres psql -qc "CREATE ROLE ${DB_USER} LOGIN CREATEDB PASSWORD '${DB_PASS}'" >&2
    as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname='${DB_NAME}'" | grep -q 1 \
      || as_postgres createdb -O "$DB_USER" "$DB_NAME" >&2
    echo "$URL"
    ;;
  url) echo "$URL" ;;
  stop) pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" stop ;;
  *) echo "usage: $0 [start|url|stop]" >&2; exit 2 ;;
esac
