//! Connection caps of the HTTP server (API, pages, WebSocket, HTTP-FLV, HLS), on top of
//! [`livehouse_core::limits::ConnLimiter`]:
//! - [`CappedListener`] counts each accepted TCP connection for its peer; over a cap the client
//!   gets `503 Service Unavailable` (`connection: close`) written straight to the socket, and
//!   the connection never reaches hyper;
//! - [`per_client`], a middleware, resolves each request's client address ([`ClientIp`] in the
//!   request's extensions, `X-Forwarded-For` believed only from `--trusted-proxy` peers) and,
//!   for requests a trusted proxy forwarded, holds the client's slot until the response body
//!   ends (or, for a WebSocket, until the socket closes: `im-core` takes the
//!   [`HeldConn`]), answering 503 over the client's cap.
//!
//! Must not: read request bodies, or spend more than a bounded number of tasks and one second
//! each on refused connections.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use livehouse_core::limits::{client_ip, ClientIp, ConnGuard, ConnLimiter, HeldConn, Refusal};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Refused connections being answered at once; more are closed without an answer.
const REFUSING_AT_ONCE: usize = 64;
/// Longest time spent answering one refused connection.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

/// A TCP listener that counts its connections against a [`ConnLimiter`].
pub struct CappedListener {
    inner: TcpListener,
    limiter: Arc<ConnLimiter>,
    refusing: Arc<Semaphore>,
}

impl CappedListener {
    pub fn new(inner: TcpListener, limiter: Arc<ConnLimiter>) -> Self {
        CappedListener {
            inner,
            limiter,
            refusing: Arc::new(Semaphore::new(REFUSING_AT_ONCE)),
        }
    }

    /// Answers 503 and closes, in a task bounded by [`REFUSING_AT_ONCE`] and
    /// [`REFUSAL_DEADLINE`].
    fn refuse(&self, mut sock: TcpStream, why: Refusal) {
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return; // dropped: closed without an answer
        };
        tokio::spawn(async move {
            let _permit = permit;
            let answer = refusal_response_bytes(why);
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
                sock.write_all(&answer).await?;
                sock.shutdown().await?;
                // Read what the client sent until it closes (or the deadline): closing with
                // unread bytes would reset the connection and could lose the answer.
                let mut buf = [0u8; 4096];
                while sock.read(&mut buf).await? > 0 {}
                std::io::Result::Ok(())
            })
            .await;
        });
    }
}

fn refusal_body(why: Refusal) -> String {
    serde_json::json!({ "code": 503, "msg": why.to_string(), "data": null }).to_string()
}

fn refusal_response_bytes(why: Refusal) -> Vec<u8> {
    let body = refusal_body(why);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refusal_response(why: Refusal) -> Response {
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        refusal_body(why),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // tokio's listener as axum drives it: accept errors are logged and retried.
            let (sock, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.limiter.try_open(peer.ip()) {
                Ok(guard) => {
                    let _ = sock.set_nodelay(true);
                    return (
                        Capped {
                            io: sock,
                            _guard: guard,
                        },
                        peer,
                    );
                }
                Err(why) => self.refuse(sock, why),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot: given back when hyper drops it (closed, or upgraded and
/// then closed).
pub struct Capped<IO> {
    io: IO,
    _guard: ConnGuard,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Middleware: the request's [`ClientIp`], and the per-client cap of requests a trusted proxy
/// forwarded.
pub async fn per_client(
    State(limiter): State<Arc<ConnLimiter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let trusted = &limiter.caps().trusted;
    let client = client_ip(
        peer.ip(),
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
        trusted,
    );
    req.extensions_mut().insert(ClientIp(client));
    // Behind a trusted TLS-terminating proxy, the session cookie must be `Secure`.
    if trusted.contains(peer.ip())
        && req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        req.extensions_mut().insert(livehouse_api::session::OverTls);
    }
    if !trusted.contains(peer.ip()) {
        // A direct client: its connection already holds its slot.
        return next.run(req).await;
    }
    let held = match limiter.try_forwarded(client) {
        Ok(guard) => HeldConn::new(guard),
        Err(why) => return refusal_response(why),
    };
    req.extensions_mut().insert(held.clone());
    let resp = next.run(req).await;
    match held.take() {
        Some(guard) => resp.map(|body| {
            Body::new(GuardedBody {
                inner: body,
                _guard: guard,
            })
        }),
        None => resp, // taken by a handler (a WebSocket keeps it)
    }
}

/// A response body that holds a slot until it is sent in full or dropped (a long HTTP-FLV
/// stream holds it for the whole stream).
struct GuardedBody {
    inner: Body,
    _guard: ConnGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_refusal_is_a_complete_http_response() {
        let bytes = refusal_response_bytes(Refusal::PerIp);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 503);
    }
}
