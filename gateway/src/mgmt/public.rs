//! mgmt's public endpoints (`docs/upstream-api.md` §5): create and stop DepthCaches, the
//! cluster and DepthCache views, and credentials. restapi forwards these calls here.
//!
//! Beyond the original: unknown exchanges (#1104), impossible symbols and update intervals
//! (#1107) and bad numbers (#1100) are refused at create time, before anything is placed; a
//! missing `exchange` is a missing parameter, not `'None'`; no answer holds a secret.

use serde_json::{Map, Value};
use std::collections::HashSet;

use ubdcc_engine::{Exchange, MarketStatus, is_valid_symbol};

use super::state::{ClusterState, CredentialRecord, DepthCacheRecord};
use super::{Caller, Gate, Mgmt, Route, now};
use crate::envelope::{ApiError, ErrorId, clip, not_found_error};
use crate::identity::VERSION;
use crate::params::Params;

/// Valid account groups, in the order the #1031 message lists them.
pub const ACCOUNT_GROUPS: [&str; 5] = [
    "binance.com",
    "binance.com-futures-testnet",
    "binance.com-testnet",
    "binance.tr",
    "binance.us",
];

/// The public routes: path, event, logic (all wait for recovery to end).
pub const ROUTES: &[Route] = &[
    (
        "/create_depthcache",
        "CREATE_DEPTHCACHE",
        Gate::Gated,
        create_depthcache,
    ),
    (
        "/create_depthcaches",
        "CREATE_DEPTHCACHES",
        Gate::Gated,
        create_depthcaches,
    ),
    (
        "/get_cluster_info",
        "GET_CLUSTER_INFO",
        Gate::Gated,
        get_cluster_info,
    ),
    (
        "/get_depthcache_list",
        "GET_DEPTHCACHE_LIST",
        Gate::Gated,
        get_depthcache_list,
    ),
    (
        "/get_depthcache_info",
        "GET_DEPTHCACHE_INFO",
        Gate::Gated,
        get_depthcache_info,
    ),
    (
        "/stop_depthcache",
        "STOP_DEPTHCACHE",
        Gate::Gated,
        stop_depthcache,
    ),
    (
        "/add_credentials",
        "ADD_CREDENTIALS",
        Gate::Gated,
        add_credentials,
    ),
    (
        "/remove_credentials",
        "REMOVE_CREDENTIALS",
        Gate::Gated,
        remove_credentials,
    ),
    (
        "/get_credentials_list",
        "GET_CREDENTIALS_LIST",
        Gate::Gated,
        get_credentials_list,
    ),
    // The names the seeds' README documents for the same three endpoints.
    (
        "/ubdcc_add_credentials",
        "ADD_CREDENTIALS",
        Gate::Gated,
        add_credentials,
    ),
    (
        "/ubdcc_remove_credentials",
        "REMOVE_CREDENTIALS",
        Gate::Gated,
        remove_credentials,
    ),
    (
        "/ubdcc_get_credentials_list",
        "GET_CREDENTIALS_LIST",
        Gate::Gated,
        get_credentials_list,
    ),
];

/// The settings every create shares, validated.
struct CreateSettings {
    exchange: Exchange,
    desired_quantity: u32,
    update_interval: Option<u32>,
    refresh_interval: Option<u64>,
    /// Record the books (issue 17): by the DCNs started with `--record-books` (or `--record`).
    record: bool,
}

impl CreateSettings {
    fn parse(mgmt: &Mgmt, params: &Params, exchange: &str) -> Result<Self, ApiError> {
        let exchange: Exchange = exchange.parse().map_err(|_| {
            let valid: Vec<&str> = ubdcc_engine::EXCHANGES
                .iter()
                .map(Exchange::as_str)
                .collect();
            params.invalid(
                ErrorId::UNKNOWN_EXCHANGE,
                format!(
                    "Unknown exchange '{exchange}'! Valid exchanges: {}",
                    valid.join(", ")
                ),
            )
        })?;
        let desired_quantity = params.unsigned::<u32>("desired_quantity")?.unwrap_or(1);
        let most = mgmt.config.max_desired_quantity;
        if desired_quantity > most {
            return Err(params.invalid(
                ErrorId::INVALID_INTEGER,
                format!("Invalid parameter: desired_quantity must be at most {most}, got {desired_quantity}"),
            ));
        }
        let refresh_interval = params.unsigned::<u64>("refresh_interval")?;
        if let Some(seconds) = refresh_interval.filter(|&s| s < MIN_REFRESH_INTERVAL) {
            return Err(params.invalid(
                ErrorId::REFRESH_TOO_SHORT,
                format!(
                    "Invalid parameter: refresh_interval must be at least {MIN_REFRESH_INTERVAL} seconds, got {seconds}"
                ),
            ));
        }
        Ok(Self {
            exchange,
            desired_quantity,
            update_interval: params.unsigned::<u32>("update_interval")?,
            refresh_interval,
            record: params.boolean("record")?.unwrap_or(false),
        })
    }

    /// Checks that `market` can be kept at these settings.
    fn check_market(&self, params: &Params, market: &str) -> Result<(), ApiError> {
        if !is_valid_symbol(market) {
            return Err(params.invalid(
                ErrorId::INVALID_MARKET,
                format!(
                    "Invalid market {:?}: 1 to 48 of A-Z a-z 0-9 - _",
                    clip(market)
                ),
            ));
        }
        self.exchange
            .stream_name(market, self.update_interval)
            .map(drop)
            .map_err(|error| params.invalid(ErrorId::INVALID_MARKET, error.to_string()))
    }

    fn record(&self, market: &str) -> DepthCacheRecord {
        let mut record =
            DepthCacheRecord::new(self.exchange.as_str(), market, self.desired_quantity, now());
        record.update_interval = self.update_interval;
        record.refresh_interval = self.refresh_interval;
        record.record = self.record;
        record
    }
}

/// Shortest `refresh_interval`, in seconds: every refresh spends a REST snapshot (weight up to
/// 50 of a spot IP's 6 000 a minute), so 1 000 books refreshing every minute would already
/// exceed the limit eight times over; shorter ones would starve the books that lost sync.
pub const MIN_REFRESH_INTERVAL: u64 = 60;

/// Refuses a create (called after its books were inserted) when the DCNs have no room for one
/// replica of every book that has none yet (#1112).
fn check_room(state: &ClusterState, params: &Params) -> Result<(), ApiError> {
    let waiting = state
        .depthcaches()
        .filter(|record| record.desired_quantity > 0 && record.distribution.is_empty())
        .count() as u64;
    match state.free_slots() {
        Some(free) if free < waiting => Err(params.invalid(
            ErrorId::CLUSTER_FULL,
            format!(
                "Cluster full: the DCNs have room for {free} more DepthCache(s), {waiting} would \
                 wait for one; add a DCN (or start DCNs with a larger --max-books) or stop \
                 DepthCaches"
            ),
        )),
        _ => Ok(()),
    }
}

/// `true` for the events that create books (their exchange's listing is fetched first).
pub(super) fn is_create(event: &str) -> bool {
    matches!(event, "CREATE_DEPTHCACHE" | "CREATE_DEPTHCACHES")
}

/// Refuses markets the exchange's listing does not have, or has but does not trade (#1114),
/// naming all of them; with no listing at hand (exchange unreachable, or not checked) every
/// market passes.
fn check_listed(
    mgmt: &Mgmt,
    params: &Params,
    exchange: Exchange,
    markets: &[&str],
) -> Result<(), ApiError> {
    let Some(listing) = mgmt.listing(exchange) else {
        return Ok(());
    };
    let (mut unknown, mut halted) = (Vec::new(), Vec::new());
    for market in markets {
        match listing.status(market) {
            MarketStatus::Trading => {}
            MarketStatus::Unknown => unknown.push(clip(market).into_owned()),
            MarketStatus::NotTrading(status) => {
                halted.push(format!("{} ({})", clip(market), clip(&status)));
            }
        }
    }
    let mut problems = Vec::new();
    if !unknown.is_empty() {
        problems.push(format!("not listed: {}", summary(&unknown)));
    }
    if !halted.is_empty() {
        problems.push(format!("not trading: {}", summary(&halted)));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(params.invalid(
        ErrorId::UNKNOWN_MARKETS,
        format!(
            "Unknown market(s) on '{}' (its exchangeInfo) — {}",
            exchange.as_str(),
            problems.join("; ")
        ),
    ))
}

/// The first few of `items`, and how many more.
fn summary(items: &[String]) -> String {
    const SHOWN: usize = 20;
    let shown = items[..items.len().min(SHOWN)].join(", ");
    match items.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Most markets one create_depthcaches may name.
const MAX_MARKETS_PER_REQUEST: usize = 10_000;

/// Refuses a market that differs from an existing one only in case: streams are named in lower
/// case, so the two would share one stream and one of them could never start.
fn check_stream_free(
    state: &ClusterState,
    params: &Params,
    exchange: &str,
    market: &str,
) -> Result<(), ApiError> {
    let taken = state.depthcaches.get(exchange).and_then(|markets| {
        markets
            .keys()
            .find(|other| other.eq_ignore_ascii_case(market))
    });
    match taken {
        Some(other) => Err(params.invalid(
            ErrorId::INVALID_MARKET,
            format!("DepthCache '{market}' for '{exchange}' would share its stream with '{other}'"),
        )),
        None => Ok(()),
    }
}

fn insert(state: &mut ClusterState, record: DepthCacheRecord) {
    state
        .depthcaches
        .entry(record.exchange.clone())
        .or_default()
        .insert(record.market.clone(), record);
}

fn create_depthcache(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [exchange, market] = params.required(ErrorId::CREATE_MISSING, ["exchange", "market"])?;
    let settings = CreateSettings::parse(mgmt, params, exchange)?;
    settings.check_market(params, market)?;
    check_listed(mgmt, params, settings.exchange, &[market])?;
    mgmt.mutate(params.event(), true, |state| {
        if state.depthcache(exchange, market).is_some() {
            return Err(params.invalid(
                ErrorId::EXISTS,
                format!("DepthCache '{market}' for '{exchange}' already exists!"),
            ));
        }
        check_stream_free(state, params, exchange, market)?;
        insert(state, settings.record(market));
        check_room(state, params)?;
        Ok(Map::new())
    })
}

fn create_depthcaches(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let (Some(exchange), Some(markets)) = (params.text("exchange")?, params.list("markets")?)
    else {
        return Err(params.invalid(
            ErrorId::CREATE_MISSING,
            "Missing required parameter: exchange, markets",
        ));
    };
    if markets.len() > MAX_MARKETS_PER_REQUEST {
        return Err(params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!(
                "Invalid parameter: at most {MAX_MARKETS_PER_REQUEST} markets per request, got {}",
                markets.len()
            ),
        ));
    }
    let settings = CreateSettings::parse(mgmt, params, exchange)?;
    // All or nothing: one impossible market refuses the request before anything is placed.
    for market in &markets {
        settings.check_market(params, market)?;
    }
    let names: Vec<&str> = markets.iter().map(String::as_str).collect();
    check_listed(mgmt, params, settings.exchange, &names)?;
    mgmt.mutate(params.event(), true, |state| {
        // Existing markets are skipped, as in the original; the answer says which.
        let (mut created, mut existing) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        for market in markets {
            if state.depthcache(exchange, &market).is_some()
                || !seen.insert(market.to_ascii_lowercase())
            {
                existing.push(Value::from(market));
                continue;
            }
            check_stream_free(state, params, exchange, &market)?;
            insert(state, settings.record(&market));
            created.push(market);
        }
        // `mutate` drops `state` on an error: all or nothing.
        check_room(state, params)?;
        let mut payload = Map::new();
        payload.insert("created".into(), created.into());
        payload.insert("existing".into(), existing.into());
        Ok(payload)
    })
}

fn get_cluster_info(mgmt: &Mgmt, _: &Params, _: Caller) -> Result<Map<String, Value>, ApiError> {
    let mut payload = Map::new();
    payload.insert("db".into(), mgmt.state().public_view());
    payload.insert("version".into(), VERSION.into());
    Ok(payload)
}

fn get_depthcache_list(mgmt: &Mgmt, _: &Params, _: Caller) -> Result<Map<String, Value>, ApiError> {
    let state = mgmt.state();
    let mut payload = Map::new();
    payload.insert(
        "depthcache_list".into(),
        serde_json::to_value(&state.depthcaches).unwrap_or_default(),
    );
    Ok(payload)
}

fn get_depthcache_info(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [exchange, market] = params.required(ErrorId::INFO_MISSING, ["exchange", "market"])?;
    let state = mgmt.state();
    let record = state
        .depthcache(exchange, market)
        .ok_or_else(|| not_found_error(params.event(), exchange, market))?;
    let mut payload = Map::new();
    payload.insert("depthcache_info".into(), state.depthcache_info(record));
    Ok(payload)
}

fn stop_depthcache(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [exchange, market] = params.required(ErrorId::STOP_MISSING, ["exchange", "market"])?;
    mgmt.mutate(params.event(), true, |state| {
        if !state.remove_depthcache(exchange, market) {
            return Err(not_found_error(params.event(), exchange, market));
        }
        Ok(Map::new())
    })
}

fn add_credentials(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [group, api_key, api_secret] = params.required(
        ErrorId::CREDENTIALS_MISSING,
        ["account_group", "api_key", "api_secret"],
    )?;
    if !ACCOUNT_GROUPS.contains(&group) {
        return Err(params.invalid(
            ErrorId::INVALID_ACCOUNT_GROUP,
            format!(
                "Invalid account_group '{}'. Valid groups: {}",
                clip(group),
                ACCOUNT_GROUPS.join(", ")
            ),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let credential = CredentialRecord {
        id: id.clone(),
        account_group: group.to_owned(),
        api_key: api_key.to_owned(),
        api_secret: api_secret.to_owned(),
        added_timestamp: now(),
        assigned_dcns: Vec::new(),
    };
    mgmt.mutate(params.event(), true, |state| {
        state.credentials.insert(id.clone(), credential);
        Ok(())
    })?;
    let mut payload = Map::new();
    payload.insert("id".into(), id.into());
    Ok(payload)
}

fn remove_credentials(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [id] = params.required(ErrorId::CREDENTIALS_ID_MISSING, ["id"])?;
    mgmt.mutate(params.event(), true, |state| {
        if state.credentials.shift_remove(id).is_none() {
            return Err(params.invalid(
                ErrorId::CREDENTIALS_UNKNOWN,
                format!("Credentials '{}' not found!", clip(id)),
            ));
        }
        Ok(Map::new())
    })
}

fn get_credentials_list(
    mgmt: &Mgmt,
    _: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let state = mgmt.state();
    let masked: Vec<_> = state
        .credentials
        .values()
        .map(CredentialRecord::masked)
        .collect();
    let mut payload = Map::new();
    payload.insert(
        "credentials".into(),
        serde_json::to_value(masked).unwrap_or_default(),
    );
    Ok(payload)
}
