//! The segment header: identity, geometry, liveness and the directory version.
//!
//! Every field is an atomic word. The writer fills the identity and geometry lines once, before it
//! stores `SegmentState::Ready` with Release; readers load `state` with Acquire and only then trust
//! the rest. The heartbeat and the directory version change for the writer's whole life, so each
//! has a cache line of its own and never shares one with data readers poll. The segment-wide
//! change stamp and futex word (written after every publish) share the directory version's line:
//! readers look at that line only when a lookup failed or to wait, never on a read's fast path.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// `b"UBDCCSHM"` read as a little-endian `u64`: the first word of every segment.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"UBDCCSHM");

/// Incompatible layout changes bump the major version; readers refuse any other major.
///
/// 2: levels are rings (`SlotHeader::rings` holds each side's head and count) and the slot header
/// holds the best bid and ask; a major-1 reader would read a ring as a best-first array.
///
/// 3: the slot header grows a third cache line (a futex word waiters sleep on, audit results,
/// the top-levels hash), the status word also holds the freshness bits and the depth, whose old
/// word now holds the change stamp, and the segment header holds a segment-wide change stamp and
/// futex word; a major-2 reader would read the levels 64 bytes early.
pub const LAYOUT_MAJOR: u32 = 3;

/// Compatible additions (new reason codes, use of reserved words) bump the minor version; a major
/// bump starts it at 0 again.
pub const LAYOUT_MINOR: u32 = 0;

/// The lifecycle of a segment, stored in [`SegmentHeader::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SegmentState {
    /// Being created: nothing else in the segment may be trusted yet.
    Initializing = 0,
    /// Complete and owned by a live (or crashed) writer.
    Ready = 1,
    /// The writer shut down cleanly; the data is no longer maintained.
    Closed = 2,
}

impl TryFrom<u32> for SegmentState {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::Initializing),
            1 => Ok(Self::Ready),
            2 => Ok(Self::Closed),
            other => Err(other),
        }
    }
}

/// The first 256 bytes of a segment.
#[repr(C, align(64))]
pub struct SegmentHeader {
    // -- cache line 0: identity, written once before `state` --
    /// [`SEGMENT_MAGIC`].
    pub(crate) magic: AtomicU64,
    /// [`LAYOUT_MAJOR`] of the writer.
    pub(crate) layout_major: AtomicU32,
    /// [`LAYOUT_MINOR`] of the writer.
    pub(crate) layout_minor: AtomicU32,
    /// [`crate::LAYOUT_HASH`] of the writer: catches a layout change nobody versioned.
    pub(crate) layout_hash: AtomicU64,
    /// Total size of the segment in bytes; must equal the file size.
    pub(crate) segment_size: AtomicU64,
    /// The writer's process id.
    pub(crate) writer_pid: AtomicU32,
    /// A [`SegmentState`]; stored last on creation (Release), loaded first by readers (Relaxed, then
    /// an Acquire fence).
    pub(crate) state: AtomicU32,
    /// The writer's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), which
    /// together with the pid names one process even after its pid is reused.
    pub(crate) writer_start_time: AtomicU64,
    /// Unix time in nanoseconds at which this writer created the segment; a new writer for the same
    /// name always has a new epoch.
    pub(crate) writer_epoch: AtomicU64,
    pub(crate) _reserved0: AtomicU64,

    // -- cache line 1: geometry, written once before `state` --
    /// Byte offset of the directory (an array of `DirectoryEntry`).
    pub(crate) directory_offset: AtomicU64,
    /// Byte offset of the first book slot.
    pub(crate) slot_offset: AtomicU64,
    /// Size of one book slot in bytes (a multiple of 64).
    pub(crate) slot_size: AtomicU64,
    /// Number of directory entries and of book slots (entry `i` describes slot `i`).
    pub(crate) slot_count: AtomicU32,
    /// Capacity of each side of each book, in levels.
    pub(crate) levels_per_side: AtomicU32,
    pub(crate) _reserved1: [AtomicU64; 4],

    // -- cache line 2: liveness --
    /// `CLOCK_MONOTONIC_COARSE` nanoseconds of the writer's last heartbeat (Relaxed both ways: it
    /// orders nothing, it only ages).
    pub(crate) heartbeat_ns: AtomicU64,
    pub(crate) _reserved2: [AtomicU64; 7],

    // -- cache line 3: directory changes --
    /// Bumped (Release) after every change to the directory; readers that cached the directory
    /// compare it (Relaxed + Acquire fence) to know when to read it again.
    pub(crate) directory_version: AtomicU64,
    /// The change stamp of the segment's latest write section, of any book (Release after the
    /// section; see `wait`). Layout major 3.
    pub(crate) changes: AtomicU64,
    /// The futex word waiters for any book of the segment sleep on: plus 1 (wrapping) after
    /// every write section. Layout major 3.
    pub(crate) wake: AtomicU32,
    pub(crate) _pad3: AtomicU32,
    pub(crate) _reserved3: [AtomicU64; 5],
}

/// Size of the segment header (`SegmentHeader`, mirrored in the C header) in bytes.
pub const SEGMENT_HEADER_SIZE: usize = 256;
const _: () = assert!(size_of::<SegmentHeader>() == SEGMENT_HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, heartbeat_ns) == 128);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, directory_version) == 192);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, changes) == 200);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, wake) == 208);
