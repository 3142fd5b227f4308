//! `msg` over the memory bus (and Kafka when configured), the memory chat log and presence
//! store, with a recording [`GatewayDelivery`] (the boundary of this crate) that can fail or
//! stall per gateway.

use super::*;
use async_trait::async_trait;
use bytes::Bytes;
use livehouse_core::bus::MemoryBus;
use livehouse_core::chatlog::{
    Appended, LogConfig, LogError, LogResult, MemoryChatLog, Position, Slice,
};
use livehouse_core::events::GatewayInfo;
use livehouse_core::presence::{MemoryPresence, Presence};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

const ROOM: i64 = 42;
/// Longest wait for a delivery (a Kafka group join takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(30);

/// Records pushes; a gateway may refuse its first N pushes, or stall.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<(String, RoomBatch)>>,
    refuse: Mutex<HashMap<String, usize>>,
    stall: Mutex<Vec<String>>,
}

#[async_trait]
impl GatewayDelivery for Recorder {
    async fn deliver(&self, gateway: &GatewayInfo, batches: &[RoomBatch]) -> anyhow::Result<()> {
        if self.stall.lock().contains(&gateway.id) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if let Some(n) = self.refuse.lock().get_mut(&gateway.id) {
            if *n > 0 {
                *n -= 1;
                anyhow::bail!("refused");
            }
        }
        let mut got = self.got.lock();
        got.extend(batches.iter().map(|b| (gateway.id.clone(), b.clone())));
        Ok(())
    }
}

impl Recorder {
    /// (offset, msg id) of every entry `gateway` received, in order.
    fn entries(&self, gateway: &str) -> Vec<(u64, String)> {
        self.got
            .lock()
            .iter()
            .filter(|(g, _)| g == gateway)
            .flat_map(|(_, b)| b.entries.iter().map(|e| (e.offset, e.msg.msg_id.clone())))
            .collect()
    }
}

/// A chat log that fails while `down` is set.
struct Flaky {
    inner: MemoryChatLog,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> LogResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LogError::Backend("down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl ChatLog for Flaky {
    fn config(&self) -> &LogConfig {
        self.inner.config()
    }
    async fn append(&self, room: i64, e: NewEntry) -> LogResult<Appended> {
        self.check()?;
        self.inner.append(room, e).await
    }
    async fn read_after(&self, room: i64, after: u64, limit: usize, now: i64) -> LogResult<Slice> {
        self.check()?;
        self.inner.read_after(room, after, limit, now).await
    }
    async fn history(
        &self,
        room: i64,
        kind: i32,
        before: Option<u64>,
        limit: usize,
        now: i64,
    ) -> LogResult<Slice> {
        self.check()?;
        self.inner.history(room, kind, before, limit, now).await
    }
    async fn top(&self, room: i64, now: i64) -> LogResult<Position> {
        self.check()?;
        self.inner.top(room, now).await
    }
    async fn tops(&self, rooms: &[i64]) -> LogResult<Vec<Option<Position>>> {
        self.check()?;
        self.inner.tops(rooms).await
    }
    async fn remove(&self, room: i64, ids: &[String]) -> LogResult<Vec<u64>> {
        self.check()?;
        self.inner.remove(room, ids).await
    }
    async fn trim(&self, room: i64, now: i64) -> LogResult<usize> {
        self.check()?;
        self.inner.trim(room, now).await
    }
}

struct Fixture {
    bus: Arc<dyn Bus>,
    log: Arc<Flaky>,
    presence: Arc<MemoryPresence>,
    rec: Arc<Recorder>,
    pusher: Pusher,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    beats: tokio::task::JoinHandle<()>,
}

fn gw(id: &str) -> GatewayInfo {
    GatewayInfo {
        id: id.into(),
        push_url: format!("http://{id}"),
        ..GatewayInfo::default()
    }
}

/// Gateways a and b serve the room, c is live elsewhere; they beat every 200 ms. Then `msg`
/// starts.
async fn start(rec: Recorder) -> Fixture {
    start_on(Arc::new(MemoryBus::new()), rec).await
}

async fn start_on(bus: Arc<dyn Bus>, rec: Recorder) -> Fixture {
    let presence = Arc::new(MemoryPresence::default());
    let p = presence.clone();
    let beats = tokio::spawn(async move {
        let mut first = true;
        loop {
            for (id, rooms) in [
                ("a", vec![(ROOM, 2)]),
                ("b", vec![(ROOM, 1)]),
                ("c", vec![(7, 1)]),
            ] {
                let counts = if first { rooms } else { vec![] };
                p.beat(&gw(id), &counts, now_ms()).await.unwrap();
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let log = Arc::new(Flaky {
        inner: MemoryChatLog::default(),
        down: AtomicBool::new(false),
    });
    let rec = Arc::new(rec);
    let ports = MsgPorts {
        bus: bus.clone(),
        log: log.clone(),
        presence: presence.clone(),
    };
    let msg = Msg::subscribe(MsgConfig::default(), ports, rec.clone())
        .await
        .unwrap();
    let pusher = msg.pusher();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(msg.run(async move {
        let _ = rx.await;
    }));
    Fixture {
        bus,
        log,
        presence,
        rec,
        pusher,
        stop: Some(tx),
        task,
        beats,
    }
}

impl Fixture {
    async fn send(&self, ev: ChatEvent) {
        let payload = Bytes::from(serde_json::to_vec(&ev).unwrap());
        self.bus
            .publish(TOPIC_CHAT, &ev.room_id.to_string(), payload)
            .await
            .unwrap();
    }

    async fn chat(&self, msg_id: &str) {
        self.send(chat(msg_id, now_ms())).await
    }

    async fn online(&self, gateway: &str) {
        let ev = PresenceEvent {
            user_id: 9,
            room_id: ROOM,
            gateway_id: gateway.into(),
            at_ms: now_ms(),
        };
        self.bus
            .publish(
                TOPIC_ONLINE,
                &ROOM.to_string(),
                Bytes::from(serde_json::to_vec(&ev).unwrap()),
            )
            .await
            .unwrap();
    }

    /// Waits (bounded) until `gateway` received `n` entries; returns them.
    async fn wait_for(&self, gateway: &str, n: usize) -> Vec<(u64, String)> {
        let end = Instant::now() + DEADLINE;
        loop {
            let got = self.rec.entries(gateway);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < end,
                "{gateway} got {got:?}, wanted {n} entries within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        self.beats.abort();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn chat(msg_id: &str, sent_at_ms: i64) -> ChatEvent {
    ChatEvent {
        msg_id: msg_id.into(),
        app_id: 10001,
        room_id: ROOM,
        sender_id: 5,
        biz_code: 5555,
        data: r#"{"roomId":42,"content":"hi"}"#.into(),
        sent_at_ms,
        origin_gateway: "a".into(),
        origin_conn: 3,
    }
}

fn ids(v: &[(u64, String)]) -> Vec<(u64, &str)> {
    v.iter().map(|(o, m)| (*o, m.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_get_offsets_and_reach_each_gateway_of_the_room() {
    let f = start(Recorder::default()).await;
    for m in ["m1", "m2", "m3"] {
        f.chat(m).await;
    }
    for g in ["a", "b"] {
        assert_eq!(
            ids(&f.wait_for(g, 3).await),
            [(1, "m1"), (2, "m2"), (3, "m3")],
            "gateway {g}"
        );
    }
    assert!(f.rec.entries("c").is_empty(), "c serves another room");
    assert_eq!(f.pusher.queued("c"), 0);
    let epochs: Vec<String> = f
        .rec
        .got
        .lock()
        .iter()
        .map(|(_, b)| b.epoch.clone())
        .collect();
    let top = f.log.inner.top(ROOM, now_ms()).await.unwrap();
    assert!(!epochs.is_empty(), "batches were pushed");
    assert!(
        epochs.iter().all(|e| *e == top.epoch),
        "batches carry the log's epoch"
    );
    assert_eq!(top.offset, 3);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_keeps_its_place_and_is_pushed_once() {
    let f = start(Recorder::default()).await;
    f.chat("dup").await;
    f.chat("dup").await;
    f.chat("after").await;
    assert_eq!(ids(&f.wait_for("a", 2).await), [(1, "dup"), (2, "after")]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_event_adds_a_gateway_at_once() {
    let f = start(Recorder::default()).await;
    f.chat("m1").await;
    f.wait_for("a", 1).await;
    f.presence.beat(&gw("d"), &[], now_ms()).await.unwrap();
    f.online("d").await;
    // Keep talking until d gets one (its online event and the directory refresh race the chat).
    let end = Instant::now() + DEADLINE;
    let mut i = 0;
    while f.rec.entries("d").is_empty() {
        assert!(Instant::now() < end, "d never got a message");
        i += 1;
        f.chat(&format!("x{i}")).await;
        f.presence.beat(&gw("d"), &[], now_ms()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gateway_gets_every_message_in_order_and_the_others_are_not_held_up() {
    let rec = Recorder::default();
    rec.refuse.lock().insert("b".into(), 3);
    let f = start(rec).await;
    for i in 1..=5 {
        f.chat(&format!("m{i}")).await;
    }
    let want: Vec<(u64, String)> = (1..=5).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(f.wait_for("a", 5).await, want);
    assert_eq!(
        f.wait_for("b", 5).await,
        want,
        "retried until taken, in order, once"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_delays_only_its_own_viewers() {
    let rec = Recorder::default();
    rec.stall.lock().push("b".into());
    let f = start(rec).await;
    for i in 1..=20 {
        f.chat(&format!("m{i}")).await;
    }
    assert_eq!(f.wait_for("a", 20).await.len(), 20);
    assert!(f.rec.entries("b").is_empty());
    assert!(f.pusher.queued("b") > 0, "b's messages wait in b's queue");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_leaves_the_log_and_is_pushed_in_the_stream() {
    let f = start(Recorder::default()).await;
    f.chat("keep").await;
    f.chat("bad").await;
    let mut recall = chat("r1", now_ms());
    recall.biz_code = BIZ_RECALL;
    recall.data = r#"{"roomId":42,"msgIds":["bad"]}"#.into();
    f.send(recall).await;
    assert_eq!(
        ids(&f.wait_for("a", 3).await),
        [(1, "keep"), (2, "bad"), (3, "r1")]
    );
    let s = f.log.inner.read_after(ROOM, 0, 10, now_ms()).await.unwrap();
    let left: Vec<&str> = s.entries.iter().map(|e| e.msg_id.as_str()).collect();
    assert_eq!(left, ["keep", "r1"], "the recalled message left the log");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_messages_are_dropped() {
    let f = start(Recorder::default()).await;
    f.send(chat("old", now_ms() - 3_600_000)).await;
    f.chat("new").await;
    assert_eq!(ids(&f.wait_for("a", 1).await), [(1, "new")]);
    f.stop().await;
}

/// While the chat log is down, messages are held (in order, uncommitted), not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_while_the_log_is_down() {
    let f = start(Recorder::default()).await;
    f.chat("m1").await;
    f.wait_for("a", 1).await;
    f.log.down.store(true, Ordering::SeqCst);
    f.chat("m2").await;
    f.chat("m3").await;
    // Nothing can go out without its offset; prove msg is busy retrying, not gone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(f.rec.entries("a").len(), 1);
    assert!(!f.task.is_finished(), "msg keeps running");
    f.log.down.store(false, Ordering::SeqCst);
    assert_eq!(
        ids(&f.wait_for("a", 3).await),
        [(1, "m1"), (2, "m2"), (3, "m3")]
    );
    f.stop().await;
}

/// The same path on Kafka (`LIVEHOUSE_TEST_KAFKA_BROKERS`), in a namespace unique to the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_on_kafka() {
    let Some(brokers) = livehouse_core::testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
        return;
    };
    let bus = livehouse_core::bus::KafkaBus::connect(&brokers, "msg-test")
        .await
        .unwrap()
        .with_namespace(&format!("lhtest-{}", livehouse_core::ids::random_hex(6)));
    let rec = Recorder::default();
    rec.refuse.lock().insert("b".into(), 2);
    let f = start_on(Arc::new(bus), rec).await;
    for i in 1..=3 {
        f.chat(&format!("k{i}")).await;
    }
    let want: Vec<(u64, String)> = (1..=3).map(|i| (i, format!("k{i}"))).collect();
    assert_eq!(f.wait_for("a", 3).await, want);
    assert_eq!(f.wait_for("b", 3).await, want);
    f.stop().await;
}
