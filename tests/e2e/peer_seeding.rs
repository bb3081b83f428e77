//! Replicas seeded from peers (issue 12), end to end on one host: the second replica of a new
//! book waits for the first and copies it from shared memory instead of downloading a second
//! snapshot; replicas re-placed after a DCN is killed start from the survivors' copies without
//! any snapshot; a peer that stops answering while a replica starts leaves it to the exchange's
//! snapshot. Every replica is checked against the simulator's truth at its update id.
//! (Seeding over HTTP between hosts is in `tests/hosts`.)

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use crate::support::http::get_json;
use crate::support::markets;
use crate::support::metrics::{metric, metrics};
use crate::support::rig::ClusterRig;
use crate::support::sim::Market;
use crate::support::truth::assert_served_correctly;

/// REST snapshots the DCN at `dcn` downloaded.
fn downloads(dcn: &str) -> f64 {
    metric(&metrics(dcn), "ubdcc_snapshot_downloads_total").unwrap_or(0.0)
}

/// Books the DCN at `dcn` started from a peer's copy via `source` (`shm` or `http`).
fn seeds(dcn: &str, source: &str) -> f64 {
    let series = format!("ubdcc_book_seeds_total{{source=\"{source}\"}}");
    metric(&metrics(dcn), &series).unwrap_or(0.0)
}

/// Books the DCN at `dcn` started from any peer's copy (same-host peers answer both ways).
fn copies(dcn: &str) -> f64 {
    seeds(dcn, "shm") + seeds(dcn, "http")
}

/// `of` summed over every DCN of the rig.
fn total(rig: &ClusterRig, of: impl Fn(&str) -> f64) -> f64 {
    rig.dcns.iter().map(|dcn| of(&dcn.address)).sum()
}

/// Every replica on every DCN equals the truth (each DCN read through its own endpoints).
fn assert_every_replica_correct(rig: &ClusterRig, books: &[Market]) {
    for dcn in &rig.dcns {
        for (exchange, family, market) in books {
            let answer = get_json(
                &dcn.address,
                &format!("/get_asks?exchange={exchange}&market={market}&limit_count=1"),
            );
            if answer["result"] == "OK" {
                let book = (*exchange, *family, market.as_str());
                assert_served_correctly(&rig.sim.address, &dcn.address, book);
            }
        }
    }
}

#[test]
fn the_second_replica_of_a_new_book_copies_the_first_instead_of_paying_twice() {
    let rig = ClusterRig::start("seed", 12, 2);
    let books = markets(12, 0, 0);
    rig.create(&books, 2);
    rig.wait_running(&books, 2, None, Duration::from_secs(90));
    // From shared memory, or over HTTP when the copy raced the first replica's sync and the
    // peer's own endpoint answered first: both are copies, neither costs weight.
    let seeded = total(&rig, copies);
    let downloads = total(&rig, downloads);
    // One snapshot per book; a copy that did not fit the stream three times would cost one more.
    assert!(
        downloads <= books.len() as f64 + 1.0,
        "{downloads} snapshots for {} books",
        books.len()
    );
    assert!(
        seeded >= books.len() as f64 - 1.0,
        "{seeded} of {} second replicas seeded from a peer",
        books.len()
    );
    assert_every_replica_correct(&rig, &books);
}

#[test]
fn replicas_re_placed_after_a_dcn_kill_start_from_the_survivors_without_a_snapshot() {
    let mut rig = ClusterRig::start("replace", 12, 3);
    let books = markets(12, 0, 0);
    rig.create(&books, 2);
    rig.wait_running(&books, 2, None, Duration::from_secs(90));
    // Kill a DCN that holds replicas; every replica it held is re-placed on the others.
    let victim = 0;
    let uid = rig.uid(&rig.dcns[victim]);
    rig.dcns[victim].kill();
    let survivors: Vec<String> = rig.dcns[1..].iter().map(|d| d.address.clone()).collect();
    let before: f64 = survivors.iter().map(|d| downloads(d)).sum();
    let seeded_before: f64 = survivors.iter().map(|d| copies(d)).sum();
    rig.wait_running(&books, 2, Some(&uid), Duration::from_secs(60));
    let after: f64 = survivors.iter().map(|d| downloads(d)).sum();
    let seeded_after: f64 = survivors.iter().map(|d| copies(d)).sum();
    assert_eq!(after, before, "re-placed replicas downloaded snapshots");
    assert!(
        seeded_after > seeded_before,
        "no replica was seeded after the kill"
    );
    rig.dcns.remove(victim);
    assert_every_replica_correct(&rig, &books);
}

#[test]
fn a_peer_that_stops_answering_while_a_replica_starts_leaves_it_to_the_exchange() {
    let mut rig = ClusterRig::start("stopped", 4, 1);
    let books = markets(1, 0, 0);
    rig.create(&books, 2);
    // One DCN: one replica, synced from the exchange.
    rig.wait_running(&books, 1, None, Duration::from_secs(60));
    // The peer freezes (as a machine that hangs), then dies while the new replica starts.
    let peer = Pid::from_raw(rig.dcns[0].pid() as i32).expect("pid");
    kill_process(peer, Signal::STOP).expect("SIGSTOP");
    rig.add_dcn();
    let fresh = rig.dcns[1].address.clone();
    // Not a wait for a state: the new DCN gets a second to be placed the replica and to try the
    // frozen peer before the peer dies.
    std::thread::sleep(Duration::from_secs(1));
    rig.dcns[0].kill();
    let fresh_uid = rig.uid(&rig.dcns[1]);
    rig.dcns.remove(0);
    rig.wait_running(&books, 1, None, Duration::from_secs(60));
    assert!(
        downloads(&fresh) >= 1.0,
        "the replica must have used the exchange"
    );
    assert_eq!(copies(&fresh), 0.0);
    let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
    let distribution = &list["depthcache_list"]["binance.com"][&books[0].2]["DISTRIBUTION"];
    assert!(distribution.get(&fresh_uid).is_some(), "{distribution}");
    assert_every_replica_correct(&rig, &books);
}
