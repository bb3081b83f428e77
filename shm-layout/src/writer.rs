//! The one writer of a segment: creates it complete, publishes books in seqlock sections, keeps
//! the heartbeat, and removes the segment when dropped.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fs::{Mode, RenameFlags};
use rustix::shm;

use crate::book::{BookEdits, BookMeta, BookSides, LevelEdit, RawLevel};
use crate::directory::{pack_name, store_name};
use crate::error::{CreateSegmentError, WriteError};
use crate::header::SegmentHeader;
use crate::header::{LAYOUT_MAJOR, LAYOUT_MINOR, SEGMENT_MAGIC, SegmentState};
use crate::layout::LAYOUT_HASH;
use crate::liveness::{monotonic_coarse_ns, own_start_time, try_lock_exclusive, unix_now_ns};
use crate::mapping::{Access, Mapping};
use crate::proof::{Audit, TopHash};
use crate::ring::{self, Ring};
use crate::segment::{Geometry, SHM_DIR, SegmentView, segment_name, segment_size};
use crate::seqlock::WriteSection;
use crate::slot::{
    DEFAULT_LEVELS_PER_SIDE, LevelWords, SlotHeader, pack_exponents, pack_pair, pack_status,
};
use crate::status::{BookStatus, OutOfSyncReason, STATUS_EMPTY, Side};
use crate::wait::{FutexWord, signal};

/// Permission bits of a new segment unless [`SegmentConfig::mode`] says otherwise: only its owner
/// may read it. Readers of other users need a wider mode, a group, and to trust the owner.
pub const DEFAULT_SEGMENT_MODE: u32 = 0o600;

/// The bits a segment's mode may have: readers refuse any segment that group or others may
/// write (see `trust`), and nothing in a segment is executable.
const ALLOWED_MODE_BITS: u32 = 0o644;

/// How to create a segment: a builder with sensible defaults.
///
/// ```no_run
/// use ubdcc_shm::SegmentConfig;
/// let writer = SegmentConfig::new("default", "dcn-0").books(512).levels_per_side(1000).create()?;
/// // Readable by the members of group 2000 too (they trust it with UBDCC_SHM_TRUST=gid:2000).
/// let shared = SegmentConfig::new("default", "dcn-1").mode(0o640).group(2000).create()?;
/// # Ok::<(), ubdcc_shm::CreateSegmentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    cluster: String,
    dcn: String,
    books: u32,
    levels_per_side: u32,
    mode: u32,
    group: Option<u32>,
}

impl SegmentConfig {
    /// A segment for DCN `dcn` of cluster `cluster`, 1024 books of 1000 levels per side.
    pub fn new(cluster: impl Into<String>, dcn: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            dcn: dcn.into(),
            books: 1024,
            levels_per_side: DEFAULT_LEVELS_PER_SIDE,
            mode: DEFAULT_SEGMENT_MODE,
            group: None,
        }
    }

    /// Permission bits of the segment ([`DEFAULT_SEGMENT_MODE`] unless set): a subset of `0o644`,
    /// e.g. `0o640` to let the segment's group read it. Set exactly, whatever the umask.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Gives the segment to group `gid` (this process must be a member, or root), so that with
    /// [`SegmentConfig::mode`] `0o640` its members can read it. Default: the process's group.
    pub fn group(&mut self, gid: u32) -> &mut Self {
        self.group = Some(gid);
        self
    }

    /// How many books the segment can hold at once.
    pub fn books(&mut self, books: u32) -> &mut Self {
        self.books = books;
        self
    }

    /// Capacity of each side of each book (1..=5000).
    pub fn levels_per_side(&mut self, levels: u32) -> &mut Self {
        self.levels_per_side = levels;
        self
    }

    /// Creates the segment; see [`SegmentWriter::create`].
    ///
    /// # Errors
    /// As [`SegmentWriter::create`].
    pub fn create(&self) -> Result<SegmentWriter, CreateSegmentError> {
        SegmentWriter::create(self)
    }
}

/// Identifies a book in a segment; returned by [`SegmentWriter::add_book`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BookHandle {
    slot: u32,
    generation: u64,
}

impl BookHandle {
    /// The slot index.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The generation of the slot when the book was added.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The writer's private mirror of one slot, so it never reads its own segment back.
#[derive(Debug, Clone, Default)]
struct SlotUse {
    generation: u64,
    /// The book in the slot, if any.
    book: Option<(String, String)>,
    updates: u64,
    /// Where the bid and ask rings stand after the last complete publish of levels; `None`
    /// before the first one and after a publish that did not finish, so edits only ever apply to
    /// a version the writer knows exactly.
    rings: Option<[Ring; 2]>,
    /// The top hash the book's next publish carries (see [`SegmentWriter::set_top_hash`]).
    top_hash: Option<TopHash>,
}

/// Stamps a segment's heartbeat from wherever the writer itself cannot be reached; cheap to clone
/// and `Send`.
///
/// Beat from the loop that publishes: then a stuck publisher is also a silent heartbeat, which is
/// what readers rely on to call a writer hung. A timer that beats on its own would hide a stuck
/// publisher; use one only where publishing is not continuous and nothing else can be stuck.
#[derive(Clone)]
pub struct Heartbeat {
    map: Arc<SegmentView>,
}

impl Heartbeat {
    /// Stamps the heartbeat with the current time. Call every [`crate::HEARTBEAT_INTERVAL`].
    pub fn beat(&self) {
        // Relaxed: the heartbeat publishes no other data; readers only compare its age.
        self.map
            .header()
            .heartbeat_ns
            .store(monotonic_coarse_ns(), Ordering::Relaxed);
    }
}

/// The single writer of one DCN's segment.
///
/// Owning a `SegmentWriter` means holding the segment's exclusive lock; every mutation takes
/// `&mut self`, so there is exactly one writer per segment by construction.
///
/// ```no_run
/// use ubdcc_shm::{BookMeta, BookSides, BookStatus, RawLevel, SegmentConfig};
/// let mut writer = SegmentConfig::new("default", "dcn-0").create()?;
/// let book = writer.add_book("binance.com", "BTCUSDT").expect("fresh segment");
/// let bids = [RawLevel { price: 10_000_000_000_000, quantity: 150_000_000 }];
/// let asks = [RawLevel { price: 10_000_001_000_000, quantity: 20_000_000 }];
/// let sides = BookSides { price_exponent: -8, quantity_exponent: -8, bids: &bids, asks: &asks };
/// let meta = BookMeta { status: BookStatus::Synced, last_update_id: 42, ..BookMeta::starting() };
/// writer.publish(book, &meta, &sides).expect("handle is live, sides fit");
/// writer.heartbeat();
/// # Ok::<(), ubdcc_shm::CreateSegmentError>(())
/// ```
pub struct SegmentWriter {
    name: String,
    view: Arc<SegmentView>,
    /// Holds the exclusive flock for the writer's life; readers probe it to see we are alive.
    fd: OwnedFd,
    slots: Vec<SlotUse>,
    books: HashMap<(String, String), u32>,
    /// The change stamp of the last write section (see `wait`).
    last_stamp: u64,
}

impl SegmentWriter {
    /// Creates the segment `ubdcc.<cluster>.<dcn>` complete, then publishes it under its name with
    /// one atomic rename, so readers never see a half-built segment. A segment of that name left
    /// by a dead writer is replaced; one whose writer is alive is not touched.
    ///
    /// # Errors
    /// [`CreateSegmentError::InvalidName`], [`CreateSegmentError::InvalidGeometry`],
    /// [`CreateSegmentError::InvalidMode`] for bad configuration, [`CreateSegmentError::InUse`]
    /// when a live writer owns the name, and [`CreateSegmentError::Io`] when a system call fails
    /// (also when [`SegmentConfig::group`] names a group this process may not give files to).
    pub fn create(config: &SegmentConfig) -> Result<Self, CreateSegmentError> {
        let name = segment_name(&config.cluster, &config.dcn)?;
        let geometry = Geometry::for_writer(config.books, config.levels_per_side)?;
        if config.mode & !ALLOWED_MODE_BITS != 0 {
            return Err(CreateSegmentError::InvalidMode { mode: config.mode });
        }
        let size = segment_size(config.books, config.levels_per_side);
        let io = |op: &'static str| {
            let name = name.clone();
            move |source: std::io::Error| CreateSegmentError::Io { op, name, source }
        };

        let temp = format!("{name}.creating-{}-{}", std::process::id(), unix_now_ns());
        // Owner-only from the first instant (the umask can only narrow it): no other process can
        // ever hold a descriptor able to write, and so shrink, the segment (see `trust`).
        let fd = shm::open(
            temp.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("create")(e.into()))?;
        let published = set_access(&fd, config, &temp)
            .and_then(|()| Self::build(&name, &temp, fd, geometry, size))
            .and_then(|built| {
                publish_name(&temp, &name)?;
                Ok(built)
            });
        if published.is_err() {
            // Best effort: a leftover temporary object is harmless (readers ignore its name), so a
            // failed unlink must not hide the error that brought us here.
            shm::unlink(temp.as_str()).ok();
        }
        let (fd, view) = published?;

        Ok(Self {
            name,
            slots: vec![SlotUse::default(); geometry.slot_count as usize],
            view: Arc::new(view),
            fd,
            books: HashMap::new(),
            last_stamp: 0,
        })
    }

    /// Sizes, locks, maps and initialises a fresh (all-zero) object, storing `state` last.
    fn build(
        name: &str,
        temp: &str,
        fd: OwnedFd,
        geometry: Geometry,
        size: u64,
    ) -> Result<(OwnedFd, SegmentView), CreateSegmentError> {
        let io = |op: &'static str| {
            move |source: std::io::Error| CreateSegmentError::Io {
                op,
                name: temp.to_owned(),
                source,
            }
        };
        // Reserve every page now: tmpfs allocates on first touch, and a page that cannot be
        // allocated later is a SIGBUS in the middle of a publish. A full /dev/shm (64 MiB in a
        // default Docker container) must be an error here instead.
        match rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOSPC) => {
                return Err(CreateSegmentError::NoSpace {
                    name: name.to_owned(),
                    size,
                });
            }
            Err(errno) => return Err(io("size")(errno.into())),
        }
        if !try_lock_exclusive(fd.as_fd()).map_err(io("lock"))? {
            // Nobody else can know this fresh temporary name, so this is not a live writer.
            let busy = std::io::Error::from(std::io::ErrorKind::WouldBlock);
            return Err(io("lock")(busy));
        }
        let len = usize::try_from(size).map_err(|_| {
            CreateSegmentError::InvalidGeometry(format!("{size} bytes do not fit in memory"))
        })?;
        let map = Mapping::new(fd.as_fd(), len, Access::ReadWrite).map_err(io("map"))?;
        let view = SegmentView::new(map, geometry);
        let header = view.header();
        // Relaxed stores: all of them are published by the Release store of `state` below.
        header.magic.store(SEGMENT_MAGIC, Ordering::Relaxed);
        header.layout_major.store(LAYOUT_MAJOR, Ordering::Relaxed);
        header.layout_minor.store(LAYOUT_MINOR, Ordering::Relaxed);
        header.layout_hash.store(LAYOUT_HASH, Ordering::Relaxed);
        header.segment_size.store(size, Ordering::Relaxed);
        header
            .writer_pid
            .store(std::process::id(), Ordering::Relaxed);
        header
            .writer_start_time
            .store(own_start_time(), Ordering::Relaxed);
        header.writer_epoch.store(unix_now_ns(), Ordering::Relaxed);
        header
            .directory_offset
            .store(geometry.directory_offset as u64, Ordering::Relaxed);
        header
            .slot_offset
            .store(geometry.slot_offset as u64, Ordering::Relaxed);
        header
            .slot_size
            .store(geometry.slot_size as u64, Ordering::Relaxed);
        header
            .slot_count
            .store(geometry.slot_count, Ordering::Relaxed);
        header
            .levels_per_side
            .store(geometry.levels_per_side, Ordering::Relaxed);
        header
            .heartbeat_ns
            .store(monotonic_coarse_ns(), Ordering::Relaxed);
        // SYNC POINT (Release): publishes the whole header. Pairs with the Acquire load of `state`
        // in `SegmentReader::open`.
        header
            .state
            .store(SegmentState::Ready as u32, Ordering::Release);
        Ok((fd, view))
    }

    /// The segment's shared-memory name (`ubdcc.<cluster>.<dcn>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many books the segment can hold.
    pub fn capacity(&self) -> u32 {
        self.view.geometry().slot_count
    }

    /// Capacity of each side of each book.
    pub fn levels_per_side(&self) -> u32 {
        self.view.geometry().levels_per_side
    }

    /// Number of books in the segment.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    /// `true` when the segment holds no book.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }

    /// Stamps the heartbeat; call every [`crate::HEARTBEAT_INTERVAL`] from the loop that
    /// publishes, so a stuck publisher is also a silent heartbeat.
    pub fn heartbeat(&self) {
        self.heartbeat_handle().beat();
    }

    /// A handle that stamps the heartbeat without access to the writer (see [`Heartbeat`]).
    pub fn heartbeat_handle(&self) -> Heartbeat {
        Heartbeat {
            map: Arc::clone(&self.view),
        }
    }

    /// Adds a book in status [`BookStatus::Starting`] and makes it visible in the directory.
    ///
    /// # Errors
    /// [`WriteError::InvalidName`], [`WriteError::DuplicateBook`] or [`WriteError::Full`].
    pub fn add_book(&mut self, exchange: &str, market: &str) -> Result<BookHandle, WriteError> {
        let exchange_words = pack_name(exchange).ok_or_else(|| WriteError::InvalidName {
            what: "exchange",
            name: exchange.to_owned(),
        })?;
        let market_words = pack_name(market).ok_or_else(|| WriteError::InvalidName {
            what: "market",
            name: market.to_owned(),
        })?;
        let key = (exchange.to_owned(), market.to_owned());
        if self.books.contains_key(&key) {
            return Err(WriteError::DuplicateBook {
                exchange: key.0,
                market: key.1,
            });
        }
        let slot = self
            .slots
            .iter()
            .position(|s| s.book.is_none())
            .ok_or(WriteError::Full {
                capacity: self.capacity(),
            })?;
        let slot_index = slot as u32;
        let generation = self.slots[slot].generation + 1;
        self.slots[slot] = SlotUse {
            generation,
            book: Some(key.clone()),
            updates: 0,
            rings: None,
            top_hash: None,
        };

        {
            let section = begin_section(&self.view, &mut self.last_stamp, slot_index);
            let header = section.header;
            header.generation.store(generation, Ordering::Relaxed);
            store_meta(header, &BookMeta::starting(), 0);
            header.exponents.store(0, Ordering::Relaxed);
            store_audit(header, &Audit::default());
            store_top_hash(header, TopHash::default());
            store_rings(
                header,
                self.view.levels(slot_index, Side::Bids),
                self.view.levels(slot_index, Side::Asks),
                [Ring::default(); 2],
            );
        }
        {
            let entry = self.view.entry(slot_index);
            let _section = WriteSection::begin(&entry.seq);
            entry.generation.store(generation, Ordering::Relaxed);
            entry.in_use.store(1, Ordering::Relaxed);
            store_name(&entry.exchange, &exchange_words);
            store_name(&entry.market, &market_words);
        }
        self.bump_directory_version();
        self.books.insert(key, slot_index);
        Ok(BookHandle {
            slot: slot_index,
            generation,
        })
    }

    /// The handle of a book in this segment, if present.
    pub fn find_book(&self, exchange: &str, market: &str) -> Option<BookHandle> {
        let slot = *self.books.get(&(exchange.to_owned(), market.to_owned()))?;
        Some(BookHandle {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// Removes a book: readers that look it up afterwards get "not found", and readers holding its
    /// old location notice the slot was emptied.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book is already gone.
    pub fn remove_book(&mut self, book: BookHandle) -> Result<(), WriteError> {
        self.check_handle(book)?;
        {
            let section = begin_section(&self.view, &mut self.last_stamp, book.slot);
            section
                .header
                .status
                .store(u64::from(STATUS_EMPTY), Ordering::Relaxed);
        }
        {
            let entry = self.view.entry(book.slot);
            let _section = WriteSection::begin(&entry.seq);
            entry.in_use.store(0, Ordering::Relaxed);
        }
        self.bump_directory_version();
        if let Some(key) = self.slots[book.slot as usize].book.take() {
            self.books.remove(&key);
        }
        Ok(())
    }

    /// Publishes a whole new version of a book, metadata and both sides, in one seqlock section.
    /// Costs O(levels): for an update of a few levels, [`SegmentWriter::publish_edits`] is far
    /// cheaper.
    ///
    /// Levels are exact mantissas sharing one exponent per column, best first; readers in other
    /// processes see the whole version or the previous one, never a mix:
    ///
    /// ```
    /// use ubdcc_shm::{BookMeta, BookSides, BookStatus, ClusterReader, LevelQuery, RawLevel, SegmentConfig, Side};
    ///
    /// let cluster = format!("pubdoc{}", std::process::id());
    /// let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(2).levels_per_side(10).create()?;
    /// let book = writer.add_book("binance.com", "BTCUSDT")?;
    /// // 99.99 × 3 and 99.98 × 1 (exponent -2 for prices, 0 for quantities).
    /// let bids = [RawLevel { price: 9_999, quantity: 3 }, RawLevel { price: 9_998, quantity: 1 }];
    /// let sides = BookSides { price_exponent: -2, quantity_exponent: 0, bids: &bids, asks: &[] };
    /// let meta = BookMeta { status: BookStatus::Synced, last_update_id: 42, depth: 1000, ..BookMeta::starting() };
    /// writer.publish(book, &meta, &sides)?;
    ///
    /// let mut levels = Vec::new();
    /// let info = ClusterReader::open(&cluster)?.read("binance.com", "BTCUSDT", Side::Bids, &LevelQuery::ALL, &mut levels)?;
    /// assert_eq!((info.last_update_id, info.bid_count, info.depth), (42, 2, 1000));
    /// assert_eq!((levels[1].price, levels[1].quantity), (99.98, 1.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] for a removed book, [`WriteError::TooManyLevels`] when a side is
    /// longer than the segment's levels per side; the slot is unchanged then.
    pub fn publish(
        &mut self,
        book: BookHandle,
        meta: &BookMeta,
        sides: &BookSides<'_>,
    ) -> Result<(), WriteError> {
        self.check_handle(book)?;
        let capacity = self.levels_per_side();
        for (side, levels) in [("bids", sides.bids), ("asks", sides.asks)] {
            if levels.len() > capacity as usize {
                return Err(WriteError::TooManyLevels {
                    side,
                    count: levels.len(),
                    capacity,
                });
            }
        }
        let updates = self.count_update(book);
        // Unknown until the section is complete (see `SlotUse::rings`).
        self.slots[book.slot as usize].rings = None;
        let bids = self.view.levels(book.slot, Side::Bids);
        let asks = self.view.levels(book.slot, Side::Asks);
        let rings = [sides.bids, sides.asks].map(|levels| Ring {
            head: 0,
            len: levels.len() as u32,
        });
        let top_hash = self.slots[book.slot as usize].top_hash.take();
        {
            let section = begin_section(&self.view, &mut self.last_stamp, book.slot);
            let header = section.header;
            store_meta(header, meta, updates);
            header.exponents.store(
                pack_exponents(sides.price_exponent, sides.quantity_exponent),
                Ordering::Relaxed,
            );
            store_levels(bids, sides.bids);
            store_levels(asks, sides.asks);
            store_rings(header, bids, asks, rings);
            if let Some(top_hash) = top_hash {
                store_top_hash(header, top_hash);
            }
        }
        self.slots[book.slot as usize].rings = Some(rings);
        Ok(())
    }

    /// Publishes the next version of a book as `edits` to the version last published, with new
    /// metadata, in one seqlock section; the exponents stay. Costs O(levels changed): an insert
    /// or removal at best index `k` of `n` moves `min(k, n - k)` levels, a replacement writes
    /// one (see the `ring` module for why this layout).
    ///
    /// Each side's edits apply in order, each index counted in the side as the previous edits
    /// left it (so a book's own change log replays as is).
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] for a removed book, [`WriteError::NoBaseVersion`] when the book
    /// has no complete published version yet, [`WriteError::InvalidEdit`] when an edit names an
    /// index the side does not have; the slot is unchanged then.
    pub fn publish_edits(
        &mut self,
        book: BookHandle,
        meta: &BookMeta,
        edits: &BookEdits<'_>,
    ) -> Result<(), WriteError> {
        self.check_handle(book)?;
        let Some(mut rings) = self.slots[book.slot as usize].rings else {
            return Err(WriteError::NoBaseVersion { slot: book.slot });
        };
        let capacity = self.levels_per_side();
        check_edits("bids", edits.bids, rings[0].len, capacity)?;
        check_edits("asks", edits.asks, rings[1].len, capacity)?;
        let updates = self.count_update(book);
        self.slots[book.slot as usize].rings = None;
        let bids = self.view.levels(book.slot, Side::Bids);
        let asks = self.view.levels(book.slot, Side::Asks);
        let top_hash = self.slots[book.slot as usize].top_hash.take();
        {
            let section = begin_section(&self.view, &mut self.last_stamp, book.slot);
            let header = section.header;
            store_meta(header, meta, updates);
            apply_edits(bids, &mut rings[0], edits.bids);
            apply_edits(asks, &mut rings[1], edits.asks);
            store_rings(header, bids, asks, rings);
            if let Some(top_hash) = top_hash {
                store_top_hash(header, top_hash);
            }
        }
        self.slots[book.slot as usize].rings = Some(rings);
        Ok(())
    }

    /// Levels of `side` the segment holds for `book` as last published (at most the levels per
    /// side), the length [`LevelEdit`] indexes count in; `None` for a stale handle or a book with
    /// no complete published version (see [`WriteError::NoBaseVersion`]).
    pub fn published_levels(&self, book: BookHandle, side: Side) -> Option<u32> {
        self.check_handle(book).ok()?;
        let rings = self.slots[book.slot as usize].rings?;
        Some(match side {
            Side::Bids => rings[0].len,
            Side::Asks => rings[1].len,
        })
    }

    /// Publishes new metadata (status, ids, counters) and keeps the levels as they are; the way to
    /// mark a book out of sync.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] for a removed book.
    pub fn publish_meta(&mut self, book: BookHandle, meta: &BookMeta) -> Result<(), WriteError> {
        self.check_handle(book)?;
        let updates = self.count_update(book);
        let top_hash = self.slots[book.slot as usize].top_hash.take();
        let section = begin_section(&self.view, &mut self.last_stamp, book.slot);
        store_meta(section.header, meta, updates);
        if let Some(top_hash) = top_hash {
            store_top_hash(section.header, top_hash);
        }
        Ok(())
    }

    /// Sets the top hash (issue 16's replica cross-check, [`crate::top_hash`] of the book at
    /// `top_hash.update_id`) the book's next publish carries, in that publish's own section:
    /// levels, edits or metadata alike. Readers get it in [`crate::BookProof::top_hash`] from
    /// then on, until the next one, whatever the book publishes meanwhile; a new book has none.
    ///
    /// The writer does not hash the levels itself: the engine hashes its book at points every
    /// replica of the market passes (the end of each exchange second), so replicas compare
    /// equal ids, and the hash costs once a second instead of at every publish.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] for a removed book.
    pub fn set_top_hash(&mut self, book: BookHandle, top_hash: TopHash) -> Result<(), WriteError> {
        self.check_handle(book)?;
        self.slots[book.slot as usize].top_hash = Some(top_hash);
        Ok(())
    }

    /// Publishes a book's audit results (issue 16's trust layer counts them): they stay with
    /// the book through every later publish until the next call, and are zero for a new book.
    /// Readers get them in [`crate::BookProof::audit`] ([`crate::ClusterReader::proof`]); waiters
    /// are woken like for any publish.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] for a removed book.
    pub fn publish_audit(&mut self, book: BookHandle, audit: &Audit) -> Result<(), WriteError> {
        self.check_handle(book)?;
        let section = begin_section(&self.view, &mut self.last_stamp, book.slot);
        store_audit(section.header, audit);
        Ok(())
    }

    fn check_handle(&self, book: BookHandle) -> Result<(), WriteError> {
        let live = self
            .slots
            .get(book.slot as usize)
            .is_some_and(|s| s.book.is_some() && s.generation == book.generation);
        if live {
            return Ok(());
        }
        Err(WriteError::StaleHandle {
            slot: book.slot,
            generation: book.generation,
        })
    }

    fn count_update(&mut self, book: BookHandle) -> u64 {
        let slot = &mut self.slots[book.slot as usize];
        slot.updates += 1;
        slot.updates
    }

    fn bump_directory_version(&self) {
        // SYNC POINT (Release): the entry's own seqlock already publishes its contents; this tells
        // readers that cached the directory to read it again. Pairs with the Acquire load in
        // `SegmentReader::directory_version`.
        self.view
            .header()
            .directory_version
            .fetch_add(1, Ordering::Release);
    }
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("name", &self.name)
            .field("books", &self.books.len())
            .field("capacity", &self.capacity())
            .field("levels_per_side", &self.levels_per_side())
            .finish_non_exhaustive()
    }
}

impl Drop for SegmentWriter {
    /// Marks the segment closed (readers report the writer gone at once) and removes its name,
    /// unless a newer writer has already replaced it.
    fn drop(&mut self) {
        // Release: ordered after our last publish; readers that see Closed stop serving.
        self.view
            .header()
            .state
            .store(SegmentState::Closed as u32, Ordering::Release);
        // Waiters learn it now rather than at their next liveness check: woken, they check the
        // writer first and find the segment closed.
        for (slot, _) in self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.book.is_some())
        {
            self.view.slot(slot as u32).wake.wake_all();
        }
        self.view.header().wake.wake_all();
        if names_our_segment(&self.name, &self.fd) {
            // Best effort in a destructor: if it fails the name stays, marked Closed, and the next
            // writer of this name replaces it.
            shm::unlink(self.name.as_str()).ok();
        }
    }
}

/// `true` when the shm name still refers to the file `fd` has open.
fn names_our_segment(name: &str, fd: &OwnedFd) -> bool {
    let (Ok(ours), Ok(named)) = (
        rustix::fs::fstat(fd),
        rustix::fs::stat(format!("{SHM_DIR}/{name}")),
    ) else {
        return false;
    };
    ours.st_dev == named.st_dev && ours.st_ino == named.st_ino
}

/// Makes the finished temporary object `temp` the segment `name`, unless a live writer owns it.
///
/// Two processes creating the same name cannot both win. A missing name is only created with
/// `RENAME_NOREPLACE`. An existing segment is replaced only by the process that holds its dead
/// writer's lock, after checking the name still refers to that file, and the lock is held across
/// the rename, so a second creator either fails to take it or finds the name replaced and looks
/// again (finding the winner alive).
/// Gives the fresh object its group and mode. The group comes first: `chown` may clear mode
/// bits, and the mode is set explicitly because `shm_open` applies the umask.
fn set_access(fd: &OwnedFd, config: &SegmentConfig, temp: &str) -> Result<(), CreateSegmentError> {
    let io = |op: &'static str| {
        move |errno: rustix::io::Errno| CreateSegmentError::Io {
            op,
            name: temp.to_owned(),
            source: errno.into(),
        }
    };
    if let Some(gid) = config.group {
        rustix::fs::fchown(fd, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(io("set group of"))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(config.mode)).map_err(io("set mode of"))
}

fn publish_name(temp: &str, name: &str) -> Result<(), CreateSegmentError> {
    // Each round either succeeds, fails, or saw the name change under it; many changes in a row
    // mean something keeps recreating the name, which is worth an error rather than a loop.
    const ROUNDS: u32 = 10;
    let io = |op: &'static str| {
        move |errno: rustix::io::Errno| CreateSegmentError::Io {
            op,
            name: name.to_owned(),
            source: errno.into(),
        }
    };
    let (from, to) = (format!("{SHM_DIR}/{temp}"), format!("{SHM_DIR}/{name}"));
    for _ in 0..ROUNDS {
        // Never follow a link or block on a FIFO a neighbour put under the name, and look at
        // what it is before locking or mapping it.
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::CLOEXEC;
        let previous = match rustix::fs::open(to.as_str(), flags, Mode::empty()) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd).map_err(io("stat previous"))?;
                if let Err(reason) = crate::trust::Trust::own_user().check(&stat) {
                    return Err(CreateSegmentError::Foreign {
                        name: name.to_owned(),
                        reason,
                    });
                }
                fd
            }
            Err(rustix::io::Errno::LOOP) => {
                return Err(CreateSegmentError::Foreign {
                    name: name.to_owned(),
                    reason: crate::trust::Distrust::NotRegularFile,
                });
            }
            Err(rustix::io::Errno::NOENT) => {
                let cwd = rustix::fs::CWD;
                match rustix::fs::renameat_with(cwd, &from, cwd, &to, RenameFlags::NOREPLACE) {
                    Ok(()) => return Ok(()),
                    // Another writer created it meanwhile: look at what it is.
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(errno) => return Err(io("publish")(errno)),
                }
            }
            Err(errno) => return Err(io("open previous")(errno)),
        };
        if !lock_dead_writer(&previous).map_err(|source| CreateSegmentError::Io {
            op: "probe previous",
            name: name.to_owned(),
            source,
        })? {
            return Err(CreateSegmentError::InUse {
                name: name.to_owned(),
                pid: recorded_pid(&previous),
            });
        }
        let ours = rustix::fs::fstat(&previous).map_err(io("stat previous"))?;
        let named = rustix::fs::stat(&to).ok();
        if named.is_none_or(|named| (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino)) {
            // Replaced or removed since we opened it: look again.
            continue;
        }
        // `previous` (and its lock) lives until after the rename.
        return rustix::fs::rename(&from, &to).map_err(io("publish"));
    }
    Err(CreateSegmentError::Io {
        op: "publish",
        name: name.to_owned(),
        source: std::io::Error::other("the name kept changing while publishing the segment"),
    })
}

/// Takes the exclusive lock of a previous segment, i.e. finds its writer dead. A reader probing
/// the lock holds it shared for one syscall, so a few retries tell a probe from a live writer.
fn lock_dead_writer(previous: &OwnedFd) -> std::io::Result<bool> {
    const ATTEMPTS: u32 = 20;
    for _ in 0..ATTEMPTS {
        if try_lock_exclusive(previous.as_fd())? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(false)
}

/// The pid stored in a segment's header, for the error message; 0 if it cannot be read.
fn recorded_pid(fd: &OwnedFd) -> u32 {
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return 0;
    };
    if stat.st_size < crate::header::SEGMENT_HEADER_SIZE as i64 {
        return 0;
    }
    let Ok(map) = Mapping::new(
        fd.as_fd(),
        crate::header::SEGMENT_HEADER_SIZE,
        Access::ReadOnly,
    ) else {
        return 0;
    };
    map.get::<crate::header::SegmentHeader>(0)
        .writer_pid
        .load(Ordering::Relaxed)
}

/// Opens a write section on `slot` with the segment's next change stamp (see `wait`):
/// `CLOCK_MONOTONIC_COARSE` nanoseconds, strictly above `last_stamp`, which it becomes.
fn begin_section<'a>(view: &'a SegmentView, last_stamp: &mut u64, slot: u32) -> SlotSection<'a> {
    *last_stamp = monotonic_coarse_ns().max(*last_stamp + 1);
    SlotSection::begin(view.header(), view.slot(slot), *last_stamp)
}

/// A write section on a slot, stamped with its change stamp. If the writer panics inside it, the
/// slot is marked out of sync before the section closes, so a half-written book is never served
/// as synced. Closing it wakes the waiters of the slot and of the segment (see `wait`).
struct SlotSection<'a> {
    header: &'a SlotHeader,
    segment: &'a SegmentHeader,
    stamp: u64,
    section: Option<WriteSection<'a>>,
}

impl<'a> SlotSection<'a> {
    fn begin(segment: &'a SegmentHeader, header: &'a SlotHeader, stamp: u64) -> Self {
        let section = WriteSection::begin(&header.seq);
        // Relaxed: inside the section, published by its closing Release store, so a read
        // returns the stamp of the version it read.
        header.changes.store(stamp, Ordering::Relaxed);
        Self {
            header,
            segment,
            stamp,
            section: Some(section),
        }
    }
}

impl Drop for SlotSection<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the freshness and depth bits; only the status and reason change.
            let faulted = BookStatus::OutOfSync(OutOfSyncReason::WriterFault).to_word();
            let word = self.header.status.load(Ordering::Relaxed);
            self.header
                .status
                .store(word & !0xffff | faulted, Ordering::Relaxed);
        }
        drop(self.section.take());
        // Release: pairs with the Acquire fence of a waiter's load of the segment's wake word
        // (in `wait`), which orders this stamp before the word `signal` stores after it.
        self.segment.changes.store(self.stamp, Ordering::Release);
        signal(&self.header.wake);
        signal(&self.segment.wake);
    }
}

/// Stores a book's metadata (Relaxed: the caller holds the slot's write section).
fn store_meta(header: &SlotHeader, meta: &BookMeta, updates: u64) {
    let status = pack_status(meta.status.to_word(), meta.freshness.bits(), meta.depth);
    header.status.store(status, Ordering::Relaxed);
    header
        .last_update_id
        .store(meta.last_update_id, Ordering::Relaxed);
    header
        .event_time_ms
        .store(meta.event_time_ms, Ordering::Relaxed);
    header
        .receive_time_ns
        .store(meta.receive_time_ns, Ordering::Relaxed);
    header
        .publish_time_ns
        .store(unix_now_ns(), Ordering::Relaxed);
    header
        .sync_counters
        .store(pack_pair(meta.resyncs, meta.gaps), Ordering::Relaxed);
    header.updates.store(updates, Ordering::Relaxed);
}

/// Stores a book's top hash with the update id it describes (Relaxed: the caller holds the
/// slot's write section).
fn store_top_hash(header: &SlotHeader, top_hash: TopHash) {
    header.top_hash.store(top_hash.hash, Ordering::Relaxed);
    header
        .top_hash_update_id
        .store(top_hash.update_id, Ordering::Relaxed);
}

/// Stores a book's audit results (Relaxed: the caller holds the slot's write section).
fn store_audit(header: &SlotHeader, audit: &Audit) {
    header
        .verified_at_ms
        .store(audit.verified_at_ms, Ordering::Relaxed);
    header.audit_counters.store(
        pack_pair(audit.audits, audit.audit_mismatches),
        Ordering::Relaxed,
    );
}

/// Stores one side's levels from physical index 0, i.e. a ring with head 0 (Relaxed: the caller
/// holds the slot's write section).
#[inline]
fn store_levels(words: &[LevelWords], levels: &[RawLevel]) {
    for (word, level) in words.iter().zip(levels) {
        word.price.store(level.price, Ordering::Relaxed);
        word.quantity.store(level.quantity, Ordering::Relaxed);
    }
}

/// Stores both rings and the best bid and ask they now start with (Relaxed: the caller holds the
/// slot's write section). The best levels are loaded back from the level words: the writer's own
/// Relaxed stores are visible to its own loads, and a removal at the top leaves the new best
/// where only the ring knows it.
#[inline]
fn store_rings(header: &SlotHeader, bids: &[LevelWords], asks: &[LevelWords], rings: [Ring; 2]) {
    header.rings.store(
        pack_pair(rings[0].pack(), rings[1].pack()),
        Ordering::Relaxed,
    );
    let [bid_price, bid_quantity] = ring::best(bids, rings[0]).unwrap_or_default();
    let [ask_price, ask_quantity] = ring::best(asks, rings[1]).unwrap_or_default();
    header.best_bid_price.store(bid_price, Ordering::Relaxed);
    header
        .best_bid_quantity
        .store(bid_quantity, Ordering::Relaxed);
    header.best_ask_price.store(ask_price, Ordering::Relaxed);
    header
        .best_ask_quantity
        .store(ask_quantity, Ordering::Relaxed);
}

/// Checks that every edit names an index the side has at that point, without touching the slot.
fn check_edits(
    side: &'static str,
    edits: &[LevelEdit],
    mut len: u32,
    capacity: u32,
) -> Result<(), WriteError> {
    for (edit, change) in edits.iter().enumerate() {
        let (at, fits) = match *change {
            LevelEdit::Insert { at, .. } => (at, at <= len),
            LevelEdit::Remove { at } | LevelEdit::Replace { at, .. } => (at, at < len),
        };
        if !fits {
            return Err(WriteError::InvalidEdit {
                side,
                edit,
                at,
                len,
            });
        }
        match *change {
            LevelEdit::Insert { at, .. } if at < capacity => len = (len + 1).min(capacity),
            LevelEdit::Insert { .. } | LevelEdit::Replace { .. } => {}
            LevelEdit::Remove { .. } => len -= 1,
        }
    }
    Ok(())
}

/// Applies checked edits to one side's ring (Relaxed stores: the caller holds the write section).
#[inline]
fn apply_edits(words: &[LevelWords], side: &mut Ring, edits: &[LevelEdit]) {
    for edit in edits {
        match *edit {
            LevelEdit::Insert { at, level } => {
                ring::insert(words, side, at, [level.price, level.quantity]);
            }
            LevelEdit::Remove { at } => {
                ring::remove(words, side, at);
            }
            LevelEdit::Replace { at, level } => {
                ring::replace(words, *side, at, [level.price, level.quantity]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterReader, LevelQuery, ReadError, Side};

    #[test]
    fn a_publish_that_never_ends_is_contended_then_writer_gone_not_a_stall() {
        let cluster = format!("wtest{}", std::process::id());
        let mut writer = SegmentConfig::new(cluster.as_str(), "dcn")
            .books(1)
            .levels_per_side(4)
            .create()
            .unwrap();
        let book = writer.add_book("binance.com", "X").unwrap();
        let meta = BookMeta {
            status: BookStatus::Synced,
            ..BookMeta::starting()
        };
        let sides = BookSides {
            price_exponent: 0,
            quantity_exponent: 0,
            bids: &[],
            asks: &[],
        };
        writer.publish(book, &meta, &sides).unwrap();
        let mut reader = ClusterReader::open(&cluster).unwrap();
        let mut out = Vec::new();
        reader
            .read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out)
            .unwrap();

        // What a writer killed inside a publish leaves behind: a slot that stays busy.
        std::mem::forget(WriteSection::begin(&writer.view.slot(book.slot).seq));
        let started = std::time::Instant::now();
        let error = reader
            .read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out)
            .unwrap_err();
        assert!(matches!(error, ReadError::Contended { .. }), "{error}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "bounded by time, not a stall"
        );

        drop(writer);
        let error = reader
            .read("binance.com", "X", Side::Asks, &LevelQuery::ALL, &mut out)
            .unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::WriterGone { .. } | ReadError::NotFound { .. }
            ),
            "{error}"
        );
    }
}
