//! `ws_load` — WebSocket load for the IM gateway (design §3 JSON frames over `/ws`).
//!
//! - `run`: N viewers and M senders in one room. Senders send chat messages carrying their send
//!   time; every connection reads, ACKs each delivery (1005) and records send-to-receive latency.
//!   Reports deliveries/s, p50/p99/max latency, server CPU and RSS (and with `--cache-pid` the
//!   Redis server's CPU: it shares the cores).
//! - `idle`: N connections log in and stay idle; reports server RSS per connection.
//!
//! The coordinator spreads connections over several worker processes of this same binary (a
//! process may hold at most 20,000 open files here) and merges their results. Workers talk to it
//! on stdin/stdout: `READY` → `GO` → `RESULT {json}` (`idle`: `READY` → `EXIT`).
//!
//! IM tokens come either from `POST {http}/bench/tokens?from=&count=` (the `im_bench_server`
//! example), or, with `--redis-url URL --cache-prefix PREFIX` (the real `livehouse` binary on
//! Redis), are written by the workers into that Redis exactly as the api issues them
//! (`keys::im_token(token)` → user id, 5 min TTL, through `RedisCache`). In the Redis mode the
//! coordinator also waits (bounded) until the room's member set (`keys::room_members`, kept by
//! `living` from the gateways' online events) holds every connection before it starts a run or
//! measures memory, so the `msg` role knows the whole room.
//! Only loopback targets make sense; every loop and wait is bounded in time.

use clap::{Parser, Subcommand};
use livehouse_core::cache::{Cache, RedisCache};
use livehouse_core::events::keys;
use livehouse_core::presence::{Presence, PresenceConfig, RedisPresence};
use memchr::memmem::Finder;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "WebSocket load for the livehouse IM gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Lifetime of an IM token, as `im-core`'s `registry::IM_TOKEN_TTL`.
const IM_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Longest wait for the room's member set to hold every connection.
const MEMBERS_DEADLINE: Duration = Duration::from_secs(120);

/// Where IM tokens come from: the example server's bench route, or the server's Redis.
#[derive(clap::Args, Clone, Debug, Default)]
struct Tokens {
    /// Write the tokens into this Redis (the server's `--redis-url`) instead of asking
    /// `POST /bench/tokens`; also wait for the room's members there.
    #[arg(long, requires = "cache_prefix")]
    redis_url: Option<String>,
    /// The server's `--cache-prefix` (with `--redis-url`).
    #[arg(long)]
    cache_prefix: Option<String>,
}

impl Tokens {
    /// The worker flags that pass this source on.
    fn args(&self) -> Vec<String> {
        match (&self.redis_url, &self.cache_prefix) {
            (Some(url), Some(prefix)) => {
                vec![
                    format!("--redis-url={url}"),
                    format!("--cache-prefix={prefix}"),
                ]
            }
            _ => vec![],
        }
    }

    async fn redis(&self) -> anyhow::Result<Option<RedisCache>> {
        match (&self.redis_url, &self.cache_prefix) {
            (Some(url), Some(prefix)) => Ok(Some(RedisCache::connect(url, prefix).await?)),
            _ => Ok(None),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Fan-out run: viewers + senders in one room.
    Run(RunPlan),
    /// Idle connections: server memory per logged-in WebSocket connection.
    Idle(IdlePlan),
    /// Internal: one worker process.
    #[command(hide = true)]
    Worker(WorkerPlan),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(p) => coordinate_run(p),
        Cmd::Idle(p) => coordinate_idle(p),
        Cmd::Worker(p) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(worker(p)),
    }
}

// ---------------------------------------------------------------- coordinator

#[derive(clap::Args)]
struct RunPlan {
    #[arg(long, default_value = "127.0.0.1:18080")]
    http: String,
    #[arg(long, default_value_t = 10_000)]
    viewers: u32,
    #[arg(long, default_value_t = 20)]
    senders: u32,
    /// Messages per second per sender (the gateway allows 5).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value_t = 1)]
    room: i64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Viewer worker processes (senders get one more).
    #[arg(long, default_value_t = 4)]
    procs: u32,
    /// First user id.
    #[arg(long, default_value_t = 1_000_000)]
    first_user: i64,
    /// Server process id, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Cache (Redis) server process id, for its CPU time over the same span.
    #[arg(long)]
    cache_pid: Option<u32>,
    /// Clients send their ACKs at most this often (ms), batched; 0 = after every read.
    #[arg(long, default_value_t = 200)]
    ack_delay_ms: u64,
    /// Moderation rules for the room, written to the cache before anyone logs in (needs
    /// `--redis-url`): this many blocked words (none of them in the load's messages)...
    #[arg(long, default_value_t = 0)]
    rules_words: u32,
    /// ...and this many muted users (viewers, who do not chat).
    #[arg(long, default_value_t = 0)]
    rules_mutes: u32,
    #[command(flatten)]
    tokens: Tokens,
}

#[derive(clap::Args)]
struct IdlePlan {
    #[arg(long, default_value = "127.0.0.1:18080")]
    http: String,
    #[arg(long, default_value_t = 15_000)]
    conns: u32,
    #[arg(long, default_value_t = 4)]
    procs: u32,
    #[arg(long, default_value_t = 1)]
    room: i64,
    #[arg(long, default_value_t = 2_000_000)]
    first_user: i64,
    #[arg(long)]
    server_pid: u32,
    /// Seconds to let the server settle before measuring.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    #[command(flatten)]
    tokens: Tokens,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

fn spawn_worker(args: &[String]) -> anyhow::Result<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("worker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(Worker {
        child,
        stdin,
        lines: rx,
    })
}

impl Worker {
    fn expect(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("worker gave no {prefix} within {timeout:?}"))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
            eprintln!("worker: {line}");
        }
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }
}

fn split(total: u32, parts: u32) -> Vec<u32> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + u32::from(i < total % parts))
        .filter(|n| *n > 0)
        .collect()
}

/// (utime + stime in seconds, RSS in KiB) of a process.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

/// Writes the room's moderation rules (`--rules-words`, `--rules-mutes`) into the server's cache,
/// as the moderation service would; each gateway loads them at the room's first login.
fn write_rules(p: &RunPlan) -> anyhow::Result<()> {
    if p.rules_words == 0 && p.rules_mutes == 0 {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cache = p
            .tokens
            .redis()
            .await?
            .ok_or_else(|| anyhow::anyhow!("--rules-* need --redis-url"))?;
        let rules = livehouse_moderation::rules::RoomRules {
            room_id: p.room,
            anchor_id: 1,
            version: 1 << 40,
            words: (0..p.rules_words)
                .map(|i| format!("blocked{i:04}w"))
                .collect(),
            muted: (0..p.rules_mutes.min(p.viewers))
                .map(|i| livehouse_moderation::rules::Mute {
                    user_id: p.first_user + i as i64,
                    until_ms: 0,
                })
                .collect(),
            ..Default::default()
        };
        livehouse_moderation::store::write(&cache, &rules).await?;
        eprintln!(
            "room {}: {} blocked words and {} muted users in the cache",
            p.room,
            rules.words.len(),
            rules.muted.len()
        );
        anyhow::Ok(())
    })
}

fn coordinate_run(p: RunPlan) -> anyhow::Result<()> {
    write_rules(&p)?;
    let mut workers = Vec::new();
    let mut next = p.first_user;
    let common = |from: i64, count: u32, rate: f64| -> Vec<String> {
        let mut args = vec![
            format!("--http={}", p.http),
            format!("--from={from}"),
            format!("--count={count}"),
            format!("--room={}", p.room),
            format!("--rate={rate}"),
            format!("--duration={}", p.duration),
            format!("--warmup={}", p.warmup),
            format!("--ack-delay-ms={}", p.ack_delay_ms),
        ];
        args.extend(p.tokens.args());
        args
    };
    for n in split(p.viewers, p.procs) {
        workers.push(spawn_worker(&common(next, n, 0.0))?);
        next += n as i64;
    }
    if p.senders > 0 {
        workers.push(spawn_worker(&common(next, p.senders, p.rate))?);
    }
    let t0 = Instant::now();
    let mut connected = 0u64;
    for w in &workers {
        let r: serde_json::Value =
            serde_json::from_str(&w.expect("READY", Duration::from_secs(120))?)?;
        connected += r["connected"].as_u64().unwrap_or(0);
    }
    eprintln!(
        "{connected} of {} connections ready in {:.1}s",
        p.viewers + p.senders,
        t0.elapsed().as_secs_f64()
    );
    // Let the presence events reach the room membership.
    if !wait_members(&p.tokens, p.room, connected)? {
        std::thread::sleep(Duration::from_secs(1));
    }
    let before = p.server_pid.and_then(proc_usage);
    let cache_before = p.cache_pid.and_then(proc_usage);
    let start_ms = unix_us() / 1000 + 200;
    for w in &mut workers {
        w.say(&format!("GO {start_ms}"));
    }
    // Server-side view (the example server's bench routes): reset its write-lag histogram when
    // the measured window opens.
    let http = p.http.clone();
    let window_start = start_ms + p.warmup * 1000;
    let resetter = std::thread::spawn(move || {
        let wait = window_start.saturating_sub(unix_us() / 1000);
        std::thread::sleep(Duration::from_millis(wait));
        http_request(&http, "POST", "/bench/reset")
    });
    let mut total = Totals::default();
    let run_for = Duration::from_secs(p.warmup + p.duration + 30);
    for w in &workers {
        let r: serde_json::Value = serde_json::from_str(&w.expect("RESULT", run_for)?)?;
        total.add(&r);
    }
    let after = p.server_pid.and_then(proc_usage);
    let cache_after = p.cache_pid.and_then(proc_usage);
    let _ = resetter.join();
    let server_stats: serde_json::Value = http_request(&p.http, "GET", "/bench/stats")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    for mut w in workers {
        let _ = w.child.wait();
    }
    let secs = p.duration as f64;
    let cpu = match (before, after) {
        (Some(b), Some(a)) => format!(
            "{:.0}% of one core (over warm-up + run), RSS {} MiB",
            100.0 * (a.0 - b.0) / (secs + p.warmup as f64),
            a.1 / 1024
        ),
        _ => "n/a".into(),
    };
    let cache_cpu = match (cache_before, cache_after) {
        (Some(b), Some(a)) => Some(100.0 * (a.0 - b.0) / (secs + p.warmup as f64)),
        _ => None,
    };
    let summary = serde_json::json!({
        "viewers": p.viewers, "senders": p.senders, "ratePerSender": p.rate,
        "seconds": p.duration,
        "sent": total.sent, "rateLimited": total.limited,
        "deliveries": total.deliveries,
        "deliveriesPerSec": (total.deliveries as f64 / secs).round(),
        "p50Ms": total.percentile(0.50), "p99Ms": total.percentile(0.99), "maxMs": total.max_ms(),
        "kicked": total.kicked, "failedConnects": total.failed, "ackDelayMs": p.ack_delay_ms,
        "server": server_stats, "cacheCpuPercent": cache_cpu.map(f64::round),
    });
    let server_lag = if server_stats.is_null() {
        "n/a (no /bench/stats)".to_string()
    } else {
        format!(
            "p50={} ms p99={} ms",
            server_stats["writeLagP50Ms"], server_stats["writeLagP99Ms"]
        )
    };
    println!(
        "viewers={} senders={} rate={}/s each  sent={} (rate-limited {})\n\
         deliveries={} in {}s => {:.0} deliveries/s\n\
         latency send->receive: p50={:.1} ms p99={:.1} ms max={:.1} ms\n\
         server side, accepted -> written to the socket: {}\n\
         connections closed by server: {}, failed connects: {}; client ACKs batched every {} ms\nserver: {}{}",
        p.viewers,
        p.senders,
        p.rate,
        total.sent,
        total.limited,
        total.deliveries,
        p.duration,
        total.deliveries as f64 / secs,
        total.percentile(0.50),
        total.percentile(0.99),
        total.max_ms(),
        server_lag,
        total.kicked,
        total.failed,
        p.ack_delay_ms,
        cpu,
        cache_cpu.map_or(String::new(), |c| format!("; cache server: {c:.0}% of one core")),
    );
    println!("JSON {summary}");
    Ok(())
}

/// A small HTTP/1.1 request on loopback; the body of a 200 answer.
fn http_request(addr: &str, method: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Latency histogram: 100 µs buckets up to 10 s (the last bucket holds the rest).
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 100_000;

#[derive(Default)]
struct Totals {
    sent: u64,
    limited: u64,
    deliveries: u64,
    kicked: u64,
    failed: u64,
    hist: Vec<u64>,
}

impl Totals {
    fn add(&mut self, r: &serde_json::Value) {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        self.sent += n("sent");
        self.limited += n("limited");
        self.deliveries += n("deliveries");
        self.kicked += n("kicked");
        self.failed += n("failed");
        if self.hist.is_empty() {
            self.hist = vec![0; BUCKETS];
        }
        if let Some(h) = r["hist"].as_array() {
            for pair in h {
                let b = pair[0].as_u64().unwrap_or(0) as usize;
                self.hist[b.min(BUCKETS - 1)] += pair[1].as_u64().unwrap_or(0);
            }
        }
    }

    fn percentile(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let want = ((total as f64) * q).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.hist.iter().enumerate() {
            acc += c;
            if acc >= want {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::NAN
    }

    fn max_ms(&self) -> f64 {
        self.hist
            .iter()
            .rposition(|c| *c > 0)
            .map_or(f64::NAN, |i| ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0)
    }
}

fn coordinate_idle(p: IdlePlan) -> anyhow::Result<()> {
    let IdlePlan {
        http,
        conns,
        procs,
        room,
        first_user,
        server_pid,
        settle,
        tokens,
    } = p;
    let (_, rss0) = proc_usage(server_pid).ok_or_else(|| anyhow::anyhow!("no such pid"))?;
    let mut workers = Vec::new();
    let mut next = first_user;
    for n in split(conns, procs) {
        let mut args = vec![
            format!("--http={http}"),
            format!("--from={next}"),
            format!("--count={n}"),
            format!("--room={room}"),
        ];
        args.extend(tokens.args());
        workers.push(spawn_worker(&args)?);
        next += n as i64;
    }
    let mut ready = 0u64;
    let mut failed = 0u64;
    for w in &workers {
        let r: serde_json::Value =
            serde_json::from_str(&w.expect("READY", Duration::from_secs(180))?)?;
        ready += r["connected"].as_u64().unwrap_or(0);
        failed += r["failed"].as_u64().unwrap_or(0);
    }
    wait_members(&tokens, room, ready)?;
    std::thread::sleep(Duration::from_secs(settle));
    let (_, rss1) = proc_usage(server_pid).ok_or_else(|| anyhow::anyhow!("server gone"))?;
    for w in &mut workers {
        w.say("EXIT");
    }
    for mut w in workers {
        let _ = w.child.wait();
    }
    let per = (rss1.saturating_sub(rss0) as f64) * 1024.0 / ready.max(1) as f64;
    println!(
        "idle logged-in websocket connections: {ready} (failed {failed})\n\
         server RSS before {} KiB, after {} KiB => {:.0} bytes ({:.2} KiB) per connection",
        rss0,
        rss1,
        per,
        per / 1024.0
    );
    println!(
        "JSON {}",
        serde_json::json!({"connections": ready, "failed": failed, "rssBeforeKiB": rss0,
            "rssAfterKiB": rss1, "bytesPerConnection": per.round()})
    );
    Ok(())
}

/// With tokens from Redis: waits until the presence store there counts `want` users in the
/// room (every gateway has beaten with its viewers, so `msg` pushes to all of them), at most
/// [`MEMBERS_DEADLINE`]. `Ok(false)` when there is no Redis to look at.
fn wait_members(tokens: &Tokens, room: i64, want: u64) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (Some(url), Some(prefix)) = (&tokens.redis_url, &tokens.cache_prefix) else {
            return Ok(false);
        };
        let presence = RedisPresence::connect(url, prefix, PresenceConfig::default()).await?;
        let t0 = Instant::now();
        loop {
            let now = livehouse_core::time::now_ms();
            let have = presence.room_counts(&[room], now).await?[0];
            if have >= want {
                eprintln!(
                    "room {room}: {have} viewers in the presence store after {:.1}s",
                    t0.elapsed().as_secs_f64()
                );
                return Ok(true);
            }
            anyhow::ensure!(
                t0.elapsed() < MEMBERS_DEADLINE,
                "room {room} has {have} of {want} viewers after {MEMBERS_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

// ---------------------------------------------------------------- worker

#[derive(clap::Args)]
struct WorkerPlan {
    #[arg(long)]
    http: String,
    #[arg(long)]
    from: i64,
    #[arg(long)]
    count: u32,
    #[arg(long)]
    room: i64,
    /// Messages per second per connection (0 = viewer).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 0)]
    duration: u64,
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    #[command(flatten)]
    tokens: Tokens,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    limited: AtomicU64,
    deliveries: AtomicU64,
    kicked: AtomicU64,
    failed: AtomicU64,
    hist: Mutex<Vec<u64>>,
    /// Measurement window in unix µs (0 until GO).
    window: Mutex<(u64, u64)>,
}

async fn fetch_tokens(http: &str, from: i64, count: u32) -> anyhow::Result<Vec<String>> {
    let mut s = TcpStream::connect(http).await?;
    let req = format!(
        "POST /bench/tokens?from={from}&count={count} HTTP/1.1\r\nhost: {http}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow::anyhow!("bad token response"))?;
    Ok(serde_json::from_str(body)?)
}

/// Issues IM tokens for users `from..from+count` the way the api does
/// (`registry::issue_im_token`): `im:token:<random 32 hex>` → the user id, 5 min TTL.
async fn issue_tokens(cache: &RedisCache, from: i64, count: u32) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(count as usize);
    for user in from..from + i64::from(count) {
        let token = livehouse_core::ids::random_hex(16);
        cache
            .set(
                &keys::im_token(&token),
                &user.to_string(),
                Some(IM_TOKEN_TTL),
            )
            .await?;
        tokens.push(token);
    }
    Ok(tokens)
}

async fn worker(p: WorkerPlan) -> anyhow::Result<()> {
    let tokens = match p.tokens.redis().await? {
        Some(cache) => issue_tokens(&cache, p.from, p.count).await?,
        None => fetch_tokens(&p.http, p.from, p.count).await?,
    };
    let shared = Arc::new(Shared {
        hist: Mutex::new(vec![0; BUCKETS]),
        ..Shared::default()
    });
    let (go_tx, go_rx) = tokio::sync::watch::channel(0u64);
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(1024);
    let period = (p.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / p.rate));
    for (i, tok) in tokens.into_iter().enumerate() {
        let user = p.from + i as i64;
        let conn = Conn {
            http: p.http.clone(),
            user,
            token: tok,
            room: p.room,
            period,
            // Spread the senders' first message over one period.
            offset: period.map(|d| d.mul_f64(i as f64 / p.count.max(1) as f64)),
            ack_delay_us: p.ack_delay_ms * 1000,
            shared: shared.clone(),
        };
        let (sem, ready_tx, go_rx) = (sem.clone(), ready_tx.clone(), go_rx.clone());
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("open");
            let stream = match conn.connect().await {
                Ok(s) => s,
                Err(_) => {
                    conn.shared.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = ready_tx.send(false).await;
                    return;
                }
            };
            drop(permit);
            let _ = ready_tx.send(true).await;
            drop(ready_tx);
            conn.run(stream, go_rx).await;
        });
    }
    drop(ready_tx);
    let mut connected = 0u32;
    let mut failed = 0u32;
    while connected + failed < p.count {
        match ready_rx.recv().await {
            Some(true) => connected += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    println!(
        "READY {}",
        serde_json::json!({"connected": connected, "failed": failed})
    );
    // Commands from the coordinator.
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if cmd_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Some(line) = cmd_rx.recv().await else {
            return Ok(());
        };
        if line.starts_with("EXIT") {
            return Ok(());
        }
        if let Some(t) = line.strip_prefix("GO ") {
            let start_ms: u64 = t.trim().parse()?;
            let from = (start_ms + p.warmup * 1000) * 1000;
            let to = from + p.duration * 1_000_000;
            *shared.window.lock().unwrap() = (from, to);
            let _ = go_tx.send(start_ms * 1000);
            // Run until the window closes, plus a grace period for in-flight messages.
            let end_us = to + 1_000_000;
            let now = unix_us();
            tokio::time::sleep(Duration::from_micros(end_us.saturating_sub(now))).await;
            let hist = shared.hist.lock().unwrap();
            let sparse: Vec<[u64; 2]> = hist
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| [i as u64, *c])
                .collect();
            println!(
                "RESULT {}",
                serde_json::json!({
                    "sent": shared.sent.load(Ordering::Relaxed),
                    "limited": shared.limited.load(Ordering::Relaxed),
                    "deliveries": shared.deliveries.load(Ordering::Relaxed),
                    "kicked": shared.kicked.load(Ordering::Relaxed),
                    "failed": shared.failed.load(Ordering::Relaxed),
                    "hist": sparse,
                })
            );
            return Ok(());
        }
    }
}

struct Conn {
    http: String,
    user: i64,
    token: String,
    room: i64,
    period: Option<Duration>,
    offset: Option<Duration>,
    ack_delay_us: u64,
    shared: Arc<Shared>,
}

/// A client frame: FIN + text, masked with a zero key (valid, and free to apply).
fn client_text(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

fn envelope(code: i32, body: &str) -> String {
    serde_json::json!({"magic": 18673, "code": code, "len": body.len(), "body": body}).to_string()
}

/// Next complete server frame in `buf[at..]`: (opcode, payload range, frame end).
fn next_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let (len, hdr) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    (buf.len() >= hdr + len).then_some((op, hdr..hdr + len))
}

/// Appends a masked ACK frame for `id` (ids are hex: no escaping needed).
fn push_ack(out: &mut Vec<u8>, id: &[u8]) {
    let body_len = 12 + id.len();
    let mut payload = Vec::with_capacity(64 + id.len() * 2);
    let _ = write!(
        payload,
        r#"{{"magic":18673,"code":1005,"len":{body_len},"body":"{{\"msgId\":\""#
    );
    payload.extend_from_slice(id);
    payload.extend_from_slice(br#"\"}"}"#);
    client_text(out, &payload);
}

const CODE_AT: usize = r#"{"magic":18673,"code":"#.len();

fn code_of(payload: &[u8]) -> Option<&[u8]> {
    payload.get(CODE_AT..CODE_AT + 4)
}

impl Conn {
    async fn connect(&self) -> anyhow::Result<(TcpStream, Vec<u8>)> {
        let mut s =
            tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(&self.http)).await??;
        s.set_nodelay(true)?;
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.http
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
        };
        anyhow::ensure!(buf.starts_with(b"HTTP/1.1 101"), "no upgrade");
        buf.drain(..head_end);
        let body = serde_json::json!({"appId": 10001, "userId": self.user, "token": self.token,
            "roomId": self.room})
        .to_string();
        let mut out = Vec::new();
        client_text(&mut out, envelope(1001, &body).as_bytes());
        s.write_all(&out).await?;
        // Wait for the login reply.
        loop {
            if let Some((_, r)) = next_frame(&buf) {
                let ok = code_of(&buf[r.clone()]) == Some(b"1001")
                    && memchr::memmem::find(&buf[r.clone()], b"true").is_some();
                let end = r.end;
                buf.drain(..end);
                anyhow::ensure!(ok, "login refused");
                return Ok((s, buf));
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "closed during login");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Handles every complete frame in `buf`: ACKs deliveries into `out`, records latencies
    /// inside the window. `false` when the server ended the session.
    fn on_input(&self, buf: &mut Vec<u8>, out: &mut Vec<u8>, f: &Finders) -> bool {
        let now = unix_us();
        let (from, to) = *self.shared.window.lock().unwrap();
        let in_window = from > 0 && now >= from && now < to;
        let mut at = 0;
        let mut lats: Vec<u64> = Vec::new();
        let mut alive = true;
        while let Some((op, r)) = next_frame(&buf[at..]) {
            let payload = &buf[at + r.start..at + r.end];
            at += r.end;
            if op == 0x8 {
                alive = false;
                break;
            }
            match code_of(payload) {
                // The answer to a sender's own message (no offset): not a delivery.
                Some(b"1003") if f.offset.find(payload).is_none() => {}
                Some(b"1003") => {
                    if let Some(i) = f.msg_id.find(payload) {
                        let start = i + f.msg_id.needle().len();
                        if let Some(len) = memchr::memchr(b'\\', &payload[start..]) {
                            push_ack(out, &payload[start..start + len]);
                        }
                    }
                    if in_window {
                        let sent = f.stamp.find(payload).map(|i| {
                            payload[i + 2..]
                                .iter()
                                .take_while(|b| b.is_ascii_digit())
                                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
                        });
                        lats.push(now.saturating_sub(sent.unwrap_or(now)));
                    }
                }
                Some(b"1002") => {
                    alive = false;
                    break;
                }
                Some(_) if memchr::memmem::find(payload, b"rate_limited").is_some() => {
                    self.shared.limited.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        buf.drain(..at);
        if !lats.is_empty() {
            self.shared
                .deliveries
                .fetch_add(lats.len() as u64, Ordering::Relaxed);
            let mut h = self.shared.hist.lock().unwrap();
            for lat in &lats {
                h[((lat / BUCKET_US) as usize).min(BUCKETS - 1)] += 1;
            }
        }
        if !alive {
            self.shared.kicked.fetch_add(1, Ordering::Relaxed);
        }
        alive
    }

    fn chat_frame(&self) -> Vec<u8> {
        let data = serde_json::json!({"roomId": self.room, "content": format!("t={}", unix_us())})
            .to_string();
        let body = serde_json::json!({"appId": 10001, "userId": self.user, "bizCode": 5555,
            "data": data})
        .to_string();
        let mut f = Vec::new();
        client_text(&mut f, envelope(1003, &body).as_bytes());
        f
    }

    async fn run(
        self,
        (mut s, mut buf): (TcpStream, Vec<u8>),
        mut go: tokio::sync::watch::Receiver<u64>,
    ) {
        let finders = Finders {
            msg_id: Finder::new(br#"msgId\":\""#),
            stamp: Finder::new(b"t="),
            offset: Finder::new(br#"\"offset\":"#),
        };
        let mut out: Vec<u8> = Vec::new();
        let mut last_ack = 0u64;
        let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
        heartbeat.tick().await;
        let hb = {
            let mut v = Vec::new();
            client_text(&mut v, envelope(1004, "{}").as_bytes());
            v
        };
        let mut sending: Option<(tokio::time::Interval, u64)> = None;
        let mut done_sending = false;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let io = tokio::select! {
                r = s.read(&mut chunk) => match r {
                    Ok(n) if n > 0 => {
                        buf.extend_from_slice(&chunk[..n]);
                        if !self.on_input(&mut buf, &mut out, &finders) {
                            return;
                        }
                        let now = unix_us();
                        if !out.is_empty() && now.saturating_sub(last_ack) >= self.ack_delay_us {
                            last_ack = now;
                            let r = s.write_all(&out).await;
                            out.clear();
                            r
                        } else {
                            Ok(())
                        }
                    }
                    _ => {
                        self.shared.kicked.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                _ = go.changed(), if !done_sending && sending.is_none() && self.period.is_some() => {
                    let start_us = *go.borrow();
                    let (_, until) = *self.shared.window.lock().unwrap();
                    let first = start_us + self.offset.unwrap_or_default().as_micros() as u64;
                    let delay = Duration::from_micros(first.saturating_sub(unix_us()));
                    let period = self.period.expect("checked");
                    let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + delay, period);
                    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    sending = Some((iv, until));
                    Ok(())
                }
                _ = async { sending.as_mut().expect("guarded").0.tick().await }, if sending.is_some() => {
                    if unix_us() >= sending.as_ref().expect("guarded").1 {
                        // The window is over: stop sending, keep reading.
                        sending = None;
                        done_sending = true;
                        Ok(())
                    } else {
                        self.shared.sent.fetch_add(1, Ordering::Relaxed);
                        s.write_all(&self.chat_frame()).await
                    }
                }
                _ = heartbeat.tick() => s.write_all(&hb).await,
            };
            if io.is_err() {
                return;
            }
        }
    }
}

struct Finders {
    msg_id: Finder<'static>,
    stamp: Finder<'static>,
    offset: Finder<'static>,
}
