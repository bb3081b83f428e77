//! The public endpoints restapi forwards to mgmt: the query string and JSON body go on
//! unchanged (GET stays GET, a body is POSTed), mgmt's answer comes back with `debug` added.
//!
//! mgmt unreachable: the views (`get_cluster_info`, `get_depthcache_list`,
//! `get_depthcache_info`) answer from this pod's state copy under #8000, as the original did;
//! everything else is #9000 `Mgmt service not available!` with the call's `error` — never the
//! original's bare `{"error": ...}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{RequestInfo, RestApi};
use crate::envelope::{ApiError, ErrorId, json_response};
use crate::mgmt::state::ClusterState;
use crate::params::{Params, read_body};

/// A view's payload from the state copy, when mgmt is down.
type CachedView = fn(&ClusterState, &Params) -> Map<String, Value>;

/// The forwarded routes.
pub fn routes() -> Router<Arc<RestApi>> {
    let plain: [(&str, &'static str); 6] = [
        ("create_depthcache", "CREATE_DEPTHCACHE"),
        ("create_depthcaches", "CREATE_DEPTHCACHES"),
        ("stop_depthcache", "STOP_DEPTHCACHE"),
        ("add_credentials", "ADD_CREDENTIALS"),
        ("remove_credentials", "REMOVE_CREDENTIALS"),
        ("get_credentials_list", "GET_CREDENTIALS_LIST"),
    ];
    let views: [(&str, &'static str, CachedView); 3] = [
        ("get_cluster_info", "GET_CLUSTER_INFO", cluster_info),
        (
            "get_depthcache_list",
            "GET_DEPTHCACHE_LIST",
            depthcache_list,
        ),
        (
            "get_depthcache_info",
            "GET_DEPTHCACHE_INFO",
            depthcache_info,
        ),
    ];
    let mut router = Router::new();
    for (path, event) in plain {
        router = router.route(&format!("/{path}"), forward(path, event, None));
    }
    for (path, event, view) in views {
        router = router.route(&format!("/{path}"), forward(path, event, Some(view)));
    }
    router
}

fn forward(
    path: &'static str,
    event: &'static str,
    cached: Option<CachedView>,
) -> MethodRouter<Arc<RestApi>> {
    let handler = move |State(api): State<Arc<RestApi>>, request: Request| async move {
        call_mgmt(&api, path, event, cached, request).await
    };
    get(handler).post(handler)
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
    let body = match read_body(request.into_body(), event).await {
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

fn cluster_info(state: &ClusterState, _: &Params) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("db".into(), state.public_view());
    // mgmt's version is unknown while it is down, as in the original.
    payload.insert("version".into(), Value::Null);
    payload
}

fn depthcache_list(state: &ClusterState, _: &Params) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert(
        "depthcache_list".into(),
        serde_json::to_value(&state.depthcaches).unwrap_or_default(),
    );
    payload
}

fn depthcache_info(state: &ClusterState, params: &Params) -> Map<String, Value> {
    let record = match (params.text("exchange"), params.text("market")) {
        (Ok(Some(exchange)), Ok(Some(market))) => state.depthcache(exchange, market),
        _ => None,
    };
    let mut payload = Map::new();
    payload.insert(
        "depthcache_info".into(),
        record.map_or_else(
            || Value::Object(Map::new()),
            |r| serde_json::to_value(r).unwrap_or_default(),
        ),
    );
    payload
}
