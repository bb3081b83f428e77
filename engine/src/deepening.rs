//! Bringing a synced book from a shallow snapshot to full depth without taking it out of sync
//! (issue 12, progressive depth).
//!
//! A book that started from a shallow snapshot (100 levels: weight 5 on spot instead of 50) is
//! served at once within that depth. To deepen it, a second book — the *shadow* — is built
//! beside it by the same rules as any book: it buffers copies of the live events, takes the
//! deep snapshot (from spare REST weight or a peer's full-depth copy) through its own
//! [`BookSync`], and applies what follows. When it is synced at the very update id the live
//! book shows, the two hold the same market state, the shadow's deeper; it replaces the live
//! book between two events, so readers never see the book leave sync (make-before-break).
//!
//! Its buffer is bounded like any book's, by a budget of its own ([`SHADOW_BYTES_PER_BOOK`],
//! [`SHADOW_BYTES_PER_NODE`]): deepening is an extra, and must never take the buffer room of
//! books waiting to sync. The window keeps the newest events, which is all a snapshot taken
//! after the request can need; a snapshot the window no longer reaches is reported too old
//! and asked for again later.

use ubdcc_shm::{Decimal, Side};

use crate::binance::wire::DiffUpdate;
use crate::book::OrderBook;
use crate::buffer_budget::BufferBudget;
use crate::snapshot::Snapshot;
use crate::sync::{BookSync, EventStep, SnapshotStep, SyncFamily};

/// Bytes of copied events one shadow may buffer (~60 busy spot events: several seconds, far
/// more than a snapshot download takes).
pub const SHADOW_BYTES_PER_BOOK: usize = 64 << 10;

/// Bytes all shadows of one node may buffer together.
pub const SHADOW_BYTES_PER_NODE: usize = 16 << 20;

/// Events one shadow may buffer.
const SHADOW_CAPACITY: usize = 1_000;

/// The prices a shallow snapshot covered: on each side, its worst level's price (`None` when
/// the side had fewer levels than the depth asked for: it was the whole side).
///
/// A shallow book is exact only within these prices: a level beyond them that never changed
/// was never seen. After a level inside vanishes, the book's last levels may lie beyond them
/// (diff events bring levels from anywhere), so the depth it covers is the number of levels
/// within the window — what readers are promised (`BookInfo::depth`), recounted at each
/// publish (at most the shallow depth, e.g. 100 comparisons).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    bid_floor: Option<Decimal>,
    ask_ceiling: Option<Decimal>,
}

impl Window {
    /// The window of `book` just loaded from a snapshot and trimmed to its depth.
    pub(crate) fn of(book: &OrderBook) -> Self {
        let edge = |side: Side| -> Option<Decimal> {
            if book.len(side) < book.depth() {
                return None;
            }
            let worst = book.best_first(side).last()?;
            Some(Decimal::new(worst.price, book.price_exponent()))
        };
        Self {
            bid_floor: edge(Side::Bids),
            ask_ceiling: edge(Side::Asks),
        }
    }

    /// Levels per side `book` holds within the window (the smaller side).
    pub(crate) fn covered(&self, book: &OrderBook) -> usize {
        let count = |side: Side, edge: Option<Decimal>| -> usize {
            let Some(edge) = edge else {
                return book.len(side);
            };
            // The book's exponent only ever gets finer, so the edge stays representable.
            let Some(edge) = edge.rescale(book.price_exponent()) else {
                return 0;
            };
            let edge = edge.mantissa();
            book.best_first(side)
                .take_while(|level| match side {
                    Side::Bids => level.price >= edge,
                    Side::Asks => level.price <= edge,
                })
                .count()
        };
        count(Side::Bids, self.bid_floor).min(count(Side::Asks, self.ask_ceiling))
    }
}

/// Where a shadow stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShadowStep {
    /// Still buffering or catching up: keep feeding it.
    Pending,
    /// Synced at the live book's update id: it may replace the live book now.
    Ready,
    /// It cannot get there from this snapshot or stream (too old, a gap, malformed levels):
    /// drop it and try again later.
    Failed,
}

/// The deeper book being built beside a live one; see the module doc.
#[derive(Debug)]
pub(crate) struct Shadow {
    sync: BookSync<DiffUpdate>,
    book: OrderBook,
    /// The snapshot is in [`Shadow::book`].
    loaded: bool,
    /// The last update id [`Shadow::book`] holds.
    last_update_id: u64,
}

impl Shadow {
    /// A shadow buffering from now on, for a book of `family`; `budget` is shared by the node's
    /// shadows.
    pub(crate) fn new(family: SyncFamily, budget: BufferBudget) -> Self {
        Self {
            sync: BookSync::new(family, SHADOW_CAPACITY)
                .with_byte_limits(SHADOW_BYTES_PER_BOOK, budget),
            book: OrderBook::new(0),
            loaded: false,
            last_update_id: 0,
        }
    }

    /// The book it built (meaningful once [`ShadowStep::Ready`]).
    pub(crate) fn into_book(self) -> OrderBook {
        self.book
    }

    /// The depth its snapshot covers.
    pub(crate) fn depth(&self) -> usize {
        self.book.depth()
    }

    /// Steps it with a copy of the live event the live book just stepped with; `live_id` is
    /// the live book's last update id after that event.
    pub(crate) fn on_event(&mut self, event: DiffUpdate, live_id: u64) -> ShadowStep {
        match self.sync.on_event(event) {
            // A full window restarts itself; the snapshot may still align with what follows.
            EventStep::Buffered | EventStep::Ignore | EventStep::Overflow => {}
            EventStep::Apply(event) => {
                if !self.apply(&event) {
                    return ShadowStep::Failed;
                }
            }
            EventStep::SnapshotTooOld | EventStep::Resync(_) => return ShadowStep::Failed,
        }
        self.ready_at(live_id)
    }

    /// Loads the deep `snapshot` (kept to at most `full_depth` levels, whatever it claims) and
    /// the buffered events after it; `live_id` as in [`Shadow::on_event`].
    pub(crate) fn on_snapshot(
        &mut self,
        snapshot: &Snapshot,
        full_depth: usize,
        live_id: u64,
    ) -> ShadowStep {
        let events = match self.sync.on_snapshot(snapshot.last_update_id) {
            SnapshotStep::Load(events) => events,
            SnapshotStep::TooOld | SnapshotStep::Resync(_) | SnapshotStep::Unneeded => {
                return ShadowStep::Failed;
            }
        };
        self.book = OrderBook::new((snapshot.depth as usize).min(full_depth));
        self.last_update_id = snapshot.last_update_id;
        let levels = snapshot.bids.iter().map(|l| (Side::Bids, l));
        let levels = levels.chain(snapshot.asks.iter().map(|l| (Side::Asks, l)));
        for (side, level) in levels {
            if self.book.apply(side, level.price, level.quantity).is_err() {
                return ShadowStep::Failed;
            }
        }
        self.book.trim();
        self.loaded = true;
        for event in &events {
            if !self.apply(event) {
                return ShadowStep::Failed;
            }
        }
        self.ready_at(live_id)
    }

    fn apply(&mut self, event: &DiffUpdate) -> bool {
        let levels = event.bids.iter().map(|l| (Side::Bids, l));
        let levels = levels.chain(event.asks.iter().map(|l| (Side::Asks, l)));
        for (side, level) in levels {
            if self.book.apply(side, level.price, level.quantity).is_err() {
                return false;
            }
        }
        self.book.trim();
        self.last_update_id = event.ids.last;
        true
    }

    fn ready_at(&self, live_id: u64) -> ShadowStep {
        if self.loaded && self.last_update_id == live_id {
            ShadowStep::Ready
        } else {
            ShadowStep::Pending
        }
    }
}
