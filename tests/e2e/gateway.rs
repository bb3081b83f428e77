//! The cluster end to end: mgmt, two restapis (one reading shared memory, one only over HTTP)
//! and three DCNs against the simulator. 100 books with two replicas each are served equal to
//! the truth, survive a DCN killed under continuous reads and two mgmt restarts, and a stopped
//! book disappears everywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use ubdcc_shm::{ClusterReader, ReadError};

use crate::support::http::{get_json, post_json};
use crate::support::markets;
use crate::support::rig::ClusterRig;
use crate::support::sim::Market;
use crate::support::truth::assert_served_correctly;
use crate::support::wait::wait_until;

/// `(exchange, family, market)` of the 100 books, spread over the three API families so that
/// the first syncs and the replacements after a kill fit one minute of each family's weight.
fn hundred_books() -> Vec<Market> {
    markets(34, 33, 33)
}

#[test]
fn a_hundred_books_with_two_replicas_survive_a_dcn_kill_and_mgmt_restarts() {
    let mut rig = ClusterRig::start("h", 34, 3);
    let started = Instant::now();
    let books = hundred_books();
    rig.create(&books, 2);
    let key = post_json(
        &rig.local.address,
        "/add_credentials",
        &json!({"account_group": "binance.com", "api_key": "e2eKEY0123456789", "api_secret": "e2eSECRET"}),
    );
    assert_eq!(key["result"], "OK", "{key}");
    rig.wait_running(&books, 2, None, Duration::from_secs(150));
    println!("200 replicas running after {:?}", started.elapsed());

    // Every book served by both restapis and equal to the truth.
    for (exchange, family, market) in &books {
        let book = (*exchange, *family, market.as_str());
        assert_served_correctly(&rig.sim.address, &rig.local.address, book);
        assert_served_correctly(&rig.sim.address, &rig.remote.address, book);
    }

    // Continuous reads through both restapis while one DCN dies.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [rig.local.address.clone(), rig.remote.address.clone()]
        .into_iter()
        .map(|restapi| {
            let (stop, failures, reads, books) =
                (stop.clone(), failures.clone(), reads.clone(), books.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (exchange, _, market) = &books[i % books.len()];
                    i += 1;
                    let answer = get_json(
                        &restapi,
                        &format!("/get_asks?exchange={exchange}&market={market}&limit_count=5"),
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    let served = answer["result"] == "OK"
                        && answer["asks"].as_array().is_some_and(|a| a.len() == 5);
                    if !served {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{restapi} {exchange} {market}: {answer}"));
                    }
                }
            })
        })
        .collect();
    // Not a wait for a state: the readers get half a second of reads in before the kill.
    std::thread::sleep(Duration::from_millis(500));
    let victim = rig.dcns.remove(1);
    let victim_uid = rig.uid(&victim);
    drop(victim); // SIGKILL
    let killed = Instant::now();
    rig.wait_running(&books, 2, Some(&victim_uid), Duration::from_secs(150));
    println!(
        "replicas of the killed DCN replaced and running after {:?}",
        killed.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} reads failed, e.g. {:?}",
        failures.len(),
        reads.load(Ordering::Relaxed),
        &failures[..failures.len().min(3)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the readers kept reading"
    );

    // mgmt crashes and comes back: first from its own file, then with nothing but the pods' copies.
    for keep_file in [true, false] {
        let restarted = Instant::now();
        rig.restart_mgmt(keep_file);
        wait_until(Duration::from_secs(30), "mgmt recovered", || {
            let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
            let count: usize = list["depthcache_list"].as_object().map_or(0, |e| {
                e.values()
                    .map(|m| m.as_object().map_or(0, |m| m.len()))
                    .sum()
            });
            (count == books.len()).then_some(()).ok_or(format!(
                "{count} books: {}",
                list.to_string().chars().take(200).collect::<String>()
            ))
        });
        let credentials = get_json(&rig.mgmt.address, "/get_credentials_list");
        assert_eq!(
            credentials["credentials"].as_array().map(Vec::len),
            Some(1),
            "keep_file={keep_file}: {credentials}"
        );
        assert!(!credentials.to_string().contains("e2eSECRET"));
        rig.wait_running(&books, 2, Some(&victim_uid), Duration::from_secs(60));
        println!(
            "mgmt restarted (state file kept: {keep_file}), state back after {:?}",
            restarted.elapsed()
        );
    }
    let book = ("binance.com", "spot", "SIM0USDT");
    assert_served_correctly(&rig.sim.address, &rig.remote.address, book);

    // A stopped book is gone from every DCN and from shared memory.
    let stop = get_json(
        &rig.local.address,
        "/stop_depthcache?exchange=binance.com&market=SIM0USDT",
    );
    assert_eq!(stop["result"], "OK", "{stop}");
    let mut reader = ClusterReader::open(&rig.cluster).unwrap();
    wait_until(Duration::from_secs(30), "book gone", || {
        let in_shm = !matches!(
            reader.info("binance.com", "SIM0USDT"),
            Err(ReadError::NotFound { .. })
        );
        let on_dcns: Vec<String> = rig
            .dcns
            .iter()
            .map(|dcn| {
                get_json(
                    &dcn.address,
                    "/get_asks?exchange=binance.com&market=SIM0USDT",
                )["error_id"]
                    .to_string()
            })
            .filter(|id| id != "\"#7000\"")
            .collect();
        (!in_shm && on_dcns.is_empty())
            .then_some(())
            .ok_or(format!("in shm: {in_shm}, DCNs: {on_dcns:?}"))
    });
    for restapi in [&rig.local.address, &rig.remote.address] {
        let answer = get_json(restapi, "/get_asks?exchange=binance.com&market=SIM0USDT");
        assert_eq!(answer["error_id"], "#7000", "{answer}");
    }
}
