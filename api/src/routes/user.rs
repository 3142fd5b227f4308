//! `POST /user/register`, `/user/login`, `/user/logout`: accounts and the session cookie. Sign-up
//! and sign-in are rate limited per client IP and per username first ([`crate::ratelimit`]).

use crate::accounts;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::ratelimit::{self, Client};
use crate::session::{clear_cookie, session_cookie, SecureCookie};
use crate::ApiState;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
    nickname: Option<String>,
}

impl Credentials {
    fn required(self) -> ApiResult<(String, String, String)> {
        let username = self.username.filter(|s| !s.is_empty());
        let password = self.password.filter(|s| !s.is_empty());
        match (username, password) {
            (Some(u), Some(p)) => Ok((u, p, self.nickname.unwrap_or_default())),
            (None, _) => Err(ApiError::BadRequest("username is required".into())),
            (_, None) => Err(ApiError::BadRequest("password is required".into())),
        }
    }
}

fn signed_in(state: &ApiState, user: accounts::User, secure: bool) -> Response {
    let token = state.jwt.issue(user.user_id);
    let cookie = session_cookie(&token, secure);
    (
        [(SET_COOKIE, cookie)],
        ok(json!({ "userId": user.user_id, "token": token })),
    )
        .into_response()
}

async fn register(
    State(state): State<ApiState>,
    SecureCookie(secure): SecureCookie,
    Client(client): Client,
    Params(c): Params<Credentials>,
) -> ApiResult<Response> {
    let (username, password, nickname) = c.required()?;
    ratelimit::signup(&state, &client, &username).await?;
    let user = accounts::register(
        &state.db,
        &state.passwords,
        &username,
        &password,
        &nickname,
        state.config.open_streaming,
    )
    .await?;
    metrics::counter!("livehouse_users_registered_total").increment(1);
    Ok(signed_in(&state, user, secure))
}

async fn login(
    State(state): State<ApiState>,
    SecureCookie(secure): SecureCookie,
    Client(client): Client,
    Params(c): Params<Credentials>,
) -> ApiResult<Response> {
    let (username, password, _) = c.required()?;
    ratelimit::login(&state, &client, &username).await?;
    let user = accounts::login(&state.db, &state.passwords, &username, &password).await?;
    ratelimit::clear(
        state.cache.as_ref(),
        "login-account",
        &username.to_ascii_lowercase(),
    )
    .await;
    accounts::suspension::refuse_suspended(&state.db, user.user_id).await?;
    Ok(signed_in(&state, user, secure))
}

async fn logout(SecureCookie(secure): SecureCookie) -> Response {
    ([(SET_COOKIE, clear_cookie(secure))], ok(json!({}))).into_response()
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/user/register", post(register))
        .route("/user/login", post(login))
        .route("/user/logout", post(logout))
}
