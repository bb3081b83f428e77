//! The cluster agent every restapi and DCN runs: registration with mgmt, heartbeats that carry
//! the pod's replica statuses, the pod's copy of the cluster state, and the endpoints every such
//! pod shares (`/test`, `/ubdcc_mgmt_backup`, `/shutdown`).
//!
//! - **Heartbeat.** The agent looks at its pod's replicas every [`POLL`]; it syncs with mgmt
//!   when one changed status (so a book is routable moments after it synced) and at least every
//!   heartbeat interval. On #1001 (mgmt no longer knows the pod, e.g. after it evicted it) the
//!   agent registers again.
//! - **State copy.** mgmt pushes the state to every pod after each change, and a sync answer
//!   carries it whenever the pod's copy is older, so a lost push heals within one heartbeat. The
//!   copy only moves forward (by the state's timestamp).
//! - **Backup.** A DCN's copy is complete (secrets included) and offered to a restarting mgmt;
//!   restapi's copy has no secrets and is never offered.

pub mod dcn;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::auth::{Auth, guard};
use crate::client::{CLUSTER_SECRET_HEADER, CallError, InternalClient};
use crate::envelope::{ApiError, ErrorId, method_not_allowed, not_found, ok};
use crate::identity::{PodIdentity, Role, VERSION};
use crate::lifecycle::ShutdownSignal;
use crate::metrics::Metrics;
use crate::mgmt::state::{ClusterState, ReplicaStatus, ReplicaTrust, SnapshotWait};

/// How often the agent looks at its replicas' statuses.
pub const POLL: Duration = Duration::from_millis(100);

/// Wait between registration attempts while mgmt is unreachable or not ready.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// The pod's copy of the cluster state.
#[derive(Debug)]
pub struct StateCopy {
    state: RwLock<Option<Arc<ClusterState>>>,
    version: watch::Sender<u64>,
    /// Keep secrets (a DCN needs its API keys) or drop them (restapi).
    keeps_secrets: bool,
}

impl StateCopy {
    /// An empty copy.
    pub fn new(keeps_secrets: bool) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(None),
            version: watch::Sender::new(0),
            keeps_secrets,
        })
    }

    /// The current copy, if mgmt has sent one.
    pub fn get(&self) -> Option<Arc<ClusterState>> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The copy's timestamp.
    pub fn timestamp(&self) -> Option<f64> {
        self.get().map(|state| state.timestamp)
    }

    /// Takes a pushed `state` unless the copy is newer or the state claims a time too far ahead
    /// (a forged push would otherwise block every later one); returns whether it was taken.
    pub fn offer(&self, state: ClusterState) -> bool {
        if crate::mgmt::state::is_from_the_future(state.timestamp, crate::mgmt::now()) {
            tracing::warn!(
                timestamp = state.timestamp,
                "refused a state from the future"
            );
            return false;
        }
        self.store(state, false)
    }

    /// Takes `state` from mgmt's own sync answer: mgmt is the authority, whatever the copy's
    /// timestamp says.
    pub fn replace(&self, state: ClusterState) {
        self.store(state, true);
    }

    fn store(&self, state: ClusterState, authoritative: bool) -> bool {
        let state = if self.keeps_secrets {
            state
        } else {
            state.without_secrets()
        };
        {
            let mut current = self
                .state
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !authoritative
                && current
                    .as_ref()
                    .is_some_and(|current| current.timestamp > state.timestamp)
            {
                return false;
            }
            *current = Some(Arc::new(state));
        }
        self.version.send_modify(|version| *version += 1);
        true
    }

    /// Notified on every new copy.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// One replica's state as a DCN reports it to mgmt.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ReplicaReport {
    /// Exchange.
    pub exchange: String,
    /// Market.
    pub market: String,
    /// `starting`, `running` (synced) or `out_of_sync`.
    pub status: ReplicaStatus,
    /// Resyncs since the replica started.
    pub restarts: u64,
    /// When the last resync was seen (0: none).
    pub last_restart_time: f64,
    /// Why it is out of sync (e.g. `gap in update ids`), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its place in the DCN's snapshot queue, while it waits for a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_queue: Option<SnapshotWait>,
    /// Levels per side its book covers (below 1 000 while a shallow start is deepened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// What its audits found (issue 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<ReplicaTrust>,
    /// `(update id, hash of its top levels)` samples, newest last, for mgmt to compare with
    /// the other replicas' at equal ids (issue 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_hashes: Vec<(u64, u64)>,
}

/// `true` when `a` and `b` differ in more than snapshot queue places: only such a change is
/// worth a sync at once (places move with every snapshot; they ride on the heartbeat).
fn statuses_differ(a: &[ReplicaReport], b: &[ReplicaReport]) -> bool {
    a.len() != b.len()
        || a.iter().zip(b).any(|(a, b)| {
            (
                &a.exchange,
                &a.market,
                a.status,
                a.restarts,
                &a.reason,
                a.depth,
            ) != (
                &b.exchange,
                &b.market,
                b.status,
                b.restarts,
                &b.reason,
                b.depth,
            ) || a.snapshot_queue.is_some() != b.snapshot_queue.is_some()
        })
}

/// Where a pod's replica statuses come from (a DCN's own shared-memory segment).
pub trait ReplicaSource: Send + Sync {
    /// Every replica this pod holds.
    fn replicas(&self) -> Vec<ReplicaReport>;

    /// DCNs of this machine whose segments' writers are gone (their processes died), to be
    /// evicted at once instead of after the pod timeout; none by default.
    fn dead_dcns(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Settings of an agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// mgmt's base URL, e.g. `http://127.0.0.1:42080`.
    pub mgmt_url: String,
    /// This pod.
    pub identity: PodIdentity,
    /// The port of this pod's HTTP API.
    pub api_port: u16,
    /// The address other pods reach this one at, when not the one mgmt sees.
    pub advertise_ip: Option<String>,
    /// Longest time between two syncs.
    pub heartbeat: Duration,
    /// Books this pod's segment holds (DCNs): mgmt places no more on it.
    pub max_books: Option<u32>,
    /// What this DCN records: `all` (`--record`), `chosen` (`--record-books`); `None`: nothing.
    /// mgmt shows it, so a book created with `record=true` says where it is not recorded.
    pub recording: Option<String>,
}

/// The agent; see the module doc.
pub struct Agent {
    config: AgentConfig,
    client: InternalClient,
    copy: Arc<StateCopy>,
    source: Option<Arc<dyn ReplicaSource>>,
}

/// Why a sync did not go through.
enum SyncError {
    /// mgmt does not know this pod (#1001).
    UnknownPod,
    /// Anything else (logged).
    Other(String),
}

impl Agent {
    /// An agent for `config`; `source` reports replicas (DCNs only).
    pub fn new(
        config: AgentConfig,
        client: InternalClient,
        copy: Arc<StateCopy>,
        source: Option<Arc<dyn ReplicaSource>>,
    ) -> Self {
        Self {
            config,
            client,
            copy,
            source,
        }
    }

    /// Registers, keeps syncing until `shutdown`, then cancels the registration.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut registered = false;
        let mut last_reported: Option<Vec<ReplicaReport>> = None;
        let mut last_dead: Vec<String> = Vec::new();
        let mut last_sync: Option<Instant> = None;
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            if !registered {
                if last_sync.is_some_and(|at| at.elapsed() < REGISTER_RETRY) {
                    continue;
                }
                last_sync = Some(Instant::now());
                registered = self.register().await;
                continue;
            }
            let replicas = self.source.as_ref().map(|source| source.replicas());
            let changed = replicas.as_ref().is_some_and(|r| {
                last_reported
                    .as_ref()
                    .is_none_or(|last| statuses_differ(last, r))
            });
            let dead = self
                .source
                .as_ref()
                .map(|source| source.dead_dcns())
                .unwrap_or_default();
            let died = dead.iter().any(|name| !last_dead.contains(name));
            let due = last_sync.is_none_or(|at| at.elapsed() >= self.config.heartbeat);
            if !changed && !due && !died {
                continue;
            }
            last_sync = Some(Instant::now());
            last_dead.clone_from(&dead);
            match self.sync(replicas.as_deref(), &dead).await {
                Ok(()) => last_reported = replicas,
                Err(SyncError::UnknownPod) => {
                    tracing::warn!(
                        "mgmt does not know this pod (restarted or evicted it); registering again"
                    );
                    registered = false;
                    last_sync = None;
                    last_reported = None;
                }
                Err(SyncError::Other(error)) => tracing::warn!(%error, "sync with mgmt failed"),
            }
        }
        self.cancel().await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.mgmt_url.trim_end_matches('/'))
    }

    async fn register(&self) -> bool {
        let identity = &self.config.identity;
        let mut body = json!({
            "name": identity.name,
            "uid": identity.uid,
            "node": identity.node,
            "role": identity.role.as_str(),
            "api_port_rest": self.config.api_port,
            "status": "running",
            "version": VERSION,
            "ip": self.config.advertise_ip,
        });
        if identity.role == Role::Dcn {
            body["ubldc_version"] = VERSION.into();
            body["max_books"] = self.config.max_books.into();
            body["recording"] = self.config.recording.clone().into();
        }
        match self.post("ubdcc_node_registration", &body).await {
            Ok(answer)
                if is_ok(&answer) || error_id(&answer) == Some(ErrorId::REGISTRATION_EXISTS) =>
            {
                tracing::info!(mgmt = %self.config.mgmt_url, "registered with mgmt");
                true
            }
            Ok(answer) => {
                tracing::info!(?answer, "registration not accepted yet");
                false
            }
            Err(error) => {
                tracing::warn!(%error, "registration failed");
                false
            }
        }
    }

    async fn sync(
        &self,
        replicas: Option<&[ReplicaReport]>,
        dead_dcns: &[String],
    ) -> Result<(), SyncError> {
        let identity = &self.config.identity;
        let body = json!({
            "uid": identity.uid,
            "node": identity.node,
            "api_port_rest": self.config.api_port,
            "status": "running",
            // Only a complete copy may be offered for mgmt's recovery.
            "backup_timestamp": self.copy.timestamp(),
            "offers_backup": self.copy.keeps_secrets,
            "replicas": replicas,
            "dead_dcns": dead_dcns,
        });
        let mut answer = self
            .post("ubdcc_node_sync", &body)
            .await
            .map_err(|e| SyncError::Other(e.to_string()))?;
        if error_id(&answer) == Some(ErrorId::SYNC_UNKNOWN_POD) {
            return Err(SyncError::UnknownPod);
        }
        if !is_ok(&answer) {
            return Err(SyncError::Other(Value::Object(answer).to_string()));
        }
        if let Some(db) = answer.remove("db").filter(|db| !db.is_null()) {
            match serde_json::from_value::<ClusterState>(db) {
                Ok(state) => self.copy.replace(state),
                Err(error) => tracing::warn!(%error, "mgmt sent a state this pod cannot read"),
            }
        }
        Ok(())
    }

    async fn cancel(&self) {
        let body = json!({"uid": self.config.identity.uid});
        if let Err(error) = self.post("ubdcc_node_cancellation", &body).await {
            tracing::info!(%error, "could not cancel the registration; mgmt will evict this pod");
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Map<String, Value>, CallError> {
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.client.post_json(&self.url(path), body).await
    }
}

fn is_ok(answer: &Map<String, Value>) -> bool {
    answer.get("result").and_then(Value::as_str) == Some("OK")
}

fn error_id(answer: &Map<String, Value>) -> Option<ErrorId> {
    let id = answer.get("error_id")?.as_str()?;
    [ErrorId::REGISTRATION_EXISTS, ErrorId::SYNC_UNKNOWN_POD]
        .into_iter()
        .find(|known| known.as_str() == id)
}

/// What the shared endpoints of a pod need.
#[derive(Clone)]
pub struct PodBase {
    /// This pod.
    pub identity: PodIdentity,
    /// Its state copy (`None` for mgmt, which answers `/ubdcc_mgmt_backup` itself).
    pub copy: Option<Arc<StateCopy>>,
    /// Triggered by `/shutdown`.
    pub shutdown: ShutdownSignal,
}

/// A role's whole router: its own `routes`, the endpoints every pod shares ([`base_router`]),
/// the original's 404 / 405 answers and `/metrics`, all behind `auth`. Every role is served
/// through this one function, so none lacks a piece.
pub fn pod_router(routes: Router, base: PodBase, auth: Auth, metrics: Metrics) -> Router {
    let router = routes
        .merge(base_router(base))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    crate::metrics::instrument(router, metrics).layer(middleware::from_fn_with_state(auth, guard))
}

/// `/test`, `/shutdown` and (for restapi and DCNs) `/ubdcc_mgmt_backup`.
pub fn base_router(base: PodBase) -> Router {
    let mut router = Router::new()
        .route("/test", get(test))
        .route("/shutdown", post(shutdown));
    if base.copy.is_some() {
        // A pushed state of many thousand books is larger than axum's 2 MB default.
        let route = get(backup)
            .post(backup)
            .layer(DefaultBodyLimit::max(crate::client::MAX_BODY));
        router = router.route("/ubdcc_mgmt_backup", route);
    }
    router.with_state(base)
}

/// `/test`: the original's shape; `ubdcc_mgmt_backup` is the public view (no secrets).
async fn test(State(base): State<PodBase>, headers: HeaderMap) -> Response {
    let backup = base
        .copy
        .as_ref()
        .and_then(|copy| copy.get())
        .map_or(Value::Null, |state| state.public_view());
    let mut payload = Map::new();
    payload.insert("app".into(), app(base.identity.role));
    payload.insert("headers".into(), headers_repr(&headers).into());
    payload.insert("message".into(), "Hello World!".into());
    payload.insert("ubdcc_mgmt_backup".into(), backup);
    payload.insert(
        "pod".into(),
        json!({"name": base.identity.name, "uid": base.identity.uid, "node": base.identity.node}),
    );
    ok("TEST", payload)
}

/// The `app` object of `/test`.
pub fn app(role: Role) -> Value {
    json!({"name": role.as_str(), "version": VERSION, "author": "ubdcc", "build_type": "rust"})
}

/// The request headers as the original printed them (a Python repr), without credentials.
fn headers_repr(headers: &HeaderMap) -> String {
    let pairs: Vec<String> = headers
        .iter()
        .filter(|(name, _)| {
            *name != axum::http::header::AUTHORIZATION && name.as_str() != CLUSTER_SECRET_HEADER
        })
        .map(|(name, value)| format!("'{}': '{}'", name, value.to_str().unwrap_or("?")))
        .collect();
    format!("Headers({{{}}})", pairs.join(", "))
}

async fn shutdown(State(base): State<PodBase>) -> Response {
    let mut payload = Map::new();
    payload.insert(
        "message".into(),
        format!("Shutting down pod '{}'...", base.identity.name).into(),
    );
    base.shutdown.trigger_soon();
    ok("SHUTDOWN", payload)
}

/// `/ubdcc_mgmt_backup` on restapi and DCNs: a non-empty body is mgmt pushing its state; without
/// one, the copy (or its timestamp with `get_backup_timestamp`) is returned.
async fn backup(State(base): State<PodBase>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    const EVENT: &str = "UBDCC_MGMT_BACKUP";
    let Some(copy) = base.copy else {
        return ApiError::new(ErrorId::NOT_FOUND, EVENT, "No backup here").into_response();
    };
    let mut payload = Map::new();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let state = match serde_json::from_slice::<ClusterState>(&body) {
            Ok(state) => state,
            Err(error) => {
                return ApiError::new(
                    ErrorId::INVALID_BODY,
                    EVENT,
                    format!("Invalid backup: {error}"),
                )
                .into_response();
            }
        };
        copy.offer(state);
        payload.insert("message".into(), "The backup has been saved!".into());
        return ok(EVENT, payload);
    }
    let wants_timestamp = query.as_deref().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "get_backup_timestamp")
    });
    if wants_timestamp {
        payload.insert("timestamp".into(), copy.timestamp().into());
        return ok(EVENT, payload);
    }
    // restapi's copy holds no secrets (StateCopy drops them), so this never leaks one there.
    let db = copy.get().map_or(Value::Null, |state| {
        serde_json::to_value(&*state).unwrap_or(Value::Null)
    });
    payload.insert("db".into(), db);
    ok(EVENT, payload)
}
