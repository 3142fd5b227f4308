//! Connection caps against the real binary (design §4, issue 9 point 3): on each listener (HTTP
//! with its WebSocket, IM TCP, RTMP) a client over its per-address cap, and any client over the
//! listener's total, is refused cleanly (HTTP 503, a closed socket), the refusal is counted on
//! `/metrics`, the connections already open keep working, and once the excess closes the server
//! serves new clients. `X-Forwarded-For` buys a client nothing unless it comes from the
//! `--trusted-proxy`; through it, each forwarded request (and WebSocket) counts for its client.
//!
//! Clients bind distinct loopback addresses (127.0.0.2, .3, …: Linux routes all of 127/8 to
//! `lo`) to act as different hosts; `--cap-loopback` makes the caps apply to them. A monitor
//! connection from 127.0.0.1 stays open to read `/metrics`, so the count of open HTTP
//! connections is always known.

use livehouse_e2e::Livehouse;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PER_IP: &str = "2";
const HTTP_TOTAL: &str = "6";
const TCP_TOTAL: &str = "4";
const PROXY: &str = "127.0.0.9";
/// Bound of every single network wait of this file.
const WAIT: Duration = Duration::from_secs(10);

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(WAIT, sock.connect(to))
        .await
        .expect("connect in time")
        .expect("connected")
}

/// True when the server closes the socket (EOF or reset) without sending a byte.
async fn closed_without_a_byte(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the server neither answered nor closed within {WAIT:?}"),
    }
}

/// One HTTP/1.1 request on an open connection (keep-alive); the status and the body.
async fn http(s: &mut TcpStream, path: &str, extra_headers: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nhost: livehouse\r\n{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("a status code");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("the body in time")
            .expect("read");
        assert!(n > 0, "closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    (status, body)
}

const WS_UPGRADE: &str = "connection: Upgrade\r\nupgrade: websocket\r\n\
    sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A connection from 127.0.0.1 that stays open and reads `/metrics`.
struct Monitor(TcpStream);

impl Monitor {
    async fn metrics(&mut self) -> String {
        let (status, body) = http(&mut self.0, "/metrics", "").await;
        assert_eq!(status, 200);
        body
    }

    /// The value of one series (`name{labels}`), 0 when absent.
    async fn value(&mut self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    async fn refused(&mut self, listener: &str, reason: &str) -> f64 {
        self.value(&format!(
            "livehouse_conn_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        ))
        .await
    }

    /// Waits until the listener counts `n` open connections (the server has seen the closes).
    async fn wait_open(&mut self, listener: &str, n: usize) {
        let series = format!("livehouse_conns_open{{listener=\"{listener}\"}}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.value(&series).await;
            if v == n as f64 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed {v}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An IM TCP frame (design §3): magic, code, length, JSON body.
fn im_frame(code: i32, body: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&18673u16.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(body.as_bytes());
    f
}

/// Sends a login with a wrong token; the gateway answers with a frame (the error).
async fn im_answers(s: &mut TcpStream) -> bool {
    let login = im_frame(
        1001,
        r#"{"appId":10001,"userId":1,"token":"wrong","roomId":1}"#,
    );
    if s.write_all(&login).await.is_err() {
        return false;
    }
    let mut head = [0u8; 10];
    match tokio::time::timeout(WAIT, s.read_exact(&mut head)).await {
        Ok(Ok(_)) => head[..2] == 18673u16.to_be_bytes(),
        _ => false,
    }
}

/// Does the RTMP handshake (C0 C1 → S0 S1 S2 → C2): true when the server took part.
async fn rtmp_handshakes(s: &mut TcpStream) -> bool {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(7u8, 1536));
    if s.write_all(&c0c1).await.is_err() {
        return false;
    }
    let mut s012 = vec![0u8; 1 + 1536 * 2];
    match tokio::time::timeout(WAIT, s.read_exact(&mut s012)).await {
        Ok(Ok(_)) if s012[0] == 3 => {}
        _ => return false,
    }
    // C2 echoes S1.
    s.write_all(&s012[1..1537]).await.is_ok()
}

#[tokio::test]
async fn caps_refuse_cleanly_are_counted_and_the_server_keeps_serving() {
    let lh = Livehouse::start(&[
        "--cap-loopback",
        "--max-conns-per-ip",
        PER_IP,
        "--max-http-conns",
        HTTP_TOTAL,
        "--max-im-tcp-conns",
        TCP_TOTAL,
        "--max-rtmp-conns",
        TCP_TOTAL,
        "--trusted-proxy",
        PROXY,
        "--im-login-timeout-secs",
        "60",
    ])
    .await;
    let mut mon = Monitor(connect_from("127.0.0.1", lh.http).await);
    // Only the monitor is open once the start-up health checks have closed.
    mon.wait_open("http", 1).await;

    // ---- HTTP: per address, then in all.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.2", lh.http).await;
        assert_eq!(http(&mut s, "/healthz", "").await.0, 200);
        held.push(s);
    }
    let mut over = connect_from("127.0.0.2", lh.http).await;
    let (status, body) = http(&mut over, "/healthz", "").await;
    assert_eq!(status, 503, "the third connection from one address: {body}");
    assert!(
        body.contains("too many connections from this address"),
        "{body}"
    );
    assert!(
        closed_without_a_byte(&mut over).await,
        "then the refused connection is closed"
    );
    assert_eq!(mon.refused("http", "per_ip").await, 1.0);
    // Monitor + 2 held = 3; three more from other addresses reach the total of 6.
    for src in ["127.0.0.3", "127.0.0.3", "127.0.0.4"] {
        let mut s = connect_from(src, lh.http).await;
        assert_eq!(http(&mut s, "/healthz", "").await.0, 200, "from {src}");
        held.push(s);
    }
    let mut over = connect_from("127.0.0.5", lh.http).await;
    let (status, body) = http(&mut over, "/healthz", "").await;
    assert_eq!(status, 503, "over the total: {body}");
    assert_eq!(mon.refused("http", "total").await, 1.0);
    for s in &mut held {
        assert_eq!(
            http(s, "/healthz", "").await.0,
            200,
            "open connections keep working"
        );
    }
    drop((held, over));
    mon.wait_open("http", 1).await;

    // ---- HTTP: X-Forwarded-For from a client that is not the trusted proxy buys nothing.
    let mut held = Vec::new();
    for i in 1..=2 {
        let mut s = connect_from("127.0.0.5", lh.http).await;
        let xff = format!("x-forwarded-for: 198.51.100.{i}\r\n");
        assert_eq!(http(&mut s, "/healthz", &xff).await.0, 200);
        held.push(s);
    }
    let mut over = connect_from("127.0.0.5", lh.http).await;
    let (status, _) = http(&mut over, "/healthz", "x-forwarded-for: 198.51.100.3\r\n").await;
    assert_eq!(status, 503, "counted by its own address, not the header's");
    assert_eq!(mon.refused("http", "per_ip").await, 2.0);
    drop((held, over));
    mon.wait_open("http", 1).await;

    // ---- HTTP through the trusted proxy: each request, and each WebSocket for as long as it is
    // open, counts for the client the proxy names.
    let client = "x-forwarded-for: 192.0.2.1, 203.0.113.7\r\n";
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut ws = connect_from(PROXY, lh.http).await;
        let (status, body) = http(&mut ws, "/ws", &format!("{client}{WS_UPGRADE}")).await;
        assert_eq!(status, 101, "WebSocket through the proxy: {body}");
        sockets.push(ws);
    }
    let mut third = connect_from(PROXY, lh.http).await;
    let (status, body) = http(&mut third, "/healthz", client).await;
    assert_eq!(status, 503, "a third request of that client: {body}");
    assert_eq!(mon.refused("http", "per_ip").await, 3.0);
    let other = "x-forwarded-for: 203.0.113.8\r\n";
    assert_eq!(
        http(&mut third, "/healthz", other).await.0,
        200,
        "another client of the proxy, on the same connection"
    );
    drop(sockets.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    while http(&mut third, "/healthz", client).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot of the closed WebSocket never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((sockets, third));
    mon.wait_open("http", 1).await;

    // ---- IM TCP and RTMP: per address, then in all; a refusal is a close before any byte.
    for (listener, addr) in [("im_tcp", lh.im_tcp), ("rtmp", lh.rtmp)] {
        let serves = |mut s: TcpStream| async move {
            let ok = if listener == "im_tcp" {
                im_answers(&mut s).await
            } else {
                rtmp_handshakes(&mut s).await
            };
            (ok, s)
        };
        let mut held = Vec::new();
        for src in ["127.0.0.2", "127.0.0.2"] {
            let (ok, s) = serves(connect_from(src, addr).await).await;
            assert!(ok, "{listener}: a connection under the caps is served");
            held.push(s);
        }
        let mut over = connect_from("127.0.0.2", addr).await;
        assert!(
            closed_without_a_byte(&mut over).await,
            "{listener}: the third from one address is closed"
        );
        assert_eq!(mon.refused(listener, "per_ip").await, 1.0, "{listener}");
        for src in ["127.0.0.3", "127.0.0.4"] {
            held.push(connect_from(src, addr).await);
        }
        mon.wait_open(listener, 4).await;
        let mut over = connect_from("127.0.0.5", addr).await;
        assert!(
            closed_without_a_byte(&mut over).await,
            "{listener}: over the total"
        );
        assert_eq!(mon.refused(listener, "total").await, 1.0, "{listener}");
        let (ok, kept) = serves(held.pop().unwrap()).await;
        assert!(ok, "{listener}: an open connection keeps working");
        drop((held, kept));
        mon.wait_open(listener, 0).await;
        let (ok, _s) = serves(connect_from("127.0.0.2", addr).await).await;
        assert!(ok, "{listener}: served again once the excess closed");
    }

    // And HTTP still serves a fresh client.
    let mut fresh = connect_from("127.0.0.2", lh.http).await;
    assert_eq!(http(&mut fresh, "/healthz", "").await.0, 200);
}
