//! `POST /im/getImConfig` (an IM token and a live gateway, chosen by `registry::Chooser`), `GET /im/online?userId=` (whether a
//! user has a live IM connection) and `GET /im/history?roomId=&limit=&before=` (a page of a
//! room's chat, design §3.1). The registry and the chat log live in `livehouse-im-core` and
//! `livehouse-core`; this is their HTTP face.

use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::flex::opt_i64;
use crate::params::Params;
use crate::ratelimit::Client;
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImConfigReq {
    /// A gateway the client could not reach: another one is chosen if any is live.
    avoid: Option<String>,
}

async fn get_im_config(
    State(state): State<ApiState>,
    CurrentUser(user_id): CurrentUser,
    Client(client): Client,
    headers: HeaderMap,
    Params(req): Params<ImConfigReq>,
) -> ApiResult<impl IntoResponse> {
    crate::ratelimit::im_token(&state, &client, user_id).await?;
    crate::accounts::suspension::refuse_suspended(&state.db, user_id).await?;
    let avoid = req.avoid.filter(|a| !a.is_empty() && a.len() <= 128);
    let gateway = state
        .chooser
        .pick(state.presence.as_ref(), avoid.as_deref())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::Unavailable("no IM gateway is running".into()))?;
    let user = crate::accounts::get(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("this account no longer exists".into()))?;
    let claims = registry::TokenClaims {
        user_id,
        vip: user.is_vip(),
        name: user.nick_name,
    };
    let token = registry::issue_token(state.cache.as_ref(), &claims)
        .await
        .map_err(ApiError::internal)?;
    let public = state.config.public_host.as_deref();
    Ok(ok(json!({
        "token": token,
        "userId": user_id,
        "gatewayId": gateway.id,
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
    let online = registry::is_online(state.presence.as_ref(), user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(ok(json!({ "userId": user_id, "online": online })))
}

/// Largest and default page of history.
pub const HISTORY_MAX: i64 = 100;
pub const HISTORY_DEFAULT: i64 = 50;
/// `bizCode` of a chat message: what history lists.
const BIZ_CHAT: i32 = 5555;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    before: Option<i64>,
}

/// One message of a history page: its ids and place, the sender, and the fields of its data
/// (rebuilt by the gateway from validated fields: content, senderName, style).
fn history_item(e: &livehouse_core::chatlog::Entry) -> Option<serde_json::Value> {
    let ev: livehouse_core::events::ChatEvent = serde_json::from_slice(&e.payload).ok()?;
    let mut item = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(data)) = serde_json::from_str(&ev.data) {
        for (k, v) in data {
            if k != "roomId" {
                item.insert(k, v);
            }
        }
    }
    item.insert("msgId".into(), json!(ev.msg_id));
    item.insert("offset".into(), json!(e.offset));
    item.insert("userId".into(), json!(ev.sender_id));
    item.insert("sentAtMs".into(), json!(ev.sent_at_ms));
    Some(serde_json::Value::Object(item))
}

async fn history(
    State(state): State<ApiState>,
    Params(req): Params<HistoryReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = req
        .room_id
        .filter(|r| *r > 0)
        .ok_or_else(|| ApiError::BadRequest("roomId must be a positive integer".into()))?;
    let limit = req.limit.unwrap_or(HISTORY_DEFAULT);
    if !(1..=HISTORY_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {HISTORY_MAX}"
        )));
    }
    let before = match req.before {
        None => None,
        Some(b) if b >= 1 => Some(b as u64),
        Some(_) => return Err(ApiError::BadRequest("before must be at least 1".into())),
    };
    // Only live rooms have a stream worth reading (and nobody makes keys for any number).
    if state.living.get(room_id).await?.is_none() {
        return Err(ApiError::NotFound("no live room with that id".into()));
    }
    let page = state
        .chatlog
        .history(
            room_id,
            BIZ_CHAT,
            before,
            limit as usize,
            livehouse_core::time::now_ms(),
        )
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<serde_json::Value> = page.entries.iter().filter_map(history_item).collect();
    Ok(ok(json!({
        "epoch": page.epoch,
        "offset": page.top,
        "list": list,
        "hasMore": page.more,
    })))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/im/getImConfig", post(get_im_config))
        .route("/im/online", get(online))
        .route("/im/history", get(history))
}
