//! Errors of segment creation, writing, opening and reading, each carrying what it is about.

use std::io;

use thiserror::Error;

use crate::query::InvalidQuery;
use crate::status::BookStatus;
use crate::trust::{Distrust, InvalidTrust};

/// A cluster or DCN name is empty, too long or has characters other than `A-Za-z0-9_-`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ -")]
pub struct InvalidName {
    /// `cluster` or `dcn`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

/// Creating a segment failed.
#[derive(Debug, Error)]
pub enum CreateSegmentError {
    /// A cluster or DCN name is invalid.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The book capacity or levels per side are out of range.
    #[error("invalid segment geometry: {0}")]
    InvalidGeometry(String),
    /// `/dev/shm` has no room for the segment.
    #[error(
        "no room in /dev/shm for segment {name} ({size} bytes): enlarge /dev/shm (e.g. Docker's --shm-size) or hold fewer books or levels per segment"
    )]
    NoSpace {
        /// Segment name.
        name: String,
        /// Bytes needed.
        size: u64,
    },
    /// The mode would let group or others write the segment (or has bits beyond `0o644`).
    #[error(
        "segment mode {mode:04o} is not allowed: use a subset of 0644 (readers refuse segments that group or others may write)"
    )]
    InvalidMode {
        /// The mode asked for.
        mode: u32,
    },
    /// The segment's name is taken by something this writer's user does not own (or that is
    /// not a private regular file): a neighbour's file, FIFO or link placed there.
    #[error(
        "segment name {name} is taken by a file this user does not own ({reason}); remove /dev/shm/{name} or give the DCN another name"
    )]
    Foreign {
        /// Segment name.
        name: String,
        /// Why it is not ours.
        reason: crate::trust::Distrust,
    },
    /// A live writer already owns the segment.
    #[error("segment {name} is owned by a live writer (pid {pid})")]
    InUse {
        /// Segment name.
        name: String,
        /// The owner's pid as recorded in the segment.
        pid: u32,
    },
    /// A system call failed.
    #[error("{op} segment {name}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Segment name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A segment a reader refuses to believe (see [`crate::Trust`]); it is not mapped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("segment {name} ignored: {reason}")]
pub struct UntrustedSegment {
    /// Segment name.
    pub name: String,
    /// Why it is not believed.
    pub reason: Distrust,
}

/// Opening a cluster reader failed.
#[derive(Debug, Error)]
pub enum OpenClusterError {
    /// The cluster or DCN name is invalid.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The trust setting (`UBDCC_SHM_TRUST` or an argument) is invalid.
    #[error(transparent)]
    InvalidTrust(#[from] InvalidTrust),
}

/// Opening an existing segment failed. Nothing in a segment is trusted before these checks pass.
#[derive(Debug, Error)]
pub enum OpenSegmentError {
    /// No segment of that name exists.
    #[error("segment {name} does not exist")]
    NotFound {
        /// Segment name.
        name: String,
    },
    /// A system call failed.
    #[error("{op} segment {name}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Segment name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is smaller than its header or than the size its header claims.
    #[error("segment {name} is truncated: {size} bytes, expected at least {expected}")]
    Truncated {
        /// Segment name.
        name: String,
        /// Actual file size.
        size: u64,
        /// Size required.
        expected: u64,
    },
    /// The segment's owner or mode is not trusted; nothing of it was read.
    #[error(transparent)]
    Untrusted(#[from] UntrustedSegment),
    /// The file does not start with the segment magic: not a ubdcc segment.
    #[error("segment {name} is not a ubdcc segment (magic {found:#018x})")]
    BadMagic {
        /// Segment name.
        name: String,
        /// The first word found.
        found: u64,
    },
    /// Written by an incompatible layout version.
    #[error(
        "segment {name} has layout {found_major}.{found_minor}, this reader understands {expected_major}.x"
    )]
    LayoutVersion {
        /// Segment name.
        name: String,
        /// The reader's major version.
        expected_major: u32,
        /// The segment's major version.
        found_major: u32,
        /// The segment's minor version.
        found_minor: u32,
    },
    /// Same version, different struct layout: one side was built from changed sources.
    #[error("segment {name} has layout hash {found:#018x}, this reader expects {expected:#018x}")]
    LayoutHash {
        /// Segment name.
        name: String,
        /// The reader's hash.
        expected: u64,
        /// The segment's hash.
        found: u64,
    },
    /// The header is inconsistent (offsets outside the file, impossible sizes).
    #[error("segment {name} is corrupt: {reason}")]
    Corrupt {
        /// Segment name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The segment is still being created, or its writer died while creating it.
    #[error("segment {name} is not initialised")]
    NotReady {
        /// Segment name.
        name: String,
    },
}

/// A writer operation failed; the segment is unchanged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WriteError {
    /// An exchange or market name is empty, longer than 48 bytes or contains NUL.
    #[error("invalid {what} {name:?}: 1 to 48 bytes, no NUL")]
    InvalidName {
        /// `exchange` or `market`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The book is already in this segment.
    #[error("book {exchange} {market} is already in this segment")]
    DuplicateBook {
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
    },
    /// Every slot is in use.
    #[error("segment is full: all {capacity} book slots are in use")]
    Full {
        /// Number of slots.
        capacity: u32,
    },
    /// The handle's book was removed (or belongs to another segment).
    #[error("stale book handle (slot {slot}, generation {generation})")]
    StaleHandle {
        /// Slot index.
        slot: u32,
        /// Generation of the handle.
        generation: u64,
    },
    /// More levels than a side can hold.
    #[error("{count} {side} levels exceed the segment's {capacity} levels per side")]
    TooManyLevels {
        /// `bids` or `asks`.
        side: &'static str,
        /// Levels given.
        count: usize,
        /// Levels per side.
        capacity: u32,
    },
    /// An edit names an index the side does not have at that point of the edit list; the slot
    /// is unchanged.
    #[error("{side} edit {edit} at index {at} does not fit a side of {len} levels")]
    InvalidEdit {
        /// `bids` or `asks`.
        side: &'static str,
        /// Position of the edit in the list.
        edit: usize,
        /// The index it names.
        at: u32,
        /// Levels the side holds at that point.
        len: u32,
    },
    /// Edits need a version of the book to apply to: the book was only added, or its last
    /// publish did not finish (a panic inside the section). Publish it whole.
    #[error("book in slot {slot} has no complete published version to edit; publish it whole")]
    NoBaseVersion {
        /// Slot index.
        slot: u32,
    },
}

/// A read failed; no data was returned.
#[derive(Debug, Error)]
pub enum ReadError {
    /// No segment of the cluster on this host holds the book.
    #[error("no DepthCache for {exchange} {market} in cluster '{cluster}' on this host")]
    NotFound {
        /// Cluster.
        cluster: String,
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
    },
    /// The book exists but is not synced, so its levels are not served.
    #[error("DepthCache {exchange} {market} is {status}; its levels are not served")]
    NotSynced {
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
        /// Its status.
        status: BookStatus,
    },
    /// The writer process is gone (its lock is free, or it closed the segment).
    #[error("writer of segment {segment} (pid {pid}) is gone; its books are not served")]
    WriterGone {
        /// Segment name.
        segment: String,
        /// Pid recorded in the segment.
        pid: u32,
    },
    /// The segment file became smaller than the reader mapped: something broke the rule that
    /// segments are never shrunk. Detected before its memory is touched again; never served again.
    #[error(
        "segment {segment} shrank from {mapped} to {size} bytes under this reader; its books are not served"
    )]
    SegmentShrunk {
        /// Segment name.
        segment: String,
        /// Bytes mapped at open.
        mapped: u64,
        /// Bytes the file has now.
        size: u64,
    },
    /// The writer is alive but its heartbeat stopped.
    #[error("writer of segment {segment} (pid {pid}) is hung: no heartbeat for {silent_ms} ms")]
    WriterHung {
        /// Segment name.
        segment: String,
        /// Pid recorded in the segment.
        pid: u32,
        /// Age of the last heartbeat.
        silent_ms: u64,
    },
    /// The book was being rewritten during every read attempt for the whole retry time (2 ms)
    /// while its writer looked alive; retrying later may succeed.
    #[error(
        "DepthCache {exchange} {market} in segment {segment} was being rewritten during all {attempts} read attempts (2 ms); retry"
    )]
    Contended {
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
        /// Segment name.
        segment: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The query parameters were invalid.
    #[error(transparent)]
    InvalidQuery(#[from] InvalidQuery),
    /// A system call failed while checking the writer.
    #[error("checking writer of segment {segment}: {source}")]
    Io {
        /// Segment name.
        segment: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
