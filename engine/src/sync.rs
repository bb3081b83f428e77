//! Binance's rules for keeping a local book in sync with a diff stream, as a pure state machine.
//!
//! [`BookSync`] is stepped with diff events ([`BookSync::on_event`]) and snapshots
//! ([`BookSync::on_snapshot`]) and answers what to do with them; it performs no I/O and holds no
//! levels, so every rule of `docs/binance-protocol.md` §4 has its own unit test below.
//!
//! - Spot family (`binance.com`, margin, testnets, US, TR), §4.1: buffer; discard events with
//!   `u <= L`; the first applied event spans the snapshot, `U <= L + 1 <= u`; afterwards ignore
//!   events with `u < local`, and only `U > local + 1` is a gap.
//! - Futures and options, §4.3: discard events with `u < L`; the first applied event satisfies
//!   `U <= L <= u` (or continues from the snapshot, `pu == L`); afterwards events already applied
//!   (`u <= local`: duplicates) are ignored and every other `pu` must equal the previous `u`.
//! - Options snapshots lag the stream (§4.4), so a snapshot that is too old keeps the buffered
//!   events a later snapshot may still align with.
//!
//! - Ids that move backwards (an exchange-side reset) are not a duplicate to ignore: once synced,
//!   an event whose `u` is below the book's but whose exchange time `E` is strictly newer than
//!   the last applied event's is [`SyncError::Backwards`] at once, a resync
//!   ([`BookSync::on_event_at`]). Binance's event times per stream rise with its update ids, and
//!   a duplicate (a handover's successor replaying what it held, a reconnect overlap) is the same
//!   event with the same `E`, so only a stream whose ids restarted brings an older id at a newer
//!   time. Events without a usable time (`E` unknown, or equal) fall back to a count:
//!   duplicates come in short runs, so [`MAX_IGNORED_IN_A_ROW`] ignored events in a row mean the
//!   stream no longer follows the book. (An event older than the book's snapshot alone proves
//!   nothing: a handover's successor replays what it held, which may predate a snapshot taken
//!   meanwhile; and a snapshot's own time is no event's, so it is never compared with one.) The
//!   node's silence check is a last resort: ignored events do not count as a live stream.
//!
//! The buffer is bounded twice: per book (events and bytes: a window that keeps the newest) and
//! per node (a [`BufferBudget`] shared by every book). A book the shared budget cannot serve
//! drops its buffer and says so ([`EventStep::Overflow`]).

use std::collections::VecDeque;

use thiserror::Error;

use crate::buffer_budget::BufferBudget;

/// Events a synced book may ignore in a row before it takes the stream for one that went
/// backwards. Duplicates are normal on Binance, but in short runs: a handover's successor replays
/// what it held while subscribing, at most its 60 s deadline (600 events of a 10 events/s
/// stream, usually a few seconds' worth); 1 000 is beyond that.
pub const MAX_IGNORED_IN_A_ROW: u32 = 1_000;

/// Which set of sync rules an exchange follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncFamily {
    /// `U`/`u` ids; overlap tolerated, gaps are `U > local + 1`.
    Spot,
    /// `U`/`u`/`pu` ids; every `pu` must equal the previous `u` (USD-M futures and options).
    Futures,
}

/// The update ids of one diff event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateIds {
    /// `U`: the first update id in the event.
    pub first: u64,
    /// `u`: the last update id in the event.
    pub last: u64,
    /// `pu`: the previous event's `u` (futures and options only).
    pub previous_last: Option<u64>,
}

/// A diff event as the sync rules see it.
pub trait DiffEvent {
    /// Its update ids.
    fn update_ids(&self) -> UpdateIds;

    /// Bytes it holds while buffered, its own heap allocations included.
    fn buffered_bytes(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// Why a book lost sync; each is followed by a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SyncError {
    /// Events were missed.
    #[error("gap in diff stream: expected {rule}, got {got}")]
    Gap {
        /// The rule the event broke, with the id it needed.
        rule: GapRule,
        /// What the event carried (`U` for spot, `pu` for futures).
        got: u64,
    },
    /// The stream's update ids went backwards (an exchange-side reset).
    #[error(
        "update ids went backwards: the book synced from {synced_from}, the event ends at {got}"
    )]
    Backwards {
        /// The snapshot id the book synced from.
        synced_from: u64,
        /// The event's `u`.
        got: u64,
    },
    /// A futures or options event had no `pu`.
    #[error("diff event {first}..={last} has no pu, required by the futures rules")]
    MissingPreviousId {
        /// `U`.
        first: u64,
        /// `u`.
        last: u64,
    },
}

/// The rule a gap broke, with the id it expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapRule {
    /// Spot: `U` had to be at most this.
    FirstAtMost(u64),
    /// Futures: `pu` had to equal this.
    PreviousEquals(u64),
}

impl std::fmt::Display for GapRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FirstAtMost(id) => write!(f, "U <= {id}"),
            Self::PreviousEquals(id) => write!(f, "pu == {id}"),
        }
    }
}

/// Where a book is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Buffering events until a snapshot arrives.
    Buffering,
    /// A snapshot at `snapshot_id` is in the book, but no event has spanned it yet.
    AwaitingFirstEvent {
        /// The snapshot's `lastUpdateId`.
        snapshot_id: u64,
    },
    /// In sync at `last_update_id`.
    Synced {
        /// The last update id applied.
        last_update_id: u64,
    },
}

/// What to do with a live diff event.
#[derive(Debug, PartialEq, Eq)]
pub enum EventStep<E> {
    /// Keep it: a snapshot is pending (it is in the buffer now).
    Buffered,
    /// Apply it to the book; the book is synced at its `u` afterwards.
    Apply(E),
    /// Drop it: it is older than the book (a duplicate or overlap, normal on Binance).
    Ignore,
    /// The book is out of sync: discard it and resync (buffering restarts at once).
    Resync(SyncError),
    /// The snapshot in the book is older than the stream can bridge: fetch a new snapshot
    /// (buffering continues; the book is not synced).
    SnapshotTooOld,
    /// The node's [`BufferBudget`] had no room: the buffer was dropped (this event with it,
    /// unless the freed bytes made room for it) and buffering starts over. The snapshot already
    /// asked for still comes; the book must be published out of sync with this as its reason.
    Overflow,
}

/// What to do after a snapshot arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotStep<E> {
    /// Load the snapshot into the (cleared) book, then apply these buffered events in order;
    /// the book is synced afterwards (or, with no events, waits for the first live event).
    Load(Vec<E>),
    /// The snapshot is older than the buffered events: fetch another one. Buffered events that a
    /// later snapshot could still align with are kept.
    TooOld,
    /// The buffered events after the sync point have a gap: resync from scratch.
    Resync(SyncError),
    /// The book does not need this snapshot: it is synced already, or it holds a snapshot at
    /// least as new (a late answer to an earlier request). Using it would roll the book back.
    Unneeded,
}

/// The sync state of one book.
#[derive(Debug)]
pub struct BookSync<E> {
    family: SyncFamily,
    state: SyncState,
    buffer: VecDeque<E>,
    capacity: usize,
    /// Bytes the buffer holds now (reserved from `budget`) and may hold at most.
    bytes: usize,
    capacity_bytes: usize,
    budget: BufferBudget,
    /// The `lastUpdateId` of the snapshot the book was last loaded from (what a
    /// [`SyncError::Backwards`] reports beside the event's id).
    synced_from: u64,
    /// Events ignored since the last one applied.
    ignored_in_a_row: u32,
    /// Exchange time (`E`, Unix ms) of the last event applied since the book was loaded; 0 while
    /// unknown (none applied yet, or it carried none).
    last_event_time_ms: u64,
}

impl<E> Drop for BookSync<E> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl<E: DiffEvent> BookSync<E> {
    /// A book that starts buffering, keeping at most `capacity` events while it waits.
    pub fn new(family: SyncFamily, capacity: usize) -> Self {
        Self {
            family,
            state: SyncState::Buffering,
            buffer: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            capacity_bytes: usize::MAX,
            budget: BufferBudget::unlimited(),
            synced_from: 0,
            ignored_in_a_row: 0,
            last_event_time_ms: 0,
        }
    }

    /// Bounds the buffer to `per_book` bytes of its own (a window that keeps the newest events)
    /// and reserves every buffered byte from `budget`, shared with the node's other books.
    #[must_use]
    pub fn with_byte_limits(mut self, per_book: usize, budget: BufferBudget) -> Self {
        self.clear_buffer();
        self.capacity_bytes = per_book.max(1);
        self.budget = budget;
        self
    }

    /// Bytes the buffer holds now.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// The current state.
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// Events buffered while waiting for a snapshot (the tests' view of the window).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Starts over: buffering, with an empty buffer (after a gap, a disconnect, a refresh).
    pub fn restart(&mut self) {
        self.state = SyncState::Buffering;
        self.last_event_time_ms = 0;
        self.clear_buffer();
    }

    /// Steps the machine with a live event whose exchange time is unknown (see
    /// [`BookSync::on_event_at`]).
    pub fn on_event(&mut self, event: E) -> EventStep<E> {
        self.on_event_at(event, 0)
    }

    /// Steps the machine with a live event and its exchange time `E` (Unix ms; 0 when unknown):
    /// once synced, an event older than the book (by id) but newer than its last applied event
    /// (by time) is ids going backwards, a resync at once (see the module doc).
    pub fn on_event_at(&mut self, event: E, event_time_ms: u64) -> EventStep<E> {
        match self.state {
            SyncState::Buffering => self.buffer_event(event),
            SyncState::AwaitingFirstEvent { snapshot_id } => {
                self.first_event(snapshot_id, event, event_time_ms)
            }
            SyncState::Synced { last_update_id } => {
                self.next_event(last_update_id, event, event_time_ms)
            }
        }
    }

    /// Records the exchange time of the last event applied when the caller applied events the
    /// machine handed out without their times (a snapshot's buffered ones, [`SnapshotStep::Load`]);
    /// 0 when unknown.
    pub fn set_last_event_time(&mut self, event_time_ms: u64) {
        self.last_event_time_ms = event_time_ms;
    }

    /// Steps the machine with a snapshot's `lastUpdateId`.
    pub fn on_snapshot(&mut self, snapshot_id: u64) -> SnapshotStep<E> {
        match self.state {
            SyncState::Synced { .. } => return SnapshotStep::Unneeded,
            SyncState::AwaitingFirstEvent { snapshot_id: held } if snapshot_id <= held => {
                return SnapshotStep::Unneeded;
            }
            SyncState::AwaitingFirstEvent { .. } | SyncState::Buffering => {}
        }
        // Drop what the snapshot already contains: spot `u <= L`, futures `u < L`.
        let family = self.family;
        let mut dropped = 0;
        self.buffer.retain(|event| {
            let keep = !is_before_snapshot(family, event.update_ids(), snapshot_id);
            if !keep {
                dropped += event.buffered_bytes();
            }
            keep
        });
        self.give_back(dropped);
        let Some(first) = self.buffer.front().map(DiffEvent::update_ids) else {
            self.loaded_from(snapshot_id);
            self.state = SyncState::AwaitingFirstEvent { snapshot_id };
            return SnapshotStep::Load(Vec::new());
        };
        if !spans_snapshot(family, first, snapshot_id) {
            // The stream's buffered start is newer than the snapshot. Keep the buffer: a later
            // snapshot (options lag by ~30 s) may still fall inside it.
            return SnapshotStep::TooOld;
        }
        let mut last = first.last;
        let mut ready = Vec::with_capacity(self.buffer.len());
        ready.extend(self.pop_oldest());
        while let Some(event) = self.pop_oldest() {
            match check_next(family, last, event.update_ids()) {
                Ok(Next::Apply) => {
                    last = event.update_ids().last;
                    ready.push(event);
                }
                Ok(Next::Ignore) => {}
                Err(error) => return self.fail(error),
            }
        }
        self.loaded_from(snapshot_id);
        self.state = SyncState::Synced {
            last_update_id: last,
        };
        SnapshotStep::Load(ready)
    }

    fn loaded_from(&mut self, snapshot_id: u64) {
        self.synced_from = snapshot_id;
        self.ignored_in_a_row = 0;
        // A snapshot's own time is not an event's (a snapshot's `T` may predate the `E` of an
        // event it contains): only events applied from now on set it.
        self.last_event_time_ms = 0;
    }

    /// An event the rules ignore: a duplicate, unless it is one too many in a row (see the
    /// module doc); then the book resyncs.
    fn ignore(&mut self, ids: UpdateIds) -> EventStep<E> {
        self.ignored_in_a_row += 1;
        if self.ignored_in_a_row < MAX_IGNORED_IN_A_ROW {
            return EventStep::Ignore;
        }
        self.went_backwards(ids)
    }

    fn went_backwards(&mut self, ids: UpdateIds) -> EventStep<E> {
        let error = SyncError::Backwards {
            synced_from: self.synced_from,
            got: ids.last,
        };
        self.restart();
        EventStep::Resync(error)
    }

    fn buffer_event(&mut self, event: E) -> EventStep<E> {
        let size = event.buffered_bytes();
        // Keep the newest: a snapshot can only align with recent events. Losing the oldest is
        // safe: if the kept ones are inside the snapshot, so were the lost ones; if the kept
        // ones do not reach back to the snapshot, it is reported too old and fetched again.
        let mut trimmed = 0;
        while self.buffer.len() >= self.capacity
            || (!self.buffer.is_empty() && self.bytes + size > self.capacity_bytes)
        {
            self.pop_oldest();
            trimmed += 1;
        }
        if trimmed > 0 {
            self.budget.count_trimmed(trimmed);
        }
        if self.budget.try_reserve(size) {
            self.push_newest(event, size);
            return EventStep::Buffered;
        }
        // The node's books hold all it allows. Keeping this event but not older ones would leave
        // a hole in the buffer, so the buffer starts over: with this event if the bytes it gave
        // back make room, else with the next one that fits.
        self.budget.count_overflow();
        self.clear_buffer();
        if self.budget.try_reserve(size) {
            self.push_newest(event, size);
        }
        EventStep::Overflow
    }

    fn push_newest(&mut self, event: E, size: usize) {
        self.bytes += size;
        self.buffer.push_back(event);
    }

    fn pop_oldest(&mut self) -> Option<E> {
        let event = self.buffer.pop_front()?;
        self.give_back(event.buffered_bytes());
        Some(event)
    }

    fn give_back(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.budget.release(bytes);
    }

    fn first_event(&mut self, snapshot_id: u64, event: E, event_time_ms: u64) -> EventStep<E> {
        let ids = event.update_ids();
        if is_before_snapshot(self.family, ids, snapshot_id) {
            // Events older than the snapshot may still be in flight for a moment; a long run of
            // them is a stream that went backwards.
            self.ignored_in_a_row += 1;
            if self.ignored_in_a_row < MAX_IGNORED_IN_A_ROW {
                return EventStep::Ignore;
            }
            return self.went_backwards(ids);
        }
        self.ignored_in_a_row = 0;
        if !spans_snapshot(self.family, ids, snapshot_id) {
            self.state = SyncState::Buffering;
            self.clear_buffer();
            // A new snapshot is asked for either way; this event starts the buffer it aligns
            // with, if the budget has room (else the next one does).
            self.buffer_event(event);
            return EventStep::SnapshotTooOld;
        }
        self.state = SyncState::Synced {
            last_update_id: ids.last,
        };
        self.last_event_time_ms = event_time_ms;
        EventStep::Apply(event)
    }

    fn next_event(&mut self, last_update_id: u64, event: E, event_time_ms: u64) -> EventStep<E> {
        let ids = event.update_ids();
        match check_next(self.family, last_update_id, ids) {
            Ok(Next::Apply) => {
                self.ignored_in_a_row = 0;
                self.state = SyncState::Synced {
                    last_update_id: ids.last,
                };
                self.last_event_time_ms = event_time_ms;
                EventStep::Apply(event)
            }
            // Older by id, newer by time: not a duplicate (it would carry its own old `E`) but a
            // stream whose ids restarted. A futures event at `u == local` is left to the rule
            // below: only an id strictly below the book's proves the ids moved back.
            Ok(Next::Ignore)
                if ids.last < last_update_id
                    && self.last_event_time_ms > 0
                    && event_time_ms > self.last_event_time_ms =>
            {
                self.went_backwards(ids)
            }
            Ok(Next::Ignore) => self.ignore(ids),
            Err(error) => {
                self.restart();
                EventStep::Resync(error)
            }
        }
    }

    /// Empties the buffer and gives its bytes back.
    fn clear_buffer(&mut self) {
        self.buffer.clear();
        let bytes = std::mem::take(&mut self.bytes);
        self.budget.release(bytes);
    }

    fn fail(&mut self, error: SyncError) -> SnapshotStep<E> {
        self.restart();
        SnapshotStep::Resync(error)
    }
}

/// Whether an event is wholly contained in a snapshot with `lastUpdateId` `snapshot_id`.
fn is_before_snapshot(family: SyncFamily, ids: UpdateIds, snapshot_id: u64) -> bool {
    match family {
        SyncFamily::Spot => ids.last <= snapshot_id,
        SyncFamily::Futures => ids.last < snapshot_id,
    }
}

/// The first-event rule: spot `U <= L + 1 <= u`, futures `U <= L <= u`.
///
/// For futures an event whose `pu` is `L` also qualifies: it directly follows the snapshot's state.
/// Futures update ids are not contiguous between events, so a snapshot taken between two events has
/// `L` equal to the earlier event's `u`; without this the next event (`U > L`) could never align and
/// every such snapshot would be fetched twice.
fn spans_snapshot(family: SyncFamily, ids: UpdateIds, snapshot_id: u64) -> bool {
    match family {
        SyncFamily::Spot => {
            ids.first <= snapshot_id.saturating_add(1) && snapshot_id.saturating_add(1) <= ids.last
        }
        SyncFamily::Futures => {
            (ids.first <= snapshot_id && snapshot_id <= ids.last)
                || ids.previous_last == Some(snapshot_id)
        }
    }
}

enum Next {
    Apply,
    Ignore,
}

/// The rule for an event after the book is synced at `local`.
fn check_next(family: SyncFamily, local: u64, ids: UpdateIds) -> Result<Next, SyncError> {
    match family {
        SyncFamily::Spot => {
            if ids.last < local {
                return Ok(Next::Ignore);
            }
            let bound = local.saturating_add(1);
            if ids.first > bound {
                return Err(SyncError::Gap {
                    rule: GapRule::FirstAtMost(bound),
                    got: ids.first,
                });
            }
            Ok(Next::Apply)
        }
        SyncFamily::Futures => {
            // Already applied: an exact duplicate (a reconnect overlap delivers some events twice)
            // or an older event whose changes the chain has already carried. Skipping it keeps
            // the book exact; the pu rule below still catches every real gap.
            if ids.last <= local {
                return Ok(Next::Ignore);
            }
            let previous = ids.previous_last.ok_or(SyncError::MissingPreviousId {
                first: ids.first,
                last: ids.last,
            })?;
            if previous != local {
                return Err(SyncError::Gap {
                    rule: GapRule::PreviousEquals(local),
                    got: previous,
                });
            }
            Ok(Next::Apply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Event(UpdateIds);

    impl DiffEvent for Event {
        fn update_ids(&self) -> UpdateIds {
            self.0
        }
    }

    fn spot(first: u64, last: u64) -> Event {
        Event(UpdateIds {
            first,
            last,
            previous_last: None,
        })
    }

    fn futures(first: u64, last: u64, previous_last: u64) -> Event {
        Event(UpdateIds {
            first,
            last,
            previous_last: Some(previous_last),
        })
    }

    fn loaded<E: std::fmt::Debug>(step: SnapshotStep<E>) -> Vec<E> {
        match step {
            SnapshotStep::Load(events) => events,
            other => panic!("expected Load, got {other:?}"),
        }
    }

    #[test]
    fn spot_discards_events_inside_the_snapshot_and_applies_the_spanning_one() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        for event in [spot(90, 95), spot(96, 100), spot(101, 104), spot(105, 106)] {
            assert_eq!(sync.on_event(event), EventStep::Buffered);
        }
        // L = 100: u <= 100 is discarded; 101..=104 spans L + 1.
        assert_eq!(
            loaded(sync.on_snapshot(100)),
            [spot(101, 104), spot(105, 106)]
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 106
            }
        );
    }

    #[test]
    fn spot_first_event_may_start_before_the_snapshot() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(98, 103));
        assert_eq!(loaded(sync.on_snapshot(100)), [spot(98, 103)]);
    }

    #[test]
    fn spot_snapshot_older_than_the_buffer_is_too_old_and_the_buffer_is_kept() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(110, 112));
        assert_eq!(sync.on_snapshot(100), SnapshotStep::TooOld);
        assert_eq!(sync.buffered(), 1);
        // A newer snapshot aligns with what was kept.
        assert_eq!(loaded(sync.on_snapshot(110)), [spot(110, 112)]);
    }

    #[test]
    fn spot_ignores_stale_and_overlapping_events_once_synced() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(101, 105));
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_event(spot(100, 104)),
            EventStep::Ignore,
            "u < local: stale duplicate"
        );
        assert_eq!(
            sync.on_event(spot(103, 107)),
            EventStep::Apply(spot(103, 107)),
            "overlap is tolerated"
        );
        assert_eq!(
            sync.on_event(spot(108, 108)),
            EventStep::Apply(spot(108, 108))
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 108
            }
        );
    }

    #[test]
    fn spot_gap_is_only_first_id_beyond_local_plus_one() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(101, 105));
        loaded(sync.on_snapshot(100));
        let step = sync.on_event(spot(107, 110));
        assert_eq!(
            step,
            EventStep::Resync(SyncError::Gap {
                rule: GapRule::FirstAtMost(106),
                got: 107
            })
        );
        assert_eq!(
            sync.state(),
            SyncState::Buffering,
            "a gap restarts buffering at once"
        );
        assert_eq!(sync.buffered(), 0);
    }

    #[test]
    fn spot_gap_inside_the_buffer_after_the_sync_point_resyncs() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(101, 105));
        sync.on_event(spot(110, 112));
        assert!(matches!(
            sync.on_snapshot(100),
            SnapshotStep::Resync(SyncError::Gap { got: 110, .. })
        ));
    }

    #[test]
    fn spot_with_no_event_after_the_snapshot_waits_for_the_first_live_one() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(90, 100));
        assert_eq!(loaded(sync.on_snapshot(100)), Vec::<Event>::new());
        assert_eq!(
            sync.state(),
            SyncState::AwaitingFirstEvent { snapshot_id: 100 }
        );
        assert_eq!(
            sync.on_event(spot(95, 100)),
            EventStep::Ignore,
            "still inside the snapshot"
        );
        assert_eq!(
            sync.on_event(spot(101, 101)),
            EventStep::Apply(spot(101, 101))
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 101
            }
        );
    }

    #[test]
    fn a_live_event_beyond_a_waiting_snapshot_means_the_snapshot_is_too_old() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        loaded(sync.on_snapshot(100));
        assert_eq!(sync.on_event(spot(105, 106)), EventStep::SnapshotTooOld);
        assert_eq!((sync.state(), sync.buffered()), (SyncState::Buffering, 1));
    }

    #[test]
    fn futures_keep_events_with_u_equal_to_the_snapshot_and_span_with_u_le_l() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(90, 99, 89));
        sync.on_event(futures(100, 100, 99)); // u == L: kept for futures (strict <), unlike spot
        sync.on_event(futures(101, 103, 100));
        assert_eq!(
            loaded(sync.on_snapshot(100)),
            [futures(100, 100, 99), futures(101, 103, 100)]
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 103
            }
        );
    }

    #[test]
    fn futures_event_continuing_from_the_snapshot_by_pu_aligns() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        // Snapshot at 100, which was the previous event's u; the next event starts at 104.
        assert_eq!(loaded(sync.on_snapshot(100)), Vec::<Event>::new());
        assert_eq!(
            sync.on_event(futures(104, 107, 100)),
            EventStep::Apply(futures(104, 107, 100))
        );
        // The same event buffered before the snapshot aligns too.
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(104, 107, 100));
        assert_eq!(loaded(sync.on_snapshot(100)), [futures(104, 107, 100)]);
        // But one that does not continue from it is still too new.
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(104, 107, 101));
        assert_eq!(sync.on_snapshot(100), SnapshotStep::TooOld);
    }

    #[test]
    fn a_late_snapshot_never_rolls_a_book_back() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_snapshot(90),
            SnapshotStep::Unneeded,
            "older than the one held"
        );
        assert_eq!(
            sync.on_event(spot(101, 103)),
            EventStep::Apply(spot(101, 103))
        );
        assert_eq!(
            sync.on_snapshot(120),
            SnapshotStep::Unneeded,
            "synced already"
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 103
            }
        );
    }

    #[test]
    fn futures_need_pu_to_equal_the_previous_u() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(95, 105, 94));
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_event(futures(106, 108, 105)),
            EventStep::Apply(futures(106, 108, 105))
        );
        let step = sync.on_event(futures(110, 112, 109));
        assert_eq!(
            step,
            EventStep::Resync(SyncError::Gap {
                rule: GapRule::PreviousEquals(108),
                got: 109
            })
        );
    }

    #[test]
    fn futures_events_already_applied_are_ignored_not_gaps() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(95, 105, 94));
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_event(futures(95, 105, 94)),
            EventStep::Ignore,
            "a duplicate"
        );
        assert_eq!(
            sync.on_event(futures(106, 108, 105)),
            EventStep::Apply(futures(106, 108, 105))
        );
        assert_eq!(
            sync.on_event(futures(90, 94, 80)),
            EventStep::Ignore,
            "an older event"
        );
        assert!(
            matches!(sync.on_event(futures(110, 111, 109)), EventStep::Resync(_)),
            "a real gap"
        );
    }

    #[test]
    fn futures_events_without_pu_are_refused() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        sync.on_event(futures(95, 105, 94));
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_event(spot(106, 107)),
            EventStep::Resync(SyncError::MissingPreviousId {
                first: 106,
                last: 107
            })
        );
    }

    #[test]
    fn options_lagging_snapshots_align_with_kept_events_on_retry() {
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        for id in 500..510 {
            sync.on_event(futures(id, id, id - 1));
        }
        // The cached snapshot lags far behind: too old, events kept.
        assert_eq!(sync.on_snapshot(300), SnapshotStep::TooOld);
        assert_eq!(sync.buffered(), 10);
        // A later snapshot (still lagging the live stream) falls inside the kept events.
        assert_eq!(loaded(sync.on_snapshot(505)).len(), 5);
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                last_update_id: 509
            }
        );
    }

    #[test]
    fn the_buffer_is_bounded_and_losing_its_oldest_events_is_safe() {
        let mut sync = BookSync::new(SyncFamily::Spot, 3);
        for id in 1..=10 {
            sync.on_event(spot(id, id));
        }
        assert_eq!(sync.buffered(), 3, "only the newest events are kept");
        // A snapshot older than the kept events cannot be bridged: fetch another.
        assert_eq!(sync.on_snapshot(5), SnapshotStep::TooOld);
        // A snapshot at or beyond them contains the lost ones too.
        assert_eq!(loaded(sync.on_snapshot(20)), Vec::<Event>::new());
        assert_eq!(
            sync.state(),
            SyncState::AwaitingFirstEvent { snapshot_id: 20 }
        );
    }

    /// Each test event weighs what it holds in the buffer.
    fn size() -> usize {
        std::mem::size_of::<Event>()
    }

    #[test]
    fn the_per_book_byte_window_keeps_the_newest_events() {
        let budget = BufferBudget::unlimited();
        let mut sync =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(3 * size(), budget.clone());
        for id in 1..=5 {
            assert_eq!(sync.on_event(spot(id, id)), EventStep::Buffered);
        }
        assert_eq!((sync.buffered(), sync.buffered_bytes()), (3, 3 * size()));
        assert_eq!(budget.trimmed(), 2);
        // The window reaches back to 3: a snapshot at 2 still aligns with it.
        let ready = loaded(sync.on_snapshot(2));
        assert_eq!(ready, vec![spot(3, 3), spot(4, 4), spot(5, 5)]);
        assert_eq!((sync.buffered_bytes(), budget.used()), (0, 0));
    }

    #[test]
    fn a_spent_node_budget_drops_the_buffer_and_says_so_never_a_hole() {
        // Room for three events on the node; another book holds two of them.
        let budget = BufferBudget::new(3 * size());
        let mut other =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        other.on_event(spot(1, 1));
        other.on_event(spot(2, 2));
        let mut sync =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        assert_eq!(sync.on_event(spot(10, 10)), EventStep::Buffered);
        // No room for 11: the buffer (10) is dropped, and the bytes it gave back take 11.
        assert_eq!(sync.on_event(spot(11, 11)), EventStep::Overflow);
        assert_eq!(
            (sync.buffered(), budget.used(), budget.overflows()),
            (1, 3 * size(), 1)
        );
        // A snapshot at 9 needs event 10, which is gone: too old, never a load across a hole.
        assert_eq!(sync.on_snapshot(9), SnapshotStep::TooOld);
        // A snapshot at 10 aligns with what was kept.
        assert_eq!(loaded(sync.on_snapshot(10)), vec![spot(11, 11)]);
        assert_eq!(budget.used(), 2 * size());
    }

    #[test]
    fn an_event_that_finds_no_room_at_all_is_not_kept_and_buffering_resumes_when_there_is() {
        let budget = BufferBudget::new(2 * size());
        let mut hog =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        hog.on_event(spot(1, 1));
        hog.on_event(spot(2, 2));
        let mut sync =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        assert_eq!(sync.on_event(spot(10, 10)), EventStep::Overflow);
        assert_eq!(sync.buffered(), 0);
        // The hog's snapshot arrives: its bytes go back to the node.
        loaded(hog.on_snapshot(2));
        assert_eq!(budget.used(), 0);
        assert_eq!(sync.on_event(spot(11, 11)), EventStep::Buffered);
        assert_eq!(loaded(sync.on_snapshot(10)), vec![spot(11, 11)]);
    }

    #[test]
    fn every_way_out_of_buffering_gives_the_bytes_back() {
        let budget = BufferBudget::unlimited();
        let mut sync =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        sync.on_event(spot(5, 5));
        sync.restart();
        assert_eq!(budget.used(), 0);
        sync.on_event(spot(6, 6));
        sync.on_event(spot(7, 7));
        // Discarded as inside the snapshot, then too old for what is left: 7 is kept.
        assert_eq!(
            sync.on_snapshot(5),
            SnapshotStep::Load(vec![spot(6, 6), spot(7, 7)])
        );
        assert_eq!(budget.used(), 0);
        let mut dropped =
            BookSync::new(SyncFamily::Spot, 100).with_byte_limits(usize::MAX, budget.clone());
        dropped.on_event(spot(8, 8));
        assert_eq!(budget.used(), size());
        drop(dropped);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_long_run_of_ignored_events_is_ids_going_backwards() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(101, 200));
        loaded(sync.on_snapshot(100));
        // Within the book's own past (>= 100, < 200): duplicates, until too many in a row.
        for _ in 1..MAX_IGNORED_IN_A_ROW {
            assert_eq!(sync.on_event(spot(150, 160)), EventStep::Ignore);
        }
        assert!(matches!(
            sync.on_event(spot(150, 160)),
            EventStep::Resync(SyncError::Backwards { got: 160, .. })
        ));
    }

    #[test]
    fn an_applied_event_ends_a_run_of_ignored_ones() {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event(spot(101, 200));
        loaded(sync.on_snapshot(100));
        for round in 0..3u64 {
            for _ in 1..MAX_IGNORED_IN_A_ROW {
                assert_eq!(sync.on_event(spot(150, 160)), EventStep::Ignore);
            }
            let next = 201 + round;
            assert_eq!(
                sync.on_event(spot(next, next)),
                EventStep::Apply(spot(next, next))
            );
        }
    }

    fn synced_spot_at(last: u64, event_time_ms: u64) -> BookSync<Event> {
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        loaded(sync.on_snapshot(100));
        assert_eq!(
            sync.on_event_at(spot(101, last), event_time_ms),
            EventStep::Apply(spot(101, last))
        );
        sync
    }

    #[test]
    fn an_older_id_at_a_newer_time_is_ids_going_backwards_at_once() {
        let mut sync = synced_spot_at(200, 1_000);
        // The exchange restarted its ids: the next event is far below the book, a moment later.
        assert!(matches!(
            sync.on_event_at(spot(5, 6), 1_001),
            EventStep::Resync(SyncError::Backwards { got: 6, .. })
        ));
        assert_eq!(sync.state(), SyncState::Buffering);
        // Futures alike, whatever its pu.
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        loaded(sync.on_snapshot(100));
        let first = futures(95, 105, 90);
        assert_eq!(sync.on_event_at(first, 2_000), EventStep::Apply(first));
        assert!(matches!(
            sync.on_event_at(futures(7, 8, 6), 2_100),
            EventStep::Resync(SyncError::Backwards { got: 8, .. })
        ));
    }

    #[test]
    fn duplicates_carry_their_own_time_and_stay_ignored() {
        let mut sync = synced_spot_at(200, 1_000);
        // A handover's successor replays what it held: older events at older or equal times.
        for (event, time) in [(spot(150, 160), 900), (spot(161, 199), 1_000)] {
            assert_eq!(sync.on_event_at(event, time), EventStep::Ignore);
        }
        // The last event again, with its own time: applied again (absolute quantities), no harm.
        assert_eq!(
            sync.on_event_at(spot(101, 200), 1_000),
            EventStep::Apply(spot(101, 200))
        );
        // Futures: the event already applied (u == local) at a later time is still a duplicate;
        // only an id strictly below the book's proves the ids moved back.
        let mut sync = BookSync::new(SyncFamily::Futures, 100);
        loaded(sync.on_snapshot(100));
        let first = futures(95, 105, 90);
        assert_eq!(sync.on_event_at(first, 2_000), EventStep::Apply(first));
        assert_eq!(sync.on_event_at(first, 2_500), EventStep::Ignore);
    }

    #[test]
    fn without_an_event_time_to_compare_ignored_events_fall_back_to_the_count() {
        // The event carries no time.
        let mut sync = synced_spot_at(200, 1_000);
        assert_eq!(sync.on_event_at(spot(5, 6), 0), EventStep::Ignore);
        // The book applied no timed event since its snapshot: a snapshot's own time is never
        // compared with an event's.
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        loaded(sync.on_snapshot(100));
        assert_eq!(sync.on_event_at(spot(5, 6), 5_000), EventStep::Ignore);
        // Buffered events applied by the caller: it says when the last one was.
        let mut sync = BookSync::new(SyncFamily::Spot, 100);
        sync.on_event_at(spot(101, 200), 1_000);
        assert_eq!(loaded(sync.on_snapshot(100)), [spot(101, 200)]);
        assert_eq!(sync.on_event_at(spot(5, 6), 5_000), EventStep::Ignore);
        sync.set_last_event_time(1_000);
        assert!(matches!(
            sync.on_event_at(spot(5, 6), 5_000),
            EventStep::Resync(SyncError::Backwards { .. })
        ));
        // A restart forgets the time: the next episode compares only its own events.
        let mut sync = synced_spot_at(200, 1_000);
        sync.restart();
        loaded(sync.on_snapshot(300));
        assert_eq!(sync.on_event_at(spot(5, 6), 5_000), EventStep::Ignore);
    }
}
