//! Binance's JSON shapes as the simulator writes them (`docs/binance-protocol.md` §3): diff-depth events per
//! family, REST snapshots per family, the combined-stream envelope, `serverShutdown`, and the
//! error bodies. These are the simulator's own types; the engine has its own on purpose.

use serde::Serialize;

use crate::book::Level;
use crate::family::Family;
use crate::market::MarketSpec;
use crate::update::Update;

/// A level as `["price","quantity"]`.
type WireLevel = [String; 2];

fn wire_levels(spec: &MarketSpec, levels: &[Level]) -> Vec<WireLevel> {
    levels
        .iter()
        .map(|&(price, quantity)| [spec.format_price(price), spec.format_quantity(quantity)])
        .collect()
}

/// Serializes a value made of strings, integers, arrays and structs, which cannot fail.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|error| unreachable!("plain data always serializes: {error}"))
}

/// Spot `depthUpdate`: `e, E, s, U, u, b, a`.
#[derive(Serialize)]
struct SpotDepthEvent<'a> {
    #[serde(rename = "e")]
    event_type: &'static str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "U")]
    first_update_id: u64,
    #[serde(rename = "u")]
    last_update_id: u64,
    #[serde(rename = "b")]
    bids: Vec<WireLevel>,
    #[serde(rename = "a")]
    asks: Vec<WireLevel>,
}

/// Futures and options `depthUpdate`: `e, E, T, s, U, u, pu, b, a`; COIN-M adds the pair,
/// `ps`, after `s`.
#[derive(Serialize)]
struct DerivativesDepthEvent<'a> {
    #[serde(rename = "e")]
    event_type: &'static str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "T")]
    transaction_time: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "ps", skip_serializing_if = "Option::is_none")]
    pair: Option<&'a str>,
    #[serde(rename = "U")]
    first_update_id: u64,
    #[serde(rename = "u")]
    last_update_id: u64,
    #[serde(rename = "pu")]
    previous_update_id: u64,
    #[serde(rename = "b")]
    bids: Vec<WireLevel>,
    #[serde(rename = "a")]
    asks: Vec<WireLevel>,
}

/// The raw (un-enveloped) event JSON of `update` in its family's shape.
pub(crate) fn render_event(spec: &MarketSpec, update: &Update) -> String {
    let bids = wire_levels(spec, &update.bids);
    let asks = wire_levels(spec, &update.asks);
    match spec.family {
        Family::Spot => to_json(&SpotDepthEvent {
            event_type: "depthUpdate",
            event_time: update.event_time_ms,
            symbol: &spec.symbol,
            first_update_id: update.first_update_id,
            last_update_id: update.last_update_id,
            bids,
            asks,
        }),
        Family::Futures | Family::Options | Family::CoinFutures => {
            to_json(&DerivativesDepthEvent {
                event_type: "depthUpdate",
                event_time: update.event_time_ms,
                transaction_time: update.transaction_time_ms,
                symbol: &spec.symbol,
                pair: (spec.family == Family::CoinFutures).then(|| spec.pair()),
                first_update_id: update.first_update_id,
                last_update_id: update.last_update_id,
                previous_update_id: update.previous_update_id,
                bids,
                asks,
            })
        }
    }
}

/// Wraps raw event JSON in the combined-stream envelope `{"stream":..,"data":..}`. The data is
/// inserted verbatim, so a malformed payload stays malformed.
pub(crate) fn envelope(stream: &str, data: &str) -> String {
    format!("{{\"stream\":{},\"data\":{data}}}", to_json(&stream))
}

/// `{"e":"serverShutdown","E":...}` (`docs/binance-protocol.md` §3.3).
pub(crate) fn server_shutdown_event(event_time_ms: u64) -> String {
    #[derive(Serialize)]
    struct ServerShutdown {
        #[serde(rename = "e")]
        event_type: &'static str,
        #[serde(rename = "E")]
        event_time: u64,
    }
    to_json(&ServerShutdown {
        event_type: "serverShutdown",
        event_time: event_time_ms,
    })
}

/// What a snapshot holds, before it is written in its family's shape.
pub(crate) struct SnapshotParts<'a> {
    /// `lastUpdateId`.
    pub(crate) last_update_id: u64,
    /// Futures `E`: when the response was written.
    pub(crate) message_time_ms: u64,
    /// Futures and options `T`: transaction time of the last update in the book.
    pub(crate) transaction_time_ms: u64,
    /// Bids, best first.
    pub(crate) bids: &'a [Level],
    /// Asks, best first.
    pub(crate) asks: &'a [Level],
}

/// The REST snapshot body in its family's shape: spot `lastUpdateId, bids, asks`; futures
/// `lastUpdateId, E, T, bids, asks`; options `bids, asks, T, lastUpdateId`; COIN-M
/// `lastUpdateId, symbol, pair, E, T, bids, asks`.
pub(crate) fn render_snapshot(spec: &MarketSpec, parts: &SnapshotParts<'_>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Spot {
        last_update_id: u64,
        bids: Vec<WireLevel>,
        asks: Vec<WireLevel>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Futures {
        last_update_id: u64,
        #[serde(rename = "E")]
        message_time: u64,
        #[serde(rename = "T")]
        transaction_time: u64,
        bids: Vec<WireLevel>,
        asks: Vec<WireLevel>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CoinFutures<'a> {
        last_update_id: u64,
        symbol: &'a str,
        pair: &'a str,
        #[serde(rename = "E")]
        message_time: u64,
        #[serde(rename = "T")]
        transaction_time: u64,
        bids: Vec<WireLevel>,
        asks: Vec<WireLevel>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Options {
        bids: Vec<WireLevel>,
        asks: Vec<WireLevel>,
        #[serde(rename = "T")]
        transaction_time: u64,
        last_update_id: u64,
    }
    let bids = wire_levels(spec, parts.bids);
    let asks = wire_levels(spec, parts.asks);
    match spec.family {
        Family::Spot => to_json(&Spot {
            last_update_id: parts.last_update_id,
            bids,
            asks,
        }),
        Family::Futures => to_json(&Futures {
            last_update_id: parts.last_update_id,
            message_time: parts.message_time_ms,
            transaction_time: parts.transaction_time_ms,
            bids,
            asks,
        }),
        Family::Options => to_json(&Options {
            bids,
            asks,
            transaction_time: parts.transaction_time_ms,
            last_update_id: parts.last_update_id,
        }),
        Family::CoinFutures => to_json(&CoinFutures {
            last_update_id: parts.last_update_id,
            symbol: &spec.symbol,
            pair: spec.pair(),
            message_time: parts.message_time_ms,
            transaction_time: parts.transaction_time_ms,
            bids,
            asks,
        }),
    }
}

/// The truth endpoint's body: the whole book at one update id.
#[derive(Serialize)]
pub(crate) struct TruthBody<'a> {
    /// The family.
    pub(crate) family: Family,
    /// The REST symbol.
    pub(crate) symbol: &'a str,
    /// The update id the book is at.
    pub(crate) update_id: u64,
    /// Every bid, best first.
    pub(crate) bids: Vec<[String; 2]>,
    /// Every ask, best first.
    pub(crate) asks: Vec<[String; 2]>,
}

impl<'a> TruthBody<'a> {
    /// The body for `spec`'s book at `update_id`.
    pub(crate) fn new(
        spec: &'a MarketSpec,
        update_id: u64,
        bids: &[Level],
        asks: &[Level],
    ) -> Self {
        TruthBody {
            family: spec.family,
            symbol: &spec.symbol,
            update_id,
            bids: wire_levels(spec, bids),
            asks: wire_levels(spec, asks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> Update {
        Update {
            first_update_id: 157,
            last_update_id: 160,
            previous_update_id: 156,
            event_time_ms: 1_672_515_782_136,
            transaction_time_ms: 1_672_515_782_134,
            bids: vec![(1_000_000, 1_000_000_000)],
            asks: vec![(1_000_200, 0)],
        }
    }

    #[test]
    fn spot_events_have_the_spot_fields_in_order() {
        let spec = MarketSpec::new(Family::Spot, 0, 1);
        assert_eq!(
            render_event(&spec, &update()),
            r#"{"e":"depthUpdate","E":1672515782136,"s":"SIM0USDT","U":157,"u":160,"b":[["0.01000000","10.00000000"]],"a":[["0.01000200","0.00000000"]]}"#
        );
    }

    #[test]
    fn futures_events_add_t_and_pu() {
        let spec = MarketSpec::new(Family::Futures, 0, 1);
        assert_eq!(
            render_event(&spec, &update()),
            r#"{"e":"depthUpdate","E":1672515782136,"T":1672515782134,"s":"SIM0USDT","U":157,"u":160,"pu":156,"b":[["10000.00","1000000.000"]],"a":[["10002.00","0.000"]]}"#
        );
    }

    #[test]
    fn coin_m_events_add_the_pair_after_the_symbol() {
        // Whole contracts: quantities have no decimals.
        let spec = MarketSpec::new(Family::CoinFutures, 0, 1);
        assert_eq!(
            render_event(&spec, &update()),
            r#"{"e":"depthUpdate","E":1672515782136,"T":1672515782134,"s":"BTCUSD_PERP","ps":"BTCUSD","U":157,"u":160,"pu":156,"b":[["10000.00","1000000000"]],"a":[["10002.00","0"]]}"#
        );
    }

    #[test]
    fn snapshots_have_each_familys_field_order() {
        let parts = SnapshotParts {
            last_update_id: 7,
            message_time_ms: 9,
            transaction_time_ms: 8,
            bids: &[],
            asks: &[],
        };
        let render = |family| render_snapshot(&MarketSpec::new(family, 0, 1), &parts);
        assert_eq!(
            render(Family::Spot),
            r#"{"lastUpdateId":7,"bids":[],"asks":[]}"#
        );
        assert_eq!(
            render(Family::Futures),
            r#"{"lastUpdateId":7,"E":9,"T":8,"bids":[],"asks":[]}"#
        );
        assert_eq!(
            render(Family::Options),
            r#"{"bids":[],"asks":[],"T":8,"lastUpdateId":7}"#
        );
        assert_eq!(
            render(Family::CoinFutures),
            r#"{"lastUpdateId":7,"symbol":"BTCUSD_PERP","pair":"BTCUSD","E":9,"T":8,"bids":[],"asks":[]}"#
        );
    }

    #[test]
    fn the_envelope_keeps_data_verbatim() {
        assert_eq!(
            envelope("sim0usdt@depth", "{\"e\":"),
            r#"{"stream":"sim0usdt@depth","data":{"e":}"#
        );
    }
}
