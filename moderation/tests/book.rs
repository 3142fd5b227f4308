//! RuleBook and the cache encoding against the real backends: the memory cache + memory bus, and
//! Redis + Kafka (when `LIVEHOUSE_TEST_REDIS_URL` / `LIVEHOUSE_TEST_KAFKA_BROKERS` are set; CI
//! requires them). A writer here plays the api: it writes a rule set, then announces it.

use bytes::Bytes;
use livehouse_core::bus::{Bus, KafkaBus, MemoryBus, TOPIC_MODERATION};
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::events::{keys, ModerationEvent, ModerationKind};
use livehouse_core::testenv;
use livehouse_moderation::rules::{Mute, RoomRules};
use livehouse_moderation::{store, Admission, Enforcement, Refusal, RuleBook, WordFilter};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

const ROOM: i64 = 42;
const ANCHOR: i64 = 7;

fn rules(version: u64, banned: &[i64], words: &[&str]) -> RoomRules {
    RoomRules {
        room_id: ROOM,
        anchor_id: ANCHOR,
        version,
        banned: banned.to_vec(),
        words: words.iter().map(|w| w.to_string()).collect(),
        ..RoomRules::default()
    }
}

async fn announce(bus: &dyn Bus, kind: ModerationKind, user_id: i64, version: u64) {
    let ev = ModerationEvent {
        kind,
        room_id: if kind == ModerationKind::UserSuspended {
            0
        } else {
            ROOM
        },
        user_id,
        version,
        at_ms: livehouse_core::time::now_ms(),
    };
    bus.publish(
        TOPIC_MODERATION,
        &ev.key(),
        Bytes::from(serde_json::to_vec(&ev).unwrap()),
    )
    .await
    .unwrap();
}

async fn racing_writers_leave_the_newest_version(cache: &dyn Cache) {
    let writes = [3u64, 9, 1, 8, 2].map(|v| async move {
        store::write(cache, &rules(v, &[v as i64], &[]))
            .await
            .unwrap()
    });
    futures_join(writes).await;
    let got = store::read(cache, ROOM).await.unwrap().unwrap();
    assert_eq!((got.version, got.banned.clone()), (9, vec![9]));
    assert!(!store::write(cache, &rules(9, &[], &[])).await.unwrap());
    // A closed room's empty rule set replaces the rules and blocks older writers.
    assert!(store::write(cache, &RoomRules::closed(ROOM, ANCHOR, 10))
        .await
        .unwrap());
    assert!(!store::write(cache, &rules(9, &[1], &[])).await.unwrap());
    assert!(store::read(cache, ROOM).await.unwrap().unwrap().closed);
    // Garbage in the cache reads as no rules, never a panic.
    cache
        .set(&keys::moderation_rules(ROOM + 1), "5:{not json", None)
        .await
        .unwrap();
    assert_eq!(store::read(cache, ROOM + 1).await.unwrap(), None);
    cache.del(&keys::moderation_rules(ROOM)).await.unwrap();
}

async fn futures_join<F: std::future::Future<Output = bool>>(fs: [F; 5]) {
    let [a, b, c, d, e] = fs;
    let _ = tokio::join!(a, b, c, d, e);
}

/// The whole flow: load at login, a ban pushed on the bus reaches the book within a second and
/// asks to close the user's sessions, a change that was never announced is picked up by the
/// periodic refresh, a suspension closes everywhere.
async fn follows_changes(cache: Arc<dyn Cache>, bus: Arc<dyn Bus>, group: &str) {
    racing_writers_leave_the_newest_version(cache.as_ref()).await;
    let book = RuleBook::new(cache.clone(), WordFilter::new(&["deploymentword"]));
    store::write(cache.as_ref(), &rules(1, &[], &["spam"]))
        .await
        .unwrap();
    assert_eq!(book.admit(ROOM, 5).await.unwrap(), Admission::Allowed);
    assert_eq!(book.version(ROOM), Some(1), "admit loads the room");
    assert_eq!(
        book.check(ROOM, 5, "ＳＰＡＭ", 0).refusal,
        Some(Refusal::BlockedWord)
    );

    let seen: Arc<Mutex<Vec<Enforcement>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let (book, bus, seen, group) = (book.clone(), bus.clone(), seen.clone(), group.to_string());
        tokio::spawn(async move {
            book.follow(
                bus,
                &group,
                Duration::from_millis(300),
                move |e| seen.lock().push(e),
                async {
                    stop_rx.await.ok();
                },
            )
            .await
        })
    };
    // Kafka: the tail group joins at the end of the log; wait until it is consuming by
    // announcing until one announcement comes through.
    testenv::poll_until("the follower to consume", Duration::from_secs(30), || {
        let (bus, seen) = (bus.clone(), seen.clone());
        async move {
            announce(bus.as_ref(), ModerationKind::RoomClosed, 0, 0).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            !seen.lock().is_empty()
        }
    })
    .await;
    seen.lock().clear();

    // A ban: rules first, then the event.
    store::write(cache.as_ref(), &rules(2, &[5], &["spam"]))
        .await
        .unwrap();
    announce(bus.as_ref(), ModerationKind::UserBanned, 5, 2).await;
    let took = testenv::poll_until("the ban to reach the book", Duration::from_secs(1), || {
        let (book, seen) = (book.clone(), seen.clone());
        async move {
            book.is_banned(ROOM, 5)
                && seen.lock().contains(&Enforcement::CloseUserInRoom {
                    room_id: ROOM,
                    user_id: 5,
                })
        }
    })
    .await;
    eprintln!("ban applied after {took:?}");
    assert_eq!(book.check(ROOM, 5, "hi", 0).refusal, Some(Refusal::Banned));
    assert_eq!(book.admit(ROOM, 5).await.unwrap(), Admission::Banned);

    // A mute written but never announced (a lost event): the refresh finds it.
    let mut r3 = rules(3, &[5], &["spam"]);
    r3.muted.push(Mute {
        user_id: 6,
        until_ms: 0,
    });
    store::write(cache.as_ref(), &r3).await.unwrap();
    testenv::poll_until(
        "the refresh to find the mute",
        Duration::from_secs(3),
        || {
            let book = book.clone();
            async move { book.version(ROOM) == Some(3) }
        },
    )
    .await;
    assert_eq!(
        book.check(ROOM, 6, "hi", 0).refusal,
        Some(Refusal::Muted { until_ms: 0 })
    );

    // An event older than the local copy changes nothing (no reload to an older state).
    store::write(cache.as_ref(), &rules(4, &[], &[]))
        .await
        .unwrap();
    announce(bus.as_ref(), ModerationKind::RulesChanged, 0, 3).await;
    // Suspension: the api adds the user to the set and announces it.
    cache
        .set_add(keys::SUSPENDED_USERS, &["8".to_string()])
        .await
        .unwrap();
    announce(bus.as_ref(), ModerationKind::UserSuspended, 8, 0).await;
    testenv::poll_until("the suspension to arrive", Duration::from_secs(1), || {
        let seen = seen.clone();
        async move { seen.lock().contains(&Enforcement::CloseUser { user_id: 8 }) }
    })
    .await;
    assert_eq!(book.admit(ROOM, 8).await.unwrap(), Admission::Suspended);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn memory_cache_and_bus() {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    follows_changes(cache, Arc::new(MemoryBus::new()), "moderation-gw1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_kafka() {
    let Some(redis) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    let Some(brokers) = testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
        return;
    };
    let cache: Arc<dyn Cache> = Arc::new(
        RedisCache::connect(&redis, &testenv::unique_prefix("moderation"))
            .await
            .unwrap(),
    );
    let ns = format!("lhtest-{}", livehouse_core::ids::random_hex(6));
    let bus = KafkaBus::connect(&brokers, "moderation-test")
        .await
        .unwrap()
        .with_namespace(&ns);
    follows_changes(cache, Arc::new(bus), "moderation-gw1").await;
}

/// Redis alone (the cache half of the distributed setup), with the memory bus: runs even where
/// no Kafka broker is up yet.
#[tokio::test]
async fn redis_with_memory_bus() {
    let Some(redis) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    let cache: Arc<dyn Cache> = Arc::new(
        RedisCache::connect(&redis, &testenv::unique_prefix("moderation"))
            .await
            .unwrap(),
    );
    follows_changes(cache, Arc::new(MemoryBus::new()), "moderation-gw1").await;
}
