//! The HTTP routes without media: the nginx-rtmp callbacks as nginx calls them (form-encoded
//! POSTs; `nginx/test.sh` runs the same router behind Debian's nginx) and the HTTP-FLV
//! route's CORS answers.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::TestAuth;
use tower::ServiceExt;

async fn call(app: &axum::Router, hook: &str, form: &str) -> (StatusCode, Option<String>) {
    let req = Request::post(format!("/media/{hook}?secret={SECRET}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    let location = res
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (res.status(), location)
}

const SECRET: &str = "nginx-callback-test-9f8e7d6c5b4a3f2e1d0c";

fn form(name: &str, clientid: u32) -> String {
    format!(
        "app=live&flashver=FMLE%2F3.0&swfurl=&tcurl=rtmp%3A%2F%2F127.0.0.1%2Flive&pageurl=&addr=127.0.0.1&clientid={clientid}&call=publish&name={name}&type=live"
    )
}

#[tokio::test]
async fn on_publish_redirects_a_valid_key_to_the_room_id_and_refuses_others() {
    let auth = TestAuth::with_room("goodkey", 42);
    let app = livehouse_media::nginx_hooks_router(auth.clone(), Some(SECRET.into()));

    assert_eq!(
        call(&app, "on_publish", &form("badkey", 1)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(auth.streaming(42), None);

    let (status, location) = call(&app, "on_publish", &form("goodkey", 2)).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some("42"));
    assert_eq!(auth.streaming(42), Some(true));

    // Another client for the same room is refused, and its publish_done changes nothing.
    assert_eq!(
        call(&app, "on_publish", &form("goodkey", 3)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "on_publish_done", &form("goodkey", 3)).await.0,
        StatusCode::OK
    );
    assert_eq!(auth.streaming(42), Some(true));

    // Wrong application.
    let other_app = form("goodkey", 4).replace("app=live", "app=other");
    assert_eq!(
        call(&app, "on_publish", &other_app).await.0,
        StatusCode::FORBIDDEN
    );

    // The publisher's own publish_done clears the flag and frees the room.
    assert_eq!(
        call(&app, "on_publish_done", &form("goodkey", 2)).await.0,
        StatusCode::OK
    );
    assert_eq!(auth.streaming(42), Some(false));
    assert_eq!(
        call(&app, "on_publish", &form("goodkey", 5)).await.0,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn callbacks_without_the_secret_are_refused_and_change_nothing() {
    let auth = TestAuth::with_room("goodkey", 42);
    let app = livehouse_media::nginx_hooks_router(auth.clone(), Some(SECRET.into()));
    assert_eq!(
        call(&app, "on_publish", &form("goodkey", 2)).await.0,
        StatusCode::FOUND
    );
    for query in [
        "",
        "?secret=",
        "?secret=guess",
        "?secret=nginx-callback-test-9f8e7d6c5b4a3f2e1d0",
        "?other=1",
    ] {
        for hook in ["on_publish", "on_update", "on_publish_done"] {
            let req = Request::post(format!("/media/{hook}{query}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form("goodkey", 2)))
                .expect("request");
            let res = app.clone().oneshot(req).await.expect("response");
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{hook}{query}");
        }
    }
    assert_eq!(
        auth.streaming(42),
        Some(true),
        "a forged publish_done cleared nothing"
    );
    // No secret configured: every callback is refused, even one that carries some secret.
    let off = livehouse_media::nginx_hooks_router(auth.clone(), None);
    assert_eq!(
        call(&off, "on_publish_done", &form("goodkey", 2)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(auth.streaming(42), Some(true));
}

#[tokio::test]
async fn on_update_cuts_the_publisher_once_the_room_is_closed() {
    let auth: Arc<TestAuth> = TestAuth::with_room("goodkey", 42);
    let app = livehouse_media::nginx_hooks_router(auth.clone(), Some(SECRET.into()));
    assert_eq!(
        call(&app, "on_publish", &form("goodkey", 7)).await.0,
        StatusCode::FOUND
    );
    assert_eq!(
        call(&app, "on_update", &form("goodkey", 7)).await.0,
        StatusCode::OK
    );
    auth.close_room(42);
    assert_eq!(
        call(&app, "on_update", &form("goodkey", 7)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(auth.streaming(42), Some(false));
    // A closed room's key no longer publishes.
    assert_eq!(
        call(&app, "on_publish", &form("goodkey", 8)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn http_flv_route_answers_cors_preflight_and_404_with_cors() {
    let auth = TestAuth::with_room("goodkey", 42);
    let app = livehouse_media::MediaServer::new(auth).http_router();
    let req = Request::options("/live/42.flv")
        .header(header::ORIGIN, "http://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let req = Request::get("/live/42.flv")
        .body(Body::empty())
        .expect("request");
    let res = app.oneshot(req).await.expect("response");
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "nobody publishes in room 42"
    );
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}
