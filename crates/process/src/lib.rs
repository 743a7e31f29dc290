//! Ferrite processes: a WebAssembly module instance with WASI preview1 whose
//! whole computation lives in a store.
//!
//! A [`Process`] owns an engine store, one [`ferrite_vm::Execution`], a WASI
//! host and a heap backed by the process's page store. It is started once
//! ([`Process::start`]), runs until it finishes or is interrupted
//! ([`Process::run`]), commits checkpoints of everything it is
//! ([`Process::checkpoint`]), and after a crash or a stop it is resumed from its
//! last committed checkpoint, on this machine or another one that reaches the
//! same store ([`Process::resume`]). Resume is lazy: execution restarts before
//! any heap page is read, and pages fault in from the store on first use.
//!
//! ```
//! use ferrite_pagestore::{MemStore, StorageBackend};
//! use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
//! use ferrite_vm::Value;
//! use std::sync::Arc;
//!
//! let wasm = wat::parse_str(r#"(module
//!     (memory 1)
//!     (func (export "count") (param i32) (result i32) (local i32)
//!       loop
//!         local.get 1 i32.const 1 i32.add local.set 1
//!         local.get 1 local.get 0 i32.lt_u br_if 0
//!       end
//!       local.get 1))"#)?;
//! let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
//! let launch = Launch::invoke("counter", wasm, "count", vec![Value::I32(1000)]);
//! let mut process = Process::start(backend.clone(), None, launch, &ProcessOptions::default())?;
//! process.checkpoint()?; // the state before the loop, committed
//! drop(process); // as if the machine went down
//!
//! let (mut process, _report) = Process::resume(backend, None, "counter", &ProcessOptions::default())?;
//! let outcome = process.run()?;
//! assert_eq!(outcome, Outcome::Returned(vec![Value::I32(1000)]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Feature             | Cost                                                         |
//! |---------------------|--------------------------------------------------------------|
//! | checkpoint          | writes the pages dirtied since the last one, the page-map    |
//! |                     | chunks they changed, and one manifest; the process is paused |
//! | resume              | one manifest read and the module's translation; no page read |
//! | a page fault        | one ranged read of a segment object, verified by CRC-32C     |
//! | interrupt           | one flag, polled by the interpreter at back-edges and calls  |

mod image;
mod process;

pub use process::{
    CheckpointReport, CheckpointSteps, Launch, Notice, Outcome, Process, ProcessOptions,
    ProcessStats, ResumeReport, FLAG_PHYSICAL_HEAP,
};

use ferrite_ckpt::{CkptError, ProcessStatus};
use ferrite_heap::HeapError;
use ferrite_pagestore::{PageStoreError, StorageError, StorageKind};

/// A storage failure that stopped a process: its kind (typed all the way up,
/// so that callers never read the message to decide) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFailure {
    pub kind: StorageKind,
    pub message: String,
}

impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StorageFailure {
    fn of(error: &StorageError) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The module could not be loaded, linked or instantiated, or the engine
    /// state does not fit it.
    #[error(transparent)]
    Engine(#[from] ferrite_vm::Error),
    /// The WASI host could not be set up (a `--dir` is unusable).
    #[error(transparent)]
    Host(#[from] ferrite_wasi::WasiError),
    /// A checkpoint could not be read or written, or recovery stopped.
    #[error(transparent)]
    Checkpoint(CkptError),
    /// The heap's store failed (I/O, a full disk, corrupt data): the process is
    /// stopped; its last committed checkpoint is intact.
    #[error("storage error: {0}")]
    Storage(StorageFailure),
    /// Stored data failed verification (a bit flip, a torn or misplaced
    /// record): it is never used. Resuming from the same store meets it again
    /// until the damaged object is restored.
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    /// `start` of a name that already has checkpoints.
    #[error("process {0} already exists; resume it with `ferrite resume {0}` or remove it with `ferrite rm {0}`")]
    Exists(String),
    /// `resume` of a name without a usable checkpoint.
    #[error("process {0} has no checkpoint to resume")]
    NoCheckpoint(String),
    /// `resume` of a process that is over.
    #[error("process {name} has already finished ({}); nothing to resume", status_text(.status))]
    Finished { name: String, status: ProcessStatus },
    /// A checkpoint holds state this build cannot use.
    #[error("checkpoint {epoch} of process {name} cannot be resumed: {reason}")]
    Unusable {
        name: String,
        epoch: u64,
        reason: String,
    },
    /// The journal that rolls the process's files back with it could not be
    /// written or read, or the files could not be synced for a checkpoint: the
    /// process is stopped; its last committed checkpoint is intact.
    #[error("file journal: {0}")]
    Files(String),
    /// An earlier checkpoint or storage failure stopped the process.
    #[error("the process is stopped after an earlier failure: {0}")]
    Poisoned(String),
}

impl From<HeapError> for ProcessError {
    #[cold]
    fn from(error: HeapError) -> Self {
        match error {
            HeapError::Storage(error) => ProcessError::from_page_store(&error),
            other => ProcessError::Storage(StorageFailure {
                kind: StorageKind::Io,
                message: other.to_string(),
            }),
        }
    }
}

impl From<CkptError> for ProcessError {
    #[cold]
    fn from(error: CkptError) -> Self {
        match error {
            // The module a checkpoint names is part of it: a missing or
            // mismatching one is damage, like a missing segment.
            CkptError::ModuleCorrupt(_) | CkptError::ModuleMissing(_) => {
                ProcessError::Corrupt(error.to_string())
            }
            CkptError::Pages(error) => ProcessError::from_page_store(&error),
            other => ProcessError::Checkpoint(other),
        }
    }
}

impl From<PageStoreError> for ProcessError {
    #[cold]
    fn from(error: PageStoreError) -> Self {
        ProcessError::from_page_store(&error)
    }
}

impl ProcessError {
    /// The process's error for a page-store failure, by kind.
    #[cold]
    pub(crate) fn from_page_store(error: &PageStoreError) -> Self {
        match error {
            // Objects are written create-only under names of the epoch being
            // built: a clash means another runner builds the same epoch.
            PageStoreError::Storage(StorageError::AlreadyExists { .. }) => {
                ProcessError::Storage(StorageFailure {
                    kind: StorageKind::Fenced,
                    message: format!(
                        "{error}: another runner is checkpointing this process; this runner must stop"
                    ),
                })
            }
            PageStoreError::Storage(storage) => ProcessError::Storage(StorageFailure::of(storage)),
            PageStoreError::Corrupt { .. } => ProcessError::Corrupt(error.to_string()),
        }
    }
}

impl From<StorageError> for ProcessError {
    #[cold]
    fn from(error: StorageError) -> Self {
        ProcessError::Storage(StorageFailure::of(&error))
    }
}

impl ProcessError {
    /// The kind of storage failure behind the error, if it is one (a
    /// checkpoint's storage errors, fencing and leases included).
    pub fn storage_kind(&self) -> Option<StorageKind> {
        match self {
            ProcessError::Storage(failure) => Some(failure.kind),
            ProcessError::Corrupt(_) => Some(StorageKind::Damaged),
            ProcessError::Checkpoint(error) => match error {
                CkptError::Storage(error) => Some(error.kind()),
                CkptError::Fenced { .. } => Some(StorageKind::Fenced),
                CkptError::Lease(ferrite_ckpt::LeaseError::Storage(error)) => Some(error.kind()),
                CkptError::Lease(_) => Some(StorageKind::Fenced),
                CkptError::Unreadable { source, .. } => Some(source.kind()),
                _ => None,
            },
            _ => None,
        }
    }
}

/// How `ps` and error messages describe a final status.
pub fn status_text(status: &ProcessStatus) -> String {
    match status {
        ProcessStatus::Running => "running".into(),
        ProcessStatus::Exited { code } => format!("exited with code {code}"),
        ProcessStatus::Trapped { message } => format!("trapped: {message}"),
        ProcessStatus::Returned { results } => {
            format!("returned {}", results.join(" "))
        }
    }
}
