//! Test harness: gateways on real sockets (127.0.0.1:0) over the memory cache, bus, presence
//! store and chat log, real TCP and WebSocket clients, the real `msg` role delivering in
//! process, and deadline-bounded waits.
#![allow(dead_code)]

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use livehouse_core::bus::{Bus, MemoryBus};
use livehouse_core::cache::MemoryCache;
use livehouse_core::chatlog::{ChatLog, LogConfig, MemoryChatLog, NewEntry};
use livehouse_core::events::{ChatEvent, GatewayInfo, PresenceEvent, RoomBatch, StreamEntry};
use livehouse_core::presence::{MemoryPresence, Presence};
use livehouse_core::time::now_ms;
use livehouse_im_core::protocol::{self, Frame, FrameCodec, ImMsgBody, MAGIC};
use livehouse_im_core::{registry, Gateway, ImConfig, ImPorts};
use livehouse_msg::{GatewayDelivery, MsgConfig, MsgPorts};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::Framed;

/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);
/// The room most tests use.
pub const ROOM: i64 = 9;

/// The shared backends of one test: every gateway of the test runs on them.
#[derive(Clone)]
pub struct Backends {
    pub cache: Arc<MemoryCache>,
    pub bus: Arc<MemoryBus>,
    pub presence: Arc<MemoryPresence>,
    pub log: Arc<MemoryChatLog>,
}

impl Backends {
    pub fn new(log: LogConfig) -> Self {
        Backends {
            cache: Arc::new(MemoryCache::new()),
            bus: Arc::new(MemoryBus::new()),
            presence: Arc::new(MemoryPresence::default()),
            log: Arc::new(MemoryChatLog::new(log)),
        }
    }
}

pub struct Env {
    pub gw: Arc<Gateway>,
    pub b: Backends,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

pub fn test_config() -> ImConfig {
    ImConfig {
        gateway_id: "gw-test".into(),
        heartbeat_gap: Duration::from_secs(2),
        ack_timeout: Duration::from_millis(500),
        internal_auth: Some(Arc::new(|t: &str| t == "secret")),
        beat_interval: Duration::from_millis(100),
        repair_interval: Duration::from_millis(200),
        ..ImConfig::default()
    }
}

/// One gateway and the real `msg` on fresh backends.
pub async fn start() -> Env {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut ImConfig)) -> Env {
    let env = gateway(Backends::new(LogConfig::default()), tweak).await;
    env.run_msg().await;
    env
}

/// A gateway on `b` (no `msg`: see [`Env::run_msg`]).
pub async fn gateway(b: Backends, tweak: impl FnOnce(&mut ImConfig)) -> Env {
    let mut cfg = test_config();
    tweak(&mut cfg);
    let tcp_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tcp, http) = (tcp_l.local_addr().unwrap(), http_l.local_addr().unwrap());
    cfg.tcp_addr_public = tcp.to_string();
    cfg.ws_addr_public = format!("ws://{http}/ws");
    cfg.push_url = format!("http://{http}");
    let gw = Gateway::new(
        cfg,
        ImPorts {
            cache: b.cache.clone(),
            bus: b.bus.clone(),
            presence: b.presence.clone(),
            log: b.log.clone(),
            moderation: livehouse_moderation::RuleBook::new(b.cache.clone(), Default::default()),
        },
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tokio::spawn(gw.clone().serve_tcp(tcp_l, stopped(rx.clone())));
    tokio::spawn(gw.clone().run_registration(stopped(rx.clone())));
    tokio::spawn(gw.clone().run_control(stopped(rx.clone())));
    tokio::spawn(
        gw.clone()
            .run_moderation(Duration::from_millis(200), stopped(rx.clone())),
    );
    let app = gw.router();
    tokio::spawn(async move {
        axum::serve(http_l, app)
            .with_graceful_shutdown(stopped(rx))
            .await
            .unwrap()
    });
    let env = Env {
        gw,
        b,
        tcp,
        http,
        stop,
    };
    let id = env.gw.config().gateway_id.clone();
    eventually("the gateway's first beat", || async {
        env.b
            .presence
            .gateways(now_ms())
            .await
            .unwrap()
            .iter()
            .any(|g| g.id == id)
    })
    .await;
    env
}

/// Delivers to the gateways of one test in process (what the binary's adapter does).
pub struct Local(pub Vec<Arc<Gateway>>);

#[async_trait]
impl GatewayDelivery for Local {
    async fn deliver(&self, g: &GatewayInfo, batches: &[RoomBatch]) -> anyhow::Result<()> {
        let gw = self
            .0
            .iter()
            .find(|gw| gw.config().gateway_id == g.id)
            .ok_or_else(|| anyhow::anyhow!("no gateway {}", g.id))?;
        gw.push(batches.to_vec()).await;
        Ok(())
    }
}

/// Runs the real `msg` role over `b`, delivering to `gateways` in process.
pub async fn run_msg(b: &Backends, gateways: Vec<Arc<Gateway>>) {
    let msg = livehouse_msg::Msg::subscribe(
        MsgConfig::default(),
        MsgPorts {
            bus: b.bus.clone(),
            log: b.log.clone(),
            presence: b.presence.clone(),
        },
        Arc::new(Local(gateways)),
    )
    .await
    .unwrap();
    tokio::spawn(msg.run(std::future::pending::<()>()));
}

impl Env {
    pub async fn run_msg(&self) {
        run_msg(&self.b, vec![self.gw.clone()]).await;
    }

    /// Stops the gateway's listeners and tasks (its connections are closed).
    pub fn stop(&self) {
        self.gw.close_all();
        let _ = self.stop.send(true);
    }

    pub async fn token(&self, user: i64) -> String {
        registry::issue_im_token(&*self.b.cache, user)
            .await
            .unwrap()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub async fn tcp_login(&self, user: i64, room: i64) -> TcpClient {
        self.tcp_login_with(user, room, serde_json::json!({}))
            .await
            .0
    }

    /// Logs in over TCP with extra login fields (`deviceId`, `recover`); returns the reply too.
    pub async fn tcp_login_with(
        &self,
        user: i64,
        room: i64,
        extra: serde_json::Value,
    ) -> (TcpClient, Msg) {
        let mut c = TcpClient::connect(self.tcp).await;
        let tok = self.token(user).await;
        c.send(
            protocol::code::LOGIN,
            &login_body_with(user, &tok, room, extra),
        )
        .await;
        let r = c.expect(protocol::code::LOGIN).await;
        assert_eq!(r.data.as_deref(), Some("true"), "login reply {r:?}");
        (c, r)
    }

    pub async fn ws_login(&self, user: i64, room: i64) -> WsClient {
        self.ws_login_with(user, room, serde_json::json!({}))
            .await
            .0
    }

    pub async fn ws_login_with(
        &self,
        user: i64,
        room: i64,
        extra: serde_json::Value,
    ) -> (WsClient, Msg) {
        let mut c = WsClient::connect(&self.ws_url()).await;
        let tok = self.token(user).await;
        c.send(
            protocol::code::LOGIN,
            &login_body_with(user, &tok, room, extra),
        )
        .await;
        let r = c.expect(protocol::code::LOGIN).await;
        assert_eq!(r.data.as_deref(), Some("true"), "login reply {r:?}");
        (c, r)
    }

    /// Collects presence events of `topic` into a shared list.
    pub async fn watch_presence(&self, topic: &str) -> Arc<parking_lot::Mutex<Vec<PresenceEvent>>> {
        let list = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let group = format!("test-presence-{}", livehouse_core::ids::random_hex(3));
        let mut sub = self.b.bus.subscribe(topic, &group).await.unwrap();
        let l = list.clone();
        tokio::spawn(async move {
            while let Ok(d) = sub.next().await {
                l.lock().push(serde_json::from_slice(&d.payload).unwrap());
                sub.commit(&d).await.unwrap();
            }
        });
        list
    }

    /// Appends a message to the room's log as `msg` would, without pushing it anywhere.
    pub async fn append(&self, room: i64, sender: i64, content: &str) -> (String, u64) {
        let ev = chat_event(room, sender, content);
        let a = self
            .b
            .log
            .append(
                room,
                NewEntry {
                    msg_id: ev.msg_id.clone(),
                    kind: ev.biz_code,
                    at_ms: now_ms(),
                    payload: Bytes::from(serde_json::to_vec(&ev).unwrap()),
                },
            )
            .await
            .unwrap();
        (ev.msg_id, a.pos.offset)
    }

    /// Appends a message to the room's log and pushes it to this gateway (as `msg` does);
    /// returns its id.
    pub async fn push(&self, room: i64, sender: i64, content: &str) -> String {
        Pusher {
            gw: self.gw.clone(),
            b: self.b.clone(),
        }
        .push_from(room, sender, content)
        .await
    }
}

/// [`Env::push`] for a spawned task.
pub struct Pusher {
    pub gw: Arc<Gateway>,
    pub b: Backends,
}

impl Pusher {
    pub async fn push(&self, room: i64, content: &str) -> String {
        self.push_from(room, 99, content).await
    }

    pub async fn push_from(&self, room: i64, sender: i64, content: &str) -> String {
        let ev = chat_event(room, sender, content);
        let a = self
            .b
            .log
            .append(
                room,
                NewEntry {
                    msg_id: ev.msg_id.clone(),
                    kind: ev.biz_code,
                    at_ms: now_ms(),
                    payload: Bytes::from(serde_json::to_vec(&ev).unwrap()),
                },
            )
            .await
            .unwrap();
        let id = ev.msg_id.clone();
        self.gw
            .push(vec![RoomBatch {
                room_id: room,
                epoch: a.pos.epoch,
                entries: vec![StreamEntry {
                    offset: a.pos.offset,
                    msg: ev,
                }],
            }])
            .await;
        id
    }
}

/// A chat message of `sender` in `room` as a gateway would have accepted it.
pub fn chat_event(room: i64, sender: i64, content: &str) -> ChatEvent {
    ChatEvent {
        msg_id: format!("m-{}", livehouse_core::ids::random_hex(4)),
        app_id: protocol::APP_ID,
        room_id: room,
        sender_id: sender,
        biz_code: protocol::BIZ_CHAT,
        data: serde_json::json!({"roomId": room, "content": content}).to_string(),
        sent_at_ms: now_ms(),
        origin_gateway: String::new(),
        origin_conn: 0,
    }
}

pub fn login_body(user: i64, token: &str, room: i64) -> String {
    login_body_with(user, token, room, serde_json::json!({}))
}

pub fn login_body_with(user: i64, token: &str, room: i64, extra: serde_json::Value) -> String {
    let mut v = serde_json::json!({"appId": 10001, "userId": user, "token": token, "roomId": room});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string()
}

pub fn chat_body(user: i64, room: i64, content: &str) -> String {
    serde_json::json!({
        "appId": 10001, "userId": user, "bizCode": 5555,
        "data": serde_json::json!({"roomId": room, "content": content}).to_string()
    })
    .to_string()
}

pub fn ack_body(user: i64, msg_id: &str) -> String {
    serde_json::json!({"appId": 10001, "userId": user, "msgId": msg_id}).to_string()
}

/// The content of a delivered chat message.
pub fn content(m: &Msg) -> String {
    let v: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
    v["content"].as_str().unwrap_or_default().to_string()
}

/// Polls `cond` until true or [`WAIT`] passes.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a bounded wait for the next server message found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Recv {
    Msg(Msg),
    /// The server closed the connection (or sent something unreadable, which ends it too).
    Closed(String),
    /// Nothing within the wait; the connection is open.
    Timeout,
}

impl Recv {
    pub fn msg(self) -> Option<Msg> {
        match self {
            Recv::Msg(m) => Some(m),
            _ => None,
        }
    }
}

/// A decoded server message: code + body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub code: i32,
    pub body: ImMsgBody,
}

impl std::ops::Deref for Msg {
    type Target = ImMsgBody;
    fn deref(&self) -> &ImMsgBody {
        &self.body
    }
}

pub struct TcpClient {
    pub io: Framed<TcpStream, FrameCodec>,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        TcpClient {
            io: Framed::new(s, FrameCodec),
        }
    }

    pub async fn send(&mut self, code: i32, body: &str) {
        self.io
            .send(Frame::new(code, Bytes::from(body.to_owned())))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Msg> {
        match tokio::time::timeout(WAIT, self.io.next()).await {
            Ok(Some(Ok(f))) => Some(Msg {
                code: f.code,
                body: f.parse_body().expect("server body is an ImMsgBody"),
            }),
            Ok(_) => None,
            Err(_) => panic!("no message from the server within {WAIT:?}"),
        }
    }

    /// The next message within `d`, told apart from a close (or unreadable input) and from
    /// silence.
    pub async fn recv_within(&mut self, d: Duration) -> Recv {
        match tokio::time::timeout(d, self.io.next()).await {
            Ok(Some(Ok(f))) => match f.parse_body() {
                Ok(body) => Recv::Msg(Msg { code: f.code, body }),
                Err(e) => Recv::Closed(format!("unreadable body: {e}")),
            },
            Ok(Some(Err(e))) => Recv::Closed(format!("decode error: {e}")),
            Ok(None) => Recv::Closed("end of stream".into()),
            Err(_) => Recv::Timeout,
        }
    }

    /// Asserts that nothing arrives for `d`, then that the session is still alive: it answers a
    /// heartbeat.
    pub async fn assert_silent(&mut self, d: Duration, what: &str) {
        match self.recv_within(d).await {
            Recv::Timeout => {}
            other => panic!("expected silence ({what}), got {other:?}"),
        }
        self.send(protocol::code::HEARTBEAT, "{}").await;
        let m = match self.recv_within(WAIT).await {
            Recv::Msg(m) => m,
            other => panic!("({what}) after the silence: {other:?}"),
        };
        assert_eq!(m.code, protocol::code::HEARTBEAT, "({what}) got {m:?}");
    }

    pub async fn expect(&mut self, code: i32) -> Msg {
        let m = self.recv().await.expect("connection closed");
        assert_eq!(m.code, code, "unexpected message {m:?}");
        m
    }

    /// Reads until the server closes; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.io.next()).await {
                Ok(Some(Ok(f))) => seen.push(Msg {
                    code: f.code,
                    body: f.parse_body().unwrap_or_default(),
                }),
                Ok(_) => return seen,
                Err(_) => panic!("server did not close within {WAIT:?}; got {seen:?}"),
            }
        }
    }
}

/// Raw TCP header + body, for malformed frames.
pub fn raw_frame(magic: u16, code: i32, len: i32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&magic.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub struct WsClient {
    pub ws: WsStream,
}

#[allow(clippy::large_enum_variant)]
pub enum WsRecv {
    Msg(Msg),
    Closed(Option<u16>),
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        WsClient { ws }
    }

    pub async fn send(&mut self, code: i32, body: &str) {
        let text = protocol::ws_json(code, body);
        self.send_text(&text).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn next(&mut self, d: Duration) -> Option<WsRecv> {
        loop {
            let m = match tokio::time::timeout(d, self.ws.next()).await {
                Err(_) => return None,
                Ok(m) => m,
            };
            return Some(match m {
                Some(Ok(Message::Text(t))) => {
                    let f = protocol::parse_ws_json(t.as_bytes()).expect("server JSON");
                    assert_eq!(f.body.len() as i64, {
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                        v["len"].as_i64().unwrap()
                    });
                    WsRecv::Msg(Msg {
                        code: f.code,
                        body: f.parse_body().unwrap(),
                    })
                }
                Some(Ok(Message::Close(c))) => WsRecv::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected websocket message {other:?}"),
                Some(Err(_)) | None => WsRecv::Closed(None),
            });
        }
    }

    pub async fn recv(&mut self) -> Option<Msg> {
        match self.next(WAIT).await {
            Some(WsRecv::Msg(m)) => Some(m),
            Some(WsRecv::Closed(_)) => None,
            None => panic!("no message from the server within {WAIT:?}"),
        }
    }

    /// The next message within `d`, told apart from a close and from silence.
    pub async fn recv_within(&mut self, d: Duration) -> Recv {
        match self.next(d).await {
            Some(WsRecv::Msg(m)) => Recv::Msg(m),
            Some(WsRecv::Closed(c)) => Recv::Closed(format!("close code {c:?}")),
            None => Recv::Timeout,
        }
    }

    /// Asserts that nothing arrives for `d`, then that the session is still alive: it answers a
    /// heartbeat.
    pub async fn assert_silent(&mut self, d: Duration, what: &str) {
        match self.recv_within(d).await {
            Recv::Timeout => {}
            other => panic!("expected silence ({what}), got {other:?}"),
        }
        self.send(protocol::code::HEARTBEAT, "{}").await;
        let m = match self.recv_within(WAIT).await {
            Recv::Msg(m) => m,
            other => panic!("({what}) after the silence: {other:?}"),
        };
        assert_eq!(m.code, protocol::code::HEARTBEAT, "({what}) got {m:?}");
    }

    pub async fn expect(&mut self, code: i32) -> Msg {
        let m = self.recv().await.expect("connection closed");
        assert_eq!(m.code, code, "unexpected message {m:?}");
        m
    }

    /// Reads until the server closes; returns the messages before and the close code.
    pub async fn until_closed(&mut self) -> (Vec<Msg>, Option<u16>) {
        let mut seen = Vec::new();
        loop {
            match self.next(WAIT).await {
                Some(WsRecv::Msg(m)) => seen.push(m),
                Some(WsRecv::Closed(c)) => return (seen, c),
                None => panic!("server did not close within {WAIT:?}; got {seen:?}"),
            }
        }
    }
}

/// A raw HTTP/1.1 request; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub const BAD_MAGIC: u16 = MAGIC ^ 0xffff;

/// A WebSocket connection upgraded by hand, for writing frames no client library would.
pub async fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("handshake reply")
            .unwrap();
        assert_eq!(n, 1, "closed during the handshake");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame (header and payload) as bytes.
pub fn client_ws_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut v = vec![if fin { 0x80 } else { 0 } | op];
    let len = payload.len();
    if len < 126 {
        v.push(0x80 | len as u8);
    } else if len <= 65535 {
        v.push(0x80 | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// Reads a raw WebSocket connection to its end; returns the close code of the server's close
/// frame, if one came (the server's frames are unmasked).
pub async fn raw_ws_close_code(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("the server did not close");
    let mut i = 0;
    while i + 2 <= buf.len() {
        let op = buf[i] & 0x0f;
        let (len, hdr) = match buf[i + 1] & 0x7f {
            126 => (u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(buf[i + 2..i + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if op == 0x8 && len >= 2 {
            return Some(u16::from_be_bytes([buf[i + hdr], buf[i + hdr + 1]]));
        }
        i += hdr + len;
    }
    None
}
