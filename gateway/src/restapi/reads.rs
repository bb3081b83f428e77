//! The book reads at restapi: get_asks / get_bids, and get_book, get_fill_price and
//! get_depth_stats (issue 14, [`ReadKind::Query`]), each answered for one book.
//!
//! 1. Local: the cluster's segments on this host are read directly (ClusterReader prefers a
//!    synced replica and skips dead or hung writers), and the answer is written straight from
//!    shared memory — no DCN, no copy of the book.
//! 2. Remote: otherwise the synced replicas of the state copy, minus those on this host (shared
//!    memory already said they cannot serve), are asked over HTTP in round-robin order; a failure
//!    moves on to the next (#5001 in the answer), all failing is #5000 — unless a DCN refused the
//!    request itself (#1103: its book is older than `max_age_ms` by the exchange's time), which
//!    is passed on as such.
//!
//! No candidate at all: #7000 unknown book, #4000 no replica placed, #6000 none synced.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use serde_json::Value;
use ubdcc_shm::Side;

use super::routing::{NoReplica, Replica, candidates, failover_warning};
use super::{RequestInfo, RestApi};
use crate::book_answer::{self, event_and_key};
use crate::book_query::{self, QueryKind, QueryRequest};
use crate::client::pod_url;
use crate::envelope::{
    ApiError, ErrorId, bytes_response, json_response, not_found_error, out_of_sync_error,
};
use crate::params::{BookRequest, Params};

/// How long a read waits for one DCN before it asks the next replica. A live DCN answers in
/// well under a millisecond (tens of ms on a loaded machine); a dead or unplugged host never
/// answers, and readers must not wait the 10 s of other internal calls for it (measured in
/// `tests/hosts`: 10 s per read while a host was gone, before this bound).
const REMOTE_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Which read of one book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// get_asks / get_bids.
    Side(Side),
    /// get_book, get_fill_price, get_depth_stats.
    Query(QueryKind),
}

impl ReadKind {
    fn event(self) -> &'static str {
        match self {
            Self::Side(side) => event_and_key(side).0,
            Self::Query(kind) => kind.event(),
        }
    }

    /// The DCN's endpoint answering the same read.
    fn dcn_path(self) -> &'static str {
        match self {
            Self::Side(Side::Asks) => "/get_asks",
            Self::Side(Side::Bids) => "/get_bids",
            Self::Query(kind) => kind.path(),
        }
    }

    fn forwarded(self) -> &'static [&'static str] {
        match self {
            Self::Side(_) => QueryKind::Book.forwarded(),
            Self::Query(kind) => kind.forwarded(),
        }
    }
}

/// A validated read.
enum ReadRequest {
    Side(Side, BookRequest),
    Query(QueryRequest),
}

impl ReadRequest {
    fn parse(params: &Params, kind: ReadKind) -> Result<Self, ApiError> {
        Ok(match kind {
            ReadKind::Side(side) => Self::Side(side, BookRequest::parse(params)?),
            ReadKind::Query(kind) => Self::Query(QueryRequest::parse(params, kind)?),
        })
    }

    fn book(&self) -> &BookRequest {
        match self {
            Self::Side(_, book) => book,
            Self::Query(query) => &query.book,
        }
    }
}

/// The route of a read of `kind`.
pub fn route(kind: ReadKind) -> MethodRouter<Arc<RestApi>> {
    get(
        move |State(api): State<Arc<RestApi>>, request: Parts| async move {
            let info = RequestInfo::new(&request.uri, &request.headers);
            let params = match Params::from_parts(kind.event(), request.uri.query(), b"") {
                Ok(params) => params,
                Err(error) => return api.error(error, &info, false),
            };
            read(&api, &params, kind, &info).await
        },
    )
}

/// Answers one read of one book: locally when a synced replica is on this host, else from the
/// DCNs (also what get_books does for each of its markets).
pub(super) async fn read(
    api: &RestApi,
    params: &Params,
    kind: ReadKind,
    info: &RequestInfo,
) -> Response {
    let debug = params.flag("debug");
    let request = match ReadRequest::parse(params, kind) {
        Ok(request) => request,
        Err(error) => return api.error(error, info, debug),
    };
    let local_error = match read_local(api, &request, info, debug) {
        Ok(response) => return response,
        Err(error) => error,
    };
    if let Some(error) = local_error.as_ref().filter(|e| is_final(e)) {
        return api.error(error.clone(), info, debug);
    }
    read_remote(api, params, &request, kind, info, debug, local_error).await
}

/// Errors no other replica can change: the request itself is wrong or too demanding.
const FINAL_ERRORS: [ErrorId; 4] = [
    ErrorId::NEGATIVE_LIMIT,
    ErrorId::INVALID_NUMBER,
    ErrorId::TOO_OLD,
    ErrorId::INVALID_FILL,
];

/// `error` is one of [`FINAL_ERRORS`].
fn is_final(error: &ApiError) -> bool {
    FINAL_ERRORS.contains(&error.id())
}

/// Answers from shared memory; `Err(None)` when local reads are off, `Err(Some(e))` with why
/// no local replica could serve.
fn read_local(
    api: &RestApi,
    request: &ReadRequest,
    info: &RequestInfo,
    debug: bool,
) -> Result<Response, Option<ApiError>> {
    let Some(reader) = &api.reader else {
        return Err(None);
    };
    let mut levels = Vec::new();
    let mut reader = reader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let body = match request {
        ReadRequest::Side(side, book) => {
            let (book_info, capacity) =
                book_answer::read(&mut reader, book, *side, &mut levels).map_err(Some)?;
            let dcn = reader.last_served_dcn().unwrap_or("").to_owned();
            drop(reader);
            let debug = debug.then(|| local_debug(api, info, &dcn));
            let partial = book_answer::partial_answer(&book_info, capacity, book);
            book_answer::body(*side, &book_info, &levels, debug.as_ref(), partial)
        }
        ReadRequest::Query(query) => {
            let body = book_query::answer(&mut reader, query).map_err(Some)?;
            let dcn = reader.last_served_dcn().unwrap_or("").to_owned();
            drop(reader);
            if debug {
                with_debug(body, local_debug(api, info, &dcn))
            } else {
                body
            }
        }
    };
    api.reads.local.inc();
    Ok(bytes_response(StatusCode::OK, body))
}

/// The `debug` block of a local read served by DCN `dcn` of this host.
fn local_debug(api: &RestApi, info: &RequestInfo, dcn: &str) -> Value {
    let uid = api.copy.get().and_then(|state| {
        state
            .pods
            .values()
            .find(|pod| pod.name == dcn && pod.node == api.identity.node)
            .map(|pod| pod.uid.clone())
    });
    api.debug(info, &[(dcn, uid.as_deref().unwrap_or(""))], None)
}

/// `body` (a JSON object) with `debug` sorted into it.
fn with_debug(body: Vec<u8>, debug: Value) -> Vec<u8> {
    let Ok(mut answer) = serde_json::from_slice::<std::collections::BTreeMap<String, Value>>(&body)
    else {
        return body;
    };
    answer.insert("debug".into(), debug);
    serde_json::to_vec(&answer).unwrap_or(body)
}

async fn read_remote(
    api: &RestApi,
    params: &Params,
    request: &ReadRequest,
    kind: ReadKind,
    info: &RequestInfo,
    debug: bool,
    local_error: Option<ApiError>,
) -> Response {
    let event = params.event();
    let book = request.book();
    let (exchange, market) = (book.exchange.as_str(), book.market.as_str());
    let Some(state) = api.copy.get() else {
        let error = local_error.unwrap_or_else(|| not_found_error(event, exchange, market));
        return api.error(error, info, debug);
    };
    let replicas = match candidates(&state, exchange, market) {
        Ok(replicas) => replicas,
        Err(NoReplica::UnknownDepthCache) => {
            // A book being removed may still be on a local segment, out of sync.
            let error = local_error
                .filter(|e| e.id() == ErrorId::OUT_OF_SYNC)
                .unwrap_or_else(|| not_found_error(event, exchange, market));
            return api.error(error, info, debug);
        }
        Err(NoReplica::NonePlaced) => {
            let message = format!("No DCN found for '{market}' on '{exchange}'!");
            return api.error(ApiError::new(ErrorId::NO_DCN, event, message), info, debug);
        }
        Err(NoReplica::NoneSynced) => {
            let error = local_error
                .filter(|e| e.id() == ErrorId::OUT_OF_SYNC)
                .unwrap_or_else(|| out_of_sync_error(event, exchange, market));
            return api.error(error, info, debug);
        }
    };
    let remote = not_read_locally(api, replicas);
    if remote.is_empty() {
        let error = local_error.unwrap_or_else(|| out_of_sync_error(event, exchange, market));
        return api.error(error, info, debug);
    }
    let ordered = api
        .round_robin
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .order(remote);
    let query = dcn_query(params, kind.forwarded());
    let mut failures: Vec<(Replica, String)> = Vec::new();
    let mut refusal: Option<ApiError> = None;
    for replica in ordered {
        let path = kind.dcn_path();
        let url = format!("{}{path}?{query}", pod_url(&replica.ip, replica.port));
        match api.client.get_within(&url, REMOTE_READ_TIMEOUT).await {
            Ok(body) => match served(&body) {
                Ok(()) => return answer(api, info, debug, &replica, &failures, body),
                Err(detail) => {
                    refusal = refusal.or_else(|| final_refusal(&body, event));
                    failures.push((replica, detail));
                }
            },
            Err(error) => failures.push((replica, error.to_string())),
        }
    }
    if let Some(error) = refusal {
        // A DCN answered and refused the request itself (e.g. #1103: its book is older than
        // `max_age_ms`, and no other replica served a fresher one): its error, not #5000, which
        // would read as an outage and hide that the book is behind.
        return api.error(error, info, debug);
    }
    let requests: Vec<Value> = failures
        .iter()
        .map(|(replica, detail)| {
            Value::from(vec![
                replica.ip.clone().into(),
                replica.port.into(),
                Value::from(detail.clone()),
            ])
        })
        .collect();
    let error = ApiError::new(
        ErrorId::NO_DCN_RESPONDED,
        event,
        "No DCN has responded to the request!",
    )
    .with("requests", requests);
    api.error(error, info, debug)
}

/// The replicas shared memory did not just answer for. Replicas whose segment this pod maps
/// were asked through shared memory: those on this machine (a DCN elsewhere may share a name)
/// with a segment here (the machine may not share its shared memory with this pod).
pub(super) fn not_read_locally(api: &RestApi, replicas: Vec<Replica>) -> Vec<Replica> {
    let mapped: Vec<String> = api.reader.as_ref().map_or_else(Vec::new, |reader| {
        let reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reader.dcns().map(str::to_owned).collect()
    });
    replicas
        .into_iter()
        .filter(|r| r.node != api.identity.node || !mapped.contains(&r.name))
        .collect()
}

/// The DCN query: the read's own parameters (`keys`), nothing else (not `debug`). A number
/// given in a JSON body is forwarded as its text.
pub(super) fn dcn_query(params: &Params, keys: &[&str]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for key in keys {
        if let Some(value) = params.raw_text(key) {
            query.append_pair(key, &value);
        }
    }
    query.finish()
}

/// The DCN's error in `body` when it is one of [`FINAL_ERRORS`], with its other keys (#1103's
/// `age_ms`).
fn final_refusal(body: &[u8], event: &str) -> Option<ApiError> {
    let answer: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    let id = answer.get("error_id").and_then(Value::as_str)?;
    let id = FINAL_ERRORS
        .into_iter()
        .find(|known| known.as_str() == id)?;
    let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
    let envelope = ["result", "event", "error_id", "message", "debug"];
    let error = answer
        .iter()
        .filter(|(key, _)| !envelope.contains(&key.as_str()))
        .fold(ApiError::new(id, event, message), |error, (key, value)| {
            error.with(key, value.clone())
        });
    Some(error)
}

/// `Ok` when a DCN's answer is data; else the failure's detail (its `error`, else its
/// `message`, else the whole answer), as the original words #5001.
fn served(body: &[u8]) -> Result<(), String> {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Err("the answer is not a JSON object".into());
    };
    if answer.get("result").and_then(Value::as_str) == Some("OK")
        && !answer.contains_key("error_id")
    {
        return Ok(());
    }
    let detail = ["error", "message"]
        .iter()
        .find_map(|key| answer.get(*key).and_then(Value::as_str))
        .map_or_else(|| Value::Object(answer.clone()).to_string(), str::to_owned);
    Err(detail)
}

/// The DCN's answer, unchanged unless `debug` or an earlier failure adds keys.
fn answer(
    api: &RestApi,
    info: &RequestInfo,
    debug: bool,
    replica: &Replica,
    failures: &[(Replica, String)],
    body: Bytes,
) -> Response {
    if failures.is_empty() {
        api.reads.remote.inc();
    } else {
        api.reads.failover.inc();
    }
    if !debug && failures.is_empty() {
        return bytes_response(StatusCode::OK, body.to_vec());
    }
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(&body) else {
        return bytes_response(StatusCode::OK, body.to_vec());
    };
    if debug {
        let used = [(replica.name.as_str(), replica.pod_uid.as_str())];
        answer.insert("debug".into(), api.debug(info, &used, None));
    }
    if !failures.is_empty() {
        answer.insert("error_id".into(), ErrorId::FAILOVER.as_str().into());
        answer.insert("error".into(), failover_warning(failures).into());
    }
    json_response(StatusCode::OK, &Value::Object(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dcns_too_old_refusal_is_passed_on_and_an_outage_is_not_final() {
        let too_old = br##"{"age_ms":3012.5,"error_id":"#1103","event":"GET_BOOK","message":"older","result":"ERROR"}"##;
        let error = final_refusal(too_old, "GET_BOOK").expect("final");
        assert_eq!(error.id(), ErrorId::TOO_OLD);
        let body = error.into_body();
        assert_eq!(body["age_ms"], 3012.5);
        assert_eq!(body["message"], "older");
        // Not synced on that DCN: another replica may serve, so the read moves on.
        let not_synced =
            br##"{"error_id":"#6000","event":"GET_BOOK","message":"x","result":"ERROR"}"##;
        assert!(final_refusal(not_synced, "GET_BOOK").is_none());
        assert!(final_refusal(b"not json", "GET_BOOK").is_none());
    }
}
