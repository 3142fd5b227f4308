//! Moderation through the real binary: `livehouse admin grant` makes an operator of a running
//! deployment's account, `--webhook-url` delivers signed events, and bad moderation flags stop
//! the process at start with a clear message.

use livehouse_e2e::{binary, Livehouse};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn register(lh: &Livehouse, name: &str) -> String {
    let reg = lh
        .call(
            "/user/register",
            "",
            json!({"username": name, "password": "secret12"}),
        )
        .await;
    reg["data"]["token"]
        .as_str()
        .expect("registered")
        .to_string()
}

async fn state(lh: &Livehouse, token: &str, room: i64) -> Value {
    reqwest::Client::new()
        .get(lh.url(&format!("/living/moderation/state?roomId={room}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn admin(lh: &Livehouse, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(&lh.data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn admin_grant_makes_an_operator_of_a_running_deployment() {
    let lh = Livehouse::start(&[]).await;
    let (_, room) = lh.streamer_with_room("streamer", "Show").await;
    let room = room["roomId"].as_i64().unwrap();
    let bob = register(&lh, "bobby").await;
    assert_eq!(state(&lh, &bob, room).await["code"], 403);

    let (ok, out) = admin(&lh, &["grant", "bobby"]);
    assert!(ok, "{out}");
    assert!(out.contains("tags [anchor, admin]"), "{out}");
    let st = state(&lh, &bob, room).await;
    assert_eq!(st["code"], 200, "{st}");
    assert_eq!(st["data"]["you"], "operator");

    let (ok, out) = admin(&lh, &["grant", "bobby", "--tag", "vip"]);
    assert!(ok && out.contains("tags [anchor, admin, vip]"), "{out}");
    let (ok, out) = admin(&lh, &["revoke", "bobby"]);
    assert!(ok && out.contains("tags [anchor, vip]"), "{out}");
    assert_eq!(state(&lh, &bob, room).await["code"], 403);
    let (ok, out) = admin(&lh, &["show", "ghost"]);
    assert!(!ok && out.contains("no account named `ghost`"), "{out}");
}

/// A webhook request as received: signature header, body.
type Received = (String, Vec<u8>);

#[tokio::test]
async fn webhook_flags_deliver_signed_room_events() {
    const SECRET: &str = "e2e-webhook-secret-0123456789abcdef";
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let sig = headers
                        .get("x-livehouse-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    sink.lock().unwrap().push((sig, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let lh = Livehouse::start(&["--webhook-url", &hook, "--webhook-secret", SECRET]).await;
    let (token, room) = lh.streamer_with_room("hooked", "Hooked show").await;
    let room = room["roomId"].as_i64().unwrap();
    lh.call("/living/closeLiving", &token, json!({"roomId": room}))
        .await;
    livehouse_core::testenv::poll_until("two webhook events", Duration::from_secs(10), || {
        let got = got.clone();
        async move { got.lock().unwrap().len() >= 2 }
    })
    .await;
    let now = livehouse_core::time::now_ms() / 1000;
    let events: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(sig, body)| {
            assert!(
                livehouse_api::webhooks::verify(SECRET.as_bytes(), sig, body, now, 300),
                "bad signature {sig}"
            );
            serde_json::from_slice(body).unwrap()
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["room_started", "room_closed"]);
    assert_eq!(events[1]["data"]["roomId"], room);
}

#[test]
fn bad_moderation_flags_stop_the_process_at_start() {
    for (args, needle) in [
        (
            vec!["--blocked-words", "/nonexistent/words.txt"],
            "/nonexistent/words.txt",
        ),
        (
            vec!["--webhook-url", "http://127.0.0.1:9/h"],
            "--webhook-url needs --webhook-secret",
        ),
        (
            vec![
                "--webhook-url",
                "http://127.0.0.1:9/h",
                "--webhook-secret",
                "short",
            ],
            "at least 32 characters",
        ),
    ] {
        let dir = std::env::temp_dir().join(format!(
            "livehouse-e2e-flags-{}-{}",
            std::process::id(),
            needle.len()
        ));
        let out = std::process::Command::new(binary())
            .args(&args)
            .args(["--http-addr", "127.0.0.1:0", "--rtmp-addr", "127.0.0.1:0"])
            .args(["--im-tcp-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&dir)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should refuse to start");
        assert!(
            err.contains(needle),
            "{args:?}: stderr should mention {needle}:\n{err}"
        );
    }
}
