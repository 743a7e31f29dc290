//! The local run lock: at most one runner per process and store directory.
//!
//! A runner holds an exclusive `flock`-style lock on `locks/<name>` below the
//! store root for as long as it runs; the operating system releases it when the
//! runner exits or is killed, so a crash never leaves a stale lock. The file
//! holds the runner's PID, so that `ferrite checkpoint NAME` can signal it.
//! Across machines, manifest fencing (`CkptError::Fenced`) is what keeps a
//! process from running twice; this lock refuses a second local run early.
//!
//! A lock file may be removed (`ferrite rm` does, with [`ProcessLock::remove`]),
//! so opening the path and locking what was opened are two steps another
//! command can come between: a runner may lock a file that is no longer named
//! `locks/<name>`, while a newer runner creates and locks a new one. A lock
//! therefore counts only once the path still names the locked file (same device
//! and inode, `fstat` against `stat`); otherwise acquiring starts over.

use crate::process::check_process_name;
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Most times [`ProcessLock::acquire`] opens the lock file again after finding
/// the one it locked unlinked. Each retry needs a lock file removed in the
/// instant between open and lock, so more than a couple mean something keeps
/// removing it.
pub const LOCK_ATTEMPTS_MAX: u32 = 8;

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
    name: String,
}

fn lock_path(root: &Path, name: &str) -> PathBuf {
    root.join("locks").join(name)
}

impl ProcessLock {
    /// Takes the lock of process `name` in the store at `root`, recording this
    /// process's PID.
    ///
    /// # Errors
    /// [`LockError::Held`] if another runner holds it; [`LockError::Io`] if the
    /// file cannot be opened or locked, or was replaced [`LOCK_ATTEMPTS_MAX`]
    /// times in a row.
    pub fn acquire(root: &Path, name: &str) -> Result<Self, LockError> {
        Self::acquire_with(root, name, &mut || {})
    }

    /// [`ProcessLock::acquire`], calling `between_open_and_lock` after each open
    /// of the lock file and before locking it: the seam through which a test
    /// puts another command (`rm`) exactly there.
    fn acquire_with(
        root: &Path,
        name: &str,
        between_open_and_lock: &mut dyn FnMut(),
    ) -> Result<Self, LockError> {
        check_process_name(name)?;
        let io = |source| LockError::Io {
            name: name.to_string(),
            source,
        };
        let path = lock_path(root, name);
        fs::create_dir_all(path.parent().expect("lock path has a parent")).map_err(io)?;
        for _ in 0..LOCK_ATTEMPTS_MAX {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            between_open_and_lock();
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
            if !names_file(&path, &file).map_err(io)? {
                // Unlinked since we opened it: a lock nobody else can see.
                drop(file);
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Self {
                file,
                path,
                name: name.to_string(),
            });
        }
        Err(io(io::Error::other(format!(
            "{} was replaced {LOCK_ATTEMPTS_MAX} times while locking it",
            path.display()
        ))))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the process this lock is for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the lock file, then releases the lock. The unlink happens while
    /// the lock is held, so a runner that opened the old file and locks it
    /// afterwards sees the path no longer naming it, and starts over on a new
    /// file. Removing the file any other way (or after unlocking) would let two
    /// runners hold "the" lock at once.
    ///
    /// # Errors
    /// If the file exists and cannot be removed (the lock is released anyway).
    pub fn remove(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
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

/// True if `path` names the open `file` (same device and inode); false if the
/// name is gone or names another file.
fn names_file(path: &Path, file: &File) -> io::Result<bool> {
    let opened = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == opened.dev() && named.ino() == opened.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
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

    /// Issue 8, part 5: `ferrite rm` (lock, remove, unlink, unlock) runs
    /// entirely between a runner's open of the lock file and its lock. The
    /// runner must end up holding the lock that the path names, so that a third
    /// runner is refused; before the fix it held a lock on the unlinked file and
    /// the third runner started too.
    #[test]
    fn issue8_rm_between_open_and_lock_leaves_one_runner() {
        let root = std::env::temp_dir().join(format!("ferrite-lock-rm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // The lock file exists, as after an earlier run.
        drop(ProcessLock::acquire(&root, "job").unwrap());
        let mut opens = 0;
        let runner = ProcessLock::acquire_with(&root, "job", &mut || {
            opens += 1;
            if opens == 1 {
                let rm = ProcessLock::acquire(&root, "job").unwrap();
                rm.remove().unwrap();
                assert!(!lock_path(&root, "job").exists());
            }
        })
        .unwrap();
        assert_eq!(opens, 2, "the runner opened the lock file again");
        assert!(names_file(runner.path(), &runner.file).unwrap());
        assert!(ProcessLock::is_held(&root, "job"));
        assert!(matches!(
            ProcessLock::acquire(&root, "job"),
            Err(LockError::Held { .. })
        ));
        // And `rm` itself is refused while the runner holds the lock.
        let mut rm_opens = 0;
        assert!(matches!(
            ProcessLock::acquire_with(&root, "job", &mut || rm_opens += 1),
            Err(LockError::Held { .. })
        ));
        assert_eq!(rm_opens, 1);
        drop(runner);
        fs::remove_dir_all(root).unwrap();
    }

    /// A runner that locked the old file just before `rm` unlinked it cannot
    /// exist: `rm` would have found it held. But a runner that keeps losing the
    /// race gives up after [`LOCK_ATTEMPTS_MAX`] opens instead of looping.
    #[test]
    fn acquiring_gives_up_when_the_file_keeps_being_replaced() {
        let root = std::env::temp_dir().join(format!("ferrite-lock-churn-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mut opens = 0;
        let result = ProcessLock::acquire_with(&root, "job", &mut || {
            opens += 1;
            ProcessLock::acquire(&root, "job")
                .unwrap()
                .remove()
                .unwrap();
        });
        assert!(matches!(result, Err(LockError::Io { .. })), "{result:?}");
        assert_eq!(opens, LOCK_ATTEMPTS_MAX);
        assert!(!ProcessLock::is_held(&root, "job"));
        fs::remove_dir_all(root).unwrap();
    }
}
