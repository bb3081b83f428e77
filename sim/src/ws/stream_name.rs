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
}
