#!/usr/bin/env bash
# LL-HLS load on the built-in server: one publisher at about 1 Mbit/s (the stream of
# bench/fanout.sh), N LL-HLS clients (bench/src/bin/hls_clients.rs: blocking playlist reload for
# the hinted part, then the part, as hls.js does in low-latency mode, one connection each),
# reporting whether every client kept up (every part, lag under 2 s) and the server's CPU and
# RSS over the window, to set beside the HTTP-FLV figures of bench/fanout.sh.
#
#   bench/hls.sh [N=2000] [SECONDS=30] [THREADS=1]
set -euo pipefail
N="${1:-2000}"
SECS="${2:-30}"
THREADS="${3:-1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (.ci/media.sh)"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build -q --release --bin livehouse
cargo build -q --release -p livehouse-bench --bin hls_clients
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

start_livehouse --record off
start_room hls
encode_source "$work/src.flv" 900
push_loop "$work/src.flv"
url="http://$http/live/$room.m3u8"
wait_url "$url"
sleep 4
idle_rss="$(rss_kb "$spid")"

ramp=$(( (N + 199) / 200 ))
"$root/target/release/hls_clients" --url "$url" --clients "$N" --duration "$SECS" \
    --connect-rate 200 --threads "$THREADS" >"$work/load.json" 2>"$work/load.err" &
lpid=$!
pids+=($lpid)
sleep $(( ramp + 4 ))
tck="$(getconf CLK_TCK)"
t0="$(date +%s.%N)"; c0="$(cpu_ticks "$spid")"; l0="$(cpu_ticks "$lpid")"
sleep $(( SECS > 4 ? SECS - 4 : 1 ))
t1="$(date +%s.%N)"; c1="$(cpu_ticks "$spid")"; l1="$(cpu_ticks "$lpid")"
loaded_rss="$(rss_kb "$spid")"
wait "$lpid" || true
python3 - "$N" "$tck" "$t0" "$t1" "$c0" "$c1" "$l0" "$l1" "$idle_rss" "$loaded_rss" "$(cat "$work/load.json")" "$(uptime)" <<'PY'
import json, sys
n, tck, t0, t1, c0, c1, l0, l1, idle, loaded = sys.argv[1:11]
load = json.loads(sys.argv[11])
el = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(tck) / el * 100
tool = (int(l1) - int(l0)) / int(tck) / el * 100
print(f"LL-HLS clients: {n}  kept up: {load['kept_up']}  all kept up: {load['all_kept_up']}  errors: {load['errors']}")
print(f"  parts in the inner window: {load['parts_produced_in_inner_window']}  part lag ms p50/p99/max: {load['part_lag_ms_p50']}/{load['part_lag_ms_p99']}/{load['part_lag_ms_max']}")
print(f"  playlist requests: {load['playlist_requests']}  parts fetched: {load['parts_fetched']}  {load['mbit_per_client']:.2f} Mbit/s per client")
print(f"server CPU: {cpu:.1f}% of one core ({cpu/max(int(n),1)*1000:.2f}% per 1000 clients); load tool {tool:.1f}%")
print(f"server RSS: idle {int(idle)/1024:.1f} MiB, loaded {int(loaded)/1024:.1f} MiB")
print(f"machine: {sys.argv[12].strip()}")
print(json.dumps({"clients": int(n), "load": load, "server_cpu_pct": round(cpu, 1), "tool_cpu_pct": round(tool, 1),
                  "rss_idle_kib": int(idle), "rss_loaded_kib": int(loaded)}))
PY
