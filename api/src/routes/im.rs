//! `POST /im/getImConfig` (an IM token and the least-loaded live gateway) and
//! `GET /im/online?userId=` (whether a user has a live IM session). The registry itself lives in
//! `livehouse-im-core`; this is its HTTP face.

use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::flex::opt_i64;
use crate::params::Params;
use crate::session::CurrentUser;
use crate::ApiState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use livehouse_im_core::registry;
use serde::Deserialize;
use serde_json::json;

/// Replaces an unspecified bind host (`0.0.0.0`, `[::]`) in a gateway address with the host the
/// client reached the api by, so a browser gets an address it can dial.
fn dialable(addr: &str, headers: &HeaderMap, public_host: Option<&str>) -> String {
    let host = public_host
        .map(str::to_string)
        .unwrap_or_else(|| super::living::request_host(headers));
    addr.replace("0.0.0.0", &host).replace("[::]", &host)
}

async fn get_im_config(
    State(state): State<ApiState>,
    CurrentUser(user_id): CurrentUser,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let gateway = registry::pick_gateway(state.cache.as_ref())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::Unavailable("no IM gateway is running".into()))?;
    let name = crate::accounts::get(&state.db, user_id)
        .await?
        .map(|u| u.nick_name)
        .ok_or_else(|| ApiError::Unauthorized("this account no longer exists".into()))?;
    let token = registry::issue_named_im_token(state.cache.as_ref(), user_id, &name)
        .await
        .map_err(ApiError::internal)?;
    let public = state.config.public_host.as_deref();
    Ok(ok(json!({
        "token": token,
        "userId": user_id,
        "wsImServerAddress": dialable(&gateway.ws_addr, &headers, public),
        "tcpImServerAddress": dialable(&gateway.tcp_addr, &headers, public),
        "heartbeatSecs": state.config.im_heartbeat_secs,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnlineReq {
    #[serde(default, deserialize_with = "opt_i64")]
    user_id: Option<i64>,
}

async fn online(
    State(state): State<ApiState>,
    Params(req): Params<OnlineReq>,
) -> ApiResult<impl IntoResponse> {
    let user_id = req
        .user_id
        .ok_or_else(|| ApiError::BadRequest("userId is required".into()))?;
    let online = registry::is_online(state.cache.as_ref(), user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(ok(json!({ "userId": user_id, "online": online })))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/im/getImConfig", post(get_im_config))
        .route("/im/online", get(online))
}
