//! Connections over real sockets, through the real `msg`: login (TCP, WebSocket, URL form),
//! heartbeat, logout, chat across clients with the sender's answer, ACK forms, chat validation
//! and the rate limit, slow readers, coalescing, and what reaches a room (design §3, §4).

mod common;

use common::*;
use livehouse_core::bus::{TOPIC_OFFLINE, TOPIC_ONLINE};
use livehouse_im_core::protocol::{code, err};
use livehouse_im_core::registry;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_login_heartbeat_logout() {
    let env = start().await;
    let online = env.watch_presence(TOPIC_ONLINE).await;
    let offline = env.watch_presence(TOPIC_OFFLINE).await;
    let (mut c, reply) = env.tcp_login_with(7, 100, serde_json::json!({})).await;
    assert_eq!(reply.room_id, Some(100));
    assert_eq!(reply.offset, Some(0), "a new room's stream starts at 0");
    assert!(reply.epoch.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(registry::is_online(&*env.b.presence, 7).await.unwrap());
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
    eventually("not online", || async {
        !registry::is_online(&*env.b.presence, 7).await.unwrap()
    })
    .await;
    assert_eq!(offline.lock()[0].user_id, 7);
    // One more round trip on the bus proves no second offline event was queued.
    let mut other = env.tcp_login(8, 100).await;
    other.send(code::LOGOUT, "{}").await;
    other.until_closed().await;
    eventually("the second user's offline", || async {
        offline.lock().len() == 2
    })
    .await;
    assert_eq!(
        offline.lock()[1].user_id,
        8,
        "offline emitted once per connection"
    );
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
    assert_eq!(r.offset, Some(0));
    // A client that still sends its login message is answered like a login.
    b.send(code::LOGIN, &login_body(2, &tok, 5)).await;
    b.expect(code::LOGIN).await;
    assert!(registry::is_online(&*env.b.presence, 2).await.unwrap());

    // A bad URL token never logs in.
    let mut c = WsClient::connect(&format!("ws://{}/nope/3/1001/5", env.http)).await;
    let (msgs, _) = c.until_closed().await;
    assert_eq!(msgs[0].error.as_deref(), Some(err::BAD_TOKEN));
    assert!(!registry::is_online(&*env.b.presence, 3).await.unwrap());
    assert_eq!(env.gw.stats().sessions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_the_room_with_offsets_and_the_sender_gets_its_answer() {
    let env = start().await;
    let mut a = env.ws_login(1, ROOM).await;
    let mut b = env.tcp_login(2, ROOM).await;
    let mut c = env.ws_login(3, ROOM).await;
    a.send(code::BIZ, &chat_body(1, ROOM, "hello room")).await;
    let answer = a.expect(code::BIZ).await;
    assert_eq!(answer.data.as_deref(), Some("true"), "{answer:?}");
    let id = answer.msg_id.clone().expect("the answer names the message");
    for m in [b.expect(code::BIZ).await, c.expect(code::BIZ).await] {
        assert_eq!(m.user_id, Some(1), "sender id");
        assert_eq!(m.room_id, Some(ROOM));
        assert_eq!(m.biz_code, Some(5555));
        assert_eq!(content(&m), "hello room");
        assert_eq!(m.msg_id.as_deref(), Some(id.as_str()));
        assert_eq!(m.offset, Some(1), "the room's first message");
        assert!(m.epoch.is_some());
        b.send(code::ACK, &ack_body(2, &id)).await;
        c.send(code::ACK, &ack_body(3, &id)).await;
    }
    // The sender's connection does not get its own message back.
    a.assert_silent(Duration::from_millis(300), "no echo to the sender")
        .await;
    // TCP sender to WebSocket receivers too; offsets go on.
    b.send(code::BIZ, &chat_body(2, ROOM, "from tcp")).await;
    assert_eq!(b.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m1 = a.expect(code::BIZ).await;
    let m3 = c.expect(code::BIZ).await;
    assert_eq!(m1.msg_id, m3.msg_id, "one message id per message");
    assert_eq!((m1.offset, m3.offset), (Some(2), Some(2)));
    assert_eq!(env.gw.stats().chat_published, 2);
}

/// ACKs clear a delivery whichever reader takes them: the compact form clients write (the
/// allocation-free fast path), any other valid form (the general parser), and several ids at
/// once (`msgIds`), on both wires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_every_form_clear_the_retry() {
    // A generous ACK deadline, so an ACK slowed by a busy machine still counts as in time: the
    // exact timing of the retry is tested under paused time in timers.rs.
    const ACK: Duration = Duration::from_secs(3);
    let env = start_with(|c| {
        c.ack_timeout = ACK;
        c.heartbeat_gap = Duration::from_secs(30);
    })
    .await;
    let mut fast_ws = env.ws_login(1, 4).await;
    let mut slow_ws = env.ws_login(2, 4).await;
    let mut fast_tcp = env.tcp_login(3, 4).await;
    let mut many_tcp = env.tcp_login(4, 4).await;
    let id = env.push(4, 99, "x").await;
    let id2 = env.push(4, 99, "y").await;
    for c in [&mut fast_ws, &mut slow_ws] {
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id2.as_str())
        );
    }
    for c in [&mut fast_tcp, &mut many_tcp] {
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            c.expect(code::BIZ).await.msg_id.as_deref(),
            Some(id2.as_str())
        );
    }
    // As web/js/im.js writes it (JSON.stringify, keys in insertion order, no spaces).
    for i in [&id, &id2] {
        let body = format!(r#"{{"appId":10001,"userId":1,"msgId":"{i}"}}"#);
        fast_ws
            .send_text(&format!(
                r#"{{"magic":18673,"code":1005,"len":{},"body":{}}}"#,
                body.len(),
                serde_json::to_string(&body).unwrap()
            ))
            .await;
    }
    // Spaces and another key order: not the compact form, still a valid ACK.
    for i in [&id, &id2] {
        let body = format!(r#"{{ "msgId": "{i}", "userId": 2 }}"#);
        slow_ws
            .send_text(&format!(
                r#"{{"body": {}, "code": 1005, "magic": 18673, "len": {}}}"#,
                serde_json::to_string(&body).unwrap(),
                body.len()
            ))
            .await;
    }
    for i in [&id, &id2] {
        fast_tcp
            .send(code::ACK, &format!(r#"{{"msgId":"{i}"}}"#))
            .await;
    }
    many_tcp
        .send(code::ACK, &format!(r#"{{"msgIds":["{id}","{id2}"]}}"#))
        .await;
    // Nobody gets the retry (due one sweep after the ACK deadline, a sweep being at most
    // 500 ms), and no ACK was answered with an error.
    fast_ws
        .assert_silent(
            ACK + Duration::from_millis(1200),
            "no retry after compact ACKs",
        )
        .await;
    slow_ws
        .assert_silent(Duration::from_millis(100), "no retry after other forms")
        .await;
    fast_tcp
        .assert_silent(Duration::from_millis(100), "no retry after compact ACKs")
        .await;
    many_tcp
        .assert_silent(Duration::from_millis(100), "no retry after one msgIds ACK")
        .await;
    let s = env.gw.stats();
    assert_eq!((s.retried, s.unacked_dropped), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_validation_and_rate_limit() {
    let env = start().await;
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
    // A login without a room must name the room in each message.
    let mut roomless = TcpClient::connect(env.tcp).await;
    let tok = env.token(3).await;
    roomless
        .send(code::LOGIN, &format!(r#"{{"userId":3,"token":"{tok}"}}"#))
        .await;
    assert_eq!(
        roomless.expect(code::LOGIN).await.data.as_deref(),
        Some("true")
    );
    let no_room = serde_json::json!({"bizCode": 5555, "data": "{\"content\":\"hi\"}"});
    roomless.send(code::BIZ, &no_room.to_string()).await;
    assert_eq!(
        roomless.expect(code::BIZ).await.error.as_deref(),
        Some(err::NO_ROOM)
    );
    // 200 characters exactly is fine.
    a.send(code::BIZ, &chat_body(1, 8, &"é".repeat(200))).await;
    assert_eq!(a.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = b.expect(code::BIZ).await;
    b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
        .await;
    // A burst of 6 more: the bucket (5/s, one already used) refuses some with an error frame.
    for i in 0..6 {
        a.send(code::BIZ, &chat_body(1, 8, &format!("m{i}"))).await;
    }
    let (mut limited, mut accepted) = (0, 0);
    for _ in 0..6 {
        let r = a.expect(code::BIZ).await;
        match r.error.as_deref() {
            Some(e) => {
                assert_eq!(e, err::RATE_LIMITED);
                limited += 1;
            }
            None => accepted += 1,
        }
    }
    assert!(limited >= 2, "rate limited {limited}");
    for _ in 0..accepted {
        let m = b.expect(code::BIZ).await;
        b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
            .await;
    }
    b.assert_silent(
        Duration::from_millis(200),
        "refused messages are not delivered",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_without_hurting_others() {
    let env = start_with(|c| c.outbox_limit = 8).await;
    let mut slow = env.tcp_login(1, 1).await;
    let mut fast = env.ws_login(2, 1).await;
    let big = "x".repeat(30_000);
    let mut got = 0;
    for _ in 0..400 {
        env.push(1, 99, &big).await;
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
    eventually("slow connection gone", || async {
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
    env.push(1, 99, "still fine").await;
    fast.expect(code::BIZ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_fanout_shares_frames_and_keeps_order() {
    let env = start_with(|c| c.fanout_linger = Duration::from_millis(30)).await;
    let mut a = env.ws_login(1, 1).await;
    let mut b = env.tcp_login(2, 1).await;
    let ids = [
        env.push(1, 9, "one").await,
        env.push(1, 9, "two").await,
        env.push(1, 9, "three").await,
    ];
    for got in [
        [
            a.expect(code::BIZ).await,
            a.expect(code::BIZ).await,
            a.expect(code::BIZ).await,
        ],
        [
            b.expect(code::BIZ).await,
            b.expect(code::BIZ).await,
            b.expect(code::BIZ).await,
        ],
    ] {
        let got: Vec<(String, u64)> = got
            .iter()
            .map(|m| (m.msg_id.clone().unwrap(), m.offset.unwrap()))
            .collect();
        let want: Vec<(String, u64)> = ids.iter().cloned().zip(1..).collect();
        assert_eq!(got, want);
    }
    assert_eq!(env.gw.stats().delivered, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_carries_the_name_the_token_was_issued_for_not_the_one_claimed() {
    let env = start().await;
    let tok = registry::issue_named_im_token(&*env.b.cache, 1, "Alice")
        .await
        .unwrap();
    let mut a = WsClient::connect(&env.ws_url()).await;
    a.send(code::LOGIN, &login_body(1, &tok, ROOM)).await;
    assert_eq!(a.expect(code::LOGIN).await.data.as_deref(), Some("true"));
    let mut b = env.tcp_login(2, ROOM).await;
    let claimed = r#"{"roomId":9,"content":"hi","senderName":"The Admin"}"#;
    let body = serde_json::json!({"appId": 10001, "userId": 1, "bizCode": 5555, "data": claimed});
    a.send(code::BIZ, &body.to_string()).await;
    let m = b.expect(code::BIZ).await;
    let data: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
    assert_eq!(
        data["senderName"], "Alice",
        "the server's name wins over the claimed one"
    );
    assert_eq!(data["content"], "hi");
}

/// Design §4: the delivered `data` is rebuilt from validated fields; unknown fields (60 KB of
/// junk here) and a forged `userId` or `senderName` inside `data` never reach the room, and a
/// message whose delivered frame would exceed 2 KiB is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_data_carries_only_validated_fields_within_two_kib() {
    let env = start().await;
    // A display name of 64 double quotes: each one is escaped at every level of the frame.
    let name = "\"".repeat(64);
    let tok = registry::issue_named_im_token(&*env.b.cache, 1, &name)
        .await
        .unwrap();
    let mut a = WsClient::connect(&env.ws_url()).await;
    a.send(code::LOGIN, &login_body(1, &tok, ROOM)).await;
    assert_eq!(a.expect(code::LOGIN).await.data.as_deref(), Some("true"));
    let mut b = env.tcp_login(2, ROOM).await;
    let data = serde_json::json!({
        "roomId": ROOM, "content": "hi", "userId": 777, "junk": "j".repeat(60_000),
        "senderName": "someone else"
    });
    let body =
        serde_json::json!({"appId": 10001, "userId": 1, "bizCode": 5555, "data": data.to_string()});
    a.send(code::BIZ, &body.to_string()).await;
    assert_eq!(a.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = b.expect(code::BIZ).await;
    let got: serde_json::Value = serde_json::from_str(m.data.as_deref().unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"roomId": ROOM, "content": "hi", "senderName": name})
    );
    assert_eq!(m.user_id, Some(1), "the sender is the connection's user");
    b.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
        .await;
    // 200 double quotes fit the character limit, but with that name not the frame limit.
    a.send(code::BIZ, &chat_body(1, ROOM, &"\"".repeat(200)))
        .await;
    assert_eq!(
        a.expect(code::BIZ).await.error.as_deref(),
        Some(err::CONTENT_TOO_LONG)
    );
    b.assert_silent(
        Duration::from_millis(300),
        "the refused message is not delivered",
    )
    .await;
    // 100 fit.
    a.send(code::BIZ, &chat_body(1, ROOM, &"\"".repeat(100)))
        .await;
    b.expect(code::BIZ).await;
}

/// A message that no push brought (its push was lost) reaches the room from the chat log
/// within the repair interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_push_brought_is_fetched_from_the_log() {
    let env = start().await;
    let mut a = env.ws_login(1, ROOM).await;
    let (id, offset) = env.append(ROOM, 99, "never pushed").await;
    let m = a.expect(code::BIZ).await;
    assert_eq!(
        (m.msg_id.as_deref(), m.offset),
        (Some(id.as_str()), Some(offset))
    );
    // A later push with a gap before it is filled in order too.
    let (id2, _) = env.append(ROOM, 99, "lost push").await;
    let id3 = env.push(ROOM, 99, "pushed").await;
    let got: Vec<String> = [a.expect(code::BIZ).await, a.expect(code::BIZ).await]
        .iter()
        .map(|m| m.msg_id.clone().unwrap())
        .collect();
    assert_eq!(got, vec![id2, id3]);
    assert!(env.gw.stats().repaired >= 2);
}
