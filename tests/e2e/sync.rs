//! Books kept by a DCN from the simulator equal the simulator's truth at the same update id, in
//! shared memory and over the DCN's HTTP endpoints, without overspending the REST weight.

use std::time::Duration;

use ubdcc_shm::ClusterReader;

use crate::support::rig::start_dcn;
use crate::support::sim::assert_within_weight_budget;
use crate::support::truth::{assert_http_asks_equal_truth, assert_shm_books_equal_truth};
use crate::support::{Cleanup, Process, markets, wait_synced};

#[test]
fn fifty_books_sync_and_equal_the_simulators_truth() {
    let cluster = format!("e2esync{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "20", "--rate", "10"]);
    let markets = markets(20, 20, 10);
    let dcn = start_dcn(&cluster, &sim.address, &markets, &[]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    let took = wait_synced(&mut reader, &markets, Duration::from_secs(120));
    println!("{} books synced after {took:?}", markets.len());
    assert_shm_books_equal_truth(&mut reader, &sim.address, &markets);

    // The DCN's HTTP endpoint serves the same books, with the update id they are at.
    for (exchange, family, symbol) in markets.iter().step_by(7) {
        assert_http_asks_equal_truth(&dcn.address, &sim.address, (exchange, family, symbol));
    }
    assert_within_weight_budget(&sim.address, &["spot", "futures", "options"]);
    dcn.terminate();
}
