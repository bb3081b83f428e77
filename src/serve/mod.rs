//! What every role's HTTP side shares: bind, serve with keep-alive and the peer address (mgmt
//! records it), stop on the pod's shutdown signal.
//!
//! Every server holds out against slowloris (issue 10): thousands of half-open connections must
//! neither exhaust the process's descriptors (on a DCN the same table holds its exchange
//! sockets) nor starve normal clients. So, in one accept loop on hyper's HTTP/1 connection:
//! - a request head must be complete [`HEADER_TIMEOUT`] after its first byte (and a new
//!   connection must send one that soon), else the connection is closed;
//! - a kept-alive connection with no new request for [`IDLE_TIMEOUT`] is closed, and so is one
//!   whose client does not read its response for [`WRITE_TIMEOUT`] ([`socket`]);
//! - at most a cap of connections are open at once, from the descriptor limit (raised to the
//!   hard limit at start) less [`RESERVED_DESCRIPTORS`], and at most [`MAX_CONNECTIONS`]. When
//!   full, the loop stops accepting: new clients wait in the kernel's backlog and are served as
//!   soon as a slot frees (at the latest when a half-open one times out). Accepting and closing
//!   at once instead would fail every normal client while the attackers keep their slots.
//!
//! `UBDCC_HTTP_HEADER_TIMEOUT_MS`, `UBDCC_HTTP_IDLE_TIMEOUT_MS`, `UBDCC_HTTP_WRITE_TIMEOUT_MS`
//! and `UBDCC_HTTP_MAX_CONNECTIONS` override the figures (tests use short timeouts).

mod socket;

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tower_service::Service as _;
use ubdcc_gateway::auth::Auth;
use ubdcc_gateway::client::{DEFAULT_TIMEOUT, InternalClient};
use ubdcc_gateway::lifecycle::ShutdownSignal;

use crate::cli::SecretArgs;
use socket::Socket;

/// Binds `host:port`; returns the listener and the bound address (port 0 picks a free one).
/// (Whether a role may listen beyond loopback is decided before, with its secrets:
/// [`crate::secrets::for_role`].)
pub async fn bind(
    host: IpAddr,
    port: u16,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener =
        listen(SocketAddr::new(host, port)).with_context(|| format!("binding {host}:{port}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    Ok((listener, address))
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). tokio's default
/// of 128 overflows under a burst of connects (a slowloris, or many clients at once; measured:
/// one SYN in ~130 dropped while 2 000 connect), and each dropped SYN costs its client a second.
/// While the server is at its connection cap, this queue is where new clients wait.
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted pod may bind its port while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// A request head must be complete this long after its first byte. A real client sends its head
/// in one go, within a round trip; ten seconds leave room for a bad network, and bound how long a
/// slowloris connection holds a slot.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A kept-alive connection with no new request for this long is closed. Above the 30 s that our
/// own pooled clients (`InternalClient`) keep an idle connection, so the server never closes one
/// just as such a client reuses it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A response write that makes no progress for this long (the client stopped reading) closes
/// the connection: a slow reader must not hold a connection slot for ever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Descriptors kept free of HTTP connections: a DCN's exchange sockets (a few WebSockets and
/// snapshot downloads), the shared-memory segments, internal calls, log files.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

/// Connections at once at most, whatever the descriptor limit: each costs ~10-20 KiB of buffers
/// and a task, so this bounds the memory an attacker can pin to ~300 MiB.
pub const MAX_CONNECTIONS: u64 = 16_384;

/// After the shutdown signal, requests in flight get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after an accept error other than a connection's own (out of descriptors, say), so the
/// loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The figures a server runs with.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    connections: usize,
}

impl Limits {
    /// The defaults, or the environment's overrides, with the connection cap from the
    /// descriptor limit (raised to the hard limit first); logged.
    fn new() -> Self {
        let descriptors = raise_descriptor_limit();
        let reserved = RESERVED_DESCRIPTORS.min(descriptors / 2);
        let cap = (descriptors - reserved).min(MAX_CONNECTIONS);
        let limits = Self {
            header_timeout: env_ms("UBDCC_HTTP_HEADER_TIMEOUT_MS").unwrap_or(HEADER_TIMEOUT),
            idle_timeout: env_ms("UBDCC_HTTP_IDLE_TIMEOUT_MS").unwrap_or(IDLE_TIMEOUT),
            write_timeout: env_ms("UBDCC_HTTP_WRITE_TIMEOUT_MS").unwrap_or(WRITE_TIMEOUT),
            connections: env_u64("UBDCC_HTTP_MAX_CONNECTIONS")
                .unwrap_or(cap)
                .clamp(1, cap) as usize,
        };
        tracing::info!(
            descriptors,
            reserved,
            max_connections = limits.connections,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            idle_timeout_ms = limits.idle_timeout.as_millis() as u64,
            write_timeout_ms = limits.write_timeout.as_millis() as u64,
            "HTTP limits"
        );
        limits
    }
}

/// Raises the soft limit of open descriptors to the hard one; returns the limit now in force.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited", which Linux never has for descriptors; count it as a large number.
    let current = limit.current.unwrap_or(u64::MAX);
    let Some(maximum) = limit.maximum.filter(|maximum| *maximum > current) else {
        return current;
    };
    let raised = Rlimit {
        current: Some(maximum),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => maximum,
        Err(error) => {
            tracing::warn!(%error, current, maximum, "cannot raise the descriptor limit");
            current
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let parsed = text.trim().parse().ok();
    if parsed.is_none() {
        tracing::warn!(name, value = %text, "not a number; using the default");
    }
    parsed
}

fn env_ms(name: &str) -> Option<Duration> {
    env_u64(name).map(Duration::from_millis)
}

/// Serves `router` until `shutdown` triggers (spawned on the current runtime, as a must-live
/// task of the pod: a server that dies stops the pod). See the module doc for the limits.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    shutdown: ShutdownSignal,
) -> tokio::task::JoinHandle<()> {
    let limits = Limits::new();
    let stopping = shutdown.clone();
    shutdown.must_live("HTTP server", run(listener, router, stopping, limits))
}

/// The accept loop; see the module doc.
async fn run(listener: TcpListener, router: Router, shutdown: ShutdownSignal, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let mut builder = http1::Builder::new();
    // hyper's header timeout runs whenever a connection waits for a request head, idle ones
    // included: it is the idle timeout. The shorter one for a head begun is `Socket`'s.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    loop {
        let slot = tokio::select! {
            () = shutdown.wait() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Responses go out in one write; waiting for more (Nagle) only adds latency.
        stream.set_nodelay(true).ok();
        let socket = Socket::new(stream, slot, limits.header_timeout, limits.write_timeout);
        tokio::spawn(serve_connection(
            builder.clone(),
            socket,
            peer,
            router.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    // Every connection holds a slot until its socket closes: all slots back means all closed.
    let all = u32::try_from(limits.connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!("connections still open after the drain timeout; closing them");
    }
}

/// Errors of one connection (the client went away before it was accepted), not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection: requests carry the peer address as `ConnectInfo<SocketAddr>`, upgrades
/// (WebSocket) work, and the shutdown signal lets the request in flight finish, then closes.
async fn serve_connection(
    builder: http1::Builder,
    socket: Socket,
    peer: SocketAddr,
    router: Router,
    shutdown: ShutdownSignal,
) {
    let requests = Arc::clone(&socket.requests);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        requests.head_done();
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = router.clone().call(request);
        let requests = Arc::clone(&requests);
        async move {
            let response = answer.await?;
            requests.answered(response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(socket), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The client for this pod's calls to other pods, carrying the configured secrets.
pub fn client(secrets: &SecretArgs) -> InternalClient {
    InternalClient::new(
        secrets.cluster_secret.as_deref(),
        secrets.api_token.as_deref(),
        DEFAULT_TIMEOUT,
    )
}

/// The auth settings from the flags.
pub fn auth(secrets: &SecretArgs) -> Auth {
    Auth::new(
        secrets.cluster_secret.as_deref(),
        secrets.api_token.as_deref(),
    )
}
