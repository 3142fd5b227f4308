#!/usr/bin/env bash
# Tests the RTMP part of nginx/ for real with Debian's nginx + libnginx-mod-rtmp:
# on_publish against a running HTTP server implementing the livehouse nginx hooks, an ffmpeg
# push with the stream key, an ffprobe pull over RTMP by room id, a refused wrong key, the key
# not being playable, a refused second publisher, on_publish_done, and closing the room.
# nginx's callbacks go through a small recording proxy (python3), so every refusal is asserted
# by the hooks' own answer (403), not just by ffmpeg failing.
#
# By default it starts `media/examples/media_server` (key table: KEY=ROOM). To test against the
# livehouse api (or another server implementing POST /media/on_publish|on_update|
# on_publish_done plus livehouse's /living/anchorConfig and /living/closeLiving), set
#   LIVEHOUSE_NGINX_API=http://127.0.0.1:8080 LIVEHOUSE_NGINX_KEY=<key of a live room>
#   LIVEHOUSE_NGINX_ROOM=<its room id> LIVEHOUSE_NGINX_TOKEN=<the anchor's session token>
#   LIVEHOUSE_NGINX_SECRET=<its --media-callback-secret>
# Needs: nginx, /usr/lib/nginx/modules/ngx_rtmp_module.so, ffmpeg, ffprobe (.ci/media.sh).
# Every wait is bounded; every process started here is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
module="${LIVEHOUSE_NGINX_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}"
for bin in nginx ffmpeg ffprobe python3 curl; do
    command -v "$bin" >/dev/null || { echo "FAIL: $bin not installed (run .ci/media.sh)"; exit 1; }
done
[ -f "$module" ] || { echo "FAIL: $module missing (apt-get install libnginx-mod-rtmp)"; exit 1; }

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
    echo "--- nginx error log"; tail -n 30 "$work/error.log" 2>/dev/null || true
    echo "--- hooks server log"; tail -n 30 "$work/server.log" 2>/dev/null || true
    echo "--- hook answers"; cat "$work/hooks.log" 2>/dev/null || true
    exit 1
}

# Waits up to $1 seconds for the command in "${@:2}" to succeed.
until_ok() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# 0. nginx.conf as a whole parses with Debian's nginx once the directives of
#    nginx-http-flv-module (flv_live, and the http-flv-only lines of rtmp.conf) are taken out.
mkdir -p "$work/full"
grep -v '# http-flv-only' "$here/rtmp.conf" >"$work/full/rtmp.conf"
{
    echo "load_module $module;"
    echo "pid $work/full/nginx.pid;"
    sed -e "s#/etc/nginx/livehouse/rtmp.conf#$work/full/rtmp.conf#" -e '/flv_live on;/d' "$here/nginx.conf"
} >"$work/full/nginx.conf"
nginx -t -p "$work/full" -c "$work/full/nginx.conf" -e "$work/full/error.log" >"$work/full/t.log" 2>&1 \
    || { cat "$work/full/t.log"; fail "nginx/nginx.conf does not parse"; }
echo "ok: nginx/nginx.conf parses (without the http-flv directives)"

# 1. The api side.
if [ -n "${LIVEHOUSE_NGINX_API:-}" ]; then
    api="$LIVEHOUSE_NGINX_API"
    key="${LIVEHOUSE_NGINX_KEY:?set LIVEHOUSE_NGINX_KEY}"
    room="${LIVEHOUSE_NGINX_ROOM:?set LIVEHOUSE_NGINX_ROOM}"
    token="${LIVEHOUSE_NGINX_TOKEN:?set LIVEHOUSE_NGINX_TOKEN (the anchor session token)}"
    secret="${LIVEHOUSE_NGINX_SECRET:?set LIVEHOUSE_NGINX_SECRET}"
else
    key="nginxtestkey0001"
    room=42
    secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    (cd "$root" && cargo build -q -p livehouse-media --example media_server)
    "${CARGO_TARGET_DIR:-$root/target}/debug/examples/media_server" --rtmp-addr 127.0.0.1:0 \
        --http-addr 127.0.0.1:0 --callback-secret "$secret" \
        --key "$key=$room" >"$work/server.out" 2>"$work/server.log" &
    pids+=($!)
    until_ok 10 grep -q '^HTTP ' "$work/server.out" || fail "hooks server did not start"
    api="http://$(awk '/^HTTP /{print $2}' "$work/server.out")"
fi
echo "hooks: $api/media/on_publish (key ${key:0:4}…, room $room)"

# The recording proxy: forwards nginx's callbacks to $api unchanged (redirects included) and
# writes one line per call to hooks.log: "<path> name=<stream name> -> <status>".
cat >"$work/proxy.py" <<'PY'
import http.client, http.server, sys, urllib.parse
up = urllib.parse.urlsplit(sys.argv[1])
log = open(sys.argv[2], "a", buffering=1)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        c = http.client.HTTPConnection(up.hostname, up.port, timeout=15)
        skip = ("host", "connection", "content-length")
        c.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() not in skip})
        r = c.getresponse()
        data = r.read()
        name = urllib.parse.parse_qs(body.decode("latin-1")).get("name", [""])[0]
        log.write(f"{self.path.split('?')[0]} name={name} -> {r.status}\n")
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
: >"$work/hooks.log"
python3 "$work/proxy.py" "$api" "$work/hooks.log" >"$work/proxy.out" 2>"$work/proxy.err" &
pids+=($!)
until_ok 10 grep -q '^[0-9]' "$work/proxy.out" || fail "the recording proxy did not start"
hooks="http://127.0.0.1:$(head -n1 "$work/proxy.out")"
# How many callbacks of path $1 for stream name $2 were answered $3.
answered() { grep -c -F "$1 name=$2 -> $3" "$work/hooks.log" || true; }
# The room's streaming flag as the api shows it (livehouse api only).
streaming() {
    curl -sf -X POST -H 'content-type: application/json' -d "{\"roomId\":$room}" \
        "$api/living/anchorConfig" | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["data"]["streaming"]).lower())'
}
streaming_is() { [ "$(streaming)" = "$1" ]; }

# 2. nginx with nginx/rtmp.conf minus the http-flv-only lines, on a free port, calling $api.
port="$(free_port)"
grep -v '# http-flv-only' "$here/rtmp.conf" \
    | sed -e "s#http://127.0.0.1:8080/media/#$hooks/media/#" -e "s#listen 1935;#listen 127.0.0.1:$port;#" \
        -e "s#secret=MEDIA_CALLBACK_SECRET#secret=$secret#" \
    >"$work/rtmp.conf"
cat >"$work/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log info;
events { worker_connections 256; }
include $work/rtmp.conf;
CONF
nginx -t -p "$work" -c "$work/nginx.conf" -e "$work/error.log" 2>"$work/nginx-t.log" \
    || { cat "$work/nginx-t.log"; fail "nginx rejected the generated configuration"; }
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
pids+=($!)
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || fail "nginx did not listen on $port"
rtmp="rtmp://127.0.0.1:$port/live"

push() { # $1 = stream name, $2 = seconds
    timeout $(( $2 + 20 )) ffmpeg -hide_banner -loglevel error -nostdin -re \
        -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -t "$2" \
        -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -c:a aac -f flv "$rtmp/$1"
}

# 2b. The callbacks refuse a caller without the secret (a stranger on the api's port).
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST --data "app=live&name=$key&addr=1.2.3.4&clientid=1" \
    "$api/media/on_publish_done")"
[ "$code" = 403 ] || fail "on_publish_done without the secret answered $code, not 403"
grep -q 'secret=MEDIA_CALLBACK_SECRET' "$work/rtmp.conf" && fail "the placeholder secret was not replaced"
echo "ok: the callbacks refuse a caller without the secret"

# 3. The publisher with the right key goes live under the room id.
(exec timeout 80 ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -t 60 \
    -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -c:a aac -f flv "$rtmp/$key") \
    >"$work/push.log" 2>&1 &
pusher=$! # timeout's pid: it passes our TERM on to ffmpeg
pids+=($pusher)
probe() {
    timeout 15 ffprobe -v error -rw_timeout 10000000 -show_entries stream=codec_type,codec_name \
        -of csv=p=0 "$1"
}
until_ok 20 probe "$rtmp/$room" || fail "ffprobe could not pull $rtmp/$room"
streams="$(probe "$rtmp/$room" | sort | tr '\n' ' ')"
[[ "$streams" == *"h264,video"* && "$streams" == *"aac,audio"* ]] \
    || fail "expected h264 video and aac audio, got: $streams"
echo "ok: pulled over RTMP by room id: $streams"
[ "$(answered /media/on_publish "$key" 302)" -ge 1 ] || fail "on_publish did not answer the key with a redirect"
if [ -n "${LIVEHOUSE_NGINX_API:-}" ]; then
    until_ok 10 streaming_is true || fail "the room is not marked streaming"
    echo "ok: the room is marked streaming"
fi

# 4. The key is not a playable stream name.
if probe "$rtmp/$key" >/dev/null 2>&1; then fail "the stream key is playable"; fi
echo "ok: the stream key is not playable"

# 5. A wrong key is refused at publish time: on_publish answers 403.
wrong="wrong-key-$$"
if push "$wrong" 10 >"$work/wrong.log" 2>&1; then fail "a wrong key could publish"; fi
[ "$(answered /media/on_publish "$wrong" 403)" -ge 1 ] || fail "on_publish did not answer the wrong key with 403"
[ "$(answered /media/on_publish "$wrong" 302)" = 0 ] || fail "on_publish accepted the wrong key"
if [ -z "${LIVEHOUSE_NGINX_API:-}" ]; then
    grep -q 'publish refused: unknown stream key' "$work/server.log" || fail "no refusal logged by the hooks server"
fi
echo "ok: a wrong key is refused (on_publish: 403)"

# 6. A second publisher with the same key is refused while the first goes on: on_publish answers
#    the second 403, and its on_publish_done does not clear the room's flag.
before="$(answered /media/on_publish "$key" 403)"
if push "$key" 10 >"$work/second.log" 2>&1; then fail "a second publisher was accepted"; fi
[ "$(answered /media/on_publish "$key" 403)" -gt "$before" ] || fail "on_publish did not answer the second publisher with 403"
[ "$(answered /media/on_publish "$key" 302)" = 1 ] || fail "on_publish accepted a second publisher"
kill -0 "$pusher" 2>/dev/null || fail "the first publisher stopped"
probe "$rtmp/$room" >/dev/null || fail "the room's stream is gone after a refused second publisher"
if [ -n "${LIVEHOUSE_NGINX_API:-}" ]; then
    streaming_is true || fail "the refused second publisher cleared the streaming flag"
fi
echo "ok: a second publisher is refused (on_publish: 403)"

# 7. on_publish_done when the publisher stops clears the streaming flag.
kill "$pusher"
if [ -n "${LIVEHOUSE_NGINX_API:-}" ]; then
    until_ok 10 streaming_is false || fail "on_publish_done did not clear the streaming flag"
else
    until_ok 10 grep -q "room_id=$room streaming=false" "$work/server.log" \
        || fail "on_publish_done did not clear the streaming flag"
fi
grep -q '^/media/on_publish_done .* -> 200' "$work/hooks.log" || fail "on_publish_done was not answered 200"
echo "ok: on_publish_done cleared the streaming flag"

# 8. Closing the room cuts the publisher: on_update answers 403 (nginx asks every
#    notify_update_timeout) and nginx drops the publisher.
(exec timeout 80 ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i testsrc2=size=640x360:rate=25 -c:v libx264 -preset ultrafast -g 25 \
    -t 60 -f flv "$rtmp/$key") >"$work/push2.log" 2>&1 &
pusher=$!
pids+=($pusher)
until_ok 20 probe "$rtmp/$room" || fail "the second session did not go live"
if [ -n "${LIVEHOUSE_NGINX_API:-}" ]; then
    curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
        -d "{\"roomId\":$room}" "$api/living/closeLiving" >/dev/null || fail "could not close the room"
else
    curl -sf -X POST "$api/example/rooms/$room/close" >/dev/null || fail "could not close the room"
fi
until_ok 15 bash -c "! kill -0 $pusher 2>/dev/null" || fail "the publisher of a closed room was not cut"
grep -q '^/media/on_update .* -> 403' "$work/hooks.log" || fail "on_update did not answer 403 for the closed room"
if [ -z "${LIVEHOUSE_NGINX_API:-}" ]; then
    grep -q 'room closed: nginx publisher cut' "$work/server.log" || fail "no cut logged"
fi
echo "ok: closing the room cuts the publisher (on_update: 403)"
echo "PASS: nginx RTMP configuration"
