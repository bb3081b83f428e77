//! Publishing books into shared memory: one seqlock section per new version of a book.
//!
//! - `shm_publish/20_levels`: 20 levels per side plus metadata (a typical top-of-book update).
//! - `shm_publish/1000_levels`: a full 1000-level book (a snapshot).
//! - `shm_publish/meta_only`: status and ids only (marking a book out of sync).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ubdcc_shm::{SegmentConfig, test_pattern};

fn publish(c: &mut Criterion) {
    let cluster = format!("benchpub{}", std::process::id());
    let mut writer = SegmentConfig::new(cluster.as_str(), "dcn")
        .books(4)
        .levels_per_side(1000)
        .create()
        .expect("create");
    let book = writer.add_book("binance.com", "BTCUSDT").expect("add");
    let mut group = c.benchmark_group("shm_publish");
    for (name, levels) in [("20_levels", 20u32), ("1000_levels", 1000)] {
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        test_pattern::fill(999, levels, &mut bids, &mut asks);
        let meta = test_pattern::meta(999);
        group.bench_function(name, |b| {
            b.iter(|| {
                writer
                    .publish(
                        book,
                        black_box(&meta),
                        &test_pattern::sides(black_box(&bids), black_box(&asks)),
                    )
                    .expect("publish")
            })
        });
    }
    let meta = test_pattern::meta(1);
    group.bench_function("meta_only", |b| {
        b.iter(|| {
            writer
                .publish_meta(book, black_box(&meta))
                .expect("publish")
        })
    });
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
