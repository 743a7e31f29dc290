//! The local run lock: at most one runner per process and store directory.
//!
//! A runner holds an exclusive `flock`-style lock on `locks/<name>` below the
//! store root for as long as it runs; the operating system releases it when the
//! runner exits or is killed, so a crash never leaves a stale lock. The file
//! holds the runner's PID, so that `ferrite checkpoint NAME` can signal it.
//! Across machines, manifest fencing (`CkptError::Fenced`) is what keeps a
//! process from running twice; this lock refuses a second local run early.

use crate::process::check_process_name;
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("process {name} is already running (pid {pid:?})")]
    Held { name: String, pid: Option<u32> },
    #[error("cannot lock process {name}: {source}")]
    Io { name: String, source: io::Error },
    #[error(transparent)]
    Name(#[from] crate::CkptError),
}

/// An exclusive lock on a process, released on drop or process exit.
#[derive(Debug)]
pub struct ProcessLock {
    file: File,
    path: PathBuf,
}

fn lock_path(root: &Path, name: &str) -> PathBuf {
    root.join("locks").join(name)
}

impl ProcessLock {
    /// Takes the lock of process `name` in the store at `root`, recording this
    /// process's PID.
    ///
    /// # Errors
    /// [`LockError::Held`] if another runner holds it.
    pub fn acquire(root: &Path, name: &str) -> Result<Self, LockError> {
        check_process_name(name)?;
        let io = |source| LockError::Io {
            name: name.to_string(),
            source,
        };
        let path = lock_path(root, name);
        fs::create_dir_all(path.parent().expect("lock path has a parent")).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    name: name.to_string(),
                    pid: holder(&path),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if some runner holds the lock of `name` at `root` right now.
    pub fn is_held(root: &Path, name: &str) -> bool {
        let Ok(file) = File::open(lock_path(root, name)) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// The PID of the runner holding the lock of `name`, if one does.
    pub fn holder_pid(root: &Path, name: &str) -> Option<u32> {
        Self::is_held(root, name)
            .then(|| holder(&lock_path(root, name)))
            .flatten()
    }
}

fn holder(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_runner_is_refused_until_the_first_is_gone() {
        let root = std::env::temp_dir().join(format!("ferrite-lock-{}", std::process::id()));
        let first = ProcessLock::acquire(&root, "job").unwrap();
        assert!(ProcessLock::is_held(&root, "job"));
        assert_eq!(
            ProcessLock::holder_pid(&root, "job"),
            Some(std::process::id())
        );
        match ProcessLock::acquire(&root, "job") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(!ProcessLock::is_held(&root, "job"));
        ProcessLock::acquire(&root, "job").unwrap();
        assert!(ProcessLock::acquire(&root, "../x").is_err());
        fs::remove_dir_all(root).unwrap();
    }
}
