//! Ferrite's remote storage: heaps kept in S3-compatible object storage.
//!
//! [`S3Store`] implements [`ferrite_pagestore::StorageBackend`] over the
//! [`object_store`] crate, so a process's checkpoints can live in a bucket
//! (AWS S3, Ceph's RADOS Gateway, or any store that honours create-only
//! puts). The engine stays synchronous: the store owns a small tokio runtime
//! and bridges each call with it.
//!
//! ```no_run
//! use ferrite_pagestore::StorageBackend;
//! use ferrite_remote::{S3Options, S3Store};
//!
//! // Endpoint, region and keys come from the usual AWS_* variables.
//! let store = S3Store::open("s3://my-bucket/heaps", &S3Options::default())?;
//! store.put_new("modules/example", b"bytes")?;
//! assert_eq!(store.get("modules/example", Some(0..5))?, b"bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Feature | Cost |
//! |---------|------|
//! | create-only commit (`put_new`) | one conditional `PUT` (`If-None-Match: *`) |
//! | open for writing | one `LIST` plus the create-only probe: two `PUT`s and a `DELETE` |
//! | deferred puts (`put_new_deferred`, `sync`) | uploads in the background, at most `uploads_bytes_max` bytes at once (memory) |
//! | a transient failure | bounded retries with exponential backoff (`S3Options`); reads wait out an outage up to `outage_wait_ms_max`, telling a [`NoticeHook`] |
//!
//! The mapping of each operation, the probe, and the rule for writes whose
//! answer was lost are in `docs/s3.md`.

mod cache;
mod error;
mod location;
mod retry;
mod store;

pub use cache::{
    default_cache_dir, is_immutable_key, CacheStats, CacheStatsHandle, CachedStore,
    CACHE_BLOCK_BYTES, CACHE_BYTES_DEFAULT,
};
pub use error::{is_outcome_unknown, OutcomeUnknown, RemoteError};
pub use location::S3Location;
pub use store::{NoticeHook, S3Options, S3Store, StoreNotice, ATTEMPTS_MAX};
