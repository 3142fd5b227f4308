#!/usr/bin/env bash
# Benchmark: GET /living/list against GET /healthz (a trivial route) on the same server, same run.
# Starts the release `livehouse` on embedded defaults in a temporary data dir, fills the normal
# room list with ROOMS live rooms, then drives each route with wrk and prints requests/s and
# latency percentiles side by side. Goal (issue): list ≥ 80 % of the trivial route's throughput.
#
#   bench/list.sh                     # defaults below
#   ROOMS=200 DURATION=20 CONNS=128 bench/list.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOMS=${ROOMS:-100}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
PAGE_SIZE=${PAGE_SIZE:-20}
PORT=${PORT:-18180}
BASE=http://127.0.0.1:$PORT
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --bin livehouse -q
DATA=$(mktemp -d)
RUST_LOG=warn target/release/livehouse --http-addr 127.0.0.1:$PORT --rtmp-addr 127.0.0.1:0 \
    --im-tcp-addr 127.0.0.1:0 --data-dir "$DATA" --rate-signup-per-ip 0 >"$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do curl -sf $BASE/healthz >/dev/null && break; sleep 0.1; done

echo "filling the list with $ROOMS rooms..."
for i in $(seq 1 "$ROOMS"); do
    token=$(curl -sf -X POST $BASE/user/register -d "username=bench$i&password=benchpass" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
    curl -sf -X POST $BASE/living/startingLiving -H "Authorization: Bearer $token" \
        -d "type=1&roomName=Bench+room+$i&covertImg=https://img.example/$i.jpg" >/dev/null
done
for _ in $(seq 1 50); do
    n=$(curl -sf "$BASE/living/list?type=1&page=1&pageSize=100" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["list"]))')
    [ "$n" -ge "$((ROOMS < 100 ? ROOMS : 100))" ] && break
    sleep 0.1
done

run() { # name url -> "rps p50 p99"
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$2" >"$DATA/$1.txt"
    rps=$(awk '/Requests\/sec/ {print $2}' "$DATA/$1.txt")
    p50=$(awk '$1=="50%" {print $2}' "$DATA/$1.txt")
    p99=$(awk '$1=="99%" {print $2}' "$DATA/$1.txt")
    echo "$rps $p50 $p99"
}
LIST_URL="$BASE/living/list?type=1&page=1&pageSize=$PAGE_SIZE"
wrk -t1 -c8 -d2s "$BASE/healthz" >/dev/null   # warm-up
read -r t_rps t_p50 t_p99 < <(run trivial "$BASE/healthz")
read -r l_rps l_p50 l_p99 < <(run list "$LIST_URL")
bytes=$(curl -s "$LIST_URL" | wc -c)
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t$THREADS -c$CONNS -d${DURATION}s; $ROOMS rooms, pageSize=$PAGE_SIZE ($bytes bytes/response)"
printf "%-28s %12s %10s %10s\n" route "requests/s" p50 p99
printf "%-28s %12s %10s %10s\n" "GET /healthz" "$t_rps" "$t_p50" "$t_p99"
printf "%-28s %12s %10s %10s\n" "GET /living/list" "$l_rps" "$l_p50" "$l_p99"
python3 -c "print(f'list / trivial throughput: {100*$l_rps/$t_rps:.1f} % (goal >= 80 %)')"
