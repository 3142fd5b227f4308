//! The protocol's timers under paused time (tokio's test clock), over an in-memory pipe: the
//! ACK deadline and its single retry, the login deadline, the idle close. Every wait here is
//! virtual, so the bounds are exact and nothing depends on the machine's speed.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use livehouse_core::bus::MemoryBus;
use livehouse_core::cache::MemoryCache;
use livehouse_core::chatlog::{ChatLog, MemoryChatLog, NewEntry};
use livehouse_core::events::{ChatEvent, RoomBatch, StreamEntry};
use livehouse_core::presence::MemoryPresence;
use livehouse_core::time::now_ms;
use livehouse_im_core::protocol::{code, err, Frame, FrameCodec, ImMsgBody, Wire};
use livehouse_im_core::{registry, Gateway, ImConfig, ImPorts};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

const GAP: Duration = Duration::from_secs(30);
const ACK: Duration = Duration::from_secs(4);
const LOGIN: Duration = Duration::from_secs(10);
/// The sweeper's period with these settings: min(gap, ack, login) / 5, at most 500 ms.
const TICK: Duration = Duration::from_millis(500);

struct T {
    gw: Arc<Gateway>,
    cache: Arc<MemoryCache>,
    log: Arc<MemoryChatLog>,
}

fn setup() -> T {
    setup_with(|_| {})
}

fn setup_with(tweak: impl FnOnce(&mut ImConfig)) -> T {
    let mut cfg = ImConfig {
        gateway_id: "gw-timers".into(),
        heartbeat_gap: GAP,
        ack_timeout: ACK,
        login_timeout: LOGIN,
        ..ImConfig::default()
    };
    tweak(&mut cfg);
    let cache = Arc::new(MemoryCache::new());
    let log = Arc::new(MemoryChatLog::default());
    let gw = Gateway::new(
        cfg,
        ImPorts {
            cache: cache.clone(),
            bus: Arc::new(MemoryBus::new()),
            presence: Arc::new(MemoryPresence::default()),
            log: log.clone(),
            moderation: livehouse_moderation::RuleBook::new(cache.clone(), Default::default()),
        },
    );
    T { gw, cache, log }
}

type Client = Framed<DuplexStream, FrameCodec>;

fn connect(t: &T) -> Client {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(t.gw.clone().serve_conn(server, Wire::Tcp));
    Framed::new(client, FrameCodec)
}

async fn send(c: &mut Client, code: i32, body: &str) {
    c.send(Frame::new(code, Bytes::from(body.to_owned())))
        .await
        .unwrap();
}

/// The next frame within `d` of virtual time: `Some(Ok)`, `Some(Err)` for a close, `None` for
/// silence.
async fn next(c: &mut Client, d: Duration) -> Option<Result<(i32, ImMsgBody), ()>> {
    match tokio::time::timeout(d, c.next()).await {
        Err(_) => None,
        Ok(Some(Ok(f))) => Some(Ok((f.code, f.parse_body().unwrap()))),
        Ok(_) => Some(Err(())),
    }
}

async fn login(t: &T, user: i64, room: i64) -> Client {
    let mut c = connect(t);
    let tok = registry::issue_im_token(&*t.cache, user).await.unwrap();
    let body = serde_json::json!({"userId": user, "token": tok, "roomId": room}).to_string();
    send(&mut c, code::LOGIN, &body).await;
    let (code, b) = next(&mut c, Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!((code, b.data.as_deref()), (code::LOGIN, Some("true")));
    c
}

async fn push(t: &T, room: i64) -> String {
    let ev = ChatEvent {
        msg_id: format!("m-{}", livehouse_core::ids::random_hex(3)),
        app_id: 10001,
        room_id: room,
        sender_id: 99,
        biz_code: 5555,
        data: serde_json::json!({"roomId": room, "content": "x"}).to_string(),
        sent_at_ms: now_ms(),
        origin_gateway: String::new(),
        origin_conn: 0,
    };
    let a = t
        .log
        .append(
            room,
            NewEntry {
                msg_id: ev.msg_id.clone(),
                kind: 5555,
                at_ms: now_ms(),
                payload: Bytes::from(serde_json::to_vec(&ev).unwrap()),
            },
        )
        .await
        .unwrap();
    let id = ev.msg_id.clone();
    t.gw.push(vec![RoomBatch {
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

/// Proves the connection is alive: a heartbeat is answered.
async fn alive(c: &mut Client) {
    send(c, code::HEARTBEAT, "{}").await;
    let (code, _) = next(c, Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!(code, code::HEARTBEAT);
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_delivery_is_sent_once_more_after_the_ack_timeout_then_dropped() {
    let t = setup();
    let mut c = login(&t, 1, 7).await;
    let id = push(&t, 7).await;
    let (code, m) = next(&mut c, Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!((code, m.msg_id.as_deref()), (code::BIZ, Some(id.as_str())));
    let sent = Instant::now();
    // Nothing before the deadline.
    assert!(next(&mut c, ACK - Duration::from_millis(1)).await.is_none());
    // The retry comes at the deadline, within one sweep.
    let (code, again) = next(&mut c, TICK + Duration::from_millis(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (code, again.msg_id.as_deref()),
        (code::BIZ, Some(id.as_str()))
    );
    let waited = sent.elapsed();
    assert!(
        waited >= ACK && waited <= ACK + TICK,
        "retried after {waited:?}"
    );
    // Then never again: after a second timeout it is dropped.
    assert!(next(&mut c, 3 * ACK).await.is_none());
    alive(&mut c).await;
    let s = t.gw.stats();
    assert_eq!((s.retried, s.unacked_dropped), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_ack_in_time_stops_the_retry() {
    let t = setup();
    let mut c = login(&t, 1, 7).await;
    let id = push(&t, 7).await;
    next(&mut c, Duration::from_secs(1)).await.unwrap().unwrap();
    tokio::time::sleep(ACK - Duration::from_millis(10)).await;
    send(&mut c, code::ACK, &format!(r#"{{"msgId":"{id}"}}"#)).await;
    assert!(next(&mut c, 3 * ACK).await.is_none(), "no retry");
    alive(&mut c).await;
    assert_eq!(t.gw.stats().retried, 0);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_does_not_log_in_is_closed_at_the_login_deadline() {
    let t = setup();
    let mut c = connect(&t);
    let opened = Instant::now();
    // First-message frames do not count as a login.
    for _ in 0..9 {
        send(&mut c, code::FIRST, "").await;
        assert!(next(&mut c, Duration::from_secs(1)).await.is_none());
    }
    let (code, e) = next(&mut c, LOGIN).await.unwrap().unwrap();
    assert_eq!(
        (code, e.error.as_deref()),
        (code::LOGIN, Some(err::LOGIN_TIMEOUT))
    );
    let waited = opened.elapsed();
    assert!(
        waited > LOGIN && waited <= LOGIN + TICK,
        "closed after {waited:?}"
    );
    assert_eq!(
        next(&mut c, Duration::from_secs(2)).await,
        Some(Err(())),
        "then closed"
    );
    assert_eq!(t.gw.stats().login_timed_out, 1);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_connection_and_two_silent_gaps_close_it() {
    let t = setup();
    let mut c = login(&t, 1, 7).await;
    for _ in 0..5 {
        tokio::time::sleep(GAP).await;
        alive(&mut c).await;
    }
    let last = Instant::now();
    assert!(next(&mut c, 2 * GAP - Duration::from_millis(10))
        .await
        .is_none());
    assert_eq!(
        next(&mut c, TICK + Duration::from_millis(20)).await,
        Some(Err(()))
    );
    let waited = last.elapsed();
    assert!(
        waited > 2 * GAP && waited <= 2 * GAP + TICK,
        "closed after {waited:?}"
    );
    assert_eq!(t.gw.stats().idle_closed, 1);
}

/// At most `max_pending_acks` deliveries wait for their ACK: the oldest beyond it is given up
/// (counted), never retried.
#[tokio::test(start_paused = true)]
async fn the_pending_ack_bound_gives_up_the_oldest() {
    let t = setup_with(|c| c.max_pending_acks = 2);
    let mut c = login(&t, 1, 7).await;
    let ids = [push(&t, 7).await, push(&t, 7).await, push(&t, 7).await];
    for id in &ids {
        let (_, m) = next(&mut c, Duration::from_secs(1)).await.unwrap().unwrap();
        assert_eq!(m.msg_id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        t.gw.stats().unacked_dropped,
        1,
        "the first was given up to keep the bound"
    );
    let mut retried = Vec::new();
    while let Some(Ok((_, m))) = next(&mut c, ACK + TICK).await {
        retried.push(m.msg_id.unwrap());
    }
    assert_eq!(
        retried,
        ids[1..].to_vec(),
        "only the two that still waited are retried"
    );
    alive(&mut c).await;
}
