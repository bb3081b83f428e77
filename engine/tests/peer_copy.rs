//! A book started from a peer's copy (issue 12): served only once the stream proves the copy
//! current, confirmed by the exchange's snapshot in a quiet market, never poisoned by an odd
//! copy, and never claiming more depth than its segment shows.

use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate};
use ubdcc_engine::{DepthCache, Exchange, NextStep, Publisher, Snapshot, UpdateIds};
use ubdcc_shm::{BookStatus, ClusterReader, Decimal, SegmentConfig};

fn publisher(tag: &str, levels: u32) -> (String, Publisher) {
    let cluster = format!("peercopy{tag}{}", std::process::id());
    let writer = SegmentConfig::new(&cluster, "dcn")
        .books(2)
        .levels_per_side(levels)
        .create()
        .expect("segment");
    (cluster, Publisher::new(writer))
}

fn level(price: u64, exponent: i8) -> LevelUpdate {
    LevelUpdate {
        price: Decimal::new(price, exponent),
        quantity: Decimal::new(1, 0),
    }
}

fn copy(id: u64, levels: usize) -> Snapshot {
    Snapshot {
        last_update_id: id,
        depth: levels as u32,
        bids: (0..levels as u64).map(|i| level(100 - i, 0)).collect(),
        asks: (0..levels as u64).map(|i| level(101 + i, 0)).collect(),
        exchange_time_ms: None,
    }
}

fn event(first: u64, last: u64) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: None,
        },
        bids: vec![],
        asks: vec![level(101, 0)],
    }
}

fn status(reader: &mut ClusterReader) -> BookStatus {
    reader.info("binance.com", "BTCUSDT").expect("info").status
}

#[test]
fn a_copy_is_served_only_once_a_live_event_fits_it() {
    let (cluster, mut publisher) = publisher("confirm", 10);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 10, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_peer_copy(&copy(10, 10), 1, &mut publisher)
        .unwrap();
    assert_eq!(
        status(&mut reader),
        BookStatus::Starting,
        "no event proved it yet"
    );
    cache.on_update(event(11, 12), 2, &mut publisher).unwrap();
    assert_eq!(status(&mut reader), BookStatus::Synced);
}

#[test]
fn a_stale_copy_is_refused_by_the_first_live_event() {
    let (cluster, mut publisher) = publisher("stale", 10);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 10, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_peer_copy(&copy(10, 10), 1, &mut publisher)
        .unwrap();
    // Events 11..=14 passed before the subscription: the copy misses them.
    let step = cache.on_update(event(15, 16), 2, &mut publisher).unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
    assert_ne!(status(&mut reader), BookStatus::Synced);
}

#[test]
fn the_exchanges_snapshot_at_the_copys_id_confirms_a_quiet_book() {
    let (cluster, mut publisher) = publisher("quiet", 10);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 10, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_peer_copy(&copy(10, 10), 1, &mut publisher)
        .unwrap();
    let snapshot = copy(10, 10);
    cache
        .on_starting_book(&snapshot, 2, &mut publisher)
        .unwrap();
    assert_eq!(status(&mut reader), BookStatus::Synced);
}

#[test]
fn an_odd_copy_does_not_poison_the_next_snapshot() {
    let (cluster, mut publisher) = publisher("odd", 10);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 10, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    // A price with 19 decimals: the book's exponent follows it.
    let mut odd = copy(10, 2);
    odd.bids.insert(0, level(1, -19));
    cache.on_peer_copy(&odd, 1, &mut publisher).unwrap();
    cache.on_update(event(15, 16), 2, &mut publisher).unwrap();
    assert_ne!(status(&mut reader), BookStatus::Synced);
    // A good snapshot with large prices still loads: nothing of the odd copy is left.
    let mut good = copy(20, 2);
    good.asks.push(level(u64::MAX / 100, 0));
    cache.on_starting_book(&good, 3, &mut publisher).unwrap();
    assert_eq!(status(&mut reader), BookStatus::Synced);
}

#[test]
fn a_book_never_claims_more_depth_than_its_segment_shows() {
    let (cluster, mut publisher) = publisher("capped", 5);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_starting_book(&copy(10, 50), 1, &mut publisher)
        .unwrap();
    let info = reader.info("binance.com", "BTCUSDT").unwrap();
    assert_eq!((info.status, info.depth), (BookStatus::Synced, 5));
}
