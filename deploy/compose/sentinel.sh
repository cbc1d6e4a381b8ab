#!/bin/sh
# Starts one Sentinel of compose.yaml's Redis set; $1 is its own service name
# (sentinel1, sentinel2 or sentinel3). Sentinel rewrites its config file as it
# learns, so the file is written afresh at every start, naming the primary
# that is current: the one another Sentinel names, else the Redis that reports
# itself a primary, else `redis` (a new set). The Sentinel's id comes from its
# name, so a restarted Sentinel is the same member to its peers.
set -eu
me=$1

primary=
for peer in sentinel1 sentinel2 sentinel3; do
  [ "$peer" = "$me" ] && continue
  primary=$(timeout 2 redis-cli -h "$peer" -p 26379 --raw \
    sentinel get-master-addr-by-name roomring 2>/dev/null | head -n 1) || primary=
  case $primary in ''|*' '*) primary= ;; *) break ;; esac
done
if [ -z "$primary" ]; then
  for server in redis redis-replica; do
    if timeout 2 redis-cli -h "$server" info replication 2>/dev/null | grep -q '^role:master'; then
      primary=$server
      break
    fi
  done
fi
primary=${primary:-redis}

# Sentinel resolves the primary's name when it reads its config.
until getent hosts "$primary" >/dev/null; do
  echo "waiting for $primary to resolve"
  sleep 1
done

cat >/data/sentinel.conf <<EOF
port 26379
protected-mode no
sentinel myid $(printf %s "$me" | sha1sum | cut -c1-40)
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel monitor roomring $primary 6379 2
sentinel down-after-milliseconds roomring 1000
sentinel failover-timeout roomring 5000
EOF
echo "monitoring roomring at $primary:6379"
# The official image's entrypoint hands /data to the redis user and drops to
# it; an image without one (deploy/compose/support.Containerfile) runs the
# Sentinel directly.
if command -v docker-entrypoint.sh >/dev/null; then
  exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel
fi
exec redis-sentinel /data/sentinel.conf
