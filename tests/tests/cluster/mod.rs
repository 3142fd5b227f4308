//! Setup shared by the distributed-topology tests (`distributed.rs`, `faults.rs`): the
//! `livehouse` processes of one topology on their own database, Redis key prefix and Kafka
//! namespace, the api calls a viewer makes, and a TCP protocol client (design §3).
//!
//! Must not: assert anything about the product beyond what each helper needs to go on (a login
//! accepted, an envelope with `code` 200); the tests say what must hold.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use livehouse_e2e::{binary, free_addr};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Client heartbeat period given to the gateways (`--im-heartbeat-secs`).
pub const GAP: Duration = Duration::from_secs(2);
/// Deadline for the processes to start and for each step.
pub const STEP: Duration = Duration::from_secs(45);
pub const MAGIC: u16 = 18673;

/// Creates a database named `name` on the MySQL server at `server` with the `mysql` client.
pub fn create_database(server: &str, name: &str) -> String {
    let server = server.trim_end_matches('/');
    let rest = server.strip_prefix("mysql://").expect("mysql:// URL");
    let (creds, hostport) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let mut cmd = std::process::Command::new("mysql");
    cmd.args([
        "-u",
        user,
        "-h",
        host,
        "-P",
        port,
        "-e",
        &format!("CREATE DATABASE `{name}`"),
    ]);
    if !pass.is_empty() {
        cmd.env("MYSQL_PWD", pass);
    }
    let out = cmd
        .output()
        .expect("the mysql client (apt-get install mariadb-client)");
    assert!(
        out.status.success(),
        "create database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{server}/{name}")
}

/// One `livehouse` process; killed when dropped.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub http: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub struct Cluster {
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

impl Cluster {
    pub fn spawn(&self, name: &'static str, role: &str, extra: &[&str]) -> Proc {
        let http = free_addr();
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg(role)
            .args(["--http-addr", &http.to_string()])
            .args(["--rtmp-addr", &free_addr().to_string()])
            .args(["--data-dir", data.to_str().unwrap()])
            .args(extra)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { name, child, http }
    }

    pub fn log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn healthy(http: &reqwest::Client, p: &mut Proc, cluster: &Cluster) {
    let url = format!("http://{}/healthz", p.http);
    let name = p.name;
    let end = Instant::now() + STEP;
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{name} exited with {status}:\n{}", cluster.log(name));
        }
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(
            Instant::now() < end,
            "{name} not healthy:\n{}",
            cluster.log(name)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST` to the api; returns the envelope's `data`, panicking unless `code` is 200.
pub async fn api(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = resp.json().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(v["code"], 200, "{path}: {v}");
    v["data"].clone()
}

/// A signed-up user with an IM token.
pub struct User {
    pub id: i64,
    pub session: String,
    pub im_token: String,
}

pub async fn sign_up(http: &reqwest::Client, base: &str, name: &str) -> User {
    let d = api(
        http,
        base,
        "/user/register",
        None,
        json!({"username": name, "password": "pw-123456"}),
    )
    .await;
    let id = d["userId"].as_i64().expect("userId");
    let session = d["token"].as_str().expect("token").to_string();
    let im = api(http, base, "/im/getImConfig", Some(&session), json!({})).await;
    let im_token = im["token"].as_str().expect("im token").to_string();
    User {
        id,
        session,
        im_token,
    }
}

/// A TCP protocol client: a reader task (ACKs every business message) and a writer task that
/// also sends a heartbeat every gap / 2. Both end when the client is dropped, which closes the
/// connection.
pub struct Client {
    out: mpsc::Sender<(i32, Value)>,
    pub inbox: mpsc::Receiver<(i32, Value)>,
    /// When the server last sent any frame (heartbeat answers included), in ms since [`epoch`].
    last_rx: Arc<AtomicU64>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The clock of [`Client::silent_for`]: ms since the first call.
fn epoch_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub fn frame(code: i32, body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut f = Vec::with_capacity(10 + body.len());
    f.extend_from_slice(&MAGIC.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

impl Client {
    pub async fn login(addr: SocketAddr, user: &User, room: i64) -> Client {
        let login =
            json!({"appId": 10001, "userId": user.id, "token": user.im_token, "roomId": room});
        let (c, body) = Client::open(addr, user.id, login)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["data"], "true", "login accepted: {body}");
        c
    }

    /// Connects to `addr`, sends `login` (1001) as the first frame and returns the client with
    /// the login's answer, or why there is none within [`STEP`].
    pub async fn open(addr: SocketAddr, uid: i64, login: Value) -> Result<(Client, Value), String> {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut rd, mut wr) = stream.into_split();
        let (out_tx, mut out_rx) = mpsc::channel::<(i32, Value)>(64);
        let (in_tx, in_rx) = mpsc::channel::<(i32, Value)>(256);
        let last_rx = Arc::new(AtomicU64::new(epoch_ms()));
        let writer = tokio::spawn(async move {
            // The first beat goes half a gap after the start, so the login (queued first) is
            // always the first frame: anything before a login closes the connection.
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + GAP / 2, GAP / 2);
            loop {
                let (code, body) = tokio::select! {
                    m = out_rx.recv() => match m { Some(m) => m, None => return },
                    _ = beat.tick() => (1004, json!({"appId": 10001, "userId": uid})),
                };
                if wr.write_all(&frame(code, &body)).await.is_err() {
                    return;
                }
            }
        });
        let ack = out_tx.clone();
        let seen = last_rx.clone();
        let reader = tokio::spawn(async move {
            let mut head = [0u8; 10];
            loop {
                if rd.read_exact(&mut head).await.is_err() {
                    return;
                }
                let code = i32::from_be_bytes(head[2..6].try_into().unwrap());
                let len = i32::from_be_bytes(head[6..10].try_into().unwrap()).max(0) as usize;
                let mut body = vec![0u8; len];
                if rd.read_exact(&mut body).await.is_err() {
                    return;
                }
                seen.store(epoch_ms(), Ordering::Relaxed);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if code == 1003 {
                    if let Some(id) = v.get("msgId").cloned() {
                        let _ = ack
                            .try_send((1005, json!({"appId": 10001, "userId": uid, "msgId": id})));
                    }
                }
                if code != 1004 && in_tx.send((code, v)).await.is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            out: out_tx,
            inbox: in_rx,
            last_rx,
            tasks: [writer, reader],
        };
        c.out
            .send((1001, login))
            .await
            .map_err(|_| "connection closed before the login".to_string())?;
        match c.next(STEP).await {
            Some((1001, body)) => Ok((c, body)),
            Some((code, body)) => Err(format!("login answered with {code}: {body}")),
            None => Err(format!("no login answer from {addr}")),
        }
    }

    /// How long the server has sent nothing (it answers every heartbeat).
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(epoch_ms().saturating_sub(self.last_rx.load(Ordering::Relaxed)))
    }

    pub async fn next(&mut self, within: Duration) -> Option<(i32, Value)> {
        tokio::time::timeout(within, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn chat(&self, user: &User, room: i64, content: &str) {
        let data = json!({"roomId": room, "content": content}).to_string();
        let body = json!({"appId": 10001, "userId": user.id, "bizCode": 5555, "data": data});
        self.out.send((1003, body)).await.unwrap();
    }

    /// Waits up to `within` for the chat message carrying `content`, then listens 500 ms more
    /// for duplicates; returns how many arrived.
    pub async fn receive(&mut self, content: &str, within: Duration) -> usize {
        let mut end = Instant::now() + within;
        let mut n = 0;
        while let Some((code, body)) = self
            .next(end.saturating_duration_since(Instant::now()))
            .await
        {
            let data = body["data"].as_str().unwrap_or_default();
            if code == 1003 && data.contains(content) {
                if n == 0 {
                    end = Instant::now() + Duration::from_millis(500);
                }
                n += 1;
            }
        }
        n
    }
}
