//! A shared mapping of a segment file and typed, bounds-checked views into it.
//!
//! This is the only module of the crate that dereferences raw pointers. Everything it hands out is
//! a shared reference to a `#[repr(C)]` struct made only of atomics ([`SharedWords`]), so callers
//! can read and (for the writer) write through it without further `unsafe`, and concurrent access
//! from other processes is never a data race.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

use crate::directory::DirectoryEntry;
use crate::header::SegmentHeader;
use crate::slot::{LevelWords, SlotHeader};

/// Types that may be viewed in shared memory.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, consist only of atomic integers (directly or in arrays and
/// nested implementors), so that every bit pattern, including all zeroes, is a valid value and
/// concurrent access from any number of processes is never a data race. They hold no pointers,
/// handles or anything else meaningful only inside one process.
pub(crate) unsafe trait SharedWords {}

// SAFETY: `#[repr(C)]`, atomics and arrays of atomics only (see the struct definitions).
unsafe impl SharedWords for SegmentHeader {}
// SAFETY: `#[repr(C)]`, atomics and arrays of atomics only.
unsafe impl SharedWords for DirectoryEntry {}
// SAFETY: `#[repr(C)]`, atomics and arrays of atomics only.
unsafe impl SharedWords for SlotHeader {}
// SAFETY: `#[repr(C)]`, two `AtomicU64`s.
unsafe impl SharedWords for LevelWords {}

/// Whether the mapping may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Readers: `PROT_READ` only, so a reader bug can never corrupt a writer's books.
    ReadOnly,
    /// The one writer.
    ReadWrite,
}

/// `len` bytes of a segment file mapped `MAP_SHARED`; unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY:
// - The mapping is plain memory owned by this value; moving it to another thread moves ownership.
// - Every access goes through `SharedWords` types, which are atomics only, so shared use from
//   several threads (Sync) is as sound as sharing an `AtomicU64`.
unsafe impl Send for Mapping {}
// SAFETY: see `Send` above; all access is through atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`.
    ///
    /// # Errors
    /// Whatever `mmap` reports (for example `ENOMEM`, or `EACCES` for a write mapping of a file
    /// opened read-only).
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize, access: Access) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty segment",
            ));
        }
        let prot = match access {
            Access::ReadOnly => ProtFlags::READ,
            Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY:
        // - A null hint lets the kernel choose a fresh address range, so no existing Rust object is
        //   replaced or aliased by the new mapping.
        // - `len` is non-zero; `fd` is a valid open descriptor for the duration of the call.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }

    /// A view of the `T` at byte `offset`.
    ///
    /// # Panics
    /// When `T` would not lie fully inside the mapping or `offset` is misaligned for `T`. Callers
    /// only pass offsets derived from a validated `Geometry`, so this is an internal invariant.
    #[inline]
    pub(crate) fn get<T: SharedWords>(&self, offset: usize) -> &T {
        &self.slice::<T>(offset, 1)[0]
    }

    /// A view of `count` consecutive `T`s starting at byte `offset`.
    ///
    /// # Panics
    /// Under the same conditions as [`Mapping::get`].
    #[inline]
    pub(crate) fn slice<T: SharedWords>(&self, offset: usize, count: usize) -> &[T] {
        let end = count
            .checked_mul(size_of::<T>())
            .and_then(|bytes| bytes.checked_add(offset));
        assert!(
            end.is_some_and(|end| end <= self.len),
            "view outside the mapping"
        );
        assert!(offset % align_of::<T>() == 0, "misaligned view");
        // SAFETY:
        // - `offset + count * size_of::<T>() <= self.len` (asserted above), so the range lies inside
        //   the live mapping, which stays mapped until `self` drops; the returned borrow of `self`
        //   cannot outlive it. The mapping starts page-aligned, so `offset % align == 0` makes the
        //   pointer aligned for `T`.
        // - `T: SharedWords`: every bit pattern is a valid `T`, and all access is through atomics,
        //   so other processes writing the same memory concurrently is not a data race.
        // - For a read-only mapping, callers issue only Relaxed 8-byte atomic loads through `&T`
        //   (orderings come from fences), which std allows on read-only memory on 64-bit targets
        //   ("Atomic accesses to read-only memory"; lib.rs refuses other targets). Stores are only
        //   issued by `SegmentWriter`, whose mapping is `Access::ReadWrite`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), count) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY:
        // - `ptr`/`len` are exactly what `mmap` returned, and no borrow of the mapping outlives
        //   `self` (every view borrows `self`), so nothing refers to the range after this call.
        // A failure here would mean the range was not mapped, which the above rules out; there is
        // nothing to do about it in a destructor either way.
        if let Err(error) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            debug_assert!(false, "munmap failed: {error}");
        }
    }
}
