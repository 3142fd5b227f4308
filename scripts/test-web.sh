#!/usr/bin/env bash
# Browser tests of the web UI (web/tests/*.test.mjs, node's test runner + playwright-core on
# Debian's Chromium). They start $LIVEHOUSE_BIN (default: the cargo target dir's
# debug/livehouse, which scripts/test.sh builds first) on free
# ports with a temp data dir, push test streams with ffmpeg, and keep screenshots in
# target/screenshots/. Includes the vendored-player check and the 2-minute latency test.
#
#   scripts/test-web.sh                      # everything
#   scripts/test-web.sh tests/live.test.mjs  # one file (paths relative to web/)
set -euo pipefail
cd "$(dirname "$0")/.."
export LIVEHOUSE_BIN="${LIVEHOUSE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/livehouse}"
LIVEHOUSE_BIN="$(realpath -m "$LIVEHOUSE_BIN")"
[ -x "$LIVEHOUSE_BIN" ] || cargo build --bin livehouse
# Like the other real-tool suites: skipped (and said so) on a machine without the tools, a
# failure in CI (CI=true or LIVEHOUSE_REQUIRE_BACKENDS=1, both set by .ci/run).
missing=()
for tool in node npm ffmpeg; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${LIVEHOUSE_REQUIRE_BACKENDS:-}" = 1 ] || [ "${CI:-}" = "true" ]; then
        echo "test-web: ${missing[*]} missing but browser tests are required here (CI=${CI:-} LIVEHOUSE_REQUIRE_BACKENDS=${LIVEHOUSE_REQUIRE_BACKENDS:-}; run .ci/web.sh)" >&2
        exit 1
    fi
    echo "SKIPPED: browser tests (${missing[*]} missing; .ci/web.sh installs them)"
    exit 0
fi
mkdir -p target/screenshots
cd web
npm ci --no-audit --no-fund --loglevel=error
if [ "$#" -gt 0 ]; then
    node --test --test-concurrency=1 "$@"
else
    node --test --test-concurrency=1 tests/
fi
