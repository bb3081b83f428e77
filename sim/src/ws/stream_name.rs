//! Diff-depth stream names (`<symbol>@depth`, `@depth@100ms`, `@depth@500ms`) and what they
//! resolve to on a venue. Symbols in stream names are lowercase, as Binance requires; an
//! uppercase name is an invalid stream.

use crate::family::{Family, Speed, Venue};
use crate::markets::Exchange;

/// A stream a connection can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamKey {
    /// The family of the market.
    pub(crate) family: Family,
    /// The market's index in its family.
    pub(crate) market: usize,
    /// The stream name as the client wrote it (the combined envelope's `stream`).
    pub(crate) name: String,
}

/// Resolves `name` on `venue`; `None` for an unknown symbol, an unknown suffix, or a speed the
/// family does not serve (options have no bare `@depth`).
pub(crate) fn parse_stream_name(
    exchange: &Exchange,
    venue: Venue,
    name: &str,
) -> Option<StreamKey> {
    let (symbol, suffix) = name.split_once('@')?;
    let speed = Speed::from_suffix(suffix)?;
    venue.families().iter().find_map(|&family| {
        let market = exchange.find_stream_symbol(family, symbol)?;
        family.accepts_speed(speed).then(|| StreamKey {
            family,
            market,
            name: name.to_owned(),
        })
    })
}

/// A stream name a `SUBSCRIBE` may hold: a listed market's stream, or a well-formed name of a
/// symbol the exchange does not list. Binance accepts the latter (`{"result":null}`) and then
/// sends nothing on it; so does the simulator, unless the `refuse_subscribe` fault is armed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A listed market's stream.
    Listed(StreamKey),
    /// A well-formed stream of an unlisted symbol: held, never carries an event.
    Unlisted(String),
}

impl Resolved {
    /// The stream name as the client wrote it.
    pub(crate) fn name(&self) -> &str {
        match self {
            Resolved::Listed(key) => &key.name,
            Resolved::Unlisted(name) => name,
        }
    }

    /// The symbol part of the name (lowercase, as written).
    pub(crate) fn symbol(&self) -> &str {
        let name = self.name();
        name.split_once('@').map_or(name, |(symbol, _)| symbol)
    }
}

/// Resolves `name` for a `SUBSCRIBE` on `venue`; `None` for a name that is not a stream at all
/// (no `@`, an unknown suffix, a speed no family of the venue serves, characters no symbol has).
pub(crate) fn resolve_stream_name(
    exchange: &Exchange,
    venue: Venue,
    name: &str,
) -> Option<Resolved> {
    if let Some(key) = parse_stream_name(exchange, venue, name) {
        return Some(Resolved::Listed(key));
    }
    let (symbol, suffix) = name.split_once('@')?;
    let speed = Speed::from_suffix(suffix)?;
    let symbol_like = !symbol.is_empty()
        && symbol
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    let served = venue
        .families()
        .iter()
        .any(|family| family.accepts_speed(speed));
    (symbol_like && served).then(|| Resolved::Unlisted(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    fn exchange() -> Exchange {
        let config = SimConfig::builder().markets(2).book_depth(20).build();
        let Ok(config) = config else {
            panic!("valid config: {config:?}");
        };
        Exchange::new(&config, 0)
    }

    #[test]
    fn each_venue_resolves_its_own_families() {
        let exchange = exchange();
        let spot = parse_stream_name(&exchange, Venue::Spot, "sim1usdt@depth@100ms");
        assert_eq!(spot.map(|k| (k.family, k.market)), Some((Family::Spot, 1)));
        let futures = parse_stream_name(&exchange, Venue::FStream, "sim0usdt@depth@500ms");
        assert_eq!(futures.map(|k| k.family), Some(Family::Futures));
        let options =
            parse_stream_name(&exchange, Venue::FStream, "sim1-260626-10500-c@depth@500ms");
        assert_eq!(options.map(|k| k.family), Some(Family::Options));
    }

    #[test]
    fn coin_m_streams_resolve_on_dstream_only() {
        let exchange = exchange();
        for (name, market) in [
            ("btcusd_perp@depth", 0),
            ("btcusd_260626@depth@500ms", 1),
            ("btcusd_perp@depth@100ms", 0),
        ] {
            let key = parse_stream_name(&exchange, Venue::DStream, name);
            assert_eq!(
                key.map(|k| (k.family, k.market)),
                Some((Family::CoinFutures, market)),
                "{name}"
            );
        }
        for venue in [Venue::Spot, Venue::FStream] {
            assert_eq!(
                parse_stream_name(&exchange, venue, "btcusd_perp@depth"),
                None
            );
        }
        // Elsewhere a COIN-M name is just a well-formed stream of a symbol that venue lacks.
        assert_eq!(
            resolve_stream_name(&exchange, Venue::Spot, "btcusd_perp@depth"),
            Some(Resolved::Unlisted("btcusd_perp@depth".into()))
        );
        assert_eq!(
            parse_stream_name(&exchange, Venue::DStream, "sim0usdt@depth"),
            None
        );
    }

    #[test]
    fn unknown_or_unserved_names_are_rejected() {
        let exchange = exchange();
        for name in [
            "SIM0USDT@depth",
            "sim0usdt@depth@500ms",
            "sim9usdt@depth",
            "sim0usdt@trade",
            "sim0usdt",
        ] {
            assert_eq!(
                parse_stream_name(&exchange, Venue::Spot, name),
                None,
                "{name}"
            );
        }
        assert_eq!(
            parse_stream_name(&exchange, Venue::FStream, "sim0-260626-10000-c@depth"),
            None
        );
        assert_eq!(
            parse_stream_name(&exchange, Venue::FStream, "sim0usdt@depth@250ms"),
            None
        );
    }

    #[test]
    fn well_formed_names_of_unlisted_symbols_resolve_as_unlisted() {
        let exchange = exchange();
        let unlisted = resolve_stream_name(&exchange, Venue::Spot, "nosuchusdt@depth");
        assert_eq!(
            unlisted,
            Some(Resolved::Unlisted("nosuchusdt@depth".into()))
        );
        assert_eq!(
            unlisted.map(|r| r.symbol().to_owned()),
            Some("nosuchusdt".into())
        );
        let listed = resolve_stream_name(&exchange, Venue::Spot, "sim1usdt@depth");
        assert!(matches!(listed, Some(Resolved::Listed(_))));
        for name in [
            "NOSUCHUSDT@depth",
            "nosuchusdt@trade",
            "nosuchusdt",
            "@depth",
            "x@depth@500ms",
        ] {
            assert_eq!(
                resolve_stream_name(&exchange, Venue::Spot, name),
                None,
                "{name}"
            );
        }
    }
}
