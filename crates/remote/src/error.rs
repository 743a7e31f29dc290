//! Errors of the remote layer, and the unknown outcome of a write.

use ferrite_pagestore::StorageError;
use std::{error::Error, fmt};

/// Why a remote store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The location is not `s3://BUCKET/PREFIX`.
    #[error("invalid store URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    /// The client could not be configured (from the `AWS_*` variables).
    #[error("cannot configure the S3 client for {location}: {source}")]
    Config {
        location: String,
        source: object_store::Error,
    },
    /// The first request failed: a wrong endpoint, refused credentials, a
    /// missing bucket. `hint` says which of the settings to check.
    #[error("cannot open {location}: {hint}: {source}")]
    Open {
        location: String,
        hint: &'static str,
        source: StorageError,
    },
    /// The storage overwrote an object on a create-only put, so it cannot
    /// fence two runners of one process; opening for writing needs
    /// `single_writer` (the user guarantees a single writer).
    #[error(
        "{location} does not honour create-only writes ({detail}); refusing to write \
         to it unless a single writer is guaranteed (single_writer)"
    )]
    NotCreateOnly { location: String, detail: String },
    /// An [`crate::S3Options`] field is out of its bounds.
    #[error("S3 option {option} = {value} is out of its bounds {min} ..= {max}")]
    InvalidOption {
        option: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// A create-only put whose request was sent but whose answer was lost (a
/// timeout, a dropped connection, a server error): the object may or may not
/// have been created by it. It is reported as [`StorageError::OutcomeUnknown`], never
/// as success nor as a plain failure, because a caller that commits through
/// the put (a manifest) must not assume either.
#[derive(Debug)]
pub struct OutcomeUnknown {
    /// Attempts made, the last included.
    pub attempts: u32,
    /// What the last attempt ended with.
    pub last: String,
}

impl fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the outcome of the write is unknown: a request was sent but its answer was lost, \
             so the object may or may not exist ({} attempts, last: {})",
            self.attempts, self.last
        )
    }
}

impl Error for OutcomeUnknown {}

/// True if `error` is a write whose outcome is unknown
/// ([`StorageError::OutcomeUnknown`]).
pub fn is_outcome_unknown(error: &StorageError) -> bool {
    matches!(error, StorageError::OutcomeUnknown { .. })
}
