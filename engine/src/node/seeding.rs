//! The node's side of peer seeding and progressive depth (issue 12): a book that needs a
//! starting book asks its peers first ([`Node::try_seed`]), waits for a peer that is getting
//! the book when mgmt's plan says one is, and falls back to the exchange's snapshot otherwise;
//! a synced book that started shallow is deepened beside itself ([`Node::request_deepening`]).
//!
//! Copies run in tasks of their own (a shared-memory copy in a blocking task, an HTTP copy on
//! the runtime) and come back to the loop as [`SeedOutcome`]s, so no book is touched from two
//! places.

use std::time::Duration;

use tokio::time::Instant;

use ubdcc_shm::{BookStatus, OutOfSyncReason};

use super::Node;
use crate::depth_cache::NextStep;
use crate::peer_seed::{SeedError, SeedPlan, SeedSource};
use crate::snapshot::{BookId, Snapshot, SnapshotKind};

/// Copies loaded for one book before it gives up on peers and uses the exchange's snapshot: a
/// copy that does not fit the buffered stream (the peer lags the stream we buffer) is asked for
/// again at [`SEED_RETRY`]; one that no live event has confirmed within [`CONFIRM_WAIT`] too.
const SEED_TRIES: u32 = 3;
const SEED_RETRY: Duration = Duration::from_millis(100);
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// A replica waiting for the peer that gets the book first looks again after this long,
/// doubling up to [`MAX_PEER_POLL`] (1 000 waiting books must not flood their peers).
const FIRST_PEER_POLL: Duration = Duration::from_millis(100);
const MAX_PEER_POLL: Duration = Duration::from_secs(2);

/// Longest wait for that peer when it says nothing of when its snapshot is due: past it the
/// replica pays for its own snapshot.
const PEER_WAIT: Duration = Duration::from_secs(120);

/// A peer whose snapshot is due (its queue's estimate) is waited for until this long after
/// that estimate: estimates assume nothing more urgent arrives.
const PEER_ETA_MARGIN: Duration = Duration::from_secs(30);

/// A deepening that failed (its snapshot could not be bridged to the live book), or that found
/// no deeper peer yet, is tried again after this long: the book is served meanwhile.
const DEEPEN_RETRY: Duration = Duration::from_secs(30);

/// Deeper copies a replica asks of its peers before it pays for a full snapshot itself: the
/// replica that pays first for its book (or one without peers) asks once (a peer may be deeper
/// already), the others for ~5 minutes of [`DEEPEN_RETRY`]s (the payer deepens from spare
/// weight meanwhile).
fn deepen_peer_tries(plan: &SeedPlan) -> u32 {
    if plan.pays_first || plan.peers.is_empty() {
        1
    } else {
        10
    }
}

/// Deepening starts only this long after the node last asked for a new book's snapshot:
/// measured with 1 000 books on one IP, deepening snapshots sent while books were still being
/// added took the spare weight the last new books needed, a minute later for ~100 of them.
const DEEPEN_QUIET: Duration = Duration::from_secs(10);

/// Where seeding stands for one book until it is synced again (a copy that a live event then
/// refuses ends an episode, and the tries must count on across it).
#[derive(Debug, Default)]
pub(super) struct SeedState {
    /// Copies loaded so far.
    tries: u32,
    /// Where the copy in the book came from, until the book is synced (then it is counted).
    loaded_from: Option<SeedSource>,
    /// When the book began waiting for a peer that is not synced yet.
    waiting_since: Option<Instant>,
    /// Wait before looking at that peer again.
    poll: Duration,
    /// The episode a copy is on its way for.
    in_flight: Option<u64>,
    /// No peer can help in this episode: the exchange's snapshot it is.
    gave_up: bool,
    /// Deeper copies asked of peers in this synced stretch.
    deepen_peer_tries: u32,
}

impl SeedState {
    /// The book's starting book no longer is a peer's copy (the exchange's snapshot came).
    pub(super) fn clear_copy(&mut self) {
        self.loaded_from = None;
    }
}

/// A copy, or why none came, for the loop.
pub(super) struct SeedOutcome {
    book: BookId,
    epoch: u64,
    kind: SnapshotKind,
    result: Result<(Snapshot, SeedSource), SeedError>,
}

impl Node {
    /// Starts a copy from peers for `book` if seeding may serve a request of `kind`; returns
    /// `true` when the book is taken care of (a copy is on its way) and no REST request is due.
    pub(super) fn try_seed(&mut self, book: BookId, kind: SnapshotKind) -> bool {
        let Some(seeder) = &self.seeder else {
            return false;
        };
        // A verification and the refresh interval ask the exchange itself, by definition:
        // replicas refreshing from each other would never go back to the source.
        if matches!(kind, SnapshotKind::Verify | SnapshotKind::Audit) {
            return false;
        }
        let Some(entry) = self.books.get_mut(&book) else {
            return false;
        };
        if entry.cache.meta().status == BookStatus::OutOfSync(OutOfSyncReason::Refresh) {
            return false;
        }
        let tried = match kind {
            SnapshotKind::Deepen => {
                let plan = seeder.plan(entry.spec.exchange, &entry.spec.symbol);
                entry.seed.deepen_peer_tries >= deepen_peer_tries(&plan)
            }
            _ => entry.seed.gave_up || entry.seed.tries >= SEED_TRIES,
        };
        if tried {
            return false;
        }
        if entry.seed.in_flight == Some(entry.epoch) {
            return true;
        }
        if kind == SnapshotKind::Deepen {
            entry.seed.deepen_peer_tries += 1;
        }
        entry.seed.in_flight = Some(entry.epoch);
        let (exchange, symbol) = (entry.spec.exchange, entry.spec.symbol.clone());
        let min_depth = match kind {
            SnapshotKind::Deepen => u32::try_from(entry.cache.book().depth()).unwrap_or(u32::MAX),
            _ => 0,
        };
        let (seeder, outcomes, epoch) = (seeder.clone(), self.seed_tx.clone(), entry.epoch);
        tokio::spawn(async move {
            let result = seeder.fetch(exchange, &symbol, min_depth).await;
            // The loop gone means the node is stopping.
            outcomes
                .send(SeedOutcome {
                    book,
                    epoch,
                    kind,
                    result,
                })
                .ok();
        });
        true
    }

    /// Acts on a copy from peers (or on why none came).
    pub(super) fn on_seed(&mut self, outcome: SeedOutcome) {
        let Some(entry) = self.books.get_mut(&outcome.book) else {
            return;
        };
        if entry.seed.in_flight == Some(outcome.epoch) {
            entry.seed.in_flight = None;
        }
        if outcome.epoch != entry.epoch {
            return;
        }
        let book = outcome.book;
        if outcome.kind != SnapshotKind::Deepen && entry.cache.meta().status.is_synced() {
            // Synced meanwhile (the exchange's snapshot, or a confirmed earlier copy).
            return;
        }
        if outcome.kind == SnapshotKind::Deepen {
            match outcome.result {
                Ok((snapshot, _)) => self.on_deep_snapshot(book, Some(snapshot)),
                // No deeper peer yet. The replica that pays first for its book asks the
                // exchange (spare weight); the others ask their peers again later, then the
                // exchange: two replicas of one book should not both pay to deepen.
                Err(_) => {
                    let tries = self.seeder.as_ref().map_or(0, |seeder| {
                        deepen_peer_tries(&seeder.plan(entry.spec.exchange, &entry.spec.symbol))
                    });
                    if entry.seed.deepen_peer_tries >= tries {
                        self.request_snapshot(book);
                    } else {
                        self.schedule_deepening(book);
                    }
                }
            }
            return;
        }
        match outcome.result {
            Ok((snapshot, source)) => self.seeded(book, &snapshot, source),
            Err(SeedError::NotReady) if self.may_wait_for_peer(book) => {}
            Err(_) => self.give_up_seeding(book),
        }
    }

    /// Loads a copy as the book's starting book.
    fn seeded(&mut self, book: BookId, snapshot: &Snapshot, source: SeedSource) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        entry.seed.tries += 1;
        entry.seed.loaded_from = Some(source);
        let now = crate::clock::unix_now_ns();
        if let Some(recorder) = &entry.recorder {
            recorder.snapshot(entry.spec.exchange, &entry.spec.symbol, snapshot);
        }
        let step = entry.cache.on_peer_copy(snapshot, now, &mut self.publisher);
        match step {
            Ok(NextStep::FetchSnapshot) => {
                // The copy is older than the stream buffered since: the peer lags; ask again.
                entry.seed.loaded_from = None;
                if entry.seed.tries >= SEED_TRIES {
                    self.give_up_seeding(book);
                    return;
                }
                self.retries.push((Instant::now() + SEED_RETRY, book));
            }
            Ok(NextStep::Continue) if !entry.cache.meta().status.is_synced() => {
                // Loaded, waiting for a live event to confirm it; a quiet market (or a peer
                // whose copy the stream never meets) is asked again, then left to the exchange.
                self.retries.push((Instant::now() + CONFIRM_WAIT, book));
            }
            step => self.after(book, step),
        }
    }

    /// The book became synced: counts a peer's copy it came from, and seeding starts afresh
    /// for its next loss of sync.
    pub(super) fn synced_after_seeding(&mut self, book: BookId) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        let seed = std::mem::take(&mut entry.seed);
        let (Some(source), Some(seeder)) = (seed.loaded_from, &self.seeder) else {
            return;
        };
        // The exchange has not seen these levels from us: the next audit compares all of them.
        entry.peer_copy_unaudited = true;
        let spec = &entry.spec;
        let update_id = entry.cache.meta().last_update_id;
        tracing::info!(exchange = %spec.exchange, symbol = %spec.symbol, ?source, update_id, "DepthCache started from a peer's copy");
        seeder.stats().seeded(source);
    }

    /// `true` when the book waits for a peer getting it first (and will look again).
    fn may_wait_for_peer(&mut self, book: BookId) -> bool {
        let Some(seeder) = &self.seeder else {
            return false;
        };
        let Some(entry) = self.books.get_mut(&book) else {
            return false;
        };
        let plan = seeder.plan(entry.spec.exchange, &entry.spec.symbol);
        if !plan.wait_for_peer {
            return false;
        }
        let now = Instant::now();
        let since = *entry.seed.waiting_since.get_or_insert(now);
        // The peer's own snapshot is due later (it waits in its queue): keep waiting for it.
        let peer_due = plan
            .peer_eta
            .is_some_and(|eta| eta + PEER_ETA_MARGIN > std::time::SystemTime::now());
        if now.duration_since(since) >= PEER_WAIT && !peer_due {
            tracing::warn!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, waited_secs = PEER_WAIT.as_secs(), "the peer getting this book first is not synced yet; downloading a snapshot");
            return false;
        }
        let poll = entry.seed.poll.max(FIRST_PEER_POLL);
        entry.seed.poll = (poll * 2).min(MAX_PEER_POLL);
        self.retries.push((now + poll, book));
        true
    }

    /// No peer can help in this episode: the exchange's snapshot.
    fn give_up_seeding(&mut self, book: BookId) {
        if let Some(entry) = self.books.get_mut(&book) {
            entry.seed.gave_up = true;
        }
        self.request_snapshot(book);
    }

    /// Starts deepening a synced, shallow book: a shadow buffers beside it, and a deeper copy
    /// (a peer's, else a full snapshot from spare weight) is asked for.
    pub(super) fn request_deepening(&mut self, book: BookId) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        if entry.deepening {
            return;
        }
        if entry.verifying {
            // One snapshot request per book: after the verification.
            self.schedule_deepening(book);
            return;
        }
        let now = Instant::now();
        if let Some(quiet) = self
            .last_new_request
            .map(|at| at + DEEPEN_QUIET)
            .filter(|quiet| *quiet > now)
        {
            // Books are still being started here: deepening spends spare weight they may need.
            self.retries.push((quiet, book));
            return;
        }
        if !entry.cache.begin_deepening(self.shadow_budget.clone()) {
            return;
        }
        entry.deepening = true;
        self.request_snapshot(book);
    }

    /// Deepening again after [`DEEPEN_RETRY`] (a failed one, or peers not deeper yet); the shadow
    /// is dropped meanwhile, so it holds no buffer while it waits.
    pub(super) fn schedule_deepening(&mut self, book: BookId) {
        if let Some(entry) = self.books.get_mut(&book) {
            entry.deepening = false;
            entry.cache.cancel_deepening();
        }
        self.retries.push((Instant::now() + DEEPEN_RETRY, book));
    }

    /// Hands a deep snapshot (or a peer's deeper copy) to the book's shadow; `None` when the
    /// download failed.
    pub(super) fn on_deep_snapshot(&mut self, book: BookId, snapshot: Option<Snapshot>) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        entry.deepening = false;
        let Some(snapshot) = snapshot else {
            self.schedule_deepening(book);
            return;
        };
        let step = entry.cache.on_deep_snapshot(&snapshot, &mut self.publisher);
        self.after(book, step);
    }
}
