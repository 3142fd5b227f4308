//! Fan-out tests on the memory bus and cache, with a recording [`GatewayDelivery`] (the boundary
//! of this crate) and a cache that counts round trips.

use super::*;
use async_trait::async_trait;
use bytes::Bytes;
use livehouse_core::bus::MemoryBus;
use livehouse_core::cache::{CacheResult, MemoryCache};
use std::sync::atomic::{AtomicUsize, Ordering};

const ROOM: i64 = 42;
/// Longest wait for one message (a Kafka group join takes a few seconds).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<(String, PushBatch)>>,
}

#[async_trait]
impl GatewayDelivery for Recorder {
    async fn deliver(&self, gateway_id: &str, batch: PushBatch) -> anyhow::Result<()> {
        self.batches.lock().push((gateway_id.to_string(), batch));
        Ok(())
    }
}

impl Recorder {
    /// (gateway, receivers) of the batches of `msg_id`, sorted by gateway.
    fn of(&self, msg_id: &str) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<_> = self
            .batches
            .lock()
            .iter()
            .filter(|(_, b)| b.msg.msg_id == msg_id)
            .map(|(g, b)| (g.clone(), b.receivers.clone()))
            .collect();
        v.sort();
        v
    }
}

/// A memory cache that counts calls, to check the steady-state cost per message.
struct Counting {
    inner: MemoryCache,
    calls: AtomicUsize,
}

impl Counting {
    fn hit(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Cache for Counting {
    async fn get(&self, key: &str) -> CacheResult<Option<String>> {
        self.hit();
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> CacheResult<Vec<Option<String>>> {
        self.hit();
        self.inner.get_many(keys).await
    }
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> CacheResult<()> {
        self.inner.set(key, value, ttl).await
    }
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> CacheResult<bool> {
        self.inner.set_nx(key, value, ttl).await
    }
    async fn del(&self, key: &str) -> CacheResult<bool> {
        self.inner.del(key).await
    }
    async fn del_if_eq(&self, key: &str, value: &str) -> CacheResult<bool> {
        self.inner.del_if_eq(key, value).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        self.inner.expire(key, ttl).await
    }
    async fn incr_by(&self, key: &str, delta: i64) -> CacheResult<i64> {
        self.inner.incr_by(key, delta).await
    }
    async fn list_replace(&self, key: &str, items: &[String]) -> CacheResult<()> {
        self.inner.list_replace(key, items).await
    }
    async fn list_range(&self, key: &str, start: usize, stop: usize) -> CacheResult<Vec<String>> {
        self.hit();
        self.inner.list_range(key, start, stop).await
    }
    async fn list_len(&self, key: &str) -> CacheResult<usize> {
        self.hit();
        self.inner.list_len(key).await
    }
    async fn set_add(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        self.inner.set_add(key, members).await
    }
    async fn set_remove(&self, key: &str, members: &[String]) -> CacheResult<usize> {
        self.inner.set_remove(key, members).await
    }
    async fn set_members(&self, key: &str) -> CacheResult<Vec<String>> {
        self.hit();
        self.inner.set_members(key).await
    }
    async fn set_card(&self, key: &str) -> CacheResult<usize> {
        self.hit();
        self.inner.set_card(key).await
    }
    async fn zadd(&self, key: &str, member: &str, score: f64) -> CacheResult<()> {
        self.inner.zadd(key, member, score).await
    }
    async fn zscore(&self, key: &str, member: &str) -> CacheResult<Option<f64>> {
        self.hit();
        self.inner.zscore(key, member).await
    }
    async fn zrem(&self, key: &str, member: &str) -> CacheResult<bool> {
        self.inner.zrem(key, member).await
    }
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> CacheResult<usize> {
        self.inner.zrem_range_by_score(key, min, max).await
    }
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
    ) -> CacheResult<Vec<(String, f64)>> {
        self.hit();
        self.inner.zrange_by_score(key, min, max).await
    }
}

struct Fixture {
    bus: Arc<dyn Bus>,
    cache: Arc<Counting>,
    rec: Arc<Recorder>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Room members in the cache: users 1, 2 on gateway a; 3, 4 on b; 5 on c. Then `msg` starts.
async fn start(resync_every: Duration) -> Fixture {
    start_on(Arc::new(MemoryBus::new()), resync_every).await
}

async fn start_on(bus: Arc<dyn Bus>, resync_every: Duration) -> Fixture {
    let cache = Arc::new(Counting {
        inner: MemoryCache::new(),
        calls: AtomicUsize::new(0),
    });
    let members: Vec<String> = (1..=5).map(|u| u.to_string()).collect();
    cache
        .set_add(&keys::room_members(ROOM), &members)
        .await
        .unwrap();
    for (u, g) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c")] {
        cache.set(&keys::user_gateway(u), g, None).await.unwrap();
    }
    let rec = Arc::new(Recorder::default());
    let config = MsgConfig {
        resync_every,
        ..MsgConfig::default()
    };
    let msg = Msg::subscribe(config, bus.clone(), cache.clone(), rec.clone())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(msg.run(async move {
        let _ = rx.await;
    }));
    Fixture {
        bus,
        cache,
        rec,
        stop: Some(tx),
        task,
    }
}

impl Fixture {
    async fn chat(&self, msg_id: &str, sender: i64) {
        self.chat_at(msg_id, sender, livehouse_core::time::now_ms())
            .await
    }

    async fn chat_at(&self, msg_id: &str, sender: i64, sent_at_ms: i64) {
        let ev = ChatEvent {
            msg_id: msg_id.into(),
            app_id: 10001,
            room_id: ROOM,
            sender_id: sender,
            biz_code: 5555,
            data: r#"{"roomId":42,"content":"hi"}"#.into(),
            sent_at_ms,
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).unwrap());
        self.bus
            .publish(TOPIC_CHAT, &ROOM.to_string(), payload)
            .await
            .unwrap();
    }

    async fn presence(&self, topic: &str, user: i64, gateway: &str, at_ms: i64) {
        let ev = PresenceEvent {
            user_id: user,
            room_id: ROOM,
            gateway_id: gateway.into(),
            at_ms,
        };
        let payload = Bytes::from(serde_json::to_vec(&ev).unwrap());
        self.bus
            .publish(topic, &ROOM.to_string(), payload)
            .await
            .unwrap();
    }

    /// Waits (bounded) until `msg_id` was delivered, and returns its batches.
    async fn delivered(&self, msg_id: &str) -> Vec<(String, Vec<i64>)> {
        let end = Instant::now() + DELIVERY_DEADLINE;
        loop {
            let got = self.rec.of(msg_id);
            if !got.is_empty() {
                return got;
            }
            assert!(
                Instant::now() < end,
                "{msg_id} not delivered within {DELIVERY_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn batches(v: &[(&str, &[i64])]) -> Vec<(String, Vec<i64>)> {
    v.iter().map(|(g, u)| (g.to_string(), u.to_vec())).collect()
}

#[tokio::test]
async fn one_batch_per_gateway_without_the_sender() {
    let f = start(Duration::from_secs(3600)).await;
    f.chat("m1", 5).await;
    assert_eq!(
        f.delivered("m1").await,
        batches(&[("a", &[1, 2]), ("b", &[3, 4])])
    );
    f.chat("m2", 1).await;
    assert_eq!(
        f.delivered("m2").await,
        batches(&[("a", &[2]), ("b", &[3, 4]), ("c", &[5])])
    );
    f.stop().await;
}

#[tokio::test]
async fn duplicates_are_dropped_by_msg_id() {
    let f = start(Duration::from_secs(3600)).await;
    f.chat("dup", 5).await;
    f.chat("dup", 5).await;
    f.chat("after", 5).await;
    f.delivered("after").await; // handled in order: the duplicate was seen before it
    assert_eq!(f.rec.of("dup").len(), 2, "one batch per gateway, once");
    f.stop().await;
}

#[tokio::test]
async fn steady_state_makes_no_cache_round_trips() {
    let f = start(Duration::from_secs(3600)).await;
    f.chat("first", 5).await;
    f.delivered("first").await;
    let after_first = f.cache.calls.load(Ordering::SeqCst);
    assert!(
        after_first <= 2,
        "first message reads the room once: {after_first} calls"
    );
    for i in 0..20 {
        f.chat(&format!("m{i}"), 5).await;
    }
    f.delivered("m19").await;
    assert_eq!(
        f.cache.calls.load(Ordering::SeqCst),
        after_first,
        "no cache call per message"
    );
    f.stop().await;
}

#[tokio::test]
async fn presence_events_update_the_view_without_the_cache() {
    let f = start(Duration::from_secs(3600)).await;
    f.chat("load", 5).await;
    f.delivered("load").await;
    f.presence(TOPIC_ONLINE, 6, "b", 100).await;
    f.presence(TOPIC_OFFLINE, 1, "a", 100).await;
    // Presence and chat travel on different topics: wait until both events show.
    let end = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    loop {
        i += 1;
        let id = format!("probe{i}");
        f.chat(&id, 5).await;
        if f.delivered(&id).await == batches(&[("a", &[2]), ("b", &[3, 4, 6])]) {
            break;
        }
        assert!(
            Instant::now() < end,
            "presence events not applied within 5 s"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn resync_picks_up_cache_changes() {
    let f = start(Duration::from_millis(50)).await;
    f.chat("load", 5).await;
    f.delivered("load").await;
    // A member living added while this instance was not watching (no presence event seen).
    f.cache
        .inner
        .set_add(&keys::room_members(ROOM), &["7".into()])
        .await
        .unwrap();
    f.cache
        .inner
        .set(&keys::user_gateway(7), "c", None)
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    loop {
        i += 1;
        let id = format!("probe{i}");
        f.chat(&id, 5).await;
        if f.delivered(&id).await.contains(&("c".to_string(), vec![7])) {
            break;
        }
        assert!(
            Instant::now() < end,
            "resync did not pick the new member up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.stop().await;
}

#[tokio::test]
async fn stale_messages_are_dropped() {
    let f = start(Duration::from_secs(3600)).await;
    let old = livehouse_core::time::now_ms() - 3_600_000;
    f.chat_at("old", 5, old).await;
    f.chat("new", 5).await;
    f.delivered("new").await;
    assert!(
        f.rec.of("old").is_empty(),
        "an hour-old message is not pushed"
    );
    f.stop().await;
}

/// The same fan-out on Kafka (`LIVEHOUSE_TEST_KAFKA_BROKERS`), in a namespace unique to the run.
#[tokio::test]
async fn fan_out_on_kafka() {
    let Some(brokers) = livehouse_core::testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
        return;
    };
    let ns = format!("lhtest-msg-{}", livehouse_core::ids::random_hex(6));
    let bus = livehouse_core::bus::KafkaBus::connect(&brokers, "msg-test")
        .await
        .unwrap();
    let f = start_on(Arc::new(bus.with_namespace(&ns)), Duration::from_secs(3600)).await;
    f.chat("k1", 5).await;
    assert_eq!(
        f.delivered("k1").await,
        batches(&[("a", &[1, 2]), ("b", &[3, 4])])
    );
    f.chat("k1", 5).await; // a duplicate
    f.chat("k2", 1).await;
    f.delivered("k2").await;
    assert_eq!(f.rec.of("k1").len(), 2, "the duplicate is dropped");
    f.stop().await;
}
