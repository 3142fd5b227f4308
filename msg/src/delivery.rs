//! How a batch reaches a gateway: the [`GatewayDelivery`] port and its HTTP adapter.
//!
//! [`HttpDelivery`] posts the batch as JSON to `{push_url}/internal/im/push` with the header
//! `x-livehouse-internal: <token>`, where `push_url` comes from the gateway's registration in the
//! cache ([`keys::gateway_info`]), kept locally for [`INFO_TTL`]. A gateway that just failed is
//! skipped for [`FAIL_BACKOFF`], so a dead gateway does not slow every message down until its
//! users are gone from the rooms. The in-process adapter (one-process deployments) lives with the
//! binary, around the gateway's own push.
//!
//! Must not: retry on its own (a gateway that did not answer is skipped; its users reconnect) or
//! block longer than [`REQUEST_TIMEOUT`] per call.

use async_trait::async_trait;
use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, GatewayInfo, PushBatch};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header carrying the shared internal token on role-to-role HTTP calls.
pub const INTERNAL_HEADER: &str = "x-livehouse-internal";
/// Path of a gateway's push endpoint, below its `push_url`.
pub const PUSH_PATH: &str = "/internal/im/push";
/// How long a gateway's `push_url` is reused before it is read from the cache again.
pub const INFO_TTL: Duration = Duration::from_secs(10);
/// How long a gateway that failed a push is skipped.
pub const FAIL_BACKOFF: Duration = Duration::from_secs(2);
/// Deadline of one push request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one batch (one message, many receivers) to one gateway.
#[async_trait]
pub trait GatewayDelivery: Send + Sync + 'static {
    async fn deliver(&self, gateway_id: &str, batch: PushBatch) -> anyhow::Result<()>;
}

/// Delivery over HTTP to the gateway's internal push endpoint.
pub struct HttpDelivery {
    http: reqwest::Client,
    cache: Arc<dyn Cache>,
    token: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// gateway id → (push_url, read at).
    urls: HashMap<String, (String, Instant)>,
    /// gateway id → skipped until.
    failed: HashMap<String, Instant>,
}

impl HttpDelivery {
    /// `token` is the shared internal token the gateways check.
    pub fn new(cache: Arc<dyn Cache>, token: impl Into<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(HttpDelivery {
            http,
            cache,
            token: token.into(),
            state: Mutex::new(State::default()),
        })
    }

    async fn push_url(&self, gateway_id: &str) -> anyhow::Result<String> {
        let now = Instant::now();
        if let Some((url, at)) = self.state.lock().urls.get(gateway_id) {
            if *at + INFO_TTL > now {
                return Ok(url.clone());
            }
        }
        let raw = self
            .cache
            .get(&keys::gateway_info(gateway_id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("gateway {gateway_id} is not registered"))?;
        let info: GatewayInfo = serde_json::from_str(&raw)?;
        let url = info.push_url.trim_end_matches('/').to_string();
        let mut st = self.state.lock();
        st.urls.retain(|_, (_, at)| *at + INFO_TTL > now);
        st.urls.insert(gateway_id.to_string(), (url.clone(), now));
        Ok(url)
    }

    async fn post(&self, gateway_id: &str, batch: &PushBatch) -> anyhow::Result<()> {
        let url = self.push_url(gateway_id).await?;
        let resp = self
            .http
            .post(format!("{url}{PUSH_PATH}"))
            .header(INTERNAL_HEADER, &self.token)
            .json(batch)
            .send()
            .await?;
        if !resp.status().is_success() {
            anyhow::bail!("gateway {gateway_id} answered {}", resp.status());
        }
        Ok(())
    }
}

#[async_trait]
impl GatewayDelivery for HttpDelivery {
    async fn deliver(&self, gateway_id: &str, batch: PushBatch) -> anyhow::Result<()> {
        let now = Instant::now();
        {
            let mut st = self.state.lock();
            if let Some(until) = st.failed.get(gateway_id) {
                if *until > now {
                    anyhow::bail!("gateway {gateway_id} failed recently; skipped");
                }
                st.failed.remove(gateway_id);
            }
        }
        let r = self.post(gateway_id, &batch).await;
        if r.is_err() {
            let mut st = self.state.lock();
            st.failed.retain(|_, until| *until > now);
            st.failed.insert(gateway_id.to_string(), now + FAIL_BACKOFF);
            st.urls.remove(gateway_id);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};
    use livehouse_core::cache::MemoryCache;
    use livehouse_core::events::ChatEvent;

    fn batch() -> PushBatch {
        PushBatch {
            receivers: vec![1, 2],
            msg: ChatEvent {
                msg_id: "m".into(),
                app_id: 10001,
                room_id: 3,
                sender_id: 4,
                biz_code: 5555,
                data: "{}".into(),
                sent_at_ms: 0,
            },
        }
    }

    #[tokio::test]
    async fn posts_the_batch_to_the_registered_push_url() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PushBatch>(4);
        let app = Router::new().route(
            PUSH_PATH,
            post(move |h: HeaderMap, Json(b): Json<PushBatch>| {
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

        let cache = Arc::new(MemoryCache::new());
        let info = GatewayInfo {
            id: "gw1".into(),
            ws_addr: String::new(),
            tcp_addr: String::new(),
            push_url: format!("http://{addr}/"),
            sessions: 0,
        };
        cache
            .set(
                &keys::gateway_info("gw1"),
                &serde_json::to_string(&info).unwrap(),
                None,
            )
            .await
            .unwrap();

        let good = HttpDelivery::new(cache.clone(), "secret").unwrap();
        good.deliver("gw1", batch()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, batch());

        let bad = HttpDelivery::new(cache.clone(), "wrong").unwrap();
        assert!(
            bad.deliver("gw1", batch()).await.is_err(),
            "a refused push is an error"
        );
        assert!(
            bad.deliver("gw1", batch()).await.is_err(),
            "then the gateway is skipped"
        );
        assert!(
            good.deliver("nope", batch()).await.is_err(),
            "unregistered gateway"
        );
    }
}
