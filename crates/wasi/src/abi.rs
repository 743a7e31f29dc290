//! The `wasi_snapshot_preview1` ABI: function signatures, flag bits, enum values and
//! the byte layouts of the structures passed through guest memory (all
//! little-endian, as wasm memory is).

use ferrite_vm::{FuncType, ValType};

/// The import module name of WASI preview1.
pub const MODULE: &str = "wasi_snapshot_preview1";

macro_rules! wasi_funcs {
    ($($variant:ident = $name:literal ($($param:ident),*) -> ($($result:ident),*);)*) => {
        /// One function of `wasi_snapshot_preview1`.
        ///
        /// Its discriminant is the [`HostFuncId`](ferrite_vm::HostFuncId) that
        /// [`crate::link`] gives the host function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum WasiFunc {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl WasiFunc {
            /// Every function, in discriminant order.
            pub const ALL: &'static [WasiFunc] = &[$(WasiFunc::$variant),*];

            /// The import name.
            pub fn name(self) -> &'static str {
                match self {
                    $(WasiFunc::$variant => $name,)*
                }
            }

            /// The wasm parameter types.
            pub fn params(self) -> &'static [ValType] {
                match self {
                    $(WasiFunc::$variant => &[$(ValType::$param),*],)*
                }
            }

            /// The wasm result types (an errno, except for `proc_exit`).
            pub fn results(self) -> &'static [ValType] {
                match self {
                    $(WasiFunc::$variant => &[$(ValType::$result),*],)*
                }
            }
        }
    };
}

wasi_funcs! {
    ArgsGet = "args_get" (I32, I32) -> (I32);
    ArgsSizesGet = "args_sizes_get" (I32, I32) -> (I32);
    EnvironGet = "environ_get" (I32, I32) -> (I32);
    EnvironSizesGet = "environ_sizes_get" (I32, I32) -> (I32);
    ClockResGet = "clock_res_get" (I32, I32) -> (I32);
    ClockTimeGet = "clock_time_get" (I32, I64, I32) -> (I32);
    FdAdvise = "fd_advise" (I32, I64, I64, I32) -> (I32);
    FdAllocate = "fd_allocate" (I32, I64, I64) -> (I32);
    FdClose = "fd_close" (I32) -> (I32);
    FdDatasync = "fd_datasync" (I32) -> (I32);
    FdFdstatGet = "fd_fdstat_get" (I32, I32) -> (I32);
    FdFdstatSetFlags = "fd_fdstat_set_flags" (I32, I32) -> (I32);
    FdFdstatSetRights = "fd_fdstat_set_rights" (I32, I64, I64) -> (I32);
    FdFilestatGet = "fd_filestat_get" (I32, I32) -> (I32);
    FdFilestatSetSize = "fd_filestat_set_size" (I32, I64) -> (I32);
    FdFilestatSetTimes = "fd_filestat_set_times" (I32, I64, I64, I32) -> (I32);
    FdPread = "fd_pread" (I32, I32, I32, I64, I32) -> (I32);
    FdPrestatGet = "fd_prestat_get" (I32, I32) -> (I32);
    FdPrestatDirName = "fd_prestat_dir_name" (I32, I32, I32) -> (I32);
    FdPwrite = "fd_pwrite" (I32, I32, I32, I64, I32) -> (I32);
    FdRead = "fd_read" (I32, I32, I32, I32) -> (I32);
    FdReaddir = "fd_readdir" (I32, I32, I32, I64, I32) -> (I32);
    FdRenumber = "fd_renumber" (I32, I32) -> (I32);
    FdSeek = "fd_seek" (I32, I64, I32, I32) -> (I32);
    FdSync = "fd_sync" (I32) -> (I32);
    FdTell = "fd_tell" (I32, I32) -> (I32);
    FdWrite = "fd_write" (I32, I32, I32, I32) -> (I32);
    PathCreateDirectory = "path_create_directory" (I32, I32, I32) -> (I32);
    PathFilestatGet = "path_filestat_get" (I32, I32, I32, I32, I32) -> (I32);
    PathFilestatSetTimes = "path_filestat_set_times" (I32, I32, I32, I32, I64, I64, I32) -> (I32);
    PathLink = "path_link" (I32, I32, I32, I32, I32, I32, I32) -> (I32);
    PathOpen = "path_open" (I32, I32, I32, I32, I32, I64, I64, I32, I32) -> (I32);
    PathReadlink = "path_readlink" (I32, I32, I32, I32, I32, I32) -> (I32);
    PathRemoveDirectory = "path_remove_directory" (I32, I32, I32) -> (I32);
    PathRename = "path_rename" (I32, I32, I32, I32, I32, I32) -> (I32);
    PathSymlink = "path_symlink" (I32, I32, I32, I32, I32) -> (I32);
    PathUnlinkFile = "path_unlink_file" (I32, I32, I32) -> (I32);
    PollOneoff = "poll_oneoff" (I32, I32, I32, I32) -> (I32);
    ProcExit = "proc_exit" (I32) -> ();
    ProcRaise = "proc_raise" (I32) -> (I32);
    SchedYield = "sched_yield" () -> (I32);
    RandomGet = "random_get" (I32, I32) -> (I32);
    SockAccept = "sock_accept" (I32, I32, I32) -> (I32);
    SockRecv = "sock_recv" (I32, I32, I32, I32, I32, I32) -> (I32);
    SockSend = "sock_send" (I32, I32, I32, I32, I32) -> (I32);
    SockShutdown = "sock_shutdown" (I32, I32) -> (I32);
}

impl WasiFunc {
    /// The function called `name`, if WASI preview1 has one.
    pub fn from_name(name: &str) -> Option<WasiFunc> {
        Self::ALL.iter().copied().find(|func| func.name() == name)
    }

    /// The function whose discriminant is `index`.
    pub fn from_index(index: u32) -> Option<WasiFunc> {
        Self::ALL.get(index as usize).copied()
    }

    /// The wasm signature.
    pub fn func_type(self) -> FuncType {
        FuncType::new(
            self.params().iter().copied(),
            self.results().iter().copied(),
        )
    }
}

/// Rights: what may be done with a descriptor (`rights` bits).
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_LINK_SOURCE: u64 = 1 << 11;
    pub const PATH_LINK_TARGET: u64 = 1 << 12;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const PATH_SYMLINK: u64 = 1 << 24;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    /// Every defined right.
    pub const ALL: u64 = (1 << 30) - 1;

    /// The base rights of a preopened directory: those wasmtime reports, which
    /// userlands (wasi-libc) expect.
    pub const PREOPEN_BASE: u64 = PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES;

    /// The rights a preopened directory passes on to what is opened through it.
    pub const PREOPEN_INHERITING: u64 = PREOPEN_BASE
        | FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;

    /// Rights that make no sense on a directory.
    pub const NOT_FOR_DIRECTORIES: u64 = FD_SEEK | FD_FILESTAT_SET_SIZE | PATH_FILESTAT_SET_SIZE;
}

/// `filetype` values.
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// `fdflags` bits.
pub mod fdflags {
    pub const APPEND: u16 = 1 << 0;
    pub const DSYNC: u16 = 1 << 1;
    pub const NONBLOCK: u16 = 1 << 2;
    pub const RSYNC: u16 = 1 << 3;
    pub const SYNC: u16 = 1 << 4;
    pub const ALL: u16 = (1 << 5) - 1;
}

/// `oflags` bits of `path_open`.
pub mod oflags {
    pub const CREAT: u16 = 1 << 0;
    pub const DIRECTORY: u16 = 1 << 1;
    pub const EXCL: u16 = 1 << 2;
    pub const TRUNC: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `lookupflags` bits.
pub mod lookupflags {
    pub const SYMLINK_FOLLOW: u32 = 1 << 0;
    pub const ALL: u32 = 1;
}

/// `fstflags` bits of the `*_set_times` functions.
pub mod fstflags {
    pub const ATIM: u16 = 1 << 0;
    pub const ATIM_NOW: u16 = 1 << 1;
    pub const MTIM: u16 = 1 << 2;
    pub const MTIM_NOW: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `whence` values of `fd_seek`.
pub mod whence {
    pub const SET: u8 = 0;
    pub const CUR: u8 = 1;
    pub const END: u8 = 2;
}

/// `clockid` values.
pub mod clockid {
    pub const REALTIME: u32 = 0;
    pub const MONOTONIC: u32 = 1;
    pub const PROCESS_CPUTIME: u32 = 2;
    pub const THREAD_CPUTIME: u32 = 3;
}

/// `advice` values of `fd_advise` (`NORMAL` to `NOREUSE`).
pub const ADVICE_MAX: u8 = 5;

/// `eventtype` values, also the tags of `subscription_u`.
pub mod eventtype {
    pub const CLOCK: u8 = 0;
    pub const FD_READ: u8 = 1;
    pub const FD_WRITE: u8 = 2;
}

/// `subclockflags`: the timeout is an absolute time.
pub const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;

/// `eventrwflags`: the peer hung up (end of file).
pub const EVENT_FD_READWRITE_HANGUP: u16 = 1;

/// `preopentype` of a directory.
pub const PREOPENTYPE_DIR: u8 = 0;

/// Byte sizes of the ABI structures.
pub mod size {
    pub const IOVEC: u32 = 8;
    pub const FDSTAT: u32 = 24;
    pub const FILESTAT: u32 = 64;
    pub const DIRENT: u32 = 24;
    pub const PRESTAT: u32 = 8;
    pub const SUBSCRIPTION: u32 = 48;
    pub const EVENT: u32 = 32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_table_is_consistent() {
        assert_eq!(WasiFunc::ALL.len(), 46);
        for (index, func) in WasiFunc::ALL.iter().enumerate() {
            assert_eq!(*func as usize, index);
            assert_eq!(WasiFunc::from_index(index as u32), Some(*func));
            assert_eq!(WasiFunc::from_name(func.name()), Some(*func));
        }
        assert_eq!(WasiFunc::from_name("fd_nope"), None);
        assert_eq!(
            WasiFunc::PathOpen.func_type().to_string(),
            "(i32, i32, i32, i32, i32, i64, i64, i32, i32) -> (i32)"
        );
        assert_eq!(WasiFunc::ProcExit.func_type().to_string(), "(i32) -> ()");
    }

    #[test]
    fn preopen_rights_are_wasmtimes() {
        assert_eq!(rights::PREOPEN_BASE & !rights::PREOPEN_INHERITING, 0);
        assert_eq!(rights::PREOPEN_INHERITING & !rights::ALL, 0);
    }
}
