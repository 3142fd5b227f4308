//! Fault tests of the distributed topology (issue 11): `api`, `living`, `msg` and two `im-core`
//! gateways as five `livehouse` processes on MariaDB + Redis + a Kafka-compatible broker (the
//! setup of `distributed.rs`, shared through `cluster/`), with real parts killed mid-chat.
//!
//! In each test two senders chat at 5 msg/s each for [`CHAT`] while four viewers (two on each
//! gateway) watch; [`FAULT_AT`] into the chat one fault strikes:
//! - `kill -9` of gateway A: its viewers reconnect to B (`getImConfig` with `avoid`);
//! - a restart of Redis (this test's own `redis-server`, no persistence: everything is lost);
//! - a restart of the broker (this test's own tansu, memory storage: topics are lost);
//! - `kill -9` of `msg`, started again 2 s later;
//! - gateway A stopped (SIGSTOP) for 5 s, then continued.
//!
//! Viewers behave as the web client does (`web/js/im.js`): they drop a connection silent for
//! 2.5 heartbeats, reconnect through `getImConfig` (avoiding the gateway they lost) with
//! `recover: {epoch, offset}` and a fixed `deviceId`, drop a delivery at or below their offset in
//! the same epoch, and reload `GET /im/history` when the answer is `recovered: false`. At the end
//! every viewer must show exactly the messages the senders were told were accepted (for the
//! broker restart: exactly the chat log, which must hold every message accepted once the broker
//! was back; see that test), each once, by offset within each epoch, all viewers in the same
//! order. Each test prints what every viewer saw and how long until its chat was whole again;
//! no timing is asserted (the machine is shared).
//!
//! Backends as in `distributed.rs`; the Redis and broker tests also need `redis-server` on the
//! `PATH` and tansu (`$LIVEHOUSE_TANSU`, else `~/.cache/livehouse/tansu/bin/tansu`, installed by
//! `.ci/kafka.sh`). Skipped without them unless `LIVEHOUSE_REQUIRE_BACKENDS=1`.

mod cluster;

use cluster::*;
use livehouse_core::presence::{Presence, PresenceConfig, RedisPresence};
use livehouse_core::testenv;
use livehouse_e2e::{binary, free_addr};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the senders chat.
const CHAT: Duration = Duration::from_secs(12);
/// When the fault strikes, from the start of the chat.
const FAULT_AT: Duration = Duration::from_secs(4);
/// Each sender's pace: 5 msg/s.
const PACE: Duration = Duration::from_millis(200);
/// A connection silent this long is dropped (the web client: 2.5 heartbeats of gap / 2).
const SILENCE: Duration = Duration::from_millis(2500);
/// A message shown later than this after it was sent counts as held up by the fault.
const LATE: Duration = Duration::from_secs(1);
/// Whole test.
const DEADLINE: Duration = Duration::from_secs(170);

/// The three backends' URLs, or `None` to skip (a panic under `LIVEHOUSE_REQUIRE_BACKENDS=1`).
fn backends() -> Option<(String, String, String)> {
    let (Some(mysql), Some(redis), Some(kafka)) = (
        testenv::backend("LIVEHOUSE_TEST_MYSQL_URL"),
        testenv::backend("LIVEHOUSE_TEST_REDIS_URL"),
        testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS"),
    ) else {
        return None;
    };
    let bin = binary();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --bin livehouse` first",
        bin.display()
    );
    Some((mysql, redis, kafka))
}

/// A server program the test runs itself, or `None` to skip (a panic when backends are
/// required).
fn program(path: PathBuf, what: &str) -> Option<PathBuf> {
    let found = if path.components().count() == 1 {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(&path))
                .find(|f| f.is_file())
        })
    } else {
        path.is_file().then_some(path.clone())
    };
    if found.is_none() {
        assert!(
            std::env::var("LIVEHOUSE_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{what} ({}) is missing but LIVEHOUSE_REQUIRE_BACKENDS=1: this suite must run",
            path.display()
        );
        eprintln!("skipped: {what} ({}) is missing", path.display());
    }
    found
}

/// A backend server of this test's own (its Redis or its broker), on its own port; killed when
/// dropped.
struct Server {
    program: PathBuf,
    args: Vec<String>,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Server {
    async fn start(program: PathBuf, args: Vec<String>, addr: SocketAddr, log: PathBuf) -> Self {
        let child = Self::spawn(&program, &args, &log);
        let s = Server {
            program,
            args,
            addr,
            child,
            log,
        };
        s.listening().await;
        s
    }

    fn spawn(program: &PathBuf, args: &[String], log: &PathBuf) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
    }

    async fn listening(&self) {
        let addr = self.addr;
        eventually(
            STEP,
            &format!("{} listens", self.program.display()),
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
    }

    /// `kill -9`, then down for `down`, then the same program on the same port again.
    async fn restart(&mut self, down: Duration) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
        tokio::time::sleep(down).await;
        self.child = Self::spawn(&self.program, &self.args, &self.log);
        self.listening().await;
    }
}

async fn own_redis(dir: &std::path::Path) -> Option<Server> {
    let program = program(PathBuf::from("redis-server"), "redis-server")?;
    let addr = free_addr();
    let args = [
        "--port",
        &addr.port().to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec();
    Some(Server::start(program, args, addr, dir.join("redis.log")).await)
}

async fn own_broker(dir: &std::path::Path) -> Option<Server> {
    let path = std::env::var_os("LIVEHOUSE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/livehouse/tansu/bin/tansu")
        });
    let program = program(path, "tansu (.ci/kafka.sh installs it)")?;
    let addr = free_addr();
    let url = format!("tcp://{addr}");
    let args = [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]
    .map(String::from)
    .to_vec();
    Some(Server::start(program, args, addr, dir.join("tansu.log")).await)
}

struct Gateway {
    id: String,
    tcp: SocketAddr,
    proc: Proc,
}

/// One topology: the five processes, a room, and what a client needs to reach them.
struct Topo {
    cluster: Cluster,
    http: reqwest::Client,
    base: String,
    /// Held to be killed when the test ends.
    _api: Proc,
    _living: Proc,
    msg: Proc,
    gws: Vec<Gateway>,
    room: i64,
    run_id: String,
}

impl Topo {
    async fn start(mysql: &str, redis: &str, kafka: &str, run_id: &str, dir: PathBuf) -> Topo {
        let db_url = create_database(mysql, &format!("lhtest_faults_{run_id}"));
        let prefix = format!("lhtest:faults:{run_id}:");
        // A fresh strong secret per run (weak ones are refused at start).
        let jwt_secret = livehouse_core::ids::random_hex(32);
        let cluster = Cluster {
            env: [
                ("LIVEHOUSE_DATABASE_URL", db_url.as_str()),
                ("LIVEHOUSE_REDIS_URL", redis),
                ("LIVEHOUSE_KAFKA_BROKERS", kafka),
                ("LIVEHOUSE_CACHE_PREFIX", prefix.as_str()),
                (
                    "LIVEHOUSE_KAFKA_NAMESPACE",
                    &format!("lhtest-faults-{run_id}"),
                ),
                ("LIVEHOUSE_JWT_SECRET", &jwt_secret),
                ("LIVEHOUSE_IM_HEARTBEAT_SECS", &GAP.as_secs().to_string()),
                ("LIVEHOUSE_OPEN_STREAMING", "true"),
                ("RUST_LOG", "info"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            dir: dir.clone(),
        };
        eprintln!("fault test logs in {}", dir.display());
        let presence = RedisPresence::connect(redis, &prefix, PresenceConfig::default())
            .await
            .expect("redis");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // The api migrates the schema: start it first.
        let mut api_p = cluster.spawn("api", "api", &[]);
        healthy(&http, &mut api_p, &cluster).await;
        let mut living = cluster.spawn("living", "living", &[]);
        let mut msg = cluster.spawn("msg", "msg", &[]);
        let mut gws = Vec::new();
        for name in ["im-a", "im-b"] {
            let tcp = free_addr();
            let id = format!("faults-{name}-{run_id}");
            let proc = cluster.spawn(
                name,
                "im-core",
                &["--im-tcp-addr", &tcp.to_string(), "--gateway-id", &id],
            );
            gws.push(Gateway { id, tcp, proc });
        }
        for p in [&mut living, &mut msg] {
            healthy(&http, p, &cluster).await;
        }
        for g in &mut gws {
            healthy(&http, &mut g.proc, &cluster).await;
        }
        eventually(STEP, "both gateways registered", || async {
            let live = presence
                .gateways(livehouse_core::time::now_ms())
                .await
                .unwrap();
            let ids: HashSet<String> = live.into_iter().map(|g| g.id).collect();
            gws.iter().all(|g| ids.contains(&g.id)).then_some(())
        })
        .await;
        let base = format!("http://{}", api_p.http);
        let anchor = sign_up(&http, &base, &format!("anchor{run_id}")).await;
        let room = api(
            &http,
            &base,
            "/living/startingLiving",
            Some(&anchor.session),
            json!({"type": 1, "roomName": "faults"}),
        )
        .await["roomId"]
            .as_i64()
            .expect("roomId");
        Topo {
            cluster,
            http,
            base,
            _api: api_p,
            _living: living,
            msg,
            gws,
            room,
            run_id: run_id.to_string(),
        }
    }

    /// The whole chat log of the room (msg ids, oldest first) through `GET /im/history`.
    async fn log(&self) -> (String, Vec<HistoryItem>) {
        history(&self.http, &self.base, self.room, None).await
    }
}

/// What the senders know: when each message was sent, and which were accepted.
#[derive(Default)]
struct Ledger {
    sent_at: HashMap<String, Instant>,
    /// msg id → content, for each message answered `true`.
    accepted: HashMap<String, String>,
    accepted_at: HashMap<String, Instant>,
    /// content and the error slug, for each message refused.
    refused: Vec<(String, String)>,
}

type Shared<T> = Arc<Mutex<T>>;

/// Chats `{name}-{n}` every [`PACE`] until `until`, then waits for every answer.
async fn sender(
    mut c: Client,
    user: User,
    room: i64,
    name: String,
    until: Instant,
    ledger: Shared<Ledger>,
) {
    let mut pending = std::collections::VecDeque::new();
    let mut next = Instant::now();
    let mut n = 0;
    let give_up = until + Duration::from_secs(30);
    let mut last = String::from("none");
    loop {
        let now = Instant::now();
        if now >= until && pending.is_empty() {
            return;
        }
        assert!(
            now < give_up,
            "{name}: {} messages never answered",
            pending.len()
        );
        if now >= next && now < until {
            let content = format!("{name}-{n}");
            n += 1;
            ledger.lock().unwrap().sent_at.insert(content.clone(), now);
            c.chat(&user, room, &content).await;
            pending.push_back(content);
            next += PACE;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(5));
        match tokio::time::timeout(wait, c.inbox.recv()).await {
            Err(_) => {}
            Ok(None) => panic!("{name}: the sender's connection was lost (last frame: {last})"),
            Ok(Some((1003, body))) if body.get("offset").is_none() => {
                let content = pending.pop_front().expect("an answer to a message sent");
                let mut l = ledger.lock().unwrap();
                if body["data"] == "true" {
                    let id = body["msgId"].as_str().expect("msgId").to_string();
                    l.accepted_at.insert(content.clone(), Instant::now());
                    l.accepted.insert(id, content);
                } else {
                    l.refused.push((content, body["error"].to_string()));
                }
            }
            Ok(Some((code, body))) => last = format!("{code} {body}"),
        }
    }
}

/// One message as a viewer shows it.
#[derive(Clone, Debug)]
struct Shown {
    epoch: String,
    offset: i64,
    msg_id: String,
    content: String,
    at: Instant,
}

#[derive(Default)]
struct ViewLog {
    shown: Vec<Shown>,
    /// What happened to the connection, for the report.
    events: Vec<String>,
    /// Deliveries dropped as at or below the offset already shown.
    redelivered: usize,
}

struct HistoryItem {
    msg_id: String,
    offset: i64,
    content: String,
}

/// `GET /im/history` pages back from `before` (all of it when `None`): the epoch and the
/// messages, oldest first.
async fn history(
    http: &reqwest::Client,
    base: &str,
    room: i64,
    before: Option<i64>,
) -> (String, Vec<HistoryItem>) {
    let mut before = before;
    let mut items = Vec::new();
    let mut epoch = String::new();
    loop {
        let mut url = format!("{base}/im/history?roomId={room}&limit=100");
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
        let v: Value = http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(v["code"], 200, "{url}: {v}");
        let d = &v["data"];
        if epoch.is_empty() {
            epoch = str_of(&d["epoch"]);
        }
        let page: Vec<HistoryItem> = d["list"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| HistoryItem {
                msg_id: str_of(&e["msgId"]),
                offset: int_of(&e["offset"]),
                content: str_of(&e["content"]),
            })
            .collect();
        let first = page.first().map(|e| e.offset);
        items.splice(0..0, page);
        match first {
            Some(f) if d["hasMore"] == true => before = Some(f),
            _ => return (epoch, items),
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn int_of(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A viewer that behaves as the web client (see the module docs).
struct Viewer {
    name: String,
    user: User,
    device: String,
    room: i64,
    gateway: String,
    pos: Option<(String, i64)>,
    client: Option<Client>,
    http: reqwest::Client,
    base: String,
    log: Shared<ViewLog>,
    t0: Instant,
}

impl Viewer {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let got = {
                let c = self.client.as_mut().expect("connected");
                tokio::select! {
                    _ = stop.changed() => return,
                    r = tokio::time::timeout(Duration::from_millis(250), c.inbox.recv()) => r,
                }
            };
            match got {
                Ok(Some((1003, body))) => self.deliver(&body),
                Ok(Some(_)) => {}
                Ok(None) => self.reconnect("connection closed").await,
                Err(_) => {
                    if self.client.as_ref().unwrap().silent_for() > SILENCE {
                        self.reconnect("connection silent").await;
                    }
                }
            }
        }
    }

    fn deliver(&mut self, body: &Value) {
        let (Some(epoch), Some(offset)) = (body.get("epoch"), body.get("offset")) else {
            return;
        };
        let (epoch, offset) = (str_of(epoch), int_of(offset));
        let mut log = self.log.lock().unwrap();
        if matches!(&self.pos, Some((e, o)) if *e == epoch && offset <= *o) {
            log.redelivered += 1;
            return;
        }
        let data: Value =
            serde_json::from_str(body["data"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
        log.shown.push(Shown {
            epoch: epoch.clone(),
            offset,
            msg_id: str_of(&body["msgId"]),
            content: str_of(&data["content"]),
            at: Instant::now(),
        });
        self.pos = Some((epoch, offset));
    }

    /// Logs in again through `getImConfig` (avoiding the gateway lost) with `recover`.
    async fn reconnect(&mut self, why: &str) {
        self.client = None;
        let lost = self.gateway.clone();
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            assert!(
                started.elapsed() < 2 * STEP,
                "{}: no new connection within {:?} ({attempts} attempts)",
                self.name,
                2 * STEP
            );
            if attempts > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            attempts += 1;
            let cfg = self
                .http
                .post(format!("{}/im/getImConfig", self.base))
                .bearer_auth(&self.user.session)
                .json(&json!({"avoid": lost}))
                .send()
                .await;
            let Ok(cfg) = cfg else { continue };
            let Ok(cfg) = cfg.json::<Value>().await else {
                continue;
            };
            if cfg["code"] != 200 {
                continue;
            }
            let d = &cfg["data"];
            let Ok(addr) = str_of(&d["tcpImServerAddress"]).parse::<SocketAddr>() else {
                continue;
            };
            let mut login = json!({"appId": 10001, "userId": self.user.id,
                "token": d["token"], "roomId": self.room, "deviceId": self.device});
            if let Some((epoch, offset)) = &self.pos {
                login["recover"] = json!({"epoch": epoch, "offset": offset});
            }
            let Ok((client, answer)) = Client::open(addr, self.user.id, login).await else {
                continue;
            };
            if answer["data"] != "true" {
                continue;
            }
            let (epoch, offset) = (str_of(&answer["epoch"]), int_of(&answer["offset"]));
            let recovered = answer["recovered"] == true;
            if self.pos.is_some() && !recovered {
                // The gap could not be recovered: the history up to where live messages
                // continue replaces what this epoch showed.
                let (_, items) = history(&self.http, &self.base, self.room, Some(offset + 1)).await;
                let mut log = self.log.lock().unwrap();
                log.shown.retain(|s| s.epoch != epoch);
                let have: HashSet<String> = log.shown.iter().map(|s| s.msg_id.clone()).collect();
                let now = Instant::now();
                for it in items.into_iter().filter(|it| !have.contains(&it.msg_id)) {
                    log.shown.push(Shown {
                        epoch: epoch.clone(),
                        offset: it.offset,
                        msg_id: it.msg_id,
                        content: it.content,
                        at: now,
                    });
                }
            }
            if !recovered {
                self.pos = Some((epoch, offset));
            }
            self.gateway = str_of(&d["gatewayId"]);
            self.client = Some(client);
            self.log.lock().unwrap().events.push(format!(
                "at {:.1}s {why} on {}; logged in to {} {:.1}s later (attempt {attempts}), recovered: {recovered}",
                (started - self.t0).as_secs_f64(),
                short(&lost),
                short(&self.gateway),
                started.elapsed().as_secs_f64(),
            ));
            return;
        }
    }
}

fn short(gateway: &str) -> String {
    gateway.split('-').nth(2).unwrap_or(gateway).to_string()
}

/// The chat of one test: senders and viewers running.
struct Chat {
    t0: Instant,
    ledger: Shared<Ledger>,
    senders: Vec<JoinHandle<()>>,
    viewers: Vec<(String, Shared<ViewLog>, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
}

impl Chat {
    /// Signs up and logs in two senders (on gateways `senders_on`) and four viewers (on
    /// `viewers_on`), then starts the chat.
    async fn start(t: &Topo, senders_on: [usize; 2], viewers_on: [usize; 4]) -> Chat {
        let run_id = &t.run_id;
        let (stop, stop_rx) = watch::channel(false);
        let mut viewers = Vec::new();
        let mut tasks = Vec::new();
        let now = Instant::now();
        for (i, g) in viewers_on.into_iter().enumerate() {
            let user = sign_up(&t.http, &t.base, &format!("viewer{i}{run_id}")).await;
            let device = format!("dev-{i}");
            let gw = &t.gws[g];
            let login = json!({"appId": 10001, "userId": user.id, "token": user.im_token,
                "roomId": t.room, "deviceId": device});
            let (client, answer) = Client::open(gw.tcp, user.id, login)
                .await
                .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
            assert_eq!(answer["data"], "true", "viewer {i} logged in: {answer}");
            let name = format!("viewer {i} (on {})", short(&gw.id));
            let log = Shared::default();
            viewers.push((name.clone(), Arc::clone(&log)));
            tasks.push(Viewer {
                name,
                user,
                device,
                room: t.room,
                gateway: gw.id.clone(),
                pos: Some((str_of(&answer["epoch"]), int_of(&answer["offset"]))),
                client: Some(client),
                http: t.http.clone(),
                base: t.base.clone(),
                log,
                t0: now,
            });
        }
        let mut senders = Vec::new();
        for (i, g) in senders_on.into_iter().enumerate() {
            let user = sign_up(&t.http, &t.base, &format!("sender{i}{run_id}")).await;
            let c = Client::login(t.gws[g].tcp, &user, t.room).await;
            senders.push((user, c));
        }
        let t0 = Instant::now();
        let ledger = Shared::default();
        let viewers = viewers
            .into_iter()
            .zip(tasks)
            .map(|((name, log), mut v)| {
                v.t0 = t0;
                (name, log, tokio::spawn(v.run(stop_rx.clone())))
            })
            .collect();
        let senders = senders
            .into_iter()
            .enumerate()
            .map(|(i, (user, c))| {
                tokio::spawn(sender(
                    c,
                    user,
                    t.room,
                    format!("s{i}"),
                    t0 + CHAT,
                    Arc::clone(&ledger),
                ))
            })
            .collect();
        Chat {
            t0,
            ledger,
            senders,
            viewers,
            stop,
        }
    }

    /// Sleeps until `at` into the chat: when a fault is scheduled.
    async fn at(&self, at: Duration) {
        tokio::time::sleep_until((self.t0 + at).into()).await;
    }

    /// Waits for the senders' answers, then for every viewer to show every message of
    /// `expected` (the accepted ones when `None`), listens one more second for anything extra,
    /// and stops the viewers. Returns the expected msg ids.
    async fn finish(self, expected: Option<HashSet<String>>) -> Finished {
        for s in self.senders {
            s.await.expect("sender");
        }
        let expected = expected.unwrap_or_else(|| {
            self.ledger
                .lock()
                .unwrap()
                .accepted
                .keys()
                .cloned()
                .collect()
        });
        let end = Instant::now() + STEP;
        while Instant::now() < end {
            let whole = self.viewers.iter().all(|(_, log, _)| {
                let l = log.lock().unwrap();
                let ids: HashSet<&String> = l.shown.iter().map(|s| &s.msg_id).collect();
                expected.iter().all(|id| ids.contains(id))
            });
            if whole {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = self.stop.send(true);
        let mut viewers = Vec::new();
        for (name, log, task) in self.viewers {
            task.await.expect("viewer");
            let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
            viewers.push((name, log));
        }
        Finished {
            t0: self.t0,
            ledger: Arc::try_unwrap(self.ledger)
                .ok()
                .unwrap()
                .into_inner()
                .unwrap(),
            viewers,
            expected,
        }
    }
}

struct Finished {
    t0: Instant,
    ledger: Ledger,
    viewers: Vec<(String, ViewLog)>,
    expected: HashSet<String>,
}

impl Finished {
    /// Prints what each viewer saw and how long until its chat was whole again, then asserts
    /// that each shows exactly the expected messages, once each, by offset, all in one order.
    fn report_and_check(&self, fault: &str, fault_at: Duration) {
        let l = &self.ledger;
        eprintln!(
            "== {fault}: {} sent, {} accepted, {} refused {:?}; {} expected",
            l.sent_at.len(),
            l.accepted.len(),
            l.refused.len(),
            l.refused.iter().take(5).collect::<Vec<_>>(),
            self.expected.len()
        );
        let fault_at = self.t0 + fault_at;
        for (name, v) in &self.viewers {
            let mut late: Vec<Duration> = v
                .shown
                .iter()
                .filter_map(|s| {
                    l.sent_at
                        .get(&s.content)
                        .map(|t| s.at.saturating_duration_since(*t))
                })
                .collect();
            late.sort();
            let pct = |p: f64| {
                late.get(((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or_default()
            };
            let whole = v
                .shown
                .iter()
                .filter(|s| {
                    l.sent_at
                        .get(&s.content)
                        .is_some_and(|t| s.at.saturating_duration_since(*t) > LATE)
                })
                .map(|s| s.at.saturating_duration_since(fault_at))
                .max();
            eprintln!(
                "  {name}: shows {} messages in {} epoch(s), {} redeliveries dropped; latency p50 {:?} p99 {:?} max {:?}; {}",
                v.shown.len(),
                v.shown.iter().map(|s| &s.epoch).collect::<HashSet<_>>().len(),
                v.redelivered,
                pct(0.5),
                pct(0.99),
                late.last().copied().unwrap_or_default(),
                match whole {
                    Some(w) => format!("chat whole again {w:.1?} after the fault"),
                    None => format!("never more than {LATE:?} behind"),
                }
            );
            for e in &v.events {
                eprintln!("    {e}");
            }
        }
        let mut orders = Vec::new();
        for (name, v) in &self.viewers {
            let mut seen = HashSet::new();
            let dups: Vec<&str> = v
                .shown
                .iter()
                .filter(|s| !seen.insert(&s.msg_id))
                .map(|s| s.content.as_str())
                .collect();
            assert!(dups.is_empty(), "{name} shows duplicates: {dups:?}");
            let mut epochs: Vec<&str> = Vec::new();
            for w in v.shown.windows(2) {
                if w[0].epoch == w[1].epoch {
                    assert!(
                        w[0].offset < w[1].offset,
                        "{name}: offset {} ({}) shown before {} ({})",
                        w[0].offset,
                        w[0].content,
                        w[1].offset,
                        w[1].content
                    );
                }
            }
            for s in &v.shown {
                if epochs.last() != Some(&s.epoch.as_str()) {
                    assert!(
                        !epochs.contains(&s.epoch.as_str()),
                        "{name}: epochs interleave"
                    );
                    epochs.push(&s.epoch);
                }
            }
            let ids: HashSet<String> = v.shown.iter().map(|s| s.msg_id.clone()).collect();
            let content = |id: &String| l.accepted.get(id).cloned().unwrap_or_else(|| id.clone());
            let mut missing: Vec<String> = self.expected.difference(&ids).map(content).collect();
            let mut extra: Vec<String> = ids.difference(&self.expected).map(content).collect();
            missing.sort();
            extra.sort();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{name} does not show exactly the expected {} messages: missing {missing:?}, extra {extra:?}",
                self.expected.len()
            );
            orders.push((
                name,
                v.shown.iter().map(|s| s.msg_id.clone()).collect::<Vec<_>>(),
            ));
        }
        for (name, order) in &orders[1..] {
            assert!(
                order == &orders[0].1,
                "{name} shows another order than {}",
                orders[0].0
            );
        }
    }
}

fn run_dir(run_id: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("livehouse-faults-{run_id}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `body` under the whole-test deadline.
async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("test deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_viewers_reconnect_to_the_other_and_miss_nothing() {
    let Some((mysql, redis, kafka)) = backends() else {
        return;
    };
    bounded(async {
        let run_id = livehouse_core::ids::random_hex(5);
        let mut t = Topo::start(&mysql, &redis, &kafka, &run_id, run_dir(&run_id)).await;
        // Both senders on B; viewers 0, 1 on A, 2, 3 on B.
        let chat = Chat::start(&t, [1, 1], [0, 0, 1, 1]).await;
        chat.at(FAULT_AT).await;
        t.gws[0].proc.child.start_kill().unwrap();
        let _ = t.gws[0].proc.child.wait().await;
        let done = chat.finish(None).await;
        done.report_and_check("kill -9 of gateway A", FAULT_AT);
        for (name, v) in done.viewers.iter().filter(|(n, _)| n.contains("(on a)")) {
            assert!(
                v.events.iter().any(|e| e.contains("logged in to b")),
                "{name} moved to gateway B: {:?}",
                v.events
            );
        }
        drop(t);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_chat_loses_no_message() {
    let Some((mysql, _, kafka)) = backends() else {
        return;
    };
    bounded(async {
        let run_id = livehouse_core::ids::random_hex(5);
        let dir = run_dir(&run_id);
        let Some(mut redis) = own_redis(&dir).await else {
            return;
        };
        let url = format!("redis://{}", redis.addr);
        let t = Topo::start(&mysql, &url, &kafka, &run_id, dir).await;
        let chat = Chat::start(&t, [0, 1], [0, 0, 1, 1]).await;
        chat.at(FAULT_AT).await;
        redis.restart(Duration::from_secs(2)).await;
        let done = chat.finish(None).await;
        done.report_and_check("Redis restart (2 s down, data lost)", FAULT_AT);
        drop(t);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails today (issue 11): within 0.5 s of the broker coming back (memory storage, its \
            topics gone) `msg` and both gateways die of SIGSEGV (wait status 11; nothing logged), \
            so the senders' connections drop"]
async fn a_broker_restart_mid_chat_loses_nothing_past_the_chat_log() {
    let Some((mysql, redis, _)) = backends() else {
        return;
    };
    bounded(async {
        let run_id = livehouse_core::ids::random_hex(5);
        let dir = run_dir(&run_id);
        let Some(mut broker) = own_broker(&dir).await else {
            return;
        };
        let t = Topo::start(&mysql, &redis, &broker.addr.to_string(), &run_id, dir).await;
        let chat = Chat::start(&t, [0, 1], [0, 0, 1, 1]).await;
        chat.at(FAULT_AT).await;
        broker.restart(Duration::from_secs(2)).await;
        let back = Instant::now();
        // The broker keeps topics in memory: what it held and `msg` had not yet stored in the
        // chat log is gone with it. What a viewer must see is the chat log, and the log must
        // hold every message accepted once the broker was back.
        let ledger = Arc::clone(&chat.ledger);
        // Wait for the senders, then read the log once it holds every message accepted after
        // the restart.
        let log_ids = {
            let deadline = Instant::now() + CHAT + STEP;
            loop {
                let done = chat.senders.iter().all(|s| s.is_finished());
                if done {
                    let after: HashSet<String> = {
                        let l = ledger.lock().unwrap();
                        l.accepted
                            .iter()
                            .filter(|(_, c)| l.sent_at[*c] > back)
                            .map(|(id, _)| id.clone())
                            .collect()
                    };
                    let (_, items) = t.log().await;
                    let ids: HashSet<String> = items.into_iter().map(|i| i.msg_id).collect();
                    if after.is_subset(&ids) || Instant::now() > deadline {
                        let missing: Vec<_> = after.difference(&ids).collect();
                        assert!(
                            missing.is_empty(),
                            "accepted after the broker was back but not in the chat log: {missing:?}"
                        );
                        break ids;
                    }
                }
                assert!(Instant::now() < deadline, "senders did not finish");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let done = chat.finish(Some(log_ids.clone())).await;
        let accepted: HashSet<String> = done.ledger.accepted.keys().cloned().collect();
        let extra: Vec<_> = log_ids.difference(&accepted).collect();
        assert!(extra.is_empty(), "the chat log holds messages never accepted: {extra:?}");
        let mut lost: Vec<&String> = accepted
            .difference(&log_ids)
            .map(|id| &done.ledger.accepted[id])
            .collect();
        lost.sort();
        eprintln!(
            "broker restart: {} accepted messages were in the broker's memory only and are lost: {lost:?}",
            lost.len()
        );
        done.report_and_check("broker restart (2 s down, memory storage)", FAULT_AT);
        drop(t);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails today (issue 11): after a kill -9 of `msg` the restarted one gets no partition \
            of the chat group within 55 s on tansu 0.6 (a SIGTERM restart recovers in 2.4 s): \
            the dead member is not expired"]
async fn msg_killed_and_restarted_loses_no_message() {
    let Some((mysql, redis, kafka)) = backends() else {
        return;
    };
    bounded(async {
        let run_id = livehouse_core::ids::random_hex(5);
        let mut t = Topo::start(&mysql, &redis, &kafka, &run_id, run_dir(&run_id)).await;
        let chat = Chat::start(&t, [0, 1], [0, 0, 1, 1]).await;
        chat.at(FAULT_AT).await;
        t.msg.child.start_kill().unwrap();
        let _ = t.msg.child.wait().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        t.msg = t.cluster.spawn("msg-2", "msg", &[]);
        healthy(&t.http, &mut t.msg, &t.cluster).await;
        let done = chat.finish(None).await;
        done.report_and_check("kill -9 of msg, restarted 2 s later", FAULT_AT);
        drop(t);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_delays_only_its_own_viewers() {
    let Some((mysql, redis, kafka)) = backends() else {
        return;
    };
    bounded(async {
        let run_id = livehouse_core::ids::random_hex(5);
        let t = Topo::start(&mysql, &redis, &kafka, &run_id, run_dir(&run_id)).await;
        let chat = Chat::start(&t, [1, 1], [0, 0, 1, 1]).await;
        chat.at(FAULT_AT).await;
        let pid = t.gws[0]
            .proc
            .child
            .id()
            .expect("gateway A runs")
            .to_string();
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("kill")
                .success();
            assert!(ok, "kill {sig} {pid}");
        };
        signal("-STOP");
        chat.at(FAULT_AT + Duration::from_secs(5)).await;
        signal("-CONT");
        let done = chat.finish(None).await;
        // What the issue asks of B's viewers (p99 < 200 ms) is reported, not asserted: the
        // machine is shared and a debug build.
        for (name, v) in done.viewers.iter().filter(|(n, _)| n.contains("(on b)")) {
            let stop = (
                done.t0 + FAULT_AT,
                done.t0 + FAULT_AT + Duration::from_secs(5),
            );
            let mut late: Vec<Duration> = v
                .shown
                .iter()
                .filter_map(|s| {
                    let sent = done.ledger.sent_at.get(&s.content)?;
                    (*sent >= stop.0 && *sent <= stop.1)
                        .then(|| s.at.saturating_duration_since(*sent))
                })
                .collect();
            late.sort();
            let p99 = late.get((late.len() * 99 / 100).min(late.len().saturating_sub(1)));
            eprintln!(
                "  {name} while A was stopped: {} messages, p50 {:?}, p99 {p99:?}, max {:?}",
                late.len(),
                late.get(late.len() / 2),
                late.last()
            );
        }
        done.report_and_check("gateway A stopped (SIGSTOP) for 5 s", FAULT_AT);
        drop(t);
    })
    .await;
}
