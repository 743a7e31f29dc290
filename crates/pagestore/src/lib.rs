//! Ferrite's page store: where the pages of a virtual heap live when they are not
//! in memory.
//!
//! - [`StorageBackend`] is the seam to the medium: four operations on immutable
//!   objects (`put_new`, `get`, `list`, `delete`), shaped so that a local
//!   directory ([`LocalStore`]), a heap server and S3-compatible storage can all
//!   provide it, and so that fault injection ([`FaultyStore`]) can wrap it.
//! - [`PageStore`] keeps page versions as checksummed records in segment objects,
//!   found through a page map stored in chunk objects. A written-back page never
//!   overwrites the version a committed checkpoint refers to.
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
//! | `write_page` | an append to a 1 MiB in-memory segment buffer; a `put_new` per full segment |
//! | `read_page` | one ranged `get` (or a buffer copy), checksum verified |
//! | `commit_maps` | one `put_new` for the open segment and one per changed 4096-page chunk |
//! | memory | the open segment (1 MiB) and 64 KiB per loaded map chunk (16 MiB of heap) |

mod backend;
mod faulty;
mod local;
mod mem;
mod pages;
pub mod record;

pub use backend::{check_key, StorageBackend, StorageError};
pub use faulty::{Fault, FaultyStore};
pub use local::LocalStore;
pub use mem::MemStore;
pub use pages::{PageMapRef, PageStore, PageStoreError, PageStoreStats, SEGMENT_BYTES_MAX};
pub use record::{Location, SegmentId};
