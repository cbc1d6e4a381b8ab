# Sourced by the scripts that run a cluster of roomring processes on this
# machine (scripts/hot-room, scripts/gateway-restart): a real redis-server
# and node and gateway processes on free loopback ports, each started and
# waited for by its `ready` line. Expects $B (the roomring binary); sets
# $work, $R (the Redis URL) and $S (the cluster secret flag), and stops every
# process it started on exit.

command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pids=()
cluster_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cluster_cleanup EXIT

# `free_ports N`: N free loopback ports.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# `start_redis PORT`: a redis-server that keeps nothing on disk.
start_redis() {
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && break; sleep 0.1; done
  R=redis://127.0.0.1:$1
  S=--cluster-secret=process-cluster-secret-of-32-bytes-at-least
}

# `start ROLE ID PORT [FLAGS...]`: starts a member, waits for its ready line
# and prints its pid.
start() {
  local role=$1 id=$2 port=$3
  shift 3
  : >"$work/$id.log"
  "$B" "$role" --id "$id" --listen "127.0.0.1:$port" --coordinator "$R" "$S" --auth none "$@" \
    >>"$work/$id.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q '^ready' "$work/$id.log" && break; sleep 0.1; done
  grep -q '^ready' "$work/$id.log" || { echo "$id did not start:" >&2; cat "$work/$id.log" >&2; exit 1; }
  echo "$pid"
}

# `cpu PID...`: CPU seconds the processes have used.
cpu() {
  python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK"); total = 0
for p in sys.argv[1:]:
    try:
        if not p: continue
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])
    except OSError:
        pass
print(total / tick)
PY
}

# `lease_lost`: whether a node's log tells of a lost lease.
lease_lost() {
  grep -lqi "lease lost\|lost its lease" "$work"/n*.log 2>/dev/null
}
