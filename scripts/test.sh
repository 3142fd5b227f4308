#!/usr/bin/env bash
# The test command: every Rust test of the workspace (unit, conformance, HTTP, protocol, media
# and end-to-end), then the browser tests when their tools are installed.
#
# Real-backend suites run when LIVEHOUSE_TEST_MYSQL_URL / LIVEHOUSE_TEST_REDIS_URL /
# LIVEHOUSE_TEST_KAFKA_BROKERS are set, and ffmpeg/nginx suites when those tools exist; with
# LIVEHOUSE_REQUIRE_BACKENDS=1 (as .ci/run sets) a missing one fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=default
[ "${CI:-}" = "true" ] && profile=ci
# The end-to-end tests start the real binary: build it first.
cargo build --bin livehouse
export LIVEHOUSE_BIN="${LIVEHOUSE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/livehouse}"
cargo nextest run --workspace --profile "$profile" "$@"
if [ -f web/package.json ] && [ -x scripts/test-web.sh ]; then
    scripts/test-web.sh
fi
