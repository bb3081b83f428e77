//! The export's output file: private and never written through a planted link.
//!
//! It is written under a fresh temporary name beside it, created `0600` with `O_EXCL` and
//! `O_NOFOLLOW` (never another's file, never through a symlink), and renamed over the asked
//! name only once complete: the rename replaces a file or a symlink at that name instead of
//! following it, and a failed export leaves what was there before (the temporary file is
//! removed). This is `ubdcc_gateway::private_file::write_atomic`'s recipe, streamed, as an
//! export may be far larger than memory.
//!
//! A name that exists and is no regular file (a symlink, a device such as `/dev/null`, a pipe,
//! a folder) is refused: renaming over it would replace `/dev/null` or `/dev/stdout` with a
//! plain file, and a symlink found there may be planted. Omit `--out` for standard output.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The mode of the output: the books of a recording are the user's own data.
const MODE: u32 = 0o600;

/// An output being written; removed unless [`OutputFile::commit`] renames it into place.
pub(super) struct OutputFile {
    temporary: PathBuf,
    path: PathBuf,
    /// A handle to sync before the rename (the sink owns the one it writes through).
    file: File,
    committed: bool,
}

impl OutputFile {
    /// Creates the temporary file for `path`; the handle is for the sink to write through.
    ///
    /// # Errors
    /// `path` exists and is no regular file; no random name could be made; the file cannot be
    /// created (missing folder, no permission).
    pub(super) fn create(path: &Path) -> anyhow::Result<(Self, File)> {
        refuse_special(path)?;
        let mut name = path
            .file_name()
            .with_context(|| format!("{} names no file", path.display()))?
            .to_owned();
        let random = ubdcc_gateway::private_file::random_hex(8).context("a temporary name")?;
        name.push(format!(".{random}.tmp"));
        let temporary = path.with_file_name(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        let sync = file.try_clone().context("the output's handle")?;
        let output = Self {
            temporary,
            path: path.to_owned(),
            file: sync,
            committed: false,
        };
        Ok((output, file))
    }

    /// Syncs the complete output and renames it to its name.
    ///
    /// # Errors
    /// Syncing or renaming fails (the output is then removed; what was at its name stays).
    pub(super) fn commit(mut self) -> anyhow::Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.temporary.display()))?;
        fs::rename(&self.temporary, &self.path)
            .with_context(|| format!("renaming the export to {}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

/// Refuses an existing `path` that is no regular file (see the module doc); a missing one is
/// fine.
fn refuse_special(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_file() => anyhow::bail!(
            "{} exists and is not a regular file (a symlink, device, pipe or folder); give a \
             new file name, or omit --out to write to standard output",
            path.display()
        ),
        _ => Ok(()),
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: an incomplete export is no export.
            fs::remove_file(&self.temporary).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ubdcc-export-{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn the_output_is_private_and_replaces_an_old_file() {
        let dir = temp_dir("private");
        let out = dir.join("out.csv");
        fs::write(&out, b"old").expect("old");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (output, mut file) = OutputFile::create(&out).expect("create");
        file.write_all(b"rows").expect("write");
        output.commit().expect("commit");
        let metadata = fs::symlink_metadata(&out).expect("out");
        assert_eq!(metadata.permissions().mode() & 0o777, MODE);
        assert_eq!(fs::read(&out).expect("out"), b"rows");
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            1,
            "no temporary left"
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_symlink_a_device_or_a_folder_at_the_name_is_refused_and_left_alone() {
        let dir = temp_dir("special");
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").expect("victim");
        let link = dir.join("out.csv");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        for path in [link.as_path(), Path::new("/dev/null"), dir.as_path()] {
            let error = OutputFile::create(path).err().expect("refused");
            assert!(error.to_string().contains("not a regular file"), "{error}");
        }
        assert_eq!(fs::read(&victim).expect("victim"), b"keep", "not followed");
        assert!(fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            2,
            "nothing created"
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_output_not_committed_leaves_nothing_and_the_old_file_stands() {
        let dir = temp_dir("abort");
        let out = dir.join("out.csv");
        fs::write(&out, b"old").expect("old");
        let (output, mut file) = OutputFile::create(&out).expect("create");
        file.write_all(b"half").expect("write");
        drop(output);
        assert_eq!(fs::read(&out).expect("out"), b"old");
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            1,
            "no temporary left"
        );
        fs::remove_dir_all(&dir).ok();
    }
}
