//! Which segments a reader believes: a segment is read only when its owner is trusted and nobody
//! but that owner can write to it.
//!
//! # Why owner and mode, checked before mapping
//! `/dev/shm` is writable by every local user, so anyone can create `ubdcc.<cluster>.<dcn>` with
//! the public layout. A reader that believed any such file would serve forged books (a name that
//! sorts first shadows the real replica), and one that mapped it would die of `SIGBUS` when its
//! creator truncated it: tmpfs unmaps the pages past the new end from every mapping.
//!
//! So a reader `fstat`s the descriptor it opened (never the path, which could be swapped in
//! between) and, before mapping anything, refuses the file unless
//! - it is a regular file (a FIFO would block the open; `O_NONBLOCK` and `O_NOFOLLOW` keep FIFOs
//!   and symbolic links from doing anything before this check),
//! - neither its group nor others may write it (the mode has no `0o022` bit; like ssh's
//!   `StrictModes`), and
//! - its owner uid is the reader's effective uid or one it was told to trust, or its group is a
//!   trusted gid.
//!
//! # Why that is enough against a neighbour's `SIGBUS`
//! Shrinking a file takes `ftruncate` on a descriptor open for writing, or `truncate` by path,
//! and both need write permission on the file. With no group or other write bit, that is only
//! the owner (trusted) and root (which can kill the reader anyway). Only the owner (or root) can
//! add a write bit with `chmod`, and a non-root user cannot give a file away with `chown`, so a
//! neighbour can neither make a file that passes the check as someone else's nor gain the right
//! to shrink one that does. A descriptor opened for writing before the mode was narrowed would
//! survive the `chmod`, but only the file's creator could hold one, and [`crate::SegmentWriter`]
//! creates its segments without group or other write bits from the first instant.
//!
//! Trusting a gid trusts every member of that group as a writer: any of them can create a file of
//! that group (and then shrink it). Trust a uid when only one account runs DCNs.
//!
//! # A trusted writer that shrinks its segment
//! Segments are never shrunk: [`crate::SegmentWriter`] sizes a segment once with `fallocate` and
//! never truncates it. Against a trusted process breaking that rule anyway, readers compare the
//! file size with what they mapped at every lock probe (at most every 50 ms while reading, one
//! `fstat` that costs nothing measurable per read) and from then on refuse the segment with
//! [`crate::ReadError::SegmentShrunk`], before touching its memory. A read inside the window
//! between a shrink and the next probe can still fault. Closing that window was weighed and
//! rejected:
//! - `MAP_POPULATE` + `mlock` does not help: truncation unmaps locked pages too (tried on this
//!   kernel: the next access is `SIGBUS`).
//! - `F_SEAL_SHRINK` would, but the kernel allows seals only on `memfd`s, which have no name in
//!   `/dev/shm` for readers to open.
//! - An `fstat` before every read would narrow it (not close it) for about the price of the read
//!   itself (`shm_read/stat_segment` in `benches/shm_read.rs`).
//! - A `SIGBUS` guard would close it, but needs a process-wide signal handler installed by a
//!   library that runs inside other programs (Python's `faulthandler`, JVMs and sanitizers install
//!   their own), telling our faults from theirs and remapping pages from inside the handler: a lot
//!   of global machinery to defend against our own writer breaking a rule it never breaks, where
//!   nobody untrusted can make it happen.

use std::fmt;

use rustix::fs::{FileType, Stat};
use thiserror::Error;

/// The environment variable naming further trusted owners: `uid:N` and `gid:N`, comma-separated
/// (e.g. `uid:1000,gid:2000`). Read by [`Trust::from_env`], and so by `ClusterReader::open`, the
/// C ABI and the Python binding.
pub const TRUST_ENV: &str = "UBDCC_SHM_TRUST";

/// The owners whose segments a reader believes.
///
/// Always includes the reader's effective uid. Build it with [`Trust::own_user`] and add owners
/// with [`Trust::uid`], [`Trust::gid`] or [`Trust::with_spec`]; [`Trust::from_env`] adds those
/// named by [`TRUST_ENV`].
///
/// ```
/// use ubdcc_shm::Trust;
/// let trust = Trust::own_user().uid(1000).with_spec("gid:2000")?;
/// assert!(trust.to_string().contains("gid 2000"));
/// # Ok::<(), ubdcc_shm::InvalidTrust>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Default for Trust {
    /// [`Trust::own_user`].
    fn default() -> Self {
        Self::own_user()
    }
}

impl Trust {
    /// Trusts only segments owned by this process's effective uid.
    pub fn own_user() -> Self {
        Self {
            uids: vec![rustix::process::geteuid().as_raw()],
            gids: Vec::new(),
        }
    }

    /// [`Trust::own_user`] plus the owners named by the environment variable [`TRUST_ENV`] (when
    /// set and not empty).
    ///
    /// # Errors
    /// [`InvalidTrust`] when the variable is set but not a list of `uid:N` / `gid:N`; a mistyped
    /// setting is an error rather than silently trusting less (or more) than meant.
    pub fn from_env() -> Result<Self, InvalidTrust> {
        let own = Self::own_user();
        match std::env::var(TRUST_ENV) {
            Ok(spec) => own.with_spec(&spec).map_err(|error| InvalidTrust {
                setting: TRUST_ENV,
                ..error
            }),
            Err(std::env::VarError::NotPresent) => Ok(own),
            Err(std::env::VarError::NotUnicode(_)) => Err(InvalidTrust {
                setting: TRUST_ENV,
                entry: "(not UTF-8)".to_owned(),
            }),
        }
    }

    /// Also trusts segments owned by `uid`.
    #[must_use]
    pub fn uid(mut self, uid: u32) -> Self {
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
        }
        self
    }

    /// Also trusts segments whose group is `gid`, i.e. every member of that group.
    #[must_use]
    pub fn gid(mut self, gid: u32) -> Self {
        if !self.gids.contains(&gid) {
            self.gids.push(gid);
        }
        self
    }

    /// Also trusts the owners in `spec`: `uid:N` and `gid:N` separated by commas (spaces around
    /// entries and empty entries are ignored, so `""` adds nothing).
    ///
    /// # Errors
    /// [`InvalidTrust`] naming the first entry that is not `uid:N` or `gid:N` with a decimal `N`.
    pub fn with_spec(mut self, spec: &str) -> Result<Self, InvalidTrust> {
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || InvalidTrust {
                setting: "trust",
                entry: entry.to_owned(),
            };
            let (kind, id) = entry.split_once(':').ok_or_else(invalid)?;
            let id: u32 = id.trim().parse().map_err(|_| invalid())?;
            self = match kind.trim() {
                "uid" => self.uid(id),
                "gid" => self.gid(id),
                _ => return Err(invalid()),
            };
        }
        Ok(self)
    }

    /// Checks the `fstat` of an open segment descriptor.
    ///
    /// # Errors
    /// The first reason to refuse the file, in the order of the module doc.
    pub(crate) fn check(&self, stat: &Stat) -> Result<(), Distrust> {
        let mode = stat.st_mode;
        if FileType::from_raw_mode(mode) != FileType::RegularFile {
            return Err(Distrust::NotRegularFile);
        }
        if mode & 0o022 != 0 {
            return Err(Distrust::WritableByOthers {
                mode: mode & 0o7777,
            });
        }
        if self.uids.contains(&stat.st_uid) || self.gids.contains(&stat.st_gid) {
            return Ok(());
        }
        Err(Distrust::Owner {
            uid: stat.st_uid,
            gid: stat.st_gid,
            trusted: self.to_string(),
        })
    }
}

impl fmt::Display for Trust {
    /// `uid 0, uid 1000, gid 2000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uids = self.uids.iter().map(|uid| format!("uid {uid}"));
        let gids = self.gids.iter().map(|gid| format!("gid {gid}"));
        let all: Vec<String> = uids.chain(gids).collect();
        f.write_str(&all.join(", "))
    }
}

/// A trust setting could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{setting}: {entry:?} is not uid:N or gid:N (e.g. UBDCC_SHM_TRUST=uid:1000,gid:2000)")]
pub struct InvalidTrust {
    /// Where the setting came from: [`TRUST_ENV`] or `trust` (an argument).
    pub setting: &'static str,
    /// The entry that is not `uid:N` / `gid:N`.
    pub entry: String,
}

/// Why a reader refuses a segment (see the module doc of `trust`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Distrust {
    /// Its owner is neither the reader's user nor trusted, and neither is its group.
    #[error(
        "owned by uid {uid} gid {gid}, which this reader does not trust (it trusts {trusted}; add owners with {TRUST_ENV}=uid:N,gid:N)"
    )]
    Owner {
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// The owners the reader trusts, for the message.
        trusted: String,
    },
    /// Its group or others may write it, so someone besides its owner could change or shrink it.
    #[error("mode {mode:04o} lets group or others write it")]
    WritableByOthers {
        /// Permission bits.
        mode: u32,
    },
    /// It is a symbolic link, FIFO, socket or anything else but a regular file.
    #[error("not a regular file")]
    NotRegularFile,
}

#[cfg(test)]
mod tests {
    use rustix::fs::{Mode, OFlags};

    use super::*;

    /// A regular file with `mode`, and its `fstat`, as root sees it.
    fn stat_with(mode: u32) -> Stat {
        let path = format!("/dev/shm/ubdcc-trust-test-{}-{mode:o}", std::process::id());
        let fd = rustix::fs::open(
            path.as_str(),
            OFlags::CREATE | OFlags::RDWR | OFlags::TRUNC,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).unwrap();
        let stat = rustix::fs::fstat(&fd).unwrap();
        rustix::fs::unlink(path.as_str()).unwrap();
        stat
    }

    fn owned_by(uid: u32, gid: u32) -> Stat {
        let mut stat = stat_with(0o600);
        stat.st_uid = uid;
        stat.st_gid = gid;
        stat
    }

    fn own_uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn other_uid() -> u32 {
        own_uid().wrapping_add(4242)
    }

    #[test]
    fn own_uid_is_trusted() {
        assert_eq!(Trust::own_user().check(&stat_with(0o600)), Ok(()));
        assert_eq!(Trust::own_user().check(&stat_with(0o644)), Ok(()));
    }

    #[test]
    fn another_uid_is_refused_with_its_owner_in_the_reason() {
        let stat = owned_by(other_uid(), 4343);
        let refused = Trust::own_user().check(&stat).unwrap_err();
        assert!(
            matches!(refused, Distrust::Owner { uid, gid: 4343, .. } if uid == other_uid()),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert!(
            message.contains(&format!("uid {}", other_uid())),
            "{message}"
        );
        assert!(message.contains(TRUST_ENV), "{message}");
    }

    #[test]
    fn group_or_other_writable_is_refused_even_for_the_own_uid() {
        for mode in [0o620, 0o602, 0o666] {
            assert_eq!(
                Trust::own_user().check(&stat_with(mode)),
                Err(Distrust::WritableByOthers { mode }),
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn trusted_extra_uid_and_gid_are_accepted() {
        let by_uid = owned_by(other_uid(), 4343);
        assert_eq!(Trust::own_user().uid(other_uid()).check(&by_uid), Ok(()));
        let by_gid = owned_by(other_uid(), 4343);
        assert_eq!(Trust::own_user().gid(4343).check(&by_gid), Ok(()));
        assert!(Trust::own_user().gid(4344).check(&by_gid).is_err());
    }

    #[test]
    fn non_regular_files_are_refused() {
        let mut stat = stat_with(0o600);
        stat.st_mode = (stat.st_mode & 0o7777) | FileType::Fifo.as_raw_mode();
        assert_eq!(
            Trust::own_user().check(&stat),
            Err(Distrust::NotRegularFile)
        );
    }

    #[test]
    fn specs_parse_uids_and_gids_and_reject_anything_else() {
        let trust = Trust::own_user()
            .with_spec(" uid:1000, gid:2000 ,,uid:1000")
            .unwrap();
        let mut expected = vec![own_uid()];
        if own_uid() != 1000 {
            expected.push(1000);
        }
        assert_eq!(trust.uids, expected);
        assert_eq!(trust.gids, vec![2000]);
        assert_eq!(Trust::own_user().with_spec("").unwrap(), Trust::own_user());
        for bad in ["user:1000", "uid", "uid:-1", "gid:x", "1000"] {
            let error = Trust::own_user().with_spec(bad).unwrap_err();
            assert_eq!(error.entry, bad, "{bad}");
        }
    }
}
