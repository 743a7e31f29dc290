//! Rebuilding a [`WasiCtx`] from a saved [`WasiState`].
//!
//! | Descriptor                | On restore                                         |
//! |---------------------------|----------------------------------------------------|
//! | stdin, stdout, stderr     | bound to the new process's streams; what was read  |
//! |                           | from the old stdin, or buffered in a pipe, is gone |
//! | preopened directory       | reopened from its host path                        |
//! | file or directory         | reopened by its path below its preopen, with the   |
//! |                           | same mode and flags, never created or truncated;   |
//! |                           | the offset is data and simply continues            |
//! | object that is gone       | *lost*: `fd_close`/`fd_renumber` work, every other |
//! | (deleted, replaced by a   | function on it fails with `EIO` (29)               |
//! | different kind, no longer |                                                    |
//! | permitted)                |                                                    |
//!
//! A file deleted while open cannot come back: if its name is free the
//! descriptor is lost, and if another file took the name, the descriptor now
//! refers to that file (the state records paths, not inode identities).

use crate::{
    abi::{fdflags, oflags},
    clock::{SystemClock, SystemEntropy},
    ctx::{open_preopen, Handle, WasiCtx, WasiError},
    path::{open_at, OpenRequest, Opened},
    state::{Fd, FdEntry, FdKind, WasiState},
    Errno,
};
use cap_std::fs::Dir;
use std::collections::BTreeMap;

/// What a restore could not bring back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Descriptors whose object could not be reopened, with the reason; the
    /// guest sees `EIO` on them.
    pub lost: Vec<(Fd, String)>,
}

fn reopen(entry: &FdEntry, preopens: &[Option<Dir>]) -> Result<Handle, String> {
    let location = entry
        .location
        .as_ref()
        .ok_or_else(|| "no location".to_string())?;
    let Some(Some(root)) = preopens.get(location.preopen.0 as usize) else {
        return Err(format!(
            "preopen {} could not be opened",
            location.preopen.0
        ));
    };
    if location.path.is_empty() {
        if entry.kind != FdKind::Directory {
            return Err("a preopen root recorded as a file".into());
        }
        return root.try_clone().map(Handle::Dir).map_err(|e| e.to_string());
    }
    let request = OpenRequest {
        oflags: if entry.kind == FdKind::Directory {
            oflags::DIRECTORY
        } else {
            0
        },
        read: entry.read,
        write: entry.write,
        follow: location.follow,
        sync: entry.fdflags & (fdflags::SYNC | fdflags::DSYNC | fdflags::RSYNC),
    };
    let describe = |errno: Errno| format!("cannot reopen `{}`: {errno}", location.path);
    match (
        open_at(root, &location.path, request).map_err(describe)?,
        entry.kind,
    ) {
        (Opened::Dir(dir), FdKind::Directory) => Ok(Handle::Dir(dir)),
        (Opened::File { file, .. }, FdKind::File) => Ok(Handle::File(file)),
        _ => Err(format!(
            "`{}` is no longer a {:?}",
            location.path, entry.kind
        )),
    }
}

impl WasiCtx {
    /// Rebuilds a host from `state` (taken by [`WasiCtx::snapshot`], perhaps on
    /// another machine): reopens preopens and descriptors by path and continues
    /// the monotonic clock from the saved value. Offsets need no seeking: they are
    /// part of the state.
    ///
    /// # Errors
    /// [`WasiError::InvalidState`] if `state` is inconsistent. Objects that are
    /// gone are no error: they are listed in the [`RestoreReport`].
    pub fn restore(state: WasiState) -> Result<(Self, RestoreReport), WasiError> {
        state.validate().map_err(WasiError::InvalidState)?;
        let mut report = RestoreReport::default();
        let preopens: Vec<Option<Dir>> = state
            .preopens
            .iter()
            .map(|preopen| open_preopen(preopen).ok())
            .collect();
        let mut handles = BTreeMap::new();
        for (fd, entry) in &state.fds {
            let handle = match entry.kind {
                FdKind::Stdin => Handle::Stdin,
                FdKind::Stdout => Handle::Stdout,
                FdKind::Stderr => Handle::Stderr,
                FdKind::File | FdKind::Directory => match reopen(entry, &preopens) {
                    Ok(handle) => handle,
                    Err(reason) => {
                        report.lost.push((*fd, reason));
                        Handle::Lost
                    }
                },
            };
            handles.insert(*fd, handle);
        }
        let mut clock = SystemClock::default();
        crate::Clock::resume_monotonic_at(&mut clock, state.monotonic_ns);
        let ctx = Self {
            state,
            handles,
            clock: Box::new(clock),
            entropy: Box::new(SystemEntropy::default()),
            journal: crate::ctx::Journaling::default(),
        };
        Ok((ctx, report))
    }
}
