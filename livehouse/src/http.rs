//! The HTTP server of every role: accepts TCP connections and serves the router over HTTP/1.1
//! (with upgrades, for WebSocket) through hyper, with deadlines a stranger cannot stretch:
//!
//! - **Headers**: a request's headers must arrive within `header_timeout` (hyper's
//!   `header_read_timeout`, driven by a Tokio timer). hyper starts that clock whenever the
//!   connection waits for a request, so a keep-alive connection with no next request is closed
//!   after `header_timeout` as well (like Apache's `KeepAliveTimeout`).
//! - **Idle**: a connection on which no byte moves either way for `idle_timeout` is closed: a
//!   request body sent a byte a minute, a client that stops reading its response. An upgraded
//!   connection (WebSocket) leaves this watch: the gateway has its own login and heartbeat
//!   deadlines.
//!
//! Each request carries `ConnectInfo<SocketAddr>` of its peer. On shutdown every connection is
//! asked to finish its current request and close.
//!
//! Connections come from a [`CappedListener`]: over a connection cap they were answered 503 at
//! accept and never reach hyper; each accepted one holds its slot until it closes.
//!
//! Must not: know routes or roles, or decide caps (that belongs to the accept policy).

use crate::http_caps::{Capped, CappedListener};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The deadlines of every HTTP connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest wait for a request's headers (and for the next request on a kept-alive
    /// connection); `None`: no limit.
    pub header_timeout: Option<Duration>,
    /// Longest time no byte moves on a connection that has not been upgraded; `None`: no limit.
    pub idle_timeout: Option<Duration>,
}

/// When a connection last moved a byte, and whether it became a WebSocket.
struct Activity {
    base: Instant,
    /// Milliseconds since `base` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    upgraded: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records when bytes move.
struct Watched {
    inner: Capped<TcpStream>,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets every connection finish
/// its current request.
pub async fn serve(
    mut listener: CappedListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            // Accept errors (out of file descriptors and the like) are logged and retried after
            // a pause inside the listener; refused connections never come out of it.
            (stream, peer) = axum::serve::Listener::accept(&mut listener) => {
                conns.spawn(connection(stream, peer, router.clone(), limits, stop_rx.clone()));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// One connection: hyper with the header deadline, plus the idle watch.
async fn connection(
    stream: Capped<TcpStream>,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let (router, seen) = (router.clone(), seen.clone());
        async move {
            let res = router.oneshot(req).await?;
            if res.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                seen.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    builder.header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let idle_deadline = match limits.idle_timeout {
            Some(t) if !activity.upgraded.load(Ordering::Relaxed) => activity.last() + t,
            // Far enough to never matter; the select needs some deadline.
            _ => Instant::now() + Duration::from_secs(24 * 3600),
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    if e.is_timeout() {
                        metrics::counter!("livehouse_http_header_timeouts_total").increment(1);
                    }
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                let idle = limits.idle_timeout.unwrap_or(Duration::MAX);
                if !activity.upgraded.load(Ordering::Relaxed) && activity.last().elapsed() >= idle {
                    metrics::counter!("livehouse_http_idle_closed_total").increment(1);
                    tracing::debug!(%peer, "HTTP connection idle: closed");
                    return;
                }
            }
        }
    }
}
