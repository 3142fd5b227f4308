#!/usr/bin/env bash
# Starts the distributed topology on this machine, for a person to try: `api`, `living`, `msg`,
# two `im-core` gateways and `media`, each its own `livehouse` process, on MariaDB + Redis + a
# Kafka-compatible broker (tansu, started by .ci/kafka.sh when nothing listens on 9092).
# Killing one process (kill -9 a gateway, say) leaves the others running: its viewers reconnect to
# the other gateway and recover what they missed; the script says how to start it again.
# Ctrl-C stops the processes (the backends keep running).
#
# Ports (BASE = LIVEHOUSE_CLUSTER_BASE_PORT, default 8080): api BASE, living BASE+1, msg BASE+2,
# media BASE+3 (RTMP 1935), gateway A HTTP/WebSocket BASE+10 and TCP BASE+5, gateway B BASE+11
# and BASE+6.
#
#   scripts/cluster.sh                 # build, then start; open http://127.0.0.1:8080
#
# Environment (defaults in brackets): LIVEHOUSE_MYSQL [mysql://root@127.0.0.1:3306],
# LIVEHOUSE_CLUSTER_DB [livehouse_cluster], LIVEHOUSE_REDIS_URL [redis://127.0.0.1:6379],
# LIVEHOUSE_KAFKA_BROKERS [127.0.0.1:9092], LIVEHOUSE_IM_HEARTBEAT_SECS [30],
# LIVEHOUSE_CLUSTER_DIR [./data/cluster] (logs and data dirs), LIVEHOUSE_BIN [target/debug/livehouse].
set -euo pipefail
cd "$(dirname "$0")/.."

MYSQL="${LIVEHOUSE_MYSQL:-mysql://root@127.0.0.1:3306}"
DB="${LIVEHOUSE_CLUSTER_DB:-livehouse_cluster}"
REDIS="${LIVEHOUSE_REDIS_URL:-redis://127.0.0.1:6379}"
KAFKA="${LIVEHOUSE_KAFKA_BROKERS:-127.0.0.1:9092}"
DIR="${LIVEHOUSE_CLUSTER_DIR:-./data/cluster}"
BIN="${LIVEHOUSE_BIN:-target/debug/livehouse}"
HOST=127.0.0.1
BASE="${LIVEHOUSE_CLUSTER_BASE_PORT:-8080}"
RTMP_PORT="${LIVEHOUSE_CLUSTER_RTMP_PORT:-1935}"

need() { command -v "$1" >/dev/null || { echo "cluster.sh: $1 is needed ($2)" >&2; exit 1; }; }
need mysql "apt-get install mariadb-client"
need redis-cli "apt-get install redis-tools"

# Backends: MariaDB and Redis must run; the broker is started if missing.
mysql_host=${MYSQL#mysql://}; mysql_user=${mysql_host%@*}; mysql_host=${mysql_host#*@}
mysql_port=${mysql_host#*:}; mysql_host=${mysql_host%:*}
[ "$mysql_user" = "$MYSQL" ] && mysql_user=root
mysql -u"${mysql_user%%:*}" -h"$mysql_host" -P"$mysql_port" -e "CREATE DATABASE IF NOT EXISTS \`$DB\`" \
    || { echo "cluster.sh: MariaDB at $MYSQL is not reachable" >&2; exit 1; }
redis-cli -u "$REDIS" ping >/dev/null || { echo "cluster.sh: Redis at $REDIS is not reachable" >&2; exit 1; }
if [ "$KAFKA" = "127.0.0.1:9092" ]; then bash .ci/kafka.sh; fi

if [ -z "${LIVEHOUSE_BIN:-}" ]; then cargo build --bin livehouse; fi
mkdir -p "$DIR"

export LIVEHOUSE_DATABASE_URL="$MYSQL/$DB"
export LIVEHOUSE_REDIS_URL="$REDIS"
export LIVEHOUSE_KAFKA_BROKERS="$KAFKA"
export LIVEHOUSE_OPEN_STREAMING="${LIVEHOUSE_OPEN_STREAMING:-true}"
export LIVEHOUSE_PUBLIC_HOST="${LIVEHOUSE_PUBLIC_HOST:-$HOST}"
# One secret for the deployment, kept between runs.
if [ -z "${LIVEHOUSE_JWT_SECRET:-}" ]; then
    [ -f "$DIR/jwt.secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/jwt.secret"
    LIVEHOUSE_JWT_SECRET=$(cat "$DIR/jwt.secret")
    export LIVEHOUSE_JWT_SECRET
fi

pids=()
names=()
cmds=()
stop() {
    trap - INT TERM EXIT
    echo; echo "cluster.sh: stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    exit 0
}
trap stop INT TERM EXIT

# start NAME ROLE HTTP_PORT [flags…]
start() {
    local name=$1 role=$2 port=$3; shift 3
    mkdir -p "$DIR/$name"
    "$BIN" "$role" --http-addr "$HOST:$port" --data-dir "$DIR/$name" "$@" >>"$DIR/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
    cmds+=("$BIN $role --http-addr $HOST:$port --data-dir $DIR/$name $* >>$DIR/$name.log 2>&1 &")
    echo "  $name ($role) on http://$HOST:$port  log: $DIR/$name.log"
}

wait_http() {
    local name=$1 port=$2 end=$((SECONDS + 60))
    until curl -fsS "http://$HOST:$port/healthz" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$end" ]; then
            echo "cluster.sh: $name did not come up; last log lines:" >&2
            tail -20 "$DIR/$name.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

echo "cluster.sh: starting (database $LIVEHOUSE_DATABASE_URL, redis $REDIS, kafka $KAFKA)"
start api api "$BASE" --rtmp-addr "$HOST:$RTMP_PORT" --play-base-url "http://$HOST:$((BASE + 3))"
wait_http api "$BASE"  # the api migrates the schema before the others use it
start living living $((BASE + 1))
start msg msg $((BASE + 2))
start media media $((BASE + 3)) --rtmp-addr "$HOST:$RTMP_PORT"
start im-a im-core $((BASE + 10)) --im-tcp-addr "$HOST:$((BASE + 5))" --gateway-id im-a
start im-b im-core $((BASE + 11)) --im-tcp-addr "$HOST:$((BASE + 6))" --gateway-id im-b
for pair in living:$((BASE + 1)) msg:$((BASE + 2)) media:$((BASE + 3)) im-a:$((BASE + 10)) \
    im-b:$((BASE + 11)); do
    wait_http "${pair%:*}" "${pair#*:}"
done

cat <<EOT

Ready. Open http://$HOST:$BASE (sign up, start a room, open it in two browsers: each viewer is
sent to a live gateway, A or B, by load). Push video to rtmp://$HOST:$RTMP_PORT/live/<streamKey>;
the media server plays it at http://$HOST:$((BASE + 3))/live/<roomId>.flv.
Kill one gateway (kill -9 ${pids[4]} for im-a): its viewers move to the other gateway and get
the messages they missed; the other processes keep running.
Ctrl-C stops everything.
EOT
# Report each process that exits; keep the rest running until Ctrl-C (or until none is left).
while [ "${#pids[@]}" -gt 0 ]; do
    gone=""
    wait -n -p gone "${pids[@]}" 2>/dev/null || true
    [ -n "$gone" ] || break
    for i in "${!pids[@]}"; do
        if [ "${pids[$i]}" = "$gone" ]; then
            echo "cluster.sh: ${names[$i]} (pid $gone) exited; the others keep running."
            echo "  to start it again (same environment): ${cmds[$i]}"
            unset 'pids[i]' 'names[i]' 'cmds[i]'
            pids=("${pids[@]}"); names=("${names[@]}"); cmds=("${cmds[@]}")
            break
        fi
    done
done
echo "cluster.sh: no process left; logs in $DIR"
