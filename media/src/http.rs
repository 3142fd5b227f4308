//! Playback over HTTP, with open CORS: `GET /live/{roomId}.flv` (a chunked FLV stream),
//! `GET /live/{roomId}.m3u8` (HLS / LL-HLS playlist, blocking reloads with `_HLS_msn` /
//! `_HLS_part`) and its media `GET /live/{roomId}/{sid}/{init.mp4|N.m4s|N.P.m4s}`.
//!
//! For HTTP-FLV it owns the mapping of a hub [`Subscription`] to an HTTP body: the FLV file header and header
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
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::flv::{self, Tag, TagKind};
use crate::hls::{HlsError, Position};
use crate::hub::{concat, Protocol, Subscription};
use crate::MediaServer;

pub(crate) fn router(server: Arc<MediaServer>) -> Router {
    Router::new()
        .route("/live/{file}", get(live_file).options(preflight))
        .route(
            "/live/{room}/{sid}/{file}",
            get(hls_media).options(preflight),
        )
        .route(
            "/records/{file}",
            get(record_file).head(record_file).options(preflight),
        )
        .with_state(server)
}

/// `GET /records/{recordId}.flv`: a finished record, with byte ranges (tower-http's `ServeFile`
/// answers `Range` with 206, and a range beyond the end with 416).
async fn record_file(
    State(server): State<Arc<MediaServer>>,
    Path(file): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let Some(dir) = server.record_dir() else {
        return plain(StatusCode::NOT_FOUND, "recording is off");
    };
    let Some((room, "flv")) = room_file(&file) else {
        return plain(StatusCode::NOT_FOUND, "no such record");
    };
    if !crate::record::is_finished(dir, room) {
        return plain(StatusCode::NOT_FOUND, "no such record");
    }
    let svc = tower_http::services::ServeFile::new(crate::record::path_of(dir, room));
    match tower::ServiceExt::oneshot(svc, request).await {
        Ok(r) => {
            let mut r = r.map(Body::new);
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("video/x-flv"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            with_cors(r)
        }
        Err(e) => match e {},
    }
}

/// `GET /live/{roomId}.jpg`: the live thumbnail (404 when off or not available yet).
async fn thumbnail(server: &Arc<MediaServer>, room: i64) -> Response {
    let hub = server.hub.clone();
    match server
        .thumbs
        .get(room, move || hub.keyframe_flv(room))
        .await
    {
        Some(jpeg) => media_response(jpeg, "image/jpeg", "public, max-age=10"),
        None => plain(StatusCode::NOT_FOUND, "no thumbnail"),
    }
}

/// `{roomId}.{ext}` → (room id, extension), for positive ids only.
fn room_file(file: &str) -> Option<(i64, &str)> {
    let (id, ext) = file.split_once('.')?;
    let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
    Some((id, ext))
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    with_cors((status, msg).into_response())
}

async fn live_file(
    State(server): State<Arc<MediaServer>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    request: axum::extract::Request,
) -> Response {
    match room_file(&file) {
        Some((room, "flv")) => play(&server, room),
        Some((room, "jpg")) => thumbnail(&server, room).await,
        Some((room, "m3u8")) => {
            let client = client_key(&request);
            playlist(&server, room, query.as_deref(), client).await
        }
        _ => plain(StatusCode::NOT_FOUND, "no such live stream"),
    }
}

/// Parses `_HLS_msn` / `_HLS_part` (other parameters, e.g. `_HLS_skip`, are ignored).
fn blocking_position(query: Option<&str>) -> Result<Option<Position>, &'static str> {
    let (mut msn, mut part) = (None, None);
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let num = || {
            (v.len() <= 18 && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<u64>().ok())
                .flatten()
        };
        match k {
            "_HLS_msn" => msn = Some(num().ok_or("_HLS_msn must be a number")?),
            "_HLS_part" => part = Some(num().ok_or("_HLS_part must be a number")?),
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part needs _HLS_msn"),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some(Position { msn, part })),
    }
}

fn hls_error(e: HlsError) -> Response {
    match e {
        HlsError::NotFound => plain(StatusCode::NOT_FOUND, "no such live stream"),
        HlsError::NotReady => {
            let mut r = plain(StatusCode::NOT_FOUND, "the stream has no segment yet");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        HlsError::TooFarAhead => plain(
            StatusCode::BAD_REQUEST,
            "_HLS_msn is more than two segments ahead of the stream",
        ),
        HlsError::Timeout => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the requested part did not arrive in time",
        ),
    }
}

/// Who asks, for counting HLS viewers: Apple's players send `X-Playback-Session-Id`; for others
/// (hls.js) the TCP peer stands in (one browser may use a few connections, counted apart).
fn client_key(request: &axum::extract::Request) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match request.headers().get("x-playback-session-id") {
        Some(id) => id.as_bytes().hash(&mut h),
        None => request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0)
            .hash(&mut h),
    }
    h.finish()
}

async fn playlist(
    server: &Arc<MediaServer>,
    room: i64,
    query: Option<&str>,
    client: u64,
) -> Response {
    let want = match blocking_position(query) {
        Ok(w) => w,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
    };
    let Some(channel) = server.hub.channel(room) else {
        return plain(StatusCode::NOT_FOUND, "no such live stream");
    };
    channel.hls_viewer_seen(client);
    if let Some(want) = want {
        if let Err(e) = channel.hls.wait_for(want).await {
            return hls_error(e);
        }
    } else if channel.hls.init().is_some() && channel.hls.playlist() == Err(HlsError::NotReady) {
        // An H.264 stream that has just started: wait (like a blocking reload, at most 6 s) for
        // its first segment rather than answer 404, which players and browsers report as errors.
        let first = Position { msn: 0, part: None };
        if let Err(e) = channel.hls.wait_for(first).await {
            return hls_error(e);
        }
    }
    match channel.hls.playlist() {
        Ok(text) => media_response(
            text,
            "application/vnd.apple.mpegurl",
            // A blocking reload's answer is final for its URL; the plain one changes every part.
            if want.is_some() {
                "public, max-age=6"
            } else {
                "public, max-age=1"
            },
        ),
        Err(e) => hls_error(e),
    }
}

fn media_response(body: Bytes, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    with_cors(response)
}

async fn hls_media(
    State(server): State<Arc<MediaServer>>,
    Path((room, sid, file)): Path<(String, String, String)>,
) -> Response {
    let Some(channel) = room
        .parse::<i64>()
        .ok()
        .and_then(|room| server.hub.channel(room))
    else {
        return plain(StatusCode::NOT_FOUND, "no such live stream");
    };
    if channel.hls.sid() != sid {
        return plain(StatusCode::NOT_FOUND, "that publish session has ended");
    }
    const IMMUTABLE: &str = "public, max-age=60";
    if file == "init.mp4" {
        return match channel.hls.init() {
            Some(b) => media_response(b, "video/mp4", IMMUTABLE),
            None => plain(StatusCode::NOT_FOUND, "no codec configuration yet"),
        };
    }
    let Some(name) = file.strip_suffix(".m4s") else {
        return plain(StatusCode::NOT_FOUND, "no such file");
    };
    let nums: Vec<Option<u64>> = name
        .split('.')
        .map(|n| {
            (n.len() <= 18 && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse().ok())
                .flatten()
        })
        .collect();
    let found = match nums.as_slice() {
        [Some(msn)] => channel.hls.segment(*msn).ok_or(HlsError::NotFound),
        [Some(msn), Some(part)] => match channel.hls.part(*msn, *part) {
            Some(b) => Ok(b),
            None => channel.hls.wait_part(*msn, *part).await,
        },
        _ => Err(HlsError::NotFound),
    };
    match found {
        Ok(b) => media_response(b, "video/mp4", IMMUTABLE),
        Err(e) => hls_error(e),
    }
}

fn play(server: &Arc<MediaServer>, room: i64) -> Response {
    let room = Some(room);
    let sub = room.and_then(|room| server.hub.subscribe(room, Protocol::Flv));
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
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
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
