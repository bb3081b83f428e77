//! What every role's HTTP side shares: bind, print the readiness line, serve with keep-alive
//! and the peer address (mgmt records it), stop on the pod's shutdown signal.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use axum::Router;
use ubdcc_gateway::auth::Auth;
use ubdcc_gateway::client::{DEFAULT_TIMEOUT, InternalClient};
use ubdcc_gateway::lifecycle::ShutdownSignal;

use crate::cli::SecretArgs;

/// Binds `host:port`; returns the listener and the bound address (port 0 picks a free one).
/// Warns when the internal endpoints (which hand DCNs their API secrets) are reachable beyond
/// this machine without a cluster secret.
pub async fn bind(
    host: IpAddr,
    port: u16,
    secrets: &SecretArgs,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    if !host.is_loopback() && secrets.cluster_secret.as_deref().is_none_or(str::is_empty) {
        tracing::warn!(
            %host,
            "listening beyond loopback without --cluster-secret: anyone who reaches this port \
             can call the internal endpoints, which carry the cluster's API secrets"
        );
    }
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    Ok((listener, address))
}

/// Serves `router` until `shutdown` triggers (spawned on the current runtime).
pub fn spawn(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: ShutdownSignal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server stopped");
        }
    })
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
