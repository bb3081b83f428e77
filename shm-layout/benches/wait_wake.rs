//! Waking waiters: what every publish pays for its two `FUTEX_WAKE`s (whether anyone waits or
//! not), and how soon a waiter sleeping in `wait_for_update` runs after a publish.
//!
//! - `wait_wake/publish_edits_top`: `publish_edits` replacing the best ask (the common update:
//!   metadata, one level, the best levels, the change stamp and both wakes).
//! - `wait_wake/publish_edits_deep`: the same at best index 500.
//! - `wait_wake/top_hash`: `top_hash` of 20 levels a side (what the engine pays once per
//!   exchange second and book for the replicas cross-check; until issue 16's rework the writer
//!   paid it at every publish that reached the top).
//! - `wait_wake/publish_meta`: metadata only, to compare with `shm_publish/meta_only` of the
//!   same build and of layout 2 (whose publishes woke nobody).
//! - `wait_wake/publish_to_wake`: ping-pong between two threads, each with its own segment and
//!   `ClusterReader`: thread A publishes PING and waits for PONG, thread B waits for PING and
//!   publishes PONG. Half a round trip is the latency from a publish to its waiter running.
//! - `wait_wake/wait_already_changed`: `wait_for_update` when the book already changed (the
//!   lookup, one liveness check and two loads; no syscall).
//! - `wait_wake/scan_1000_books`: after a `wait_for_any`, what a push server does next: the
//!   change stamp of each of 1 000 books of a segment (`ClusterReader::changes`), to find the
//!   ones that changed.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ubdcc_shm::{
    BookEdits, BookHandle, BookMeta, BookStatus, ClusterReader, LevelEdit, RawLevel, SegmentConfig,
    SegmentWriter, WaitOutcome, test_pattern, top_hash,
};

const LONG: Duration = Duration::from_secs(10);

/// A segment of `dcn` with one synced pattern book `market` of 1000 levels a side.
fn segment(cluster: &str, dcn: &str, market: &str) -> (SegmentWriter, BookHandle) {
    let mut writer = SegmentConfig::new(cluster, dcn)
        .books(2)
        .levels_per_side(1000)
        .create()
        .expect("create");
    let book = writer.add_book("binance.com", market).expect("add");
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    test_pattern::fill(999, 1000, &mut bids, &mut asks);
    writer
        .publish(
            book,
            &test_pattern::meta(999),
            &test_pattern::sides(&bids, &asks),
        )
        .expect("publish");
    (writer, book)
}

fn publish_costs(c: &mut Criterion) {
    let cluster = format!("benchwake{}", std::process::id());
    let (mut writer, book) = segment(&cluster, "dcn", "BOOK");
    let mut group = c.benchmark_group("wait_wake");
    for (name, at) in [("publish_edits_top", 0), ("publish_edits_deep", 500)] {
        let mut k = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                k += 1;
                let edit = [LevelEdit::Replace {
                    at,
                    level: RawLevel {
                        price: 10_000_000 + at as u64,
                        quantity: k,
                    },
                }];
                let edits = BookEdits {
                    bids: &[],
                    asks: black_box(&edit),
                };
                writer
                    .publish_edits(book, &test_pattern::meta(k), &edits)
                    .expect("publish")
            })
        });
    }
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    test_pattern::fill(999, 20, &mut bids, &mut asks);
    group.bench_function("top_hash", |b| {
        b.iter(|| {
            top_hash(
                test_pattern::PRICE_EXPONENT,
                test_pattern::QUANTITY_EXPONENT,
                black_box(&bids),
                black_box(&asks),
            )
        })
    });
    let meta = test_pattern::meta(1);
    group.bench_function("publish_meta", |b| {
        b.iter(|| {
            writer
                .publish_meta(book, black_box(&meta))
                .expect("publish")
        })
    });

    let beat = writer.heartbeat_handle();
    let mut reader = ClusterReader::open(&cluster).expect("open");
    group.bench_function("wait_already_changed", |b| {
        b.iter(|| {
            // Criterion's pauses between batches outlast the hung threshold.
            beat.beat();
            reader
                .wait_for_update("binance.com", "BOOK", black_box(0), LONG)
                .expect("wait")
        })
    });
    group.finish();
}

/// Publishes `book` once more (metadata only: the cheapest publish, so the figure is the wake).
fn ping(writer: &mut SegmentWriter, book: BookHandle, k: u64) {
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: k,
        ..BookMeta::starting()
    };
    writer.publish_meta(book, &meta).expect("publish");
}

/// Waits for the book past `seen`; returns the new stamp.
fn wait(reader: &mut ClusterReader, market: &str, seen: u64) -> u64 {
    match reader
        .wait_for_update("binance.com", market, seen, LONG)
        .expect("wait")
    {
        WaitOutcome::Changed(stamp) => stamp,
        WaitOutcome::TimedOut => panic!("no publish of {market} within {LONG:?}"),
    }
}

fn publish_to_wake(c: &mut Criterion) {
    let cluster = format!("benchpong{}", std::process::id());
    let (mut ping_writer, ping_book) = segment(&cluster, "a", "PING");
    let (mut pong_writer, pong_book) = segment(&cluster, "b", "PONG");
    let stop = Arc::new(AtomicBool::new(false));
    // Both heartbeats stay fresh between criterion's batches, which outlast the hung threshold.
    let beater = {
        let beats = [
            ping_writer.heartbeat_handle(),
            pong_writer.heartbeat_handle(),
        ];
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                beats.iter().for_each(|beat| beat.beat());
                std::thread::sleep(ubdcc_shm::HEARTBEAT_INTERVAL);
            }
        })
    };
    // The ponger's first stamp is read before the first ping: read after it, the ponger would
    // take that ping for the version it already saw and wait for the next forever.
    let mut ponger_reader = ClusterReader::open(&cluster).expect("open");
    let ponger_seen = ponger_reader.changes("binance.com", "PING").expect("ping");
    let ponger = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut reader, mut seen) = (ponger_reader, ponger_seen);
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                seen = wait(&mut reader, "PING", seen);
                k += 1;
                ping(&mut pong_writer, pong_book, k);
            }
        })
    };
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let mut seen = reader.changes("binance.com", "PONG").expect("pong");
    let mut k = 0;
    c.bench_function("wait_wake/publish_to_wake", |b| {
        b.iter_custom(|rounds| {
            let started = Instant::now();
            for _ in 0..rounds {
                k += 1;
                ping(&mut ping_writer, ping_book, k);
                seen = wait(&mut reader, "PONG", seen);
            }
            // Half a round trip: one publish and its waiter waking, each way.
            started.elapsed() / 2
        })
    });
    stop.store(true, Ordering::Relaxed);
    ping(&mut ping_writer, ping_book, k + 1);
    ponger.join().expect("ponger");
    beater.join().expect("beater");
}

fn scan_1000_books(c: &mut Criterion) {
    const BOOKS: u32 = 1000;
    let cluster = format!("benchscan{}", std::process::id());
    let mut writer = SegmentConfig::new(cluster.as_str(), "dcn")
        .books(BOOKS)
        .levels_per_side(20)
        .create()
        .expect("create");
    let markets: Vec<String> = (0..BOOKS).map(|i| format!("BOOK{i}")).collect();
    for (k, market) in markets.iter().enumerate() {
        let book = writer.add_book("binance.com", market).expect("add");
        ping(&mut writer, book, k as u64);
    }
    let beat = writer.heartbeat_handle();
    let mut reader = ClusterReader::open(&cluster).expect("open");
    c.bench_function("wait_wake/scan_1000_books", |b| {
        b.iter(|| {
            beat.beat();
            markets
                .iter()
                .map(|market| reader.changes("binance.com", market).expect("changes"))
                .max()
        })
    });
}

criterion_group!(benches, publish_costs, publish_to_wake, scan_1000_books);
criterion_main!(benches);
