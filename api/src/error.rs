//! The one error type of the HTTP edge and its mapping to status + envelope.
//! Inner errors keep their detail in the log; clients get a clear message and the right status.

use crate::envelope::Envelope;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use livehouse_living::LivingError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooLarge(String),
    /// A bounded resource (the password hashing queue) is full: 503 with `Retry-After: 1`.
    #[error("{0}")]
    Busy(String),
    /// Over a rate limit: 429 with `Retry-After` (whole seconds).
    #[error("{msg}")]
    TooMany { msg: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<LivingError> for ApiError {
    fn from(e: LivingError) -> Self {
        match e {
            LivingError::Invalid(m) => ApiError::BadRequest(m),
            LivingError::NotFound => ApiError::NotFound("room not found or not live".into()),
            LivingError::Forbidden => {
                ApiError::Forbidden("only the room's anchor may do this".into())
            }
            LivingError::Conflict(m) => ApiError::Conflict(m),
            LivingError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<livehouse_core::cache::CacheError> for ApiError {
    fn from(e: livehouse_core::cache::CacheError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = Envelope::<()> {
            code: status.as_u16(),
            msg: self.to_string(),
            data: None,
        };
        let retry_after = match &self {
            ApiError::Busy(_) => Some(1),
            ApiError::TooMany {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            _ => None,
        };
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
