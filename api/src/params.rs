//! `Params<T>`: request parameters from a JSON body, a form body or the query string, as the seed
//! clients send any of the three. Malformed or missing parameters become a 400 with the reason.
//!
//! Must not: validate values (each handler checks ranges and says which field is wrong).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

/// Default of the largest request body the API reads (`--http-max-body-bytes`).
pub const MAX_BODY: usize = 64 * 1024;

pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let query = req.uri().query().unwrap_or("").to_string();
        // The limit is the router's `DefaultBodyLimit` (`--http-max-body-bytes`).
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge("request body too large".into())
            } else {
                ApiError::BadRequest(format!("unreadable body: {e}"))
            }
        })?;
        let parsed = if body.is_empty() {
            serde_urlencoded::from_str::<T>(&query).map_err(|e| e.to_string())
        } else if content_type.starts_with("application/json") {
            serde_json::from_slice::<T>(&body).map_err(|e| e.to_string())
        } else if content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded")
        {
            serde_urlencoded::from_bytes::<T>(&body).map_err(|e| e.to_string())
        } else {
            return Err(ApiError::BadRequest(format!(
                "unsupported content type `{content_type}`: send JSON or a form"
            )));
        };
        parsed
            .map(Params)
            .map_err(|e| ApiError::BadRequest(format!("invalid parameters: {e}")))
    }
}
