//! The trust invariants of issue 16, through shared memory as a reader sees them: a crossed
//! book is never served (out of sync, reason `crossed`), ids that go backwards are a resync and
//! not an endlessly ignored event, a snapshot carries its own time (none for spot), and an
//! options snapshot is not served until the stream confirms it; audits prove a synced book or
//! replace it at the same update id without leaving sync; replicas fed the same stream publish
//! top hashes at the same update ids, however differently they started.

use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate};
use ubdcc_engine::{
    AuditStep, BufferBudget, DepthCache, Exchange, NextStep, Publisher, Snapshot, UpdateIds,
};
use ubdcc_shm::{
    BookStatus, ClusterReader, Decimal, Freshness, LevelQuery, OutOfSyncReason, SegmentConfig,
    Side, TopHash, top_hash,
};

fn cluster(tag: &str) -> String {
    format!("trust{tag}{}", std::process::id())
}

fn publisher(cluster: &str) -> Publisher {
    publisher_of(cluster, "dcn")
}

fn publisher_of(cluster: &str, dcn: &str) -> Publisher {
    Publisher::new(
        SegmentConfig::new(cluster, dcn)
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

fn event(
    (first, last, previous): (u64, u64, Option<u64>),
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: previous,
        },
        bids: levels(bids),
        asks: levels(asks),
    }
}

fn status(reader: &mut ClusterReader, exchange: &str, market: &str) -> BookStatus {
    reader.info(exchange, market).expect("info").status
}

/// A synced spot book: bid 99, ask 101, at update id 10.
fn synced_spot(cluster: &str) -> (Publisher, DepthCache, ClusterReader) {
    let mut publisher = publisher(cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let reader = ClusterReader::open(cluster).unwrap();
    let (bids, asks) = (levels(&[("99", "1")]), levels(&[("101", "1")]));
    cache
        .on_snapshot(10, &bids, &asks, 0, &mut publisher)
        .unwrap();
    cache
        .on_update(
            event((11, 11, None), &[("98", "1")], &[]),
            0,
            &mut publisher,
        )
        .unwrap();
    (publisher, cache, reader)
}

#[test]
fn an_event_that_crosses_the_book_puts_it_out_of_sync_as_crossed_and_asks_a_snapshot() {
    let cluster = cluster("crossed");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
    // A bid at the ask's price: the ask it should have removed was never announced gone.
    let step = cache
        .on_update(
            event((12, 12, None), &[("101", "2")], &[]),
            0,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
    assert_eq!(
        status(&mut reader, "binance.com", "X"),
        BookStatus::OutOfSync(OutOfSyncReason::Crossed)
    );
    assert_eq!(reader.info("binance.com", "X").unwrap().resyncs, 1);
    // Not served from the crossed state on: the next event is buffered, not applied.
    cache
        .on_update(
            event((13, 13, None), &[], &[("102", "1")]),
            0,
            &mut publisher,
        )
        .unwrap();
    assert_eq!(
        status(&mut reader, "binance.com", "X"),
        BookStatus::OutOfSync(OutOfSyncReason::Crossed)
    );
    // A good snapshot brings it back.
    let (bids, asks) = (levels(&[("100", "1")]), levels(&[("102", "1")]));
    cache
        .on_snapshot(13, &bids, &asks, 0, &mut publisher)
        .unwrap();
    assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
}

#[test]
fn a_crossed_snapshot_is_never_served() {
    let cluster = cluster("crossedsnap");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let (bids, asks) = (levels(&[("101", "1")]), levels(&[("100", "1")]));
    let step = cache
        .on_snapshot(10, &bids, &asks, 0, &mut publisher)
        .unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
    assert_eq!(
        status(&mut reader, "binance.com", "X"),
        BookStatus::OutOfSync(OutOfSyncReason::Crossed)
    );
}

/// `event` at exchange time `time_ms`.
fn at(time_ms: u64, mut event: DiffUpdate) -> DiffUpdate {
    event.event_time_ms = time_ms;
    event
}

#[test]
fn an_older_id_at_a_newer_exchange_time_is_a_resync_at_once() {
    let cluster = cluster("backnow");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    // A handover's successor replays what it held: older ids with their own times, ignored.
    for id in 5..11 {
        let replay = at(id, event((id, id, None), &[("97", "1")], &[]));
        let step = cache.on_update(replay, 0, &mut publisher).unwrap();
        assert_eq!(step, NextStep::Continue);
    }
    assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
    // `synced_spot` applied 11 at time 11; the exchange reset its ids, and its next event is
    // newer than anything the book applied.
    let reset = at(12, event((3, 3, None), &[("97", "1")], &[]));
    let step = cache.on_update(reset, 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
    assert_eq!(
        status(&mut reader, "binance.com", "X"),
        BookStatus::OutOfSync(OutOfSyncReason::IdsBackwards)
    );
    assert_eq!(reader.info("binance.com", "X").unwrap().gaps, 0);
    // A snapshot on the new ids brings it back.
    let (bids, asks) = (levels(&[("99", "1")]), levels(&[("101", "1")]));
    cache
        .on_snapshot(3, &bids, &asks, 0, &mut publisher)
        .unwrap();
    assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
}

#[test]
fn a_replayed_event_at_a_newer_exchange_time_is_not_taken_for_ids_going_backwards() {
    // A handover's successor replays what it held; were its copies stamped later than the
    // predecessor's (two connections, two stamps), the time rule must not resync the book.
    let cluster = cluster("replaynew");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    for id in 5..11 {
        let replay = at(100 + id, event((id, id, None), &[("97", "1")], &[]));
        let step = cache.on_replayed_update(replay, 0, &mut publisher).unwrap();
        assert_eq!(step, NextStep::Continue);
    }
    assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
    // The replay applies what is new by the same rules as a live event.
    let next = at(200, event((12, 12, None), &[("97", "2")], &[]));
    let step = cache.on_replayed_update(next, 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::Continue);
    assert_eq!(cache.meta().last_update_id, 12);
    // Once the live stream applies an event again, the same older id at a newer time is the
    // reset it looks like.
    let live = at(250, event((13, 13, None), &[("97", "3")], &[]));
    assert_eq!(
        cache.on_update(live, 0, &mut publisher).unwrap(),
        NextStep::Continue
    );
    let reset = at(300, event((3, 3, None), &[("97", "1")], &[]));
    let step = cache.on_update(reset, 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::FetchSnapshot);
}

#[test]
fn ids_that_go_backwards_are_a_resync_not_an_endlessly_ignored_event() {
    // No event was applied since the snapshot, so no event time to compare with: the count of
    // ignored events in a row is what catches the reset.
    let cluster = cluster("backwards");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let (bids, asks) = (levels(&[("99", "1")]), levels(&[("101", "1")]));
    cache
        .on_snapshot(100_000, &bids, &asks, 0, &mut publisher)
        .unwrap();
    // The exchange reset its ids far back: every event from now on is older than the book.
    let mut ignored = 0u32;
    let step = loop {
        let first = 3 + u64::from(ignored);
        let step = cache
            .on_update(
                event((first, first, None), &[("97", "1")], &[]),
                0,
                &mut publisher,
            )
            .unwrap();
        if step != NextStep::Continue || ignored == 10_000 {
            break step;
        }
        assert_eq!(status(&mut reader, "binance.com", "X"), BookStatus::Synced);
        ignored += 1;
    };
    assert_eq!(
        step,
        NextStep::FetchSnapshot,
        "after {ignored} ignored events"
    );
    assert_eq!(
        status(&mut reader, "binance.com", "X"),
        BookStatus::OutOfSync(OutOfSyncReason::IdsBackwards)
    );
}

#[test]
fn a_futures_duplicate_is_still_ignored_and_the_book_stays_synced() {
    let cluster = cluster("duplicate");
    let mut publisher = publisher(&cluster);
    let mut cache =
        DepthCache::new(Exchange::BinanceComFutures, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let (bids, asks) = (levels(&[("99", "1")]), levels(&[("101", "1")]));
    cache
        .on_snapshot(10, &bids, &asks, 0, &mut publisher)
        .unwrap();
    let first = event((10, 12, Some(9)), &[("98", "1")], &[]);
    cache.on_update(first.clone(), 0, &mut publisher).unwrap();
    let step = cache.on_update(first, 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::Continue);
    assert_eq!(
        status(&mut reader, "binance.com-futures", "X"),
        BookStatus::Synced
    );
}

fn snapshot(id: u64, time: Option<u64>) -> Snapshot {
    Snapshot {
        last_update_id: id,
        depth: 1000,
        bids: levels(&[("99", "1")]),
        asks: levels(&[("101", "1")]),
        exchange_time_ms: time,
    }
}

#[test]
fn a_snapshot_only_book_carries_the_snapshots_own_time() {
    let cluster = cluster("snaptime");
    let mut publisher = publisher(&cluster);
    let mut cache =
        DepthCache::new(Exchange::BinanceComFutures, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    // Received at t = 9 s, but the exchange's book is as of its T = 1 234 ms.
    cache
        .on_starting_book(&snapshot(10, Some(1_234)), 9_000_000_000, &mut publisher)
        .unwrap();
    let info = reader.info("binance.com-futures", "X").unwrap();
    assert_eq!(
        (info.status, info.event_time_ms, info.freshness),
        (BookStatus::Synced, 1_234, Freshness::SNAPSHOT_TIME)
    );
}

#[test]
fn an_options_snapshot_is_not_served_until_a_live_event_confirms_it() {
    let cluster = cluster("options");
    let mut publisher = publisher(&cluster);
    let exchange = Exchange::BinanceComVanillaOptions;
    let mut cache = DepthCache::new(exchange, "X-1-C", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    cache
        .on_starting_book(&snapshot(10, Some(1_000)), 0, &mut publisher)
        .unwrap();
    let name = exchange.as_str();
    assert!(
        !status(&mut reader, name, "X-1-C").is_synced(),
        "a lagging options snapshot alone is not served"
    );
    cache
        .on_update(
            event((10, 12, Some(8)), &[("98", "1")], &[]),
            0,
            &mut publisher,
        )
        .unwrap();
    let info = reader.info(name, "X-1-C").unwrap();
    assert_eq!((info.status, info.last_update_id), (BookStatus::Synced, 12));
}

fn spot_snapshot(id: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        last_update_id: id,
        depth: 1000,
        bids: levels(bids),
        asks: levels(asks),
        exchange_time_ms: None,
    }
}

#[test]
fn an_audit_that_agrees_is_counted_and_leaves_the_book_alone() {
    let cluster = cluster("auditok");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    assert!(cache.begin_audit(BufferBudget::new(1 << 20)));
    cache
        .on_update(
            event((12, 12, None), &[], &[("102", "1")]),
            0,
            &mut publisher,
        )
        .unwrap();
    // The exchange's snapshot at 12, equal to the live book there.
    let snapshot = spot_snapshot(
        12,
        &[("99", "1"), ("98", "1")],
        &[("101", "1"), ("102", "1")],
    );
    let step = cache.on_audit_snapshot(&snapshot, &mut publisher).unwrap();
    assert_eq!(step, AuditStep::Verified);
    let info = reader.proof("binance.com", "X").unwrap();
    assert_eq!((info.audit.audits, info.audit.audit_mismatches), (1, 0));
    assert!(info.audit.verified_at_ms > 0);
    assert!(!cache.is_auditing());
}

#[test]
fn an_audit_that_finds_a_silently_changed_level_replaces_the_book_without_leaving_sync() {
    let cluster = cluster("auditfix");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    assert!(cache.begin_audit(BufferBudget::new(1 << 20)));
    // The exchange changed the 98 bid to 5 without an event; the snapshot is at 11, the live
    // book too: the audit is judged at once.
    let snapshot = spot_snapshot(11, &[("99", "1"), ("98", "5")], &[("101", "1")]);
    let before = reader.info("binance.com", "X").unwrap();
    let step = cache.on_audit_snapshot(&snapshot, &mut publisher).unwrap();
    assert_eq!(step, AuditStep::Repaired(1));
    let info = reader.proof("binance.com", "X").unwrap();
    assert_eq!(info.status, BookStatus::Synced, "never out of sync");
    assert_eq!(
        (info.last_update_id, info.resyncs),
        (before.last_update_id, before.resyncs)
    );
    assert_eq!((info.audit.audits, info.audit.audit_mismatches), (1, 1));
    let mut bids = Vec::new();
    reader
        .read("binance.com", "X", Side::Bids, &LevelQuery::ALL, &mut bids)
        .unwrap();
    let bids: Vec<(f64, f64)> = bids.iter().map(|l| (l.price, l.quantity)).collect();
    assert_eq!(bids, [(99.0, 1.0), (98.0, 5.0)]);
    // The corrected book is hashed at its id: a replica that disagreed there agrees again.
    let corrected =
        [(99, 1), (98, 5)].map(|(price, quantity)| ubdcc_shm::RawLevel { price, quantity });
    let ask = [ubdcc_shm::RawLevel {
        price: 101,
        quantity: 1,
    }];
    assert_eq!(
        info.top_hash,
        TopHash {
            hash: top_hash(0, 0, &corrected, &ask),
            update_id: 11
        }
    );
}

#[test]
fn an_audit_catches_up_with_live_events_before_it_judges() {
    let cluster = cluster("auditlate");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    assert!(cache.begin_audit(BufferBudget::new(1 << 20)));
    // The snapshot is ahead of the stream (12); the live book gets there with the next event.
    let snapshot = spot_snapshot(12, &[("99", "1"), ("98", "1")], &[("101", "7")]);
    let step = cache.on_audit_snapshot(&snapshot, &mut publisher).unwrap();
    assert_eq!(step, AuditStep::Pending);
    assert!(cache.is_auditing());
    cache
        .on_update(
            event((12, 12, None), &[], &[("101", "7")]),
            0,
            &mut publisher,
        )
        .unwrap();
    assert!(!cache.is_auditing());
    let info = reader.proof("binance.com", "X").unwrap();
    assert_eq!(
        (info.audit.audits, info.audit.audit_mismatches, info.status),
        (1, 0, BookStatus::Synced)
    );
}

#[test]
fn a_book_that_loses_sync_drops_its_audit() {
    let cluster = cluster("auditlost");
    let (mut publisher, mut cache, mut reader) = synced_spot(&cluster);
    assert!(cache.begin_audit(BufferBudget::new(1 << 20)));
    cache
        .on_update(event((20, 20, None), &[], &[]), 0, &mut publisher)
        .unwrap();
    assert!(!cache.is_auditing());
    assert_eq!(reader.proof("binance.com", "X").unwrap().audit.audits, 0);
}

#[test]
fn a_shallower_audit_repairs_its_window_and_keeps_the_levels_beyond_it() {
    let cluster = cluster("auditshallow");
    let mut publisher = publisher(&cluster);
    let mut cache = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher).unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let bids = levels(&[("99", "1"), ("98", "1"), ("97", "1"), ("96", "1")]);
    cache
        .on_snapshot(10, &bids, &levels(&[("101", "1")]), 0, &mut publisher)
        .unwrap();
    assert!(cache.begin_audit(BufferBudget::new(1 << 20)));
    // A 2-level audit (what a node affords with many books): 98 was changed to 5.
    let snapshot = Snapshot {
        depth: 2,
        ..spot_snapshot(10, &[("99", "1"), ("98", "5")], &[("101", "1")])
    };
    let step = cache.on_audit_snapshot(&snapshot, &mut publisher).unwrap();
    assert_eq!(step, AuditStep::Repaired(1));
    let mut read = Vec::new();
    reader
        .read("binance.com", "X", Side::Bids, &LevelQuery::ALL, &mut read)
        .unwrap();
    let bids: Vec<(f64, f64)> = read.iter().map(|l| (l.price, l.quantity)).collect();
    assert_eq!(bids, [(99.0, 1.0), (98.0, 5.0), (97.0, 1.0), (96.0, 1.0)]);
}

/// A spot book of one bid and one ask around 100, its snapshot at `id`.
fn spot_book_at(id: u64) -> Snapshot {
    spot_snapshot(id, &[("99", "1")], &[("101", "1")])
}

#[test]
fn replicas_hash_their_books_at_the_same_update_ids_however_they_started() {
    let cluster = cluster("hashpoints");
    let (mut publisher_a, mut publisher_b) = (
        publisher_of(&cluster, "dcn-a"),
        publisher_of(&cluster, "dcn-b"),
    );
    let mut a = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher_a).unwrap();
    let mut b = DepthCache::new(Exchange::BinanceCom, "X", 1000, &mut publisher_b).unwrap();
    let mut readers = ["dcn-a", "dcn-b"].map(|dcn| ClusterReader::open_dcn(&cluster, dcn).unwrap());
    // Events 11..=40, three a second from exchange second 1 000 on (ids 11-13 in its first).
    let events: Vec<DiffUpdate> = (11..=40u64)
        .map(|id| {
            let price = format!("{}", 90 + id % 7);
            let time = 1_000_000 + (id - 11) / 3 * 1000 + (id - 11) % 3 * 10;
            at(time, event((id, id, None), &[(&price, "2")], &[]))
        })
        .collect();
    // a starts from a snapshot at 10, b from one at 24 (in the middle of a second).
    a.on_starting_book(&spot_book_at(10), 0, &mut publisher_a)
        .unwrap();
    b.on_starting_book(&spot_book_at(10), 0, &mut publisher_b)
        .unwrap();
    let proof = |reader: &mut ClusterReader| reader.proof("binance.com", "X").unwrap().top_hash;
    // Both loaded at 10: a hash of the snapshot each, the same one.
    assert_eq!(proof(&mut readers[0]), proof(&mut readers[1]));
    assert_eq!(proof(&mut readers[0]).update_id, 10);
    // b loses sync and starts again from a snapshot at 24, built from a's book there.
    for event in &events[..14] {
        a.on_update(event.clone(), 0, &mut publisher_a).unwrap();
    }
    let at_24 = Snapshot {
        last_update_id: 24,
        depth: 1000,
        bids: a
            .book()
            .best_first(Side::Bids)
            .map(|level| LevelUpdate {
                price: Decimal::new(level.price, a.book().price_exponent()),
                quantity: Decimal::new(level.quantity, a.book().quantity_exponent()),
            })
            .collect(),
        asks: levels(&[("101", "1")]),
        exchange_time_ms: None,
    };
    b.resync(OutOfSyncReason::Disconnected, &mut publisher_b)
        .unwrap();
    b.on_starting_book(&at_24, 0, &mut publisher_b).unwrap();
    let mut met = 0;
    for event in &events[14..] {
        a.on_update(event.clone(), 0, &mut publisher_a).unwrap();
        b.on_update(event.clone(), 0, &mut publisher_b).unwrap();
        let (hash_a, hash_b) = (proof(&mut readers[0]), proof(&mut readers[1]));
        // A point is the last id of an exchange second: 13, 16, 19, ... (a's first is 13).
        assert_eq!((hash_a.update_id - 13) % 3, 0, "{hash_a:?}");
        // b's first point after its load is the end of the first whole second it saw.
        if hash_b.update_id > 24 {
            assert_eq!(hash_a, hash_b, "after event {}", event.ids.last);
            met += 1;
        }
        // The hash is of the book at that id, not of the levels now published.
        assert!(hash_a.update_id < event.ids.last);
    }
    assert!(met >= 10, "met at {met} events");
    // The hash matches the book as it stood: replay a's events to the last point and hash.
    let last = proof(&mut readers[0]);
    let mut replay = OrderBookReplay::new();
    for event in events
        .iter()
        .take_while(|event| event.ids.last <= last.update_id)
    {
        replay.apply(event);
    }
    assert_eq!(last.hash, replay.hash());
    assert_ne!(last, TopHash::default());
}

/// The book a replica holds, rebuilt from the events alone (bids only change here).
struct OrderBookReplay {
    bids: std::collections::BTreeMap<u64, u64>,
}

impl OrderBookReplay {
    fn new() -> Self {
        Self {
            bids: [(99, 1)].into_iter().collect(),
        }
    }

    fn apply(&mut self, event: &DiffUpdate) {
        for level in &event.bids {
            let price = level.price.to_string().parse::<u64>().unwrap();
            let quantity = level.quantity.to_string().parse::<u64>().unwrap();
            self.bids.insert(price, quantity);
        }
    }

    fn hash(&self) -> u64 {
        let bids: Vec<ubdcc_shm::RawLevel> = self
            .bids
            .iter()
            .rev()
            .map(|(&price, &quantity)| ubdcc_shm::RawLevel { price, quantity })
            .collect();
        let asks = [ubdcc_shm::RawLevel {
            price: 101,
            quantity: 1,
        }];
        top_hash(0, 0, &bids, &asks)
    }
}
