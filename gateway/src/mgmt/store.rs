//! mgmt's state on disk: written atomically (a temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new state, never a torn one; 0600 in a
//! 0700 folder, because it holds the users' API secrets ([`crate::private_file`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

use super::state::ClusterState;
use crate::private_file;

/// The state file could not be read.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a state.
    #[error("{path} is not a ubdcc state: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The state file in a data directory.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Timestamp of the newest state written; also serializes writers, so two saves never
    /// share the temporary file and an older state never replaces a newer one.
    saved: Mutex<f64>,
}

impl StateFile {
    /// `<dir>/state.json`; creates `dir` as 0700 (narrows it and an existing file to 0700 /
    /// 0600: the state holds the users' API secrets).
    ///
    /// # Errors
    /// When the directory cannot be created or narrowed.
    pub fn in_dir(dir: &Path) -> io::Result<Self> {
        private_file::private_dir(dir)?;
        let path = dir.join("state.json");
        if path.exists() {
            private_file::narrow(&path, private_file::FILE_MODE)?;
        }
        Ok(Self {
            path,
            saved: Mutex::new(f64::NEG_INFINITY),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state; `None` when there is none yet.
    ///
    /// # Errors
    /// [`LoadError`] when the file exists but cannot be read or parsed.
    pub fn load(&self) -> Result<Option<ClusterState>, LoadError> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LoadError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| LoadError::Invalid {
                path: self.path.clone(),
                source,
            })
    }

    /// Replaces the stored state durably, unless a newer one (by timestamp) is stored already.
    ///
    /// # Errors
    /// When writing, syncing or renaming fails (the old state is then still in place).
    pub fn save(&self, state: &ClusterState) -> io::Result<()> {
        let mut saved = self
            .saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.timestamp < *saved {
            return Ok(());
        }
        let contents = serde_json::to_vec(state).map_err(io::Error::other)?;
        private_file::write_atomic(&self.path, &contents)?;
        *saved = state.timestamp;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_loads_back_and_garbage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ubdcc-store-{}", std::process::id()));
        let file = StateFile::in_dir(&dir).unwrap();
        assert!(file.load().unwrap().is_none());
        let mut state = ClusterState::default();
        state.touch(1234.5);
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), state);
        let mut older = state.clone();
        older.timestamp = 1.0;
        file.save(&older).unwrap();
        assert_eq!(
            file.load().unwrap().unwrap(),
            state,
            "an older state never replaces a newer one"
        );
        fs::write(file.path(), b"{not json").unwrap();
        assert!(matches!(file.load(), Err(LoadError::Invalid { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
