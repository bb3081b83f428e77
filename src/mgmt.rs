//! `ubdcc mgmt`: the management service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ubdcc_engine::MarketDirectory;
use ubdcc_gateway::identity::{PodIdentity, Role};
use ubdcc_gateway::lifecycle::ShutdownSignal;
use ubdcc_gateway::mgmt::store::StateFile;
use ubdcc_gateway::mgmt::{Mgmt, MgmtConfig, revise};

use crate::cli::MgmtArgs;
use crate::serve;

/// Runs mgmt until Ctrl-C, SIGTERM or `/shutdown`.
pub fn run(args: &MgmtArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(serve_mgmt(args))
}

async fn serve_mgmt(args: &MgmtArgs) -> anyhow::Result<()> {
    let secrets = crate::secrets::for_role(&args.secrets, &args.listen, args.host)?;
    let state_file = state_file(args)?;
    let initial = match &state_file {
        Some(file) => file.load()?.unwrap_or_default(),
        None => Default::default(),
    };
    if let Some(file) = &state_file {
        tracing::info!(path = %file.path().display(), timestamp = initial.timestamp, "state file");
    }
    let markets = if args.no_market_check {
        None
    } else {
        let overrides = crate::dcn::endpoint_overrides(&args.exchange_endpoint)?;
        Some(Arc::new(MarketDirectory::new(overrides)?))
    };
    let config = MgmtConfig {
        pod_timeout: Duration::from_millis(args.pod_timeout_ms),
        recovery_window: Duration::from_millis(args.recovery_window_ms),
        state_file,
        markets,
        ..MgmtConfig::default()
    };
    let identity = PodIdentity::new(Role::Mgmt, Some(&args.name), None);
    let client = serve::client(&secrets);
    let mgmt = Mgmt::new(config, identity, initial, client);
    let shutdown = ShutdownSignal::new();
    shutdown.on_os_signals();
    let (listener, address) = serve::bind(args.host, args.port).await?;
    let server = serve::spawn(
        listener,
        mgmt.router(
            serve::auth(&secrets).with_allowed_hosts(args.listen.allowed_hosts.clone()),
            shutdown.clone(),
        ),
        shutdown.clone(),
    );
    let revise = shutdown.must_live("revise", revise::run_revise(mgmt.clone()));
    let pusher = shutdown.must_live("pusher", revise::run_pusher(mgmt.clone()));
    // The readiness line scripts and tests wait for.
    println!("listening on {address}");
    shutdown.wait().await;
    revise.abort();
    pusher.abort();
    server.await.ok();
    tracing::info!("mgmt stopped");
    Ok(shutdown.outcome()?)
}

fn state_file(args: &MgmtArgs) -> anyhow::Result<Option<StateFile>> {
    if args.ephemeral {
        return Ok(None);
    }
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            let home = std::env::var_os("HOME")
                .context("HOME is not set; pass --data-dir or --ephemeral")?;
            std::path::Path::new(&home)
                .join(".ubdcc")
                .join(format!("mgmt-{}", args.port))
        }
    };
    let file = StateFile::in_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Some(file))
}
