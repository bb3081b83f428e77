//! restapi: the public API (`reference/upstream-api.md` §5).
//!
//! - [`routing`]: which replica answers a read, round-robin, failover text.
//! - [`reads`]: get_asks / get_bids — from a local shared-memory segment when a synced replica
//!   lives on this host, else over HTTP from the DCNs, with failover (#5001 / #5000).
//! - [`forward`]: everything else goes to mgmt; views fall back to this pod's copy (#8000) when
//!   mgmt is down.
//!
//! Routing uses this pod's state copy, which mgmt pushes after every change, so a new or moved
//! replica is routable within milliseconds; reads need mgmt only for that copy and keep working
//! while it is down. The `debug=true` block (query or JSON body) names pods by uid.

pub mod forward;
pub mod reads;
pub mod routing;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::{Router, middleware};
use serde_json::{Map, Value, json};
use ubdcc_shm::ClusterReader;

use crate::agent::{PodBase, StateCopy, base_router};
use crate::auth::{Auth, guard};
use crate::client::InternalClient;
use crate::envelope::{ApiError, json_response, method_not_allowed, not_found};
use crate::identity::PodIdentity;
use crate::lifecycle::ShutdownSignal;
use routing::RoundRobin;

/// The restapi service; see the module doc.
pub struct RestApi {
    identity: PodIdentity,
    copy: Arc<StateCopy>,
    client: InternalClient,
    mgmt_url: String,
    /// The cluster's segments on this host (`None`: local reads off).
    reader: Option<Mutex<ClusterReader>>,
    round_robin: Mutex<RoundRobin>,
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
            reader: reader.map(Mutex::new),
            round_robin: Mutex::new(RoundRobin::default()),
        })
    }

    /// The router: public endpoints, `/test`, `/ubdcc_mgmt_backup`, `/shutdown`.
    pub fn router(self: &Arc<Self>, auth: Auth, shutdown: ShutdownSignal) -> Router {
        let base = base_router(PodBase {
            identity: self.identity.clone(),
            copy: Some(Arc::clone(&self.copy)),
            shutdown,
        });
        reads::routes()
            .merge(forward::routes())
            .with_state(Arc::clone(self))
            .merge(base)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(auth, guard))
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
