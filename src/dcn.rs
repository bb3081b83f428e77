//! `ubdcc dcn`: one DepthCache node — the engine's data plane on its own (optionally pinned)
//! core and single-threaded runtime, its shared-memory segment, and its HTTP endpoints.
//!
//! In a cluster (the default) the DCN registers with mgmt and keeps the books mgmt places on it;
//! `--standalone` keeps the books given by `--markets` without mgmt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ubdcc_engine::{
    BookSpec, EndpointOverrides, Exchange, Node, NodeConfig, NodeHandle, RecordConfig, RecordScope,
    Recorder, RecorderThread,
};
use ubdcc_gateway::agent::dcn::{ShmReplicaSource, apply_assignments};
use ubdcc_gateway::agent::{Agent, AgentConfig, PodBase, StateCopy};
use ubdcc_gateway::client::CLUSTER_SECRET_HEADER;
use ubdcc_gateway::dcn_api::{self, DcnApiState};
use ubdcc_gateway::identity::{PodIdentity, Role};
use ubdcc_gateway::lifecycle::{ShutdownSignal, sweep_dead_segments};
use ubdcc_shm::ClusterReader;

use crate::cli::{DcnArgs, SecretArgs};
use crate::serve;

/// Runs the node until Ctrl-C, SIGTERM or `/shutdown`.
pub fn run(args: &DcnArgs) -> anyhow::Result<()> {
    if let Some(cpu) = args.cpu {
        pin_to_core(cpu)?;
    }
    // One runtime on one thread: the node's loop, its connections and its HTTP server share the
    // core the process is pinned to, and no book is ever touched from two threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let mut recording = None;
    let served = runtime.block_on(serve(args, &mut recording));
    // Every recorder handle lives in the node and its tasks: with the runtime gone, the writer
    // writes what it holds and ends, so a graceful stop loses nothing of the recording.
    drop(runtime);
    if let Some(thread) = recording
        && !thread.wait(Duration::from_secs(5))
    {
        tracing::warn!("the recorder did not finish writing within 5 s");
    }
    served
}

fn pin_to_core(cpu: usize) -> anyhow::Result<()> {
    let cores = core_affinity::get_core_ids().context("listing the CPU cores")?;
    let core = cores
        .into_iter()
        .find(|core| core.id == cpu)
        .with_context(|| format!("there is no CPU {cpu} on this machine"))?;
    if !core_affinity::set_for_current(core) {
        bail!("pinning to CPU {cpu} failed");
    }
    tracing::info!(cpu, "pinned");
    Ok(())
}

/// Runs the DCN; `recording` receives the recorder's thread when it records.
async fn serve(args: &DcnArgs, recording: &mut Option<RecorderThread>) -> anyhow::Result<()> {
    let books = parse_markets(
        &args.markets,
        args.update_interval_ms,
        args.refresh_interval_secs,
    )?;
    if !args.standalone && !books.is_empty() {
        bail!("--markets needs --standalone; in a cluster, mgmt places the books");
    }
    let pod = &args.pod;
    // Before the segment exists: a DCN that may not start must leave nothing behind.
    let secrets = crate::secrets::for_role(&pod.secrets, &pod.listen, args.host)?;
    // A standalone DCN keeps the old default name, so its segment is easy to find.
    let name = pod.name.as_deref().or(args.standalone.then_some("dcn-0"));
    let identity = PodIdentity::new(Role::Dcn, name, pod.node.as_deref());
    // Signals first: a SIGTERM once the segment exists must remove it again.
    let shutdown = ShutdownSignal::new();
    shutdown.on_os_signals();
    let (mut node, handle, commands) =
        Node::start(node_config(args, &identity.name, recording)?).context("starting the node")?;
    let segment = node.segment_name();
    sweep_dead_segments(&args.cluster, &shutdown);

    let (listener, address) = serve::bind(args.host, args.port).await?;
    let copy = (!args.standalone).then(|| StateCopy::new(true));
    let reader = ClusterReader::open_dcn(&args.cluster, &identity.name)?;
    let base = PodBase {
        identity: identity.clone(),
        copy: copy.clone(),
        shutdown: shutdown.clone(),
    };
    let metrics = dcn_api::metrics(
        ClusterReader::open_dcn(&args.cluster, &identity.name)?,
        Some(handle.snapshot_stats()),
        Some(handle.seed_stats()),
    );
    if let Some(secret) = &secrets.cluster_secret {
        // Peers ask each other for copies with the cluster's secret, like every internal call.
        handle
            .peers()
            .set_auth(CLUSTER_SECRET_HEADER, secret.clone());
    }
    let router = dcn_api::router(
        DcnApiState::new(reader),
        base,
        serve::auth(&secrets).with_allowed_hosts(pod.listen.allowed_hosts.clone()),
        metrics,
    );
    let server = serve::spawn(listener, router, shutdown.clone());

    let agent = match copy {
        Some(copy) => Some(start_agent(
            args,
            &secrets,
            &identity,
            address.port(),
            copy,
            &handle,
            &shutdown,
        )?),
        None => {
            start_standalone_books(&handle, books);
            None
        }
    };
    // The readiness line scripts and tests wait for.
    println!("listening on {address} segment {segment}");
    let stopping = shutdown.clone();
    let ran = node
        .run(commands, async move { stopping.wait().await })
        .await;
    // A node that stopped by itself (a task of it died) stops the whole pod, with an error.
    shutdown.trigger();
    drop(handle);
    if let Some(agent) = agent {
        // The agent cancels the registration; give it a moment.
        tokio::time::timeout(Duration::from_secs(2), agent)
            .await
            .ok();
    }
    server.await.ok();
    tracing::info!("DCN stopped");
    ran.context("the engine stopped")?;
    Ok(shutdown.outcome()?)
}

/// The `--exchange-endpoint` flags and `UBDCC_EXCHANGE_ENDPOINTS` (comma-separated), parsed.
pub(crate) fn endpoint_overrides(flags: &[String]) -> anyhow::Result<EndpointOverrides> {
    let from_env = std::env::var("UBDCC_EXCHANGE_ENDPOINTS").unwrap_or_default();
    EndpointOverrides::parse(flags.iter().map(String::as_str).chain(from_env.split(',')))
        .context("--exchange-endpoint")
}

fn node_config(
    args: &DcnArgs,
    name: &str,
    recording: &mut Option<RecorderThread>,
) -> anyhow::Result<NodeConfig> {
    let endpoints = endpoint_overrides(&args.exchange_endpoint)?;
    let mut config = NodeConfig::new(args.cluster.as_str(), name);
    config.endpoints = endpoints;
    config.max_books = args.max_books;
    config.weight_share = args.weight_share;
    config.levels_per_side = args.levels;
    config.segment_mode = args.shm_mode;
    config.segment_group = args.shm_group;
    config.ping_interval = Duration::from_millis(args.ping_interval_ms);
    config.silence_timeout = Duration::from_millis(args.silence_timeout_ms);
    config.book_silence = Duration::from_secs(args.book_silence_secs.max(1));
    config.audit_interval =
        (args.audit_interval_secs > 0).then(|| Duration::from_secs(args.audit_interval_secs));
    config.max_connection_lifetime = Duration::from_secs(args.connection_lifetime_secs.max(1));
    config.api_keys = parse_api_keys(&args.api_key)?;
    config.initial_depth = args.initial_depth;
    config.peer_seeding = !args.no_peer_seeding;
    let (dir, scope) = recording_dir(args);
    if let Some(dir) = dir {
        config.record_scope = scope;
        let mut record = RecordConfig::new(dir);
        record.max_bytes = args.record_max_mb.saturating_mul(1_000_000);
        let (recorder, thread) = Recorder::start(record)
            .with_context(|| format!("opening the recording directory {}", dir.display()))?;
        config.record = Some(recorder);
        *recording = Some(thread);
    }
    Ok(config)
}

/// The recording directory and which books go into it: all (`--record`), or those created
/// with `record=true` (`--record-books`; clap refuses both at once).
fn recording_dir(args: &DcnArgs) -> (Option<&std::path::Path>, RecordScope) {
    match (&args.record, &args.record_books) {
        (Some(dir), _) => (Some(dir), RecordScope::All),
        (None, dir) => (dir.as_deref(), RecordScope::Chosen),
    }
}

/// What this DCN tells mgmt it records (`PodRecord::recording`).
fn recording_name(args: &DcnArgs) -> Option<String> {
    match recording_dir(args) {
        (None, _) => None,
        (Some(_), RecordScope::All) => Some("all".into()),
        (Some(_), RecordScope::Chosen) => Some("chosen".into()),
    }
}

/// Registers with mgmt, reports statuses, and keeps the engine's books equal to the assignments.
fn start_agent(
    args: &DcnArgs,
    secrets: &SecretArgs,
    identity: &PodIdentity,
    port: u16,
    copy: Arc<StateCopy>,
    handle: &NodeHandle,
    shutdown: &ShutdownSignal,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pod = &args.pod;
    shutdown.must_live(
        "assignments",
        apply_assignments(identity.uid.clone(), copy.clone(), handle.clone()),
    );
    let statuses = ShmReplicaSource::new(ClusterReader::open_dcn(&args.cluster, &identity.name)?)
        .with_snapshots(handle.snapshot_stats())
        .with_peers(ClusterReader::open(&args.cluster)?);
    let agent = Agent::new(
        AgentConfig {
            mgmt_url: pod.mgmt_url.clone(),
            identity: identity.clone(),
            api_port: port,
            advertise_ip: pod.advertise_ip.clone(),
            heartbeat: Duration::from_millis(pod.heartbeat_ms),
            max_books: Some(args.max_books),
            recording: recording_name(args),
        },
        serve::client(secrets),
        copy,
        Some(Arc::new(statuses)),
    );
    let stopping = shutdown.clone();
    Ok(shutdown.must_live(
        "cluster agent",
        async move { agent.run(stopping.wait()).await },
    ))
}

fn start_standalone_books(handle: &NodeHandle, books: Vec<BookSpec>) {
    let adder = handle.clone();
    tokio::spawn(async move {
        for book in books {
            let (exchange, symbol) = (book.exchange, book.symbol.clone());
            if let Err(error) = adder.add(book).await {
                tracing::error!(%exchange, %symbol, %error, "cannot keep this DepthCache");
            }
        }
    });
}

/// `exchange:SYMBOL` items, comma-separated, e.g. `binance.com:BTCUSDT,binance.com-futures:ETHUSDT`.
fn parse_markets(
    items: &[String],
    update_interval_ms: Option<u32>,
    refresh_interval_secs: Option<u64>,
) -> anyhow::Result<Vec<BookSpec>> {
    let mut books = Vec::new();
    for item in items
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (exchange, symbol) = item
            .rsplit_once(':')
            .with_context(|| format!("market {item:?}: expected EXCHANGE:SYMBOL"))?;
        let exchange: Exchange = exchange.parse()?;
        // Validate the stream name now, so a bad interval is a start-up error, not a log line.
        exchange.stream_name(symbol, update_interval_ms)?;
        books.push(BookSpec {
            exchange,
            symbol: symbol.to_owned(),
            update_interval_ms,
            refresh_interval: refresh_interval_secs.map(Duration::from_secs),
            // Standalone books have no API to ask; `--record` records them all.
            record: false,
        });
    }
    Ok(books)
}

/// `EXCHANGE=KEY` items from `--api-key` and `UBDCC_API_KEYS`.
fn parse_api_keys(items: &[String]) -> anyhow::Result<HashMap<Exchange, String>> {
    let from_env = std::env::var("UBDCC_API_KEYS").unwrap_or_default();
    let mut keys = HashMap::new();
    for item in items
        .iter()
        .map(String::as_str)
        .chain(from_env.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        // The key itself never goes into an error message.
        let (exchange, key) = item
            .split_once('=')
            .context("--api-key: expected EXCHANGE=KEY")?;
        let exchange: Exchange = exchange.trim().parse()?;
        if key.trim().is_empty() {
            bail!("--api-key: empty key for {exchange}");
        }
        keys.insert(exchange, key.trim().to_owned());
    }
    Ok(keys)
}
