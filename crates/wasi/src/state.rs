//! The WASI host state as plain data: what a checkpoint saves.
//!
//! Nothing here holds an OS handle. [`WasiCtx`](crate::WasiCtx) keeps the live
//! handles beside a [`WasiState`] and updates the state on every call, so that
//! [`WasiCtx::snapshot`](crate::WasiCtx::snapshot) is a copy and
//! [`WasiCtx::restore`](crate::WasiCtx::restore) can reopen every file by its path
//! and continue at its offset. File offsets live here, not in the OS: reads and
//! writes are positional (`pread`/`pwrite`).

use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::PathBuf,
};

/// A guest file descriptor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fd(pub u32);

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Index of a preopened directory in [`WasiState::preopens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PreopenIndex(pub u32);

/// A host directory made visible to the guest (`--dir HOST::GUEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    /// Where the directory is on the host.
    pub host_path: PathBuf,
    /// The name the guest sees (`fd_prestat_dir_name`), such as `/data` or `.`.
    pub guest_path: String,
}

/// What a descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    Stdin,
    Stdout,
    Stderr,
    File,
    Directory,
}

/// Where a file or directory descriptor's object is: a path below a preopen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The preopened directory the path starts from.
    pub preopen: PreopenIndex,
    /// The path below it, as the guest spelled it (joined with `/` across the
    /// directories it was opened through; `.` components and empty components
    /// dropped); empty for the preopen itself. Resolved again, in the same
    /// sandbox, on restore.
    pub path: String,
    /// Whether the last component was resolved following a symlink.
    pub follow: bool,
}

/// One open descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub kind: FdKind,
    /// Where a file or directory is; `None` for stdio.
    pub location: Option<Location>,
    /// Whether this descriptor is a preopen (answers `fd_prestat_get`).
    pub is_preopen: bool,
    /// The position of `fd_read`/`fd_write`/`fd_seek` (files only).
    pub offset: u64,
    /// `fdflags` bits (`APPEND`, `NONBLOCK`, `SYNC`, ...).
    pub fdflags: u16,
    /// What may be done with the descriptor.
    pub rights_base: u64,
    /// What descriptors opened through this one may be given.
    pub rights_inheriting: u64,
    /// Opened for reading (host open mode).
    pub read: bool,
    /// Opened for writing (host open mode).
    pub write: bool,
}

/// The host-side state of one WASI process, as data.
///
/// Serializable with serde. Maps are `BTreeMap`s, so the serialized form does not
/// depend on hash order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiState {
    /// Program arguments, `argv[0]` first.
    pub args: Vec<String>,
    /// Environment variables, in the order given.
    pub env: Vec<(String, String)>,
    /// Preopened directories, in `--dir` order.
    pub preopens: Vec<Preopen>,
    /// The descriptor table.
    pub fds: BTreeMap<Fd, FdEntry>,
    /// Closed descriptor numbers, reused highest first (as wasmtime does).
    pub free_fds: BTreeSet<Fd>,
    /// The guest's monotonic clock when the state was taken, so that a restored
    /// process never sees the monotonic clock go backwards.
    pub monotonic_ns: u64,
}

/// Format version of [`WasiState`], for checkpoints that embed it.
pub const STATE_VERSION: u32 = 1;

impl WasiState {
    /// Checks the invariants a restore relies on.
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn validate(&self) -> Result<(), String> {
        for (fd, entry) in &self.fds {
            if self.free_fds.contains(fd) {
                return Err(format!("fd {fd} is both open and free"));
            }
            let has_location = entry.location.is_some();
            let stdio = matches!(entry.kind, FdKind::Stdin | FdKind::Stdout | FdKind::Stderr);
            if stdio == has_location {
                return Err(format!(
                    "fd {fd}: {:?} with location {:?}",
                    entry.kind, entry.location
                ));
            }
            if let Some(location) = &entry.location {
                if location.preopen.0 as usize >= self.preopens.len() {
                    return Err(format!(
                        "fd {fd} names preopen {}, which does not exist",
                        location.preopen.0
                    ));
                }
            }
            if entry.is_preopen && entry.kind != FdKind::Directory {
                return Err(format!("fd {fd} is a preopen but not a directory"));
            }
        }
        Ok(())
    }
}
