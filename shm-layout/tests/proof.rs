//! The trust layer's metadata through the segment: audits, freshness and the top hash a writer
//! publishes are what `ClusterReader::proof` and `info` read back, from the replica reads use.

use ubdcc_shm::{
    Audit, BookEdits, BookMeta, BookSides, BookStatus, ClusterReader, Freshness, LevelEdit,
    OutOfSyncReason, RawLevel, SegmentConfig, SegmentWriter, TopHash, top_hash, top_hash_of,
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
    // The engine hashes its book and hands the hash over; the next publish carries it.
    let at_5 = TopHash {
        hash: top_hash(-2, 0, &bids, &[]),
        update_id: 5,
    };
    writer.set_top_hash(book, at_5).expect("set");
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
    assert_eq!(proof.top_hash, at_5);
    assert_eq!(
        reader.info("binance.com", "X").expect("info"),
        proof.info,
        "info is the proof's info"
    );

    // Publishes without a new hash keep the last one, with the id it describes: the hash of
    // the end of an exchange second stays readable through the events of the next.
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
    assert_eq!(after_deep.top_hash, at_5);
    assert_eq!(after_deep.audit, audit, "audits stay through publishes");
    assert!(after_deep.freshness.is_empty());
    // A hash of the book at 6 rides on the publish of 7 (hashed before the event was applied).
    let at_6 = TopHash {
        hash: top_hash_of(-2, 0, bids.iter().copied(), std::iter::empty()),
        update_id: 6,
    };
    assert_eq!(at_6.hash, at_5.hash, "the same top, from an iterator");
    writer.set_top_hash(book, at_6).expect("set");
    let top = [LevelEdit::Remove { at: 0 }];
    let edits = BookEdits {
        bids: &top,
        asks: &[],
    };
    writer
        .publish_edits(book, &synced(7), &edits)
        .expect("top edit");
    let after_top = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(after_top.top_hash, at_6);
    assert_eq!(after_top.info.last_update_id, 7);
    // A metadata-only publish carries one too, once.
    let at_7 = TopHash {
        hash: 77,
        update_id: 7,
    };
    writer.set_top_hash(book, at_7).expect("set");
    writer.publish_meta(book, &synced(7)).expect("meta");
    assert_eq!(
        reader.proof("binance.com", "X").expect("proof").top_hash,
        at_7
    );
    writer.publish_meta(book, &synced(7)).expect("meta");
    assert_eq!(
        reader.proof("binance.com", "X").expect("proof").top_hash,
        at_7
    );

    // Removed and added again: a new book, never audited.
    writer.remove_book(book).expect("remove");
    writer.add_book("binance.com", "X").expect("add again");
    let fresh = reader.proof("binance.com", "X").expect("proof");
    assert_eq!(fresh.audit, Audit::default());
    assert_eq!(fresh.top_hash, TopHash::default());
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

#[test]
fn a_refused_publish_leaves_the_top_hash_for_the_next_one() {
    let cluster = cluster("refused");
    let mut writer = writer(&cluster, "dcn");
    let book = writer.add_book("binance.com", "X").expect("add");
    let bids = levels(3);
    let sides = BookSides {
        price_exponent: -2,
        quantity_exponent: 0,
        bids: &bids,
        asks: &[],
    };
    writer.publish(book, &synced(1), &sides).expect("publish");
    let at_1 = TopHash {
        hash: top_hash(-2, 0, &bids, &[]),
        update_id: 1,
    };
    writer.set_top_hash(book, at_1).expect("set");
    // An edit beyond the side is refused before the slot is touched: the hash waits.
    let beyond = [LevelEdit::Remove { at: 9 }];
    let edits = BookEdits {
        bids: &beyond,
        asks: &[],
    };
    assert!(writer.publish_edits(book, &synced(2), &edits).is_err());
    let mut reader = ClusterReader::open(&cluster).expect("open");
    assert_eq!(
        reader.proof("binance.com", "X").expect("proof").top_hash,
        TopHash::default()
    );
    writer.publish(book, &synced(2), &sides).expect("publish");
    assert_eq!(
        reader.proof("binance.com", "X").expect("proof").top_hash,
        at_1
    );
    // A removed book takes none.
    writer.remove_book(book).expect("remove");
    assert!(writer.set_top_hash(book, at_1).is_err());
}
