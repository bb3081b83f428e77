//! Each host's snapshots count against its own IP at the simulator, as Binance counts
//! REQUEST_WEIGHT per IP: a book kept by one replica is requested only from its holder's IP,
//! every host stays within its own limit, and the per-IP figures add up to the host totals.

use crate::rig::{Rig, books};

#[test]
fn each_hosts_snapshots_count_against_its_own_ip() {
    let Some(rig) = Rig::start(&[], &[1, 2, 3]) else {
        return;
    };
    // One replica each: placement by load gives every DCN, so every host, books of its own.
    let books = books(6);
    rig.create(&books, 1);
    rig.wait_running(&books, 1, &[1, 2, 3]);

    let mut holders = Vec::new();
    for (exchange, family, market) in &books {
        let hosts = rig.replica_hosts(exchange, market);
        let [holder] = hosts[..] else {
            panic!("{exchange} {market}: one replica expected, on {hosts:?}");
        };
        holders.push(holder);
        let stats = rig.sim_rest_stats(family);
        for host in &rig.lan.hosts {
            let requested = &stats["by_ip"][&host.ip]["snapshot_requests"][market];
            if host.number == holder {
                let served = &stats["by_ip"][&host.ip]["snapshots_served"][market];
                assert!(
                    served.as_u64().is_some_and(|n| n >= 1),
                    "{family} {market} is kept on host {holder}, whose IP got no snapshot: {stats}"
                );
            } else {
                assert!(
                    requested.is_null(),
                    "{family} {market} is kept on host {holder}, yet host {} asked for it: {stats}",
                    host.number
                );
            }
        }
        let total: u64 = stats["by_ip"]
            .as_object()
            .expect("by_ip")
            .values()
            .filter_map(|ip| ip["snapshot_requests"][market].as_u64())
            .sum();
        assert_eq!(
            stats["snapshot_requests"][market].as_u64(),
            Some(total),
            "{family} {market}: the host total is the sum over IPs: {stats}"
        );
    }
    holders.sort_unstable();
    holders.dedup();
    assert_eq!(holders, [1, 2, 3], "every host keeps books");

    // Every client of the exchange is one of the hosts (nothing comes from loopback), and
    // each stays within its own limit.
    for family in ["spot", "futures"] {
        let stats = rig.sim_rest_stats(family);
        let limit = stats["weight_limit_1m"].as_u64().expect("limit");
        for (ip, figures) in stats["by_ip"].as_object().expect("by_ip") {
            println!(
                "{family} {ip}: weight {} this minute, {} requests, snapshots served {}",
                figures["current"]["used_weight"], figures["requests"], figures["snapshots_served"]
            );
            assert!(
                rig.host_of_ip(ip).is_some(),
                "{family}: a client {ip} off the LAN"
            );
            let used = figures["max_used_weight_1m"].as_u64().expect("used");
            assert!(used <= limit, "{family} {ip}: {used} of {limit}");
            assert_eq!(figures["responses_418"], 0, "{family} {ip}: {figures}");
        }
    }
}
