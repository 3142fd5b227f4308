//! Where connections come in: the TCP accept loop ([`Gateway::serve_tcp`]) and the gateway's
//! HTTP surface ([`Gateway::router`], merged into the binary's server):
//! - `GET /ws`: WebSocket upgrade (JSON text frames; the client logs in with a 1001 message);
//! - `GET /{token}/{userId}/1001/{roomId}`: WebSocket upgrade that logs in from the URL;
//! - `POST /internal/im/push`: a list of room batches from the `msg` role, checked by the
//!   configured internal-token check (header `x-livehouse-internal`).
//!
//! The WebSocket handshake is done here (RFC 6455 accept key over hyper's upgrade), so that the
//! connection's task owns the raw upgraded stream and frames it with [`crate::ws`].
//!
//! Must not: hold connection state or answer protocol messages (that is `conn.rs`).

use crate::commands::login::LoginReq;
use crate::gateway::Gateway;
use crate::protocol::Wire;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use livehouse_core::events::RoomBatch;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying the shared secret of internal endpoints.
pub const INTERNAL_HEADER: &str = "x-livehouse-internal";
/// Largest push request body.
pub const MAX_PUSH_BODY: usize = 8 * 1024 * 1024;

impl Gateway {
    /// Routes `/ws`, `/{token}/{userId}/1001/{roomId}` and `POST /internal/im/push`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/ws", get(ws_plain))
            .route("/{token}/{user_id}/1001/{room_id}", get(ws_url_login))
            .route(
                "/internal/im/push",
                post(push).layer(DefaultBodyLimit::max(MAX_PUSH_BODY)),
            )
            .with_state(self.clone())
    }

    /// Serves one connection over any byte stream, in either wire form (e.g. a Unix socket, or
    /// an in-memory pipe in tests that drive the protocol timers with paused time).
    pub async fn serve_conn<IO>(self: Arc<Self>, io: IO, wire: Wire)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        crate::conn::run(self, io, wire, None).await
    }

    /// Accepts TCP clients (binary protocol) until `shutdown` resolves. Open connections stay;
    /// see [`Gateway::close_all`].
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = listener.accept() => match r {
                    Ok((sock, peer)) => {
                        // Over a cap the socket is closed at once: no byte is read from it.
                        let guard = match &self.cfg.tcp_limiter {
                            Some(limiter) => match limiter.try_open(peer.ip()) {
                                Ok(g) => Some(g),
                                Err(_) => continue,
                            },
                            None => None,
                        };
                        let _ = sock.set_nodelay(true);
                        let gw = self.clone();
                        tokio::spawn(async move {
                            let _slot = guard;
                            crate::conn::run(gw, sock, Wire::Tcp, None).await
                        });
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "im tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

fn envelope(status: StatusCode, code: u16, msg: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "msg": msg, "data": null })),
    )
        .into_response()
}

async fn ws_plain(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    upgrade(gw, req, None)
}

async fn ws_url_login(
    State(gw): State<Arc<Gateway>>,
    Path((token, user_id, room_id)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let (Ok(user_id), Ok(room_id)) = (user_id.parse::<i64>(), room_id.parse::<i64>()) else {
        return envelope(
            StatusCode::BAD_REQUEST,
            400,
            "userId and roomId must be integers",
        );
    };
    let login = LoginReq {
        user_id: Some(user_id),
        token,
        room_id: Some(room_id),
        ..LoginReq::default()
    };
    upgrade(gw, req, Some(login))
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn upgrade(gw: Arc<Gateway>, mut req: Request, login: Option<LoginReq>) -> Response {
    let h = req.headers();
    if req.method() != Method::GET
        || !header_has(h, header::CONNECTION, "upgrade")
        || !header_has(h, header::UPGRADE, "websocket")
    {
        return envelope(
            StatusCode::UPGRADE_REQUIRED,
            426,
            "expected a WebSocket upgrade",
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return envelope(
            StatusCode::BAD_REQUEST,
            400,
            "unsupported WebSocket version",
        );
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return envelope(StatusCode::BAD_REQUEST, 400, "missing Sec-WebSocket-Key");
    };
    let accept = crate::ws::accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "connection cannot be upgraded",
        );
    };
    // A request a trusted proxy forwarded holds its client's slot (livehouse_core::limits):
    // the WebSocket keeps it for its whole life, not just for the 101 response.
    let held = req
        .extensions()
        .get::<livehouse_core::limits::HeldConn>()
        .and_then(|h| h.take());
    tokio::spawn(async move {
        let _slot = held;
        match on_upgrade.await {
            Ok(upgraded) => crate::conn::run(gw, TokioIo::new(upgraded), Wire::Ws, login).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = resp.headers_mut();
    hs.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    resp
}

async fn push(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers
        .get(INTERNAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = gw
        .cfg
        .internal_auth
        .as_ref()
        .is_some_and(|check| !given.is_empty() && check(given));
    if !allowed {
        return envelope(StatusCode::FORBIDDEN, 403, "forbidden");
    }
    let batches: Vec<RoomBatch> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return envelope(StatusCode::BAD_REQUEST, 400, &format!("bad batches: {e}")),
    };
    if gw.try_push(batches) {
        envelope(StatusCode::OK, 200, "success")
    } else {
        // The sender retries; the rooms' repair also fetches what is missing from the log.
        envelope(StatusCode::SERVICE_UNAVAILABLE, 503, "fan-out busy")
    }
}
