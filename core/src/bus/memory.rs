//! In-process bus: the embedded twin of Kafka for one-process deployments and tests.
//!
//! Each topic has a fixed number of partitions; a message goes to the partition chosen by a
//! stable hash of its key, so messages with the same key keep their order. Every consumer group
//! of a topic gets every message published after the group was first joined (no history is kept
//! before that); within a group, partitions are shared out among the live members
//! (`partition % members`). A message stays in its group's partition buffer from publish until a
//! member commits it (or a later offset of the same partition): when a member leaves (its
//! [`Subscription`] is dropped), its partitions go to the remaining members, which receive again
//! everything not yet committed — at-least-once, like a Kafka rebalance.
//!
//! **Bound**: at most `capacity` (default [`DEFAULT_CAPACITY`]) uncommitted messages per group and
//! partition. While a group with live members has a full partition buffer, `publish` to that
//! partition waits until a commit frees room (back-pressure). A durable group with no live member
//! keeps only the newest `capacity` messages per partition (the oldest are dropped, like a
//! retention limit), so a stopped consumer never blocks publishers. A *tail* group
//! ([`Bus::subscribe_tail`]) is forgotten when its last member leaves.
//!
//! Must not: hold its lock across an `.await`, interpret payloads, or grow without bound.

use super::{Bus, BusError, Delivery, Subscription};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;

/// Default number of partitions of each topic.
pub const DEFAULT_PARTITIONS: usize = 8;
/// Default bound of uncommitted messages per group and partition.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The embedded bus. Cheap to clone; clones share the same topics.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    partitions: usize,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    next_member: u64,
}

struct Topic {
    groups: HashMap<String, Group>,
    /// Woken (all waiters) whenever a commit or a leave may have freed buffer room.
    space: Arc<Notify>,
}

struct Group {
    tail: bool,
    partitions: Vec<Partition>,
    /// Live members in join order, with the notifier each one waits on.
    members: Vec<(u64, Arc<Notify>)>,
}

#[derive(Default)]
struct Partition {
    /// Offset the next published message gets.
    next_offset: i64,
    /// Everything below is committed.
    committed: i64,
    /// Next offset to hand to the owner.
    delivered: i64,
    /// Messages from `committed` to `next_offset - 1`.
    log: VecDeque<(String, Bytes)>,
    owner: Option<u64>,
}

impl Group {
    fn new(partitions: usize, tail: bool) -> Self {
        Group {
            tail,
            partitions: (0..partitions).map(|_| Partition::default()).collect(),
            members: Vec::new(),
        }
    }

    /// Shares the partitions out among the members; a partition that changes owner restarts
    /// from its committed offset (uncommitted messages are delivered again).
    fn rebalance(&mut self) {
        let n = self.members.len();
        for (i, p) in self.partitions.iter_mut().enumerate() {
            let owner = (n > 0).then(|| self.members[i % n].0);
            if p.owner != owner {
                p.owner = owner;
                p.delivered = p.committed;
            }
        }
        for (_, notify) in &self.members {
            notify.notify_one();
        }
    }

    fn notify_owner(&self, partition: usize) {
        if let Some(owner) = self.partitions[partition].owner {
            if let Some((_, n)) = self.members.iter().find(|(id, _)| *id == owner) {
                n.notify_one();
            }
        }
    }
}

impl Partition {
    fn commit_to(&mut self, next: i64) -> bool {
        if next <= self.committed {
            return false;
        }
        let next = next.min(self.next_offset);
        while self.committed < next {
            self.log.pop_front();
            self.committed += 1;
        }
        self.delivered = self.delivered.max(self.committed);
        true
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus with [`DEFAULT_PARTITIONS`] partitions per topic and [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_PARTITIONS, DEFAULT_CAPACITY)
    }

    /// A bus with `partitions` per topic and at most `capacity` uncommitted messages per group
    /// and partition (both at least 1).
    pub fn with_limits(partitions: usize, capacity: usize) -> Self {
        MemoryBus {
            inner: Arc::new(Inner {
                partitions: partitions.max(1),
                capacity: capacity.max(1),
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn join(&self, topic: &str, group: &str, tail: bool) -> MemorySubscription {
        let notify = Arc::new(Notify::new());
        let mut st = self.inner.state.lock();
        st.next_member += 1;
        let id = st.next_member;
        let parts = self.inner.partitions;
        let t = st.topics.entry(topic.to_string()).or_insert_with(|| Topic {
            groups: HashMap::new(),
            space: Arc::new(Notify::new()),
        });
        let g = t
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(parts, tail));
        g.members.push((id, notify.clone()));
        g.rebalance();
        MemorySubscription {
            inner: self.inner.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
            id,
            notify,
            cursor: 0,
        }
    }
}

/// Stable FNV-1a hash of the key, so a key always maps to the same partition.
fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions as u64) as usize
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, topic: &str, key: &str, payload: Bytes) -> Result<(), BusError> {
        let p = partition_of(key, self.inner.partitions);
        let cap = self.inner.capacity;
        loop {
            let wait = {
                let mut st = self.inner.state.lock();
                let Some(t) = st.topics.get_mut(topic) else {
                    return Ok(()); // no group yet: nobody to deliver to
                };
                let full = t
                    .groups
                    .values()
                    .any(|g| !g.members.is_empty() && g.partitions[p].log.len() >= cap);
                if full {
                    // Registered now (before the lock is released), so a commit in between
                    // still wakes us.
                    let space = t.space.clone();
                    Some(space)
                } else {
                    for g in t.groups.values_mut() {
                        let part = &mut g.partitions[p];
                        if part.log.len() >= cap {
                            // Member-less durable group: drop the oldest.
                            let next = part.committed + 1;
                            part.commit_to(next);
                        }
                        part.log.push_back((key.to_string(), payload.clone()));
                        part.next_offset += 1;
                        g.notify_owner(p);
                    }
                    None
                }
            };
            match wait {
                None => return Ok(()),
                Some(space) => {
                    let notified = space.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    // Re-check after registering: a commit may have landed between the unlock
                    // and `enable`.
                    if self.has_room(topic, p) {
                        continue;
                    }
                    notified.await;
                }
            }
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.join(topic, group, false)))
    }

    async fn subscribe_tail(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.join(topic, group, true)))
    }
}

impl MemoryBus {
    fn has_room(&self, topic: &str, p: usize) -> bool {
        let st = self.inner.state.lock();
        st.topics.get(topic).is_none_or(|t| {
            t.groups
                .values()
                .all(|g| g.members.is_empty() || g.partitions[p].log.len() < self.inner.capacity)
        })
    }
}

/// One member of a group on the [`MemoryBus`]. Dropping it leaves the group.
struct MemorySubscription {
    inner: Arc<Inner>,
    topic: String,
    group: String,
    id: u64,
    notify: Arc<Notify>,
    /// Round-robin start among partitions, so one busy partition cannot starve the others.
    cursor: usize,
}

impl MemorySubscription {
    fn try_next(&mut self) -> Option<Delivery> {
        let mut st = self.inner.state.lock();
        let g = st
            .topics
            .get_mut(&self.topic)?
            .groups
            .get_mut(&self.group)?;
        let n = g.partitions.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let p = &mut g.partitions[i];
            if p.owner == Some(self.id) && p.delivered < p.next_offset {
                let (key, payload) = p.log[(p.delivered - p.committed) as usize].clone();
                let d = Delivery {
                    topic: self.topic.clone(),
                    key,
                    payload,
                    partition: i as i32,
                    offset: p.delivered,
                };
                p.delivered += 1;
                self.cursor = (i + 1) % n;
                return Some(d);
            }
        }
        None
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            if let Some(d) = self.try_next() {
                return Ok(d);
            }
            // `notify_one` stores a permit, so a publish between `try_next` and here is not lost.
            self.notify.notified().await;
        }
    }

    async fn commit(&mut self, d: &Delivery) -> Result<(), BusError> {
        let space = {
            let mut st = self.inner.state.lock();
            let Some(t) = st.topics.get_mut(&self.topic) else {
                return Ok(());
            };
            let Some(g) = t.groups.get_mut(&self.group) else {
                return Ok(());
            };
            let Some(p) = g.partitions.get_mut(d.partition as usize) else {
                return Err(BusError::Backend(format!("no partition {}", d.partition)));
            };
            p.commit_to(d.offset + 1).then(|| t.space.clone())
        };
        if let Some(space) = space {
            space.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let space = {
            let mut st = self.inner.state.lock();
            let Some(t) = st.topics.get_mut(&self.topic) else {
                return;
            };
            if let Some(g) = t.groups.get_mut(&self.group) {
                g.members.retain(|(id, _)| *id != self.id);
                if g.members.is_empty() && g.tail {
                    t.groups.remove(&self.group);
                } else {
                    g.rebalance();
                }
            }
            t.space.clone()
        };
        // A group may have lost its last member: it no longer applies back-pressure.
        space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn partition_is_stable_and_in_range() {
        for k in ["a", "room:1", "", "42"] {
            let p = partition_of(k, 8);
            assert!(p < 8);
            assert_eq!(p, partition_of(k, 8));
        }
    }

    // Paused clock: the sleep below ends only once every task is idle, i.e. once the third
    // publish has gone as far as it can. No wall-clock guess.
    #[tokio::test(start_paused = true)]
    async fn publish_waits_while_a_live_group_is_full() {
        let bus = MemoryBus::with_limits(1, 2);
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        bus.publish("t", "k", Bytes::from_static(b"1"))
            .await
            .unwrap();
        bus.publish("t", "k", Bytes::from_static(b"2"))
            .await
            .unwrap();
        let b2 = bus.clone();
        let third =
            tokio::spawn(async move { b2.publish("t", "k", Bytes::from_static(b"3")).await });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!third.is_finished(), "publish must wait for room");
        let d = sub.next().await.unwrap();
        sub.commit(&d).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), third)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn member_less_group_keeps_newest_only() {
        let bus = MemoryBus::with_limits(1, 2);
        drop(bus.subscribe("t", "g").await.unwrap());
        for i in 0..5u8 {
            tokio::time::timeout(
                Duration::from_secs(1),
                bus.publish("t", "k", Bytes::from(vec![i])),
            )
            .await
            .expect("no back-pressure without members")
            .unwrap();
        }
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        assert_eq!(sub.next().await.unwrap().payload.as_ref(), &[3]);
        assert_eq!(sub.next().await.unwrap().payload.as_ref(), &[4]);
    }

    #[tokio::test]
    async fn tail_group_is_forgotten_when_empty() {
        let bus = MemoryBus::with_limits(1, 1);
        drop(bus.subscribe_tail("t", "tail").await.unwrap());
        bus.publish("t", "k", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut sub = bus.subscribe_tail("t", "tail").await.unwrap();
        bus.publish("t", "k", Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert_eq!(sub.next().await.unwrap().payload.as_ref(), b"y");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_when_a_member_leaves_under_load() {
        use std::collections::HashSet;
        let bus = MemoryBus::with_limits(4, 16);
        let mut a = bus.subscribe("t", "g").await.unwrap();
        let b = bus.subscribe("t", "g").await.unwrap();
        let total = 500u32;
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..total {
                    let key = format!("k{}", i % 10);
                    bus.publish("t", &key, Bytes::from(i.to_be_bytes().to_vec()))
                        .await
                        .unwrap();
                }
            })
        };
        let handled = Arc::new(Mutex::new(HashSet::new()));
        // b handles everything it gets, until all messages were handled by someone.
        let b_task = {
            let handled = handled.clone();
            tokio::spawn(async move {
                let mut b = b;
                loop {
                    let d = b.next().await.unwrap();
                    let i = u32::from_be_bytes(d.payload.as_ref().try_into().unwrap());
                    handled.lock().insert(i);
                    b.commit(&d).await.unwrap();
                }
            })
        };
        // a handles 50, reads 5 more without committing them, and leaves.
        for n in 0..55 {
            let d = tokio::time::timeout(Duration::from_secs(5), a.next())
                .await
                .unwrap()
                .unwrap();
            if n < 50 {
                let i = u32::from_be_bytes(d.payload.as_ref().try_into().unwrap());
                handled.lock().insert(i);
                a.commit(&d).await.unwrap();
            }
        }
        drop(a);
        tokio::time::timeout(Duration::from_secs(10), publisher)
            .await
            .unwrap()
            .unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while handled.lock().len() < total as usize {
            assert!(
                std::time::Instant::now() < end,
                "only {} handled",
                handled.lock().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b_task.abort();
    }
}
