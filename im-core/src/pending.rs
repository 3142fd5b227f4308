//! A connection's deliveries waiting for their ACK (design §3: ACK + one retry).
//!
//! Each delivered message waits `ack_timeout`; without an ACK it is sent once more and waits
//! again, then it is dropped. At most `max` wait at once (the oldest is dropped unretried).
//! Owned by the connection's task; the sweeper only reads [`Pending::due`] through the
//! connection's handle.
//!
//! Must not: do I/O.

use crate::conns::Prepared;
use std::collections::VecDeque;
use std::sync::Arc;

struct Waiting {
    msg: Arc<Prepared>,
    due: u64,
    retried: bool,
}

/// The waiting deliveries of one connection, oldest first.
pub(crate) struct Pending {
    list: VecDeque<Waiting>,
    max: usize,
}

/// What a deadline check found.
#[derive(Default)]
pub(crate) struct Expired {
    /// Messages to send once more.
    pub retry: Vec<Arc<Prepared>>,
    /// Messages given up (second timeout).
    pub dropped: u64,
}

impl Pending {
    pub fn new(max: usize) -> Self {
        Pending {
            list: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Starts waiting for `msg`'s ACK until `due`; returns how many older ones were dropped to
    /// keep the bound.
    pub fn track(&mut self, msg: Arc<Prepared>, due: u64) -> u64 {
        let mut dropped = 0;
        while self.list.len() >= self.max {
            self.list.pop_front();
            dropped += 1;
        }
        self.list.push_back(Waiting {
            msg,
            due,
            retried: false,
        });
        dropped
    }

    /// Clears the delivery of `msg_id`; false when none waits.
    pub fn ack(&mut self, msg_id: &str) -> bool {
        let Some(i) = self.list.iter().position(|w| &*w.msg.msg_id == msg_id) else {
            return false;
        };
        self.list.remove(i);
        if self.list.is_empty() && self.list.capacity() > 64 {
            self.list = VecDeque::new();
        }
        true
    }

    /// The earliest deadline (0: none).
    pub fn due(&self) -> u64 {
        self.list.front().map_or(0, |w| w.due)
    }

    /// Takes the deliveries due at `now`: first timeouts come back for a retry (and wait until
    /// `retry_due`), second ones are dropped.
    pub fn expire(&mut self, now: u64, retry_due: u64) -> Expired {
        let mut out = Expired::default();
        while self.list.front().is_some_and(|w| w.due <= now) {
            let mut w = self.list.pop_front().expect("checked");
            if w.retried {
                out.dropped += 1;
                continue;
            }
            out.retry.push(w.msg.clone());
            w.retried = true;
            w.due = retry_due;
            self.list.push_back(w);
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(id: &str) -> Arc<Prepared> {
        Arc::new(Prepared {
            msg_id: id.into(),
            offset: 1,
            sent_at_ms: 0,
            origin: 0,
            recalls: Box::default(),
            ws: Bytes::new(),
            tcp: Bytes::new(),
        })
    }

    #[test]
    fn one_retry_then_dropped_and_acks_clear() {
        let mut p = Pending::new(10);
        p.track(msg("a"), 100);
        p.track(msg("b"), 100);
        p.track(msg("c"), 150);
        assert!(p.ack("b"));
        assert!(!p.ack("b"), "an ACK clears once");
        assert_eq!(p.due(), 100);
        let e = p.expire(120, 220);
        assert_eq!(
            e.retry.iter().map(|m| &*m.msg_id).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(e.dropped, 0);
        assert_eq!(p.due(), 150);
        let e = p.expire(300, 400);
        assert_eq!(
            e.retry.iter().map(|m| &*m.msg_id).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(e.dropped, 1, "a's second timeout drops it");
        assert!(p.ack("c"), "a retried message can still be acknowledged");
        assert_eq!((p.len(), p.due()), (0, 0));
    }

    #[test]
    fn the_bound_drops_the_oldest() {
        let mut p = Pending::new(2);
        assert_eq!(p.track(msg("a"), 1), 0);
        assert_eq!(p.track(msg("b"), 1), 0);
        assert_eq!(p.track(msg("c"), 1), 1);
        assert!(!p.ack("a"));
        assert!(p.ack("b") && p.ack("c"));
    }
}
