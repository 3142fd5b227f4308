//! Every bad input of design §3, over real sockets: each is answered by an error frame or a
//! close, and the server keeps serving others.

mod common;

use common::*;
use futures::SinkExt;
use livehouse_core::cache::Cache;
use livehouse_core::events::keys;
use livehouse_im_core::protocol::{code, err, MAGIC, MAX_FRAME};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn server_still_works(env: &Env) {
    let mut c = env.tcp_login(4242, 1).await;
    c.send(code::HEARTBEAT, "{}").await;
    c.expect(code::HEARTBEAT).await;
    let mut w = env.ws_login(4343, 1).await;
    w.send(code::HEARTBEAT, "{}").await;
    w.expect(code::HEARTBEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_wrong_magic_closes() {
    let env = start().await;
    let mut c = TcpClient::connect(env.tcp).await;
    c.send_raw(&raw_frame(BAD_MAGIC, code::LOGIN, 2, b"{}"))
        .await;
    let seen = c.until_closed().await;
    assert_eq!(seen.len(), 1, "one error reply, then the close: {seen:?}");
    assert_eq!(seen[0].error.as_deref(), Some(err::BAD_MAGIC));
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_frame_over_64k_closes() {
    let env = start().await;
    let mut c = env.tcp_login(1, 1).await;
    // The header alone announces too much: closed before the body is sent.
    c.send_raw(&raw_frame(MAGIC, code::BIZ, MAX_FRAME as i32, b""))
        .await;
    let seen = c.until_closed().await;
    assert_eq!(seen[0].error.as_deref(), Some(err::TOO_LARGE));
    // A negative length too.
    let mut c = env.tcp_login(2, 1).await;
    c.send_raw(&raw_frame(MAGIC, code::BIZ, -5, b"")).await;
    c.until_closed().await;
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_message_over_64k_closes() {
    let env = start().await;
    let mut c = env.ws_login(1, 1).await;
    let big = format!(
        r#"{{"magic":18673,"code":1004,"body":"{}"}}"#,
        "x".repeat(MAX_FRAME)
    );
    let _ = c.ws.send(Message::Text(big.into())).await;
    let (_, close) = c.until_closed().await;
    assert_eq!(close, Some(1009), "docs/im.md promises close code 1009");
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_wrong_magic_closes() {
    let env = start().await;
    let mut c = env.ws_login(1, 1).await;
    c.send_text(r#"{"magic":1,"code":1004,"body":"{}"}"#).await;
    let (msgs, _) = c.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::BAD_MAGIC));
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_code_is_an_error_and_the_session_lives() {
    let env = start().await;
    let mut t = env.tcp_login(1, 1).await;
    t.send(4321, "{}").await;
    let e = t.expect(4321).await;
    assert_eq!(e.error.as_deref(), Some(err::UNKNOWN_CODE));
    t.send(code::HEARTBEAT, "{}").await;
    t.expect(code::HEARTBEAT).await;
    let mut w = env.ws_login(2, 1).await;
    w.send(77, "{}").await;
    assert_eq!(w.expect(77).await.error.as_deref(), Some(err::UNKNOWN_CODE));
    w.send(code::HEARTBEAT, "{}").await;
    w.expect(code::HEARTBEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_before_login_closes() {
    let env = start().await;
    for c in [code::HEARTBEAT, code::BIZ, code::ACK, code::LOGOUT, 4321] {
        let mut t = TcpClient::connect(env.tcp).await;
        t.send(c, &chat_body(1, 1, "hi")).await;
        let seen = t.until_closed().await;
        assert_eq!(seen.len(), 1, "code {c}");
        assert_eq!(seen[0].error.as_deref(), Some(err::NOT_LOGGED_IN));
    }
    let mut w = WsClient::connect(&env.ws_url()).await;
    w.send(code::BIZ, &chat_body(1, 1, "hi")).await;
    let (msgs, _) = w.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::NOT_LOGGED_IN));
    assert_eq!(env.gw.stats().chat_published, 0);
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_and_expired_tokens_are_refused() {
    let env = start().await;
    // Forged.
    let mut t = TcpClient::connect(env.tcp).await;
    t.send(code::LOGIN, &login_body(1, "forged", 1)).await;
    let seen = t.until_closed().await;
    assert_eq!(seen[0].error.as_deref(), Some(err::BAD_TOKEN));
    // Another user's token.
    let tok2 = env.token(2).await;
    let mut w = WsClient::connect(&env.ws_url()).await;
    w.send(code::LOGIN, &login_body(1, &tok2, 1)).await;
    let (msgs, _) = w.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::BAD_TOKEN));
    // Expired (a token stored with a short TTL, waited out).
    env.b
        .cache
        .set(
            &keys::im_token("shortlived"),
            "3",
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    eventually("token expiry", || async {
        env.b
            .cache
            .get(&keys::im_token("shortlived"))
            .await
            .unwrap()
            .is_none()
    })
    .await;
    let mut t = TcpClient::connect(env.tcp).await;
    t.send(code::LOGIN, &login_body(3, "shortlived", 1)).await;
    let seen = t.until_closed().await;
    assert_eq!(seen[0].error.as_deref(), Some(err::BAD_TOKEN));
    // Missing user id, wrong app id.
    let tok4 = env.token(4).await;
    let mut t = TcpClient::connect(env.tcp).await;
    t.send(code::LOGIN, &format!(r#"{{"token":"{tok4}"}}"#))
        .await;
    assert_eq!(
        t.until_closed().await[0].error.as_deref(),
        Some(err::BAD_TOKEN)
    );
    let mut t = TcpClient::connect(env.tcp).await;
    t.send(
        code::LOGIN,
        &format!(r#"{{"appId":1,"userId":4,"token":"{tok4}"}}"#),
    )
    .await;
    assert_eq!(
        t.until_closed().await[0].error.as_deref(),
        Some(err::BAD_APP_ID)
    );
    assert_eq!(env.gw.stats().sessions, 0);
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_is_an_error_and_the_session_lives() {
    let env = start().await;
    // TCP: a body that is not JSON, before and after login.
    let mut t = TcpClient::connect(env.tcp).await;
    t.send(code::LOGIN, "{not json").await;
    assert_eq!(
        t.expect(code::LOGIN).await.error.as_deref(),
        Some(err::BAD_JSON)
    );
    let tok = env.token(1).await;
    t.send(code::LOGIN, &login_body(1, &tok, 1)).await;
    assert_eq!(t.expect(code::LOGIN).await.data.as_deref(), Some("true"));
    t.send(code::BIZ, "[1,2").await;
    assert_eq!(
        t.expect(code::BIZ).await.error.as_deref(),
        Some(err::BAD_JSON)
    );
    t.send(code::HEARTBEAT, r#"{"userId":"abc"}"#).await;
    assert_eq!(
        t.expect(code::HEARTBEAT).await.error.as_deref(),
        Some(err::BAD_JSON)
    );
    t.send(code::HEARTBEAT, "{}").await;
    t.expect(code::HEARTBEAT).await;
    // WebSocket: an envelope that is not JSON, and a body that is not JSON.
    let mut w = env.ws_login(2, 1).await;
    w.send_text("hello?").await;
    assert_eq!(w.expect(0).await.error.as_deref(), Some(err::BAD_JSON));
    w.send_text(r#"{"magic":18673,"code":1003,"body":"{oops"}"#)
        .await;
    assert_eq!(
        w.expect(code::BIZ).await.error.as_deref(),
        Some(err::BAD_JSON)
    );
    w.send(code::HEARTBEAT, "{}").await;
    w.expect(code::HEARTBEAT).await;
    // Binary WebSocket messages that are not a frame.
    w.ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let (msgs, _) = w.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::BAD_MAGIC));
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_ws_route_is_refused() {
    let env = start().await;
    let (status, _) = http(env.http, "GET", "/ws", &[], "").await;
    assert_eq!(status, 426);
    let (status, _) = http(env.http, "GET", "/tok/notanumber/1001/3", &[], "").await;
    assert_eq!(status, 400);
    server_still_works(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_without_reading_is_dropped() {
    let env = start().await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(env.tcp).await.unwrap();
    let mut c = TcpClient {
        io: tokio_util::codec::Framed::new(stream, livehouse_im_core::protocol::FrameCodec),
    };
    let tok = env.token(1).await;
    c.send(code::LOGIN, &login_body(1, &tok, 1)).await;
    c.expect(code::LOGIN).await;
    // Requests whose replies are never read: the server's write queue is bounded.
    let frame = raw_frame(MAGIC, 4321, 2, b"{}");
    let flood: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 20_000)
        .collect();
    let mut raw = c.io.into_inner();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(WAIT, raw.write_all(&flood)).await;
        raw
    });
    eventually("flooding session dropped", || async {
        env.gw.stats().connections == 0
    })
    .await;
    drop(writer.await.unwrap());
    server_still_works(&env).await;
}

/// Regression (issue 9): a continuation frame announcing `u64::MAX` bytes after a one-byte
/// fragment made the length check wrap and the session task panic before login. Now it is a
/// clean close 1009, the connection leaves the index, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_continuation_with_a_huge_length_closes_1009() {
    use tokio::io::AsyncWriteExt;
    let env = start().await;
    for len in [u64::MAX, u64::MAX / 2, 1 << 40] {
        let mut s = raw_ws(env.http).await;
        s.write_all(&client_ws_frame(false, 0x1, b"{"))
            .await
            .unwrap();
        let mut cont = vec![0x80u8, 0x80 | 127];
        cont.extend_from_slice(&len.to_be_bytes());
        cont.extend_from_slice(&[1, 2, 3, 4]);
        s.write_all(&cont).await.unwrap();
        assert_eq!(raw_ws_close_code(&mut s).await, Some(1009), "length {len}");
    }
    eventually("no connection left behind", || async {
        env.gw.stats().connections == 0
    })
    .await;
    server_still_works(&env).await;
}

/// WebSocket framing violations over a real socket get the close codes docs/im.md promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_framing_violations_close_with_1002_and_1007() {
    use tokio::io::AsyncWriteExt;
    let env = start().await;
    // Unmasked client frame: protocol error 1002.
    let mut s = raw_ws(env.http).await;
    s.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(raw_ws_close_code(&mut s).await, Some(1002));
    // Unknown opcode: 1002.
    let mut s = raw_ws(env.http).await;
    s.write_all(&client_ws_frame(true, 0x3, b"x"))
        .await
        .unwrap();
    assert_eq!(raw_ws_close_code(&mut s).await, Some(1002));
    // Text that is not UTF-8: 1007.
    let mut s = raw_ws(env.http).await;
    s.write_all(&client_ws_frame(true, 0x1, &[0xff, 0xfe, 0xfd]))
        .await
        .unwrap();
    assert_eq!(raw_ws_close_code(&mut s).await, Some(1007));
    server_still_works(&env).await;
}

/// Design §4: a connection that has not logged in within the login deadline is closed, and
/// frames that are not a login (the first-message code 1000 here) do not keep it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_logs_in_is_closed_at_the_login_deadline() {
    let env = start_with(|c| c.login_timeout = Duration::from_millis(400)).await;
    let mut t = TcpClient::connect(env.tcp).await;
    let mut w = WsClient::connect(&env.ws_url()).await;
    let t0 = tokio::time::Instant::now();
    let keep_busy = async {
        for _ in 0..3 {
            t.send(code::FIRST, "").await;
            w.send(code::FIRST, "").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    keep_busy.await;
    let seen = t.until_closed().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].error.as_deref(), Some(err::LOGIN_TIMEOUT));
    let (msgs, close) = w.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::LOGIN_TIMEOUT));
    assert_eq!(close, Some(1008));
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "closed before the deadline"
    );
    assert_eq!(env.gw.stats().login_timed_out, 2);
    // A session that logs in in time stays past the deadline.
    let mut ok = env.tcp_login(5, 1).await;
    ok.assert_silent(
        Duration::from_millis(700),
        "a logged-in session outlives the login deadline",
    )
    .await;
}
