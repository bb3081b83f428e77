//! A book started from a shallow snapshot (issue 12): served at once within its depth, which
//! shared memory shows, and deepened beside itself — the live book never leaves sync, and the
//! deepened book is the one a full snapshot would have given at the same update id.

use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate};
use ubdcc_engine::{BufferBudget, DepthCache, Exchange, NextStep, Publisher, Snapshot, UpdateIds};
use ubdcc_shm::{BookStatus, ClusterReader, Decimal, LevelQuery, SegmentConfig, Side};

fn cluster(tag: &str) -> String {
    format!("deepen{tag}{}", std::process::id())
}

fn publisher(cluster: &str) -> Publisher {
    Publisher::new(
        SegmentConfig::new(cluster, "dcn")
            .books(2)
            .levels_per_side(10)
            .create()
            .expect("segment"),
    )
}

/// Levels `first..first + n` (prices counting up for asks, down for bids), quantity 1.
fn ladder(side: Side, n: usize) -> Vec<LevelUpdate> {
    (0..n)
        .map(|i| {
            let price = match side {
                Side::Bids => 100 - i as u64,
                Side::Asks => 101 + i as u64,
            };
            LevelUpdate {
                price: Decimal::new(price, 0),
                quantity: Decimal::new(1, 0),
            }
        })
        .collect()
}

fn snapshot(id: u64, depth: usize) -> Snapshot {
    Snapshot {
        last_update_id: id,
        depth: depth as u32,
        bids: ladder(Side::Bids, depth),
        asks: ladder(Side::Asks, depth),
        exchange_time_ms: None,
    }
}

/// A spot event `first..=last` that sets the best ask's quantity to `quantity`.
fn event(first: u64, last: u64, quantity: u64) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: None,
        },
        bids: vec![],
        asks: vec![LevelUpdate {
            price: Decimal::new(101, 0),
            quantity: Decimal::new(quantity, 0),
        }],
    }
}

fn asks(reader: &mut ClusterReader) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    reader
        .read(
            "binance.com",
            "BTCUSDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut out,
        )
        .expect("synced");
    out.iter().map(|l| (l.price, l.quantity)).collect()
}

/// A book synced from a 3-level snapshot at update id 10, of a full depth of 8.
fn shallow_book(publisher: &mut Publisher) -> DepthCache {
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 8, publisher).unwrap();
    let step = cache
        .on_starting_book(&snapshot(10, 3), 1, publisher)
        .unwrap();
    assert_eq!(step, NextStep::Continue);
    cache
}

#[test]
fn a_shallow_book_is_served_within_its_depth_and_says_so() {
    let cluster = cluster("served");
    let mut publisher = publisher(&cluster);
    let cache = shallow_book(&mut publisher);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let info = reader.info("binance.com", "BTCUSDT").unwrap();
    assert_eq!((info.status, info.depth), (BookStatus::Synced, 3));
    assert_eq!(asks(&mut reader).len(), 3);
    assert!(cache.is_shallow());
}

#[test]
fn a_deeper_snapshot_ahead_of_the_stream_replaces_the_book_once_the_stream_reaches_it() {
    let cluster = cluster("ahead");
    let mut publisher = publisher(&cluster);
    let mut cache = shallow_book(&mut publisher);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert!(cache.begin_deepening(BufferBudget::new(1 << 20)));
    // The deep snapshot was taken at 12; the live book is at 10.
    let step = cache
        .on_deep_snapshot(&snapshot(12, 8), &mut publisher)
        .unwrap();
    assert_eq!(step, NextStep::Continue);
    assert_eq!(reader.info("binance.com", "BTCUSDT").unwrap().depth, 3);
    // 11..=11 is inside the deep snapshot; the live book applies it, still shallow.
    cache
        .on_update(event(11, 11, 7), 2, &mut publisher)
        .unwrap();
    assert_eq!(reader.info("binance.com", "BTCUSDT").unwrap().depth, 3);
    // 12..=13 spans the deep snapshot: both books are at 13, the deep one takes over.
    cache
        .on_update(event(12, 13, 5), 3, &mut publisher)
        .unwrap();
    let info = reader.info("binance.com", "BTCUSDT").unwrap();
    assert_eq!(
        (info.status, info.depth, info.last_update_id),
        (BookStatus::Synced, 8, 13)
    );
    assert_eq!(
        info.resyncs, 0,
        "deepening never takes the book out of sync"
    );
    let served = asks(&mut reader);
    assert_eq!(served.len(), 8);
    assert_eq!(served[0], (101.0, 5.0));
    assert!(!cache.is_shallow());
}

#[test]
fn a_deeper_snapshot_behind_the_stream_is_brought_forward_with_the_buffered_events() {
    let cluster = cluster("behind");
    let mut publisher = publisher(&cluster);
    let mut cache = shallow_book(&mut publisher);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert!(cache.begin_deepening(BufferBudget::new(1 << 20)));
    cache
        .on_update(event(11, 12, 4), 2, &mut publisher)
        .unwrap();
    cache
        .on_update(event(13, 14, 6), 3, &mut publisher)
        .unwrap();
    // Taken at 12: event 13..=14 is buffered by the shadow and brings it to the live 14.
    cache
        .on_deep_snapshot(&snapshot(12, 8), &mut publisher)
        .unwrap();
    let info = reader.info("binance.com", "BTCUSDT").unwrap();
    assert_eq!((info.depth, info.last_update_id), (8, 14));
    assert_eq!(asks(&mut reader)[0], (101.0, 6.0));
}

#[test]
fn a_deeper_snapshot_the_buffer_cannot_bridge_asks_for_another_and_keeps_the_book_synced() {
    let cluster = cluster("old");
    let mut publisher = publisher(&cluster);
    let mut cache = shallow_book(&mut publisher);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_update(event(11, 12, 4), 2, &mut publisher)
        .unwrap();
    // Deepening starts after 12: the shadow never saw 11..=12.
    assert!(cache.begin_deepening(BufferBudget::new(1 << 20)));
    cache
        .on_update(event(13, 14, 6), 3, &mut publisher)
        .unwrap();
    let step = cache
        .on_deep_snapshot(&snapshot(10, 8), &mut publisher)
        .unwrap();
    assert_eq!(step, NextStep::Deepen);
    let info = reader.info("binance.com", "BTCUSDT").unwrap();
    assert_eq!(
        (info.status, info.depth, info.last_update_id),
        (BookStatus::Synced, 3, 14)
    );
    assert!(cache.is_shallow());
}

#[test]
fn a_book_losing_sync_drops_its_deepening_and_a_full_book_has_none_to_begin() {
    let cluster = cluster("lost");
    let mut publisher = publisher(&cluster);
    let mut cache = shallow_book(&mut publisher);
    assert!(cache.begin_deepening(BufferBudget::new(1 << 20)));
    // A gap: 15 does not follow 10.
    let step = cache
        .on_update(event(15, 16, 1), 2, &mut publisher)
        .unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
    assert!(
        !cache.is_shallow(),
        "not synced, so not a shallow synced book"
    );
    let step = cache
        .on_deep_snapshot(&snapshot(16, 8), &mut publisher)
        .unwrap();
    assert_eq!(step, NextStep::Continue, "a late deep snapshot is ignored");
    // A full start has nothing to deepen.
    cache
        .on_starting_book(&snapshot(20, 8), 3, &mut publisher)
        .unwrap();
    assert!(!cache.begin_deepening(BufferBudget::new(1 << 20)));
}
