//! Whole-book copies for seeding a replica from a peer's segment, beside the hot read they share
//! their seqlock section with.
//!
//! - `copy_book/book1000`: `ClusterReader::copy_book` of an unchanged pattern book with 999 levels
//!   a side (both sides as raw mantissas, the info and a lock probe after the copy).
//! - `copy_book/book100`: the same for a 100-level book (a shallow start).
//! - `copy_book/read_top10`: `ClusterReader::read` of the top 10 asks of the 999-level book, to
//!   compare with `shm_read/top10` in `benches/shm_read.rs` and across versions of this crate.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use ubdcc_shm::{ClusterReader, LevelQuery, SegmentConfig, SegmentWriter, Side, test_pattern};

/// A segment with a 999-level book `BOOK1000` and a 100-level book `BOOK100`.
fn segment(cluster: &str) -> SegmentWriter {
    let mut writer = SegmentConfig::new(cluster, "dcn")
        .books(2)
        .levels_per_side(1000)
        .create()
        .expect("create");
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for (market, version) in [("BOOK1000", 999), ("BOOK100", 999)] {
        let book = writer.add_book("binance.com", market).expect("add");
        test_pattern::fill(version, 1000, &mut bids, &mut asks);
        if market == "BOOK100" {
            bids.truncate(100);
            asks.truncate(100);
        }
        writer
            .publish(
                book,
                &test_pattern::meta(version),
                &test_pattern::sides(&bids, &asks),
            )
            .expect("publish");
    }
    writer
}

fn copies(c: &mut Criterion) {
    let cluster = format!("benchcopy{}", std::process::id());
    let writer = segment(&cluster);
    // Keep the heartbeat fresh for the whole run: criterion's runs outlast the hung threshold.
    let beat = writer.heartbeat_handle();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let beater = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            beat.beat();
            std::thread::sleep(ubdcc_shm::HEARTBEAT_INTERVAL);
        }
    });
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let mut group = c.benchmark_group("copy_book");
    for market in ["BOOK1000", "BOOK100"] {
        let name = market.to_lowercase();
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                reader
                    .copy_book(black_box("binance.com"), black_box(market), None)
                    .expect("copy")
            });
        });
    }
    let mut out = Vec::with_capacity(1000);
    let top10 = LevelQuery::top(10);
    group.bench_function("read_top10", |b| {
        b.iter(|| {
            reader
                .read(
                    black_box("binance.com"),
                    black_box("BOOK1000"),
                    Side::Asks,
                    &top10,
                    &mut out,
                )
                .expect("read")
        });
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    beater.join().expect("heartbeat thread");
    drop(writer);
}

criterion_group!(benches, copies);
criterion_main!(benches);
