//! The recent past of one market, so that the simulator can tell the exact book as it was right
//! after any recent update id (the truth endpoint), serve a lagging options snapshot, and serve a
//! deliberately stale snapshot.
//!
//! The history is a run of updates plus a full copy of the book every checkpoint interval
//! (a sixteenth of the retained updates, at least [`CHECKPOINT_EVERY`]); a past book is the
//! nearest checkpoint at or before the wanted id with the updates after it replayed. Old updates are dropped a whole checkpoint interval at a
//! time, so the oldest retained state is always a checkpoint.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::book::Book;
use crate::error::TruthError;
use crate::update::Update;

/// The shortest interval, in updates, between two full copies of the book. Longer histories use
/// a sixteenth of their length, so a market holds about 17 copies (≈ 3000 levels each) however
/// long its history, and a replay stays a sixteenth of it.
pub(crate) const CHECKPOINT_EVERY: usize = 256;

/// An update and the instant it was generated (for the options snapshot lag).
#[derive(Debug)]
struct Record {
    update: Arc<Update>,
    generated_at: Instant,
}

/// The book right after `update_id`.
#[derive(Debug)]
struct Checkpoint {
    update_id: u64,
    /// `T` of the update that produced the book.
    transaction_time_ms: u64,
    book: Book,
}

/// A book as it was after a given update.
#[derive(Debug)]
pub(crate) struct PastBook {
    /// The update id the book is at.
    pub(crate) update_id: u64,
    /// `T` of the update that produced it.
    pub(crate) transaction_time_ms: u64,
    /// The book.
    pub(crate) book: Book,
}

/// The retained past of one market.
#[derive(Debug)]
pub(crate) struct History {
    /// Updates newer than the oldest checkpoint, oldest first.
    records: VecDeque<Record>,
    /// Checkpoints, oldest first; never empty.
    checkpoints: VecDeque<Checkpoint>,
    /// Updates to keep at least (up to two checkpoint intervals more may be kept).
    retain: usize,
    /// Updates between checkpoints.
    checkpoint_every: usize,
    /// Updates recorded since the newest checkpoint.
    since_checkpoint: usize,
}

impl History {
    /// A history that starts with `book` at `update_id` (as of transaction time
    /// `transaction_time_ms`) and keeps at least `retain` updates.
    pub(crate) fn new(
        book: &Book,
        update_id: u64,
        transaction_time_ms: u64,
        retain: usize,
    ) -> History {
        History {
            records: VecDeque::new(),
            checkpoints: VecDeque::from([Checkpoint {
                update_id,
                transaction_time_ms,
                book: book.clone(),
            }]),
            retain,
            checkpoint_every: (retain / 16).max(CHECKPOINT_EVERY),
            since_checkpoint: 0,
        }
    }

    /// Records `update`, which produced `book_after`.
    pub(crate) fn push(&mut self, update: Arc<Update>, book_after: &Book, now: Instant) {
        let (update_id, transaction_time_ms) = (update.last_update_id, update.transaction_time_ms);
        self.records.push_back(Record {
            update,
            generated_at: now,
        });
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoints.push_back(Checkpoint {
                update_id,
                transaction_time_ms,
                book: book_after.clone(),
            });
            self.since_checkpoint = 0;
            self.trim();
        }
    }

    /// Records that the book at the newest update id is now `book` (changed without an event,
    /// `crate::glitch`): from now on the truth at that id, and every later one, follows it.
    /// Earlier ids keep their books.
    pub(crate) fn rewrite_newest(&mut self, book: &Book, transaction_time_ms: u64) {
        self.checkpoints.push_back(Checkpoint {
            update_id: self.newest_update_id(),
            transaction_time_ms,
            book: book.clone(),
        });
        self.since_checkpoint = 0;
        self.trim();
    }

    /// Starts over from `book` at `update_id` (the ids were reset lower, `crate::glitch`): the
    /// past before the reset can no longer be told by id.
    pub(crate) fn restart(&mut self, book: &Book, update_id: u64, transaction_time_ms: u64) {
        *self = History::new(book, update_id, transaction_time_ms, self.retain);
    }

    /// The oldest update id whose book can still be told.
    pub(crate) fn oldest_update_id(&self) -> u64 {
        self.checkpoints.front().map_or(0, |c| c.update_id)
    }

    /// The newest update id.
    pub(crate) fn newest_update_id(&self) -> u64 {
        self.records
            .back()
            .map_or(self.newest_checkpoint_id(), |r| r.update.last_update_id)
    }

    /// The book right after update id `update_id`.
    ///
    /// # Errors
    /// [`TruthError::TooOld`] before the retained past, [`TruthError::InTheFuture`] after the
    /// newest update, [`TruthError::InsideEvent`] for an id strictly inside one event's `U..u`
    /// (the book is defined only between events).
    pub(crate) fn book_at(&self, update_id: u64) -> Result<PastBook, TruthError> {
        let (oldest, newest) = (self.oldest_update_id(), self.newest_update_id());
        if update_id < oldest {
            return Err(TruthError::TooOld {
                update_id,
                oldest,
                newest,
            });
        }
        if update_id > newest {
            return Err(TruthError::InTheFuture { update_id, newest });
        }
        let checkpoint_index = self
            .checkpoints
            .partition_point(|c| c.update_id <= update_id)
            .saturating_sub(1);
        let Some(checkpoint) = self.checkpoints.get(checkpoint_index) else {
            return Err(TruthError::TooOld {
                update_id,
                oldest,
                newest,
            });
        };
        let mut past = PastBook {
            update_id: checkpoint.update_id,
            transaction_time_ms: checkpoint.transaction_time_ms,
            book: checkpoint.book.clone(),
        };
        let start = self
            .records
            .partition_point(|r| r.update.last_update_id <= checkpoint.update_id);
        for record in self.records.range(start..) {
            let update = &record.update;
            if update.last_update_id > update_id {
                if update.first_update_id <= update_id {
                    return Err(TruthError::InsideEvent {
                        update_id,
                        first: update.first_update_id,
                        last: update.last_update_id,
                    });
                }
                break;
            }
            past.book.apply(&update.bids, &update.asks);
            past.update_id = update.last_update_id;
            past.transaction_time_ms = update.transaction_time_ms;
        }
        Ok(past)
    }

    /// The book as it was at `instant`: after the newest update generated at or before it, or
    /// the oldest retained state if every retained update is newer.
    pub(crate) fn book_as_of(&self, instant: Instant) -> PastBook {
        let newer = self.records.partition_point(|r| r.generated_at <= instant);
        let update_id = match newer.checked_sub(1).and_then(|i| self.records.get(i)) {
            Some(record) => record.update.last_update_id,
            None => self.oldest_update_id(),
        };
        self.book_at_existing(update_id)
    }

    /// The book `behind` updates before the newest one (clamped to the oldest retained state).
    pub(crate) fn book_behind(&self, behind: usize) -> PastBook {
        let update_id = self
            .records
            .len()
            .checked_sub(behind.saturating_add(1))
            .and_then(|i| self.records.get(i))
            .filter(|r| r.update.last_update_id >= self.oldest_update_id())
            .map_or(self.oldest_update_id(), |r| r.update.last_update_id);
        self.book_at_existing(update_id)
    }

    /// [`History::book_at`] for an id known to be a retained event boundary.
    fn book_at_existing(&self, update_id: u64) -> PastBook {
        match self.book_at(update_id) {
            Ok(past) => past,
            // Unreachable for a retained boundary; fall back to the oldest checkpoint rather
            // than fail a snapshot.
            Err(_) => self.oldest_book(),
        }
    }

    fn oldest_book(&self) -> PastBook {
        self.checkpoints.front().map_or_else(
            || PastBook {
                update_id: 0,
                transaction_time_ms: 0,
                book: Book::default(),
            },
            |c| PastBook {
                update_id: c.update_id,
                transaction_time_ms: c.transaction_time_ms,
                book: c.book.clone(),
            },
        )
    }

    fn newest_checkpoint_id(&self) -> u64 {
        self.checkpoints.back().map_or(0, |c| c.update_id)
    }

    /// Drops the oldest checkpoint interval while more than `retain` updates would remain.
    fn trim(&mut self) {
        while self.checkpoints.len() > 1 {
            let Some(second) = self.checkpoints.get(1) else {
                return;
            };
            let second_id = second.update_id;
            let droppable = self
                .records
                .partition_point(|r| r.update.last_update_id <= second_id);
            if self.records.len() - droppable < self.retain {
                return;
            }
            self.records.drain(..droppable);
            self.checkpoints.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Family;
    use crate::generator::Generator;
    use crate::market::MarketSpec;

    fn run(retain: usize, updates: usize) -> (History, Vec<(u64, Book)>) {
        let spec = MarketSpec::new(Family::Spot, 1, 1);
        let (mut generator, mut book) = Generator::new(&spec, 200, 1);
        let now = Instant::now();
        let mut history = History::new(&book, generator.last_update_id(), 0, retain);
        let mut books = vec![(generator.last_update_id(), book.clone())];
        for _ in 0..updates {
            let update = generator.next_update(&mut book, 0);
            history.push(Arc::new(update), &book, now);
            books.push((generator.last_update_id(), book.clone()));
        }
        (history, books)
    }

    #[test]
    fn every_retained_update_id_gives_the_exact_book() {
        let (history, books) = run(10_000, 700);
        for (update_id, book) in &books {
            assert_eq!(
                &history.book_at(*update_id).map(|p| p.book).ok(),
                &Some(book.clone())
            );
        }
    }

    #[test]
    fn trimming_keeps_at_least_retain_updates_and_reports_old_ids() {
        let (history, books) = run(300, 2000);
        let retained = books
            .iter()
            .filter(|(id, _)| history.book_at(*id).is_ok())
            .count();
        assert!(
            retained > 300 && retained <= 300 + 2 * CHECKPOINT_EVERY + 1,
            "{retained}"
        );
        assert!(matches!(
            history.book_at(books[0].0),
            Err(TruthError::TooOld { .. })
        ));
    }

    #[test]
    fn ids_in_the_future_or_inside_an_event_are_refused() {
        let (history, books) = run(1000, 50);
        let newest = books.last().map_or(0, |b| b.0);
        assert!(matches!(
            history.book_at(newest + 1),
            Err(TruthError::InTheFuture { .. })
        ));
        let inside = books
            .windows(2)
            .find(|w| w[1].0 - w[0].0 >= 2)
            .map(|w| w[0].0 + 1);
        if let Some(inside) = inside {
            assert!(matches!(
                history.book_at(inside),
                Err(TruthError::InsideEvent { .. })
            ));
        }
    }

    #[test]
    fn book_behind_steps_back_whole_updates() {
        let (history, books) = run(1000, 50);
        let past = history.book_behind(3);
        let expected = &books[books.len() - 4];
        assert_eq!((past.update_id, &past.book), (expected.0, &expected.1));
    }
}
