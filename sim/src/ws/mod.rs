//! The stream endpoints: spot's `/ws/<streams>` and `/stream?streams=`, futures' and options'
//! `/public/ws/<streams>` and `/public/stream?streams=`, COIN-M's `/ws` and `/stream` under
//! `/dstream` (its own host on Binance, see [`Family::host_prefix`]), and the un-routed `/ws`
//! and `/stream` for the venue the configuration gives them.

mod connection;
mod message_rate;
mod request;
mod stream_name;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::family::{Family, Venue};
use crate::server::SimState;
use crate::wire::to_json;

pub(crate) use stream_name::{StreamKey, parse_stream_name};

/// Which connections a fault command reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionFilter {
    /// Only connections of this venue (`None`: any).
    pub(crate) venue: Option<Venue>,
    /// Only connections holding a stream of one of these markets (`None`: any).
    pub(crate) markets: Option<Vec<(Family, usize)>>,
}

impl ConnectionFilter {
    /// Whether a connection of `venue` holding `streams` is reached.
    pub(crate) fn matches(&self, venue: Venue, streams: &[StreamKey]) -> bool {
        self.venue.is_none_or(|wanted| wanted == venue)
            && self.markets.as_ref().is_none_or(|markets| {
                streams
                    .iter()
                    .any(|stream| markets.contains(&(stream.family, stream.market)))
            })
    }
}

/// A command from the control API to stream connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectionCommand {
    /// Drop the connection without a close frame, as a network cut would.
    Disconnect(ConnectionFilter),
    /// Send `serverShutdown`, keep serving for the given time, then close.
    ServerShutdown(ConnectionFilter, Duration),
}

/// How a new connection starts.
#[derive(Debug)]
pub(crate) struct ConnectionPlan {
    /// The venue it belongs to (its limits and families).
    venue: Venue,
    /// Combined envelopes (`/stream`) or raw events (`/ws`).
    combined: bool,
    /// Streams named in the URL.
    streams: Vec<StreamKey>,
}

/// The stream routes: every venue under its [`Venue::path_prefix`] (`/public/...` for futures
/// and options, `/dstream/...` for COIN-M), and the un-routed `/ws...` and `/stream` for
/// `unrouted`. On Binance spot, USD-M and COIN-M streams live on different hosts and all have
/// un-routed paths; on one port the un-routed paths can serve only one of them, so with another
/// `unrouted` than [`Venue::Spot`] spot streams are not served at all.
pub(crate) fn routes(unrouted: Venue) -> Router<SimState> {
    let routed = Venue::ALL
        .into_iter()
        .filter(|venue| !venue.path_prefix().is_empty())
        .fold(Router::new(), |router, venue| {
            mount(router, venue, venue.path_prefix())
        });
    mount(routed, unrouted, "")
}

fn mount(router: Router<SimState>, venue: Venue, prefix: &str) -> Router<SimState> {
    router
        .route(
            &format!("{prefix}/ws"),
            get(move |state: State<SimState>, upgrade: WebSocketUpgrade| {
                connect(state, upgrade, venue, false, String::new())
            }),
        )
        .route(
            &format!("{prefix}/ws/{{*streams}}"),
            get(
                move |state: State<SimState>,
                      upgrade: WebSocketUpgrade,
                      Path(streams): Path<String>| {
                    connect(state, upgrade, venue, false, streams)
                },
            ),
        )
        .route(
            &format!("{prefix}/stream"),
            get(
                move |state: State<SimState>,
                      upgrade: WebSocketUpgrade,
                      Query(query): Query<StreamsQuery>| {
                    connect(
                        state,
                        upgrade,
                        venue,
                        true,
                        query.streams.unwrap_or_default(),
                    )
                },
            ),
        )
}

/// `?streams=a/b/c`.
#[derive(Debug, Deserialize)]
struct StreamsQuery {
    streams: Option<String>,
}

/// Validates the URL's streams, then upgrades. Invalid stream names or too many streams refuse
/// the handshake with HTTP 400 and a Binance-style `{"code":..,"msg":..}` body.
async fn connect(
    State(state): State<SimState>,
    upgrade: WebSocketUpgrade,
    venue: Venue,
    combined: bool,
    names: String,
) -> Response {
    let limits = state.config().venue_limits(venue);
    let mut streams: Vec<StreamKey> = Vec::new();
    for name in names.split('/').filter(|name| !name.is_empty()) {
        let Some(stream) = parse_stream_name(&state.shared().exchange, venue, name) else {
            return handshake_error(&format!("Invalid stream name: {name}"));
        };
        if !streams.iter().any(|known| known.name == stream.name) {
            streams.push(stream);
        }
    }
    if streams.len() > limits.max_streams {
        return handshake_error(&format!(
            "Too many streams: {} requested, at most {} per connection",
            streams.len(),
            limits.max_streams
        ));
    }
    let plan = ConnectionPlan {
        venue,
        combined,
        streams,
    };
    // Subscribe to ticks and commands before the handshake completes, so that every step after
    // the client sees the upgrade reaches it.
    let receivers = connection::Receivers::new(&state);
    upgrade.on_upgrade(move |socket| connection::serve(socket, state, plan, receivers))
}

fn handshake_error(msg: &str) -> Response {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        code: i32,
        msg: &'a str,
    }
    let body = to_json(&Body { code: -1, msg });
    (
        StatusCode::BAD_REQUEST,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
