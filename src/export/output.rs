//! The export's output file: private and never written through a planted link.
//!
//! It is written under a fresh temporary name beside it, created `0600` with `O_EXCL` and
//! `O_NOFOLLOW` (never another's file, never through a symlink), and renamed over the asked
//! name only once complete: the rename replaces a file or a symlink at that name instead of
//! following it, and a failed export leaves what was there before (the temporary file is
//! removed). This is `ubdcc_gateway::private_file::write_atomic`'s recipe, streamed, as an
//! export may be far larger than memory.

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
    /// No random name could be made, or the file cannot be created (missing folder, no
    /// permission).
    pub(super) fn create(path: &Path) -> anyhow::Result<(Self, File)> {
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
    fn the_output_is_private_and_replaces_a_planted_symlink_without_following_it() {
        let dir = temp_dir("link");
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").expect("victim");
        let out = dir.join("out.csv");
        std::os::unix::fs::symlink(&victim, &out).expect("symlink");
        let (output, mut file) = OutputFile::create(&out).expect("create");
        file.write_all(b"rows").expect("write");
        output.commit().expect("commit");
        assert_eq!(fs::read(&victim).expect("victim"), b"keep", "not followed");
        let metadata = fs::symlink_metadata(&out).expect("out");
        assert!(metadata.is_file(), "the link is replaced by the file");
        assert_eq!(metadata.permissions().mode() & 0o777, MODE);
        assert_eq!(fs::read(&out).expect("out"), b"rows");
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            2,
            "no temporary left"
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
