#!/bin/sh
# PostgreSQL for the archive, on the official postgres image or on one with
# Debian's packages (support.Containerfile): creates the cluster on first
# start (user `roomring`, password $POSTGRES_PASSWORD, database `roomring`),
# then runs the server as the postgres user, listening on the network.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=/var/lib/postgresql/data/pgdata
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$data" /run/postgresql
chown -R postgres:postgres /var/lib/postgresql/data /run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?set a password}" >"$pw"
  chown postgres "$pw"
  as_pg "$bin/initdb" -D "$data" -U roomring --pwfile="$pw" -A scram-sha-256 -E UTF8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
  as_pg "$bin/postgres" --single -D "$data" postgres <<'SQL' >/dev/null
CREATE DATABASE roomring OWNER roomring;
SQL
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  "$bin/postgres" -D "$data" -c listen_addresses='*'
