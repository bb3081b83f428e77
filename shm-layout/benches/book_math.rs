//! What a trading loop computes on a book (issue 14), and the whole-book read it computes on.
//!
//! - `book_math/fill_price_10_levels`: `fill_price` of a buy that walks exactly 10 ask levels
//!   (the target: ≤ 1 µs).
//! - `book_math/depth_stats_top10_3_bands`: `depth_stats` over a 1 000-level book around 100.00
//!   with a tick of 0.01, imbalance of the top 10, bands of 10, 50 and 100 bps (10, 50 and 100
//!   levels a side inside them).
//! - `book_math/get_book_top10`: `ClusterReader::get_book` of the top 10 of both sides of a
//!   1 000-level pattern book from one seqlock section (allocates the two vectors), and
//!   `book_math/read_book_top10`, the same into reused buffers.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use ubdcc_shm::{
    ClusterReader, FillAmount, Level, LevelQuery, SegmentConfig, depth_stats, fill_price,
    test_pattern,
};

/// `n` levels a side around 100.00, tick 0.01, quantity 1.0 + i / 100.
fn book(n: usize) -> (Vec<Level>, Vec<Level>) {
    let level = |price: f64, i: usize| Level {
        price,
        quantity: 1.0 + i as f64 / 100.0,
    };
    let bids = (0..n).map(|i| level(99.99 - i as f64 * 0.01, i)).collect();
    let asks = (0..n).map(|i| level(100.01 + i as f64 * 0.01, i)).collect();
    (bids, asks)
}

fn math(c: &mut Criterion) {
    let (bids, asks) = book(1000);
    let ten: &[Level] = &asks[..10];
    // Just under the 10 levels' total quantity, so the fill stops inside the tenth.
    let amount = FillAmount::Base(ten.iter().map(|l| l.quantity).sum::<f64>() - 0.5);
    assert_eq!(fill_price(ten, amount).levels_used, 10);
    let bands = [10.0, 50.0, 100.0];
    let mut group = c.benchmark_group("book_math");
    group.bench_function("fill_price_10_levels", |b| {
        b.iter(|| fill_price(black_box(ten), black_box(amount)));
    });
    group.bench_function("depth_stats_top10_3_bands", |b| {
        b.iter(|| depth_stats(black_box(&bids), black_box(&asks), 10, black_box(&bands)));
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let cluster = format!("benchmath{}", std::process::id());
    let mut writer = SegmentConfig::new(cluster.as_str(), "dcn")
        .books(1)
        .levels_per_side(1000)
        .create()
        .expect("create");
    let book = writer.add_book("binance.com", "BOOK1000").expect("add");
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    // Version 999 has 999 levels a side.
    test_pattern::fill(999, 1000, &mut bids, &mut asks);
    writer
        .publish(
            book,
            &test_pattern::meta(999),
            &test_pattern::sides(&bids, &asks),
        )
        .expect("publish");
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
    let top10 = LevelQuery::top(10);
    let mut group = c.benchmark_group("book_math");
    group.bench_function("get_book_top10", |b| {
        b.iter(|| {
            reader
                .get_book(black_box("binance.com"), black_box("BOOK1000"), &top10)
                .expect("get_book")
        });
    });
    let (mut bid_buf, mut ask_buf) = (Vec::with_capacity(1000), Vec::with_capacity(1000));
    group.bench_function("read_book_top10", |b| {
        b.iter(|| {
            reader
                .read_book(
                    black_box("binance.com"),
                    black_box("BOOK1000"),
                    &top10,
                    &mut bid_buf,
                    &mut ask_buf,
                )
                .expect("read_book")
        });
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    beater.join().expect("heartbeat thread");
    drop(writer);
}

criterion_group!(benches, math, reads);
criterion_main!(benches);
