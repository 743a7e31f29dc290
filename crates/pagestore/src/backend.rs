//! The storage seam: a small object-store interface that a local directory, a heap
//! server and S3-compatible storage can all implement, and that a fault injector
//! can wrap.

use std::{fmt, io, ops::Range, sync::Arc};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `put_new` found the key already present. For a manifest this means another
    /// runner committed that checkpoint first (the process moved elsewhere).
    #[error("object {key} already exists")]
    AlreadyExists { key: String },
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound { key: String },
    /// The medium is full.
    #[error("storage full while writing {key}")]
    NoSpace { key: String },
    /// The storage could not be reached, or answered with a server error,
    /// after the backend's own retries: nothing was changed that a caller
    /// relies on. Transient: the same operation may succeed later.
    #[error("storage unavailable for {key}: {reason}")]
    Unavailable { key: String, reason: String },
    /// A create-only put was sent but its answer was lost (a timeout, a
    /// dropped connection, a server error): the object may or may not exist
    /// now, and may be another writer's. A caller that commits through the
    /// put reads the object back to learn which (see `docs/s3.md`).
    #[error(
        "the outcome of writing {key} is unknown (the request was sent, its answer lost): {reason}"
    )]
    OutcomeUnknown { key: String, reason: String },
    /// The storage refused the credentials or the operation.
    #[error("permission denied for {key}: {reason}")]
    PermissionDenied { key: String, reason: String },
    /// Any other I/O failure.
    #[error("I/O error on {key}: {source}")]
    Io { key: String, source: io::Error },
    /// An earlier write or sync failed; the backend refuses further writes rather
    /// than pretend the failed data is safe (fail-stop).
    #[error("storage is poisoned by an earlier write failure: {0}")]
    Poisoned(String),
    /// The key is not a valid object name.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// A sealed object failed authentication or its layout checks: the store
    /// was opened with another key, or the object was damaged, truncated,
    /// swapped or renamed (see [`crate::SealedStore`]). Its bytes are never used.
    #[error("wrong key or damaged object {key}: {reason}")]
    Damaged { key: String, reason: String },
    /// The store is sealed (encrypted at rest) and was opened without its key.
    #[error("the store is sealed (encrypted at rest): open it with its key")]
    KeyRequired,
    /// A key was given for a store that holds objects written without one.
    #[error("the store is not sealed: it holds modules or processes but no key check (sealed/keycheck); it cannot be opened with a key")]
    NotSealed,
}

/// What kind of failure a [`StorageError`] is, for layers above that keep
/// only a message (and for the CLI's exit messages): never told by the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageKind {
    NotFound,
    AlreadyExists,
    /// Transient: the store could not be reached; try again later.
    Unavailable,
    /// A write that may or may not have happened.
    OutcomeUnknown,
    /// Stored bytes failed verification or a committed object is missing.
    Damaged,
    NoSpace,
    PermissionDenied,
    /// Another runner holds or took over the process.
    Fenced,
    /// A sealed store without its key, or a key for an unsealed store.
    Key,
    /// Failed earlier and refuses writes; any other I/O failure; a bad key.
    Io,
}

impl StorageError {
    /// The kind of failure.
    pub fn kind(&self) -> StorageKind {
        match self {
            StorageError::AlreadyExists { .. } => StorageKind::AlreadyExists,
            StorageError::NotFound { .. } => StorageKind::NotFound,
            StorageError::NoSpace { .. } => StorageKind::NoSpace,
            StorageError::Unavailable { .. } => StorageKind::Unavailable,
            StorageError::OutcomeUnknown { .. } => StorageKind::OutcomeUnknown,
            StorageError::PermissionDenied { .. } => StorageKind::PermissionDenied,
            StorageError::Damaged { .. } => StorageKind::Damaged,
            StorageError::KeyRequired | StorageError::NotSealed => StorageKind::Key,
            StorageError::Io { .. } | StorageError::Poisoned(_) | StorageError::InvalidKey(_) => {
                StorageKind::Io
            }
        }
    }

    /// Wraps an I/O error, mapping ENOSPC to [`StorageError::NoSpace`].
    #[cold]
    pub fn io(key: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            StorageError::NoSpace {
                key: key.to_string(),
            }
        } else {
            StorageError::Io {
                key: key.to_string(),
                source,
            }
        }
    }

    /// True if the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// True if the same operation may succeed later: the storage was
    /// unavailable, or a write's outcome is unknown (resolve it first).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable { .. } | StorageError::OutcomeUnknown { .. }
        )
    }
}

/// A store of immutable objects under `/`-separated keys.
///
/// The commit protocol of Ferrite needs exactly these guarantees:
/// - `put_new` is create-only and atomic: afterwards the object exists with all of
///   its bytes, or (after an error or a crash) it does not exist at all; it is
///   durable when `put_new` returns.
/// - `put_new_deferred` is create-only too, but durable only once a later `sync`
///   naming it returns. Until then a crash may leave the object missing, or
///   present with damaged or missing bytes. It is for objects that nothing
///   committed refers to yet (the segments and maps of the epoch being built),
///   which recovery removes wholesale if their epoch never commits.
/// - Objects are never modified after creation.
/// - `list` sees every object whose `put_new` or `put_new_deferred` returned.
///
/// A backend without a cheaper deferred write keeps the defaults: deferred puts
/// are ordinary durable puts, and `sync` has nothing left to do.
pub trait StorageBackend: fmt::Debug + Send + Sync {
    /// Creates object `key` with `bytes`, durably; fails with
    /// [`StorageError::AlreadyExists`] if it exists.
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// Creates object `key` with `bytes`, durable only after [`Self::sync`];
    /// fails with [`StorageError::AlreadyExists`] if it exists.
    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.put_new(key, bytes)
    }

    /// Makes the objects `keys`, created by `put_new_deferred`, durable (their
    /// bytes and their names). On error nothing is known to be durable, and a
    /// local backend is poisoned.
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        let _ = keys;
        Ok(())
    }

    /// Reads object `key`, or the bytes of `range` that it has: a range that
    /// runs past the end of the object returns the bytes up to its end (none if
    /// it starts there or later), as an HTTP or S3 range read does. So a reader
    /// bounds what it fetches by asking for `0..max + 1` (see [`get_bounded`])
    /// and tells a truncated object from an I/O failure by the length.
    ///
    /// A backend allocates for what it returns, never for what was asked.
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError>;

    /// The keys that start with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Removes object `key`; removing a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// The bytes object `key` takes in the store, or `None` if it does not
    /// exist: for inspection (`ferrite ps`), never for reading. The default
    /// reads the object; remote backends ask for its size alone.
    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.get(key, None) {
            Ok(bytes) => Ok(Some(bytes.len() as u64)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Asks to be told at once of every object created under `prefix` from
    /// now on, by any writer of the store: `notify(key)` is called (from the
    /// backend's own thread; it must not block) with each new key. An empty
    /// key means that events may have been missed (the backend lost its
    /// link to the store and found it again): the caller looks for itself.
    ///
    /// Returns `Ok(false)` if the backend cannot push (the default): the
    /// caller polls. A subscription lasts as long as the backend.
    fn subscribe(&self, prefix: &str, notify: Notify) -> Result<bool, StorageError> {
        let _ = (prefix, notify);
        Ok(false)
    }

    /// A hint that the bytes `ranges` of these objects will be read soon:
    /// a backend in front of a slow store may start fetching them. Never
    /// fails and never blocks for long; the default does nothing.
    fn prefetch(&self, ranges: &[(String, Range<u64>)]) {
        let _ = ranges;
    }
}

/// What [`StorageBackend::subscribe`] calls with each new key.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// Reads the whole object `key` if it has at most `bytes_max` bytes; `None` if
/// it is longer (then at most `bytes_max + 1` bytes were fetched). Every object
/// of the format has such a bound, so that a damaged or hostile store cannot
/// make a reader allocate what it says.
///
/// # Errors
/// Storage failures, [`StorageError::NotFound`] included.
pub fn get_bounded(
    backend: &(impl StorageBackend + ?Sized),
    key: &str,
    bytes_max: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    let bytes = backend.get(key, Some(0..bytes_max.saturating_add(1)))?;
    Ok((bytes.len() as u64 <= bytes_max).then_some(bytes))
}

/// Checks that a key is a relative path of safe components.
///
/// # Errors
/// [`StorageError::InvalidKey`] for empty keys, empty components, `.`/`..`, and
/// characters outside `[A-Za-z0-9._-]`.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if key.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_string()))
    }
}

impl<T: StorageBackend + ?Sized> StorageBackend for std::sync::Arc<T> {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).put_new(key, bytes)
    }
    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).put_new_deferred(key, bytes)
    }
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        (**self).sync(keys)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        (**self).get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        (**self).delete(key)
    }
    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        (**self).size(key)
    }
    fn subscribe(&self, prefix: &str, notify: Notify) -> Result<bool, StorageError> {
        (**self).subscribe(prefix, notify)
    }
    fn prefetch(&self, ranges: &[(String, Range<u64>)]) {
        (**self).prefetch(ranges);
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("procs/a-b/manifests/0000000000000001").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "a/./b", "a b", "a/\u{e9}"] {
            assert!(check_key(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
