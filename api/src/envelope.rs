//! The response envelope of every API route: `{code, msg, data}` with `code` 200 on success
//! (the seed system's shape), and `ok(data)` to build a success.

use axum::Json;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub code: u16,
    pub msg: String,
    pub data: Option<T>,
}

/// A 200 envelope around `data`.
pub fn ok<T: Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        code: 200,
        msg: "success".into(),
        data: Some(data),
    })
}
