#!/usr/bin/env bash
# IM gateway load ("danmaku"): fan-out throughput/latency and idle memory per connection.
#
#   bench/danmaku.sh [fanout|idle|floor|moderate|recover|all]      (default: all)
#
# moderate: 1,000 viewers x 30 msg/s, every delivery ACKed at once (the case compared with
# socket.io in docs/benchmarks.md).
# recover: VIEWERS viewers drop, GAP messages are said, they reconnect within SPREAD seconds and
# recover the gap (`recover_load`): time until all are live again, gaps (must be 0), recovery
# time p50/p99.
# floor: what one loopback TCP write and read cost on this machine (`loopback_cost`), and the
# least CPU any gateway needs for one fan-out round to VIEWERS (one write per connection).
#
# SERVER=livehouse (default): the real all-in-one binary (`target/release/livehouse`: api, living,
# msg, im-core and media in one process) on the local Redis (REDIS_URL, a fresh cache prefix per
# server start, keys deleted afterwards) with the in-process bus and a throw-away SQLite data dir.
# `ws_load` writes the IM tokens into that Redis as the api would, and waits until the presence
# store there counts every connection in the room before it measures.
# The server runs on 127.0.0.1 and is driven by `ws_load` spread over several processes.
# Everything stays on loopback and every phase is bounded in time.
# Knobs (environment): VIEWERS SENDERS RATE DURATION WARMUP PROCS LINGER_MS IDLE_CONNS
# HTTP_ADDR TCP_ADDR REDIS_URL ACK_DELAY_MS CLIENT_SCHED; fanout with moderation rules:
# RULES_WORDS (blocked words in the room, e.g. 1000) and RULES_MUTES (muted viewers, e.g. 500).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
SERVER=livehouse
VIEWERS=${VIEWERS:-10000}
SENDERS=${SENDERS:-11}
RATE=${RATE:-5}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
PROCS=${PROCS:-4}
LINGER_MS=${LINGER_MS:-40}
IDLE_CONNS=${IDLE_CONNS:-15000}
HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:28080}
TCP_ADDR=${TCP_ADDR:-127.0.0.1:28085}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ACK_DELAY_MS=${ACK_DELAY_MS:-200}

cargo build --release -q -p livehouse-bench --bin ws_load --bin loopback_cost --bin recover_load
cargo build --release -q --bin livehouse
command -v redis-cli >/dev/null || { echo "redis-cli is needed" >&2; exit 2; }
redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "no Redis at $REDIS_URL" >&2; exit 2; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

SERVER_PID=""
PREFIX=""
DATA_DIR=""
LOG=$(mktemp /tmp/danmaku-server.XXXXXX.log)
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [[ -n "$PREFIX" ]]; then
    # This run's keys only (the prefix is fresh for every server start).
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" |
      xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null || true
    PREFIX=""
  fi
  if [[ -n "$DATA_DIR" ]]; then
    rm -rf "$DATA_DIR"
    DATA_DIR=""
  fi
}
trap stop_server EXIT

start_server() {
  PREFIX="bench:$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'):"
  DATA_DIR=$(mktemp -d /tmp/danmaku-data.XXXXXX)
  target/release/livehouse --http-addr "$HTTP_ADDR" --im-tcp-addr "$TCP_ADDR" \
    --rtmp-addr 127.0.0.1:0 --data-dir "$DATA_DIR" --redis-url "$REDIS_URL" \
    --cache-prefix "$PREFIX" --im-heartbeat-secs 30 --im-fanout-linger-ms "$LINGER_MS" \
    >"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if curl -fs "http://$HTTP_ADDR/healthz" >/dev/null 2>&1; then
      echo "server: livehouse pid $SERVER_PID, cache prefix $PREFIX, linger ${LINGER_MS} ms"
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start:" >&2
  cat "$LOG" >&2
  exit 1
}

# Token source for ws_load: the server's Redis, written as the api would.
token_args() {
  echo "--redis-url=$REDIS_URL --cache-prefix=$PREFIX"
}

# The local Redis server's pid, so the run also reports the cache's CPU (it shares the cores).
cache_pid_args() {
  if [[ "$SERVER" == livehouse ]]; then
    local pid
    pid=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | awk -F: '/^process_id:/ {print $2}' | tr -d '\r')
    [[ -n "$pid" && -r /proc/$pid/stat ]] && echo "--cache-pid=$pid"
  fi
  return 0
}

# Server-side counters after a run: the gateway gauges on /metrics (refreshed every 5 s; the
# write-lag p99 is over the whole server life).
server_counters() {
  sleep 5
  curl -s "http://$HTTP_ADDR/metrics" 2>/dev/null | grep '^livehouse_im_' | tr '\n' ' ' || echo n/a
  echo
}

# The load tool shares the 2 cores with the server. On loopback every server write wakes a
# client process; as SCHED_BATCH the client does not preempt the server on each wakeup (as if it
# ran on another machine). CLIENT_SCHED=normal turns this off.
LOAD=(target/release/ws_load)
if [[ "${CLIENT_SCHED:-batch}" == batch ]] && command -v chrt >/dev/null; then
  LOAD=(chrt -b 0 target/release/ws_load)
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

if [[ "$MODE" == floor || "$MODE" == all ]]; then
  echo "== floor: loopback TCP write/read cost (2,000 and 9,000 connections)"
  target/release/loopback_cost --pairs 2000 --rounds 50 --viewers "$VIEWERS"
  target/release/loopback_cost --pairs 9000 --rounds 20 --viewers "$VIEWERS"
fi

if [[ "$MODE" == idle || "$MODE" == all ]]; then
  echo "== idle: $IDLE_CONNS logged-in WebSocket connections over $PROCS processes"
  start_server
  # shellcheck disable=SC2046
  "${LOAD[@]}" idle --http "$HTTP_ADDR" --conns "$IDLE_CONNS" --procs "$PROCS" \
    --server-pid "$SERVER_PID" $(token_args)
  stop_server
fi

if [[ "$MODE" == fanout || "$MODE" == all ]]; then
  RULES_WORDS=${RULES_WORDS:-0}
  RULES_MUTES=${RULES_MUTES:-0}
  echo "== fan-out: $VIEWERS viewers, $SENDERS senders x $RATE msg/s, ${DURATION}s (linger ${LINGER_MS} ms), rules: $RULES_WORDS words, $RULES_MUTES mutes"
  start_server
  # shellcheck disable=SC2046
  "${LOAD[@]}" run --http "$HTTP_ADDR" --viewers "$VIEWERS" --senders "$SENDERS" \
    --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" --procs "$PROCS" \
    --ack-delay-ms "$ACK_DELAY_MS" --server-pid "$SERVER_PID" \
    --rules-words "$RULES_WORDS" --rules-mutes "$RULES_MUTES" $(token_args) $(cache_pid_args)
  echo "server counters: $(server_counters)"
  stop_server
fi

if [[ "$MODE" == moderate ]]; then
  echo "== moderate: 1000 viewers, 6 senders x 5 msg/s, ACK at once, ${DURATION}s (linger 0)"
  LINGER_MS=0 start_server
  # shellcheck disable=SC2046
  "${LOAD[@]}" run --http "$HTTP_ADDR" --viewers 1000 --senders 6 --rate 5 \
    --duration "$DURATION" --warmup "$WARMUP" --procs 2 --ack-delay-ms 0 \
    --server-pid "$SERVER_PID" $(token_args) $(cache_pid_args)
  echo "server counters: $(server_counters)"
  stop_server
fi

if [[ "$MODE" == recover || "$MODE" == all ]]; then
  GAP=${GAP:-100}
  SPREAD=${SPREAD:-10}
  RVIEWERS=${RVIEWERS:-$VIEWERS}
  echo "== recover: $RVIEWERS viewers drop, $GAP messages, reconnect within ${SPREAD}s"
  start_server
  target/release/recover_load --http "$HTTP_ADDR" --viewers "$RVIEWERS" --gap "$GAP" \
    --spread-secs "$SPREAD" --server-pid "$SERVER_PID" --redis-url "$REDIS_URL" \
    --cache-prefix "$PREFIX"
  echo "server counters: $(server_counters)"
  stop_server
fi
