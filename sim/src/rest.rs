//! Binance's REST endpoints per family: `depth`, `ping`, `exchangeInfo`, with request-weight
//! accounting, the used-weight headers on every response, 429/418 with `Retry-After`, and
//! Binance's error bodies (`{"code":-1121,"msg":"Invalid symbol."}`).
//!
//! The rate limit is checked before the parameters, as on Binance, and a request with invalid
//! parameters still costs weight: that of its `limit` if valid, else of the default `limit`.

use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::decimal::format_decimal;
use crate::family::Family;
use crate::market::{MarketSpec, OPTION_EXPIRY_MS};
use crate::server::SimState;
use crate::weight::{ClientIp, RejectStatus, Rejection};
use crate::wire::{SnapshotParts, render_snapshot, to_json};

/// `X-MBX-USED-WEIGHT-1M`: the used weight of the current one-minute window.
const USED_WEIGHT_1M: HeaderName = HeaderName::from_static("x-mbx-used-weight-1m");

/// `X-MBX-USED-WEIGHT`: the same number under the bare name UBRA reads (`docs/binance-protocol.md` §5).
const USED_WEIGHT: HeaderName = HeaderName::from_static("x-mbx-used-weight");

/// The weight of `ping` on every family.
const PING_WEIGHT: u32 = 1;

/// The `deliveryDate` Binance gives COIN-M perpetuals: 2100-12-25 08:00 UTC.
const PERPETUAL_DELIVERY_MS: u64 = 4_133_404_800_000;

/// The spot `limit` ceiling; larger values are truncated to it, as the spot docs say.
const SPOT_MAX_DEPTH_LIMIT: u32 = 5000;

/// A Binance error response: HTTP status and `{"code":..,"msg":..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinanceError {
    status: StatusCode,
    code: i32,
    msg: String,
}

impl BinanceError {
    fn bad_request(code: i32, msg: impl Into<String>) -> Self {
        BinanceError {
            status: StatusCode::BAD_REQUEST,
            code,
            msg: msg.into(),
        }
    }

    /// -1121 Invalid symbol.
    fn invalid_symbol() -> Self {
        Self::bad_request(-1121, "Invalid symbol.")
    }

    /// -1102 for a missing mandatory parameter.
    fn missing(parameter: &str) -> Self {
        Self::bad_request(
            -1102,
            format!(
                "Mandatory parameter '{parameter}' was not sent, was empty/null, or malformed."
            ),
        )
    }

    /// -1100 for a parameter outside its legal range.
    fn illegal(parameter: &str, legal: &str) -> Self {
        Self::bad_request(
            -1100,
            format!(
                "Illegal characters found in parameter '{parameter}'; legal range is '{legal}'."
            ),
        )
    }

    fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            code: i32,
            msg: &'a str,
        }
        to_json(&Body {
            code: self.code,
            msg: &self.msg,
        })
    }
}

/// The REST routes of every family, at the root and, for a family with a
/// [`Family::host_prefix`] (COIN-M), under that prefix too.
pub(crate) fn routes() -> Router<SimState> {
    let mut router = Router::new();
    let hosts = Family::ALL.map(|family| (family.host_prefix(), family));
    let mounts = Family::ALL.map(|family| ("", family)).into_iter().chain(
        hosts
            .into_iter()
            .filter_map(|(host, family)| Some((host?, family))),
    );
    for (host, family) in mounts {
        let prefix = format!("{host}{}", family.rest_prefix());
        router = router
            .route(
                &format!("{prefix}/depth"),
                get(
                    move |state: State<SimState>, client: ClientIp, query: Query<DepthQuery>| {
                        depth(state, client, query, family)
                    },
                ),
            )
            .route(
                &format!("{prefix}/ping"),
                get(move |state: State<SimState>, client: ClientIp| ping(state, client, family)),
            )
            .route(
                &format!("{prefix}/exchangeInfo"),
                get(
                    move |state: State<SimState>, client: ClientIp, query: Query<SymbolQuery>| {
                        exchange_info(state, client, query, family)
                    },
                ),
            );
    }
    router
}

/// `?symbol=&limit=` of `depth`; `limit` is kept as text to report Binance's error for junk.
#[derive(Debug, Deserialize)]
pub(crate) struct DepthQuery {
    symbol: Option<String>,
    limit: Option<String>,
}

/// `?symbol=` of `exchangeInfo`.
#[derive(Debug, Deserialize)]
pub(crate) struct SymbolQuery {
    symbol: Option<String>,
}

/// `GET <prefix>/depth`: the snapshot in the family's shape.
async fn depth(
    State(state): State<SimState>,
    client: ClientIp,
    Query(query): Query<DepthQuery>,
    family: Family,
) -> Response {
    let limit = depth_limit(family, query.limit.as_deref());
    let weight = family.depth_weight(limit.clone().unwrap_or(family.default_depth_limit()));
    let market = query
        .symbol
        .as_deref()
        .and_then(|symbol| state.shared().exchange.find(family, symbol));
    let response = charge(&state, client, family, weight, || {
        let symbol = query.symbol.as_deref().filter(|s| !s.is_empty());
        if symbol.is_none() {
            return Err(BinanceError::missing("symbol"));
        }
        let limit = limit?;
        // A delisted market is a symbol Binance no longer knows (still counted per symbol).
        let market = market
            .filter(|market| !market.is_delisted())
            .ok_or_else(BinanceError::invalid_symbol)?;
        let lag = state.config().options_snapshot_lag();
        let view = market.snapshot(limit as usize, lag, Instant::now());
        Ok(render_snapshot(
            &market.spec,
            &SnapshotParts {
                last_update_id: view.last_update_id,
                message_time_ms: now_ms(),
                transaction_time_ms: view.transaction_time_ms,
                bids: &view.bids,
                asks: &view.asks,
            },
        ))
    });
    if let Some(market) = market {
        state.ledger(family).count_snapshot(
            client.0,
            &market.spec.symbol,
            response.status() == StatusCode::OK,
        );
    }
    response
}

/// The effective `limit`: the default when absent; spot accepts 1 or more and truncates above
/// 5000; futures and options accept only their listed values.
fn depth_limit(family: Family, raw: Option<&str>) -> Result<u32, BinanceError> {
    let Some(raw) = raw else {
        return Ok(family.default_depth_limit());
    };
    let Ok(limit) = raw.parse::<u64>() else {
        return Err(BinanceError::illegal("limit", "^[0-9]{1,20}$"));
    };
    match family.valid_depth_limits() {
        None if limit == 0 => Err(BinanceError::illegal("limit", "1-5000")),
        None => Ok(limit.min(u64::from(SPOT_MAX_DEPTH_LIMIT)) as u32),
        Some(valid) => valid
            .iter()
            .copied()
            .find(|&v| u64::from(v) == limit)
            .ok_or_else(|| {
                let legal: Vec<String> = valid.iter().map(u32::to_string).collect();
                BinanceError::illegal("limit", &legal.join(", "))
            }),
    }
}

/// `GET <prefix>/ping`: `{}`.
async fn ping(State(state): State<SimState>, client: ClientIp, family: Family) -> Response {
    charge(&state, client, family, PING_WEIGHT, || Ok("{}".to_owned()))
}

/// `GET <prefix>/exchangeInfo`: rate limits and every symbol (or the one asked for) with its
/// `PRICE_FILTER` and `LOT_SIZE`.
async fn exchange_info(
    State(state): State<SimState>,
    client: ClientIp,
    Query(query): Query<SymbolQuery>,
    family: Family,
) -> Response {
    let weight = family.exchange_info_weight();
    charge(&state, client, family, weight, || {
        let markets = state.shared().exchange.markets(family);
        let selected: Vec<&MarketSpec> = match query.symbol.as_deref() {
            None => markets.iter().map(|m| &m.spec).collect(),
            Some(symbol) => {
                let market = state.shared().exchange.find(family, symbol);
                vec![&market.ok_or_else(BinanceError::invalid_symbol)?.spec]
            }
        };
        Ok(exchange_info_body(&state, family, &selected).to_string())
    })
}

fn exchange_info_body(state: &SimState, family: Family, specs: &[&MarketSpec]) -> Value {
    let rate_limits = json!([{
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": state.config().weight_limit(family),
    }]);
    let symbols: Vec<Value> = specs.iter().map(|spec| symbol_info(spec)).collect();
    match family {
        Family::Spot => json!({
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": rate_limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }),
        Family::Futures => json!({
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": rate_limits,
            "exchangeFilters": [],
            "assets": [],
            "symbols": symbols,
        }),
        Family::Options => json!({
            "timezone": "UTC",
            "serverTime": now_ms(),
            "optionContracts": [],
            "optionAssets": [],
            "optionSymbols": symbols,
            "rateLimits": rate_limits,
        }),
        Family::CoinFutures => json!({
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": rate_limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }),
    }
}

fn symbol_info(spec: &MarketSpec) -> Value {
    let filters = json!([
        {
            "filterType": "PRICE_FILTER",
            "minPrice": spec.format_price(spec.tick),
            "maxPrice": format_decimal(1_000_000 * 10u64.pow(spec.price_decimals), spec.price_decimals),
            "tickSize": spec.format_price(spec.tick),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": spec.format_quantity(spec.step),
            "maxQty": format_decimal(9_000_000 * 10u64.pow(spec.quantity_decimals), spec.quantity_decimals),
            "stepSize": spec.format_quantity(spec.step),
        },
    ]);
    match spec.family {
        Family::Spot => json!({
            "symbol": spec.symbol,
            "status": "TRADING",
            "baseAsset": spec.base_asset(),
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "filters": filters,
        }),
        Family::Futures => json!({
            "symbol": spec.symbol,
            "pair": spec.symbol,
            "contractType": "PERPETUAL",
            "status": "TRADING",
            "baseAsset": spec.base_asset(),
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": spec.price_decimals,
            "quantityPrecision": spec.quantity_decimals,
            "filters": filters,
        }),
        Family::Options => json!({
            "symbol": spec.symbol,
            "side": "CALL",
            "strikePrice": spec.strike.to_string(),
            "underlying": format!("{}USDT", spec.base_asset()),
            "unit": 1,
            "expiryDate": OPTION_EXPIRY_MS,
            "priceScale": spec.price_decimals,
            "quantityScale": spec.quantity_decimals,
            "quoteAsset": "USDT",
            "status": "TRADING",
            "filters": filters,
        }),
        // COIN-M says `contractStatus`, not `status`; a contract is worth 100 USD for BTC and
        // 10 USD for every other coin; a perpetual's delivery date is Binance's far-future
        // placeholder.
        Family::CoinFutures => json!({
            "symbol": spec.symbol,
            "pair": spec.pair(),
            "contractType": if spec.is_perpetual() { "PERPETUAL" } else { "CURRENT_QUARTER" },
            "deliveryDate": if spec.is_perpetual() { PERPETUAL_DELIVERY_MS } else { OPTION_EXPIRY_MS },
            "contractStatus": "TRADING",
            "contractSize": if spec.base_asset() == "BTC" { 100 } else { 10 },
            "baseAsset": spec.base_asset(),
            "quoteAsset": "USD",
            "marginAsset": spec.base_asset(),
            "pricePrecision": spec.price_decimals,
            "quantityPrecision": spec.quantity_decimals,
            "filters": filters,
        }),
    }
}

/// Charges `weight` to `client`'s IP at the family's host, then answers with `body`'s JSON or
/// error; every response carries the used-weight headers.
fn charge(
    state: &SimState,
    client: ClientIp,
    family: Family,
    weight: u32,
    body: impl FnOnce() -> Result<String, BinanceError>,
) -> Response {
    let admitted = state.ledger(family).admit(client.0, weight, now_ms());
    let used = match admitted {
        Ok(used) => used,
        Err(rejection) => {
            tracing::warn!(
                family = %family,
                status = ?rejection.status,
                retry_after_secs = rejection.retry_after_secs,
                "REST request refused by the rate limit"
            );
            return rejection_response(&rejection);
        }
    };
    match body() {
        Ok(json) => json_response(StatusCode::OK, json, used),
        Err(error) => {
            tracing::debug!(family = %family, code = error.code, msg = %error.msg, "REST request refused");
            json_response(error.status, error.body(), used)
        }
    }
}

fn rejection_response(rejection: &Rejection) -> Response {
    let (status, msg) = match rejection.status {
        RejectStatus::TooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too much request weight used; current limit is {} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                rejection.limit
            ),
        ),
        RejectStatus::Banned => (
            StatusCode::IM_A_TEAPOT,
            format!(
                "Way too much request weight used; IP banned until {}. Please use WebSocket Streams for live updates to avoid bans.",
                rejection.until_ms
            ),
        ),
    };
    let error = BinanceError {
        status,
        code: -1003,
        msg,
    };
    let mut response = json_response(status, error.body(), rejection.used_weight);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(rejection.retry_after_secs),
    );
    response
}

fn json_response(status: StatusCode, body: String, used_weight: u32) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (USED_WEIGHT_1M, HeaderValue::from(used_weight)),
            (USED_WEIGHT, HeaderValue::from(used_weight)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limits_follow_each_familys_rules() {
        assert_eq!(depth_limit(Family::Spot, None), Ok(100));
        assert_eq!(depth_limit(Family::Futures, None), Ok(500));
        assert_eq!(depth_limit(Family::CoinFutures, None), Ok(500));
        assert_eq!(depth_limit(Family::CoinFutures, Some("1000")), Ok(1000));
        assert_eq!(
            depth_limit(Family::CoinFutures, Some("5000")).map_err(|e| e.code),
            Err(-1100)
        );
        assert_eq!(depth_limit(Family::Spot, Some("7")), Ok(7));
        assert_eq!(depth_limit(Family::Spot, Some("9000")), Ok(5000));
        assert_eq!(depth_limit(Family::Futures, Some("1000")), Ok(1000));
        assert_eq!(
            depth_limit(Family::Futures, Some("7")).map_err(|e| e.code),
            Err(-1100)
        );
        assert_eq!(
            depth_limit(Family::Options, Some("5")).map_err(|e| e.msg),
            Err("Illegal characters found in parameter 'limit'; legal range is '10, 20, 50, 100, 500, 1000'.".to_owned())
        );
        assert_eq!(
            depth_limit(Family::Spot, Some("x")).map_err(|e| e.code),
            Err(-1100)
        );
        assert_eq!(
            depth_limit(Family::Spot, Some("0")).map_err(|e| e.code),
            Err(-1100)
        );
    }
}
