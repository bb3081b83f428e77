//! Audits against the simulator (issue 16): a level the exchange changed without an event passes
//! every update-id check; an audit finds it within one cycle and repairs the book at the same
//! update id, and readers never see the book leave sync.

use std::time::Duration;

use serde_json::json;
use ubdcc_shm::{BookProof, BookStatus};

use crate::support::metrics::{metric, metrics};
use crate::support::rig::{DcnRig, untouched};
use crate::support::sim::{Market, market_fault};
use crate::support::truth::assert_shm_books_equal_truth;
use crate::support::wait::{SHM_POLL, wait_until_every};

const SPOT: (&str, &str, &str) = ("binance.com", "spot", "SIM0USDT");
const FUTURES: (&str, &str, &str) = ("binance.com-futures", "futures", "SIM1USDT");

fn market((exchange, family, symbol): (&'static str, &'static str, &str)) -> Market {
    (exchange, family, symbol.to_owned())
}

/// Waits until `book` was audited `count` times, holding every book of `markets` synced and
/// never resynced meanwhile (an audit must not cost readers a moment out of sync).
fn audited(
    rig: &mut DcnRig,
    markets: &[Market],
    book: (&str, &str, &str),
    done: impl Fn(&BookProof) -> bool,
    what: &str,
) -> BookProof {
    wait_until_every(SHM_POLL, Duration::from_secs(60), what, || {
        untouched(&mut rig.reader, markets)
            .unwrap_or_else(|e| panic!("left sync around an audit: {e}"));
        let info = rig.proof(book).expect("book");
        done(&info)
            .then_some(info)
            .ok_or(format!("{:?}", info.audit))
    })
}

#[test]
fn a_silently_changed_level_is_found_and_repaired_without_leaving_sync() {
    let markets = vec![market(SPOT), market(FUTURES)];
    let mut rig = DcnRig::with("audit", "10", &markets, &["--audit-interval-secs", "1"]);
    // Audits run and find nothing wrong in a book nobody tampered with.
    let before = audited(
        &mut rig,
        &markets,
        SPOT,
        |info| info.audit.audits >= 1,
        "first audit",
    );
    assert_eq!(before.audit.audit_mismatches, 0, "a right book found wrong");
    assert!(before.audit.verified_at_ms > 0);

    // The exchange changes a bid 300 levels down without an event: deep enough that the next
    // events seldom touch it, inside every 1 000-level window.
    rig.inject(market_fault(
        "silent_change",
        SPOT,
        json!({"side": "bid", "level": 300}),
    ));
    let repaired = audited(
        &mut rig,
        &markets,
        SPOT,
        |info| info.audit.audit_mismatches >= 1,
        "the silent change found by an audit",
    );
    assert_eq!(
        (repaired.status, repaired.resyncs),
        (BookStatus::Synced, 0),
        "repaired in place, no resync"
    );
    assert_shm_books_equal_truth(&mut rig.reader, &rig.sim.address, &markets);

    // The untouched neighbour was audited too, and found right.
    let other = audited(
        &mut rig,
        &markets,
        FUTURES,
        |info| info.audit.audits >= 1,
        "neighbour audited",
    );
    assert_eq!(other.audit.audit_mismatches, 0);
    let text = metrics(&rig.dcn.address);
    let series = "ubdcc_book_audit_mismatches_total{exchange=\"binance.com\",market=\"SIM0USDT\"}";
    assert!(
        metric(&text, series).is_some_and(|n| n >= 1.0),
        "{series} in /metrics"
    );
    rig.alive();
}
