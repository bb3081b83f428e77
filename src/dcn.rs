//! `ubdcc dcn`: one DepthCache node — the engine's data plane on its own (optionally pinned)
//! core and single-threaded runtime, its shared-memory segment, and its HTTP endpoints.
//!
//! Until the cluster agent exists, a DCN runs `--standalone` with the books given by `--markets`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ubdcc_engine::{BookSpec, EndpointOverrides, Exchange, Node, NodeConfig};
use ubdcc_gateway::dcn_api::{DcnApiState, router};
use ubdcc_shm::ClusterReader;

use crate::cli::DcnArgs;

/// Runs the node until Ctrl-C or SIGTERM.
pub fn run(args: &DcnArgs) -> anyhow::Result<()> {
    if !args.standalone {
        bail!(
            "a DCN without mgmt needs --standalone (the cluster agent arrives with the cluster issue)"
        );
    }
    if let Some(cpu) = args.cpu {
        pin_to_core(cpu)?;
    }
    // One runtime on one thread: the node's loop, its connections and its HTTP server share the
    // core the process is pinned to, and no book is ever touched from two threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(serve(args))
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

async fn serve(args: &DcnArgs) -> anyhow::Result<()> {
    let books = parse_markets(
        &args.markets,
        args.update_interval_ms,
        args.refresh_interval_secs,
    )?;
    let from_env = std::env::var("UBDCC_EXCHANGE_ENDPOINTS").unwrap_or_default();
    let endpoints = EndpointOverrides::parse(
        args.exchange_endpoint
            .iter()
            .map(String::as_str)
            .chain(from_env.split(',')),
    )
    .context("--exchange-endpoint")?;

    let mut config = NodeConfig::new(args.cluster.as_str(), args.name.as_str());
    config.endpoints = endpoints;
    config.max_books = args.max_books;
    config.weight_share = args.weight_share;
    config.levels_per_side = args.levels;
    config.ping_interval = Duration::from_millis(args.ping_interval_ms);
    config.silence_timeout = Duration::from_millis(args.silence_timeout_ms);
    config.book_silence = Duration::from_secs(args.book_silence_secs.max(1));
    config.max_connection_lifetime = Duration::from_secs(args.connection_lifetime_secs.max(1));
    config.api_keys = parse_api_keys(&args.api_key)?;
    let (mut node, handle, commands) = Node::start(config).context("starting the node")?;
    let segment = node.segment_name();

    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let reader = ClusterReader::open_dcn(&args.cluster, &args.name)?;
    let api = router(DcnApiState::new(reader, env!("CARGO_PKG_VERSION")));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, api).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });

    let adder = handle.clone();
    tokio::spawn(async move {
        for book in books {
            let (exchange, symbol) = (book.exchange, book.symbol.clone());
            if let Err(error) = adder.add(book).await {
                tracing::error!(%exchange, %symbol, %error, "cannot keep this DepthCache");
            }
        }
    });
    // The readiness line scripts and tests wait for.
    println!("listening on {address} segment {segment}");
    node.run(commands, shutdown_signal()).await;
    drop(handle);
    tracing::info!("DCN stopped");
    Ok(())
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

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                ctrl_c.await.ok();
                return;
            }
        };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
}
