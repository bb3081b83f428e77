//! What a simulated market is: its symbol, its fixed decimals, tick and step sizes, and the price
//! it wanders around. Everything is derived from the seed, the family and the market's index.

use crate::decimal::format_decimal;
use crate::family::Family;
use crate::rng::SplitMix64;

/// The expiry every simulated option shares (`260626` in its symbol): 2026-06-26 08:00 UTC, in
/// milliseconds since the epoch, the time Binance's European options expire. COIN-M's quarterly
/// contracts deliver at the same hour of the same day (`BTCUSD_260626`).
pub(crate) const OPTION_EXPIRY_MS: u64 = 1_782_460_800_000;

/// The coins of the simulated COIN-M contracts, in market order: market `2k` is the perpetual
/// of coin `k` (`BTCUSD_PERP`), market `2k + 1` its quarterly contract (`BTCUSD_260626`); past
/// this list the coin is `SIM{k}`.
const COIN_M_COINS: [&str; 10] = [
    "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "LINK", "DOT", "LTC",
];

/// The static description of one market.
#[derive(Debug, Clone)]
pub(crate) struct MarketSpec {
    /// The family the market belongs to.
    pub(crate) family: Family,
    /// Position among the family's markets (`i` in `SIM{i}USDT`).
    pub(crate) index: usize,
    /// REST symbol, uppercase (`SIM0USDT`, `SIM0-260626-10000-C`, `BTCUSD_PERP`).
    pub(crate) symbol: String,
    /// Stream symbol, lowercase (`sim0usdt`).
    pub(crate) stream_symbol: String,
    /// Digits after the point in every price string.
    pub(crate) price_decimals: u32,
    /// Tick size as a price mantissa (every price is a multiple of it).
    pub(crate) tick: u64,
    /// Digits after the point in every quantity string.
    pub(crate) quantity_decimals: u32,
    /// Step size as a quantity mantissa (every quantity is a multiple of it).
    pub(crate) step: u64,
    /// The price (in ticks) the market wanders around.
    pub(crate) anchor_ticks: u64,
    /// How far (in ticks) the mid price typically strays from the anchor before it is pulled
    /// back.
    pub(crate) wander_ticks: u64,
    /// Options only: the strike in the symbol.
    pub(crate) strike: u64,
}

impl MarketSpec {
    /// The spec of market `index` of `family` for `seed`. Market 0 of every family trades
    /// around 100.00 with a tick of 0.01, so its book always has levels with two and with three
    /// integer digits and its best prices cross 99.99 ↔ 100.00 (the lexicographic-prune trap of
    /// `docs/binance-protocol.md` §7).
    pub(crate) fn new(family: Family, index: usize, seed: u64) -> MarketSpec {
        let mut rng = SplitMix64::derive(seed, &[0x5EC, family.index() as u64, index as u64]);
        let strike = 10_000 + 500 * index as u64;
        let symbol = match family {
            Family::Spot | Family::Futures => format!("SIM{index}USDT"),
            Family::Options => format!("SIM{index}-260626-{strike}-C"),
            Family::CoinFutures => coin_m_symbol(index),
        };
        let stream_symbol = symbol.to_lowercase();
        // (price decimals, tick exponent, quantity decimals, step exponent): the tick is
        // 10^tick_exp, written with `price decimals` digits, the same for quantities.
        let (price_decimals, tick_exp, quantity_decimals, step_exp) = match (family, index) {
            (Family::Spot, 0) => (8, -2, 8, -3),
            (Family::Futures, 0) => (2, -2, 3, -3),
            (Family::Options, 0) => (3, -2, 4, -2),
            // COIN-M quantities are whole contracts (`"431"`).
            (Family::CoinFutures, 0) => (2, -2, 0, 0),
            (Family::Spot, _) => {
                let tick_exp = -(rng.between(1, 6) as i32);
                (8, tick_exp, 8, -(rng.between(0, 5) as i32))
            }
            (Family::Futures, _) => {
                let tick_exp = -(rng.between(1, 4) as i32);
                let step_exp = -(rng.between(0, 3) as i32);
                (
                    tick_exp.unsigned_abs(),
                    tick_exp,
                    step_exp.unsigned_abs(),
                    step_exp,
                )
            }
            (Family::Options, _) => (3, -(rng.between(0, 2) as i32), 4, -2),
            (Family::CoinFutures, _) => {
                let tick_exp = -(rng.between(1, 3) as i32);
                (tick_exp.unsigned_abs(), tick_exp, 0, 0)
            }
        };
        let tick = 10u64.pow((price_decimals as i32 + tick_exp) as u32);
        let step = 10u64.pow((quantity_decimals as i32 + step_exp) as u32);
        let (anchor_ticks, wander_ticks) = if index == 0 {
            // 100.00 in ticks of 0.01, wandering a few cents: the best prices keep crossing
            // the digit boundary in both directions.
            (10_000, 6)
        } else {
            (rng.between(20_000, 200_000), 60)
        };
        MarketSpec {
            family,
            index,
            symbol,
            stream_symbol,
            price_decimals,
            tick,
            quantity_decimals,
            step,
            anchor_ticks,
            wander_ticks,
            strike,
        }
    }

    /// A price mantissa as Binance writes it.
    pub(crate) fn format_price(&self, mantissa: u64) -> String {
        format_decimal(mantissa, self.price_decimals)
    }

    /// A quantity mantissa as Binance writes it.
    pub(crate) fn format_quantity(&self, mantissa: u64) -> String {
        format_decimal(mantissa, self.quantity_decimals)
    }

    /// The base asset (`SIM3`; a COIN-M contract's coin, `BTC`).
    pub(crate) fn base_asset(&self) -> String {
        match self.family {
            Family::Spot | Family::Futures | Family::Options => format!("SIM{}", self.index),
            Family::CoinFutures => self.pair().trim_end_matches("USD").to_owned(),
        }
    }

    /// The underlying pair: a COIN-M contract's symbol before its `_` (`BTCUSD`), the symbol
    /// itself otherwise.
    pub(crate) fn pair(&self) -> &str {
        self.symbol
            .split_once('_')
            .map_or(self.symbol.as_str(), |(pair, _)| pair)
    }

    /// Whether the contract is a COIN-M perpetual (`_PERP`) rather than a delivery contract.
    pub(crate) fn is_perpetual(&self) -> bool {
        self.symbol.ends_with("_PERP")
    }
}

/// The symbol of COIN-M market `index` (see [`COIN_M_COINS`]).
fn coin_m_symbol(index: usize) -> String {
    let coin = COIN_M_COINS
        .get(index / 2)
        .map_or_else(|| format!("SIM{}", index / 2), |coin| (*coin).to_owned());
    let contract = if index % 2 == 0 { "PERP" } else { "260626" };
    format!("{coin}USD_{contract}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_zero_trades_around_one_hundred_with_a_cent_tick() {
        for family in Family::ALL {
            let spec = MarketSpec::new(family, 0, 1);
            assert_eq!(
                spec.format_price(spec.anchor_ticks * spec.tick)
                    .trim_end_matches('0'),
                "100."
            );
            assert_eq!(spec.format_price(spec.tick).trim_end_matches('0'), "0.01");
        }
    }

    #[test]
    fn symbols_follow_the_naming_scheme() {
        assert_eq!(MarketSpec::new(Family::Spot, 3, 1).symbol, "SIM3USDT");
        assert_eq!(
            MarketSpec::new(Family::Futures, 3, 1).stream_symbol,
            "sim3usdt"
        );
        assert_eq!(
            MarketSpec::new(Family::Options, 2, 1).symbol,
            "SIM2-260626-11000-C"
        );
        let coin_m: Vec<String> = (0..4)
            .map(|index| MarketSpec::new(Family::CoinFutures, index, 1).symbol)
            .collect();
        assert_eq!(
            coin_m,
            [
                "BTCUSD_PERP",
                "BTCUSD_260626",
                "ETHUSD_PERP",
                "ETHUSD_260626"
            ]
        );
        let far = MarketSpec::new(Family::CoinFutures, 25, 1);
        assert_eq!(
            (far.symbol.as_str(), far.stream_symbol.as_str(), far.pair()),
            ("SIM12USD_260626", "sim12usd_260626", "SIM12USD")
        );
        let perpetual = MarketSpec::new(Family::CoinFutures, 0, 1);
        assert_eq!(
            (perpetual.base_asset().as_str(), perpetual.is_perpetual()),
            ("BTC", true)
        );
        assert_eq!(perpetual.format_quantity(431), "431");
    }

    #[test]
    fn specs_depend_only_on_seed_family_and_index() {
        let a = MarketSpec::new(Family::Spot, 5, 9);
        let b = MarketSpec::new(Family::Spot, 5, 9);
        assert_eq!(
            (a.tick, a.step, a.anchor_ticks),
            (b.tick, b.step, b.anchor_ticks)
        );
    }
}
