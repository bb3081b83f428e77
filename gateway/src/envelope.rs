//! The original's response envelope and error ids: every answer is HTTP 200 with
//! `{"event":..,"result":"OK",..}` or `{"error_id":"#NNNN","event":..,"message":..,"result":"ERROR"}`,
//! top-level keys in alphabetical order (`reference/upstream-api.md` §2).

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An error id of the public API. The original's ids keep their numbers and texts; ids from
/// #1100 are ubdcc's, for what the original answered with HTTP 500 or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorId {
    /// #1025: `exchange` or `market` missing (or empty) on get_asks / get_bids.
    MissingBookParameter,
    /// #6000: the book is not synced (starting, out of sync, or its writer is gone or hung).
    OutOfSync,
    /// #7000: no such book.
    NotFound,
    /// #1100: a parameter that must be an integer is not one.
    InvalidInteger,
    /// #1101: `limit_count` is negative.
    NegativeLimit,
    /// #1102: a parameter that must be a number is not a finite number.
    InvalidNumber,
    /// #1103: the book is older than the `max_age_ms` the caller accepts.
    TooOld,
}

impl ErrorId {
    /// The wire form, `#NNNN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingBookParameter => "#1025",
            Self::OutOfSync => "#6000",
            Self::NotFound => "#7000",
            Self::InvalidInteger => "#1100",
            Self::NegativeLimit => "#1101",
            Self::InvalidNumber => "#1102",
            Self::TooOld => "#1103",
        }
    }
}

/// An `OK` envelope for `event` with `payload`'s keys beside `event` and `result`.
pub fn ok(event: &str, mut payload: Map<String, Value>) -> Response {
    payload.insert("event".into(), event.into());
    payload.insert("result".into(), "OK".into());
    Json(Value::Object(payload)).into_response()
}

/// An `ERROR` envelope; build it with [`ApiError::new`], add keys with [`ApiError::with`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    id: ErrorId,
    event: String,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    /// An error of `event` with id `id` and the human `message`.
    pub fn new(id: ErrorId, event: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            event: event.to_owned(),
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a key to the envelope (e.g. the out-of-sync `reason`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The id.
    pub fn id(&self) -> ErrorId {
        self.id
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error_id".into(), self.id.as_str().into());
        body.insert("event".into(), self.event.into());
        body.insert("message".into(), self.message.into());
        body.insert("result".into(), "ERROR".into());
        Json(Value::Object(body)).into_response()
    }
}
