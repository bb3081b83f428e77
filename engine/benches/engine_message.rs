//! One diff message end to end on one core: simd-json parse, exact decimals, sync check, book
//! apply with trim, and publish of the whole 1000-level book into shared memory.
//!
//! `engine_message/{2,20,100}_levels` measure one message with that many level changes; the
//! issue's target is at least 40 000 20-level messages per second per core (25 µs each).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ubdcc_engine::binance::wire::{DiffUpdate, StreamMessage};
use ubdcc_engine::{DepthCache, Exchange, Publisher};
use ubdcc_shm::{Decimal, SegmentConfig};

/// A spot combined-stream message with `levels` changes near the top of a book around 100.
fn message(first: u64, levels: usize) -> String {
    let level = |i: usize| {
        format!(
            "[\"{}.{:02}\",\"{}.{:08}\"]",
            99 - i / 100,
            99 - i % 100,
            1 + i,
            (i * 7919) % 100_000_000
        )
    };
    let bids: Vec<String> = (0..levels / 2).map(level).collect();
    let asks: Vec<String> = (0..levels - levels / 2)
        .map(|i| {
            format!(
                "[\"{}.{:02}\",\"{}.00000000\"]",
                100 + i / 100,
                i % 100,
                2 + i
            )
        })
        .collect();
    format!(
        r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT","U":{first},"u":{first},"b":[{}],"a":[{}]}}}}"#,
        bids.join(","),
        asks.join(",")
    )
}

fn synced_cache(publisher: &mut Publisher) -> DepthCache {
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 1000, publisher)
        .expect("room in the segment");
    let side = |base: u64, step: i64| -> Vec<_> {
        (0..1000i64)
            .map(|i| ubdcc_engine::binance::wire::LevelUpdate {
                price: Decimal::new((base as i64 + step * i) as u64, -2),
                quantity: Decimal::new(100_000_000, -8),
            })
            .collect()
    };
    let (bids, asks) = (side(9_999, -1), side(10_000, 1));
    cache
        .on_snapshot(0, &bids, &asks, 0, publisher)
        .expect("snapshot");
    cache
}

fn per_message(c: &mut Criterion) {
    let cluster = format!("benchmsg{}", std::process::id());
    let mut publisher = Publisher::new(
        SegmentConfig::new(cluster.as_str(), "dcn")
            .books(4)
            .levels_per_side(1000)
            .create()
            .expect("segment"),
    );
    let mut group = c.benchmark_group("engine_message");
    group.throughput(Throughput::Elements(1));
    for levels in [2usize, 20, 100] {
        let mut cache = synced_cache(&mut publisher);
        let mut update_id = 1u64;
        let template = message(1, levels);
        group.bench_function(format!("{levels}_levels"), |b| {
            b.iter_batched(
                // Untimed: each message carries the next update id, as a live stream does, and
                // simd-json needs its own mutable copy.
                || {
                    let buffer = template
                        .replacen(
                            "\"U\":1,\"u\":1",
                            &format!("\"U\":{update_id},\"u\":{update_id}"),
                            1,
                        )
                        .into_bytes();
                    update_id += 1;
                    buffer
                },
                |mut buffer| {
                    let StreamMessage::Depth { update, .. } =
                        StreamMessage::parse(black_box(&mut buffer)).expect("valid")
                    else {
                        panic!("not a depth message")
                    };
                    let diff = DiffUpdate::try_from(update).expect("decimals");
                    cache.on_update(diff, 0, &mut publisher).expect("publish")
                },
                BatchSize::SmallInput,
            )
        });
        cache.remove(&mut publisher).expect("remove");
    }
    group.finish();
}

criterion_group!(benches, per_message);
criterion_main!(benches);
