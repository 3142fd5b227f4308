#!/usr/bin/env bash
# Latency of HLS in Chromium with the vendored hls.js, measured the way
# web/tests/latency.test.mjs measures HTTP-FLV (buffered.end - currentTime every 500 ms) and from
# the server's clock (Date.now() - hls.playingDate): 2 minutes of low-latency HLS (goal: p95
# ≤ 3 s), then 2 minutes of plain HLS (hls.js with lowLatencyMode off; goal ≤ 8 s). Runs
# web/tests/hls.test.mjs against the release binary.
#
#   bench/hls_latency.sh [SECONDS=120]
set -euo pipefail
SECS="${1:-120}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build -q --release --bin livehouse
export LIVEHOUSE_BIN="$root/target/release/livehouse"
echo "machine: $(uptime)"
LIVEHOUSE_HLS_SECS="$SECS" scripts/test-web.sh tests/hls.test.mjs 2>&1 | grep -E '^# (LL-HLS|HLS) over|^# (pass|fail)'
echo "machine: $(uptime)"
LIVEHOUSE_HLS_SECS="$SECS" LIVEHOUSE_HLS_LL=0 scripts/test-web.sh tests/hls.test.mjs 2>&1 | grep -E '^# (LL-HLS|HLS) over|^# (pass|fail)'
