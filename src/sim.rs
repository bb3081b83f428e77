//! `ubdcc sim`: serve the exchange simulator on one port until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use ubdcc_sim::SimConfig;

use crate::cli::SimArgs;

/// Builds a tokio runtime, binds the port, prints `listening on <addr>` once bound (the line
/// scripts and tests wait for), and serves until Ctrl-C or SIGTERM.
pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    let config = SimConfig::builder()
        .markets(args.markets)
        .rate_hz(args.rate)
        .seed(args.seed)
        .options_snapshot_lag(Duration::from_millis(args.options_snapshot_lag_ms))
        .build()
        .context("invalid simulator settings")?;
    serve_announced(args.host, args.port, |listener, shutdown| async move {
        let address = listener.local_addr().context("reading the bound address")?;
        ubdcc_sim::run(listener, config, shutdown)
            .await
            .with_context(|| format!("serving the simulator on {address}"))
    })
}

/// What stops a server: Ctrl-C or SIGTERM.
pub(crate) type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Builds a tokio runtime, binds `host:port`, installs the shutdown handlers, prints
/// `listening on <addr>` once bound (the line scripts and tests wait for), and runs `serve` on the
/// listener until it ends (`ubdcc sim` and `ubdcc replay`).
pub(crate) fn serve_announced<F, Fut>(host: IpAddr, port: u16, serve: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        // Install the handlers before announcing the address: a supervisor that reads the line
        // and stops us at once must get a graceful shutdown, not the default SIGTERM death.
        let shutdown = Box::pin(shutdown_signal()?);
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {address}")?;
        out.flush()?;
        drop(out);
        serve(listener, shutdown).await
    })
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM; the handlers are installed when this
/// returns, not when the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested");
    })
}
