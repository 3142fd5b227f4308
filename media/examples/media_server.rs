//! A standalone built-in media server with a fixed stream-key table, for the benchmark and the
//! nginx test (the lead later points both at the `livehouse` binary).
//!
//! `cargo run -p livehouse-media --example media_server -- --rtmp-addr 127.0.0.1:1935 \
//!     --http-addr 127.0.0.1:8080 --key secretkey=1`
//!
//! Serves RTMP ingest/play, `GET /live/{roomId}.flv`, the nginx-rtmp callbacks
//! (`POST /media/on_publish|on_update|on_publish_done`) and, to play "the streamer closes the
//! room", `POST /example/rooms/{id}/close` on the HTTP address, and prints
//! `RTMP <addr>` and `HTTP <addr>` on stdout once listening (ports may be 0). It owns nothing
//! beyond this demo wiring.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Parser;
use livehouse_media::{HubConfig, MediaServer, StreamAuth};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1935")]
    rtmp_addr: String,
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: String,
    /// `KEY=ROOM_ID`, repeatable.
    /// Secret the nginx callbacks must carry as `?secret=` (none: callbacks refused).
    #[arg(long)]
    callback_secret: Option<String>,
    #[arg(long = "key", value_parser = parse_key)]
    keys: Vec<(String, i64)>,
    /// Tags queued per viewer before it skips to the next keyframe.
    #[arg(long, default_value_t = 512)]
    viewer_queue: usize,
}

fn parse_key(s: &str) -> Result<(String, i64), String> {
    let (k, r) = s.split_once('=').ok_or("expected KEY=ROOM_ID")?;
    Ok((k.to_string(), r.parse().map_err(|e| format!("{e}"))?))
}

/// The key table, plus rooms closed through `POST /example/rooms/{id}/close` (demo and tests only).
struct FixedKeys {
    keys: HashMap<String, i64>,
    closed: parking_lot::Mutex<std::collections::HashSet<i64>>,
}

#[async_trait::async_trait]
impl StreamAuth for FixedKeys {
    async fn authorize_publish(&self, stream_key: &str) -> Result<i64, String> {
        match self.keys.get(stream_key) {
            None => Err("unknown stream key".to_string()),
            Some(room) if self.closed.lock().contains(room) => Err("room is closed".to_string()),
            Some(room) => Ok(*room),
        }
    }
    async fn set_streaming(&self, room_id: i64, streaming: bool) {
        tracing::info!(room_id, streaming, "set_streaming");
    }
    async fn is_room_live(&self, room_id: i64) -> bool {
        !self.closed.lock().contains(&room_id)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let keys = Arc::new(FixedKeys {
        keys: args.keys.into_iter().collect(),
        closed: Default::default(),
    });
    let auth: Arc<dyn StreamAuth> = keys.clone();
    let server = MediaServer::with_config(
        auth.clone(),
        HubConfig {
            viewer_queue: args.viewer_queue,
            ..HubConfig::default()
        },
    );
    let rtmp = tokio::net::TcpListener::bind(&args.rtmp_addr).await?;
    let http = tokio::net::TcpListener::bind(&args.http_addr).await?;
    println!("RTMP {}", rtmp.local_addr()?);
    println!("HTTP {}", http.local_addr()?);
    let close = axum::routing::post(
        move |axum::extract::Path(room): axum::extract::Path<i64>| async move {
            keys.closed.lock().insert(room);
            tracing::info!(room, "room closed");
        },
    );
    let app = server
        .http_router()
        .merge(livehouse_media::nginx_hooks_router(
            auth,
            args.callback_secret.clone(),
        ))
        .route("/example/rooms/{room}/close", close);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let rtmp_task = tokio::spawn(server.clone().serve_rtmp(rtmp, ctrl_c));
    tokio::select! {
        r = axum::serve(http, app) => r?,
        r = rtmp_task => r??,
    }
    Ok(())
}
