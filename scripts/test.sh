#!/usr/bin/env bash
# The test command: every Rust test of the workspace (unit, conformance, HTTP, protocol, media
# and end-to-end), then the browser tests when their tools are installed.
#
# Real-backend suites run when LIVEHOUSE_TEST_MYSQL_URL / LIVEHOUSE_TEST_REDIS_URL /
# LIVEHOUSE_TEST_KAFKA_BROKERS are set, and ffmpeg/nginx suites when those tools exist; with
# LIVEHOUSE_REQUIRE_BACKENDS=1 (as .ci/run sets) a missing one fails instead of skipping.
# CI=true (as .ci/run sets) selects nextest's `ci` profile and makes the browser tests mandatory:
# if they cannot run, this script fails instead of skipping them.
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
elif [ "${CI:-}" = "true" ]; then
    echo "test.sh: CI=true but the browser tests cannot run (web/package.json or an executable scripts/test-web.sh missing)" >&2
    exit 1
else
    echo "SKIPPED: browser tests (web/package.json or scripts/test-web.sh missing)"
fi
