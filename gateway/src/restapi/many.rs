//! Reads of many markets in one call (issue 14): `get_books` (each market answered like
//! `get_book`, in parallel, each its own answer or error) and `get_bbo` (the best bid and ask of
//! the markets asked for, or of every book of an exchange).
//!
//! `get_bbo` reads what this host's shared memory holds first, then asks the DCNs for the rest,
//! one call per DCN carrying all of its markets, in parallel; a market no replica could answer
//! for keeps its error (#6000 with the reason, #7000, #5000), never a stale price.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use serde_json::{Map, Value, json};

use super::reads::{ReadKind, dcn_query, not_read_locally, read};
use super::routing::candidates;
use super::{RequestInfo, RestApi};
use crate::book_query::{self, BBO_EVENT, QueryKind};
use crate::envelope::{ApiError, ErrorId, bytes_response, json_response};
use crate::params::{Params, Sender, read_body};

/// The `GET_BOOKS` event.
const BOOKS_EVENT: &str = "GET_BOOKS";

/// Markets one `get_books` call may ask for: each is a whole read of its own.
const MAX_BOOKS_PER_CALL: usize = 1_000;

/// Markets of one `get_books` call read at the same time: each remote one is a call to a DCN,
/// and one request must not turn into a thousand at once.
const BOOKS_IN_FLIGHT: usize = 32;

/// How long `get_bbo` waits for a DCN's answer.
const BBO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The route of `get_books` (GET with a query, or POST with a JSON body).
pub fn books_route() -> MethodRouter<Arc<RestApi>> {
    let handler = |State(api): State<Arc<RestApi>>, request: axum::extract::Request| async move {
        let info = RequestInfo::new(request.uri(), request.headers());
        let sender = Sender::of(&request);
        let (parts, body) = request.into_parts();
        // The same bounds (size, deadline, shared budget) as every other body.
        match read_body(body, BOOKS_EVENT, sender).await {
            Ok(body) => get_books(&api, &parts, info, &body).await,
            Err(error) => api.error(error, &info, false),
        }
    };
    get(handler).post(handler)
}

/// The route of `get_bbo`.
pub fn bbo_route() -> MethodRouter<Arc<RestApi>> {
    get(
        |State(api): State<Arc<RestApi>>, request: Parts| async move { get_bbo(&api, &request).await },
    )
}

async fn get_books(api: &RestApi, request: &Parts, info: RequestInfo, body: &[u8]) -> Response {
    let params = match Params::from_parts(BOOKS_EVENT, request.uri.query(), body) {
        Ok(params) => params,
        Err(error) => return api.error(error, &info, false),
    };
    let markets = match markets_of(&params, true) {
        Ok(markets) => markets.unwrap_or_default(),
        Err(error) => return api.error(error, &info, params.flag("debug")),
    };
    let shared = dcn_query(
        &params,
        &["exchange", "limit_count", "threshold_volume", "max_age_ms"],
    );
    let info = &info;
    let reads = markets.into_iter().map(|market| {
        let query = format!(
            "{shared}&{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("market", &market)
                .finish()
        );
        read_one(api, info, market, query)
    });
    let books: BTreeMap<String, Value> = futures_util::stream::iter(reads)
        .buffer_unordered(BOOKS_IN_FLIGHT)
        .collect()
        .await;
    json_response(
        StatusCode::OK,
        &json!({"books": books, "event": BOOKS_EVENT, "result": "OK"}),
    )
}

/// One market of `get_books`, read like `get_book` with `query`.
async fn read_one(
    api: &RestApi,
    info: &RequestInfo,
    market: String,
    query: String,
) -> (String, Value) {
    let answer = match Params::from_parts("GET_BOOK", Some(&query), b"") {
        Ok(params) => read(api, &params, ReadKind::Query(QueryKind::Book), info).await,
        Err(error) => api.error(error, info, false),
    };
    (market, entry_of(answer).await)
}

/// One market's answer as an entry of `books`: its keys without `event` and `result`.
async fn entry_of(answer: Response) -> Value {
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    match serde_json::from_slice::<Map<String, Value>>(&body) {
        Ok(mut entry) => {
            entry.remove("event");
            entry.remove("result");
            Value::Object(entry)
        }
        Err(_) => {
            json!({"error_id": ErrorId::NO_DCN_RESPONDED.as_str(), "message": "unreadable answer"})
        }
    }
}

/// `exchange` and `markets`: required (#1025) for get_books, optional for get_bbo.
fn markets_of(params: &Params, required: bool) -> Result<Option<Vec<String>>, ApiError> {
    params.required(ErrorId::MISSING_BOOK_PARAMETER, ["exchange"])?;
    let markets = params.list("markets")?;
    match &markets {
        None if required => Err(params.invalid(
            ErrorId::MISSING_BOOK_PARAMETER,
            "Missing required parameter: exchange, markets",
        )),
        Some(list) if list.len() > MAX_BOOKS_PER_CALL => Err(params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!("at most {MAX_BOOKS_PER_CALL} markets in one call"),
        )),
        _ => Ok(markets),
    }
}

async fn get_bbo(api: &RestApi, request: &Parts) -> Response {
    let info = RequestInfo::new(&request.uri, &request.headers);
    let params = match Params::from_parts(BBO_EVENT, request.uri.query(), b"") {
        Ok(params) => params,
        Err(error) => return api.error(error, &info, false),
    };
    let (exchange, markets) = match markets_of(&params, false) {
        Ok(markets) => (
            params.text("exchange").ok().flatten().unwrap_or(""),
            markets,
        ),
        Err(error) => return api.error(error, &info, params.flag("debug")),
    };
    let markets = markets.unwrap_or_else(|| every_market(api, exchange));
    let mut entries = local_bbo(api, exchange, &markets);
    remote_bbo(api, exchange, &mut entries).await;
    bytes_response(StatusCode::OK, book_query::bbo_body(entries))
}

/// Every book of `exchange` the cluster keeps (mgmt's state, else this host's segments).
fn every_market(api: &RestApi, exchange: &str) -> Vec<String> {
    if let Some(state) = api.copy.get() {
        return state
            .depthcaches
            .get(exchange)
            .map(|markets| markets.keys().cloned().collect())
            .unwrap_or_default();
    }
    let Some(reader) = &api.reader else {
        return Vec::new();
    };
    let mut reader = reader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut markets: Vec<String> = reader
        .list()
        .into_iter()
        .filter(|listing| listing.exchange == exchange)
        .map(|listing| listing.market)
        .collect();
    markets.dedup();
    markets
}

/// Entries from this host's shared memory (errors where it cannot answer).
fn local_bbo(api: &RestApi, exchange: &str, markets: &[String]) -> Map<String, Value> {
    let Some(reader) = &api.reader else {
        let unknown = json!({"error_id": ErrorId::NOT_FOUND.as_str(), "message": "not read yet"});
        return markets
            .iter()
            .map(|m| (m.clone(), unknown.clone()))
            .collect();
    };
    let mut reader = reader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    book_query::bbo_entries(&mut reader, exchange, Some(markets))
}

/// Asks the DCNs for every market this host could not answer, one call per DCN.
async fn remote_bbo(api: &RestApi, exchange: &str, entries: &mut Map<String, Value>) {
    let Some(state) = api.copy.get() else {
        return;
    };
    let mut by_dcn: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for (market, entry) in entries.iter() {
        if entry.get("error_id").is_none() {
            continue;
        }
        let Ok(replicas) = candidates(&state, exchange, market) else {
            continue;
        };
        let Some(replica) = not_read_locally(api, replicas).into_iter().next() else {
            continue;
        };
        let url = crate::client::pod_url(&replica.ip, replica.port);
        by_dcn
            .entry(replica.pod_uid)
            .or_insert_with(|| (url, Vec::new()))
            .1
            .push(market.clone());
    }
    let calls = by_dcn.into_values().map(|(url, markets)| async move {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("exchange", exchange)
            .append_pair("markets", &markets.join(","))
            .finish();
        let answer = api
            .client
            .get_within(&format!("{url}/get_bbo?{query}"), BBO_TIMEOUT)
            .await;
        (markets, answer)
    });
    for (markets, answer) in join_all(calls).await {
        let answered = answer
            .ok()
            .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
            .and_then(|mut value| value.get_mut("bbo").map(Value::take));
        for market in markets {
            let entry = answered.as_ref().and_then(|bbo| bbo.get(&market)).cloned();
            let entry = entry.unwrap_or_else(|| {
                json!({"error_id": ErrorId::NO_DCN_RESPONDED.as_str(),
                       "message": "No DCN has responded to the request!"})
            });
            entries.insert(market, entry);
        }
    }
}
