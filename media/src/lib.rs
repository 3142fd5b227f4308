//! livehouse-media: the built-in video path (RTMP ingest → HTTP-FLV and RTMP playback) and the
//! nginx-rtmp callbacks of the production video path.
//!
//! Code map:
//! - `flv`: the FLV byte layout; one serialized tag is shared by every viewer.
//! - `hub`: rooms being published, their header/GOP cache and the non-blocking fan-out.
//! - `rtmp`: one task per RTMP connection (publish or play), on `rml_rtmp`.
//! - `codec`: H.264 / AAC configuration records (picture size, profile, sample rate).
//! - `fmp4`: fragmented MP4 boxes (init segment, `moof` + `mdat`) with the `mp4` crate.
//! - `hls`: HLS / LL-HLS segmenter, in-memory window, playlists and blocking reloads.
//! - `http`: `GET /live/{roomId}.flv`, `GET /live/{roomId}.m3u8` and its media.
//! - `nginx`: `POST /media/on_publish|on_update|on_publish_done` for nginx-rtmp.
//!
//! This crate decides nothing about rooms itself: every "may this key publish", "is this room
//! still live" and "mark the room streaming" goes through [`StreamAuth`], which the lead wires
//! to the `living` service. It must not talk to the database or cache directly.

mod codec;
mod flv;
mod fmp4;
mod health;
mod hls;
mod http;
mod hub;
mod nginx;
mod rtmp;

use std::future::Future;
use std::sync::Arc;

pub use health::{HealthReport, Viewers};
pub use hls::HlsConfig;
pub use hub::HubConfig;

/// The only RTMP application name served.
pub const APP_NAME: &str = "live";

/// What the media server asks the rest of the system.
#[async_trait::async_trait]
pub trait StreamAuth: Send + Sync + 'static {
    /// The room id whose live room owns `stream_key`, or Err(reason) to refuse the publish.
    async fn authorize_publish(&self, stream_key: &str) -> Result<i64, String>;
    /// Publish started (true) / stopped (false) for the room.
    async fn set_streaming(&self, room_id: i64, streaming: bool);
    /// Whether the room is still live (checked every second, so a closed room's publisher is cut).
    async fn is_room_live(&self, room_id: i64) -> bool;
}

/// The built-in media server: an `Arc`-shared hub of streams with its RTMP and HTTP front ends.
pub struct MediaServer {
    auth: Arc<dyn StreamAuth>,
    hub: Arc<hub::Hub>,
}

impl MediaServer {
    pub fn new(auth: Arc<dyn StreamAuth>) -> Arc<Self> {
        Self::with_config(auth, HubConfig::default())
    }

    /// Like [`MediaServer::new`] with explicit fan-out tuning.
    pub fn with_config(auth: Arc<dyn StreamAuth>, config: HubConfig) -> Arc<Self> {
        Arc::new(MediaServer {
            auth,
            hub: hub::Hub::new(config),
        })
    }

    /// Accepts RTMP on the listener until `shutdown` resolves; then stops accepting and tells
    /// every connection to close (publishers are released, viewers' streams end).
    pub async fn serve_rtmp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        rtmp::serve(self, listener, shutdown).await
    }

    /// axum Router serving `GET /live/{roomId}.flv`, `GET /live/{roomId}.m3u8` and the HLS media
    /// (to merge into the HTTP server).
    pub fn http_router(self: &Arc<Self>) -> axum::Router {
        http::router(self.clone())
    }

    /// Whether a publisher is live in the room.
    pub fn is_publishing(&self, room_id: i64) -> bool {
        self.hub.is_publishing(room_id)
    }

    /// Viewers (HTTP-FLV and RTMP) attached to the room.
    pub fn viewer_count(&self, room_id: i64) -> usize {
        self.hub.viewer_count(room_id)
    }

    /// Stream health of the room's current publish session (`None` when nobody publishes).
    /// `max_bitrate_kbps` (0 = no limit) turns a higher bitrate into a warning.
    pub fn stream_health(&self, room_id: i64, max_bitrate_kbps: u32) -> Option<HealthReport> {
        self.hub
            .channel(room_id)
            .map(|c| c.health_report(max_bitrate_kbps))
    }

    /// Rooms being published now.
    pub fn live_rooms(&self) -> Vec<i64> {
        self.hub.live_rooms()
    }

    /// Fan-out counters: (viewers that had to skip to a keyframe, viewers disconnected as stuck).
    pub fn fanout_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.hub.stats.skips.load(Relaxed),
            self.hub.stats.stalled_disconnects.load(Relaxed),
        )
    }
}

/// axum Router for the nginx-rtmp callbacks `POST /media/on_publish`, `POST /media/on_update` and
/// `POST /media/on_publish_done` (form-encoded as nginx-rtmp sends them: app, name, addr,
/// clientid, ...). on_publish: valid key → 302 with `Location: <roomId>` (nginx-rtmp renames the
/// stream), invalid key or a room that already has a publisher → 403. on_update: 403 once the
/// room is closed (nginx cuts the publisher). Uses [`StreamAuth`].
pub fn nginx_hooks_router(auth: Arc<dyn StreamAuth>) -> axum::Router {
    nginx::router(auth)
}
