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

use ferrite_pagestore::{MapDelta, PageMapRef, SegmentId, EPOCH_MAX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Magic of a manifest: ASCII `FMAN`.
pub const MANIFEST_MAGIC: [u8; 4] = *b"FMAN";
/// The checkpoint format this build writes. Version 4: page-map deltas (the
/// manifest lists the deltas its chunks need) and the resident pages as runs.
/// Version 3 (the names of segment and map objects carry the writer
/// generation of the runner that wrote them, so two runners never write the
/// same name; the manifest records the generation of every epoch it refers
/// to and the writer's unique tag) and version 2 (page records' checksums
/// cover their segment, epochs bounded by `EPOCH_MAX`; its objects have
/// generation 0) are still read. A store of version 1 is refused with a
/// clear message, never read as damaged.
pub const FORMAT_VERSION: u32 = 4;
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
    /// Page-map chunks: chunk index and the epoch of its latest whole version.
    pub map_chunks: Vec<(u32, u64)>,
    /// The page-map deltas the chunks need (format version 4): epoch, entries,
    /// and the chunks it has entries for.
    pub map_deltas: Vec<(u64, u32, Vec<u32>)>,
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
    /// Pages that were resident at the checkpoint, in ascending order, for an
    /// optional prefetch on resume (at most the physical heap's worth).
    /// Stored as runs of consecutive pages (format version 4).
    #[serde(with = "page_runs")]
    pub resident_pages: Vec<u32>,
    /// The writer generation of each epoch whose objects `map_chunks`,
    /// `map_deltas` and `segments` name, where it is not 0 (format version 3).
    pub generations: Vec<(u64, u64)>,
    /// The unique tag of the runner that wrote the checkpoint: a commit whose
    /// answer was lost is settled by reading the manifest back and comparing it.
    pub writer: String,
}

/// Ascending page numbers stored as runs: (gap after the previous run's
/// end, length) pairs, so that a heap resident in a few stretches costs a
/// few bytes however large it is.
mod page_runs {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(pages: &[u32], serializer: S) -> Result<S::Ok, S::Error> {
        debug_assert!(
            pages.windows(2).all(|pair| pair[0] < pair[1]),
            "ascending pages"
        );
        let mut runs: Vec<(u32, u32)> = Vec::new();
        // The end of the last run pushed, and the run under way.
        let mut end = 0u64;
        let mut run: Option<(u64, u64)> = None;
        let mut push = |start: u64, len: u64, end: &mut u64| {
            runs.push((start.saturating_sub(*end) as u32, len as u32));
            *end = start + len;
        };
        for &page in pages {
            let page = u64::from(page);
            run = match run {
                Some((start, len)) if start + len == page => Some((start, len + 1)),
                other => {
                    if let Some((start, len)) = other {
                        push(start, len, &mut end);
                    }
                    Some((page, 1))
                }
            };
        }
        if let Some((start, len)) = run {
            push(start, len, &mut end);
        }
        runs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u32>, D::Error> {
        let runs = Vec::<(u32, u32)>::deserialize(deserializer)?;
        let mut pages = Vec::new();
        let mut end = 0u64;
        for (at, (gap, len)) in runs.into_iter().enumerate() {
            let start = end + u64::from(gap);
            end = start + u64::from(len);
            // Runs after the first are separated by at least one page.
            if end > 1 << 32 || len == 0 || (at > 0 && gap == 0) {
                return Err(D::Error::custom("resident page runs out of range"));
            }
            if pages.len() + len as usize > super::RESIDENT_PAGES_MAX {
                return Err(D::Error::custom("more resident pages than a heap has"));
            }
            pages.extend(start as u32..=(end - 1) as u32);
        }
        Ok(pages)
    }
}

/// The most pages a heap has (4 GiB of 4 KiB pages); more resident pages in
/// a manifest are damage.
const RESIDENT_PAGES_MAX: usize = 1 << 20;

/// The body of a version 3 manifest (no page-map deltas, resident pages
/// listed one by one).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ManifestBodyV3 {
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
    generations: Vec<(u64, u64)>,
    writer: String,
}

impl From<ManifestBodyV3> for ManifestBody {
    fn from(v3: ManifestBodyV3) -> Self {
        Self {
            process: v3.process,
            module_sha256: v3.module_sha256,
            page_size: v3.page_size,
            map_chunks: v3.map_chunks,
            map_deltas: Vec::new(),
            segments: v3.segments,
            status: v3.status,
            invocation: v3.invocation,
            engine: v3.engine,
            host: v3.host,
            created_unix_ms: v3.created_unix_ms,
            checkpoint_count: v3.checkpoint_count,
            heap_bytes: v3.heap_bytes,
            pages_written: v3.pages_written,
            pause_us: v3.pause_us,
            resident_pages: v3.resident_pages,
            generations: v3.generations,
            writer: v3.writer,
        }
    }
}

/// The body of a version 2 manifest (no generations, no writer).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
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
            map_deltas: Vec::new(),
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
            deltas: self
                .map_deltas
                .iter()
                .map(|(epoch, entries, chunks)| {
                    let delta = MapDelta {
                        entries: *entries,
                        chunks: chunks.iter().copied().collect(),
                    };
                    (*epoch, delta)
                })
                .collect(),
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
        if let Some(&(e, _, _)) = self
            .map_deltas
            .iter()
            .find(|(e, _, chunks)| !in_range(*e) || chunks.is_empty())
        {
            return Err(ManifestError::Inconsistent(format!(
                "page-map delta of epoch {e}, checkpoint {epoch}"
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
        self.map_deltas = map
            .deltas
            .iter()
            .map(|(&e, delta)| (e, delta.entries, delta.chunks.iter().copied().collect()))
            .collect();
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
        let body: ManifestBody = match version {
            2 => postcard::from_bytes::<ManifestBodyV2>(body_bytes).map(ManifestBody::from),
            3 => postcard::from_bytes::<ManifestBodyV3>(body_bytes).map(ManifestBody::from),
            _ => postcard::from_bytes(body_bytes),
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
                map_deltas: vec![],
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

    /// `manifest` as a build that wrote format `version` (2 or 3) wrote it.
    fn old_bytes(manifest: &Manifest, version: u32) -> Vec<u8> {
        let b = manifest.body.clone();
        let body = if version == 2 {
            postcard::to_allocvec(&ManifestBodyV2 {
                process: b.process,
                module_sha256: b.module_sha256,
                page_size: b.page_size,
                map_chunks: b.map_chunks,
                segments: b.segments,
                status: b.status,
                invocation: b.invocation,
                engine: b.engine,
                host: b.host,
                created_unix_ms: b.created_unix_ms,
                checkpoint_count: b.checkpoint_count,
                heap_bytes: b.heap_bytes,
                pages_written: b.pages_written,
                pause_us: b.pause_us,
                resident_pages: b.resident_pages,
            })
        } else {
            postcard::to_allocvec(&ManifestBodyV3 {
                process: b.process,
                module_sha256: b.module_sha256,
                page_size: b.page_size,
                map_chunks: b.map_chunks,
                segments: b.segments,
                status: b.status,
                invocation: b.invocation,
                engine: b.engine,
                host: b.host,
                created_unix_ms: b.created_unix_ms,
                checkpoint_count: b.checkpoint_count,
                heap_bytes: b.heap_bytes,
                pages_written: b.pages_written,
                pause_us: b.pause_us,
                resident_pages: b.resident_pages,
                generations: b.generations,
                writer: b.writer,
            })
        }
        .unwrap();
        let mut bytes = manifest.encode();
        bytes.truncate(HEADER_BYTES);
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        bytes[24..28].copy_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&[0; 4]);
        reseal(&mut bytes);
        bytes
    }

    fn v2_bytes(manifest: &Manifest) -> Vec<u8> {
        old_bytes(manifest, 2)
    }

    #[test]
    fn version_3_manifests_are_read_without_deltas() {
        let manifest = sample(4);
        let decoded = Manifest::decode(&old_bytes(&manifest, 3), 4).unwrap();
        assert_eq!(decoded, manifest);
    }

    #[test]
    fn resident_pages_are_stored_as_runs() {
        let mut manifest = sample(4);
        manifest.body.resident_pages = (0..262_144).collect();
        let bytes = manifest.encode();
        assert!(bytes.len() < 200, "{} bytes for one run", bytes.len());
        assert_eq!(Manifest::decode(&bytes, 4).unwrap(), manifest);
        for pages in [
            vec![],
            vec![u32::MAX],
            vec![0, 2, 3, 4, 9, u32::MAX - 1, u32::MAX],
            (100..200).chain(300..301).collect(),
        ] {
            manifest.body.resident_pages = pages;
            assert_eq!(Manifest::decode(&manifest.encode(), 4).unwrap(), manifest);
        }
        // Runs past the 32-bit page space, empty, or touching: refused.
        for runs in [vec![(u32::MAX, 2u32)], vec![(0, 0)], vec![(0, 2), (0, 3)]] {
            let mut body = manifest.body.clone();
            body.resident_pages.clear();
            let mut bytes = Manifest {
                body,
                ..manifest.clone()
            }
            .encode();
            let empty_runs_at = bytes.len() - 4 - 1 - 1 - manifest.body.writer.len() - 2 - 1;
            assert_eq!(bytes[empty_runs_at], 0, "the empty run list");
            let encoded = postcard::to_allocvec(&runs).unwrap();
            bytes.splice(empty_runs_at..=empty_runs_at, encoded.iter().copied());
            let body_len = (bytes.len() - HEADER_BYTES - 4) as u32;
            bytes[24..28].copy_from_slice(&body_len.to_le_bytes());
            reseal(&mut bytes);
            let error = Manifest::decode(&bytes, 4).unwrap_err();
            assert!(
                matches!(error, ManifestError::Body(_)),
                "{runs:?}: {error:?}"
            );
        }
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
