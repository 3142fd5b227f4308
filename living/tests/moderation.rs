//! The moderation service against SQLite + the memory cache and MariaDB + Redis (when
//! `LIVEHOUSE_TEST_MYSQL_URL` and `LIVEHOUSE_TEST_REDIS_URL` are set; CI requires them), with the
//! memory bus: each action changes SQL, writes its audit row, puts a newer rule set in the
//! cache, announces it on the bus and tells the room; bad input changes nothing.

use livehouse_core::bus::{Bus, MemoryBus, Subscription, TOPIC_CHAT, TOPIC_MODERATION};
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::events::{keys, ChatEvent, ModerationEvent, ModerationKind};
use livehouse_core::testenv;
use livehouse_living::moderation::{sync, Actor, ModerationService, Role, RoomRef};
use livehouse_living::notify::{Notifier, OperatorEvent};
use livehouse_living::{LivingError, LivingService, StartRoom};
use livehouse_moderation::frames::{BIZ_NOTICE, BIZ_RECALL};
use livehouse_moderation::store;
use parking_lot::Mutex;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Recorder(Mutex<Vec<OperatorEvent>>);

impl Notifier for Recorder {
    fn notify(&self, event: OperatorEvent) {
        self.0.lock().push(event);
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.lock().iter().map(|e| e.kind).collect()
    }
}

struct Env {
    db: DatabaseConnection,
    cache: Arc<dyn Cache>,
    bus: Arc<MemoryBus>,
    mods: ModerationService,
    events: Arc<Recorder>,
    moderation_sub: Box<dyn Subscription>,
    chat_sub: Box<dyn Subscription>,
}

async fn env(distributed: bool) -> Option<Env> {
    let (db, cache): (_, Arc<dyn Cache>) = if distributed {
        let mysql = testenv::backend("LIVEHOUSE_TEST_MYSQL_URL")?;
        let redis = testenv::backend("LIVEHOUSE_TEST_REDIS_URL")?;
        let db = testenv::fresh_database(Some(&mysql)).await;
        let cache = RedisCache::connect(&redis, &testenv::unique_prefix("mod"))
            .await
            .unwrap();
        (db, Arc::new(cache))
    } else {
        (
            testenv::fresh_database(None).await,
            Arc::new(MemoryCache::new()),
        )
    };
    livehouse_living::migrate(&db).await.unwrap();
    let events = Arc::new(Recorder::default());
    let living = LivingService::new(db.clone(), cache.clone()).with_notifier(events.clone());
    let bus = Arc::new(MemoryBus::new());
    let moderation_sub = bus.subscribe(TOPIC_MODERATION, "test").await.unwrap();
    let chat_sub = bus.subscribe(TOPIC_CHAT, "test").await.unwrap();
    let mods = ModerationService::new(living, bus.clone());
    Some(Env {
        db,
        cache,
        bus,
        mods,
        events,
        moderation_sub,
        chat_sub,
    })
}

impl Env {
    async fn start(&self, anchor: i64) -> RoomRef {
        let room = self
            .mods
            .living()
            .start(StartRoom {
                anchor_id: anchor,
                anchor_nick_name: format!("a{anchor}"),
                anchor_avatar: String::new(),
                room_type: 1,
                room_name: "moderated".into(),
                covert_img: String::new(),
                record: false,
            })
            .await
            .unwrap();
        self.mods.publish_rules(room.id, anchor).await.unwrap();
        self.mods.room(room.id).await.unwrap().unwrap()
    }

    async fn next_event(&mut self) -> ModerationEvent {
        let d = tokio::time::timeout(Duration::from_secs(5), self.moderation_sub.next())
            .await
            .expect("a moderation event")
            .unwrap();
        self.moderation_sub.commit(&d).await.unwrap();
        serde_json::from_slice(&d.payload).unwrap()
    }

    async fn next_chat(&mut self) -> ChatEvent {
        let d = tokio::time::timeout(Duration::from_secs(5), self.chat_sub.next())
            .await
            .expect("a chat-topic frame")
            .unwrap();
        self.chat_sub.commit(&d).await.unwrap();
        serde_json::from_slice(&d.payload).unwrap()
    }

    async fn cached(&self, room: i64) -> livehouse_moderation::RoomRules {
        store::read(self.cache.as_ref(), room)
            .await
            .unwrap()
            .expect("rules in the cache")
    }

    async fn log_len(&self, room: &RoomRef) -> usize {
        self.mods.log(room, 200, 0).await.unwrap().len()
    }
}

const ANCHOR: i64 = 1000;

fn anchor() -> Actor {
    Actor {
        user_id: ANCHOR,
        role: Role::Anchor,
    }
}

fn admin(id: i64) -> Actor {
    Actor {
        user_id: id,
        role: Role::Admin,
    }
}

macro_rules! suite {
    ($modname:ident, $distributed:expr) => {
        mod $modname {
            use super::*;

            #[tokio::test]
            async fn each_action_is_stored_audited_cached_and_announced() {
                let Some(mut e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                assert_eq!(e.mods.role_of(&room, ANCHOR, false).await.unwrap(), Some(Role::Anchor));
                assert_eq!(e.mods.role_of(&room, 5, false).await.unwrap(), None);
                assert_eq!(e.mods.role_of(&room, 5, true).await.unwrap(), Some(Role::Operator));

                // Admins: appointed by the anchor.
                assert!(e.mods.set_admin(anchor(), &room, 20, true).await.unwrap());
                let ev = e.next_event().await;
                assert_eq!((ev.kind, ev.room_id, ev.version), (ModerationKind::RulesChanged, room.room_id, 1));
                assert_eq!(e.mods.role_of(&room, 20, false).await.unwrap(), Some(Role::Admin));

                // A mute until the room closes, by the admin.
                let until = e.mods.mute(admin(20), &room, 30, 0, Some("Troll".into())).await.unwrap();
                assert_eq!(until, 0);
                let ev = e.next_event().await;
                assert_eq!((ev.kind, ev.user_id, ev.version), (ModerationKind::RulesChanged, 30, 2));
                let notice = e.next_chat().await;
                assert_eq!((notice.biz_code, notice.sender_id, notice.room_id), (BIZ_NOTICE, 0, room.room_id));
                let data: serde_json::Value = serde_json::from_str(&notice.data).unwrap();
                assert_eq!(data["kind"], "user_muted");
                assert_eq!(data["nickName"], "Troll");
                // A timed mute.
                let until = e.mods.mute(anchor(), &room, 31, 600, None).await.unwrap();
                assert!(until > livehouse_core::time::now_ms() + 590_000);
                e.next_event().await;
                e.next_chat().await;

                // Slow mode, words, a ban.
                assert!(e.mods.slow_mode(anchor(), &room, 15).await.unwrap());
                assert!(!e.mods.slow_mode(anchor(), &room, 15).await.unwrap(), "unchanged");
                e.next_event().await;
                let notice: serde_json::Value = serde_json::from_str(&e.next_chat().await.data).unwrap();
                assert_eq!((notice["kind"].as_str(), notice["seconds"].as_u64()), (Some("slow_mode_on"), Some(15)));
                let w = e.mods.words(anchor(), &room, vec!["Spam".into(), "ＳＰＡＭ".into(), "广告".into()], vec![]).await.unwrap();
                assert_eq!((w.added, w.total), (2, 2), "full-width SPAM is the same word");
                e.next_event().await;
                assert!(e.mods.ban(anchor(), &room, 40, Some("Spammer".into())).await.unwrap());
                assert!(!e.mods.ban(anchor(), &room, 40, None).await.unwrap(), "already banned");
                let ev = e.next_event().await;
                assert_eq!((ev.kind, ev.user_id), (ModerationKind::UserBanned, 40));
                let notice: serde_json::Value = serde_json::from_str(&e.next_chat().await.data).unwrap();
                assert_eq!(notice["kind"], "user_banned");

                // The cache holds exactly what SQL holds, at the newest version.
                let state = e.mods.state(&room).await.unwrap();
                let cached = e.cached(room.room_id).await;
                assert_eq!(cached.version, state.version);
                assert_eq!(state.version, ev.version);
                assert_eq!(cached.slow_mode_secs, 15);
                assert_eq!(cached.banned, vec![40]);
                assert_eq!(cached.admins, vec![20]);
                assert_eq!(cached.words, vec!["Spam".to_string(), "广告".to_string()]);
                assert_eq!(cached.muted.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![30, 31]);

                // Recall: a 5556 frame on the chat topic, no rule change.
                e.mods.recall(admin(20), &room, vec!["abc1".into(), "abc2".into(), "abc1".into()]).await.unwrap();
                let recall = e.next_chat().await;
                assert_eq!(recall.biz_code, BIZ_RECALL);
                let data: serde_json::Value = serde_json::from_str(&recall.data).unwrap();
                assert_eq!(data, serde_json::json!({"roomId": room.room_id, "msgIds": ["abc1", "abc2"]}));

                // Undo.
                assert!(e.mods.unmute(anchor(), &room, 30).await.unwrap());
                assert!(!e.mods.unmute(anchor(), &room, 30).await.unwrap());
                assert!(e.mods.unban(anchor(), &room, 40).await.unwrap());
                let w = e.mods.words(anchor(), &room, vec![], vec!["spam".into()]).await.unwrap();
                assert_eq!((w.removed, w.total), (1, 1));
                let cached = e.cached(room.room_id).await;
                assert!(cached.banned.is_empty() && cached.words == vec!["广告".to_string()]);

                // The audit log, newest first, with who, what, whom.
                let log = e.mods.log(&room, 200, 0).await.unwrap();
                let actions: Vec<&str> = log.iter().map(|l| l.action.as_str()).collect();
                assert_eq!(actions, ["words", "unban", "unmute", "delete", "ban", "words", "slow_mode", "mute", "mute", "admins"]);
                assert_eq!((log[8].actor_id, log[8].actor_role.as_str(), log[8].target_id), (20, "admin", 30));
                assert_eq!((log[7].actor_id, log[7].actor_role.as_str(), log[7].target_id), (ANCHOR, "anchor", 31));
                assert_eq!(log[3].details["msgIds"], serde_json::json!(["abc1", "abc2"]));
                let page = e.mods.log(&room, 2, log[1].id).await.unwrap();
                assert_eq!(page.iter().map(|l| l.id).collect::<Vec<_>>(), vec![log[2].id, log[3].id]);

                assert_eq!(e.events.kinds(), ["room_started", "user_banned", "message_deleted"]);
            }

            #[tokio::test]
            async fn bad_input_is_refused_and_changes_nothing() {
                let Some(e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                e.mods.set_admin(anchor(), &room, 20, true).await.unwrap();
                e.mods.set_admin(anchor(), &room, 21, true).await.unwrap();
                let before = e.mods.state(&room).await.unwrap();
                let log_before = e.log_len(&room).await;
                let invalid = |r: Result<_, LivingError>, needle: &str| match r {
                    Err(LivingError::Invalid(m)) => assert!(m.contains(needle), "`{m}` should mention `{needle}`"),
                    Err(other) => panic!("expected Invalid({needle}), got {other:?}"),
                    Ok(_) => panic!("expected Invalid({needle}), got Ok"),
                };
                invalid(e.mods.mute(anchor(), &room, 30, -1, None).await.map(|_| ()), "seconds must be");
                invalid(e.mods.mute(anchor(), &room, 30, 31 * 24 * 3600, None).await.map(|_| ()), "seconds must be");
                invalid(e.mods.mute(admin(20), &room, ANCHOR, 60, None).await.map(|_| ()), "anchor");
                invalid(e.mods.ban(admin(20), &room, ANCHOR, None).await.map(|_| ()), "anchor");
                invalid(e.mods.ban(admin(20), &room, 21, None).await.map(|_| ()), "another room admin");
                invalid(e.mods.ban(admin(20), &room, 20, None).await.map(|_| ()), "yourself");
                invalid(e.mods.set_admin(admin(20), &room, 50, true).await.map(|_| ()), "only the room's anchor");
                invalid(e.mods.set_admin(Actor { user_id: 9, role: Role::Operator }, &room, 50, true).await.map(|_| ()), "only the room's anchor");
                invalid(e.mods.slow_mode(anchor(), &room, 301).await.map(|_| ()), "seconds must be");
                invalid(e.mods.slow_mode(anchor(), &room, -5).await.map(|_| ()), "seconds must be");
                invalid(e.mods.words(anchor(), &room, vec!["x".repeat(51)], vec![]).await.map(|_| ()), "at most 50");
                invalid(e.mods.words(anchor(), &room, vec!["ok".into(), "  ".into()], vec![]).await.map(|_| ()), "empty");
                invalid(e.mods.words(anchor(), &room, vec!["a".into()], vec!["A".into()]).await.map(|_| ()), "both added and removed");
                invalid(e.mods.recall(anchor(), &room, vec![]).await, "msgIds");
                invalid(e.mods.recall(anchor(), &room, vec!["<script>".into()]).await, "not a message id");
                // 1,000 words fit; one more does not, and the refused request adds none.
                let many: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
                let w = e.mods.words(anchor(), &room, many, vec![]).await.unwrap();
                assert_eq!(w.total, 1000);
                invalid(e.mods.words(anchor(), &room, vec!["one-more".into(), "w1".into()], vec![]).await.map(|_| ()), "at most 1000");
                assert_eq!(e.mods.state(&room).await.unwrap().words.len(), 1000);
                let after = e.mods.state(&room).await.unwrap();
                assert_eq!(after.version, before.version + 1, "only the accepted words request bumped the version");
                assert_eq!(e.log_len(&room).await, log_before + 1);
                assert!(after.muted.is_empty() && after.banned.is_empty());
                assert_eq!(after.slow_mode_secs, 0);
            }

            #[tokio::test]
            async fn closing_ends_room_scoped_rules_and_channel_rules_carry_over() {
                let Some(e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                e.mods.mute(anchor(), &room, 30, 0, None).await.unwrap();
                e.mods.mute(anchor(), &room, 31, 3600, None).await.unwrap();
                e.mods.slow_mode(anchor(), &room, 30).await.unwrap();
                e.mods.ban(anchor(), &room, 40, None).await.unwrap();
                e.mods.words(anchor(), &room, vec!["spam".into()], vec![]).await.unwrap();
                e.mods.set_admin(anchor(), &room, 20, true).await.unwrap();
                // An operator closes it.
                let op = Actor { user_id: 9, role: Role::Operator };
                e.mods.close_room(op, room.room_id).await.unwrap();
                assert!(e.mods.living().get(room.room_id).await.unwrap().is_none());
                let cached = e.cached(room.room_id).await;
                assert!(cached.closed && cached.banned.is_empty(), "the closed room has no rules");
                assert!(matches!(e.mods.mute(anchor(), &e.mods.room(room.room_id).await.unwrap().unwrap(), 30, 0, None).await, Err(LivingError::Invalid(_))), "not live");
                // The next room: bans, timed mutes, words and admins are there; slow mode and
                // the until-close mute are not.
                let next = e.start(ANCHOR).await;
                assert_ne!(next.room_id, room.room_id);
                let rules = e.cached(next.room_id).await;
                assert_eq!(rules.banned, vec![40]);
                assert_eq!(rules.muted.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![31]);
                assert_eq!(rules.slow_mode_secs, 0);
                assert_eq!((rules.words.clone(), rules.admins.clone()), (vec!["spam".to_string()], vec![20]));
                // Unban through the old room's id: applies to the anchor's live room.
                let old = e.mods.room(room.room_id).await.unwrap().unwrap();
                assert!(!old.live);
                assert!(e.mods.unban(anchor(), &old, 40).await.unwrap());
                assert!(e.cached(next.room_id).await.banned.is_empty());
                let log = e.mods.log(&next, 50, 0).await.unwrap();
                assert!(log.iter().any(|l| l.action == "close_room" && l.actor_role == "operator"));
                // An admin may not close the room; the anchor may.
                assert!(matches!(e.mods.close_room(admin(20), next.room_id).await, Err(LivingError::Forbidden)));
                e.mods.close_room(anchor(), next.room_id).await.unwrap();
                let kinds = e.events.kinds();
                assert_eq!(kinds.iter().filter(|k| **k == "room_closed").count(), 2, "{kinds:?}");
            }

            #[tokio::test]
            async fn racing_instances_leave_the_newest_rules_in_the_cache() {
                let Some(e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                // A second "api instance" on the same database, cache and bus.
                let other = ModerationService::new(LivingService::new(e.db.clone(), e.cache.clone()), e.bus.clone());
                let mut tasks = Vec::new();
                for i in 0..12i64 {
                    let svc = if i % 2 == 0 { e.mods.clone() } else { other.clone() };
                    tasks.push(tokio::spawn(async move {
                        svc.mute(anchor(), &room, 100 + i, 600, None).await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let state = e.mods.state(&room).await.unwrap();
                assert_eq!(state.version, 12);
                assert_eq!(state.muted.len(), 12);
                let cached = e.cached(room.room_id).await;
                assert_eq!((cached.version, cached.muted.len()), (12, 12), "the cache ends at the newest version");
            }

            #[tokio::test]
            async fn the_sync_job_repairs_a_lost_cache_entry() {
                let Some(e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                e.mods.ban(anchor(), &room, 40, None).await.unwrap();
                e.cache.del(&keys::moderation_rules(room.room_id)).await.unwrap();
                assert_eq!(sync::tick(&e.mods, "me").await, Some(1));
                assert_eq!(e.cached(room.room_id).await.banned, vec![40]);
                e.cache.del(sync::LOCK_KEY).await.unwrap();
                assert_eq!(sync::tick(&e.mods, "me").await, Some(0), "nothing left to repair");
                assert_eq!(sync::tick(&e.mods, "peer").await, None, "one instance at a time");
            }

            #[tokio::test]
            async fn streaming_changes_are_announced_once() {
                let Some(e) = env($distributed).await else { return };
                let room = e.start(ANCHOR).await;
                let living = e.mods.living();
                living.set_streaming(room.room_id, true).await.unwrap();
                living.set_streaming(room.room_id, true).await.unwrap();
                living.set_streaming(room.room_id, false).await.unwrap();
                living.set_streaming(room.room_id, true).await.unwrap();
                e.mods.close_room(anchor(), room.room_id).await.unwrap();
                living.set_streaming(room.room_id, false).await.unwrap();
                assert_eq!(
                    e.events.kinds(),
                    ["room_started", "stream_started", "stream_stopped", "stream_started", "stream_stopped", "room_closed"]
                );
                let ev = &e.events.0.lock()[1];
                assert_eq!(ev.data["roomId"], room.room_id);
            }
        }
    };
}

suite!(embedded, false);
suite!(mariadb_redis, true);
