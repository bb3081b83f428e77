//! Push streams on restapi (issue 15): Binance-style WebSocket `GET /ws` and Server-Sent Events
//! `GET /sse?streams=a,b`, carrying `@bbo`, `@bookN` and conflated `@…@<n>ms` streams of the
//! books in this host's shared memory.
//!
//! # How a change reaches a client
//! The DCN publishes a book into its segment. The [`watcher`] thread sees the book's marker
//! change ([`source`]), reads the book once, and each subscribed stream of it ([`topic`]) makes
//! its message once ([`message`]): a shared pointer goes into each subscriber's [`outbox`], and
//! clients whose outbox was empty are woken. Each client's task ([`ws`], [`sse`]) takes what is
//! pending and writes it. So a change costs one read and one serialisation per stream, however
//! many clients subscribe, and a client costs a pointer per message.
//!
//! # Slow clients
//! An outbox never grows without bound: a client that falls behind gets conflated state (the
//! latest `@bbo`, a snapshot instead of diffs it missed), and one that reads nothing for
//! [`limits::CUT_AFTER`] is cut with a reason. Other clients are not slowed: the watcher never
//! waits for a client.
//!
//! # Which books
//! Only books with a replica in this host's shared memory: the push server reads no other data
//! path. A SUBSCRIBE to a book this host does not hold is refused with a clear error; a restapi
//! running with `--no-local-reads` refuses `/ws` and `/sse` (HTTP 503). A book that leaves the
//! host later is reported on its streams as out of sync ("not on this host").
//!
//! # Limits
//! See [`limits`]: clients, streams per client (1 024, as Binance), subscriptions and distinct
//! streams server-wide, request size and rate, and how long a client may read nothing; a
//! WebSocket that holds no stream and sends nothing for 60 s is closed (`ws`).

mod latency;
mod limits;
mod message;
mod outbox;
mod protocol;
mod registry;
mod session;
mod source;
mod sse;
mod stream;
mod topic;
mod watcher;
mod ws;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ubdcc_shm::{ClusterReader, Trust};

use crate::lifecycle::ShutdownSignal;
use crate::metrics::family;
use registry::Registry;
use source::ShmSource;
use watcher::{Watcher, WatcherShared};

pub(crate) use sse::sse_route;
pub(crate) use ws::ws_route;

/// Why push is off on this restapi.
const NO_LOCAL_READS: &str = "push streams are served from this host's shared memory, and this restapi runs with --no-local-reads";

/// The push server of one restapi.
pub(crate) struct Push {
    cluster: String,
    trust: Trust,
    registry: Arc<Registry>,
    shared: Arc<WatcherShared>,
    /// The watcher thread, started with the first subscription.
    watcher: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Push clients connected now.
    clients: AtomicUsize,
    /// The pod's shutdown signal, which closes every client.
    shutdown: OnceLock<ShutdownSignal>,
    /// Publish → sent, for `/metrics`.
    latency: latency::Latency,
}

impl Push {
    /// A push server for the books of `cluster` whose segments `trust` believes (the restapi's
    /// own reader's trust).
    pub(crate) fn new(reader: &ClusterReader) -> Self {
        Self {
            cluster: reader.cluster().to_owned(),
            trust: reader.trust().clone(),
            registry: Arc::default(),
            shared: Arc::default(),
            watcher: Mutex::new(None),
            clients: AtomicUsize::new(0),
            shutdown: OnceLock::new(),
            latency: latency::Latency::default(),
        }
    }

    /// Ties the clients to the pod's shutdown signal.
    pub(crate) fn set_shutdown(&self, shutdown: ShutdownSignal) {
        // A second router of the same restapi keeps the first signal; tests build one.
        self.shutdown.get_or_init(|| shutdown);
    }

    fn shutdown(&self) -> ShutdownSignal {
        self.shutdown.get().cloned().unwrap_or_default()
    }

    /// Takes a client slot; `false` when [`limits::MAX_CLIENTS`] are connected.
    fn admit(&self) -> bool {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits::MAX_CLIENTS).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a client slot back.
    fn release(&self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts the watcher thread unless it runs.
    fn ensure_watcher(&self) -> Result<(), String> {
        let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        if watcher.is_some() {
            return Ok(());
        }
        let reader = ClusterReader::open_trusting(&self.cluster, self.trust.clone())
            .map_err(|error| format!("push streams are unavailable: {error}"))?;
        let run = Watcher::new(
            ShmSource::new(reader),
            Arc::clone(&self.registry),
            Arc::clone(&self.shared),
        );
        let thread = std::thread::Builder::new()
            .name("ubdcc-push".into())
            .spawn(move || run.run())
            .map_err(|error| format!("push streams are unavailable: {error}"))?;
        *watcher = Some(thread);
        Ok(())
    }

    /// The push families of `/metrics`.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        let (subscriptions, topics) = self.registry.counts();
        let gauge = |value: usize| [(String::new(), value as f64)];
        let counter = |value: &std::sync::atomic::AtomicU64| {
            [(String::new(), value.load(Ordering::Relaxed) as f64)]
        };
        family(
            out,
            "ubdcc_push_clients",
            "gauge",
            "WebSocket and SSE clients connected.",
            &gauge(self.clients.load(Ordering::Relaxed)),
        );
        family(
            out,
            "ubdcc_push_subscriptions",
            "gauge",
            "Stream subscriptions across all clients.",
            &gauge(subscriptions),
        );
        family(
            out,
            "ubdcc_push_streams",
            "gauge",
            "Distinct streams subscribed.",
            &gauge(topics),
        );
        family(
            out,
            "ubdcc_push_messages_total",
            "counter",
            "Messages queued for clients (one per client and message).",
            &counter(&self.shared.queued),
        );
        family(
            out,
            "ubdcc_push_book_reads_total",
            "counter",
            "Book reads the push watcher made.",
            &counter(&self.shared.reads),
        );
        family(
            out,
            "ubdcc_push_clients_cut_total",
            "counter",
            "Clients cut for reading too slowly.",
            &counter(&self.shared.cut),
        );
        self.latency.write(out);
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt as _;

    use super::*;
    use crate::agent::StateCopy;
    use crate::auth::Auth;
    use crate::client::{DEFAULT_TIMEOUT, InternalClient};
    use crate::identity::{PodIdentity, Role};
    use crate::restapi::RestApi;

    /// restapi's whole router, with local reads of an empty cluster (`local`) or none.
    fn router(token: Option<&str>, local: bool) -> axum::Router {
        let cluster = format!("pushrouter{}", std::process::id());
        let reader = local.then(|| ClusterReader::open(&cluster).expect("a valid name"));
        let api = RestApi::new(
            PodIdentity::new(Role::Restapi, None, None),
            StateCopy::new(false),
            InternalClient::new(None, None, DEFAULT_TIMEOUT),
            "http://127.0.0.1:9",
            reader,
        );
        api.router(Auth::new(None, token), ShutdownSignal::new())
    }

    /// Status and body of a GET of `path`.
    async fn get(router: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(path).header(header::HOST, "127.0.0.1");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn push_endpoints_need_the_bearer_token_like_the_rest_of_the_api() {
        let router = router(Some("push-test-token"), true);
        for path in ["/ws", "/sse?streams=binance.com:BTCUSDT@bbo"] {
            let (status, body) = get(&router, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            assert!(body.contains("#1109"), "{path}: {body}");
        }
        let token = Some("push-test-token");
        let (status, body) = get(&router, "/ws", token).await;
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{body}");
        assert!(body.contains("#1117"), "{body}");
        let (status, body) = get(&router, "/sse?streams=binance.com:BTCUSDT@bbo", token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("not in this host's shared memory"), "{body}");
    }

    #[tokio::test]
    async fn without_local_reads_push_is_refused_with_the_reason() {
        let router = router(None, false);
        for path in ["/ws", "/sse?streams=binance.com:BTCUSDT@bbo"] {
            let (status, body) = get(&router, path, None).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
            assert!(body.contains("--no-local-reads"), "{path}: {body}");
        }
    }
}
