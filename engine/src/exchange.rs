//! The exchanges the original supported, each with Binance's endpoints, limits, stream names and
//! sync family (`docs/binance-protocol.md` §1), and the endpoint overrides that point an
//! exchange at another URL (the simulator) without changing any other code path.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::sync::SyncFamily;

/// An exchange string of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exchange {
    /// `binance.com`
    BinanceCom,
    /// `binance.com-testnet`
    BinanceComTestnet,
    /// `binance.com-margin`
    BinanceComMargin,
    /// `binance.com-margin-testnet`
    BinanceComMarginTestnet,
    /// `binance.com-isolated_margin`
    BinanceComIsolatedMargin,
    /// `binance.com-isolated_margin-testnet`
    BinanceComIsolatedMarginTestnet,
    /// `binance.com-futures` (USD-M)
    BinanceComFutures,
    /// `binance.com-futures-testnet`
    BinanceComFuturesTestnet,
    /// `binance.com-coin_futures` (COIN-M: coin-margined perpetual and delivery contracts)
    BinanceComCoinFutures,
    /// `binance.com-coin_futures-testnet`
    BinanceComCoinFuturesTestnet,
    /// `binance.com-vanilla-options` (European options)
    BinanceComVanillaOptions,
    /// `binance.com-vanilla-options-testnet`
    BinanceComVanillaOptionsTestnet,
    /// `binance.us`
    BinanceUs,
    /// `trbinance.com`
    TrBinanceCom,
}

/// Every exchange, in the order of the original's documentation, then COIN-M (ours: the original
/// never offered it; its strings are those UBWA and UBRA use).
pub const EXCHANGES: [Exchange; 14] = [
    Exchange::BinanceCom,
    Exchange::BinanceComTestnet,
    Exchange::BinanceComMargin,
    Exchange::BinanceComMarginTestnet,
    Exchange::BinanceComIsolatedMargin,
    Exchange::BinanceComIsolatedMarginTestnet,
    Exchange::BinanceComFutures,
    Exchange::BinanceComFuturesTestnet,
    Exchange::BinanceComVanillaOptions,
    Exchange::BinanceComVanillaOptionsTestnet,
    Exchange::BinanceUs,
    Exchange::TrBinanceCom,
    Exchange::BinanceComCoinFutures,
    Exchange::BinanceComCoinFuturesTestnet,
];

/// Problems with an exchange string, an update interval or an endpoint override.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExchangeError {
    /// Not one of the original's exchange strings.
    #[error("unknown exchange {0:?}; valid: {valid}", valid = valid_names())]
    Unknown(String),
    /// The exchange has no diff stream at that interval.
    #[error(
        "{exchange} has no depth stream with update_interval {interval_ms} ms; valid: {valid:?}"
    )]
    UnsupportedInterval {
        /// The exchange.
        exchange: Exchange,
        /// The interval asked for.
        interval_ms: u32,
        /// The intervals it offers.
        valid: &'static [u32],
    },
    /// An endpoint override is not `EXCHANGE=http(s)://host[:port][/path]`.
    #[error("invalid exchange endpoint {0:?}: expected EXCHANGE=http://host:port")]
    InvalidEndpoint(String),
}

fn valid_names() -> String {
    EXCHANGES
        .iter()
        .map(Exchange::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binance's published numbers and paths for one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// The sync rules its streams follow.
    pub family: SyncFamily,
    /// REST base URL (scheme and host).
    pub rest_base: &'static str,
    /// Path of the depth snapshot (`/api/v3/depth`).
    pub snapshot_path: &'static str,
    /// WebSocket base URL.
    pub ws_base: &'static str,
    /// Path of the combined-stream endpoint (`/stream`, or `/public/stream` for USD-M futures and
    /// options since the 2026 routing change; COIN-M's `dstream` has no such routing).
    pub combined_stream_path: &'static str,
    /// Most streams one connection may carry.
    pub streams_per_connection: usize,
    /// Client-to-server messages per second (pings, pongs and control messages included).
    pub messages_per_second: u32,
    /// Request-weight budget per minute per IP of the REST host.
    pub weight_per_minute: u32,
    /// Snapshot weight at `limit` (see [`ExchangeSpec::snapshot_weight`]).
    weights: WeightTable,
    /// Update intervals (ms) that have a stream; the first is the bare `@depth`.
    pub intervals_ms: &'static [u32],
    /// The interval the original used when none is set.
    pub default_interval_ms: u32,
    /// The snapshot endpoint needs an API key even though depth is public (TR).
    pub requires_api_key: bool,
}

/// Snapshot weight by `limit` band: `(largest limit of the band, weight)`, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WeightTable(&'static [(u32, u32)]);

const SPOT_WEIGHTS: WeightTable = WeightTable(&[(100, 5), (500, 25), (1000, 50), (5000, 250)]);
const FUTURES_WEIGHTS: WeightTable = WeightTable(&[(50, 2), (100, 5), (500, 10), (1000, 20)]);
// The two options pages disagree for 5..=50 (1 or 2); take the higher.
const OPTIONS_WEIGHTS: WeightTable = WeightTable(&[(50, 2), (100, 5), (500, 10), (1000, 20)]);
const US_WEIGHTS: WeightTable = WeightTable(&[(100, 1), (500, 5), (1000, 10), (5000, 50)]);

const SPOT: ExchangeSpec = ExchangeSpec {
    family: SyncFamily::Spot,
    rest_base: "https://api.binance.com",
    snapshot_path: "/api/v3/depth",
    ws_base: "wss://stream.binance.com:9443",
    combined_stream_path: "/stream",
    streams_per_connection: 1024,
    messages_per_second: 5,
    weight_per_minute: 6000,
    weights: SPOT_WEIGHTS,
    intervals_ms: &[1000, 100],
    default_interval_ms: 1000,
    requires_api_key: false,
};

const SPOT_TESTNET: ExchangeSpec = ExchangeSpec {
    rest_base: "https://testnet.binance.vision",
    ws_base: "wss://stream.testnet.binance.vision",
    ..SPOT
};

const FUTURES: ExchangeSpec = ExchangeSpec {
    family: SyncFamily::Futures,
    rest_base: "https://fapi.binance.com",
    snapshot_path: "/fapi/v1/depth",
    ws_base: "wss://fstream.binance.com",
    combined_stream_path: "/public/stream",
    streams_per_connection: 200,
    messages_per_second: 10,
    weight_per_minute: 2400,
    weights: FUTURES_WEIGHTS,
    intervals_ms: &[250, 500, 100],
    default_interval_ms: 250,
    requires_api_key: false,
};

const FUTURES_TESTNET: ExchangeSpec = ExchangeSpec {
    rest_base: "https://testnet.binancefuture.com",
    ws_base: "wss://stream.binancefuture.com",
    ..FUTURES
};

/// COIN-M lives on hosts of its own (`dapi`, `dstream`) with USD-M's numbers: the same depth
/// weight bands and `limit` values, 2400 weight a minute per IP, 200 streams and 10 messages a
/// second per connection, `@depth` at 250 ms plus 500 and 100 ms, and the `pu` rule. Its streams
/// are still at the un-routed `/stream`: the 2026 `/public` routing is USD-M's.
const COIN_FUTURES: ExchangeSpec = ExchangeSpec {
    rest_base: "https://dapi.binance.com",
    snapshot_path: "/dapi/v1/depth",
    ws_base: "wss://dstream.binance.com",
    combined_stream_path: "/stream",
    ..FUTURES
};

/// The futures testnet host serves COIN-M's REST too; its streams have their own host.
const COIN_FUTURES_TESTNET: ExchangeSpec = ExchangeSpec {
    rest_base: "https://testnet.binancefuture.com",
    ws_base: "wss://dstream.binancefuture.com",
    ..COIN_FUTURES
};

/// Options have no bare `@depth`: `Exchange::stream_name` always names their interval.
const OPTIONS: ExchangeSpec = ExchangeSpec {
    rest_base: "https://eapi.binance.com",
    snapshot_path: "/eapi/v1/depth",
    // Binance does not publish an options per-minute weight limit; the futures one is the
    // conservative guess (the same host family).
    weights: OPTIONS_WEIGHTS,
    intervals_ms: &[500, 100],
    default_interval_ms: 500,
    ..FUTURES
};

const OPTIONS_TESTNET: ExchangeSpec = ExchangeSpec {
    rest_base: "https://testnet.binancefuture.com",
    ws_base: "wss://fstream.binancefuture.com",
    ..OPTIONS
};

const US: ExchangeSpec = ExchangeSpec {
    rest_base: "https://api.binance.us",
    ws_base: "wss://stream.binance.us:9443",
    weight_per_minute: 1200,
    weights: US_WEIGHTS,
    ..SPOT
};

/// TR publishes no limits; spot's shape with US's smaller budget is the cautious assumption.
const TR: ExchangeSpec = ExchangeSpec {
    rest_base: "https://www.trbinance.com",
    ws_base: "wss://stream-cloud.trbinance.com",
    weight_per_minute: 1200,
    requires_api_key: true,
    ..SPOT
};

impl Exchange {
    /// The exchange string.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::BinanceCom => "binance.com",
            Self::BinanceComTestnet => "binance.com-testnet",
            Self::BinanceComMargin => "binance.com-margin",
            Self::BinanceComMarginTestnet => "binance.com-margin-testnet",
            Self::BinanceComIsolatedMargin => "binance.com-isolated_margin",
            Self::BinanceComIsolatedMarginTestnet => "binance.com-isolated_margin-testnet",
            Self::BinanceComFutures => "binance.com-futures",
            Self::BinanceComFuturesTestnet => "binance.com-futures-testnet",
            Self::BinanceComCoinFutures => "binance.com-coin_futures",
            Self::BinanceComCoinFuturesTestnet => "binance.com-coin_futures-testnet",
            Self::BinanceComVanillaOptions => "binance.com-vanilla-options",
            Self::BinanceComVanillaOptionsTestnet => "binance.com-vanilla-options-testnet",
            Self::BinanceUs => "binance.us",
            Self::TrBinanceCom => "trbinance.com",
        }
    }

    /// Binance's endpoints and limits for this exchange.
    pub const fn spec(&self) -> &'static ExchangeSpec {
        match self {
            Self::BinanceCom | Self::BinanceComMargin | Self::BinanceComIsolatedMargin => &SPOT,
            Self::BinanceComTestnet
            | Self::BinanceComMarginTestnet
            | Self::BinanceComIsolatedMarginTestnet => &SPOT_TESTNET,
            Self::BinanceComFutures => &FUTURES,
            Self::BinanceComFuturesTestnet => &FUTURES_TESTNET,
            Self::BinanceComCoinFutures => &COIN_FUTURES,
            Self::BinanceComCoinFuturesTestnet => &COIN_FUTURES_TESTNET,
            Self::BinanceComVanillaOptions => &OPTIONS,
            Self::BinanceComVanillaOptionsTestnet => &OPTIONS_TESTNET,
            Self::BinanceUs => &US,
            Self::TrBinanceCom => &TR,
        }
    }

    /// The diff stream name for `symbol` at `update_interval_ms` (`None`: the original's
    /// default), e.g. `btcusdt@depth` or `btcusdt@depth@100ms`. Symbols are lower-case in
    /// stream names.
    ///
    /// # Errors
    /// [`ExchangeError::UnsupportedInterval`] when the exchange has no stream at that interval.
    pub fn stream_name(
        &self,
        symbol: &str,
        update_interval_ms: Option<u32>,
    ) -> Result<String, ExchangeError> {
        let spec = self.spec();
        let interval = update_interval_ms.unwrap_or(spec.default_interval_ms);
        if !spec.intervals_ms.contains(&interval) {
            return Err(ExchangeError::UnsupportedInterval {
                exchange: *self,
                interval_ms: interval,
                valid: spec.intervals_ms,
            });
        }
        let symbol = symbol.to_ascii_lowercase();
        // The first interval is the bare `@depth`, except for options, which have none.
        let bare = interval == spec.intervals_ms[0] && !self.is_options();
        Ok(if bare {
            format!("{symbol}@depth")
        } else {
            format!("{symbol}@depth@{interval}ms")
        })
    }

    /// `true` for the options exchanges, whose snapshots lag the stream (§4.4).
    pub(crate) fn is_options(&self) -> bool {
        matches!(
            self,
            Self::BinanceComVanillaOptions | Self::BinanceComVanillaOptionsTestnet
        )
    }
}

impl ExchangeSpec {
    /// The `limit` to ask for to get at least `wanted` levels: the next one the endpoint takes.
    pub fn snapshot_limit(&self, wanted: u32) -> u32 {
        // Spot takes any limit up to 5 000; the futures and options depth endpoints take only
        // these (`docs/binance-protocol.md` §1.2), 10 being the smallest options accept.
        const FUTURES_LIMITS: [u32; 6] = [10, 20, 50, 100, 500, 1000];
        match self.family {
            SyncFamily::Spot => wanted.clamp(1, 5000),
            SyncFamily::Futures => FUTURES_LIMITS
                .into_iter()
                .find(|limit| *limit >= wanted)
                .unwrap_or(1000),
        }
    }

    /// The request weight of a depth snapshot with `limit` levels (the highest band's weight for
    /// a `limit` beyond the table).
    pub fn snapshot_weight(&self, limit: u32) -> u32 {
        let bands = self.weights.0;
        bands
            .iter()
            .find(|(up_to, _)| limit <= *up_to)
            .or(bands.last())
            .map_or(0, |(_, weight)| *weight)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `true` for a symbol Binance could have: 1 to 48 of `A-Z a-z 0-9 - _` (options symbols have
/// dashes). Anything else could never sync, and would not fit a stream name.
pub fn is_valid_symbol(symbol: &str) -> bool {
    (1..=48).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FromStr for Exchange {
    type Err = ExchangeError;

    fn from_str(text: &str) -> Result<Self, ExchangeError> {
        EXCHANGES
            .into_iter()
            .find(|exchange| exchange.as_str() == text)
            .ok_or_else(|| ExchangeError::Unknown(text.to_owned()))
    }
}

/// Where an exchange's REST and WebSocket endpoints are, after overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// REST base, e.g. `https://api.binance.com` or `http://127.0.0.1:8900`.
    pub rest_base: String,
    /// WebSocket base, e.g. `wss://stream.binance.com:9443` or `ws://127.0.0.1:8900`.
    pub ws_base: String,
}

/// Per-exchange endpoint overrides: one URL serving both REST and WebSocket (as `ubdcc sim`
/// does). Everything else about the exchange — paths, limits, sync rules — stays Binance's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides(HashMap<Exchange, String>);

impl EndpointOverrides {
    /// Parses `EXCHANGE=URL` items, as given with `--exchange-endpoint` or, comma-separated, in
    /// `UBDCC_EXCHANGE_ENDPOINTS`.
    ///
    /// # Errors
    /// [`ExchangeError::InvalidEndpoint`] for an item that is not `EXCHANGE=http(s)://...`,
    /// [`ExchangeError::Unknown`] for an unknown exchange.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, ExchangeError> {
        let mut overrides = HashMap::new();
        for item in items
            .into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (exchange, url) = item
                .split_once('=')
                .ok_or_else(|| ExchangeError::InvalidEndpoint(item.to_owned()))?;
            let url = url.trim_end_matches('/');
            let valid = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty());
            if !valid {
                return Err(ExchangeError::InvalidEndpoint(item.to_owned()));
            }
            overrides.insert(exchange.trim().parse()?, url.to_owned());
        }
        Ok(Self(overrides))
    }

    /// The endpoints of `exchange`: Binance's unless overridden.
    pub fn endpoints(&self, exchange: Exchange) -> Endpoints {
        match self.0.get(&exchange) {
            Some(url) => Endpoints {
                rest_base: url.clone(),
                ws_base: websocket_url(url),
            },
            None => Endpoints {
                rest_base: exchange.spec().rest_base.to_owned(),
                ws_base: exchange.spec().ws_base.to_owned(),
            },
        }
    }
}

/// `http://` → `ws://`, `https://` → `wss://`.
fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        return format!("wss://{rest}");
    }
    url.strip_prefix("http://")
        .map_or_else(|| url.to_owned(), |rest| format!("ws://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_string_round_trips_and_unknown_ones_are_refused() {
        for exchange in EXCHANGES {
            assert_eq!(exchange.as_str().parse::<Exchange>(), Ok(exchange));
        }
        let error = "binance.con".parse::<Exchange>().unwrap_err();
        assert!(error.to_string().contains("binance.com-futures"), "{error}");
        assert!("".parse::<Exchange>().is_err());
        assert!("BINANCE.COM".parse::<Exchange>().is_err());
    }

    #[test]
    fn families_follow_the_reference() {
        assert_eq!(Exchange::BinanceCom.spec().family, SyncFamily::Spot);
        assert_eq!(Exchange::BinanceUs.spec().family, SyncFamily::Spot);
        assert_eq!(Exchange::TrBinanceCom.spec().family, SyncFamily::Spot);
        assert_eq!(
            Exchange::BinanceComFutures.spec().family,
            SyncFamily::Futures
        );
        assert_eq!(
            Exchange::BinanceComVanillaOptions.spec().family,
            SyncFamily::Futures
        );
        assert!(Exchange::TrBinanceCom.spec().requires_api_key);
    }

    #[test]
    fn a_limit_futures_and_options_do_not_take_is_rounded_up_to_one_they_do() {
        let futures = Exchange::BinanceComFutures.spec();
        assert_eq!(futures.snapshot_limit(100), 100);
        assert_eq!(futures.snapshot_limit(200), 500);
        assert_eq!(futures.snapshot_limit(1), 10);
        assert_eq!(
            Exchange::BinanceComVanillaOptions.spec().snapshot_limit(5),
            10
        );
        assert_eq!(Exchange::BinanceCom.spec().snapshot_limit(200), 200);
        assert_eq!(Exchange::BinanceCom.spec().snapshot_limit(9000), 5000);
    }

    #[test]
    fn snapshot_weights_at_1000_match_binance() {
        assert_eq!(Exchange::BinanceCom.spec().snapshot_weight(1000), 50);
        assert_eq!(Exchange::BinanceComFutures.spec().snapshot_weight(1000), 20);
        assert_eq!(
            Exchange::BinanceComVanillaOptions
                .spec()
                .snapshot_weight(1000),
            20
        );
        assert_eq!(Exchange::BinanceUs.spec().snapshot_weight(1000), 10);
        assert_eq!(Exchange::BinanceCom.spec().snapshot_weight(100), 5);
        assert_eq!(Exchange::BinanceCom.spec().snapshot_weight(5000), 250);
    }

    #[test]
    fn stream_names_follow_each_family() {
        assert_eq!(
            Exchange::BinanceCom.stream_name("BTCUSDT", None).unwrap(),
            "btcusdt@depth"
        );
        assert_eq!(
            Exchange::BinanceCom
                .stream_name("BTCUSDT", Some(100))
                .unwrap(),
            "btcusdt@depth@100ms"
        );
        assert_eq!(
            Exchange::BinanceComFutures
                .stream_name("BTCUSDT", Some(500))
                .unwrap(),
            "btcusdt@depth@500ms"
        );
        assert_eq!(
            Exchange::BinanceComFutures
                .stream_name("BTCUSDT", None)
                .unwrap(),
            "btcusdt@depth"
        );
        let option = "BTC-260626-120000-C";
        assert_eq!(
            Exchange::BinanceComVanillaOptions
                .stream_name(option, None)
                .unwrap(),
            "btc-260626-120000-c@depth@500ms"
        );
        assert_eq!(
            Exchange::BinanceComVanillaOptions
                .stream_name(option, Some(100))
                .unwrap(),
            "btc-260626-120000-c@depth@100ms"
        );
        assert!(matches!(
            Exchange::BinanceCom.stream_name("BTCUSDT", Some(250)),
            Err(ExchangeError::UnsupportedInterval {
                interval_ms: 250,
                ..
            })
        ));
    }

    #[test]
    fn coin_m_has_its_own_hosts_and_usd_m_numbers() {
        let spec = Exchange::BinanceComCoinFutures.spec();
        assert_eq!(spec.family, SyncFamily::Futures);
        assert_eq!(
            (spec.rest_base, spec.snapshot_path),
            ("https://dapi.binance.com", "/dapi/v1/depth")
        );
        assert_eq!(
            (spec.ws_base, spec.combined_stream_path),
            ("wss://dstream.binance.com", "/stream")
        );
        assert_eq!(
            (
                spec.streams_per_connection,
                spec.messages_per_second,
                spec.weight_per_minute
            ),
            (200, 10, 2400)
        );
        assert!(!spec.requires_api_key);
        let testnet = Exchange::BinanceComCoinFuturesTestnet.spec();
        assert_eq!(
            (testnet.rest_base, testnet.snapshot_path),
            ("https://testnet.binancefuture.com", "/dapi/v1/depth")
        );
        assert_eq!(testnet.ws_base, "wss://dstream.binancefuture.com");
        assert_eq!(testnet.family, SyncFamily::Futures);
    }

    #[test]
    fn coin_m_snapshot_weights_follow_the_dapi_depth_bands() {
        // `limit` 5, 10, 20, 50: 2; 100: 5; 500: 10; 1000: 20.
        for exchange in [
            Exchange::BinanceComCoinFutures,
            Exchange::BinanceComCoinFuturesTestnet,
        ] {
            let weights: Vec<u32> = [5, 10, 20, 50, 100, 500, 1000]
                .map(|limit| exchange.spec().snapshot_weight(limit))
                .to_vec();
            assert_eq!(weights, [2, 2, 2, 2, 5, 10, 20], "{exchange}");
        }
    }

    #[test]
    fn coin_m_stream_names_cover_perpetual_and_delivery_symbols() {
        let coin_m = Exchange::BinanceComCoinFutures;
        assert_eq!(
            coin_m.stream_name("BTCUSD_PERP", None).unwrap(),
            "btcusd_perp@depth"
        );
        assert_eq!(
            coin_m.stream_name("BTCUSD_251226", Some(500)).unwrap(),
            "btcusd_251226@depth@500ms"
        );
        assert_eq!(
            Exchange::BinanceComCoinFuturesTestnet
                .stream_name("ETHUSD_PERP", Some(100))
                .unwrap(),
            "ethusd_perp@depth@100ms"
        );
        assert!(matches!(
            coin_m.stream_name("BTCUSD_PERP", Some(1000)),
            Err(ExchangeError::UnsupportedInterval {
                interval_ms: 1000,
                ..
            })
        ));
        assert!(is_valid_symbol("BTCUSD_PERP") && is_valid_symbol("BTCUSD_251226"));
    }

    #[test]
    fn every_exchange_has_a_complete_spec() {
        for exchange in EXCHANGES {
            let spec = exchange.spec();
            assert!(spec.rest_base.starts_with("https://"), "{exchange}");
            assert!(spec.ws_base.starts_with("wss://"), "{exchange}");
            assert!(spec.snapshot_path.ends_with("/depth"), "{exchange}");
            assert!(spec.combined_stream_path.ends_with("/stream"), "{exchange}");
            assert!(spec.snapshot_weight(1000) > 0, "{exchange}");
            assert!(
                spec.intervals_ms.contains(&spec.default_interval_ms),
                "{exchange}"
            );
            assert!(exchange.stream_name("BTCUSDT", None).is_ok(), "{exchange}");
        }
    }

    #[test]
    fn endpoint_overrides_point_rest_and_websocket_at_one_url() {
        let overrides = EndpointOverrides::parse([
            "binance.com=http://127.0.0.1:8900/",
            "binance.com-futures=https://sim.local",
        ])
        .unwrap();
        let spot = overrides.endpoints(Exchange::BinanceCom);
        assert_eq!(
            (spot.rest_base.as_str(), spot.ws_base.as_str()),
            ("http://127.0.0.1:8900", "ws://127.0.0.1:8900")
        );
        assert_eq!(
            overrides.endpoints(Exchange::BinanceComFutures).ws_base,
            "wss://sim.local"
        );
        assert_eq!(
            overrides.endpoints(Exchange::BinanceUs).rest_base,
            "https://api.binance.us"
        );
        assert!(matches!(
            EndpointOverrides::parse(["binance.com"]),
            Err(ExchangeError::InvalidEndpoint(_))
        ));
        assert!(matches!(
            EndpointOverrides::parse(["binance.com=ftp://x"]),
            Err(ExchangeError::InvalidEndpoint(_))
        ));
        assert!(matches!(
            EndpointOverrides::parse(["nope=http://x"]),
            Err(ExchangeError::Unknown(_))
        ));
        assert_eq!(
            EndpointOverrides::parse("binance.com=http://a:1, binance.us=http://b:2".split(','))
                .unwrap()
                .0
                .len(),
            2
        );
    }
}
