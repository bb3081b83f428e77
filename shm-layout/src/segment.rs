//! Segment names, geometry and the typed view both writer and readers use.
//!
//! ```text
//! offset 0                 SegmentHeader (256 bytes)
//! directory_offset = 256   DirectoryEntry × slot_count (128 bytes each)
//! slot_offset              slot × slot_count, each slot_size bytes:
//!                            SlotHeader (128) | bids: LevelWords × levels_per_side | asks: same
//! ```

use std::sync::atomic::Ordering;

use crate::directory::DirectoryEntry;
use crate::error::{CreateSegmentError, InvalidName, OpenSegmentError};
use crate::header::{SEGMENT_HEADER_SIZE, SegmentHeader};
use crate::mapping::Mapping;
use crate::slot::{LevelWords, MAX_LEVELS_PER_SIDE, SlotHeader, slot_size};
use crate::status::Side;

/// Prefix of every segment name: `ubdcc.<cluster>.<dcn>`.
pub const SEGMENT_PREFIX: &str = "ubdcc";

/// Most books one segment may be created for.
pub const MAX_BOOKS_PER_SEGMENT: u32 = 65_536;

/// Where POSIX shared memory objects live on Linux; used to list a cluster's segments and to
/// publish a finished segment under its name with one atomic rename.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The shared-memory object name of a DCN's segment.
///
/// # Errors
/// [`InvalidName`] unless both names are 1–64 characters of `A-Za-z0-9_-`
/// (no dots, so the name splits back unambiguously).
pub fn segment_name(cluster: &str, dcn: &str) -> Result<String, InvalidName> {
    check_name_part("cluster", cluster)?;
    check_name_part("dcn", dcn)?;
    Ok(format!("{SEGMENT_PREFIX}.{cluster}.{dcn}"))
}

pub(crate) fn check_name_part(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        return Ok(());
    }
    Err(InvalidName {
        what,
        name: name.to_owned(),
    })
}

/// Total bytes of a segment for `books` slots of `levels_per_side` levels.
pub const fn segment_size(books: u32, levels_per_side: u32) -> u64 {
    let directory = books as u64 * size_of::<DirectoryEntry>() as u64;
    SEGMENT_HEADER_SIZE as u64 + directory + books as u64 * slot_size(levels_per_side)
}

/// Where everything is, copied out of a validated header once at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) directory_offset: usize,
    pub(crate) slot_offset: usize,
    pub(crate) slot_size: usize,
    pub(crate) slot_count: u32,
    pub(crate) levels_per_side: u32,
}

impl Geometry {
    /// The geometry a writer lays out for `books` × `levels_per_side`.
    pub(crate) fn for_writer(books: u32, levels_per_side: u32) -> Result<Self, CreateSegmentError> {
        if !(1..=MAX_BOOKS_PER_SEGMENT).contains(&books) {
            return Err(CreateSegmentError::InvalidGeometry(format!(
                "books per segment must be 1..={MAX_BOOKS_PER_SEGMENT}, got {books}"
            )));
        }
        if !(1..=MAX_LEVELS_PER_SIDE).contains(&levels_per_side) {
            return Err(CreateSegmentError::InvalidGeometry(format!(
                "levels per side must be 1..={MAX_LEVELS_PER_SIDE}, got {levels_per_side}"
            )));
        }
        let directory_offset = SEGMENT_HEADER_SIZE;
        let slot_offset = directory_offset + books as usize * size_of::<DirectoryEntry>();
        Ok(Self {
            directory_offset,
            slot_offset,
            slot_size: slot_size(levels_per_side) as usize,
            slot_count: books,
            levels_per_side,
        })
    }

    /// Reads and checks the geometry a header claims against the real file length, so that no
    /// later view can fall outside the mapping whatever the header contains.
    pub(crate) fn from_header(
        header: &SegmentHeader,
        file_len: u64,
        name: &str,
    ) -> Result<Self, OpenSegmentError> {
        let corrupt = |reason: String| OpenSegmentError::Corrupt {
            name: name.to_owned(),
            reason,
        };
        let directory_offset = header.directory_offset.load(Ordering::Relaxed);
        let slot_offset = header.slot_offset.load(Ordering::Relaxed);
        let slot_size_found = header.slot_size.load(Ordering::Relaxed);
        let slot_count = header.slot_count.load(Ordering::Relaxed);
        let levels_per_side = header.levels_per_side.load(Ordering::Relaxed);

        if !(1..=MAX_LEVELS_PER_SIDE).contains(&levels_per_side)
            || !(1..=MAX_BOOKS_PER_SEGMENT).contains(&slot_count)
        {
            return Err(corrupt(format!(
                "{slot_count} slots of {levels_per_side} levels per side"
            )));
        }
        if slot_size_found < slot_size(levels_per_side) || slot_size_found % 64 != 0 {
            return Err(corrupt(format!(
                "slot size {slot_size_found} too small for {levels_per_side} levels"
            )));
        }
        // Checked arithmetic throughout: a hostile header must give an error, not an overflow.
        let directory_end = u64::from(slot_count)
            .checked_mul(size_of::<DirectoryEntry>() as u64)
            .and_then(|bytes| bytes.checked_add(directory_offset));
        let layout_ok = directory_end.is_some_and(|end| slot_offset >= end)
            && directory_offset >= SEGMENT_HEADER_SIZE as u64
            && directory_offset % 64 == 0
            && slot_offset % 64 == 0;
        if !layout_ok {
            return Err(corrupt(format!(
                "directory at {directory_offset}, slots at {slot_offset}"
            )));
        }
        let end = u64::from(slot_count)
            .checked_mul(slot_size_found)
            .and_then(|bytes| bytes.checked_add(slot_offset))
            .ok_or_else(|| corrupt(format!("{slot_count} slots at {slot_offset} overflow")))?;
        if end > file_len {
            return Err(OpenSegmentError::Truncated {
                name: name.to_owned(),
                size: file_len,
                expected: end,
            });
        }
        let to_usize = |value: u64| {
            usize::try_from(value).map_err(|_| corrupt(format!("offset {value} too large")))
        };
        Ok(Self {
            directory_offset: to_usize(directory_offset)?,
            slot_offset: to_usize(slot_offset)?,
            slot_size: to_usize(slot_size_found)?,
            slot_count,
            levels_per_side,
        })
    }
}

/// A mapping plus its validated geometry: typed access to every part of a segment.
pub(crate) struct SegmentView {
    map: Mapping,
    geometry: Geometry,
}

impl SegmentView {
    pub(crate) fn new(map: Mapping, geometry: Geometry) -> Self {
        Self { map, geometry }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        self.map.get(0)
    }

    pub(crate) fn entry(&self, slot: u32) -> &DirectoryEntry {
        debug_assert!(slot < self.geometry.slot_count);
        self.map
            .get(self.geometry.directory_offset + slot as usize * size_of::<DirectoryEntry>())
    }

    fn slot_base(&self, slot: u32) -> usize {
        debug_assert!(slot < self.geometry.slot_count);
        self.geometry.slot_offset + slot as usize * self.geometry.slot_size
    }

    pub(crate) fn slot(&self, slot: u32) -> &SlotHeader {
        self.map.get(self.slot_base(slot))
    }

    /// All `levels_per_side` level words of one side of a slot.
    pub(crate) fn levels(&self, slot: u32, side: Side) -> &[LevelWords] {
        let per_side = self.geometry.levels_per_side as usize;
        let side_offset = match side {
            Side::Bids => 0,
            Side::Asks => per_side * size_of::<LevelWords>(),
        };
        self.map.slice(
            self.slot_base(slot) + size_of::<SlotHeader>() + side_offset,
            per_side,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_reject_dots_and_empties() {
        assert_eq!(
            segment_name("default", "dcn-0").unwrap(),
            "ubdcc.default.dcn-0"
        );
        assert!(segment_name("a.b", "dcn").is_err());
        assert!(segment_name("", "dcn").is_err());
        assert!(segment_name("c", &"x".repeat(65)).is_err());
        assert!(segment_name("c", "../etc").is_err());
    }

    #[test]
    fn writer_geometry_fits_the_segment_size() {
        let geometry = Geometry::for_writer(10, 1000).unwrap();
        let end = geometry.slot_offset + 10 * geometry.slot_size;
        assert_eq!(end as u64, segment_size(10, 1000));
        assert!(Geometry::for_writer(0, 10).is_err());
        assert!(Geometry::for_writer(1, MAX_LEVELS_PER_SIDE + 1).is_err());
    }
}
