//! Waiters in this process follow books a writer process republishes at full speed: every wait
//! returns a change stamp above the one it was given (never a timeout while the writer
//! publishes), the read after it sees at least that version and is never torn, and once the
//! writer is killed the waits end with its error instead of sleeping on.

use std::thread;
use std::time::Duration;

use ubdcc_shm::{ClusterReader, LevelQuery, ReadError, Side, WaitOutcome, test_pattern};

use crate::pattern_writer::{ClusterCleanup, PatternWriter, unique_cluster};

const BOOKS: u32 = 4;
const LEVELS: u32 = 1000;
/// Far longer than any gap between two publishes of a full-speed writer, even on a loaded
/// machine: a timeout while it publishes means a wake-up went missing.
const PATIENCE: Duration = Duration::from_secs(10);

/// What one waiter saw.
#[derive(Debug, Default)]
struct Followed {
    wakes: u64,
    /// Update ids the waiter's reads skipped (versions published between two of its reads).
    skipped: u64,
    /// The change stamp of its last read.
    last_seen: u64,
}

/// Waits for `wakes` changes of `market`, reading and validating the book after each.
fn follow(cluster: &str, market: &str, wakes: u64) -> Followed {
    let mut reader = ClusterReader::open(cluster).expect("open");
    let mut followed = Followed::default();
    let mut last_id = 0;
    let mut out = Vec::new();
    while followed.wakes < wakes {
        let stamp =
            match reader.wait_for_update("binance.com", market, followed.last_seen, PATIENCE) {
                Ok(WaitOutcome::Changed(stamp)) => stamp,
                Ok(WaitOutcome::TimedOut) => panic!("{market}: no wake-up within {PATIENCE:?}"),
                // The wait reads the stamp under the seqlock: a writer at full speed on a loaded
                // machine can keep it busy past the read's retries (CI met it). Nothing was missed:
                // the slot is mid-publish, so wait again from the same stamp.
                Err(ReadError::Contended { .. }) => continue,
                Err(error) => panic!("{market}: the writer lives: {error}"),
            };
        assert!(
            stamp > followed.last_seen,
            "{market}: {stamp} after {}",
            followed.last_seen
        );
        followed.wakes += 1;
        let info = match reader.read(
            "binance.com",
            market,
            Side::Asks,
            &LevelQuery::top(10),
            &mut out,
        ) {
            Ok(info) => info,
            // The writer keeps the slot busy; the stamp already moved, so wait on from it.
            Err(ReadError::Contended { .. }) => {
                followed.last_seen = stamp;
                continue;
            }
            Err(error) => panic!("{market}: read after a wake-up failed: {error}"),
        };
        assert!(
            info.changes >= stamp,
            "{market}: read {} after waking for {stamp}",
            info.changes
        );
        assert!(info.last_update_id > last_id, "{market}: ids went back");
        test_pattern::validate(info.last_update_id, Side::Asks, &out, Some(10), LEVELS)
            .unwrap_or_else(|why| panic!("{market}: torn read: {why}"));
        followed.skipped += info.last_update_id - last_id - 1;
        last_id = info.last_update_id;
        followed.last_seen = info.changes;
    }
    followed
}

#[test]
fn waiters_never_miss_a_publish_of_a_full_speed_writer_in_another_process() {
    let cluster = unique_cluster("wait");
    let _cleanup = ClusterCleanup::new(&cluster);
    let writer = PatternWriter::start(&cluster, "dcn", BOOKS, LEVELS, 0);

    let followers: Vec<_> = (0..BOOKS)
        .map(|book| {
            let cluster = cluster.clone();
            thread::spawn(move || follow(&cluster, &format!("PATTERN{book}"), 2_000))
        })
        .collect();
    let any = {
        let cluster = cluster.clone();
        thread::spawn(move || {
            let mut reader = ClusterReader::open(&cluster).expect("open");
            let mut last = 0;
            for _ in 0..2_000 {
                match reader.wait_for_any(PATIENCE) {
                    WaitOutcome::Changed(stamp) => {
                        assert!(stamp > last, "segment stamp {stamp} after {last}");
                        last = stamp;
                    }
                    WaitOutcome::TimedOut => panic!("wait_for_any: nothing within {PATIENCE:?}"),
                }
            }
            last
        })
    };
    let mut last_seen = Vec::new();
    for follower in followers {
        let followed = follower.join().expect("follower");
        eprintln!("{followed:?}");
        last_seen.push(followed.last_seen);
    }
    any.join().expect("wait_for_any follower");

    // Killed: a wait for a newer version ends with the writer's error, not after its timeout.
    drop(writer);
    let mut reader = ClusterReader::open(&cluster).expect("open");
    for (book, seen) in last_seen.iter().enumerate() {
        let market = format!("PATTERN{book}");
        // Whatever the writer published after the follower stopped, the wait ends with its
        // death and never sleeps out the timeout.
        let mut seen = *seen;
        loop {
            match reader.wait_for_update("binance.com", &market, seen, PATIENCE) {
                Ok(WaitOutcome::Changed(stamp)) => seen = stamp,
                Ok(WaitOutcome::TimedOut) => {
                    panic!("{market}: waited out the timeout on a dead writer")
                }
                Err(ReadError::WriterGone { .. } | ReadError::NotFound { .. }) => break,
                Err(error) => panic!("{market}: {error}"),
            }
        }
    }
}
