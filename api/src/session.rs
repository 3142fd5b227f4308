//! Who is calling: the session token from the `livehouse_token` cookie or
//! `Authorization: Bearer`. [`CurrentUser`] requires one (401 otherwise); [`MaybeUser`] accepts
//! none but still refuses a forged or expired one. Both refuse a suspended account (403).

use crate::error::ApiError;
use crate::ApiState;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;

pub const COOKIE_NAME: &str = "livehouse_token";

/// The raw token the request carries, if any.
pub fn token_of(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    for header in parts.headers.get_all(COOKIE) {
        let Ok(s) = header.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == COOKIE_NAME && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// An authenticated user id.
pub struct CurrentUser(pub i64);

/// An optional user id: `None` when no token is sent.
pub struct MaybeUser(pub Option<i64>);

fn verify(parts: &Parts, state: &ApiState) -> Result<Option<i64>, ApiError> {
    match token_of(parts) {
        None => Ok(None),
        Some(t) => match state.jwt.verify(&t) {
            Some(id) if state.suspensions.contains(id) => Err(ApiError::Forbidden(
                "this account is suspended; contact the operators".into(),
            )),
            Some(id) => Ok(Some(id)),
            None => Err(ApiError::Unauthorized(
                "invalid or expired session; sign in again".into(),
            )),
        },
    }
}

impl FromRequestParts<ApiState> for CurrentUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        verify(parts, state)?
            .map(CurrentUser)
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))
    }
}

impl FromRequestParts<ApiState> for MaybeUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        verify(parts, state).map(MaybeUser)
    }
}

/// Marks a request that reached the deployment over TLS (inserted as a request extension by
/// whatever knows: a TLS listener, or a trusted proxy's `X-Forwarded-Proto: https`). Its
/// session cookie is `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Whether the session cookie of this request must be `Secure`: the site is `https://`
/// (`--public-url`) or the request came over TLS ([`OverTls`]).
pub struct SecureCookie(pub bool);

impl FromRequestParts<ApiState> for SecureCookie {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        Ok(SecureCookie(
            state.config.secure_cookies || parts.extensions.get::<OverTls>().is_some(),
        ))
    }
}

/// `Set-Cookie` value carrying a session token (HttpOnly, same-site; `Secure` when `secure`).
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={token}; HttpOnly; Path=/; SameSite=Lax; Max-Age={}{}",
        livehouse_core::auth::SESSION_TTL_SECS,
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that clears the session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; HttpOnly; Path=/; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}
