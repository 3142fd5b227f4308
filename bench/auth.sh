#!/usr/bin/env bash
# Benchmark: password hashing under a burst. Starts the release `livehouse` on embedded defaults
# in a temporary data dir, makes SIGNUPS sign-ups CONC at a time, then LOGINS sign-ins (half with
# a wrong password, half of those for unknown names) CONC at a time, and prints the rates, the
# latency of right, wrong and unknown-name sign-ins (they should match), and the server's RSS
# before, at the peak and 5 s after the burst (issue 9: ≤ 256 MiB after 300 sign-ups).
# The pre-login rate limits are turned off for the run (they would answer 429 long before).
#
#   bench/auth.sh                               # SIGNUPS=300 LOGINS=300 CONC=16
#   BIN=target/debug/livehouse SIGNUPS=40 bench/auth.sh    # a short smoke on a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
SIGNUPS=${SIGNUPS:-300}
LOGINS=${LOGINS:-300}
CONC=${CONC:-16}
WORKERS=${WORKERS:-2}
BIN=${BIN:-target/release/livehouse}
[ "$BIN" != target/release/livehouse ] || cargo build --release --bin livehouse -q

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
RUST_LOG=warn "$BIN" --http-addr "127.0.0.1:$port" --rtmp-addr 127.0.0.1:0 --im-tcp-addr 127.0.0.1:0 \
    --data-dir "$work/data" --auth-hash-workers "$WORKERS" --auth-hash-queue 1024 \
    --rate-signup-per-ip 0 --rate-signup-per-account 0 --rate-login-per-ip 0 --rate-login-per-account 0 \
    >"$work/server.out" 2>"$work/server.log" &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

python3 - "$port" "$spid" "$SIGNUPS" "$LOGINS" "$CONC" "$WORKERS" <<'PY'
import json, sys, threading, time, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
port, pid, signups, logins, conc, workers = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
base = f"http://127.0.0.1:{port}"
def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
peak = [0.0]
stop = threading.Event()
def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mib()); time.sleep(0.05)
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r: code = r.status
    except urllib.error.HTTPError as e: code = e.code
    return code, time.perf_counter() - t
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")
before = rss_mib()
threading.Thread(target=watch, daemon=True).start()
tag = str(int(time.time()))[-6:]
t0 = time.perf_counter()
with ThreadPoolExecutor(conc) as ex:
    res = list(ex.map(lambda i: post("/user/register", {"username": f"b{tag}_{i}", "password": "benchpass1"}), range(signups)))
t_signup = time.perf_counter() - t0
ok = sum(1 for c, _ in res if c == 200)
def login(i):
    kind = ("right", "wrong", "unknown", "right")[i % 4]
    name = f"b{tag}_{i % signups}" if kind != "unknown" else f"nobody{tag}_{i}"
    code, dt = post("/user/login", {"username": name, "password": "benchpass1" if kind == "right" else "wrongpass1"})
    return kind, code, dt
t0 = time.perf_counter()
with ThreadPoolExecutor(conc) as ex:
    lres = list(ex.map(login, range(logins)))
t_login = time.perf_counter() - t0
stop.set()
time.sleep(5)
after = rss_mib()
print(f"sign-ups: {ok}/{signups} ok, {signups / t_signup:.1f}/s ({conc} at a time, {workers} hashing threads), p50 {pct([d for _, d in res], .5):.0f} ms, p99 {pct([d for _, d in res], .99):.0f} ms")
print(f"sign-ins: {logins / t_login:.1f}/s")
for kind in ("right", "wrong", "unknown"):
    ds = [d for k, c, d in lres if k == kind]; codes = sorted({c for k, c, _ in lres if k == kind})
    print(f"  {kind:8} n={len(ds):4} codes={codes} p50 {pct(ds, .5):.0f} ms p99 {pct(ds, .99):.0f} ms")
print(f"RSS: {before:.0f} MiB before, {peak[0]:.0f} MiB peak, {after:.0f} MiB 5 s after")
PY
