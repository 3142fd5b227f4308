//! Rooms over HTTP: start, close, the anchor/viewer room config, room lists and records.
//! Identity and the anchor tag are checked here; the rooms service checks ownership.

use crate::accounts;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::flex::opt_i64;
use crate::params::Params;
use crate::session::{CurrentUser, MaybeUser};
use crate::ApiState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use livehouse_living::{Page, StartRoom, MAX_PAGE, MAX_PAGE_SIZE};
use serde::Deserialize;
use serde_json::json;

fn required(v: Option<i64>, name: &str) -> ApiResult<i64> {
    v.ok_or_else(|| ApiError::BadRequest(format!("{name} is required")))
}

fn room_id(v: Option<i64>) -> ApiResult<i64> {
    let id = required(v, "roomId")?;
    if id <= 0 {
        return Err(ApiError::BadRequest(
            "roomId must be a positive integer".into(),
        ));
    }
    Ok(id)
}

/// `page` (default 1, at most [`MAX_PAGE`]) and `pageSize` (default 20, at most
/// [`MAX_PAGE_SIZE`]) as a validated page. Checked here, on the `i64` the client sent, before any
/// conversion or arithmetic.
fn page(page: Option<i64>, page_size: Option<i64>) -> ApiResult<Page> {
    let page = page.unwrap_or(1);
    let size = page_size.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::BadRequest("page must be at least 1".into()));
    }
    if page > MAX_PAGE as i64 {
        return Err(ApiError::BadRequest(format!(
            "page must be between 1 and {MAX_PAGE}"
        )));
    }
    if !(1..=MAX_PAGE_SIZE as i64).contains(&size) {
        return Err(ApiError::BadRequest(format!(
            "pageSize must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(Page::new(page as u64, size as u64)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartReq {
    #[serde(default, rename = "type", deserialize_with = "opt_i64")]
    room_type: Option<i64>,
    room_name: Option<String>,
    covert_img: Option<String>,
    /// Record the room (`--record per-room`): true/false, 1/0 or "true"/"false".
    #[serde(default)]
    record: Option<serde_json::Value>,
}

/// A lenient boolean: JSON true/false, 1/0, or the strings "true"/"false"/"1"/"0"/"on".
fn flag(v: Option<&serde_json::Value>, name: &str) -> ApiResult<bool> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Ok(n.as_i64() == Some(1))
        }
        Some(Value::String(s)) => match s.trim() {
            "true" | "1" | "on" => Ok(true),
            "false" | "0" | "off" | "" => Ok(false),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be true or false"
            ))),
        },
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be true or false"
        ))),
    }
}

async fn start_living(
    State(state): State<ApiState>,
    CurrentUser(user_id): CurrentUser,
    Params(req): Params<StartReq>,
) -> ApiResult<impl IntoResponse> {
    let user = accounts::get(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("this account no longer exists".into()))?;
    if !user.is_anchor {
        return Err(ApiError::Forbidden(
            "this account may not start a room".into(),
        ));
    }
    let room_type = required(req.room_type, "type")?;
    let room_name = req
        .room_name
        .ok_or_else(|| ApiError::BadRequest("roomName is required".into()))?;
    let record = flag(req.record.as_ref(), "record")?;
    let room = state
        .living
        .start(StartRoom {
            anchor_id: user.user_id,
            anchor_nick_name: user.nick_name,
            anchor_avatar: user.avatar,
            room_type: i32::try_from(room_type).unwrap_or(0),
            room_name,
            covert_img: req.covert_img.unwrap_or_default(),
            record,
        })
        .await?;
    // The anchor's bans, admins and words carry over: the new room's rule set goes to the
    // cache before any viewer can log into its chat (the sync job retries a failure).
    if let Err(e) = state
        .moderation
        .publish_rules(room.id, room.anchor_id)
        .await
    {
        tracing::warn!(room = room.id, error = %e, "publishing the new room's rules failed");
    }
    Ok(ok(json!({ "roomId": room.id })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
}

async fn close_living(
    State(state): State<ApiState>,
    CurrentUser(user_id): CurrentUser,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = room_id(req.room_id)?;
    // Through moderation: the room-scoped rules end with the room.
    let anchor = livehouse_living::moderation::Actor {
        user_id,
        role: livehouse_living::moderation::Role::Anchor,
    };
    let record = state.moderation.close_room(anchor, room_id).await?;
    Ok(ok(
        json!({ "roomId": record.id, "endTime": record.end_time }),
    ))
}

/// The host name clients reached us by, without the port.
pub(crate) fn request_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets.
        return format!("[{}]", rest.split(']').next().unwrap_or(""));
    }
    host.split(':').next().unwrap_or("127.0.0.1").to_string()
}

async fn anchor_config(
    State(state): State<ApiState>,
    MaybeUser(viewer): MaybeUser,
    headers: HeaderMap,
    Params(req): Params<RoomReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = room_id(req.room_id)?;
    let viewer = match viewer {
        Some(id) => accounts::get(&state.db, id).await?,
        None => None,
    };
    let Some(room) = state.living.get(room_id).await? else {
        return Ok(ok(json!({ "roomId": -1 })));
    };
    let is_anchor = viewer.as_ref().is_some_and(|v| v.user_id == room.anchor_id);
    let mut data = json!({
        "roomId": room.id,
        "anchorId": room.anchor_id,
        "anchorNickName": room.anchor_nick_name,
        "anchorAvatar": room.anchor_avatar,
        "roomName": room.room_name,
        "covertImg": room.covert_img,
        "type": room.room_type,
        "streaming": room.streaming,
        "watchNum": room.watch_num,
        "startTime": room.start_time,
        "flvUrl": format!(
            "{}/live/{}.flv",
            state.config.play_base_url.as_deref().unwrap_or(""),
            room.id
        ),
        "hlsUrl": format!(
            "{}/live/{}.m3u8",
            state.config.play_base_url.as_deref().unwrap_or(""),
            room.id
        ),
        "userId": viewer.as_ref().map(|v| v.user_id),
        "nickName": viewer.as_ref().map(|v| v.nick_name.clone()),
        "avatar": viewer.as_ref().map(|v| v.avatar.clone()),
        "isAnchor": is_anchor,
        "thumbnailUrl": format!(
            "{}/live/{}.jpg",
            state.config.play_base_url.as_deref().unwrap_or(""),
            room.id
        ),
    });
    if is_anchor {
        let host = state
            .config
            .public_host
            .clone()
            .unwrap_or_else(|| request_host(&headers));
        data["pushUrl"] = json!(format!(
            "rtmp://{host}:{}/live/{}",
            state.config.rtmp_port, room.stream_key
        ));
        data["pushServer"] = json!(format!("rtmp://{host}:{}/live", state.config.rtmp_port));
        data["streamKey"] = json!(room.stream_key);
        data["record"] = json!(recorded(&state, room.record));
        data["recordMode"] = json!(state.config.record_mode);
    }
    Ok(ok(data))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListReq {
    #[serde(default, rename = "type", deserialize_with = "opt_i64")]
    room_type: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    page_size: Option<i64>,
}

async fn list(
    State(state): State<ApiState>,
    Params(req): Params<ListReq>,
) -> ApiResult<impl IntoResponse> {
    let room_type = required(req.room_type, "type")?;
    let page = page(req.page, req.page_size)?;
    let (items, has_next) = state
        .living
        .list_json(i32::try_from(room_type).unwrap_or(0), page)
        .await?;
    // The items are the JSON objects the list job wrote: splice them in as they are.
    let mut body = String::with_capacity(64 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.push_str(r#"{"code":200,"msg":"success","data":{"list":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str(if has_next {
        r#"],"hasNext":true}}"#
    } else {
        r#"],"hasNext":false}}"#
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordsReq {
    #[serde(default, deserialize_with = "opt_i64")]
    anchor_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    page_size: Option<i64>,
}

async fn records(
    State(state): State<ApiState>,
    Params(req): Params<RecordsReq>,
) -> ApiResult<impl IntoResponse> {
    let anchor_id = required(req.anchor_id, "anchorId")?;
    if anchor_id <= 0 {
        return Err(ApiError::BadRequest(
            "anchorId must be a positive integer".into(),
        ));
    }
    let page = page(req.page, req.page_size)?;
    let (list, has_next) = state.living.records(anchor_id, page).await?;
    let base = state.config.play_base_url.as_deref().unwrap_or("");
    let list: Vec<serde_json::Value> = list
        .into_iter()
        .map(|r| {
            let replay = r.replay;
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("replay");
                o.insert(
                    "replayUrl".into(),
                    json!(replay.map(|_| format!("{base}/records/{}.flv", r.id))),
                );
                o.insert("durationMs".into(), json!(replay.map(|p| p.duration_ms)));
                o.insert("sizeBytes".into(), json!(replay.map(|p| p.size_bytes)));
            }
            v
        })
        .collect();
    Ok(ok(json!({ "list": list, "hasNext": has_next })))
}

/// Whether the room's video is recorded under this `--record` mode.
fn recorded(state: &ApiState, asked: bool) -> bool {
    match state.config.record_mode.as_str() {
        "on" => true,
        "per-room" => asked,
        _ => false,
    }
}

/// Whether `user_id` may see the stream health of `room`: its anchor and the anchor's room
/// admins (`t_moderation_admin`).
pub(crate) async fn may_manage_room(
    state: &ApiState,
    user_id: i64,
    room: &livehouse_living::Room,
) -> ApiResult<bool> {
    if room.anchor_id == user_id {
        return Ok(true);
    }
    Ok(state.moderation.is_admin(room.anchor_id, user_id).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthReq {
    #[serde(default, deserialize_with = "opt_i64")]
    room_id: Option<i64>,
}

/// `GET /living/streamHealth?roomId=`: the live stream's health, for the anchor (and admins).
async fn stream_health(
    State(state): State<ApiState>,
    CurrentUser(user_id): CurrentUser,
    Params(req): Params<HealthReq>,
) -> ApiResult<impl IntoResponse> {
    let room_id = room_id(req.room_id)?;
    let room = state
        .living
        .get(room_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("room not found or not live".into()))?;
    if !may_manage_room(&state, user_id, &room).await? {
        return Err(ApiError::Forbidden(
            "only the room's anchor and admins may see its stream health".into(),
        ));
    }
    let Some(media) = &state.media else {
        return Err(ApiError::Unavailable(
            "stream health is served by a process running both the api and media roles".into(),
        ));
    };
    let report = media.stream_health(room_id, state.config.max_bitrate_kbps);
    Ok(ok(json!({
        "roomId": room_id,
        "live": report.is_some(),
        "recording": recorded(&state, room.record),
        "health": report,
    })))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/living/startingLiving", post(start_living))
        .route("/living/closeLiving", post(close_living))
        .route(
            "/living/anchorConfig",
            post(anchor_config).get(anchor_config),
        )
        .route("/living/list", post(list).get(list))
        .route("/living/records", get(records))
        .route("/living/streamHealth", get(stream_health))
}
