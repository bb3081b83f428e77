//! The cluster-wide reader: finds a book by (exchange, market) in any segment of a cluster on this
//! host, prefers a synced replica, and follows books as DCNs add, remove and restart them.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::book::{BookInfo, Level};
use crate::error::{CreateSegmentError, OpenSegmentError, ReadError};
use crate::query::LevelQuery;
use crate::reader::{SegmentReader, SlotRead};
use crate::segment::{SEGMENT_PREFIX, SHM_DIR, check_name_part};
use crate::status::{BookStatus, Side};

/// Where one replica of a book lives.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: usize,
    slot: u32,
    generation: u64,
}

type Markets = HashMap<Box<str>, Vec<Location>, FxBuildHasher>;

/// One book of the cluster as [`ClusterReader::list`] reports it.
#[derive(Debug)]
pub struct BookListing {
    /// Exchange string.
    pub exchange: String,
    /// Market symbol.
    pub market: String,
    /// The segment (DCN) holding this replica.
    pub segment: String,
    /// Its status, or why it could not be read (a dead or hung writer).
    pub status: Result<BookStatus, ReadError>,
}

impl BookListing {
    /// The message of the error that made this replica unreadable ("" when it was read).
    pub fn status_error(&self) -> String {
        self.status
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// Reads any book of a cluster from shared memory.
///
/// Lookups go through an in-process index of every segment's directory. The index is rebuilt
/// when a lookup misses, when a book moved or when a writer is gone, so new books, removed books
/// and restarted DCNs are followed without the caller doing anything.
///
/// ```no_run
/// use ubdcc_shm::{ClusterReader, LevelQuery, Side};
/// let mut reader = ClusterReader::open("default")?;
/// let mut asks = Vec::new();
/// let info = reader.read("binance.com", "BTCUSDT", Side::Asks, &LevelQuery::top(10), &mut asks)?;
/// println!("best ask {:?} at update {}", asks.first(), info.last_update_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterReader {
    cluster: String,
    segments: Vec<SegmentReader>,
    /// exchange → market → replicas; exchanges are few, so a short vector beats hashing twice.
    index: Vec<(Box<str>, Markets)>,
    /// Each segment's directory version when the index was built.
    indexed_versions: Vec<u64>,
    /// Segments that exist but could not be opened at the last refresh.
    open_errors: Vec<OpenSegmentError>,
}

impl ClusterReader {
    /// Opens every segment of `cluster` on this host. A cluster with no segment yet is not an
    /// error: reads report books as not found until DCNs appear.
    ///
    /// # Errors
    /// [`CreateSegmentError::InvalidName`] when `cluster` is not a valid cluster name.
    pub fn open(cluster: &str) -> Result<Self, CreateSegmentError> {
        check_name_part("cluster", cluster)?;
        let mut reader = Self {
            cluster: cluster.to_owned(),
            segments: Vec::new(),
            index: Vec::new(),
            indexed_versions: Vec::new(),
            open_errors: Vec::new(),
        };
        reader.refresh();
        Ok(reader)
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The segments currently open.
    pub fn segments(&self) -> &[SegmentReader] {
        &self.segments
    }

    /// Segments of this cluster that could not be opened at the last refresh (corrupt, another
    /// layout, ...), so tools can say why a DCN's books are missing.
    pub fn open_errors(&self) -> &[OpenSegmentError] {
        &self.open_errors
    }

    /// Reads one side of a synced book: `out` receives the levels `query` selects, best first.
    ///
    /// # Errors
    /// [`ReadError::NotFound`], [`ReadError::NotSynced`], [`ReadError::WriterGone`],
    /// [`ReadError::WriterHung`], [`ReadError::Contended`]; `out` is empty on error.
    #[inline]
    pub fn read(
        &mut self,
        exchange: &str,
        market: &str,
        side: Side,
        query: &LevelQuery,
        out: &mut Vec<Level>,
    ) -> Result<BookInfo, ReadError> {
        self.read_any(exchange, market, Some(side), query, out)
    }

    /// The metadata of a book (status, ids, timestamps, counts), synced or not.
    ///
    /// # Errors
    /// [`ReadError::NotFound`], [`ReadError::WriterGone`], [`ReadError::WriterHung`],
    /// [`ReadError::Contended`].
    pub fn info(&mut self, exchange: &str, market: &str) -> Result<BookInfo, ReadError> {
        let mut none = Vec::new();
        match self.read_any(exchange, market, None, &LevelQuery::ALL, &mut none) {
            Err(ReadError::NotSynced { .. }) => self.unsynced_info(exchange, market),
            other => other,
        }
    }

    /// Every book of every segment, with the status of each replica.
    pub fn list(&mut self) -> Vec<BookListing> {
        self.refresh();
        let mut listings = Vec::new();
        let mut none = Vec::new();
        for (exchange, markets) in &self.index {
            for (market, locations) in markets {
                for location in locations {
                    let segment = &self.segments[location.segment];
                    let status = match segment.read_slot(
                        location.slot,
                        location.generation,
                        None,
                        &LevelQuery::ALL,
                        &mut none,
                    ) {
                        Ok(SlotRead::Synced(info) | SlotRead::NotSynced(info)) => Ok(info.status),
                        Ok(SlotRead::Moved) => continue,
                        Err(error) => Err(error),
                    };
                    listings.push(BookListing {
                        exchange: exchange.to_string(),
                        market: market.to_string(),
                        segment: segment.name().to_owned(),
                        status,
                    });
                }
            }
        }
        listings.sort_by(|a, b| {
            (&a.exchange, &a.market, &a.segment).cmp(&(&b.exchange, &b.market, &b.segment))
        });
        listings
    }

    fn read_any(
        &mut self,
        exchange: &str,
        market: &str,
        side: Option<Side>,
        query: &LevelQuery,
        out: &mut Vec<Level>,
    ) -> Result<BookInfo, ReadError> {
        match self.try_read(exchange, market, side, query, out) {
            Attempt::Done(result) => return result,
            Attempt::Stale(_) => self.refresh(),
        }
        match self.try_read(exchange, market, side, query, out) {
            Attempt::Done(result) => result,
            Attempt::Stale(Some(error)) => Err(error),
            Attempt::Stale(None) => Err(ReadError::NotFound {
                cluster: self.cluster.clone(),
                exchange: exchange.to_owned(),
                market: market.to_owned(),
            }),
        }
    }

    /// One pass over the replicas the index knows: the first synced one wins.
    #[inline]
    fn try_read(
        &self,
        exchange: &str,
        market: &str,
        side: Option<Side>,
        query: &LevelQuery,
        out: &mut Vec<Level>,
    ) -> Attempt {
        let Some(locations) = self.locations(exchange, market) else {
            return Attempt::Stale(None);
        };
        let mut first_error = None;
        let mut stale = false;
        for location in locations {
            let segment = &self.segments[location.segment];
            match segment.read_slot(location.slot, location.generation, side, query, out) {
                Ok(SlotRead::Synced(info)) => return Attempt::Done(Ok(info)),
                Ok(SlotRead::NotSynced(info)) => {
                    first_error.get_or_insert(ReadError::NotSynced {
                        exchange: exchange.to_owned(),
                        market: market.to_owned(),
                        status: info.status,
                    });
                }
                Ok(SlotRead::Moved) => stale = true,
                Err(error @ ReadError::WriterGone { .. }) => {
                    // A restarted DCN may have replaced the segment under the same name.
                    stale = true;
                    first_error.get_or_insert(error);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if stale || self.directories_changed() {
            return Attempt::Stale(first_error);
        }
        match first_error {
            Some(error) => Attempt::Done(Err(error)),
            None => Attempt::Stale(None),
        }
    }

    /// The info of a book none of whose replicas is synced (the first readable one).
    fn unsynced_info(&mut self, exchange: &str, market: &str) -> Result<BookInfo, ReadError> {
        let mut none = Vec::new();
        let mut first_error = None;
        for location in self.locations(exchange, market).unwrap_or(&[]) {
            match self.segments[location.segment].read_slot(
                location.slot,
                location.generation,
                None,
                &LevelQuery::ALL,
                &mut none,
            ) {
                Ok(SlotRead::Synced(info) | SlotRead::NotSynced(info)) => return Ok(info),
                Ok(SlotRead::Moved) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ReadError::NotFound {
            cluster: self.cluster.clone(),
            exchange: exchange.to_owned(),
            market: market.to_owned(),
        }))
    }

    #[inline]
    fn locations(&self, exchange: &str, market: &str) -> Option<&[Location]> {
        let (_, markets) = self.index.iter().find(|(name, _)| **name == *exchange)?;
        markets.get(market).map(Vec::as_slice)
    }

    fn directories_changed(&self) -> bool {
        self.segments
            .iter()
            .zip(&self.indexed_versions)
            .any(|(segment, &version)| segment.directory_version() != version)
    }

    /// Rescans the cluster's segments on this host and rebuilds the index. Called automatically
    /// when a lookup misses or a replica moved; call it yourself to pick up new books eagerly.
    pub fn refresh(&mut self) {
        let names = self.segment_names();
        let mut kept: Vec<SegmentReader> = Vec::with_capacity(names.len());
        let mut previous: Vec<SegmentReader> = std::mem::take(&mut self.segments);
        let mut changed = false;
        self.open_errors.clear();
        for name in names {
            // A segment whose file is still the one behind its name is kept as it is, even when
            // its writer is gone: reopening it would only find the same dead writer again, and
            // a reader polling a dead DCN's book must not pay an open and a map per read.
            let same_file = previous
                .iter()
                .position(|s| s.name() == name && is_named_by(s));
            if let Some(position) = same_file {
                kept.push(previous.swap_remove(position));
                continue;
            }
            changed = true;
            match SegmentReader::open(&name) {
                Ok(segment) => kept.push(segment),
                // Gone between listing and opening: nothing to report.
                Err(OpenSegmentError::NotFound { .. }) => {}
                Err(error) => self.open_errors.push(error),
            }
        }
        changed |= !previous.is_empty();
        self.segments = kept;
        if changed || self.directories_changed() {
            self.rebuild_index();
        }
    }

    fn segment_names(&self) -> Vec<String> {
        let prefix = format!("{SEGMENT_PREFIX}.{}.", self.cluster);
        let Ok(entries) = std::fs::read_dir(SHM_DIR) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix(&prefix)
                    .is_some_and(|dcn| !dcn.is_empty() && !dcn.contains('.'))
            })
            .collect();
        names.sort();
        names
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        self.indexed_versions = self
            .segments
            .iter()
            .map(SegmentReader::directory_version)
            .collect();
        for (segment_index, segment) in self.segments.iter().enumerate() {
            for book in segment.books() {
                let location = Location {
                    segment: segment_index,
                    slot: book.slot,
                    generation: book.generation,
                };
                let markets = match self
                    .index
                    .iter()
                    .position(|(name, _)| **name == *book.exchange)
                {
                    Some(position) => &mut self.index[position].1,
                    None => {
                        self.index
                            .push((book.exchange.into_boxed_str(), Markets::default()));
                        &mut self.index.last_mut().expect("just pushed").1
                    }
                };
                markets
                    .entry(book.market.into_boxed_str())
                    .or_default()
                    .push(location);
            }
        }
    }
}

/// `true` while the shm name of `segment` still refers to the file it has open, i.e. no newer
/// writer has replaced it.
fn is_named_by(segment: &SegmentReader) -> bool {
    let Ok(stat) = rustix::fs::stat(format!("{SHM_DIR}/{}", segment.name())) else {
        return false;
    };
    segment.file_id() == Some((stat.st_dev, stat.st_ino))
}

enum Attempt {
    /// A final answer.
    Done(Result<BookInfo, ReadError>),
    /// The index may be out of date; refresh and try once more. Carries the best error so far.
    Stale(Option<ReadError>),
}
