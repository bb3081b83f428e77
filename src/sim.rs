//! `ubdcc sim`: serve the exchange simulator on one port until Ctrl-C or SIGTERM.

use std::io::Write as _;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind((args.host, args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let address = listener.local_addr().context("reading the bound address")?;
        // Install the handlers before announcing the address: a supervisor that reads the line
        // and stops us at once must get a graceful shutdown, not the default SIGTERM death.
        let shutdown = shutdown_signal()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {address}")?;
        out.flush()?;
        drop(out);
        ubdcc_sim::run(listener, config, shutdown)
            .await
            .with_context(|| format!("serving the simulator on {address}"))
    })
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM; the handlers are installed when this
/// returns, not when the future is first polled.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
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
