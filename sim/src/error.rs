//! The simulator's errors, each carrying the names and ids it is about.

use thiserror::Error;

use crate::family::Family;

/// A [`SimConfig`](crate::SimConfig) setting is out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `markets` must be 1..=10000 per family.
    #[error("invalid market count {0}: use 1 to 10000 markets per family")]
    Markets(usize),
    /// `rate_hz` must be 0 (manual stepping) to 1000.
    #[error("invalid event rate {0} Hz: use 0 (step with POST /sim/advance) to 1000")]
    Rate(u32),
    /// `book_depth` must be 10..=5000 levels per side.
    #[error("invalid book depth {0}: use 10 to 5000 levels per side")]
    BookDepth(usize),
    /// A per-minute weight limit must be at least 1.
    #[error("invalid weight limit {limit} for {family}: use at least 1")]
    WeightLimit {
        /// The family.
        family: Family,
        /// The limit given.
        limit: u32,
    },
    /// A WebSocket limit is zero.
    #[error("invalid WebSocket setting {setting}: must be non-zero")]
    WebSocket {
        /// Which setting.
        setting: &'static str,
    },
}

/// No book can be told for the requested update id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TruthError {
    /// The id is older than the retained history.
    #[error("update id {update_id} is too old: history holds update ids {oldest} to {newest}")]
    TooOld {
        /// The id asked for.
        update_id: u64,
        /// The oldest id that can be told.
        oldest: u64,
        /// The newest id.
        newest: u64,
    },
    /// The id has not been generated yet.
    #[error("update id {update_id} is in the future: the newest update id is {newest}")]
    InTheFuture {
        /// The id asked for.
        update_id: u64,
        /// The newest id.
        newest: u64,
    },
    /// The id lies strictly inside one event, where no book exists.
    #[error(
        "update id {update_id} is inside the event U={first} u={last}: books exist only after whole events"
    )]
    InsideEvent {
        /// The id asked for.
        update_id: u64,
        /// `U` of the event.
        first: u64,
        /// `u` of the event.
        last: u64,
    },
}

/// A request to a `/sim/...` endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SimRequestError {
    /// No market of that family has that symbol.
    #[error("unknown {family} symbol {symbol:?}")]
    UnknownSymbol {
        /// The family searched.
        family: Family,
        /// The symbol given.
        symbol: String,
    },
    /// No family has a market with that symbol.
    #[error("unknown symbol {symbol:?} in every family")]
    UnknownSymbolAnywhere {
        /// The symbol given.
        symbol: String,
    },
    /// The truth for that id cannot be told.
    #[error("{family} {symbol}: {source}")]
    Truth {
        /// The family.
        family: Family,
        /// The symbol.
        symbol: String,
        /// Why.
        #[source]
        source: TruthError,
    },
    /// A fault or query parameter is out of range.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The simulator failed (a bug); the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}
