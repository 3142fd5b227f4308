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
//! - `health`: per-session stream health counters and the report with its warnings.
//! - `record`: recording to FLV with a keyframe index, crash recovery, retention.
//! - `thumb`: live thumbnails (`/live/{roomId}.jpg`) by an ffmpeg subprocess, cached.
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
mod record;
mod rtmp;
mod thumb;

use std::future::Future;
use std::sync::Arc;

pub use health::{HealthReport, Viewers};
pub use hls::HlsConfig;
pub use hub::HubConfig;
pub use record::{RecordConfig, RecordMode, RecordStats, Saved};

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
    /// Whether the room's streamer asked for a recording (`--record per-room`).
    async fn wants_recording(&self, _room_id: i64) -> bool {
        false
    }
    /// A recording of the room was saved (or grew by a session): its total length and size.
    async fn record_saved(&self, _saved: Saved) {}
    /// The room's recording was deleted (retention).
    async fn record_deleted(&self, _room_id: i64) {}
}

/// What the media server is told at start.
#[derive(Clone, Debug, Default)]
pub struct MediaOptions {
    pub hub: HubConfig,
    /// Recording (none: never record).
    pub record: Option<RecordConfig>,
    /// A bitrate above this (kbit/s) is a health warning (0 = no limit).
    pub max_bitrate_kbps: u32,
    /// Caps on the RTMP listener's connections (per client address, in all); `None`: no cap.
    pub rtmp_limiter: Option<Arc<livehouse_core::limits::ConnLimiter>>,
}

/// The built-in media server: an `Arc`-shared hub of streams with its RTMP and HTTP front ends.
pub struct MediaServer {
    auth: Arc<dyn StreamAuth>,
    hub: Arc<hub::Hub>,
    options: MediaOptions,
    record_stats: Arc<RecordStats>,
    /// Records recovered at start, to report to [`StreamAuth`] once the tasks run.
    recovered: parking_lot::Mutex<Vec<Saved>>,
    thumbs: Arc<thumb::Thumbnails>,
    /// RTMP connections closed because `rml_rtmp` panicked on their input (see `rtmp`).
    rtmp_parser_panics: std::sync::atomic::AtomicU64,
}

impl MediaServer {
    pub fn new(auth: Arc<dyn StreamAuth>) -> Arc<Self> {
        Self::with_config(auth, HubConfig::default())
    }

    /// Like [`MediaServer::new`] with explicit fan-out tuning.
    pub fn with_config(auth: Arc<dyn StreamAuth>, config: HubConfig) -> Arc<Self> {
        Self::with_options(
            auth,
            MediaOptions {
                hub: config,
                ..MediaOptions::default()
            },
        )
    }

    /// The media server with every option. With recording on, records a killed server left
    /// unfinished are finished here, before any publish (blocking file I/O, at start only).
    pub fn with_options(auth: Arc<dyn StreamAuth>, options: MediaOptions) -> Arc<Self> {
        let recovered = match &options.record {
            Some(rc) if rc.mode != RecordMode::Off => {
                if let Err(e) = std::fs::create_dir_all(&rc.dir) {
                    tracing::error!("cannot create the record folder {}: {e}", rc.dir.display());
                }
                record::recover(&rc.dir)
            }
            _ => vec![],
        };
        Arc::new(MediaServer {
            auth,
            hub: hub::Hub::new(options.hub.clone()),
            options,
            record_stats: Arc::default(),
            recovered: parking_lot::Mutex::new(recovered),
            thumbs: Arc::new(thumb::Thumbnails::new()),
            rtmp_parser_panics: Default::default(),
        })
    }

    /// Claims the room for a publisher and starts its recording when the room is recorded.
    pub(crate) async fn start_publish(
        &self,
        room_id: i64,
    ) -> Result<hub::Publisher, hub::PublishError> {
        let mut publisher = self.hub.publish(room_id)?;
        if let Some(rc) = &self.options.record {
            let record = match rc.mode {
                RecordMode::Off => false,
                RecordMode::On => true,
                RecordMode::PerRoom => {
                    let asked = self.auth.wants_recording(room_id);
                    tokio::time::timeout(std::time::Duration::from_secs(10), asked)
                        .await
                        .unwrap_or(false)
                }
            };
            if record {
                let auth = self.auth.clone();
                let rt = tokio::runtime::Handle::current();
                let on_saved = move |saved: Saved| {
                    rt.spawn(async move { auth.record_saved(saved).await });
                };
                match record::Recorder::start(&rc.dir, room_id, self.record_stats.clone(), on_saved)
                {
                    Ok(r) => publisher.attach_recorder(r),
                    Err(e) => tracing::error!(room = room_id, "cannot start recording: {e}"),
                }
            }
        }
        Ok(publisher)
    }

    /// The record folder, when recording is on.
    pub(crate) fn record_dir(&self) -> Option<&std::path::Path> {
        self.options
            .record
            .as_ref()
            .filter(|r| r.mode != RecordMode::Off)
            .map(|r| r.dir.as_path())
    }

    /// Recording counters (tags written, tags lost, bytes written).
    pub fn record_stats(&self) -> &RecordStats {
        &self.record_stats
    }

    /// Background work until `shutdown`: reports records recovered at start, applies record
    /// retention (at start and every 10 minutes) and exports per-room gauges of live rooms
    /// every 5 s (`livehouse_stream_*{room}`; the exporter drops a room's series once it stops
    /// being updated).
    pub async fn run_housekeeping(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let recovered = std::mem::take(&mut *self.recovered.lock());
        for saved in recovered {
            self.auth.record_saved(saved).await;
        }
        tokio::pin!(shutdown);
        let mut retention = tokio::time::interval(std::time::Duration::from_secs(600));
        let mut gauges = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = retention.tick() => {
                    if let Some(rc) = self.options.record.clone().filter(|r| r.mode != RecordMode::Off) {
                        let deleted = tokio::task::spawn_blocking(move || record::enforce_retention(&rc))
                            .await
                            .unwrap_or_default();
                        for room in deleted {
                            self.auth.record_deleted(room).await;
                        }
                    }
                }
                _ = gauges.tick() => self.export_gauges(),
            }
        }
    }

    fn export_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for room in self.hub.live_rooms() {
            let Some(r) = self.stream_health(room, 0) else {
                continue;
            };
            let room = room.to_string();
            metrics::gauge!("livehouse_stream_bitrate_kbps", "room" => room.clone())
                .set(f64::from(r.bitrate_kbps_10s));
            metrics::gauge!("livehouse_stream_fps", "room" => room.clone()).set(f64::from(r.fps));
            metrics::gauge!("livehouse_stream_keyframe_interval_ms", "room" => room.clone())
                .set(f64::from(r.keyframe_interval_ms.unwrap_or(0)));
            metrics::gauge!("livehouse_stream_dropped_frames", "room" => room.clone())
                .set(r.dropped_frames as f64);
            for (proto, n) in [
                ("flv", r.viewers.flv),
                ("hls", r.viewers.hls),
                ("rtmp", r.viewers.rtmp),
            ] {
                metrics::gauge!("livehouse_stream_viewers", "room" => room.clone(), "protocol" => proto)
                    .set(n as f64);
            }
        }
        let s = &self.record_stats;
        metrics::gauge!("livehouse_record_tags_written").set(s.tags_written.load(Relaxed) as f64);
        metrics::gauge!("livehouse_record_tags_lost").set(s.tags_lost.load(Relaxed) as f64);
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

    /// RTMP connections closed because `rml_rtmp` panicked on their input (caught, counted,
    /// the connection closed; the server keeps serving). Also the counter
    /// `livehouse_rtmp_parser_panics_total`.
    pub fn rtmp_parser_panics(&self) -> u64 {
        self.rtmp_parser_panics
            .load(std::sync::atomic::Ordering::Relaxed)
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
/// room is closed (nginx cuts the publisher). Uses [`StreamAuth`]. Every callback must carry
/// `?secret=<secret>` in its URL; with `secret` `None` every callback is refused (403).
pub fn nginx_hooks_router(auth: Arc<dyn StreamAuth>, secret: Option<String>) -> axum::Router {
    nginx::router(auth, secret)
}
