//! The RTMP port against hostile and broken peers, over real sockets with an RTMP client built
//! on `rml_rtmp` (no ffmpeg needed): the handshake deadline, the byte limit before publish or
//! play, the GOP cache bound, random bytes, and input that makes `rml_rtmp` panic. After each,
//! the server still accepts a publisher.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROOM: i64 = 11;
const KEY: &str = "fedcba9876543210";
/// Upper bound of any single wait.
const WAIT: Duration = Duration::from_secs(10);
/// What the server accepts before publish or play (`PRE_AUTH_BYTES` in `rtmp.rs`).
const PRE_AUTH_BYTES: usize = 256 * 1024;
/// The server's handshake deadline (`HANDSHAKE_TIMEOUT` in `rtmp.rs`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to the RTMP port that has completed the handshake.
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("handshake answer in time")
            .expect("read");
        assert!(n > 0, "the server closed during the handshake");
        match hs.process_bytes(&buf[..n]).expect("server handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                s.write_all(&response_bytes).await.unwrap();
                assert!(remaining_bytes.is_empty(), "nothing before our connect");
                return s;
            }
        }
    }
}

/// An RTMP publisher over `rml_rtmp`'s client session.
struct Publisher {
    sock: TcpStream,
    session: ClientSession,
}

impl Publisher {
    /// Connects to app `live` and publishes `key`; panics if either is refused.
    async fn start(addr: SocketAddr, key: &str) -> Publisher {
        let sock = handshaken(addr).await;
        let (session, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut p = Publisher { sock, session };
        p.send_results(initial).await;
        let r = p.session.request_connection("live".into()).unwrap();
        p.send_results(vec![r]).await;
        p.until(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await;
        let r = p
            .session
            .request_publishing(key.into(), PublishRequestType::Live)
            .unwrap();
        p.send_results(vec![r]).await;
        p.until(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
            .await;
        p
    }

    async fn send_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            if let ClientSessionResult::OutboundResponse(packet) = r {
                self.sock.write_all(&packet.bytes).await.unwrap();
            }
        }
    }

    /// Reads the server until an event matching `want` (answering what needs an answer).
    async fn until(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(WAIT, self.sock.read(&mut buf))
                .await
                .expect("the server answered in time")
                .expect("read");
            assert!(n > 0, "the server closed the publisher's connection");
            let results = self.session.handle_input(&buf[..n]).expect("server input");
            let mut found = false;
            let mut out = Vec::new();
            for r in results {
                match r {
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestRejected { description },
                    ) => panic!("connect refused: {description}"),
                    ClientSessionResult::RaisedEvent(e) if want(&e) => found = true,
                    other => out.push(other),
                }
            }
            self.send_results(out).await;
            if found {
                return;
            }
        }
    }

    async fn video(&mut self, ts: u32, payload: Vec<u8>) {
        let r = self
            .session
            .publish_video_data(Bytes::from(payload), RtmpTimestamp::new(ts), false)
            .unwrap();
        self.send_results(vec![r]).await;
    }
}

/// An FLV video payload: AVC, keyframe (1) or inter frame (2), `len` bytes in all.
fn avc(keyframe: bool, seq_header: bool, len: usize) -> Vec<u8> {
    let mut v = vec![
        if keyframe { 0x17 } else { 0x27 },
        u8::from(!seq_header),
        0,
        0,
        0,
    ];
    v.resize(len.max(5), 0x42);
    v
}

/// The server still serves: a new publisher goes live in the room, then leaves.
async fn still_serves(server: &TestServer) {
    let p = Publisher::start(server.rtmp, KEY).await;
    assert!(
        eventually(WAIT, || server.media.is_publishing(ROOM)).await,
        "the room never went live"
    );
    drop(p);
    assert!(
        eventually(WAIT, || !server.media.is_publishing(ROOM)).await,
        "the publisher was not released"
    );
}

/// Reads until the server closes the connection; false if it is still open after `limit`.
async fn closed_within(sock: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// `rml_rtmp` indexes an empty list on an AMF0 `@setDataFrame` data message with no value (sent
/// here before `connect`): the panic is caught, the connection closed and counted, and the
/// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_panics_the_rtmp_parser_closes_that_connection_only() {
    let server = TestServer::start(TestAuth::with_room(KEY, ROOM)).await;
    // A publisher already live keeps going while another peer misbehaves.
    let mut live = Publisher::start(server.rtmp, KEY).await;
    assert!(eventually(WAIT, || server.media.is_publishing(ROOM)).await);

    let mut s = handshaken(server.rtmp).await;
    // AMF0 string "@setDataFrame" and nothing else.
    let mut payload = vec![0x02, 0x00, 13];
    payload.extend_from_slice(b"@setDataFrame");
    // Chunk stream 3, type-0 header: timestamp 0, length, type 18 (AMF0 data), stream 0.
    let mut chunk = vec![0x03, 0, 0, 0, 0, 0, payload.len() as u8, 18, 0, 0, 0, 0];
    chunk.extend_from_slice(&payload);
    s.write_all(&chunk).await.unwrap();
    assert!(
        closed_within(&mut s, WAIT).await,
        "the connection that made the parser panic is closed"
    );
    assert_eq!(server.media.rtmp_parser_panics(), 1, "the panic is counted");

    // The live publisher was not disturbed, and the port still accepts connections.
    live.video(0, avc(true, true, 40)).await;
    live.video(40, avc(true, false, 200)).await;
    assert!(server.media.is_publishing(ROOM));
    let _ = handshaken(server.rtmp).await;
    drop(live);
    assert!(eventually(WAIT, || !server.media.is_publishing(ROOM)).await);
    still_serves(&server).await;
}

/// Before publish or play, a peer may send at most `PRE_AUTH_BYTES`: here the parts of one
/// never-ending message, which `rml_rtmp` would otherwise buffer up to 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_publishes_or_plays_is_cut_after_the_byte_limit() {
    let server = TestServer::start(TestAuth::with_room(KEY, ROOM)).await;
    let mut s = handshaken(server.rtmp).await;
    // One AMF0 data message announcing 16 MiB - 1, sent in 128-byte chunks (the default size).
    let mut first = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 18, 0, 0, 0, 0];
    first.extend_from_slice(&[0u8; 128]);
    let mut next = vec![0xc3];
    next.extend_from_slice(&[0u8; 128]);
    s.write_all(&first).await.unwrap();
    let mut sent = first.len();
    // Below the limit: still open.
    while sent + next.len() < PRE_AUTH_BYTES - 4096 {
        s.write_all(&next).await.unwrap();
        sent += next.len();
    }
    assert!(
        !closed_within(&mut s, Duration::from_millis(300)).await,
        "closed below the limit, after {sent} bytes"
    );
    // Past the limit: closed.
    let mut cut = false;
    while sent < 2 * PRE_AUTH_BYTES {
        if s.write_all(&next).await.is_err() {
            cut = true;
            break;
        }
        sent += next.len();
    }
    assert!(
        cut || closed_within(&mut s, WAIT).await,
        "still open after {sent} bytes without publish or play"
    );
    still_serves(&server).await;
}

/// A peer that stalls in the handshake is closed at the handshake deadline (paused clock: the
/// deadline is exact, whatever the machine's load).
#[tokio::test(start_paused = true)]
async fn a_stalled_handshake_is_closed_at_the_deadline() {
    let server = TestServer::start(TestAuth::with_room(KEY, ROOM)).await;
    let mut s = TcpStream::connect(server.rtmp).await.unwrap();
    let opened = tokio::time::Instant::now();
    // C0 and half of C1, then nothing.
    s.write_all(&[0x03]).await.unwrap();
    s.write_all(&[0u8; 700]).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(2 * HANDSHAKE_TIMEOUT, s.read(&mut buf)).await {
            Err(_) => panic!("the stalled handshake was never closed"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    let waited = opened.elapsed();
    assert!(
        waited >= HANDSHAKE_TIMEOUT,
        "closed after {waited:?}, before the {HANDSHAKE_TIMEOUT:?} deadline"
    );
    assert!(
        waited < HANDSHAKE_TIMEOUT + Duration::from_secs(1),
        "closed after {waited:?}"
    );
}

/// The GOP cache is bounded: a GOP that grows past `max_gop_bytes` is dropped from the cache,
/// so a viewer joining then gets none of it (it starts with what is published after it joined),
/// not megabytes of old frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gop_cache_is_bounded() {
    const CAP: usize = 64 * 1024;
    let server = TestServer::start_with(
        TestAuth::with_room(KEY, ROOM),
        livehouse_media::HubConfig {
            max_gop_bytes: CAP,
            ..Default::default()
        },
    )
    .await;
    let mut p = Publisher::start(server.rtmp, KEY).await;
    p.video(0, avc(true, true, 40)).await;
    assert!(eventually(WAIT, || server.media.is_publishing(ROOM)).await);
    // A viewer watching all along tells when the server has taken a frame.
    let mut watching = join(&server).await;
    // A GOP within the cap: a viewer joining now gets it from the cache.
    p.video(40, avc(true, false, 4096)).await;
    for i in 1..=4 {
        p.video(40 + i * 40, avc(false, false, 4096)).await;
    }
    while next_frame(&mut watching).await.timestamp < 200 {}
    let first_gop = first_frames(&server, 5).await;
    assert_eq!(
        first_gop,
        [40, 80, 120, 160, 200],
        "a GOP under the cap is served from the cache"
    );
    // The same GOP grows past the cap (100 × 4 KiB more).
    for i in 5..=105 {
        p.video(40 + i * 40, avc(false, false, 4096)).await;
    }
    while next_frame(&mut watching).await.timestamp < 40 + 105 * 40 {}
    // A viewer joining now gets nothing of it: its first frame is the next one published.
    let mut viewer = join(&server).await;
    p.video(5000, avc(false, false, 4096)).await;
    let tag = next_frame(&mut viewer).await;
    assert_eq!(
        tag.timestamp, 5000,
        "after the cap, a new viewer gets nothing of the dropped GOP"
    );
    // A new keyframe starts a new cached GOP.
    p.video(5040, avc(true, false, 4096)).await;
    p.video(5080, avc(false, false, 4096)).await;
    while next_frame(&mut watching).await.timestamp < 5080 {}
    assert_eq!(first_frames(&server, 2).await, [5040, 5080]);
    still_publishing(&server);
}

fn still_publishing(server: &TestServer) {
    assert!(server.media.is_publishing(ROOM), "the publisher was kept");
}

async fn join(server: &TestServer) -> FlvClient {
    FlvClient::connect(server.http, &format!("/live/{ROOM}.flv"))
        .await
        .expect("viewer")
}

/// The next video frame (not a sequence header) of the viewer.
async fn next_frame(viewer: &mut FlvClient) -> FlvTag {
    loop {
        let tag = tokio::time::timeout(WAIT, viewer.next_tag())
            .await
            .expect("a tag in time")
            .expect("read")
            .expect("stream open");
        if tag.kind == 9 && !tag.is_video_seq_header() {
            return tag;
        }
    }
}

/// The timestamps of the first `n` video frames a viewer joining now gets.
async fn first_frames(server: &TestServer, n: usize) -> Vec<u32> {
    let mut viewer = join(server).await;
    let mut out = Vec::new();
    while out.len() < n {
        out.push(next_frame(&mut viewer).await.timestamp);
    }
    out
}

/// Random bytes in the handshake and after it: each connection is closed (or, for bytes that
/// still wait for more, closed once the peer ends its side), and the server keeps serving.
/// Deterministic (fixed seed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_rtmp_port_down() {
    let server = TestServer::start(TestAuth::with_room(KEY, ROOM)).await;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for round in 0..60 {
        let len = 1 + (next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut s = if round % 2 == 0 {
            TcpStream::connect(server.rtmp).await.unwrap()
        } else {
            handshaken(server.rtmp).await
        };
        // The server may close early (an error); writing into a closed socket is fine here.
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        assert!(
            closed_within(&mut s, WAIT).await,
            "round {round}: the connection was not closed"
        );
    }
    eprintln!(
        "parser panics caught on random input: {}",
        server.media.rtmp_parser_panics()
    );
    still_serves(&server).await;
}
