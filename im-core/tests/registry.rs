//! The api-facing registry (tokens, gateway choice, online check) and the internal push endpoint.

mod common;

use common::*;
use livehouse_core::cache::MemoryCache;
use livehouse_core::chatlog::ChatLog;
use livehouse_core::events::GatewayInfo;
use livehouse_core::presence::{MemoryPresence, Presence};
use livehouse_core::time::now_ms;
use livehouse_im_core::protocol::code;
use livehouse_im_core::registry;

#[tokio::test]
async fn tokens_are_random_url_safe_and_name_their_user() {
    let cache = MemoryCache::new();
    let a = registry::issue_im_token(&cache, 7).await.unwrap();
    let b = registry::issue_im_token(&cache, 7).await.unwrap();
    assert_ne!(a, b);
    assert!(a.len() >= 32);
    assert!(a
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(registry::token_user(&cache, &a).await.unwrap(), Some(7));
    assert_eq!(registry::token_user(&cache, "nope").await.unwrap(), None);
}

/// The token is stored with a five-minute TTL: read back from Redis (`TTL`), where the adapter
/// sets it (`LIVEHOUSE_TEST_REDIS_URL`; CI requires it).
#[tokio::test]
async fn tokens_are_stored_to_expire_in_five_minutes() {
    let Some(url) = livehouse_core::testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = livehouse_core::testenv::unique_prefix("im-token");
    let cache = livehouse_core::cache::RedisCache::connect(&url, &prefix)
        .await
        .unwrap();
    let token = registry::issue_im_token(&cache, 7).await.unwrap();
    let key = format!("{prefix}{}", livehouse_core::events::keys::im_token(&token));
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (290..=300).contains(&ttl),
        "the token {key} is stored with a TTL of {ttl} s, not five minutes"
    );
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn pick_gateway_takes_the_least_loaded_live_one() {
    let presence = MemoryPresence::default();
    assert!(registry::pick_gateway(&presence).await.unwrap().is_none());
    let info = |id: &str, sessions| GatewayInfo {
        id: id.into(),
        ws_addr: format!("ws://{id}/ws"),
        tcp_addr: format!("{id}:8085"),
        push_url: format!("http://{id}"),
        sessions,
    };
    let now = now_ms();
    presence.beat(&info("busy", 100), &[], now).await.unwrap();
    presence.beat(&info("light", 3), &[], now).await.unwrap();
    presence
        .beat(&info("dead", 0), &[], now - 60_000)
        .await
        .unwrap();
    let g = registry::pick_gateway(&presence).await.unwrap().unwrap();
    assert_eq!(g.id, "light", "the dead one is never offered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_registers_itself_with_its_load() {
    let env = start().await;
    let g = registry::pick_gateway(&*env.b.presence)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.id, "gw-test");
    assert_eq!(g.tcp_addr, env.tcp.to_string());
    assert_eq!(g.ws_addr, format!("ws://{}/ws", env.http));
    let _c = env.tcp_login(1, 1).await;
    eventually("load reported", || async {
        registry::pick_gateway(&*env.b.presence)
            .await
            .unwrap()
            .is_some_and(|g| g.sessions == 1)
    })
    .await;
    // A clean stop takes it out of the choice at once.
    env.stop();
    eventually("deregistered", || async {
        registry::pick_gateway(&*env.b.presence)
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_push_checks_the_secret_and_delivers() {
    let env = start().await;
    let mut w = env.ws_login(2, 6).await;
    let ev = chat_event(6, 1, "pushed");
    let (a, _) = (
        env.b
            .log
            .append(
                6,
                livehouse_core::chatlog::NewEntry {
                    msg_id: ev.msg_id.clone(),
                    kind: ev.biz_code,
                    at_ms: now_ms(),
                    payload: bytes::Bytes::from(serde_json::to_vec(&ev).unwrap()),
                },
            )
            .await
            .unwrap(),
        (),
    );
    let batch = serde_json::json!([{
        "roomId": 6, "epoch": a.pos.epoch,
        "entries": [{"offset": a.pos.offset, "msg": ev}]
    }])
    .to_string();
    let (s, _) = http(env.http, "POST", "/internal/im/push", &[], &batch).await;
    assert_eq!(s, 403);
    let (s, _) = http(
        env.http,
        "POST",
        "/internal/im/push",
        &[("x-livehouse-internal", "wrong")],
        &batch,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = http(
        env.http,
        "POST",
        "/internal/im/push",
        &[("x-livehouse-internal", "secret")],
        "{",
    )
    .await;
    assert_eq!(s, 400);
    let (s, body) = http(
        env.http,
        "POST",
        "/internal/im/push",
        &[("x-livehouse-internal", "secret")],
        &batch,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let m = w.expect(code::BIZ).await;
    assert_eq!(m.msg_id.as_deref(), Some(ev.msg_id.as_str()));
    assert_eq!(m.offset, Some(1));
    assert!(m.data.as_deref().unwrap().contains("pushed"));
}

/// The power of two choices with local increments: a burst of joins between two beats spreads
/// over the gateways instead of piling onto the one that looked lightest.
#[tokio::test]
async fn a_burst_of_joins_spreads_over_the_live_gateways() {
    let chooser = registry::Chooser::default();
    let gw = |id: &str, sessions| GatewayInfo {
        id: id.into(),
        sessions,
        ..GatewayInfo::default()
    };
    let live = vec![gw("a", 100), gw("b", 100), gw("c", 100)];
    let mut n = std::collections::HashMap::<String, u32>::new();
    for _ in 0..900 {
        *n.entry(chooser.choose(live.clone()).unwrap().id)
            .or_default() += 1;
    }
    for id in ["a", "b", "c"] {
        let got = n[id];
        assert!((250..=350).contains(&got), "{id} got {got} of 900: {n:?}");
    }
    // A lighter gateway takes clients until its estimate catches up.
    let chooser = registry::Chooser::default();
    let live = vec![gw("busy", 500), gw("new", 0)];
    let to_new = (0..200)
        .filter(|_| chooser.choose(live.clone()).unwrap().id == "new")
        .count();
    assert_eq!(to_new, 200, "with two gateways the lighter one always wins");
    assert!(chooser.choose(vec![]).is_none());
}

#[tokio::test]
async fn the_choice_avoids_a_gateway_the_client_could_not_reach_and_dead_ones() {
    let presence = MemoryPresence::default();
    let chooser = registry::Chooser::default();
    let info = |id: &str| GatewayInfo {
        id: id.into(),
        ..GatewayInfo::default()
    };
    let now = now_ms();
    presence.beat(&info("a"), &[], now).await.unwrap();
    presence.beat(&info("b"), &[], now).await.unwrap();
    presence
        .beat(&info("dead"), &[], now - 5_000)
        .await
        .unwrap();
    for _ in 0..50 {
        let g = chooser.pick(&presence, Some("a")).await.unwrap().unwrap();
        assert_eq!(g.id, "b");
    }
    presence.remove_gateway("b").await.unwrap();
    let g = chooser.pick(&presence, Some("a")).await.unwrap().unwrap();
    assert_eq!(g.id, "a", "the avoided one when it is the only live one");
}
