//! restapi: the public API (`docs/upstream-api.md` §5).
//!
//! - [`endpoints`]: the public API as data; the router and `/openapi.json` are built from it.
//! - [`routing`]: which replica answers a read, round-robin, failover text.
//! - [`reads`]: get_asks / get_bids — from a local shared-memory segment when a synced replica
//!   lives on this host, else over HTTP from the DCNs, with failover (#5001 / #5000).
//! - [`forward`]: everything else goes to mgmt; views fall back to this pod's copy (#8000) when
//!   mgmt is down.
//! - `push`: `/ws` and `/sse`, Binance-style push streams of the books in this host's shared
//!   memory (issue 15).
//!
//! Routing uses this pod's state copy, which mgmt pushes after every change, so a new or moved
//! replica is routable within milliseconds; reads need mgmt only for that copy and keep working
//! while it is down. The `debug=true` block (query or JSON body) names pods by uid.

pub mod endpoints;
pub mod forward;
mod many;
mod push;
pub mod reads;
pub mod routing;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use ubdcc_shm::ClusterReader;

use crate::agent::{PodBase, StateCopy, pod_router};
use crate::auth::Auth;
use crate::client::InternalClient;
use crate::envelope::{ApiError, json_response};
use crate::identity::PodIdentity;
use crate::lifecycle::ShutdownSignal;
use crate::metrics::{Counter, Metrics, family};
use endpoints::Handling;
use routing::RoundRobin;

/// The restapi service; see the module doc.
pub struct RestApi {
    identity: PodIdentity,
    copy: Arc<StateCopy>,
    client: InternalClient,
    mgmt_url: String,
    /// The cluster's segments on this host (`None`: local reads off).
    reader: Option<Mutex<ClusterReader>>,
    /// The push streams (`None`: local reads off, so push is off).
    push: Option<push::Push>,
    round_robin: Mutex<RoundRobin>,
    reads: ReadCounters,
}

/// How reads were answered, for `/metrics`.
#[derive(Debug, Default)]
struct ReadCounters {
    /// Served from shared memory on this machine.
    local: Counter,
    /// Served by a DCN over HTTP at the first try.
    remote: Counter,
    /// Served by a DCN after others failed (#5001).
    failover: Counter,
    /// Answered with an error.
    failed: Counter,
}

impl RestApi {
    /// restapi for `identity`, routing from `copy`, asking mgmt at `mgmt_url`; `reader` enables
    /// the local shared-memory path.
    pub fn new(
        identity: PodIdentity,
        copy: Arc<StateCopy>,
        client: InternalClient,
        mgmt_url: &str,
        reader: Option<ClusterReader>,
    ) -> Arc<Self> {
        Arc::new(Self {
            identity,
            copy,
            client,
            mgmt_url: mgmt_url.trim_end_matches('/').to_owned(),
            push: reader.as_ref().map(push::Push::new),
            reader: reader.map(Mutex::new),
            round_robin: Mutex::new(RoundRobin::default()),
            reads: ReadCounters::default(),
        })
    }

    /// The router: public endpoints, `/test`, `/ubdcc_mgmt_backup`, `/shutdown`.
    pub fn router(self: &Arc<Self>, auth: Auth, shutdown: ShutdownSignal) -> Router {
        let base = PodBase {
            identity: self.identity.clone(),
            copy: Some(Arc::clone(&self.copy)),
            shutdown,
        };
        let mut routes = Router::new();
        for endpoint in endpoints::ENDPOINTS {
            let route = match endpoint.handling {
                Handling::Read(kind) => reads::route(kind),
                Handling::Books => many::books_route(),
                Handling::Bbo => many::bbo_route(),
                Handling::Forward => forward::route(endpoint, None),
                Handling::View(view) => forward::route(endpoint, Some(view)),
            };
            routes = routes.route(endpoint.path, route);
        }
        if let Some(push) = &self.push {
            push.set_shutdown(base.shutdown.clone());
        }
        let routes = routes
            .route("/ws", push::ws_route())
            .route("/sse", push::sse_route())
            .route("/openapi.json", get(openapi_json))
            .with_state(Arc::clone(self));
        pod_router(routes, base, auth, self.metrics())
    }

    /// HTTP metrics plus how reads were answered.
    fn metrics(self: &Arc<Self>) -> Metrics {
        let mut known: Vec<&'static str> = endpoints::ENDPOINTS.iter().map(|e| e.path).collect();
        known.extend([
            "/test",
            "/openapi.json",
            "/metrics",
            "/ubdcc_mgmt_backup",
            "/ws",
            "/sse",
        ]);
        let api = Arc::clone(self);
        Metrics::new("restapi", known).with_source(Arc::new(move |out: &mut String| {
            let counters = [
                ("local", &api.reads.local),
                ("remote", &api.reads.remote),
                ("failover", &api.reads.failover),
                ("error", &api.reads.failed),
            ];
            let samples: Vec<(String, f64)> = counters
                .iter()
                .map(|(how, counter)| (format!("answer=\"{how}\""), counter.get() as f64))
                .collect();
            family(out, "ubdcc_restapi_reads_total", "counter", "get_asks / get_bids by how they were answered: local shared memory, a DCN, a DCN after failover, an error.", &samples);
            if let Some(reader) = &api.reader {
                let retries = reader
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .read_retries();
                let sample = [(String::new(), retries as f64)];
                family(out, "ubdcc_shm_read_retries_total", "counter", "Shared-memory reads retried because the DCN was publishing the same book.", &sample);
            }
            if let Some(push) = &api.push {
                push.write_metrics(out);
            }
        }))
    }

    /// The `debug` block: execution time so far, the request URL, the pods used (this one
    /// first), and the POST body with any secret masked.
    fn debug(
        &self,
        request: &RequestInfo,
        used: &[(&str, &str)],
        post_body: Option<&Map<String, Value>>,
    ) -> Value {
        let mut pods = vec![json!([self.identity.name, self.identity.uid])];
        pods.extend(used.iter().map(|(name, uid)| json!([name, uid])));
        let mut debug = json!({
            "cluster_execution_time": request.started.elapsed().as_secs_f64(),
            "request_time": 0,
            "transmission_time": 0,
            "url": request.url,
            "used_pods": pods,
        });
        if let Some(body) = post_body {
            let mut body = body.clone();
            if let Some(secret) = body.get_mut("api_secret") {
                *secret = "********".into();
            }
            debug["post_body"] = Value::Object(body);
        }
        debug
    }

    /// An error this pod builds, with `debug` when asked for.
    fn error(&self, error: ApiError, request: &RequestInfo, debug: bool) -> Response {
        let reads = [
            "GET_ASKS",
            "GET_BIDS",
            "GET_BOOK",
            "GET_FILL_PRICE",
            "GET_DEPTH_STATS",
        ];
        if reads.iter().any(|read| error.event().starts_with(read)) {
            self.reads.failed.inc();
        }
        let status = if error.id() == crate::ErrorId::UNAUTHORIZED {
            axum::http::StatusCode::UNAUTHORIZED
        } else {
            axum::http::StatusCode::OK
        };
        let mut body = error.into_body();
        if debug {
            body.insert("debug".into(), self.debug(request, &[], None));
        }
        json_response(status, &Value::Object(body))
    }
}

/// The OpenAPI document of the routes above.
async fn openapi_json() -> Response {
    json_response(axum::http::StatusCode::OK, &endpoints::openapi())
}

/// What `debug` needs to know about a request.
struct RequestInfo {
    started: Instant,
    url: String,
}

impl RequestInfo {
    fn new(uri: &Uri, headers: &HeaderMap) -> Self {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        Self {
            started: Instant::now(),
            url: crate::client::redact(&format!("http://{host}{uri}")),
        }
    }
}
