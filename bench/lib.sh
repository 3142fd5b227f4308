# Shared by the video benchmarks (source it): start the release `livehouse` on free loopback ports
# with a fresh data dir, start a room through the api, push a pre-encoded stream in a loop in
# real time (-c copy, so the publisher costs next to no CPU), and read a process's CPU from /proc.
# Callers set `work` (a temp dir) and `pids` (an array killed on exit) before sourcing.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# start_livehouse [extra flags…]: sets http, rtmp, spid.
start_livehouse() {
    http="127.0.0.1:$(free_port)"; rtmp="127.0.0.1:$(free_port)"
    RUST_LOG=warn "$root/target/release/livehouse" --http-addr "$http" --rtmp-addr "$rtmp" \
        --im-tcp-addr "127.0.0.1:$(free_port)" --data-dir "$work/data" "$@" \
        >"$work/server.out" 2>"$work/server.log" &
    spid=$!
    pids+=($spid)
    for _ in $(seq 100); do curl -sf "http://$http/healthz" >/dev/null && return 0; sleep 0.1; done
    echo "livehouse did not start"; cat "$work/server.log"; exit 1
}

# start_room NAME [record=true|false]: a streamer signs up and starts a room; sets room, key, token.
start_room() {
    token="$(curl -sf -X POST "http://$http/user/register" -d "username=bench$1&password=benchpass" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')"
    room="$(curl -sf -X POST "http://$http/living/startingLiving" -H "Authorization: Bearer $token" \
        -d "type=1&roomName=$1&record=${2:-false}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["roomId"])')"
    key="$(curl -sf -X POST "http://$http/living/anchorConfig" -H "Authorization: Bearer $token" \
        -d "roomId=$room" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["streamKey"])')"
}

# encode_source FILE KBPS: 20 s of 1280x720@25 H.264 (2 s GOP) at KBPS kbit/s + 64 kbit/s AAC.
encode_source() {
    ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=1280x720:rate=25 \
        -f lavfi -i sine=frequency=440 -t 20 -c:v libx264 -preset veryfast -g 50 \
        -b:v "${2}k" -maxrate "${2}k" -bufsize "${2}k" -c:a aac -b:a 64k -f flv "$1"
}

# push_loop FILE: pushes FILE in a loop in real time to the room; sets fpid.
push_loop() {
    (exec ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$1" \
        -c copy -f flv "rtmp://$rtmp/live/$key") >"$work/ffmpeg.log" 2>&1 &
    fpid=$!
    pids+=($fpid)
}

# wait_url URL: until it answers 200 (20 s).
wait_url() {
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "$1" || true)" = 200 ] && return 0
        sleep 0.2
    done
    echo "no 200 from $1"; cat "$work/ffmpeg.log"; exit 1
}
