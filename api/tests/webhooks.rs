//! Operator webhooks against a real HTTP receiver started here: events arrive signed (checked
//! with the receiver-side `verify`), a receiver that fails the first attempts still gets the
//! event later, a delivery is given up after its deadline, and the queue bound holds without
//! ever blocking the caller.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use livehouse_api::webhooks::{self, WebhookConfig, Webhooks};
use livehouse_core::testenv;
use livehouse_living::notify::{Notifier, OperatorEvent};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "test-webhook-secret-0123456789abcdef";

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    attempts: AtomicUsize,
    /// (headers, body) of every accepted request.
    got: Mutex<Vec<(HeaderMap, Bytes)>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.attempts.fetch_add(1, Ordering::SeqCst);
    let left = r.fail_first.load(Ordering::SeqCst);
    if left > 0 {
        r.fail_first.store(left - 1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.got.lock().push((headers, body));
    StatusCode::NO_CONTENT
}

async fn receiver(fail_first: usize) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver::default());
    r.fail_first.store(fail_first, Ordering::SeqCst);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, r)
}

fn fast(urls: Vec<String>) -> WebhookConfig {
    WebhookConfig {
        first_retry_delay: Duration::from_millis(50),
        max_retry_delay: Duration::from_millis(400),
        timeout: Duration::from_secs(2),
        ..WebhookConfig::new(urls, SECRET.into())
    }
}

fn start(config: WebhookConfig) -> Arc<Webhooks> {
    config.validate().unwrap();
    let (hooks, dispatcher) = Webhooks::new(config);
    tokio::spawn(dispatcher.run(std::future::pending()));
    hooks
}

fn now_secs() -> i64 {
    livehouse_core::time::now_ms() / 1000
}

#[tokio::test]
async fn events_arrive_signed_with_their_type_and_id() {
    let (url, r) = receiver(0).await;
    let hooks = start(fast(vec![url]));
    hooks.notify(OperatorEvent::new("room_closed", json!({"roomId": 7})));
    testenv::poll_until("the event to arrive", Duration::from_secs(5), || {
        let r = r.clone();
        async move { r.got.lock().len() == 1 }
    })
    .await;
    let (headers, body) = r.got.lock()[0].clone();
    let sig = headers[webhooks::SIGNATURE_HEADER].to_str().unwrap();
    assert!(
        webhooks::verify(
            SECRET.as_bytes(),
            sig,
            &body,
            now_secs(),
            webhooks::TOLERANCE_SECS
        ),
        "{sig}"
    );
    assert!(!webhooks::verify(
        b"wrong-secret-wrong-secret-wrong-secret",
        sig,
        &body,
        now_secs(),
        300
    ));
    let mut tampered = body.to_vec();
    tampered[0] = b' ';
    assert!(!webhooks::verify(
        SECRET.as_bytes(),
        sig,
        &tampered,
        now_secs(),
        300
    ));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "room_closed");
    assert_eq!(v["data"], json!({"roomId": 7}));
    assert_eq!(headers["x-livehouse-event"], "room_closed");
    assert_eq!(
        headers["x-livehouse-delivery"].to_str().unwrap(),
        v["id"].as_str().unwrap()
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn a_receiver_failing_the_first_attempts_gets_the_event_later() {
    let (url, r) = receiver(3).await;
    let hooks = start(fast(vec![url]));
    hooks.notify(OperatorEvent::new("user_banned", json!({"userId": 5})));
    testenv::poll_until(
        "the retried event to arrive",
        Duration::from_secs(10),
        || {
            let r = r.clone();
            async move { r.got.lock().len() == 1 }
        },
    )
    .await;
    assert_eq!(
        r.attempts.load(Ordering::SeqCst),
        4,
        "three failures, then success"
    );
    let s = hooks.stats();
    assert_eq!(s.retried.load(Ordering::SeqCst), 3);
    assert_eq!(s.delivered.load(Ordering::SeqCst), 1);
    assert_eq!(s.queued.load(Ordering::SeqCst), 0);
    // Each attempt is signed afresh; the accepted one verifies.
    let (headers, body) = r.got.lock()[0].clone();
    let sig = headers[webhooks::SIGNATURE_HEADER].to_str().unwrap();
    assert!(webhooks::verify(
        SECRET.as_bytes(),
        sig,
        &body,
        now_secs(),
        300
    ));
}

#[tokio::test]
async fn a_delivery_is_given_up_after_its_deadline() {
    let (url, r) = receiver(usize::MAX).await;
    let hooks = start(WebhookConfig {
        give_up_after: Duration::from_millis(500),
        ..fast(vec![url])
    });
    hooks.notify(OperatorEvent::new("stream_started", json!({"roomId": 1})));
    testenv::poll_until(
        "the delivery to be given up",
        Duration::from_secs(5),
        || {
            let h = hooks.clone();
            async move { h.stats().gave_up.load(Ordering::SeqCst) == 1 }
        },
    )
    .await;
    assert!(
        r.attempts.load(Ordering::SeqCst) >= 3,
        "retried before giving up"
    );
    assert_eq!(hooks.stats().queued.load(Ordering::SeqCst), 0);
    assert!(r.got.lock().is_empty());
}

#[tokio::test]
async fn the_queue_bound_holds_and_notify_never_waits() {
    // A receiver that never succeeds keeps every delivery in the queue.
    let (url, r) = receiver(usize::MAX).await;
    let hooks = start(WebhookConfig {
        queue_capacity: 5,
        ..fast(vec![url])
    });
    let started = Instant::now();
    for i in 0..200 {
        hooks.notify(OperatorEvent::new("message_deleted", json!({"i": i})));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "notify queued 200 events in {took:?}"
    );
    let s = hooks.stats();
    assert_eq!(s.dropped.load(Ordering::SeqCst), 195);
    // The queue stays at its bound while the receiver keeps failing.
    testenv::poll_until(
        "the receiver to see retries",
        Duration::from_secs(5),
        || {
            let r = r.clone();
            async move { r.attempts.load(Ordering::SeqCst) >= 10 }
        },
    )
    .await;
    assert_eq!(s.queued.load(Ordering::SeqCst), 5);
    hooks.notify(OperatorEvent::new("message_deleted", json!({"late": true})));
    assert_eq!(s.dropped.load(Ordering::SeqCst), 196, "still full");
}

#[tokio::test]
async fn rooms_starting_and_closing_reach_every_url() {
    let (url1, r1) = receiver(0).await;
    let (url2, r2) = receiver(1).await;
    let hooks = start(fast(vec![url1, url2]));
    let db = testenv::fresh_database(None).await;
    livehouse_living::migrate(&db).await.unwrap();
    let cache: Arc<dyn livehouse_core::cache::Cache> =
        Arc::new(livehouse_core::cache::MemoryCache::new());
    let living = livehouse_living::LivingService::new(db, cache).with_notifier(hooks.clone());
    let room = living
        .start(livehouse_living::StartRoom {
            anchor_id: 1,
            anchor_nick_name: "a".into(),
            anchor_avatar: String::new(),
            room_type: 1,
            room_name: "hooked".into(),
            covert_img: String::new(),
            record: false,
        })
        .await
        .unwrap();
    living.set_streaming(room.id, true).await.unwrap();
    living.close(1, room.id).await.unwrap();
    for r in [&r1, &r2] {
        testenv::poll_until("four events at each URL", Duration::from_secs(5), || {
            let r = (*r).clone();
            async move { r.got.lock().len() == 4 }
        })
        .await;
        let mut kinds: Vec<String> = r
            .got
            .lock()
            .iter()
            .map(|(_, b)| {
                serde_json::from_slice::<Value>(b).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "room_closed",
                "room_started",
                "stream_started",
                "stream_stopped"
            ]
        );
    }
}
