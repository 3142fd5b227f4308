//! Sessions over real sockets: login (TCP, WebSocket, URL form), heartbeat, logout, chat across
//! clients, ACK and the single retry, idle close, duplicate login, rate limit, slow readers.

mod common;

use common::*;
use livehouse_core::bus::{TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_core::cache::Cache;
use livehouse_core::events::keys;
use livehouse_im_core::protocol::{code, err};
use livehouse_im_core::registry;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_login_heartbeat_logout() {
    let env = start().await;
    let online = env.watch_presence(TOPIC_ONLINE).await;
    let offline = env.watch_presence(TOPIC_OFFLINE).await;
    let mut c = env.tcp_login(7, 100).await;
    assert!(registry::is_online(&*env.cache, 7).await.unwrap());
    assert_eq!(
        cache_get(&env, &keys::user_gateway(7)).await.as_deref(),
        Some("gw-test")
    );
    assert!(env
        .cache
        .zscore(&keys::online_shard(7), "7")
        .await
        .unwrap()
        .is_some());
    eventually("online event", || async { online.lock().len() == 1 }).await;
    assert_eq!(online.lock()[0].room_id, 100);

    c.send(code::HEARTBEAT, r#"{"appId":10001,"userId":7}"#)
        .await;
    let hb = c.expect(code::HEARTBEAT).await;
    assert_eq!(hb.data.as_deref(), Some("true"));

    c.send(code::LOGOUT, r#"{"appId":10001,"userId":7}"#).await;
    let rest = c.until_closed().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].code, code::LOGOUT);
    eventually("offline event", || async { offline.lock().len() == 1 }).await;
    assert!(!registry::is_online(&*env.cache, 7).await.unwrap());
    assert_eq!(offline.lock()[0].user_id, 7);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(offline.lock().len(), 1, "offline emitted exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_login_by_message_and_by_url() {
    let env = start().await;
    let mut a = env.ws_login(1, 5).await;
    a.send(code::FIRST, "").await;
    a.send(code::HEARTBEAT, "{}").await;
    a.expect(code::HEARTBEAT).await;

    let tok = env.token(2).await;
    let mut b = WsClient::connect(&format!("ws://{}/{tok}/2/1001/5", env.http)).await;
    let r = b.expect(code::LOGIN).await;
    assert_eq!(r.data.as_deref(), Some("true"));
    assert_eq!(r.room_id, Some(5));
    // A client that still sends its login message is answered like a login.
    b.send(code::LOGIN, &login_body(2, &tok, 5)).await;
    b.expect(code::LOGIN).await;
    assert!(registry::is_online(&*env.cache, 2).await.unwrap());

    // A bad URL token never logs in.
    let mut c = WsClient::connect(&format!("ws://{}/nope/3/1001/5", env.http)).await;
    let (msgs, _) = c.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::BAD_TOKEN));
    assert!(!registry::is_online(&*env.cache, 3).await.unwrap());
    assert_eq!(env.gw.stats().sessions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_clients_with_ack() {
    let env = start().await;
    env.fanout_to(vec![1, 2, 3]).await;
    let mut a = env.ws_login(1, 9).await;
    let mut b = env.tcp_login(2, 9).await;
    let mut c = env.ws_login(3, 9).await;
    a.send(code::BIZ, &chat_body(1, 9, "hello room")).await;
    for m in [b.expect(code::BIZ).await, c.expect(code::BIZ).await] {
        assert_eq!(m.user_id, Some(1), "sender id");
        assert_eq!(m.room_id, Some(9));
        assert_eq!(m.biz_code, Some(5555));
        let data: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["content"], "hello room");
        assert!(!m.msg_id.as_deref().unwrap().is_empty());
    }
    // The sender is not echoed.
    a.assert_silent(Duration::from_millis(200), "no echo to the sender")
        .await;
    // TCP sender to WebSocket receivers too.
    b.send(code::BIZ, &chat_body(2, 9, "from tcp")).await;
    let m1 = a.expect(code::BIZ).await;
    let m3 = c.expect(code::BIZ).await;
    assert_eq!(m1.msg_id, m3.msg_id, "one message id per message");
    assert_eq!(env.gw.stats().chat_published, 2);
}

/// ACKs clear a delivery whichever reader takes them: the compact form clients write (the
/// allocation-free fast path) and any other valid form (the general parser), on both wires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_compact_and_other_forms_both_clear_the_retry() {
    let env = start().await;
    let mut fast_ws = env.ws_login(1, 4).await;
    let mut slow_ws = env.ws_login(2, 4).await;
    let mut fast_tcp = env.tcp_login(3, 4).await;
    let mut slow_tcp = env.tcp_login(4, 4).await;
    let id = env.push(4, 99, vec![1, 2, 3, 4], "x").await;
    for c in [&mut fast_ws, &mut slow_ws] {
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id.as_str())
        );
    }
    for c in [&mut fast_tcp, &mut slow_tcp] {
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id.as_str())
        );
    }
    // As web/js/im.js writes it (JSON.stringify, keys in insertion order, no spaces).
    let body = format!(r#"{{"appId":10001,"userId":1,"msgId":"{id}"}}"#);
    fast_ws
        .send_text(&format!(
            r#"{{"magic":18673,"code":1005,"len":{},"body":{}}}"#,
            body.len(),
            serde_json::to_string(&body).unwrap()
        ))
        .await;
    // Spaces and another key order: not the compact form, still a valid ACK.
    let body = format!(r#"{{ "msgId": "{id}", "userId": 2 }}"#);
    slow_ws
        .send_text(&format!(
            r#"{{"body": {}, "code": 1005, "magic": 18673, "len": {}}}"#,
            serde_json::to_string(&body).unwrap(),
            body.len()
        ))
        .await;
    fast_tcp
        .send(code::ACK, &format!(r#"{{"msgId":"{id}"}}"#))
        .await;
    slow_tcp
        .send(code::ACK, &format!(r#"{{ "msgId" : "{id}" }}"#))
        .await;
    // Nobody gets the retry (ack timeout 500 ms), and no ACK was answered with an error.
    fast_ws
        .assert_silent(Duration::from_millis(1200), "no retry after a compact ACK")
        .await;
    slow_ws
        .assert_silent(Duration::from_millis(100), "no retry after another form")
        .await;
    fast_tcp
        .assert_silent(Duration::from_millis(100), "no retry after a compact ACK")
        .await;
    slow_tcp
        .assert_silent(Duration::from_millis(100), "no retry after another form")
        .await;
    assert_eq!(env.gw.stats().retried, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_clears_and_missing_ack_gets_one_retry() {
    let env = start().await;
    let mut acker = env.tcp_login(1, 4).await;
    let mut silent = env.ws_login(2, 4).await;
    let id = env.push(4, 99, vec![1, 2], "x").await;
    let m = acker.expect(code::BIZ).await;
    assert_eq!(m.msg_id.as_deref(), Some(id.as_str()));
    acker.send(code::ACK, &ack_body(1, &id)).await;
    let first = silent.expect(code::BIZ).await;
    assert_eq!(first.msg_id.as_deref(), Some(id.as_str()));
    let t0 = tokio::time::Instant::now();
    // No ACK: exactly one more copy after ~ack_timeout (500 ms), then nothing.
    let again = silent.expect(code::BIZ).await;
    assert_eq!(again.msg_id.as_deref(), Some(id.as_str()));
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "retry came too early"
    );
    silent
        .assert_silent(Duration::from_millis(1300), "one retry only")
        .await;
    // The ACKing client got it once.
    acker
        .assert_silent(Duration::from_millis(100), "no retry after the ACK")
        .await;
    let s = env.gw.stats();
    assert_eq!(s.retried, 1);
    assert_eq!(s.unacked_dropped, 1);
    // Other rooms do not see the message; users not on this gateway are skipped.
    let mut other = env.tcp_login(3, 5).await;
    env.push(4, 99, vec![3, 12345], "y").await;
    other
        .assert_silent(Duration::from_millis(200), "another room's message")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed_and_heartbeats_keep_it() {
    let env = start_with(|c| c.heartbeat_gap = Duration::from_millis(300)).await;
    let offline = env.watch_presence(TOPIC_OFFLINE).await;
    let mut idle = env.tcp_login(1, 3).await;
    let mut alive = env.ws_login(2, 3).await;
    let t0 = tokio::time::Instant::now();
    let beat = tokio::spawn(async move {
        for _ in 0..12 {
            alive.send(code::HEARTBEAT, "{}").await;
            alive.expect(code::HEARTBEAT).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        alive
    });
    idle.until_closed().await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(550),
        "closed after {waited:?}"
    );
    eventually("offline of the idle user", || async {
        offline.lock().iter().any(|e| e.user_id == 1)
    })
    .await;
    assert!(!registry::is_online(&*env.cache, 1).await.unwrap());
    let mut alive = beat.await.unwrap();
    // 1.2 s > 2 gaps: still open thanks to heartbeats, and still bound.
    alive.send(code::HEARTBEAT, "{}").await;
    alive.expect(code::HEARTBEAT).await;
    assert!(registry::is_online(&*env.cache, 2).await.unwrap());
    assert_eq!(env.gw.stats().idle_closed, 1);
    // A connection that never logs in is closed too.
    let mut anon = TcpClient::connect(env.tcp).await;
    anon.until_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_login_replaces_the_first_session() {
    let env = start().await;
    let offline = env.watch_presence(TOPIC_OFFLINE).await;
    let mut first = env.ws_login(5, 1).await;
    let mut other_room = env.tcp_login(5, 2).await;
    let mut second = env.tcp_login(5, 1).await;
    let (msgs, _) = first.until_closed().await;
    assert_eq!(msgs.last().map(|m| m.code), Some(code::LOGOUT));
    // The replacement keeps the presence: no offline event, still bound.
    second.send(code::HEARTBEAT, "{}").await;
    second.expect(code::HEARTBEAT).await;
    assert!(offline.lock().is_empty());
    assert!(registry::is_online(&*env.cache, 5).await.unwrap());
    // Deliveries go to the new session only; the other room's session is untouched.
    env.push(1, 99, vec![5], "to room 1").await;
    second.expect(code::BIZ).await;
    other_room
        .assert_silent(Duration::from_millis(150), "a message of another room")
        .await;
    assert_eq!(env.gw.stats().sessions, 2);
    second.send(code::LOGOUT, "{}").await;
    second.until_closed().await;
    eventually("one offline event", || async { offline.lock().len() == 1 }).await;
    // User 5 still has a session in room 2: binding kept.
    assert!(registry::is_online(&*env.cache, 5).await.unwrap());
    other_room.send(code::LOGOUT, "{}").await;
    other_room.until_closed().await;
    eventually("unbound", || async {
        !registry::is_online(&*env.cache, 5).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_validation_and_rate_limit() {
    let env = start().await;
    env.fanout_to(vec![1, 2]).await;
    let mut a = env.ws_login(1, 8).await;
    let mut b = env.tcp_login(2, 8).await;
    let checks = [
        (
            serde_json::json!({"bizCode": 1, "data": "{\"content\":\"x\"}"}).to_string(),
            err::BAD_BIZ_CODE,
        ),
        (chat_body(1, 8, ""), err::EMPTY_CONTENT),
        (chat_body(1, 8, "   "), err::EMPTY_CONTENT),
        (chat_body(1, 8, &"é".repeat(201)), err::CONTENT_TOO_LONG),
        (chat_body(1, 9, "other room"), err::WRONG_ROOM),
        (
            serde_json::json!({"bizCode": 5555, "data": "not json"}).to_string(),
            err::BAD_JSON,
        ),
    ];
    for (body, slug) in checks {
        a.send(code::BIZ, &body).await;
        let e = a.expect(code::BIZ).await;
        assert_eq!(e.error.as_deref(), Some(slug), "for {body}");
        assert_eq!(e.data.as_deref(), Some("false"));
    }
    // 200 characters exactly is fine.
    a.send(code::BIZ, &chat_body(1, 8, &"é".repeat(200))).await;
    let m = b.expect(code::BIZ).await;
    b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
        .await;
    // Burst of 6 more: the bucket (5/s, one already used) refuses some with an error frame.
    for i in 0..6 {
        a.send(code::BIZ, &chat_body(1, 8, &format!("m{i}"))).await;
    }
    let mut limited = 0;
    loop {
        match a.recv_within(Duration::from_millis(300)).await {
            Recv::Msg(m) => assert_eq!(m.error.as_deref(), Some(err::RATE_LIMITED)),
            Recv::Timeout => break,
            Recv::Closed(why) => panic!("sender closed: {why}"),
        }
        limited += 1;
    }
    assert!(limited >= 2, "rate limited {limited}");
    let mut delivered = 0;
    loop {
        let m = match b.recv_within(Duration::from_millis(200)).await {
            Recv::Msg(m) => m,
            Recv::Timeout => break,
            Recv::Closed(why) => panic!("receiver closed: {why}"),
        };
        b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
            .await;
        delivered += 1;
    }
    assert_eq!(delivered + limited, 6);
    assert!(delivered <= 4);
    // After a second the user may talk again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.send(code::BIZ, &chat_body(1, 8, "later")).await;
    b.expect(code::BIZ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_without_hurting_others() {
    let env = start_with(|c| c.outbox_limit = 8).await;
    let mut slow = env.tcp_login(1, 1).await;
    let mut fast = env.ws_login(2, 1).await;
    let big = "x".repeat(30_000);
    let mut got = 0;
    for _ in 0..400 {
        env.push(1, 99, vec![1, 2], &big).await;
        // The fast reader keeps up (and ACKs).
        let m = fast.expect(code::BIZ).await;
        fast.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
            .await;
        got += 1;
        if env.gw.stats().slow_kicked > 0 {
            break;
        }
    }
    assert!(env.gw.stats().slow_kicked >= 1, "slow reader never kicked");
    eventually("slow session gone", || async {
        env.gw.stats().connections == 1
    })
    .await;
    assert!(got < 400);
    // The slow client sees an end of stream after whatever was in flight.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match slow.recv_within(Duration::from_millis(500)).await {
            Recv::Closed(_) => break,
            Recv::Msg(_) => assert!(tokio::time::Instant::now() < deadline, "never closed"),
            Recv::Timeout => panic!("the slow reader's connection is still open"),
        }
    }
    env.push(1, 99, vec![1, 2], "still fine").await;
    fast.expect(code::BIZ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_fanout_shares_frames_and_keeps_order() {
    let env = start_with(|c| c.fanout_linger = Duration::from_millis(30)).await;
    let mut a = env.ws_login(1, 1).await;
    let mut b = env.tcp_login(2, 1).await;
    // Three messages inside one linger window; the second excludes user 2.
    let m1 = env.push(1, 9, vec![1, 2], "one").await;
    let m2 = env.push(1, 2, vec![1], "two").await;
    let m3 = env.push(1, 9, vec![1, 2], "three").await;
    let got_a: Vec<_> = [
        a.expect(code::BIZ).await,
        a.expect(code::BIZ).await,
        a.expect(code::BIZ).await,
    ]
    .into_iter()
    .map(|m| m.msg_id.clone().unwrap())
    .collect();
    assert_eq!(got_a, vec![m1.clone(), m2, m3.clone()]);
    let got_b: Vec<_> = [b.expect(code::BIZ).await, b.expect(code::BIZ).await]
        .into_iter()
        .map(|m| m.msg_id.clone().unwrap())
        .collect();
    assert_eq!(got_b, vec![m1, m3]);
    assert_eq!(env.gw.stats().delivered, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_carries_the_name_the_token_was_issued_for_not_the_one_claimed() {
    let env = start().await;
    env.fanout_to(vec![1, 2]).await;
    let tok = registry::issue_named_im_token(&*env.cache, 1, "Alice")
        .await
        .unwrap();
    let mut a = WsClient::connect(&env.ws_url()).await;
    a.send(code::LOGIN, &login_body(1, &tok, 9)).await;
    assert_eq!(a.expect(code::LOGIN).await.data.as_deref(), Some("true"));
    let mut b = env.tcp_login(2, 9).await;
    let claimed = r#"{"roomId":9,"content":"hi","senderName":"The Admin"}"#;
    let body = serde_json::json!({"appId": 10001, "userId": 1, "bizCode": 5555, "data": claimed});
    let t0 = std::time::Instant::now();
    a.send(code::BIZ, &body.to_string()).await;
    eprintln!("DEBUG sent {:?}", t0.elapsed());
    let m = b.expect(code::BIZ).await;
    eprintln!("DEBUG got {:?}", t0.elapsed());
    let data: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
    assert_eq!(
        data["senderName"], "Alice",
        "the server's name wins over the claimed one"
    );
    assert_eq!(data["content"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_restores_an_expired_binding_and_announces_the_session_again() {
    let env = start().await;
    let online = env.watch_presence(TOPIC_ONLINE).await;
    let mut c = env.tcp_login(21, 300).await;
    eventually("first online event", || async { online.lock().len() == 1 }).await;
    // A cache outage longer than the binding's TTL: the binding is gone.
    env.cache.del(&keys::user_gateway(21)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // The gateway refreshes at most once per quarter gap, so keep beating until it does.
        c.send(code::HEARTBEAT, r#"{"appId":10001,"userId":21}"#)
            .await;
        assert_eq!(
            c.expect(code::HEARTBEAT).await.data.as_deref(),
            Some("true")
        );
        if cache_get(&env, &keys::user_gateway(21)).await.as_deref() == Some("gw-test") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binding not restored by heartbeats"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("the session is announced again", || async {
        online.lock().len() == 2
    })
    .await;
    let again = online.lock()[1].clone();
    assert_eq!((again.user_id, again.room_id), (21, 300));
}

/// Design §4: the delivered `data` is rebuilt from validated fields; unknown fields (60 KB of
/// junk here) and a forged `userId` or `senderName` inside `data` never reach the room, and a
/// message whose delivered frame would exceed 2 KiB is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_data_carries_only_validated_fields_within_two_kib() {
    let env = start().await;
    env.fanout_to(vec![1, 2]).await;
    // A display name of 64 double quotes: each one is escaped at every level of the frame.
    let name = "\"".repeat(64);
    let tok = registry::issue_named_im_token(&*env.cache, 1, &name)
        .await
        .unwrap();
    let mut a = WsClient::connect(&env.ws_url()).await;
    a.send(code::LOGIN, &login_body(1, &tok, 9)).await;
    assert_eq!(a.expect(code::LOGIN).await.data.as_deref(), Some("true"));
    let mut b = env.tcp_login(2, 9).await;
    let data = serde_json::json!({
        "roomId": 9, "content": "hi", "userId": 777, "junk": "j".repeat(60_000),
        "senderName": "someone else"
    });
    let body =
        serde_json::json!({"appId": 10001, "userId": 1, "bizCode": 5555, "data": data.to_string()});
    a.send(code::BIZ, &body.to_string()).await;
    let m = b.expect(code::BIZ).await;
    let got: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"roomId": 9, "content": "hi", "senderName": name})
    );
    assert_eq!(m.user_id, Some(1), "the sender is the session's user");
    b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
        .await;
    // 200 double quotes fit the character limit, but with that name not the frame limit.
    a.send(code::BIZ, &chat_body(1, 9, &"\"".repeat(200))).await;
    assert_eq!(
        a.expect(code::BIZ).await.error.as_deref(),
        Some(err::CONTENT_TOO_LONG)
    );
    b.assert_silent(
        Duration::from_millis(300),
        "the refused message is not delivered",
    )
    .await;
    // 150 fit.
    a.send(code::BIZ, &chat_body(1, 9, &"\"".repeat(150))).await;
    b.expect(code::BIZ).await;
}
