//! The HTTP API over a real socket: accounts, rooms, lists, records and every kind of bad input,
//! on the embedded backends (SQLite + memory cache) and, when configured, on MariaDB + Redis.

use livehouse_api::{ApiConfig, ApiState};
use livehouse_core::auth::JwtKeys;
use livehouse_core::cache::{Cache, MemoryCache, RedisCache};
use livehouse_core::testenv;
use livehouse_living::LivingService;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A bound on waits for the 1 s list job, generous for a busy machine.
const LIST_DEADLINE: Duration = Duration::from_secs(20);

struct Server {
    base: String,
    http: reqwest::Client,
    presence: Arc<dyn livehouse_core::presence::Presence>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server_on(distributed: bool, open_streaming: bool) -> Option<Server> {
    let (db, cache): (_, Arc<dyn Cache>) = if distributed {
        let mysql = testenv::backend("LIVEHOUSE_TEST_MYSQL_URL")?;
        let redis = testenv::backend("LIVEHOUSE_TEST_REDIS_URL")?;
        let db = testenv::fresh_database(Some(&mysql)).await;
        let cache = RedisCache::connect(&redis, &testenv::unique_prefix("api"))
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
    let living = LivingService::new(db.clone(), cache.clone());
    let bus: Arc<dyn livehouse_core::bus::Bus> = Arc::new(livehouse_core::bus::MemoryBus::new());
    let presence: Arc<dyn livehouse_core::presence::Presence> =
        Arc::new(livehouse_core::presence::MemoryPresence::default());
    let state = ApiState {
        db,
        cache,
        presence: presence.clone(),
        chatlog: Arc::new(livehouse_core::chatlog::MemoryChatLog::default()),
        chooser: Default::default(),
        living: living.clone(),
        moderation: livehouse_living::ModerationService::new(living.clone(), bus.clone()),
        bus,
        suspensions: livehouse_api::accounts::suspension::Suspensions::new(),
        jwt: JwtKeys::new(b"test-secret-0123456789"),
        passwords: livehouse_api::accounts::passwords::Passwords::start(2, 64),
        config: Arc::new(ApiConfig {
            open_streaming,
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
    let stop = async move {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::spawn(livehouse_living::lists::run(living, None, stop));
    Some(Server {
        base,
        http: reqwest::Client::new(),
        presence,
        _stop: tx,
    })
}

impl Server {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap())
    }

    async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }

    /// Registers a user; returns (user id, token).
    async fn user(&self, name: &str) -> (i64, String) {
        let (status, body) = self
            .post(
                "/user/register",
                None,
                json!({"username": name, "password": "secret12", "nickname": name}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["data"]["userId"].as_i64().unwrap(),
            body["data"]["token"].as_str().unwrap().to_string(),
        )
    }

    async fn start(&self, token: &str, room_type: i64, name: &str) -> i64 {
        let (status, body) = self
            .post(
                "/living/startingLiving",
                Some(token),
                json!({"type": room_type, "roomName": name}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["roomId"].as_i64().unwrap()
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

macro_rules! api_suite {
    ($modname:ident, $distributed:expr) => {
        mod $modname {
            use super::*;

            #[tokio::test]
            async fn accounts_register_login_and_the_session_cookie() {
                let Some(s) = server_on($distributed, true).await else { return };
                let res = s
                    .http
                    .post(format!("{}/user/register", s.base))
                    .form(&[("username", "alice"), ("password", "secret12"), ("nickname", "Alice")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
                assert!(cookie.starts_with("livehouse_token=") && cookie.contains("HttpOnly"), "{cookie}");
                let pair = cookie.split(';').next().unwrap().to_string();
                let body: Value = res.json().await.unwrap();
                assert!(body["data"]["token"].as_str().unwrap().len() > 20);

                assert_error(
                    s.post("/user/register", None, json!({"username": "alice", "password": "other123"})).await,
                    StatusCode::CONFLICT,
                    "taken",
                );
                assert_error(
                    s.post("/user/login", None, json!({"username": "alice", "password": "wrong-pass"})).await,
                    StatusCode::UNAUTHORIZED,
                    "wrong username or password",
                );
                let (status, body) =
                    s.post("/user/login", None, json!({"username": "alice", "password": "secret12"})).await;
                assert_eq!(status, StatusCode::OK, "{body}");

                // The cookie alone authenticates.
                let page: Value = s
                    .http
                    .post(format!("{}/home/initPage", s.base))
                    .header("cookie", pair)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(page["data"]["loginStatus"], json!(true));
                assert_eq!(page["data"]["nickName"], json!("Alice"));
                assert_eq!(page["data"]["showStartLivingBtn"], json!(true));
                assert_eq!(page["data"]["livingRoomId"], json!(null));
                let (_, anon) = s.post("/home/initPage", None, json!({})).await;
                assert_eq!(anon["data"]["loginStatus"], json!(false));
            }

            #[tokio::test]
            async fn bad_account_input_is_refused_with_the_reason() {
                let Some(s) = server_on($distributed, true).await else { return };
                assert_error(s.post("/user/register", None, json!({"password": "secret12"})).await, StatusCode::BAD_REQUEST, "username is required");
                assert_error(s.post("/user/register", None, json!({"username": "bob"})).await, StatusCode::BAD_REQUEST, "password is required");
                assert_error(s.post("/user/register", None, json!({"username": "a b", "password": "secret12"})).await, StatusCode::BAD_REQUEST, "username must be");
                assert_error(s.post("/user/register", None, json!({"username": "bob", "password": "123"})).await, StatusCode::BAD_REQUEST, "password must be");
                assert_error(s.post("/user/register", None, json!({"username": 5, "password": "secret12"})).await, StatusCode::BAD_REQUEST, "invalid parameters");
                let res = s.http.post(format!("{}/user/register", s.base)).header("content-type", "application/json").body("{not json").send().await.unwrap();
                assert_eq!(res.status(), StatusCode::BAD_REQUEST);
                assert_error(s.post("/user/login", None, json!({"username": "ghost", "password": "secret12"})).await, StatusCode::UNAUTHORIZED, "wrong username or password");
            }

            #[tokio::test]
            async fn a_room_starts_shows_its_push_url_to_the_anchor_only_and_closes_into_records() {
                let Some(s) = server_on($distributed, true).await else { return };
                let (anchor_id, anchor) = s.user("anchor1").await;
                let (_, viewer) = s.user("viewer1").await;
                let room = s.start(&anchor, 1, "Evening show").await;
                let (_, page) = s.post("/home/initPage", Some(&anchor), json!({})).await;
                assert_eq!(page["data"]["livingRoomId"], json!(room), "the anchor's live room");
                assert_error(
                    s.post("/living/startingLiving", Some(&anchor), json!({"type": 2, "roomName": "twice"})).await,
                    StatusCode::CONFLICT,
                    "already have a live room",
                );

                let (_, cfg) = s.post("/living/anchorConfig", Some(&anchor), json!({"roomId": room})).await;
                assert_eq!(cfg["data"]["isAnchor"], json!(true));
                let key = cfg["data"]["streamKey"].as_str().unwrap();
                assert_eq!(cfg["data"]["pushUrl"], json!(format!("rtmp://127.0.0.1:1935/live/{key}")));
                let (_, cfg) = s.post("/living/anchorConfig", Some(&viewer), json!({"roomId": room})).await;
                assert_eq!(cfg["data"]["isAnchor"], json!(false));
                assert_eq!(cfg["data"]["anchorNickName"], json!("anchor1"));
                assert_eq!(cfg["data"]["nickName"], json!("viewer1"));
                assert!(cfg["data"].get("streamKey").is_none() && cfg["data"].get("pushUrl").is_none());
                let (_, cfg) = s.get(&format!("/living/anchorConfig?roomId={room}")).await;
                assert!(cfg["data"].get("streamKey").is_none(), "anonymous viewers never see the key");
                let (_, cfg) = s.post("/living/anchorConfig", None, json!({"roomId": room + 999})).await;
                assert_eq!(cfg["data"]["roomId"], json!(-1));

                assert_error(
                    s.post("/living/closeLiving", Some(&viewer), json!({"roomId": room})).await,
                    StatusCode::FORBIDDEN,
                    "anchor",
                );
                let (status, _) = s.post("/living/closeLiving", Some(&anchor), json!({"roomId": room})).await;
                assert_eq!(status, StatusCode::OK);
                assert_error(
                    s.post("/living/closeLiving", Some(&anchor), json!({"roomId": room})).await,
                    StatusCode::NOT_FOUND,
                    "not found",
                );
                let (_, records) = s.get(&format!("/living/records?anchorId={anchor_id}&page=1&pageSize=10")).await;
                let list = records["data"]["list"].as_array().unwrap();
                assert_eq!(list.len(), 1);
                assert_eq!(list[0]["roomName"], json!("Evening show"));
                assert!(list[0]["endTime"].as_i64().unwrap() >= list[0]["startTime"].as_i64().unwrap());
                assert_eq!(list[0]["replayUrl"], json!(null), "no recording was asked for");
                assert_eq!(list[0]["durationMs"], json!(null));
            }

            #[tokio::test]
            async fn stream_health_is_for_the_anchor_of_a_live_room_and_the_record_choice_is_kept() {
                let Some(s) = server_on($distributed, true).await else { return };
                let (_, anchor) = s.user("healthy").await;
                let (_, other) = s.user("nosy").await;
                let (_, started) = s
                    .post("/living/startingLiving", Some(&anchor), json!({"type": 1, "roomName": "rec", "record": true}))
                    .await;
                let room = started["data"]["roomId"].as_i64().unwrap();
                let (_, cfg) = s.post("/living/anchorConfig", Some(&anchor), json!({"roomId": room})).await;
                assert_eq!(cfg["data"]["record"], json!(true));
                assert_eq!(cfg["data"]["recordMode"], json!("per-room"));
                assert_eq!(cfg["data"]["hlsUrl"], json!(format!("/live/{room}.m3u8")));
                let url = |r: i64| format!("/living/streamHealth?roomId={r}");
                let get_as = |token: Option<String>, path: String| {
                    let (http, base) = (s.http.clone(), s.base.clone());
                    async move {
                        let mut req = http.get(format!("{base}{path}"));
                        if let Some(t) = token {
                            req = req.bearer_auth(t);
                        }
                        let res = req.send().await.unwrap();
                        let status = res.status();
                        (status, res.json::<Value>().await.unwrap())
                    }
                };
                assert_error(get_as(None, url(room)).await, StatusCode::UNAUTHORIZED, "sign in");
                assert_error(get_as(Some(other.clone()), url(room)).await, StatusCode::FORBIDDEN, "anchor");
                assert_error(get_as(Some(anchor.clone()), url(room + 999)).await, StatusCode::NOT_FOUND, "not live");
                assert_error(get_as(Some(anchor.clone()), "/living/streamHealth".into()).await, StatusCode::BAD_REQUEST, "roomId is required");
                // This api runs without a media server in its process: a clear 503.
                assert_error(get_as(Some(anchor.clone()), url(room)).await, StatusCode::SERVICE_UNAVAILABLE, "media");
                assert_error(
                    s.post("/living/startingLiving", Some(&other), json!({"type": 1, "roomName": "x", "record": "maybe"})).await,
                    StatusCode::BAD_REQUEST,
                    "record must be true or false",
                );
            }

            #[tokio::test]
            /// The list job (every 1 s) brings a new room in and a closed one out. How soon is a
            /// service-level figure (printed); the deadline is only a bound on the test.
            async fn a_new_room_enters_the_list_and_a_closed_one_leaves_it() {
                let Some(s) = server_on($distributed, true).await else { return };
                let (_, anchor) = s.user("lister").await;
                let room = s.start(&anchor, 2, "PK battle").await;
                let in_list = |s: &Server| {
                    let url = format!("{}/living/list?type=2&page=1&pageSize=10", s.base);
                    let http = s.http.clone();
                    async move {
                        let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                        v["data"]["list"].as_array().unwrap().iter().any(|r| r["id"] == json!(room))
                    }
                };
                let appeared = testenv::poll_until("room appears in the list", LIST_DEADLINE, || in_list(&s)).await;
                let (_, page) = s.post("/living/list", None, json!({"type": 1, "page": 1, "pageSize": 10})).await;
                assert!(page["data"]["list"].as_array().unwrap().is_empty(), "a PK room is not in the normal list");
                s.post("/living/closeLiving", Some(&anchor), json!({"roomId": room})).await;
                let left = testenv::poll_until("room leaves the list", LIST_DEADLINE, || async { !in_list(&s).await }).await;
                eprintln!("appeared after {appeared:?}, left after {left:?}");
            }

            #[tokio::test]
            async fn bad_room_input_gets_a_clear_error_and_changes_nothing() {
                let Some(s) = server_on($distributed, true).await else { return };
                let (_, anchor) = s.user("careful").await;
                let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.forged";
                assert_error(s.post("/living/startingLiving", None, json!({"type": 1, "roomName": "x"})).await, StatusCode::UNAUTHORIZED, "sign in");
                assert_error(s.post("/living/startingLiving", Some(forged), json!({"type": 1, "roomName": "x"})).await, StatusCode::UNAUTHORIZED, "invalid or expired");
                assert_error(s.post("/living/startingLiving", Some(&anchor), json!({"roomName": "x"})).await, StatusCode::BAD_REQUEST, "type is required");
                assert_error(s.post("/living/startingLiving", Some(&anchor), json!({"type": 9, "roomName": "x"})).await, StatusCode::BAD_REQUEST, "type must be");
                assert_error(s.post("/living/startingLiving", Some(&anchor), json!({"type": 1})).await, StatusCode::BAD_REQUEST, "roomName is required");
                assert_error(s.post("/living/startingLiving", Some(&anchor), json!({"type": "one", "roomName": "x"})).await, StatusCode::BAD_REQUEST, "not an integer");
                assert_error(s.post("/living/closeLiving", Some(&anchor), json!({})).await, StatusCode::BAD_REQUEST, "roomId is required");
                assert_error(s.post("/living/closeLiving", Some(&anchor), json!({"roomId": -3})).await, StatusCode::BAD_REQUEST, "positive");
                assert_error(s.post("/living/closeLiving", Some(&anchor), json!({"roomId": 424242})).await, StatusCode::NOT_FOUND, "not found");
                assert_error(s.get("/living/list?type=1&page=0").await, StatusCode::BAD_REQUEST, "page must be at least 1");
                assert_error(s.get("/living/list?type=1&pageSize=500").await, StatusCode::BAD_REQUEST, "pageSize must be between 1 and 100");
                assert_error(s.get("/living/list?page=1").await, StatusCode::BAD_REQUEST, "type is required");
                assert_error(s.get("/living/list?type=7").await, StatusCode::BAD_REQUEST, "type must be");
                assert_error(s.get("/living/records").await, StatusCode::BAD_REQUEST, "anchorId is required");
                assert_error(s.post("/living/anchorConfig", Some(forged), json!({"roomId": 1})).await, StatusCode::UNAUTHORIZED, "invalid or expired");
                // None of that started a room: the anchor can still start exactly one.
                s.start(&anchor, 1, "after all that").await;
            }

            #[tokio::test]
            async fn every_page_size_and_offset_parameter_is_bounded() {
                let Some(s) = server_on($distributed, true).await else { return };
                let (anchor_id, anchor) = s.user("pager").await;
                let room = s.start(&anchor, 1, "paged").await;
                let huge = i64::MAX;
                for path in [
                    format!("/living/records?anchorId={anchor_id}&page={huge}"),
                    format!("/living/records?anchorId={anchor_id}&page=10001"),
                    format!("/living/list?type=1&page={huge}"),
                    format!("/living/list?type=1&page={huge}&pageSize=100"),
                ] {
                    assert_error(s.get(&path).await, StatusCode::BAD_REQUEST, "page must be between 1 and 10000");
                }
                assert_error(s.get(&format!("/living/list?type=1&pageSize={huge}")).await, StatusCode::BAD_REQUEST, "pageSize must be between 1 and 100");
                assert_error(s.get(&format!("/living/records?anchorId={anchor_id}&pageSize=-1")).await, StatusCode::BAD_REQUEST, "pageSize");
                assert_error(s.get(&format!("/living/records?anchorId={anchor_id}&page=-{huge}")).await, StatusCode::BAD_REQUEST, "page must be at least 1");
                // Beyond i64: a parse error, not a wrap.
                assert_error(s.get("/living/list?type=1&page=99999999999999999999").await, StatusCode::BAD_REQUEST, "not an integer");
                assert_error(s.post("/living/list", None, json!({"type": 1, "page": 18446744073709551615u64})).await, StatusCode::BAD_REQUEST, "out of range");
                assert_error(s.post("/living/list", None, json!({"type": 1, "page": 1e300})).await, StatusCode::BAD_REQUEST, "integer");
                assert_error(s.get(&format!("/living/records?anchorId=-{huge}")).await, StatusCode::BAD_REQUEST, "anchorId must be a positive");
                // The last allowed page answers, empty.
                let (status, body) = s.get(&format!("/living/records?anchorId={anchor_id}&page=10000&pageSize=100")).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["data"]["list"], json!([]));
                let (status, body) = s.get("/living/list?type=1&page=10000&pageSize=100").await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["data"]["hasNext"], json!(false));
                // Chat history and the moderation log: limits and offsets at the extremes.
                assert_error(s.get(&format!("/im/history?roomId={room}&limit={huge}")).await, StatusCode::BAD_REQUEST, "limit must be between 1 and 100");
                assert_error(s.get(&format!("/im/history?roomId={room}&before=-{huge}")).await, StatusCode::BAD_REQUEST, "before must be at least 1");
                let (status, body) = s.get(&format!("/im/history?roomId={room}&before={huge}")).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let log = |q: String| {
                    let (http, base, token) = (s.http.clone(), s.base.clone(), anchor.clone());
                    async move {
                        let res = http.get(format!("{base}/living/moderation/log?roomId={room}{q}")).bearer_auth(token).send().await.unwrap();
                        (res.status(), res.json::<Value>().await.unwrap())
                    }
                };
                assert_error(log(format!("&limit={huge}")).await, StatusCode::BAD_REQUEST, "limit must be 1 to 200");
                let (status, body) = log(format!("&before={huge}")).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let (status, body) = log(format!("&before=-{huge}")).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                // The server still serves.
                let (status, _) = s.get("/living/list?type=1").await;
                assert_eq!(status, StatusCode::OK);
            }

            #[tokio::test]
            async fn without_open_streaming_a_plain_account_may_not_start_a_room() {
                let Some(s) = server_on($distributed, false).await else { return };
                let (_, token) = s.user("plain").await;
                let (_, page) = s.post("/home/initPage", Some(&token), json!({})).await;
                assert_eq!(page["data"]["showStartLivingBtn"], json!(false));
                assert_error(
                    s.post("/living/startingLiving", Some(&token), json!({"type": 1, "roomName": "x"})).await,
                    StatusCode::FORBIDDEN,
                    "may not start",
                );
            }
        }
    };
}

api_suite!(embedded, false);
api_suite!(mariadb_redis, true);

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let Some(s) = server_on(false, true).await else {
        return;
    };
    let (status, doc) = s.get("/api-docs/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], json!("3.0.3"));
    let documented: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    // Every route this crate's router declares (`.route("…"` in src/), read from the source so
    // a new route cannot be forgotten here.
    let routes = api_router_paths();
    assert!(
        routes.len() >= 20 && routes.contains("/user/login"),
        "the route scan found too little: {routes:?}"
    );
    let undocumented: Vec<&String> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from api/openapi.json: {undocumented:?}"
    );
    // And the other way: every documented path is served, by this router or by the role that
    // owns it in the same process (the gateway's /ws, the media role's /live and /records).
    for path in documented.difference(&routes) {
        assert!(
            path == "/ws" || path.starts_with("/live/") || path.starts_with("/records/"),
            "{path} is documented but no router declares it"
        );
    }
    // Each scanned route is served by the router: its answer differs from the one a path no
    // route matches gets (a handler may answer 404 too, e.g. /metrics when metrics are off, but
    // with its own reason).
    let answer = |path: String| {
        let http = s.http.clone();
        let url = format!("{}{path}", s.base);
        async move {
            let res = http.get(url).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let unrouted = answer("/no/such/route".into()).await;
    assert_eq!(unrouted.0, StatusCode::NOT_FOUND);
    for path in &routes {
        assert_ne!(answer(path.clone()).await, unrouted, "{path} is not routed");
    }
}

/// The paths of every `.route("…", …)` in this crate's sources.
fn api_router_paths() -> std::collections::BTreeSet<String> {
    fn scan(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                scan(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices(".route(") {
                    let rest = text[i + ".route(".len()..].trim_start();
                    if let Some(lit) = rest.strip_prefix('"') {
                        out.insert(lit[..lit.find('"').unwrap()].to_string());
                    }
                }
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    scan(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    out
}

/// A session token signed with the test server's secret, expiring at `exp` (epoch seconds).
fn token_expiring_at(user: i64, exp: i64) -> String {
    #[derive(serde::Serialize)]
    struct Claims {
        sub: String,
        iat: i64,
        exp: i64,
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: user.to_string(),
            iat: exp - 3600,
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-0123456789"),
    )
    .unwrap()
}

/// A session token is refused once expired (past the 5 s leeway), everywhere a session counts.
#[tokio::test]
async fn an_expired_session_token_is_refused() {
    let Some(s) = server_on(false, true).await else {
        return;
    };
    let (user, _) = s.user("expiring").await;
    let now = livehouse_core::time::now_ms() / 1000;
    // The same token shape, still valid: accepted (so the refusal below is about expiry).
    let fresh = token_expiring_at(user, now + 60);
    let (status, page) = s.post("/home/initPage", Some(&fresh), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"]["loginStatus"], json!(true), "{page}");
    let expired = token_expiring_at(user, now - 60);
    let (_, page) = s.post("/home/initPage", Some(&expired), json!({})).await;
    assert_eq!(page["data"]["loginStatus"], json!(false), "{page}");
    assert_error(
        s.post(
            "/living/startingLiving",
            Some(&expired),
            json!({"type": 1, "roomName": "x"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid or expired",
    );
    assert_error(
        s.post("/im/getImConfig", Some(&expired), json!({})).await,
        StatusCode::UNAUTHORIZED,
        "",
    );
}

/// `/user/logout` clears the session cookie: the browser's next request is anonymous.
#[tokio::test]
async fn logout_clears_the_session_cookie() {
    let Some(s) = server_on(false, true).await else {
        return;
    };
    let (_, token) = s.user("leaving").await;
    let res = s
        .http
        .post(format!("{}/user/logout", s.base))
        .header("cookie", format!("livehouse_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("livehouse_token=;") && cookie.contains("Max-Age=0"),
        "the cookie is cleared: {cookie}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], json!(200), "{body}");
    // What the browser sends after it: the emptied cookie, which is no session.
    let page: Value = s
        .http
        .post(format!("{}/home/initPage", s.base))
        .header("cookie", "livehouse_token=")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"]["loginStatus"], json!(false), "{page}");
}

/// `/im/online` says whether a user has a live IM connection in the presence store.
#[tokio::test]
async fn im_online_follows_the_presence_store() {
    use livehouse_core::events::GatewayInfo;
    use livehouse_core::presence::Conn;
    let Some(s) = server_on(false, true).await else {
        return;
    };
    let online = |user: i64| {
        let url = format!("{}/im/online?userId={user}", s.base);
        let http = s.http.clone();
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["data"]["userId"], json!(user), "{v}");
            v["data"]["online"].as_bool().expect("online is a boolean")
        }
    };
    assert!(!online(7).await, "nobody is connected yet");
    let now = livehouse_core::time::now_ms();
    let gw = GatewayInfo {
        id: "gw-online".into(),
        ws_addr: "ws://gw/ws".into(),
        tcp_addr: "gw:8085".into(),
        push_url: "http://gw".into(),
        sessions: 1,
    };
    s.presence.beat(&gw, &[], now).await.unwrap();
    let conn = Conn {
        gateway: gw.id.clone(),
        conn: 1,
        user: 7,
        device: String::new(),
        room: Some(3),
        at_ms: now,
    };
    s.presence.join(&conn, 5, now).await.unwrap();
    assert!(online(7).await, "a connected user is online");
    assert!(!online(8).await, "another user is not");
    s.presence.leave(&conn).await.unwrap();
    assert!(!online(7).await, "offline after the connection left");
    assert_error(
        s.get("/im/online").await,
        StatusCode::BAD_REQUEST,
        "userId is required",
    );
    assert_error(
        s.get("/im/online?userId=abc").await,
        StatusCode::BAD_REQUEST,
        "",
    );
}
