//! RTMP connections: handshake, publish (ingest) and play, on top of `rml_rtmp`'s `ServerSession`.
//!
//! Owns one task per TCP connection and everything that connection's state needs: the
//! `ServerSession` (chunk (de)serializer), the publish authorization through [`StreamAuth`],
//! the streaming flag of the room, the watchdog that cuts the publisher of a closed room,
//! and the per-connection serialization of tags for RTMP players. It must not hold the hub's
//! locks across an await (it only calls the hub's synchronous methods) and must never buffer
//! more than one read (64 KiB) plus one RTMP message (bounded by the 24-bit length) per peer.
//!
//! `rml_rtmp` panics on some peer input (e.g. an AMF0 `@setDataFrame` data message without a
//! value indexes an empty list): every call that parses peer bytes goes through [`guarded`],
//! which turns a panic into an error that closes this connection cleanly and counts it
//! ([`MediaServer::rtmp_parser_panics`], metric `livehouse_rtmp_parser_panics_total`).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::flv::{Tag, TagKind};
use crate::hub::Publisher;
use crate::{MediaServer, StreamAuth, APP_NAME};

const READ_BUF: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that sends nothing for this long (publisher or idle connection) is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A player whose socket accepts nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const LIVENESS_PERIOD: Duration = Duration::from_secs(1);
/// Longest wait for an answer of [`StreamAuth`].
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a peer may send before it publishes or plays (connect and commands are a few KiB);
/// bounds what `rml_rtmp`'s chunk deserializer may buffer for an unauthenticated peer.
const PRE_AUTH_BYTES: usize = 256 * 1024;
/// Tags serialized per write for a player.
const PLAY_BATCH: usize = 64;

pub(crate) async fn serve(
    server: Arc<MediaServer>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    tracing::info!(addr = ?listener.local_addr().ok(), "RTMP listening");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    // Over a cap the socket is closed at once, before the handshake.
                    let slot = match &server.options.rtmp_limiter {
                        Some(limiter) => match limiter.try_open(peer.ip()) {
                            Ok(g) => Some(g),
                            Err(_) => continue,
                        },
                        None => None,
                    };
                    let _ = sock.set_nodelay(true);
                    let conn = Conn::new(server.clone(), peer);
                    let stop = stop_rx.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = conn.run(sock, stop).await {
                            tracing::debug!(%peer, "RTMP connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("RTMP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    tracing::info!("RTMP listener stopped");
    Ok(())
}

/// Marks the room as streaming while alive; clears the flag on drop if `finish` was not awaited
/// (e.g. the task panicked), so a room never stays "streaming" without a publisher.
struct StreamingFlag {
    auth: Arc<dyn StreamAuth>,
    room_id: i64,
    armed: bool,
}

impl StreamingFlag {
    async fn finish(mut self) {
        self.armed = false;
        set_streaming(&*self.auth, self.room_id, false).await;
    }
}

impl Drop for StreamingFlag {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let auth = self.auth.clone();
                let room = self.room_id;
                rt.spawn(async move { auth.set_streaming(room, false).await });
            }
        }
    }
}

struct Publishing {
    publisher: Publisher,
    flag: StreamingFlag,
    /// Resolves when the watchdog finds the room closed.
    room_closed: oneshot::Receiver<()>,
    _watchdog: AbortOnDrop,
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks `is_room_live` every [`LIVENESS_PERIOD`] beside the connection (so a slow answer
/// never stalls ingest) and fires `closed` once the room is no longer live.
fn watchdog(auth: Arc<dyn StreamAuth>, room_id: i64, closed: oneshot::Sender<()>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(LIVENESS_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match tokio::time::timeout(AUTH_TIMEOUT, auth.is_room_live(room_id)).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = closed.send(());
                    return;
                }
                Err(_) => tracing::warn!(room = room_id, "is_room_live timed out; assuming live"),
            }
        }
    }))
}

struct Playing {
    stream_id: u32,
    rx: mpsc::Receiver<Tag>,
}

struct Conn {
    server: Arc<MediaServer>,
    peer: SocketAddr,
    out: Vec<u8>,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// Close after flushing `out`.
    close: bool,
}

impl Conn {
    fn new(server: Arc<MediaServer>, peer: SocketAddr) -> Conn {
        Conn {
            server,
            peer,
            out: Vec::with_capacity(4096),
            publishing: None,
            playing: None,
            close: false,
        }
    }

    async fn run(mut self, sock: TcpStream, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let result = self.run_inner(sock, stop).await;
        self.stop_publishing("connection closed").await;
        result
    }

    async fn run_inner(
        &mut self,
        mut sock: TcpStream,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; READ_BUF];
        let server = self.server.clone();
        let leftover =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&server, &mut sock, &mut buf))
                .await
                .context("handshake timed out")??;

        let (mut session, initial) =
            ServerSession::new(ServerSessionConfig::new()).context("session")?;
        self.handle_results(&mut session, initial).await?;
        if !leftover.is_empty() {
            let results = guarded(&server, "input", || session.handle_input(&leftover))??;
            self.handle_results(&mut session, results).await?;
        }

        let (mut rd, mut wr) = sock.split();
        let mut tick = tokio::time::interval(LIVENESS_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_input = Instant::now();
        let mut received = leftover.len();
        loop {
            if !self.out.is_empty() {
                tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&self.out))
                    .await
                    .context("write timed out")??;
                self.out.clear();
            }
            if self.close || *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => break,
                read = rd.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        break;
                    }
                    last_input = Instant::now();
                    received = received.saturating_add(n);
                    if received > PRE_AUTH_BYTES && self.publishing.is_none() && self.playing.is_none() {
                        bail!("{PRE_AUTH_BYTES} bytes without publish or play");
                    }
                    let results = guarded(&server, "input", || session.handle_input(&buf[..n]))??;
                    self.handle_results(&mut session, results).await?;
                }
                tag = next_tag(&mut self.playing) => match tag {
                    Some(tag) => self.send_tags(&mut session, tag)?,
                    None => {
                        if let Some(p) = self.playing.take() {
                            if let Ok(packet) = session.finish_playing(p.stream_id) {
                                self.out.extend_from_slice(&packet.bytes);
                            }
                        }
                        tracing::info!(peer = %self.peer, "RTMP play ended: publisher stopped");
                        self.close = true;
                    }
                },
                _ = room_closed(&mut self.publishing) => {
                    let room = self.publishing.as_ref().map(|p| p.publisher.room_id());
                    tracing::info!(peer = %self.peer, room, "room closed: cutting the publisher");
                    self.close = true;
                }
                _ = tick.tick() => {
                    if self.playing.is_none() && last_input.elapsed() > IDLE_TIMEOUT {
                        tracing::info!(peer = %self.peer, "RTMP peer idle: closing");
                        self.close = true;
                    }
                }
            }
        }
        if !self.out.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&self.out)).await;
        }
        let _ = wr.shutdown().await;
        Ok(())
    }

    /// Serializes `first` and whatever else is already queued (up to a batch) for the player.
    fn send_tags(&mut self, session: &mut ServerSession, first: Tag) -> anyhow::Result<()> {
        let Some(p) = self.playing.as_mut() else {
            return Ok(());
        };
        let stream_id = p.stream_id;
        let mut batch = Vec::with_capacity(PLAY_BATCH);
        batch.push(first);
        while batch.len() < PLAY_BATCH {
            match p.rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        for tag in batch {
            push_play_tag(session, stream_id, &tag, &mut self.out)?;
        }
        Ok(())
    }

    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> anyhow::Result<()> {
        // Packets must leave in creation order: results of an accept come after those queued.
        let mut queue: VecDeque<ServerSessionResult> = results.into();
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(mut packet) => {
                    zero_command_timestamp(&mut packet.bytes);
                    self.out.extend_from_slice(&packet.bytes)
                }
                ServerSessionResult::RaisedEvent(event) => {
                    queue.extend(self.on_event(session, event).await?);
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> anyhow::Result<Vec<ServerSessionResult>> {
        let peer = self.peer;
        Ok(match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_of(&app_name) == APP_NAME {
                    session.accept_request(request_id)?
                } else {
                    tracing::info!(%peer, app = %app_name, "RTMP connect refused: unknown application (only `live`)");
                    self.close = true;
                    session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    )?
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                self.on_publish(session, request_id, &app_name, &stream_key)
                    .await?
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.stop_publishing("publisher finished").await;
                vec![]
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(p) = &self.publishing {
                    p.publisher.set_metadata(metadata);
                }
                vec![]
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                if let Some(p) = &self.publishing {
                    p.publisher
                        .push(Tag::new(TagKind::Video, timestamp.value, &data));
                }
                vec![]
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                if let Some(p) = &self.publishing {
                    p.publisher
                        .push(Tag::new(TagKind::Audio, timestamp.value, &data));
                }
                vec![]
            }
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                app_name,
                stream_key,
                stream_id,
                ..
            } => self.on_play(session, request_id, &app_name, &stream_key, stream_id)?,
            ServerSessionEvent::PlayStreamFinished { .. } => {
                self.playing = None;
                self.close = true;
                vec![]
            }
            _ => vec![],
        })
    }

    async fn on_publish(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        app_name: &str,
        stream_key: &str,
    ) -> anyhow::Result<Vec<ServerSessionResult>> {
        let peer = self.peer;
        let key = stream_key.split('?').next().unwrap_or_default();
        let hint = key_hint(key);
        let refusal = if app_of(app_name) != APP_NAME {
            Err(format!("unknown application {app_name:?}"))
        } else if self.publishing.is_some() || self.playing.is_some() {
            Err("connection already publishing or playing".to_string())
        } else {
            let auth = self.server.auth.authorize_publish(key);
            match tokio::time::timeout(AUTH_TIMEOUT, auth).await {
                Err(_) => Err("authorization timed out".to_string()),
                Ok(Err(reason)) => Err(reason),
                Ok(Ok(room_id)) => match self.server.start_publish(room_id).await {
                    Err(e) => Err(e.to_string()),
                    Ok(publisher) => Ok(publisher),
                },
            }
        };
        match refusal {
            Err(reason) => {
                tracing::info!(%peer, key = %hint, "publish refused: {reason}");
                self.close = true;
                Ok(session.reject_request(request_id, "NetStream.Publish.BadName", &reason)?)
            }
            Ok(publisher) => {
                let room_id = publisher.room_id();
                let results = session.accept_request(request_id)?;
                set_streaming(&*self.server.auth, room_id, true).await;
                let (closed_tx, room_closed) = oneshot::channel();
                self.publishing = Some(Publishing {
                    publisher,
                    flag: StreamingFlag {
                        auth: self.server.auth.clone(),
                        room_id,
                        armed: true,
                    },
                    room_closed,
                    _watchdog: watchdog(self.server.auth.clone(), room_id, closed_tx),
                });
                tracing::info!(%peer, room = room_id, key = %hint, "publish started");
                Ok(results)
            }
        }
    }

    fn on_play(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        app_name: &str,
        stream_key: &str,
        stream_id: u32,
    ) -> anyhow::Result<Vec<ServerSessionResult>> {
        let peer = self.peer;
        let name = stream_key.split('?').next().unwrap_or_default();
        let sub = match name.parse::<i64>() {
            Ok(room) if app_of(app_name) == APP_NAME && self.publishing.is_none() => {
                self.server.hub.subscribe(room, crate::hub::Protocol::Rtmp)
            }
            _ => None,
        };
        let Some(sub) = sub else {
            tracing::info!(%peer, stream = %name, "RTMP play refused: no such live stream");
            self.close = true;
            return Ok(session.reject_request(
                request_id,
                "NetStream.Play.StreamNotFound",
                "no such live stream",
            )?);
        };
        let mut results = session.accept_request(request_id)?;
        // `rml_rtmp` announces play with an `onStatus(NetStream.Data.Start)` data message, which
        // ffmpeg shows as an extra data stream (nginx-rtmp does not send it). Dropping it is safe
        // for header compression: it is on the AMF-data chunk stream, which the session does not
        // use again and whose next message (the metadata below) carries a full header.
        results.retain(|r| !is_data_start(r));
        if let Some(meta) = &sub.metadata {
            results.push(ServerSessionResult::OutboundResponse(metadata_packet(
                stream_id, meta,
            )?));
        }
        // Packets created below come after `results`: queue them into `out` afterwards.
        let mut init_out = Vec::new();
        for tag in sub.init.iter().filter(|t| t.kind != TagKind::Script) {
            push_play_tag(session, stream_id, tag, &mut init_out)?;
        }
        results.push(ServerSessionResult::OutboundResponse(
            rml_rtmp::chunk_io::Packet {
                bytes: init_out,
                can_be_dropped: false,
            },
        ));
        self.playing = Some(Playing {
            stream_id,
            rx: sub.rx,
        });
        tracing::info!(%peer, stream = %name, "RTMP play started");
        Ok(results)
    }

    async fn stop_publishing(&mut self, why: &str) {
        if let Some(p) = self.publishing.take() {
            let room = p.publisher.room_id();
            drop(p.publisher);
            p.flag.finish().await;
            tracing::info!(peer = %self.peer, room, "publish stopped: {why}");
        }
    }
}

fn push_play_tag(
    session: &mut ServerSession,
    stream_id: u32,
    tag: &Tag,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let ts = RtmpTimestamp::new(tag.timestamp);
    let packet = match tag.kind {
        TagKind::Video => session.send_video_data(stream_id, tag.payload(), ts, false)?,
        TagKind::Audio => session.send_audio_data(stream_id, tag.payload(), ts, false)?,
        TagKind::Script => return Ok(()),
    };
    out.extend_from_slice(&packet.bytes);
    Ok(())
}

fn is_data_start(result: &ServerSessionResult) -> bool {
    const NEEDLE: &[u8] = b"NetStream.Data.Start";
    match result {
        ServerSessionResult::OutboundResponse(p) => {
            p.bytes.first().is_some_and(|b| b & 0x3f == 3)
                && p.bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE)
        }
        _ => false,
    }
}

/// Sets the timestamp (or delta) of a command/data message's first chunk header to 0.
///
/// `rml_rtmp` stamps `_result`/`onStatus`/`|RtmpSampleAccess` with its session clock; ffmpeg's
/// FLV demuxer turns such script messages with a non-zero time into extra data streams. Only
/// chunk streams 3 (AMF data) and 6 (AMF commands) are touched, never media (4, 5): since every
/// message on them is zeroed, the peer's view of those chunk streams stays at 0 whatever header
/// compression the session chose. Extended timestamps (a session older than 4.6 h) are left alone.
fn zero_command_timestamp(bytes: &mut [u8]) {
    let Some(&first) = bytes.first() else {
        return;
    };
    let fmt = first >> 6;
    let csid = first & 0x3f;
    if matches!(csid, 3 | 6) && fmt < 3 && bytes.len() >= 4 && bytes[1..4] != [0xff, 0xff, 0xff] {
        bytes[1..4].fill(0);
    }
}

/// `onMetaData` at timestamp 0 as a self-contained (type 0 header) chunk.
///
/// `ServerSession::send_metadata` stamps it with the session clock, which ffmpeg's demuxer turns
/// into an extra data stream. A fresh serializer writes a full header on the AMF0-data chunk
/// stream (csid 3), which the session only used for `|RtmpSampleAccess` before and never
/// again, so the session's header compression stays in step with the peer.
fn metadata_packet(
    stream_id: u32,
    meta: &rml_rtmp::sessions::StreamMetadata,
) -> anyhow::Result<rml_rtmp::chunk_io::Packet> {
    let mut serializer = rml_rtmp::chunk_io::ChunkSerializer::new();
    serializer.set_max_chunk_size(ServerSessionConfig::new().chunk_size, RtmpTimestamp::new(0))?;
    let payload = rml_rtmp::messages::MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id: 18,
        message_stream_id: stream_id,
        data: crate::flv::metadata_payload(meta),
    };
    Ok(serializer.serialize(&payload, true, false)?)
}

/// `set_streaming`, bounded by [`AUTH_TIMEOUT`] (a timeout is logged, not fatal).
async fn set_streaming(auth: &dyn StreamAuth, room_id: i64, streaming: bool) {
    let call = auth.set_streaming(room_id, streaming);
    if tokio::time::timeout(AUTH_TIMEOUT, call).await.is_err() {
        tracing::warn!(room = room_id, streaming, "set_streaming timed out");
    }
}

async fn room_closed(publishing: &mut Option<Publishing>) {
    match publishing {
        Some(p) => {
            if (&mut p.room_closed).await.is_err() {
                // The watchdog ended without a verdict (cannot happen while it runs): wait.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn next_tag(playing: &mut Option<Playing>) -> Option<Tag> {
    match playing {
        Some(p) => p.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs an `rml_rtmp` call that parses peer bytes. A panic inside it (the library panics on
/// some malformed input) is caught and becomes an error, so the connection closes cleanly
/// instead of unwinding its task; it is counted. The session is not used after such an error.
fn guarded<T>(server: &MediaServer, what: &str, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(panic) => {
            server
                .rtmp_parser_panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("livehouse_rtmp_parser_panics_total").increment(1);
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::warn!("RTMP peer input made rml_rtmp panic in its {what} parser: {why}");
            bail!("rml_rtmp panicked on the peer's input ({what}): {why}")
        }
    }
}

/// Runs the server side of the RTMP handshake; returns bytes received after it.
async fn handshake(
    server: &MediaServer,
    sock: &mut TcpStream,
    buf: &mut [u8],
) -> anyhow::Result<Vec<u8>> {
    let mut hs = Handshake::new(PeerType::Server);
    loop {
        let n = sock.read(buf).await?;
        if n == 0 {
            bail!("closed during handshake");
        }
        match guarded(server, "handshake", || hs.process_bytes(&buf[..n]))?? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// The application name without a query string or trailing slash.
fn app_of(app_name: &str) -> &str {
    app_name
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
}

/// A loggable hint of a stream key (its first characters), so secrets never reach the logs.
fn key_hint(key: &str) -> String {
    let prefix: String = key.chars().take(4).collect();
    format!("{prefix}…({} chars)", key.chars().count())
}
