//! One DepthCache: an order book, its sync state and its shared-memory slot, stepped by diff
//! events and snapshots. Every applied event is published; every way of losing sync is published
//! as out of sync with its reason, so the book is never served stale.
//!
//! For the replicas cross-check (issue 16) the book hashes its top levels ([`ubdcc_shm::top_hash`])
//! at points every replica of the market passes: as the first event of a new exchange second (by
//! its `E`) arrives, the book as it stood before it — the book at the end of the last second —
//! and when a snapshot is loaded or an audit repairs the book. The hash rides on the publish
//! that follows ([`ubdcc_shm::SegmentWriter::set_top_hash`]). Replicas apply the same events with
//! the same `E`, so they hash the same update ids, however busy the market; the hash costs
//! ~150 ns once a second instead of at every publish.

use thiserror::Error;
use ubdcc_shm::{
    Audit, BookHandle, BookMeta, BookStatus, Freshness, OutOfSyncReason, Side, TopHash, WriteError,
};

use crate::audit::{CATCH_UP_MARGIN, Coverage, LOGGED_DIFFERENCES, LevelDifference, differences};
use crate::binance::wire::{DiffUpdate, LevelUpdate};
use crate::book::{BookError, OrderBook};
use crate::buffer_budget::BufferBudget;
use crate::deepening::{Shadow, ShadowStep, Window};
use crate::exchange::Exchange;
use crate::publish::Publisher;
use crate::snapshot::Snapshot;
use crate::sync::{BookSync, EventStep, SnapshotStep, SyncError, SyncState};

/// Events a book buffers while its snapshot is on the way. Options snapshots lag the stream by up
/// to ~30 s (`docs/binance-protocol.md` §4.4), which at 10 events/s is a few hundred; 10 000 matches what the
/// original kept. Bytes bound the buffer too ([`BUFFER_BYTES_PER_BOOK`], [`BufferLimits`]).
pub const BUFFER_CAPACITY: usize = 10_000;

/// Bytes one book's buffer may hold (the newest events are kept). A busy spot event of 20
/// changed levels is about 1 KB here, so this is ~1 000 events: 30 s of options lag at 10
/// events/s fits three times over.
pub const BUFFER_BYTES_PER_BOOK: usize = 1 << 20;

/// Bytes all books of one node may hold in their buffers together: 1 024 books waiting at once
/// get 64 KB each (~60 busy events, several seconds), far more when fewer wait.
pub const BUFFER_BYTES_PER_NODE: usize = 64 << 20;

/// How much a book may buffer: its own window and the node's shared budget.
#[derive(Debug, Clone)]
pub struct BufferLimits {
    /// Bytes of the book's own window.
    pub per_book: usize,
    /// The budget shared by the node's books.
    pub budget: BufferBudget,
}

impl Default for BufferLimits {
    /// [`BUFFER_BYTES_PER_BOOK`] and a budget of its own of [`BUFFER_BYTES_PER_NODE`].
    fn default() -> Self {
        Self {
            per_book: BUFFER_BYTES_PER_BOOK,
            budget: BufferBudget::new(BUFFER_BYTES_PER_NODE),
        }
    }
}

/// What the book needs from its driver next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing: keep feeding events.
    Continue,
    /// A (new) REST snapshot: the book is not synced until one aligns.
    FetchSnapshot,
    /// The book is synced but shallower than its full depth, and no deepening is under way
    /// (none began, or the last one failed): ask for a deep snapshot, from spare weight.
    Deepen,
}

/// How an audit of a synced book ended (see `crate::audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditStep {
    /// Still catching up with the live book: keep feeding events.
    Pending,
    /// The book agreed with the exchange's on every level both cover.
    Verified,
    /// The book disagreed on this many levels; the exchange's book replaced it at the same
    /// update id, without leaving sync.
    Repaired(usize),
    /// The audit could not reach the live book's update id (a snapshot too old for its window,
    /// a gap or malformed levels in its copy), or the book left sync: no verdict.
    Failed,
}

/// A DepthCache could not be created or published.
#[derive(Debug, Error)]
pub enum DepthCacheError {
    /// The shared-memory segment refused the book (full, invalid name, removed).
    #[error("shared memory: {0}")]
    Segment(#[from] WriteError),
}

/// One book and everything that keeps it right.
#[derive(Debug)]
pub struct DepthCache {
    exchange: Exchange,
    symbol: String,
    book: OrderBook,
    sync: BookSync<DiffUpdate>,
    meta: BookMeta,
    handle: BookHandle,
    /// The depth a full snapshot gives (the `depth` it was created with).
    full_depth: usize,
    /// Levels per side the segment shows: a book at least this deep is as full as readers can
    /// see (a copy from a peer whose segment shows fewer levels is not "shallow" here).
    shown: usize,
    /// A deeper copy being built beside the live book (see `crate::deepening`).
    shadow: Option<Shadow>,
    /// The prices a shallow start covered (`None` for a full one).
    window: Option<Window>,
    /// The exchange's book being brought to the live update id for an audit (`crate::audit`).
    audit: Option<Shadow>,
    /// What audits found so far, as published.
    audits: Audit,
    /// The prices the book is known to hold every level of (what an audit can compare).
    coverage: Coverage,
    /// The same for the audit's book, from its snapshot.
    audit_coverage: Coverage,
    /// The event being stepped is a connection's replay (see
    /// [`DepthCache::on_replayed_update`]).
    replaying: bool,
    /// The exchange second (`E / 1000`) of the last event applied since the book was loaded;
    /// 0 while unknown. An event of a later second is a hash point (see the module doc).
    hashed_second: u64,
}

impl DepthCache {
    /// Adds the book to the segment (status starting) and returns it buffering; the driver must
    /// fetch a snapshot ([`NextStep::FetchSnapshot`]) once the stream is subscribed.
    ///
    /// `depth` is the snapshot depth (the `limit` asked for); the book keeps that many levels per
    /// side, and the segment shows as many of the best as it holds.
    ///
    /// Its buffered events are bounded by [`BufferLimits::default`] (a budget of its own).
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the segment is full or already holds the book.
    pub fn new(
        exchange: Exchange,
        symbol: &str,
        depth: usize,
        publisher: &mut Publisher,
    ) -> Result<Self, DepthCacheError> {
        Self::with_limits(exchange, symbol, depth, BufferLimits::default(), publisher)
    }

    /// [`DepthCache::new`] with its buffered events bounded by `limits` (a node passes every
    /// book the same budget).
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the segment is full or already holds the book.
    pub fn with_limits(
        exchange: Exchange,
        symbol: &str,
        depth: usize,
        limits: BufferLimits,
        publisher: &mut Publisher,
    ) -> Result<Self, DepthCacheError> {
        let handle = publisher.writer().add_book(exchange.as_str(), symbol)?;
        // The book keeps the full snapshot depth even when the segment shows fewer levels: the
        // orphan rule is about what the snapshot covers, and trimming shallower would let a level
        // from beyond the window slide up next to the top, with a hole above it.
        Ok(Self {
            exchange,
            symbol: symbol.to_owned(),
            book: OrderBook::new(depth),
            sync: BookSync::new(exchange.spec().family, BUFFER_CAPACITY)
                .with_byte_limits(limits.per_book, limits.budget),
            meta: BookMeta::starting(),
            handle,
            full_depth: depth,
            shown: publisher.levels_per_side(),
            shadow: None,
            window: None,
            audit: None,
            audits: Audit::default(),
            coverage: Coverage::default(),
            audit_coverage: Coverage::default(),
            replaying: false,
            hashed_second: 0,
        })
    }

    /// The exchange.
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    /// The market symbol.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The published metadata (status, ids, counters).
    pub fn meta(&self) -> &BookMeta {
        &self.meta
    }

    /// The book as applied so far (not necessarily synced: see [`DepthCache::meta`]).
    pub fn book(&self) -> &OrderBook {
        &self.book
    }

    /// [`DepthCache::on_update`] for an event a connection held and replays after the events of
    /// the connection it replaced (make-before-break, `crate::connection`): it is applied or
    /// ignored by the same rules, but its exchange time does not count as proof that ids went
    /// backwards. The rule that does (`crate::sync`) relies on a duplicate carrying the same `E`
    /// as the copy already applied; Binance does not document that two connections stamp an
    /// update alike, and a false "backwards" here would resync every book of a handover that
    /// exists to resync none. Such a replay still meets the 1 000-ignored fallback.
    ///
    /// # Errors
    /// As [`DepthCache::on_update`].
    pub fn on_replayed_update(
        &mut self,
        update: DiffUpdate,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        self.replaying = true;
        let step = self.on_update(update, receive_time_ns, publisher);
        self.replaying = false;
        step
    }

    /// Steps the book with a live diff event received at `receive_time_ns` (Unix ns).
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_update(
        &mut self,
        update: DiffUpdate,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let copy = self.shadow.is_some().then(|| update.clone());
        let audit_copy = self.audit.is_some().then(|| update.clone());
        let step = self.step_live(update, receive_time_ns, publisher)?;
        if step != NextStep::Continue {
            return Ok(step);
        }
        if let Some(audit_copy) = audit_copy {
            self.step_audit(audit_copy, publisher)?;
        }
        match copy {
            Some(copy) => self.step_shadow(copy, publisher),
            None => Ok(step),
        }
    }

    fn step_live(
        &mut self,
        update: DiffUpdate,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        // A replayed event's time is not compared (see `on_replayed_update`).
        let event_time_ms = if self.replaying {
            0
        } else {
            update.event_time_ms
        };
        match self.sync.on_event_at(update, event_time_ms) {
            EventStep::Buffered | EventStep::Ignore => Ok(NextStep::Continue),
            EventStep::Apply(update) => {
                self.apply_and_publish(&[update], receive_time_ns, publisher)
            }
            // Events after the snapshot were missed: the served snapshot is no longer the book.
            EventStep::SnapshotTooOld => self.lose_sync(OutOfSyncReason::Gap, publisher),
            EventStep::Overflow => self.buffer_overflowed(publisher),
            EventStep::Resync(error) => self.lose_sync(reason_of(&error), publisher),
        }
    }

    /// Steps the book with a REST snapshot (`lastUpdateId` and its levels) of the book's full
    /// depth.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_snapshot(
        &mut self,
        snapshot_id: u64,
        bids: &[LevelUpdate],
        asks: &[LevelUpdate],
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let depth = (self.full_depth, Start::Exchange);
        let id = (snapshot_id, None);
        self.load(id, depth, bids, asks, receive_time_ns, publisher)
    }

    /// Steps the book with a starting book complete to `snapshot.depth` levels: a REST snapshot
    /// (perhaps shallow) or a synced peer's copy at its last update id. Both follow the same
    /// first-event rules: a peer's book at `u` is the exchange's book after the event `u`,
    /// exactly what a snapshot with `lastUpdateId = u` is.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_starting_book(
        &mut self,
        snapshot: &Snapshot,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        self.load_starting_book(snapshot, Start::Exchange, receive_time_ns, publisher)
    }

    /// Steps the book with a synced peer's copy at its last update id, like
    /// [`DepthCache::on_starting_book`], with one difference: a copy no buffered event follows
    /// yet is loaded but not served until the first live event proves it current. A REST
    /// snapshot is taken after the stream was subscribed, so nothing before it can be missing;
    /// a peer's copy may predate events that passed before the subscription took (a peer that
    /// lags or hangs), and serving it would be serving a stale book as synced.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_peer_copy(
        &mut self,
        snapshot: &Snapshot,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        self.load_starting_book(snapshot, Start::Peer, receive_time_ns, publisher)
    }

    fn load_starting_book(
        &mut self,
        snapshot: &Snapshot,
        start: Start,
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let depth = (snapshot.depth as usize).min(self.full_depth);
        let id = (snapshot.last_update_id, snapshot.exchange_time_ms);
        let (bids, asks) = (&snapshot.bids, &snapshot.asks);
        self.load(id, (depth, start), bids, asks, receive_time_ns, publisher)
    }

    /// `true` while a peer's copy (or an options snapshot) is loaded but no live event has
    /// confirmed it yet.
    fn awaits_confirmation(&self) -> bool {
        !self.meta.status.is_synced()
            && matches!(self.sync.state(), SyncState::AwaitingFirstEvent { .. })
    }

    /// `true` when the book is synced but shallower than its full depth (it started shallow).
    pub fn is_shallow(&self) -> bool {
        self.meta.status.is_synced() && self.book.depth() < self.readable_depth()
    }

    /// The depth a full book shows readers: the full snapshot's, at most the segment's levels.
    fn readable_depth(&self) -> usize {
        self.full_depth.min(self.shown)
    }

    /// Starts building a deeper copy beside the synced, shallow book (buffering copies of its
    /// events from now on, bounded by `budget`); the deep snapshot goes to
    /// [`DepthCache::on_deep_snapshot`]. Returns `false` when there is nothing to deepen.
    pub fn begin_deepening(&mut self, budget: BufferBudget) -> bool {
        if !self.is_shallow() {
            return false;
        }
        let family = self.exchange.spec().family;
        self.shadow = Some(Shadow::new(family, budget));
        true
    }

    /// Drops a deepening under way (its shadow and what it buffered).
    pub fn cancel_deepening(&mut self) {
        self.shadow = None;
    }

    /// Starts an audit of the synced book (buffering copies of its events from now on, bounded
    /// by `budget`); the audit's snapshot goes to [`DepthCache::on_audit_snapshot`]. Returns
    /// `false` when the book cannot be audited now: not synced, shallow (its deepening proves
    /// it), or already being audited or deepened.
    pub fn begin_audit(&mut self, budget: BufferBudget) -> bool {
        if !self.meta.status.is_synced()
            || self.is_shallow()
            || self.audit.is_some()
            || self.shadow.is_some()
        {
            return false;
        }
        self.audit = Some(Shadow::new(self.exchange.spec().family, budget));
        true
    }

    /// Drops an audit under way (its copy and what it buffered); no verdict is recorded.
    pub fn cancel_audit(&mut self) {
        self.audit = None;
    }

    /// `true` while an audit is under way.
    pub fn is_auditing(&self) -> bool {
        self.audit.is_some()
    }

    /// What audits found so far (as published in the book's slot).
    pub fn audits(&self) -> Audit {
        self.audits
    }

    /// Hands the audit's REST snapshot to it; the audit ends as soon as the snapshot's book is
    /// at the live update id (now, or with a later live event: then [`DepthCache::is_auditing`]
    /// turns `false` and [`DepthCache::audits`] tells the verdict).
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_audit_snapshot(
        &mut self,
        snapshot: &Snapshot,
        publisher: &mut Publisher,
    ) -> Result<AuditStep, DepthCacheError> {
        let live_id = self.meta.last_update_id;
        let Some(audit) = self.audit.as_mut() else {
            return Ok(AuditStep::Failed);
        };
        let step = audit.on_snapshot(snapshot, self.full_depth, live_id);
        self.audit_coverage = Coverage::of_snapshot(snapshot, self.full_depth, CATCH_UP_MARGIN);
        self.after_audit(step, publisher)
    }

    fn step_audit(
        &mut self,
        copy: DiffUpdate,
        publisher: &mut Publisher,
    ) -> Result<AuditStep, DepthCacheError> {
        let live_id = self.meta.last_update_id;
        let Some(audit) = self.audit.as_mut() else {
            return Ok(AuditStep::Failed);
        };
        let step = audit.on_event(copy, live_id);
        self.after_audit(step, publisher)
    }

    fn after_audit(
        &mut self,
        step: ShadowStep,
        publisher: &mut Publisher,
    ) -> Result<AuditStep, DepthCacheError> {
        match step {
            ShadowStep::Pending => Ok(AuditStep::Pending),
            ShadowStep::Failed => {
                self.audit = None;
                Ok(AuditStep::Failed)
            }
            ShadowStep::Ready => {
                let Some(audit) = self.audit.take() else {
                    return Ok(AuditStep::Failed);
                };
                self.judge(audit.into_book(), publisher)
            }
        }
    }

    /// Compares the live book with the exchange's at the same update id; on a mismatch the
    /// differing levels are set to the exchange's and published between two events (readers see
    /// the book synced throughout), keeping whatever the live book holds beyond the audit's
    /// window (an audit may look shallower than the book). Counts and publishes the audit
    /// either way.
    fn judge(
        &mut self,
        exchanges: OrderBook,
        publisher: &mut Publisher,
    ) -> Result<AuditStep, DepthCacheError> {
        let found = differences(
            (&self.book, self.coverage),
            (&exchanges, self.audit_coverage),
        );
        self.audits.audits = self.audits.audits.saturating_add(1);
        self.audits.verified_at_ms = crate::clock::unix_now_ns() / 1_000_000;
        if found.is_empty() {
            publisher
                .writer()
                .publish_audit(self.handle, &self.audits)?;
            return Ok(AuditStep::Verified);
        }
        self.audits.audit_mismatches = self.audits.audit_mismatches.saturating_add(1);
        let logged: Vec<String> = found
            .iter()
            .take(LOGGED_DIFFERENCES)
            .map(ToString::to_string)
            .collect();
        tracing::warn!(exchange = %self.exchange, symbol = %self.symbol, update_id = self.meta.last_update_id, differing = found.len(), levels = ?logged, "audit found the book wrong; replaced by the exchange's at the same update id");
        if self.correct(&found).is_err() {
            // A level the live book cannot hold at its precision (the exchange's book has finer
            // decimals than any event brought): the exchange's book replaces it whole.
            self.book = exchanges;
            self.book.set_depth(self.full_depth);
            self.coverage = self.audit_coverage;
            self.window = None;
        }
        self.cover(publisher);
        // The corrected book at this id: a replica that disagreed here agrees again.
        publisher.set_top_hash(self.handle, self.top_hash())?;
        publisher.publish(self.handle, &self.meta, &mut self.book)?;
        publisher
            .writer()
            .publish_audit(self.handle, &self.audits)?;
        Ok(AuditStep::Repaired(found.len()))
    }

    /// Hands a deeper snapshot (or a peer's deeper copy) to the book's shadow; the book is
    /// replaced by the shadow's as soon as that is synced at the live update id.
    /// [`NextStep::Deepen`] asks for another one later (the snapshot could not be used).
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn on_deep_snapshot(
        &mut self,
        snapshot: &Snapshot,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let live_id = self.meta.last_update_id;
        if !self.is_shallow() {
            self.shadow = None;
            return Ok(NextStep::Continue);
        }
        if (snapshot.depth as usize) <= self.book.depth() {
            // Not deeper (a request merged with a shallow one): ask again.
            self.shadow = None;
            return Ok(NextStep::Deepen);
        }
        let Some(shadow) = self.shadow.as_mut() else {
            return Ok(NextStep::Continue);
        };
        let step = shadow.on_snapshot(snapshot, self.full_depth, live_id);
        self.after_shadow(step, publisher)
    }

    fn step_shadow(
        &mut self,
        copy: DiffUpdate,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let live_id = self.meta.last_update_id;
        let Some(shadow) = self.shadow.as_mut() else {
            return Ok(NextStep::Continue);
        };
        let step = shadow.on_event(copy, live_id);
        self.after_shadow(step, publisher)
    }

    fn after_shadow(
        &mut self,
        step: ShadowStep,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        match step {
            ShadowStep::Pending => Ok(NextStep::Continue),
            ShadowStep::Failed => {
                self.shadow = None;
                Ok(NextStep::Deepen)
            }
            ShadowStep::Ready => {
                let Some(shadow) = self.shadow.take() else {
                    return Ok(NextStep::Continue);
                };
                tracing::info!(exchange = %self.exchange, symbol = %self.symbol, depth = shadow.depth(), "book deepened");
                let shown = shadow.depth().min(publisher.levels_per_side());
                self.meta.depth = u32::try_from(shown).unwrap_or(u32::MAX);
                self.book = shadow.into_book();
                self.window = None;
                // Same update id and receive time: only the depth changed.
                publisher.publish(self.handle, &self.meta, &mut self.book)?;
                Ok(NextStep::Continue)
            }
        }
    }

    /// Loads a starting book: `snapshot_id` with the exchange's time of it (see
    /// [`Snapshot::exchange_time_ms`]), of `depth` levels from `start`.
    fn load(
        &mut self,
        (snapshot_id, exchange_time_ms): (u64, Option<u64>),
        (depth, start): (usize, Start),
        bids: &[LevelUpdate],
        asks: &[LevelUpdate],
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        if start == Start::Exchange && self.awaits_confirmation() {
            // A peer's copy waits for a live event to prove it current; the exchange's snapshot,
            // taken after the subscription, proves its own book current (in a quiet market the
            // event may not come for hours): it replaces the copy.
            self.sync.restart();
        }
        let events = match self.sync.on_snapshot(snapshot_id) {
            SnapshotStep::Load(events) => events,
            SnapshotStep::TooOld => return Ok(NextStep::FetchSnapshot),
            SnapshotStep::Unneeded => return Ok(NextStep::Continue),
            SnapshotStep::Resync(error) => return self.lose_sync(reason_of(&error), publisher),
        };
        // A new snapshot never inherits old levels, nor their exponents (one odd level of an
        // earlier, bad copy must not make every later snapshot unrepresentable), nor a deepening
        // begun before it.
        self.book = OrderBook::new(depth);
        self.shadow = None;
        self.audit = None;
        if self.apply_levels(bids, asks).is_err() {
            self.sync.restart();
            return self.lose_sync(OutOfSyncReason::MalformedMessage, publisher);
        }
        self.book.trim();
        self.coverage = Coverage::of_loaded(&self.book);
        self.window = (depth < self.readable_depth()).then(|| Window::of(&self.book));
        self.cover(publisher);
        self.meta.last_update_id = snapshot_id;
        // The exchange's book at the snapshot: a point replicas share when no event followed
        // it (a quiet market). It rides on the next publish, whichever comes first.
        self.hashed_second = 0;
        publisher.set_top_hash(self.handle, self.top_hash())?;
        // The book is the exchange's state as of the snapshot: until an event follows, its time
        // is the snapshot's own (`T` or `E`), or none (0) when the exchange gives none (spot):
        // never when the snapshot arrived, which would make a lagging snapshot look fresh, and
        // never an earlier episode's.
        self.meta.event_time_ms = exchange_time_ms.unwrap_or(0);
        self.meta.freshness = match exchange_time_ms {
            Some(_) => Freshness::SNAPSHOT_TIME,
            None => Freshness::SNAPSHOT_TIME | Freshness::NO_EXCHANGE_TIME,
        };
        if events.is_empty() && (start == Start::Peer || self.exchange.is_options()) {
            // Loaded, not served: the first live event decides (see `on_peer_copy`). Options
            // snapshots lag the stream by up to ~30 s (§4.4): served alone, the book could be
            // that old and miss updates while it claims to be synced.
            return Ok(NextStep::Continue);
        }
        if events.is_empty() && self.restart_if_crossed() {
            return self.lose_sync(OutOfSyncReason::Crossed, publisher);
        }
        // The buffered events' times, for the rule on ids going backwards (`crate::sync`).
        self.sync
            .set_last_event_time(events.last().map_or(0, |event| event.event_time_ms));
        if events.is_empty() {
            // The stream was live before the snapshot was asked for and has brought nothing
            // newer: the book is exactly the exchange's book at the snapshot. Serving it keeps
            // quiet markets available; the next event is still checked against the snapshot, and
            // one that does not fit puts the book out of sync.
            self.meta.status = BookStatus::Synced;
            self.meta.receive_time_ns = receive_time_ns;
            publisher.publish(self.handle, &self.meta, &mut self.book)?;
            return Ok(NextStep::Continue);
        }
        self.apply_and_publish(&events, receive_time_ns, publisher)
    }

    /// Marks the book out of sync for a reason outside the diff stream (disconnect, silence,
    /// `serverShutdown`, a failed snapshot, the refresh interval) and starts buffering again.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn resync(
        &mut self,
        reason: OutOfSyncReason,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        self.sync.restart();
        self.lose_sync(reason, publisher)
    }

    /// Publishes that a snapshot download failed for `reason` ([`OutOfSyncReason::SnapshotFailed`],
    /// or [`OutOfSyncReason::Delisted`] when the exchange no longer lists the market), keeping
    /// the events buffered so far (the next snapshot may still align with them). A synced book
    /// is left alone: the failure was of a request it no longer needs.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when the book was removed from the segment under it.
    pub fn snapshot_failed(
        &mut self,
        reason: OutOfSyncReason,
        publisher: &mut Publisher,
    ) -> Result<(), DepthCacheError> {
        if self.meta.status.is_synced() {
            return Ok(());
        }
        self.meta.status = BookStatus::OutOfSync(reason);
        publisher.publish_meta(self.handle, &self.meta)?;
        Ok(())
    }

    /// Bytes of events buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.sync.buffered_bytes()
    }

    /// The node's buffer budget ran out under this book: its buffer was dropped. The book was
    /// not synced (only a book waiting for a snapshot buffers) and its snapshot is still coming,
    /// so nothing new is asked for; the reason says why its wait may take another snapshot.
    fn buffer_overflowed(
        &mut self,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let status = BookStatus::OutOfSync(OutOfSyncReason::BufferOverflow);
        if self.meta.status != status {
            tracing::debug!(exchange = %self.exchange, symbol = %self.symbol, "event buffer budget spent; buffering starts over");
            self.meta.status = status;
            publisher.publish_meta(self.handle, &self.meta)?;
        }
        Ok(NextStep::Continue)
    }

    /// Removes the book from the segment: readers get "not found" from now on.
    ///
    /// # Errors
    /// [`DepthCacheError::Segment`] when it was already removed.
    pub fn remove(self, publisher: &mut Publisher) -> Result<(), DepthCacheError> {
        Ok(publisher.writer().remove_book(self.handle)?)
    }

    fn apply_and_publish(
        &mut self,
        events: &[DiffUpdate],
        receive_time_ns: u64,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        let mut top_hash = None;
        for event in events {
            let second = event.event_time_ms / 1000;
            if second > self.hashed_second {
                // The first event of a new exchange second (0: its time is unknown, never one):
                // the book as it stood at the end of the last one, unless that is unknown too.
                if self.hashed_second > 0 {
                    top_hash = Some(self.top_hash());
                }
                self.hashed_second = second;
            }
            if self.apply_levels(&event.bids, &event.asks).is_err() {
                self.sync.restart();
                return self.lose_sync(OutOfSyncReason::MalformedMessage, publisher);
            }
            // The orphan rule after every event, not only every message batch.
            self.trim();
            self.meta.last_update_id = event.ids.last;
            self.meta.event_time_ms = event.event_time_ms;
            // The event's own `E` from now on.
            self.meta.freshness = Freshness::empty();
        }
        if matches!(self.sync.state(), SyncState::Buffering) {
            return Ok(NextStep::Continue);
        }
        if self.restart_if_crossed() {
            return self.lose_sync(OutOfSyncReason::Crossed, publisher);
        }
        self.meta.status = BookStatus::Synced;
        self.meta.receive_time_ns = receive_time_ns;
        self.cover(publisher);
        if let Some(top_hash) = top_hash {
            publisher.set_top_hash(self.handle, top_hash)?;
        }
        publisher.publish(self.handle, &self.meta, &mut self.book)?;
        Ok(NextStep::Continue)
    }

    /// The hash of the book's top levels as they stand, at its update id.
    fn top_hash(&self) -> TopHash {
        let book = &self.book;
        TopHash {
            hash: ubdcc_shm::top_hash_of(
                book.price_exponent(),
                book.quantity_exponent(),
                book.best_first(Side::Bids),
                book.best_first(Side::Asks),
            ),
            update_id: self.meta.last_update_id,
        }
    }

    /// Whether the book is crossed (see [`crossed_at`]); if it is, the sync machine starts over
    /// (a crossed book is never published as synced) and the prices are logged.
    fn restart_if_crossed(&mut self) -> bool {
        let Some((bid, ask)) = crossed_at(&self.book) else {
            return false;
        };
        let exponent = self.book.price_exponent();
        let (bid, ask) = (
            ubdcc_shm::Decimal::new(bid, exponent),
            ubdcc_shm::Decimal::new(ask, exponent),
        );
        tracing::warn!(exchange = %self.exchange, symbol = %self.symbol, %bid, %ask, update_id = self.meta.last_update_id, "crossed book; resyncing");
        self.sync.restart();
        true
    }

    /// Sets each differing level to the exchange's quantity (none: removed), then trims.
    fn correct(&mut self, found: &[LevelDifference]) -> Result<(), BookError> {
        let zero = ubdcc_shm::Decimal::new(0, 0);
        for difference in found {
            let quantity = difference.exchange.unwrap_or(zero);
            self.book
                .apply(difference.side, difference.price, quantity)?;
        }
        self.trim();
        Ok(())
    }

    /// Trims the book to its depth (the orphan rule); a side that lost levels to it is known
    /// only down to its worst kept level from now on (see `crate::audit::Coverage`).
    fn trim(&mut self) {
        let depth = self.book.depth();
        let over = [Side::Bids, Side::Asks].map(|side| self.book.len(side) > depth);
        self.book.trim();
        for (side, over) in [Side::Bids, Side::Asks].into_iter().zip(over) {
            if over {
                self.coverage.trimmed(&self.book, side);
            }
        }
    }

    /// Sets the depth readers are promised: the snapshot's (at most the segment's levels), or
    /// for a shallow start the levels still within the prices its snapshot covered.
    fn cover(&mut self, publisher: &Publisher) {
        let depth = match &self.window {
            Some(window) => window.covered(&self.book),
            None => self.book.depth(),
        };
        let shown = depth.min(publisher.levels_per_side());
        self.meta.depth = u32::try_from(shown).unwrap_or(u32::MAX);
    }

    fn apply_levels(
        &mut self,
        bids: &[LevelUpdate],
        asks: &[LevelUpdate],
    ) -> Result<(), BookError> {
        for level in bids {
            self.book.apply(Side::Bids, level.price, level.quantity)?;
        }
        for level in asks {
            self.book.apply(Side::Asks, level.price, level.quantity)?;
        }
        Ok(())
    }

    fn lose_sync(
        &mut self,
        reason: OutOfSyncReason,
        publisher: &mut Publisher,
    ) -> Result<NextStep, DepthCacheError> {
        // A resync is counted when a synced book loses sync; failing again while out of sync is
        // the same episode.
        if self.meta.status == BookStatus::Synced {
            self.meta.resyncs += 1;
        }
        self.shadow = None;
        self.audit = None;
        if reason == OutOfSyncReason::Gap {
            self.meta.gaps += 1;
        }
        self.meta.status = BookStatus::OutOfSync(reason);
        publisher.publish_meta(self.handle, &self.meta)?;
        Ok(NextStep::FetchSnapshot)
    }
}

/// Where a starting book came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The exchange's REST snapshot.
    Exchange,
    /// A synced peer's copy.
    Peer,
}

fn reason_of(error: &SyncError) -> OutOfSyncReason {
    match error {
        SyncError::Gap { .. } => OutOfSyncReason::Gap,
        SyncError::MissingPreviousId { .. } => OutOfSyncReason::MalformedMessage,
        SyncError::Backwards { .. } => OutOfSyncReason::IdsBackwards,
    }
}

/// The best bid and ask prices (mantissas at the book's one price exponent) when the bid has
/// reached the ask: no exchange book is ever like that, so a missed update or a change the
/// exchange never announced put it there.
fn crossed_at(book: &OrderBook) -> Option<(u64, u64)> {
    let bid = book.level(Side::Bids, 0)?.price;
    let ask = book.level(Side::Asks, 0)?.price;
    (bid >= ask).then_some((bid, ask))
}
