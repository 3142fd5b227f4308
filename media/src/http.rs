//! HTTP-FLV playback: `GET /live/{roomId}.flv`, a chunked FLV stream with open CORS.
//!
//! Owns the mapping of a hub [`Subscription`] to an HTTP body: the FLV file header and header
//! tags (built for this viewer), then the shared GOP and live tags as they are (`Bytes` clones,
//! never copied per viewer). It must not buffer beyond the viewer's bounded queue: hyper polls the
//! body only when the socket accepts more, so a slow client fills its queue and the hub makes it
//! skip; the body ends when the publisher stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::flv::{self, Tag, TagKind};
use crate::hub::{concat, Subscription};
use crate::MediaServer;

pub(crate) fn router(server: Arc<MediaServer>) -> Router {
    Router::new()
        .route("/live/{file}", get(play).options(preflight))
        .with_state(server)
}

async fn play(State(server): State<Arc<MediaServer>>, Path(file): Path<String>) -> Response {
    let room = file
        .strip_suffix(".flv")
        .and_then(|id| id.parse::<i64>().ok());
    let sub = room.and_then(|room| server.hub.subscribe(room));
    let Some(sub) = sub else {
        return with_cors((StatusCode::NOT_FOUND, "no such live stream").into_response());
    };
    tracing::debug!(room = ?room, "HTTP-FLV viewer joined");
    let mut response = Response::new(Body::from_stream(FlvBody::new(sub)));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("video/x-flv"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    with_cors(response)
}

async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    with_cors(response)
}

fn with_cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The body of one HTTP-FLV viewer.
struct FlvBody {
    pending: VecDeque<Bytes>,
    rx: mpsc::Receiver<Tag>,
}

impl FlvBody {
    fn new(sub: Subscription) -> FlvBody {
        let mut pending = VecDeque::with_capacity(sub.init.len() + 1);
        // The file header and the per-viewer header tags go out as one chunk; the GOP is shared.
        let (headers, gop): (Vec<Tag>, Vec<Tag>) = sub
            .init
            .into_iter()
            .partition(|t| t.kind == TagKind::Script || t.seq_header);
        pending.push_back(concat(
            std::iter::once(Bytes::from_static(&flv::FILE_HEADER))
                .chain(headers.into_iter().map(|t| t.flv)),
        ));
        pending.extend(gop.into_iter().map(|t| t.flv));
        FlvBody {
            pending,
            rx: sub.rx,
        }
    }
}

impl Stream for FlvBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(b)));
        }
        self.rx.poll_recv(cx).map(|tag| tag.map(|t| Ok(t.flv)))
    }
}
