//! `recover_load` — a reconnect storm against the IM gateway (design §3.1 recovery).
//!
//! 1. `--viewers` WebSocket viewers log in to one room and follow it (ACKing every delivery);
//! 2. they all drop their connections;
//! 3. `--senders` connections say `--gap` messages meanwhile (each sender at most 5/s, the
//!    gateway's limit), and every answer must be `data:"true"`;
//! 4. every viewer reconnects at a random moment within `--spread-secs`, logging in with
//!    `recover: {epoch, offset}` of the last message it had, and reads until it holds every
//!    message of the gap.
//!
//! Reported: how many recovered (`recovered: true` and every offset of the gap, contiguous, no
//! duplicate), how many did not ("gaps"), the time from a viewer's login to holding the whole gap
//! (p50/p99/max), the time from the first reconnect until the last viewer is live again, and the
//! server's CPU over the reconnect phase. IM tokens are written into the server's Redis as the
//! api issues them (`--redis-url`, `--cache-prefix`). One process (10,000 sockets fit the open
//! file limit); loopback only; every wait is bounded.

use clap::Parser;
use livehouse_core::cache::{Cache, RedisCache};
use livehouse_core::events::keys;
use livehouse_core::presence::{Presence, PresenceConfig, RedisPresence};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:28080")]
    http: String,
    #[arg(long, default_value_t = 10_000)]
    viewers: u32,
    /// Messages said while the viewers are away.
    #[arg(long, default_value_t = 100)]
    gap: u32,
    #[arg(long, default_value_t = 20)]
    senders: u32,
    /// Viewers reconnect at random moments within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    spread_secs: f64,
    #[arg(long, default_value_t = 7)]
    room: i64,
    #[arg(long, default_value_t = 3_000_000)]
    first_user: i64,
    #[arg(long)]
    redis_url: String,
    #[arg(long)]
    cache_prefix: String,
    /// Server process id, for its CPU over the reconnect phase.
    #[arg(long)]
    server_pid: Option<u32>,
}

const WAIT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(Args::parse()))
}

/// A minimal WebSocket client: masked text frames out (zero key), server frames in.
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

fn envelope(code: i32, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let text = json!({"magic": 18673, "code": code, "len": body.len(), "body": body}).to_string();
    let p = text.as_bytes();
    let mut out = vec![0x81];
    if p.len() < 126 {
        out.push(0x80 | p.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(p);
    out
}

impl Ws {
    async fn connect(http: &str) -> anyhow::Result<Ws> {
        let mut s = tokio::time::timeout(WAIT, TcpStream::connect(http)).await??;
        s.set_nodelay(true)?;
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 2048];
            let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
        };
        anyhow::ensure!(buf.starts_with(b"HTTP/1.1 101"), "no upgrade");
        buf.drain(..end);
        Ok(Ws { s, buf })
    }

    async fn send(&mut self, code: i32, body: Value) -> anyhow::Result<()> {
        self.s.write_all(&envelope(code, &body)).await?;
        Ok(())
    }

    /// The next text message as (code, body), or `None` when the connection ended.
    async fn next(&mut self) -> anyhow::Result<Option<(i64, Value)>> {
        loop {
            if self.buf.len() >= 2 {
                let (len, hdr) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= hdr + len {
                    let op = self.buf[0] & 0x0f;
                    let payload: Vec<u8> = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    if op == 0x8 {
                        return Ok(None);
                    }
                    if op != 0x1 {
                        continue;
                    }
                    let env: Value = serde_json::from_slice(&payload)?;
                    let body: Value = serde_json::from_str(env["body"].as_str().unwrap_or("{}"))
                        .unwrap_or_default();
                    return Ok(Some((env["code"].as_i64().unwrap_or(0), body)));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk)).await??;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Logs in; returns the answer's body.
    async fn login(
        &mut self,
        user: i64,
        token: &str,
        room: i64,
        extra: Value,
    ) -> anyhow::Result<Value> {
        let mut body = json!({"appId": 10001, "userId": user, "token": token, "roomId": room,
            "deviceId": format!("bench-{user}")});
        if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        self.send(1001, body).await?;
        loop {
            match self.next().await? {
                Some((1001, b)) if b["data"] == "true" => return Ok(b),
                Some((1001, b)) => anyhow::bail!("login refused: {b}"),
                Some(_) => {}
                None => anyhow::bail!("closed during login"),
            }
        }
    }
}

/// (epoch, offset) of a delivery.
fn position(b: &Value) -> Option<(String, u64)> {
    Some((b["epoch"].as_str()?.to_string(), b["offset"].as_u64()?))
}

async fn tokens(cache: &RedisCache, from: i64, n: u32) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n as usize);
    for user in from..from + i64::from(n) {
        let t = livehouse_core::ids::random_hex(16);
        cache
            .set(
                &keys::im_token(&t),
                &user.to_string(),
                Some(Duration::from_secs(300)),
            )
            .await?;
        out.push(t);
    }
    Ok(out)
}

fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[(((v.len() as f64) * q).ceil() as usize).clamp(1, v.len()) - 1]
}

/// A viewer while following the room: reads, ACKs, keeps its position, until told to drop.
async fn follow(
    mut ws: Ws,
    user: i64,
    mut pos: (String, u64),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (String, u64) {
    loop {
        tokio::select! {
            _ = stop.changed() => return pos,
            m = ws.next() => match m {
                Ok(Some((1003, b))) => {
                    if let Some(p) = position(&b) {
                        pos = p;
                        let id = b["msgId"].clone();
                        let _ = ws.send(1005, json!({"appId": 10001, "userId": user, "msgId": id})).await;
                    }
                }
                Ok(Some(_)) => {}
                _ => return pos,
            }
        }
    }
}

async fn run(a: Args) -> anyhow::Result<()> {
    let cache = RedisCache::connect(&a.redis_url, &a.cache_prefix).await?;
    let presence =
        RedisPresence::connect(&a.redis_url, &a.cache_prefix, PresenceConfig::default()).await?;
    let viewer_tokens = Arc::new(tokens(&cache, a.first_user, a.viewers).await?);
    let sender_from = a.first_user + i64::from(a.viewers);
    let sender_tokens = tokens(&cache, sender_from, a.senders).await?;

    // 1. Viewers follow the room.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut followers = Vec::new();
    let t0 = Instant::now();
    for i in 0..a.viewers {
        let (http, toks, sem, stop) = (
            a.http.clone(),
            viewer_tokens.clone(),
            sem.clone(),
            stop_rx.clone(),
        );
        let user = a.first_user + i64::from(i);
        let room = a.room;
        followers.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("open");
            let mut ws = Ws::connect(&http).await?;
            let b = ws.login(user, &toks[i as usize], room, json!({})).await?;
            drop(permit);
            let pos = (
                b["epoch"].as_str().unwrap_or_default().to_string(),
                b["offset"].as_u64().unwrap_or(0),
            );
            anyhow::Ok(follow(ws, user, pos, stop).await)
        }));
    }
    let mut senders = Vec::new();
    for (i, t) in sender_tokens.iter().enumerate() {
        let mut ws = Ws::connect(&a.http).await?;
        let user = sender_from + i as i64;
        ws.login(user, t, a.room, json!({})).await?;
        senders.push((user, ws));
    }
    let want = u64::from(a.viewers + a.senders);
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let n = presence
            .room_counts(&[a.room], livehouse_core::time::now_ms())
            .await?[0];
        if n >= want {
            break;
        }
        anyhow::ensure!(Instant::now() < end, "only {n} of {want} in the room");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} viewers and {} senders in the room after {:.1}s",
        a.viewers,
        a.senders,
        t0.elapsed().as_secs_f64()
    );

    // A first message, so every viewer holds a position with an offset.
    say(&mut senders, 1, a.room).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. Everyone drops.
    stop_tx.send(true)?;
    let mut positions = Vec::with_capacity(a.viewers as usize);
    for f in followers {
        positions.push(f.await??);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = positions.iter().map(|p| p.1).min().unwrap_or(0);
    let top_before = positions.iter().map(|p| p.1).max().unwrap_or(0);
    anyhow::ensure!(
        base == top_before,
        "viewers disagree on their position: {base}..{top_before}"
    );

    // 3. The gap.
    say(&mut senders, a.gap, a.room).await?;
    let target = base + u64::from(a.gap);
    eprintln!(
        "gap of {} messages said: offsets {}..={target}",
        a.gap,
        base + 1
    );

    // 4. The storm.
    let cpu0 = a.server_pid.and_then(cpu_secs);
    let storm = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (epoch, offset)) in positions.into_iter().enumerate() {
        let delay = Duration::from_secs_f64(a.spread_secs * rand_unit(i as u64));
        let (http, toks, sem, done) = (
            a.http.clone(),
            viewer_tokens.clone(),
            sem.clone(),
            done.clone(),
        );
        let user = a.first_user + i as i64;
        let room = a.room;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _permit = sem.acquire_owned().await.expect("open");
            let mut ws = Ws::connect(&http).await?;
            let t = Instant::now();
            let b = ws
                .login(
                    user,
                    &toks[i],
                    room,
                    json!({"recover": {"epoch": epoch, "offset": offset}}),
                )
                .await?;
            if b["recovered"] != true {
                return anyhow::Ok((false, t.elapsed(), storm.elapsed()));
            }
            let mut next = offset + 1;
            while next <= target {
                match ws.next().await? {
                    Some((1003, m)) => {
                        let Some((_, o)) = position(&m) else { continue };
                        if o != next {
                            return Ok((false, t.elapsed(), storm.elapsed()));
                        }
                        next += 1;
                        let _ = ws.send(1005, json!({"msgId": m["msgId"]})).await;
                    }
                    Some(_) => {}
                    None => return Ok((false, t.elapsed(), storm.elapsed())),
                }
            }
            let took = t.elapsed();
            done.fetch_add(1, Ordering::Relaxed);
            Ok((true, took, storm.elapsed()))
        }));
    }
    let (mut ok, mut gaps, mut errors) = (0u32, 0u32, 0u32);
    let mut took: Vec<f64> = Vec::new();
    let mut all_live = Duration::ZERO;
    for t in tasks {
        match t.await? {
            Ok((true, d, at)) => {
                ok += 1;
                took.push(d.as_secs_f64() * 1000.0);
                all_live = all_live.max(at);
            }
            Ok((false, _, _)) => gaps += 1,
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("viewer error: {e}");
                }
            }
        }
    }
    let cpu = match (cpu0, a.server_pid.and_then(cpu_secs)) {
        (Some(b), Some(e)) => format!("{:.2} cores", (e - b) / storm.elapsed().as_secs_f64()),
        _ => "n/a".into(),
    };
    took.sort_by(f64::total_cmp);
    println!(
        "viewers={} gap={} spread={}s: recovered {ok}, gaps {gaps}, errors {errors}\n\
         login -> whole gap: p50={:.1} ms p99={:.1} ms max={:.1} ms\n\
         first reconnect -> last viewer live: {:.2} s (spread {:.1} s); server CPU over the storm {cpu}",
        a.viewers, a.gap, a.spread_secs, pct(&took, 0.5), pct(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN), all_live.as_secs_f64(), a.spread_secs,
    );
    println!(
        "JSON {}",
        json!({"viewers": a.viewers, "gap": a.gap, "spreadSecs": a.spread_secs, "recovered": ok,
               "gaps": gaps, "errors": errors, "p50Ms": pct(&took, 0.5), "p99Ms": pct(&took, 0.99),
               "maxMs": took.last(), "allLiveSecs": all_live.as_secs_f64()})
    );
    anyhow::ensure!(
        gaps == 0 && errors == 0,
        "{gaps} viewers with a gap, {errors} errors"
    );
    Ok(())
}

/// A deterministic spread in [0, 1) per viewer.
fn rand_unit(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The senders say `n` messages between them (each at most 5/s); every answer must be "true".
async fn say(senders: &mut [(i64, Ws)], n: u32, room: i64) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let round = left.min(senders.len() as u32);
        for (user, ws) in senders.iter_mut().take(round as usize) {
            let data =
                json!({"roomId": room, "content": format!("gap message to {user}")}).to_string();
            ws.send(
                1003,
                json!({"appId": 10001, "userId": *user, "bizCode": 5555, "data": data}),
            )
            .await?;
        }
        for (_, ws) in senders.iter_mut().take(round as usize) {
            loop {
                match ws.next().await? {
                    Some((1003, b)) if b.get("offset").is_none() => {
                        anyhow::ensure!(b["data"] == "true", "a sender was refused: {b}");
                        break;
                    }
                    Some(_) => {}
                    None => anyhow::bail!("a sender was closed"),
                }
            }
        }
        left -= round;
        // 5 messages per second per sender at most.
        tokio::time::sleep(Duration::from_millis(210)).await;
    }
    Ok(())
}
