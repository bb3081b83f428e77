//! Each fault the simulator can inject ends with the book out of sync (never served stale) and
//! then resynced and equal to the truth again — or, for what the rules tolerate (a duplicate
//! event), with the book never leaving sync and still equal to the truth.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ubdcc_shm::{BookInfo, BookStatus, ClusterReader, LevelQuery, OutOfSyncReason, Side};

use crate::cluster::{Cleanup, Process, start_dcn, wait_synced};
use crate::http::{get_json, post_json};
use crate::sync::{assert_matches, truth};

/// A simulator and a DCN keeping books from it (two spot and two futures by default; the COIN-M
/// suite keeps its own).
pub(crate) struct Rig {
    pub(crate) sim: Process,
    dcn: Process,
    pub(crate) reader: ClusterReader,
    _cleanup: Cleanup,
}

const SPOT: (&str, &str, &str) = ("binance.com", "spot", "SIM0USDT");
const FUTURES: (&str, &str, &str) = ("binance.com-futures", "futures", "SIM1USDT");

pub(crate) type Market = (&'static str, &'static str, String);

impl Rig {
    /// Two spot and two futures books, with a short connection watchdog so the silence fault is
    /// seen within a test's patience.
    fn start(tag: &str) -> Self {
        let markets: Vec<Market> = [("binance.com", "spot"), ("binance.com-futures", "futures")]
            .into_iter()
            .flat_map(|(exchange, family)| {
                (0..2).map(move |i| (exchange, family, format!("SIM{i}USDT")))
            })
            .collect();
        Self::with(
            tag,
            "20",
            &markets,
            &["--silence-timeout-ms", "1000", "--ping-interval-ms", "300"],
        )
    }

    /// A simulator at `rate` events/s and a DCN keeping `markets` with `dcn_args`, all synced.
    pub(crate) fn with(tag: &str, rate: &str, markets: &[Market], dcn_args: &[&str]) -> Self {
        let cluster = format!("e2efault{tag}{}", std::process::id());
        let cleanup = Cleanup(cluster.clone());
        let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", rate]);
        let dcn = start_dcn(&cluster, &sim.address, markets, dcn_args);
        let mut reader = ClusterReader::open(&cluster).expect("cluster");
        wait_synced(&mut reader, markets, Duration::from_secs(60));
        Self {
            sim,
            dcn,
            reader,
            _cleanup: cleanup,
        }
    }

    pub(crate) fn inject(&self, fault: Value) -> Value {
        let reply = post_json(&self.sim.address, "/sim/control", &fault);
        assert!(reply.get("fault").is_some(), "fault refused: {reply}");
        reply
    }

    pub(crate) fn info(&mut self, (exchange, _, symbol): (&str, &str, &str)) -> Option<BookInfo> {
        self.reader.info(exchange, symbol).ok()
    }

    /// Waits until `done` holds for the book's info; panics with the last info after 30 s.
    fn wait(&mut self, book: (&str, &str, &str), what: &str, done: impl Fn(&BookInfo) -> bool) {
        let started = Instant::now();
        loop {
            let info = self.info(book);
            if info.as_ref().is_some_and(&done) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: still {info:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The book is synced past `update_id` and both sides equal the truth at their update ids.
    pub(crate) fn assert_correct_after(&mut self, book: (&str, &str, &str), update_id: u64) {
        let (exchange, family, symbol) = book;
        self.wait(book, "resynced past the fault", |info| {
            info.status == BookStatus::Synced && info.last_update_id > update_id
        });
        let mut levels = Vec::new();
        for side in [Side::Asks, Side::Bids] {
            let info = self
                .reader
                .read(exchange, symbol, side, &LevelQuery::ALL, &mut levels)
                .expect("synced book reads");
            let held: Vec<(f64, f64)> = levels.iter().map(|l| (l.price, l.quantity)).collect();
            assert_matches(
                &held,
                &truth(&self.sim.address, family, symbol, info.last_update_id, side),
                &format!("{exchange} {symbol} {side:?}"),
            );
        }
    }

    /// Injects a market fault on `book` and checks it costs a resync and ends correct.
    pub(crate) fn fault_resyncs(&mut self, book: (&str, &str, &str), fault: Value) {
        let before = self.info(book).expect("book").resyncs;
        let reply = self.inject(fault);
        let after_update_id = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
        self.wait(book, "lost sync", |info| info.resyncs > before);
        self.assert_correct_after(book, after_update_id);
    }

    pub(crate) fn alive(&self) {
        assert_eq!(
            get_json(&self.dcn.address, "/test")["result"],
            "OK",
            "the DCN must survive every fault"
        );
    }
}

pub(crate) fn market_fault(
    name: &str,
    (_, family, symbol): (&str, &str, &str),
    extra: Value,
) -> Value {
    let mut fault = json!({"fault": name, "family": family, "symbol": symbol});
    if let (Some(fault), Some(extra)) = (fault.as_object_mut(), extra.as_object()) {
        fault.extend(extra.clone());
    }
    fault
}

#[test]
fn dropped_events_are_a_gap_for_spot_and_futures() {
    let mut rig = Rig::start("drop");
    for book in [SPOT, FUTURES] {
        let gaps = rig.info(book).expect("book").gaps;
        rig.fault_resyncs(book, market_fault("drop", book, json!({"count": 2})));
        assert!(
            rig.info(book).expect("book").gaps > gaps,
            "counted as a gap"
        );
    }
    rig.alive();
}

#[test]
fn reordered_events_are_a_gap() {
    let mut rig = Rig::start("reorder");
    for book in [SPOT, FUTURES] {
        rig.fault_resyncs(book, market_fault("reorder", book, json!({"count": 1})));
    }
    rig.alive();
}

#[test]
fn duplicate_events_are_ignored_without_a_resync() {
    let mut rig = Rig::start("duplicate");
    // A duplicate was applied already (spot: u < local; futures: u <= local), so the rules skip it
    // and the book stays right without a new snapshot.
    for book in [SPOT, FUTURES] {
        let before = rig.info(book).expect("book").resyncs;
        let reply = rig.inject(market_fault("duplicate", book, json!({"count": 3})));
        let after = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
        rig.assert_correct_after(book, after + 5);
        assert_eq!(
            rig.info(book).expect("book").resyncs,
            before,
            "no resync for duplicates"
        );
    }
    rig.alive();
}

#[test]
fn malformed_frames_resync_the_connection_and_never_kill_the_dcn() {
    let mut rig = Rig::start("malformed");
    rig.fault_resyncs(SPOT, market_fault("malformed", SPOT, json!({"count": 2})));
    rig.alive();
}

#[test]
fn a_stale_snapshot_is_refused_and_fetched_again() {
    let mut rig = Rig::start("stale");
    rig.inject(market_fault(
        "stale_snapshot",
        SPOT,
        json!({"count": 1, "behind_events": 200}),
    ));
    // A gap makes the book fetch a snapshot: the stale one cannot align, a fresh one does.
    rig.fault_resyncs(SPOT, market_fault("drop", SPOT, json!({"count": 1})));
    let stats = get_json(&rig.sim.address, "/sim/stats");
    let requests = stats["rest"]["spot"]["snapshot_requests"]["SIM0USDT"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        requests >= 3,
        "first sync, the stale snapshot, then a fresh one: {requests}"
    );
    rig.alive();
}

#[test]
fn a_disconnect_resyncs_every_book_of_the_connection() {
    let mut rig = Rig::start("disconnect");
    rig.fault_resyncs(SPOT, json!({"fault": "disconnect", "family": "spot"}));
    rig.alive();
}

/// Issue 11: `serverShutdown` is handed over make-before-break, like the 24 h rotation.
#[test]
fn a_server_shutdown_hands_over_without_losing_sync_or_spending_a_snapshot() {
    let mut rig = Rig::start("shutdown");
    let markets: Vec<(&str, &str, String)> = crate::cluster::markets(2, 2, 0);
    rig.assert_server_shutdown_handed_over("futures", "fstream", &markets);
    for book in [("binance.com-futures", "futures", "SIM0USDT"), FUTURES] {
        rig.assert_correct_after(book, 0);
    }
    rig.alive();
}

impl Rig {
    /// Announces `serverShutdown` on `family`'s connections (its `venue` in the simulator's
    /// stats) and checks the handover: a new connection opens and the old one closes while every
    /// one of `markets` stays synced, and no family spends a snapshot on it.
    pub(crate) fn assert_server_shutdown_handed_over(
        &mut self,
        family: &str,
        venue: &str,
        markets: &[Market],
    ) {
        let before = get_json(&self.sim.address, "/sim/stats");
        let connections = |stats: &Value, key: &str| stats["websocket"][venue][key].as_u64();
        // The default: the simulator keeps serving the old connection for a while after the
        // announcement, as Binance does.
        self.inject(json!({"fault": "server_shutdown", "family": family}));

        // Done when a new connection was opened and the old one is closed (by the DCN, at the end
        // of the handover, or by the simulator, whichever is first); every book stays synced
        // throughout.
        let started = Instant::now();
        loop {
            for (exchange, _, symbol) in markets {
                let info = self.reader.info(exchange, symbol).expect("book");
                assert_eq!(
                    (info.status, info.resyncs),
                    (BookStatus::Synced, 0),
                    "{exchange} {symbol} left sync during the serverShutdown handover"
                );
            }
            let now = get_json(&self.sim.address, "/sim/stats");
            let replaced = connections(&now, "connections_opened")
                > connections(&before, "connections_opened")
                && connections(&now, "connections_open")
                    == connections(&before, "connections_open");
            if replaced {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no handover: {}",
                now["websocket"][venue]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = get_json(&self.sim.address, "/sim/stats");
        let families = after["rest"].as_object().cloned().unwrap_or_default();
        for (family, rest) in families {
            assert_eq!(
                rest["requests"], before["rest"][&family]["requests"],
                "{family}: a snapshot was spent on the serverShutdown"
            );
        }
    }
}

/// Waits until `done` holds for `symbol` of `exchange`; panics with the last info after 60 s.
fn wait_book(
    reader: &mut ClusterReader,
    (exchange, symbol): (&str, &str),
    what: &str,
    done: impl Fn(&BookInfo) -> bool,
) {
    let started = Instant::now();
    loop {
        let info = reader.info(exchange, symbol).ok();
        if info.as_ref().is_some_and(&done) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{exchange} {symbol} {what}: still {info:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A DCN keeping `good` markets and one `odd` spot market beside them: once the good ones are
/// synced, they stay synced for a few seconds without a resync, on the spot connection opened
/// first (none reopened). Returns the simulator's stats then.
fn odd_market_among_good_ones(
    tag: &str,
    fault: Option<Value>,
    odd: &str,
    odd_state: impl Fn(&BookInfo) -> bool,
) -> Value {
    let cluster = format!("e2efault{tag}{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", "20"]);
    if let Some(fault) = fault {
        let reply = post_json(&sim.address, "/sim/control", &fault);
        assert!(reply.get("fault").is_some(), "fault refused: {reply}");
    }
    let good: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let mut all = good.clone();
    all.push(("binance.com", "spot", odd.into()));
    let dcn = start_dcn(&cluster, &sim.address, &all, &[]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    wait_synced(&mut reader, &good, Duration::from_secs(60));
    wait_book(&mut reader, ("binance.com", odd), "as expected", &odd_state);

    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(3) {
        for (exchange, _, symbol) in &good {
            let info = reader.info(exchange, symbol).expect("book");
            assert_eq!(
                (info.status, info.resyncs),
                (BookStatus::Synced, 0),
                "{exchange} {symbol} was harmed by {odd}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = get_json(&sim.address, "/sim/stats");
    assert_eq!(
        stats["websocket"]["spot"]["connections_opened"].as_u64(),
        Some(1),
        "the spot connection was dropped: {}",
        stats["websocket"]["spot"]
    );
    assert_eq!(get_json(&dcn.address, "/test")["result"], "OK");
    stats
}

/// Issue 11: a refused `SUBSCRIBE` takes out the books it names, not the connection.
#[test]
fn a_refused_subscription_among_good_ones_puts_only_its_book_out_of_sync() {
    let stats = odd_market_among_good_ones(
        "refused",
        Some(json!({"fault": "refuse_subscribe", "symbol": "SIM1USDT"})),
        "SIM1USDT",
        |info| info.status == BookStatus::OutOfSync(OutOfSyncReason::SubscriptionRefused),
    );
    // A SUBSCRIBE naming SIM1USDT beside SIM0USDT is refused whole; the DCN asked again in
    // halves, so SIM0USDT's half was accepted and only SIM1USDT's refused.
    let refused = stats["websocket"]["spot"]["error_replies"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused >= 1, "{}", stats["websocket"]["spot"]);
}

/// Issue 11: Binance accepts a stream of a symbol it does not list and sends nothing; that book
/// never syncs, and no other book notices.
#[test]
fn an_unlisted_market_is_accepted_silently_and_harms_no_other_book() {
    let stats = odd_market_among_good_ones("unlisted", None, "NOSUCHUSDT", |info| {
        info.status != BookStatus::Synced
    });
    assert_eq!(
        stats["websocket"]["spot"]["error_replies"].as_u64(),
        Some(0),
        "{}",
        stats["websocket"]["spot"]
    );
}

#[test]
fn a_silent_stream_is_noticed_and_resynced() {
    let mut rig = Rig::start("silence");
    // The whole spot stream goes quiet while its connection stays open.
    rig.fault_resyncs(
        SPOT,
        json!({"fault": "silence", "family": "spot", "duration_ms": 2500}),
    );
    rig.alive();
}

/// Forces `status` on a family's REST endpoint, then makes `book` need a snapshot (a gap) and
/// waits until it is synced again; returns the simulator's REST stats of that family.
fn resync_through_forced_status(tag: &str, book: (&str, &str, &str), status: u16) -> Value {
    let mut rig = Rig::start(tag);
    let family = book.1;
    rig.inject(
        json!({"fault": "rest_status", "family": family, "status": status, "duration_ms": 2000}),
    );
    rig.fault_resyncs(book, market_fault("drop", book, json!({"count": 1})));
    rig.alive();
    get_json(&rig.sim.address, "/sim/stats")["rest"][family].clone()
}

#[test]
fn a_forced_429_is_honoured_and_no_ban_follows() {
    // The first try gets 429 + Retry-After and nothing more is sent until it has passed, so the
    // simulator never escalates to a 418 ban.
    let rest = resync_through_forced_status("429", SPOT, 429);
    assert_eq!(rest["responses_418"].as_u64(), Some(0), "{rest}");
    assert!(rest["responses_429"].as_u64().unwrap_or(0) >= 1, "{rest}");
}

#[test]
fn a_forced_418_ban_is_honoured_for_its_whole_retry_after() {
    // One request met the ban; the next waited for Retry-After instead of hammering the host.
    let rest = resync_through_forced_status("418", FUTURES, 418);
    assert_eq!(rest["responses_418"].as_u64(), Some(1), "{rest}");
}

#[test]
fn connections_are_replaced_before_their_lifetime_ends_without_losing_sync() {
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let Rig {
        sim,
        mut reader,
        dcn: _dcn,
        _cleanup,
    } = Rig::with(
        "rotate",
        "20",
        &markets,
        &["--connection-lifetime-secs", "2"],
    );
    let before = get_json(&sim.address, "/sim/stats");

    // Several replacements: each connection lives 2 s plus a 2 s overlap.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        for (exchange, _, symbol) in &markets {
            let info = reader.info(exchange, symbol).expect("book");
            assert_eq!(
                (info.status, info.resyncs),
                (BookStatus::Synced, 0),
                "{exchange} {symbol} left sync during a replacement"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = get_json(&sim.address, "/sim/stats");
    for venue in ["spot", "fstream"] {
        let opened = |stats: &Value| {
            stats["websocket"][venue]["connections_opened"]
                .as_u64()
                .unwrap_or(0)
        };
        assert!(
            opened(&after) >= opened(&before) + 2,
            "{venue}: connections were not replaced: {}",
            after["websocket"][venue]
        );
    }
    // No book needed a new snapshot for it.
    assert_eq!(
        after["rest"]["spot"]["requests"],
        before["rest"]["spot"]["requests"]
    );
    assert_eq!(
        after["rest"]["futures"]["requests"],
        before["rest"]["futures"]["requests"]
    );
    let mut levels = Vec::new();
    for (exchange, family, symbol) in &markets {
        let info = reader
            .read(exchange, symbol, Side::Asks, &LevelQuery::ALL, &mut levels)
            .expect("synced");
        let held: Vec<(f64, f64)> = levels.iter().map(|l| (l.price, l.quantity)).collect();
        assert_matches(
            &held,
            &truth(
                &sim.address,
                family,
                symbol,
                info.last_update_id,
                Side::Asks,
            ),
            &format!("{exchange} {symbol}"),
        );
    }
}

#[test]
fn one_silent_market_among_busy_ones_is_verified_and_resynced() {
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com", "spot", "SIM1USDT".into()),
    ];
    let Rig {
        sim,
        mut reader,
        dcn: _dcn,
        _cleanup,
    } = Rig::with("booksilence", "20", &markets, &["--book-silence-secs", "1"]);

    // SIM0USDT's events stop; SIM1USDT keeps the shared connection busy, so only a per-book check
    // can notice.
    let reply = post_json(
        &sim.address,
        "/sim/control",
        &json!({"fault": "silence", "family": "spot", "symbol": "SIM0USDT", "duration_ms": 3000}),
    );
    let after = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
    let started = Instant::now();
    loop {
        let info = reader.info("binance.com", "SIM0USDT").expect("book");
        if info.resyncs > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the silent book was never verified: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        reader
            .info("binance.com", "SIM1USDT")
            .expect("book")
            .resyncs,
        0,
        "the busy neighbour is untouched"
    );
    // After the silence the book is exact again.
    let started = Instant::now();
    let mut levels = Vec::new();
    loop {
        let info = reader.read(
            "binance.com",
            "SIM0USDT",
            Side::Asks,
            &LevelQuery::ALL,
            &mut levels,
        );
        if let Ok(info) = info
            && info.last_update_id > after + 20
        {
            let held: Vec<(f64, f64)> = levels.iter().map(|l| (l.price, l.quantity)).collect();
            assert_matches(
                &held,
                &truth(
                    &sim.address,
                    "spot",
                    "SIM0USDT",
                    info.last_update_id,
                    Side::Asks,
                ),
                "SIM0USDT after the silence",
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not back in sync: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quiet_markets_stay_synced_and_are_verified_less_and_less() {
    // Rate 0: the simulator's books never change, like markets nobody trades.
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let Rig {
        sim,
        mut reader,
        dcn: _dcn,
        _cleanup,
    } = Rig::with("quiet", "0", &markets, &["--book-silence-secs", "1"]);
    std::thread::sleep(Duration::from_secs(8));
    for (exchange, _, symbol) in &markets {
        let info = reader.info(exchange, symbol).expect("book");
        assert_eq!(
            (info.status, info.resyncs),
            (BookStatus::Synced, 0),
            "{exchange} {symbol}"
        );
    }
    // Thresholds 1, 2, 4 s: at most a handful of verifications in 8 s, not one per second.
    let requests = get_json(&sim.address, "/sim/stats")["rest"]["spot"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (2..=5).contains(&requests),
        "{requests} spot snapshot requests"
    );
}
