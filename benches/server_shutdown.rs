//! Scale bench of issue 11: one DCN keeping 1 000 books from the simulator, then `serverShutdown`
//! on every stream connection. Prints how many books left sync and how many snapshots the
//! handover cost (the contract: 0 and 0), and how long the handover took.
//!
//! ```text
//! cargo bench --bench server_shutdown -- [--books 1000] [--family spot|futures] [--rate 5]
//!                                         [--close-after-ms 10000]
//! ```
//!
//! The simulator and the engine's node run in this process (the node exactly as `ubdcc dcn`
//! runs it), so the simulator's REST weight limit can be raised: the bench is about the handover,
//! not about how long 1 000 first snapshots take under Binance's limits. Spot carries up to 1 024
//! streams per connection (one connection for 1 000 books), futures 200 (five connections).
//! `--close-after-ms` is how long the simulator keeps an announced connection open; with 0 it
//! closes at once and no client can avoid a resync (break-before-make, for comparison: then the
//! bench also reports when the books were back in sync). `--weight-share` (default 0.9) is the
//! DCN's share of the REST weight limit; the engine's own budget (spot: 6 000 a minute, 50 per
//! snapshot) makes the first sync of 1 000 spot books take about nine minutes at 0.9.

#[path = "support/node.rs"]
mod node;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use ubdcc_engine::{EndpointOverrides, Exchange, NodeConfig, NodeHandle};
use ubdcc_shm::BookStatus;
use ubdcc_sim::{Family, SimConfig};

/// How the bench is set up.
struct Options {
    books: usize,
    family: Family,
    rate: u32,
    close_after_ms: u64,
    weight_share: f64,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            books: 1000,
            family: Family::Spot,
            rate: 5,
            close_after_ms: 10_000,
            weight_share: 0.9,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().context("a value after each option");
            match arg.as_str() {
                "--books" => options.books = value()?.parse()?,
                "--rate" => options.rate = value()?.parse()?,
                "--close-after-ms" => options.close_after_ms = value()?.parse()?,
                "--weight-share" => options.weight_share = value()?.parse()?,
                "--family" => {
                    options.family = match value()?.as_str() {
                        "spot" => Family::Spot,
                        "futures" => Family::Futures,
                        other => bail!("--family spot or futures, not {other}"),
                    }
                }
                // `cargo bench` passes `--bench`.
                _ => {}
            }
        }
        Ok(options)
    }

    fn exchange(&self) -> Exchange {
        match self.family {
            Family::Futures => Exchange::BinanceComFutures,
            _ => Exchange::BinanceCom,
        }
    }

    fn family_name(&self) -> &'static str {
        match self.family {
            Family::Futures => "futures",
            _ => "spot",
        }
    }

    fn venue_name(&self) -> &'static str {
        match self.family {
            Family::Futures => "fstream",
            _ => "spot",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sim = runtime.block_on(start_sim(&options))?;
    let handle = runtime.block_on(start_node(&options, sim))?;

    let started = Instant::now();
    loop {
        let (synced, _) = runtime.block_on(node::census(&handle))?;
        eprint!("\r{synced}/{} books synced", options.books);
        if synced == options.books {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {synced} books synced after 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(" after {:.1} s", started.elapsed().as_secs_f64());
    // Let every first subscription and snapshot settle before the fault.
    std::thread::sleep(Duration::from_secs(2));

    let before = http(sim, "GET", "/sim/stats", None)?;
    let (_, resyncs_before) = runtime.block_on(node::census(&handle))?;
    let downloads_before = downloads(&handle);
    let venue = options.venue_name();
    let connections = before["websocket"][venue]["connections_open"]
        .as_u64()
        .unwrap_or(0);
    let fault = json!({"fault": "server_shutdown", "close_after_ms": options.close_after_ms});
    http(sim, "POST", "/sim/control", Some(&fault))?;
    let announced = Instant::now();

    // Watch every book until each connection has a successor and the old ones are closed, and
    // three seconds more (a late resync would show there).
    let mut left_sync = vec![false; options.books];
    // For books that left sync: when they were synced again, after the announcement.
    let mut back: Vec<Option<Duration>> = vec![None; options.books];
    let mut most_out_at_once = 0;
    let mut handover: Option<Duration> = None;
    loop {
        let reports = runtime.block_on(handle.list())?;
        let mut out_now = 0;
        for report in &reports {
            let index: usize = report.spec.symbol[3..report.spec.symbol.len() - 4].parse()?;
            if report.meta.status != BookStatus::Synced {
                left_sync[index] = true;
                back[index] = None;
                out_now += 1;
            } else if left_sync[index] && back[index].is_none() {
                back[index] = Some(announced.elapsed());
            }
        }
        most_out_at_once = most_out_at_once.max(out_now);
        if handover.is_none() {
            let stats = http(sim, "GET", "/sim/stats", None)?;
            let ws = &stats["websocket"][venue];
            let opened = ws["connections_opened"].as_u64().unwrap_or(0);
            let opened_before = before["websocket"][venue]["connections_opened"]
                .as_u64()
                .unwrap_or(0);
            if opened >= opened_before + connections
                && ws["connections_open"].as_u64() == Some(connections)
            {
                handover = Some(announced.elapsed());
            }
        }
        if let Some(took) = handover
            && announced.elapsed() > took + Duration::from_secs(3)
            && out_now == 0
        {
            break;
        }
        if announced.elapsed() > Duration::from_secs(300) {
            bail!("no complete handover after 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = http(sim, "GET", "/sim/stats", None)?;
    let (synced_after, resyncs_after) = runtime.block_on(node::census(&handle))?;
    let family = options.family_name();
    let requests = |stats: &Value| stats["rest"][family]["requests"].as_u64().unwrap_or(0);

    println!(
        "server_shutdown/{family}: {} books on {connections} connection(s), {} events/s each, \
         connection closed {} ms after the announcement",
        options.books, options.rate, options.close_after_ms
    );
    println!(
        "  books that left sync:      {}",
        left_sync.iter().filter(|left| **left).count()
    );
    println!("  most out of sync at once:  {most_out_at_once}");
    println!(
        "  resyncs counted:           {}",
        resyncs_after - resyncs_before
    );
    println!(
        "  snapshots spent:           {} (simulator REST requests: {})",
        downloads(&handle) - downloads_before,
        requests(&after) - requests(&before)
    );
    println!(
        "  handover complete after:   {:.2} s (new connections open, old ones closed)",
        handover.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  synced at the end:         {synced_after}/{}",
        options.books
    );
    let mut returns: Vec<Duration> = back.into_iter().flatten().collect();
    returns.sort_unstable();
    if let (Some(first), Some(last)) = (returns.first(), returns.last()) {
        let within = |limit: u64| {
            returns
                .iter()
                .filter(|at| **at <= Duration::from_secs(limit))
                .count()
        };
        println!(
            "  back in sync:              first after {:.1} s, last after {:.1} s ({} within 5 s)",
            first.as_secs_f64(),
            last.as_secs_f64(),
            within(5)
        );
    }
    Ok(())
}

/// Starts the simulator on a free port with `books` markets per family and a REST limit no
/// first sync can reach.
async fn start_sim(options: &Options) -> anyhow::Result<SocketAddr> {
    let config = SimConfig::builder()
        .markets(options.books)
        .rate_hz(options.rate)
        .history(Duration::from_secs(10))
        .weight_limit(options.family, 10_000_000)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(ubdcc_sim::run(listener, config, std::future::pending()));
    Ok(address)
}

/// Starts a node as `ubdcc dcn` does and adds every book.
async fn start_node(options: &Options, sim: SocketAddr) -> anyhow::Result<NodeHandle> {
    let mut config = NodeConfig::new(format!("bench{}", std::process::id()), "dcn-shutdown");
    let exchange = options.exchange();
    let endpoint = format!("{exchange}=http://{sim}");
    config.endpoints = EndpointOverrides::parse([endpoint.as_str()])?;
    config.max_books = u32::try_from(options.books)?.max(1);
    config.weight_share = options.weight_share;
    // No audits (issue 16, on by default): their snapshots would count with the resyncs'.
    config.audit_interval = None;
    node::start_with_books(config, exchange, options.books).await
}

fn downloads(handle: &NodeHandle) -> u64 {
    handle
        .snapshot_stats()
        .downloads
        .load(std::sync::atomic::Ordering::Relaxed)
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
