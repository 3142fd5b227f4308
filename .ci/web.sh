#!/usr/bin/env bash
# CI setup for the browser tests (idempotent): Debian's Chromium and ffmpeg, Node.js with npm,
# and the web/ dependencies (playwright-core, mpegts.js) from web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in chromium ffmpeg nodejs npm; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# A Node.js installed outside apt (e.g. NodeSource or a tarball) is fine too.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
pkgs=()
for p in "${missing[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ "${#pkgs[@]}" -gt 0 ]; then
    echo "installing: ${pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
node --version
chromium --version 2>/dev/null | grep -v '^\[' || true
(cd web && npm ci --no-audit --no-fund --loglevel=error)
