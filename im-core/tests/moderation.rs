//! Moderation at the gateway (design §3.2), over real sockets on two gateways sharing one cache
//! and bus: the rules a writer puts in the cache and announces on the moderation topic are
//! enforced on every gateway from its local copy, and a lost announcement is made up by the
//! periodic refresh. Danmaku styles are validated and rebuilt.

mod common;

use bytes::Bytes;
use common::*;
use livehouse_core::bus::{Bus, TOPIC_MODERATION};
use livehouse_core::cache::Cache;
use livehouse_core::chatlog::LogConfig;
use livehouse_core::events::{keys, ModerationEvent, ModerationKind};
use livehouse_core::time::now_ms;
use livehouse_im_core::protocol::{code, err};
use livehouse_im_core::registry::{self, TokenClaims};
use livehouse_moderation::rules::{Mute, RoomRules};
use livehouse_moderation::store;
use std::time::{Duration, Instant};

const ANCHOR: i64 = 100;

fn rules(version: u64) -> RoomRules {
    RoomRules {
        room_id: ROOM,
        anchor_id: ANCHOR,
        version,
        ..RoomRules::default()
    }
}

/// What the moderation service does after a change: the rules in the cache, then the event.
async fn announce(b: &Backends, r: &RoomRules, kind: ModerationKind, user: i64) {
    store::write(&*b.cache, r).await.unwrap();
    let ev = ModerationEvent {
        kind,
        room_id: r.room_id,
        user_id: user,
        version: r.version,
        at_ms: now_ms(),
    };
    b.bus
        .publish(
            TOPIC_MODERATION,
            &ev.key(),
            Bytes::from(serde_json::to_vec(&ev).unwrap()),
        )
        .await
        .unwrap();
}

async fn two_gateways() -> (Env, Env) {
    let b = Backends::new(LogConfig::default());
    let g1 = gateway(b.clone(), |c| c.gateway_id = "gw-1".into()).await;
    let g2 = gateway(b.clone(), |c| c.gateway_id = "gw-2".into()).await;
    run_msg(&b, vec![g1.gw.clone(), g2.gw.clone()]).await;
    (g1, g2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_closes_the_user_on_every_gateway_and_keeps_them_out() {
    let (g1, g2) = two_gateways().await;
    let (mut on_g2, _) = g2
        .ws_login_with(5, ROOM, serde_json::json!({"deviceId": "a"}))
        .await;
    let mut other_room = g2.tcp_login(5, ROOM + 1).await;
    let mut bystander = g1.tcp_login(6, ROOM).await;
    let t = Instant::now();
    announce(
        &g1.b,
        &RoomRules {
            banned: vec![5],
            ..rules(1)
        },
        ModerationKind::UserBanned,
        5,
    )
    .await;
    let (msgs, close) = on_g2.until_closed().await;
    eprintln!(
        "the banned user's connection on the other gateway closed {:?} after the event",
        t.elapsed()
    );
    let last = msgs.last().expect("a reason before the close");
    assert_eq!(
        (last.code, last.error.as_deref()),
        (code::LOGOUT, Some(err::BANNED))
    );
    assert_eq!(close, Some(1008));
    // The ban is for that room: the user's connection in another room and others stay.
    other_room
        .assert_silent(Duration::from_millis(200), "another room")
        .await;
    bystander
        .assert_silent(Duration::from_millis(100), "another user")
        .await;
    // And they cannot come back, on either gateway.
    for g in [&g1, &g2] {
        let mut c = TcpClient::connect(g.tcp).await;
        let tok = g.token(5).await;
        c.send(code::LOGIN, &login_body(5, &tok, ROOM)).await;
        let seen = c.until_closed().await;
        assert_eq!(seen[0].error.as_deref(), Some(err::BANNED));
    }
    // Unbanned (a newer rule set, announced): welcome back.
    announce(&g1.b, &rules(2), ModerationKind::RulesChanged, 0).await;
    eventually("the unban reached gw-2", || async {
        let mut c = TcpClient::connect(g2.tcp).await;
        let tok = g2.token(5).await;
        c.send(code::LOGIN, &login_body(5, &tok, ROOM)).await;
        c.recv()
            .await
            .is_some_and(|m| m.data.as_deref() == Some("true"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutes_and_blocked_words_are_refused_with_their_reason_and_never_delivered() {
    let (g1, g2) = two_gateways().await;
    let mut muted = g1.ws_login(6, ROOM).await;
    let until = now_ms() + 60_000;
    let r = RoomRules {
        muted: vec![Mute {
            user_id: 6,
            until_ms: until,
        }],
        words: vec!["spam".into(), "广告".into()],
        ..rules(1)
    };
    announce(&g1.b, &r, ModerationKind::RulesChanged, 0).await;
    // Rules reach the gateway within the event's path; keep trying until they hold.
    let deadline = Instant::now() + WAIT;
    loop {
        muted.send(code::BIZ, &chat_body(6, ROOM, "hello?")).await;
        let m = muted.expect(code::BIZ).await;
        if m.error.as_deref() == Some(err::MUTED) {
            assert_eq!(m.until_ms, Some(until), "the sender is told until when");
            break;
        }
        assert!(Instant::now() < deadline, "the mute never held: {m:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The others join now: what was said before the mute held is history to them.
    let mut talker = g1.tcp_login(7, ROOM).await;
    let mut anchor = g1.tcp_login(ANCHOR, ROOM).await;
    let mut viewer = g2.tcp_login(8, ROOM).await;
    for text in ["SPAM!", "ｓｐａｍ here", "免费广告"] {
        talker.send(code::BIZ, &chat_body(7, ROOM, text)).await;
        let m = talker.expect(code::BIZ).await;
        assert_eq!(m.error.as_deref(), Some(err::BLOCKED_WORD), "{text}");
    }
    // The anchor is not held by the room's own words.
    anchor
        .send(
            code::BIZ,
            &chat_body(ANCHOR, ROOM, "spam is what the anchor says"),
        )
        .await;
    assert_eq!(anchor.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = viewer.expect(code::BIZ).await;
    assert_eq!(content(&m), "spam is what the anchor says");
    viewer
        .send(code::ACK, &ack_body(8, m.msg_id.as_deref().unwrap()))
        .await;
    viewer
        .assert_silent(Duration::from_millis(300), "nothing refused was delivered")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_announcement_is_made_up_by_the_refresh() {
    let (g1, _g2) = two_gateways().await;
    let mut c = g1.tcp_login(9, ROOM).await;
    // In the cache, but never announced.
    store::write(
        &*g1.b.cache,
        &RoomRules {
            banned: vec![9],
            ..rules(1)
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        c.send(code::BIZ, &chat_body(9, ROOM, "still here?")).await;
        let m = c.expect(code::BIZ).await;
        if m.error.as_deref() == Some(err::BANNED) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refresh never picked the ban up: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_is_closed_everywhere_and_refused() {
    let (g1, g2) = two_gateways().await;
    let mut a = g1.tcp_login(11, ROOM).await;
    let mut b = g2.tcp_login(11, ROOM + 1).await;
    g1.b.cache
        .set_add(keys::SUSPENDED_USERS, &["11".to_string()])
        .await
        .unwrap();
    let ev = ModerationEvent {
        kind: ModerationKind::UserSuspended,
        room_id: 0,
        user_id: 11,
        version: 0,
        at_ms: now_ms(),
    };
    g1.b.bus
        .publish(
            TOPIC_MODERATION,
            &ev.key(),
            Bytes::from(serde_json::to_vec(&ev).unwrap()),
        )
        .await
        .unwrap();
    for c in [&mut a, &mut b] {
        let seen = c.until_closed().await;
        assert_eq!(
            seen.last().and_then(|m| m.error.as_deref()),
            Some(err::SUSPENDED)
        );
    }
    let mut again = TcpClient::connect(g2.tcp).await;
    let tok = g2.token(11).await;
    again.send(code::LOGIN, &login_body(11, &tok, ROOM)).await;
    assert_eq!(
        again.until_closed().await[0].error.as_deref(),
        Some(err::SUSPENDED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danmaku_styles_are_validated_and_rebuilt() {
    let env = start().await;
    let mut viewer = env.tcp_login(20, ROOM).await;
    let mut plain = env.ws_login(21, ROOM).await;
    let vip_token = registry::issue_token(
        &*env.b.cache,
        &TokenClaims {
            user_id: 22,
            name: "Vera".into(),
            vip: true,
        },
    )
    .await
    .unwrap();
    let mut vip = WsClient::connect(&env.ws_url()).await;
    vip.send(code::LOGIN, &login_body(22, &vip_token, ROOM))
        .await;
    vip.expect(code::LOGIN).await;
    let styled = |user: i64, content: &str, color: serde_json::Value, mode: serde_json::Value| {
        serde_json::json!({"bizCode": 5555, "userId": user, "data":
            serde_json::json!({"roomId": ROOM, "content": content, "color": color, "mode": mode}).to_string()})
        .to_string()
    };
    let data = |m: &Msg| -> serde_json::Value {
        serde_json::from_str(m.data.as_deref().unwrap()).unwrap()
    };
    // A palette colour (any case), Bilibili's number for "top".
    plain
        .send(
            code::BIZ,
            &styled(21, "red top", "#FE0302".into(), 5.into()),
        )
        .await;
    assert_eq!(plain.expect(code::BIZ).await.data.as_deref(), Some("true"));
    let m = viewer.expect(code::BIZ).await;
    assert_eq!(data(&m)["color"], "#fe0302");
    assert_eq!(data(&m)["mode"], "top");
    // Refused: another colour without the vip tag, a malformed one, an unknown mode.
    for (color, mode, slug) in [
        (
            serde_json::json!("#123456"),
            serde_json::json!("scroll"),
            err::VIP_COLOR,
        ),
        (
            serde_json::json!("red"),
            serde_json::json!("scroll"),
            err::BAD_COLOR,
        ),
        (
            serde_json::json!("#ffffff"),
            serde_json::json!("sideways"),
            err::BAD_MODE,
        ),
    ] {
        plain.send(code::BIZ, &styled(21, "x", color, mode)).await;
        assert_eq!(plain.expect(code::BIZ).await.error.as_deref(), Some(slug));
    }
    // A vip account may use any colour; the defaults are left out of the data.
    vip.send(
        code::BIZ,
        &styled(22, "custom", "#123456".into(), "bottom".into()),
    )
    .await;
    // The vip is in the room too: its answer comes among the room's messages.
    let answer = loop {
        let m = vip.expect(code::BIZ).await;
        if m.offset.is_none() {
            break m;
        }
    };
    assert_eq!(answer.data.as_deref(), Some("true"));
    let m = viewer.expect(code::BIZ).await;
    assert_eq!(
        (data(&m)["color"].as_str(), data(&m)["mode"].as_str()),
        (Some("#123456"), Some("bottom"))
    );
    plain
        .send(code::BIZ, &chat_body(21, ROOM, "no style"))
        .await;
    plain.expect(code::BIZ).await;
    let m = viewer.expect(code::BIZ).await;
    assert_eq!(
        data(&m),
        serde_json::json!({"roomId": ROOM, "content": "no style"})
    );
}

/// The answer to this client's own chat message, skipping (and ACKing) the room's deliveries
/// that its user's other devices cause.
async fn answer(c: &mut TcpClient, user: i64) -> Msg {
    loop {
        let m = c.expect(code::BIZ).await;
        if matches!(m.data.as_deref(), Some("true") | Some("false")) {
            return m;
        }
        c.send(code::ACK, &ack_body(user, m.msg_id.as_deref().unwrap()))
            .await;
    }
}

/// Two gateways on one cache, each with the chat rate `rate`.
async fn two_gateways_rate(rate: u32) -> (Env, Env) {
    let b = Backends::new(LogConfig::default());
    let g1 = gateway(b.clone(), |c| {
        c.gateway_id = "gw-1".into();
        c.chat_rate_per_sec = rate;
    })
    .await;
    let g2 = gateway(b.clone(), |c| {
        c.gateway_id = "gw-2".into();
        c.chat_rate_per_sec = rate;
    })
    .await;
    run_msg(&b, vec![g1.gw.clone(), g2.gw.clone()]).await;
    (g1, g2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_rate_holds_for_the_user_across_devices_and_gateways() {
    // One message per second: each gateway's own bucket would let one through per device.
    let (g1, g2) = two_gateways_rate(1).await;
    let (mut a, _) = g1
        .tcp_login_with(30, ROOM, serde_json::json!({"deviceId": "phone"}))
        .await;
    let (mut b, _) = g2
        .tcp_login_with(30, ROOM, serde_json::json!({"deviceId": "laptop"}))
        .await;
    a.send(code::BIZ, &chat_body(30, ROOM, "from the phone"))
        .await;
    assert_eq!(a.expect(code::BIZ).await.data.as_deref(), Some("true"));
    b.send(code::BIZ, &chat_body(30, ROOM, "from the laptop"))
        .await;
    let m = answer(&mut b, 30).await;
    assert_eq!(m.error.as_deref(), Some(err::RATE_LIMITED), "{m:?}");
    let wait = m.retry_after_ms.expect("retryAfterMs");
    assert!(wait > 0 && wait <= 1000, "retry after {wait} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mode_holds_for_the_user_across_gateways_and_spares_the_anchor() {
    let (g1, g2) = two_gateways().await;
    // The rules are in the cache before anyone joins: each gateway loads them at the login.
    let r = RoomRules {
        slow_mode_secs: 30,
        ..rules(1)
    };
    announce(&g1.b, &r, ModerationKind::RulesChanged, 0).await;
    let (mut a, _) = g1
        .tcp_login_with(31, ROOM, serde_json::json!({"deviceId": "phone"}))
        .await;
    let (mut b, _) = g2
        .tcp_login_with(31, ROOM, serde_json::json!({"deviceId": "laptop"}))
        .await;
    let mut anchor = g2.tcp_login(ANCHOR, ROOM).await;
    let mut viewer = g2.tcp_login(32, ROOM).await;

    a.send(code::BIZ, &chat_body(31, ROOM, "first")).await;
    assert_eq!(a.expect(code::BIZ).await.data.as_deref(), Some("true"));
    b.send(code::BIZ, &chat_body(31, ROOM, "second, too soon"))
        .await;
    let m = answer(&mut b, 31).await;
    assert_eq!(m.error.as_deref(), Some(err::SLOW_MODE), "{m:?}");
    let wait = m.retry_after_ms.expect("retryAfterMs");
    assert!(
        wait > 20_000 && wait <= 30_000,
        "the rest of the 30 s interval: {wait} ms"
    );
    // The anchor is exempt: two in a row both go out.
    for text in ["anchor one", "anchor two"] {
        anchor.send(code::BIZ, &chat_body(ANCHOR, ROOM, text)).await;
        assert_eq!(
            answer(&mut anchor, ANCHOR).await.data.as_deref(),
            Some("true")
        );
    }
    // The viewer sees the first message and the anchor's, never the refused one.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = viewer.expect(code::BIZ).await;
        viewer
            .send(code::ACK, &ack_body(32, m.msg_id.as_deref().unwrap()))
            .await;
        seen.push(content(&m));
    }
    assert_eq!(seen, ["first", "anchor one", "anchor two"]);
    viewer
        .assert_silent(
            Duration::from_millis(300),
            "the refused message never arrives",
        )
        .await;
}
