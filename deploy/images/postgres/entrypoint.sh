#!/bin/sh
# Entry of hposteer/postgres (for trying hposteer only): initialise $PGDATA once, then run postgres.
set -eu
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
: "${POSTGRES_USER:=hposteer}"
: "${POSTGRES_DB:=hposteer}"
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
fi
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "hposteer-postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
  exit 2
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # PGDATA is a subdirectory of the mounted volume: a fresh file system's lost+found would make
  # initdb refuse the volume's root.
  echo "hposteer-postgres: initialising $PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  {
    echo "listen_addresses = '*'"
    echo "unix_socket_directories = '/tmp'"
    echo "max_connections = ${POSTGRES_MAX_CONNECTIONS:-200}"
  } >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # Create the owner and the database on a server that listens on no TCP port yet.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses='' -c unix_socket_directories=/tmp" --wait start >/dev/null
  psql --host=/tmp --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 --quiet \
    --set=user="$POSTGRES_USER" --set=password="$POSTGRES_PASSWORD" --set=db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop >/dev/null
  echo "hposteer-postgres: database $POSTGRES_DB owned by $POSTGRES_USER is ready"
fi
exec postgres -D "$PGDATA"
