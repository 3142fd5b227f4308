//! The living store conformance suite: the same checks against SQLite + memory cache and against
//! MariaDB + Redis (when `LIVEHOUSE_TEST_MYSQL_URL` and `LIVEHOUSE_TEST_REDIS_URL` are set; CI
//! sets `LIVEHOUSE_REQUIRE_BACKENDS=1` so they cannot be skipped there).

use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::testenv;
use livehouse_living::migration::Migrator;
use livehouse_living::{lists, LivingError, LivingService, Page, Replay, StartRoom};
use sea_orm_migration::MigratorTrait;
use std::sync::Arc;

async fn embedded() -> LivingService {
    let db = testenv::fresh_database(None).await;
    Migrator::up(&db, None).await.unwrap();
    LivingService::new(db, Arc::new(MemoryCache::new()))
}

async fn distributed() -> Option<LivingService> {
    let mysql = testenv::backend("LIVEHOUSE_TEST_MYSQL_URL")?;
    let redis = testenv::backend("LIVEHOUSE_TEST_REDIS_URL")?;
    let db = testenv::fresh_database(Some(&mysql)).await;
    Migrator::up(&db, None).await.unwrap();
    let cache: Arc<dyn Cache> = Arc::new(
        RedisCache::connect(&redis, &testenv::unique_prefix("living"))
            .await
            .unwrap(),
    );
    Some(LivingService::new(db, cache))
}

fn start(anchor: i64, room_type: i32, name: &str) -> StartRoom {
    StartRoom {
        anchor_id: anchor,
        anchor_nick_name: format!("anchor{anchor}"),
        anchor_avatar: String::new(),
        room_type,
        room_name: name.to_string(),
        covert_img: "https://example.invalid/c.png".into(),
        record: false,
    }
}

/// Every check of the suite, in one place, so both backends run exactly the same code.
macro_rules! conformance {
    ($modname:ident, $make:expr) => {
        mod $modname {
            use super::*;

            async fn svc() -> Option<LivingService> {
                $make
            }

            #[tokio::test]
            async fn start_gives_a_stream_key_and_one_room_per_anchor() {
                let Some(s) = svc().await else { return };
                let room = s.start(start(1, 1, "first")).await.unwrap();
                assert_eq!(room.stream_key.len(), 32);
                assert_eq!(room.status, 1);
                let err = s.start(start(1, 2, "second")).await.unwrap_err();
                assert!(matches!(err, LivingError::Conflict(_)), "got {err:?}");
                assert_eq!(
                    s.live_count().await.unwrap(),
                    1,
                    "the refused start wrote nothing"
                );
                let other = s.start(start(2, 1, "other")).await.unwrap();
                assert_ne!(other.stream_key, room.stream_key);
            }

            #[tokio::test]
            async fn bad_start_input_is_refused() {
                let Some(s) = svc().await else { return };
                for bad in [
                    start(1, 3, "x"),
                    start(1, 1, "   "),
                    start(1, 1, &"n".repeat(65)),
                ] {
                    assert!(matches!(s.start(bad).await, Err(LivingError::Invalid(_))));
                }
                assert_eq!(s.live_count().await.unwrap(), 0);
            }

            #[tokio::test]
            async fn close_moves_the_room_to_records_and_only_for_its_anchor() {
                let Some(s) = svc().await else { return };
                let room = s.start(start(7, 1, "closing")).await.unwrap();
                assert!(matches!(
                    s.close(8, room.id).await,
                    Err(LivingError::Forbidden)
                ));
                assert!(
                    s.get(room.id).await.unwrap().is_some(),
                    "a refused close changes nothing"
                );
                let rec = s.close(7, room.id).await.unwrap();
                assert_eq!(rec.id, room.id);
                assert!(rec.end_time >= rec.start_time);
                assert!(
                    s.get(room.id).await.unwrap().is_none(),
                    "closed room is gone, cache too"
                );
                assert!(matches!(
                    s.close(7, room.id).await,
                    Err(LivingError::NotFound)
                ));
                let (records, has_next) = s.records(7, Page::new(1, 10).unwrap()).await.unwrap();
                assert_eq!(records.len(), 1);
                assert!(!has_next);
                assert_eq!(records[0].room_name, "closing");
                // The anchor can start again once closed.
                s.start(start(7, 1, "again")).await.unwrap();
            }

            #[tokio::test]
            async fn replays_are_listed_with_their_records_updated_and_deleted() {
                let Some(s) = svc().await else { return };
                let mut input = start(9, 1, "recorded");
                input.record = true;
                let room = s.start(input).await.unwrap();
                assert!(
                    s.get(room.id).await.unwrap().unwrap().record,
                    "the choice is kept"
                );
                let plain = s.start(start(10, 1, "not recorded")).await.unwrap();
                assert!(!plain.record);
                // Saved while live (a session ended), then again with a second session.
                let first = Replay {
                    duration_ms: 5_000,
                    size_bytes: 1_000,
                };
                s.save_replay(room.id, first).await.unwrap();
                let both = Replay {
                    duration_ms: 9_000,
                    size_bytes: 2_000,
                };
                s.save_replay(room.id, both).await.unwrap();
                s.close(9, room.id).await.unwrap();
                s.close(10, plain.id).await.unwrap();
                let page = Page::new(1, 10).unwrap();
                let (records, _) = s.records(9, page).await.unwrap();
                assert_eq!(records[0].replay, Some(both));
                let (records, _) = s.records(10, page).await.unwrap();
                assert_eq!(records[0].replay, None);
                s.delete_replay(room.id).await.unwrap();
                let (records, _) = s.records(9, page).await.unwrap();
                assert_eq!(records[0].replay, None, "a deleted recording is not listed");
                s.delete_replay(room.id).await.unwrap(); // deleting twice is fine
            }

            #[tokio::test]
            async fn lookup_goes_through_the_cache_with_an_empty_marker() {
                let Some(s) = svc().await else { return };
                let room = s.start(start(3, 1, "cached")).await.unwrap();
                assert_eq!(s.get(room.id).await.unwrap().unwrap().room_name, "cached");
                let key = livehouse_living::service::room_key(room.id);
                assert!(
                    s.cache().get(&key).await.unwrap().is_some(),
                    "room is cached after a read"
                );
                // A missing id is remembered as empty...
                let missing = room.id + 1000;
                assert!(s.get(missing).await.unwrap().is_none());
                let marker = livehouse_living::service::room_key(missing);
                assert_eq!(s.cache().get(&marker).await.unwrap().as_deref(), Some("{}"));
                // ...and a state change invalidates the cached room.
                s.set_streaming(room.id, true).await.unwrap();
                assert!(s.get(room.id).await.unwrap().unwrap().streaming);
                s.set_watch_num(room.id, 42).await.unwrap();
                assert_eq!(s.get(room.id).await.unwrap().unwrap().watch_num, 42);
                assert_eq!(
                    s.by_stream_key(&room.stream_key).await.unwrap().unwrap().id,
                    room.id
                );
                assert!(s.by_stream_key("nope").await.unwrap().is_none());
            }

            #[tokio::test]
            async fn viewer_counts_follow_the_presence_store() {
                use livehouse_core::events::GatewayInfo;
                use livehouse_core::presence::{MemoryPresence, Presence};
                use livehouse_core::time::now_ms;
                let Some(s) = svc().await else { return };
                let a = s.start(start(300, 1, "a")).await.unwrap().id;
                let b = s.start(start(301, 1, "b")).await.unwrap().id;
                let p = MemoryPresence::default();
                let gw = |id: &str| GatewayInfo {
                    id: id.into(),
                    ..GatewayInfo::default()
                };
                let now = now_ms();
                p.beat(&gw("g1"), &[(a, 3)], now).await.unwrap();
                p.beat(&gw("g2"), &[(a, 2), (b, 1)], now).await.unwrap();
                assert_eq!(livehouse_living::watch::sync(&s, &p).await.unwrap(), 2);
                assert_eq!(s.get(a).await.unwrap().unwrap().watch_num, 5);
                assert_eq!(s.get(b).await.unwrap().unwrap().watch_num, 1);
                assert_eq!(
                    livehouse_living::watch::sync(&s, &p).await.unwrap(),
                    0,
                    "unchanged counts write nothing"
                );
                // g2 stops beating: its viewers no longer count once its live window passed.
                p.beat(&gw("g1"), &[], now_ms()).await.unwrap();
                p.remove_gateway("g2").await.unwrap();
                livehouse_living::watch::sync(&s, &p).await.unwrap();
                assert_eq!(s.get(a).await.unwrap().unwrap().watch_num, 3);
                assert_eq!(s.get(b).await.unwrap().unwrap().watch_num, 0);
            }

            #[tokio::test]
            async fn lists_are_rebuilt_newest_first_and_paged_from_the_cache() {
                let Some(s) = svc().await else { return };
                let mut ids = vec![];
                for anchor in 100..125 {
                    ids.push(
                        s.start(start(anchor, 1, &format!("r{anchor}")))
                            .await
                            .unwrap()
                            .id,
                    );
                }
                s.start(start(200, 2, "pk")).await.unwrap();
                let page1 = Page::new(1, 10).unwrap();
                assert!(
                    s.list(1, page1).await.unwrap().0.is_empty(),
                    "reads never touch SQL"
                );
                assert!(lists::tick(&s, None, "owner-a").await, "free lock is taken");
                assert!(
                    !lists::tick(&s, None, "owner-b").await,
                    "a held lock makes a peer skip"
                );
                let (first, more) = s.list(1, page1).await.unwrap();
                assert_eq!(first.len(), 10);
                assert!(more);
                assert_eq!(first[0].room_name, "r124", "newest first");
                let (last, more) = s.list(1, Page::new(3, 10).unwrap()).await.unwrap();
                assert_eq!(last.len(), 5);
                assert!(!more);
                let (pk, _) = s.list(2, page1).await.unwrap();
                assert_eq!(pk.len(), 1);
                assert!(s.list(3, page1).await.is_err(), "unknown type");
                s.close(124, ids[24]).await.unwrap();
                s.rebuild_lists().await.unwrap();
                let (first, _) = s.list(1, page1).await.unwrap();
                assert_eq!(first[0].room_name, "r123", "a closed room leaves the list");
                assert!(Page::new(0, 10).is_err());
                assert!(Page::new(1, 500).is_err());
                assert!(Page::new(10_001, 10).is_err(), "pages are bounded");
                assert!(Page::new(u64::MAX, 100).is_err());
            }
        }
    };
}

conformance!(sqlite_memory, Some(embedded().await));
conformance!(mysql_redis, distributed().await);
