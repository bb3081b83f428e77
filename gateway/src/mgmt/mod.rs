//! mgmt: the cluster's state and its decisions (which DCN keeps which book), as an HTTP service.
//!
//! - [`state`]: the records, in the original's backup form.
//! - [`placement`]: load-aware placement of replicas on distinct DCNs and hosts.
//! - [`store`]: the state on disk, replaced atomically.
//! - [`public`]: the public endpoints (create, stop, info, credentials).
//! - [`nodes`]: the endpoints pods call (registration, sync with replica statuses, cancellation,
//!   routing lookup, credential assignment, backup).
//! - [`revise`]: the background work: eviction of silent pods and re-placement, pushing the state
//!   to every pod, and recovery after a restart.
//!
//! Every mutation goes through [`Mgmt::mutate`]: it re-places replicas, moves the timestamp, and
//! wakes the pusher; public mutations are on disk before their OK goes out.

pub mod cross_check;
pub mod nodes;
pub mod placement;
pub mod public;
pub mod revise;
pub mod state;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Map, Value};
use tokio::sync::watch;

use ubdcc_engine::{Exchange, Listing, MarketDirectory};

use crate::auth::{Auth, Authenticated};
use crate::client::InternalClient;
use crate::envelope::{ApiError, ErrorId, ok};
use crate::identity::PodIdentity;
use crate::lifecycle::ShutdownSignal;
use crate::metrics::{Metrics, escape, family};
use crate::params::{Params, Sender, read_body};
use state::{ClusterState, Seconds};
use store::StateFile;

/// Unix time in seconds.
pub fn now() -> Seconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Settings of mgmt.
#[derive(Debug)]
pub struct MgmtConfig {
    /// A pod not heard from for this long is evicted and its replicas placed elsewhere.
    pub pod_timeout: Duration,
    /// How often eviction and placement run.
    pub revise_interval: Duration,
    /// After a start, how long pods may offer their state copies before mgmt picks the newest
    /// (gated endpoints answer #1014 meanwhile).
    pub recovery_window: Duration,
    /// Where the state is stored (`None`: memory and the pods' copies only).
    pub state_file: Option<StateFile>,
    /// Most replicas one DepthCache may ask for.
    pub max_desired_quantity: u32,
    /// The exchanges' listings creates are checked against (`None`: markets are checked only
    /// for their form).
    pub markets: Option<Arc<MarketDirectory>>,
}

impl Default for MgmtConfig {
    fn default() -> Self {
        Self {
            pod_timeout: Duration::from_secs(3),
            revise_interval: Duration::from_millis(250),
            recovery_window: Duration::from_secs(3),
            state_file: None,
            max_desired_quantity: 64,
            markets: None,
        }
    }
}

/// A state copy a pod offered for recovery.
#[derive(Debug, Clone)]
struct BackupOffer {
    uid: String,
    url: String,
    timestamp: Seconds,
}

/// What the lock guards.
struct Inner {
    state: ClusterState,
    /// Recovery is over: gated endpoints answer.
    ready: bool,
    offers: Vec<BackupOffer>,
}

/// The mgmt service; see the module doc.
pub struct Mgmt {
    config: MgmtConfig,
    identity: PodIdentity,
    inner: Mutex<Inner>,
    /// Bumped on every change; the pusher sends the state to every pod.
    changes: watch::Sender<u64>,
    client: InternalClient,
    started: Instant,
    /// Endpoints running on a blocked worker now ([`MAX_BLOCKING_ENDPOINTS`]).
    blocking: tokio::sync::Semaphore,
}

/// Endpoints that may block a worker at once (each takes mgmt's lock, so more would only
/// queue on it while holding threads).
const MAX_BLOCKING_ENDPOINTS: usize = 4;

impl Mgmt {
    /// mgmt with `initial` state (from its file), not ready until the recovery window ends.
    pub fn new(
        config: MgmtConfig,
        identity: PodIdentity,
        mut initial: ClusterState,
        client: InternalClient,
    ) -> Arc<Self> {
        let now = now();
        if state::is_from_the_future(initial.timestamp, now) {
            tracing::warn!(
                timestamp = initial.timestamp,
                "the stored state claims a time in the future; taking it as of now"
            );
            initial.timestamp = now;
        }
        Arc::new(Self {
            config,
            identity,
            inner: Mutex::new(Inner {
                state: initial,
                ready: false,
                offers: Vec::new(),
            }),
            changes: watch::Sender::new(0),
            client,
            started: Instant::now(),
            blocking: tokio::sync::Semaphore::new(MAX_BLOCKING_ENDPOINTS),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes sure the listing of a create's exchange is at hand (fetched or cached; a failure is
    /// logged and the create goes on unchecked), so the create can check its markets without
    /// waiting under mgmt's lock.
    async fn fetch_listing(&self, params: &Params) {
        let (Some(directory), Ok(Some(exchange))) = (&self.config.markets, params.text("exchange"))
        else {
            return;
        };
        if let Ok(exchange) = exchange.parse::<Exchange>() {
            directory.listing(exchange).await.ok();
        }
    }

    /// The fresh listing of `exchange`, if one is at hand.
    pub(crate) fn listing(&self, exchange: Exchange) -> Option<Arc<Listing>> {
        self.config.markets.as_ref()?.fresh(exchange)
    }

    /// `true` once recovery is over.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// A copy of the state.
    pub fn state(&self) -> ClusterState {
        self.lock().state.clone()
    }

    /// Applies `change`; on success re-places replicas, moves the timestamp, stores the state
    /// when `durable` (before the caller answers) and wakes the pusher.
    ///
    /// # Errors
    /// Whatever `change` returns (nothing is changed then), or #1111 when the state cannot be
    /// stored (nothing is changed then either).
    pub fn mutate<T>(
        &self,
        event: &str,
        durable: bool,
        change: impl FnOnce(&mut ClusterState) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut inner = self.lock();
        let mut next = inner.state.clone();
        let value = change(&mut next)?;
        let now = now();
        next.purge_departed();
        next.rebalance_credentials();
        placement::place(&mut next, now);
        next.touch(now);
        if durable && let Some(file) = &self.config.state_file {
            // The state on disk first: an OK must survive a crash.
            file.save(&next).map_err(|error| {
                tracing::error!(%error, "storing the state failed");
                ApiError::new(
                    ErrorId::STORAGE,
                    event,
                    format!("Storing the cluster state failed: {error}"),
                )
            })?;
        }
        inner.state = next;
        drop(inner);
        self.changes.send_modify(|version| *version += 1);
        Ok(value)
    }

    /// The router: public and internal endpoints behind the auth middleware. Serve it on a
    /// multi-thread runtime: endpoints that store the state block their worker meanwhile.
    pub fn router(self: &Arc<Self>, auth: Auth, shutdown: ShutdownSignal) -> Router {
        let base = crate::agent::PodBase {
            identity: self.identity.clone(),
            copy: None,
            shutdown,
        };
        let mut routes = Router::new();
        for (path, event, gate, logic) in public::ROUTES.iter().chain(nodes::ROUTES) {
            routes = routes.route(path, endpoint(event, *gate, *logic));
        }
        let routes = routes.with_state(Arc::clone(self));
        crate::agent::pod_router(routes, base, auth, self.metrics())
    }

    /// HTTP metrics plus DepthCaches, replicas by status, pods and their heartbeat ages.
    fn metrics(self: &Arc<Self>) -> Metrics {
        let known = public::ROUTES
            .iter()
            .chain(nodes::ROUTES)
            .map(|(path, ..)| *path)
            .collect();
        let mgmt = Arc::clone(self);
        Metrics::new("mgmt", known).with_source(Arc::new(move |out: &mut String| {
            state_metrics(&mgmt.state(), out);
        }))
    }
}

/// Who called an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The TCP peer address.
    pub peer: IpAddr,
    /// The call carried the cluster secret.
    pub authenticated: bool,
}

/// An endpoint's logic: parameters and the caller in, payload or error out.
type Endpoint = fn(&Mgmt, &Params, Caller) -> Result<Map<String, Value>, ApiError>;

/// A route: path, event, gate, logic.
pub type Route = (&'static str, &'static str, Gate, Endpoint);

/// Whether an endpoint waits for recovery to end (the original's readiness gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// #1014 until recovery is over.
    Gated,
    /// Always answered.
    Open,
}

/// GET and POST for `endpoint` under `event`.
fn endpoint(event: &'static str, gate: Gate, endpoint: Endpoint) -> MethodRouter<Arc<Mgmt>> {
    let handler = move |State(mgmt): State<Arc<Mgmt>>, request: Request| async move {
        handle(&mgmt, event, gate, endpoint, request).await
    };
    get(handler).post(handler)
}

async fn handle(
    mgmt: &Mgmt,
    event: &'static str,
    gate: Gate,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    let path = path.as_str();
    let caller = Caller {
        peer: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip()),
        authenticated: request
            .extensions()
            .get::<Authenticated>()
            .is_some_and(|a| a.0),
    };
    let query = request.uri().query().map(str::to_owned);
    let sender = Sender::of(&request);
    let body = match read_body(request.into_body(), event, sender).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let params = match Params::from_parts(event, query.as_deref(), &body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    if public::is_create(event) {
        mgmt.fetch_listing(&params).await;
    }
    if gate == Gate::Gated && !mgmt.is_ready() {
        return ApiError::new(
            ErrorId::NOT_READY,
            event,
            "Mgmt Service is not ready yet! Please come back in a few seconds!",
        )
        .into_response();
    }
    // Endpoints take mgmt's lock and durable ones fsync under it: tell the runtime this worker
    // blocks, so other requests (heartbeats above all) move to the other workers meanwhile. At
    // most MAX_BLOCKING_ENDPOINTS outside calls do so at once: a flood waits here instead of
    // making the runtime start a thread per request. The pods' calls never wait in that queue
    // (a heartbeat stuck behind a flood would get its pod evicted).
    let pods_own_call = caller.authenticated && crate::auth::is_internal(path);
    let _permit = if pods_own_call {
        None
    } else {
        let Ok(permit) = mgmt.blocking.acquire().await else {
            return ApiError::new(ErrorId::NOT_READY, event, "Mgmt Service is shutting down")
                .into_response();
        };
        Some(permit)
    };
    match tokio::task::block_in_place(|| endpoint(mgmt, &params, caller)) {
        Ok(payload) => ok(event, payload),
        Err(error) => error.into_response(),
    }
}

/// The cluster state as metrics.
fn state_metrics(state: &ClusterState, out: &mut String) {
    let mut replicas = [0usize; 3];
    for record in state.depthcaches() {
        for entry in record.distribution.values() {
            replicas[entry.status as usize] += 1;
        }
    }
    let statuses = ["starting", "running", "out_of_sync"];
    let samples: Vec<(String, f64)> = statuses
        .iter()
        .zip(replicas)
        .map(|(status, count)| (format!("status=\"{status}\""), count as f64))
        .collect();
    family(
        out,
        "ubdcc_replicas",
        "gauge",
        "Replicas by status (running = synced and serving).",
        &samples,
    );
    let books = state.depthcaches().count() as f64;
    family(
        out,
        "ubdcc_depthcaches",
        "gauge",
        "DepthCaches in the cluster.",
        &[(String::new(), books)],
    );
    let now = now();
    let ages: Vec<(String, f64)> = state
        .pods
        .values()
        .map(|pod| {
            let labels = format!(
                "name=\"{}\",role=\"{}\"",
                escape(&pod.name),
                escape(&pod.role)
            );
            (labels, (now - pod.last_seen).max(0.0))
        })
        .collect();
    family(
        out,
        "ubdcc_pod_heartbeat_age_seconds",
        "gauge",
        "Seconds since each pod's last heartbeat.",
        &ages,
    );
}
