//! get_asks / get_bids at restapi.
//!
//! 1. Local: the cluster's segments on this host are read directly (ClusterReader prefers a
//!    synced replica and skips dead or hung writers), and the answer is written straight from
//!    shared memory — no DCN, no copy of the book.
//! 2. Remote: otherwise the synced replicas of the state copy, minus those on this host (shared
//!    memory already said they cannot serve), are asked over HTTP in round-robin order; a failure
//!    moves on to the next (#5001 in the answer), all failing is #5000.
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
use crate::envelope::{
    ApiError, ErrorId, bytes_response, json_response, not_found_error, out_of_sync_error,
};
use crate::params::{BookRequest, Params};

/// How long a read waits for one DCN before it asks the next replica. A live DCN answers in
/// well under a millisecond (tens of ms on a loaded machine); a dead or unplugged host never
/// answers, and readers must not wait the 10 s of other internal calls for it (measured in
/// `tests/hosts`: 10 s per read while a host was gone, before this bound).
const REMOTE_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The route of a read of `side`.
pub fn route(side: Side) -> MethodRouter<Arc<RestApi>> {
    match side {
        Side::Asks => get(get_asks),
        Side::Bids => get(get_bids),
    }
}

async fn get_asks(State(api): State<Arc<RestApi>>, request: Parts) -> Response {
    read(&api, &request, Side::Asks).await
}

async fn get_bids(State(api): State<Arc<RestApi>>, request: Parts) -> Response {
    read(&api, &request, Side::Bids).await
}

async fn read(api: &RestApi, request: &Parts, side: Side) -> Response {
    let info = RequestInfo::new(&request.uri, &request.headers);
    let (event, _) = event_and_key(side);
    let params = match Params::from_parts(event, request.uri.query(), b"") {
        Ok(params) => params,
        Err(error) => return api.error(error, &info, false),
    };
    let debug = params.flag("debug");
    let book = match BookRequest::parse(&params) {
        Ok(book) => book,
        Err(error) => return api.error(error, &info, debug),
    };
    let local_error = match read_local(api, &book, side, &info, debug) {
        Ok(response) => return response,
        Err(error) => error,
    };
    if let Some(error) = local_error.as_ref().filter(|e| is_final(e)) {
        return api.error(error.clone(), &info, debug);
    }
    read_remote(api, &params, &book, side, &info, debug, local_error).await
}

/// Errors no other replica can change: the request itself is wrong or too demanding.
fn is_final(error: &ApiError) -> bool {
    [
        ErrorId::NEGATIVE_LIMIT,
        ErrorId::INVALID_NUMBER,
        ErrorId::TOO_OLD,
    ]
    .contains(&error.id())
}

/// Answers from shared memory; `Err(None)` when local reads are off, `Err(Some(e))` with why
/// no local replica could serve.
fn read_local(
    api: &RestApi,
    book: &BookRequest,
    side: Side,
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
    let book_info = book_answer::read(&mut reader, book, side, &mut levels).map_err(Some)?;
    let dcn = reader.last_served_dcn().unwrap_or("").to_owned();
    drop(reader);
    let debug = debug.then(|| {
        let uid = api.copy.get().and_then(|state| {
            state
                .pods
                .values()
                .find(|pod| pod.name == dcn && pod.node == api.identity.node)
                .map(|pod| pod.uid.clone())
        });
        api.debug(info, &[(&dcn, uid.as_deref().unwrap_or(""))], None)
    });
    let partial = book_answer::partial_answer(&book_info, book);
    let body = book_answer::body(side, &book_info, &levels, debug.as_ref(), partial);
    api.reads.local.inc();
    Ok(bytes_response(StatusCode::OK, body))
}

async fn read_remote(
    api: &RestApi,
    params: &Params,
    book: &BookRequest,
    side: Side,
    info: &RequestInfo,
    debug: bool,
    local_error: Option<ApiError>,
) -> Response {
    let event = params.event();
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
    // Replicas whose segment this pod maps were just asked through shared memory: those on this
    // machine (a DCN elsewhere may share a name) with a segment here (the machine may not share
    // its shared memory with this pod).
    let mapped: Vec<String> = api.reader.as_ref().map_or_else(Vec::new, |reader| {
        let reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reader.dcns().map(str::to_owned).collect()
    });
    let remote: Vec<Replica> = replicas
        .into_iter()
        .filter(|r| r.node != api.identity.node || !mapped.contains(&r.name))
        .collect();
    if remote.is_empty() {
        let error = local_error.unwrap_or_else(|| out_of_sync_error(event, exchange, market));
        return api.error(error, info, debug);
    }
    let ordered = api
        .round_robin
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .order(remote);
    let query = dcn_query(params);
    let mut failures: Vec<(Replica, String)> = Vec::new();
    for replica in ordered {
        let path = if side == Side::Asks {
            "get_asks"
        } else {
            "get_bids"
        };
        let url = format!("http://{}:{}/{path}?{query}", replica.ip, replica.port);
        match api.client.get_within(&url, REMOTE_READ_TIMEOUT).await {
            Ok(body) => match served(&body) {
                Ok(()) => return answer(api, info, debug, &replica, &failures, body),
                Err(detail) => failures.push((replica, detail)),
            },
            Err(error) => failures.push((replica, error.to_string())),
        }
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

/// The DCN query: the read's own parameters, nothing else (not `debug`).
fn dcn_query(params: &Params) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for key in [
        "exchange",
        "market",
        "limit_count",
        "threshold_volume",
        "max_age_ms",
    ] {
        if let Ok(Some(value)) = params.text(key) {
            query.append_pair(key, value);
        }
    }
    query.finish()
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
