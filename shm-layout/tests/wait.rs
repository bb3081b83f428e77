//! Waits in one process: a wait returns at once for a version already published, times out
//! when nothing newer comes, wakes for a publish from another thread, ends when its writer goes
//! away, and follows the book to another replica when the one waited on dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ubdcc_shm::{
    BookMeta, BookStatus, ClusterReader, ReadError, SegmentConfig, SegmentReader, SegmentWriter,
    Trust, WaitOutcome,
};

const PATIENCE: Duration = Duration::from_secs(10);

fn cluster(tag: &str) -> String {
    format!("wait{tag}{}", std::process::id())
}

fn writer(cluster: &str, dcn: &str) -> SegmentWriter {
    SegmentConfig::new(cluster, dcn)
        .books(2)
        .levels_per_side(4)
        .create()
        .expect("create")
}

fn synced(last_update_id: u64) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id,
        ..BookMeta::starting()
    }
}

#[test]
fn a_wait_returns_at_once_times_out_or_wakes_for_the_next_publish() {
    let cluster = cluster("basic");
    let mut writer = writer(&cluster, "dcn");
    let book = writer.add_book("binance.com", "X").expect("add");
    writer.publish_meta(book, &synced(1)).expect("publish");
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let seen = reader.changes("binance.com", "X").expect("changes");

    let at_once = reader.wait_for_update("binance.com", "X", 0, Duration::ZERO);
    assert_eq!(at_once.expect("wait"), WaitOutcome::Changed(seen));
    let idle = reader.wait_for_update("binance.com", "X", seen, Duration::from_millis(20));
    assert_eq!(idle.expect("wait"), WaitOutcome::TimedOut);

    let segment = SegmentReader::open(writer.name(), &Trust::own_user()).expect("open segment");
    assert_eq!(
        segment.changes(),
        seen,
        "the segment's stamp is its latest write's"
    );
    let publisher = std::thread::spawn(move || {
        writer.publish_meta(book, &synced(2)).expect("publish");
        writer
    });
    let WaitOutcome::Changed(next) = reader
        .wait_for_update("binance.com", "X", seen, PATIENCE)
        .expect("wait")
    else {
        panic!("published, so not a timeout");
    };
    assert!(next > seen);
    let writer = publisher.join().expect("publisher");
    assert_eq!(
        reader
            .info("binance.com", "X")
            .expect("info")
            .last_update_id,
        2
    );
    assert_eq!(
        segment.wait_for_any(seen, Duration::ZERO).expect("wait"),
        WaitOutcome::Changed(next)
    );

    // A writer that goes away ends the wait with its error, not with the timeout.
    let waiter =
        std::thread::spawn(move || reader.wait_for_update("binance.com", "X", next, PATIENCE));
    drop(writer);
    let ended = waiter.join().expect("waiter");
    assert!(
        matches!(
            ended,
            Err(ReadError::WriterGone { .. } | ReadError::NotFound { .. })
        ),
        "{ended:?}"
    );
}

#[test]
fn a_wait_follows_the_book_to_another_replica_when_its_writer_dies() {
    let cluster = cluster("failover");
    // dcn-a sorts first, so reads and waits use its replica while it lives.
    let mut first = writer(&cluster, "dcn-a");
    let mut second = writer(&cluster, "dcn-b");
    let a = first.add_book("binance.com", "X").expect("add");
    let b = second.add_book("binance.com", "X").expect("add");
    first.publish_meta(a, &synced(1)).expect("publish");
    second.publish_meta(b, &synced(1)).expect("publish");
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let seen = reader.info("binance.com", "X").expect("info").changes;
    assert_eq!(reader.last_served_dcn(), Some("dcn-a"));

    let stop = Arc::new(AtomicBool::new(false));
    let survivor = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            drop(first);
            // Publishes until the waiter is back, so its stamps pass any the waiter saw.
            let mut id = 2;
            while !stop.load(Ordering::Relaxed) {
                second.publish_meta(b, &synced(id)).expect("publish");
                second.heartbeat();
                id += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let outcome = reader.wait_for_update("binance.com", "X", seen, PATIENCE);
    stop.store(true, Ordering::Relaxed);
    survivor.join().expect("survivor");
    let WaitOutcome::Changed(stamp) = outcome.expect("followed to dcn-b") else {
        panic!("dcn-b publishes, so not a timeout");
    };
    assert!(stamp > seen);
    assert_eq!(reader.last_served_dcn(), Some("dcn-b"));
}

#[test]
fn two_threads_ping_pong_through_waits_on_two_segments() {
    let cluster = cluster("pingpong");
    let mut ping_writer = writer(&cluster, "a");
    let mut pong_writer = writer(&cluster, "b");
    let ping = ping_writer.add_book("binance.com", "PING").expect("add");
    let pong = pong_writer.add_book("binance.com", "PONG").expect("add");
    // Each side's first stamp is read before the first ping: read after it, the ponger would
    // take that ping for the version it already saw and wait for the next forever.
    let mut ponger_reader = ClusterReader::open(&cluster).expect("open");
    let ponger_seen = ponger_reader.changes("binance.com", "PING").expect("ping");
    let ponger = {
        std::thread::spawn(move || {
            let (mut reader, mut seen) = (ponger_reader, ponger_seen);
            for round in 1..=200 {
                match reader.wait_for_update("binance.com", "PING", seen, PATIENCE) {
                    Ok(WaitOutcome::Changed(stamp)) => seen = stamp,
                    other => panic!("ponger round {round}: {other:?} after {seen}"),
                }
                pong_writer
                    .publish_meta(pong, &synced(round))
                    .expect("publish");
                pong_writer.heartbeat();
            }
            // Handed back, not dropped: a dropped writer removes its segment, and the pinger may
            // not have read the last pong yet (CI met that as NotFound in round 200).
            pong_writer
        })
    };
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let mut seen = reader.changes("binance.com", "PONG").expect("pong");
    for round in 1..=200 {
        ping_writer
            .publish_meta(ping, &synced(round))
            .expect("publish");
        ping_writer.heartbeat();
        match reader.wait_for_update("binance.com", "PONG", seen, PATIENCE) {
            Ok(WaitOutcome::Changed(stamp)) => seen = stamp,
            other => panic!("pinger round {round}: {other:?} after {seen}"),
        }
    }
    drop(ponger.join().expect("ponger"));
}
