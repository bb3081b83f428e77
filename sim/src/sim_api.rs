//! The simulator's own endpoints besides fault injection: `GET /sim/stats`, `GET /sim/truth`,
//! `GET /sim/truth/latest` and `POST /sim/advance`. Errors are `{"error":"..."}` with 400 (bad
//! parameters) or 404 (unknown symbol, or no book for that update id).

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::book::Side;
use crate::clock::now_ms;
use crate::error::SimRequestError;
use crate::family::{Family, Venue};
use crate::history::PastBook;
use crate::markets::Market;
use crate::server::SimState;
use crate::stats::VenueStatsSnapshot;
use crate::weight::WeightStats;
use crate::wire::TruthBody;

/// The most steps one `POST /sim/advance` may take: well inside a connection's tick buffer, so
/// a burst never closes a reading client as too slow.
const MAX_ADVANCE: u32 = 1000;

impl IntoResponse for SimRequestError {
    fn into_response(self) -> Response {
        let status = match &self {
            SimRequestError::Invalid(_) => StatusCode::BAD_REQUEST,
            SimRequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SimRequestError::UnknownSymbol { .. }
            | SimRequestError::UnknownSymbolAnywhere { .. }
            | SimRequestError::Truth { .. } => StatusCode::NOT_FOUND,
        };
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        let body = Body {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<QueryRejection> for SimRequestError {
    fn from(rejection: QueryRejection) -> Self {
        SimRequestError::Invalid(rejection.body_text())
    }
}

impl From<JsonRejection> for SimRequestError {
    fn from(rejection: JsonRejection) -> Self {
        SimRequestError::Invalid(rejection.body_text())
    }
}

/// The `/sim` routes other than `/sim/control`.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/sim/stats", get(stats_show))
        .route("/sim/truth", get(truth_show))
        .route("/sim/truth/latest", get(truth_latest))
        .route("/sim/advance", post(advance))
}

/// `GET /sim/stats`.
#[derive(Debug, Serialize)]
struct StatsBody {
    /// Steps taken (events per market generated so far).
    steps: u64,
    /// Faults injected through `/sim/control`.
    faults_injected: u64,
    /// Per family: REST weight and request counts.
    rest: BTreeMap<Family, WeightStats>,
    /// Per venue: WebSocket counters.
    websocket: BTreeMap<&'static str, VenueStatsSnapshot>,
}

async fn stats_show(State(state): State<SimState>) -> Json<StatsBody> {
    let now = now_ms();
    let rest = Family::ALL
        .into_iter()
        .map(|family| (family, state.ledger(family).stats(now)))
        .collect();
    let websocket = Venue::ALL
        .into_iter()
        .map(|venue| (venue.as_str(), state.ws_stats(venue).snapshot()))
        .collect();
    Json(StatsBody {
        steps: state.steps(),
        faults_injected: state
            .shared()
            .faults_injected
            .load(std::sync::atomic::Ordering::Relaxed),
        rest,
        websocket,
    })
}

/// `?family=&symbol=&update_id=`.
#[derive(Debug, Deserialize)]
struct TruthQuery {
    family: Family,
    symbol: String,
    update_id: Option<u64>,
}

/// Finds a market or says which symbol is unknown.
pub(crate) fn find_market<'a>(
    state: &'a SimState,
    family: Family,
    symbol: &str,
) -> Result<&'a Market, SimRequestError> {
    state
        .shared()
        .exchange
        .find(family, symbol)
        .ok_or_else(|| SimRequestError::UnknownSymbol {
            family,
            symbol: symbol.to_owned(),
        })
}

/// `GET /sim/truth?family=&symbol=&update_id=`: every level of the book right after
/// `update_id`.
async fn truth_show(
    State(state): State<SimState>,
    query: Result<Query<TruthQuery>, QueryRejection>,
) -> Result<Response, SimRequestError> {
    let Query(query) = query?;
    let market = find_market(&state, query.family, &query.symbol)?;
    let Some(update_id) = query.update_id else {
        return Err(SimRequestError::Invalid(
            "missing update_id (use /sim/truth/latest for the current book)".to_owned(),
        ));
    };
    let past = market
        .truth_at(update_id)
        .map_err(|source| SimRequestError::Truth {
            family: query.family,
            symbol: query.symbol.clone(),
            source,
        })?;
    Ok(truth_response(market, &past))
}

/// `GET /sim/truth/latest?family=&symbol=`: every level of the live book, with its update id.
async fn truth_latest(
    State(state): State<SimState>,
    query: Result<Query<TruthQuery>, QueryRejection>,
) -> Result<Response, SimRequestError> {
    let Query(query) = query?;
    let market = find_market(&state, query.family, &query.symbol)?;
    Ok(truth_response(market, &market.truth_latest()))
}

fn truth_response(market: &Market, past: &PastBook) -> Response {
    let bids = past.book.top(Side::Bid, usize::MAX);
    let asks = past.book.top(Side::Ask, usize::MAX);
    Json(TruthBody::new(&market.spec, past.update_id, &bids, &asks)).into_response()
}

/// `{"events": N}` of `POST /sim/advance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    #[serde(default = "one")]
    events: u32,
    /// With `symbol`: step only this market (the others stay quiet).
    family: Option<Family>,
    symbol: Option<String>,
}

fn one() -> u32 {
    1
}

/// `POST /sim/advance`: steps every market (or only the one named by `family` and `symbol`)
/// `events` times (1..=1000) right now, whatever the rate; returns once the events are on their
/// way to the connections.
async fn advance(
    State(state): State<SimState>,
    request: Result<Json<AdvanceRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, SimRequestError> {
    let Json(request) = request?;
    if !(1..=MAX_ADVANCE).contains(&request.events) {
        return Err(SimRequestError::Invalid(format!(
            "events must be 1 to {MAX_ADVANCE}, got {}",
            request.events
        )));
    }
    let only = match (request.family, request.symbol.as_deref()) {
        (None, None) => None,
        (Some(family), Some(symbol)) => {
            find_market(&state, family, symbol)?;
            let index = state.shared().exchange.index_of(family, symbol);
            index.map(|index| (family, index))
        }
        _ => {
            return Err(SimRequestError::Invalid(
                "family and symbol go together".to_owned(),
            ));
        }
    };
    let stepping = state.clone();
    let events = request.events;
    // Stepping every market is CPU work under std locks; keep it off the async workers.
    let steps = tokio::task::spawn_blocking(move || {
        for _ in 0..events {
            match only {
                Some((family, index)) => stepping.step_market(family, index),
                None => stepping.step(),
            }
        }
        stepping.steps()
    })
    .await
    .map_err(|error| SimRequestError::Internal(format!("stepping the markets: {error}")))?;
    Ok(Json(
        serde_json::json!({ "advanced": events, "steps": steps }),
    ))
}
