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
//! See [`limits`]: clients (in all and per peer address), streams per client (1 024, as
//! Binance; 64 of them deep), subscriptions, distinct streams and view levels server-wide,
//! request size and rate (and `/sse` requests per address), and how long a client may read
//! nothing. A WebSocket that holds no stream and sends nothing for 60 s is closed, one silent
//! for 90 s (pinged every 30 s) too (`ws`); an SSE client gets a comment every 30 s and is cut
//! when its connection takes nothing for [`limits::CUT_AFTER`] (`sse`).
//!
//! # Who may connect
//! A browser names the page that opens a WebSocket or a cross-origin `EventSource` in `Origin`;
//! without a bearer token (which a page cannot send on either), an `Origin` naming anything but
//! an IP literal or `localhost` is refused (403, the rule `Host` follows for the internal
//! endpoints, `crate::auth`), so a page on the web cannot open push streams of a loopback
//! restapi or take its client slots. Clients that are not browsers send no `Origin`.
//!
//! # The watcher's health
//! A pass of the watcher that panics is caught: every stream gets `out_of_sync` with reason
//! "push watcher stopped", the streams start over (a snapshot follows). After
//! [`watcher::MAX_PANICS`] panics in a row the watcher stops for good; streams say so, and
//! SUBSCRIBE is refused with that reason.

mod latency;
mod limits;
mod message;
mod outbox;
mod peers;
mod protocol;
mod registry;
mod session;
mod source;
mod sse;
mod stream;
mod topic;
mod watcher;
mod ws;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::http::{HeaderMap, header};
use ubdcc_shm::{ClusterReader, InvalidName, Trust};

use crate::lifecycle::ShutdownSignal;
use crate::metrics::family;
use peers::{PeerError, Peers};
use registry::Registry;
use source::ShmSource;
use watcher::{Watcher, WatcherShared};

pub(crate) use sse::sse_route;
pub(crate) use ws::ws_route;

/// Why push is off on this restapi.
const NO_LOCAL_READS: &str = "push streams are served from this host's shared memory, and this restapi runs with --no-local-reads";

/// Why the push watcher cannot serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatcherError {
    /// The cluster's shared memory could not be opened.
    #[error("push streams are unavailable: {0}")]
    Open(#[source] InvalidName),
    /// The watcher thread could not be started.
    #[error("push streams are unavailable: starting the push watcher failed: {0}")]
    Spawn(#[source] std::io::Error),
    /// The watcher stopped after panicking too often (see the module doc).
    #[error("push streams are unavailable: {}", watcher::STOPPED)]
    Stopped,
}

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdmitError {
    /// [`limits::MAX_CLIENTS`] are connected.
    #[error(
        "the push server has its most clients ({}); try later",
        limits::MAX_CLIENTS
    )]
    Full,
    /// The peer is over its own limits.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A web page from elsewhere (by its `Origin`) without the bearer token.
    #[error(
        "push streams answer web pages only from an IP address or localhost (Origin); other clients send no Origin"
    )]
    Origin,
}

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
    /// Push clients and `/sse` requests per peer address.
    peers: Peers,
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
            peers: Peers::default(),
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

    /// Counts an `/sse` request of `peer` against its rate.
    ///
    /// # Errors
    /// [`AdmitError::Peer`] past the rate.
    fn count_sse_request(&self, peer: IpAddr) -> Result<(), AdmitError> {
        Ok(self.peers.count_request(peer, Instant::now())?)
    }

    /// Takes a client slot for `peer`; the caller gives it back with [`Push::release`].
    ///
    /// # Errors
    /// [`AdmitError`]: too many clients in all or of this peer.
    fn admit(&self, peer: IpAddr) -> Result<(), AdmitError> {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits::MAX_CLIENTS).then_some(n + 1)
            })
            .map_err(|_| AdmitError::Full)?;
        if let Err(error) = self.peers.admit(peer, Instant::now()) {
            self.clients.fetch_sub(1, Ordering::AcqRel);
            return Err(error.into());
        }
        Ok(())
    }

    /// Gives `peer`'s client slot back.
    fn release(&self, peer: IpAddr) {
        self.peers.release(peer);
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts the watcher thread unless it runs.
    ///
    /// # Errors
    /// [`WatcherError`]: the cluster cannot be opened, the thread cannot start, or the watcher
    /// stopped for good.
    fn ensure_watcher(&self) -> Result<(), WatcherError> {
        if self.shared.is_down() {
            return Err(WatcherError::Stopped);
        }
        let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        if watcher.is_some() {
            return Ok(());
        }
        let reader = ClusterReader::open_trusting(&self.cluster, self.trust.clone())
            .map_err(WatcherError::Open)?;
        let run = Watcher::new(
            ShmSource::new(reader),
            Arc::clone(&self.registry),
            Arc::clone(&self.shared),
        );
        let thread = std::thread::Builder::new()
            .name("ubdcc-push".into())
            .spawn(move || run.run())
            .map_err(WatcherError::Spawn)?;
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

/// Refuses a web page from elsewhere: a browser sends the page's
/// `Origin` on every WebSocket and cross-origin `EventSource`, and WebSocket has no CORS to stop
/// a page on the web from opening push streams of a loopback restapi, so an `Origin` must name
/// an IP literal or `localhost`, as `Host` must for the internal endpoints
/// ([`crate::auth::host_is_allowed`]). Non-browser clients send no `Origin`. A request with a
/// bearer token passes: the guard checked it, and a page cannot send one on either.
///
/// # Errors
/// [`AdmitError::Origin`] for a page from elsewhere.
fn check_caller(headers: &HeaderMap) -> Result<(), AdmitError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    // `scheme://host[:port]`; `null` (a sandboxed page, a file) has no host and is refused.
    let authority = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default());
    match authority {
        Some(authority) if crate::auth::host_is_allowed(authority, &[]) => Ok(()),
        Some(_) | None => Err(AdmitError::Origin),
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
        get_from(router, path, token, None).await
    }

    /// Status and body of a GET of `path` from a page of `origin`.
    async fn get_from(
        router: &axum::Router,
        path: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> (StatusCode, String) {
        let mut request = Request::get(path).header(header::HOST, "127.0.0.1");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
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

    #[tokio::test]
    async fn a_web_page_from_elsewhere_cannot_open_push_streams() {
        let open = router(None, true);
        let sse = "/sse?streams=binance.com:BTCUSDT@bbo";
        for origin in [
            "https://evil.example",
            "null",
            "http://attacker.localhost.evil.com",
        ] {
            for path in ["/ws", sse] {
                let (status, body) = get_from(&open, path, None, Some(origin)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{origin} {path}: {body}");
                assert!(body.contains("Origin"), "{body}");
            }
        }
        for origin in [
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://[::1]:80",
        ] {
            let (status, body) = get_from(&open, sse, None, Some(origin)).await;
            assert_eq!(status, StatusCode::OK, "{origin}: {body}");
            assert!(body.contains("not in this host's shared memory"), "{body}");
        }
        // A bearer token (which a page cannot send) makes the Origin irrelevant.
        let guarded = router(Some("origin-token"), true);
        let (status, body) = get_from(
            &guarded,
            sse,
            Some("origin-token"),
            Some("https://evil.example"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn sse_refuses_too_many_names_and_deep_streams_before_looking_at_books() {
        let router = router(None, true);
        let names: Vec<String> = (0..=limits::MAX_STREAMS_PER_CLIENT)
            .map(|i| format!("binance.com:M{i}@bbo"))
            .collect();
        let (_, body) = get(&router, &format!("/sse?streams={}", names.join(",")), None).await;
        assert!(body.contains("too many streams"), "{body}");
        let deep: Vec<String> = (0..=limits::MAX_DEEP_STREAMS_PER_CLIENT)
            .map(|i| format!("binance.com:M{i}@book1000"))
            .collect();
        let (_, body) = get(&router, &format!("/sse?streams={}", deep.join(",")), None).await;
        assert!(body.contains("too many deep streams"), "{body}");
    }

    #[test]
    fn each_refusal_of_admission_has_its_status() {
        let status = |error: AdmitError| ws::refuse_admission(&error).status();
        assert_eq!(status(AdmitError::Origin), StatusCode::FORBIDDEN);
        assert_eq!(
            status(AdmitError::Peer(PeerError::Rate)),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(AdmitError::Peer(PeerError::Clients)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(AdmitError::Full), StatusCode::SERVICE_UNAVAILABLE);
    }
}
