//! Files that hold secrets (mgmt's state with the users' API secrets, the cluster secret of
//! `ubdcc start`, this machine's token): folders 0700, files 0600, written atomically.
//!
//! A file is created with its final mode (`open(O_CREAT, 0600)`), never created world-readable
//! and narrowed afterwards: between the two a neighbour could open it and keep the descriptor.
//! Existing folders and files are narrowed when found wider (a state written by an older
//! version was 0644 in a 0755 folder).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of a folder holding secrets.
pub const DIR_MODE: u32 = 0o700;

/// Mode of a file holding secrets.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) as 0700; an existing `dir` is narrowed to 0700.
///
/// # Errors
/// When the folder cannot be created or its mode not set.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    narrow(dir, DIR_MODE)
}

/// Sets `path`'s mode to `mode` unless it already allows no more than that.
///
/// # Errors
/// When the mode cannot be read or set.
pub fn narrow(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Replaces `path` with `contents` atomically (a 0600 temporary file, fsync, rename, fsync of
/// the folder), so a crash leaves the old or the new contents, never a torn file.
///
/// # Errors
/// When writing, syncing or renaming fails (the old file is then still in place).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = temporary(path)?;
    let mut file = create_private(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A new file at `path`, 0600 from its first moment; fails if `path` exists.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// A fresh temporary name beside `path` (random: threads and processes never share one).
fn temporary(path: &Path) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", random_hex(8)?));
    Ok(path.with_file_name(name))
}

/// `len` random bytes from the kernel's CSPRNG, as lowercase hex.
///
/// # Errors
/// When the kernel gives no random bytes.
pub fn random_hex(len: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads a secret file: its contents, trimmed; `None` when it does not exist, is empty, or is
/// spent: readable by group or others, or owned by another user — someone may have copied it
/// (said so in the log; [`load_or_create_secret`] replaces such a file).
///
/// # Errors
/// When the file exists but cannot be read.
pub fn read_secret(path: &Path) -> io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mode = metadata.mode() & 0o777;
    let own = metadata.uid() == rustix::process::geteuid().as_raw();
    if !metadata.is_file() || mode & !FILE_MODE != 0 || !own {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            uid = metadata.uid(),
            "a secret file others could read (or not a private file of this user); not used"
        );
        return Ok(None);
    }
    let text = fs::read_to_string(path)?;
    let secret = text.trim();
    Ok((!secret.is_empty()).then(|| secret.to_owned()))
}

/// The secret in `path`, created (32 random bytes, hex) when there is none. Processes that
/// race to create it all end up with the one that won: the new secret is written to a private
/// temporary file and hard-linked into place, which fails when another was first.
///
/// # Errors
/// When the folder or file cannot be created or read.
pub fn load_or_create_secret(path: &Path) -> io::Result<String> {
    if let Some(secret) = read_secret(path)? {
        return Ok(secret);
    }
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    if fs::symlink_metadata(path).is_ok() {
        // There, but empty or spent: a new secret takes its place. (A file another creator
        // linked in since the read above is not spent: read it again before removing.)
        if let Some(secret) = read_secret(path)? {
            return Ok(secret);
        }
        fs::remove_file(path).or_else(|error| match error.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(error),
        })?;
    }
    let temporary = temporary(path)?;
    let mut file = create_private(&temporary)?;
    file.write_all(random_hex(32)?.as_bytes())?;
    file.sync_all()?;
    let linked = fs::hard_link(&temporary, path);
    fs::remove_file(&temporary).ok();
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    read_secret(path)?.ok_or_else(|| io::Error::other(format!("{} is empty", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ubdcc-private-{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn written_files_are_0600_in_0700_folders_even_where_they_were_wider() {
        let dir = scratch("modes");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("state.json");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&file, b"new").unwrap();
        assert_eq!(
            (mode(&file), fs::read_to_string(&file).unwrap().as_str()),
            (0o600, "new")
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_secret_is_created_once_and_then_read_back() {
        let dir = scratch("secret");
        let path = dir.join("sub").join("token");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
        assert_ne!(random_hex(32).unwrap(), random_hex(32).unwrap());
        // One that others could read is spent: replaced by a new one.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_secret(&path).unwrap(), None);
        let replaced = load_or_create_secret(&path).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(mode(&path), 0o600);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn racing_creators_agree_on_one_secret() {
        let dir = scratch("race");
        let path = dir.join("token");
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create_secret(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]), "{secrets:?}");
        fs::remove_dir_all(&dir).ok();
    }
}
