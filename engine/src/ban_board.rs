//! The ban board: a 429 / 418 one DCN meets holds back every other DCN of this user on this host.
//!
//! Binance counts weight and bans per IP (`docs/binance-protocol.md` §1.2 and §5). Each DCN has
//! its own [`crate::weight_budget::WeightBudget`], so without a shared record every DCN of a host
//! walked into a ban separately, and each such request extends it. DCNs of one host share
//! `/dev/shm`, so the board is one small file there, `/dev/shm/ubdcc-bans-<uid>`: one line per
//! REST endpoint, `<unix ms until> <endpoint>`. A DCN that meets a 429 / 418 posts the endpoint's
//! block; every DCN reads the board before it sends a snapshot request and holds back until
//! the posted instant.
//!
//! Why a file, and why per user and host rather than per cluster:
//! - a plain file with `flock` needs no `unsafe` and no mapping layout; posting and reading are
//!   a few microseconds on tmpfs, rare (a post per rejection) or cheap (a read per dispatch
//!   with books waiting), and a lock held for microseconds never stalls the scheduler;
//! - the IP is the host's, whatever cluster a DCN belongs to, so the board is the host's too;
//!   it is keyed by endpoint URL (so two simulators on one host never hold each other back);
//! - the lock (exclusive to post, shared to read) makes read-merge-write safe between DCNs, so
//!   two bans posted at once are both kept;
//! - mgmt was the alternative, but a DCN must hold back within milliseconds of another's 418,
//!   and must still do so when mgmt is away.
//!
//! `/dev/shm` is writable by every local user: the board is created `0600` and opened without
//! following links and without blocking on a FIFO; one owned by someone else, or readable by
//! others, is ignored (with one warning), so another user can neither fake a ban (stopping our
//! snapshots) nor hide one. Without a usable board a DCN still honours its own 429 / 418, as
//! before. Pods of one Kubernetes node do not share `/dev/shm` unless it is mounted for them;
//! without it each pod is on its own again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::weight_budget::MAX_RETRY_AFTER;

/// Longest board we read: a line per endpoint, a handful of endpoints. More is not our file.
const MAX_BOARD_BYTES: u64 = 64 * 1024;

/// Blocks by endpoint URL, each until an instant.
pub(crate) type Bans = HashMap<String, SystemTime>;

/// The board of one user on one host; see the module doc.
#[derive(Debug)]
pub(crate) struct BanBoard {
    path: PathBuf,
    /// A warning about an unusable board was logged (once is enough).
    warned: bool,
}

impl BanBoard {
    /// The board of this user on this host, or the one `UBDCC_BAN_BOARD` names (tests give
    /// each run its own, so a ban one test provokes never holds back a later one whose
    /// simulator happens to get the same port).
    pub(crate) fn for_this_user() -> Self {
        if let Some(path) = std::env::var_os("UBDCC_BAN_BOARD").filter(|p| !p.is_empty()) {
            return Self::at(path);
        }
        let uid = rustix::process::geteuid().as_raw();
        Self::at(format!("/dev/shm/ubdcc-bans-{uid}"))
    }

    /// A board at `path` (tests use a private one).
    pub(crate) fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            warned: false,
        }
    }

    /// Records that `endpoint` must not be asked before `until`; a later block already posted
    /// stays. Failures are logged, never fatal: the DCN still honours its own block.
    pub(crate) fn post(&mut self, endpoint: &str, until: SystemTime) {
        if let Err(error) = self.try_post(endpoint, until) {
            self.warn(&error);
        }
    }

    /// The blocks still running at `now`; empty when there is no usable board.
    pub(crate) fn read(&mut self, now: SystemTime) -> Bans {
        match self.try_read(now) {
            Ok(bans) => bans,
            Err(error) => {
                self.warn(&error);
                Bans::new()
            }
        }
    }

    fn try_post(&self, endpoint: &str, until: SystemTime) -> std::io::Result<()> {
        if endpoint.contains(char::is_whitespace) {
            return Ok(());
        }
        let mut file = open(&self.path, true)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        let now = SystemTime::now();
        let mut bans = parse(&read_all(&mut file)?, now);
        let entry = bans.entry(endpoint.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format(&bans).as_bytes())?;
        // Dropping the file releases the lock.
        Ok(())
    }

    fn try_read(&self, now: SystemTime) -> std::io::Result<Bans> {
        let mut file = match open(&self.path, false) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Bans::new()),
            other => other?,
        };
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)?;
        Ok(parse(&read_all(&mut file)?, now))
    }

    fn warn(&mut self, error: &std::io::Error) {
        if self.warned {
            return;
        }
        self.warned = true;
        tracing::warn!(
            board = %self.path.display(),
            %error,
            "the ban board is unusable: a 429/418 another DCN of this host meets will not hold \
             this one back"
        );
    }
}

/// Opens the board (creating it `0600` if asked) and checks it is ours alone.
fn open(path: &Path, create: bool) -> std::io::Result<File> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .custom_flags(i32::try_from(flags.bits()).unwrap_or(0))
        .open(path)?;
    let meta = file.metadata()?;
    let own = rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != own || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a regular file of this user with mode 0600",
        ));
    }
    Ok(file)
}

fn read_all(file: &mut File) -> std::io::Result<String> {
    let mut text = String::new();
    file.take(MAX_BOARD_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// The board's blocks still running at `now`; malformed lines are skipped, and no block lasts
/// longer than [`MAX_RETRY_AFTER`] from `now` (a board is no reason to stop for good).
fn parse(text: &str, now: SystemTime) -> Bans {
    let longest = now.checked_add(MAX_RETRY_AFTER).unwrap_or(now);
    text.lines()
        .filter_map(|line| {
            let (ms, endpoint) = line.split_once(' ')?;
            let until = UNIX_EPOCH.checked_add(Duration::from_millis(ms.parse().ok()?))?;
            (until > now && !endpoint.is_empty()).then(|| (endpoint.to_owned(), until.min(longest)))
        })
        .collect()
}

fn format(bans: &Bans) -> String {
    let mut text = String::new();
    for (endpoint, until) in bans {
        let ms = until
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        text.push_str(&format!("{ms} {endpoint}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(tag: &str) -> (BanBoard, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("ubdcc-bans-test-{tag}-{}", std::process::id()));
        std::fs::remove_file(&path).ok();
        (BanBoard::at(&path), path)
    }

    #[test]
    fn a_block_posted_by_one_dcn_is_read_by_another_until_it_ends() {
        let (mut first, path) = board("post");
        let mut second = BanBoard::at(&path);
        let now = SystemTime::now();
        assert!(second.read(now).is_empty(), "no board yet: no block");
        let until = now + Duration::from_secs(30);
        first.post("http://a/api/v3/depth", until);
        first.post("http://b/fapi/v1/depth", now + Duration::from_secs(5));
        // A shorter block never shortens a longer one.
        first.post("http://a/api/v3/depth", now + Duration::from_secs(1));
        let bans = second.read(now);
        assert_eq!(bans.len(), 2);
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms(bans["http://a/api/v3/depth"]), ms(until));
        let later = second.read(now + Duration::from_secs(10));
        assert_eq!(later.keys().collect::<Vec<_>>(), ["http://a/api/v3/depth"]);
        assert!(second.read(until).is_empty(), "over once it ends");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_board_others_may_write_is_ignored() {
        let (mut board, path) = board("open");
        board.post(
            "http://a/api/v3/depth",
            SystemTime::now() + Duration::from_secs(30),
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        assert!(board.read(SystemTime::now()).is_empty());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn malformed_and_absurd_lines_neither_block_for_good_nor_panic() {
        let now = SystemTime::now();
        let text = format!(
            "garbage\n{} x\n18446744073709551615 y\n 1\n",
            (now + Duration::from_secs(9))
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let bans = parse(&text, now);
        assert_eq!(bans.len(), 2, "{bans:?}");
        assert!(bans["y"] <= now + MAX_RETRY_AFTER);
    }
}
