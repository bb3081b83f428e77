//! Applying level updates to a book: the ladder `OrderBook` against a `BTreeMap` side.
//!
//! The update stream is realistic for Binance: a 1000-level book per side, most changes within
//! the best 20 levels, a fifth of them deletions (re-added later), prices with 2 decimals. Each
//! iteration applies one batch of 1000 level updates and trims, so the figure per element is the
//! cost of one level update (`book_apply/ladder_1000_updates` ÷ 1000).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ubdcc_engine::OrderBook;
use ubdcc_shm::{Decimal, Side};

const DEPTH: usize = 1000;
const BATCH: usize = 1000;

/// Deterministic updates near the top of a book around 100.00.
fn updates() -> Vec<(Side, Decimal, Decimal)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..BATCH)
        .map(|_| {
            let r = next();
            let side = if r & 1 == 0 { Side::Bids } else { Side::Asks };
            // 80% within 20 ticks of the touch, the rest anywhere in the 1000-level window.
            let distance = if r % 5 == 0 {
                (r >> 8) % 1000
            } else {
                (r >> 8) % 20
            };
            let price = match side {
                Side::Bids => 10_000 - 1 - distance,
                Side::Asks => 10_000 + distance,
            };
            let quantity = if (r >> 40) % 5 == 0 {
                0
            } else {
                1 + (r >> 20) % 100_000
            };
            (side, Decimal::new(price, -2), Decimal::new(quantity, -3))
        })
        .collect()
}

fn full_book() -> OrderBook {
    let mut book = OrderBook::new(DEPTH);
    for i in 0..DEPTH as u64 {
        book.apply(
            Side::Bids,
            Decimal::new(10_000 - 1 - i, -2),
            Decimal::new(1000, -3),
        )
        .expect("fits");
        book.apply(
            Side::Asks,
            Decimal::new(10_000 + i, -2),
            Decimal::new(1000, -3),
        )
        .expect("fits");
    }
    book
}

/// The alternative: one ordered map per side, keyed by price mantissa, trimmed from the far end.
#[derive(Clone, Default)]
struct MapBook {
    bids: BTreeMap<u64, u64>,
    asks: BTreeMap<u64, u64>,
}

impl MapBook {
    fn apply(&mut self, side: Side, price: u64, quantity: u64) {
        let map = match side {
            Side::Bids => &mut self.bids,
            Side::Asks => &mut self.asks,
        };
        if quantity == 0 {
            map.remove(&price);
        } else {
            map.insert(price, quantity);
        }
    }

    fn trim(&mut self, depth: usize) {
        while self.bids.len() > depth {
            self.bids.pop_first();
        }
        while self.asks.len() > depth {
            self.asks.pop_last();
        }
    }
}

fn apply(c: &mut Criterion) {
    let updates = updates();
    let mut group = c.benchmark_group("book_apply");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut book = full_book();
    group.bench_function("ladder_1000_updates", |b| {
        b.iter(|| {
            for &(side, price, quantity) in &updates {
                book.apply(side, black_box(price), black_box(quantity))
                    .expect("fits");
            }
            book.trim();
        })
    });
    let mut map = MapBook::default();
    for i in 0..DEPTH as u64 {
        map.apply(Side::Bids, 10_000 - 1 - i, 1000);
        map.apply(Side::Asks, 10_000 + i, 1000);
    }
    let raw: Vec<(Side, u64, u64)> = updates
        .iter()
        .map(|&(side, p, q)| (side, p.mantissa(), q.mantissa()))
        .collect();
    group.bench_function("btreemap_1000_updates", |b| {
        b.iter(|| {
            for &(side, price, quantity) in &raw {
                map.apply(side, black_box(price), black_box(quantity));
            }
            map.trim(DEPTH);
        })
    });
    group.finish();

    // The engine's real per-message work: 20 level updates, trim, then read both sides best
    // first for the publish.
    let mut group = c.benchmark_group("book_message");
    let mut out = Vec::with_capacity(2 * DEPTH);
    let mut ladder_book = full_book();
    let mut chunks = updates.chunks(20).cycle();
    group.bench_function("ladder_20_updates_and_read", |b| {
        b.iter(|| {
            for &(side, price, quantity) in chunks.next().expect("cycle") {
                ladder_book.apply(side, price, quantity).expect("fits");
            }
            ladder_book.trim();
            out.clear();
            out.extend(
                ladder_book
                    .best_first(Side::Bids)
                    .map(|l| (l.price, l.quantity)),
            );
            out.extend(
                ladder_book
                    .best_first(Side::Asks)
                    .map(|l| (l.price, l.quantity)),
            );
            black_box(out.len())
        })
    });
    let mut raw_chunks = raw.chunks(20).cycle();
    group.bench_function("btreemap_20_updates_and_read", |b| {
        b.iter(|| {
            for &(side, price, quantity) in raw_chunks.next().expect("cycle") {
                map.apply(side, price, quantity);
            }
            map.trim(DEPTH);
            out.clear();
            out.extend(map.bids.iter().rev().map(|(p, q)| (*p, *q)));
            out.extend(map.asks.iter().map(|(p, q)| (*p, *q)));
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
