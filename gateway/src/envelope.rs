//! The original's response envelope and error ids: every answer is HTTP 200 with
//! `{"event":..,"result":"OK",..}` or `{"error_id":"#NNNN","event":..,"message":..,"result":"ERROR"}`,
//! top-level keys in alphabetical order (`docs/upstream-api.md` §2).
//!
//! The only non-200 answers ubdcc builds are refusals by `auth` (#1109 envelopes with 401 for a
//! missing or wrong secret or token, 403 for a foreign `Host`, 405 for a GET where POST is
//! needed, 415 for a POST that is not JSON), and the framework's own 404 / 405
//! (`{"detail":..}`), as the original.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error id of the public and internal API: `#NNNN`. The original's ids keep their numbers
/// and texts; ids from #1100 are ubdcc's, for what the original answered with HTTP 500 or not at
/// all (`docs/upstream-api.md` §4, §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorId(&'static str);

impl ErrorId {
    /// #1000: node sync without `uid` or `api_port_rest`.
    pub const SYNC_MISSING: Self = Self("#1000");
    /// #1001: node sync from a pod mgmt does not know (it registers again).
    pub const SYNC_UNKNOWN_POD: Self = Self("#1001");
    /// #1002: registration without a required field.
    pub const REGISTRATION_MISSING: Self = Self("#1002");
    /// #1003: registration of a uid that exists (nodes treat it as success).
    pub const REGISTRATION_EXISTS: Self = Self("#1003");
    /// #1004: cancellation without `uid`.
    pub const CANCELLATION_MISSING: Self = Self("#1004");
    /// #1005: cancellation of an unknown pod.
    pub const CANCELLATION_UNKNOWN: Self = Self("#1005");
    /// #1006: `get_depthcache_info` without `exchange` or `market`.
    pub const INFO_MISSING: Self = Self("#1006");
    /// #1012: routing lookup without `exchange` or `market`.
    pub const ADDRESSES_MISSING: Self = Self("#1012");
    /// #1013: no DCN address for the book.
    pub const NO_ADDRESSES: Self = Self("#1013");
    /// #1014: mgmt is still recovering its state.
    pub const NOT_READY: Self = Self("#1014");
    /// #1015: distribution update without `exchange`, `market` or `pod_uid`.
    pub const DISTRIBUTION_MISSING: Self = Self("#1015");
    /// #1016: create without `exchange` or `market(s)`.
    pub const CREATE_MISSING: Self = Self("#1016");
    /// #1019: stop without `exchange` or `market`.
    pub const STOP_MISSING: Self = Self("#1019");
    /// #1022: distribution update with nothing to update.
    pub const DISTRIBUTION_NOTHING: Self = Self("#1022");
    /// #1023: distribution update of a replica that does not exist.
    pub const DISTRIBUTION_UNKNOWN: Self = Self("#1023");
    /// #1024: the DepthCache exists already.
    pub const EXISTS: Self = Self("#1024");
    /// #1025: `exchange` or `market` missing (or empty) on get_asks / get_bids.
    pub const MISSING_BOOK_PARAMETER: Self = Self("#1025");
    /// #1030: add_credentials without a required field.
    pub const CREDENTIALS_MISSING: Self = Self("#1030");
    /// #1031: an account group that does not exist.
    pub const INVALID_ACCOUNT_GROUP: Self = Self("#1031");
    /// #1033: remove_credentials without `id`.
    pub const CREDENTIALS_ID_MISSING: Self = Self("#1033");
    /// #1034: no credentials with that id.
    pub const CREDENTIALS_UNKNOWN: Self = Self("#1034");
    /// #1035: credential assignment without `uid` or `account_group`.
    pub const ASSIGN_MISSING: Self = Self("#1035");
    /// #1036: credential assignment for an unknown account group.
    pub const ASSIGN_INVALID_GROUP: Self = Self("#1036");
    /// #4000: the DepthCache exists but has no replica placed.
    pub const NO_DCN: Self = Self("#4000");
    /// #5000: every replica that should have served failed.
    pub const NO_DCN_RESPONDED: Self = Self("#5000");
    /// #5001: served after failures (a warning inside an OK answer).
    pub const FAILOVER: Self = Self("#5001");
    /// #6000: the book is not synced (starting, out of sync, or its writer is gone or hung).
    pub const OUT_OF_SYNC: Self = Self("#6000");
    /// #7000: no such book.
    pub const NOT_FOUND: Self = Self("#7000");
    /// #8000: mgmt unreachable; the answer is restapi's cached copy.
    pub const CACHED: Self = Self("#8000");
    /// #9000: mgmt unreachable.
    pub const MGMT_UNAVAILABLE: Self = Self("#9000");
    /// #1100: a parameter that must be an integer is not one (or is out of range).
    pub const INVALID_INTEGER: Self = Self("#1100");
    /// #1101: `limit_count` is negative.
    pub const NEGATIVE_LIMIT: Self = Self("#1101");
    /// #1102: a parameter that must be a number is not a finite number.
    pub const INVALID_NUMBER: Self = Self("#1102");
    /// #1103: the book is older than the `max_age_ms` the caller accepts.
    pub const TOO_OLD: Self = Self("#1103");
    /// #1104: an exchange string ubdcc does not support.
    pub const UNKNOWN_EXCHANGE: Self = Self("#1104");
    /// #1105: an invalid `last_restart_time` (the original reused #1024).
    pub const INVALID_RESTART_TIME: Self = Self("#1105");
    /// #1106: the body is not a JSON object.
    pub const INVALID_BODY: Self = Self("#1106");
    /// #1107: a market symbol no exchange could have, or an update interval it does not offer.
    pub const INVALID_MARKET: Self = Self("#1107");
    /// #1108: a text parameter has the wrong type (e.g. a number where a string belongs).
    pub const INVALID_PARAMETER: Self = Self("#1108");
    /// #1109: refused by `auth`: missing or wrong credentials (bearer token or cluster secret,
    /// HTTP 401), a foreign `Host` (403), GET where POST is needed (405), not JSON (415).
    pub const UNAUTHORIZED: Self = Self("#1109");
    /// #1110: an invalid replica status.
    pub const INVALID_STATUS: Self = Self("#1110");

    /// #1111: mgmt could not store its state durably (the change was not made).
    pub const STORAGE: Self = Self("#1111");

    /// #1112: no DCN has room for another book (each holds as many as its segment can); add a
    /// DCN or stop books.
    pub const CLUSTER_FULL: Self = Self("#1112");

    /// #1113: a `refresh_interval` below [`crate::mgmt::public::MIN_REFRESH_INTERVAL`] seconds.
    pub const REFRESH_TOO_SHORT: Self = Self("#1113");

    /// #1114: markets the exchange does not list, or lists but does not trade (its
    /// `exchangeInfo`); the message names them.
    pub const UNKNOWN_MARKETS: Self = Self("#1114");

    /// #1115: `limit_count` asks for more levels than the book covers yet (it started from a
    /// shallow snapshot and is being deepened); the answer's `depth` says how many it covers.
    pub const DEPTH_NOT_COVERED: Self = Self("#1115");

    /// #1116: a fill price or depth statistics request that cannot be answered as asked: no
    /// `side=buy|sell`, not exactly one positive `quantity` / `quote_quantity`, or `bps` that
    /// are not positive numbers.
    pub const INVALID_FILL: Self = Self("#1116");

    /// #1117: a push stream request (`/ws`, `/sse`) refused: not a WebSocket upgrade, a bad
    /// stream name, a book not on this host, a limit reached, or push off on this restapi.
    pub const PUSH_REFUSED: Self = Self("#1117");

    /// The wire form, `#NNNN`.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// An `OK` envelope for `event` with `payload`'s keys beside `event` and `result`.
pub fn ok(event: &str, payload: Map<String, Value>) -> Response {
    json_response(StatusCode::OK, &Value::Object(ok_body(event, payload)))
}

/// The body of an `OK` envelope (for callers that add keys before sending).
pub fn ok_body(event: &str, mut payload: Map<String, Value>) -> Map<String, Value> {
    payload.insert("event".into(), event.into());
    payload.insert("result".into(), "OK".into());
    payload
}

/// A JSON response with `status` (serde_json's map keeps keys sorted, as the original's
/// helpers did).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A response from JSON bytes already written.
pub fn bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An `ERROR` envelope; build it with [`ApiError::new`], add keys with [`ApiError::with`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    id: ErrorId,
    event: String,
    message: String,
    extra: Map<String, Value>,
    status: StatusCode,
}

impl ApiError {
    /// An error of `event` with id `id` and the human `message`.
    pub fn new(id: ErrorId, event: &str, message: impl Into<String>) -> Self {
        let status = if id == ErrorId::UNAUTHORIZED {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        Self {
            id,
            event: event.to_owned(),
            message: message.into(),
            extra: Map::new(),
            status,
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

    /// The event.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The envelope as a JSON object.
    pub fn into_body(self) -> Map<String, Value> {
        let mut body = self.extra;
        body.insert("error_id".into(), self.id.as_str().into());
        body.insert("event".into(), self.event.into());
        body.insert("message".into(), self.message.into());
        body.insert("result".into(), "ERROR".into());
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        json_response(status, &Value::Object(self.into_body()))
    }
}

/// The original framework's answer for an unknown path.
pub async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"}))
}

/// The original framework's answer for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"detail": "Method Not Allowed"}),
    )
}

/// `DepthCache '<market>' for '<exchange>' not found!` (#7000) for `event`.
pub fn not_found_error(event: &str, exchange: &str, market: &str) -> ApiError {
    let (exchange, market) = (clip(exchange), clip(market));
    ApiError::new(
        ErrorId::NOT_FOUND,
        event,
        format!("DepthCache '{market}' for '{exchange}' not found!"),
    )
}

/// `DepthCache '<market>' for '<exchange>' is out of sync!` (#6000) for `event`.
pub fn out_of_sync_error(event: &str, exchange: &str, market: &str) -> ApiError {
    let (exchange, market) = (clip(exchange), clip(market));
    ApiError::new(
        ErrorId::OUT_OF_SYNC,
        event,
        format!("DepthCache '{market}' for '{exchange}' is out of sync!"),
    )
}

/// A caller's text as error messages show it: at most 64 characters, so a hostile 1 MB
/// parameter does not come back 1 MB long.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    const MOST: usize = 64;
    match text.char_indices().nth(MOST) {
        None => text.into(),
        Some((end, _)) => format!("{}...", &text[..end]).into(),
    }
}
