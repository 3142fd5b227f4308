#!/usr/bin/env bash
# Makes a Kafka-compatible broker (tansu, in-memory storage) answer on 127.0.0.1:9092.
# Idempotent: installs tansu into the cache dir when missing, starts it in the background only
# when nothing listens on the port yet, then waits (bounded) until the port accepts connections.
# Exports nothing: .ci/run sets LIVEHOUSE_TEST_KAFKA_BROKERS=127.0.0.1:9092.
set -euo pipefail

CACHE="${LIVEHOUSE_CACHE_DIR:-/root/.cache/livehouse}"
ROOT="$CACHE/tansu"
TANSU="$ROOT/bin/tansu"
HOST=127.0.0.1
PORT="${LIVEHOUSE_KAFKA_PORT:-9092}"
DEADLINE_SECS="${LIVEHOUSE_KAFKA_DEADLINE_SECS:-60}"
LOG="$CACHE/tansu.log"

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

mkdir -p "$CACHE"
if port_open; then
    echo "kafka.sh: a broker already listens on $HOST:$PORT"
    exit 0
fi

if [ ! -x "$TANSU" ]; then
    echo "kafka.sh: installing tansu into $ROOT (takes ~10 min on 2 cores)"
    CARGO_TARGET_DIR="$CACHE/tansu-build" nice -n 10 \
        cargo install tansu --features dynostore --root "$ROOT"
fi

echo "kafka.sh: starting tansu on $HOST:$PORT (log: $LOG)"
nohup "$TANSU" broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine memory://tansu/ >"$LOG" 2>&1 </dev/null &
PID=$!

end=$((SECONDS + DEADLINE_SECS))
until port_open; do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "kafka.sh: tansu exited; last log lines:" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$end" ]; then
        echo "kafka.sh: tansu did not accept connections within ${DEADLINE_SECS}s" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    sleep 0.2
done
echo "kafka.sh: tansu ready on $HOST:$PORT (pid $PID)"
