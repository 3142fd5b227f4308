#!/usr/bin/env bash
# IM gateway load ("danmaku"): fan-out throughput/latency and idle memory per connection.
#
#   bench/danmaku.sh [fanout|idle|all]      (default: all)
#
# Starts the stand-alone gateway (im-core example `im_bench_server`: gateway + in-memory cache,
# bus and a minimal msg role) on 127.0.0.1, then drives it with `ws_load` spread over several
# processes. Everything stays on loopback and every phase is bounded in time.
# Knobs (environment): VIEWERS SENDERS RATE DURATION WARMUP PROCS LINGER_MS IDLE_CONNS HTTP_ADDR
# SERVER_WORKERS ACK_DELAY_MS. SERVER_CMD replaces the example server (it must serve /ws and /bench/tokens
# on HTTP_ADDR and print a line starting with READY).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
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
SERVER_WORKERS=${SERVER_WORKERS:-2}
ACK_DELAY_MS=${ACK_DELAY_MS:-200}

cargo build --release -q -p livehouse-bench --bin ws_load
cargo build --release -q -p livehouse-im-core --example im_bench_server
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

SERVER_PID=""
LOG=$(mktemp /tmp/danmaku-server.XXXXXX.log)
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

start_server() {
  local cmd=${SERVER_CMD:-target/release/examples/im_bench_server --http-addr $HTTP_ADDR \
    --tcp-addr $TCP_ADDR --linger-ms $LINGER_MS --workers $SERVER_WORKERS}
  $cmd >"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    grep -q '^READY' "$LOG" && { echo "server: $(grep '^READY' "$LOG")"; return 0; }
    sleep 0.1
  done
  echo "server did not start:" >&2
  cat "$LOG" >&2
  exit 1
}

# The load tool shares the 2 cores with the server. On loopback every server write wakes a
# client process; as SCHED_BATCH the client does not preempt the server on each wakeup (as if it
# ran on another machine). CLIENT_SCHED=normal turns this off.
LOAD=(target/release/ws_load)
if [[ "${CLIENT_SCHED:-batch}" == batch ]] && command -v chrt >/dev/null; then
  LOAD=(chrt -b 0 target/release/ws_load)
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

if [[ "$MODE" == idle || "$MODE" == all ]]; then
  echo "== idle: $IDLE_CONNS logged-in WebSocket connections over $PROCS processes"
  start_server
  "${LOAD[@]}" idle --http "$HTTP_ADDR" --conns "$IDLE_CONNS" --procs "$PROCS" \
    --server-pid "$SERVER_PID"
  stop_server
fi

if [[ "$MODE" == fanout || "$MODE" == all ]]; then
  echo "== fan-out: $VIEWERS viewers, $SENDERS senders x $RATE msg/s, ${DURATION}s (linger ${LINGER_MS} ms)"
  start_server
  "${LOAD[@]}" run --http "$HTTP_ADDR" --viewers "$VIEWERS" --senders "$SENDERS" \
    --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" --procs "$PROCS" \
    --ack-delay-ms "$ACK_DELAY_MS" --server-pid "$SERVER_PID"
  echo "server counters: $(curl -s "http://$HTTP_ADDR/bench/stats" 2>/dev/null || echo n/a)"
  stop_server
fi
