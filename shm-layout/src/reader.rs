//! A read-only view of one DCN's segment: validation at open, liveness checks, directory scans and
//! seqlock reads of single slots.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use crate::book::{Bbo, BookInfo, Level, RawLevel};
use crate::decimal::mantissa_to_f64;
use crate::directory::{load_name, unpack_name};
use crate::error::{OpenSegmentError, ReadError, UntrustedSegment};
use crate::header::{
    LAYOUT_MAJOR, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SegmentHeader, SegmentState,
};
use crate::layout::LAYOUT_HASH;
use crate::liveness::{
    HUNG_AFTER, LOCK_PROBE_INTERVAL_NS, is_writer_lock_free, monotonic_coarse_ns,
};
use crate::mapping::{Access, Mapping};
use crate::proof::{Audit, Freshness, TopHash};
use crate::query::LevelQuery;
use crate::ring::Ring;
use crate::segment::{Geometry, SHM_DIR, SegmentView};
use crate::seqlock::{ReadSection, RetryBudget};
use crate::slot::{LevelWords, SlotHeader, unpack_exponents, unpack_pair, unpack_status_extras};
use crate::status::{BookStatus, Side};
use crate::trust::{Distrust, Trust};
use crate::wait::{FutexWord, WaitOutcome, wait_for_change};

/// Who writes a segment, as recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterInfo {
    /// Process id.
    pub pid: u32,
    /// Process start time in clock ticks since boot (pid-reuse guard).
    pub start_time: u64,
    /// Unix nanoseconds at which the writer created the segment.
    pub epoch: u64,
}

/// One book found in a segment's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryListing {
    /// Exchange string.
    pub exchange: String,
    /// Market symbol.
    pub market: String,
    /// Slot index.
    pub slot: u32,
    /// Generation of the slot.
    pub generation: u64,
}

/// When a liveness check probes the writer's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockProbe {
    /// When the heartbeat looks stale or the last probe is older than the probe interval.
    WhenDue,
    /// Now: the slot looks abandoned mid-publish.
    Now,
}

/// What a seqlock read of one slot found.
pub(crate) enum SlotRead {
    /// A synced book; the levels asked for are in the output buffer.
    Synced(BookInfo),
    /// The book is there but not synced; no levels were copied.
    NotSynced(BookInfo),
    /// The slot no longer holds the generation asked for: the book was removed or replaced.
    Moved,
    /// The slot was being written during every attempt for the whole retry time while its
    /// writer looked alive.
    Contended {
        /// Attempts made.
        attempts: u32,
    },
}

/// `SegmentReader::ended`: still served.
const SERVING: u8 = 0;
/// `SegmentReader::ended`: the writer closed the segment or died.
const WRITER_GONE: u8 = 1;
/// `SegmentReader::ended`: the file became smaller than mapped.
const SHRUNK: u8 = 2;

/// A validated, read-only mapping of one segment.
///
/// `SegmentReader` is `Send + Sync`; reads take `&self` and never write to the segment. Most
/// readers want a [`crate::ClusterReader`] (any book of a cluster, whichever DCN holds it); one
/// segment is opened by its name, and trusted only if its owner is:
///
/// ```
/// use ubdcc_shm::{SegmentConfig, SegmentReader, Trust};
///
/// let cluster = format!("segdoc{}", std::process::id());
/// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
/// writer.add_book("binance.com", "BTCUSDT")?;
///
/// let reader = SegmentReader::open(writer.name(), &Trust::own_user())?;
/// let books = reader.books();
/// assert_eq!((books[0].exchange.as_str(), books[0].market.as_str()), ("binance.com", "BTCUSDT"));
/// assert_eq!(reader.levels_per_side(), 10);
/// assert!(reader.check_writer_now().is_ok(), "the writer lives");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SegmentReader {
    name: String,
    fd: OwnedFd,
    view: SegmentView,
    writer: WriterInfo,
    /// Bytes mapped: the file's size at open. A smaller file means someone shrank it.
    mapped_len: u64,
    /// Coarse-clock time of the last lock probe; rate-limits probes across threads.
    last_probe_ns: AtomicU64,
    /// Sticky: why this segment is no longer served ([`SERVING`] while it is). Once the writer is
    /// gone it never comes back to this file, and a shrunk file is never mapped memory again.
    ended: AtomicU8,
    /// Read sections retried because the writer was mid-publish (for metrics; counted only on
    /// the retry path, never on the fast path).
    retries: AtomicU64,
}

impl SegmentReader {
    /// Opens and validates the segment called `name` (e.g. `ubdcc.default.dcn-0`), if `trust`
    /// believes its owner and mode (checked on the open descriptor before anything is mapped).
    ///
    /// # Errors
    /// [`OpenSegmentError::NotFound`] when it does not exist; [`OpenSegmentError::Untrusted`]
    /// when its owner is not trusted, group or others may write it, or it is not a regular file;
    /// [`OpenSegmentError::Truncated`], [`OpenSegmentError::BadMagic`],
    /// [`OpenSegmentError::LayoutVersion`], [`OpenSegmentError::LayoutHash`],
    /// [`OpenSegmentError::Corrupt`] or [`OpenSegmentError::NotReady`] when it is not a complete
    /// segment of this layout; a dead or closed writer is not an open error (reads report it).
    pub fn open(name: &str, trust: &Trust) -> Result<Self, OpenSegmentError> {
        let io = |op: &'static str| {
            move |e: rustix::io::Errno| OpenSegmentError::Io {
                op,
                name: name.to_owned(),
                source: e.into(),
            }
        };
        let untrusted = |reason: Distrust| {
            OpenSegmentError::from(UntrustedSegment {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(OpenSegmentError::NotFound {
                name: name.to_owned(),
            });
        }
        // What `shm_open` does, plus NONBLOCK and NOFOLLOW: a FIFO planted under a segment's name
        // must not block the open, nor a symbolic link lead elsewhere (see `trust`).
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(format!("{SHM_DIR}/{name}"), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                return Err(OpenSegmentError::NotFound {
                    name: name.to_owned(),
                });
            }
            Err(rustix::io::Errno::LOOP) => return Err(untrusted(Distrust::NotRegularFile)),
            Err(errno) => return Err(io("open")(errno)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(io("stat"))?;
        trust.check(&stat).map_err(untrusted)?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size < SEGMENT_HEADER_SIZE as u64 {
            return Err(OpenSegmentError::Truncated {
                name: name.to_owned(),
                size,
                expected: SEGMENT_HEADER_SIZE as u64,
            });
        }
        let len = usize::try_from(size).map_err(|_| OpenSegmentError::Corrupt {
            name: name.to_owned(),
            reason: format!("size {size}"),
        })?;
        let map = Mapping::new(fd.as_fd(), len, Access::ReadOnly).map_err(|source| {
            OpenSegmentError::Io {
                op: "map",
                name: name.to_owned(),
                source,
            }
        })?;
        let header: &SegmentHeader = map.get(0);
        let writer = validate_header(header, size, name)?;
        let geometry = Geometry::from_header(header, size, name)?;
        Ok(Self {
            name: name.to_owned(),
            fd,
            view: SegmentView::new(map, geometry),
            writer,
            mapped_len: size,
            last_probe_ns: AtomicU64::new(0),
            ended: AtomicU8::new(SERVING),
            retries: AtomicU64::new(0),
        })
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long ago the writer last beat (it beats every [`crate::HEARTBEAT_INTERVAL`] while
    /// alive; readers call it hung after [`crate::HUNG_AFTER`]).
    ///
    /// A shrunk segment reports [`std::time::Duration::MAX`] (its header is not read again).
    pub fn heartbeat_age(&self) -> std::time::Duration {
        if self.is_shrunk() {
            return std::time::Duration::MAX;
        }
        // Relaxed: an age a moment old is as good as a current one.
        let beat = self.view.header().heartbeat_ns.load(Ordering::Relaxed);
        std::time::Duration::from_nanos(monotonic_coarse_ns().saturating_sub(beat))
    }

    /// Read sections retried so far because the writer was publishing the same book.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The writer recorded in the header.
    pub fn writer(&self) -> WriterInfo {
        self.writer
    }

    /// Capacity of each side of each book.
    pub fn levels_per_side(&self) -> u32 {
        self.view.geometry().levels_per_side
    }

    /// The directory's change counter; it moves whenever a book is added or removed. A shrunk
    /// segment reports 0 (its header is not read again).
    pub fn directory_version(&self) -> u64 {
        if self.is_shrunk() {
            return 0;
        }
        // Relaxed + Acquire fence (only Relaxed loads are allowed on a read-only mapping).
        let version = self.view.header().directory_version.load(Ordering::Relaxed);
        // SYNC POINT (Acquire fence): pairs with the Release bump in `SegmentWriter`.
        fence(Ordering::Acquire);
        version
    }

    /// The segment's change stamp: that of its latest write to any book (0 before the first; a
    /// shrunk segment reports 0, its header is not read again). See
    /// [`SegmentReader::wait_for_any`].
    pub fn changes(&self) -> u64 {
        if self.is_shrunk() {
            return 0;
        }
        load_stamp(&self.view.header().changes)
    }

    /// Sleeps until a book of this segment is written after the change stamp `last_seen`
    /// (a publish, a status change, a book added or removed), and returns the segment's stamp
    /// then; returns at once when that already happened (`last_seen` 0: once anything was ever
    /// written). A futex wait: no spinning, and no write missed (see `wait` in the crate source).
    ///
    /// # Errors
    /// [`ReadError::WriterGone`], [`ReadError::WriterHung`], [`ReadError::SegmentShrunk`],
    /// [`ReadError::Io`], found before the wait and at least every 50 ms during it.
    pub fn wait_for_any(
        &self,
        last_seen: u64,
        timeout: Duration,
    ) -> Result<WaitOutcome, ReadError> {
        let header = self.view.header();
        wait_for_change(
            &header.wake,
            || load_stamp(&header.changes),
            last_seen,
            timeout,
            || self.check_writer(),
        )
    }

    /// Sleeps until the book `listing` names (from [`SegmentReader::books`]) is written after
    /// the change stamp `last_seen` ([`crate::BookInfo::changes`] of a read), and returns its
    /// stamp then; returns at once when that already happened. A removed book counts as
    /// written: the read that follows says it is gone.
    ///
    /// # Errors
    /// As [`SegmentReader::wait_for_any`].
    pub fn wait_for_update(
        &self,
        listing: &DirectoryListing,
        last_seen: u64,
        timeout: Duration,
    ) -> Result<WaitOutcome, ReadError> {
        self.wait_slot(listing.slot, last_seen, timeout)
    }

    /// [`SegmentReader::wait_for_update`] by slot index.
    pub(crate) fn wait_slot(
        &self,
        slot: u32,
        last_seen: u64,
        timeout: Duration,
    ) -> Result<WaitOutcome, ReadError> {
        let header = self.view.slot(slot);
        wait_for_change(
            &header.wake,
            || load_stamp(&header.changes),
            last_seen,
            timeout,
            || self.check_writer(),
        )
    }

    /// The segment's futex word as it is now, for a wait on many segments at once; `None` for
    /// a segment no longer served (its memory is not touched).
    pub(crate) fn segment_wake(&self) -> Option<(&AtomicU32, u32)> {
        if self.ended.load(Ordering::Relaxed) != SERVING {
            return None;
        }
        let word = &self.view.header().wake;
        Some((word, word.load_acquire()))
    }

    /// `(dev, inode)` of the open file, to tell whether the name now refers to a newer segment.
    pub(crate) fn file_id(&self) -> Option<(u64, u64)> {
        let stat = rustix::fs::fstat(&self.fd).ok()?;
        Some((stat.st_dev, stat.st_ino))
    }

    /// Checks that the writer is alive and beating.
    ///
    /// # Errors
    /// [`ReadError::WriterGone`] when it closed the segment or its lock is free (it died),
    /// [`ReadError::WriterHung`] when its heartbeat is older than [`crate::HUNG_AFTER`],
    /// [`ReadError::Io`] when the lock cannot be probed.
    #[inline]
    pub fn check_writer(&self) -> Result<(), ReadError> {
        self.check_liveness(LockProbe::WhenDue)
    }

    /// Like [`SegmentReader::check_writer`], but probes the writer's lock now, however recently
    /// it was probed (for sweeps that act on the answer).
    ///
    /// # Errors
    /// As [`SegmentReader::check_writer`].
    pub fn check_writer_now(&self) -> Result<(), ReadError> {
        self.check_liveness(LockProbe::Now)
    }

    #[inline]
    fn check_liveness(&self, probe: LockProbe) -> Result<(), ReadError> {
        if self.ended.load(Ordering::Relaxed) != SERVING {
            return Err(self.ended_error());
        }
        let now = monotonic_coarse_ns();
        // The probe is three syscalls, so it runs at most every probe interval, also while the
        // writer is hung: a hung writer that then dies is still seen gone within the interval.
        // It runs before the header is read, so a shrunk file is caught before it is touched.
        let probe_due = probe == LockProbe::Now
            || now.saturating_sub(self.last_probe_ns.load(Ordering::Relaxed))
                >= LOCK_PROBE_INTERVAL_NS;
        if probe_due {
            self.probe(now)?;
        }
        let header = self.view.header();
        // Relaxed: `state` only moves to Closed; seeing it a little late is the same as reading a
        // moment earlier.
        if header.state.load(Ordering::Relaxed) != SegmentState::Ready as u32 {
            return Err(self.end(WRITER_GONE));
        }
        let silent = now.saturating_sub(header.heartbeat_ns.load(Ordering::Relaxed));
        if silent >= HUNG_AFTER.as_nanos() as u64 {
            return Err(ReadError::WriterHung {
                segment: self.name.clone(),
                pid: self.writer.pid,
                silent_ms: silent / 1_000_000,
            });
        }
        Ok(())
    }

    /// Checks that the file still has the size mapped, then probes the writer's lock.
    ///
    /// The size check is this reader's answer to a trusted writer that breaks the rule that
    /// segments are never shrunk; `trust` explains why nobody untrusted can shrink a segment
    /// that was opened, and why reads are not guarded further.
    #[cold]
    fn probe(&self, now: u64) -> Result<(), ReadError> {
        self.last_probe_ns.store(now, Ordering::Relaxed);
        let io = |source: std::io::Error| ReadError::Io {
            segment: self.name.clone(),
            source,
        };
        let stat = rustix::fs::fstat(&self.fd).map_err(|errno| io(errno.into()))?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size < self.mapped_len {
            self.end(SHRUNK);
            return Err(ReadError::SegmentShrunk {
                segment: self.name.clone(),
                mapped: self.mapped_len,
                size,
            });
        }
        if is_writer_lock_free(self.fd.as_fd()).map_err(io)? {
            return Err(self.end(WRITER_GONE));
        }
        Ok(())
    }

    /// `true` once the file was seen smaller than mapped: its memory is never touched again, and
    /// every read reports [`ReadError::SegmentShrunk`].
    pub fn is_shrunk(&self) -> bool {
        self.ended.load(Ordering::Relaxed) == SHRUNK
    }

    /// `true` once the writer has been seen gone; such a segment never serves again.
    pub fn is_writer_gone(&self) -> bool {
        self.ended.load(Ordering::Relaxed) == WRITER_GONE
    }

    /// Stops serving this segment for good, for `why`; returns the error reads report from now on.
    fn end(&self, why: u8) -> ReadError {
        // Relaxed: a sticky flag read by this process's readers; the first reason stays.
        self.ended
            .compare_exchange(SERVING, why, Ordering::Relaxed, Ordering::Relaxed)
            .ok();
        self.ended_error()
    }

    fn ended_error(&self) -> ReadError {
        if self.ended.load(Ordering::Relaxed) == SHRUNK {
            let size = rustix::fs::fstat(&self.fd)
                .map_or(0, |stat| u64::try_from(stat.st_size).unwrap_or(0));
            return ReadError::SegmentShrunk {
                segment: self.name.clone(),
                mapped: self.mapped_len,
                size,
            };
        }
        self.gone_error()
    }

    fn gone_error(&self) -> ReadError {
        ReadError::WriterGone {
            segment: self.name.clone(),
            pid: self.writer.pid,
        }
    }

    /// Every book in the directory, each entry read consistently.
    ///
    /// One retry budget covers the whole scan, so entries left mid-write by a dead writer (or a
    /// hostile file) cost at most that budget in total, not per entry; such entries are skipped.
    /// A shrunk segment lists no book.
    pub fn books(&self) -> Vec<DirectoryListing> {
        if self.is_shrunk() {
            return Vec::new();
        }
        let mut budget = RetryBudget::new();
        (0..self.view.geometry().slot_count)
            .filter_map(|slot| self.read_entry(slot, &mut budget))
            .collect()
    }

    fn read_entry(&self, slot: u32, budget: &mut RetryBudget) -> Option<DirectoryListing> {
        let entry = self.view.entry(slot);
        loop {
            let Some(section) = ReadSection::begin(&entry.seq) else {
                if !budget.retry() {
                    // A writer that died inside this entry's section leaves it busy for good.
                    return None;
                }
                continue;
            };
            let in_use = entry.in_use.load(Ordering::Relaxed) == 1;
            let generation = entry.generation.load(Ordering::Relaxed);
            let exchange = load_name(&entry.exchange);
            let market = load_name(&entry.market);
            if !section.validate(&entry.seq) {
                if !budget.retry() {
                    return None;
                }
                continue;
            }
            if !in_use {
                return None;
            }
            return Some(DirectoryListing {
                exchange: unpack_name(&exchange),
                market: unpack_name(&market),
                slot,
                generation,
            });
        }
    }

    /// Reads one slot: its info and, for a synced book, the levels of `side` that `query` selects,
    /// into `out`. `out` holds levels only after `Ok(SlotRead::Synced(_))`; it is empty after any
    /// other outcome. Checks the writer first, so a dead or hung writer's data is never returned.
    #[inline]
    pub(crate) fn read_slot(
        &self,
        slot: u32,
        generation: u64,
        side: Option<Side>,
        query: &LevelQuery,
        out: &mut Vec<Level>,
    ) -> Result<SlotRead, ReadError> {
        let mut copy = SideCopy { side, query, out };
        self.read_section(slot, generation, &mut copy)
    }

    /// Reads the selected levels of both sides of a synced slot as `f64`s, with the info, from one
    /// read section: `bids` and `asks` are one version of the book, the version `info` names.
    /// Each side is selected by `query` on its own (its own threshold walk). The sides hold the
    /// levels only after `Ok(SlotRead::Synced(_))`; they are empty after any other outcome.
    #[inline]
    pub(crate) fn read_book(
        &self,
        slot: u32,
        generation: u64,
        query: &LevelQuery,
        bids: &mut Vec<Level>,
        asks: &mut Vec<Level>,
    ) -> Result<SlotRead, ReadError> {
        let mut copy = BothSidesCopy { query, bids, asks };
        self.read_section(slot, generation, &mut copy)
    }

    /// Reads the best bid and ask of a synced slot: one read section over the slot header's two
    /// cache lines (ids, times, rings, exponents and the best levels), no level line. `out`
    /// holds the result only after `Ok(SlotRead::Synced(_))`.
    #[inline]
    pub(crate) fn read_bbo(
        &self,
        slot: u32,
        generation: u64,
        out: &mut Option<Bbo>,
    ) -> Result<SlotRead, ReadError> {
        let mut copy = BboCopy(out);
        self.read_section(slot, generation, &mut copy)
    }

    /// The best bid and ask of the book `listing` names (from [`SegmentReader::books`]), from the
    /// slot header alone.
    ///
    /// # Errors
    /// [`ReadError::NotSynced`] when the book is not synced, [`ReadError::NotFound`] when the
    /// slot no longer holds it (removed or replaced), [`ReadError::WriterGone`],
    /// [`ReadError::WriterHung`], [`ReadError::Contended`].
    pub fn bbo(&self, listing: &DirectoryListing) -> Result<Bbo, ReadError> {
        let mut out = None;
        let read = self.read_bbo(listing.slot, listing.generation, &mut out)?;
        match (read, out) {
            (SlotRead::Synced(_), Some(bbo)) => Ok(bbo),
            (SlotRead::NotSynced(info), _) => Err(ReadError::NotSynced {
                exchange: listing.exchange.clone(),
                market: listing.market.clone(),
                status: info.status,
            }),
            (SlotRead::Contended { attempts }, _) => Err(ReadError::Contended {
                exchange: listing.exchange.clone(),
                market: listing.market.clone(),
                segment: self.name.clone(),
                attempts,
            }),
            (SlotRead::Moved | SlotRead::Synced(_), _) => Err(ReadError::NotFound {
                cluster: String::new(),
                exchange: listing.exchange.clone(),
                market: listing.market.clone(),
            }),
        }
    }

    /// Reads a slot's info (synced or not) with its audit results and top hash, from one read
    /// section. `out` holds them after `Ok(SlotRead::Synced(_) | SlotRead::NotSynced(_))`.
    pub(crate) fn read_proof(
        &self,
        slot: u32,
        generation: u64,
        out: &mut Option<(Audit, TopHash)>,
    ) -> Result<SlotRead, ReadError> {
        let mut copy = ProofCopy(out);
        self.read_section(slot, generation, &mut copy)
    }

    /// Copies both sides of a synced slot as exact mantissas, with the exponents and the info,
    /// all from one read section, into `out`. `out` holds the book only after
    /// `Ok(SlotRead::Synced(_))`; its sides are empty after any other outcome.
    ///
    /// The writer is checked before the copy and probed again after it: a copy seeds a book that
    /// then lives for hours, which is worth three syscalls to know its writer was alive after the
    /// copy and not merely at the last probe.
    pub(crate) fn copy_slot(
        &self,
        slot: u32,
        generation: u64,
        out: &mut RawCopy,
    ) -> Result<SlotRead, ReadError> {
        let read = self.read_section(slot, generation, out)?;
        if matches!(read, SlotRead::Synced(_))
            && let Err(error) = self.check_liveness(LockProbe::Now)
        {
            out.discard();
            return Err(error);
        }
        Ok(read)
    }

    /// The seqlock read of one slot that every read shares: begin, Relaxed loads of the info and
    /// (for a synced book of the generation asked for) of what `copy` takes, validate, retry
    /// within one budget. Checks the writer first; when the budget runs out, probes it at once.
    #[inline]
    fn read_section<C: SectionCopy>(
        &self,
        slot: u32,
        generation: u64,
        copy: &mut C,
    ) -> Result<SlotRead, ReadError> {
        copy.discard();
        self.check_writer()?;
        let header = self.view.slot(slot);
        let mut budget = RetryBudget::new();
        loop {
            let Some(section) = ReadSection::begin(&header.seq) else {
                self.retries.fetch_add(1, Ordering::Relaxed);
                if !budget.retry() {
                    break;
                }
                continue;
            };
            let status = BookStatus::from_word(header.status.load(Ordering::Relaxed));
            let found_generation = header.generation.load(Ordering::Relaxed);
            // Only a synced version of the book asked for gets its levels copied; anything else
            // (removed, replaced by another book, not synced) copies nothing.
            let state = status
                .filter(|_| found_generation == generation)
                .map(|status| load_state(header, status, generation));
            if state.is_some() {
                copy.copy_meta(header);
            }
            if let Some(state) = &state
                && state.info.status.is_synced()
            {
                copy.copy(&self.view, slot, header, state);
            }
            if !section.validate(&header.seq) {
                copy.discard();
                self.retries.fetch_add(1, Ordering::Relaxed);
                if !budget.retry() {
                    break;
                }
                continue;
            }
            return Ok(match state {
                None => SlotRead::Moved,
                Some(state) if state.info.status.is_synced() => SlotRead::Synced(state.info),
                Some(state) => SlotRead::NotSynced(state.info),
            });
        }
        // The slot stayed busy for the whole budget. A writer stopped or killed inside a publish
        // leaves it busy for good, so say that when it is the case rather than "contended".
        self.check_liveness(LockProbe::Now)?;
        Ok(SlotRead::Contended {
            attempts: budget.attempts(),
        })
    }
}

/// What a read section copies out of a synced slot besides its info.
trait SectionCopy {
    /// Copies what it takes of the slot header for a book found in the slot, synced or not
    /// (inside the section, like [`SectionCopy::copy`]); most copies take nothing here.
    fn copy_meta(&mut self, _header: &SlotHeader) {}

    /// Copies with Relaxed loads inside an open read section; the caller validates afterwards
    /// and calls [`SectionCopy::discard`] when the section did not hold. Loaded counts may be
    /// torn, so every copy stays inside the slot's capacity.
    fn copy(&mut self, view: &SegmentView, slot: u32, header: &SlotHeader, state: &SlotState);

    /// Forgets whatever was copied: before a read, and after a section that did not validate.
    fn discard(&mut self);
}

/// The selected levels of one side as `f64`s (`side: None` copies nothing: a metadata read).
struct SideCopy<'a> {
    side: Option<Side>,
    query: &'a LevelQuery,
    out: &'a mut Vec<Level>,
}

impl SectionCopy for SideCopy<'_> {
    #[inline]
    fn copy(&mut self, view: &SegmentView, slot: u32, header: &SlotHeader, state: &SlotState) {
        let Some(side) = self.side else {
            return;
        };
        let levels = view.levels(slot, side);
        let (price_exponent, quantity_exponent) =
            unpack_exponents(header.exponents.load(Ordering::Relaxed));
        copy_levels(
            levels,
            state.ring(side),
            price_exponent,
            quantity_exponent,
            self.query,
            self.out,
        );
    }

    #[inline]
    fn discard(&mut self) {
        self.out.clear();
    }
}

/// The selected levels of both sides as `f64`s: what [`crate::ClusterReader::read_book`] reads.
struct BothSidesCopy<'a> {
    query: &'a LevelQuery,
    bids: &'a mut Vec<Level>,
    asks: &'a mut Vec<Level>,
}

impl SectionCopy for BothSidesCopy<'_> {
    #[inline]
    fn copy(&mut self, view: &SegmentView, slot: u32, header: &SlotHeader, state: &SlotState) {
        // One load of the exponents for both sides: they belong to the same version.
        let (price_exponent, quantity_exponent) =
            unpack_exponents(header.exponents.load(Ordering::Relaxed));
        for (side, out) in [(Side::Bids, &mut *self.bids), (Side::Asks, &mut *self.asks)] {
            copy_levels(
                view.levels(slot, side),
                state.ring(side),
                price_exponent,
                quantity_exponent,
                self.query,
                out,
            );
        }
    }

    #[inline]
    fn discard(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }
}

/// Both sides of a slot as exact mantissas, with their exponents: what seeds a book.
#[derive(Debug, Default)]
pub(crate) struct RawCopy {
    pub(crate) price_exponent: i8,
    pub(crate) quantity_exponent: i8,
    pub(crate) bids: Vec<RawLevel>,
    pub(crate) asks: Vec<RawLevel>,
}

impl SectionCopy for RawCopy {
    fn copy(&mut self, view: &SegmentView, slot: u32, header: &SlotHeader, state: &SlotState) {
        (self.price_exponent, self.quantity_exponent) =
            unpack_exponents(header.exponents.load(Ordering::Relaxed));
        copy_raw(
            view.levels(slot, Side::Bids),
            state.ring(Side::Bids),
            &mut self.bids,
        );
        copy_raw(
            view.levels(slot, Side::Asks),
            state.ring(Side::Asks),
            &mut self.asks,
        );
    }

    fn discard(&mut self) {
        self.price_exponent = 0;
        self.quantity_exponent = 0;
        self.bids.clear();
        self.asks.clear();
    }
}

/// The best bid and ask from the header's best-level words: what [`SegmentReader::bbo`] reads.
struct BboCopy<'a>(&'a mut Option<Bbo>);

impl SectionCopy for BboCopy<'_> {
    #[inline]
    fn copy(&mut self, _view: &SegmentView, _slot: u32, header: &SlotHeader, state: &SlotState) {
        let info = &state.info;
        let (price_exponent, quantity_exponent) =
            unpack_exponents(header.exponents.load(Ordering::Relaxed));
        let level = |price: &AtomicU64, quantity: &AtomicU64| Level {
            price: mantissa_to_f64(price.load(Ordering::Relaxed), price_exponent),
            quantity: mantissa_to_f64(quantity.load(Ordering::Relaxed), quantity_exponent),
        };
        *self.0 = Some(Bbo {
            bid: (info.bid_count > 0)
                .then(|| level(&header.best_bid_price, &header.best_bid_quantity)),
            ask: (info.ask_count > 0)
                .then(|| level(&header.best_ask_price, &header.best_ask_quantity)),
            last_update_id: info.last_update_id,
            event_time_ms: info.event_time_ms,
            receive_time_ns: info.receive_time_ns,
            publish_time_ns: info.publish_time_ns,
            depth: info.depth,
            generation: info.generation,
            changes: info.changes,
            freshness: info.freshness,
        });
    }

    #[inline]
    fn discard(&mut self) {
        *self.0 = None;
    }
}

/// What a read section loads from a slot header before copying anything: the info readers get,
/// and where each side's levels are (both from one load of `rings`).
pub(crate) struct SlotState {
    info: BookInfo,
    bids: Ring,
    asks: Ring,
}

impl SlotState {
    /// The ring of `side`.
    #[inline]
    fn ring(&self, side: Side) -> Ring {
        match side {
            Side::Bids => self.bids,
            Side::Asks => self.asks,
        }
    }
}

/// Copies a side's levels best first (at most its capacity: a torn ring may claim more) as raw
/// mantissas into `out`, replacing what it held.
fn copy_raw(words: &[LevelWords], ring: Ring, out: &mut Vec<RawLevel>) {
    let (first, second) = ring.runs(usize::MAX, words.len() as u32);
    out.clear();
    for run in [first, second] {
        out.extend(words[run].iter().map(|word| RawLevel {
            price: word.price.load(Ordering::Relaxed),
            quantity: word.quantity.load(Ordering::Relaxed),
        }));
    }
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("name", &self.name)
            .field("writer", &self.writer)
            .field("writer_gone", &self.is_writer_gone())
            .finish_non_exhaustive()
    }
}

/// Loads a change stamp outside any read section: Relaxed (all a read-only mapping allows), then
/// an Acquire fence.
#[inline]
fn load_stamp(stamp: &AtomicU64) -> u64 {
    let value = stamp.load(Ordering::Relaxed);
    // SYNC POINT (Acquire fence): pairs with the Release that published the stamp (the slot's
    // closing seqlock store, or the segment stamp's own store in `SlotSection::drop`), so a read
    // of the book after the wait sees at least the version of this stamp.
    fence(Ordering::Acquire);
    value
}

/// Loads a slot's metadata and rings (Relaxed; the caller validates the section afterwards).
#[inline]
fn load_state(header: &SlotHeader, status: BookStatus, generation: u64) -> SlotState {
    let (bids, asks) = unpack_pair(header.rings.load(Ordering::Relaxed));
    let (bids, asks) = (Ring::unpack(bids), Ring::unpack(asks));
    let (resyncs, gaps) = unpack_pair(header.sync_counters.load(Ordering::Relaxed));
    let (freshness, depth) = unpack_status_extras(header.status.load(Ordering::Relaxed));
    let info = BookInfo {
        status,
        last_update_id: header.last_update_id.load(Ordering::Relaxed),
        event_time_ms: header.event_time_ms.load(Ordering::Relaxed),
        receive_time_ns: header.receive_time_ns.load(Ordering::Relaxed),
        publish_time_ns: header.publish_time_ns.load(Ordering::Relaxed),
        bid_count: bids.len,
        ask_count: asks.len,
        resyncs,
        gaps,
        depth,
        updates: header.updates.load(Ordering::Relaxed),
        generation,
        changes: header.changes.load(Ordering::Relaxed),
        freshness: Freshness::from_bits(freshness),
    };
    SlotState { info, bids, asks }
}

/// The audit results and top hash of a book found in the slot, synced or not, from the slot
/// header's third cache line: what [`crate::ClusterReader::proof`] adds to the info.
pub(crate) struct ProofCopy<'a>(pub(crate) &'a mut Option<(Audit, TopHash)>);

impl SectionCopy for ProofCopy<'_> {
    fn copy_meta(&mut self, header: &SlotHeader) {
        *self.0 = Some(load_proof(header));
    }

    fn copy(&mut self, _view: &SegmentView, _slot: u32, _header: &SlotHeader, _state: &SlotState) {}

    fn discard(&mut self) {
        *self.0 = None;
    }
}

/// Loads the audit results and the top hash (Relaxed, inside the caller's read section).
#[inline]
fn load_proof(header: &SlotHeader) -> (Audit, TopHash) {
    let (audits, audit_mismatches) = unpack_pair(header.audit_counters.load(Ordering::Relaxed));
    let audit = Audit {
        verified_at_ms: header.verified_at_ms.load(Ordering::Relaxed),
        audits,
        audit_mismatches,
    };
    let top_hash = TopHash {
        hash: header.top_hash.load(Ordering::Relaxed),
        update_id: header.top_hash_update_id.load(Ordering::Relaxed),
    };
    (audit, top_hash)
}

/// Converts and selects levels best-first; touches only the levels the query can return (at
/// most two runs of the ring, the second where the first wraps).
#[inline]
fn copy_levels(
    words: &[LevelWords],
    ring: Ring,
    price_exponent: i8,
    quantity_exponent: i8,
    query: &LevelQuery,
    out: &mut Vec<Level>,
) {
    let (first, second) = ring.runs(query.max_levels(usize::MAX), words.len() as u32);
    out.reserve(first.len() + second.len());
    let mut walk = query.walk();
    for run in [first, second] {
        for word in &words[run] {
            let price = mantissa_to_f64(word.price.load(Ordering::Relaxed), price_exponent);
            let quantity =
                mantissa_to_f64(word.quantity.load(Ordering::Relaxed), quantity_exponent);
            if !walk.take(price, quantity) {
                return;
            }
            out.push(Level { price, quantity });
        }
    }
}

/// Checks identity and version before anything else in the header is trusted.
fn validate_header(
    header: &SegmentHeader,
    size: u64,
    name: &str,
) -> Result<WriterInfo, OpenSegmentError> {
    // Relaxed + Acquire fence: only Relaxed loads are allowed on a read-only mapping.
    let state = header.state.load(Ordering::Relaxed);
    // SYNC POINT (Acquire fence): pairs with the Release store of `state` in
    // `SegmentWriter::build`; after it every header field the writer initialised is visible.
    fence(Ordering::Acquire);
    let magic = header.magic.load(Ordering::Relaxed);
    if magic != SEGMENT_MAGIC {
        return Err(OpenSegmentError::BadMagic {
            name: name.to_owned(),
            found: magic,
        });
    }
    match SegmentState::try_from(state) {
        Ok(SegmentState::Ready | SegmentState::Closed) => {}
        Ok(SegmentState::Initializing) => {
            return Err(OpenSegmentError::NotReady {
                name: name.to_owned(),
            });
        }
        Err(code) => {
            return Err(OpenSegmentError::Corrupt {
                name: name.to_owned(),
                reason: format!("state {code}"),
            });
        }
    }
    let major = header.layout_major.load(Ordering::Relaxed);
    let minor = header.layout_minor.load(Ordering::Relaxed);
    if major != LAYOUT_MAJOR {
        return Err(OpenSegmentError::LayoutVersion {
            name: name.to_owned(),
            expected_major: LAYOUT_MAJOR,
            found_major: major,
            found_minor: minor,
        });
    }
    let hash = header.layout_hash.load(Ordering::Relaxed);
    if hash != LAYOUT_HASH {
        return Err(OpenSegmentError::LayoutHash {
            name: name.to_owned(),
            expected: LAYOUT_HASH,
            found: hash,
        });
    }
    let claimed = header.segment_size.load(Ordering::Relaxed);
    if claimed > size {
        return Err(OpenSegmentError::Truncated {
            name: name.to_owned(),
            size,
            expected: claimed,
        });
    }
    Ok(WriterInfo {
        pid: header.writer_pid.load(Ordering::Relaxed),
        start_time: header.writer_start_time.load(Ordering::Relaxed),
        epoch: header.writer_epoch.load(Ordering::Relaxed),
    })
}
