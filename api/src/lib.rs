//! # livehouse-api
//!
//! The HTTP API of the seed system's routes: accounts ([`accounts`], [`routes::user`]), the home
//! page, rooms ([`routes::living`]), health and metrics, the OpenAPI document and the web assets
//! ([`web`]: an allow-list, with a Content-Security-Policy on the pages).
//! Every response is the envelope `{code, msg, data}` ([`envelope`]); every failure is one
//! [`error::ApiError`] that knows its status.
//!
//! Must not: hold room logic (that is `livehouse-living`) or speak the IM protocol.

pub mod accounts;
pub mod envelope;
pub mod error;
pub mod flex;
pub mod params;
pub mod ratelimit;
pub mod routes;
pub mod session;
pub mod web;
pub mod webhooks;

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use livehouse_core::auth::JwtKeys;
use livehouse_core::bus::Bus;
use livehouse_core::cache::Cache;
use livehouse_core::chatlog::ChatLog;
use livehouse_core::presence::Presence;
use livehouse_living::{LivingService, ModerationService};
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The OpenAPI 3 document of every route.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the api role needs from configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// New accounts get the anchor tag.
    pub open_streaming: bool,
    /// RTMP port shown in push URLs.
    pub rtmp_port: u16,
    /// Host shown in push URLs; the request's `Host` when `None`.
    pub public_host: Option<String>,
    /// Origin viewers play HTTP-FLV from (`/live/{roomId}.flv` is appended); same origin when
    /// `None`.
    pub play_base_url: Option<String>,
    /// IM heartbeat period clients must keep (seconds).
    pub im_heartbeat_secs: u64,
    /// Folder of web assets served at `/`; none when `None`.
    pub web_dir: Option<PathBuf>,
    /// `--record`: "off", "on" or "per-room" (the studio shows a checkbox).
    pub record_mode: String,
    /// Bitrate above which stream health warns (kbit/s; 0 = none).
    pub max_bitrate_kbps: u32,
    /// Largest request body the API routes read (`--http-max-body-bytes`; larger: 413).
    pub max_body_bytes: usize,
    /// Pre-login rate limits (sign-in, sign-up, IM tokens).
    pub rate: ratelimit::RateLimits,
    /// Session cookies are `Secure` (`--public-url https://…`); otherwise only for requests
    /// marked [`session::OverTls`].
    pub secure_cookies: bool,
}

/// Where `/living/streamHealth` reads a room's stream health: the media server of this process.
pub trait StreamHealthSource: Send + Sync + 'static {
    /// The report as JSON, or `None` when nobody publishes in the room.
    fn stream_health(&self, room_id: i64, max_bitrate_kbps: u32) -> Option<serde_json::Value>;
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub db: DatabaseConnection,
    pub cache: Arc<dyn Cache>,
    /// Who is connected where (gateway choice, `/im/online`).
    pub presence: Arc<dyn Presence>,
    /// Each room's chat stream (`/im/history`).
    pub chatlog: Arc<dyn ChatLog>,
    /// The choice of a gateway for each new IM client.
    pub chooser: Arc<livehouse_im_core::registry::Chooser>,
    pub living: LivingService,
    /// The bus (moderation events, frames pushed to rooms).
    pub bus: Arc<dyn Bus>,
    /// Mutes, bans, slow mode, words, room admins, recalls, operator room closes.
    pub moderation: ModerationService,
    /// Suspended accounts, refused on every request.
    pub suspensions: Arc<accounts::suspension::Suspensions>,
    pub jwt: JwtKeys,
    /// Password hashing on a bounded pool of threads with reused memory.
    pub passwords: accounts::passwords::Passwords,
    pub config: Arc<ApiConfig>,
    pub metrics: Option<PrometheusHandle>,
    /// The media server in this process, for stream health (none when the api runs alone).
    pub media: Option<Arc<dyn StreamHealthSource>>,
}

/// Creates or upgrades the api's tables.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    accounts::migration::Migrator::up(db, None).await
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// Gives each request an id (`x-request-id`, also on its tracing span), counts requests per
/// route and status and records their latency.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let id = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("http", request_id = id, method = %req.method(), route = %route);
    let started = Instant::now();
    let mut res = next.run(req).instrument(span).await;
    res.headers_mut()
        .insert("x-request-id", axum::http::HeaderValue::from(id));
    let status = res.status().as_u16().to_string();
    metrics::counter!("livehouse_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("livehouse_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// A request whose `Content-Length` is over the limit gets its 413 at once, before any of the
/// body is read (the body limit alone would wait for the bytes).
async fn refuse_declared_oversize(req: Request, next: Next, max_body: usize) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        let mut res = error::ApiError::TooLarge("request body too large".into()).into_response();
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return res;
    }
    next.run(req).await
}

/// All api routes with their state applied, plus the web assets as the fallback.
pub fn router(state: ApiState) -> Router {
    let max_body = state.config.max_body_bytes;
    let assets = state
        .config
        .web_dir
        .as_deref()
        .map(|dir| web::WebAssets::new(dir, state.config.play_base_url.as_deref()));
    let mut app = Router::new()
        .merge(routes::user::routes())
        .merge(routes::home::routes())
        .merge(routes::living::routes())
        .merge(routes::moderation::routes())
        .merge(routes::im::routes())
        .merge(routes::health::routes())
        .route("/api-docs/openapi.json", get(openapi))
        .route_layer(middleware::from_fn(track))
        .with_state(state);
    if let Some(assets) = assets {
        app = app.fallback(move |req: Request| assets.clone().serve(req));
    }
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        refuse_declared_oversize(req, next, max_body)
    }))
    .layer(axum::extract::DefaultBodyLimit::max(max_body))
}
