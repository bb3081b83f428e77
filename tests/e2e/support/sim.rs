//! `ubdcc sim` as the exchange: the markets it lists, the endpoints that point a role at it, the
//! faults a test injects into it and the weight its stats say was spent.

use serde_json::{Value, json};

use super::http::{get_json, post_json};

/// `(exchange, family, symbol)` of one of the simulator's markets.
pub type Market = (&'static str, &'static str, String);

/// The simulator's exchange strings and families with their market symbols: the first `spot`,
/// `futures` and `options` markets of each family.
pub fn markets(spot: usize, futures: usize, options: usize) -> Vec<Market> {
    let mut markets = Vec::new();
    markets.extend((0..spot).map(|i| ("binance.com", "spot", format!("SIM{i}USDT"))));
    markets.extend((0..futures).map(|i| ("binance.com-futures", "futures", format!("SIM{i}USDT"))));
    markets.extend((0..options).map(|i| {
        (
            "binance.com-vanilla-options",
            "options",
            format!("SIM{i}-260626-{}-C", 10_000 + 500 * i),
        )
    }));
    markets
}

/// `EXCHANGE=URL` for every family the simulator at `sim` serves (`--exchange-endpoint`). COIN-M's
/// hosts are under `/dstream` there: its stream paths are spot's (`/stream`).
pub fn sim_endpoints(sim: &str) -> Vec<String> {
    [
        ("binance.com", ""),
        ("binance.com-futures", ""),
        ("binance.com-vanilla-options", ""),
        ("binance.com-coin_futures", "/dstream"),
    ]
    .iter()
    .map(|(exchange, host)| format!("{exchange}=http://{sim}{host}"))
    .collect()
}

/// Injects `fault` into the simulator at `sim`; panics if it refuses it. Returns its reply (for
/// market faults, `markets[i].after_update_id`: the update id a book must get past).
pub fn inject(sim: &str, fault: &Value) -> Value {
    let reply = post_json(sim, "/sim/control", fault);
    assert!(reply.get("fault").is_some(), "fault refused: {reply}");
    reply
}

/// The fault `name` on one market (`family`, `symbol`), with the fields of `extra` (a count, a
/// duration) added.
pub fn market_fault(name: &str, (_, family, symbol): (&str, &str, &str), extra: Value) -> Value {
    let mut fault = json!({"fault": name, "family": family, "symbol": symbol});
    if let (Some(fault), Some(extra)) = (fault.as_object_mut(), extra.as_object()) {
        fault.extend(extra.clone());
    }
    fault
}

/// The simulator's `/sim/stats`: per family, REST requests, weight and 429/418 answers; per
/// venue, WebSocket connections.
pub fn stats(sim: &str) -> Value {
    get_json(sim, "/sim/stats")
}

/// Asserts that snapshots stayed within every host's weight budget: no 429, no 418, and never
/// more than the DCN's share (half) of the per-minute limit of any of `families`' hosts.
pub fn assert_within_weight_budget(sim: &str, families: &[&str]) {
    let stats = stats(sim);
    for family in families {
        let rest = &stats["rest"][family];
        let (used, limit) = (
            rest["max_used_weight_1m"].as_u64().expect("counted"),
            rest["weight_limit_1m"].as_u64().expect("limit"),
        );
        println!(
            "{family}: max weight used per minute {used} of {limit}, {} snapshot requests",
            rest["requests"]
        );
        assert!(used <= limit / 2, "{family}: {used} of {limit}");
        assert_eq!(
            (
                rest["responses_429"].as_u64(),
                rest["responses_418"].as_u64()
            ),
            (Some(0), Some(0)),
            "{family}: {rest}"
        );
    }
}
