//! The moderation routes over a real socket, on SQLite + the memory cache and on MariaDB + Redis
//! (when `LIVEHOUSE_TEST_MYSQL_URL` / `LIVEHOUSE_TEST_REDIS_URL` are set; CI requires them):
//! who may act, every action reaching SQL, the audit log, the cache and the bus, bad input
//! refused with a 400 that changes nothing, operators closing rooms and suspending accounts.

use livehouse_api::accounts::{self, suspension::Suspensions};
use livehouse_api::{ApiConfig, ApiState};
use livehouse_core::auth::JwtKeys;
use livehouse_core::bus::{Bus, MemoryBus, Subscription, TOPIC_CHAT, TOPIC_MODERATION};
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::events::{keys, ChatEvent, ModerationEvent, ModerationKind};
use livehouse_core::testenv;
use livehouse_living::{LivingService, ModerationService};
use livehouse_moderation::store;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

struct Server {
    base: String,
    http: reqwest::Client,
    db: sea_orm::DatabaseConnection,
    cache: Arc<dyn Cache>,
    moderation: Box<dyn Subscription>,
    chat: Box<dyn Subscription>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server_on(distributed: bool) -> Option<Server> {
    let (db, cache): (_, Arc<dyn Cache>) = if distributed {
        let mysql = testenv::backend("LIVEHOUSE_TEST_MYSQL_URL")?;
        let redis = testenv::backend("LIVEHOUSE_TEST_REDIS_URL")?;
        let db = testenv::fresh_database(Some(&mysql)).await;
        let cache = RedisCache::connect(&redis, &testenv::unique_prefix("apimod"))
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
    livehouse_api::migrate(&db).await.unwrap();
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let moderation = bus.subscribe(TOPIC_MODERATION, "test").await.unwrap();
    let chat = bus.subscribe(TOPIC_CHAT, "test").await.unwrap();
    let living = LivingService::new(db.clone(), cache.clone());
    let state = ApiState {
        db: db.clone(),
        cache: cache.clone(),
        presence: Arc::new(livehouse_core::presence::MemoryPresence::default()),
        chatlog: Arc::new(livehouse_core::chatlog::MemoryChatLog::default()),
        chooser: Default::default(),
        living: living.clone(),
        moderation: ModerationService::new(living, bus.clone()),
        bus,
        suspensions: Suspensions::new(),
        jwt: JwtKeys::new(b"test-secret-0123456789"),
        passwords: livehouse_api::accounts::passwords::Passwords::start(2, 64),
        config: Arc::new(ApiConfig {
            open_streaming: true,
            rtmp_port: 1935,
            public_host: None,
            play_base_url: None,
            im_heartbeat_secs: 30,
            web_dir: None,
            record_mode: "per-room".into(),
            max_bitrate_kbps: 0,
            max_body_bytes: livehouse_api::params::MAX_BODY,
            rate: Default::default(),
            secure_cookies: false,
        }),
        metrics: None,
        media: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = livehouse_api::router(state);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                rx.await.ok();
            })
            .await
            .ok();
    });
    Some(Server {
        base,
        http: reqwest::Client::new(),
        db,
        cache,
        moderation,
        chat,
        _stop: tx,
    })
}

impl Server {
    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }

    async fn user(&self, name: &str) -> (i64, String) {
        let res = self
            .http
            .post(format!("{}/user/register", self.base))
            .json(&json!({"username": name, "password": "secret12", "nickname": name}))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        (
            body["data"]["userId"].as_i64().unwrap(),
            body["data"]["token"].as_str().unwrap().to_string(),
        )
    }

    async fn room(&self, token: &str) -> i64 {
        let (s, b) = self
            .post(
                "/living/startingLiving",
                token,
                json!({"type": 1, "roomName": "modded"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"]["roomId"].as_i64().unwrap()
    }

    async fn ok(&self, path: &str, token: &str, body: Value) -> Value {
        let (s, b) = self.post(path, token, body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        b["data"].clone()
    }

    async fn state(&self, room: i64, token: &str) -> Value {
        let (s, b) = self
            .get(&format!("/living/moderation/state?roomId={room}"), token)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"].clone()
    }

    async fn role(&self, room: i64, token: &str) -> Value {
        let (code, b) = self
            .get(&format!("/living/moderation/role?roomId={room}"), token)
            .await;
        assert_eq!(code, StatusCode::OK, "{b}");
        b["data"]["role"].clone()
    }

    async fn log_len(&self, room: i64, token: &str) -> usize {
        let (s, b) = self
            .get(
                &format!("/living/moderation/log?roomId={room}&limit=200"),
                token,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"]["list"].as_array().unwrap().len()
    }

    async fn next_event(&mut self) -> ModerationEvent {
        let d = tokio::time::timeout(Duration::from_secs(5), self.moderation.next())
            .await
            .expect("a moderation event")
            .unwrap();
        self.moderation.commit(&d).await.unwrap();
        serde_json::from_slice(&d.payload).unwrap()
    }

    async fn next_chat(&mut self) -> ChatEvent {
        let d = tokio::time::timeout(Duration::from_secs(5), self.chat.next())
            .await
            .expect("a frame on the chat topic")
            .unwrap();
        self.chat.commit(&d).await.unwrap();
        serde_json::from_slice(&d.payload).unwrap()
    }

    async fn operator(&self, user_id: i64) {
        accounts::set_tag(&self.db, user_id, accounts::TAG_ADMIN, true)
            .await
            .unwrap();
    }
}

fn assert_error(got: (StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(
        got.1["code"].as_u64(),
        Some(status.as_u16() as u64),
        "{}",
        got.1
    );
    let msg = got.1["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message `{msg}` should mention `{needle}`"
    );
}

macro_rules! suite {
    ($modname:ident, $distributed:expr) => {
        mod $modname {
            use super::*;

            #[tokio::test]
            async fn the_anchor_and_room_admins_moderate_and_everyone_else_gets_403() {
                let Some(mut s) = server_on($distributed).await else { return };
                let (_, anchor) = s.user("anchor").await;
                let (mod_id, moder) = s.user("moder").await;
                let (troll_id, _) = s.user("troll").await;
                let (_, stranger) = s.user("stranger").await;
                let room = s.room(&anchor).await;

                // Nobody but managers sees or changes anything.
                for (path, body) in [
                    ("/living/moderation/mute", json!({"roomId": room, "userId": troll_id, "seconds": 60})),
                    ("/living/moderation/slowMode", json!({"roomId": room, "seconds": 5})),
                    ("/living/moderation/admins", json!({"roomId": room, "userId": mod_id, "admin": true})),
                ] {
                    assert_error(s.post(path, &stranger, body).await, StatusCode::FORBIDDEN, "only the room's anchor");
                }
                assert_error(s.get(&format!("/living/moderation/state?roomId={room}"), &stranger).await, StatusCode::FORBIDDEN, "only");
                let anon = s.http.post(format!("{}/living/moderation/mute", s.base)).json(&json!({"roomId": room})).send().await.unwrap();
                assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

                assert_eq!(s.role(room, &anchor).await, json!("anchor"));
                assert_eq!(s.role(room, &stranger).await, json!(null));
                // The anchor appoints a room admin, who then moderates.
                s.ok("/living/moderation/admins", &anchor, json!({"roomId": room, "userId": mod_id, "admin": true})).await;
                assert_eq!(s.next_event().await.kind, ModerationKind::RulesChanged);
                assert_eq!(s.role(room, &moder).await, json!("admin"));
                let d = s.ok("/living/moderation/mute", &moder, json!({"roomId": room, "userId": troll_id, "seconds": 600})).await;
                assert!(d["untilMs"].as_i64().unwrap() > livehouse_core::time::now_ms());
                let ev = s.next_event().await;
                assert_eq!((ev.kind, ev.user_id), (ModerationKind::RulesChanged, troll_id));
                let notice: Value = serde_json::from_str(&s.next_chat().await.data).unwrap();
                assert_eq!((notice["kind"].as_str(), notice["nickName"].as_str()), (Some("user_muted"), Some("troll")));
                s.ok("/living/moderation/slowMode", &moder, json!({"roomId": room, "seconds": 10})).await;
                s.next_event().await;
                s.next_chat().await;
                s.ok("/living/moderation/words", &moder, json!({"roomId": room, "add": ["spam", "ＡＤ"]})).await;
                s.next_event().await;
                s.ok("/living/moderation/ban", &moder, json!({"roomId": room, "userId": troll_id})).await;
                let ev = s.next_event().await;
                assert_eq!((ev.kind, ev.user_id), (ModerationKind::UserBanned, troll_id));
                s.next_chat().await;
                s.ok("/living/moderation/delete", &moder, json!({"roomId": room, "msgIds": ["abc123"]})).await;
                let recall = s.next_chat().await;
                assert_eq!(recall.biz_code, 5556);

                // The state (with names) and the cache agree.
                let st = s.state(room, &moder).await;
                assert_eq!(st["you"], "admin");
                assert_eq!(st["slowModeSecs"], 10);
                assert_eq!(st["banned"], json!([troll_id]));
                assert_eq!(st["admins"], json!([mod_id]));
                assert_eq!(st["words"], json!(["ＡＤ", "spam"]), "oldest first, then by folded form");
                assert_eq!(st["names"][troll_id.to_string()], "troll");
                let cached = store::read(s.cache.as_ref(), room).await.unwrap().unwrap();
                assert_eq!(cached.version, st["version"].as_u64().unwrap());
                assert_eq!(cached.banned, vec![troll_id]);

                // The audit log shows who did what to whom.
                let (_, log) = s.get(&format!("/living/moderation/log?roomId={room}"), &anchor).await;
                let list = log["data"]["list"].as_array().unwrap();
                let actions: Vec<&str> = list.iter().map(|l| l["action"].as_str().unwrap()).collect();
                assert_eq!(actions, ["delete", "ban", "words", "slow_mode", "mute", "admins"]);
                assert_eq!(list[1]["actorId"], mod_id);
                assert_eq!(list[1]["actorRole"], "admin");
                assert_eq!(list[1]["targetId"], troll_id);
                assert_eq!(log["data"]["names"][mod_id.to_string()], "moder");

                // An admin cannot appoint admins; the anchor dismisses them and they lose access.
                assert_error(s.post("/living/moderation/admins", &moder, json!({"roomId": room, "userId": troll_id, "admin": true})).await, StatusCode::BAD_REQUEST, "only the room's anchor appoints");
                s.ok("/living/moderation/admins", &anchor, json!({"roomId": room, "userId": mod_id, "admin": false})).await;
                assert_error(s.get(&format!("/living/moderation/state?roomId={room}"), &moder).await, StatusCode::FORBIDDEN, "only");
                let d = s.ok("/living/moderation/unban", &anchor, json!({"roomId": room, "userId": troll_id})).await;
                assert_eq!(d["changed"], true);
                let d = s.ok("/living/moderation/unmute", &anchor, json!({"roomId": room, "userId": troll_id})).await;
                assert_eq!(d["changed"], false, "the ban lifted the mute already");
            }

            #[tokio::test]
            async fn bad_input_gets_a_clear_400_and_changes_nothing() {
                let Some(s) = server_on($distributed).await else { return };
                let (anchor_id, anchor) = s.user("anchor").await;
                let (mod_id, moder) = s.user("moder").await;
                let (mod2_id, _) = s.user("moder2").await;
                let (user_id, _) = s.user("someone").await;
                let room = s.room(&anchor).await;
                s.ok("/living/moderation/admins", &anchor, json!({"roomId": room, "userId": mod_id, "admin": true})).await;
                s.ok("/living/moderation/admins", &anchor, json!({"roomId": room, "userId": mod2_id, "admin": true})).await;
                let before = s.state(room, &anchor).await;
                let log_before = s.log_len(room, &anchor).await;
                let bad = StatusCode::BAD_REQUEST;
                let cases: Vec<(&str, &str, Value, &str)> = vec![
                    ("/living/moderation/mute", &anchor, json!({"roomId": 987654, "userId": user_id, "seconds": 60}), "there is no room"),
                    ("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": 987654, "seconds": 60}), "there is no user"),
                    ("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": user_id, "seconds": -5}), "seconds must be"),
                    ("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": user_id, "seconds": 99999999999i64}), "seconds must be"),
                    ("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": user_id, "seconds": 1e30}), "invalid parameters"),
                    ("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": user_id}), "seconds is required"),
                    ("/living/moderation/mute", &anchor, json!({"userId": user_id, "seconds": 5}), "roomId is required"),
                    ("/living/moderation/ban", &moder, json!({"roomId": room, "userId": anchor_id}), "anchor"),
                    ("/living/moderation/ban", &moder, json!({"roomId": room, "userId": mod2_id}), "another room admin"),
                    ("/living/moderation/admins", &moder, json!({"roomId": room, "userId": user_id, "admin": true}), "only the room's anchor appoints"),
                    ("/living/moderation/admins", &anchor, json!({"roomId": room, "userId": user_id}), "admin (true or false) is required"),
                    ("/living/moderation/slowMode", &anchor, json!({"roomId": room, "seconds": 301}), "seconds must be"),
                    ("/living/moderation/words", &anchor, json!({"roomId": room, "add": ["x".repeat(51)]}), "at most 50"),
                    ("/living/moderation/words", &anchor, json!({"roomId": room, "add": (0..1001).map(|i| format!("w{i}")).collect::<Vec<_>>()}), "at most 1000"),
                    ("/living/moderation/words", &anchor, json!({"roomId": room, "add": "notalist"}), "invalid parameters"),
                    ("/living/moderation/delete", &anchor, json!({"roomId": room, "msgIds": []}), "msgIds"),
                    ("/living/moderation/delete", &anchor, json!({"roomId": room, "msgIds": ["a b"]}), "not a message id"),
                    ("/living/moderation/delete", &anchor, json!({"roomId": room, "msgIds": (0..101).map(|i| format!("m{i}")).collect::<Vec<_>>()}), "msgIds"),
                ];
                for (path, token, body, needle) in cases {
                    assert_error(s.post(path, token, body.clone()).await, bad, needle);
                }
                assert_error(s.get("/living/moderation/state?roomId=-1", &anchor).await, bad, "positive");
                assert_error(s.get(&format!("/living/moderation/log?roomId={room}&limit=0"), &anchor).await, bad, "limit");
                assert_eq!(s.state(room, &anchor).await, before, "nothing changed");
                assert_eq!(s.log_len(room, &anchor).await, log_before);
            }

            #[tokio::test]
            async fn operators_moderate_any_room_close_it_and_suspend_accounts() {
                let Some(mut s) = server_on($distributed).await else { return };
                let (_, anchor) = s.user("anchor").await;
                let (op_id, op) = s.user("oper").await;
                let (bad_id, bad) = s.user("baduser").await;
                let room = s.room(&anchor).await;
                assert_error(s.post("/living/moderation/closeRoom", &op, json!({"roomId": room})).await, StatusCode::FORBIDDEN, "only");
                assert_error(s.post("/living/moderation/suspend", &op, json!({"userId": bad_id, "suspended": true})).await, StatusCode::FORBIDDEN, "only operators");
                s.operator(op_id).await;
                let st = s.state(room, &op).await;
                assert_eq!(st["you"], "operator");
                s.ok("/living/moderation/ban", &op, json!({"roomId": room, "userId": bad_id})).await;
                assert_eq!(s.next_event().await.kind, ModerationKind::UserBanned);
                assert_error(s.post("/living/moderation/admins", &op, json!({"roomId": room, "userId": bad_id, "admin": true})).await, StatusCode::BAD_REQUEST, "only the room's anchor appoints");

                // Suspension: the session stops working at once, sign-in and IM tokens are
                // refused, gateways hear of it.
                let (code, _) = s.get("/im/online?userId=1", &bad).await;
                assert_eq!(code, StatusCode::OK);
                s.ok("/living/moderation/suspend", &op, json!({"userId": bad_id, "suspended": true, "reason": "spam"})).await;
                let ev = loop {
                    let ev = s.next_event().await;
                    if ev.kind == ModerationKind::UserSuspended { break ev; }
                };
                assert_eq!((ev.user_id, ev.key()), (bad_id, format!("user:{bad_id}")));
                assert!(s.cache.set_members(keys::SUSPENDED_USERS).await.unwrap().contains(&bad_id.to_string()));
                assert_error(s.post("/im/getImConfig", &bad, json!({})).await, StatusCode::FORBIDDEN, "suspended");
                assert_error(s.post("/living/startingLiving", &bad, json!({"type": 1, "roomName": "x"})).await, StatusCode::FORBIDDEN, "suspended");
                let login = s.http.post(format!("{}/user/login", s.base)).json(&json!({"username": "baduser", "password": "secret12"})).send().await.unwrap();
                assert_eq!(login.status(), StatusCode::FORBIDDEN);
                let (_, page) = s.post("/home/initPage", &bad, json!({})).await;
                assert_eq!(page["data"]["loginStatus"], false);
                s.ok("/living/moderation/suspend", &op, json!({"userId": bad_id, "suspended": false})).await;
                let login = s.http.post(format!("{}/user/login", s.base)).json(&json!({"username": "baduser", "password": "secret12"})).send().await.unwrap();
                assert_eq!(login.status(), StatusCode::OK);
                assert_error(s.post("/living/moderation/suspend", &op, json!({"userId": op_id, "suspended": true})).await, StatusCode::BAD_REQUEST, "themselves");

                // Closing any room at once: it moves to the records.
                let d = s.ok("/living/moderation/closeRoom", &op, json!({"roomId": room})).await;
                assert_eq!(d["roomId"], room);
                let (_, cfg) = s.post("/living/anchorConfig", &anchor, json!({"roomId": room})).await;
                assert_eq!(cfg["data"]["roomId"], -1);
                assert_error(s.post("/living/moderation/closeRoom", &op, json!({"roomId": room})).await, StatusCode::BAD_REQUEST, "not live");
                let (_, log) = s.get(&format!("/living/moderation/log?roomId={room}"), &op).await;
                assert_eq!(log["data"]["list"][0]["action"], "close_room");
                assert!(store::read(s.cache.as_ref(), room).await.unwrap().unwrap().closed);
            }

            #[tokio::test]
            async fn the_anchor_closing_ends_room_rules_and_bans_follow_to_the_next_room() {
                let Some(s) = server_on($distributed).await else { return };
                let (_, anchor) = s.user("anchor").await;
                let (u1, _) = s.user("user1").await;
                let (u2, _) = s.user("user2").await;
                let room = s.room(&anchor).await;
                s.ok("/living/moderation/mute", &anchor, json!({"roomId": room, "userId": u1, "seconds": 0})).await;
                s.ok("/living/moderation/ban", &anchor, json!({"roomId": room, "userId": u2})).await;
                s.ok("/living/moderation/slowMode", &anchor, json!({"roomId": room, "seconds": 30})).await;
                s.ok("/living/closeLiving", &anchor, json!({"roomId": room})).await;
                let next = s.room(&anchor).await;
                let rules = store::read(s.cache.as_ref(), next).await.unwrap().expect("the new room's rules are in the cache at start");
                assert_eq!(rules.banned, vec![u2]);
                assert!(rules.muted.is_empty() && rules.slow_mode_secs == 0);
                let st = s.state(next, &anchor).await;
                assert_eq!(st["banned"], json!([u2]));
            }
        }
    };
}

suite!(embedded, false);
suite!(mariadb_redis, true);

#[tokio::test]
async fn the_openapi_document_lists_the_moderation_routes() {
    let doc: Value = serde_json::from_str(livehouse_api::OPENAPI).unwrap();
    for p in [
        "mute",
        "unmute",
        "ban",
        "unban",
        "delete",
        "slowMode",
        "words",
        "admins",
        "state",
        "log",
        "closeRoom",
        "suspend",
    ] {
        let path = format!("/living/moderation/{p}");
        assert!(
            doc["paths"].get(&path).is_some(),
            "{path} is not documented"
        );
    }
}
