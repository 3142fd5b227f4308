//! `GET /healthz` (the process answers), `GET /readyz` (database and cache answer) and
//! `GET /metrics` (Prometheus text).

use crate::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    if let Err(e) = state.db.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
    }
    if let Err(e) = state.cache.get("readyz").await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("cache: {e}"));
    }
    (StatusCode::OK, "ready".to_string())
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    match &state.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled".to_string()),
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
