//! The public endpoints restapi forwards to mgmt: the query string and JSON body go on
//! unchanged (GET stays GET, a body is POSTed), mgmt's answer comes back with `debug` added.
//!
//! mgmt unreachable: the views (`get_cluster_info`, `get_depthcache_list`,
//! `get_depthcache_info`) answer from this pod's state copy under #8000, as the original did;
//! everything else is #9000 `Mgmt service not available!` with the call's `error` — never the
//! original's bare `{"error": ...}`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::endpoints::Endpoint;
use super::{RequestInfo, RestApi};
use crate::envelope::{ApiError, ErrorId, json_response};
use crate::mgmt::state::ClusterState;
use crate::params::{Params, Sender, read_body};

/// A view's payload from the state copy, when mgmt is down.
pub type CachedView = fn(&ClusterState, &Params) -> Map<String, Value>;

/// The route of an endpoint answered by mgmt (`cached`: its view from this pod's copy).
pub fn route(
    endpoint: &'static Endpoint,
    cached: Option<CachedView>,
) -> MethodRouter<Arc<RestApi>> {
    let path = endpoint.path.trim_start_matches('/');
    let event = endpoint.event;
    let handler = move |State(api): State<Arc<RestApi>>, request: Request| async move {
        call_mgmt(&api, path, event, cached, request).await
    };
    if endpoint.post {
        get(handler).post(handler)
    } else {
        get(handler)
    }
}

async fn call_mgmt(
    api: &RestApi,
    path: &str,
    event: &'static str,
    cached: Option<CachedView>,
    request: Request,
) -> Response {
    let info = RequestInfo::new(request.uri(), request.headers());
    let query = request.uri().query().map(str::to_owned);
    let sender = Sender::of(&request);
    let body = match read_body(request.into_body(), event, sender).await {
        Ok(body) => body,
        Err(error) => return api.error(error, &info, false),
    };
    let params = match Params::from_parts(event, query.as_deref(), &body) {
        Ok(params) => params,
        Err(error) => return api.error(error, &info, false),
    };
    let debug = params.flag("debug");
    let mut url = format!("{}/{path}", api.mgmt_url);
    if let Some(query) = &query {
        url.push('?');
        url.push_str(query);
    }
    let answer = if params.body().is_some() {
        api.client.post_json(&url, Bytes::clone(&body)).await
    } else {
        api.client.get_json(&url).await
    };
    let mut answer = match answer {
        Ok(answer) => answer,
        Err(error) => return unavailable(api, &params, cached, &info, debug, &error.to_string()),
    };
    if debug {
        answer.insert("debug".into(), api.debug(&info, &[], params.body()));
    }
    json_response(StatusCode::OK, &Value::Object(answer))
}

fn unavailable(
    api: &RestApi,
    params: &Params,
    cached: Option<CachedView>,
    info: &RequestInfo,
    debug: bool,
    error: &str,
) -> Response {
    let event = params.event();
    let copy = api.copy.get();
    let (Some(view), Some(state)) = (cached, copy) else {
        let error = ApiError::new(
            ErrorId::MGMT_UNAVAILABLE,
            event,
            "Mgmt service not available!",
        )
        .with("error", error);
        return api.error(error, info, debug);
    };
    let message = format!(
        "Mgmt service not available! This is cached data from pod '{}'!",
        api.identity.uid
    );
    let mut error = ApiError::new(ErrorId::CACHED, event, message).with("error", error);
    for (key, value) in view(&state, params) {
        error = error.with(&key, value);
    }
    api.error(error, info, debug)
}

/// `get_cluster_info` from the copy (mgmt's version unknown, as the original).
pub fn cluster_info(state: &ClusterState, _: &Params) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("db".into(), state.public_view());
    // mgmt's version is unknown while it is down, as in the original.
    payload.insert("version".into(), Value::Null);
    payload
}

/// `get_depthcache_list` from the copy.
pub fn depthcache_list(state: &ClusterState, _: &Params) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert(
        "depthcache_list".into(),
        serde_json::to_value(&state.depthcaches).unwrap_or_default(),
    );
    payload
}

/// `get_depthcache_info` from the copy (`{}` when unknown).
pub fn depthcache_info(state: &ClusterState, params: &Params) -> Map<String, Value> {
    let record = match (params.text("exchange"), params.text("market")) {
        (Ok(Some(exchange)), Ok(Some(market))) => state.depthcache(exchange, market),
        _ => None,
    };
    let mut payload = Map::new();
    payload.insert(
        "depthcache_info".into(),
        record.map_or_else(|| Value::Object(Map::new()), |r| state.depthcache_info(r)),
    );
    payload
}
