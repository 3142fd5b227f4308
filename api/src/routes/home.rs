//! `POST /home/initPage`: who the visitor is and whether they may start a room. A missing or
//! stale session is simply "not logged in" here, so an old cookie never breaks the home page.

use crate::accounts;
use crate::envelope::ok;
use crate::error::ApiResult;
use crate::session::token_of;
use crate::ApiState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::json;

struct Visitor(Option<i64>);

impl FromRequestParts<ApiState> for Visitor {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let user = token_of(parts).and_then(|t| state.jwt.verify(&t));
        // A suspended account is simply not signed in here.
        Ok(Visitor(user.filter(|id| !state.suspensions.contains(*id))))
    }
}

async fn init_page(
    State(state): State<ApiState>,
    Visitor(user): Visitor,
) -> ApiResult<impl IntoResponse> {
    let user = match user {
        Some(id) => accounts::get(&state.db, id).await?,
        None => None,
    };
    let living_room_id = match &user {
        Some(u) if u.is_anchor => state.living.by_anchor(u.user_id).await?.map(|r| r.id),
        _ => None,
    };
    Ok(ok(match user {
        Some(u) => json!({
            "livingRoomId": living_room_id,
            "loginStatus": true,
            "userId": u.user_id,
            "nickName": u.nick_name,
            "avatar": u.avatar,
            "showStartLivingBtn": u.is_anchor,
        }),
        None => json!({ "loginStatus": false, "showStartLivingBtn": false }),
    }))
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/home/initPage", post(init_page).get(init_page))
}
