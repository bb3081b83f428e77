//! Whole-book copies for seeding a replica from a peer (`ClusterReader::copy_book`) and the covered
//! depth in a slot (`BookMeta::depth`, `BookInfo::depth`), writer and readers in one process.

use ubdcc_shm::{
    BookCopy, BookMeta, BookSides, BookStatus, ClusterReader, LevelQuery, OutOfSyncReason,
    RawLevel, ReadError, SegmentConfig, SegmentWriter, Side,
};

const EXCHANGE: &str = "binance.com";
const MARKET: &str = "BTCUSDT";

/// A cluster name no other test (or test run) uses.
fn cluster(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "copy{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn writer(cluster: &str, dcn: &str) -> SegmentWriter {
    SegmentConfig::new(cluster, dcn)
        .books(4)
        .levels_per_side(8)
        .create()
        .expect("create segment")
}

fn synced(last_update_id: u64, depth: u32) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id,
        event_time_ms: 1_700_000_000_000 + last_update_id,
        receive_time_ns: 5,
        resyncs: 2,
        gaps: 1,
        depth,
        freshness: Default::default(),
    }
}

/// `n` levels best first, every mantissa derived from `seed` so two books never look alike.
fn levels(seed: u64, n: u64, step: i64) -> Vec<RawLevel> {
    (0..n)
        .map(|i| RawLevel {
            price: (seed as i64 * 1000 + step * i as i64) as u64,
            quantity: seed * 10 + i + 1,
        })
        .collect()
}

/// Publishes a synced BTCUSDT in `writer` built from `seed`; returns its sides.
fn publish_synced(
    writer: &mut SegmentWriter,
    seed: u64,
    depth: u32,
) -> (Vec<RawLevel>, Vec<RawLevel>) {
    let book = writer.add_book(EXCHANGE, MARKET).expect("add book");
    let bids = levels(seed, 3, -1);
    let asks = levels(seed + 1, 5, 1);
    let sides = BookSides {
        price_exponent: -2,
        quantity_exponent: -5,
        bids: &bids,
        asks: &asks,
    };
    writer
        .publish(book, &synced(seed, depth), &sides)
        .expect("publish");
    (bids, asks)
}

fn copy(reader: &mut ClusterReader, skip_dcn: Option<&str>) -> Result<BookCopy, ReadError> {
    reader.copy_book(EXCHANGE, MARKET, skip_dcn)
}

#[test]
fn a_copy_holds_both_sides_the_exponents_and_the_info_of_the_published_version() {
    let cluster = cluster("exact");
    let mut peer = writer(&cluster, "dcn-0");
    let (bids, asks) = publish_synced(&mut peer, 42, 100);

    let mut reader = ClusterReader::open(&cluster).unwrap();
    let copy = copy(&mut reader, None).unwrap();
    assert_eq!((copy.bids, copy.asks), (bids, asks));
    assert_eq!((copy.price_exponent, copy.quantity_exponent), (-2, -5));
    assert_eq!(copy.dcn, "dcn-0");
    let info = copy.info;
    assert_eq!(info.status, BookStatus::Synced);
    assert_eq!(
        (
            info.last_update_id,
            info.event_time_ms,
            info.receive_time_ns
        ),
        (42, 1_700_000_000_042, 5)
    );
    assert_eq!((info.bid_count, info.ask_count), (3, 5));
    assert_eq!(
        (info.resyncs, info.gaps, info.depth, info.updates),
        (2, 1, 100, 1)
    );
    // The copy's info is the info every other read reports.
    let mut out = Vec::new();
    let read = reader
        .read(EXCHANGE, MARKET, Side::Asks, &LevelQuery::ALL, &mut out)
        .unwrap();
    assert_eq!(read, info);
}

#[test]
fn the_covered_depth_starts_unknown_and_follows_every_publish() {
    let cluster = cluster("depth");
    let mut peer = writer(&cluster, "dcn-0");
    let book = peer.add_book(EXCHANGE, MARKET).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert_eq!(BookMeta::starting().depth, 0);
    assert_eq!(reader.info(EXCHANGE, MARKET).unwrap().depth, 0);

    let asks = levels(7, 2, 1);
    let sides = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    peer.publish(book, &synced(7, 100), &sides).unwrap();
    assert_eq!(reader.info(EXCHANGE, MARKET).unwrap().depth, 100);

    // Deepened from a deeper snapshot: metadata alone carries the new depth, levels stay.
    peer.publish_meta(book, &synced(8, 1000)).unwrap();
    let copy = copy(&mut reader, None).unwrap();
    assert_eq!((copy.info.depth, copy.info.last_update_id), (1000, 8));
    assert_eq!(copy.asks, asks);

    // The whole u32 range survives the 64-bit word it is stored in.
    peer.publish_meta(book, &synced(9, u32::MAX)).unwrap();
    assert_eq!(reader.info(EXCHANGE, MARKET).unwrap().depth, u32::MAX);
}

#[test]
fn a_copy_skips_the_segment_of_the_dcn_that_seeds_itself() {
    let cluster = cluster("skip");
    let mut first = writer(&cluster, "dcn-0");
    let mut second = writer(&cluster, "dcn-1");
    let from_first = publish_synced(&mut first, 10, 100);
    let from_second = publish_synced(&mut second, 20, 1000);
    let mut reader = ClusterReader::open(&cluster).unwrap();

    let copy_for_first = copy(&mut reader, Some("dcn-0")).unwrap();
    assert_eq!(copy_for_first.dcn, "dcn-1");
    assert_eq!((copy_for_first.bids, copy_for_first.asks), from_second);
    assert_eq!(copy_for_first.info.depth, 1000);

    let copy_for_second = copy(&mut reader, Some("dcn-1")).unwrap();
    assert_eq!(copy_for_second.dcn, "dcn-0");
    assert_eq!((copy_for_second.bids, copy_for_second.asks), from_first);
    assert_eq!(copy_for_second.info.last_update_id, 10);

    // A DCN that is not in the cluster skips nothing.
    assert!(copy(&mut reader, Some("dcn-9")).is_ok());
}

#[test]
fn a_copy_is_not_found_when_only_the_skipped_segment_holds_the_book() {
    let cluster = cluster("only");
    let mut own = writer(&cluster, "dcn-0");
    publish_synced(&mut own, 1, 100);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert!(matches!(
        copy(&mut reader, Some("dcn-0")),
        Err(ReadError::NotFound { .. })
    ));
    assert!(matches!(
        reader.copy_book(EXCHANGE, "NOSUCHBOOK", None),
        Err(ReadError::NotFound { .. })
    ));
}

#[test]
fn replicas_that_are_not_synced_are_never_copied() {
    let cluster = cluster("sync");
    let mut starting = writer(&cluster, "dcn-0");
    starting.add_book(EXCHANGE, MARKET).unwrap();
    let mut lost = writer(&cluster, "dcn-1");
    let book = lost.add_book(EXCHANGE, MARKET).unwrap();
    let gap = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        ..synced(5, 100)
    };
    let asks = levels(5, 2, 1);
    let sides = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    lost.publish(book, &gap, &sides).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let error = copy(&mut reader, None).unwrap_err();
    assert!(matches!(error, ReadError::NotSynced { .. }), "{error}");

    // Once a peer is synced, it is the one copied.
    let mut synced_peer = writer(&cluster, "dcn-2");
    let (bids, asks) = publish_synced(&mut synced_peer, 30, 100);
    let copy = copy(&mut reader, None).unwrap();
    assert_eq!(
        (copy.dcn.as_str(), copy.bids, copy.asks),
        ("dcn-2", bids, asks)
    );
}

#[test]
fn a_closed_writers_book_is_never_copied() {
    let cluster = cluster("closed");
    let mut peer = writer(&cluster, "dcn-0");
    publish_synced(&mut peer, 3, 100);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    copy(&mut reader, None).unwrap();
    drop(peer);
    let error = copy(&mut reader, None).unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::WriterGone { .. } | ReadError::NotFound { .. }
        ),
        "{error}"
    );
}
