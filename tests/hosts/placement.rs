//! Replicas of a book land on distinct machines: with two DCNs on host 1 and one on each of
//! hosts 2 and 3, three replicas of a book take one DCN per host, never both of host 1's.

use std::collections::BTreeSet;

use crate::rig::{PATIENCE, Rig, books, wait_until};

#[test]
fn three_replicas_of_a_book_go_to_three_distinct_hosts() {
    let Some(rig) = Rig::start(&[], &[1, 1, 2, 3]) else {
        return;
    };
    // Each host reports its own machine id, and both DCNs of host 1 the same one.
    let pods = rig.pods();
    let nodes: BTreeSet<(usize, String)> = pods
        .iter()
        .filter(|(.., role)| role == "ubdcc-dcn")
        .map(|(_, ip, node, _)| (rig.host_of_ip(ip).expect("a LAN address"), node.clone()))
        .collect();
    let distinct_nodes: BTreeSet<&String> = nodes.iter().map(|(_, node)| node).collect();
    assert_eq!(nodes.len(), 3, "one machine id per host: {pods:?}");
    assert_eq!(distinct_nodes.len(), 3, "three machine ids: {pods:?}");

    let books = books(6);
    rig.create(&books, 3);
    rig.wait_running(&books, 3, &[1, 2, 3]);
    for (exchange, _, market) in &books {
        let hosts = wait_until(PATIENCE, "three running replicas", || {
            let hosts = rig.replica_hosts(exchange, market);
            (hosts.len() == 3)
                .then_some(hosts.clone())
                .ok_or(format!("{hosts:?}"))
        });
        let distinct: BTreeSet<usize> = hosts.iter().copied().collect();
        assert_eq!(
            distinct,
            BTreeSet::from([1, 2, 3]),
            "{exchange} {market}: replicas on hosts {hosts:?}"
        );
    }
}
