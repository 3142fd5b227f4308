//! The nginx-rtmp callbacks (`on_publish`, `on_update`, `on_publish_done`) for the production
//! video path, where nginx-http-flv-module does the media and the api only decides.
//!
//! Owns the translation of nginx-rtmp's form-encoded notifications into [`StreamAuth`] calls
//! and the answers nginx understands: 2xx allows, any other code refuses (nginx drops the
//! client), and a 3xx `Location` that is not an `rtmp://` URL renames the stream, which is how
//! the stream key becomes the room id viewers see. It remembers which nginx client publishes
//! each room so a refused duplicate's `on_publish_done` does not clear the room's streaming
//! flag. It must not touch media; it never holds its lock across an await.
//!
//! The callbacks are on the api's public port, so each call must carry the deployment's
//! `--media-callback-secret` as `?secret=` in its URL (nginx/rtmp.conf puts it there); without
//! a configured secret every callback answers 403. A stranger cannot clear a room's streaming
//! flag with a guessed `clientid` and `addr`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::{StreamAuth, APP_NAME};

/// A room whose publisher has not been confirmed (publish or update) for this long is free again,
/// so a crashed nginx cannot lock a room forever.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The fields of an nginx-rtmp notification that matter here (others are ignored).
#[derive(Debug, Deserialize)]
struct Notify {
    #[serde(default)]
    app: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    clientid: String,
}

impl Notify {
    /// Identifies the nginx client connection (clientid is per nginx worker process; add addr).
    fn client(&self) -> String {
        format!("{}/{}", self.clientid, self.addr)
    }
}

struct Hooks {
    auth: Arc<dyn StreamAuth>,
    /// room id -> (nginx client, last confirmation)
    publishers: Mutex<HashMap<i64, (String, Instant)>>,
}

/// `POST /media/on_publish`, `POST /media/on_update`, `POST /media/on_publish_done`, each
/// refused (403) unless its URL carries `secret` (none configured: always refused).
pub fn router(auth: Arc<dyn StreamAuth>, secret: Option<String>) -> Router {
    let hooks = Arc::new(Hooks {
        auth,
        publishers: Mutex::new(HashMap::new()),
    });
    let secret = Arc::new(secret);
    Router::new()
        .route("/media/on_publish", post(on_publish))
        .route("/media/on_update", post(on_update))
        .route("/media/on_publish_done", post(on_publish_done))
        .route_layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let secret = secret.clone();
            async move {
                let Some(expected) = secret.as_deref() else {
                    metrics::counter!("livehouse_media_callback_refused_total", "why" => "off")
                        .increment(1);
                    return refuse("media callbacks are off: set --media-callback-secret");
                };
                if !carries_secret(req.uri(), expected) {
                    tracing::info!(path = %req.uri().path(), "nginx callback refused: wrong or missing secret");
                    metrics::counter!("livehouse_media_callback_refused_total", "why" => "secret")
                        .increment(1);
                    return refuse("wrong or missing callback secret");
                }
                next.run(req).await
            }
        }))
        .with_state(hooks)
}

/// Whether the query string has `secret=<expected>` (compared in constant time).
fn carries_secret(uri: &axum::http::Uri, expected: &str) -> bool {
    #[derive(Deserialize)]
    struct Q {
        secret: Option<String>,
    }
    let given = axum::extract::Query::<Q>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.secret)
        .unwrap_or_default();
    !given.is_empty() && livehouse_core::auth::ct_eq(given.as_bytes(), expected.as_bytes())
}

fn refuse(reason: &str) -> Response {
    (StatusCode::FORBIDDEN, reason.to_string()).into_response()
}

async fn on_publish(State(h): State<Arc<Hooks>>, Form(n): Form<Notify>) -> Response {
    let key = n.name.split('?').next().unwrap_or_default();
    if n.app.trim_end_matches('/') != APP_NAME {
        tracing::info!(app = %n.app, addr = %n.addr, "nginx publish refused: unknown application");
        return refuse("unknown application");
    }
    let room_id = match h.auth.authorize_publish(key).await {
        Ok(room_id) => room_id,
        Err(reason) => {
            tracing::info!(addr = %n.addr, "nginx publish refused: {reason}");
            return refuse(&reason);
        }
    };
    let client = n.client();
    {
        let mut pubs = h.publishers.lock();
        if let Some((other, seen)) = pubs.get(&room_id) {
            if *other != client && seen.elapsed() < STALE_AFTER {
                tracing::info!(room = room_id, addr = %n.addr, "nginx publish refused: room already has a publisher");
                return refuse("room already has a publisher");
            }
        }
        pubs.insert(room_id, (client, Instant::now()));
    }
    h.auth.set_streaming(room_id, true).await;
    tracing::info!(room = room_id, addr = %n.addr, "nginx publish started");
    (StatusCode::FOUND, [(header::LOCATION, room_id.to_string())]).into_response()
}

async fn on_update(State(h): State<Arc<Hooks>>, Form(n): Form<Notify>) -> Response {
    let client = n.client();
    let room = {
        let pubs = h.publishers.lock();
        pubs.iter()
            .find(|(_, (c, _))| *c == client)
            .map(|(room, _)| *room)
    };
    let room = match room {
        Some(room) => room,
        // Not known here (e.g. the api restarted): the key decides.
        None => match h.auth.authorize_publish(&n.name).await {
            Ok(room) => room,
            Err(reason) => {
                tracing::info!(addr = %n.addr, "nginx publisher cut: {reason}");
                return refuse(&reason);
            }
        },
    };
    if !h.auth.is_room_live(room).await {
        h.publishers.lock().remove(&room);
        h.auth.set_streaming(room, false).await;
        tracing::info!(room, "room closed: nginx publisher cut");
        return refuse("room closed");
    }
    h.publishers.lock().insert(room, (client, Instant::now()));
    StatusCode::OK.into_response()
}

async fn on_publish_done(State(h): State<Arc<Hooks>>, Form(n): Form<Notify>) -> Response {
    let client = n.client();
    let room = {
        let mut pubs = h.publishers.lock();
        let room = pubs
            .iter()
            .find(|(_, (c, _))| *c == client)
            .map(|(room, _)| *room);
        if let Some(room) = room {
            pubs.remove(&room);
        }
        room
    };
    if let Some(room) = room {
        h.auth.set_streaming(room, false).await;
        tracing::info!(room, "nginx publish stopped");
    }
    StatusCode::OK.into_response()
}
