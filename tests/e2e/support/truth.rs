//! The simulator's truth and the comparisons against it: a book held in shared memory, served by
//! a DCN or by restapi is correct when it equals the truth at the update id it says it is at.

use serde_json::Value;
use ubdcc_shm::{ClusterReader, LevelQuery, ReadError, Side};

use super::http::get_json;

/// Levels at the top of each side that must equal the truth exactly. Deeper down a kept book can
/// legitimately miss levels that were outside every snapshot and never changed (Binance's own
/// caveat), so there only "every level held is in the truth" is checked.
const EXACT_TOP: usize = 100;

/// One side's levels as `(price, quantity)`.
pub type Levels = Vec<(f64, f64)>;

/// The truth of one side at `update_id`, as `(price, quantity)` floats.
pub fn truth(sim: &str, family: &str, symbol: &str, update_id: u64, side: Side) -> Levels {
    let body = get_json(
        sim,
        &format!("/sim/truth?family={family}&symbol={symbol}&update_id={update_id}"),
    );
    let key = side_key(side);
    let levels = body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in truth: {body}"));
    levels
        .iter()
        .map(|level| (parse(&level[0]), parse(&level[1])))
        .collect()
}

/// The JSON key of `side` (`asks`, `bids`), in the truth and in answers alike.
fn side_key(side: Side) -> &'static str {
    match side {
        Side::Asks => "asks",
        Side::Bids => "bids",
    }
}

/// The simulator's levels are decimal strings.
fn parse(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
}

/// The levels under `key` of an answer of ours (numbers, not strings); panics without them.
pub fn levels(answer: &Value, key: &str) -> Levels {
    answer[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {answer}"))
        .iter()
        .map(|l| (l[0].as_f64().expect("price"), l[1].as_f64().expect("qty")))
        .collect()
}

/// Asserts `held` is what a correct book at that update id holds.
pub fn assert_matches(held: &[(f64, f64)], truth: &[(f64, f64)], what: &str) {
    let top = EXACT_TOP.min(truth.len());
    assert!(
        held.len() >= top,
        "{what}: {} levels held, truth has {}",
        held.len(),
        truth.len()
    );
    assert_eq!(
        &held[..top],
        &truth[..top],
        "{what}: top {top} levels differ"
    );
    let truth_of = |price: f64| truth.iter().find(|(p, _)| *p == price).map(|(_, q)| *q);
    for (price, quantity) in held {
        assert_eq!(
            truth_of(*price),
            Some(*quantity),
            "{what}: level {price} is not in the truth with quantity {quantity}"
        );
    }
}

/// Reads all of `side` of a book from shared memory: the update id it is at and its levels.
pub fn read_shm_side(
    reader: &mut ClusterReader,
    (exchange, symbol): (&str, &str),
    side: Side,
) -> Result<(u64, Levels), ReadError> {
    let mut levels = Vec::new();
    let info = reader.read(exchange, symbol, side, &LevelQuery::ALL, &mut levels)?;
    let held = levels.iter().map(|l| (l.price, l.quantity)).collect();
    Ok((info.last_update_id, held))
}

/// Asserts that `side` of `book` in shared memory equals the simulator's truth at the update id
/// the book is at; returns that update id.
pub fn assert_shm_side_equals_truth(
    reader: &mut ClusterReader,
    sim: &str,
    (exchange, family, symbol): (&str, &str, &str),
    side: Side,
) -> u64 {
    let (update_id, held) = read_shm_side(reader, (exchange, symbol), side)
        .unwrap_or_else(|e| panic!("{exchange} {symbol}: {e}"));
    let expected = truth(sim, family, symbol, update_id, side);
    let what = format!("shm {exchange} {symbol} {side:?} at {update_id}");
    assert_matches(&held, &expected, &what);
    update_id
}

/// Asserts that both sides of every one of `markets` in shared memory equal the simulator's truth
/// at the update id the book is at.
pub fn assert_shm_books_equal_truth(
    reader: &mut ClusterReader,
    sim: &str,
    markets: &[(&str, &str, String)],
) {
    for (exchange, family, symbol) in markets {
        for side in [Side::Asks, Side::Bids] {
            assert_shm_side_equals_truth(reader, sim, (exchange, family, symbol), side);
        }
    }
}

/// Asserts that the DCN at `dcn` serves the asks of `symbol` over HTTP equal to the truth at the
/// update id it reports.
pub fn assert_http_asks_equal_truth(
    dcn: &str,
    sim: &str,
    (exchange, family, symbol): (&str, &str, &str),
) {
    let body = get_json(
        dcn,
        &format!("/get_asks?exchange={exchange}&market={symbol}"),
    );
    assert_eq!(body["result"], "OK", "{body}");
    let update_id = body["last_update_id"].as_u64().expect("last_update_id");
    assert_matches(
        &levels(&body, "asks"),
        &truth(sim, family, symbol, update_id, Side::Asks),
        &format!("http {exchange} {symbol}"),
    );
}

/// Reads the top 20 of both sides of a book through `restapi` (or a DCN) and checks each against
/// the truth at its update id: exactly 20 levels (fewer only if the truth has fewer), all equal.
pub fn assert_served_correctly(
    sim: &str,
    restapi: &str,
    (exchange, family, market): (&str, &str, &str),
) {
    for side in [Side::Asks, Side::Bids] {
        let key = side_key(side);
        let path = format!("/get_{key}?exchange={exchange}&market={market}&limit_count=20");
        let answer = get_json(restapi, &path);
        assert_eq!(answer["result"], "OK", "{exchange} {market}: {answer}");
        let update_id = answer["last_update_id"].as_u64().expect("last_update_id");
        let expected = truth(sim, family, market, update_id, side);
        let held = levels(&answer, key);
        assert_eq!(held.len(), 20.min(expected.len()), "{exchange} {market}");
        assert_matches(
            &held,
            &expected[..held.len()],
            &format!("{restapi} {exchange} {market} get_{key}"),
        );
    }
}
