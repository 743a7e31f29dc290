//! The `fd_*` functions.
//!
//! Which descriptor kinds each function accepts, and the errno for the others,
//! follow wasmtime's preview1 host (`EBADF` for a directory given to `fd_read`,
//! `ESPIPE` for `fd_seek` on stdio, ...), so that programs behave the same.

use crate::{
    abi::{self, fdflags, filetype, fstflags, rights, size, whence},
    ctx::{require, Handle, WasiCtx},
    guest::{scatter_capacity, Guest},
    journal::Place,
    state::{Fd, FdEntry, FdKind, WasiState},
    Errno,
};
use cap_std::fs::{Dir, File, FileExt, Metadata, MetadataExt};
use std::{
    collections::BTreeMap,
    io::{self, IsTerminal, Write},
    os::unix::ffi::OsStrExt,
};

/// The most entries `fd_readdir` lists from one directory; a larger directory
/// fails with `ENOMEM` rather than making the host allocate without bound.
pub const DIR_ENTRIES_MAX: usize = 1 << 20;

/// The WASI file type of a `st_mode`.
pub(crate) fn filetype_of_mode(mode: u32) -> u8 {
    match mode & 0o170_000 {
        0o040_000 => filetype::DIRECTORY,
        0o100_000 => filetype::REGULAR_FILE,
        0o120_000 => filetype::SYMBOLIC_LINK,
        0o020_000 => filetype::CHARACTER_DEVICE,
        0o060_000 => filetype::BLOCK_DEVICE,
        0o140_000 => 6, // SOCKET_STREAM
        _ => filetype::UNKNOWN,
    }
}

fn timestamp_ns(seconds: i64, nanoseconds: i64) -> u64 {
    // Times before 1970 have no WASI timestamp; they read as the epoch.
    u64::try_from(seconds)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(nanoseconds).unwrap_or(0))
}

/// The 64-byte `filestat` of `metadata`.
pub(crate) fn filestat_bytes(metadata: &Metadata) -> [u8; size::FILESTAT as usize] {
    let mut bytes = [0; size::FILESTAT as usize];
    bytes[0..8].copy_from_slice(&metadata.dev().to_le_bytes());
    bytes[8..16].copy_from_slice(&metadata.ino().to_le_bytes());
    bytes[16] = filetype_of_mode(metadata.mode());
    bytes[24..32].copy_from_slice(&metadata.nlink().to_le_bytes());
    bytes[32..40].copy_from_slice(&metadata.size().to_le_bytes());
    let atim = timestamp_ns(metadata.atime(), metadata.atime_nsec());
    let mtim = timestamp_ns(metadata.mtime(), metadata.mtime_nsec());
    let ctim = timestamp_ns(metadata.ctime(), metadata.ctime_nsec());
    bytes[40..48].copy_from_slice(&atim.to_le_bytes());
    bytes[48..56].copy_from_slice(&mtim.to_le_bytes());
    bytes[56..64].copy_from_slice(&ctim.to_le_bytes());
    bytes
}

/// The timestamps of a `*_set_times` call: `None` leaves a time unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewTime {
    Omit,
    Now,
    At(u64),
}

/// Decodes `fst_flags`, as wasmtime: both "set" and "now" for one time is `EINVAL`.
pub(crate) fn new_times(atim: u64, mtim: u64, fst: u32) -> Result<(NewTime, NewTime), Errno> {
    let fst = u16::try_from(fst).map_err(|_| Errno::Inval)?;
    if fst & !fstflags::ALL != 0 {
        return Err(Errno::Inval);
    }
    let one = |set: u16, now: u16, value: u64| match (fst & set != 0, fst & now != 0) {
        (true, true) => Err(Errno::Inval),
        (true, false) => Ok(NewTime::At(value)),
        (false, true) => Ok(NewTime::Now),
        (false, false) => Ok(NewTime::Omit),
    };
    Ok((
        one(fstflags::ATIM, fstflags::ATIM_NOW, atim)?,
        one(fstflags::MTIM, fstflags::MTIM_NOW, mtim)?,
    ))
}

fn timespec(time: NewTime) -> rustix::fs::Timespec {
    match time {
        NewTime::Omit => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        NewTime::Now => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        NewTime::At(ns) => rustix::fs::Timespec {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_nsec: (ns % 1_000_000_000) as _,
        },
    }
}

fn futimens(fd: impl rustix::fd::AsFd, atim: NewTime, mtim: NewTime) -> Result<(), Errno> {
    let times = rustix::fs::Timestamps {
        last_access: timespec(atim),
        last_modification: timespec(mtim),
    };
    rustix::fs::futimens(fd, &times).map_err(crate::errno::from_host_errno)
}

/// Reads at `offset` into a fresh buffer of `capacity` bytes (one call: short
/// reads are allowed).
fn read_file_at(file: &File, offset: u64, capacity: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0; capacity];
    let n = loop {
        match file.read_at(&mut buf, offset) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    };
    buf.truncate(n);
    Ok(buf)
}

/// Writes `bytes` at `offset`; the count written (short only after an error).
fn write_file_at(file: &File, bytes: &[u8], offset: u64) -> Result<usize, Errno> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write_at(&bytes[written..], offset.saturating_add(written as u64)) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if written > 0 => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(written)
}

fn write_stdio(kind: FdKind, bytes: &[u8]) -> Result<usize, Errno> {
    let result = if kind == FdKind::Stdout {
        let mut out = io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush())
    } else {
        let mut out = io::stderr().lock();
        out.write_all(bytes).and_then(|()| out.flush())
    };
    result.map(|()| bytes.len()).map_err(Errno::from)
}

fn read_stdin(capacity: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0; capacity];
    let n = loop {
        // Unbuffered: what `poll_oneoff` sees ready on the descriptor is what
        // the next read returns.
        match rustix::io::read(io::stdin(), &mut buf) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(crate::errno::from_host_errno(e)),
        }
    };
    buf.truncate(n);
    Ok(buf)
}

/// The file type of a standard stream, as wasmtime reports it.
fn stdio_filetype(kind: FdKind) -> u8 {
    let terminal = match kind {
        FdKind::Stdin => io::stdin().is_terminal(),
        FdKind::Stdout => io::stdout().is_terminal(),
        _ => io::stderr().is_terminal(),
    };
    if terminal {
        filetype::CHARACTER_DEVICE
    } else {
        filetype::UNKNOWN
    }
}

/// What an fd is, for the functions that treat kinds differently.
enum Target<'a> {
    Stdio(FdKind),
    File(&'a File),
    Dir(&'a Dir),
}

/// The entry and handle of `fd` in `state` and `handles` (borrowing only
/// those, so that the journal can be written meanwhile).
fn target_in<'a>(
    state: &'a WasiState,
    handles: &'a BTreeMap<Fd, Handle>,
    fd: Fd,
) -> Result<(&'a FdEntry, Target<'a>), Errno> {
    let entry = state.fds.get(&fd).ok_or(Errno::Badf)?;
    let target = match handles.get(&fd) {
        Some(Handle::File(file)) => Target::File(file),
        Some(Handle::Dir(dir)) => Target::Dir(dir),
        Some(Handle::Lost) => return Err(Errno::Io),
        Some(Handle::Stdin | Handle::Stdout | Handle::Stderr) => Target::Stdio(entry.kind),
        None => return Err(Errno::Badf),
    };
    Ok((entry, target))
}

/// A regular-file descriptor (`EBADF` for anything else) holding `needed`, in
/// `state` and `handles`.
fn file_in<'a>(
    state: &'a WasiState,
    handles: &'a BTreeMap<Fd, Handle>,
    fd: Fd,
    needed: u64,
) -> Result<(&'a FdEntry, &'a File), Errno> {
    match target_in(state, handles, fd)? {
        (entry, Target::File(file)) => {
            require(entry, needed)?;
            Ok((entry, file))
        }
        _ => Err(Errno::Badf),
    }
}

/// Where the object of a file or directory descriptor is, for the journal.
pub(crate) fn place_of(entry: &FdEntry) -> Result<Place, Errno> {
    let location = entry.location.as_ref().ok_or(Errno::Badf)?;
    Ok(Place {
        preopen: location.preopen.0,
        path: location.path.clone(),
    })
}

impl WasiCtx {
    /// The entry and handle of `fd`; `EIO` if it was lost on restore.
    fn target(&self, fd: Fd) -> Result<(&FdEntry, Target<'_>), Errno> {
        target_in(&self.state, &self.handles, fd)
    }

    /// A regular-file descriptor (`EBADF` for anything else) holding `needed`.
    fn file(&self, fd: Fd, needed: u64) -> Result<(&FdEntry, &File), Errno> {
        file_in(&self.state, &self.handles, fd, needed)
    }

    fn set_offset(&mut self, fd: Fd, offset: u64) {
        if let Some(entry) = self.state.fds.get_mut(&fd) {
            entry.offset = offset;
        }
    }

    pub(crate) fn fd_advise(
        &mut self,
        fd: Fd,
        offset: u64,
        len: u64,
        advice: u32,
    ) -> Result<(), Errno> {
        if advice > u32::from(abi::ADVICE_MAX) {
            return Err(Errno::Inval);
        }
        self.file(fd, rights::FD_ADVISE)?;
        // Advice is a hint; it has no observable effect, so none is given to the
        // host (which keeps this portable).
        let _ = (offset, len);
        Ok(())
    }

    pub(crate) fn fd_allocate(&mut self, fd: Fd, offset: u64, len: u64) -> Result<(), Errno> {
        let (entry, file) = file_in(&self.state, &self.handles, fd, rights::FD_ALLOCATE)?;
        if !entry.write {
            return Err(Errno::Badf);
        }
        if len == 0 {
            return Err(Errno::Inval);
        }
        let end = offset.checked_add(len).ok_or(Errno::Fbig)?;
        if end > i64::MAX as u64 {
            return Err(Errno::Fbig);
        }
        // `posix_fallocate`'s visible effect: the file is at least `end` long.
        if end > file.metadata()?.len() {
            let place = place_of(entry)?;
            self.journal
                .before(|journal| journal.before_set_len(file, &place, end))?;
            file.set_len(end)?;
        }
        Ok(())
    }

    pub(crate) fn fd_close(&mut self, fd: Fd) -> Result<(), Errno> {
        self.state.fds.remove(&fd).ok_or(Errno::Badf)?;
        if let Some(Handle::File(file)) = self.handles.remove(&fd) {
            self.journal.forget(&file);
        }
        self.state.free_fds.insert(fd);
        Ok(())
    }

    pub(crate) fn fd_sync(&mut self, fd: Fd, data_only: bool) -> Result<(), Errno> {
        let right = if data_only {
            rights::FD_DATASYNC
        } else {
            rights::FD_SYNC
        };
        let (_, file) = file_in(&self.state, &self.handles, fd, right)?;
        self.journal
            .before(|journal| journal.before_guest_sync(file))?;
        if data_only {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    pub(crate) fn fd_fdstat_get(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
    ) -> Result<(), Errno> {
        g.check(ptr, u64::from(size::FDSTAT))?;
        let (entry, target) = self.target(fd)?;
        let filetype = match target {
            Target::Stdio(kind) => stdio_filetype(kind),
            Target::File(file) => filetype_of_mode(file.metadata()?.mode()),
            Target::Dir(_) => filetype::DIRECTORY,
        };
        let mut bytes = [0u8; size::FDSTAT as usize];
        bytes[0] = filetype;
        bytes[2..4].copy_from_slice(&entry.fdflags.to_le_bytes());
        bytes[8..16].copy_from_slice(&entry.rights_base.to_le_bytes());
        bytes[16..24].copy_from_slice(&entry.rights_inheriting.to_le_bytes());
        g.write_bytes(ptr, &bytes)
    }

    pub(crate) fn fd_fdstat_set_flags(&mut self, fd: Fd, flags: u32) -> Result<(), Errno> {
        let flags = u16::try_from(flags).map_err(|_| Errno::Inval)?;
        if flags & !fdflags::ALL != 0 {
            return Err(Errno::Inval);
        }
        self.file(fd, rights::FD_FDSTAT_SET_FLAGS)?;
        // As wasmtime: only APPEND and NONBLOCK can change after opening.
        if flags & (fdflags::DSYNC | fdflags::SYNC | fdflags::RSYNC) != 0 {
            return Err(Errno::Inval);
        }
        let entry = self.state.fds.get_mut(&fd).ok_or(Errno::Badf)?;
        let kept = entry.fdflags & (fdflags::DSYNC | fdflags::SYNC | fdflags::RSYNC);
        entry.fdflags = kept | flags;
        Ok(())
    }

    pub(crate) fn fd_fdstat_set_rights(
        &mut self,
        fd: Fd,
        base: u64,
        inheriting: u64,
    ) -> Result<(), Errno> {
        self.target(fd)?;
        let entry = self.state.fds.get_mut(&fd).ok_or(Errno::Badf)?;
        // Rights can only be dropped, never regained.
        if base & !entry.rights_base != 0 || inheriting & !entry.rights_inheriting != 0 {
            return Err(Errno::Notcapable);
        }
        entry.rights_base = base;
        entry.rights_inheriting = inheriting;
        Ok(())
    }

    pub(crate) fn fd_filestat_get(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
    ) -> Result<(), Errno> {
        g.check(ptr, u64::from(size::FILESTAT))?;
        let (entry, target) = self.target(fd)?;
        let bytes = match target {
            Target::Stdio(kind) => {
                // As wasmtime: stdio has no metadata beyond its type.
                let mut bytes = [0; size::FILESTAT as usize];
                bytes[16] = stdio_filetype(kind);
                bytes
            }
            Target::File(file) => {
                require(entry, rights::FD_FILESTAT_GET)?;
                filestat_bytes(&file.metadata()?)
            }
            Target::Dir(dir) => {
                require(entry, rights::FD_FILESTAT_GET)?;
                filestat_bytes(&dir.dir_metadata()?)
            }
        };
        g.write_bytes(ptr, &bytes)
    }

    pub(crate) fn fd_filestat_set_size(&mut self, fd: Fd, size: u64) -> Result<(), Errno> {
        let (entry, file) = file_in(&self.state, &self.handles, fd, rights::FD_FILESTAT_SET_SIZE)?;
        if size > i64::MAX as u64 {
            return Err(Errno::Inval);
        }
        let place = place_of(entry)?;
        self.journal
            .before(|journal| journal.before_set_len(file, &place, size))?;
        file.set_len(size)?;
        Ok(())
    }

    pub(crate) fn fd_filestat_set_times(
        &mut self,
        fd: Fd,
        atim: u64,
        mtim: u64,
        fst: u32,
    ) -> Result<(), Errno> {
        let (atim, mtim) = new_times(atim, mtim, fst)?;
        match self.target(fd)? {
            (entry, Target::File(file)) => {
                require(entry, rights::FD_FILESTAT_SET_TIMES)?;
                futimens(file, atim, mtim)
            }
            (entry, Target::Dir(dir)) => {
                require(entry, rights::FD_FILESTAT_SET_TIMES)?;
                futimens(dir, atim, mtim)
            }
            (_, Target::Stdio(_)) => Err(Errno::Badf),
        }
    }

    pub(crate) fn fd_read(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        iovs: u32,
        count: u32,
        nread: u32,
    ) -> Result<(), Errno> {
        let iovecs = g.iovecs(iovs, count)?;
        g.check(nread, 4)?;
        let bytes = match self.target(fd)? {
            (_, Target::Stdio(FdKind::Stdin)) => read_stdin(scatter_capacity(&iovecs))?,
            (entry, Target::File(file)) => {
                if !entry.read || entry.rights_base & rights::FD_READ == 0 {
                    return Err(Errno::Badf);
                }
                let offset = entry.offset;
                let bytes = read_file_at(file, offset, scatter_capacity(&iovecs))?;
                self.set_offset(fd, offset.saturating_add(bytes.len() as u64));
                bytes
            }
            _ => return Err(Errno::Badf),
        };
        g.scatter(&iovecs, &bytes)?;
        g.write_u32(nread, bytes.len() as u32)
    }

    pub(crate) fn fd_pread(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        iovs: u32,
        count: u32,
        offset: u64,
        nread: u32,
    ) -> Result<(), Errno> {
        let iovecs = g.iovecs(iovs, count)?;
        g.check(nread, 4)?;
        let bytes = match self.target(fd)? {
            (_, Target::Stdio(FdKind::Stdin)) => return Err(Errno::Spipe),
            (entry, Target::File(file)) => {
                if !entry.read || entry.rights_base & rights::FD_READ == 0 {
                    return Err(Errno::Badf);
                }
                require(entry, rights::FD_SEEK)?;
                read_file_at(file, offset, scatter_capacity(&iovecs))?
            }
            _ => return Err(Errno::Badf),
        };
        g.scatter(&iovecs, &bytes)?;
        g.write_u32(nread, bytes.len() as u32)
    }

    pub(crate) fn fd_write(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        iovs: u32,
        count: u32,
        nwritten: u32,
    ) -> Result<(), Errno> {
        let iovecs = g.iovecs(iovs, count)?;
        g.check(nwritten, 4)?;
        let bytes = g.gather(&iovecs)?;
        let n = match target_in(&self.state, &self.handles, fd)? {
            (_, Target::Stdio(kind @ (FdKind::Stdout | FdKind::Stderr))) => {
                write_stdio(kind, &bytes)?
            }
            (entry, Target::File(file)) => {
                check_writable(entry)?;
                let append = entry.fdflags & fdflags::APPEND != 0;
                let at = if append {
                    file.metadata()?.len()
                } else {
                    entry.offset
                };
                if self.journal.active() && !bytes.is_empty() {
                    let place = place_of(entry)?;
                    let len = bytes.len() as u64;
                    self.journal
                        .before(|journal| journal.before_write(file, &place, at, len))?;
                }
                let (n, offset) = if append {
                    // As wasmtime: an append leaves the position at the new end.
                    let n = write_file_at(file, &bytes, at)?;
                    (n, file.metadata()?.len())
                } else {
                    let n = write_file_at(file, &bytes, at)?;
                    (n, at.saturating_add(n as u64))
                };
                self.set_offset(fd, offset);
                n
            }
            _ => return Err(Errno::Badf),
        };
        g.write_u32(nwritten, n as u32)
    }

    pub(crate) fn fd_pwrite(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        iovs: u32,
        count: u32,
        offset: u64,
        nwritten: u32,
    ) -> Result<(), Errno> {
        let iovecs = g.iovecs(iovs, count)?;
        g.check(nwritten, 4)?;
        let bytes = g.gather(&iovecs)?;
        let n = match target_in(&self.state, &self.handles, fd)? {
            (_, Target::Stdio(FdKind::Stdout | FdKind::Stderr)) => return Err(Errno::Spipe),
            (entry, Target::File(file)) => {
                check_writable(entry)?;
                require(entry, rights::FD_SEEK)?;
                // Linux semantics (and wasmtime's): `pwrite` to an append-mode
                // descriptor appends.
                let at = if entry.fdflags & fdflags::APPEND != 0 {
                    file.metadata()?.len()
                } else {
                    offset
                };
                if self.journal.active() && !bytes.is_empty() {
                    let place = place_of(entry)?;
                    let len = bytes.len() as u64;
                    self.journal
                        .before(|journal| journal.before_write(file, &place, at, len))?;
                }
                write_file_at(file, &bytes, at)?
            }
            _ => return Err(Errno::Badf),
        };
        g.write_u32(nwritten, n as u32)
    }

    pub(crate) fn fd_prestat_get(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
    ) -> Result<(), Errno> {
        let name_len = self.preopen_name(fd, Errno::Badf)?.len() as u32;
        g.check(ptr, u64::from(size::PRESTAT))?;
        let mut bytes = [0u8; size::PRESTAT as usize];
        bytes[0] = abi::PREOPENTYPE_DIR;
        bytes[4..8].copy_from_slice(&name_len.to_le_bytes());
        g.write_bytes(ptr, &bytes)
    }

    pub(crate) fn fd_prestat_dir_name(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        // As wasmtime: a descriptor that exists but is no preopen is `ENOTDIR`.
        let name = self.preopen_name(fd, Errno::Notdir)?.as_bytes().to_vec();
        if name.len() > len as usize {
            return Err(Errno::Nametoolong);
        }
        g.check(ptr, name.len() as u64)?;
        g.write_bytes(ptr, &name)
    }

    fn preopen_name(&self, fd: Fd, not_preopen: Errno) -> Result<&str, Errno> {
        let entry = self.entry(fd)?;
        match &entry.location {
            Some(location) if entry.is_preopen => self
                .state
                .preopens
                .get(location.preopen.0 as usize)
                .map(|preopen| preopen.guest_path.as_str())
                .ok_or(Errno::Badf),
            _ => Err(not_preopen),
        }
    }

    pub(crate) fn fd_renumber(&mut self, from: Fd, to: Fd) -> Result<(), Errno> {
        if !self.state.fds.contains_key(&to) || !self.state.fds.contains_key(&from) {
            return Err(Errno::Badf);
        }
        if from == to {
            return Ok(());
        }
        let entry = self.state.fds.remove(&from).ok_or(Errno::Badf)?;
        let handle = self.handles.remove(&from).ok_or(Errno::Badf)?;
        self.state.fds.insert(to, entry);
        // Dropping the old handle of `to` closes it.
        if let Some(Handle::File(file)) = self.handles.insert(to, handle) {
            self.journal.forget(&file);
        }
        self.state.free_fds.insert(from);
        self.state.free_fds.remove(&to);
        Ok(())
    }

    pub(crate) fn fd_seek(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        delta: i64,
        whence_raw: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        let whence_value = u8::try_from(whence_raw).map_err(|_| Errno::Inval)?;
        if whence_value > whence::END {
            return Err(Errno::Inval);
        }
        g.check(ptr, 8)?;
        let offset = match self.target(fd)? {
            (_, Target::Stdio(_)) => return Err(Errno::Spipe),
            (_, Target::Dir(_)) => return Err(Errno::Badf),
            (entry, Target::File(file)) => {
                let needed = if whence_value == whence::CUR && delta == 0 {
                    rights::FD_TELL
                } else {
                    rights::FD_SEEK
                };
                require(entry, needed)?;
                match whence_value {
                    whence::SET => u64::try_from(delta).map_err(|_| Errno::Inval)?,
                    whence::CUR => entry.offset.checked_add_signed(delta).ok_or(Errno::Inval)?,
                    _ => file
                        .metadata()?
                        .len()
                        .checked_add_signed(delta)
                        .ok_or(Errno::Inval)?,
                }
            }
        };
        self.set_offset(fd, offset);
        g.write_u64(ptr, offset)
    }

    pub(crate) fn fd_tell(&mut self, g: &mut Guest<'_>, fd: Fd, ptr: u32) -> Result<(), Errno> {
        let offset = match self.target(fd)? {
            (_, Target::Stdio(_)) => return Err(Errno::Spipe),
            (_, Target::Dir(_)) => return Err(Errno::Badf),
            (entry, Target::File(_)) => {
                require(entry, rights::FD_TELL)?;
                entry.offset
            }
        };
        g.write_u64(ptr, offset)
    }

    pub(crate) fn fd_readdir(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        buf: u32,
        buf_len: u32,
        cookie: u64,
        bufused: u32,
    ) -> Result<(), Errno> {
        g.check(bufused, 4)?;
        let (entry, target) = self.target(fd)?;
        let Target::Dir(dir) = target else {
            return Err(Errno::Badf);
        };
        require(entry, rights::FD_READDIR)?;
        let listing = list_directory(dir)?;
        let mut out = Vec::new();
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        for (index, (name, d_type, d_ino)) in listing.iter().enumerate().skip(start) {
            if out.len() >= buf_len as usize {
                break;
            }
            let mut header = [0u8; size::DIRENT as usize];
            header[0..8].copy_from_slice(&(index as u64 + 1).to_le_bytes());
            header[8..16].copy_from_slice(&d_ino.to_le_bytes());
            header[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            header[20] = *d_type;
            out.extend_from_slice(&header);
            out.extend_from_slice(name);
        }
        // A truncated last entry tells the caller to retry with a larger buffer.
        out.truncate(buf_len as usize);
        g.check(buf, out.len() as u64)?;
        g.write_bytes(buf, &out)?;
        g.write_u32(bufused, out.len() as u32)
    }
}

fn check_writable(entry: &FdEntry) -> Result<(), Errno> {
    if entry.write && entry.rights_base & rights::FD_WRITE != 0 {
        Ok(())
    } else {
        Err(Errno::Badf)
    }
}

/// `.`, `..` and the entries of `dir` sorted by name: (name, type, inode).
///
/// Sorting makes cookies (positions in this list) independent of the host's
/// directory order, so they stay meaningful across a checkpoint and restore.
fn list_directory(dir: &Dir) -> Result<Vec<(Vec<u8>, u8, u64)>, Errno> {
    let own_ino = dir.dir_metadata()?.ino();
    let mut entries = Vec::new();
    for entry in dir.entries()? {
        if entries.len() >= DIR_ENTRIES_MAX {
            return Err(Errno::Nomem);
        }
        let entry = entry?;
        let d_type = match entry.file_type() {
            Ok(ty) if ty.is_dir() => filetype::DIRECTORY,
            Ok(ty) if ty.is_symlink() => filetype::SYMBOLIC_LINK,
            Ok(ty) if ty.is_file() => filetype::REGULAR_FILE,
            Ok(ty) => {
                use cap_fs_ext::FileTypeExt;
                if ty.is_char_device() {
                    filetype::CHARACTER_DEVICE
                } else if ty.is_block_device() {
                    filetype::BLOCK_DEVICE
                } else {
                    filetype::UNKNOWN
                }
            }
            Err(_) => filetype::UNKNOWN,
        };
        let ino = rustix::fs::DirEntryExt::ino(&entry);
        entries.push((entry.file_name().as_bytes().to_vec(), d_type, ino));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut listing = Vec::with_capacity(entries.len() + 2);
    listing.push((b".".to_vec(), filetype::DIRECTORY, own_ino));
    listing.push((b"..".to_vec(), filetype::DIRECTORY, own_ino));
    listing.extend(entries);
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_times_flags() {
        assert_eq!(new_times(1, 2, 0), Ok((NewTime::Omit, NewTime::Omit)));
        assert_eq!(
            new_times(1, 2, u32::from(fstflags::ATIM | fstflags::MTIM_NOW)),
            Ok((NewTime::At(1), NewTime::Now))
        );
        assert_eq!(
            new_times(1, 2, u32::from(fstflags::ATIM | fstflags::ATIM_NOW)),
            Err(Errno::Inval)
        );
        assert_eq!(new_times(1, 2, 16), Err(Errno::Inval));
        assert_eq!(new_times(1, 2, 1 << 20), Err(Errno::Inval));
    }

    #[test]
    fn modes_map_to_filetypes() {
        assert_eq!(filetype_of_mode(0o100_644), filetype::REGULAR_FILE);
        assert_eq!(filetype_of_mode(0o040_755), filetype::DIRECTORY);
        assert_eq!(filetype_of_mode(0o120_777), filetype::SYMBOLIC_LINK);
        assert_eq!(filetype_of_mode(0o010_644), filetype::UNKNOWN);
        assert_eq!(timestamp_ns(-5, 3), 3);
        assert_eq!(timestamp_ns(2, 5), 2_000_000_005);
    }
}
