#!/usr/bin/env bash
# Cost of recording: one publisher at about 2.5 Mbit/s (pre-encoded 1280x720@25, pushed in a loop
# with -c copy), recorded (`--record on`) for SECONDS. Reports the CPU of the writer thread
# (`record-<room>` in /proc/PID/task) and of the whole server, and whether any tag was lost: the
# `livehouse_record_tags_lost` gauge must be 0, and the finished file must hold exactly the
# `livehouse_record_tags_written` tags. Then the same run with `--record off`, for the server's
# CPU without recording.
#
#   bench/record.sh [SECONDS=60] [KBPS=2400]
set -euo pipefail
SECS="${1:-60}"
KBPS="${2:-2400}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (.ci/media.sh)"; exit 1; }
cargo build -q --release --bin livehouse
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
tck="$(getconf CLK_TCK)"
encode_source "$work/src.flv" "$KBPS"

gauge() { curl -sf "http://$http/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

run() { # $1 = on|off; prints "server_pct writer_pct"
    rm -rf "$work/data"
    start_livehouse --record "$1"
    start_room "rec$1" true
    push_loop "$work/src.flv"
    wait_url "http://$http/live/$room.flv"
    sleep 3
    local writer=""
    if [ "$1" = on ]; then
        for t in /proc/"$spid"/task/*; do
            [ "$(cat "$t/comm")" = "record-$room" ] && writer="$t"
        done
        [ -n "$writer" ] || { echo "no record-$room thread"; exit 1; }
    fi
    local t0 c0 w0 t1 c1 w1
    t0="$(date +%s.%N)"; c0="$(cpu_ticks "$spid")"; w0="$( [ -n "$writer" ] && awk '{print $14 + $15}' "$writer/stat" || echo 0)"
    sleep "$SECS"
    t1="$(date +%s.%N)"; c1="$(cpu_ticks "$spid")"; w1="$( [ -n "$writer" ] && awk '{print $14 + $15}' "$writer/stat" || echo 0)"
    python3 -c "el=$t1-$t0; print(f'{($c1-$c0)/$tck/el*100:.2f} {($w1-$w0)/$tck/el*100:.2f}')" >"$work/cpu.$1"
    if [ "$1" = on ]; then
        kill "$fpid"; wait "$fpid" 2>/dev/null || true
        # The record is finished when the marker is gone; then the counters are final.
        for _ in $(seq 100); do [ -e "$work/data/records/$room.flv.writing" ] || break; sleep 0.1; done
        sleep 6 # one export period of the gauges
        gauge livehouse_record_tags_written >"$work/written"
        gauge livehouse_record_tags_lost >"$work/lost"
        python3 - "$work/data/records/$room.flv" >"$work/tags" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
p, n = 13, 0
p += 11 + int.from_bytes(d[p+1:p+4], "big") + 4   # the onMetaData slot
while p + 11 <= len(d):
    size = int.from_bytes(d[p+1:p+4], "big")
    assert struct.unpack(">I", d[p+11+size:p+15+size])[0] == 11 + size, f"bad tag at {p}"
    p += 11 + size + 4
    n += 1
assert p == len(d), "trailing bytes"
print(n)
PY
        du -b "$work/data/records/$room.flv" | cut -f1 >"$work/size"
    fi
    kill "$spid" "$fpid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
}
run on
run off
read -r on_cpu writer_cpu <"$work/cpu.on"
read -r off_cpu _ <"$work/cpu.off"
echo "recording a ${KBPS}k+64k stream for ${SECS} s:"
echo "  writer thread: ${writer_cpu}% of one core; server ${on_cpu}% with recording, ${off_cpu}% without"
echo "  tags written: $(cat "$work/written"), in the file: $(cat "$work/tags"), lost: $(cat "$work/lost"); file $(cat "$work/size") bytes"
echo "  machine: $(uptime)"
[ "$(cat "$work/lost")" = 0 ] && [ "$(cat "$work/written")" = "$(cat "$work/tags")" ] || { echo "FAIL: tags lost"; exit 1; }
