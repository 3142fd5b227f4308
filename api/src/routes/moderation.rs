//! Moderation over HTTP (design §3.2): `POST /living/moderation/{mute|unmute|ban|unban|delete|
//! slowMode|words|admins}`, `GET /living/moderation/state` and `/log`, and the operators'
//! `POST /living/moderation/closeRoom` and `/suspend`.
//!
//! Who may act is decided here ([`may_manage`]: the room's anchor, its room admins, and
//! operators, accounts with the `admin` tag, in any room; anyone else 403), and whether the
//! target user exists (400 otherwise); the rules of each action are the moderation service's.

use crate::accounts;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::flex::opt_i64;
use crate::params::Params;
use crate::session::CurrentUser;
use crate::ApiState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use livehouse_living::moderation::{Actor, Role, RoomRef};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

/// Whether `user_id` may manage `room_id` (moderate it, see its stream health): the room's
/// anchor, one of its room admins, or an operator. The room may be live or closed. Unknown
/// room: 400; anyone else: 403. For other routes (e.g. `GET /living/streamHealth`).
pub async fn may_manage(
    state: &ApiState,
    user_id: i64,
    room_id: i64,
) -> ApiResult<(RoomRef, Role)> {
    if room_id <= 0 {
        return Err(ApiError::BadRequest(
            "roomId must be a positive integer".into(),
        ));
    }
    let room = state
        .moderation
        .room(room_id)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("there is no room {room_id}")))?;
    let operator = match accounts::get(&state.db, user_id).await? {
        Some(u) => u.is_operator(),
        None => {
            return Err(ApiError::Unauthorized(
                "this account no longer exists".into(),
            ))
        }
    };
    match state.moderation.role_of(&room, user_id, operator).await? {
        Some(role) => Ok((room, role)),
        None => Err(ApiError::Forbidden(
            "only the room's anchor, its room admins and operators may do this".into(),
        )),
    }
}

/// The acting user as an [`Actor`] of the room.
async fn actor(
    state: &ApiState,
    user_id: i64,
    room_id: Option<i64>,
) -> ApiResult<(RoomRef, Actor)> {
    let room_id = room_id.ok_or_else(|| ApiError::BadRequest("roomId is required".into()))?;
    let (room, role) = may_manage(state, user_id, room_id).await?;
    Ok((room, Actor { user_id, role }))
}

/// The target user: required, and an existing account (400 otherwise). Returns its nickname.
async fn target(state: &ApiState, user_id: Option<i64>) -> ApiResult<(i64, String)> {
    let id = user_id.ok_or_else(|| ApiError::BadRequest("userId is required".into()))?;
    if id <= 0 {
        return Err(ApiError::BadRequest(
            "userId must be a positive integer".into(),
        ));
    }
    match accounts::get(&state.db, id).await? {
        Some(u) => Ok((id, u.nick_name)),
        None => Err(ApiError::BadRequest(format!("there is no user {id}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    user_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    seconds: Option<i64>,
}

async fn mute(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<UserReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let (user, name) = target(&state, req.user_id).await?;
    let seconds = req.seconds.ok_or_else(|| {
        ApiError::BadRequest("seconds is required (0 = until the room closes)".into())
    })?;
    let until_ms = state
        .moderation
        .mute(actor, &room, user, seconds, Some(name))
        .await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "userId": user, "untilMs": until_ms }),
    ))
}

async fn unmute(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<UserReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let (user, _) = target(&state, req.user_id).await?;
    let changed = state.moderation.unmute(actor, &room, user).await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "userId": user, "changed": changed }),
    ))
}

async fn ban(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<UserReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let (user, name) = target(&state, req.user_id).await?;
    let changed = state.moderation.ban(actor, &room, user, Some(name)).await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "userId": user, "changed": changed }),
    ))
}

async fn unban(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<UserReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let (user, _) = target(&state, req.user_id).await?;
    let changed = state.moderation.unban(actor, &room, user).await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "userId": user, "changed": changed }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    msg_ids: Option<Vec<String>>,
}

async fn delete(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<DeleteReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let ids = req
        .msg_ids
        .ok_or_else(|| ApiError::BadRequest("msgIds is required".into()))?;
    state.moderation.recall(actor, &room, ids.clone()).await?;
    Ok(ok(json!({ "roomId": room.room_id, "msgIds": ids })))
}

async fn slow_mode(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<UserReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let seconds = req
        .seconds
        .ok_or_else(|| ApiError::BadRequest("seconds is required (0 = off)".into()))?;
    let changed = state.moderation.slow_mode(actor, &room, seconds).await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "seconds": seconds, "changed": changed }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WordsReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn words(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<WordsReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let change = state
        .moderation
        .words(actor, &room, req.add, req.remove)
        .await?;
    Ok(ok(change))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminsReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    user_id: Option<i64>,
    admin: Option<bool>,
}

async fn admins(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<AdminsReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let (user, _) = target(&state, req.user_id).await?;
    let make = req
        .admin
        .ok_or_else(|| ApiError::BadRequest("admin (true or false) is required".into()))?;
    let changed = state.moderation.set_admin(actor, &room, user, make).await?;
    Ok(ok(
        json!({ "roomId": room.room_id, "userId": user, "admin": make, "changed": changed }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    before: Option<i64>,
}

async fn state_of(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, actor) = actor(&state, me, req.room_id).await?;
    let s = state.moderation.state(&room).await?;
    let mut ids: Vec<i64> = s.muted.iter().map(|m| m.user_id).collect();
    ids.extend(&s.banned);
    ids.extend(&s.admins);
    let names = accounts::names(&state.db, &ids).await?;
    let mut data = serde_json::to_value(&s).map_err(ApiError::internal)?;
    data["you"] = json!(actor.role.as_str());
    data["names"] = json!(names_json(&names));
    Ok(ok(data))
}

fn names_json(names: &HashMap<i64, String>) -> serde_json::Map<String, serde_json::Value> {
    names
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

async fn log(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let (room, _) = actor(&state, me, req.room_id).await?;
    let limit = req.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 200".into()));
    }
    let list = state
        .moderation
        .log(&room, limit as u64, req.before.unwrap_or(0).max(0))
        .await?;
    let mut ids: Vec<i64> = list.iter().map(|l| l.actor_id).collect();
    ids.extend(list.iter().map(|l| l.target_id).filter(|t| *t > 0));
    ids.sort_unstable();
    ids.dedup();
    let names = accounts::names(&state.db, &ids).await?;
    Ok(ok(json!({ "list": list, "names": names_json(&names) })))
}

/// `{roomId, role}`: the caller's role in the room (`anchor`, `admin`, `operator`, or null), so a
/// page knows whether to offer moderation without provoking a 403.
async fn role(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = req
        .room_id
        .ok_or_else(|| ApiError::BadRequest("roomId is required".into()))?;
    let role = match may_manage(&state, me, room_id).await {
        Ok((_, role)) => Some(role.as_str()),
        Err(ApiError::Forbidden(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(ok(json!({ "roomId": room_id, "role": role })))
}

/// Operators only (the `admin` tag), or the anchor of the room.
async fn close_room(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = req
        .room_id
        .ok_or_else(|| ApiError::BadRequest("roomId is required".into()))?;
    let (room, role) = may_manage(&state, me, room_id).await?;
    if role == Role::Admin {
        return Err(ApiError::Forbidden(
            "only the room's anchor and operators may close a room".into(),
        ));
    }
    if !room.live {
        return Err(ApiError::BadRequest("the room is not live".into()));
    }
    let record = state
        .moderation
        .close_room(Actor { user_id: me, role }, room_id)
        .await?;
    Ok(ok(
        json!({ "roomId": record.id, "endTime": record.end_time }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuspendReq {
    #[serde(default, deserialize_with = "opt_i64")]
    user_id: Option<i64>,
    suspended: Option<bool>,
    reason: Option<String>,
}

/// Operators only: suspend (`suspended: true`) or reinstate an account platform-wide.
async fn suspend(
    State(state): State<ApiState>,
    CurrentUser(me): CurrentUser,
    Params(req): Params<SuspendReq>,
) -> ApiResult<impl IntoResponse> {
    let operator = accounts::get(&state.db, me)
        .await?
        .is_some_and(|u| u.is_operator());
    if !operator {
        return Err(ApiError::Forbidden(
            "only operators may suspend accounts".into(),
        ));
    }
    let (user, _) = target(&state, req.user_id).await?;
    let on = req
        .suspended
        .ok_or_else(|| ApiError::BadRequest("suspended (true or false) is required".into()))?;
    if user == me {
        return Err(ApiError::BadRequest(
            "operators cannot suspend themselves".into(),
        ));
    }
    let reason = req.reason.unwrap_or_default();
    if reason.chars().count() > 256 {
        return Err(ApiError::BadRequest(
            "reason is at most 256 characters".into(),
        ));
    }
    let changed = state
        .suspensions
        .set(
            &state.db,
            state.cache.as_ref(),
            state.bus.as_ref(),
            accounts::suspension::Change {
                user_id: user,
                by_user_id: me,
                reason: &reason,
                suspended: on,
            },
        )
        .await?;
    Ok(ok(
        json!({ "userId": user, "suspended": on, "changed": changed }),
    ))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/living/moderation/mute", post(mute))
        .route("/living/moderation/unmute", post(unmute))
        .route("/living/moderation/ban", post(ban))
        .route("/living/moderation/unban", post(unban))
        .route("/living/moderation/delete", post(delete))
        .route("/living/moderation/slowMode", post(slow_mode))
        .route("/living/moderation/words", post(words))
        .route("/living/moderation/admins", post(admins))
        .route("/living/moderation/state", get(state_of))
        .route("/living/moderation/log", get(log))
        .route("/living/moderation/role", get(role))
        .route("/living/moderation/closeRoom", post(close_room))
        .route("/living/moderation/suspend", post(suspend))
}
