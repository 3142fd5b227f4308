//! HTTP-FLV load tool: opens N viewers of one live stream over raw TCP (HTTP/1.1, chunked) and
//! reports whether every viewer kept up; or (`--ttff`) measures the time to first frame of a
//! viewer joining mid-stream.
//!
//! A viewer "keeps up" when, during the measurement window, it stays connected, its video
//! timestamps have no gap (> `--gap-ms`, i.e. the server made it skip to a keyframe), and its lag
//! stays under `--max-lag-ms`. Lag of a tag = (wall clock at receipt − media timestamp) minus
//! the smallest such offset the viewer ever saw: with a real-time (`-re`) publisher, a viewer
//! that keeps up sees a constant offset, one that falls behind sees it grow.
//!
//! Large N is spread over `--procs` child processes (each at most 20,000 open files); the parent
//! gives every child the same measurement window and sums their reports. Bodies are parsed in
//! place (chunked framing and FLV tag headers only), never copied. Not a test: it measures.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// e.g. http://127.0.0.1:8080/live/1.flv
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Seconds of measurement once every viewer is connected.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Child processes to spread the viewers over.
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// New connections per second (over all processes).
    #[arg(long, default_value_t = 500)]
    connect_rate: u64,
    #[arg(long, default_value_t = 1000)]
    max_lag_ms: i64,
    #[arg(long, default_value_t = 500)]
    gap_ms: i64,
    /// Tokio worker threads per process (0 = one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Instead of the load: this many mid-stream joins, one after the other, timing each to its
    /// first complete video keyframe.
    #[arg(long)]
    ttff: Option<usize>,
    /// Internal: run as a child with this measurement window (unix ms, start,end).
    #[arg(long, hide = true)]
    window: Option<String>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        if let Some(samples) = args.ttff {
            return ttff(&args, samples).await;
        }
        match args.window.clone() {
            Some(w) => child(&args, &w).await,
            None => parent(&args).await,
        }
    })
}

/// Splits the viewers over child processes and sums their reports.
async fn parent(args: &Args) -> anyhow::Result<()> {
    let procs = args.procs.max(1);
    let ramp_ms = (args.viewers as i64 * 1000) / args.connect_rate.max(1) as i64;
    let start = unix_ms() + ramp_ms + 3000;
    let end = start + args.duration as i64 * 1000;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..procs {
        let n = args.viewers / procs + usize::from(i < args.viewers % procs);
        let rate = (args.connect_rate / procs as u64).max(1);
        let child = tokio::process::Command::new(&exe)
            .args(["--url", &args.url, "--viewers", &n.to_string()])
            .args([
                "--connect-rate",
                &rate.to_string(),
                "--threads",
                &args.threads.to_string(),
            ])
            .args(["--max-lag-ms", &args.max_lag_ms.to_string()])
            .args(["--gap-ms", &args.gap_ms.to_string()])
            .args(["--window", &format!("{start},{end}")])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        children.push(child);
    }
    let mut total = Report::default();
    for c in children {
        let out = c.wait_with_output().await?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim()).context("child report")?;
        total.add_json(&v);
    }
    let summary = total.summary(args.viewers);
    println!("{summary}");
    Ok(())
}

#[derive(Default, Debug)]
struct Report {
    connected: u64,
    kept_up: u64,
    failed_connect: u64,
    ended_early: u64,
    with_gaps: u64,
    lagging: u64,
    first_frame_not_key: u64,
    bytes: u64,
    window_bytes: u64,
    window_secs: f64,
    tags: u64,
    lags: Vec<i64>,
}

impl Report {
    fn add_json(&mut self, v: &serde_json::Value) {
        let g = |k: &str| v[k].as_u64().unwrap_or(0);
        self.connected += g("connected");
        self.kept_up += g("kept_up");
        self.failed_connect += g("failed_connect");
        self.ended_early += g("ended_early");
        self.with_gaps += g("with_gaps");
        self.lagging += g("lagging");
        self.first_frame_not_key += g("first_frame_not_key");
        self.bytes += g("bytes");
        self.window_bytes += g("window_bytes");
        self.window_secs = v["window_secs"].as_f64().unwrap_or(0.0);
        self.tags += g("tags");
        if let Some(l) = v["lags_ms"].as_array() {
            self.lags.extend(l.iter().filter_map(|x| x.as_i64()));
        }
    }

    fn summary(&mut self, viewers: usize) -> serde_json::Value {
        self.lags.sort_unstable();
        let pct = |p: f64| -> i64 {
            if self.lags.is_empty() {
                return -1;
            }
            let i = ((self.lags.len() - 1) as f64 * p).round() as usize;
            self.lags[i]
        };
        json!({
            "viewers": viewers,
            "connected": self.connected,
            "kept_up": self.kept_up,
            "all_kept_up": self.kept_up == viewers as u64,
            "failed_connect": self.failed_connect,
            "ended_early": self.ended_early,
            "with_gaps": self.with_gaps,
            "lagging": self.lagging,
            "first_frame_not_key": self.first_frame_not_key,
            "bytes": self.bytes,
            "window_bytes": self.window_bytes,
            "window_secs": self.window_secs,
            "mbit_per_viewer": if self.connected > 0 && self.window_secs > 0.0 {
                self.window_bytes as f64 * 8.0 / 1e6 / self.connected as f64 / self.window_secs
            } else {
                0.0
            },
            "tags": self.tags,
            "lag_ms_p50": pct(0.5),
            "lag_ms_p99": pct(0.99),
            "lag_ms_max": pct(1.0),
        })
    }
}

/// Runs this process's viewers over the window and prints one JSON report line.
async fn child(args: &Args, window: &str) -> anyhow::Result<()> {
    let (start, end) = window
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
        .context("--window start,end")?;
    let target = Target::parse(&args.url)?;
    let gap = Duration::from_micros(1_000_000 / args.connect_rate.max(1));
    let mut tasks = Vec::with_capacity(args.viewers);
    for _ in 0..args.viewers {
        let target = target.clone();
        let gap_ms = args.gap_ms;
        tasks.push(tokio::spawn(async move {
            viewer(&target, start, end, gap_ms).await
        }));
        tokio::time::sleep(gap).await;
    }
    let mut r = Report {
        window_secs: (end - start) as f64 / 1000.0,
        ..Report::default()
    };
    for t in tasks {
        let v = t.await?;
        if !v.connected {
            r.failed_connect += 1;
            continue;
        }
        r.connected += 1;
        r.bytes += v.bytes;
        r.window_bytes += v.window_bytes;
        r.tags += v.tags;
        let lag = v.max_offset_window - v.min_offset;
        r.lags.push(lag);
        r.ended_early += u64::from(v.ended_early);
        r.with_gaps += u64::from(v.gaps > 0);
        r.lagging += u64::from(lag > args.max_lag_ms);
        r.first_frame_not_key += u64::from(!v.first_frame_key);
        if !v.ended_early && v.gaps == 0 && lag <= args.max_lag_ms && v.window_tags > 0 {
            r.kept_up += 1;
        }
    }
    let mut j = r.summary(args.viewers);
    j["lags_ms"] = json!(r.lags);
    println!("{j}");
    Ok(())
}

#[derive(Clone)]
struct Target {
    addr: String,
    host: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .context("http:// URL expected")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Ok(Target {
            addr: host.to_string(),
            host: host.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }
}

#[derive(Default)]
struct ViewerResult {
    connected: bool,
    ended_early: bool,
    bytes: u64,
    window_bytes: u64,
    tags: u64,
    window_tags: u64,
    gaps: u32,
    min_offset: i64,
    max_offset_window: i64,
    first_frame_key: bool,
}

async fn viewer(t: &Target, start: i64, end: i64, gap_ms: i64) -> ViewerResult {
    let mut res = ViewerResult {
        min_offset: i64::MAX,
        max_offset_window: i64::MIN,
        ..Default::default()
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis((end - unix_ms()).max(0) as u64);
    let run = async {
        let (mut sock, rest) = open(t).await?;
        res.connected = true;
        let mut p = FlvParser::default();
        let mut last_video: Option<i64> = None;
        let mut first_video_seen = false;
        let mut on_tag = |tag: TagEvent, res: &mut ViewerResult| {
            let TagEvent::Header { kind, ts, b0, b1 } = tag else {
                return;
            };
            res.tags += 1;
            if kind != 8 && kind != 9 {
                return;
            }
            let now = unix_ms();
            let offset = now - ts;
            res.min_offset = res.min_offset.min(offset);
            let in_window = now >= start;
            if in_window {
                res.window_tags += 1;
                res.max_offset_window = res.max_offset_window.max(offset);
            }
            if kind == 9 && b1 != Some(0) {
                if !first_video_seen {
                    first_video_seen = true;
                    res.first_frame_key = b0 >> 4 == 1;
                }
                if let Some(last) = last_video {
                    if in_window && ts - last > gap_ms {
                        res.gaps += 1;
                    }
                }
                last_video = Some(ts);
            }
        };
        p.feed(&rest, &mut |e| on_tag(e, &mut res))?;
        res.bytes += rest.len() as u64;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 || p.done {
                bail!("stream ended");
            }
            res.bytes += n as u64;
            if unix_ms() >= start {
                res.window_bytes += n as u64;
            }
            p.feed(&buf[..n], &mut |e| on_tag(e, &mut res))?;
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if res.connected {
                res.ended_early = true;
            }
            eprintln!("viewer: {e:#}");
        }
        Err(_) => {} // the window ended while connected: the normal case
    }
    if res.max_offset_window == i64::MIN {
        res.max_offset_window = res.min_offset;
    }
    res
}

/// Connects and sends the request; returns the socket and body bytes read with the head.
async fn open(t: &Target) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut sock = TcpStream::connect(&t.addr).await?;
    sock.set_nodelay(true)?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: flv_viewers\r\nAccept: */*\r\n\r\n",
        t.path, t.host
    );
    sock.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the response head");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..i]).to_ascii_lowercase();
            if !text.starts_with("http/1.1 200") {
                bail!("status: {}", text.lines().next().unwrap_or_default());
            }
            if !text.contains("transfer-encoding: chunked") {
                bail!("response is not chunked");
            }
            return Ok((sock, head[i + 4..].to_vec()));
        }
        if head.len() > 16 * 1024 {
            bail!("response head too large");
        }
    }
}

enum TagEvent {
    /// A tag's header and (when present) its first two body bytes.
    Header {
        kind: u8,
        ts: i64,
        b0: u8,
        b1: Option<u8>,
    },
    /// The last byte of a video keyframe tag arrived.
    KeyframeComplete,
}

#[derive(Default)]
enum Chunk {
    #[default]
    Size,
    Data(usize),
    Crlf(u8),
}

#[derive(Default)]
enum Flv {
    #[default]
    FileHeader,
    TagHead,
    Skip,
}

/// Chunked-transfer decoder feeding an FLV tag-header parser; never copies tag bodies.
#[derive(Default)]
struct FlvParser {
    chunk: Chunk,
    line: Vec<u8>,
    flv: Flv,
    head: [u8; 13],
    head_len: usize,
    skip: usize,
    keyframe: bool,
    done: bool,
}

impl FlvParser {
    fn feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(TagEvent)) -> anyhow::Result<()> {
        while !data.is_empty() && !self.done {
            match self.chunk {
                Chunk::Size => {
                    let i = data.iter().position(|&b| b == b'\n');
                    let take = i.map_or(data.len(), |i| i + 1);
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.line.len() > 64 {
                        bail!("chunk size line too long");
                    }
                    if i.is_some() {
                        let s = String::from_utf8_lossy(&self.line);
                        let hex = s.trim().split(';').next().unwrap_or_default();
                        let n = usize::from_str_radix(hex, 16).context("chunk size")?;
                        self.line.clear();
                        if n == 0 {
                            self.done = true;
                        } else {
                            self.chunk = Chunk::Data(n);
                        }
                    }
                }
                Chunk::Data(n) => {
                    let take = n.min(data.len());
                    self.flv_feed(&data[..take], on)?;
                    data = &data[take..];
                    self.chunk = if take == n {
                        Chunk::Crlf(2)
                    } else {
                        Chunk::Data(n - take)
                    };
                }
                Chunk::Crlf(k) => {
                    let take = (k as usize).min(data.len());
                    data = &data[take..];
                    self.chunk = if take == k as usize {
                        Chunk::Size
                    } else {
                        Chunk::Crlf(k - take as u8)
                    };
                }
            }
        }
        Ok(())
    }

    fn flv_feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(TagEvent)) -> anyhow::Result<()> {
        while !data.is_empty() {
            match self.flv {
                Flv::FileHeader => {
                    let take = (13 - self.head_len).min(data.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                    self.head_len += take;
                    data = &data[take..];
                    if self.head_len == 13 {
                        if &self.head[..3] != b"FLV" {
                            bail!("not an FLV stream");
                        }
                        self.head_len = 0;
                        self.flv = Flv::TagHead;
                    }
                }
                Flv::TagHead => {
                    let size = if self.head_len >= 4 {
                        u32::from_be_bytes([0, self.head[1], self.head[2], self.head[3]]) as usize
                    } else {
                        usize::MAX
                    };
                    let need = if size == usize::MAX {
                        4
                    } else {
                        11 + size.min(2)
                    };
                    let take = (need - self.head_len).min(data.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                    self.head_len += take;
                    data = &data[take..];
                    if self.head_len == need && size != usize::MAX {
                        let h = &self.head;
                        let ts = i64::from(u32::from_be_bytes([h[7], h[4], h[5], h[6]]));
                        let b0 = if size >= 1 { h[11] } else { 0 };
                        let b1 = (size >= 2).then_some(h[12]);
                        self.keyframe = h[0] == 9 && b0 >> 4 == 1 && b1 == Some(1);
                        on(TagEvent::Header {
                            kind: h[0],
                            ts,
                            b0,
                            b1,
                        });
                        self.skip = size - size.min(2) + 4;
                        self.head_len = 0;
                        self.flv = Flv::Skip;
                    }
                }
                Flv::Skip => {
                    let take = self.skip.min(data.len());
                    self.skip -= take;
                    data = &data[take..];
                    if self.skip == 0 {
                        if self.keyframe {
                            on(TagEvent::KeyframeComplete);
                        }
                        self.flv = Flv::TagHead;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Mid-stream joins, one after another at pseudo-random points of the GOP.
async fn ttff(args: &Args, samples: usize) -> anyhow::Result<()> {
    let target = Target::parse(&args.url)?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let jitter = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            % 1000) as u64;
        tokio::time::sleep(Duration::from_millis(300 + jitter)).await;
        let started = Instant::now();
        let (mut sock, rest) = open(&target).await?;
        let mut p = FlvParser::default();
        let got = std::cell::Cell::new(false);
        let first_is_key = std::cell::Cell::new(None);
        let mut on = |e: TagEvent| match e {
            TagEvent::KeyframeComplete => got.set(true),
            TagEvent::Header {
                kind: 9, b0, b1, ..
            } if b1 != Some(0) && first_is_key.get().is_none() => {
                first_is_key.set(Some(b0 >> 4 == 1))
            }
            _ => {}
        };
        p.feed(&rest, &mut on)?;
        let mut buf = vec![0u8; 64 * 1024];
        while !got.get() {
            let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await??;
            if n == 0 {
                bail!("stream ended before a keyframe");
            }
            p.feed(&buf[..n], &mut on)?;
        }
        let first_is_key = first_is_key.get();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!("join {i}: first keyframe complete after {ms:.1} ms (first frame key: {first_is_key:?})");
        if first_is_key != Some(true) {
            bail!("first video frame of join {i} is not a keyframe");
        }
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "{}",
        json!({"samples": samples, "ttff_ms_p50": p50, "ttff_ms_max": max})
    );
    Ok(())
}
