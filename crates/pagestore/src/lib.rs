//! Ferrite's page store: where the pages of a virtual heap live when they are not
//! in memory.
//!
//! - [`StorageBackend`] is the seam to the medium: six operations on immutable
//!   objects (`put_new`, `put_new_deferred`, `sync`, `get`, `list`, `delete`;
//!   the deferred put and `sync` have durable defaults), shaped so that a local
//!   directory ([`LocalStore`]), a heap server and S3-compatible storage can all
//!   provide it, and so that fault injection ([`FaultyStore`]) can wrap it.
//! - [`PageStore`] keeps page versions as checksummed records in segment objects,
//!   found through a page map stored in chunk objects. A written-back page never
//!   overwrites the version a committed checkpoint refers to.
//! - [`SealedStore`] wraps any backend with encryption at rest: every object is
//!   sealed (XChaCha20-Poly1305, in chunks that ranged reads open one by one)
//!   under a key derived from a [`SealKey`], and damage, truncation, swapped
//!   chunks or objects, and a wrong key are refused, naming the object.
//!
//! ```
//! use ferrite_pagestore::{MemStore, PageMapRef, PageStore, StorageBackend};
//! use std::sync::Arc;
//!
//! let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
//! let mut pages = PageStore::open(backend, "procs/demo/", 4096, 0, PageMapRef::default());
//! pages.write_page(3, &[1; 4096])?;
//! let mut page = [0; 4096];
//! assert!(pages.read_page(3, &mut page)?);
//! assert_eq!(page, [1; 4096]);
//! let map = pages.commit_maps()?; // durable; the manifest records `map`
//! pages.committed(map);
//! # Ok::<(), ferrite_pagestore::PageStoreError>(())
//! ```
//!
//! | Operation | Cost |
//! |-----------|------|
//! | `write_page` | an append to a 1 MiB in-memory segment buffer (or an in-place replace of a version still in it); a `put_new_deferred` (no sync) per full segment |
//! | `read_page` | one ranged `get` (or a buffer copy), checksum verified; sequential faults fetch up to 256 KiB of following records at once (an eighth more to finish a segment) |
//! | `commit_maps` | compaction of sparse segments (bounded), a `put_new_deferred` for the open segment and per changed 4096-page chunk, then one `sync` of all the epoch's objects |
//! | memory | the open segment (1 MiB), at most 32 loaded map chunks of 64 KiB (clean ones dropped, dirty ones written early), a readahead buffer of about 256 KiB: under 4 MiB whatever the heap size |
//! | [`LocalStore`] reads | `pread` on one of 16 cached open handles |
//! | [`SealedStore`] | per object 40 bytes of header and 16 per 4 KiB chunk; a read opens the chunks it covers (two for a page record); see `examples/sealed_cost.rs` |

mod backend;
mod faulty;
pub mod fs;
mod local;
mod mem;
mod pages;
pub mod record;
mod sealed;

pub use backend::{check_key, get_bounded, Notify, StorageBackend, StorageError, StorageKind};
pub use faulty::{Fault, FaultyStore};
pub use local::{list_keys, LocalStore, HANDLES_OPEN_MAX, UNSYNCED_HANDLES_MAX};
pub use mem::MemStore;
pub use pages::{
    CompactionReport, MapDelta, PageMapRef, PageStore, PageStoreError, PageStoreStats,
    CHUNKS_LOADED_MAX, COMPACTION_BYTES_MAX, COMPACTION_BYTES_MIN, DELTAS_LIVE_MAX,
    DELTA_CHUNK_ENTRIES_MAX, DELTA_ENTRIES_LIVE_MAX, READAHEAD_BYTES_MAX, SEGMENT_BYTES_MAX,
};
pub use record::{object_epoch_generation, FormatError, Location, SegmentId, EPOCH_MAX, MAP_BYTES};
pub use sealed::{
    refuse_sealed, KeyError, SealKey, SealedStore, KEYCHECK_KEY, SEALED_CHUNK_BYTES,
    SEALED_CHUNK_BYTES_MAX, SEALED_CHUNK_BYTES_MIN, SEALED_HEADER_BYTES, SEALED_MAGIC,
    SEALED_TAG_BYTES, SEALED_VERSION,
};
