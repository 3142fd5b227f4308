//! Operator webhooks: every [`OperatorEvent`] (`stream_started`, `stream_stopped`,
//! `room_started`, `room_closed`, `user_banned`, `message_deleted`) is POSTed as JSON to each
//! `--webhook-url`, signed, and retried with exponential backoff for up to
//! [`WebhookConfig::give_up_after`] (10 min) until the receiver answers 2xx.
//!
//! **Body**: `{"id": "<32 hex>", "type": "<event>", "atMs": <epoch ms>, "data": {…}}`; the same
//! `id` on every attempt (receivers drop duplicates by it).
//!
//! **Signature** (header `X-Livehouse-Signature: t=<unix seconds>,v1=<64 hex>`): `v1` is
//! HMAC-SHA256 with the `--webhook-secret` as key over the bytes `"<t>." + body` (the decimal
//! `t` of the header, a dot, then the request body exactly as received). `t` is the time of
//! the attempt, so a receiver checks `|now - t| ≤ 5 min` against replays, and compares `v1` in
//! constant time ([`verify`] does both). Also sent: `X-Livehouse-Event: <type>`,
//! `X-Livehouse-Delivery: <id>`.
//!
//! **Never blocking**: [`Webhooks::notify`] (the services call it inside requests) only queues.
//! The queue is bounded: at most [`WebhookConfig::queue_capacity`] deliveries (one per event and
//! URL) wait or retry at once; an event that does not fit is dropped and counted
//! (`livehouse_webhook_dropped_total`). At most [`WebhookConfig::max_in_flight`] requests run at
//! once, each with a timeout.
//!
//! Must not: hold a lock across an `.await`, follow redirects, or send to anything but the
//! configured URLs.

use hmac::{Hmac, Mac};
use livehouse_living::notify::{Notifier, OperatorEvent};
use sha2::Sha256;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-livehouse-signature";
/// How far a receiver should accept `t` from its clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Where and how webhooks are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    pub secret: String,
    /// Most deliveries waiting or retrying at once.
    pub queue_capacity: usize,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Delay before the first retry; doubles per attempt up to `max_retry_delay`.
    pub first_retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// A delivery not accepted this long after its first attempt is given up.
    pub give_up_after: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Production defaults for `urls` and `secret`.
    pub fn new(urls: Vec<String>, secret: String) -> Self {
        WebhookConfig {
            urls,
            secret,
            queue_capacity: 10_000,
            max_in_flight: 8,
            first_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
        }
    }

    /// Checks the URLs (http, a host) and the secret (at least 32 characters).
    pub fn validate(&self) -> Result<(), String> {
        if self.secret.len() < 32 {
            return Err(
                "--webhook-secret must be at least 32 characters (e.g. `openssl rand -hex 32`)"
                    .into(),
            );
        }
        for u in &self.urls {
            let parsed = reqwest::Url::parse(u).map_err(|e| format!("--webhook-url {u}: {e}"))?;
            if parsed.scheme() != "http" || parsed.host_str().is_none() {
                return Err(format!(
                    "--webhook-url {u}: only http:// URLs are supported (this build has no TLS \
                     client; send through a local TLS proxy)"
                ));
            }
        }
        Ok(())
    }
}

/// HMAC-SHA256 over `"<t>." + body`, as the header value `t=<t>,v1=<hex>`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver does: parses the header, checks `t` is within `tolerance_secs` of `now_secs`
/// and the signature in constant time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_secs - t).abs() > tolerance_secs {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// Counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
    pub gave_up: AtomicU64,
    /// Deliveries queued, waiting or in flight right now.
    pub queued: AtomicUsize,
}

/// One event for one URL.
struct Job {
    url: Arc<str>,
    id: Arc<str>,
    kind: &'static str,
    body: Arc<[u8]>,
    attempt: u32,
    first_at: Instant,
}

/// The queueing side: a [`Notifier`] for the services.
pub struct Webhooks {
    urls: Vec<Arc<str>>,
    tx: mpsc::Sender<Job>,
    capacity: usize,
    stats: Arc<WebhookStats>,
}

/// The sending side: run it with [`Dispatcher::run`].
pub struct Dispatcher {
    rx: mpsc::Receiver<Job>,
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
    http: reqwest::Client,
}

impl Webhooks {
    /// A queue and its dispatcher for `config` (validate it first).
    pub fn new(config: WebhookConfig) -> (Arc<Webhooks>, Dispatcher) {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(WebhookStats::default());
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("livehouse-webhooks")
            .build()
            .expect("the HTTP client builds");
        (
            Arc::new(Webhooks {
                urls: config.urls.iter().map(|u| Arc::from(u.as_str())).collect(),
                tx,
                capacity,
                stats: stats.clone(),
            }),
            Dispatcher {
                rx,
                config,
                stats,
                http,
            },
        )
    }

    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }
}

impl Notifier for Webhooks {
    fn notify(&self, ev: OperatorEvent) {
        if self.urls.is_empty() {
            return;
        }
        let id: Arc<str> = Arc::from(livehouse_core::ids::random_hex(16));
        let body = serde_json::json!({
            "id": &*id,
            "type": ev.kind,
            "atMs": ev.at_ms,
            "data": ev.data,
        });
        let body: Arc<[u8]> = Arc::from(serde_json::to_vec(&body).expect("serializes"));
        for url in &self.urls {
            // Reserve a place first: the bound covers waiting, retrying and in-flight jobs.
            let before = self.stats.queued.fetch_add(1, Ordering::AcqRel);
            let job = Job {
                url: url.clone(),
                id: id.clone(),
                kind: ev.kind,
                body: body.clone(),
                attempt: 0,
                first_at: Instant::now(),
            };
            if before >= self.capacity || self.tx.try_send(job).is_err() {
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("livehouse_webhook_dropped_total").increment(1);
                tracing::warn!(event = ev.kind, %url, "webhook queue full: event dropped");
            }
        }
    }
}

/// A job waiting for its next attempt, ordered by due time.
struct Due(Instant, u64, Job);

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

impl Dispatcher {
    /// Sends until `shutdown` resolves (what is still queued then is dropped, and logged).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut waiting: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
        let mut inflight: JoinSet<(Job, Result<(), String>)> = JoinSet::new();
        let mut seq = 0u64;
        let max_in_flight = self.config.max_in_flight.max(1);
        tokio::pin!(shutdown);
        loop {
            // Start what is due, within the in-flight limit.
            let now = Instant::now();
            while inflight.len() < max_in_flight
                && waiting.peek().is_some_and(|Reverse(d)| d.0 <= now)
            {
                let Reverse(Due(_, _, job)) = waiting.pop().expect("peeked");
                inflight.spawn(send(self.http.clone(), self.config.secret.clone(), job));
            }
            let next_due = waiting.peek().map(|Reverse(d)| d.0);
            let can_start = inflight.len() < max_in_flight;
            tokio::select! {
                _ = &mut shutdown => break,
                job = self.rx.recv() => {
                    let Some(job) = job else { break };
                    seq += 1;
                    waiting.push(Reverse(Due(Instant::now(), seq, job)));
                }
                _ = sleep_until(next_due), if can_start && next_due.is_some() => {}
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let Ok((mut job, result)) = done else { continue };
                    match result {
                        Ok(()) => {
                            self.finish();
                            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("livehouse_webhook_delivered_total").increment(1);
                        }
                        Err(why) => {
                            job.attempt += 1;
                            let delay = self.delay(job.attempt);
                            if job.first_at.elapsed() + delay > self.config.give_up_after {
                                self.finish();
                                self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!("livehouse_webhook_failed_total").increment(1);
                                tracing::warn!(url = %job.url, event = job.kind, id = %job.id, attempts = job.attempt, %why, "webhook given up");
                            } else {
                                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!("livehouse_webhook_retried_total").increment(1);
                                tracing::debug!(url = %job.url, event = job.kind, attempt = job.attempt, ?delay, %why, "webhook will be retried");
                                seq += 1;
                                waiting.push(Reverse(Due(Instant::now() + delay, seq, job)));
                            }
                        }
                    }
                }
            }
        }
        let left = self.stats.queued.load(Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(left, "stopping with webhooks still queued");
        }
    }

    fn finish(&self) {
        self.stats.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// `first_retry_delay * 2^(attempt-1)`, capped.
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << (attempt.saturating_sub(1)).min(20);
        (self.config.first_retry_delay * factor).min(self.config.max_retry_delay)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One attempt: 2xx is success.
async fn send(http: reqwest::Client, secret: String, job: Job) -> (Job, Result<(), String>) {
    let t = livehouse_core::time::now_ms() / 1000;
    let signature = sign(secret.as_bytes(), t, &job.body);
    let result = http
        .post(&*job.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("x-livehouse-event", job.kind)
        .header("x-livehouse-delivery", &*job.id)
        .body(job.body.to_vec())
        .send()
        .await;
    let outcome = match result {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    (job, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_old_timestamps() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let body = br#"{"id":"x","type":"room_closed"}"#;
        let h = sign(secret, 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1=") && h.len() == "t=1700000000,v1=".len() + 64);
        assert!(verify(secret, &h, body, 1_700_000_100, TOLERANCE_SECS));
        assert!(
            !verify(secret, &h, b"{}", 1_700_000_100, TOLERANCE_SECS),
            "other body"
        );
        assert!(!verify(
            b"another secret, also 32 chars..",
            &h,
            body,
            1_700_000_100,
            TOLERANCE_SECS
        ));
        assert!(
            !verify(secret, &h, body, 1_700_000_000 + 301, TOLERANCE_SECS),
            "too old"
        );
        assert!(!verify(
            secret,
            "v1=00",
            body,
            1_700_000_000,
            TOLERANCE_SECS
        ));
        assert!(!verify(
            secret,
            "garbage",
            body,
            1_700_000_000,
            TOLERANCE_SECS
        ));
    }

    #[test]
    fn config_wants_a_strong_secret_and_http_urls() {
        let ok = "x".repeat(32);
        assert!(
            WebhookConfig::new(vec!["http://127.0.0.1:9/hook".into()], ok.clone())
                .validate()
                .is_ok()
        );
        assert!(WebhookConfig::new(vec![], "short".into())
            .validate()
            .is_err());
        assert!(WebhookConfig::new(vec!["ftp://x/".into()], ok.clone())
            .validate()
            .is_err());
        assert!(WebhookConfig::new(vec!["not a url".into()], ok)
            .validate()
            .is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (_, d) = Webhooks::new(WebhookConfig::new(vec![], "x".repeat(32)));
        let secs: Vec<u64> = (1..=9).map(|a| d.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
