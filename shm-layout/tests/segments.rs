//! Writer and readers in one process: round trips, statuses, removal, refusal to steal a live
//! writer's segment, and hostile files that must give clear errors rather than crashes.

use std::io::Write as _;

use proptest::prelude::*;
use ubdcc_shm::{
    BookMeta, BookSides, BookStatus, ClusterReader, Level, LevelQuery, OpenSegmentError,
    OutOfSyncReason, RawLevel, ReadError, SegmentConfig, SegmentReader, SegmentWriter, Side, Trust,
    WriteError, segment_name, select_levels,
};

/// A cluster name no other test (or test run) uses.
fn cluster(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "seg{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn writer(cluster: &str, levels: u32) -> SegmentWriter {
    SegmentConfig::new(cluster, "dcn-0")
        .books(8)
        .levels_per_side(levels)
        .create()
        .expect("create segment")
}

fn synced(last_update_id: u64) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id,
        event_time_ms: 1_700_000_000_000,
        ..BookMeta::starting()
    }
}

fn raw(pairs: &[(u64, u64)]) -> Vec<RawLevel> {
    pairs
        .iter()
        .map(|&(price, quantity)| RawLevel { price, quantity })
        .collect()
}

#[test]
fn a_published_book_reads_back_exactly() {
    let cluster = cluster("rt");
    let mut writer = writer(&cluster, 10);
    let book = writer.add_book("binance.com", "BTCUSDT").unwrap();
    let bids = raw(&[(9_998_000_000, 150_000_000), (9_997_000_000, 1)]);
    let asks = raw(&[(9_999_000_000, 10_000_000)]);
    let sides = BookSides {
        price_exponent: -8,
        quantity_exponent: -8,
        bids: &bids,
        asks: &asks,
    };
    writer.publish(book, &synced(42), &sides).unwrap();

    let mut reader = ClusterReader::open(&cluster).unwrap();
    let mut out = Vec::new();
    let info = reader
        .read(
            "binance.com",
            "BTCUSDT",
            Side::Bids,
            &LevelQuery::ALL,
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Level {
                price: 99.98,
                quantity: 1.5
            },
            Level {
                price: 99.97,
                quantity: 1e-8
            }
        ]
    );
    assert_eq!(
        (
            info.last_update_id,
            info.bid_count,
            info.ask_count,
            info.updates
        ),
        (42, 2, 1, 1)
    );
    assert_eq!(info.event_time_ms, 1_700_000_000_000);
    assert!(info.publish_time_ns > 0);
    reader
        .read(
            "binance.com",
            "BTCUSDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![Level {
            price: 99.99,
            quantity: 0.1
        }]
    );
}

#[test]
fn books_that_are_not_synced_are_never_served() {
    let cluster = cluster("ns");
    let mut writer = writer(&cluster, 4);
    let book = writer.add_book("binance.com-futures", "ETHUSDT").unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let mut out = Vec::new();

    let error = reader
        .read(
            "binance.com-futures",
            "ETHUSDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::NotSynced {
                status: BookStatus::Starting,
                ..
            }
        ),
        "{error}"
    );

    let asks = raw(&[(1, 1)]);
    writer
        .publish(
            book,
            &synced(1),
            &BookSides {
                price_exponent: 0,
                quantity_exponent: 0,
                bids: &[],
                asks: &asks,
            },
        )
        .unwrap();
    reader
        .read(
            "binance.com-futures",
            "ETHUSDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut out,
        )
        .unwrap();
    assert_eq!(out.len(), 1);

    let gap = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        gaps: 1,
        ..synced(1)
    };
    writer.publish_meta(book, &gap).unwrap();
    let error = reader
        .read(
            "binance.com-futures",
            "ETHUSDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut out,
        )
        .unwrap_err();
    assert!(out.is_empty(), "no levels on error");
    assert!(
        error
            .to_string()
            .contains("out of sync (gap in update ids)"),
        "{error}"
    );
    let info = reader.info("binance.com-futures", "ETHUSDT").unwrap();
    assert_eq!(
        (info.status, info.gaps),
        (BookStatus::OutOfSync(OutOfSyncReason::Gap), 1)
    );
}

#[test]
fn removed_books_disappear_and_new_books_are_found_without_reopening() {
    let cluster = cluster("rm");
    let mut writer = writer(&cluster, 4);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        reader.read("binance.com", "A", Side::Bids, &LevelQuery::ALL, &mut out),
        Err(ReadError::NotFound { .. })
    ));

    let a = writer.add_book("binance.com", "A").unwrap();
    writer
        .publish(
            a,
            &synced(1),
            &BookSides {
                price_exponent: 0,
                quantity_exponent: 0,
                bids: &raw(&[(5, 1)]),
                asks: &[],
            },
        )
        .unwrap();
    reader
        .read("binance.com", "A", Side::Bids, &LevelQuery::ALL, &mut out)
        .expect("a new book is found after a miss");

    writer.remove_book(a).unwrap();
    assert!(matches!(
        reader.read("binance.com", "A", Side::Bids, &LevelQuery::ALL, &mut out),
        Err(ReadError::NotFound { .. })
    ));
    assert_eq!(
        writer.publish_meta(a, &synced(2)),
        Err(WriteError::StaleHandle {
            slot: a.slot(),
            generation: a.generation()
        })
    );

    // The slot is reused by another book with a new generation; the old location cannot leak it.
    let b = writer.add_book("binance.com", "B").unwrap();
    assert_eq!(b.slot(), a.slot());
    assert!(b.generation() > a.generation());
    assert!(matches!(
        reader.read("binance.com", "A", Side::Bids, &LevelQuery::ALL, &mut out),
        Err(ReadError::NotFound { .. })
    ));
    assert_eq!(
        reader
            .list()
            .iter()
            .map(|l| l.market.as_str())
            .collect::<Vec<_>>(),
        ["B"]
    );
}

#[test]
fn a_new_dcn_is_found_while_the_known_replica_is_not_synced() {
    let cluster = cluster("dcn2");
    let mut first = writer(&cluster, 4);
    first.add_book("binance.com", "X").unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let mut out = Vec::new();
    let error = reader
        .read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out)
        .unwrap_err();
    assert!(matches!(error, ReadError::NotSynced { .. }), "{error}");

    // A second DCN starts and syncs a replica of the same book.
    let mut second = SegmentConfig::new(cluster.as_str(), "dcn-1")
        .books(2)
        .levels_per_side(4)
        .create()
        .unwrap();
    let book = second.add_book("binance.com", "X").unwrap();
    let asks = raw(&[(7, 1)]);
    let sides = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    second.publish(book, &synced(3), &sides).unwrap();
    let info = reader
        .read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out)
        .expect("the synced replica on the new DCN is served");
    assert_eq!((info.last_update_id, out.len()), (3, 1));
    assert_eq!(
        reader.info("binance.com", "X").unwrap().status,
        BookStatus::Synced
    );
    assert_eq!(reader.list().len(), 2);
}

#[test]
fn writer_rejects_bad_input_without_changing_the_segment() {
    let cluster = cluster("bad");
    let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0")
        .books(1)
        .levels_per_side(2)
        .create()
        .unwrap();
    assert!(matches!(
        writer.add_book("", "X"),
        Err(WriteError::InvalidName {
            what: "exchange",
            ..
        })
    ));
    assert!(matches!(
        writer.add_book("binance.com", &"X".repeat(49)),
        Err(WriteError::InvalidName { what: "market", .. })
    ));
    let book = writer.add_book("binance.com", "X").unwrap();
    assert!(matches!(
        writer.add_book("binance.com", "X"),
        Err(WriteError::DuplicateBook { .. })
    ));
    assert_eq!(
        writer.add_book("binance.com", "Y"),
        Err(WriteError::Full { capacity: 1 })
    );
    let three = raw(&[(3, 1), (2, 1), (1, 1)]);
    let error = writer
        .publish(
            book,
            &synced(1),
            &BookSides {
                price_exponent: 0,
                quantity_exponent: 0,
                bids: &three,
                asks: &[],
            },
        )
        .unwrap_err();
    assert_eq!(
        error,
        WriteError::TooManyLevels {
            side: "bids",
            count: 3,
            capacity: 2
        }
    );
    assert!(SegmentConfig::new("a.b", "dcn").create().is_err());
    assert!(
        SegmentConfig::new("ok", "dcn")
            .levels_per_side(0)
            .create()
            .is_err()
    );
}

#[test]
fn a_live_writers_segment_is_not_taken_over() {
    let cluster = cluster("live");
    let first = writer(&cluster, 4);
    let error = SegmentConfig::new(cluster.as_str(), "dcn-0")
        .create()
        .expect_err("second writer must be refused");
    assert!(error.to_string().contains("live writer"), "{error}");
    assert!(
        error.to_string().contains(&std::process::id().to_string()),
        "names the owner's pid: {error}"
    );
    drop(first);
    // After a clean shutdown the name is free again.
    SegmentConfig::new(cluster.as_str(), "dcn-0")
        .create()
        .expect("free after the first writer dropped");
}

#[test]
fn of_writers_racing_for_one_name_exactly_one_wins() {
    let cluster = cluster("race");
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    SegmentConfig::new(cluster.as_str(), "dcn-0")
                        .books(2)
                        .levels_per_side(4)
                        .create()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect()
    });
    let (winners, losers): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(winners.len(), 1, "losers: {losers:?}");
    for loser in &losers {
        let error = loser.as_ref().err().unwrap();
        assert!(
            matches!(error, ubdcc_shm::CreateSegmentError::InUse { .. }),
            "{error}"
        );
    }
    // The name refers to the winner's segment, not an orphaned one.
    let mut winner = winners.into_iter().next().unwrap().unwrap();
    winner.add_book("binance.com", "W").unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert_eq!(reader.list().len(), 1);
}

#[test]
fn a_dropped_writer_is_reported_gone_at_once() {
    let cluster = cluster("gone");
    let mut writer = writer(&cluster, 4);
    let book = writer.add_book("binance.com", "X").unwrap();
    writer
        .publish(
            book,
            &synced(1),
            &BookSides {
                price_exponent: 0,
                quantity_exponent: 0,
                bids: &raw(&[(1, 1)]),
                asks: &[],
            },
        )
        .unwrap();
    let segment = SegmentReader::open(
        &segment_name(&cluster, "dcn-0").unwrap(),
        &Trust::own_user(),
    )
    .unwrap();
    segment.check_writer().unwrap();
    drop(writer);
    assert!(matches!(
        segment.check_writer(),
        Err(ReadError::WriterGone { .. })
    ));
}

/// Writes `bytes` as the shm object `name` and returns its cleanup guard.
struct RawObject(String);

impl RawObject {
    fn new(name: &str, bytes: &[u8]) -> Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Owner-only whatever the umask: readers refuse files that others may write.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        file.write_all(bytes).unwrap();
        Self(name.to_owned())
    }
}

impl Drop for RawObject {
    fn drop(&mut self) {
        std::fs::remove_file(format!("/dev/shm/{}", self.0)).ok();
    }
}

/// A valid segment's bytes, to corrupt.
fn valid_segment_bytes() -> Vec<u8> {
    let cluster = cluster("src");
    let writer = writer(&cluster, 4);
    let bytes = std::fs::read(format!("/dev/shm/{}", writer.name())).unwrap();
    drop(writer);
    bytes
}

#[test]
fn garbage_truncated_and_foreign_layouts_are_clear_errors() {
    let cluster = cluster("junk");
    let open = |dcn: &str| {
        SegmentReader::open(&segment_name(&cluster, dcn).unwrap(), &Trust::own_user())
            .expect_err("must not open")
    };

    let _empty = RawObject::new(&segment_name(&cluster, "empty").unwrap(), &[]);
    assert!(matches!(
        open("empty"),
        OpenSegmentError::Truncated { size: 0, .. }
    ));

    let _garbage = RawObject::new(&segment_name(&cluster, "garbage").unwrap(), &[0xa5; 4096]);
    assert!(matches!(open("garbage"), OpenSegmentError::BadMagic { .. }));

    let bytes = valid_segment_bytes();
    let _truncated = RawObject::new(
        &segment_name(&cluster, "truncated").unwrap(),
        &bytes[..bytes.len() / 2],
    );
    assert!(
        matches!(open("truncated"), OpenSegmentError::Truncated { .. }),
        "{}",
        open("truncated")
    );

    let mut future = bytes.clone();
    let next_major = ubdcc_shm::LAYOUT_MAJOR + 1;
    future[8..12].copy_from_slice(&next_major.to_le_bytes()); // layout_major
    let _future = RawObject::new(&segment_name(&cluster, "future").unwrap(), &future);
    assert!(matches!(
        open("future"),
        OpenSegmentError::LayoutVersion { found_major, .. } if found_major == next_major
    ));

    let mut rehashed = bytes.clone();
    rehashed[16] ^= 1; // layout_hash
    let _rehashed = RawObject::new(&segment_name(&cluster, "rehashed").unwrap(), &rehashed);
    assert!(matches!(
        open("rehashed"),
        OpenSegmentError::LayoutHash { .. }
    ));

    let mut wild = bytes.clone();
    wild[64..72].copy_from_slice(&u64::MAX.to_le_bytes()); // directory_offset
    let _wild = RawObject::new(&segment_name(&cluster, "wild").unwrap(), &wild);
    assert!(matches!(open("wild"), OpenSegmentError::Corrupt { .. }));

    // The cluster reader skips every one of them, keeps the reasons, and still works.
    let mut reader = ClusterReader::open(&cluster).unwrap();
    assert_eq!(reader.open_errors().count(), 6);
    assert!(reader.list().is_empty());
    let mut out = Vec::new();
    assert!(matches!(
        reader.read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out),
        Err(ReadError::NotFound { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The shm read path selects exactly what the reference selection does on converted levels.
    #[test]
    fn shm_selection_equals_the_reference_selection(
        asks in proptest::collection::vec((1u64..10_000_000, 1u64..1_000_000), 0..40),
        limit in proptest::option::of(0i64..50),
        threshold in proptest::option::of(0.0f64..5_000.0),
    ) {
        let cluster = cluster("prop");
        let mut writer = writer(&cluster, 64);
        let book = writer.add_book("binance.com", "P").unwrap();
        let levels = raw(&asks);
        writer.publish(book, &synced(1), &BookSides { price_exponent: -4, quantity_exponent: -3, bids: &[], asks: &levels }).unwrap();
        let converted: Vec<Level> = asks.iter().map(|&(p, q)| Level { price: p as f64 / 1e4, quantity: q as f64 / 1e3 }).collect();
        let query = LevelQuery::new(limit, threshold).unwrap();
        let mut reader = ClusterReader::open(&cluster).unwrap();
        let mut out = Vec::new();
        reader.read("binance.com", "P", Side::Asks, &query, &mut out).unwrap();
        prop_assert_eq!(out, select_levels(&converted, &query));
    }
}
