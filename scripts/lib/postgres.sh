# Sourced by the scripts that need a real PostgreSQL (scripts/archive-pages,
# scripts/archive-load): Debian's package, a fresh cluster in a temporary
# directory on a free loopback port, run as the postgres user under root
# (it refuses root). Expects $work (a scratch directory) and `pids` from
# scripts/lib/cluster.sh, or sets them itself.

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$pg_bin/postgres" ] || { echo "postgresql is missing (apt-get install postgresql)" >&2; exit 1; }
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)

# `start_postgres PORT [SETTINGS...]`: creates the cluster on first call and
# starts the server; sets PG_URL and PG_PID. Settings are `-c name=value`.
start_postgres() {
  local port=$1
  shift
  if [ ! -d "$work/pg/data" ]; then
    mkdir -p "$work/pg"
    chmod o+x "$work"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
    "${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
  fi
  "${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg/data" -p "$port" -k "$work/pg" \
    -c listen_addresses=127.0.0.1 "$@" >>"$work/pg/log" 2>&1 &
  PG_PID=$!
  pids+=("$PG_PID")
  for _ in $(seq 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres && break; sleep 0.1; done
  PG_PORT=$port
  PG_URL=postgres://postgres@127.0.0.1:$port/postgres
}

# `stop_postgres`: a fast shutdown (SIGINT), waited for.
stop_postgres() {
  kill -INT "$PG_PID" 2>/dev/null || true
  while kill -0 "$PG_PID" 2>/dev/null; do sleep 0.1; done
}

# `pg_cpu`: CPU seconds the server has used: the postmaster, its live
# backends, and the backends that ended.
pg_cpu() {
  python3 - "$PG_PID" <<'PY'
import os, sys
root = sys.argv[1]; tick = os.sysconf("SC_CLK_TCK"); total = 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if p == root:
        total += sum(int(x) for x in f[11:15])
    elif f[1] == root:
        total += int(f[11]) + int(f[12])
print(total / tick)
PY
}

# `psql_at SQL`: the answer, unaligned, fields separated by spaces.
psql_at() {
  "${as_pg[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -At -F ' ' -c "$1" 2>/dev/null
}
