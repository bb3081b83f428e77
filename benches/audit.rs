//! Audit bench (issue 16): what audits cost and how fast they repair a book.
//!
//! ```text
//! cargo bench --bench audit -- [--books 1000] [--rate 1] [--share 0.5] [--minutes 2]
//!                              [--repairs 3] [--audit-secs 30] [--cpu-rounds 200]
//!                              [--warmup-secs 90] [--cross-books 20] [--cross-rate 10]
//!                              [--cross-secs 60] [--cross-lifetime-secs 20]
//! ```
//! (`--books 0` or `--cross-books 0` leaves the live parts out.)
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
//! 4. **Replicas cross-check pace**: `--cross-books` markets moving `--cross-rate` events a
//!    second, each held by two nodes (two DCN segments of one cluster, audits off, connections
//!    handed over every `--cross-lifetime-secs`). A sampler does what each DCN's agent and mgmt
//!    do (`gateway::agent::dcn`, `gateway::mgmt::cross_check`): every 100 ms it samples each
//!    replica's `(update id, top hash)` into a history of the last 16 distinct samples; every
//!    second each replica "reports", and its history is compared with the other replica's last
//!    reported one at equal ids. Counted per book and minute: equal ids compared, and reports
//!    that met the other replica at least once — for the published top hash (taken at the end of
//!    each exchange second) and, for comparison, for the scheme it replaced (the writer hashed
//!    every publish at its own id: a sample was the book's id at the moment of sampling). A
//!    hash that differs at an equal id would be a false alarm (the replicas follow one stream)
//!    and is counted too, as are resyncs (a handover must never look like ids going backwards).
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
    cross_books: usize,
    cross_rate: u32,
    cross_secs: u64,
    cross_lifetime_secs: u64,
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
            cross_books: 20,
            cross_rate: 10,
            cross_secs: 60,
            cross_lifetime_secs: 20,
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
                "--cross-books" => options.cross_books = value()?.parse()?,
                "--cross-rate" => options.cross_rate = value()?.parse()?,
                "--cross-secs" => options.cross_secs = value()?.parse()?,
                "--cross-lifetime-secs" => options.cross_lifetime_secs = value()?.parse()?,
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
    if options.cross_books > 0 {
        cross_check(&options)?;
    }
    if options.books > 0 {
        live(&options)?;
    }
    Ok(())
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

/// Starts the simulator with `markets` spot markets moving `rate` events a second on `runtime`;
/// returns its address.
fn start_sim(runtime: &Runtime, markets: usize, rate: u32) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let sim = listener.local_addr()?.to_string();
    let config = SimConfig::builder()
        .markets(markets)
        .rate_hz(rate)
        .build()
        .map_err(anyhow::Error::msg)?;
    runtime.spawn(async move {
        if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
            ubdcc_sim::run(listener, config, std::future::pending())
                .await
                .ok();
        }
    });
    Ok(sim)
}

/// Distinct `(update id, top hash)` samples a replica keeps, as the DCN's agent does.
const SAMPLES: usize = 16;

/// One replica's samples of one book under one scheme, newest last, and what it last reported.
#[derive(Default, Clone)]
struct History {
    samples: Vec<(u64, u64)>,
    reported: Vec<(u64, u64)>,
}

impl History {
    fn sample(&mut self, sample: (u64, u64)) {
        if sample.0 > 0 && self.samples.last() != Some(&sample) {
            if self.samples.len() == SAMPLES {
                self.samples.remove(0);
            }
            self.samples.push(sample);
        }
    }
}

/// What a scheme's comparisons came to.
#[derive(Default)]
struct Met {
    /// Equal ids compared.
    compared: u64,
    /// Reports that met the other replica at one id at least.
    reports_meeting: u64,
    /// Reports made.
    reports: u64,
    /// Equal ids whose hashes differed.
    differing: u64,
}

impl Met {
    /// A report of `mine` compared with the other replica's last report, as mgmt compares them.
    fn report(&mut self, mine: &[(u64, u64)], theirs: &[(u64, u64)]) {
        self.reports += 1;
        let mut met = false;
        for &(id, hash) in mine {
            if let Some(&(_, their_hash)) =
                theirs.iter().rev().find(|(their_id, _)| *their_id == id)
            {
                met = true;
                self.compared += 1;
                self.differing += u64::from(hash != their_hash);
            }
        }
        self.reports_meeting += u64::from(met);
    }
}

/// Part 4: how often busy replicas meet at equal ids.
fn cross_check(options: &Options) -> anyhow::Result<()> {
    let sim_rt = Runtime::new()?;
    let engine_rt = Runtime::new()?;
    let books = options.cross_books;
    let sim = start_sim(&sim_rt, books, options.cross_rate)?;
    let cluster = format!("benchcross{}", std::process::id());
    let dcns = ["dcn-a", "dcn-b"];
    let mut handles = Vec::new();
    for dcn in dcns {
        let mut config = NodeConfig::new(cluster.as_str(), dcn);
        config.endpoints =
            EndpointOverrides::parse([format!("binance.com=http://{sim}").as_str()])?;
        config.max_books = u32::try_from(books)? + 8;
        // Each replica from its own snapshot, and only the cross-check's hash points.
        config.peer_seeding = false;
        config.audit_interval = None;
        config.max_connection_lifetime = Duration::from_secs(options.cross_lifetime_secs);
        handles.push(engine_rt.block_on(node::start_with_books(
            config,
            Exchange::BinanceCom,
            books,
        ))?);
    }
    let started = Instant::now();
    loop {
        let mut synced = 0;
        for handle in &handles {
            synced += engine_rt.block_on(node::census(handle))?.0;
        }
        if synced == 2 * books {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {synced} of {} replicas synced", 2 * books);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let resyncs_before: u64 = handles
        .iter()
        .map(|handle| {
            engine_rt
                .block_on(node::census(handle))
                .map(|census| census.1)
        })
        .sum::<anyhow::Result<u64>>()?;
    let mut readers = dcns
        .iter()
        .map(|dcn| ClusterReader::open_dcn(&cluster, dcn))
        .collect::<Result<Vec<_>, _>>()?;
    let symbols: Vec<String> = (0..books).map(|i| format!("SIM{i}USDT")).collect();
    // Per scheme (0: the published top hash, 1: the book's id when sampled), replica and book.
    let mut histories = vec![vec![vec![History::default(); books]; 2]; 2];
    let mut met = [Met::default(), Met::default()];
    let window = Instant::now();
    let mut tick = 0u64;
    while window.elapsed() < Duration::from_secs(options.cross_secs) {
        for (replica, reader) in readers.iter_mut().enumerate() {
            for (book, symbol) in symbols.iter().enumerate() {
                let Ok(proof) = reader.proof("binance.com", symbol) else {
                    continue;
                };
                if proof.status != BookStatus::Synced {
                    continue;
                }
                histories[0][replica][book].sample((proof.top_hash.update_id, proof.top_hash.hash));
                histories[1][replica][book].sample((proof.last_update_id, 0));
            }
        }
        // Each replica reports once a second, half a second apart.
        let reporting = match tick % 10 {
            0 => Some(0),
            5 => Some(1),
            _ => None,
        };
        if let Some(replica) = reporting {
            for (histories, met) in histories.iter_mut().zip(met.iter_mut()) {
                let (first, second) = histories.split_at_mut(1);
                let (mine, theirs) = match replica {
                    0 => (&mut first[0], &second[0]),
                    _ => (&mut second[0], &first[0]),
                };
                for (mine, theirs) in mine.iter_mut().zip(theirs) {
                    mine.reported = mine.samples.clone();
                    if !theirs.reported.is_empty() {
                        met.report(&mine.reported, &theirs.reported);
                    }
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let resyncs_after: u64 = handles
        .iter()
        .map(|handle| {
            engine_rt
                .block_on(node::census(handle))
                .map(|census| census.1)
        })
        .sum::<anyhow::Result<u64>>()?;
    for (name, met) in [
        ("top hash at the end of each exchange second", &met[0]),
        ("id at sampling (the scheme replaced)", &met[1]),
    ] {
        println!(
            "cross-check, {books} books x 2 replicas at {} events/s, {name}: {:.1} equal ids compared a minute per book, {:.0}% of reports met the other replica ({} of {}), {} differing hashes",
            options.cross_rate,
            met.compared as f64 / minutes / books as f64,
            100.0 * met.reports_meeting as f64 / met.reports.max(1) as f64,
            met.reports_meeting,
            met.reports,
            met.differing
        );
    }
    println!(
        "  resyncs meanwhile (connections handed over every {} s): {}",
        options.cross_lifetime_secs,
        resyncs_after - resyncs_before
    );
    drop(handles);
    engine_rt.shutdown_timeout(Duration::from_secs(1));
    sim_rt.shutdown_timeout(Duration::from_secs(1));
    remove_segments(&cluster);
    Ok(())
}

/// Parts 2 and 3, live against the simulator.
fn live(options: &Options) -> anyhow::Result<()> {
    let sim_rt = Runtime::new()?;
    let engine_rt = Runtime::new()?;
    let sim = start_sim(&sim_rt, options.books, options.rate)?;
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
