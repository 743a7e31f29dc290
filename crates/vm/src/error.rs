//! The engine's error type.

use crate::Trap;

/// Everything that can go wrong loading, linking or running a module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a well-formed module (or the text does not parse).
    #[error("malformed module: {0}")]
    Malformed(String),
    /// The module is well-formed but fails validation.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// The module uses a WebAssembly feature Ferrite does not implement.
    #[error("unsupported feature: {0}")]
    Unsupported(String),
    /// The module exceeds one of Ferrite's implementation limits.
    #[error("implementation limit exceeded: {0}")]
    Limit(String),
    /// An import is missing or has the wrong type.
    #[error("unlinkable module: {0}")]
    Link(String),
    /// Execution trapped.
    #[error("wasm trap: {0}")]
    Trap(#[from] Trap),
    /// A memory's backing store failed (I/O, corruption) while the code touched
    /// a page: the memory is poisoned and the execution cannot go on.
    #[error("storage error: {0}")]
    Storage(String),
    /// The embedder misused the API (wrong argument count or type, unknown export...).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    #[cold]
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    #[cold]
    pub(crate) fn link(message: impl Into<String>) -> Self {
        Error::Link(message.into())
    }
}
