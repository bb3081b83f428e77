//! Which markets an exchange lists, from its `exchangeInfo`: so a create with a typo is refused
//! at once instead of a book that shows "snapshot failed" for ever.
//!
//! - A [`Listing`] is one `exchangeInfo` answer: every symbol with its status (`symbols` for spot
//!   and futures, `optionSymbols` for options). A symbol is tradable when its `status` (or
//!   COIN-M's `contractStatus`) is `TRADING`, or when the answer gives none (options).
//! - A [`MarketDirectory`] fetches listings (Binance's endpoint, or the override the DCNs use)
//!   and keeps each for [`LISTING_TTL`]: `exchangeInfo` weighs 20 on spot (1 on futures and
//!   options) and this is at most one call per exchange per 10 minutes, a fraction of a percent
//!   of the 6 000 a minute a spot IP has. A failed fetch is remembered for [`FAILURE_TTL`], so an
//!   unreachable exchange costs one attempt a minute, not one per create.
//! - Exchanges whose public calls need an API key (trbinance.com) have no listing here: their
//!   markets are not checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::exchange::{EndpointOverrides, Exchange};

/// How long a listing is used before it is fetched again.
pub const LISTING_TTL: Duration = Duration::from_secs(600);

/// How long a failed fetch is remembered before the next attempt.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);

/// One fetch gives up after this long (a create waits for it).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a listing says of one market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketStatus {
    /// Listed and trading.
    Trading,
    /// Listed, but not trading now (e.g. `BREAK`, `HALT`, `SETTLING`).
    NotTrading(String),
    /// Not listed.
    Unknown,
}

/// The markets of one exchange, from one `exchangeInfo` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Symbol (upper case) → status (`None`: the answer gives none).
    symbols: HashMap<String, Option<String>>,
}

/// `exchangeInfo` as far as listings need it.
#[derive(Deserialize)]
struct ExchangeInfo {
    #[serde(default)]
    symbols: Vec<SymbolInfo>,
    #[serde(default, rename = "optionSymbols")]
    option_symbols: Vec<SymbolInfo>,
}

#[derive(Deserialize)]
struct SymbolInfo {
    symbol: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "contractStatus")]
    contract_status: Option<String>,
}

impl Listing {
    /// Parses an `exchangeInfo` body.
    ///
    /// # Errors
    /// When it is not an `exchangeInfo` object.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        let info: ExchangeInfo = serde_json::from_slice(body)?;
        let symbols = info
            .symbols
            .into_iter()
            .chain(info.option_symbols)
            .map(|s| {
                (
                    s.symbol.to_ascii_uppercase(),
                    s.status.or(s.contract_status),
                )
            })
            .collect();
        Ok(Self { symbols })
    }

    /// What the listing says of `market`.
    pub fn status(&self, market: &str) -> MarketStatus {
        match self.symbols.get(&market.to_ascii_uppercase()) {
            None => MarketStatus::Unknown,
            Some(None) => MarketStatus::Trading,
            Some(Some(status)) if status.eq_ignore_ascii_case("TRADING") => MarketStatus::Trading,
            Some(Some(status)) => MarketStatus::NotTrading(status.clone()),
        }
    }

    /// Symbols listed.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// `true` when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// A listing could not be had.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The exchange did not answer, or not with an `exchangeInfo`.
    #[error("exchangeInfo of {exchange} from {url}: {message}")]
    Fetch {
        /// The exchange.
        exchange: &'static str,
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// A cached fetch: a listing or the failure, and when it was had.
type Cached = (Instant, Result<Arc<Listing>, DirectoryError>);

/// Listings of every exchange, fetched on demand and cached; see the module doc.
#[derive(Debug)]
pub struct MarketDirectory {
    client: reqwest::Client,
    overrides: EndpointOverrides,
    cache: Mutex<HashMap<Exchange, Cached>>,
}

impl MarketDirectory {
    /// A directory asking Binance, or the `overrides` the DCNs use.
    ///
    /// # Errors
    /// [`DirectoryError::Client`] when the HTTP client cannot be built (TLS setup).
    pub fn new(overrides: EndpointOverrides) -> Result<Self, DirectoryError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| DirectoryError::Client(e.to_string()))?;
        Ok(Self {
            client,
            overrides,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The listing of `exchange`: cached, else fetched now. `Ok(None)` for an exchange that has
    /// no listing here (see the module doc).
    ///
    /// # Errors
    /// [`DirectoryError::Fetch`] when the exchange cannot be asked (remembered for
    /// `FAILURE_TTL`).
    pub async fn listing(
        &self,
        exchange: Exchange,
    ) -> Result<Option<Arc<Listing>>, DirectoryError> {
        let Some(path) = exchange_info_path(exchange) else {
            return Ok(None);
        };
        if let Some(cached) = self.cached(exchange) {
            return cached.map(Some);
        }
        let url = format!("{}{path}", self.overrides.endpoints(exchange).rest_base);
        let fetched = self.fetch(exchange, &url).await;
        match &fetched {
            Ok(listing) => {
                tracing::info!(%exchange, markets = listing.len(), "fetched the exchange's listing")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the exchange's listing; its markets are not checked for a minute")
            }
        }
        self.lock()
            .insert(exchange, (Instant::now(), fetched.clone()));
        fetched.map(Some)
    }

    /// The listing of `exchange` if one was fetched and is still fresh (no I/O).
    pub fn fresh(&self, exchange: Exchange) -> Option<Arc<Listing>> {
        self.cached(exchange)?.ok()
    }

    /// The cached listing (or failure) of `exchange` while it is fresh.
    fn cached(&self, exchange: Exchange) -> Option<Result<Arc<Listing>, DirectoryError>> {
        let cache = self.lock();
        let (at, cached) = cache.get(&exchange)?;
        let ttl = if cached.is_ok() {
            LISTING_TTL
        } else {
            FAILURE_TTL
        };
        (at.elapsed() < ttl).then(|| cached.clone())
    }

    async fn fetch(&self, exchange: Exchange, url: &str) -> Result<Arc<Listing>, DirectoryError> {
        let failed = |message: String| DirectoryError::Fetch {
            exchange: exchange.as_str(),
            url: url.to_owned(),
            message,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let listing =
            Listing::parse(&body).map_err(|e| failed(format!("not an exchangeInfo: {e}")))?;
        Ok(Arc::new(listing))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Exchange, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `exchangeInfo`'s path beside the depth path (`/api/v3/depth` → `/api/v3/exchangeInfo`);
/// `None` where even public calls need an API key (mgmt asks anonymously).
fn exchange_info_path(exchange: Exchange) -> Option<String> {
    if exchange.spec().requires_api_key {
        return None;
    }
    let depth = exchange.spec().snapshot_path;
    let prefix = depth.strip_suffix("/depth")?;
    let binance_api = ["/api/", "/fapi/", "/dapi/", "/eapi/"]
        .iter()
        .any(|api| prefix.starts_with(api));
    binance_api.then(|| format!("{prefix}/exchangeInfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_tells_trading_halted_and_unknown_markets() {
        let spot = br#"{"timezone":"UTC","symbols":[{"symbol":"BTCUSDT","status":"TRADING"},{"symbol":"OLDUSDT","status":"BREAK"}]}"#;
        let listing = Listing::parse(spot).unwrap();
        assert_eq!(listing.status("btcusdt"), MarketStatus::Trading);
        assert_eq!(
            listing.status("OLDUSDT"),
            MarketStatus::NotTrading("BREAK".into())
        );
        assert_eq!(listing.status("BTCUSTD"), MarketStatus::Unknown);
        let coin_m = br#"{"symbols":[{"symbol":"BTCUSD_PERP","contractStatus":"TRADING"}]}"#;
        assert_eq!(
            Listing::parse(coin_m).unwrap().status("BTCUSD_PERP"),
            MarketStatus::Trading
        );
        let options = br#"{"optionSymbols":[{"symbol":"BTC-260626-100000-C","side":"CALL"}]}"#;
        let listing = Listing::parse(options).unwrap();
        assert_eq!(listing.status("BTC-260626-100000-C"), MarketStatus::Trading);
        assert!(Listing::parse(b"[1,2]").is_err());
    }

    #[test]
    fn exchange_info_lives_beside_the_depth_path() {
        assert_eq!(
            exchange_info_path(Exchange::BinanceCom).as_deref(),
            Some("/api/v3/exchangeInfo")
        );
        assert_eq!(
            exchange_info_path(Exchange::BinanceComFutures).as_deref(),
            Some("/fapi/v1/exchangeInfo")
        );
        for coin_m in [
            Exchange::BinanceComCoinFutures,
            Exchange::BinanceComCoinFuturesTestnet,
        ] {
            assert_eq!(
                exchange_info_path(coin_m).as_deref(),
                Some("/dapi/v1/exchangeInfo")
            );
        }
        assert_eq!(exchange_info_path(Exchange::TrBinanceCom), None);
    }

    #[tokio::test]
    async fn an_unreachable_exchange_is_an_error_remembered_for_a_while() {
        let overrides = EndpointOverrides::parse(["binance.com=http://127.0.0.1:9"]).unwrap();
        let directory = MarketDirectory::new(overrides).unwrap();
        let error = directory.listing(Exchange::BinanceCom).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("127.0.0.1:9/api/v3/exchangeInfo"),
            "{error}"
        );
        assert!(
            directory
                .cached(Exchange::BinanceCom)
                .is_some_and(|c| c.is_err())
        );
    }
}
