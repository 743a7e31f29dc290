//! The manifest: one small object per committed checkpoint, written last.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FMAN"
//!      4     4  format version (FORMAT_VERSION)
//!      8     8  epoch
//!     16     8  parent epoch (0 for the first checkpoint)
//!     24     4  body length N
//!     28     N  body: postcard encoding of `ManifestBody`
//!   28+N     4  crc32c of bytes 0 .. 28+N
//! ```

use ferrite_pagestore::{PageMapRef, SegmentId, EPOCH_MAX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Magic of a manifest: ASCII `FMAN`.
pub const MANIFEST_MAGIC: [u8; 4] = *b"FMAN";
/// The checkpoint format this build writes. Version 3: the names of segment
/// and map objects carry the writer generation of the runner that wrote them
/// (so two runners never write the same name), and the manifest records the
/// generation of every epoch it refers to and the writer's unique tag.
/// Version 2 (page records' checksums cover their segment, epochs bounded by
/// `EPOCH_MAX`) is still read: its objects have generation 0. A store of
/// version 1 is refused with a clear message, never read as damaged.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest checkpoint format this build reads.
pub const FORMAT_VERSION_MIN: u32 = 2;
const HEADER_BYTES: usize = 28;
/// The largest manifest the format allows. A reader fetches at most one byte
/// more, whatever the object's size; a writer refuses to commit a larger one.
/// (The largest part is the list of resident pages, 4 bytes each at most.)
pub const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// What a process was doing when the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessStatus {
    /// Still running (or stopped by a signal or crash and resumable).
    Running,
    /// Finished: `proc_exit` code, or 0 after a normal return.
    Exited { code: i32 },
    /// Trapped with this message.
    Trapped { message: String },
    /// An `--invoke` call returned these results (as `ferrite run` prints them).
    Returned { results: Vec<String> },
}

/// How the process was started: enough to describe it, not to re-run it (the
/// state is in `engine` and `host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Invocation {
    /// `--invoke` export, or `None` for `_start`.
    pub export: Option<String>,
    /// Program arguments (after the file).
    pub args: Vec<String>,
    /// Other run flags to re-apply on resume (`--physical-heap`, ...), as text.
    pub flags: BTreeMap<String, String>,
}

/// Everything a checkpoint records besides the pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// The process name.
    pub process: String,
    /// SHA-256 of the module bytes, hex; the module is stored under `modules/`.
    pub module_sha256: String,
    /// Heap page size in bytes.
    pub page_size: u32,
    /// Page-map chunks: chunk index and the epoch of its latest version.
    pub map_chunks: Vec<(u32, u64)>,
    /// Segments holding live page versions: (epoch, seq, live pages).
    pub segments: Vec<(u64, u32, u32)>,
    /// Process status at the checkpoint.
    pub status: ProcessStatus,
    /// How the process was started.
    pub invocation: Invocation,
    /// Engine state (execution, globals, tables, memory size), encoded by the VM.
    pub engine: Vec<u8>,
    /// Host (WASI) state, encoded by the host.
    pub host: Vec<u8>,
    /// Wall-clock time of the checkpoint, Unix milliseconds (informational only:
    /// nothing that feeds execution depends on it).
    pub created_unix_ms: u64,
    /// Number of checkpoints of this process so far, including this one.
    pub checkpoint_count: u64,
    /// Virtual heap size in bytes at the checkpoint.
    pub heap_bytes: u64,
    /// Heap pages this checkpoint wrote (dirty since the previous one).
    pub pages_written: u64,
    /// How long the process was paused to take this checkpoint, microseconds.
    pub pause_us: u64,
    /// Pages that were resident at the checkpoint, for an optional prefetch on
    /// resume (at most the physical heap's worth).
    pub resident_pages: Vec<u32>,
    /// The writer generation of each epoch whose objects `map_chunks` and
    /// `segments` name, where it is not 0 (format version 3).
    pub generations: Vec<(u64, u64)>,
    /// The unique tag of the runner that wrote the checkpoint: a commit whose
    /// answer was lost is settled by reading the manifest back and comparing it.
    pub writer: String,
}

/// The body of a version 2 manifest (no generations, no writer).
#[derive(Deserialize)]
struct ManifestBodyV2 {
    process: String,
    module_sha256: String,
    page_size: u32,
    map_chunks: Vec<(u32, u64)>,
    segments: Vec<(u64, u32, u32)>,
    status: ProcessStatus,
    invocation: Invocation,
    engine: Vec<u8>,
    host: Vec<u8>,
    created_unix_ms: u64,
    checkpoint_count: u64,
    heap_bytes: u64,
    pages_written: u64,
    pause_us: u64,
    resident_pages: Vec<u32>,
}

impl From<ManifestBodyV2> for ManifestBody {
    fn from(v2: ManifestBodyV2) -> Self {
        Self {
            process: v2.process,
            module_sha256: v2.module_sha256,
            page_size: v2.page_size,
            map_chunks: v2.map_chunks,
            segments: v2.segments,
            status: v2.status,
            invocation: v2.invocation,
            engine: v2.engine,
            host: v2.host,
            created_unix_ms: v2.created_unix_ms,
            checkpoint_count: v2.checkpoint_count,
            heap_bytes: v2.heap_bytes,
            pages_written: v2.pages_written,
            pause_us: v2.pause_us,
            resident_pages: v2.resident_pages,
            generations: Vec::new(),
            writer: String::new(),
        }
    }
}

impl ManifestBody {
    /// The page map to open a page store with.
    pub fn page_map(&self) -> PageMapRef {
        PageMapRef {
            chunks: self.map_chunks.iter().copied().collect(),
            segments: self
                .segments
                .iter()
                .map(|&(epoch, seq, live)| (SegmentId { epoch, seq }, live))
                .collect(),
            generations: self.generations.iter().copied().collect(),
        }
    }

    /// Checks what the format says of a checkpoint of `epoch`: every page-map
    /// chunk and segment it names is of an epoch from 1 to `epoch`.
    ///
    /// # Errors
    /// [`ManifestError::Inconsistent`], naming the first part that is not.
    pub fn check(&self, epoch: u64) -> Result<(), ManifestError> {
        let in_range = |e: u64| (1..=epoch).contains(&e);
        if let Some(&(chunk, e)) = self.map_chunks.iter().find(|&&(_, e)| !in_range(e)) {
            return Err(ManifestError::Inconsistent(format!(
                "page-map chunk {chunk} of epoch {e}, checkpoint {epoch}"
            )));
        }
        if let Some(&(e, seq, _)) = self.segments.iter().find(|&&(e, _, _)| !in_range(e)) {
            return Err(ManifestError::Inconsistent(format!(
                "segment {e:x}-{seq:x}, checkpoint {epoch}"
            )));
        }
        if let Some(&(e, g)) = self
            .generations
            .iter()
            .find(|&&(e, g)| !in_range(e) || g == 0)
        {
            return Err(ManifestError::Inconsistent(format!(
                "writer generation {g} of epoch {e}, checkpoint {epoch}"
            )));
        }
        Ok(())
    }

    /// Records `map` as the page map.
    pub fn set_page_map(&mut self, map: &PageMapRef) {
        self.map_chunks = map.chunks.iter().map(|(&c, &e)| (c, e)).collect();
        self.segments = map
            .segments
            .iter()
            .map(|(id, &live)| (id.epoch, id.seq, live))
            .collect();
        self.generations = map.generations.iter().map(|(&e, &g)| (e, g)).collect();
    }
}

/// A committed (or to-be-committed) checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub epoch: u64,
    pub parent: u64,
    pub body: ManifestBody,
}

/// Why manifest bytes were rejected.
///
/// Two kinds, told apart by [`ManifestError::is_damage`]: bytes that fail
/// their checks (the medium damaged them: recovery may fall back to an older
/// checkpoint), and bytes that pass their checksum but cannot be used (another
/// build's layout, or a writer's bug: recovery stops, since falling back would
/// roll back a checkpoint that was committed whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not a Ferrite manifest (bad magic)")]
    Magic,
    #[error("checkpoint format version {found} is not supported by this build (it reads versions {FORMAT_VERSION_MIN} to {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("manifest checksum mismatch (corrupt)")]
    Checksum,
    #[error("manifest truncated")]
    Truncated,
    #[error("manifest is larger than the format allows ({MANIFEST_BYTES_MAX} bytes)")]
    TooLarge,
    #[error("manifest is for epoch {found}, expected {expected}")]
    Misdirected { expected: u64, found: u64 },
    #[error("manifest body does not decode: {0}")]
    Body(String),
    /// The body decodes but contradicts the format (an epoch out of range, a
    /// part newer than the checkpoint, a length that disagrees).
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(String),
}

impl ManifestError {
    /// True if the bytes are damaged (they fail a check a writer never fails),
    /// false if they verify but cannot be used.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            ManifestError::Magic
                | ManifestError::Checksum
                | ManifestError::Truncated
                | ManifestError::TooLarge
        )
    }
}

impl Manifest {
    /// Encodes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(&self.body).expect("manifest bodies always encode");
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + 4);
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.parent.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies the manifest stored for `epoch`.
    ///
    /// # Errors
    /// If the bytes are damaged, of another format version, for another epoch,
    /// or contradict the format (see [`ManifestError::is_damage`]).
    pub fn decode(bytes: &[u8], epoch: u64) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MANIFEST_BYTES_MAX {
            return Err(ManifestError::TooLarge);
        }
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(ManifestError::Truncated);
        }
        if bytes[0..4] != MANIFEST_MAGIC {
            return Err(ManifestError::Magic);
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (body_end, crc_at) = (bytes.len() - 4, bytes.len() - 4);
        if word(crc_at) != crc32c::crc32c(&bytes[..body_end]) {
            return Err(ManifestError::Checksum);
        }
        let version = word(4);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(ManifestError::Version { found: version });
        }
        if HEADER_BYTES as u64 + u64::from(word(24)) != body_end as u64 {
            return Err(ManifestError::Inconsistent(format!(
                "body length {} in a manifest of {} bytes",
                word(24),
                bytes.len()
            )));
        }
        if long(8) != epoch {
            return Err(ManifestError::Misdirected {
                expected: epoch,
                found: long(8),
            });
        }
        // Every epoch a checkpoint may have can be followed by the next one.
        if epoch == 0 || epoch >= EPOCH_MAX {
            return Err(ManifestError::Inconsistent(format!(
                "epoch {epoch} is out of range (1 to {})",
                EPOCH_MAX - 1
            )));
        }
        let parent = long(16);
        if parent >= epoch {
            return Err(ManifestError::Inconsistent(format!(
                "parent {parent} of checkpoint {epoch}"
            )));
        }
        let body_bytes = &bytes[HEADER_BYTES..body_end];
        let body: ManifestBody = if version == 2 {
            postcard::from_bytes::<ManifestBodyV2>(body_bytes).map(ManifestBody::from)
        } else {
            postcard::from_bytes(body_bytes)
        }
        .map_err(|e| ManifestError::Body(e.to_string()))?;
        body.check(epoch)?;
        Ok(Self {
            epoch,
            parent,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn sample(epoch: u64) -> Manifest {
        Manifest {
            epoch,
            parent: epoch - 1,
            body: ManifestBody {
                process: "demo".into(),
                module_sha256: "ab".repeat(32),
                page_size: 4096,
                map_chunks: vec![(0, epoch)],
                segments: vec![(epoch, 0, 3)],
                status: ProcessStatus::Running,
                invocation: Invocation::default(),
                engine: vec![1, 2, 3],
                host: vec![],
                created_unix_ms: 0,
                checkpoint_count: epoch,
                heap_bytes: 65536,
                pages_written: 1,
                pause_us: 250,
                resident_pages: vec![0, 7],
                generations: vec![(epoch, 5)],
                writer: "host-1-abc".into(),
            },
        }
    }

    #[test]
    fn round_trip() {
        let manifest = sample(3);
        assert_eq!(Manifest::decode(&manifest.encode(), 3).unwrap(), manifest);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = sample(2).encode();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(
                Manifest::decode(&damaged, 2).is_err(),
                "flip at byte {at} undetected"
            );
        }
    }

    /// Re-seals damaged manifest bytes with a valid checksum.
    fn reseal(bytes: &mut [u8]) {
        let len = bytes.len();
        let crc = crc32c::crc32c(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_manifest_that_verifies_but_contradicts_the_format_is_not_damage() {
        let mut bytes = sample(2).encode();
        bytes[28] = 0xff; // the body's first byte: the process name's length
        reseal(&mut bytes);
        let error = Manifest::decode(&bytes, 2).unwrap_err();
        assert!(matches!(error, ManifestError::Body(_)), "{error:?}");
        assert!(!error.is_damage());

        let mut future = sample(2);
        future.body.segments.push((3, 0, 1));
        let error = Manifest::decode(&future.encode(), 2).unwrap_err();
        assert!(matches!(error, ManifestError::Inconsistent(_)), "{error:?}");

        let mut flipped = sample(2).encode();
        flipped[40] ^= 1;
        assert!(Manifest::decode(&flipped, 2).unwrap_err().is_damage());
    }

    #[test]
    fn a_manifest_whose_epoch_cannot_be_followed_is_refused() {
        for epoch in [u64::MAX, EPOCH_MAX] {
            let mut manifest = sample(2);
            manifest.epoch = epoch;
            let error = Manifest::decode(&manifest.encode(), epoch).unwrap_err();
            assert!(error.to_string().contains("out of range"), "{error}");
        }
        let mut orphan = sample(2);
        orphan.parent = 2;
        assert!(Manifest::decode(&orphan.encode(), 2).is_err());
    }

    #[test]
    fn other_versions_are_refused_clearly() {
        let mut bytes = sample(2).encode();
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        let len = bytes.len();
        let crc = crc32c::crc32c(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
        let error = Manifest::decode(&bytes, 2).unwrap_err();
        assert_eq!(error, ManifestError::Version { found: 1 });
        assert!(error.to_string().contains("version 1 is not supported"));
    }

    /// A version 2 manifest, as the previous build wrote it: the v3 body
    /// without its last two fields (postcard writes fields in order).
    fn v2_bytes(manifest: &Manifest) -> Vec<u8> {
        let mut v2 = manifest.clone();
        v2.body.generations.clear();
        v2.body.writer.clear();
        let mut bytes = v2.encode();
        // The two empty fields are one length byte each, at the body's end.
        let len = bytes.len();
        bytes.drain(len - 6..len - 4);
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        let body_len = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) - 2;
        bytes[24..28].copy_from_slice(&body_len.to_le_bytes());
        reseal(&mut bytes);
        bytes
    }

    #[test]
    fn version_2_manifests_are_read_with_generation_0() {
        let manifest = sample(4);
        let decoded = Manifest::decode(&v2_bytes(&manifest), 4).unwrap();
        assert!(decoded.body.generations.is_empty());
        assert_eq!(decoded.body.writer, "");
        assert_eq!(decoded.body.engine, manifest.body.engine);
        assert_eq!(decoded.body.page_map().generation(4), 0);
        assert_eq!(
            Manifest::decode(&manifest.encode(), 4)
                .unwrap()
                .body
                .page_map()
                .generation(4),
            5
        );
    }

    #[test]
    fn a_generation_0_or_of_a_later_epoch_is_inconsistent() {
        for generations in [vec![(4, 0)], vec![(5, 1)]] {
            let mut manifest = sample(4);
            manifest.body.generations = generations;
            let error = Manifest::decode(&manifest.encode(), 4).unwrap_err();
            assert!(matches!(error, ManifestError::Inconsistent(_)), "{error:?}");
        }
    }
}
