//! Ferrite's checkpoint format and commit protocol.
//!
//! A checkpoint of a process is a [`Manifest`]: one small object, written last and
//! create-only, that names the page-map chunks and segments holding the heap (see
//! `ferrite-pagestore`) and carries the engine and host state. Committing is the
//! single `put_new` of the manifest; everything it refers to is durable before.
//! Recovery takes the newest manifest that verifies. See `docs/format.md` for the
//! layouts and the crash analysis.
//!
//! ```
//! use ferrite_ckpt::{Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
//! use ferrite_pagestore::{MemStore, StorageBackend};
//! use std::sync::Arc;
//!
//! let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
//! let process = ProcessStore::new(backend, "demo")?;
//! let mut pages = process.page_store(None, 4096)?;
//! pages.write_page(0, &[7; 4096])?;
//! let map = pages.commit_maps()?;
//! let mut body = ManifestBody {
//!     process: "demo".into(), module_sha256: String::new(), page_size: 4096,
//!     map_chunks: vec![], map_deltas: vec![], segments: vec![], status: ProcessStatus::Running,
//!     invocation: Invocation::default(), engine: vec![], host: vec![],
//!     created_unix_ms: 0, checkpoint_count: 1, heap_bytes: 65536,
//!     pages_written: 1, pause_us: 0, resident_pages: vec![],
//!     generations: vec![], writer: String::new(),
//! };
//! body.set_page_map(&map);
//! process.commit(&Manifest { epoch: pages.epoch(), parent: 0, body })?;
//! let recovered = process.recover()?.manifest.expect("committed");
//! let mut pages = process.page_store(Some(&recovered), 4096)?;
//! let mut page = [0; 4096];
//! pages.read_page(0, &mut page)?;
//! assert_eq!(page, [7; 4096]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod lease;
mod lock;
mod manifest;
mod process;
pub mod requests;
mod session;

pub use lease::{
    lease_holder, lease_state, record_generation, remove_lease_history, Clock, LeaseConfig,
    LeaseError, LeaseState, ManualClock, MonotonicClock, StoreLease,
};
pub use lock::{LockError, ProcessLock, LOCK_ATTEMPTS_MAX};
pub use manifest::{
    Invocation, Manifest, ManifestBody, ManifestError, ProcessStatus, FORMAT_VERSION,
    FORMAT_VERSION_MIN, MANIFEST_BYTES_MAX, MANIFEST_MAGIC,
};
pub use process::{
    check_process_name, list_processes, CkptError, GcReport, Modules, ProcessStore, Recovery,
    MODULE_BYTES_MAX,
};
pub use session::{runner_tag, Claim, Committed, LeaseKeeper, Session, WaitNotice};
