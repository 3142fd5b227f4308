//! A stand-alone gateway for the load tools in `bench/` (`bench/danmaku.sh`): one process with
//! the IM gateway (HTTP `/ws` + TCP), `MemoryCache`, `MemoryBus` and a minimal in-process `msg`
//! role (room members from the online/offline events; each chat message pushed to all members
//! but its sender, one batch per message).
//!
//! Bench-only extras: `POST /bench/tokens?from=&count=` issues IM tokens for users
//! `from..from+count` (the real system issues them through the api), `GET /bench/stats`,
//! `POST /bench/reset` (clears the server-side write-lag histogram).
//!
//! Run: `cargo run --release -p livehouse-im-core --example im_bench_server -- --help`

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Parser;
use livehouse_core::bus::{Bus, MemoryBus, TOPIC_CHAT, TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_core::cache::{Cache, MemoryCache};
use livehouse_core::events::{ChatEvent, PresenceEvent, PushBatch};
use livehouse_im_core::{registry, Gateway, ImConfig};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18080")]
    http_addr: String,
    #[arg(long, default_value = "127.0.0.1:18085")]
    tcp_addr: String,
    /// Fan-out coalescing window in milliseconds (0 = deliver each message at once).
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Client heartbeat gap in seconds.
    #[arg(long, default_value_t = 30)]
    heartbeat_gap: u64,
    /// Outbox bound per session.
    #[arg(long, default_value_t = 512)]
    outbox: usize,
}

type Members = Arc<Mutex<HashMap<i64, HashSet<i64>>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::with_limits(8, 65536));
    let cfg = ImConfig {
        gateway_id: "bench-gw".into(),
        tcp_addr_public: args.tcp_addr.clone(),
        ws_addr_public: format!("ws://{}/ws", args.http_addr),
        push_url: format!("http://{}", args.http_addr),
        heartbeat_gap: Duration::from_secs(args.heartbeat_gap),
        fanout_linger: Duration::from_millis(args.linger_ms),
        outbox_limit: args.outbox,
        internal_token: "bench".into(),
        ..ImConfig::default()
    };
    let gw = Gateway::new(cfg, cache.clone(), bus.clone());

    // The minimal `msg` role.
    let members: Members = Arc::default();
    for (topic, join) in [(TOPIC_ONLINE, true), (TOPIC_OFFLINE, false)] {
        let mut sub = bus.subscribe(topic, "bench-living").await?;
        let m = members.clone();
        tokio::spawn(async move {
            while let Ok(d) = sub.next().await {
                if let Ok(ev) = serde_json::from_slice::<PresenceEvent>(&d.payload) {
                    let mut m = m.lock();
                    let set = m.entry(ev.room_id).or_default();
                    if join {
                        set.insert(ev.user_id);
                    } else {
                        set.remove(&ev.user_id);
                    }
                }
                let _ = sub.commit(&d).await;
            }
        });
    }
    let mut chat = bus.subscribe(TOPIC_CHAT, "bench-msg").await?;
    let (g2, m2) = (gw.clone(), members.clone());
    tokio::spawn(async move {
        while let Ok(d) = chat.next().await {
            if let Ok(ev) = serde_json::from_slice::<ChatEvent>(&d.payload) {
                let receivers: Vec<i64> = m2
                    .lock()
                    .get(&ev.room_id)
                    .map(|s| s.iter().copied().filter(|u| *u != ev.sender_id).collect())
                    .unwrap_or_default();
                g2.push(PushBatch { receivers, msg: ev }).await;
            }
            let _ = chat.commit(&d).await;
        }
    });

    let app = Router::new()
        .route("/bench/tokens", post(tokens))
        .route("/bench/stats", get(stats))
        .route("/bench/reset", post(reset))
        .with_state((cache.clone(), gw.clone()))
        .merge(gw.router());
    // Small frames want TCP_NODELAY (the gateway sets it on its own TCP listener).
    let http = tokio::net::TcpListener::bind(&args.http_addr)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let tcp = tokio::net::TcpListener::bind(&args.tcp_addr).await?;
    tokio::spawn(gw.clone().serve_tcp(tcp, std::future::pending()));
    tokio::spawn(gw.clone().run_registration(std::future::pending()));
    println!(
        "READY pid={} http={} tcp={} linger_ms={}",
        std::process::id(),
        args.http_addr,
        args.tcp_addr,
        args.linger_ms
    );
    axum::serve(http, app).await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    from: i64,
    count: i64,
}

async fn tokens(
    State((cache, _)): State<(Arc<dyn Cache>, Arc<Gateway>)>,
    Query(q): Query<TokenQuery>,
) -> Json<Vec<String>> {
    let mut out = Vec::with_capacity(q.count.max(0) as usize);
    for u in q.from..q.from + q.count.clamp(0, 100_000) {
        out.push(registry::issue_im_token(&*cache, u).await.unwrap());
    }
    Json(out)
}

async fn reset(State((_, gw)): State<(Arc<dyn Cache>, Arc<Gateway>)>) -> &'static str {
    gw.reset_write_lag();
    "ok"
}

async fn stats(State((_, gw)): State<(Arc<dyn Cache>, Arc<Gateway>)>) -> Json<serde_json::Value> {
    let s = gw.stats();
    Json(serde_json::json!({
        "connections": s.connections, "sessions": s.sessions, "delivered": s.delivered,
        "retried": s.retried, "unackedDropped": s.unacked_dropped, "slowKicked": s.slow_kicked,
        "idleClosed": s.idle_closed, "chatPublished": s.chat_published,
        "lastFanoutLagMs": s.last_fanout_lag_ms,
        "writeLagP50Ms": s.write_lag_p50_ms, "writeLagP99Ms": s.write_lag_p99_ms,
    }))
}
