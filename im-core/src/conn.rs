//! One connection, one task: it owns the socket, the read buffer and the write queue, and the
//! connection's state ([`ConnState`]); the commands (`commands/`) decide what to answer. Other
//! tasks reach a connection only through its [`ConnHandle`] (outbox, kick, timer wake-up).
//!
//! The task waits on one event at a time ([`Conn::poll_event`]): a decoded frame, a kick, an ACK
//! deadline, or the end of the connection; while waiting it keeps writing queued frames and
//! reading input. An idle connection owns no buffers: reads go through a stack buffer and only a
//! partial frame is kept on the heap. ACKs in the compact form clients write are read by the
//! allocation-free fast path (`crate::ack`) without a trip through the commands.
//!
//! Must not: hold a lock across an `.await`, write to another connection, or let its queues
//! grow without bound (the outbox is bounded by the handle, the write queue by [`WQ_MAX`] and
//! [`WQ_REPLY_LIMIT`], pending ACKs by the configuration).

use crate::commands::{self, login::LoginReq, ConnState, Flow};
use crate::conns::{ConnHandle, Kick, Outgoing};
use crate::gateway::Gateway;
use crate::protocol::{self, code, err, Frame, FrameCodec, ProtocolError, Wire};
use crate::stats::Counters;
use crate::ws::{self, WsCodec, WsEvent};
use bytes::{Buf, Bytes, BytesMut};
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
/// Replies (errors, heartbeats) a client may leave unread before it is dropped as a slow
/// reader: a client that floods requests without reading cannot grow the write queue.
const WQ_REPLY_LIMIT: usize = 256;
/// Stack buffer of one read.
const READ_CHUNK: usize = 8 * 1024;
/// Time given to the last frames (error, logout, close) before the socket is shut.
const LINGER_ON_CLOSE: Duration = Duration::from_secs(1);
/// Most input read and dropped while lingering on close.
const LINGER_MAX_BYTES: usize = 256 * 1024;

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

struct Conn<IO> {
    io: IO,
    rbuf: BytesMut,
    ws: WsCodec,
    wq: VecDeque<Bytes>,
    st: ConnState,
}

/// Runs one connection to its end (its state's cleanup runs when the task ends or unwinds).
pub(crate) async fn run<IO>(gw: Arc<Gateway>, io: IO, wire: Wire, url_login: Option<LoginReq>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = gw.next_conn_id();
    // Debug level: disabled spans cost nothing per idle connection.
    let span = tracing::debug_span!("im_conn", conn = id, wire = ?wire);
    run_inner(gw, io, wire, url_login, id)
        .instrument(span)
        .await
}

async fn run_inner<IO>(gw: Arc<Gateway>, io: IO, wire: Wire, url_login: Option<LoginReq>, id: u64)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h = Arc::new(ConnHandle::new(id, gw.cfg.outbox_limit, gw.now()));
    gw.conns.add(&h);
    let mut c = Conn {
        io,
        rbuf: BytesMut::new(),
        ws: WsCodec::default(),
        wq: VecDeque::new(),
        st: ConnState::new(gw, h, wire),
    };
    let mut flow = match url_login {
        Some(req) => commands::login::login(&mut c.st, req).await,
        None => Flow::Continue,
    };
    c.take_replies();
    while let Flow::Continue = flow {
        flow = match poll_fn(|cx| c.poll_event(cx)).await {
            Event::Frame(f) => {
                c.touch();
                commands::dispatch(&mut c.st, f).await
            }
            Event::Bad { code, slug, close } => {
                c.touch();
                c.st.error(code, slug);
                if close {
                    Flow::Close(ws::close::POLICY)
                } else {
                    Flow::Continue
                }
            }
            Event::WsFatal(code) => Flow::Close(code),
            Event::PeerClose => Flow::Close(ws::close::NORMAL),
            Event::Gone => Flow::Drop,
            Event::Kick(k) => match k {
                Kick::Replaced => {
                    c.st.reply(code::LOGOUT, c.st.body("true"));
                    Flow::Close(ws::close::POLICY)
                }
                Kick::LoginTimeout => {
                    c.st.error(code::LOGIN, err::LOGIN_TIMEOUT);
                    Flow::Close(ws::close::POLICY)
                }
                // The end of the connection says why (an unrequested 1002 with the reason).
                Kick::Banned => {
                    c.st.error(code::LOGOUT, err::BANNED);
                    Flow::Close(ws::close::POLICY)
                }
                Kick::Suspended => {
                    c.st.error(code::LOGOUT, err::SUSPENDED);
                    Flow::Close(ws::close::POLICY)
                }
                Kick::Idle | Kick::Shutdown => Flow::Close(ws::close::GOING_AWAY),
                Kick::SlowReader => Flow::Drop,
            },
            Event::Timer => {
                c.on_timer();
                Flow::Continue
            }
        };
        c.take_replies();
    }
    c.st.h.close_outbox();
    if let Flow::Close(code) = flow {
        c.finish(code).await;
    }
}

impl<IO> Conn<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn touch(&self) {
        self.st
            .h
            .last_seen
            .store(self.st.gw.now(), Ordering::Relaxed);
    }

    /// Moves the replies the commands queued into the write queue.
    fn take_replies(&mut self) {
        while let Some(r) = self.st.out.pop_front() {
            if self.wq.len() >= WQ_REPLY_LIMIT {
                self.st.h.kick(Kick::SlowReader);
                self.st.out.clear();
                return;
            }
            self.wq.push_back(r);
        }
    }

    /// The next event; keeps writing and reading while none is ready.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if let Some(ev) = self.decode_one() {
                return Poll::Ready(ev);
            }
            self.st.h.register(cx.waker());
            if let Some(k) = self.st.h.kicked() {
                return Poll::Ready(Event::Kick(k));
            }
            if self.st.h.take_timer() {
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
        let ev = match self.st.wire {
            Wire::Tcp => loop {
                match FrameCodec.decode(&mut self.rbuf) {
                    Ok(Some(f)) => {
                        if f.code == code::ACK && self.st.login.is_some() {
                            if let Some(id) = crate::ack::body_ack_id(&f.body) {
                                self.touch();
                                self.st.pending.ack(id);
                                self.set_ack_due();
                                continue;
                            }
                        }
                        break Some(Event::Frame(f));
                    }
                    Ok(None) => break None,
                    Err(e) => {
                        break Some(Event::Bad {
                            code: 0,
                            slug: e.slug(),
                            close: true,
                        })
                    }
                }
            },
            Wire::Ws => loop {
                match self.ws.decode(&mut self.rbuf) {
                    Ok(Some(WsEvent::Text(t))) => {
                        if self.st.login.is_some() {
                            if let Some(id) = crate::ack::ws_ack_id(&t) {
                                self.touch();
                                self.st.pending.ack(id);
                                self.set_ack_due();
                                continue;
                            }
                        }
                        break Some(ws_text(&t));
                    }
                    Ok(Some(WsEvent::Binary(b))) => break Some(ws_binary(b)),
                    Ok(Some(WsEvent::Ping(p))) => self.st.out.push_back(ws::frame(ws::OP_PONG, &p)),
                    Ok(Some(WsEvent::Pong)) => {}
                    Ok(Some(WsEvent::Close(_))) => break Some(Event::PeerClose),
                    Ok(None) => break None,
                    Err(e) => break Some(Event::WsFatal(e.close_code())),
                }
            },
        };
        if !self.st.out.is_empty() {
            self.take_replies();
        }
        if ev.is_none() && self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Nothing partial left: give the memory back (idle connections own no buffer).
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
    /// With `take_outbox`, refills the write queue from the connection's outbox.
    fn poll_write(&mut self, cx: &mut Context<'_>, take_outbox: bool) -> Poll<std::io::Result<()>> {
        loop {
            if take_outbox {
                while self.wq.len() < WQ_MAX {
                    match self.st.h.pop() {
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

    /// Moves an outbox item to the write queue and starts the ACK clocks of its messages.
    fn track(&mut self, og: &Outgoing) {
        self.wq.push_back(og.bytes(self.st.wire).clone());
        if og.msgs.is_empty() {
            return;
        }
        let gw = &self.st.gw;
        let due = gw.now() + gw.ack_ms();
        let now_ms = now_ms();
        let mut dropped = 0;
        for m in &og.msgs {
            if m.sent_at_ms > 0 {
                gw.write_lag
                    .record(now_ms.saturating_sub(m.sent_at_ms).max(0) as u64);
            }
            dropped += self.st.pending.track(m.clone(), due);
        }
        if dropped > 0 {
            Counters::add(&gw.counters.unacked_dropped, dropped);
        }
        self.set_ack_due();
    }

    fn set_ack_due(&self) {
        self.st
            .h
            .ack_due
            .store(self.st.pending.due(), Ordering::Relaxed);
    }

    /// ACK deadlines: a first timeout re-sends once, a second drops the message.
    fn on_timer(&mut self) {
        let gw = self.st.gw.clone();
        let now = gw.now();
        let expired = self.st.pending.expire(now, now + gw.ack_ms());
        Counters::add(&gw.counters.unacked_dropped, expired.dropped);
        for m in expired.retry {
            if self.wq.len() < WQ_MAX * 4 {
                let bytes = match self.st.wire {
                    Wire::Ws => m.ws.clone(),
                    Wire::Tcp => m.tcp.clone(),
                };
                self.wq.push_back(bytes);
                Counters::add(&gw.counters.retried, 1);
            }
        }
        self.set_ack_due();
    }

    /// Sends what is queued (and a WebSocket close frame), within [`LINGER_ON_CLOSE`].
    async fn finish(&mut self, close_code: u16) {
        if self.st.wire == Wire::Ws {
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
