//! The cluster-wide reader: finds a book by (exchange, market) in any segment of a cluster on this
//! host, prefers a synced replica, and follows books as DCNs add, remove and restart them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;

use crate::book::{Bbo, BookCopy, BookInfo, BookProof, Level};
use crate::error::{InvalidName, OpenClusterError, OpenSegmentError, ReadError, UntrustedSegment};
use crate::liveness::unix_now_ns;
use crate::query::LevelQuery;
use crate::reader::{RawCopy, SegmentReader, SlotRead};
use crate::segment::{SEGMENT_PREFIX, SHM_DIR, check_name_part};
use crate::status::{BookStatus, Side};
use crate::trust::Trust;
use crate::wait::{WAIT_SLICE, WaitOutcome, sleep_any};

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
/// Lookups go through an in-process index of every segment's directory. Before a failed read is
/// reported, the reader checks whether that index may be out of date (a segment appeared,
/// disappeared or was replaced in `/dev/shm`, or a directory changed) and if so rebuilds it and
/// tries again, so new books, removed books, new DCNs and restarted DCNs are followed without the
/// caller doing anything. Checking costs one `stat`; a rescan happens only when something changed.
///
/// Only segments of trusted owners that nobody else may write are read ([`Trust`]); others are
/// listed by [`ClusterReader::ignored`] with the reason, and never shadow a real replica.
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
    /// Only this DCN's segment, when set.
    dcn: Option<String>,
    /// Whose segments are believed.
    trust: Trust,
    segments: Vec<SegmentReader>,
    /// exchange → market → replicas; exchanges are few, so a short vector beats hashing twice.
    index: Vec<(Box<str>, Markets)>,
    /// Each segment's directory version when the index was built.
    indexed_versions: Vec<u64>,
    /// Segments that could not be opened, with the file each error is about, so a refresh does
    /// not reopen an unchanged bad file every time.
    unopenable: Vec<Unopenable>,
    /// Modification time of `/dev/shm` (Unix ns) when it was last scanned.
    scanned_mtime: Option<u64>,
    /// When that scan happened (Unix ns).
    scanned_at: u64,
    /// The segment of the replica the last successful read came from.
    last_served: Option<usize>,
    /// Retries of segments no longer open (see [`ClusterReader::read_retries`]).
    retired_retries: u64,
    /// What [`ClusterReader::wait_for_any`] last reported of each segment, by name.
    wait_seen: HashMap<String, SegmentSeen, FxBuildHasher>,
}

/// A segment as [`ClusterReader::wait_for_any`] last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentSeen {
    /// Its change stamp.
    stamp: u64,
    /// Whether its writer was alive and beating.
    live: bool,
}

/// A segment that failed to open.
struct Unopenable {
    name: String,
    file_id: Option<(u64, u64)>,
    error: OpenSegmentError,
}

/// Which replica states a read accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Only a synced replica (reads of levels).
    Synced,
    /// Any readable replica (metadata).
    Any,
}

/// Which replicas of which book a read looks at.
#[derive(Debug, Clone, Copy)]
struct Replicas<'a> {
    exchange: &'a str,
    market: &'a str,
    accept: Accept,
    /// The DCN whose segment is not read (a DCN seeding a book from its peers).
    skip_dcn: Option<&'a str>,
}

/// The outcome of one pass over the replicas the index knows.
enum Attempt {
    /// A replica answered: its metadata and the index of its segment.
    Found(BookInfo, usize),
    /// None did: the most telling error (if any replica was readable at all), and whether a
    /// replica turned out to have moved, which makes the index stale for sure.
    Failed {
        error: Option<ReadError>,
        moved: bool,
    },
}

impl ClusterReader {
    /// Opens every segment of `cluster` on this host that [`Trust::from_env`] believes (this
    /// user's, plus owners named in `UBDCC_SHM_TRUST`). A cluster with no segment yet is not an
    /// error: reads report books as not found until DCNs appear.
    ///
    /// # Errors
    /// [`OpenClusterError::InvalidName`] when `cluster` is not a valid cluster name,
    /// [`OpenClusterError::InvalidTrust`] when `UBDCC_SHM_TRUST` cannot be parsed.
    pub fn open(cluster: &str) -> Result<Self, OpenClusterError> {
        Ok(Self::open_filtered(cluster, None, Trust::from_env()?)?)
    }

    /// Like [`ClusterReader::open`], but believes exactly the owners `trust` names (the
    /// environment is not read).
    ///
    /// # Errors
    /// [`InvalidName`] when `cluster` is not a valid cluster name.
    pub fn open_trusting(cluster: &str, trust: Trust) -> Result<Self, InvalidName> {
        Self::open_filtered(cluster, None, trust)
    }

    /// Like [`ClusterReader::open`], but reads only the segment of DCN `dcn` (a DCN answering
    /// for its own books).
    ///
    /// # Errors
    /// As [`ClusterReader::open`], and [`OpenClusterError::InvalidName`] for an invalid `dcn`.
    pub fn open_dcn(cluster: &str, dcn: &str) -> Result<Self, OpenClusterError> {
        check_name_part("dcn", dcn)?;
        let trust = Trust::from_env()?;
        Ok(Self::open_filtered(cluster, Some(dcn.to_owned()), trust)?)
    }

    fn open_filtered(
        cluster: &str,
        dcn: Option<String>,
        trust: Trust,
    ) -> Result<Self, InvalidName> {
        check_name_part("cluster", cluster)?;
        let mut reader = Self {
            cluster: cluster.to_owned(),
            dcn,
            trust,
            segments: Vec::new(),
            index: Vec::new(),
            indexed_versions: Vec::new(),
            unopenable: Vec::new(),
            scanned_mtime: None,
            scanned_at: 0,
            last_served: None,
            retired_retries: 0,
            wait_seen: HashMap::default(),
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

    /// The DCN whose replica the last successful read or info came from (the segment name's
    /// last part), e.g. to tell a caller which DCN served.
    pub fn last_served_dcn(&self) -> Option<&str> {
        let segment = self.segments.get(self.last_served?)?;
        Some(dcn_of(segment))
    }

    /// Read sections retried since this reader was opened, because a writer was publishing the
    /// book being read (a measure of reader–writer contention).
    pub fn read_retries(&self) -> u64 {
        self.retired_retries
            + self
                .segments
                .iter()
                .map(SegmentReader::retries)
                .sum::<u64>()
    }

    /// The DCNs whose segments are open (the names' last parts).
    pub fn dcns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(dcn_of)
    }

    /// Unlinks the segments of this cluster whose writer is gone (a DCN that crashed leaves its
    /// segment behind, holding memory and stale books); returns their names.
    ///
    /// Only a segment still named by the file whose writer was seen gone is unlinked. DCNs in a
    /// cluster have unique names, so no live writer can take such a name in between.
    pub fn remove_dead_segments(&mut self) -> Vec<String> {
        self.refresh();
        let dead: Vec<String> = self
            .segments
            .iter()
            .filter(|segment| {
                matches!(
                    segment.check_writer_now(),
                    Err(ReadError::WriterGone { .. })
                ) && is_named_by(segment)
            })
            .map(|segment| segment.name().to_owned())
            .collect();
        for name in &dead {
            // Already gone (another sweeper was first) is as good as removed.
            rustix::shm::unlink(name.as_str()).ok();
        }
        if !dead.is_empty() {
            self.refresh();
        }
        dead
    }

    /// Segments of this cluster that could not be opened at the last refresh (corrupt, another
    /// layout, ...), so tools can say why a DCN's books are missing. Untrusted segments are not
    /// among them: see [`ClusterReader::ignored`].
    pub fn open_errors(&self) -> impl Iterator<Item = &OpenSegmentError> {
        self.unopenable
            .iter()
            .map(|bad| &bad.error)
            .filter(|error| !matches!(error, OpenSegmentError::Untrusted(_)))
    }

    /// Segments of this cluster that were not read at the last refresh because their owner is
    /// not trusted, group or others may write them, or they are not regular files; each with
    /// the reason (its `Display` names the segment and says why).
    pub fn ignored(&self) -> impl Iterator<Item = &UntrustedSegment> {
        self.unopenable.iter().filter_map(|bad| {
            let OpenSegmentError::Untrusted(untrusted) = &bad.error else {
                return None;
            };
            Some(untrusted)
        })
    }

    /// The owners whose segments this reader believes.
    pub fn trust(&self) -> &Trust {
        &self.trust
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
        self.read_any(
            exchange,
            market,
            Accept::Synced,
            None,
            |segment, location| {
                segment.read_slot(location.slot, location.generation, Some(side), query, out)
            },
        )
    }

    /// Copies a synced replica of the book, skipping the segment of DCN `skip_dcn` (a DCN seeding
    /// itself never reads its own segment).
    ///
    /// Both sides, the exponents and the info come from one seqlock section, so the copy is one
    /// version of the book exactly as its writer published it, at `info.last_update_id`. The
    /// writer is checked before the copy and probed again after it, so a dead or hung writer's
    /// book is never returned. Replicas are tried in the order [`ClusterReader::read`] tries
    /// them; the first synced one is copied.
    ///
    /// # Errors
    /// Like [`ClusterReader::read`]: [`ReadError::NotFound`] when no other segment holds the
    /// book, [`ReadError::NotSynced`] when the replicas found are not synced,
    /// [`ReadError::WriterGone`], [`ReadError::WriterHung`], [`ReadError::Contended`].
    ///
    /// # Example
    /// ```
    /// use ubdcc_shm::{BookMeta, BookSides, BookStatus, ClusterReader, RawLevel, ReadError, SegmentConfig};
    ///
    /// let cluster = format!("copydoc{}", std::process::id());
    /// let mut peer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// let book = peer.add_book("binance.com", "BTCUSDT")?;
    /// let bids = [RawLevel { price: 9_998_000_000, quantity: 50_000_000 }];
    /// let asks = [RawLevel { price: 9_999_000_000, quantity: 300_000_000 }];
    /// let sides = BookSides { price_exponent: -8, quantity_exponent: -8, bids: &bids, asks: &asks };
    /// let meta = BookMeta { status: BookStatus::Synced, last_update_id: 7, depth: 100, ..BookMeta::starting() };
    /// peer.publish(book, &meta, &sides)?;
    ///
    /// // dcn-1 seeds its own replica of BTCUSDT from a peer: never from its own segment.
    /// let mut reader = ClusterReader::open(&cluster)?;
    /// let copy = reader.copy_book("binance.com", "BTCUSDT", Some("dcn-1"))?;
    /// assert_eq!((copy.dcn.as_str(), copy.info.last_update_id, copy.info.depth), ("dcn-0", 7, 100));
    /// assert_eq!((copy.bids, copy.asks, copy.price_exponent), (bids.to_vec(), asks.to_vec(), -8));
    ///
    /// // Skipping the only segment that holds the book leaves nothing to copy.
    /// let only_self = reader.copy_book("binance.com", "BTCUSDT", Some("dcn-0"));
    /// assert!(matches!(only_self, Err(ReadError::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy_book(
        &mut self,
        exchange: &str,
        market: &str,
        skip_dcn: Option<&str>,
    ) -> Result<BookCopy, ReadError> {
        let mut copy = RawCopy::default();
        let info = self.read_any(
            exchange,
            market,
            Accept::Synced,
            skip_dcn,
            |segment, location| segment.copy_slot(location.slot, location.generation, &mut copy),
        )?;
        let dcn = self
            .last_served_dcn()
            .expect("a successful read records the segment it came from");
        Ok(BookCopy {
            info,
            price_exponent: copy.price_exponent,
            quantity_exponent: copy.quantity_exponent,
            bids: copy.bids,
            asks: copy.asks,
            dcn: dcn.to_owned(),
        })
    }

    /// The best bid and ask of a synced book, with its update id and times, from one read section
    /// that touches only the slot's two header cache lines (no level is read). Replicas are tried
    /// as [`ClusterReader::read`] tries them.
    ///
    /// # Errors
    /// As [`ClusterReader::read`]: [`ReadError::NotFound`], [`ReadError::NotSynced`],
    /// [`ReadError::WriterGone`], [`ReadError::WriterHung`], [`ReadError::Contended`].
    ///
    /// # Example
    /// ```
    /// use ubdcc_shm::{BookMeta, BookSides, BookStatus, ClusterReader, Level, RawLevel, SegmentConfig};
    ///
    /// let cluster = format!("bbodoc{}", std::process::id());
    /// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// let book = writer.add_book("binance.com", "BTCUSDT")?;
    /// let bids = [RawLevel { price: 9_998_000_000, quantity: 50_000_000 }];
    /// let sides = BookSides { price_exponent: -8, quantity_exponent: -8, bids: &bids, asks: &[] };
    /// let meta = BookMeta { status: BookStatus::Synced, last_update_id: 9, ..BookMeta::starting() };
    /// writer.publish(book, &meta, &sides)?;
    ///
    /// let bbo = ClusterReader::open(&cluster)?.bbo("binance.com", "BTCUSDT")?;
    /// assert_eq!(bbo.bid, Some(Level { price: 99.98, quantity: 0.5 }));
    /// assert_eq!((bbo.ask, bbo.last_update_id), (None, 9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bbo(&mut self, exchange: &str, market: &str) -> Result<Bbo, ReadError> {
        let mut out = None;
        self.read_any(
            exchange,
            market,
            Accept::Synced,
            None,
            |segment, location| segment.read_bbo(location.slot, location.generation, &mut out),
        )?;
        // A synced read fills it; were that ever not so, the book is not served rather than the
        // reader panicking in a caller's trading loop.
        out.ok_or_else(|| ReadError::NotFound {
            cluster: self.cluster.clone(),
            exchange: exchange.to_owned(),
            market: market.to_owned(),
        })
    }

    /// Both sides of a synced book as `f64` levels, best first, selected by `query` (each side on
    /// its own: `limit_count` levels at most per side, and a `threshold_volume` walk per side),
    /// with the info, all from **one** seqlock section: the bids and asks are one version of the
    /// book, the one `info.last_update_id` names. Replicas are tried as [`ClusterReader::read`]
    /// tries them. Allocates the two vectors; [`ClusterReader::read_book`] fills buffers instead.
    ///
    /// The fill price and the depth statistics are pure functions of what this returns, so a
    /// caller computes them on one consistent version: read with [`LevelQuery::ALL`] (a fill or a
    /// band may reach deep), then call [`crate::fill_price`] with the asks for a buy or the bids
    /// for a sell, and [`crate::depth_stats`] with both. A side holds at most `info.depth` levels
    /// that are complete; a fill the levels cannot complete says so (`complete: false`).
    ///
    /// # Errors
    /// As [`ClusterReader::read`]: [`ReadError::NotFound`], [`ReadError::NotSynced`],
    /// [`ReadError::WriterGone`], [`ReadError::WriterHung`], [`ReadError::Contended`].
    ///
    /// # Example
    /// ```
    /// use ubdcc_shm::{BookMeta, BookSides, BookStatus, ClusterReader, FillAmount, Level, LevelQuery, RawLevel, SegmentConfig};
    /// use ubdcc_shm::{depth_stats, fill_price};
    ///
    /// let cluster = format!("getbookdoc{}", std::process::id());
    /// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// let book = writer.add_book("binance.com", "BTCUSDT")?;
    /// let bids = [RawLevel { price: 9_900, quantity: 3 }];
    /// let asks = [RawLevel { price: 10_100, quantity: 1 }, RawLevel { price: 10_200, quantity: 2 }];
    /// let sides = BookSides { price_exponent: -2, quantity_exponent: 0, bids: &bids, asks: &asks };
    /// let meta = BookMeta { status: BookStatus::Synced, last_update_id: 7, depth: 10, ..BookMeta::starting() };
    /// writer.publish(book, &meta, &sides)?;
    ///
    /// let mut reader = ClusterReader::open(&cluster)?;
    /// let (info, bids, asks) = reader.get_book("binance.com", "BTCUSDT", &LevelQuery::ALL)?;
    /// assert_eq!((info.last_update_id, bids.len(), asks.len()), (7, 1, 2));
    ///
    /// // A buy of 2 walks the asks of this very version: 1 at 101, 1 at 102.
    /// let fill = fill_price(&asks, FillAmount::Base(2.0));
    /// assert_eq!((fill.average_price, fill.complete), (Some(101.5), true));
    /// let stats = depth_stats(&bids, &asks, 10, &[100.0]).expect("both sides have a level");
    /// assert_eq!((stats.mid, stats.spread), (100.0, 2.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_book(
        &mut self,
        exchange: &str,
        market: &str,
        query: &LevelQuery,
    ) -> Result<(BookInfo, Vec<Level>, Vec<Level>), ReadError> {
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let info = self.read_book(exchange, market, query, &mut bids, &mut asks)?;
        Ok((info, bids, asks))
    }

    /// Like [`ClusterReader::get_book`], but into the caller's buffers, which a warm caller
    /// reuses so that a read allocates nothing (the C ABI and the Python binding do). `bids` and
    /// `asks` are replaced; they are empty after an error.
    ///
    /// # Errors
    /// As [`ClusterReader::get_book`].
    #[inline]
    pub fn read_book(
        &mut self,
        exchange: &str,
        market: &str,
        query: &LevelQuery,
        bids: &mut Vec<Level>,
        asks: &mut Vec<Level>,
    ) -> Result<BookInfo, ReadError> {
        self.read_any(
            exchange,
            market,
            Accept::Synced,
            None,
            |segment, location| {
                segment.read_book(location.slot, location.generation, query, bids, asks)
            },
        )
    }

    /// The best bid and ask ([`ClusterReader::bbo`]) of every book of the cluster on this host,
    /// or of every book of `exchange`, one entry per book (not per replica), sorted by exchange
    /// and market: `(exchange, market, bbo)`.
    ///
    /// Each book is read on its own (one read section each, the slot header only), so two
    /// entries may come from different moments. A book that cannot be served carries its error
    /// instead of a price: [`ReadError::NotSynced`] with its status, [`ReadError::WriterGone`],
    /// [`ReadError::WriterHung`], [`ReadError::Contended`], or [`ReadError::NotFound`] when it
    /// went away while the others were read. The index is refreshed first when it may be out of
    /// date, so books added since the last read are listed.
    pub fn bbo_all(
        &mut self,
        exchange: Option<&str>,
    ) -> Vec<(String, String, Result<Bbo, ReadError>)> {
        if self.is_stale() {
            self.refresh();
        }
        let mut books: Vec<(String, String)> = self
            .index
            .iter()
            .filter(|(name, _)| exchange.is_none_or(|only| **name == *only))
            .flat_map(|(name, markets)| {
                markets
                    .keys()
                    .map(move |market| (name.to_string(), market.to_string()))
            })
            .collect();
        books.sort_unstable();
        books
            .into_iter()
            .map(|(exchange, market)| {
                let bbo = self.bbo(&exchange, &market);
                (exchange, market, bbo)
            })
            .collect()
    }

    /// The metadata of a book (status, ids, timestamps, counts), synced or not; a synced replica
    /// is preferred.
    ///
    /// # Errors
    /// [`ReadError::NotFound`], [`ReadError::WriterGone`], [`ReadError::WriterHung`],
    /// [`ReadError::Contended`].
    pub fn info(&mut self, exchange: &str, market: &str) -> Result<BookInfo, ReadError> {
        let mut none = Vec::new();
        self.read_any(exchange, market, Accept::Any, None, |segment, location| {
            segment.read_slot(
                location.slot,
                location.generation,
                None,
                &LevelQuery::ALL,
                &mut none,
            )
        })
    }

    /// The metadata of a book (as [`ClusterReader::info`]) with its audit results and the hash
    /// of its top levels, from one read section: what issue 16's trust layer publishes. A synced
    /// replica is preferred.
    ///
    /// # Errors
    /// As [`ClusterReader::info`].
    pub fn proof(&mut self, exchange: &str, market: &str) -> Result<BookProof, ReadError> {
        // Kept the way `try_replicas` picks: the first synced replica, else the first readable.
        let (mut synced, mut fallback) = (None, None);
        let info = self.read_any(exchange, market, Accept::Any, None, |segment, location| {
            let mut out = None;
            let read = segment.read_proof(location.slot, location.generation, &mut out)?;
            match read {
                SlotRead::Synced(_) => synced = out,
                SlotRead::NotSynced(_) => {
                    fallback = fallback.or(out);
                }
                SlotRead::Moved | SlotRead::Contended { .. } => {}
            }
            Ok(read)
        })?;
        let proof = if info.status.is_synced() {
            synced
        } else {
            fallback
        };
        // A read that found the book fills it; were that ever not so, the book is reported
        // missing rather than the reader panicking.
        let (audit, top_hash) = proof.ok_or_else(|| ReadError::NotFound {
            cluster: self.cluster.clone(),
            exchange: exchange.to_owned(),
            market: market.to_owned(),
        })?;
        Ok(BookProof {
            info,
            audit,
            top_hash,
        })
    }

    /// Sleeps until the book is written after the change stamp `last_seen` (pass
    /// [`BookInfo::changes`] of the last read, or 0) and returns its new stamp; returns at once
    /// when that already happened. Waits on the replica [`ClusterReader::info`] would read (a
    /// synced one preferred). Every write counts: a publish, a status change (out of sync and
    /// back), the book's removal. A futex wait: no spinning, no write missed, the calling thread
    /// sleeps in the kernel.
    ///
    /// A stamp read from one replica and given to a wait on another (after a failover) compares
    /// by the host's clock: the wait returns once that replica publishes after it, to within a
    /// tick of the coarse clock.
    ///
    /// # Errors
    /// As [`ClusterReader::info`] ([`ReadError::NotFound`], [`ReadError::WriterGone`],
    /// [`ReadError::WriterHung`], [`ReadError::Contended`]). When the writer of the replica
    /// waited on dies or hangs during the wait (seen within 50 ms, like a read), the wait
    /// follows the book to the replica a read would now use and goes on there; with no other
    /// replica readable it ends with that writer's error.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use ubdcc_shm::{BookMeta, BookStatus, ClusterReader, SegmentConfig, WaitOutcome};
    ///
    /// let cluster = format!("waitdoc{}", std::process::id());
    /// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// let book = writer.add_book("binance.com", "BTCUSDT")?;
    /// let mut reader = ClusterReader::open(&cluster)?;
    /// let seen = reader.info("binance.com", "BTCUSDT")?.changes;
    ///
    /// // Nothing new yet: the wait times out.
    /// let idle = reader.wait_for_update("binance.com", "BTCUSDT", seen, Duration::from_millis(1))?;
    /// assert_eq!(idle, WaitOutcome::TimedOut);
    ///
    /// // Another thread (or process) publishes; the waiter wakes with the new stamp.
    /// let publisher = std::thread::spawn(move || {
    ///     let synced = BookMeta { status: BookStatus::Synced, ..BookMeta::starting() };
    ///     writer.publish_meta(book, &synced).expect("live book");
    ///     writer
    /// });
    /// let woken = reader.wait_for_update("binance.com", "BTCUSDT", seen, Duration::from_secs(10))?;
    /// let WaitOutcome::Changed(stamp) = woken else { panic!("published, so not a timeout") };
    /// assert!(stamp > seen);
    /// assert_eq!(reader.info("binance.com", "BTCUSDT")?.changes, stamp);
    /// # drop(publisher.join());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_update(
        &mut self,
        exchange: &str,
        market: &str,
        last_seen: u64,
        timeout: Duration,
    ) -> Result<WaitOutcome, ReadError> {
        // `None`: a timeout beyond what `Instant` holds waits for good.
        let deadline = Instant::now().checked_add(timeout);
        let location = self.serving_location(exchange, market)?;
        match self.segments[location.segment].wait_slot(location.slot, last_seen, timeout) {
            // The replica waited on died or hung: follow the book to the replica a read now
            // uses (the lookup reports the error when there is none) and wait there for the
            // rest of the time.
            Err(ReadError::WriterGone { .. } | ReadError::WriterHung { .. }) => {
                let location = self.serving_location(exchange, market)?;
                let remaining = deadline.map_or(timeout, |deadline| {
                    deadline.saturating_duration_since(Instant::now())
                });
                self.segments[location.segment].wait_slot(location.slot, last_seen, remaining)
            }
            outcome => outcome,
        }
    }

    /// Where the replica [`ClusterReader::info`] reads lives (a synced one preferred).
    fn serving_location(&mut self, exchange: &str, market: &str) -> Result<Location, ReadError> {
        self.info(exchange, market)?;
        self.last_served
            .and_then(|served| {
                self.locations(exchange, market)?
                    .iter()
                    .find(|location| location.segment == served)
            })
            .copied()
            // `info` succeeded, so it served from a location of this book; were that ever not
            // so, the book is reported missing rather than the reader panicking.
            .ok_or_else(|| ReadError::NotFound {
                cluster: self.cluster.clone(),
                exchange: exchange.to_owned(),
                market: market.to_owned(),
            })
    }

    /// The book's current change stamp ([`BookInfo::changes`] of [`ClusterReader::info`]): what
    /// a caller compares with the stamp of its last read to know whether the book changed.
    ///
    /// # Errors
    /// As [`ClusterReader::info`].
    pub fn changes(&mut self, exchange: &str, market: &str) -> Result<u64, ReadError> {
        Ok(self.info(exchange, market)?.changes)
    }

    /// Sleeps until any book of any segment of the cluster changed since the previous call (or,
    /// on the first call, since the segments were created): a write to a book, a writer found
    /// gone or hung (its books now fail over), a segment appearing or disappearing. Returns the
    /// highest segment change stamp then ([`WaitOutcome::Changed`]), or
    /// [`WaitOutcome::TimedOut`].
    ///
    /// One thread waits for every segment at once (one `futex_waitv`, Linux 5.16 or later; up to
    /// 128 segments, more are polled every 50 ms) and then compares the stamps of the books it
    /// cares about ([`ClusterReader::changes`], or [`BookInfo::changes`] of reads) with the ones
    /// it last read. New segments are noticed within 50 ms.
    pub fn wait_for_any(&mut self, timeout: Duration) -> WaitOutcome {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.is_stale() {
                self.refresh();
            }
            // The futex words before the stamps (see `wait`): a write after these loads moves
            // a word, so the sleep below returns at once instead of missing it.
            let words: Vec<_> = self
                .segments
                .iter()
                .filter_map(SegmentReader::segment_wake)
                .collect();
            if let Some(stamp) = scan_segments(&self.segments, &mut self.wait_seen) {
                return WaitOutcome::Changed(stamp);
            }
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => WAIT_SLICE,
            };
            if remaining.is_zero() {
                return WaitOutcome::TimedOut;
            }
            sleep_any(&words, remaining.min(WAIT_SLICE));
        }
    }

    /// Every book of every segment, with the status of each replica, sorted by exchange, market
    /// and segment.
    ///
    /// ```
    /// use ubdcc_shm::{BookStatus, ClusterReader, SegmentConfig};
    ///
    /// let cluster = format!("listdoc{}", std::process::id());
    /// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// writer.add_book("binance.com", "ETHUSDT")?;
    ///
    /// let listed = ClusterReader::open(&cluster)?.list();
    /// assert_eq!(listed.len(), 1);
    /// assert_eq!(listed[0].market, "ETHUSDT");
    /// // Added, not published yet: a reader is told so instead of getting levels.
    /// assert_eq!(listed[0].status.as_ref().ok(), Some(&BookStatus::Starting));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn list(&mut self) -> Vec<BookListing> {
        if self.is_stale() {
            self.refresh();
        }
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
                        Ok(SlotRead::Contended { attempts }) => {
                            Err(contended(exchange, market, segment, attempts))
                        }
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

    /// Reads a replica of a book with `read`, refreshing the index once when the read failed and
    /// the index may be out of date; replicas in the segment of DCN `skip_dcn` are not read.
    #[inline]
    fn read_any(
        &mut self,
        exchange: &str,
        market: &str,
        accept: Accept,
        skip_dcn: Option<&str>,
        mut read: impl FnMut(&SegmentReader, &Location) -> Result<SlotRead, ReadError>,
    ) -> Result<BookInfo, ReadError> {
        let replicas = Replicas {
            exchange,
            market,
            accept,
            skip_dcn,
        };
        let error = match self.try_replicas(&replicas, &mut read) {
            Attempt::Found(info, segment) => {
                self.last_served = Some(segment);
                return Ok(info);
            }
            Attempt::Failed { moved, .. } if moved || self.is_stale() => {
                self.refresh();
                match self.try_replicas(&replicas, &mut read) {
                    Attempt::Found(info, segment) => {
                        self.last_served = Some(segment);
                        return Ok(info);
                    }
                    // The fresh index is the truth: a replica that failed before the refresh
                    // may be gone with its segment (a dead DCN swept away), and then the book
                    // is simply not found.
                    Attempt::Failed { error: retried, .. } => retried,
                }
            }
            Attempt::Failed { error, .. } => error,
        };
        Err(error.unwrap_or_else(|| ReadError::NotFound {
            cluster: self.cluster.clone(),
            exchange: exchange.to_owned(),
            market: market.to_owned(),
        }))
    }

    /// One pass over the replicas the index knows: the first acceptable one wins.
    #[inline]
    fn try_replicas(
        &self,
        replicas: &Replicas<'_>,
        read: &mut impl FnMut(&SegmentReader, &Location) -> Result<SlotRead, ReadError>,
    ) -> Attempt {
        let Replicas {
            exchange,
            market,
            accept,
            skip_dcn,
        } = *replicas;
        let Some(locations) = self.locations(exchange, market) else {
            return Attempt::Failed {
                error: None,
                moved: false,
            };
        };
        let mut first_error = None;
        let mut fallback = None;
        let mut moved = false;
        for location in locations {
            let segment = &self.segments[location.segment];
            if skip_dcn.is_some_and(|skip| dcn_of(segment) == skip) {
                continue;
            }
            let error = match read(segment, location) {
                Ok(SlotRead::Synced(info)) => return Attempt::Found(info, location.segment),
                Ok(SlotRead::NotSynced(info)) if accept == Accept::Any => {
                    fallback.get_or_insert((info, location.segment));
                    continue;
                }
                Ok(SlotRead::NotSynced(info)) => ReadError::NotSynced {
                    exchange: exchange.to_owned(),
                    market: market.to_owned(),
                    status: info.status,
                },
                Ok(SlotRead::Moved) => {
                    moved = true;
                    continue;
                }
                Ok(SlotRead::Contended { attempts }) => {
                    contended(exchange, market, segment, attempts)
                }
                Err(error) => error,
            };
            first_error.get_or_insert(error);
        }
        if let Some((info, segment)) = fallback {
            return Attempt::Found(info, segment);
        }
        Attempt::Failed {
            error: first_error,
            moved,
        }
    }

    #[inline]
    fn locations(&self, exchange: &str, market: &str) -> Option<&[Location]> {
        let (_, markets) = self.index.iter().find(|(name, _)| **name == *exchange)?;
        markets.get(market).map(Vec::as_slice)
    }

    /// `true` when the index may be out of date: `/dev/shm` changed (a segment appeared,
    /// disappeared or was replaced) or a known segment's directory changed.
    ///
    /// The kernel stamps directory times from a coarse clock, so a change within the same tick as
    /// the one the last scan saw leaves the time unchanged. An unchanged time is therefore trusted
    /// only when the scan happened a safe margin after it; until then the index counts as stale.
    fn is_stale(&self) -> bool {
        let mtime = shm_dir_mtime();
        let settled = self
            .scanned_mtime
            .is_some_and(|seen| self.scanned_at >= seen.saturating_add(MTIME_TICK_MARGIN_NS));
        mtime != self.scanned_mtime
            || !settled
            || self
                .segments
                .iter()
                .zip(&self.indexed_versions)
                .any(|(segment, &version)| segment.directory_version() != version)
    }

    /// Rescans the cluster's segments on this host and rebuilds the index. Reads do this by
    /// themselves when they fail and something changed; call it to pick up new books eagerly.
    pub fn refresh(&mut self) {
        // Segment indices change below.
        self.last_served = None;
        // Taken before listing, so a change during the listing makes the next check stale.
        self.scanned_mtime = shm_dir_mtime();
        self.scanned_at = unix_now_ns();
        let names = self.segment_names();
        let mut kept: Vec<SegmentReader> = Vec::with_capacity(names.len());
        let mut previous: Vec<SegmentReader> = std::mem::take(&mut self.segments);
        let mut unopenable = Vec::new();
        let mut changed = false;
        for name in names {
            // A segment whose file is still the one behind its name is kept as it is, even when
            // its writer is gone: reopening it would only find the same dead writer again. A
            // shrunk one is reopened, which reports what it is now (truncated, most likely).
            let same_file = previous
                .iter()
                .position(|s| s.name() == name && is_named_by(s) && !s.is_shrunk());
            if let Some(position) = same_file {
                kept.push(previous.swap_remove(position));
                continue;
            }
            let file_id = file_id_of(&name);
            let known_bad = self
                .unopenable
                .iter()
                .position(|bad| bad.name == name && bad.file_id == file_id);
            if let Some(position) = known_bad {
                unopenable.push(self.unopenable.swap_remove(position));
                continue;
            }
            changed = true;
            match SegmentReader::open(&name, &self.trust) {
                Ok(segment) => kept.push(segment),
                // Gone between listing and opening: nothing to report.
                Err(OpenSegmentError::NotFound { .. }) => {}
                Err(error) => unopenable.push(Unopenable {
                    name,
                    file_id,
                    error,
                }),
            }
        }
        changed |= !previous.is_empty();
        self.retired_retries += previous.iter().map(SegmentReader::retries).sum::<u64>();
        self.segments = kept;
        self.unopenable = unopenable;
        let versions_moved = self
            .segments
            .iter()
            .zip(&self.indexed_versions)
            .any(|(segment, &version)| segment.directory_version() != version);
        if changed || versions_moved {
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
                name.strip_prefix(&prefix).is_some_and(|dcn| {
                    !dcn.is_empty()
                        && !dcn.contains('.')
                        && self.dcn.as_deref().is_none_or(|only| only == dcn)
                })
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

impl std::fmt::Debug for ClusterReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterReader")
            .field("cluster", &self.cluster)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

fn contended(exchange: &str, market: &str, segment: &SegmentReader, attempts: u32) -> ReadError {
    ReadError::Contended {
        exchange: exchange.to_owned(),
        market: market.to_owned(),
        segment: segment.name().to_owned(),
        attempts,
    }
}

/// Compares every segment with what [`ClusterReader::wait_for_any`] last reported (`seen`) and
/// records what it sees now; the highest segment stamp when anything changed (a stamp, a writer's
/// liveness, a segment appearing or disappearing).
fn scan_segments(
    segments: &[SegmentReader],
    seen: &mut HashMap<String, SegmentSeen, FxBuildHasher>,
) -> Option<u64> {
    let mut changed = false;
    seen.retain(|name, _| {
        let kept = segments.iter().any(|segment| segment.name() == name);
        changed |= !kept;
        kept
    });
    let mut highest = 0;
    for segment in segments {
        let now = SegmentSeen {
            live: segment.check_writer().is_ok(),
            stamp: segment.changes(),
        };
        highest = highest.max(now.stamp);
        let before = seen.insert(segment.name().to_owned(), now);
        changed |= before.is_none_or(|before| before != now);
    }
    changed.then_some(highest)
}

/// Longer than one tick of the kernel's coarse clock on any common configuration (HZ=100 gives
/// 10 ms), with room for the coarse and fine clocks to disagree by a tick.
const MTIME_TICK_MARGIN_NS: u64 = 20_000_000;

/// Modification time of `/dev/shm` in Unix ns: it moves whenever an object is created, removed
/// or renamed there, which covers every way a segment can appear, disappear or be replaced.
fn shm_dir_mtime() -> Option<u64> {
    let modified = std::fs::metadata(SHM_DIR).ok()?.modified().ok()?;
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

/// `(dev, inode)` of the shm object `name`.
fn file_id_of(name: &str) -> Option<(u64, u64)> {
    let stat = rustix::fs::stat(format!("{SHM_DIR}/{name}")).ok()?;
    Some((stat.st_dev, stat.st_ino))
}

/// The DCN of a segment: its name's last part (`ubdcc.<cluster>.<dcn>`).
fn dcn_of(segment: &SegmentReader) -> &str {
    let name = segment.name();
    name.rsplit('.').next().unwrap_or(name)
}

/// `true` while the shm name of `segment` still refers to the file it has open, i.e. no newer
/// writer has replaced it.
fn is_named_by(segment: &SegmentReader) -> bool {
    let named = file_id_of(segment.name());
    named.is_some() && segment.file_id() == named
}
