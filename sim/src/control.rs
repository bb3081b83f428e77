//! Fault injection: `POST /sim/control` with one JSON object per fault, named by `"fault"`.
//! Every fault and its fields are listed in the crate documentation. Market faults apply to the
//! events generated after the request returns; the reply says, per market, the update id they
//! follow (`after_update_id`: the first affected event has `U = after_update_id + 1`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::clock::now_ms;
use crate::error::SimRequestError;
use crate::family::Family;
use crate::faults::{MarketFaults, SubscribeRefusals};
use crate::glitch::{DEFAULT_RESET_BEHIND, Glitch, GlitchSide};
use crate::markets::Market;
use crate::server::{SimState, lock};
use crate::sim_api::find_market;
use crate::weight::RejectStatus;
use crate::ws::{ConnectionCommand, ConnectionFilter};

/// How many updates behind a stale snapshot is when the fault does not say.
const DEFAULT_STALE_BEHIND: usize = 50;

/// How long a connection stays open after `serverShutdown` when the fault does not say. Binance
/// documents no figure ("the server is about to shut down ... establish a new connection as soon
/// as possible"); ten seconds is short enough to catch a client that waits for the close, and
/// long enough for one that reconnects at once to hand over without a gap.
const DEFAULT_SHUTDOWN_CLOSE_AFTER_MS: u64 = 10_000;

fn one() -> u32 {
    1
}

fn default_stale_behind() -> usize {
    DEFAULT_STALE_BEHIND
}

fn default_shutdown_close_after_ms() -> u64 {
    DEFAULT_SHUTDOWN_CLOSE_AFTER_MS
}

/// The level a `silent_change` alters when the fault does not say: inside every snapshot window
/// and the top N a replica hashes, but not the best (which the next events often touch anyway).
fn default_silent_level() -> usize {
    5
}

fn default_bid() -> GlitchSide {
    GlitchSide::Bid
}

fn default_ask() -> GlitchSide {
    GlitchSide::Ask
}

fn default_vanish_count() -> usize {
    3
}

fn default_reset_behind() -> u64 {
    DEFAULT_RESET_BEHIND
}

/// A fault, as posted to `/sim/control`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Fault {
    /// Drop the next `count` events of a market.
    Drop {
        family: Family,
        symbol: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Deliver each of the next `count` events of a market twice in a row.
    Duplicate {
        family: Family,
        symbol: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Swap the next `count` pairs of events of a market.
    Reorder {
        family: Family,
        symbol: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Send `count` malformed frames to a market's subscribers before its next event.
    Malformed {
        family: Family,
        symbol: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Serve the next `count` snapshots of a market `behind_events` updates old.
    StaleSnapshot {
        family: Family,
        symbol: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default = "default_stale_behind")]
        behind_events: usize,
    },
    /// Delist a market until `clear`: depth answers -1121, its stream carries nothing.
    Delist { family: Family, symbol: String },
    /// Deliver no events of the selected markets for `duration_ms`; connections stay open.
    Silence {
        family: Option<Family>,
        symbol: Option<String>,
        duration_ms: u64,
    },
    /// Deliver the events of the selected markets generated in the next `duration_ms` each
    /// `lag_ms` late (in order, none lost, each with its own `E`): a slow path to the client.
    Lag {
        family: Option<Family>,
        symbol: Option<String>,
        lag_ms: u64,
        duration_ms: u64,
    },
    /// Cut the selected stream connections without a close frame.
    Disconnect {
        family: Option<Family>,
        symbol: Option<String>,
    },
    /// Send `serverShutdown` to the selected connections, keep serving them for
    /// `close_after_ms`, then close them.
    ServerShutdown {
        family: Option<Family>,
        symbol: Option<String>,
        #[serde(default = "default_shutdown_close_after_ms")]
        close_after_ms: u64,
    },
    /// Refuse `SUBSCRIBE` requests naming a stream of `symbol` (listed or not), or without a
    /// symbol, of any symbol the exchange does not list (which Binance accepts silently).
    RefuseSubscribe { symbol: Option<String> },
    /// Answer every REST request of the family (all families if absent) with `status`
    /// (429 or 418) for `duration_ms`; `retry_after_secs` sends that `Retry-After` instead of
    /// the true one (a misbehaving server, e.g. `18446744073709551615`).
    RestStatus {
        family: Option<Family>,
        status: u16,
        duration_ms: u64,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Change one level's quantity without an event (`crate::glitch`).
    SilentChange {
        family: Family,
        symbol: String,
        #[serde(default = "default_bid")]
        side: GlitchSide,
        #[serde(default = "default_silent_level")]
        level: usize,
    },
    /// Remove the best `count` levels of a side without an event (`crate::glitch`).
    VanishLevels {
        family: Family,
        symbol: String,
        #[serde(default = "default_ask")]
        side: GlitchSide,
        #[serde(default = "default_vanish_count")]
        count: usize,
    },
    /// Restart the update ids `behind` lower (`crate::glitch`).
    ResetIds {
        family: Family,
        symbol: String,
        #[serde(default = "default_reset_behind")]
        behind: u64,
    },
    /// Disarm every market fault, forced status, subscription refusal, back-off and ban.
    Clear,
}

/// One market a fault was armed on.
#[derive(Debug, Serialize)]
struct ArmedMarket {
    family: Family,
    symbol: String,
    /// The fault applies to events after this update id.
    after_update_id: u64,
}

/// The reply to `/sim/control`.
#[derive(Debug, Serialize)]
struct FaultReply {
    /// The fault's name, as posted.
    fault: &'static str,
    /// The markets a market fault was armed on (empty for connection and REST faults).
    markets: Vec<ArmedMarket>,
}

/// The `/sim/control` route.
pub(crate) fn routes() -> Router<SimState> {
    Router::new().route("/sim/control", post(fault_create))
}

/// `POST /sim/control`.
async fn fault_create(
    State(state): State<SimState>,
    fault: Result<Json<Fault>, JsonRejection>,
) -> Result<Json<FaultReply>, SimRequestError> {
    let Json(fault) = fault?;
    let reply = inject(&state, &fault)?;
    state
        .shared()
        .faults_injected
        .fetch_add(1, Ordering::Relaxed);
    info!(?fault, "fault injected");
    Ok(Json(reply))
}

fn inject(state: &SimState, fault: &Fault) -> Result<FaultReply, SimRequestError> {
    let (name, markets) = match fault {
        Fault::Drop {
            family,
            symbol,
            count,
        } => (
            "drop",
            arm_one(state, *family, symbol, |f| f.drop_next(*count))?,
        ),
        Fault::Duplicate {
            family,
            symbol,
            count,
        } => (
            "duplicate",
            arm_one(state, *family, symbol, |f| f.duplicate_next(*count))?,
        ),
        Fault::Reorder {
            family,
            symbol,
            count,
        } => (
            "reorder",
            arm_one(state, *family, symbol, |f| f.reorder_next(*count))?,
        ),
        Fault::Malformed {
            family,
            symbol,
            count,
        } => (
            "malformed",
            arm_one(state, *family, symbol, |f| f.malformed_next(*count))?,
        ),
        Fault::StaleSnapshot {
            family,
            symbol,
            count,
            behind_events,
        } => (
            "stale_snapshot",
            arm_one(state, *family, symbol, |f| {
                f.stale_snapshots(*count, *behind_events);
            })?,
        ),
        Fault::Delist { family, symbol } => (
            "delist",
            arm_one(state, *family, symbol, MarketFaults::delist)?,
        ),
        Fault::Silence {
            family,
            symbol,
            duration_ms,
        } => {
            let until = Instant::now() + Duration::from_millis(*duration_ms);
            let selected = select_markets(state, *family, symbol.as_deref())?;
            ("silence", arm(&selected, |f| f.silence_until(until)))
        }
        Fault::Lag {
            family,
            symbol,
            lag_ms,
            duration_ms,
        } => {
            let lag = Duration::from_millis(*lag_ms);
            let until = Instant::now() + Duration::from_millis(*duration_ms);
            let selected = select_markets(state, *family, symbol.as_deref())?;
            ("lag", arm(&selected, |f| f.lag_for(lag, until)))
        }
        Fault::Disconnect { family, symbol } => {
            let filter = connection_filter(state, *family, symbol.as_deref())?;
            notify(state, ConnectionCommand::Disconnect(filter));
            ("disconnect", Vec::new())
        }
        Fault::ServerShutdown {
            family,
            symbol,
            close_after_ms,
        } => {
            let filter = connection_filter(state, *family, symbol.as_deref())?;
            let close_after = Duration::from_millis(*close_after_ms);
            notify(
                state,
                ConnectionCommand::ServerShutdown(filter, close_after),
            );
            ("server_shutdown", Vec::new())
        }
        Fault::RefuseSubscribe { symbol } => {
            lock(&state.shared().refusals).refuse(symbol.as_deref());
            ("refuse_subscribe", Vec::new())
        }
        Fault::RestStatus {
            family,
            status,
            duration_ms,
            retry_after_secs,
        } => {
            let status = match status {
                429 => RejectStatus::TooManyRequests,
                418 => RejectStatus::Banned,
                other => {
                    return Err(SimRequestError::Invalid(format!(
                        "rest_status must be 429 or 418, got {other}"
                    )));
                }
            };
            let until_ms = now_ms().saturating_add(*duration_ms);
            for family in family.map_or(Family::ALL.to_vec(), |f| vec![f]) {
                state
                    .ledger(family)
                    .force(status, until_ms, *retry_after_secs);
            }
            ("rest_status", Vec::new())
        }
        Fault::SilentChange {
            family,
            symbol,
            side,
            level,
        } => {
            let glitch = Glitch::SilentChange {
                side: *side,
                level: *level,
            };
            ("silent_change", glitch_one(state, *family, symbol, glitch)?)
        }
        Fault::VanishLevels {
            family,
            symbol,
            side,
            count,
        } => {
            let glitch = Glitch::Vanish {
                side: *side,
                count: *count,
            };
            ("vanish_levels", glitch_one(state, *family, symbol, glitch)?)
        }
        Fault::ResetIds {
            family,
            symbol,
            behind,
        } => {
            let glitch = Glitch::ResetIds { behind: *behind };
            ("reset_ids", glitch_one(state, *family, symbol, glitch)?)
        }
        Fault::Clear => {
            let all = select_markets(state, None, None)?;
            arm(&all, MarketFaults::clear);
            for family in Family::ALL {
                state.ledger(family).clear();
            }
            *lock(&state.shared().refusals) = SubscribeRefusals::default();
            ("clear", Vec::new())
        }
    };
    Ok(FaultReply {
        fault: name,
        markets,
    })
}

fn arm_one(
    state: &SimState,
    family: Family,
    symbol: &str,
    apply: impl Fn(&mut MarketFaults),
) -> Result<Vec<ArmedMarket>, SimRequestError> {
    let market = find_market(state, family, symbol)?;
    Ok(arm(&[market], apply))
}

/// Applies `glitch` to one market; the reply's `after_update_id` is the id its next event follows.
fn glitch_one(
    state: &SimState,
    family: Family,
    symbol: &str,
    glitch: Glitch,
) -> Result<Vec<ArmedMarket>, SimRequestError> {
    let market = find_market(state, family, symbol)?;
    let (effect, after_update_id) = market.glitch(glitch)?;
    info!(symbol, ?effect, "glitch applied");
    Ok(vec![ArmedMarket {
        family: market.spec.family,
        symbol: market.spec.symbol.clone(),
        after_update_id,
    }])
}

fn arm(markets: &[&Market], apply: impl Fn(&mut MarketFaults)) -> Vec<ArmedMarket> {
    markets
        .iter()
        .map(|market| {
            let ((), after_update_id) = market.arm(&apply);
            ArmedMarket {
                family: market.spec.family,
                symbol: market.spec.symbol.clone(),
                after_update_id,
            }
        })
        .collect()
}

/// The markets a fault selects: one symbol of one family; a symbol in every family that has it
/// (spot and futures share names); every market of a family; or every market.
fn select_markets<'a>(
    state: &'a SimState,
    family: Option<Family>,
    symbol: Option<&str>,
) -> Result<Vec<&'a Market>, SimRequestError> {
    let exchange = &state.shared().exchange;
    let families = family.map_or(Family::ALL.to_vec(), |f| vec![f]);
    let Some(symbol) = symbol else {
        return Ok(families
            .into_iter()
            .flat_map(|family| exchange.markets(family))
            .collect());
    };
    let found: Vec<&Market> = families
        .iter()
        .filter_map(|&family| exchange.find(family, symbol))
        .collect();
    match (found.is_empty(), family) {
        (false, _) => Ok(found),
        (true, Some(family)) => Err(SimRequestError::UnknownSymbol {
            family,
            symbol: symbol.to_owned(),
        }),
        (true, None) => Err(SimRequestError::UnknownSymbolAnywhere {
            symbol: symbol.to_owned(),
        }),
    }
}

/// Connections of the family's venue, or those holding a stream of the symbol.
fn connection_filter(
    state: &SimState,
    family: Option<Family>,
    symbol: Option<&str>,
) -> Result<ConnectionFilter, SimRequestError> {
    let markets = match symbol {
        None => None,
        Some(symbol) => Some(
            select_markets(state, family, Some(symbol))?
                .into_iter()
                .map(|market| (market.spec.family, market.spec.index))
                .collect(),
        ),
    };
    Ok(ConnectionFilter {
        venue: family.map(Family::venue),
        markets,
    })
}

fn notify(state: &SimState, command: ConnectionCommand) {
    // An error only means that no connection is open: there is nobody to cut.
    state.shared().commands.send(command).ok();
}
