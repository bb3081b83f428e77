//! The trust layer's metadata through the segment: audits, freshness and the top hash a writer
//! publishes are what `ClusterReader::proof` and `info` read back, from the replica reads use.

use ubdcc_shm::{
    Audit, BookEdits, BookMeta, BookSides, BookStatus, ClusterReader, Freshness, LevelEdit,
    OutOfSyncReason, RawLevel, SegmentConfig, SegmentWriter, top_hash,
};

fn cluster(tag: &str) -> String {
    format!("proof{tag}{}", std::process::id())
}

fn writer(cluster: &str, dcn: &str) -> SegmentWriter {
    SegmentConfig::new(cluster, dcn)
        .books(2)
        .levels_per_side(40)
        .create()
        .expect("create")
}

fn levels(count: u64) -> Vec<RawLevel> {
    (0..count)
        .map(|i| RawLevel {
            price: 10_000 - i,
            quantity: i + 1,
        })
        .collect()
}

fn synced(last_update_id: u64) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id,
        ..BookMeta::starting()
    }
}

#[test]
fn audits_freshness_and_the_top_hash_read_back_and_a_new_book_starts_clean() {
    let cluster = cluster("fields");
    let mut writer = writer(&cluster, "dcn");
    let book = writer.add_book("binance.com", "X").expect("add");
    let bids = levels(30);
    let sides = BookSides {
        price_exponent: -2,
        quantity_exponent: 0,
        bids: &bids,
        asks: &[],
    };
    let meta = BookMeta {
        freshness: Freshness::SNAPSHOT_TIME,
        ..synced(5)
    };
    writer.publish(book, &meta, &sides).expect("publish");
    let audit = Audit {
        verified_at_ms: 1_700_000_000_000,
        audits: 3,
        audit_mismatches: 1,
    };
    writer.publish_audit(book, &audit).expect("audit");
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let proof = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(proof.audit, audit);
    assert_eq!(proof.freshness, Freshness::SNAPSHOT_TIME);
    assert_eq!(proof.top_hash.hash, top_hash(-2, 0, &bids, &[]));
    assert_eq!(proof.top_hash.update_id, 5);
    assert_eq!(
        reader.info("binance.com", "X").expect("info"),
        proof.info,
        "info is the proof's info"
    );

    // An edit below the top keeps the hash, now stamped with the new id; one at the top moves it.
    let deep = [LevelEdit::Replace {
        at: 25,
        level: RawLevel {
            price: 9_975,
            quantity: 99,
        },
    }];
    let edits = BookEdits {
        bids: &deep,
        asks: &[],
    };
    writer
        .publish_edits(book, &synced(6), &edits)
        .expect("deep edit");
    let after_deep = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(
        (after_deep.top_hash.hash, after_deep.top_hash.update_id),
        (proof.top_hash.hash, 6)
    );
    assert_eq!(after_deep.audit, audit, "audits stay through publishes");
    assert!(after_deep.freshness.is_empty());
    let top = [LevelEdit::Remove { at: 0 }];
    let edits = BookEdits {
        bids: &top,
        asks: &[],
    };
    writer
        .publish_edits(book, &synced(7), &edits)
        .expect("top edit");
    let mut now = bids.clone();
    now[25] = RawLevel {
        price: 9_975,
        quantity: 99,
    };
    now.remove(0);
    let after_top = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(after_top.top_hash.hash, top_hash(-2, 0, &now, &[]));
    assert_eq!(after_top.top_hash.update_id, 7);

    // Removed and added again: a new book, never audited.
    writer.remove_book(book).expect("remove");
    writer.add_book("binance.com", "X").expect("add again");
    let fresh = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(fresh.audit, Audit::default());
    assert_eq!(fresh.top_hash.update_id, 0);
}

#[test]
fn the_proof_comes_from_the_replica_reads_would_use() {
    let cluster = cluster("replicas");
    // dcn-a sorts first but is out of sync; dcn-b is synced: reads (and the proof) use dcn-b.
    let mut out_of_sync = writer(&cluster, "dcn-a");
    let mut in_sync = writer(&cluster, "dcn-b");
    let a = out_of_sync.add_book("binance.com", "X").expect("add");
    let b = in_sync.add_book("binance.com", "X").expect("add");
    let gap = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        ..BookMeta::starting()
    };
    out_of_sync.publish_meta(a, &gap).expect("publish");
    let audit_of = |audits| Audit {
        verified_at_ms: 1,
        audits,
        audit_mismatches: 0,
    };
    out_of_sync.publish_audit(a, &audit_of(1)).expect("audit");
    in_sync.publish_meta(b, &synced(9)).expect("publish");
    in_sync.publish_audit(b, &audit_of(2)).expect("audit");

    let mut reader = ClusterReader::open(&cluster).expect("open");
    let proof = reader.proof("binance.com", "X").expect("proof");
    assert_eq!((proof.status, proof.audit.audits), (BookStatus::Synced, 2));
    assert_eq!(reader.last_served_dcn(), Some("dcn-b"));

    // With no synced replica left, the first readable one answers, with its own audits.
    in_sync.publish_meta(b, &gap).expect("publish");
    let proof = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(proof.audit.audits, 1);
    assert_eq!(reader.last_served_dcn(), Some("dcn-a"));
}
