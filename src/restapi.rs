//! `ubdcc restapi`: the public REST API.

use std::time::Duration;

use anyhow::Context as _;
use ubdcc_gateway::agent::{Agent, AgentConfig, StateCopy};
use ubdcc_gateway::identity::{PodIdentity, Role};
use ubdcc_gateway::lifecycle::{ShutdownSignal, sweep_dead_segments};
use ubdcc_gateway::restapi::RestApi;
use ubdcc_shm::ClusterReader;

use crate::cli::RestapiArgs;
use crate::serve;

/// Runs restapi until Ctrl-C, SIGTERM or `/shutdown`.
pub fn run(args: &RestapiArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(serve_restapi(args))
}

async fn serve_restapi(args: &RestapiArgs) -> anyhow::Result<()> {
    let pod = &args.pod;
    let secrets = crate::secrets::for_role(&pod.secrets, &pod.listen, args.host)?;
    let identity = PodIdentity::new(Role::Restapi, pod.name.as_deref(), pod.node.as_deref());
    let reader = if args.no_local_reads {
        None
    } else {
        Some(ClusterReader::open(&args.cluster)?)
    };
    let client = serve::client(&secrets);
    let copy = StateCopy::new(false);
    let api = RestApi::new(
        identity.clone(),
        copy.clone(),
        client.clone(),
        &pod.mgmt_url,
        reader,
    );
    let shutdown = ShutdownSignal::new();
    shutdown.on_os_signals();
    if !args.no_local_reads {
        sweep_dead_segments(&args.cluster, &shutdown);
    }
    let (listener, address) = serve::bind(args.host, args.port).await?;
    let server = serve::spawn(
        listener,
        api.router(
            serve::auth(&secrets).with_allowed_hosts(pod.listen.allowed_hosts.clone()),
            shutdown.clone(),
        ),
        shutdown.clone(),
    );
    let agent = Agent::new(
        AgentConfig {
            mgmt_url: pod.mgmt_url.clone(),
            identity,
            api_port: address.port(),
            advertise_ip: pod.advertise_ip.clone(),
            heartbeat: Duration::from_millis(pod.heartbeat_ms),
            max_books: None,
            recording: None,
        },
        client,
        copy,
        None,
    );
    let stopping = shutdown.clone();
    let agent = shutdown.must_live(
        "cluster agent",
        async move { agent.run(stopping.wait()).await },
    );
    println!("listening on {address}");
    shutdown.wait().await;
    // The agent cancels the registration; give it a moment.
    tokio::time::timeout(Duration::from_secs(2), agent)
        .await
        .ok();
    server.await.ok();
    tracing::info!("restapi stopped");
    Ok(shutdown.outcome()?)
}
