//! How room batches reach a gateway: the [`GatewayDelivery`] port and its HTTP adapter.
//!
//! [`HttpDelivery`] posts the batches as one JSON list to `{push_url}/internal/im/push` with the
//! header `x-livehouse-internal: <token>` (the token is asked for on every request, so it can
//! rotate). A gateway that answers anything but 200 (503 when its fan-out is full) has not taken
//! the batches. The in-process adapter (one-process deployments) lives with the binary, around
//! the gateway's own push.
//!
//! Must not: retry on its own (the pusher does, per gateway) or wait longer than
//! [`REQUEST_TIMEOUT`] per call.

use async_trait::async_trait;
use livehouse_core::events::{GatewayInfo, RoomBatch};
use std::sync::Arc;
use std::time::Duration;

/// Header carrying the shared internal token on role-to-role HTTP calls.
pub const INTERNAL_HEADER: &str = "x-livehouse-internal";
/// Path of a gateway's push endpoint, below its `push_url`.
pub const PUSH_PATH: &str = "/internal/im/push";
/// Deadline of one push request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Hands batches to one gateway.
#[async_trait]
pub trait GatewayDelivery: Send + Sync + 'static {
    async fn deliver(&self, gateway: &GatewayInfo, batches: &[RoomBatch]) -> anyhow::Result<()>;
}

/// Gives the current internal token.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Delivery over HTTP to the gateway's internal push endpoint.
pub struct HttpDelivery {
    http: reqwest::Client,
    token: TokenSource,
}

impl HttpDelivery {
    pub fn new(token: TokenSource) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .build()?;
        Ok(HttpDelivery { http, token })
    }
}

#[async_trait]
impl GatewayDelivery for HttpDelivery {
    async fn deliver(&self, gateway: &GatewayInfo, batches: &[RoomBatch]) -> anyhow::Result<()> {
        let url = format!("{}{PUSH_PATH}", gateway.push_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .header(INTERNAL_HEADER, (self.token)())
            .json(batches)
            .send()
            .await?;
        let status = resp.status();
        anyhow::ensure!(
            status.is_success(),
            "gateway {} answered {status}",
            gateway.id
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};
    use livehouse_core::events::{ChatEvent, StreamEntry};

    fn batch() -> RoomBatch {
        RoomBatch {
            room_id: 3,
            epoch: "e".into(),
            entries: vec![StreamEntry {
                offset: 1,
                msg: ChatEvent {
                    msg_id: "m".into(),
                    app_id: 10001,
                    room_id: 3,
                    sender_id: 4,
                    biz_code: 5555,
                    data: "{}".into(),
                    sent_at_ms: 0,
                    origin_gateway: String::new(),
                    origin_conn: 0,
                },
            }],
        }
    }

    #[tokio::test]
    async fn posts_the_batches_with_the_current_token() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<RoomBatch>>(4);
        let app = Router::new().route(
            PUSH_PATH,
            post(move |h: HeaderMap, Json(b): Json<Vec<RoomBatch>>| {
                let tx = tx.clone();
                async move {
                    if h.get(INTERNAL_HEADER).and_then(|v| v.to_str().ok()) != Some("secret") {
                        return StatusCode::FORBIDDEN;
                    }
                    tx.send(b).await.unwrap();
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let gw = GatewayInfo {
            id: "gw1".into(),
            push_url: format!("http://{addr}/"),
            ..GatewayInfo::default()
        };
        let good = HttpDelivery::new(Arc::new(|| "secret".to_string())).unwrap();
        good.deliver(&gw, &[batch()]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![batch()]);
        let bad = HttpDelivery::new(Arc::new(|| "wrong".to_string())).unwrap();
        assert!(
            bad.deliver(&gw, &[batch()]).await.is_err(),
            "a refused push is an error"
        );
        let nowhere = GatewayInfo {
            push_url: "http://127.0.0.1:9".into(),
            ..gw
        };
        assert!(good.deliver(&nowhere, &[batch()]).await.is_err());
    }
}
