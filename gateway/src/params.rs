//! Request parameters, from the query string or a JSON body, with one rule for "not set".
//!
//! The original's clients send an unset value as a missing key (requests, aiohttp), as JSON `null`
//! (the sync client's POST bodies) or, from the original restapi's forwarding, as the string
//! `"None"`; an empty value counts as missing too. All of them mean **not set** here. A value of
//! the wrong type or form is an ERROR envelope with an id of its own, never an HTTP 500 (the
//! tests below show each rule).

use std::collections::HashMap;

use serde_json::{Map, Value};
use ubdcc_shm::LevelQuery;

use crate::envelope::{ApiError, ErrorId};

/// The parameters of one request, and the event its errors are reported under.
#[derive(Debug, Clone)]
pub struct Params {
    event: &'static str,
    /// The query string's values.
    query: HashMap<String, Value>,
    /// The JSON body as received (its keys win over the query's; also `debug.post_body`). Kept
    /// once, not copied into `query`: a large body is parsed once and never cloned.
    body: Option<Map<String, Value>>,
}

impl Params {
    /// Parses the query string and, when the body is not empty, the JSON object in it; body keys
    /// win over query keys.
    ///
    /// # Errors
    /// #1106 when a non-empty body is not a JSON object.
    pub fn from_parts(
        event: &'static str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let query: HashMap<String, Value> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect();
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let Ok(object) = serde_json::from_slice::<Map<String, Value>>(body) else {
                return Err(ApiError::new(
                    ErrorId::INVALID_BODY,
                    event,
                    "Invalid request body: expected a JSON object",
                ));
            };
            Some(object)
        };
        Ok(Self { event, query, body })
    }

    /// The event errors are reported under.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The JSON body, if the request had one.
    pub fn body(&self) -> Option<&Map<String, Value>> {
        self.body.as_ref()
    }

    /// The value of `key` as sent: the body's, else the query's.
    fn raw(&self, key: &str) -> Option<&Value> {
        self.body
            .as_ref()
            .and_then(|body| body.get(key))
            .or_else(|| self.query.get(key))
    }

    /// The value of `key` unless it is not set (missing, `null`, `""` or `"None"`).
    fn value(&self, key: &str) -> Option<&Value> {
        match self.raw(key)? {
            Value::Null => None,
            Value::String(text) if is_unset(text) => None,
            value => Some(value),
        }
    }

    /// A set parameter as the text a query would carry: a string trimmed, a number or boolean
    /// spelled out, a list of strings comma-joined; `None` when not set (or an object).
    pub fn raw_text(&self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(text) => Some(text.trim().to_owned()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .map(|items| items.join(",")),
            Value::Null | Value::Object(_) => None,
        }
    }

    /// A text parameter, trimmed.
    ///
    /// # Errors
    /// #1108 when the value is not a string.
    pub fn text(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.trim())),
            Some(other) => Err(self.invalid(
                ErrorId::INVALID_PARAMETER,
                format!(
                    "Invalid parameter: {key} must be a string, got {}",
                    shown(other)
                ),
            )),
        }
    }

    /// Text parameters that must all be set, in `keys` order; otherwise the error `id` with the
    /// original's message, `Missing required parameter: <keys joined by ", ">`.
    ///
    /// # Errors
    /// `id` when one is not set, #1108 when one is not a string.
    pub fn required<const N: usize>(
        &self,
        id: ErrorId,
        keys: [&str; N],
    ) -> Result<[&str; N], ApiError> {
        let mut values = [""; N];
        for (value, key) in values.iter_mut().zip(keys) {
            let Some(text) = self.text(key)? else {
                let message = format!("Missing required parameter: {}", keys.join(", "));
                return Err(self.invalid(id, message));
            };
            *value = text;
        }
        Ok(values)
    }

    /// An integer parameter: a JSON integer or its decimal text (a sign is accepted, as Python's
    /// `int()` did).
    ///
    /// # Errors
    /// #1100 when the value is not an integer in range.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| {
            self.invalid(
                ErrorId::INVALID_INTEGER,
                format!(
                    "Invalid parameter: {key} must be an integer, got {}",
                    shown(value)
                ),
            )
        })
    }

    /// A non-negative integer parameter that fits `T`.
    ///
    /// # Errors
    /// #1100 when the value is not such an integer.
    pub fn unsigned<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<T>, ApiError> {
        let Some(value) = self.integer(key)? else {
            return Ok(None);
        };
        T::try_from(value).map(Some).map_err(|_| {
            self.invalid(
                ErrorId::INVALID_INTEGER,
                format!("Invalid parameter: {key} is out of range, got {value}"),
            )
        })
    }

    /// A finite number: a JSON number or its text.
    ///
    /// # Errors
    /// #1102 when the value is not a finite number.
    pub fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(number) if number.is_finite() => Ok(Some(number)),
            _ => Err(self.invalid(
                ErrorId::INVALID_NUMBER,
                format!(
                    "Invalid parameter: {key} must be a finite number, got {}",
                    shown(value)
                ),
            )),
        }
    }

    /// A list of texts: a JSON array of strings, or one comma-separated string (GET, and a JSON
    /// string in a body). Items are trimmed; empty items are dropped.
    ///
    /// # Errors
    /// #1108 when the value is neither.
    pub fn list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let items: Vec<String> = match self.value(key) {
            None => return Ok(None),
            Some(Value::String(text)) => text.split(',').map(str::to_owned).collect(),
            Some(Value::Array(items)) => {
                let texts: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                texts.ok_or_else(|| {
                    self.invalid(
                        ErrorId::INVALID_PARAMETER,
                        format!("Invalid parameter: {key} must be a list of strings"),
                    )
                })?
            }
            Some(other) => {
                return Err(self.invalid(
                    ErrorId::INVALID_PARAMETER,
                    format!(
                        "Invalid parameter: {key} must be a list of strings, got {}",
                        shown(other)
                    ),
                ));
            }
        };
        let items: Vec<String> = items
            .into_iter()
            .map(|item| item.trim().to_owned())
            .filter(|item| !is_unset(item))
            .collect();
        Ok((!items.is_empty()).then_some(items))
    }

    /// A boolean parameter: JSON `true` / `false`, or that text in any case (`record=true`, as
    /// `debug=true` is sent); `None` when not set.
    ///
    /// # Errors
    /// #1108 for any other value (`1`, `"yes"`): a typo must not silently mean `false`.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) if text.trim().eq_ignore_ascii_case("true") => Some(true),
            Value::String(text) if text.trim().eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| {
            self.invalid(
                ErrorId::INVALID_PARAMETER,
                format!(
                    "Invalid parameter: {key} must be true or false, got {}",
                    shown(value)
                ),
            )
        })
    }

    /// A flag such as `debug`: on when the value, lowercased, is `"true"` (or JSON `true`).
    pub fn flag(&self, key: &str) -> bool {
        match self.raw(key) {
            Some(Value::Bool(on)) => *on,
            Some(Value::String(text)) => text.trim().eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// An error of this request's event.
    pub fn invalid(&self, id: ErrorId, message: impl Into<String>) -> ApiError {
        ApiError::new(id, self.event, message)
    }
}

fn is_unset(text: &str) -> bool {
    let text = text.trim();
    text.is_empty() || text == "None"
}

/// A value for an error message: strings quoted, never more than 64 characters of whatever a
/// caller sent.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    };
    crate::envelope::clip(&text).into_owned()
}

/// Largest request body read: a create_depthcaches of ~40 000 markets, a DCN's sync report of
/// ~7 000 replicas.
pub const MAX_BODY: usize = 1 << 20;

/// A larger body is still read (and dropped) up to this size, so the client gets its #1106
/// answer instead of a connection reset mid-upload.
const DRAIN_LIMIT: usize = 64 << 20;

/// A body must arrive within this time (1 MiB in 10 s is 100 KiB/s): the HTTP server's head
/// timeout does not cover it, and a slow upload must not hold its share of `BODY_BUDGET` long.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Parsed JSON is at most this many times larger than its text (`[0,0,…]`: 2 bytes become a
/// 32-byte `Value`, and a growing `Vec` may hold twice that).
const PARSED_PER_BYTE: usize = 32;

/// The request bodies of outside callers in flight in this process, counted at their worst
/// parsed size, never take more than this much memory (128 MiB: four bodies of [`MAX_BODY`] at
/// once). Further bodies wait for room (back-pressure) instead of growing memory: a flood of
/// large bodies slows down, the process does not run out of memory. Only bytes that arrived
/// count (never an announced `Content-Length`, which costs an attacker nothing), and the pods'
/// own calls ([`Sender::Pod`]) are not counted: heartbeats must never wait behind a flood.
static BODY_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_BODY * PARSED_PER_BYTE * 4);

/// A request body read by [`read_body`]; it holds its share of `BODY_BUDGET` until dropped,
/// so keep it (and what is parsed from it) no longer than the request.
#[derive(Debug)]
pub struct RequestBody {
    bytes: bytes::Bytes,
    _budget: Option<tokio::sync::SemaphorePermit<'static>>,
}

impl std::ops::Deref for RequestBody {
    type Target = bytes::Bytes;

    fn deref(&self) -> &bytes::Bytes {
        &self.bytes
    }
}

/// Who sent a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A pod of the cluster (the call carried the cluster secret): outside `BODY_BUDGET`.
    Pod,
    /// Anyone else: within `BODY_BUDGET`.
    Outside,
}

impl Sender {
    /// The sender of `request`, as the auth middleware found it.
    pub fn of(request: &axum::extract::Request) -> Self {
        let authenticated = request
            .extensions()
            .get::<crate::auth::Authenticated>()
            .is_some_and(|a| a.0);
        if authenticated {
            Self::Pod
        } else {
            Self::Outside
        }
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes within `BODY_DEADLINE`.
///
/// # Errors
/// #1106 when it is larger, late, or cannot be read.
pub async fn read_body(
    body: axum::body::Body,
    event: &'static str,
    sender: Sender,
) -> Result<RequestBody, ApiError> {
    let invalid = |detail: String| {
        ApiError::new(
            ErrorId::INVALID_BODY,
            event,
            format!("Invalid request body: {detail}"),
        )
    };
    match tokio::time::timeout(BODY_DEADLINE, collect(body, sender)).await {
        Err(_) => Err(invalid(format!(
            "not received within {} s",
            BODY_DEADLINE.as_secs()
        ))),
        Ok(Err(error)) => Err(invalid(error)),
        Ok(Ok(None)) => Err(invalid(format!("larger than {MAX_BODY} bytes"))),
        Ok(Ok(Some(body))) => Ok(body),
    }
}

/// The body's bytes with their budget; `None` when it is larger than [`MAX_BODY`] (drained up
/// to [`DRAIN_LIMIT`]).
async fn collect(
    mut body: axum::body::Body,
    sender: Sender,
) -> Result<Option<RequestBody>, String> {
    use http_body_util::BodyExt as _;
    let mut collected = bytes::BytesMut::new();
    let mut budget = Budget::default();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| error.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen > MAX_BODY {
            // Drained, not kept: its budget goes back now.
            budget = Budget::default();
            collected = bytes::BytesMut::new();
            continue;
        }
        if sender == Sender::Outside {
            budget.reserve(seen).await?;
        }
        collected.extend_from_slice(&data);
    }
    if seen > MAX_BODY {
        return Ok(None);
    }
    Ok(Some(RequestBody {
        bytes: collected.freeze(),
        _budget: budget.permit,
    }))
}

/// One body's share of `BODY_BUDGET`.
#[derive(Default)]
struct Budget {
    permit: Option<tokio::sync::SemaphorePermit<'static>>,
}

impl Budget {
    /// Holds the share of a body of `bytes` bytes. When the budget has no room, it lets go of
    /// what it holds before it waits: bodies that wait for room while holding some would wait
    /// for each other for ever.
    async fn reserve(&mut self, bytes: usize) -> Result<(), String> {
        let needed = u32::try_from(bytes.saturating_mul(PARSED_PER_BYTE)).unwrap_or(u32::MAX);
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u32);
        if needed <= held {
            return Ok(());
        }
        if let Ok(more) = BODY_BUDGET.try_acquire_many(needed - held) {
            match &mut self.permit {
                Some(permit) => permit.merge(more),
                None => self.permit = Some(more),
            }
            return Ok(());
        }
        self.permit = None;
        let all = BODY_BUDGET
            .acquire_many(needed)
            .await
            .map_err(|error| error.to_string())?;
        self.permit = Some(all);
        Ok(())
    }
}

/// The parameters of a get_asks / get_bids read, validated.
#[derive(Debug, Clone)]
pub struct BookRequest {
    /// Exchange string.
    pub exchange: String,
    /// Market symbol.
    pub market: String,
    /// The levels wanted (`limit_count`, `threshold_volume`).
    pub levels: LevelQuery,
    /// Refuse a book older than this (ubdcc's freshness guard).
    pub max_age_ms: Option<u64>,
}

impl BookRequest {
    /// Validates a read: #1025 without `exchange` / `market`, #1100 for a non-integer
    /// `limit_count` or `max_age_ms`, #1101 for a negative `limit_count`, #1102 for a threshold
    /// that is not a finite number.
    ///
    /// # Errors
    /// See above.
    pub fn parse(params: &Params) -> Result<Self, ApiError> {
        let [exchange, market] =
            params.required(ErrorId::MISSING_BOOK_PARAMETER, ["exchange", "market"])?;
        let limit_count = params.integer("limit_count")?;
        if let Some(limit) = limit_count.filter(|limit| *limit < 0) {
            return Err(params.invalid(
                ErrorId::NEGATIVE_LIMIT,
                format!("Invalid parameter: limit_count must not be negative, got {limit}"),
            ));
        }
        let threshold_volume = params.number("threshold_volume")?;
        let max_age_ms = params.unsigned::<u64>("max_age_ms")?;
        let levels = LevelQuery::new(limit_count, threshold_volume)
            .map_err(|e| params.invalid(ErrorId::INVALID_NUMBER, e.to_string()))?;
        Ok(Self {
            exchange: exchange.to_owned(),
            market: market.to_owned(),
            levels,
            max_age_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str, body: &str) -> Params {
        Params::from_parts("TEST", Some(query), body.as_bytes()).unwrap()
    }

    #[test]
    fn missing_null_empty_and_none_all_mean_not_set() {
        let p = params("a=None&b=&c=%20", r#"{"d":null,"e":"None"}"#);
        for key in ["a", "b", "c", "d", "e", "f"] {
            assert_eq!(p.text(key).unwrap(), None, "{key}");
            assert_eq!(p.integer(key).unwrap(), None, "{key}");
        }
    }

    #[test]
    fn numbers_come_as_json_or_text_and_bad_ones_are_errors() {
        let p = params("q=2&t=20000.5&bad=1e", r#"{"n":3,"f":1.5,"s":"x"}"#);
        assert_eq!(p.integer("q").unwrap(), Some(2));
        assert_eq!(p.integer("n").unwrap(), Some(3));
        assert_eq!(p.number("t").unwrap(), Some(20000.5));
        assert_eq!(p.integer("f").unwrap_err().id(), ErrorId::INVALID_INTEGER);
        assert_eq!(p.integer("bad").unwrap_err().id(), ErrorId::INVALID_INTEGER);
        assert_eq!(p.number("s").unwrap_err().id(), ErrorId::INVALID_NUMBER);
        assert_eq!(p.unsigned::<u32>("q").unwrap(), Some(2));
        let p = params("neg=-1&nan=NaN&inf=inf", "");
        assert_eq!(
            p.unsigned::<u32>("neg").unwrap_err().id(),
            ErrorId::INVALID_INTEGER
        );
        assert_eq!(p.number("nan").unwrap_err().id(), ErrorId::INVALID_NUMBER);
        assert_eq!(p.number("inf").unwrap_err().id(), ErrorId::INVALID_NUMBER);
    }

    #[test]
    fn lists_come_as_arrays_or_comma_separated_text() {
        let p = params("m=A,%20B,,C", r#"{"j":["X","Y"],"s":"P,Q","bad":[1]}"#);
        assert_eq!(p.list("m").unwrap().unwrap(), ["A", "B", "C"]);
        assert_eq!(p.list("j").unwrap().unwrap(), ["X", "Y"]);
        assert_eq!(p.list("s").unwrap().unwrap(), ["P", "Q"]);
        assert_eq!(p.list("bad").unwrap_err().id(), ErrorId::INVALID_PARAMETER);
        assert_eq!(p.list("none").unwrap(), None);
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_an_error() {
        for body in ["{", "[1]", "\"x\"", "\u{0}"] {
            let error = Params::from_parts("E", None, body.as_bytes()).unwrap_err();
            assert_eq!(error.id(), ErrorId::INVALID_BODY, "{body}");
        }
    }

    #[test]
    fn debug_is_on_for_true_in_any_case_from_query_or_body() {
        assert!(params("debug=TRUE", "").flag("debug"));
        assert!(params("", r#"{"debug":"true"}"#).flag("debug"));
        assert!(params("", r#"{"debug":true}"#).flag("debug"));
        assert!(!params("debug=1", "").flag("debug"));
    }

    #[test]
    fn booleans_are_true_or_false_in_any_case_and_anything_else_is_an_error() {
        let p = params(
            "t=TRUE&f=false&none=None&one=1",
            r#"{"jt":true,"jf":false,"js":"False","yes":"yes","n":0,"l":[true]}"#,
        );
        for (key, expected) in [
            ("t", Some(true)),
            ("jt", Some(true)),
            ("f", Some(false)),
            ("jf", Some(false)),
            ("js", Some(false)),
            ("none", None),
            ("missing", None),
        ] {
            assert_eq!(p.boolean(key).unwrap(), expected, "{key}");
        }
        for key in ["one", "yes", "n", "l"] {
            let error = p.boolean(key).unwrap_err();
            assert_eq!(error.id(), ErrorId::INVALID_PARAMETER, "{key}");
        }
    }

    #[test]
    fn book_requests_are_validated() {
        let read = |q: &str| BookRequest::parse(&params(q, ""));
        assert_eq!(
            read("market=X").unwrap_err().id(),
            ErrorId::MISSING_BOOK_PARAMETER
        );
        assert_eq!(
            read("exchange=e&market=X&limit_count=-1").unwrap_err().id(),
            ErrorId::NEGATIVE_LIMIT
        );
        assert_eq!(
            read("exchange=e&market=X&limit_count=1.5")
                .unwrap_err()
                .id(),
            ErrorId::INVALID_INTEGER
        );
        assert_eq!(
            read("exchange=e&market=X&threshold_volume=abc")
                .unwrap_err()
                .id(),
            ErrorId::INVALID_NUMBER
        );
        let ok = read("exchange=e&market=X&limit_count=None&threshold_volume=10").unwrap();
        assert_eq!((ok.exchange.as_str(), ok.market.as_str()), ("e", "X"));
    }
}
