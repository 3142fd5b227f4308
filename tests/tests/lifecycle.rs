//! The binary's lifecycle against Redis: `/readyz` answers 503 while Redis is down and 200 once it
//! is back; SIGTERM with IM sessions connected closes them, leaves the presence store (the
//! gateway and its connections are removed, not left to expire) and exits cleanly.
//!
//! Needs `LIVEHOUSE_TEST_REDIS_URL` (the SIGTERM test uses it with a key prefix of its own) and
//! `redis-server` (the readiness test runs its own instance on a free port, to stop it);
//! skipped without them unless `LIVEHOUSE_REQUIRE_BACKENDS=1`.

use livehouse_core::presence::{Presence, PresenceConfig, RedisPresence};
use livehouse_core::testenv;
use livehouse_core::time::now_ms;
use livehouse_e2e::{free_addr, poll_until, Livehouse};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` of this test on `addr`, without persistence; killed when dropped.
fn redis_server(addr: SocketAddr) -> tokio::process::Child {
    tokio::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts")
}

fn have_redis_server() -> bool {
    let ok = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("LIVEHOUSE_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "redis-server missing but LIVEHOUSE_REQUIRE_BACKENDS=1"
        );
        eprintln!("SKIPPED: redis-server not installed");
    }
    ok
}

async fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

async fn readyz(lh: &Livehouse) -> (u16, String) {
    match reqwest::get(lh.url("/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_redis_is_down_and_200_when_it_is_back() {
    if testenv::backend("LIVEHOUSE_TEST_REDIS_URL").is_none() || !have_redis_server() {
        return;
    }
    let addr = free_addr();
    let mut redis = redis_server(addr);
    poll_until("our redis-server answers", WAIT, || answers(addr)).await;
    let url = format!("redis://{addr}");
    let lh = Livehouse::start(&["--redis-url", &url]).await;
    assert_eq!(readyz(&lh).await.0, 200, "ready with Redis up");

    redis.kill().await.unwrap();
    poll_until("/readyz answers 503", WAIT, || async {
        readyz(&lh).await.0 == 503
    })
    .await;
    let (_, why) = readyz(&lh).await;
    assert!(why.contains("cache"), "the reason names the cache: {why}");
    // Liveness is not readiness: the process still answers /healthz.
    let health = reqwest::get(lh.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let _redis = redis_server(addr);
    poll_until("/readyz answers 200 again", WAIT * 2, || async {
        readyz(&lh).await.0 == 200
    })
    .await;
}

/// One IM frame: magic, code, length, JSON body.
fn frame(code: i32, body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut f = Vec::with_capacity(10 + body.len());
    f.extend_from_slice(&18673u16.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

/// Reads one IM frame: (code, body).
async fn read_frame(s: &mut TcpStream) -> Option<(i32, Value)> {
    let mut head = [0u8; 10];
    s.read_exact(&mut head).await.ok()?;
    let code = i32::from_be_bytes(head[2..6].try_into().unwrap());
    let len = i32::from_be_bytes(head[6..10].try_into().unwrap()).max(0) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((code, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Registers `name` and logs it in to `room` over the gateway's TCP port; returns its user id.
async fn im_session(lh: &Livehouse, name: &str, room: i64) -> (i64, TcpStream) {
    let reg = lh
        .call(
            "/user/register",
            "",
            json!({"username": name, "password": "secret12"}),
        )
        .await;
    let user = reg["data"]["userId"].as_i64().expect("registered");
    let token = reg["data"]["token"].as_str().unwrap().to_string();
    let cfg = lh.call("/im/getImConfig", &token, json!({})).await;
    let im_token = cfg["data"]["token"]
        .as_str()
        .expect("an IM token")
        .to_string();
    let mut s = TcpStream::connect(lh.im_tcp).await.unwrap();
    s.write_all(&frame(
        1001,
        &json!({"appId": 10001, "userId": user, "token": im_token, "roomId": room}),
    ))
    .await
    .unwrap();
    let (code, body) = tokio::time::timeout(WAIT, read_frame(&mut s))
        .await
        .expect("login answer in time")
        .expect("login answer");
    assert_eq!(
        (code, body["data"].as_str()),
        (1001, Some("true")),
        "{body}"
    );
    (user, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_sessions_connected_closes_them_and_leaves_the_presence_store() {
    let Some(redis) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = testenv::unique_prefix("lifecycle");
    let mut lh = Livehouse::start(&["--redis-url", &redis, "--cache-prefix", &prefix]).await;
    let presence = RedisPresence::connect(&redis, &prefix, PresenceConfig::default())
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for (i, name) in ["stay1", "stay2", "stay3"].into_iter().enumerate() {
        sessions.push(im_session(&lh, name, 40 + i as i64 % 2).await);
    }
    for (user, _) in &sessions {
        assert!(
            !presence
                .user_conns(*user, now_ms())
                .await
                .unwrap()
                .is_empty(),
            "user {user} is in the presence store"
        );
    }
    let gateways = presence.gateways(now_ms()).await.unwrap();
    assert_eq!(gateways.len(), 1, "{gateways:?}");

    // Asked at the moment of the signal, liveness alone would still count the gateway and its
    // connections (its last beat is recent): only a removal makes them go.
    let at_signal = now_ms();
    let pid = lh.child.id().expect("running");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(WAIT, lh.child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
    for (user, s) in &mut sessions {
        let mut rest = Vec::new();
        let end = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
        assert!(
            end.is_ok(),
            "user {user}'s connection was not closed by the stop"
        );
    }
    assert!(
        presence.gateways(at_signal).await.unwrap().is_empty(),
        "the stopped gateway is removed from the presence store"
    );
    for (user, _) in &sessions {
        assert!(
            presence
                .user_conns(*user, at_signal)
                .await
                .unwrap()
                .is_empty(),
            "user {user}'s connection is removed with its gateway"
        );
    }
}
