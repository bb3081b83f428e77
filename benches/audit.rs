//! Audit bench (issue 16): what audits cost and how fast they repair a book.
//!
//! ```text
//! cargo bench --bench audit -- [--books 1000] [--rate 1] [--share 0.5] [--minutes 2]
//!                              [--repairs 3] [--audit-secs 30] [--cpu-rounds 200]
//!                              [--warmup-secs 90]
//! ```
//!
//! 1. **CPU per audit**, without the network: a synced 1 000 x 1 000-level spot book in a
//!    segment; each round begins an audit and hands it a 1 000-level snapshot at the live update
//!    id (the book built beside the live one, the level-by-level comparison, the audit record
//!    published), once agreeing and once with one level changed (the book replaced and published
//!    whole). The download and JSON parse of the snapshot are not included (they are the
//!    snapshot scheduler's, measured by the snapshot benches).
//! 2. **Weight and pace at `--books` books**, live: the simulator (Binance's spot limit, 6 000
//!    weight a minute) and a node in this process, every market moving `--rate` events a second.
//!    The books sync at a full share, then the share drops to `--share`; after `--warmup-secs`
//!    (the sync's weight leaves the budget's minute, and the first audits come due) audits run
//!    for `--minutes`: audits a minute, REST weight a minute (all of it audits: nothing else asks for
//!    snapshots then), and the audit cycle this gives (`books / audits a minute`).
//! 3. **Silent change to repair**: `--repairs` times, a level 300 down one book's bids is changed
//!    without an event (`silent_change`), and the time until an audit has replaced the book is
//!    measured. With many books it is bounded by the cycle above (busy books first); with few by
//!    `--audit-secs`.
//!
//! No assertion on time: the figures go to the README. The machine is shared; say so with them.

#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/node.rs"]
mod node;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::runtime::Runtime;
use ubdcc_engine::binance::wire::LevelUpdate;
use ubdcc_engine::{
    AuditStep, BufferBudget, DepthCache, EndpointOverrides, Exchange, NodeConfig, Publisher,
    Snapshot,
};
use ubdcc_shm::{BookStatus, ClusterReader, Decimal, SegmentConfig};
use ubdcc_sim::SimConfig;

use cluster::{get_json, post_json};

struct Options {
    books: usize,
    rate: u32,
    share: f64,
    minutes: u64,
    repairs: usize,
    audit_secs: u64,
    cpu_rounds: usize,
    warmup_secs: u64,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            books: 1000,
            rate: 1,
            share: 0.5,
            minutes: 2,
            repairs: 3,
            audit_secs: 30,
            cpu_rounds: 200,
            warmup_secs: 90,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().context("a value after each option");
            match arg.as_str() {
                "--books" => options.books = value()?.parse()?,
                "--rate" => options.rate = value()?.parse()?,
                "--share" => options.share = value()?.parse()?,
                "--minutes" => options.minutes = value()?.parse()?,
                "--repairs" => options.repairs = value()?.parse()?,
                "--audit-secs" => options.audit_secs = value()?.parse()?,
                "--cpu-rounds" => options.cpu_rounds = value()?.parse()?,
                "--warmup-secs" => options.warmup_secs = value()?.parse()?,
                // `cargo bench` passes `--bench`.
                _ => {}
            }
        }
        Ok(options)
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    cpu_per_audit(options.cpu_rounds)?;
    live(&options)
}

/// A 1 000-level side around 100.00, best first; `bump` adds one lot to level 300.
fn side(bids: bool, bump: bool) -> Vec<LevelUpdate> {
    (0..1000u64)
        .map(|i| {
            let price = if bids { 9_999 - i } else { 10_001 + i };
            let lots = 1 + i % 7 + u64::from(bump && i == 300);
            LevelUpdate {
                price: Decimal::new(price, -2),
                quantity: Decimal::new(lots, -3),
            }
        })
        .collect()
}

fn snapshot(bump: bool) -> Snapshot {
    Snapshot {
        last_update_id: 10,
        depth: 1000,
        bids: side(true, bump),
        asks: side(false, false),
        exchange_time_ms: None,
    }
}

/// Part 1: CPU per audit, agreeing and repairing.
fn cpu_per_audit(rounds: usize) -> anyhow::Result<()> {
    let cluster = format!("benchaudit{}", std::process::id());
    let mut publisher = Publisher::new(
        SegmentConfig::new(&cluster, "cpu")
            .books(4)
            .levels_per_side(1000)
            .create()?,
    );
    let mut cache = DepthCache::new(Exchange::BinanceCom, "SIM0USDT", 1000, &mut publisher)?;
    let (right, wrong) = (snapshot(false), snapshot(true));
    cache.on_starting_book(&right, 0, &mut publisher)?;
    let budget = BufferBudget::new(16 << 20);
    for (what, audited) in [("agreeing", &right), ("repairing", &wrong)] {
        let started = Instant::now();
        for round in 0..rounds {
            // The repairing case alternates, so every audit finds one level to repair.
            let audited = match (what, round % 2) {
                ("repairing", 1) => &right,
                _ => audited,
            };
            if !cache.begin_audit(budget.clone()) {
                bail!("the book could not be audited");
            }
            match cache.on_audit_snapshot(audited, &mut publisher)? {
                AuditStep::Verified | AuditStep::Repaired(_) => {}
                other => bail!("audit ended {other:?}"),
            }
        }
        let each = started.elapsed() / u32::try_from(rounds.max(1))?;
        println!(
            "cpu per audit ({what}, 1 000 levels a side): {:.0} us",
            each.as_secs_f64() * 1e6
        );
    }
    let audits = cache.audits();
    println!(
        "  ({} audits, {} found the book wrong)",
        audits.audits, audits.audit_mismatches
    );
    remove_segments(&cluster);
    Ok(())
}

/// Parts 2 and 3, live against the simulator.
fn live(options: &Options) -> anyhow::Result<()> {
    let sim_rt = Runtime::new()?;
    let engine_rt = Runtime::new()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let sim = listener.local_addr()?.to_string();
    let config = SimConfig::builder()
        .markets(options.books)
        .rate_hz(options.rate)
        .build()
        .map_err(anyhow::Error::msg)?;
    sim_rt.spawn(async move {
        if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
            ubdcc_sim::run(listener, config, std::future::pending())
                .await
                .ok();
        }
    });
    let cluster = format!("benchauditlive{}", std::process::id());
    let mut config = NodeConfig::new(cluster.as_str(), "dcn-audit");
    config.endpoints = EndpointOverrides::parse([format!("binance.com=http://{sim}").as_str()])?;
    config.max_books = u32::try_from(options.books)? + 8;
    config.levels_per_side = 1000;
    // Sync at a full share; audits then get what `--share` leaves spare.
    config.weight_share = 1.0;
    config.audit_interval = Some(Duration::from_secs(options.audit_secs));
    let handle = engine_rt.block_on(node::start_with_books(
        config,
        Exchange::BinanceCom,
        options.books,
    ))?;
    let started = Instant::now();
    loop {
        let (synced, _) = engine_rt.block_on(node::census(&handle))?;
        eprint!("\r{synced}/{} books synced", options.books);
        if synced == options.books {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("only {synced} books synced after an hour");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(" after {:.0} s", started.elapsed().as_secs_f64());
    handle.set_weight_share(options.share);
    let mut reader = ClusterReader::open(&cluster)?;
    let symbols: Vec<String> = (0..options.books).map(|i| format!("SIM{i}USDT")).collect();
    let audits = |reader: &mut ClusterReader| -> u64 {
        symbols
            .iter()
            .filter_map(|s| reader.proof("binance.com", s).ok())
            .map(|info| u64::from(info.audit.audits))
            .sum()
    };

    // Part 2: a measured window of audits alone, once the sync's weight has left the budget.
    std::thread::sleep(Duration::from_secs(options.warmup_secs));
    let stats = handle.snapshot_stats();
    let weight = || stats.weight.load(std::sync::atomic::Ordering::Relaxed);
    let (audits_before, weight_before, window) = (audits(&mut reader), weight(), Instant::now());
    std::thread::sleep(Duration::from_secs(options.minutes * 60));
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let per_minute = (audits(&mut reader) - audits_before) as f64 / minutes;
    let weight_per_minute = (weight() - weight_before) as f64 / minutes;
    println!(
        "{} books, share {}: {per_minute:.1} audits a minute, {weight_per_minute:.0} REST weight a minute (of {:.0} the share allows), one audit of every book every {:.1} min",
        options.books,
        options.share,
        6000.0 * options.share,
        options.books as f64 / per_minute.max(f64::MIN_POSITIVE)
    );

    // Part 3: silent change to repair.
    let mut times = Vec::new();
    for round in 0..options.repairs {
        let symbol = &symbols[(round * 7919) % symbols.len()];
        let wrong = |reader: &mut ClusterReader| {
            reader
                .proof("binance.com", symbol)
                .map_or(0, |info| info.audit.audit_mismatches)
        };
        let before = wrong(&mut reader);
        post_json(
            &sim,
            "/sim/control",
            &json!({"fault": "silent_change", "family": "spot", "symbol": symbol, "level": 300}),
        )?;
        let changed = Instant::now();
        while wrong(&mut reader) == before {
            if changed.elapsed() > Duration::from_secs(7200) {
                bail!("{symbol} not repaired within two hours");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = changed.elapsed();
        let status = reader.info("binance.com", symbol)?.status;
        println!(
            "silent change in {symbol} repaired after {:.1} s (status {status:?})",
            took.as_secs_f64()
        );
        if status != BookStatus::Synced {
            bail!("{symbol} left sync");
        }
        times.push(took);
    }
    times.sort();
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        println!(
            "silent change to repair over {} rounds: min {:.1} s, median {:.1} s, max {:.1} s",
            times.len(),
            first.as_secs_f64(),
            times[times.len() / 2].as_secs_f64(),
            last.as_secs_f64()
        );
    }
    let stats = get_json(&sim, "/sim/stats")?;
    println!(
        "simulator: {} spot requests, {} 429s, {} 418s",
        stats["rest"]["spot"]["requests"],
        stats["rest"]["spot"]["responses_429"],
        stats["rest"]["spot"]["responses_418"]
    );
    drop(handle);
    engine_rt.shutdown_timeout(Duration::from_secs(1));
    sim_rt.shutdown_timeout(Duration::from_secs(1));
    remove_segments(&cluster);
    Ok(())
}

/// Removes the segments a run of `cluster` left in `/dev/shm`.
fn remove_segments(cluster: &str) {
    for entry in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("ubdcc.{cluster}."))
        {
            std::fs::remove_file(entry.path()).ok();
        }
    }
}
