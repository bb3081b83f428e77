//! Where the push server learns that books changed and reads them: this host's shared memory,
//! through one [`ClusterReader`] owned by the watcher thread. No new data path: the same slots
//! every local reader maps.
//!
//! Change detection sits behind [`BookSource`] so the watcher does not care how it is done:
//! [`ShmSource`] sleeps on the segments' change futexes ([`ClusterReader::wait_for_any`]: no
//! spin, no missed wake-up) until some book of the cluster changed, then the watcher compares
//! each subscribed book's marker (its change stamp, replica, slot generation, publish count and
//! status, from the slot header) with the one it last saw. Under load a pass runs at most every
//! [`MIN_PASS_INTERVAL`]: each wake is a pass over every subscribed book.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::time::{Duration, Instant};

use ubdcc_shm::{Bbo, BookInfo, BookStatus, ClusterReader, Level, LevelQuery, ReadError};

/// The shortest time between two passes over the subscribed books. An idle cluster wakes the
/// watcher within microseconds of a publish; a busy one (1 000 books at 10 Hz publish 10 000
/// times a second) would wake it for every publish, and each pass reads every subscribed book's
/// slot header, so publishes within this interval share one pass (and one write per client).
pub(crate) const MIN_PASS_INTERVAL: Duration = Duration::from_millis(1);

/// Something that changes whenever the book as reads would see it changes: another replica,
/// a new slot generation, a publish, a new status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    changes: u64,
    dcn: u64,
    generation: u64,
    updates: u64,
    status: BookStatus,
}

impl Marker {
    /// The marker of a synced book after `changes` publishes of one replica (tests' sources).
    #[cfg(test)]
    pub(crate) fn synced_after(changes: u64) -> Self {
        Self {
            changes,
            dcn: 1,
            generation: 1,
            updates: changes,
            status: BookStatus::Synced,
        }
    }
}

/// The replica a read came from and how far its book is, to tell a continuation from a
/// jump (another replica, a resync) that needs a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The DCN whose segment answered.
    pub(crate) dcn: String,
    /// The slot generation.
    pub(crate) generation: u64,
    /// Resyncs of that replica.
    pub(crate) resyncs: u32,
    /// Gaps that replica detected.
    pub(crate) gaps: u32,
    /// Publishes of that replica.
    pub(crate) updates: u64,
}

impl Origin {
    /// `true` when `next` continues this origin's book: same replica, same slot, no resync or
    /// gap in between, not older.
    pub(crate) fn is_continued_by(&self, next: &Self) -> bool {
        self.dcn == next.dcn
            && self.generation == next.generation
            && self.resyncs == next.resyncs
            && self.gaps == next.gaps
            && self.updates <= next.updates
    }
}

/// Which replica a `@bbo` read came from: a `@bbo` message from another one than the last may
/// step `u` back, so it says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    /// The DCN whose segment answered.
    pub(crate) dcn: String,
    /// The slot generation.
    pub(crate) generation: u64,
}

/// The books the watcher serves.
pub(crate) trait BookSource: Send {
    /// The book's current marker.
    ///
    /// # Errors
    /// As [`ClusterReader::info`].
    fn marker(&mut self, exchange: &str, market: &str) -> Result<Marker, ReadError>;

    /// Both sides' best `depth` levels of a synced book, one version, into `bids` and `asks`.
    ///
    /// # Errors
    /// As [`ClusterReader::read_book`].
    fn read_top(
        &mut self,
        exchange: &str,
        market: &str,
        depth: u32,
        bids: &mut Vec<Level>,
        asks: &mut Vec<Level>,
    ) -> Result<(BookInfo, Origin), ReadError>;

    /// The best bid and ask of a synced book, and the replica they came from.
    ///
    /// # Errors
    /// As [`ClusterReader::bbo`].
    fn read_bbo(&mut self, exchange: &str, market: &str) -> Result<(Bbo, Replica), ReadError>;

    /// Returns when books may have changed, or after `timeout` at the latest.
    fn wait(&mut self, timeout: Duration);
}

/// This host's shared memory.
pub(crate) struct ShmSource {
    reader: ClusterReader,
    /// When the last wait returned.
    woken: Instant,
}

impl ShmSource {
    /// Reads through `reader`.
    pub(crate) fn new(reader: ClusterReader) -> Self {
        Self {
            reader,
            woken: Instant::now(),
        }
    }

    fn dcn_hash(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.reader.last_served_dcn().hash(&mut hasher);
        hasher.finish()
    }
}

impl BookSource for ShmSource {
    fn marker(&mut self, exchange: &str, market: &str) -> Result<Marker, ReadError> {
        let info = self.reader.info(exchange, market)?;
        Ok(Marker {
            changes: info.changes,
            dcn: self.dcn_hash(),
            generation: info.generation,
            updates: info.updates,
            status: info.status,
        })
    }

    fn read_top(
        &mut self,
        exchange: &str,
        market: &str,
        depth: u32,
        bids: &mut Vec<Level>,
        asks: &mut Vec<Level>,
    ) -> Result<(BookInfo, Origin), ReadError> {
        let query = LevelQuery::top(depth as usize);
        let info = self
            .reader
            .read_book(exchange, market, &query, bids, asks)?;
        let origin = Origin {
            dcn: self.reader.last_served_dcn().unwrap_or_default().to_owned(),
            generation: info.generation,
            resyncs: info.resyncs,
            gaps: info.gaps,
            updates: info.updates,
        };
        Ok((info, origin))
    }

    fn read_bbo(&mut self, exchange: &str, market: &str) -> Result<(Bbo, Replica), ReadError> {
        let bbo = self.reader.bbo(exchange, market)?;
        let replica = Replica {
            dcn: self.reader.last_served_dcn().unwrap_or_default().to_owned(),
            generation: bbo.generation,
        };
        Ok((bbo, replica))
    }

    fn wait(&mut self, timeout: Duration) {
        let since = self.woken.elapsed();
        if since < MIN_PASS_INTERVAL {
            std::thread::sleep(MIN_PASS_INTERVAL - since);
        }
        // Returns at once when anything changed since the last call (during the pass, or the
        // sleep above): a publish is never missed, only batched.
        self.reader.wait_for_any(timeout);
        self.woken = Instant::now();
    }
}

/// The reason a status message gives for a book that cannot be served, `None` for a transient
/// failure (a read contended by its writer) that the next pass retries.
pub(crate) fn unserved_reason(error: &ReadError) -> Option<&'static str> {
    Some(match error {
        ReadError::NotSynced { status, .. } => match status {
            BookStatus::OutOfSync(reason) => reason.as_str(),
            BookStatus::Starting | BookStatus::Synced => status.as_str(),
        },
        ReadError::NotFound { .. } => "not on this host",
        ReadError::WriterGone { .. } => "writer gone",
        ReadError::WriterHung { .. } => "writer hung",
        ReadError::SegmentShrunk { .. } => "segment shrunk",
        ReadError::Io { .. } => "writer check failed",
        ReadError::InvalidQuery(_) => "invalid query",
        ReadError::Contended { .. } => return None,
    })
}
