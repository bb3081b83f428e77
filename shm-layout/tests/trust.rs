//! Segment modes and reader trust in one process: segments are created owner-only, readers ignore
//! segments of other owners, writable segments, links and FIFOs with a reason, and a segment
//! shrunk under a reader is refused before its memory is touched. Changing a file's owner needs
//! root; those tests say so and return early elsewhere.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use ubdcc_shm::{
    BookMeta, BookSides, BookStatus, ClusterReader, CreateSegmentError, Distrust, LevelQuery,
    OpenSegmentError, RawLevel, ReadError, SegmentConfig, SegmentWriter, Side, Trust,
};

/// A uid that owns nothing here (nobody).
const OTHER_UID: u32 = 65_534;

/// A cluster name no other test (or test run) uses.
fn cluster(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "trust{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn path(writer: &SegmentWriter) -> String {
    format!("/dev/shm/{}", writer.name())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A segment of DCN `dcn` holding `BTCUSDT` with one ask at `ask` (a price that tells segments
/// apart).
fn segment_with_ask(cluster: &str, dcn: &str, ask: u64) -> SegmentWriter {
    let mut writer = SegmentConfig::new(cluster, dcn)
        .books(2)
        .levels_per_side(1000)
        .create()
        .expect("create segment");
    let book = writer.add_book("binance.com", "BTCUSDT").unwrap();
    let asks = [RawLevel {
        price: ask,
        quantity: 1,
    }];
    let sides = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: ask,
        ..BookMeta::starting()
    };
    writer.publish(book, &meta, &sides).unwrap();
    writer
}

fn best_ask(reader: &mut ClusterReader) -> Result<f64, ReadError> {
    let mut out = Vec::new();
    reader.read(
        "binance.com",
        "BTCUSDT",
        Side::Asks,
        &LevelQuery::top(1),
        &mut out,
    )?;
    Ok(out[0].price)
}

#[test]
fn new_segments_are_owner_only_unless_configured() {
    let cluster = cluster("mode");
    let default = segment_with_ask(&cluster, "dcn-0", 1);
    let meta = std::fs::metadata(path(&default)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

    let gid = rustix::process::getegid().as_raw();
    let shared = SegmentConfig::new(cluster.as_str(), "dcn-1")
        .mode(0o640)
        .group(gid)
        .create()
        .unwrap();
    let meta = std::fs::metadata(path(&shared)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), gid);
}

#[test]
fn modes_that_let_others_write_are_refused_at_create() {
    let cluster = cluster("badmode");
    for mode in [0o660, 0o646, 0o666, 0o700, 0o4600] {
        let error = SegmentConfig::new(cluster.as_str(), "dcn-0")
            .mode(mode)
            .create()
            .expect_err("must be refused");
        assert!(
            matches!(error, CreateSegmentError::InvalidMode { mode: m } if m == mode),
            "{error}"
        );
    }
}

#[test]
fn a_segment_group_given_to_another_group_has_that_group() {
    if !is_root() {
        eprintln!("skipped: giving a segment to a group this user is not in needs root");
        return;
    }
    let cluster = cluster("group");
    let writer = SegmentConfig::new(cluster.as_str(), "dcn-0")
        .mode(0o640)
        .group(4242)
        .create()
        .unwrap();
    assert_eq!(std::fs::metadata(path(&writer)).unwrap().gid(), 4242);
}

#[test]
fn another_owners_segment_is_ignored_and_does_not_shadow_the_real_one() {
    if !is_root() {
        eprintln!("skipped: giving a segment to another uid needs root");
        return;
    }
    let cluster = cluster("owner");
    // "aaa" sorts before "dcn-0": before trust, its book was served first.
    let forged = segment_with_ask(&cluster, "aaa", 666);
    let _real = segment_with_ask(&cluster, "dcn-0", 100);
    std::os::unix::fs::chown(path(&forged), Some(OTHER_UID), Some(OTHER_UID)).unwrap();

    let mut reader = ClusterReader::open_trusting(&cluster, Trust::own_user()).unwrap();
    assert_eq!(best_ask(&mut reader).unwrap(), 100.0);
    assert_eq!(reader.segments().len(), 1);
    let ignored: Vec<_> = reader.ignored().collect();
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0].name, forged.name());
    assert!(
        matches!(ignored[0].reason, Distrust::Owner { uid: OTHER_UID, .. }),
        "{}",
        ignored[0]
    );
    assert!(
        ignored[0].to_string().contains("uid 65534"),
        "{}",
        ignored[0]
    );
    assert_eq!(reader.open_errors().count(), 0);
    assert!(
        reader
            .list()
            .iter()
            .all(|book| book.segment != forged.name())
    );

    // Trusted by uid, or by its group, the same segment is read (and sorts first).
    let by_uid = Trust::own_user().uid(OTHER_UID);
    let mut reader = ClusterReader::open_trusting(&cluster, by_uid).unwrap();
    assert_eq!(best_ask(&mut reader).unwrap(), 666.0);
    let by_gid = Trust::own_user().with_spec("gid:65534").unwrap();
    let mut reader = ClusterReader::open_trusting(&cluster, by_gid).unwrap();
    assert_eq!(best_ask(&mut reader).unwrap(), 666.0);
}

#[test]
fn a_segment_others_may_write_is_ignored_even_when_it_is_ours() {
    let cluster = cluster("writable");
    let writable = segment_with_ask(&cluster, "aaa", 666);
    let _real = segment_with_ask(&cluster, "dcn-0", 100);
    std::fs::set_permissions(path(&writable), std::fs::Permissions::from_mode(0o660)).unwrap();

    let mut reader = ClusterReader::open_trusting(&cluster, Trust::own_user()).unwrap();
    assert_eq!(best_ask(&mut reader).unwrap(), 100.0);
    let ignored: Vec<_> = reader.ignored().collect();
    assert_eq!(ignored.len(), 1);
    assert_eq!(
        ignored[0].reason,
        Distrust::WritableByOthers { mode: 0o660 },
        "{}",
        ignored[0]
    );
}

#[test]
fn links_and_fifos_under_segment_names_are_ignored_without_blocking() {
    let cluster = cluster("links");
    let real = segment_with_ask(&cluster, "dcn-0", 100);
    let link = format!("/dev/shm/ubdcc.{cluster}.aaa");
    std::os::unix::fs::symlink(path(&real), &link).unwrap();
    let fifo = format!("/dev/shm/ubdcc.{cluster}.bbb");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fifo.as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();

    let mut reader = ClusterReader::open_trusting(&cluster, Trust::own_user()).unwrap();
    let result = best_ask(&mut reader);
    let ignored: Vec<_> = reader.ignored().map(ToString::to_string).collect();
    std::fs::remove_file(&link).ok();
    std::fs::remove_file(&fifo).ok();
    assert_eq!(result.unwrap(), 100.0);
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    assert!(
        ignored
            .iter()
            .all(|reason| reason.contains("not a regular file")),
        "{ignored:?}"
    );
}

#[test]
fn a_bad_trust_setting_is_an_error_naming_the_entry() {
    let error = Trust::own_user()
        .with_spec("uid:1000,user:bob")
        .unwrap_err();
    assert_eq!(error.entry, "user:bob");
    assert!(error.to_string().contains("uid:N or gid:N"), "{error}");
}

#[test]
fn a_shrunk_segment_is_refused_before_its_memory_is_touched() {
    let cluster = cluster("shrunk");
    let writer = segment_with_ask(&cluster, "dcn-0", 100);
    let mut reader = ClusterReader::open_trusting(&cluster, Trust::own_user()).unwrap();
    assert_eq!(best_ask(&mut reader).unwrap(), 100.0);

    // What a buggy writer could do (only the owner can: the segment is 0600).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path(&writer))
        .unwrap();
    file.set_len(4096).unwrap();

    // The next lock probe (forced here; reads probe at least every 50 ms) sees the shrink. Had
    // any read touched the pages past 4096 bytes, this test process would die of SIGBUS.
    let shrunk = reader.segments()[0].check_writer_now().unwrap_err();
    assert!(
        matches!(shrunk, ReadError::SegmentShrunk { size: 4096, .. }),
        "{shrunk}"
    );
    assert!(reader.segments()[0].is_shrunk());
    let error = best_ask(&mut reader).unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::SegmentShrunk { .. } | ReadError::NotFound { .. }
        ),
        "{error}"
    );
    assert!(reader.list().is_empty());
    // Reopened at the refresh, the file is what it now is: too small for its header's claims.
    assert!(
        reader
            .open_errors()
            .any(|error| matches!(error, OpenSegmentError::Truncated { .. })),
        "{:?}",
        reader.open_errors().collect::<Vec<_>>()
    );
}

#[test]
fn a_writer_refuses_a_name_taken_by_a_fifo_link_or_foreign_file_without_blocking() {
    let cluster = cluster("squat");
    let create = |dcn: &str| {
        SegmentConfig::new(cluster.as_str(), dcn)
            .books(2)
            .levels_per_side(10)
            .create()
    };
    // A FIFO would block a plain open; a link would lead to a file of the neighbour's choice.
    let fifo = format!("/dev/shm/ubdcc.{cluster}.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fifo.as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let link = format!("/dev/shm/ubdcc.{cluster}.link");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    let fifo_result = create("fifo");
    let link_result = create("link");
    std::fs::remove_file(&fifo).ok();
    std::fs::remove_file(&link).ok();
    for result in [fifo_result, link_result] {
        assert!(
            matches!(
                result,
                Err(CreateSegmentError::Foreign {
                    reason: Distrust::NotRegularFile,
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
    }
    if !is_root() {
        return;
    }
    // A file of another user under the name: refused, named, not locked or mapped.
    let squatted = format!("/dev/shm/ubdcc.{cluster}.taken");
    std::fs::write(&squatted, vec![0u8; 4096]).unwrap();
    std::os::unix::fs::chown(&squatted, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o600)).unwrap();
    let result = create("taken");
    std::fs::remove_file(&squatted).ok();
    let Err(error) = result else {
        panic!("a foreign file under the name must be refused")
    };
    assert!(
        matches!(
            error,
            CreateSegmentError::Foreign {
                reason: Distrust::Owner { uid: OTHER_UID, .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("remove /dev/shm/ubdcc."),
        "{error}"
    );
}
