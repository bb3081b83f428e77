//! Scale bench of issue 11 item 5: a mass disconnect of every book of one DCN. Prints how long
//! until all books were synced again, the most REST weight used in any minute against the
//! budget, the 429/418 answers, the bytes the books buffered meanwhile (against the node's
//! budget) and the process's peak RSS during the resync.
//!
//! ```text
//! cargo bench --bench mass_resync -- [--books 1000] [--rate 20] [--weight-share 0.9]
//!                                    [--node-budget-mb 64] [--book-budget-kb 1024]
//! ```
//!
//! The simulator (its own runtime) and the engine's node (another runtime) run in this process,
//! the node exactly as `ubdcc dcn` runs it, against the simulator's real spot weight limit
//! (6 000 a minute): a first sync of 1 000 books costs 50 000 weight, ~9 minutes at a 0.9 share,
//! and the resync after the disconnect as much again. Every market moves `--rate` events a
//! second. The fault is the simulator's `disconnect` (no close frame, as a network failure):
//! every book goes out of sync and buffers its events until its snapshot's turn comes, which is
//! where the buffer bounds matter. `--node-budget-mb 100000 --book-budget-kb 100000000` gives
//! effectively unbounded buffers (only the 10 000-event cap per book that the engine always had),
//! the "before" figure.
//!
//! Peak RSS is the kernel's `VmHWM`, reset (`/proc/self/clear_refs`) just before the fault, so
//! it covers the resync only. With the simulator in this process it includes the simulator's
//! memory (its history of every market); `--sim HOST:PORT` uses one started apart instead
//! (`ubdcc sim --markets 1000 --rate 20`), so the figure is the engine's alone (per DCN).

#[path = "support/node.rs"]
mod node;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use ubdcc_engine::{EndpointOverrides, Exchange, NodeConfig, NodeHandle};
use ubdcc_sim::SimConfig;

/// How the bench is set up.
struct Options {
    books: usize,
    rate: u32,
    weight_share: f64,
    node_budget_mb: usize,
    book_budget_kb: usize,
    /// A simulator already running (`ubdcc sim`), so the peak RSS is the engine's alone.
    sim: Option<SocketAddr>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            books: 1000,
            rate: 20,
            weight_share: 0.9,
            node_budget_mb: ubdcc_engine::BUFFER_BYTES_PER_NODE >> 20,
            book_budget_kb: ubdcc_engine::BUFFER_BYTES_PER_BOOK >> 10,
            sim: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().context("a value after each option");
            match arg.as_str() {
                "--books" => options.books = value()?.parse()?,
                "--rate" => options.rate = value()?.parse()?,
                "--weight-share" => options.weight_share = value()?.parse()?,
                "--node-budget-mb" => options.node_budget_mb = value()?.parse()?,
                "--book-budget-kb" => options.book_budget_kb = value()?.parse()?,
                "--sim" => options.sim = Some(value()?.parse()?),
                // `cargo bench` passes `--bench`.
                _ => {}
            }
        }
        Ok(options)
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let sim_rt = Runtime::new()?;
    let engine_rt = Runtime::new()?;
    let sim = match options.sim {
        Some(address) => address,
        None => sim_rt.block_on(start_sim(&options))?,
    };
    let handle = engine_rt.block_on(start_node(&options, sim))?;

    let first = wait_all_synced(&engine_rt, &handle, options.books, Instant::now())?;
    eprintln!(" first sync after {:.1} s", first.as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));

    let before = http(sim, "GET", "/sim/stats", None)?;
    let downloads_before = stat(&handle, |s| &s.downloads);
    let engine_429_before =
        stat(&handle, |s| &s.responses_429) + stat(&handle, |s| &s.responses_418);
    let rss_before_kb = proc_status_kb("VmRSS:");
    // Reset the peak: from here VmHWM covers the resync only.
    std::fs::write("/proc/self/clear_refs", "5").ok();
    let budget = handle.buffer_budget();
    let overflows_before = budget.overflows();
    let trimmed_before = budget.trimmed();

    http(
        sim,
        "POST",
        "/sim/control",
        Some(&json!({"fault": "disconnect"})),
    )?;
    let cut = Instant::now();
    let mut most_buffered = 0;
    let mut left_sync = false;
    let took = loop {
        most_buffered = most_buffered.max(budget.used());
        let (synced, _) = engine_rt.block_on(node::census(&handle))?;
        left_sync |= synced < options.books;
        eprint!("\r{synced}/{} books synced again", options.books);
        if left_sync && synced == options.books {
            break cut.elapsed();
        }
        if cut.elapsed() > Duration::from_secs(1800) {
            bail!("only {synced} books synced 30 minutes after the disconnect");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!();
    let peak_rss_kb = proc_status_kb("VmHWM:");
    let after = http(sim, "GET", "/sim/stats", None)?;
    let rest = &after["rest"]["spot"];
    let limit = rest["weight_limit_1m"].as_u64().unwrap_or(0);
    let sim_rejections = |stats: &Value| {
        stats["rest"]["spot"]["responses_429"].as_u64().unwrap_or(0)
            + stats["rest"]["spot"]["responses_418"].as_u64().unwrap_or(0)
    };
    let budget_weight = (limit as f64 * options.weight_share) as u64;
    let in_process = if options.sim.is_some() {
        "the engine alone"
    } else {
        "engine and simulator"
    };

    println!(
        "mass_resync/spot: {} books on one DCN, {} events/s each, weight share {}, buffers: \
         {} KiB per book, {} MiB per node",
        options.books,
        options.rate,
        options.weight_share,
        options.book_budget_kb,
        options.node_budget_mb
    );
    println!("  first sync:                 {:.1} s", first.as_secs_f64());
    println!("  all synced again after:     {:.1} s", took.as_secs_f64());
    println!(
        "  snapshots spent:            {}",
        stat(&handle, |s| &s.downloads) - downloads_before
    );
    println!(
        "  most weight in a minute:    {} used, {} requested (budget {budget_weight}, limit {limit})",
        rest["max_used_weight_1m"], rest["max_requested_weight_1m"]
    );
    println!(
        "  429/418 during the resync:  {} (simulator), {} (engine)",
        sim_rejections(&after) - sim_rejections(&before),
        stat(&handle, |s| &s.responses_429) + stat(&handle, |s| &s.responses_418)
            - engine_429_before
    );
    println!(
        "  buffered events, most:      {:.1} MiB (node budget {} MiB)",
        most_buffered as f64 / f64::from(1 << 20),
        options.node_budget_mb
    );
    println!(
        "  buffer overflows / trimmed: {} books / {} events",
        budget.overflows() - overflows_before,
        budget.trimmed() - trimmed_before
    );
    println!(
        "  RSS before the cut:         {:.0} MiB ({in_process})",
        rss_before_kb as f64 / 1024.0
    );
    println!(
        "  peak RSS during the resync: {:.0} MiB (VmHWM since the cut)",
        peak_rss_kb as f64 / 1024.0
    );
    Ok(())
}

/// Waits until every book is synced; the time since `since`.
fn wait_all_synced(
    runtime: &Runtime,
    handle: &NodeHandle,
    books: usize,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let (synced, _) = runtime.block_on(node::census(handle))?;
        eprint!("\r{synced}/{books} books synced");
        if synced == books {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(1800) {
            bail!("only {synced} books synced after 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the simulator on a free port with `books` spot markets at Binance's spot limit.
async fn start_sim(options: &Options) -> anyhow::Result<SocketAddr> {
    let config = SimConfig::builder()
        .markets(options.books)
        .rate_hz(options.rate)
        .history(Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(ubdcc_sim::run(listener, config, std::future::pending()));
    Ok(address)
}

/// Starts a node as `ubdcc dcn` does, with the bench's buffer bounds, and adds every book.
async fn start_node(options: &Options, sim: SocketAddr) -> anyhow::Result<NodeHandle> {
    let mut config = NodeConfig::new(format!("bench{}", std::process::id()), "dcn-resync");
    let exchange = Exchange::BinanceCom;
    let endpoint = format!("{exchange}=http://{sim}");
    config.endpoints = EndpointOverrides::parse([endpoint.as_str()])?;
    config.max_books = u32::try_from(options.books)?.max(1);
    config.weight_share = options.weight_share;
    config.buffer_bytes_per_node = options.node_budget_mb.saturating_mul(1 << 20);
    config.buffer_bytes_per_book = options.book_budget_kb.saturating_mul(1 << 10);
    // No audits (issue 16, on by default): their snapshots would count with the resyncs'.
    config.audit_interval = None;
    node::start_with_books(config, exchange, options.books).await
}

fn stat(
    handle: &NodeHandle,
    counter: impl Fn(&ubdcc_engine::SnapshotStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    counter(&handle.snapshot_stats()).load(std::sync::atomic::Ordering::Relaxed)
}

/// A `kB` line of `/proc/self/status` (`VmRSS:`, `VmHWM:`); 0 where there is none.
fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.0 request to the simulator's JSON API.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(address)?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (_, json) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    Ok(serde_json::from_str(json)?)
}
