//! The `path_*` functions and the sandboxed open shared with restore.
//!
//! Every path is resolved by cap-std relative to a directory handle: `..` that
//! would leave it, absolute paths, and symlinks (whoever created them) whose
//! target lies outside are refused with `EPERM`, as in wasmtime, which uses the
//! same resolver. The host never resolves a guest path itself.

use crate::{
    abi::{fdflags, lookupflags, oflags, rights},
    ctx::{require, Handle, WasiCtx},
    fd::{filestat_bytes, new_times, NewTime},
    guest::{Guest, PATH_BYTES_MAX},
    journal::Place,
    state::{Fd, FdEntry, FdKind, Location},
    Errno,
};
use cap_fs_ext::{
    DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt, SystemTimeSpec,
};
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};
use std::{os::unix::ffi::OsStrExt, time::Duration};

/// How to open something below a directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenRequest {
    /// `oflags` bits (`CREAT`, `DIRECTORY`, `EXCL`, `TRUNC`).
    pub oflags: u16,
    /// Whether the descriptor has the `FD_READ` right.
    pub read: bool,
    /// Whether the descriptor has the `FD_WRITE` right.
    pub write: bool,
    pub follow: bool,
    /// `DSYNC`, `RSYNC` and `SYNC` bits of `fdflags`.
    pub sync: u16,
}

/// What an open produced, with the host open mode of a file.
pub(crate) enum Opened {
    File { file: File, read: bool, write: bool },
    Dir(Dir),
}

/// Opens `path` below `dir` inside the sandbox, as wasmtime does: for writing if
/// the write right, `CREAT` or `TRUNC` ask for it, for reading if the read right
/// asks or nothing else does.
pub(crate) fn open_at(dir: &Dir, path: &str, request: OpenRequest) -> Result<Opened, Errno> {
    let mut options = OpenOptions::new();
    options.maybe_dir(true);
    let create = request.oflags & oflags::CREAT != 0;
    let truncate = request.oflags & oflags::TRUNC != 0;
    let write = request.write || create || truncate;
    let read = request.read || !request.write;
    if create {
        if request.oflags & oflags::EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
    }
    options.truncate(truncate);
    options.read(read).write(write);
    options.follow(if request.follow {
        FollowSymlinks::Yes
    } else {
        FollowSymlinks::No
    });
    let mut custom = rustix::fs::OFlags::empty();
    if request.sync & fdflags::SYNC != 0 {
        custom |= rustix::fs::OFlags::SYNC;
    }
    if request.sync & fdflags::DSYNC != 0 {
        custom |= rustix::fs::OFlags::DSYNC;
    }
    if request.sync & fdflags::RSYNC != 0 {
        custom |= rustix::fs::OFlags::RSYNC;
    }
    options.custom_flags(custom.bits() as i32);
    let file = dir.open_with(path, &options)?;
    if file.metadata()?.is_dir() {
        Ok(Opened::Dir(Dir::from_std_file(file.into_std())))
    } else if request.oflags & oflags::DIRECTORY != 0 {
        Err(Errno::Notdir)
    } else {
        Ok(Opened::File { file, read, write })
    }
}

/// `parent` joined with `child`, without `.` and empty components: the path of a
/// newly opened descriptor below its preopen.
pub(crate) fn join(parent: &str, child: &str) -> Result<String, Errno> {
    let mut joined = String::with_capacity(parent.len() + child.len() + 1);
    for component in parent.split('/').chain(child.split('/')) {
        if component.is_empty() || component == "." {
            continue;
        }
        if !joined.is_empty() {
            joined.push('/');
        }
        joined.push_str(component);
    }
    // `..` components are kept (only the sandbox may resolve them), so repeated
    // relative opens could grow a path without bound.
    if joined.len() > 4 * PATH_BYTES_MAX as usize {
        return Err(Errno::Nametoolong);
    }
    Ok(joined)
}

fn system_time(time: NewTime) -> Option<SystemTimeSpec> {
    match time {
        NewTime::Omit => None,
        NewTime::Now => Some(SystemTimeSpec::SymbolicNow),
        NewTime::At(ns) => Some(SystemTimeSpec::Absolute(
            cap_std::time::SystemTime::from_std(std::time::UNIX_EPOCH + Duration::from_nanos(ns)),
        )),
    }
}

/// The rights of a newly opened file: what the directory passes on, less reading
/// or writing when the file is not open for it.
fn file_rights(inheritable: u64, read: bool, write: bool) -> u64 {
    let mut granted = inheritable;
    if !read {
        granted &= !(rights::FD_READ | rights::FD_READDIR);
    }
    if !write {
        granted &= !rights::FD_WRITE;
    }
    granted
}

fn lookup_follow(flags: u32) -> Result<bool, Errno> {
    if flags & !lookupflags::ALL != 0 {
        return Err(Errno::Inval);
    }
    Ok(flags & lookupflags::SYMLINK_FOLLOW != 0)
}

impl WasiCtx {
    /// The directory a path is resolved against: `fd` with the rights `needed`.
    /// A file descriptor gives `file_errno` (wasmtime answers `ENOTDIR` in
    /// `path_open` and `EBADF` elsewhere).
    fn path_dir(&self, fd: Fd, needed: u64, file_errno: Errno) -> Result<(&FdEntry, &Dir), Errno> {
        let entry = self.entry(fd)?;
        match self.handles.get(&fd) {
            Some(Handle::Dir(dir)) => {
                require(entry, needed)?;
                Ok((entry, dir))
            }
            Some(Handle::File(_)) => Err(file_errno),
            Some(Handle::Lost) => Err(Errno::Io),
            _ => Err(Errno::Badf),
        }
    }

    /// The place of `path` below directory descriptor `fd`, for the journal.
    fn place_below(&self, fd: Fd, path: &str) -> Result<Place, Errno> {
        let location = self.entry(fd)?.location.as_ref().ok_or(Errno::Badf)?;
        Ok(Place {
            preopen: location.preopen.0,
            path: join(&location.path, path)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn path_open(
        &mut self,
        g: &mut Guest<'_>,
        dirfd: Fd,
        dirflags: u32,
        (path_ptr, path_len): (u32, u32),
        oflags_raw: u32,
        (base, inheriting): (u64, u64),
        fdflags_raw: u32,
        fd_ptr: u32,
    ) -> Result<(), Errno> {
        let open_flags = u16::try_from(oflags_raw)
            .ok()
            .filter(|o| o & !oflags::ALL == 0)
            .ok_or(Errno::Inval)?;
        let fd_flags = u16::try_from(fdflags_raw)
            .ok()
            .filter(|f| f & !fdflags::ALL == 0)
            .ok_or(Errno::Inval)?;
        let follow = lookup_follow(dirflags)?;
        if open_flags & oflags::CREAT != 0 && open_flags & oflags::DIRECTORY != 0 {
            // Creating a directory is `path_create_directory`'s job (wasmtime agrees).
            return Err(Errno::Inval);
        }
        if base & !rights::ALL != 0 || inheriting & !rights::ALL != 0 {
            return Err(Errno::Inval);
        }
        let path = g.read_path(path_ptr, path_len)?;
        g.check(fd_ptr, 4)?;
        let mut needed = rights::PATH_OPEN;
        if open_flags & oflags::CREAT != 0 {
            needed |= rights::PATH_CREATE_FILE;
        }
        // `TRUNC` would need `PATH_FILESTAT_SET_SIZE`, which preopens (as in
        // wasmtime) do not have and wasi-libc does not expect: not required.
        let (parent, dir) = self.path_dir(dirfd, needed, Errno::Notdir)?;
        // What is asked for decides the open mode; what is granted is what the
        // directory passes on (rights never grow through an open), shaped as
        // wasmtime reports them. They only bite after `fd_fdstat_set_rights` took
        // some away, as wasi-libc asks for fewer rights than it later uses.
        let inheritable = parent.rights_inheriting;
        let request = OpenRequest {
            oflags: open_flags,
            read: base & inheritable & rights::FD_READ != 0,
            write: base & inheritable & rights::FD_WRITE != 0,
            follow,
            sync: fd_flags & (fdflags::SYNC | fdflags::DSYNC | fdflags::RSYNC),
        };
        let parent_location = parent.location.clone().ok_or(Errno::Badf)?;
        let location = Location {
            preopen: parent_location.preopen,
            path: join(&parent_location.path, &path)?,
            follow,
        };
        let mut request = request;
        let (opened, place) = if self.journal.active() {
            // Journaled: a creation is recorded first, and a truncation is
            // made after the open, once the old contents are saved.
            let place = Place {
                preopen: location.preopen.0,
                path: location.path.clone(),
            };
            let creating = open_flags & oflags::CREAT != 0
                && self
                    .journal
                    .before(|journal| journal.before_create(&place, false))?
                    == Some(true);
            let truncate = request.oflags & oflags::TRUNC != 0;
            request.oflags &= !oflags::TRUNC;
            request.write |= truncate;
            let (_, dir) = self.path_dir(dirfd, needed, Errno::Notdir)?;
            let opened = open_at(dir, &path, request)?;
            (opened, Some((place, creating, truncate)))
        } else {
            (open_at(dir, &path, request)?, None)
        };
        if let (Some((place, creating, truncate)), Opened::File { file, .. }) = (&place, &opened) {
            if *creating {
                self.journal.before(|journal| journal.created(file))?;
            }
            if *truncate {
                self.journal
                    .before(|journal| journal.before_set_len(file, place, 0))?;
                file.set_len(0)?;
            }
        } else if let (Some((_, _, true)), Opened::Dir(_)) = (&place, &opened) {
            return Err(Errno::Isdir);
        }
        let (entry, handle) = match opened {
            Opened::Dir(dir) => (
                FdEntry {
                    kind: FdKind::Directory,
                    location: Some(location),
                    is_preopen: false,
                    offset: 0,
                    fdflags: fd_flags,
                    rights_base: inheritable & !rights::NOT_FOR_DIRECTORIES,
                    rights_inheriting: inheritable,
                    read: true,
                    write: false,
                },
                Handle::Dir(dir),
            ),
            Opened::File { file, read, write } => (
                FdEntry {
                    kind: FdKind::File,
                    location: Some(location),
                    is_preopen: false,
                    offset: 0,
                    fdflags: fd_flags,
                    rights_base: file_rights(inheritable, read, write),
                    rights_inheriting: file_rights(inheritable, read, write),
                    read,
                    write,
                },
                Handle::File(file),
            ),
        };
        let fd = self.insert(entry, handle)?;
        g.write_u32(fd_ptr, fd.0)
    }

    pub(crate) fn path_create_directory(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        let path = g.read_path(ptr, len)?;
        self.path_dir(fd, rights::PATH_CREATE_DIRECTORY, Errno::Badf)?;
        if self.journal.active() {
            let place = self.place_below(fd, &path)?;
            self.journal
                .before(|journal| journal.before_create(&place, true))?;
        }
        let (_, dir) = self.path_dir(fd, rights::PATH_CREATE_DIRECTORY, Errno::Badf)?;
        Ok(dir.create_dir(&path)?)
    }

    pub(crate) fn path_remove_directory(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        let path = g.read_path(ptr, len)?;
        self.path_dir(fd, rights::PATH_REMOVE_DIRECTORY, Errno::Badf)?;
        if self.journal.active() {
            let place = self.place_below(fd, &path)?;
            self.journal
                .before(|journal| journal.before_remove_dir(&place))?;
        }
        let (_, dir) = self.path_dir(fd, rights::PATH_REMOVE_DIRECTORY, Errno::Badf)?;
        Ok(dir.remove_dir(&path)?)
    }

    pub(crate) fn path_unlink_file(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        ptr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        let path = g.read_path(ptr, len)?;
        self.path_dir(fd, rights::PATH_UNLINK_FILE, Errno::Badf)?;
        if self.journal.active() {
            let place = self.place_below(fd, &path)?;
            self.journal
                .before(|journal| journal.before_remove_file(&place))?;
        }
        let (_, dir) = self.path_dir(fd, rights::PATH_UNLINK_FILE, Errno::Badf)?;
        Ok(dir.remove_file_or_symlink(&path)?)
    }

    pub(crate) fn path_filestat_get(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        flags: u32,
        ptr: u32,
        len: u32,
        buf: u32,
    ) -> Result<(), Errno> {
        let follow = lookup_follow(flags)?;
        let path = g.read_path(ptr, len)?;
        g.check(buf, 64)?;
        let (_, dir) = self.path_dir(fd, rights::PATH_FILESTAT_GET, Errno::Badf)?;
        let metadata = if follow {
            dir.metadata(&path)?
        } else {
            dir.symlink_metadata(&path)?
        };
        g.write_bytes(buf, &filestat_bytes(&metadata))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn path_filestat_set_times(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        flags: u32,
        (ptr, len): (u32, u32),
        atim: u64,
        mtim: u64,
        fst: u32,
    ) -> Result<(), Errno> {
        let (atim, mtim) = new_times(atim, mtim, fst)?;
        let follow = lookup_follow(flags)?;
        let path = g.read_path(ptr, len)?;
        let (_, dir) = self.path_dir(fd, rights::PATH_FILESTAT_SET_TIMES, Errno::Badf)?;
        if follow {
            dir.set_times(&path, system_time(atim), system_time(mtim))?;
        } else {
            dir.set_symlink_times(&path, system_time(atim), system_time(mtim))?;
        }
        Ok(())
    }

    pub(crate) fn path_link(
        &mut self,
        g: &mut Guest<'_>,
        old_fd: Fd,
        old_flags: u32,
        (old_ptr, old_len): (u32, u32),
        new_fd: Fd,
        (new_ptr, new_len): (u32, u32),
    ) -> Result<(), Errno> {
        let follow = lookup_follow(old_flags)?;
        let old_path = g.read_path(old_ptr, old_len)?;
        let new_path = g.read_path(new_ptr, new_len)?;
        self.path_dir(old_fd, rights::PATH_LINK_SOURCE, Errno::Badf)?;
        self.path_dir(new_fd, rights::PATH_LINK_TARGET, Errno::Badf)?;
        if follow {
            // cap-std links the name itself; following the source is not offered
            // (wasmtime refuses it the same way).
            return Err(Errno::Inval);
        }
        if self.journal.active() {
            let place = self.place_below(new_fd, &new_path)?;
            self.journal
                .before(|journal| journal.before_create(&place, false))?;
        }
        let (_, old_dir) = self.path_dir(old_fd, rights::PATH_LINK_SOURCE, Errno::Badf)?;
        let (_, new_dir) = self.path_dir(new_fd, rights::PATH_LINK_TARGET, Errno::Badf)?;
        Ok(old_dir.hard_link(&old_path, new_dir, &new_path)?)
    }

    pub(crate) fn path_readlink(
        &mut self,
        g: &mut Guest<'_>,
        fd: Fd,
        (ptr, len): (u32, u32),
        buf: u32,
        buf_len: u32,
        bufused: u32,
    ) -> Result<(), Errno> {
        let path = g.read_path(ptr, len)?;
        g.check(bufused, 4)?;
        let (_, dir) = self.path_dir(fd, rights::PATH_READLINK, Errno::Badf)?;
        let target = dir.read_link(&path)?;
        let bytes = target.as_os_str().as_bytes();
        let bytes = &bytes[..bytes.len().min(buf_len as usize)];
        g.check(buf, bytes.len() as u64)?;
        g.write_bytes(buf, bytes)?;
        g.write_u32(bufused, bytes.len() as u32)
    }

    pub(crate) fn path_rename(
        &mut self,
        g: &mut Guest<'_>,
        old_fd: Fd,
        (old_ptr, old_len): (u32, u32),
        new_fd: Fd,
        (new_ptr, new_len): (u32, u32),
    ) -> Result<(), Errno> {
        let old_path = g.read_path(old_ptr, old_len)?;
        let new_path = g.read_path(new_ptr, new_len)?;
        self.path_dir(old_fd, rights::PATH_RENAME_SOURCE, Errno::Badf)?;
        self.path_dir(new_fd, rights::PATH_RENAME_TARGET, Errno::Badf)?;
        if self.journal.active() {
            let from = self.place_below(old_fd, &old_path)?;
            let to = self.place_below(new_fd, &new_path)?;
            self.journal
                .before(|journal| journal.before_rename(&from, &to))?;
        }
        let (_, old_dir) = self.path_dir(old_fd, rights::PATH_RENAME_SOURCE, Errno::Badf)?;
        let (_, new_dir) = self.path_dir(new_fd, rights::PATH_RENAME_TARGET, Errno::Badf)?;
        Ok(old_dir.rename(&old_path, new_dir, &new_path)?)
    }

    pub(crate) fn path_symlink(
        &mut self,
        g: &mut Guest<'_>,
        (old_ptr, old_len): (u32, u32),
        fd: Fd,
        (new_ptr, new_len): (u32, u32),
    ) -> Result<(), Errno> {
        let old_path = g.read_path(old_ptr, old_len)?;
        let new_path = g.read_path(new_ptr, new_len)?;
        self.path_dir(fd, rights::PATH_SYMLINK, Errno::Badf)?;
        if self.journal.active() {
            let place = self.place_below(fd, &new_path)?;
            self.journal
                .before(|journal| journal.before_create(&place, false))?;
        }
        let (_, dir) = self.path_dir(fd, rights::PATH_SYMLINK, Errno::Badf)?;
        // cap-std refuses absolute targets (`EPERM`); relative ones that point
        // outside may be created but are refused whenever they are followed.
        Ok(dir.symlink(&old_path, &new_path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_drops_dot_and_empty_components() {
        assert_eq!(join("", "a.txt").as_deref(), Ok("a.txt"));
        assert_eq!(join("sub", "./x//y/").as_deref(), Ok("sub/x/y"));
        assert_eq!(join("sub", "../b").as_deref(), Ok("sub/../b"));
        assert_eq!(join("", ".").as_deref(), Ok(""));
        let long = "x/".repeat(PATH_BYTES_MAX as usize * 2 + 1);
        assert_eq!(join(&long, "y"), Err(Errno::Nametoolong));
    }
}
