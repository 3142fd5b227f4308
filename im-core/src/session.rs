//! One connection, one task: everything about a session lives here and is owned by its task —
//! read buffer, write queue, login, pending ACKs. Other tasks reach it only through its
//! [`SessionHandle`] (outbox, kick, timer wake-up).
//!
//! The task waits on one event at a time ([`Session::poll_event`]): a decoded frame, a kick, an
//! ACK deadline, or the end of the connection; while waiting it keeps writing queued frames and
//! reading input. An idle session owns no buffers: reads go through a stack buffer and only a
//! partial frame is kept on the heap.
//!
//! Must not: hold a lock across an `.await`, write to another session, or let its queues grow
//! without bound (the outbox is bounded by the handle, the write queue by [`WQ_MAX`], pending ACKs
//! by the configuration).

use crate::gateway::Gateway;
use crate::hub::{Kick, Outgoing, Prepared, SessionHandle};
use crate::protocol::{
    self, code, err, parse_chat_data, Frame, FrameCodec, ImMsgBody, ProtocolError, Wire, APP_ID,
    BIZ_CHAT, MAX_CONTENT_CHARS,
};
use crate::ws::{self, WsCodec, WsEvent};
use bytes::{Buf, Bytes, BytesMut};
use livehouse_core::bus::{TOPIC_CHAT, TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_core::events::{ChatEvent, PresenceEvent};
use livehouse_core::time::now_ms;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::codec::Decoder;
use tracing::Instrument;

/// Frames taken from the outbox into the write queue at once (one vectored write).
const WQ_MAX: usize = 16;
/// Replies (errors, pongs, heartbeats) a client may leave unread before it is dropped as a slow
/// reader: a client that floods requests without reading cannot grow the write queue.
const WQ_REPLY_LIMIT: usize = 256;
/// Stack buffer of one read.
const READ_CHUNK: usize = 8 * 1024;
/// Time given to the last frames (error, logout, close) before the socket is shut.
const LINGER_ON_CLOSE: Duration = Duration::from_secs(1);
/// Most input read and dropped while lingering on close.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Login parameters, from a 1001 frame or the WebSocket URL form.
#[derive(Debug, Clone)]
pub(crate) struct LoginReq {
    pub app_id: Option<i32>,
    pub user_id: Option<i64>,
    pub token: String,
    pub room_id: Option<i64>,
}

impl LoginReq {
    fn from_body(b: ImMsgBody) -> Self {
        // The room may come at the top level or inside `data` (`{"roomId":…}`).
        let room_id = b.room_id.or_else(|| {
            b.data.as_deref().and_then(|d| {
                serde_json::from_str::<serde_json::Value>(d)
                    .ok()
                    .and_then(|v| v.get("roomId").and_then(protocol::lenient::value_i64))
            })
        });
        LoginReq {
            app_id: b.app_id,
            user_id: b.user_id,
            token: b.token.unwrap_or_default(),
            room_id,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Login {
    user: i64,
    room: Option<i64>,
}

struct PendingAck {
    msg: Arc<Prepared>,
    due: u64,
    retried: bool,
}

enum Event {
    Frame(Frame),
    /// Refused input: reply an error with `code`, then close if `close`.
    Bad {
        code: i32,
        slug: &'static str,
        close: bool,
    },
    /// WebSocket framing violation: close with this code.
    WsFatal(u16),
    PeerClose,
    Gone,
    Kick(Kick),
    Timer,
}

enum Flow {
    Continue,
    /// Flush what is queued (plus a WebSocket close frame with this code), then close.
    Close(u16),
    /// Close at once without flushing.
    Drop,
}

pub(crate) struct Session<IO> {
    gw: Arc<Gateway>,
    io: IO,
    h: Arc<SessionHandle>,
    wire: Wire,
    rbuf: BytesMut,
    ws: WsCodec,
    wq: VecDeque<Bytes>,
    pending: VecDeque<PendingAck>,
    login: Option<Login>,
    /// The logged-in user's display name, from the IM token: stamped on every chat message as
    /// `senderName` so clients cannot speak under another name.
    name: Option<Box<str>>,
    /// Gateway-clock ms of the last binding refresh in the cache.
    refreshed_at: u64,
    /// Undoes what the connection registered, when the session is dropped.
    cleanup: Cleanup,
}

/// A connection's cleanup: its index entry, and once logged in its binding and presence. It runs
/// exactly once, from `Drop`, so it also runs when the connection's task unwinds from a bug:
/// nothing the connection registered can leak.
struct Cleanup {
    gw: Arc<Gateway>,
    conn: u64,
    login: Option<Login>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let gw = self.gw.clone();
        gw.hub.remove_conn(self.conn);
        let Some(login) = self.login.take() else {
            return;
        };
        let u = gw.hub.unbind(login.user, self.conn);
        if !u.was_bound {
            // Replaced by a newer login of the same user and room: it owns the presence now.
            return;
        }
        let unbind = !u.user_still_here && !gw.hub.has_user(login.user);
        // The cache and the bus are async: the rest runs in its own task (none without a
        // runtime, i.e. while the process exits).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if unbind {
                if let Err(e) =
                    crate::registry::unbind_user(&*gw.cache, login.user, &gw.cfg.gateway_id).await
                {
                    tracing::warn!(error = %e, user = login.user, "unbinding user failed");
                }
            }
            if let Some(room) = login.room {
                publish_presence(&gw, TOPIC_OFFLINE, login.user, room).await;
            }
        });
    }
}

/// Runs one connection to its end, then cleans up once.
pub(crate) async fn run<IO>(gw: Arc<Gateway>, io: IO, wire: Wire, url_login: Option<LoginReq>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = gw.next_session_id();
    // Debug level: disabled spans cost nothing per idle session.
    let span = tracing::debug_span!("im_session", session = id, wire = ?wire);
    run_inner(gw, io, wire, url_login, id)
        .instrument(span)
        .await
}

async fn run_inner<IO>(gw: Arc<Gateway>, io: IO, wire: Wire, url_login: Option<LoginReq>, id: u64)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    gw.ensure_tasks();
    let h = Arc::new(SessionHandle::new(id, gw.cfg.outbox_limit, gw.now()));
    gw.hub.add_conn(&h);
    let mut s = Session {
        cleanup: Cleanup {
            gw: gw.clone(),
            conn: id,
            login: None,
        },
        gw,
        io,
        h,
        wire,
        rbuf: BytesMut::new(),
        ws: WsCodec::default(),
        wq: VecDeque::new(),
        pending: VecDeque::new(),
        login: None,
        name: None,
        refreshed_at: 0,
    };
    let mut flow = match url_login {
        Some(req) => s.login(req).await,
        None => Flow::Continue,
    };
    while let Flow::Continue = flow {
        flow = match poll_fn(|cx| s.poll_event(cx)).await {
            Event::Frame(f) => {
                s.touch();
                s.handle(f).await
            }
            Event::Bad { code, slug, close } => {
                s.touch();
                s.reply_error(code, slug);
                if close {
                    Flow::Close(ws::close::POLICY)
                } else {
                    Flow::Continue
                }
            }
            Event::WsFatal(c) => Flow::Close(c),
            Event::PeerClose => Flow::Close(ws::close::NORMAL),
            Event::Gone => Flow::Drop,
            Event::Kick(k) => match k {
                Kick::Replaced => {
                    s.reply(code::LOGOUT, s.body("true"));
                    Flow::Close(ws::close::POLICY)
                }
                Kick::LoginTimeout => {
                    s.reply_error(code::LOGIN, err::LOGIN_TIMEOUT);
                    Flow::Close(ws::close::POLICY)
                }
                Kick::Idle | Kick::Shutdown => Flow::Close(ws::close::GOING_AWAY),
                Kick::SlowReader => Flow::Drop,
            },
            Event::Timer => {
                s.on_timer();
                Flow::Continue
            }
        };
    }
    s.h.close_outbox();
    if let Flow::Close(c) = flow {
        s.finish(c).await;
    }
    // Dropping `s` runs its cleanup.
}

impl<IO> Session<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn touch(&self) {
        self.h.last_seen.store(self.gw.now(), Ordering::Relaxed);
    }

    /// The next event; keeps writing and reading while none is ready.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if let Some(ev) = self.decode_one() {
                return Poll::Ready(ev);
            }
            self.h.register(cx.waker());
            if let Some(k) = self.h.kicked() {
                return Poll::Ready(Event::Kick(k));
            }
            if self.h.take_timer() {
                return Poll::Ready(Event::Timer);
            }
            if let Poll::Ready(Err(_)) = self.poll_write(cx, true) {
                return Poll::Ready(Event::Gone);
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Decodes one event from the read buffer, if a whole frame is there.
    fn decode_one(&mut self) -> Option<Event> {
        let ev = match self.wire {
            Wire::Tcp => match FrameCodec.decode(&mut self.rbuf) {
                Ok(Some(f)) => Some(Event::Frame(f)),
                Ok(None) => None,
                Err(e) => Some(Event::Bad {
                    code: 0,
                    slug: e.slug(),
                    close: true,
                }),
            },
            Wire::Ws => loop {
                match self.ws.decode(&mut self.rbuf) {
                    Ok(Some(WsEvent::Text(t))) => {
                        if self.login.is_some() {
                            if let Some(id) = crate::ack::ws_ack_id(&t) {
                                self.touch();
                                self.on_ack(id);
                                continue;
                            }
                        }
                        break Some(ws_text(&t));
                    }
                    Ok(Some(WsEvent::Binary(b))) => break Some(ws_binary(b)),
                    Ok(Some(WsEvent::Ping(p))) => {
                        self.push_reply(ws::frame(ws::OP_PONG, &p));
                    }
                    Ok(Some(WsEvent::Pong)) => {}
                    Ok(Some(WsEvent::Close(_))) => break Some(Event::PeerClose),
                    Ok(None) => break None,
                    Err(e) => break Some(Event::WsFatal(e.close_code())),
                }
            },
        };
        if ev.is_none() && self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Nothing partial left: give the memory back (idle sessions own no buffer).
            self.rbuf = BytesMut::new();
        }
        ev
    }

    /// Reads what is available into the read buffer (through a stack buffer).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut rb = ReadBuf::uninit(&mut chunk);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.rbuf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes queued frames until done (`Ready(Ok)`) or the socket is full (`Pending`).
    /// With `take_outbox`, refills the write queue from the session's outbox.
    fn poll_write(&mut self, cx: &mut Context<'_>, take_outbox: bool) -> Poll<std::io::Result<()>> {
        loop {
            if take_outbox {
                while self.wq.len() < WQ_MAX {
                    match self.h.pop() {
                        Some(og) => self.track(&og),
                        None => break,
                    }
                }
            }
            if self.wq.is_empty() {
                if self.wq.capacity() > WQ_MAX {
                    // A burst is over: do not keep its queue capacity while idle.
                    self.wq = VecDeque::new();
                }
                return Poll::Ready(Ok(()));
            }
            let mut slices = [IoSlice::new(&[]); WQ_MAX];
            let mut n = 0;
            for (slot, b) in slices.iter_mut().zip(self.wq.iter()) {
                *slot = IoSlice::new(b);
                n += 1;
            }
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(w)) => w,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let mut left = written;
            while left > 0 {
                let front = self.wq.front_mut().expect("wrote more than queued");
                if front.len() <= left {
                    left -= front.len();
                    self.wq.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
    }

    /// Moves an outbox item to the write queue and starts its ACK clocks.
    fn track(&mut self, og: &Outgoing) {
        self.wq.push_back(og.bytes(self.wire).clone());
        let due = self.gw.now() + self.gw.ack_ms();
        let max = self.gw.cfg.max_pending_acks.max(1);
        let now_ms = now_ms();
        for m in &og.msgs {
            if m.sent_at_ms > 0 {
                self.gw
                    .write_lag
                    .record(now_ms.saturating_sub(m.sent_at_ms).max(0) as u64);
            }
            if self.pending.len() >= max {
                self.pending.pop_front();
                self.gw
                    .counters
                    .unacked_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.pending.push_back(PendingAck {
                msg: m.clone(),
                due,
                retried: false,
            });
        }
        self.set_ack_due();
    }

    fn set_ack_due(&self) {
        let due = self.pending.front().map_or(0, |p| p.due);
        self.h.ack_due.store(due, Ordering::Relaxed);
    }

    /// ACK deadlines: a first timeout re-sends once, a second drops the message.
    fn on_timer(&mut self) {
        let now = self.gw.now();
        while self.pending.front().is_some_and(|p| p.due <= now) {
            let mut p = self.pending.pop_front().expect("checked");
            if p.retried {
                self.gw
                    .counters
                    .unacked_dropped
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let bytes = match self.wire {
                Wire::Ws => p.msg.ws.clone(),
                Wire::Tcp => p.msg.tcp.clone(),
            };
            if self.wq.len() < WQ_MAX * 4 {
                self.wq.push_back(bytes);
                self.gw.counters.retried.fetch_add(1, Ordering::Relaxed);
            }
            p.retried = true;
            p.due = now + self.gw.ack_ms();
            self.pending.push_back(p);
        }
        self.set_ack_due();
    }

    fn on_ack(&mut self, msg_id: &str) {
        if let Some(i) = self.pending.iter().position(|p| &*p.msg.msg_id == msg_id) {
            self.pending.remove(i);
            if self.pending.is_empty() && self.pending.capacity() > 64 {
                self.pending = VecDeque::new();
            }
            if i == 0 {
                self.set_ack_due();
            }
        }
    }

    fn body(&self, data: &str) -> ImMsgBody {
        ImMsgBody {
            app_id: Some(APP_ID),
            user_id: self.login.map(|l| l.user),
            data: Some(data.to_owned()),
            ..Default::default()
        }
    }

    fn reply(&mut self, code: i32, body: ImMsgBody) {
        self.push_reply(protocol::encode(self.wire, code, &body.to_json()));
    }

    fn push_reply(&mut self, frame: Bytes) {
        if self.wq.len() >= WQ_REPLY_LIMIT {
            self.h.kick(Kick::SlowReader);
            return;
        }
        self.wq.push_back(frame);
    }

    fn reply_error(&mut self, code: i32, slug: &str) {
        let mut b = self.body("false");
        b.error = Some(slug.to_owned());
        self.reply(code, b);
    }

    async fn handle(&mut self, f: Frame) -> Flow {
        if f.code == code::FIRST {
            return Flow::Continue;
        }
        if f.code == code::ACK && self.login.is_some() {
            if let Some(id) = crate::ack::body_ack_id(&f.body) {
                self.on_ack(id);
                return Flow::Continue;
            }
        }
        let body = match f.parse_body() {
            Ok(b) => b,
            Err(_) => {
                self.reply_error(f.code, err::BAD_JSON);
                return Flow::Continue;
            }
        };
        if f.code == code::LOGIN {
            return match self.login {
                None => self.login(LoginReq::from_body(body)).await,
                Some(l) if body.user_id == Some(l.user) => {
                    // Already logged in by URL: answer like a login.
                    self.reply(code::LOGIN, self.body("true"));
                    Flow::Continue
                }
                Some(_) => {
                    self.reply_error(code::LOGIN, err::ALREADY_LOGGED_IN);
                    Flow::Continue
                }
            };
        }
        let Some(login) = self.login else {
            self.reply_error(f.code, err::NOT_LOGGED_IN);
            return Flow::Close(ws::close::POLICY);
        };
        match f.code {
            code::LOGOUT => {
                self.reply(code::LOGOUT, self.body("true"));
                Flow::Close(ws::close::NORMAL)
            }
            code::BIZ => self.chat(login, body).await,
            code::HEARTBEAT => {
                self.reply(code::HEARTBEAT, self.body("true"));
                // At most one cache refresh per quarter gap, however often the client beats.
                let now = self.gw.now();
                let quarter = self.gw.cfg.heartbeat_gap.as_millis() as u64 / 4;
                if now.saturating_sub(self.refreshed_at) < quarter {
                    return Flow::Continue;
                }
                // The refresh runs beside the session, so a slow cache never holds up the
                // session's own reads and writes (a burst of heartbeats once did).
                match self.gw.refreshes.clone().try_acquire_owned() {
                    Ok(permit) => {
                        self.refreshed_at = now;
                        let (gw, user, room) = (self.gw.clone(), login.user, login.room);
                        tokio::spawn(async move {
                            let _permit = permit;
                            let ttl = 2 * gw.cfg.heartbeat_gap;
                            let id = &gw.cfg.gateway_id;
                            match crate::registry::refresh_user(&*gw.cache, user, id, ttl).await {
                                Ok(true) => {}
                                // The binding had expired, so living may have dropped the user
                                // from the room: announce the session again.
                                Ok(false) => {
                                    if let Some(room) = room {
                                        publish_presence(&gw, TOPIC_ONLINE, user, room).await;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, user, "heartbeat refresh failed")
                                }
                            }
                        });
                    }
                    Err(_) => {
                        tracing::debug!(user = login.user, "refresh skipped: too many in flight")
                    }
                }
                Flow::Continue
            }
            code::ACK => {
                match body.msg_id {
                    Some(id) => self.on_ack(&id),
                    None => self.reply_error(code::ACK, err::BAD_JSON),
                }
                Flow::Continue
            }
            other => {
                self.reply_error(other, err::UNKNOWN_CODE);
                Flow::Continue
            }
        }
    }

    async fn login(&mut self, req: LoginReq) -> Flow {
        let fail = |s: &mut Self, slug| {
            s.reply_error(code::LOGIN, slug);
            Flow::Close(ws::close::POLICY)
        };
        if req.app_id.is_some_and(|a| a != APP_ID) {
            return fail(self, err::BAD_APP_ID);
        }
        let Some(user) = req.user_id else {
            return fail(self, err::BAD_TOKEN);
        };
        match crate::registry::token_login(&*self.gw.cache, &req.token).await {
            Ok(Some((u, name))) if u == user => {
                self.name = (!name.is_empty()).then(|| name.into_boxed_str());
            }
            Ok(_) => return fail(self, err::BAD_TOKEN),
            Err(e) => {
                tracing::warn!(error = %e, "im token lookup failed");
                return fail(self, err::INTERNAL);
            }
        }
        let gw = self.gw.clone();
        let rate = gw.cfg.chat_rate_per_sec.max(1) as f64;
        if let Some(old) = gw.hub.bind(user, req.room_id, &self.h, gw.now(), rate) {
            old.kick(Kick::Replaced);
        }
        self.login = Some(Login {
            user,
            room: req.room_id,
        });
        self.h.logged_in.store(true, Ordering::Relaxed);
        self.cleanup.login = self.login;
        tracing::debug!(user, room = ?req.room_id, "im login");
        let gap2 = 2 * gw.cfg.heartbeat_gap;
        if let Err(e) = crate::registry::bind_user(&*gw.cache, user, &gw.cfg.gateway_id, gap2).await
        {
            tracing::warn!(error = %e, user, "binding user to gateway failed");
        }
        if let Err(e) = crate::registry::trim_online(&*gw.cache, Some(user), gap2).await {
            tracing::warn!(error = %e, "trimming online shard failed");
        }
        if let Some(room) = req.room_id {
            publish_presence(&gw, TOPIC_ONLINE, user, room).await;
        }
        let mut ok = self.body("true");
        ok.room_id = req.room_id;
        self.reply(code::LOGIN, ok);
        Flow::Continue
    }

    async fn chat(&mut self, login: Login, body: ImMsgBody) -> Flow {
        if body.biz_code != Some(BIZ_CHAT) {
            self.reply_error(code::BIZ, err::BAD_BIZ_CODE);
            return Flow::Continue;
        }
        let data = body.data.unwrap_or_default();
        let Some(cd) = parse_chat_data(&data) else {
            self.reply_error(code::BIZ, err::BAD_JSON);
            return Flow::Continue;
        };
        if cd.content.trim().is_empty() {
            self.reply_error(code::BIZ, err::EMPTY_CONTENT);
            return Flow::Continue;
        }
        if cd.content.chars().count() > MAX_CONTENT_CHARS {
            self.reply_error(code::BIZ, err::CONTENT_TOO_LONG);
            return Flow::Continue;
        }
        let room = match (login.room, cd.room_id) {
            (Some(r), Some(d)) if r != d => {
                self.reply_error(code::BIZ, err::WRONG_ROOM);
                return Flow::Continue;
            }
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) => {
                self.reply_error(code::BIZ, err::NO_ROOM);
                return Flow::Continue;
            }
        };
        // Only validated fields travel on: unknown fields (and a `userId` or `senderName` the
        // client wrote) are dropped, and the name is the account's.
        let data = protocol::chat_data_json(room, &cd.content, self.name.as_deref());
        if protocol::delivered_chat_frame_len(&data) > protocol::MAX_CHAT_FRAME {
            self.reply_error(code::BIZ, err::CONTENT_TOO_LONG);
            return Flow::Continue;
        }
        let rate = self.gw.cfg.chat_rate_per_sec.max(1) as f64;
        if !self.gw.hub.try_chat(login.user, self.gw.now(), rate) {
            self.reply_error(code::BIZ, err::RATE_LIMITED);
            return Flow::Continue;
        }
        let ev = ChatEvent {
            msg_id: self.gw.new_msg_id(),
            app_id: APP_ID,
            room_id: room,
            sender_id: login.user,
            biz_code: BIZ_CHAT,
            data,
            sent_at_ms: now_ms(),
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).expect("serializable"));
        match self
            .gw
            .bus
            .publish(TOPIC_CHAT, &room.to_string(), payload)
            .await
        {
            Ok(()) => {
                self.gw
                    .counters
                    .chat_published
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, room, "chat publish failed");
                self.reply_error(code::BIZ, err::INTERNAL);
            }
        }
        Flow::Continue
    }

    /// Sends what is queued (and a WebSocket close frame), within [`LINGER_ON_CLOSE`].
    async fn finish(&mut self, close_code: u16) {
        if self.wire == Wire::Ws {
            self.wq.push_back(ws::close_frame(close_code, ""));
        }
        let _ = tokio::time::timeout(LINGER_ON_CLOSE, async {
            if poll_fn(|cx| self.poll_write(cx, false)).await.is_ok() {
                let _ = self.io.shutdown().await;
                // Lingering close: read and drop what the peer still sends until it closes too.
                // Closing a socket with unread input makes the kernel answer with a reset,
                // which can destroy the error reply or close frame still in flight to the peer.
                let mut sink = [0u8; 4096];
                let mut drained = 0;
                while drained < LINGER_MAX_BYTES {
                    match self.io.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            }
        })
        .await;
    }
}

/// Publishes a presence event.
async fn publish_presence(gw: &Gateway, topic: &str, user: i64, room: i64) {
    let ev = PresenceEvent {
        user_id: user,
        room_id: room,
        gateway_id: gw.cfg.gateway_id.clone(),
        at_ms: now_ms(),
    };
    let payload = Bytes::from(serde_json::to_vec(&ev).expect("serializable"));
    if let Err(e) = gw.bus.publish(topic, &room.to_string(), payload).await {
        tracing::warn!(error = %e, topic, user, room, "presence publish failed");
    }
}

fn ws_text(t: &[u8]) -> Event {
    match protocol::parse_ws_json(t) {
        Ok(f) => Event::Frame(f),
        Err(e @ ProtocolError::BadMagic(_)) => Event::Bad {
            code: 0,
            slug: e.slug(),
            close: true,
        },
        Err(e) => Event::Bad {
            code: 0,
            slug: e.slug(),
            close: false,
        },
    }
}

/// A binary WebSocket message carries one TCP-form frame.
fn ws_binary(b: Bytes) -> Event {
    let mut buf = BytesMut::from(&b[..]);
    match FrameCodec.decode(&mut buf) {
        Ok(Some(f)) if buf.is_empty() => Event::Frame(f),
        Ok(_) => Event::Bad {
            code: 0,
            slug: err::BAD_JSON,
            close: false,
        },
        Err(e) => Event::Bad {
            code: 0,
            slug: e.slug(),
            close: true,
        },
    }
}
