//! A DepthCache driven by events and snapshots, read back through shared memory as a reader in
//! another process would: synced books match, out-of-sync books are never served.

use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate};
use ubdcc_engine::{DepthCache, Exchange, NextStep, Publisher, UpdateIds};
use ubdcc_shm::{
    BookStatus, ClusterReader, Decimal, LevelQuery, OutOfSyncReason, ReadError, SegmentConfig, Side,
};

fn cluster(tag: &str) -> String {
    format!("engine{tag}{}", std::process::id())
}

fn publisher(cluster: &str) -> Publisher {
    Publisher::new(
        SegmentConfig::new(cluster, "dcn")
            .books(4)
            .levels_per_side(5)
            .create()
            .expect("segment"),
    )
}

fn levels(pairs: &[(&str, &str)]) -> Vec<LevelUpdate> {
    pairs
        .iter()
        .map(|(p, q)| LevelUpdate {
            price: Decimal::parse(p).unwrap(),
            quantity: Decimal::parse(q).unwrap(),
        })
        .collect()
}

fn spot(first: u64, last: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: None,
        },
        bids: levels(bids),
        asks: levels(asks),
    }
}

fn futures(first: u64, last: u64, previous: u64, asks: &[(&str, &str)]) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: Some(previous),
        },
        bids: vec![],
        asks: levels(asks),
    }
}

fn read(
    reader: &mut ClusterReader,
    exchange: &str,
    market: &str,
    side: Side,
) -> Result<Vec<(f64, f64)>, ReadError> {
    let mut out = Vec::new();
    reader.read(exchange, market, side, &LevelQuery::ALL, &mut out)?;
    Ok(out.iter().map(|l| (l.price, l.quantity)).collect())
}

/// Asserts the book is not served and says why.
fn assert_out_of_sync(
    reader: &mut ClusterReader,
    exchange: &str,
    market: &str,
    side: Side,
    reason: OutOfSyncReason,
) {
    match read(reader, exchange, market, side) {
        Err(ReadError::NotSynced { status, .. }) => {
            assert_eq!(status, BookStatus::OutOfSync(reason), "{exchange} {market}")
        }
        other => panic!("{exchange} {market}: expected out of sync ({reason}), got {other:?}"),
    }
}

#[test]
fn a_spot_book_syncs_serves_loses_sync_on_a_gap_and_recovers() {
    let cluster = cluster("spot");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "BTCUSDT", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert!(matches!(
        read(&mut reader, "binance.com", "BTCUSDT", Side::Asks),
        Err(ReadError::NotSynced {
            status: BookStatus::Starting,
            ..
        })
    ));

    // Buffered while the snapshot is on its way.
    assert_eq!(
        cache
            .on_update(spot(99, 100, &[], &[("10.5", "9")]), 1, &mut publisher)
            .unwrap(),
        NextStep::Continue
    );
    assert_eq!(
        cache
            .on_update(
                spot(101, 102, &[("9.5", "0")], &[("10.5", "3")]),
                2,
                &mut publisher
            )
            .unwrap(),
        NextStep::Continue
    );
    let step = cache
        .on_snapshot(
            100,
            &levels(&[("9.5", "1"), ("9.0", "2")]),
            &levels(&[("10.5", "4"), ("11.0", "5")]),
            3,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(step, NextStep::Continue);
    // Event 99..=100 was inside the snapshot; 101..=102 removed bid 9.5 and set ask 10.5 to 3.
    assert_eq!(
        read(&mut reader, "binance.com", "BTCUSDT", Side::Bids).unwrap(),
        [(9.0, 2.0)]
    );
    assert_eq!(
        read(&mut reader, "binance.com", "BTCUSDT", Side::Asks).unwrap(),
        [(10.5, 3.0), (11.0, 5.0)]
    );
    assert_eq!(
        reader
            .info("binance.com", "BTCUSDT")
            .unwrap()
            .last_update_id,
        102
    );

    // A gap: out of sync, not served, a snapshot is needed.
    assert_eq!(
        cache
            .on_update(spot(105, 106, &[], &[]), 4, &mut publisher)
            .unwrap(),
        NextStep::FetchSnapshot
    );
    assert_out_of_sync(
        &mut reader,
        "binance.com",
        "BTCUSDT",
        Side::Asks,
        OutOfSyncReason::Gap,
    );
    assert_eq!((cache.meta().gaps, cache.meta().resyncs), (1, 1));

    // Recovery with a fresh snapshot: old levels do not survive it.
    cache
        .on_update(spot(107, 108, &[("8.0", "1")], &[]), 5, &mut publisher)
        .unwrap();
    cache
        .on_snapshot(
            107,
            &levels(&[("7.0", "1")]),
            &levels(&[("12.0", "1")]),
            6,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(
        read(&mut reader, "binance.com", "BTCUSDT", Side::Bids).unwrap(),
        [(8.0, 1.0), (7.0, 1.0)]
    );
    assert_eq!(
        read(&mut reader, "binance.com", "BTCUSDT", Side::Asks).unwrap(),
        [(12.0, 1.0)]
    );
}

#[test]
fn a_futures_book_chains_pu_and_resyncs_on_a_broken_chain() {
    let cluster = cluster("futures");
    let mut publisher = publisher(&cluster);
    let mut cache =
        DepthCache::new(Exchange::BinanceComFutures, "BTCUSDT", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_update(futures(95, 100, 94, &[("100.0", "1")]), 1, &mut publisher)
        .unwrap();
    cache
        .on_snapshot(100, &[], &levels(&[("101.0", "1")]), 2, &mut publisher)
        .unwrap();
    assert_eq!(
        read(&mut reader, "binance.com-futures", "BTCUSDT", Side::Asks).unwrap(),
        [(100.0, 1.0), (101.0, 1.0)]
    );
    assert_eq!(
        cache
            .on_update(futures(101, 101, 100, &[("100.0", "0")]), 3, &mut publisher)
            .unwrap(),
        NextStep::Continue
    );
    assert_eq!(
        read(&mut reader, "binance.com-futures", "BTCUSDT", Side::Asks).unwrap(),
        [(101.0, 1.0)]
    );
    assert_eq!(
        cache
            .on_update(futures(103, 103, 102, &[]), 4, &mut publisher)
            .unwrap(),
        NextStep::FetchSnapshot
    );
    assert!(read(&mut reader, "binance.com-futures", "BTCUSDT", Side::Asks).is_err());
}

#[test]
fn orphans_beyond_the_depth_are_trimmed_numerically_across_a_digit_boundary() {
    let cluster = cluster("orphans");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "SIM0USDT", 3, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    // Bids cross 9.99 -> 10.00 and asks 99.99 -> 100.00, below one another (a crossed book is
    // never served, issue 16).
    cache
        .on_snapshot(
            10,
            &levels(&[("10.50", "1"), ("9.97", "1"), ("9.96", "1")]),
            &levels(&[("99.98", "1"), ("99.99", "1"), ("100.00", "1")]),
            1,
            &mut publisher,
        )
        .unwrap();
    cache
        .on_update(
            spot(
                11,
                11,
                &[("9.95", "1"), ("0.90", "1")],
                &[("100.01", "1"), ("100.02", "1")],
            ),
            2,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(
        read(&mut reader, "binance.com", "SIM0USDT", Side::Asks).unwrap(),
        [(99.98, 1.0), (99.99, 1.0), (100.0, 1.0)]
    );
    assert_eq!(
        read(&mut reader, "binance.com", "SIM0USDT", Side::Bids).unwrap(),
        [(10.5, 1.0), (9.97, 1.0), (9.96, 1.0)]
    );
    // Deleting a level inside the window must not bring a trimmed orphan back.
    cache
        .on_update(spot(12, 12, &[("9.97", "0")], &[]), 3, &mut publisher)
        .unwrap();
    assert_eq!(
        read(&mut reader, "binance.com", "SIM0USDT", Side::Bids).unwrap(),
        [(10.5, 1.0), (9.96, 1.0)]
    );
}

#[test]
fn values_that_cannot_be_held_exactly_put_the_book_out_of_sync() {
    let cluster = cluster("malformed");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_snapshot(
            1,
            &levels(&[("18446744073709551615", "1")]),
            &[],
            1,
            &mut publisher,
        )
        .unwrap();
    cache
        .on_update(spot(2, 2, &[], &[]), 2, &mut publisher)
        .unwrap();
    assert!(read(&mut reader, "binance.com", "X", Side::Bids).is_ok());
    // 0.1 would need a price exponent the existing level cannot be rescaled to.
    assert_eq!(
        cache
            .on_update(spot(3, 3, &[("0.1", "1")], &[]), 3, &mut publisher)
            .unwrap(),
        NextStep::FetchSnapshot
    );
    assert_out_of_sync(
        &mut reader,
        "binance.com",
        "X",
        Side::Bids,
        OutOfSyncReason::MalformedMessage,
    );
}

#[test]
fn a_removed_book_is_gone_for_readers() {
    let cluster = cluster("remove");
    let mut publisher = publisher(&cluster);
    let cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert!(reader.info("binance.com", "X").is_ok());
    cache.remove(&mut publisher).unwrap();
    assert!(matches!(
        reader.info("binance.com", "X"),
        Err(ReadError::NotFound { .. })
    ));
}

#[test]
fn a_quiet_book_is_served_from_its_snapshot_until_an_event_does_not_fit() {
    let cluster = cluster("quiet");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "QUIET", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    // Subscribed, nothing arrived, snapshot at 50: exact as of 50, so served.
    cache
        .on_snapshot(
            50,
            &levels(&[("1.0", "1")]),
            &levels(&[("2.0", "1")]),
            1,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(
        read(&mut reader, "binance.com", "QUIET", Side::Asks).unwrap(),
        [(2.0, 1.0)]
    );
    assert_eq!(
        reader.info("binance.com", "QUIET").unwrap().last_update_id,
        50
    );
    // The first event after it starts beyond 51: events were missed.
    assert_eq!(
        cache
            .on_update(spot(53, 54, &[], &[]), 2, &mut publisher)
            .unwrap(),
        NextStep::FetchSnapshot
    );
    assert_out_of_sync(
        &mut reader,
        "binance.com",
        "QUIET",
        Side::Asks,
        OutOfSyncReason::Gap,
    );
}

#[test]
fn a_segment_with_fewer_levels_shows_the_best_of_a_full_depth_book() {
    // The segment shows 5 levels, but the book keeps the snapshot's 1000: deleting the top 3
    // must show levels 4..=8 of the snapshot, not a book cut at 5 with holes below.
    let cluster = cluster("shallow");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "DEEP", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let asks: Vec<(String, String)> = (1..=10)
        .map(|i| (format!("{}.0", 100 + i), "1".to_owned()))
        .collect();
    let asks: Vec<(&str, &str)> = asks.iter().map(|(p, q)| (p.as_str(), q.as_str())).collect();
    cache
        .on_snapshot(1, &[], &levels(&asks), 1, &mut publisher)
        .unwrap();
    cache
        .on_update(
            spot(2, 2, &[], &[("101.0", "0"), ("102.0", "0"), ("103.0", "0")]),
            2,
            &mut publisher,
        )
        .unwrap();
    let prices: Vec<f64> = read(&mut reader, "binance.com", "DEEP", Side::Asks)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(prices, [104.0, 105.0, 106.0, 107.0, 108.0]);
}

#[test]
fn a_reloaded_book_never_shows_the_previous_episodes_event_time() {
    let cluster = cluster("eventtime");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "T", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_snapshot(10, &levels(&[("1.0", "1")]), &[], 0, &mut publisher)
        .unwrap();
    cache
        .on_update(spot(11, 11, &[("1.0", "2")], &[]), 0, &mut publisher)
        .unwrap();
    assert_eq!(
        reader.info("binance.com", "T").unwrap().event_time_ms,
        11,
        "the event's own time"
    );
    // A gap, then a snapshot with nothing after it, received at t = 5 s.
    cache
        .on_update(spot(20, 20, &[], &[]), 0, &mut publisher)
        .unwrap();
    cache
        .on_snapshot(
            30,
            &levels(&[("1.0", "3")]),
            &[],
            5_000_000_000,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(
        reader.info("binance.com", "T").unwrap().event_time_ms,
        0,
        "a spot snapshot carries no time of its own: none, not when it arrived (issue 16)"
    );
}
