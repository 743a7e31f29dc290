//! [`WasiCtx`]: the live host (state plus OS handles), linking, and dispatch.

use crate::{
    abi::{self, rights, WasiFunc},
    clock::{Clock, Entropy, SystemClock, SystemEntropy},
    guest::Guest,
    journal::FileJournal,
    state::{Fd, FdEntry, FdKind, Location, Preopen, PreopenIndex, WasiState},
    Errno,
};
use cap_std::fs::{Dir, File};
use ferrite_vm::{Extern, ExternType, HostFuncId, LinearMemory, Module, Store, Value};
use std::{collections::BTreeMap, fmt, io, path::PathBuf};

/// The most descriptors open at once; `path_open` fails with `EMFILE` beyond.
pub const FDS_MAX: usize = 1 << 16;

/// What the guest is given at start: `argv`, `environ` and preopened directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasiConfig {
    /// Program arguments, `argv[0]` (the program name) first.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories the guest may reach, numbered from fd 3 in this order.
    pub preopens: Vec<Preopen>,
}

/// Why a [`WasiCtx`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum WasiError {
    /// A preopened directory cannot be opened.
    #[error("cannot open directory {}: {source}", path.display())]
    Preopen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A [`WasiState`] given to [`WasiCtx::restore`] is inconsistent.
    #[error("invalid WASI state: {0}")]
    InvalidState(String),
}

/// Why a module's imports cannot be satisfied by WASI preview1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// An import from a module other than `wasi_snapshot_preview1`.
    #[error("module imports {module}::{name} ({kind}), which is not part of WASI preview1")]
    Foreign {
        module: String,
        name: String,
        kind: &'static str,
    },
    /// A `wasi_snapshot_preview1` import that is not a function.
    #[error(
        "module imports {}::{name} ({kind}); WASI preview1 provides only functions",
        abi::MODULE
    )]
    NotAFunction { name: String, kind: &'static str },
    /// A `wasi_snapshot_preview1` function that does not exist.
    #[error(
        "module imports {}::{name}, which is not a WASI preview1 function",
        abi::MODULE
    )]
    UnknownFunction { name: String },
    /// A WASI function imported with the wrong signature.
    #[error(
        "module imports {}::{name} with type {actual}, but WASI preview1 defines it as {expected}",
        abi::MODULE
    )]
    WrongType {
        name: String,
        expected: String,
        actual: String,
    },
}

/// Allocates a host function in `store` for every import of `module`, in import
/// order, ready for [`Store::instantiate`]. The host function of [`WasiFunc`] `f`
/// has [`HostFuncId`] `f as u32`; [`host_func`] maps it back.
///
/// # Errors
/// The first import that WASI preview1 cannot satisfy.
pub fn link(store: &mut Store, module: &Module) -> Result<Vec<Extern>, LinkError> {
    let mut imports = Vec::with_capacity(module.imports().len());
    for import in module.imports() {
        if import.module != abi::MODULE {
            return Err(LinkError::Foreign {
                module: import.module.clone(),
                name: import.name.clone(),
                kind: import.ty.kind(),
            });
        }
        let ExternType::Func(actual) = &import.ty else {
            return Err(LinkError::NotAFunction {
                name: import.name.clone(),
                kind: import.ty.kind(),
            });
        };
        let func = WasiFunc::from_name(&import.name).ok_or_else(|| LinkError::UnknownFunction {
            name: import.name.clone(),
        })?;
        let expected = func.func_type();
        if *actual != expected {
            return Err(LinkError::WrongType {
                name: import.name.clone(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        imports.push(Extern::Func(
            store.alloc_host_func(&expected, HostFuncId(func as u32)),
        ));
    }
    Ok(imports)
}

/// The WASI function behind a host function id given out by [`link`].
pub fn host_func(id: HostFuncId) -> Option<WasiFunc> {
    WasiFunc::from_index(id.0)
}

/// The guest called `proc_exit(status)`: the process is over.
///
/// WASI defines statuses 0 to 125 only; wasmtime refuses larger ones with an error
/// (exit status 1), and so does `ferrite run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit {
    pub status: u32,
}

/// An OS handle behind a descriptor.
pub(crate) enum Handle {
    Stdin,
    Stdout,
    Stderr,
    File(File),
    Dir(Dir),
    /// The object could not be reopened on restore: every operation but
    /// `fd_close` and `fd_renumber` fails with `EIO`.
    Lost,
}

/// A WASI preview1 host: the [`WasiState`] and the OS handles that realize it.
pub struct WasiCtx {
    pub(crate) state: WasiState,
    pub(crate) handles: BTreeMap<Fd, Handle>,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) entropy: Box<dyn Entropy>,
    pub(crate) journal: Journaling,
}

/// The file journal of a persistent process, and the first failure to write
/// it: after one, every change to a file fails with `EIO` and the embedder
/// must stop the process (its files could not be rolled back).
#[derive(Debug, Default)]
pub(crate) struct Journaling {
    pub(crate) journal: Option<FileJournal>,
    pub(crate) failure: Option<String>,
}

impl Journaling {
    /// Runs `op` on the journal, if there is one, before a change to a file.
    /// `None` without a journal; a failure fails the change with `EIO`.
    pub(crate) fn before<T>(
        &mut self,
        op: impl FnOnce(&mut FileJournal) -> io::Result<T>,
    ) -> Result<Option<T>, Errno> {
        let Some(journal) = &mut self.journal else {
            return Ok(None);
        };
        if self.failure.is_some() {
            return Err(Errno::Io);
        }
        op(journal).map(Some).map_err(|e| {
            self.failure = Some(e.to_string());
            Errno::Io
        })
    }

    /// A descriptor of the guest's is closed: its number may name another
    /// file next.
    pub(crate) fn forget(&mut self, file: &File) {
        if let Some(journal) = &mut self.journal {
            journal.forget(file);
        }
    }

    /// Whether changes to files are journaled.
    pub(crate) fn active(&self) -> bool {
        self.journal.is_some()
    }
}

impl fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasiCtx")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The entry of a preopened directory.
pub(crate) fn preopen_entry(index: PreopenIndex) -> FdEntry {
    FdEntry {
        kind: FdKind::Directory,
        location: Some(Location {
            preopen: index,
            path: String::new(),
            follow: true,
        }),
        is_preopen: true,
        offset: 0,
        fdflags: 0,
        rights_base: rights::PREOPEN_BASE,
        rights_inheriting: rights::PREOPEN_INHERITING,
        read: true,
        write: false,
    }
}

/// The entry of a standard stream, with the rights wasmtime reports for it.
pub(crate) fn stdio_entry(kind: FdKind) -> FdEntry {
    let rights = if kind == FdKind::Stdin {
        rights::FD_READ
    } else {
        rights::FD_WRITE
    };
    FdEntry {
        kind,
        location: None,
        is_preopen: false,
        offset: 0,
        fdflags: 0,
        rights_base: rights,
        rights_inheriting: rights,
        read: kind == FdKind::Stdin,
        write: kind != FdKind::Stdin,
    }
}

/// Opens a preopened directory with ambient authority (the embedder chose it).
pub(crate) fn open_preopen(preopen: &Preopen) -> Result<Dir, WasiError> {
    let error = |source| WasiError::Preopen {
        path: preopen.host_path.clone(),
        source,
    };
    let dir =
        Dir::open_ambient_dir(&preopen.host_path, cap_std::ambient_authority()).map_err(error)?;
    Ok(dir)
}

impl WasiCtx {
    /// A fresh process: stdio on fds 0 to 2 (the host's own), then the preopens.
    ///
    /// # Errors
    /// If a preopened directory cannot be opened.
    pub fn new(config: WasiConfig) -> Result<Self, WasiError> {
        let mut state = WasiState {
            args: config.args,
            env: config.env,
            preopens: config.preopens,
            fds: BTreeMap::new(),
            free_fds: std::collections::BTreeSet::new(),
            monotonic_ns: 0,
        };
        let mut handles = BTreeMap::new();
        for (fd, kind, handle) in [
            (0, FdKind::Stdin, Handle::Stdin),
            (1, FdKind::Stdout, Handle::Stdout),
            (2, FdKind::Stderr, Handle::Stderr),
        ] {
            state.fds.insert(Fd(fd), stdio_entry(kind));
            handles.insert(Fd(fd), handle);
        }
        for (index, preopen) in state.preopens.iter().enumerate() {
            let dir = open_preopen(preopen)?;
            let fd = Fd(3 + index as u32);
            state
                .fds
                .insert(fd, preopen_entry(PreopenIndex(index as u32)));
            handles.insert(fd, Handle::Dir(dir));
        }
        Ok(Self {
            state,
            handles,
            clock: Box::new(SystemClock::default()),
            entropy: Box::new(SystemEntropy::default()),
            journal: Journaling::default(),
        })
    }

    /// Journals every change the process makes to files and directory entries
    /// from now on (see [`FileJournal`]), so that they can be rolled back to
    /// the checkpoint `journal` is based on.
    pub fn attach_journal(&mut self, journal: FileJournal) {
        self.journal.journal = Some(journal);
    }

    /// The file journal, if one is attached.
    pub fn journal(&self) -> Option<&FileJournal> {
        self.journal.journal.as_ref()
    }

    /// Why the file journal failed, if it did: the process must stop.
    pub fn journal_failure(&self) -> Option<&str> {
        self.journal.failure.as_deref()
    }

    /// Syncs every file and directory the process changed since the last
    /// checkpoint; called before a checkpoint commits.
    ///
    /// # Errors
    /// A failed sync (or an earlier journal failure): the checkpoint must not
    /// commit, and the process must stop.
    pub fn sync_files(&mut self) -> io::Result<()> {
        if let Some(failure) = &self.journal.failure {
            return Err(io::Error::other(failure.clone()));
        }
        let Some(journal) = &mut self.journal.journal else {
            return Ok(());
        };
        journal.sync_files().inspect_err(|e| {
            self.journal.failure = Some(e.to_string());
        })
    }

    /// Checkpoint `epoch` committed: the journal starts over from it.
    pub fn files_committed(&mut self, epoch: u64) {
        if let Some(journal) = &mut self.journal.journal {
            journal.committed(epoch);
        }
    }

    /// Replaces the clock (for deterministic simulation).
    pub fn set_clock(&mut self, clock: Box<dyn Clock>) {
        self.clock = clock;
    }

    /// Replaces the source of randomness (for deterministic simulation).
    pub fn set_entropy(&mut self, entropy: Box<dyn Entropy>) {
        self.entropy = entropy;
    }

    /// The state as it is now (between host calls it is always consistent).
    pub fn state(&self) -> &WasiState {
        &self.state
    }

    /// A copy of the state for a checkpoint, with the guest's monotonic clock.
    pub fn snapshot(&mut self) -> WasiState {
        let mut state = self.state.clone();
        state.monotonic_ns = self
            .clock
            .now(abi::clockid::MONOTONIC)
            .unwrap_or(state.monotonic_ns);
        state
    }

    /// Runs WASI function `func` with `args` (of the types of its signature)
    /// against `memory` (the module's exported `memory`, if any).
    ///
    /// Returns the function's results: one `i32` errno, or nothing for
    /// `proc_exit`. Guest mistakes (bad pointers, descriptors, flags) are errnos,
    /// never panics.
    ///
    /// # Errors
    /// [`ProcExit`] when the guest calls `proc_exit`: stop running it.
    pub fn call(
        &mut self,
        memory: Option<&mut LinearMemory>,
        func: WasiFunc,
        args: &[Value],
    ) -> Result<Vec<Value>, ProcExit> {
        debug_assert!(
            args.len() == func.params().len()
                && args.iter().zip(func.params()).all(|(a, t)| a.ty() == *t),
            "{func:?} called with {args:?}"
        );
        if func == WasiFunc::ProcExit {
            return Err(ProcExit {
                status: arg32(args, 0),
            });
        }
        let mut guest = Guest::new(memory);
        let result = self.dispatch(&mut guest, func, args);
        let errno = match result {
            Ok(()) => Errno::Success,
            Err(errno) => errno,
        };
        Ok(vec![Value::I32(i32::from(errno.code()))])
    }

    fn dispatch(&mut self, g: &mut Guest<'_>, func: WasiFunc, args: &[Value]) -> Result<(), Errno> {
        let a = |i| arg32(args, i);
        let l = |i| arg64(args, i);
        match func {
            WasiFunc::ArgsGet => self.args_get(g, a(0), a(1)),
            WasiFunc::ArgsSizesGet => self.args_sizes_get(g, a(0), a(1)),
            WasiFunc::EnvironGet => self.environ_get(g, a(0), a(1)),
            WasiFunc::EnvironSizesGet => self.environ_sizes_get(g, a(0), a(1)),
            WasiFunc::ClockResGet => self.clock_res_get(g, a(0), a(1)),
            WasiFunc::ClockTimeGet => self.clock_time_get(g, a(0), l(1), a(2)),
            WasiFunc::FdAdvise => self.fd_advise(fd(a(0)), l(1), l(2), a(3)),
            WasiFunc::FdAllocate => self.fd_allocate(fd(a(0)), l(1), l(2)),
            WasiFunc::FdClose => self.fd_close(fd(a(0))),
            WasiFunc::FdDatasync => self.fd_sync(fd(a(0)), true),
            WasiFunc::FdFdstatGet => self.fd_fdstat_get(g, fd(a(0)), a(1)),
            WasiFunc::FdFdstatSetFlags => self.fd_fdstat_set_flags(fd(a(0)), a(1)),
            WasiFunc::FdFdstatSetRights => self.fd_fdstat_set_rights(fd(a(0)), l(1), l(2)),
            WasiFunc::FdFilestatGet => self.fd_filestat_get(g, fd(a(0)), a(1)),
            WasiFunc::FdFilestatSetSize => self.fd_filestat_set_size(fd(a(0)), l(1)),
            WasiFunc::FdFilestatSetTimes => self.fd_filestat_set_times(fd(a(0)), l(1), l(2), a(3)),
            WasiFunc::FdPread => self.fd_pread(g, fd(a(0)), a(1), a(2), l(3), a(4)),
            WasiFunc::FdPrestatGet => self.fd_prestat_get(g, fd(a(0)), a(1)),
            WasiFunc::FdPrestatDirName => self.fd_prestat_dir_name(g, fd(a(0)), a(1), a(2)),
            WasiFunc::FdPwrite => self.fd_pwrite(g, fd(a(0)), a(1), a(2), l(3), a(4)),
            WasiFunc::FdRead => self.fd_read(g, fd(a(0)), a(1), a(2), a(3)),
            WasiFunc::FdReaddir => self.fd_readdir(g, fd(a(0)), a(1), a(2), l(3), a(4)),
            WasiFunc::FdRenumber => self.fd_renumber(fd(a(0)), fd(a(1))),
            WasiFunc::FdSeek => self.fd_seek(g, fd(a(0)), l(1) as i64, a(2), a(3)),
            WasiFunc::FdSync => self.fd_sync(fd(a(0)), false),
            WasiFunc::FdTell => self.fd_tell(g, fd(a(0)), a(1)),
            WasiFunc::FdWrite => self.fd_write(g, fd(a(0)), a(1), a(2), a(3)),
            WasiFunc::PathCreateDirectory => self.path_create_directory(g, fd(a(0)), a(1), a(2)),
            WasiFunc::PathFilestatGet => {
                self.path_filestat_get(g, fd(a(0)), a(1), a(2), a(3), a(4))
            }
            WasiFunc::PathFilestatSetTimes => {
                self.path_filestat_set_times(g, fd(a(0)), a(1), (a(2), a(3)), l(4), l(5), a(6))
            }
            WasiFunc::PathLink => {
                self.path_link(g, fd(a(0)), a(1), (a(2), a(3)), fd(a(4)), (a(5), a(6)))
            }
            WasiFunc::PathOpen => self.path_open(
                g,
                fd(a(0)),
                a(1),
                (a(2), a(3)),
                a(4),
                (l(5), l(6)),
                a(7),
                a(8),
            ),
            WasiFunc::PathReadlink => {
                self.path_readlink(g, fd(a(0)), (a(1), a(2)), a(3), a(4), a(5))
            }
            WasiFunc::PathRemoveDirectory => self.path_remove_directory(g, fd(a(0)), a(1), a(2)),
            WasiFunc::PathRename => {
                self.path_rename(g, fd(a(0)), (a(1), a(2)), fd(a(3)), (a(4), a(5)))
            }
            WasiFunc::PathSymlink => self.path_symlink(g, (a(0), a(1)), fd(a(2)), (a(3), a(4))),
            WasiFunc::PathUnlinkFile => self.path_unlink_file(g, fd(a(0)), a(1), a(2)),
            WasiFunc::PollOneoff => self.poll_oneoff(g, a(0), a(1), a(2), a(3)),
            WasiFunc::ProcRaise => Err(Errno::Notsup),
            WasiFunc::SchedYield => {
                std::thread::yield_now();
                Ok(())
            }
            WasiFunc::RandomGet => self.random_get(g, a(0), a(1)),
            WasiFunc::SockAccept
            | WasiFunc::SockRecv
            | WasiFunc::SockSend
            | WasiFunc::SockShutdown => {
                // No sockets exist, so any valid descriptor is not one of them.
                self.entry(fd(a(0)))?;
                Err(Errno::Notsup)
            }
            WasiFunc::ProcExit => unreachable!("handled by `call`"),
        }
    }

    /// The entry of an open descriptor.
    pub(crate) fn entry(&self, fd: Fd) -> Result<&FdEntry, Errno> {
        self.state.fds.get(&fd).ok_or(Errno::Badf)
    }

    /// Allocates a descriptor number as wasmtime does: the highest closed number
    /// first, otherwise one past the highest open one.
    pub(crate) fn insert(&mut self, entry: FdEntry, handle: Handle) -> Result<Fd, Errno> {
        if self.state.fds.len() >= FDS_MAX {
            return Err(Errno::Mfile);
        }
        let fd = match self.state.free_fds.pop_last() {
            Some(fd) => fd,
            None => match self.state.fds.last_key_value() {
                Some((last, _)) => Fd(last.0.checked_add(1).ok_or(Errno::Mfile)?),
                None => Fd(0),
            },
        };
        debug_assert!(!self.state.fds.contains_key(&fd));
        self.state.fds.insert(fd, entry);
        self.handles.insert(fd, handle);
        Ok(fd)
    }
}

fn fd(raw: u32) -> Fd {
    Fd(raw)
}

/// Argument `index` as the 32 bits of an `i32` (signature checked at link time).
fn arg32(args: &[Value], index: usize) -> u32 {
    match args.get(index) {
        Some(Value::I32(value)) => *value as u32,
        other => {
            debug_assert!(false, "argument {index} is {other:?}, not an i32");
            0
        }
    }
}

/// Argument `index` as the 64 bits of an `i64`.
fn arg64(args: &[Value], index: usize) -> u64 {
    match args.get(index) {
        Some(Value::I64(value)) => *value as u64,
        other => {
            debug_assert!(false, "argument {index} is {other:?}, not an i64");
            0
        }
    }
}

/// Fails with `ENOTCAPABLE` unless `entry` has every right in `needed`.
pub(crate) fn require(entry: &FdEntry, needed: u64) -> Result<(), Errno> {
    if entry.rights_base & needed == needed {
        Ok(())
    } else {
        Err(Errno::Notcapable)
    }
}
