//! The gateway's counters ([`GatewayStats`] is their snapshot) and the histogram of delivery
//! lags. Plain atomics, written from any task, read by `/metrics` and the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start (monotonic, but for the gauges `connections` and `sessions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Open connections now.
    pub connections: u64,
    /// Logged-in connections now.
    pub sessions: u64,
    /// Message deliveries queued on connections (first sends, recoveries included).
    pub delivered: u64,
    /// Retries sent after an ACK timeout.
    pub retried: u64,
    /// Messages dropped unacknowledged (after the retry, or pending list full).
    pub unacked_dropped: u64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_kicked: u64,
    /// Connections closed for silence.
    pub idle_closed: u64,
    /// Connections closed for not logging in within the login deadline.
    pub login_timed_out: u64,
    /// Chat messages accepted and handed to the bus.
    pub chat_published: u64,
    /// Chat messages refused because the bus queue was full or the bus did not take them in time.
    pub publish_failed: u64,
    /// Presence or control events dropped because the publish queue was full.
    pub events_dropped: u64,
    /// Logins that asked to recover, and those answered `recovered: true`.
    pub recover_asked: u64,
    pub recovered: u64,
    /// Messages fetched from the chat log because no push brought them (repairs).
    pub repaired: u64,
    /// Messages a room on this gateway never got: trimmed from the log before a repair.
    pub lost: u64,
    /// Time from a message's acceptance to the write of its frame to a connection, ms (median
    /// and 99th percentile over deliveries since start or [`crate::Gateway::reset_write_lag`]).
    pub write_lag_p50_ms: u64,
    pub write_lag_p99_ms: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub unacked_dropped: AtomicU64,
    pub slow_kicked: AtomicU64,
    pub idle_closed: AtomicU64,
    pub login_timed_out: AtomicU64,
    pub chat_published: AtomicU64,
    pub publish_failed: AtomicU64,
    pub events_dropped: AtomicU64,
    pub recover_asked: AtomicU64,
    pub recovered: AtomicU64,
    pub repaired: AtomicU64,
    pub lost: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Histogram of delivery lags, 1 ms buckets up to [`LAG_BUCKETS`] ms (the last holds the rest).
pub(crate) struct LagHistogram {
    buckets: Box<[AtomicU64]>,
}

const LAG_BUCKETS: usize = 10_000;

impl LagHistogram {
    pub fn new() -> Self {
        LagHistogram {
            buckets: (0..LAG_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, ms: u64) {
        self.buckets[(ms as usize).min(LAG_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil() as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return i as u64;
            }
        }
        LAG_BUCKETS as u64
    }

    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }
}
