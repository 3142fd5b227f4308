//! A room's chat as a stream (design §3.1), over real sockets and the real `msg`: offsets,
//! recovery after a reconnect (complete or not at all, no gap and no duplicate at the seam),
//! several devices per user, and two gateways sharing one presence store and bus.

mod common;

use common::*;
use livehouse_core::chatlog::LogConfig;
use livehouse_im_core::protocol::code;
use serde_json::json;
use std::time::Duration;

fn recover(epoch: &str, offset: u64) -> serde_json::Value {
    json!({"recover": {"epoch": epoch, "offset": offset}})
}

/// Reads `n` deliveries, ACKing each; returns (offset, msg id, content).
async fn take<C: Client>(c: &mut C, user: i64, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = c.expect_msg(code::BIZ).await;
        c.ack(user, m.msg_id.as_deref().unwrap()).await;
        out.push((m.offset.unwrap(), m.msg_id.clone().unwrap(), content(&m)));
    }
    out
}

/// What both test clients can do here.
trait Client {
    async fn expect_msg(&mut self, code: i32) -> Msg;
    async fn ack(&mut self, user: i64, id: &str);
}

impl Client for WsClient {
    async fn expect_msg(&mut self, code: i32) -> Msg {
        self.expect(code).await
    }
    async fn ack(&mut self, user: i64, id: &str) {
        self.send(code::ACK, &ack_body(user, id)).await
    }
}

impl Client for TcpClient {
    async fn expect_msg(&mut self, code: i32) -> Msg {
        self.expect(code).await
    }
    async fn ack(&mut self, user: i64, id: &str) {
        self.send(code::ACK, &ack_body(user, id)).await
    }
}

fn offsets(v: &[(u64, String, String)]) -> Vec<u64> {
    v.iter().map(|(o, _, _)| *o).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_recovers_the_gap_then_goes_live_over_websocket_and_tcp() {
    let env = start().await;
    let (mut w, login) = env.ws_login_with(1, ROOM, json!({})).await;
    let epoch = login.epoch.clone().unwrap();
    let mut t = env.tcp_login(2, ROOM).await;
    for i in 1..=3 {
        env.push(ROOM, 99, &format!("m{i}")).await;
    }
    assert_eq!(offsets(&take(&mut w, 1, 3).await), [1, 2, 3]);
    assert_eq!(offsets(&take(&mut t, 2, 3).await), [1, 2, 3]);
    drop(w);
    drop(t);
    for i in 4..=6 {
        env.push(ROOM, 99, &format!("m{i}")).await;
    }
    let (mut w, reply) = env.ws_login_with(1, ROOM, recover(&epoch, 3)).await;
    assert_eq!(reply.recovered, Some(true));
    assert_eq!(
        (reply.epoch.as_deref(), reply.offset),
        (Some(epoch.as_str()), Some(6))
    );
    let (mut t, reply) = env.tcp_login_with(2, ROOM, recover(&epoch, 3)).await;
    assert_eq!(reply.recovered, Some(true));
    for got in [take(&mut w, 1, 3).await, take(&mut t, 2, 3).await] {
        let contents: Vec<&str> = got.iter().map(|(_, _, c)| c.as_str()).collect();
        assert_eq!(offsets(&got), [4, 5, 6]);
        assert_eq!(contents, ["m4", "m5", "m6"]);
    }
    env.push(ROOM, 99, "m7").await;
    assert_eq!(offsets(&take(&mut w, 1, 1).await), [7], "then live");
    assert_eq!(offsets(&take(&mut t, 2, 1).await), [7]);
    w.assert_silent(Duration::from_millis(300), "no duplicate")
        .await;
    t.assert_silent(Duration::from_millis(100), "no duplicate")
        .await;
    let s = env.gw.stats();
    assert_eq!((s.recover_asked, s.recovered), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_that_cannot_be_complete_replays_nothing() {
    // The log keeps 5 messages; the gateway keeps 2 recent ones per room.
    let b = Backends::new(LogConfig {
        max_len: 5,
        ..LogConfig::default()
    });
    let env = gateway(b, |c| c.recent_per_room = 2).await;
    env.run_msg().await;
    let (mut w, login) = env.ws_login_with(1, ROOM, json!({})).await;
    let epoch = login.epoch.clone().unwrap();
    for i in 1..=10 {
        env.push(ROOM, 99, &format!("m{i}")).await;
    }
    take(&mut w, 1, 10).await;
    for (what, extra) in [
        ("another epoch", recover("not-the-epoch", 8)),
        ("an offset past the top", recover(&epoch, 11)),
        ("offsets trimmed from the log", recover(&epoch, 3)),
    ] {
        let (mut c, reply) = env.ws_login_with(1, ROOM, extra).await;
        assert_eq!(reply.recovered, Some(false), "{what}");
        assert_eq!(
            reply.offset,
            Some(10),
            "{what}: the position to continue from"
        );
        c.assert_silent(Duration::from_millis(200), what).await;
    }
    // Within the log but beyond the recent ones: read from the log, complete.
    let (mut c, reply) = env.ws_login_with(1, ROOM, recover(&epoch, 6)).await;
    assert_eq!(reply.recovered, Some(true));
    assert_eq!(offsets(&take(&mut c, 1, 4).await), [7, 8, 9, 10]);
    c.assert_silent(Duration::from_millis(200), "nothing more")
        .await;
}

/// Messages flow the whole time while a client drops and recovers again and again: in the end
/// it has every offset exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_between_recovery_and_live_has_no_gap_and_no_duplicate() {
    let env = start().await;
    let (mut c, login) = env.ws_login_with(1, ROOM, json!({})).await;
    let epoch = login.epoch.clone().unwrap();
    const N: usize = 300;
    let sender = {
        let gw = env.gw.clone();
        let b = env.b.clone();
        tokio::spawn(async move {
            let pusher = common::Pusher { gw, b };
            for i in 1..=N {
                pusher.push(ROOM, &format!("s{i}")).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut seen: Vec<u64> = Vec::new();
    let mut reconnects = 0;
    while seen.len() < N {
        match c.recv_within(WAIT).await {
            Recv::Msg(m) if m.code == code::BIZ => {
                seen.push(m.offset.unwrap());
                // Every 40 messages, drop the connection and recover from the last offset.
                if seen.len().is_multiple_of(40) && seen.len() < N {
                    let last = *seen.last().unwrap();
                    let (next, reply) = env.ws_login_with(1, ROOM, recover(&epoch, last)).await;
                    assert_eq!(reply.recovered, Some(true));
                    c = next;
                    reconnects += 1;
                }
            }
            other => panic!("after {} messages: {other:?}", seen.len()),
        }
    }
    sender.await.unwrap();
    let want: Vec<u64> = (1..=N as u64).collect();
    assert_eq!(
        seen, want,
        "every message once, in order, over {reconnects} reconnects"
    );
    c.assert_silent(Duration::from_millis(300), "nothing after the last")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_of_one_user_coexist_and_the_same_device_replaces() {
    let env = start().await;
    let dev = |d: &str| json!({"deviceId": d});
    let (mut t1, _) = env.ws_login_with(5, ROOM, dev("tab-1")).await;
    let (mut t2, _) = env.tcp_login_with(5, ROOM, dev("tab-2")).await;
    let mut other = env.ws_login(6, ROOM).await;
    other
        .send(code::BIZ, &chat_body(6, ROOM, "to both tabs"))
        .await;
    assert_eq!(other.expect(code::BIZ).await.data.as_deref(), Some("true"));
    assert_eq!(content(&t1.expect(code::BIZ).await), "to both tabs");
    assert_eq!(content(&t2.expect(code::BIZ).await), "to both tabs");
    // What one tab says reaches the user's other tab (and the room), not itself.
    t1.send(code::BIZ, &chat_body(5, ROOM, "from tab 1")).await;
    assert_eq!(t1.expect(code::BIZ).await.data.as_deref(), Some("true"));
    assert_eq!(content(&t2.expect(code::BIZ).await), "from tab 1");
    assert_eq!(content(&other.expect(code::BIZ).await), "from tab 1");
    t1.assert_silent(Duration::from_millis(200), "no echo to the sending tab")
        .await;
    // The same device again: the old connection is told (1002) and closed; tab 2 stays.
    let (mut t1b, _) = env.ws_login_with(5, ROOM, dev("tab-1")).await;
    let (msgs, _) = t1.until_closed().await;
    assert_eq!(msgs.last().map(|m| m.code), Some(code::LOGOUT));
    t2.send(code::HEARTBEAT, "{}").await;
    t2.expect(code::HEARTBEAT).await;
    t1b.send(code::HEARTBEAT, "{}").await;
    t1b.expect(code::HEARTBEAT).await;
    // At most 5 connections per user: a sixth device closes the oldest (tab-2 now).
    let mut more = Vec::new();
    for d in ["tab-3", "tab-4", "tab-5"] {
        more.push(env.ws_login_with(5, ROOM, dev(d)).await.0);
    }
    t2.send(code::HEARTBEAT, "{}").await;
    t2.expect(code::HEARTBEAT).await;
    let (_t6, _) = env.ws_login_with(5, ROOM, dev("tab-6")).await;
    let seen = t2.until_closed().await;
    assert_eq!(seen.last().map(|m| m.code), Some(code::LOGOUT), "{seen:?}");
    t1b.send(code::HEARTBEAT, "{}").await;
    t1b.expect(code::HEARTBEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_the_room_devices_and_recovery() {
    let b = Backends::new(LogConfig::default());
    let g1 = gateway(b.clone(), |c| c.gateway_id = "gw-1".into()).await;
    let g2 = gateway(b.clone(), |c| c.gateway_id = "gw-2".into()).await;
    run_msg(&b, vec![g1.gw.clone(), g2.gw.clone()]).await;
    let (mut a, login) = g1.ws_login_with(1, ROOM, json!({"deviceId": "d1"})).await;
    let epoch = login.epoch.clone().unwrap();
    let mut c = g2.tcp_login(2, ROOM).await;
    // Chat crosses gateways both ways.
    a.send(code::BIZ, &chat_body(1, ROOM, "from gw-1")).await;
    assert_eq!(a.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = c.expect(code::BIZ).await;
    assert_eq!((content(&m).as_str(), m.offset), ("from gw-1", Some(1)));
    c.send(code::ACK, &ack_body(2, m.msg_id.as_deref().unwrap()))
        .await;
    c.send(code::BIZ, &chat_body(2, ROOM, "from gw-2")).await;
    assert_eq!(c.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = a.expect(code::BIZ).await;
    assert_eq!((content(&m).as_str(), m.offset), ("from gw-2", Some(2)));
    // The same device on the other gateway replaces the first login (a control event).
    let (mut a2, reply) = g2
        .ws_login_with(
            1,
            ROOM,
            json!({"deviceId": "d1", "recover": {"epoch": epoch, "offset": 1}}),
        )
        .await;
    assert_eq!(reply.recovered, Some(true), "recovering on another gateway");
    assert_eq!(content(&a2.expect(code::BIZ).await), "from gw-2");
    let (msgs, _) = a.until_closed().await;
    assert_eq!(msgs.last().map(|m| m.code), Some(code::LOGOUT));
    c.send(code::BIZ, &chat_body(2, ROOM, "after the move"))
        .await;
    assert_eq!(content(&a2.expect(code::BIZ).await), "after the move");
}
