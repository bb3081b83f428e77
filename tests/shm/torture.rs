//! Readers validate millions of reads of books a writer process republishes at full speed; any
//! read mixing two versions would fail the pattern check.

use std::thread;

use ubdcc_shm::{ClusterReader, LevelQuery, ReadError, Side, test_pattern};

use crate::pattern_writer::{ClusterCleanup, PatternWriter, unique_cluster};

const BOOKS: u32 = 4;
const LEVELS: u32 = 1000;

#[derive(Debug, Default)]
struct Tally {
    reads: u64,
    torn: u64,
    contended: u64,
    /// Read sections the reader retried (its own count).
    retries: u64,
}

/// `reads` reads round-robin over the books, alternating sides; every 8th read takes the whole side.
fn read_and_validate(cluster: &str, reads: u64) -> Tally {
    let mut reader = ClusterReader::open(cluster).unwrap();
    let markets: Vec<String> = (0..BOOKS).map(|i| format!("PATTERN{i}")).collect();
    let mut out = Vec::new();
    let mut tally = Tally::default();
    for r in 0..reads {
        let market = &markets[(r % u64::from(BOOKS)) as usize];
        let side = if (r / u64::from(BOOKS)) % 2 == 0 {
            Side::Asks
        } else {
            Side::Bids
        };
        let limit = (r % 8 != 7).then_some(10);
        let query = limit.map_or(LevelQuery::ALL, LevelQuery::top);
        tally.reads += 1;
        match reader.read("binance.com", market, side, &query, &mut out) {
            Ok(info) => {
                if let Err(why) =
                    test_pattern::validate(info.last_update_id, side, &out, limit, LEVELS)
                {
                    tally.torn += 1;
                    eprintln!("torn read: {why}");
                }
            }
            Err(ReadError::Contended { .. }) => tally.contended += 1,
            Err(error) => panic!("read failed: {error}"),
        }
    }
    tally.retries = reader.read_retries();
    tally
}

#[test]
fn rust_readers_see_no_torn_reads_from_a_full_speed_writer() {
    let cluster = unique_cluster("torture");
    let _cleanup = ClusterCleanup::new(&cluster);
    let _writer = PatternWriter::start(&cluster, "dcn", BOOKS, LEVELS, 0);
    let reads_per_thread = if cfg!(debug_assertions) {
        1_000_000
    } else {
        5_000_000
    };
    let started = std::time::Instant::now();
    let tallies: Vec<Tally> = thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| read_and_validate(&cluster, reads_per_thread)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    let reads: u64 = tallies.iter().map(|t| t.reads).sum();
    let torn: u64 = tallies.iter().map(|t| t.torn).sum();
    let contended: u64 = tallies.iter().map(|t| t.contended).sum();
    let retries: u64 = tallies.iter().map(|t| t.retries).sum();
    println!(
        "Rust torture: {reads} reads in {:?}, torn={torn} contended={contended} retries={retries}",
        started.elapsed()
    );
    // Every give-up used its whole retry budget, so retries can never be fewer.
    assert!(
        retries >= contended,
        "retries {retries} < contended {contended}"
    );
    assert_eq!(torn, 0);
    assert!(
        contended * 100 < reads,
        "{contended} of {reads} reads gave up"
    );
}
