//! At-least-once to every gateway, each at its own pace: one bounded queue and one worker task
//! per gateway. A worker sends what is queued (up to [`MAX_PER_PUSH`] batches in one request),
//! in order, and retries a failed push with a growing backoff for as long as the gateway is
//! live; so a slow or dead gateway delays only its own viewers. A queue over its bound drops its
//! oldest batches (counted): the gateway then notices the gap and fetches those messages from the
//! chat log, as it does for anything a dead gateway's viewers missed when they come back.
//!
//! Which gateways are live, and their push URLs, come from the presence store
//! ([`Pusher::set_live`], refreshed by the caller); a gateway unknown for [`GIVE_UP`] loses its
//! queue.
//!
//! Must not: block the caller (enqueueing never waits) or keep a queue for a gateway that is gone.

use crate::delivery::GatewayDelivery;
use livehouse_core::events::{GatewayInfo, RoomBatch};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Most batches in one push request.
pub const MAX_PER_PUSH: usize = 256;
/// A gateway missing from the live set this long loses its queue.
pub const GIVE_UP: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The per-gateway queues (see the module docs).
#[derive(Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

struct Inner {
    delivery: Arc<dyn GatewayDelivery>,
    capacity: usize,
    live: Mutex<HashMap<String, GatewayInfo>>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

struct Queue {
    items: Mutex<VecDeque<RoomBatch>>,
    ready: Notify,
}

impl Pusher {
    /// `capacity`: batches queued per gateway before the oldest are dropped.
    pub fn new(delivery: Arc<dyn GatewayDelivery>, capacity: usize) -> Self {
        Pusher {
            inner: Arc::new(Inner {
                delivery,
                capacity: capacity.max(1),
                live: Mutex::new(HashMap::new()),
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The live gateways now (from the presence store).
    pub fn set_live(&self, gateways: Vec<GatewayInfo>) {
        let mut live = self.inner.live.lock();
        live.clear();
        live.extend(gateways.into_iter().map(|g| (g.id.clone(), g)));
    }

    /// Whether `gateway` is in the live set.
    pub fn is_live(&self, gateway: &str) -> bool {
        self.inner.live.lock().contains_key(gateway)
    }

    /// Queues a batch for `gateway` (never waits).
    pub fn enqueue(&self, gateway: &str, batch: RoomBatch) {
        let q = {
            let mut queues = self.inner.queues.lock();
            match queues.get(gateway) {
                Some(q) => q.clone(),
                None => {
                    let q = Arc::new(Queue {
                        items: Mutex::new(VecDeque::new()),
                        ready: Notify::new(),
                    });
                    queues.insert(gateway.to_string(), q.clone());
                    tokio::spawn(worker(self.inner.clone(), gateway.to_string(), q.clone()));
                    q
                }
            }
        };
        let dropped = {
            let mut items = q.items.lock();
            items.push_back(batch);
            let over = items.len().saturating_sub(self.inner.capacity);
            items.drain(..over);
            over
        };
        if dropped > 0 {
            metrics::counter!("msg_push_dropped_total").increment(dropped as u64);
        }
        q.ready.notify_one();
    }

    /// Batches waiting for `gateway`.
    pub fn queued(&self, gateway: &str) -> usize {
        self.inner
            .queues
            .lock()
            .get(gateway)
            .map_or(0, |q| q.items.lock().len())
    }
}

async fn worker(inner: Arc<Inner>, gateway: String, q: Arc<Queue>) {
    let mut unknown_since: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let batch: Vec<RoomBatch> = {
            let items = q.items.lock();
            items.iter().take(MAX_PER_PUSH).cloned().collect()
        };
        if batch.is_empty() {
            q.ready.notified().await;
            continue;
        }
        let info = inner.live.lock().get(&gateway).cloned();
        let Some(info) = info else {
            let since = *unknown_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= GIVE_UP {
                let n = {
                    let mut queues = inner.queues.lock();
                    queues.remove(&gateway);
                    let mut items = q.items.lock();
                    let n = items.len();
                    items.clear();
                    n
                };
                metrics::counter!("msg_push_dropped_total").increment(n as u64);
                tracing::info!(gateway = %gateway, dropped = n, "gateway gone: its queue is dropped");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        unknown_since = None;
        match inner.delivery.deliver(&info, &batch).await {
            Ok(()) => {
                metrics::counter!("msg_push_requests_total").increment(1);
                let mut items = q.items.lock();
                // The queue may have dropped from its front meanwhile: remove what was sent.
                for sent in &batch {
                    if items.front() == Some(sent) {
                        items.pop_front();
                    }
                }
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                metrics::counter!("msg_push_failures_total").increment(1);
                tracing::warn!(gateway = %gateway, error = %e, "push failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
