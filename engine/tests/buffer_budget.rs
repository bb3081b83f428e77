//! Books that share one node's event-buffer budget, read back through shared memory: a book the
//! budget cannot serve is published out of sync with reason "event buffer overflow", and syncs
//! with the next snapshot that fits what it kept.

use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate};
use ubdcc_engine::{
    BufferBudget, BufferLimits, DepthCache, DiffEvent, Exchange, NextStep, Publisher, UpdateIds,
};
use ubdcc_shm::{
    BookStatus, ClusterReader, Decimal, LevelQuery, OutOfSyncReason, ReadError, SegmentConfig, Side,
};

fn publisher(cluster: &str) -> Publisher {
    Publisher::new(
        SegmentConfig::new(cluster, "dcn")
            .books(4)
            .levels_per_side(5)
            .create()
            .expect("segment"),
    )
}

fn event(first: u64, last: u64) -> DiffUpdate {
    DiffUpdate {
        event_time_ms: last,
        ids: UpdateIds {
            first,
            last,
            previous_last: None,
        },
        bids: vec![LevelUpdate {
            price: Decimal::parse("100").unwrap(),
            quantity: Decimal::parse(&last.to_string()).unwrap(),
        }],
        asks: vec![],
    }
}

fn status(reader: &mut ClusterReader, market: &str) -> BookStatus {
    let mut out = Vec::new();
    match reader.read(
        "binance.com",
        market,
        Side::Bids,
        &LevelQuery::ALL,
        &mut out,
    ) {
        Ok(_) => BookStatus::Synced,
        Err(ReadError::NotSynced { status, .. }) => status,
        Err(other) => panic!("{market}: {other:?}"),
    }
}

#[test]
fn a_book_the_node_budget_cannot_serve_is_out_of_sync_with_its_reason_then_syncs() {
    let cluster = format!("enginebudget{}", std::process::id());
    let mut publisher = publisher(&cluster);
    let size = event(1, 1).buffered_bytes();
    // Room for three events in the whole node.
    let limits = BufferLimits {
        per_book: usize::MAX,
        budget: BufferBudget::new(3 * size),
    };
    let mut busy = DepthCache::with_limits(
        Exchange::BinanceCom,
        "BUSY",
        1000,
        limits.clone(),
        &mut publisher,
    )
    .unwrap();
    let mut late = DepthCache::with_limits(
        Exchange::BinanceCom,
        "LATE",
        1000,
        limits.clone(),
        &mut publisher,
    )
    .unwrap();
    let mut reader = ClusterReader::open(&cluster).unwrap();
    for id in 1..=3 {
        let step = busy.on_update(event(id, id), 0, &mut publisher).unwrap();
        assert_eq!(step, NextStep::Continue);
    }
    assert_eq!(limits.budget.used(), 3 * size);

    // No room left: the late book keeps nothing and says why, asking for nothing new (its
    // snapshot is on its way already).
    let step = late.on_update(event(50, 50), 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::Continue);
    assert_eq!(
        status(&mut reader, "LATE"),
        BookStatus::OutOfSync(OutOfSyncReason::BufferOverflow)
    );
    assert_eq!(status(&mut reader, "BUSY"), BookStatus::Starting);
    assert_eq!(limits.budget.overflows(), 1);

    // The busy book's snapshot gives its bytes back; the late one buffers again and syncs.
    busy.on_snapshot(2, &[], &[], 0, &mut publisher).unwrap();
    assert_eq!(status(&mut reader, "BUSY"), BookStatus::Synced);
    assert_eq!(limits.budget.used(), 0);
    late.on_update(event(51, 51), 0, &mut publisher).unwrap();
    let step = late.on_snapshot(50, &[], &[], 0, &mut publisher).unwrap();
    assert_eq!(step, NextStep::Continue);
    assert_eq!(status(&mut reader, "LATE"), BookStatus::Synced);
    assert_eq!(late.meta().last_update_id, 51);
    drop((busy, late));
    assert_eq!(limits.budget.used(), 0);
}
