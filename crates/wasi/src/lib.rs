//! WASI preview1 (`wasi_snapshot_preview1`) for Ferrite: the host that lets real
//! C and Rust programs compiled to `wasm32-wasi` run, sandboxed, with all host
//! state kept as plain data that a checkpoint can save and a restore can reopen.
//!
//! The engine reports a call of a host function as
//! [`RunOutcome::HostCall`](ferrite_vm::RunOutcome); the embedder passes it to
//! [`WasiCtx::call`] with the guest's memory and resumes the execution with the
//! results, or stops at `proc_exit`:
//!
//! ```
//! use ferrite_vm::{Config, Execution, Extern, Module, RunOutcome, Store, Value};
//! use ferrite_wasi::{WasiConfig, WasiCtx};
//!
//! // `argc` through `args_sizes_get`, returned as the exit status.
//! let module = Module::from_text_or_binary(br#"(module
//!     (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
//!     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
//!     (memory (export "memory") 1)
//!     (func (export "_start")
//!         (drop (call $sizes (i32.const 0) (i32.const 4)))
//!         (call $exit (i32.load (i32.const 0)))))"#)?;
//! let mut store = Store::new(Config::default());
//! let imports = ferrite_wasi::link(&mut store, &module)?;
//! let instance = store.instantiate(&module, &imports)?;
//! let Some(Extern::Memory(memory)) = store.get_export(instance, "memory") else { panic!() };
//! let Some(Extern::Func(start)) = store.get_export(instance, "_start") else { panic!() };
//! let args = vec!["prog".to_string(), "a".into(), "b".into()];
//! let mut wasi = WasiCtx::new(WasiConfig { args, ..WasiConfig::default() })?;
//!
//! let mut execution = Execution::new(&store, start, &[])?;
//! let status = loop {
//!     match execution.run(&mut store, u64::MAX)? {
//!         RunOutcome::HostCall { id, args } => {
//!             let func = ferrite_wasi::host_func(id).expect("linked by ferrite_wasi");
//!             match wasi.call(Some(store.memory_mut(memory)), func, &args) {
//!                 Ok(results) => execution.resume_host(&store, &results)?,
//!                 Err(exit) => break exit.status,
//!             }
//!         }
//!         RunOutcome::Finished(_) => break 0,
//!         RunOutcome::OutOfBudget | RunOutcome::Interrupted => {}
//!     }
//! };
//! assert_eq!(status, 3);
//! // The whole host state is data: serialize it, and `WasiCtx::restore` it later.
//! let state = wasi.snapshot();
//! assert_eq!(state.args.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Feature                         | Cost                                                       |
//! |---------------------------------|------------------------------------------------------------|
//! | host call                       | one return to the embedder and a `match` on [`WasiFunc`]   |
//! | guest memory access             | copies through `LinearMemory::read`/`write`, bounds-checked|
//! | `fd_read`/`fd_write` of a file  | one `pread`/`pwrite`; at most [`IO_BYTES_MAX`] per call    |
//! | `fd_write` to stdout/stderr     | a write and a flush (no host buffering)                    |
//! | path resolution                 | cap-std: `openat2(RESOLVE_BENEATH)` or a checked walk      |
//! | `fd_readdir`                    | lists and sorts the whole directory on every call          |
//! | snapshot                        | a clone of [`WasiState`] (no I/O)                          |
//! | restore                         | reopens every preopen and descriptor by path               |
//!
//! Every `wasi_snapshot_preview1` function is implemented; sockets answer
//! `ENOTSUP`. Behaviour follows wasmtime's preview1 host, errno for errno, except
//! where `docs/wasi.md` lists a deliberate difference (hostile pointers are
//! `EFAULT` rather than a trap, rights can be dropped and are then enforced,
//! CPU-time clocks, `fd_allocate` and the `SYNC` flags work).
#![forbid(unsafe_code)]

pub mod abi;
mod clock;
mod ctx;
mod errno;
mod fd;
mod guest;
pub mod journal;
mod misc;
mod path;
mod poll;
mod restore;
mod state;

pub use abi::WasiFunc;
pub use clock::{Clock, Entropy, SystemClock, SystemEntropy};
pub use ctx::{host_func, link, LinkError, ProcExit, WasiConfig, WasiCtx, WasiError, FDS_MAX};
pub use errno::Errno;
pub use guest::{IOVECS_MAX, IO_BYTES_MAX, PATH_BYTES_MAX};
pub use journal::{
    roll_back, FileJournal, JournalError, JournalStats, Rollback, SyncHook, SyncPoint,
};
pub use restore::RestoreReport;
pub use state::{Fd, FdEntry, FdKind, Location, Preopen, PreopenIndex, WasiState, STATE_VERSION};
