//! One diff-depth update as the exchange produced it: its update-id range, its times and the
//! levels it sets. Delivery faults never change an `Update`; they only change which frames carry
//! it.

use crate::book::Level;

/// A generated update of one market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    /// `U`: the first update id in the event; always the previous `u` + 1.
    pub(crate) first_update_id: u64,
    /// `u`: the last update id in the event.
    pub(crate) last_update_id: u64,
    /// `pu` (futures and options): the previous event's `u`.
    pub(crate) previous_update_id: u64,
    /// `E`, wall-clock milliseconds (not part of the deterministic sequence).
    pub(crate) event_time_ms: u64,
    /// `T`, a few milliseconds before `E` (the offset is part of the deterministic sequence).
    pub(crate) transaction_time_ms: u64,
    /// Bid levels set by the update, best first; quantity 0 deletes.
    pub(crate) bids: Vec<Level>,
    /// Ask levels set by the update, best first; quantity 0 deletes.
    pub(crate) asks: Vec<Level>,
}
