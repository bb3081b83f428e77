//! A writer killed, stopped or replaced is noticed by readers within a second, and its data is
//! never returned meanwhile.

use std::time::{Duration, Instant};

use rustix::process::Signal;
use ubdcc_shm::{ClusterReader, LevelQuery, ReadError, Side};

use crate::pattern_writer::{ClusterCleanup, PatternWriter, unique_cluster};

/// Reads PATTERN0 until `done` accepts the result; returns how long that took. Gives up after
/// 10 s, which only a broken liveness check reaches.
fn read_until(
    reader: &mut ClusterReader,
    done: impl Fn(&Result<ubdcc_shm::BookInfo, ReadError>) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        let result = reader.read(
            "binance.com",
            "PATTERN0",
            Side::Asks,
            &LevelQuery::top(10),
            &mut out,
        );
        if done(&result) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no change after 10 s; last result {result:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_of_the_writer_is_reported_within_a_second() {
    let cluster = unique_cluster("kill");
    let _cleanup = ClusterCleanup::new(&cluster);
    let writer = PatternWriter::start(&cluster, "dcn", 1, 100, 500);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    read_until(&mut reader, Result::is_ok);

    writer.kill();
    let detected = read_until(&mut reader, |r| {
        matches!(r, Err(ReadError::WriterGone { .. }))
    });
    println!("SIGKILL detected after {detected:?}");
    assert!(detected < Duration::from_millis(1500), "took {detected:?}");
}

#[test]
fn a_killed_writers_book_is_never_copied_not_even_before_the_next_probe() {
    let cluster = unique_cluster("copykill");
    let _cleanup = ClusterCleanup::new(&cluster);
    let writer = PatternWriter::start(&cluster, "dcn", 1, 100, 500);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    read_until(&mut reader, Result::is_ok);
    reader.copy_book("binance.com", "PATTERN0", None).unwrap();

    // `kill` reaps the writer, so its lock is free now. A plain read may still be served until
    // the next lock probe is due; a copy probes the lock after copying, so the very first one
    // already refuses.
    writer.kill();
    let error = reader
        .copy_book("binance.com", "PATTERN0", None)
        .unwrap_err();
    assert!(matches!(error, ReadError::WriterGone { .. }), "{error}");
}

#[test]
fn a_stopped_writers_book_is_not_copied_and_is_again_once_it_continues() {
    let cluster = unique_cluster("copystop");
    let _cleanup = ClusterCleanup::new(&cluster);
    let writer = PatternWriter::start(&cluster, "dcn", 1, 100, 500);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    read_until(&mut reader, Result::is_ok);

    writer.signal(Signal::STOP);
    read_until(&mut reader, |r| {
        matches!(r, Err(ReadError::WriterHung { .. }))
    });
    let error = reader
        .copy_book("binance.com", "PATTERN0", None)
        .unwrap_err();
    assert!(matches!(error, ReadError::WriterHung { .. }), "{error}");

    writer.signal(Signal::CONT);
    read_until(&mut reader, Result::is_ok);
    let copy = reader.copy_book("binance.com", "PATTERN0", None).unwrap();
    assert_eq!(copy.dcn, "dcn");
}

#[test]
fn sigstop_of_the_writer_is_reported_as_hung_and_sigcont_recovers() {
    let cluster = unique_cluster("stop");
    let _cleanup = ClusterCleanup::new(&cluster);
    let writer = PatternWriter::start(&cluster, "dcn", 1, 100, 500);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    read_until(&mut reader, Result::is_ok);

    writer.signal(Signal::STOP);
    let detected = read_until(&mut reader, |r| {
        matches!(r, Err(ReadError::WriterHung { .. }))
    });
    println!("SIGSTOP detected after {detected:?}");
    assert!(detected < Duration::from_millis(1500), "took {detected:?}");

    writer.signal(Signal::CONT);
    let recovered = read_until(&mut reader, Result::is_ok);
    println!("SIGCONT recovered after {recovered:?}");
}

#[test]
fn a_restarted_writer_reclaims_the_segment_and_readers_follow_it() {
    let cluster = unique_cluster("reclaim");
    let _cleanup = ClusterCleanup::new(&cluster);
    let first = PatternWriter::start(&cluster, "dcn", 2, 50, 200);
    let mut reader = ClusterReader::open(&cluster).unwrap();
    read_until(&mut reader, Result::is_ok);
    first.kill();
    read_until(&mut reader, |r| {
        matches!(r, Err(ReadError::WriterGone { .. }))
    });

    // Same cluster and DCN name: the dead writer's segment is replaced, not refused.
    let _second = PatternWriter::start(&cluster, "dcn", 2, 50, 200);
    read_until(&mut reader, Result::is_ok);
    assert_eq!(
        reader.segments().len(),
        1,
        "the dead segment was dropped, the new one opened"
    );
}

#[test]
fn the_segments_of_dead_writers_are_swept_and_live_ones_kept() {
    let cluster = unique_cluster("sweep");
    let _cleanup = ClusterCleanup::new(&cluster);
    // PATTERN1 lives only in the writer that dies.
    let dead = PatternWriter::start(&cluster, "dead", 2, 10, 100);
    let _alive = PatternWriter::start(&cluster, "alive", 1, 10, 100);
    let mut earlier = ClusterReader::open(&cluster).unwrap();
    dead.kill();
    let gone = |reader: &mut ClusterReader| reader.info("binance.com", "PATTERN1").map(|_| ());
    assert!(matches!(
        gone(&mut earlier),
        Err(ReadError::WriterGone { .. })
    ));
    let mut reader = ClusterReader::open(&cluster).unwrap();
    let removed = reader.remove_dead_segments();
    assert_eq!(removed, [format!("ubdcc.{cluster}.dead")]);
    assert!(!std::path::Path::new(&format!("/dev/shm/ubdcc.{cluster}.dead")).exists());
    assert!(std::path::Path::new(&format!("/dev/shm/ubdcc.{cluster}.alive")).exists());
    assert_eq!(reader.dcns().collect::<Vec<_>>(), ["alive"]);
    assert!(
        reader.remove_dead_segments().is_empty(),
        "nothing left to sweep"
    );
    // A reader that knew the dead segment now finds the book gone, not its dead writer.
    assert!(matches!(
        gone(&mut earlier),
        Err(ReadError::NotFound { .. })
    ));
}
