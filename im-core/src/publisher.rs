//! What the gateway hands to the bus, from one bounded queue: connections never wait for the bus
//! (design §4: with the bus down, connections keep reading and writing).
//!
//! One task takes what is queued, publishes it together (in queue order, then waits for all the
//! acknowledgements at once) and retries what failed with a growing backoff. A chat message that
//! is not on the bus within `publish_deadline` is given up: its sender is told `unavailable`
//! (and told `true` with the message id once it is on the bus). Presence and control events are
//! retried until they are published. While the bus is down the queue fills; then new chat
//! messages are refused at once (`unavailable`) and events are counted as dropped.
//!
//! Must not: block a connection, or grow past its bound.

use crate::conns::{ConnHandle, Outgoing};
use crate::protocol::{self, code, err, ImMsgBody, Wire, APP_ID, BIZ_CHAT};
use crate::stats::Counters;
use bytes::Bytes;
use livehouse_core::bus::Bus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most jobs published together.
const BATCH: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Who waits for a chat message's outcome.
pub(crate) struct Sender {
    pub conn: Arc<ConnHandle>,
    pub user: i64,
    pub msg_id: String,
}

/// One thing to publish.
pub(crate) struct Job {
    pub topic: &'static str,
    pub key: String,
    pub payload: Bytes,
    /// A chat message: its sender is answered, and it is given up at `deadline`.
    pub sender: Option<(Sender, Instant)>,
}

/// The queue's handle.
pub(crate) struct Publisher {
    tx: mpsc::Sender<Job>,
}

impl Publisher {
    /// Starts the publishing task (it ends when the handle is dropped).
    pub fn start(bus: Arc<dyn Bus>, capacity: usize, counters: Arc<Counters>) -> Publisher {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(bus, rx, counters));
        Publisher { tx }
    }

    /// Queues a job; false when the queue is full (the job is dropped).
    pub fn offer(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

async fn run(bus: Arc<dyn Bus>, mut rx: mpsc::Receiver<Job>, counters: Arc<Counters>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let mut backoff = BACKOFF_MIN;
        loop {
            // `join_all` polls the publishes in order on its first poll, so the bus enqueues
            // them in queue order; the acknowledgements are then awaited together.
            let results = futures::future::join_all(
                jobs.iter()
                    .map(|j| bus.publish(j.topic, &j.key, j.payload.clone())),
            )
            .await;
            let now = Instant::now();
            let mut retry = Vec::new();
            for (job, r) in jobs.drain(..).zip(results) {
                match r {
                    Ok(()) => finish(job, true, &counters),
                    Err(e) => {
                        if job.sender.as_ref().is_some_and(|(_, d)| *d <= now) {
                            tracing::warn!(error = %e, topic = job.topic, "chat message not published in time");
                            finish(job, false, &counters);
                        } else {
                            retry.push(job);
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            tracing::warn!(pending = retry.len(), "bus publish failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            jobs = retry;
        }
    }
}

fn finish(job: Job, ok: bool, counters: &Counters) {
    let Some((s, _)) = job.sender else { return };
    if ok {
        Counters::add(&counters.chat_published, 1);
    } else {
        Counters::add(&counters.publish_failed, 1);
    }
    s.conn.enqueue(Arc::new(chat_reply(s.user, &s.msg_id, ok)));
}

/// The answer to a chat message: `data:"true"` with its `msgId` once it is on the bus, or the
/// error `unavailable`.
pub(crate) fn chat_reply(user: i64, msg_id: &str, ok: bool) -> Outgoing {
    let body = ImMsgBody {
        app_id: Some(APP_ID),
        user_id: Some(user),
        biz_code: Some(BIZ_CHAT),
        data: Some(if ok { "true" } else { "false" }.into()),
        msg_id: Some(msg_id.to_string()),
        error: (!ok).then(|| err::UNAVAILABLE.to_string()),
        ..Default::default()
    }
    .to_json();
    Outgoing {
        ws: protocol::encode(Wire::Ws, code::BIZ, &body),
        tcp: protocol::encode(Wire::Tcp, code::BIZ, &body),
        msgs: Vec::new(),
    }
}
