//! Test harness for the media server: a scriptable `StreamAuth`, the server on ephemeral ports,
//! ffmpeg/ffprobe children that die with the test, and a raw HTTP-FLV reader that checks the
//! chunked framing and parses tags. Every wait is bounded by a deadline.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livehouse_media::{MediaServer, StreamAuth};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Whether ffmpeg/ffprobe can run. Without them a test skips (with a note), unless
/// `LIVEHOUSE_REQUIRE_BACKENDS=1`, in which case it fails.
pub fn have_ffmpeg() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|bin| {
        std::process::Command::new(bin)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        if std::env::var("LIVEHOUSE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!(
                "ffmpeg/ffprobe not found but LIVEHOUSE_REQUIRE_BACKENDS=1: this suite must run"
            );
        }
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed; this end-to-end test did not run");
    }
    ok
}

/// A `StreamAuth` backed by a key table and a set of live rooms, recording what it was told.
#[derive(Default)]
pub struct TestAuth {
    pub keys: Mutex<HashMap<String, i64>>,
    pub live: Mutex<HashSet<i64>>,
    pub streaming: Mutex<HashMap<i64, bool>>,
    pub refused: Mutex<Vec<String>>,
}

impl TestAuth {
    pub fn with_room(key: &str, room: i64) -> Arc<TestAuth> {
        let auth = TestAuth::default();
        auth.keys.lock().insert(key.to_string(), room);
        auth.live.lock().insert(room);
        Arc::new(auth)
    }
    pub fn close_room(&self, room: i64) {
        self.live.lock().remove(&room);
    }
    pub fn streaming(&self, room: i64) -> Option<bool> {
        self.streaming.lock().get(&room).copied()
    }
}

#[async_trait::async_trait]
impl StreamAuth for TestAuth {
    async fn authorize_publish(&self, stream_key: &str) -> Result<i64, String> {
        let room = self.keys.lock().get(stream_key).copied();
        match room {
            Some(room) if self.live.lock().contains(&room) => Ok(room),
            Some(_) => Err("room is not live".into()),
            None => {
                self.refused.lock().push(stream_key.to_string());
                Err("unknown stream key".into())
            }
        }
    }
    async fn set_streaming(&self, room_id: i64, streaming: bool) {
        self.streaming.lock().insert(room_id, streaming);
    }
    async fn is_room_live(&self, room_id: i64) -> bool {
        self.live.lock().contains(&room_id)
    }
}

pub struct TestServer {
    pub media: Arc<MediaServer>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub rtmp_task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(auth: Arc<TestAuth>) -> TestServer {
        TestServer::start_with(auth, livehouse_media::HubConfig::default()).await
    }

    pub async fn start_with(auth: Arc<TestAuth>, config: livehouse_media::HubConfig) -> TestServer {
        let media = MediaServer::with_config(auth, config);
        let rtmp_l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http_l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let rtmp = rtmp_l.local_addr().expect("addr");
        let http = http_l.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rtmp_task = tokio::spawn(media.clone().serve_rtmp(rtmp_l, async move {
            let _ = stopped.await;
        }));
        let app = media.http_router();
        tokio::spawn(async move { axum::serve(http_l, app).await });
        TestServer {
            media,
            rtmp,
            http,
            stop: Some(stop),
            rtmp_task,
        }
    }
    /// Resolves the `shutdown` future given to `serve_rtmp`.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
    pub fn push_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }
    pub fn flv_url(&self, room: i64) -> String {
        format!("http://{}/live/{room}.flv", self.http)
    }
    pub fn rtmp_play_url(&self, room: i64) -> String {
        format!("rtmp://{}/live/{room}", self.rtmp)
    }
}

/// ffmpeg pushing a generated test pattern with a tone (H.264 + AAC) in real time.
pub fn push(url: &str, seconds: Option<u32>) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"]);
    if let Some(s) = seconds {
        cmd.args(["-t", &s.to_string()]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "25",
    ])
    .args(["-c:a", "aac", "-f", "flv", url])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    cmd.spawn().expect("spawn ffmpeg")
}

/// Runs a tool to completion within `limit`; returns (success, stdout). Killed on timeout.
pub async fn run(bin: &str, args: &[&str], limit: Duration) -> (bool, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            if !out.status.success() {
                eprintln!("{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
        Ok(Err(e)) => panic!("{bin}: {e}"),
        Err(_) => panic!("{bin} {args:?} did not finish within {limit:?}"),
    }
}

/// Polls `cond` every 20 ms until it holds; false when `limit` passes first.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a child to exit within `limit`; `None` if it is still running.
pub async fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::timeout(limit, child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

#[derive(Debug, Clone)]
pub struct FlvTag {
    pub kind: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl FlvTag {
    pub fn is_video_keyframe(&self) -> bool {
        self.kind == 9 && self.data.len() >= 2 && self.data[0] >> 4 == 1 && self.data[1] == 1
    }
    pub fn is_video_seq_header(&self) -> bool {
        self.kind == 9 && self.data.len() >= 2 && self.data[1] == 0
    }
    pub fn is_audio_seq_header(&self) -> bool {
        self.kind == 8 && self.data.len() >= 2 && self.data[0] >> 4 == 10 && self.data[1] == 0
    }
}

/// A raw HTTP/1.1 HTTP-FLV client: checks the response head, decodes chunked framing, parses tags.
pub struct FlvClient {
    rd: BufReader<TcpStream>,
    pub headers: HashMap<String, String>,
    chunk_left: usize,
    buf: Vec<u8>,
    header_seen: bool,
    pub ended_cleanly: bool,
}

impl FlvClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<FlvClient> {
        let mut sock = TcpStream::connect(addr).await?;
        sock.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://example.com\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut rd = BufReader::new(sock);
        let mut status = String::new();
        rd.read_line(&mut status).await?;
        anyhow::ensure!(status.starts_with("HTTP/1.1 200"), "status {status:?}");
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            anyhow::ensure!(headers.len() < 100, "too many headers");
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        anyhow::ensure!(
            headers.get("transfer-encoding").map(String::as_str) == Some("chunked"),
            "not chunked: {headers:?}"
        );
        Ok(FlvClient {
            rd,
            headers,
            chunk_left: 0,
            buf: Vec::new(),
            header_seen: false,
            ended_cleanly: false,
        })
    }

    /// Fills `buf` with at least `n` body bytes; false at the end of the body.
    async fn fill(&mut self, n: usize) -> anyhow::Result<bool> {
        while self.buf.len() < n {
            if self.chunk_left == 0 {
                let mut line = String::new();
                if self.rd.read_line(&mut line).await? == 0 {
                    return Ok(false); // closed without the last chunk
                }
                let size =
                    usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)?;
                if size == 0 {
                    let mut end = String::new();
                    self.rd.read_line(&mut end).await?;
                    self.ended_cleanly = true;
                    return Ok(false);
                }
                anyhow::ensure!(size <= 32 << 20, "chunk too large");
                self.chunk_left = size;
            }
            let mut tmp = vec![0u8; self.chunk_left.min(64 * 1024)];
            let got = self.rd.read(&mut tmp).await?;
            anyhow::ensure!(got > 0, "eof inside a chunk");
            self.buf.extend_from_slice(&tmp[..got]);
            self.chunk_left -= got;
            if self.chunk_left == 0 {
                let mut crlf = [0u8; 2];
                self.rd.read_exact(&mut crlf).await?;
                anyhow::ensure!(&crlf == b"\r\n", "bad chunk end");
            }
        }
        Ok(true)
    }

    /// The next FLV tag, or None at the end of the stream.
    pub async fn next_tag(&mut self) -> anyhow::Result<Option<FlvTag>> {
        if !self.header_seen {
            if !self.fill(13).await? {
                return Ok(None);
            }
            anyhow::ensure!(&self.buf[..3] == b"FLV", "not FLV");
            self.buf.drain(..13);
            self.header_seen = true;
        }
        if !self.fill(11).await? {
            return Ok(None);
        }
        let size = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if !self.fill(11 + size + 4).await? {
            anyhow::bail!("stream ended inside a tag");
        }
        let b = &self.buf;
        let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let prev = u32::from_be_bytes([b[11 + size], b[12 + size], b[13 + size], b[14 + size]]);
        anyhow::ensure!(prev as usize == 11 + size, "bad PreviousTagSize");
        let tag = FlvTag {
            kind: b[0],
            timestamp,
            data: b[11..11 + size].to_vec(),
        };
        self.buf.drain(..11 + size + 4);
        Ok(Some(tag))
    }
}
