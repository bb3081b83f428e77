//! `ubdcc shm`: look at a cluster's segments, and drive the torture-test pattern writer.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ubdcc_shm::{ClusterReader, HEARTBEAT_INTERVAL, SegmentConfig, test_pattern};

use crate::cli::{ListArgs, TestPatternArgs};

/// Prints every book of the cluster, one line per replica.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let mut reader = ClusterReader::open(&args.cluster)
        .with_context(|| format!("opening cluster {:?}", args.cluster))?;
    let books = reader.list();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36} {:<24} {:<28} STATUS",
        "EXCHANGE", "MARKET", "SEGMENT"
    )?;
    for book in &books {
        let status = match &book.status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unreadable: {error}"),
        };
        writeln!(
            out,
            "{:<36} {:<24} {:<28} {status}",
            book.exchange, book.market, book.segment
        )?;
    }
    for error in reader.open_errors() {
        writeln!(out, "warning: {error}")?;
    }
    writeln!(
        out,
        "{} books in {} segments of cluster '{}'",
        books.len(),
        reader.segments().len(),
        args.cluster
    )?;
    Ok(())
}

/// Publishes pattern versions 1, 2, 3, … round-robin over the books, with a heartbeat, and prints
/// `ready <segment>` once the first version of every book is visible.
pub fn test_pattern(args: &TestPatternArgs) -> anyhow::Result<()> {
    let mut writer = SegmentConfig::new(args.cluster.as_str(), args.dcn.as_str())
        .books(args.books)
        .levels_per_side(args.levels)
        .create()
        .context("creating the pattern segment")?;
    let mut handles = Vec::new();
    for i in 0..args.books {
        handles.push(writer.add_book("binance.com", &format!("PATTERN{i}"))?);
    }
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    let publish =
        |writer: &mut ubdcc_shm::SegmentWriter, k: u64, bids: &mut Vec<_>, asks: &mut Vec<_>| {
            let book = handles[(k % handles.len() as u64) as usize];
            test_pattern::fill(k, args.levels, bids, asks);
            writer.publish(
                book,
                &test_pattern::meta(k),
                &test_pattern::sides(bids, asks),
            )
        };
    let mut k = 1;
    while k <= handles.len() as u64 {
        publish(&mut writer, k, &mut bids, &mut asks)?;
        k += 1;
    }
    writer.heartbeat();
    println!("ready {}", writer.name());
    std::io::stdout().flush()?;

    let started = Instant::now();
    let deadline = (args.duration > 0).then(|| started + Duration::from_secs(args.duration));
    let pause = (args.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / args.rate));
    let mut last_beat = Instant::now();
    loop {
        publish(&mut writer, k, &mut bids, &mut asks)?;
        k += 1;
        if let Some(pause) = pause {
            sleep_beating(&writer, pause);
        }
        // Checking the clock costs more than a publish of a small book, so do it every 256.
        if k % 256 != 0 && pause.is_none() {
            continue;
        }
        let now = Instant::now();
        if now.duration_since(last_beat) >= HEARTBEAT_INTERVAL {
            writer.heartbeat();
            last_beat = now;
        }
        if deadline.is_some_and(|deadline| now >= deadline) {
            tracing::info!(versions = k - 1, "pattern writer done");
            return Ok(());
        }
    }
}

/// Sleeps for `pause` in slices of at most one heartbeat interval, beating after each, so a slow
/// `--rate` never looks like a hung writer.
fn sleep_beating(writer: &ubdcc_shm::SegmentWriter, pause: Duration) {
    let mut left = pause;
    while !left.is_zero() {
        let slice = left.min(HEARTBEAT_INTERVAL);
        std::thread::sleep(slice);
        left -= slice;
        if !left.is_zero() {
            writer.heartbeat();
        }
    }
}
