//! A whole host lost: books with replicas on hosts 2 and 3, a client on host 1 reading them
//! through host 1's restapi, every process of host 2 (DCN, restapi, and its shared memory)
//! killed and the host unplugged (a dead machine refuses nothing, it is silent). No read fails,
//! mgmt re-places the lost replicas on host 1 — the only host without one — and (issue 12) the
//! new replicas start from a copy of their peer on host 3, over HTTP, without a snapshot from
//! the exchange.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http;
use crate::rig::{Book, PATIENCE, Rig, books, wait_until};

/// Books on hosts 2 and 3 only, then a DCN on host 1 (holding nothing yet).
fn books_on_hosts_2_and_3() -> Option<(Rig, Vec<Book>)> {
    let mut rig = Rig::start(&[2], &[2, 3])?;
    let books = books(4);
    rig.create(&books, 2);
    rig.wait_running(&books, 2, &[2, 3]);
    rig.add_dcn(1);
    rig.wait_pods();
    Some((rig, books))
}

/// A client on host 1 reading `books` round-robin through host 1's restapi until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    /// The slowest read so far, in ms (reported, not asserted: timing is the benches' business).
    slowest_ms: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    fn start(rig: &Rig, books: &[Book]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let slowest_ms = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let namespace = rig.lan.host_namespace(1);
        let restapi = rig.restapi().to_owned();
        let (books, stopping, counted, failed, slowest) = (
            books.to_vec(),
            stop.clone(),
            reads.clone(),
            failures.clone(),
            slowest_ms.clone(),
        );
        let thread = std::thread::spawn(move || {
            crate::net::enter(&namespace);
            for (exchange, _, market) in books.iter().cycle() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let path = format!("/get_asks?exchange={exchange}&market={market}&limit_count=5");
                // The helper panics on a broken connection or body: that is a failed read too.
                let started = Instant::now();
                let answer = std::panic::catch_unwind(|| http::get_json(&restapi, &path));
                let took = started.elapsed().as_millis() as usize;
                slowest.fetch_max(took, Ordering::Relaxed);
                counted.fetch_add(1, Ordering::Relaxed);
                let served = answer.as_ref().is_ok_and(|answer| {
                    answer["result"] == "OK"
                        && answer["asks"].as_array().is_some_and(|a| a.len() == 5)
                });
                if !served {
                    let what = answer.map_or_else(|_| "no answer".to_owned(), |a| a.to_string());
                    failed
                        .lock()
                        .unwrap()
                        .push(format!("{exchange} {market}: {what}"));
                }
            }
        });
        Self {
            stop,
            reads,
            slowest_ms,
            failures,
            thread,
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Waits until `count` more reads were made (so reading is known to go on).
    fn wait_reads(&self, count: usize) {
        let target = self.reads() + count;
        wait_until(Duration::from_secs(60), "reads made", || {
            let reads = self.reads();
            (reads >= target)
                .then_some(())
                .ok_or(format!("{reads} of {target}"))
        });
    }

    /// Stops reading; returns the reads made, the slowest read in ms and the failures.
    fn stop(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the reader thread");
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        let reads = self.reads.load(Ordering::Relaxed);
        (reads, self.slowest_ms.load(Ordering::Relaxed), failures)
    }
}

#[test]
fn a_whole_host_killed_under_continuous_reads_fails_no_read() {
    let Some((mut rig, books)) = books_on_hosts_2_and_3() else {
        return;
    };
    let reader = Reader::start(&rig, &books);
    reader.wait_reads(20);
    rig.kill_host(2);
    rig.wait_running(&books, 2, &[1, 3]);
    // Keep reading once the lost replicas are back, on their new host.
    reader.wait_reads(20);
    let (reads, slowest_ms, failures) = reader.stop();
    println!("{reads} reads while host 2 died and its replicas were re-placed");
    println!("the slowest read took {slowest_ms} ms");
    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    for book in &books {
        rig.assert_served_correctly(rig.restapi(), book);
    }
}

#[test]
fn a_replica_re_placed_on_another_host_is_seeded_over_http_without_a_snapshot() {
    let Some((mut rig, books)) = books_on_hosts_2_and_3() else {
        return;
    };
    let before: Vec<u64> = books
        .iter()
        .map(|(_, family, market)| rig.snapshot_requests_from(1, family, market))
        .collect();
    rig.kill_host(2);
    rig.wait_running(&books, 2, &[1, 3]);
    // Host 1 holds no other replica of these books, so shared memory cannot have seeded them.
    for (exchange, _, market) in &books {
        let hosts = wait_until(PATIENCE, "replicas running", || {
            let hosts = rig.replica_hosts(exchange, market);
            (hosts.len() == 2)
                .then_some(hosts.clone())
                .ok_or(format!("{hosts:?}"))
        });
        assert_eq!(
            hosts.iter().filter(|h| **h == 1).count(),
            1,
            "{exchange} {market}: one replica on host 1, on {hosts:?}"
        );
    }
    let snapshots: Vec<String> = books
        .iter()
        .zip(&before)
        .filter_map(|((_, family, market), before)| {
            let after = rig.snapshot_requests_from(1, family, market);
            (after != *before).then(|| format!("{family} {market}: {before} -> {after}"))
        })
        .collect();
    let host1_dcn = &rig
        .dcns
        .iter()
        .find(|dcn| dcn.host == 1)
        .expect("host 1's DCN")
        .process
        .address;
    let metrics = rig.get_text(host1_dcn, "/metrics");
    let http_seeds = seeds(&metrics, "http");
    println!("host 1's DCN: {http_seeds:?} books seeded over HTTP; snapshots asked: {snapshots:?}");
    assert!(
        snapshots.is_empty() && http_seeds.is_some_and(|n| n >= 1.0),
        "re-placed replicas on host 1 must be seeded from host 3 over HTTP, not from the \
         exchange: snapshot requests from host 1's IP grew for {snapshots:?}; \
         ubdcc_book_seeds_total{{source=\"http\"}} is {http_seeds:?} (None: not in /metrics)"
    );
    for book in &books {
        rig.assert_served_correctly(rig.restapi(), book);
    }
}

/// The sum of `ubdcc_book_seeds_total{…source="SOURCE"…}` in a Prometheus text exposition;
/// `None` when no such series exists.
fn seeds(metrics: &str, source: &str) -> Option<f64> {
    let label = format!("source=\"{source}\"");
    let values: Vec<f64> = metrics
        .lines()
        .filter(|line| line.starts_with("ubdcc_book_seeds_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn seed_counts_are_read_from_the_exposition() {
    let text = "# TYPE ubdcc_book_seeds_total counter\n\
                ubdcc_book_seeds_total{source=\"shm\"} 2\n\
                ubdcc_book_seeds_total{exchange=\"binance.com\",source=\"http\"} 3\n\
                ubdcc_book_seeds_total{exchange=\"binance.com-futures\",source=\"http\"} 1\n";
    assert_eq!(seeds(text, "http"), Some(4.0));
    assert_eq!(seeds(text, "shm"), Some(2.0));
    assert_eq!(seeds("ubdcc_up 1\n", "http"), None);
}
