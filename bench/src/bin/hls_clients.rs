//! LL-HLS load tool: N clients of one live playlist, each doing what hls.js does in low-latency
//! mode: one plain playlist load, the init segment, then a loop of blocking playlist reloads
//! (`?_HLS_msn=M&_HLS_part=P` for the part the `EXT-X-PRELOAD-HINT` names) each followed by
//! the GET of that part. Each client has its own HTTP/1.1 connection (its own `reqwest`
//! client), like N browsers.
//!
//! A request that fails (a part that left the window: the client fell more than ~6 s behind)
//! is counted and the client reloads the playlist and goes on, as hls.js does.
//!
//! A client *keeps up* when, over the measurement window, no request failed, it fetched every
//! part that ended (on the server's clock) inside the window minus one second at each edge (the
//! parts produced there are the union of what all clients saw), and the lag of each part (wall
//! clock at receipt minus the part's end on the server's clock: `EXT-X-PROGRAM-DATE-TIME` plus
//! the durations before it) stayed under `--max-lag-ms`. Both run on one machine, so the clocks
//! agree. Prints one JSON summary. Not a test: it measures.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// e.g. http://127.0.0.1:8080/live/1.m3u8
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of measurement once every client has started.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// New clients per second.
    #[arg(long, default_value_t = 200)]
    connect_rate: u64,
    #[arg(long, default_value_t = 2000)]
    max_lag_ms: i64,
    /// Tokio worker threads (0 = one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix ms of `2026-12-02T15:26:44.123Z`.
fn parse_pdt(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let ms = s
        .get(20..23)
        .and_then(|x| x.parse::<i64>().ok())
        .unwrap_or(0);
    // Days from civil (Howard Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + ms)
}

/// What a client needs from a playlist.
#[derive(Debug, Default)]
struct Playlist {
    /// (msn, part index) -> (URI, server-clock end of the part in unix ms)
    parts: Vec<((u64, u64), String, i64)>,
    hint: Option<(u64, u64)>,
    init: Option<String>,
}

fn parse_playlist(text: &str) -> anyhow::Result<Playlist> {
    anyhow::ensure!(text.starts_with("#EXTM3U"), "not a playlist");
    let mut p = Playlist::default();
    let mut msn = 0u64;
    let mut part = 0u64;
    let mut clock = 0i64;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            clock = parse_pdt(v.trim()).context("PDT")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let dur: f64 = v
                .strip_prefix("DURATION=")
                .and_then(|x| x.split(',').next())
                .context("part duration")?
                .parse()?;
            let uri = v.split("URI=\"").nth(1).and_then(|x| x.split('"').next());
            clock += (dur * 1000.0).round() as i64;
            p.parts
                .push(((msn, part), uri.context("part URI")?.to_string(), clock));
            part += 1;
        } else if line.starts_with("#EXTINF:") {
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            let uri = v.split("URI=\"").nth(1).and_then(|x| x.split('"').next());
            let name = uri.and_then(|u| u.rsplit('/').next()).context("hint")?;
            let (m, rest) = name.split_once('.').context("hint msn")?;
            let (pt, _) = rest.split_once('.').context("hint part")?;
            p.hint = Some((m.parse()?, pt.parse()?));
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            p.init = v.split('"').next().map(str::to_string);
        } else if !line.starts_with('#') && !line.is_empty() {
            // A segment URI closes the segment: the next parts belong to the next msn.
            msn += 1;
            part = 0;
        }
    }
    Ok(p)
}

#[derive(Default)]
struct ClientResult {
    ok: bool,
    error: Option<String>,
    parts: u64,
    window_parts: u64,
    playlists: u64,
    bytes: u64,
    max_lag: i64,
    lags: Vec<i64>,
    /// Parts fetched whose server-clock end lies in the window minus 1 s at each edge.
    inner: Vec<(u64, u64)>,
    /// Requests that failed (the client went on, as hls.js does).
    failures: Vec<String>,
}

async fn client(
    base: &str,
    playlist_url: &str,
    start: i64,
    end: i64,
    max_lag: i64,
) -> ClientResult {
    let mut r = ClientResult::default();
    let run = async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(15))
            .build()?;
        let get = |url: String| {
            let http = http.clone();
            async move {
                let res = http.get(&url).send().await?;
                if !res.status().is_success() {
                    bail!("{url}: {}", res.status());
                }
                Ok::<_, anyhow::Error>(res.bytes().await?)
            }
        };
        let text = get(playlist_url.to_string()).await?;
        r.playlists += 1;
        let mut pl = parse_playlist(std::str::from_utf8(&text)?)?;
        let init = pl.init.clone().context("no EXT-X-MAP")?;
        r.bytes += get(format!("{base}/{init}")).await?.len() as u64;
        loop {
            if unix_ms() >= end {
                return Ok(());
            }
            let (m, p) = pl.hint.context("no preload hint")?;
            let text = match get(format!("{playlist_url}?_HLS_msn={m}&_HLS_part={p}")).await {
                Ok(t) => t,
                Err(e) => {
                    // Fell out of the window (as hls.js would): note it, reload, go on.
                    r.failures.push(format!("{e:#}"));
                    get(playlist_url.to_string()).await?
                }
            };
            r.playlists += 1;
            pl = parse_playlist(std::str::from_utf8(&text)?)?;
            // Fetch every part from the hinted one up to the newest (usually exactly one).
            let new: Vec<_> = pl
                .parts
                .iter()
                .filter(|(pos, _, _)| *pos >= (m, p))
                .cloned()
                .collect();
            for (pos, uri, part_end) in new {
                let body = match get(format!("{base}/{uri}")).await {
                    Ok(b) => b,
                    Err(e) => {
                        r.failures.push(format!("{e:#}"));
                        continue;
                    }
                };
                let now = unix_ms();
                r.bytes += body.len() as u64;
                r.parts += 1;
                if part_end >= start + 1000 && part_end <= end - 1000 {
                    r.inner.push(pos);
                }
                if now >= start {
                    r.window_parts += 1;
                    let lag = now - part_end;
                    r.max_lag = r.max_lag.max(lag);
                    r.lags.push(lag);
                }
            }
        }
    };
    let result: anyhow::Result<()> = run.await;
    match result {
        Ok(()) => r.ok = r.max_lag <= max_lag && r.failures.is_empty(),
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    if r.error.is_none() {
        r.error = r.failures.first().cloned().filter(|_| !r.ok);
    }
    r
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    rt.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let base = args
        .url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .context("URL with a path")?;
    let ramp_ms = args.clients as i64 * 1000 / args.connect_rate.max(1) as i64;
    let start = unix_ms() + ramp_ms + 3000;
    let end = start + args.duration as i64 * 1000;
    let gap = Duration::from_micros(1_000_000 / args.connect_rate.max(1));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (base, url) = (base.clone(), args.url.clone());
        let max_lag = args.max_lag_ms;
        tasks.push(tokio::spawn(async move {
            client(&base, &url, start, end, max_lag).await
        }));
        tokio::time::sleep(gap).await;
    }
    let mut kept_up = 0u64;
    let mut errors = Vec::new();
    let (mut parts, mut window_parts, mut playlists, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut lags = Vec::new();
    let mut per_client_parts = Vec::new();
    let mut inner_sets = Vec::new();
    let mut all_parts = std::collections::BTreeSet::new();
    let mut failed_requests = 0u64;
    for t in tasks {
        let r = t.await?;
        parts += r.parts;
        window_parts += r.window_parts;
        playlists += r.playlists;
        bytes += r.bytes;
        per_client_parts.push(r.window_parts);
        lags.extend(r.lags);
        failed_requests += r.failures.len() as u64;
        let set: std::collections::BTreeSet<(u64, u64)> = r.inner.into_iter().collect();
        // Every client's parts count toward "produced"; only clients without error keep up.
        all_parts.extend(set.iter().copied());
        if let Some(e) = r.error {
            errors.push(e);
            inner_sets.push(None);
        } else {
            inner_sets.push(r.ok.then_some(set));
        }
    }
    // The parts produced inside the window: every part any client fetched there.
    let all = all_parts;
    for set in inner_sets.iter().flatten() {
        if !all.is_empty() && *set == all {
            kept_up += 1;
        }
    }
    let produced = all.len() as u64;
    lags.sort_unstable();
    let pct = |p: f64| {
        if lags.is_empty() {
            -1
        } else {
            lags[((lags.len() - 1) as f64 * p).round() as usize]
        }
    };
    errors.sort();
    errors.dedup();
    let window = (end - start) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "clients": args.clients,
            "kept_up": kept_up,
            "all_kept_up": kept_up == args.clients as u64,
            "failed": args.clients as u64 - kept_up,
            "errors": errors.iter().take(5).collect::<Vec<_>>(),
            "failed_requests": failed_requests,
            "parts_produced_in_inner_window": produced,
            "parts_in_window_min": per_client_parts.iter().copied().min().unwrap_or(0),
            "parts_fetched": parts,
            "parts_fetched_in_window": window_parts,
            "playlist_requests": playlists,
            "bytes": bytes,
            "mbit_per_client": if args.clients > 0 { bytes as f64 * 8.0 / 1e6 / args.clients as f64 / (began.elapsed().as_secs_f64()).max(1.0) } else { 0.0 },
            "window_secs": window,
            "part_lag_ms_p50": pct(0.5),
            "part_lag_ms_p99": pct(0.99),
            "part_lag_ms_max": pct(1.0),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pdt_and_a_low_latency_playlist() {
        assert_eq!(parse_pdt("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(
            parse_pdt("2026-12-02T15:26:44.123Z"),
            Some(1_796_225_204_123)
        );
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-MAP:URI=\"7/s/init.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:10.000Z\n\
            #EXT-X-PART:DURATION=0.360,URI=\"7/s/4.0.m4s\",INDEPENDENT=YES\n\
            #EXTINF:0.360,\n7/s/4.m4s\n\
            #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:10.360Z\n\
            #EXT-X-PART:DURATION=0.400,URI=\"7/s/5.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"7/s/5.1.m4s\"\n";
        let p = parse_playlist(text).unwrap();
        assert_eq!(p.init.as_deref(), Some("7/s/init.mp4"));
        assert_eq!(p.hint, Some((5, 1)));
        assert_eq!(p.parts[1], ((5, 0), "7/s/5.0.m4s".to_string(), 10_760));
    }
}
