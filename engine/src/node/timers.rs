//! The node's timers: snapshot retries with backoff, the silence check that verifies quiet
//! books, the forced `refresh_interval`, and the long retry of delisted markets. Each runs
//! from the node's loop; none touches a book from another task.

use tokio::time::Instant;
use ubdcc_shm::{BookStatus, OutOfSyncReason};

use super::{DELISTED_RETRY, MAX_BOOK_SILENCE, MAX_SNAPSHOT_RETRY, Node};
use crate::connection::ConnectionCommand;
use crate::snapshot::{BookId, SnapshotError, SnapshotOutcome};

impl Node {
    /// The exchange answered -1121 for `book`'s market: out of sync as delisted, asked again
    /// only after [`DELISTED_RETRY`] (its stream stays subscribed: a relisted market's events
    /// are buffered for the snapshot that brings it back).
    pub(super) fn delisted(&mut self, book: BookId, error: &SnapshotError) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        if entry.cache.meta().status != BookStatus::OutOfSync(OutOfSyncReason::Delisted) {
            tracing::warn!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, %error, retry_secs = DELISTED_RETRY.as_secs(), "the exchange does not list this market");
        }
        if let Err(error) = entry
            .cache
            .snapshot_failed(OutOfSyncReason::Delisted, &mut self.publisher)
        {
            tracing::error!(%error, book, "publishing out of sync failed");
        }
        self.retries.push((Instant::now() + DELISTED_RETRY, book));
    }

    pub(super) fn schedule_retry(&mut self, book: BookId) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        let delay = entry.retry_delay;
        entry.retry_delay = (delay * 2).min(MAX_SNAPSHOT_RETRY);
        self.retries.push((Instant::now() + delay, book));
    }

    pub(super) fn retry_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.retries.drain(..).partition(|(when, _)| *when <= now);
        self.retries = later;
        for (_, book) in due {
            let Some(entry) = self.books.get(&book) else {
                continue;
            };
            if !entry.cache.meta().status.is_synced() {
                self.request_snapshot(book);
            } else if entry.cache.is_shallow() {
                // A deepening that failed earlier, due again.
                self.request_deepening(book);
            }
            // Else synced meanwhile (by a peer's copy or another answer): nothing is due.
        }
    }

    /// Asks for a verification snapshot for every synced book whose stream has been silent for
    /// longer than its threshold.
    ///
    /// A silent stream cannot be told from a quiet market by the stream alone. The snapshot can:
    /// if its `lastUpdateId` is not beyond the book's, nothing was missed (a quiet market, checked
    /// less often from then on); if it is, events went missing without a word (see
    /// [`Node::verify`]).
    pub(super) fn silence_due(&mut self) {
        let now = Instant::now();
        let due: Vec<BookId> = self
            .books
            .iter_mut()
            .filter(|(_, entry)| {
                !entry.verifying
                    && entry.audit == super::AuditState::Idle
                    && entry.cache.meta().status.is_synced()
                    && now.duration_since(entry.last_event) >= entry.silence_threshold
            })
            .map(|(book, entry)| {
                entry.verifying = true;
                entry.verify_from = entry.cache.meta().last_update_id;
                *book
            })
            .collect();
        for book in due {
            self.request_snapshot(book);
        }
    }

    /// Judges a verification snapshot of a synced book.
    pub(super) fn verify(&mut self, outcome: SnapshotOutcome) {
        let book = outcome.book;
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        entry.last_event = Instant::now();
        let snapshot_id = match outcome.result {
            Ok(snapshot) => snapshot.last_update_id,
            Err(error) if error.is_unknown_symbol() => {
                // The market went while its book was synced: what it shows is no market's book.
                tracing::warn!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, %error, retry_secs = DELISTED_RETRY.as_secs(), "the exchange no longer lists this market");
                entry.begin_episode();
                let (exchange, symbol) = (entry.spec.exchange, &entry.spec.symbol);
                let reason = OutOfSyncReason::Delisted;
                crate::record::resynced(entry.recorder.as_ref(), exchange, symbol, reason);
                if let Err(error) = entry
                    .cache
                    .resync(OutOfSyncReason::Delisted, &mut self.publisher)
                {
                    tracing::error!(%error, book, "publishing out of sync failed");
                }
                self.delisted(book, &error);
                return;
            }
            // No verdict; the next silence check tries again.
            Err(_) => return,
        };
        // The exchange's book older than the one this book had when it asked: the exchange's
        // ids went backwards (a reset), and the stream's events, all ignored as old, will never
        // move the book again. Options snapshots lag the stream by design (§4.4), so for them
        // an older snapshot says nothing.
        let backwards = snapshot_id < entry.verify_from && !entry.spec.exchange.is_options();
        if snapshot_id <= entry.cache.meta().last_update_id && !backwards {
            entry.silence_threshold = (entry.silence_threshold * 2).min(MAX_BOOK_SILENCE);
            return;
        }
        let reason = if backwards {
            OutOfSyncReason::IdsBackwards
        } else {
            OutOfSyncReason::StreamSilent
        };
        tracing::warn!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, snapshot_id, %reason, "stream silent while the market moved; resyncing");
        entry.silence_threshold = self.config.book_silence;
        entry.begin_episode();
        let (exchange, symbol) = (entry.spec.exchange, &entry.spec.symbol);
        crate::record::resynced(entry.recorder.as_ref(), exchange, symbol, reason);
        if let Err(error) = entry.cache.resync(reason, &mut self.publisher) {
            tracing::error!(%error, book, "publishing out of sync failed");
        }
        // A fresh subscription for just this stream; its confirmation brings the snapshot.
        let connection = &self.connections[entry.connection];
        connection.send(ConnectionCommand::Unsubscribe { book });
        connection.send(ConnectionCommand::Subscribe {
            book,
            stream: entry.stream.clone(),
            record: entry.recorder.is_some(),
        });
    }

    /// Resyncs books whose `refresh_interval` has passed (the original's forced refresh).
    pub(super) fn refresh_due(&mut self) {
        let now = Instant::now();
        let due: Vec<BookId> = self
            .books
            .iter()
            .filter(|(_, entry)| matches!((entry.spec.refresh_interval, entry.synced_since), (Some(every), Some(since)) if now.duration_since(since) >= every))
            .map(|(book, _)| *book)
            .collect();
        for book in due {
            let Some(entry) = self.books.get_mut(&book) else {
                continue;
            };
            let (exchange, symbol) = (entry.spec.exchange, &entry.spec.symbol);
            let reason = OutOfSyncReason::Refresh;
            crate::record::resynced(entry.recorder.as_ref(), exchange, symbol, reason);
            let step = entry
                .cache
                .resync(OutOfSyncReason::Refresh, &mut self.publisher);
            self.after(book, step);
        }
    }
}
