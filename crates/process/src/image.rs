//! The engine part of a checkpoint: store image, execution image, and which of
//! the process's two calls (the start function, then the entry export) runs.
//!
//! Encoded with postcard into the manifest's `engine` field, behind a version
//! number of its own, so that a manifest written by a build with another engine
//! layout is refused with a clear error rather than misread.

use ferrite_vm::{ExecutionImage, StoreImage};
use serde::{Deserialize, Serialize};

/// Version of [`EngineImage`]'s encoding; bump on any change of its fields.
pub(crate) const ENGINE_IMAGE_VERSION: u32 = 1;

/// Which call of the process is in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PhaseImage {
    /// The module's start function runs; then `main` is called with `args`
    /// (value cells of its parameter types).
    Start { main: u32, args: Vec<u64> },
    /// The entry export runs.
    Main,
}

/// Everything of the engine a checkpoint stores besides heap pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EngineImage {
    pub version: u32,
    pub store: StoreImage,
    pub phase: PhaseImage,
    pub execution: ExecutionImage,
}

impl EngineImage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("engine images always serialize")
    }

    /// Decodes an image, refusing other versions.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        // The version leads the encoding, so it can be read whatever follows.
        let (version, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| format!("engine state unreadable: {e}"))?;
        if version != ENGINE_IMAGE_VERSION {
            return Err(format!(
                "engine state version {version} is not supported by this build (it reads \
                 version {ENGINE_IMAGE_VERSION})"
            ));
        }
        postcard::from_bytes(bytes).map_err(|e| format!("engine state unreadable: {e}"))
    }
}
