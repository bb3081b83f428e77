//! The DCN's HTTP endpoints: `/test`, `/get_asks` and `/get_bids`, with the original DCN's
//! envelope and error ids, answered from the DCN's shared-memory segment like any other reader.
//!
//! Beyond the original, reads also return `last_update_id`, `event_time` (exchange time, ms) and
//! `age_ms`, accept `max_age_ms` (a too-old book is an error, not data), and invalid numbers are
//! error envelopes (#1100–#1102), never HTTP 500.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use ubdcc_shm::{
    BookInfo, BookStatus, ClusterReader, InvalidQuery, Level, LevelQuery, ReadError, Side,
};

use crate::envelope::{ApiError, ErrorId, ok};

/// What the DCN endpoints read from.
#[derive(Clone)]
pub struct DcnApiState {
    reader: Arc<Mutex<ClusterReader>>,
    version: &'static str,
}

impl DcnApiState {
    /// Reads the books of `reader`'s cluster; `version` is reported by `/test`.
    pub fn new(reader: ClusterReader, version: &'static str) -> Self {
        Self {
            reader: Arc::new(Mutex::new(reader)),
            version,
        }
    }
}

/// The DCN's router.
pub fn router(state: DcnApiState) -> Router {
    Router::new()
        .route("/test", get(test))
        .route("/get_asks", get(get_asks))
        .route("/get_bids", get(get_bids))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The original's framework answers for unknown paths and wrong methods.
async fn not_found() -> (StatusCode, Json<Value>) {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"})))
}

async fn method_not_allowed() -> (StatusCode, Json<Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
}

async fn test(State(state): State<DcnApiState>) -> Response {
    let mut payload = Map::new();
    payload.insert("app".into(), json!({"name": "ubdcc-dcn", "version": state.version, "author": "ubdcc", "build_type": "rust"}));
    payload.insert("message".into(), "Hello World!".into());
    ok("TEST", payload)
}

async fn get_asks(
    State(state): State<DcnApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    read_side(&state, &params, Side::Asks)
}

async fn get_bids(
    State(state): State<DcnApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    read_side(&state, &params, Side::Bids)
}

/// The one body of `get_asks` and `get_bids`.
fn read_side(state: &DcnApiState, params: &HashMap<String, String>, side: Side) -> Response {
    let (event, key) = match side {
        Side::Asks => ("GET_ASKS", "asks"),
        Side::Bids => ("GET_BIDS", "bids"),
    };
    match read(state, params, side, event) {
        Ok((info, levels)) => {
            let mut payload = Map::new();
            let pairs: Vec<Value> = levels
                .iter()
                .map(|level| json!([level.price, level.quantity]))
                .collect();
            payload.insert(key.into(), Value::Array(pairs));
            payload.insert("last_update_id".into(), info.last_update_id.into());
            payload.insert("event_time".into(), info.event_time_ms.into());
            payload.insert("age_ms".into(), age_ms(&info).into());
            ok(event, payload)
        }
        Err(error) => axum::response::IntoResponse::into_response(error),
    }
}

fn read(
    state: &DcnApiState,
    params: &HashMap<String, String>,
    side: Side,
    event: &str,
) -> Result<(BookInfo, Vec<Level>), ApiError> {
    let query = BookParams::parse(params, event)?;
    let mut levels = Vec::new();
    let result = {
        // The lock is held for one read (tens of ns) and never across an await.
        let mut reader = state
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reader.read(
            &query.exchange,
            &query.market,
            side,
            &query.levels,
            &mut levels,
        )
    };
    let info = result.map_err(|error| read_error(&error, &query, event))?;
    if let Some(max_age_ms) = query.max_age_ms
        && age_ms(&info) > max_age_ms as f64
    {
        let message = format!(
            "DepthCache '{}' for '{}' is older than max_age_ms={max_age_ms}!",
            query.market, query.exchange
        );
        return Err(ApiError::new(ErrorId::TooOld, event, message).with("age_ms", age_ms(&info)));
    }
    Ok((info, levels))
}

/// Milliseconds since the book's current version was published.
fn age_ms(info: &BookInfo) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Milliseconds with three decimals (microsecond resolution).
    (now.saturating_sub(u128::from(info.publish_time_ns)) as f64 / 1e3).round() / 1e3
}

fn read_error(error: &ReadError, query: &BookParams, event: &str) -> ApiError {
    let (market, exchange) = (&query.market, &query.exchange);
    match error {
        ReadError::NotFound { .. } => ApiError::new(
            ErrorId::NotFound,
            event,
            format!("DepthCache '{market}' for '{exchange}' not found!"),
        ),
        ReadError::NotSynced { status, .. } => {
            out_of_sync(event, market, exchange, status_reason(status))
        }
        ReadError::WriterGone { .. }
        | ReadError::WriterHung { .. }
        | ReadError::Contended { .. }
        | ReadError::Io { .. } => out_of_sync(event, market, exchange, error.to_string()),
        ReadError::InvalidQuery(invalid) => {
            let id = match invalid {
                InvalidQuery::NegativeLimit(_) => ErrorId::NegativeLimit,
                InvalidQuery::NanThreshold => ErrorId::InvalidNumber,
            };
            ApiError::new(id, event, invalid.to_string())
        }
    }
}

fn out_of_sync(event: &str, market: &str, exchange: &str, reason: String) -> ApiError {
    ApiError::new(
        ErrorId::OutOfSync,
        event,
        format!("DepthCache '{market}' for '{exchange}' is out of sync!"),
    )
    .with("reason", reason)
}

fn status_reason(status: &BookStatus) -> String {
    match status {
        BookStatus::OutOfSync(reason) => reason.as_str().to_owned(),
        other => other.as_str().to_owned(),
    }
}

/// Validated read parameters.
#[derive(Debug)]
struct BookParams {
    exchange: String,
    market: String,
    levels: LevelQuery,
    max_age_ms: Option<u64>,
}

impl BookParams {
    /// Parses the query: `None`, a missing key and the string `"None"` all mean "not set".
    fn parse(params: &HashMap<String, String>, event: &str) -> Result<Self, ApiError> {
        let value = |key: &str| {
            params
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty() && *v != "None")
        };
        let (Some(exchange), Some(market)) = (value("exchange"), value("market")) else {
            return Err(ApiError::new(
                ErrorId::MissingBookParameter,
                event,
                "Missing required parameter: exchange, market",
            ));
        };
        let limit_count = value("limit_count")
            .map(|v| integer("limit_count", v, event))
            .transpose()?;
        if let Some(limit) = limit_count.filter(|limit| *limit < 0) {
            return Err(ApiError::new(
                ErrorId::NegativeLimit,
                event,
                format!("Invalid parameter: limit_count must not be negative, got {limit}"),
            ));
        }
        let threshold_volume = value("threshold_volume")
            .map(|v| number("threshold_volume", v, event))
            .transpose()?;
        let max_age_ms = value("max_age_ms")
            .map(|v| integer("max_age_ms", v, event))
            .transpose()?;
        if let Some(age) = max_age_ms.filter(|age| *age < 0) {
            let message = format!("Invalid parameter: max_age_ms must not be negative, got {age}");
            return Err(ApiError::new(ErrorId::InvalidInteger, event, message));
        }
        let levels = LevelQuery::new(limit_count, threshold_volume)
            .map_err(|e| ApiError::new(ErrorId::InvalidNumber, event, e.to_string()))?;
        Ok(Self {
            exchange: exchange.to_owned(),
            market: market.to_owned(),
            levels,
            max_age_ms: max_age_ms.map(|v| v.unsigned_abs()),
        })
    }
}

fn integer(name: &str, text: &str, event: &str) -> Result<i64, ApiError> {
    // A sign is accepted, as Python's int() did (blanks were trimmed by the caller).
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorId::InvalidInteger,
            event,
            format!("Invalid parameter: {name} must be an integer, got {text:?}"),
        )
    })
}

fn number(name: &str, text: &str, event: &str) -> Result<f64, ApiError> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(ApiError::new(
            ErrorId::InvalidNumber,
            event,
            format!("Invalid parameter: {name} must be a finite number, got {text:?}"),
        )),
    }
}
