#!/usr/bin/env bash
# Tests nginx/edge.conf for real with Debian's nginx: the edge in front of a running livehouse
# with a live room, 50 LL-HLS clients (bench/src/bin/hls_clients.rs, blocking reloads as hls.js
# does) playing through it for 15 s, and the edge's own log telling which requests went to the
# origin. Passes when every client kept up and the origin was asked about once per part and
# once per blocking playlist URL (≤ 1.1 on average; 50 clients without the cache would be 50).
#
#   LIVEHOUSE_EDGE_ORIGIN=127.0.0.1:8080 LIVEHOUSE_EDGE_ROOM=<live room id> nginx/edge-test.sh
#
# CLIENTS / SECS override the load. Needs nginx, python3 (.ci/media.sh) and cargo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
origin="${LIVEHOUSE_EDGE_ORIGIN:?set LIVEHOUSE_EDGE_ORIGIN=host:port of livehouse}"
room="${LIVEHOUSE_EDGE_ROOM:?set LIVEHOUSE_EDGE_ROOM to a room with a publisher}"
clients="${CLIENTS:-50}"
secs="${SECS:-15}"
for bin in nginx python3; do
    command -v "$bin" >/dev/null || { echo "FAIL: $bin not installed (run .ci/media.sh)"; exit 1; }
done
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_WORK:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    echo "--- nginx error log"; tail -n 20 "$work/error.log" 2>/dev/null || true
    exit 1
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

(cd "$root" && cargo build -q -p livehouse-bench --bin hls_clients)
tool="${CARGO_TARGET_DIR:-$root/target}/debug/hls_clients"

# nginx/edge.conf as it is, with the cache, pid and logs in the work dir, the origin and a free
# port filled in, and an access log naming what went to the origin.
port="$(free_port)"
mkdir -p "$work/cache"
# nginx workers run as an unprivileged user when nginx starts as root.
chmod 755 "$work"
chmod 777 "$work/cache"
{
    echo "pid $work/nginx.pid;"
    echo "error_log $work/error.log warn;"
    echo "daemon off;"
    sed -e "s#/var/cache/nginx/livehouse-hls#$work/cache#" \
        -e "s#server 127.0.0.1:8080;#server $origin;#" \
        -e "s#listen 8090;#listen 127.0.0.1:$port;#" \
        -e "s#access_log off;#log_format edge '\$upstream_addr|\$upstream_cache_status|\$uri|\$args|\$status'; access_log $work/access.log edge;#" \
        -e "s#^worker_processes auto;#worker_processes 2;#" \
        "$here/edge.conf"
} >"$work/edge.conf"
nginx -t -p "$work" -c "$work/edge.conf" -e "$work/error.log" >"$work/t.log" 2>&1 \
    || { cat "$work/t.log"; fail "nginx rejected edge.conf"; }
echo "ok: nginx/edge.conf parses"
nginx -p "$work" -c "$work/edge.conf" -e "$work/error.log" &
pids+=($!)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/live/$room.m3u8" && break
    sleep 0.2
done
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/live/$room.m3u8")"
[ "$code" = 200 ] || fail "the edge answered $code for the playlist"

"$tool" --url "http://127.0.0.1:$port/live/$room.m3u8" --clients "$clients" --duration "$secs" \
    --connect-rate 100 >"$work/load.json" || fail "hls_clients failed"
cat "$work/load.json"
python3 - "$work/access.log" "$work/load.json" "$clients" <<'PY'
import json, sys, collections
log, load, clients = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
origin = collections.Counter()
asked = collections.Counter()
for line in open(log):
    upstream, cache, uri, args, status = line.rstrip("\n").split("|")
    key = uri + ("?" + args if args and args != "-" else "")
    asked[key] += 1
    if upstream not in ("-", ""):
        origin[key] += 1
def ratio(pred):
    keys = [k for k in asked if pred(k)]
    fetched = sum(origin[k] for k in keys)
    return len(keys), sum(asked[k] for k in keys), fetched
parts = ratio(lambda k: k.endswith(".m4s") and k.count(".") == 2)
blocking = ratio(lambda k: "_HLS_msn=" in k)
print(f"parts: {parts[0]} distinct, {parts[1]} client requests, {parts[2]} origin fetches "
      f"({parts[2] / max(parts[0], 1):.3f} per part)")
print(f"blocking playlists: {blocking[0]} distinct, {blocking[1]} client requests, {blocking[2]} origin fetches "
      f"({blocking[2] / max(blocking[0], 1):.3f} per URL)")
ok = True
if not load["all_kept_up"]:
    print(f"FAIL: {load['failed']} of {clients} clients did not keep up: {load['errors']}"); ok = False
if parts[0] < 10:
    print("FAIL: too few parts seen"); ok = False
if parts[2] / max(parts[0], 1) > 1.1:
    print("FAIL: more than ~1 origin fetch per part"); ok = False
if blocking[2] / max(blocking[0], 1) > 1.1:
    print("FAIL: more than ~1 origin fetch per blocking playlist"); ok = False
if parts[1] < parts[0] * clients * 0.9:
    print("FAIL: the clients did not fetch every part"); ok = False
sys.exit(0 if ok else 1)
PY
echo "PASS: nginx HLS edge"
