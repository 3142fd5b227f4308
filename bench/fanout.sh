#!/usr/bin/env bash
# Fan-out benchmark of the built-in media server: one ffmpeg publisher at about 1 Mbit/s,
# N HTTP-FLV viewers (bench/src/bin/flv_viewers.rs), reporting the server's CPU and RSS per
# viewer (from /proc), whether every viewer kept up, and the time to first frame of a viewer
# joining mid-stream while the N are watching.
#
#   bench/fanout.sh [N=2000] [SECONDS=30] [PROCS=2]
#
# Env: RECORD=on records the room while the viewers watch (`--record on`; default off), to
# compare the fan-out with and without recording (bench/record.sh has the recording's own cost).
# SERVER=livehouse (default) runs the release `livehouse` binary on embedded defaults: a
# streamer signs up and starts a room through the api, ffmpeg pushes to the handed-out key.
# SERVER=example runs media/examples/media_server alone (key benchkey → room 1);
# MEDIA_SERVER_CMD overrides that example's command (it must print "HTTP <addr>" and
# "RTMP <addr>" on stdout and accept --rtmp-addr/--http-addr 127.0.0.1:0).
# Everything started here is stopped on exit.
set -euo pipefail
N="${1:-2000}"
SECS="${2:-30}"
PROCS="${3:-2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (.ci/media.sh)"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

SERVER="${SERVER:-livehouse}"
if [ "$SERVER" = livehouse ]; then
    cargo build -q --release --bin livehouse
else
    cargo build -q --release -p livehouse-media --example media_server
fi
cargo build -q --release -p livehouse-bench --bin flv_viewers
server_cmd="${MEDIA_SERVER_CMD:-$root/target/release/examples/media_server --key benchkey=1}"
tool="$root/target/release/flv_viewers"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$SERVER" = livehouse ]; then
    http="127.0.0.1:$(free_port)"; rtmp="127.0.0.1:$(free_port)"
    RUST_LOG=warn "$root/target/release/livehouse" --http-addr "$http" --rtmp-addr "$rtmp" \
        --im-tcp-addr "127.0.0.1:$(free_port)" --data-dir "$work/data" --record "${RECORD:-off}" \
        >"$work/server.out" 2>"$work/server.log" &
    spid=$!
    pids+=($spid)
    for _ in $(seq 100); do curl -sf "http://$http/healthz" >/dev/null && break; sleep 0.1; done
    token="$(curl -sf -X POST "http://$http/user/register" -d 'username=benchstreamer&password=benchpass' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')"
    room="$(curl -sf -X POST "http://$http/living/startingLiving" -H "Authorization: Bearer $token" \
        -d 'type=1&roomName=fanout' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["roomId"])')"
    key="$(curl -sf -X POST "http://$http/living/anchorConfig" -H "Authorization: Bearer $token" \
        -d "roomId=$room" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["streamKey"])')"
else
    RUST_LOG=warn $server_cmd --rtmp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
    spid=$!
    pids+=($spid)
    for _ in $(seq 100); do grep -q '^HTTP ' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    http="$(awk '/^HTTP /{print $2}' "$work/server.out")"
    rtmp="$(awk '/^RTMP /{print $2}' "$work/server.out")"
    room=1; key=benchkey
fi
[ -n "$http" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
url="http://$http/live/$room.flv"

# ~1 Mbit/s: 900 kbit/s H.264 (2 s GOP) + 64 kbit/s AAC, encoded once, then pushed in a loop in
# real time with -c copy so the publisher costs next to no CPU.
ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc2=size=1280x720:rate=25 \
    -f lavfi -i sine=frequency=440 -t 20 -c:v libx264 -preset veryfast -g 50 \
    -b:v 900k -maxrate 900k -bufsize 900k -c:a aac -b:a 64k -f flv "$work/src.flv"
(exec ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$work/src.flv" \
    -c copy -f flv "rtmp://$rtmp/live/$key") >"$work/ffmpeg.log" 2>&1 &
fpid=$!
pids+=($fpid)
for _ in $(seq 100); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "$url" || true)"
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || { echo "publisher did not go live"; cat "$work/ffmpeg.log"; exit 1; }

tck="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

sleep 2
idle_rss="$(rss_kb "$spid")"
ttff_idle="$("$tool" --url "$url" --ttff 10 2>/dev/null)"

# The load runs in the background; the server is measured over the middle of its window.
ramp=$(( (N + 499) / 500 ))
"$tool" --url "$url" --viewers "$N" --duration "$SECS" --procs "$PROCS" --connect-rate 500 \
    >"$work/load.json" 2>"$work/load.err" &
lpid=$!
pids+=($lpid)
sleep $(( ramp + 4 ))
t0="$(date +%s.%N)"; c0="$(cpu_ticks "$spid")"; f0="$(cpu_ticks "$fpid")"
read -r _ u0 n0 s0 i0 w0 x0 y0 z0 _ < /proc/stat
ttff_loaded="$("$tool" --url "$url" --ttff 10 2>/dev/null || echo '{"error":"ttff failed"}')"
sleep $(( SECS > 14 ? SECS - 14 : 1 ))
t1="$(date +%s.%N)"; c1="$(cpu_ticks "$spid")"; f1="$(cpu_ticks "$fpid")"
read -r _ u1 n1 s1 i1 w1 x1 y1 z1 _ < /proc/stat
loaded_rss="$(rss_kb "$spid")"
wait "$lpid" || true
load="$(cat "$work/load.json")"

python3 - "$N" "$tck" "$t0" "$t1" "$c0" "$c1" "$f0" "$f1" "$idle_rss" "$loaded_rss" \
    "$((u1+n1+s1+i1+w1+x1+y1+z1 - u0-n0-s0-i0-w0-x0-y0-z0))" "$((i1+w1 - i0-w0))" \
    "$load" "$ttff_idle" "$ttff_loaded" <<'PY'
import json, sys, os
(n, tck, t0, t1, c0, c1, f0, f1, idle, loaded, tot, idl) = sys.argv[1:13]
load, ttff_idle, ttff_loaded = (json.loads(x) for x in sys.argv[13:16])
n, tck = int(n), int(tck)
el = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / tck / el * 100
ff = (int(f1) - int(f0)) / tck / el * 100
machine = 100 * (1 - int(idl) / max(int(tot), 1)) * os.cpu_count()
print(f"viewers: {n}  connected: {load['connected']}  kept up: {load['kept_up']}  all kept up: {load['all_kept_up']}")
print(f"  ended early: {load['ended_early']}  with gaps: {load['with_gaps']}  lagging: {load['lagging']}  failed connect: {load['failed_connect']}  first frame not key: {load['first_frame_not_key']}")
print(f"  lag ms p50/p99/max: {load['lag_ms_p50']}/{load['lag_ms_p99']}/{load['lag_ms_max']}")
print(f"  delivered: {load['bytes']*8/1e9:.2f} Gbit in all; {load['mbit_per_viewer']:.2f} Mbit/s per viewer over the {load['window_secs']:.0f} s window")
print(f"server CPU: {cpu:.1f}% of one core ({cpu/max(n,1)*1000:.2f}% per 1000 viewers); ffmpeg publisher {ff:.1f}%; whole machine {machine:.0f}% of {os.cpu_count()*100}%")
print(f"server RSS: idle {int(idle)/1024:.1f} MiB, loaded {int(loaded)/1024:.1f} MiB, {(int(loaded)-int(idle))/max(n,1):.1f} KiB per viewer")
print(f"time to first frame, mid-stream join: idle p50 {ttff_idle.get('ttff_ms_p50',-1):.1f} ms max {ttff_idle.get('ttff_ms_max',-1):.1f} ms; "
      f"under load p50 {ttff_loaded.get('ttff_ms_p50',-1):.1f} ms max {ttff_loaded.get('ttff_ms_max',-1):.1f} ms")
print(json.dumps({"viewers": n, "load": load, "server_cpu_pct": round(cpu, 1), "publisher_cpu_pct": round(ff, 1),
                  "machine_cpu_pct": round(machine), "rss_idle_kib": int(idle), "rss_loaded_kib": int(loaded),
                  "ttff_idle": ttff_idle, "ttff_loaded": ttff_loaded}))
PY
