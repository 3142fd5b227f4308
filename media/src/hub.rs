//! The hub: one channel per room with a live publisher, its header/GOP cache and its viewers.
//!
//! Owns the invariants "at most one publisher per room", "a joining viewer gets metadata, codec
//! sequence headers and the GOP from the last keyframe, then every later tag without gap or
//! duplicate" and "a slow viewer never slows the publisher or other viewers": the publisher
//! pushes each tag with a non-blocking `try_send` into every viewer's bounded queue; a viewer
//! whose queue is full skips to the next keyframe, and one that stays stuck is disconnected.
//! Locks here are `parking_lot` mutexes held for short synchronous sections only; this module
//! does no I/O and never awaits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rml_rtmp::sessions::StreamMetadata;
use tokio::sync::mpsc;

use crate::flv::{self, Tag, TagKind};
use crate::health::{self, Health, HealthReport, Viewers};
use crate::hls::{Hls, HlsConfig};
use crate::record::Recorder;

/// Tuning of the fan-out; the defaults suit ~1-5 Mbit/s streams.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Tags a viewer may have queued (about 70 tags per second at 25 fps + AAC).
    pub viewer_queue: usize,
    /// A viewer whose queue stays full this long (across keyframes) is disconnected.
    pub stall_timeout: Duration,
    /// The GOP cache is dropped when it grows past this many bytes (a publisher without keyframes).
    pub max_gop_bytes: usize,
    /// HLS segmenting.
    pub hls: HlsConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            viewer_queue: 512,
            stall_timeout: Duration::from_secs(10),
            max_gop_bytes: 32 << 20,
            hls: HlsConfig::default(),
        }
    }
}

/// Counters over the life of the hub.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Times a viewer's queue was full and it started skipping to the next keyframe.
    pub skips: AtomicU64,
    /// Viewers disconnected because they stayed stuck.
    pub stalled_disconnects: AtomicU64,
}

/// How a viewer watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Flv,
    Rtmp,
}

/// Publish sessions of a room, for "uptime and reconnects".
#[derive(Clone, Copy, Debug)]
struct RoomHistory {
    publishes: u32,
    ended: Option<Instant>,
}

/// A publisher that comes back within this long counts as a reconnect of the same stream.
const RECONNECT_WINDOW: Duration = Duration::from_secs(600);
/// Rooms remembered for reconnect counting (oldest ended ones are forgotten first).
const HISTORY_MAX: usize = 10_000;
/// An HLS client that asked for nothing for this long is no longer counted as a viewer.
const HLS_VIEWER_IDLE: Duration = Duration::from_secs(10);
/// HLS clients remembered per room.
const HLS_VIEWERS_MAX: usize = 100_000;

/// Rooms with a live publisher.
pub struct Hub {
    config: HubConfig,
    rooms: Mutex<HashMap<i64, Arc<Channel>>>,
    history: Mutex<HashMap<i64, RoomHistory>>,
    pub stats: HubStats,
}

/// Why a publish was refused by the hub.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("room {0} already has a publisher")]
    AlreadyPublishing(i64),
}

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            rooms: Mutex::new(HashMap::new()),
            history: Mutex::new(HashMap::new()),
            stats: HubStats::default(),
        })
    }

    /// Claims the room for one publisher. The returned handle releases it when dropped.
    pub fn publish(self: &Arc<Self>, room_id: i64) -> Result<Publisher, PublishError> {
        let mut rooms = self.rooms.lock();
        if rooms.contains_key(&room_id) {
            return Err(PublishError::AlreadyPublishing(room_id));
        }
        let reconnects = {
            let mut h = self.history.lock();
            if h.len() >= HISTORY_MAX {
                let now = Instant::now();
                h.retain(|_, r| r.ended.is_none_or(|e| now - e < RECONNECT_WINDOW));
            }
            let entry = h.entry(room_id).or_insert(RoomHistory {
                publishes: 0,
                ended: None,
            });
            if entry.ended.is_some_and(|e| e.elapsed() > RECONNECT_WINDOW) {
                entry.publishes = 0;
            }
            entry.publishes += 1;
            entry.ended = None;
            entry.publishes - 1
        };
        let channel = Arc::new(Channel {
            room_id,
            state: Mutex::new(State::default()),
            hls: Hls::new(room_id, self.config.hls.clone()),
            health: Health::new(),
            dropped_frames: AtomicU64::new(0),
            reconnects,
            hls_viewers: Mutex::new(HashMap::new()),
        });
        rooms.insert(room_id, channel.clone());
        Ok(Publisher {
            hub: self.clone(),
            channel,
            recorder: None,
        })
    }

    /// Joins the room's stream, or `None` when nobody publishes in it.
    pub fn subscribe(&self, room_id: i64, protocol: Protocol) -> Option<Subscription> {
        let channel = self.rooms.lock().get(&room_id).cloned()?;
        let (tx, rx) = mpsc::channel(self.config.viewer_queue.max(1));
        let mut st = channel.state.lock();
        if st.closed {
            return None;
        }
        let base = st.gop.first().map_or(st.last_timestamp, |t| t.timestamp);
        let mut init = Vec::with_capacity(3 + st.gop.len());
        if let Some(meta) = &st.metadata {
            // At 0: demuxers (ffmpeg's flv) treat a script tag with a later dts as a data stream.
            init.push(Tag::new(TagKind::Script, 0, &flv::metadata_payload(meta)));
        }
        init.extend(st.avc_header.iter().map(|t| t.restamped(base)));
        init.extend(st.aac_header.iter().map(|t| t.restamped(base)));
        init.extend(st.gop.iter().cloned());
        st.viewers.push(Viewer {
            tx,
            protocol,
            skipping_since: None,
        });
        Some(Subscription {
            metadata: st.metadata.clone(),
            init,
            rx,
        })
    }

    /// The room's channel while someone publishes in it.
    pub(crate) fn channel(&self, room_id: i64) -> Option<Arc<Channel>> {
        self.rooms.lock().get(&room_id).cloned()
    }

    /// A small FLV of the room's latest keyframe (file header, AVC sequence header, keyframe),
    /// for a thumbnail decoder; `None` before the first keyframe.
    pub fn keyframe_flv(&self, room_id: i64) -> Option<Bytes> {
        let channel = self.channel(room_id)?;
        let st = channel.state.lock();
        let header = st.avc_header.as_ref()?;
        let key = st.gop.first().filter(|t| t.keyframe)?;
        Some(concat([
            Bytes::from_static(&flv::FILE_HEADER),
            header.restamped(0).flv,
            key.restamped(0).flv,
        ]))
    }

    /// Rooms with a publisher now.
    pub fn live_rooms(&self) -> Vec<i64> {
        self.rooms.lock().keys().copied().collect()
    }

    /// Whether someone publishes in the room.
    pub fn is_publishing(&self, room_id: i64) -> bool {
        self.rooms.lock().contains_key(&room_id)
    }

    /// Viewers currently attached to the room (HTTP-FLV and RTMP).
    pub fn viewer_count(&self, room_id: i64) -> usize {
        let channel = self.rooms.lock().get(&room_id).cloned();
        channel.map_or(0, |c| {
            c.state
                .lock()
                .viewers
                .iter()
                .filter(|v| !v.tx.is_closed())
                .count()
        })
    }
}

/// A room being published.
pub(crate) struct Channel {
    room_id: i64,
    state: Mutex<State>,
    /// HLS / LL-HLS of this publish session.
    pub hls: Hls,
    /// Stream health counters of this publish session.
    pub health: Health,
    /// Video frames not delivered to viewers that were skipping to a keyframe.
    pub dropped_frames: AtomicU64,
    /// Earlier publish sessions of the room within [`RECONNECT_WINDOW`].
    reconnects: u32,
    /// HLS clients (hashed identity) and when each last asked for the playlist.
    hls_viewers: Mutex<HashMap<u64, Instant>>,
}

impl Channel {
    /// Notes an HLS playlist request of a client.
    pub fn hls_viewer_seen(&self, client: u64) {
        let now = Instant::now();
        let mut v = self.hls_viewers.lock();
        if v.len() >= HLS_VIEWERS_MAX && !v.contains_key(&client) {
            v.retain(|_, at| now - *at < HLS_VIEWER_IDLE);
            if v.len() >= HLS_VIEWERS_MAX {
                return;
            }
        }
        v.insert(client, now);
    }

    /// Viewers by protocol, now.
    pub fn viewers(&self) -> Viewers {
        let now = Instant::now();
        let hls = {
            let mut v = self.hls_viewers.lock();
            v.retain(|_, at| now - *at < HLS_VIEWER_IDLE);
            v.len()
        };
        let st = self.state.lock();
        let live = st.viewers.iter().filter(|v| !v.tx.is_closed());
        let (mut flv, mut rtmp) = (0, 0);
        for v in live {
            match v.protocol {
                Protocol::Flv => flv += 1,
                Protocol::Rtmp => rtmp += 1,
            }
        }
        Viewers { flv, hls, rtmp }
    }

    /// The stream health report of this session.
    pub fn health_report(&self, max_bitrate_kbps: u32) -> HealthReport {
        self.health.report(health::Context {
            viewers: self.viewers(),
            dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
            reconnects: self.reconnects,
            max_bitrate_kbps,
        })
    }
}

#[derive(Default)]
struct State {
    metadata: Option<StreamMetadata>,
    avc_header: Option<Tag>,
    aac_header: Option<Tag>,
    /// Tags since the last video keyframe (the keyframe first), or empty before the first one.
    gop: Vec<Tag>,
    gop_bytes: usize,
    last_timestamp: u32,
    viewers: Vec<Viewer>,
    closed: bool,
}

struct Viewer {
    tx: mpsc::Sender<Tag>,
    protocol: Protocol,
    /// Set while the viewer's queue was found full: tags are dropped until the next keyframe.
    skipping_since: Option<Instant>,
}

/// What a joining viewer receives: the header tags and the cached GOP (to send first, in
/// order), then the live tags from `rx`. `rx` ends when the publisher stops or the viewer is cut.
pub struct Subscription {
    pub metadata: Option<StreamMetadata>,
    pub init: Vec<Tag>,
    pub rx: mpsc::Receiver<Tag>,
}

/// The publishing side of a room. Dropping it ends every viewer's stream and frees the room.
pub struct Publisher {
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    /// The session's recording, when the room is recorded.
    recorder: Option<Recorder>,
}

impl Publisher {
    pub fn room_id(&self) -> i64 {
        self.channel.room_id
    }

    /// Records every later tag of this session.
    pub fn attach_recorder(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    pub fn set_metadata(&self, metadata: StreamMetadata) {
        self.channel.state.lock().metadata = Some(metadata);
    }

    /// Caches the tag as needed and offers it to every viewer without ever waiting.
    pub fn push(&self, tag: Tag) {
        let cfg = &self.hub.config;
        let stats = &self.hub.stats;
        let mut st = self.channel.state.lock();
        st.last_timestamp = tag.timestamp;
        match tag.kind {
            TagKind::Video if tag.seq_header => st.avc_header = Some(tag.clone()),
            TagKind::Audio if tag.seq_header => st.aac_header = Some(tag.clone()),
            TagKind::Video if tag.keyframe => {
                st.gop.clear();
                st.gop_bytes = tag.flv.len();
                st.gop.push(tag.clone());
            }
            _ if !st.gop.is_empty() => {
                st.gop_bytes += tag.flv.len();
                if st.gop_bytes > cfg.max_gop_bytes {
                    st.gop.clear();
                    st.gop_bytes = 0;
                } else {
                    st.gop.push(tag.clone());
                }
            }
            _ => {}
        }

        let mut now = None;
        st.viewers.retain_mut(|v| {
            if let Some(since) = v.skipping_since {
                if !tag.keyframe {
                    if tag.kind == TagKind::Video && !tag.seq_header {
                        self.channel.dropped_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    if tag.seq_header {
                        // Codec change while skipping: deliver if it fits, stay skipping.
                        let _ = v.tx.try_send(tag.clone());
                    }
                    let now = *now.get_or_insert_with(Instant::now);
                    if now.duration_since(since) > cfg.stall_timeout {
                        stats.stalled_disconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(room = self.channel.room_id, "viewer stuck: disconnected");
                        return false;
                    }
                    return !v.tx.is_closed();
                }
            }
            match v.tx.try_send(tag.clone()) {
                Ok(()) => {
                    v.skipping_since = None;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if tag.kind == TagKind::Video {
                        self.channel.dropped_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = *now.get_or_insert_with(Instant::now);
                    match v.skipping_since {
                        None => {
                            v.skipping_since = Some(now);
                            stats.skips.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                room = self.channel.room_id,
                                "viewer behind: skipping to next keyframe"
                            );
                            true
                        }
                        Some(since) if now.duration_since(since) > cfg.stall_timeout => {
                            stats.stalled_disconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(
                                room = self.channel.room_id,
                                "viewer stuck: disconnected"
                            );
                            false
                        }
                        Some(_) => true,
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        drop(st);
        // HLS and health are built after the FLV fan-out, each under its own lock.
        self.channel.hls.push(&tag);
        self.channel.health.on_tag(&tag);
        if let Some(r) = &self.recorder {
            r.push(&tag);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(h) = self.hub.history.lock().get_mut(&self.channel.room_id) {
            h.ended = Some(Instant::now());
        }
        {
            let mut rooms = self.hub.rooms.lock();
            if rooms
                .get(&self.channel.room_id)
                .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
            {
                rooms.remove(&self.channel.room_id);
            }
        }
        self.channel.hls.close();
        let mut st = self.channel.state.lock();
        st.closed = true;
        // Dropping the senders ends each viewer's stream after what is already queued.
        st.viewers.clear();
        st.gop.clear();
    }
}

/// Concatenates tags into one buffer (for the few header tags of a joining viewer).
pub fn concat(parts: impl IntoIterator<Item = Bytes>) -> Bytes {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&p);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(ts: u32, key: bool) -> Tag {
        Tag::new(
            TagKind::Video,
            ts,
            &[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0],
        )
    }

    #[test]
    fn one_publisher_per_room() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish(1).expect("first publisher");
        assert!(hub.publish(1).is_err());
        assert!(hub.publish(2).is_ok());
        drop(p);
        assert!(hub.publish(1).is_ok());
    }

    #[test]
    fn joiner_gets_headers_and_gop_from_last_keyframe() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish(1).expect("publish");
        p.set_metadata(StreamMetadata::new());
        p.push(Tag::new(TagKind::Video, 0, &[0x17, 0, 0, 0, 0, 1]));
        p.push(Tag::new(TagKind::Audio, 0, &[0xaf, 0, 0x12, 0x10]));
        p.push(video(0, true));
        p.push(video(40, false));
        p.push(video(80, true));
        p.push(video(120, false));
        let sub = hub.subscribe(1, Protocol::Flv).expect("subscribe");
        let kinds: Vec<_> = sub.init.iter().map(|t| (t.kind, t.timestamp)).collect();
        assert_eq!(
            kinds,
            vec![
                (TagKind::Script, 0),
                (TagKind::Video, 80),
                (TagKind::Audio, 80),
                (TagKind::Video, 80),
                (TagKind::Video, 120)
            ]
        );
        assert!(sub.init[3].keyframe);
    }

    #[test]
    fn slow_viewer_skips_to_keyframe_without_blocking_others() {
        let hub = Hub::new(HubConfig {
            viewer_queue: 4,
            ..HubConfig::default()
        });
        let p = hub.publish(1).expect("publish");
        let mut slow = hub.subscribe(1, Protocol::Flv).expect("slow");
        let mut fast = hub.subscribe(1, Protocol::Flv).expect("fast");
        let mut fast_got = 0;
        for i in 0..10u32 {
            p.push(video(i * 40, i == 0));
            while fast.rx.try_recv().is_ok() {
                fast_got += 1;
            }
        }
        assert_eq!(fast_got, 10);
        assert_eq!(hub.stats.skips.load(Ordering::Relaxed), 1);
        // Tags 4..9 did not reach the slow viewer: six video frames dropped for it.
        let channel = hub.channel(1).expect("live");
        assert_eq!(channel.dropped_frames.load(Ordering::Relaxed), 6);
        assert_eq!(channel.viewers().flv, 2);
        // The slow one holds the first 4 tags; the rest is skipped until a keyframe.
        let mut ts = vec![];
        while let Ok(t) = slow.rx.try_recv() {
            ts.push(t.timestamp);
        }
        assert_eq!(ts, vec![0, 40, 80, 120]);
        p.push(video(400, false));
        p.push(video(440, true));
        p.push(video(480, false));
        let mut ts = vec![];
        while let Ok(t) = slow.rx.try_recv() {
            ts.push(t.timestamp);
        }
        assert_eq!(ts, vec![440, 480]);
    }

    #[test]
    fn stream_ends_when_publisher_drops() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish(1).expect("publish");
        let mut sub = hub.subscribe(1, Protocol::Flv).expect("subscribe");
        p.push(video(0, true));
        drop(p);
        assert!(sub.rx.try_recv().is_ok());
        assert!(matches!(
            sub.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(hub.subscribe(1, Protocol::Flv).is_none());
    }
}
