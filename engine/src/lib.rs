//! The DepthCache node's data plane: exact order books kept in sync with Binance by its official
//! rules, and published into shared memory.
//!
//! # Brief overview
//! - [`OrderBook`]: both sides as exact mantissas, updated in place and trimmed to the snapshot
//!   depth after every event (the numeric orphan rule).
//! - [`BookSync`]: Binance's sync rules per [`SyncFamily`] as a pure state machine, stepped with
//!   events and snapshots, answering what to do with each.
//!
//! More parts (Binance's wire types, the exchange registry, connections
//! and the snapshot scheduler) arrive with the rest of the engine issue.
#![forbid(unsafe_code)]

mod book;
mod sync;

pub use book::{BookError, OrderBook};
pub use sync::{
    BookSync, DiffEvent, EventStep, GapRule, SnapshotStep, SyncError, SyncFamily, SyncState,
    UpdateIds,
};
