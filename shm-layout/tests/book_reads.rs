//! Reads of a whole book and of every book's top (issue 14): `ClusterReader::get_book` /
//! `read_book` (both sides from one seqlock section, each side selected by the query) and
//! `ClusterReader::bbo_all`, against real segments written in this process, plus the fill price
//! and depth statistics computed on what `get_book` returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ubdcc_shm::{
    BookMeta, BookSides, BookStatus, ClusterReader, FillAmount, Level, LevelQuery, OutOfSyncReason,
    RawLevel, ReadError, SegmentConfig, SegmentWriter, Side, depth_stats, fill_price,
    select_levels, test_pattern,
};

const EXCHANGE: &str = "binance.com";

/// A cluster name no other test (or test run) uses.
fn cluster(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "reads{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn writer(cluster: &str, dcn: &str) -> SegmentWriter {
    SegmentConfig::new(cluster, dcn)
        .books(8)
        .levels_per_side(16)
        .create()
        .expect("create segment")
}

fn synced(last_update_id: u64) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id,
        event_time_ms: 1_700_000_000_000 + last_update_id,
        depth: 16,
        ..BookMeta::starting()
    }
}

/// A book around 100.00 (price exponent −2, quantity exponent −1): bids 99.99, 99.98, … and
/// asks 100.01, 100.02, …, quantity `seed + i` tenths at level `i`.
fn sides(seed: u64, n: u64) -> (Vec<RawLevel>, Vec<RawLevel>) {
    let level = |price: u64, i: u64| RawLevel {
        price,
        quantity: seed + i,
    };
    let bids = (0..n).map(|i| level(9_999 - i, i)).collect();
    let asks = (0..n).map(|i| level(10_001 + i, i)).collect();
    (bids, asks)
}

fn publish(writer: &mut SegmentWriter, market: &str, seed: u64, n: u64) {
    let book = writer.add_book(EXCHANGE, market).expect("add book");
    let (bids, asks) = sides(seed, n);
    let sides = BookSides {
        price_exponent: -2,
        quantity_exponent: -1,
        bids: &bids,
        asks: &asks,
    };
    writer
        .publish(book, &synced(seed), &sides)
        .expect("publish");
}

/// What a reader must return for `sides(seed, n)`, as floats.
fn floats(raw: &[RawLevel]) -> Vec<Level> {
    raw.iter()
        .map(|level| Level {
            price: ubdcc_shm::Decimal::new(level.price, -2).to_f64(),
            quantity: ubdcc_shm::Decimal::new(level.quantity, -1).to_f64(),
        })
        .collect()
}

#[test]
fn get_book_returns_both_sides_selected_by_the_query_with_the_info() {
    let cluster = cluster("query");
    let mut dcn = writer(&cluster, "dcn-0");
    publish(&mut dcn, "BTCUSDT", 5, 12);
    let (bids, asks) = sides(5, 12);
    let (bids, asks) = (floats(&bids), floats(&asks));
    let mut reader = ClusterReader::open(&cluster).expect("open");

    let queries = [
        LevelQuery::ALL,
        LevelQuery::top(0),
        LevelQuery::top(3),
        LevelQuery::top(100),
        // Each side walks its own threshold: the asks are priced higher, so the same threshold
        // can cut the two sides at different levels.
        LevelQuery::new(None, Some(250.0)).unwrap(),
        LevelQuery::new(Some(2), Some(1e9)).unwrap(),
        LevelQuery::new(None, Some(0.0)).unwrap(),
    ];
    for query in queries {
        let (info, got_bids, got_asks) = reader
            .get_book(EXCHANGE, "BTCUSDT", &query)
            .expect("get_book");
        assert_eq!(got_bids, select_levels(&bids, &query), "{query:?}");
        assert_eq!(got_asks, select_levels(&asks, &query), "{query:?}");
        assert_eq!(
            (
                info.last_update_id,
                info.bid_count,
                info.ask_count,
                info.depth
            ),
            (5, 12, 12, 16)
        );
        assert_eq!(info.status, BookStatus::Synced);
    }
    // The threshold really cut the two sides differently for one of the queries above.
    let by_threshold = LevelQuery::new(None, Some(250.0)).unwrap();
    let (_, b, a) = reader.get_book(EXCHANGE, "BTCUSDT", &by_threshold).unwrap();
    assert!(
        !b.is_empty() && !a.is_empty() && b.len() < bids.len(),
        "{b:?} {a:?}"
    );

    // The buffer form replaces what the buffers held and agrees with get_book.
    let (mut bid_buf, mut ask_buf) = (vec![Level::default(); 40], vec![Level::default(); 3]);
    let info = reader
        .read_book(
            EXCHANGE,
            "BTCUSDT",
            &LevelQuery::top(4),
            &mut bid_buf,
            &mut ask_buf,
        )
        .expect("read_book");
    assert_eq!(info.last_update_id, 5);
    assert_eq!((bid_buf, ask_buf), (bids[..4].to_vec(), asks[..4].to_vec()));
}

#[test]
fn get_book_reports_why_a_book_is_not_served() {
    let cluster = cluster("errors");
    let mut dcn = writer(&cluster, "dcn-0");
    dcn.add_book(EXCHANGE, "STARTING").expect("add");
    let gap = dcn.add_book(EXCHANGE, "GAP").expect("add");
    let meta = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        ..synced(3)
    };
    dcn.publish(
        gap,
        &meta,
        &BookSides {
            price_exponent: 0,
            quantity_exponent: 0,
            bids: &[],
            asks: &[],
        },
    )
    .expect("publish");
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let (mut bids, mut asks) = (vec![Level::default()], vec![Level::default()]);
    for (market, expected) in [("STARTING", BookStatus::Starting), ("GAP", meta.status)] {
        let error = reader
            .read_book(EXCHANGE, market, &LevelQuery::ALL, &mut bids, &mut asks)
            .unwrap_err();
        assert!(
            matches!(error, ReadError::NotSynced { status, .. } if status == expected),
            "{market}: {error:?}"
        );
        assert!(
            bids.is_empty() && asks.is_empty(),
            "no levels of an unsynced book"
        );
    }
    let missing = reader.get_book(EXCHANGE, "NOPE", &LevelQuery::ALL);
    assert!(
        matches!(missing, Err(ReadError::NotFound { .. })),
        "{missing:?}"
    );

    // A closed segment's book is an error, never its last levels.
    publish(&mut dcn, "LIVE", 9, 4);
    assert!(reader.get_book(EXCHANGE, "LIVE", &LevelQuery::ALL).is_ok());
    drop(dcn);
    let gone = reader.get_book(EXCHANGE, "LIVE", &LevelQuery::ALL);
    assert!(
        matches!(
            gone,
            Err(ReadError::WriterGone { .. } | ReadError::NotFound { .. })
        ),
        "{gone:?}"
    );
}

/// The point of `get_book`: under a writer publishing as fast as it can, both sides always
/// belong to the version the info names (a pattern version ties every level to it).
#[test]
fn get_book_sides_are_one_version_while_the_writer_publishes_at_full_speed() {
    let cluster = cluster("torn");
    const LEVELS: u32 = 1000;
    let mut dcn = SegmentConfig::new(cluster.as_str(), "w")
        .books(1)
        .levels_per_side(LEVELS)
        .create()
        .expect("create");
    let book = dcn.add_book(EXCHANGE, "PATTERN0").expect("add");
    let mut scratch = test_pattern::PatternScratch::default();
    test_pattern::publish(&mut dcn, book, 1, &mut scratch).expect("publish");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let publisher = std::thread::spawn(move || {
        let mut k = 2;
        while !flag.load(Ordering::Relaxed) {
            test_pattern::publish(&mut dcn, book, k, &mut scratch).expect("publish");
            if k % 64 == 0 {
                dcn.heartbeat();
            }
            k += 1;
        }
        k
    });

    let mut reader = ClusterReader::open(&cluster).expect("open");
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    let (mut reads, mut versions) = (0, std::collections::BTreeSet::new());
    let rounds = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    for round in 0..rounds {
        let limit: Option<i64> = [None, Some(10), Some(600)][round % 3];
        let query = LevelQuery::new(limit, None).unwrap();
        match reader.read_book(EXCHANGE, "PATTERN0", &query, &mut bids, &mut asks) {
            Ok(info) => {
                let k = info.last_update_id;
                let limit = limit.map(|l| l as usize);
                test_pattern::validate(k, Side::Bids, &bids, limit, LEVELS).unwrap();
                test_pattern::validate(k, Side::Asks, &asks, limit, LEVELS).unwrap();
                reads += 1;
                versions.insert(k);
            }
            // The writer may be preempted inside a publish on a loaded machine.
            Err(ReadError::Contended { .. }) => {}
            Err(error) => panic!("read {round}: {error}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().expect("publisher");
    println!(
        "{reads} book reads, {} versions seen of {published}",
        versions.len()
    );
    assert!(reads > rounds / 2, "{reads} of {rounds} reads succeeded");
    assert!(versions.len() > 10, "the book changed during the reads");
}

#[test]
fn fill_price_and_depth_stats_on_a_read_equal_them_on_the_published_book() {
    let cluster = cluster("math");
    let mut dcn = writer(&cluster, "dcn-0");
    publish(&mut dcn, "BTCUSDT", 20, 16);
    let (bids, asks) = sides(20, 16);
    let (bids, asks) = (floats(&bids), floats(&asks));
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let (info, got_bids, got_asks) = reader
        .get_book(EXCHANGE, "BTCUSDT", &LevelQuery::ALL)
        .expect("get_book");
    assert_eq!(info.last_update_id, 20);

    // A buy of 5.0: 2.0 at 100.01, 2.1 at 100.02, 0.9 at 100.03.
    let buy = fill_price(&got_asks, FillAmount::Base(5.0));
    assert_eq!(buy, fill_price(&asks, FillAmount::Base(5.0)));
    assert_eq!(
        (buy.levels_used, buy.complete, buy.worst_price),
        (3, true, Some(100.03))
    );
    let sell = fill_price(&got_bids, FillAmount::Quote(1_000.0));
    assert_eq!(sell, fill_price(&bids, FillAmount::Quote(1_000.0)));
    assert!(sell.complete && sell.worst_price < Some(99.99));
    // More than the whole side: incomplete, every level used.
    let too_much = fill_price(&got_asks, FillAmount::Base(1e6));
    assert_eq!((too_much.complete, too_much.levels_used), (false, 16));

    let stats = depth_stats(&got_bids, &got_asks, 10, &[1.0, 5.0]).expect("two sides");
    assert_eq!(
        Some(stats.clone()),
        depth_stats(&bids, &asks, 10, &[1.0, 5.0])
    );
    assert_eq!((stats.mid, stats.top_n), (100.0, 10));
    // ±1 bp of 100.00 is 99.99..100.01: the best level of each side.
    assert_eq!(
        (stats.bands[0].bid_quantity, stats.bands[0].ask_quantity),
        (2.0, 2.0)
    );
}

#[test]
fn bbo_all_lists_every_book_once_sorted_with_its_error_or_its_top() {
    let cluster = cluster("all");
    let mut first = writer(&cluster, "dcn-0");
    let mut second = writer(&cluster, "dcn-1");
    publish(&mut first, "ETHUSDT", 3, 4);
    publish(&mut first, "BTCUSDT", 7, 4);
    // A replica of BTCUSDT on the second DCN: still one entry.
    publish(&mut second, "BTCUSDT", 7, 4);
    first.add_book(EXCHANGE, "STARTING").expect("add");
    let futures = second
        .add_book("binance.com-futures", "BTCUSDT")
        .expect("add");
    let (bids, asks) = sides(11, 2);
    second
        .publish(
            futures,
            &synced(11),
            &BookSides {
                price_exponent: -2,
                quantity_exponent: -1,
                bids: &bids,
                asks: &asks,
            },
        )
        .expect("publish");

    let mut reader = ClusterReader::open(&cluster).expect("open");
    let all = reader.bbo_all(None);
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|(exchange, market, _)| (exchange.as_str(), market.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (EXCHANGE, "BTCUSDT"),
            (EXCHANGE, "ETHUSDT"),
            (EXCHANGE, "STARTING"),
            ("binance.com-futures", "BTCUSDT"),
        ]
    );
    for (exchange, market, bbo) in &all {
        if market == "STARTING" {
            assert!(
                matches!(
                    bbo,
                    Err(ReadError::NotSynced {
                        status: BookStatus::Starting,
                        ..
                    })
                ),
                "{bbo:?}"
            );
            continue;
        }
        let bbo = bbo.as_ref().expect("synced");
        assert_eq!(*bbo, reader.bbo(exchange, market).unwrap(), "{market}");
    }
    let eth = all[1].2.as_ref().unwrap();
    assert_eq!(
        (eth.bid, eth.ask, eth.last_update_id),
        (
            Some(Level {
                price: 99.99,
                quantity: 0.3
            }),
            Some(Level {
                price: 100.01,
                quantity: 0.3
            }),
            3
        )
    );

    let futures_only = reader.bbo_all(Some("binance.com-futures"));
    assert_eq!(futures_only.len(), 1);
    assert_eq!(futures_only[0].2.as_ref().unwrap().last_update_id, 11);
    assert!(reader.bbo_all(Some("kraken")).is_empty());

    // A book added after the reader was opened is listed without a refresh by the caller.
    publish(&mut first, "SOLUSDT", 13, 2);
    let after = reader.bbo_all(Some(EXCHANGE));
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(after[2].1, "SOLUSDT");
    assert_eq!(after[2].2.as_ref().unwrap().last_update_id, 13);
    // A DCN that closes takes its books with it; a book with a replica elsewhere stays.
    drop(first);
    let left = reader.bbo_all(Some(EXCHANGE));
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, "BTCUSDT");
    assert_eq!(
        left[0].2.as_ref().expect("replica on dcn-1").last_update_id,
        7
    );
}
