//! Page versions: the pages of one process's heap as immutable records in segment
//! objects, found through a page map kept in chunk objects.
//!
//! A new version of a page (written back on eviction, or at a checkpoint) is
//! appended to the open segment of the epoch being built; it never overwrites the
//! version a committed checkpoint refers to. [`PageStore::commit_maps`] writes the
//! open segment and the changed page-map chunks, makes every object of the epoch
//! durable, and returns what the checkpoint manifest must record; the manifest
//! itself is written by the checkpoint layer.
//!
//! Objects of the epoch being built are written with `put_new_deferred`: nothing
//! committed refers to them, so they need to be durable only when the epoch's
//! manifest commits, and `commit_maps` syncs them all at once before it returns.
//!
//! A commit writes a changed chunk whole only when many of its entries changed;
//! the few changes of the other chunks go into one *page-map delta* object of
//! the epoch, so that a checkpoint of a few pages spread over a large heap
//! writes a few kilobytes of map, not 64 KiB per chunk it touched. A chunk is
//! then its latest whole version with the deltas of later epochs applied in
//! order. The deltas a checkpoint still needs are bounded
//! ([`DELTAS_LIVE_MAX`] objects, [`DELTA_ENTRIES_LIVE_MAX`] entries): beyond,
//! a commit writes whole the chunks of the oldest delta, which then is no
//! longer needed.
//!
//! Memory is bounded whatever the heap size: the open segment (1 MiB), at most
//! `chunks_loaded_max` page-map chunks (64 KiB each; a clean one is dropped and
//! reloaded when needed, a dirty one is first written as an object of the epoch
//! being built), the live deltas' entries (at most [`DELTA_ENTRIES_LIVE_MAX`]),
//! one readahead buffer, and a few bytes per live segment.

use crate::{
    backend::{get_bounded, StorageBackend, StorageError},
    record::{
        check_entry, decode_delta, decode_map, decode_record, encode_delta, encode_map,
        encode_record, encode_record_in, map_key, segment_header, FormatError, Location, SegmentId,
        CHUNK_PAGES, DELTA_BYTES_MAX, DELTA_CHUNK, EPOCH_MAX, MAP_BYTES, RECORD_HEADER_BYTES,
        SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
    },
};
use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    sync::Arc,
};

/// Why a page could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PageStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes failed verification, or a committed object is missing or
    /// truncated: they are never used.
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: FormatError },
}

impl PageStoreError {
    /// The error for reading committed object `key`: a missing object is
    /// damage, not an I/O failure (a committed checkpoint names it).
    #[cold]
    fn reading(key: &str, error: StorageError) -> Self {
        match error {
            StorageError::NotFound { .. } => PageStoreError::Corrupt {
                key: key.to_string(),
                reason: FormatError::Missing,
            },
            other => PageStoreError::Storage(other),
        }
    }
}

/// The most bytes a segment buffers in memory before it is written out.
pub const SEGMENT_BYTES_MAX: usize = 1 << 20;

/// The most bytes one read fetches ahead when faults walk the heap in order and
/// the next pages' records follow each other in one segment.
pub const READAHEAD_BYTES_MAX: usize = 256 << 10;

/// Default limit of loaded page-map chunks (64 KiB each): 2 MiB, the maps of
/// 512 MiB of heap with 4 KiB pages.
pub const CHUNKS_LOADED_MAX: usize = 32;

/// Page-map puts a commit keeps under way at once.
const MAP_PUTS_AT_ONCE: usize = 8;

/// Full segments whose puts are under way at once while the epoch is being
/// built (each put to a remote store waits its round trip; with several
/// under way, writing back a large dirty heap runs at the link's speed).
pub const SEGMENT_PUTS_AT_ONCE: usize = 4;

/// A chunk with more entries changed in an epoch is written whole at its
/// commit (64 KiB, against 20 bytes per entry in the delta).
pub const DELTA_CHUNK_ENTRIES_MAX: u32 = CHUNK_PAGES / 4;

/// The most page-map deltas a checkpoint may need: loading a chunk reads at
/// most this many deltas besides the chunk.
pub const DELTAS_LIVE_MAX: usize = 16;

/// The most entries in the deltas a checkpoint may need (they are kept in
/// memory once read: 24 bytes each).
pub const DELTA_ENTRIES_LIVE_MAX: u64 = 1 << 16;

/// Least and most segment bytes a commit reads to compact sparse segments; in
/// between, twice what the epoch wrote, so that compaction frees at least as
/// much as the epoch made dead.
pub const COMPACTION_BYTES_MIN: u64 = SEGMENT_BYTES_MAX as u64;
/// See [`COMPACTION_BYTES_MIN`].
pub const COMPACTION_BYTES_MAX: u64 = 64 << 20;

/// A loaded page-map chunk of the current epoch.
#[derive(Debug)]
struct Chunk {
    entries: Box<[Location]>,
    /// Changed since it was last written: must be written at the next commit (or
    /// before it is dropped).
    dirty: bool,
    /// Which entries changed since it was last written (one bit per entry;
    /// empty while none did), for the epoch's delta.
    changed: Vec<u64>,
    /// How many bits of `changed` are set.
    changed_count: u32,
    /// Value of the use counter at its last use, for LRU eviction.
    used: u64,
}

/// A full segment of the epoch being built whose put is under way (or
/// failed): its bytes stay here, for reads, until the put is known to have
/// landed.
#[derive(Debug)]
struct SegmentPut {
    seq: u32,
    bytes: Arc<Vec<u8>>,
    /// The put's thread; `None` once it failed (the put is made again).
    put: Option<std::thread::JoinHandle<Result<(), StorageError>>>,
}

/// The open (not yet written) segment of the epoch being built.
#[derive(Debug)]
struct OpenSegment {
    id: SegmentId,
    bytes: Vec<u8>,
    records: u32,
}

/// What the store knows about a segment that holds live page versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentCounts {
    /// Records that are the latest version of their page.
    live: u32,
    /// Records in the segment; for segments of earlier runs (the manifest keeps
    /// live counts only) the most a segment can hold.
    records: u32,
}

/// Records of one segment fetched ahead of the faults that will want them.
/// Verified record by record when used, like any fetched record.
#[derive(Debug, Default)]
struct ReadAhead {
    segment: Option<SegmentId>,
    /// Offset in the segment of `bytes[0]`.
    start: u32,
    bytes: Vec<u8>,
}

impl ReadAhead {
    /// The buffered record at `location`, if it is buffered.
    fn record(&self, location: Location, record_len: usize) -> Option<&[u8]> {
        if self.segment != Some(location.segment()) {
            return None;
        }
        let at = location.offset.checked_sub(self.start)? as usize;
        self.bytes.get(at..at + record_len)
    }
}

impl Chunk {
    fn new(entries: Box<[Location]>) -> Self {
        Self {
            entries,
            dirty: false,
            changed: Vec::new(),
            changed_count: 0,
            used: 0,
        }
    }

    /// Sets entry `index` to `location`, returning the entry it replaces.
    fn set(&mut self, index: usize, location: Location) -> Location {
        self.dirty = true;
        if self.changed.is_empty() {
            self.changed = vec![0; CHUNK_PAGES as usize / 64];
        }
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.changed[word] & bit == 0 {
            self.changed[word] |= bit;
            self.changed_count += 1;
        }
        std::mem::replace(&mut self.entries[index], location)
    }

    /// Marks the chunk as written.
    fn written(&mut self) {
        self.dirty = false;
        self.changed = Vec::new();
        self.changed_count = 0;
    }

    /// The changed entries, as (entry index, location), in ascending order.
    fn changes(&self) -> impl Iterator<Item = (u32, Location)> + '_ {
        self.changed
            .iter()
            .enumerate()
            .flat_map(move |(word, &bits)| {
                (0..64u32)
                    .filter(move |bit| bits & (1 << bit) != 0)
                    .map(move |bit| {
                        let index = word as u32 * 64 + bit;
                        (index, self.entries[index as usize])
                    })
            })
    }
}

/// What a checkpoint records about one page-map delta it needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapDelta {
    /// Entries in the delta object.
    pub entries: u32,
    /// The chunks it has entries for.
    pub chunks: BTreeSet<u32>,
}

/// What a checkpoint manifest records about the page store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageMapRef {
    /// For each chunk that has ever been written whole: the epoch of its latest
    /// whole version.
    pub chunks: BTreeMap<u32, u64>,
    /// The page-map deltas the chunks need, by epoch: a chunk is its whole
    /// version (or no entries) with the deltas of later epochs that name it
    /// applied in order.
    pub deltas: BTreeMap<u64, MapDelta>,
    /// Live page versions per segment, for garbage collection and compaction.
    pub segments: BTreeMap<SegmentId, u32>,
    /// The writer generation of each epoch whose objects the map refers to,
    /// where it is not 0: object names carry it (see [`SegmentId::key`]).
    pub generations: BTreeMap<u64, u64>,
}

impl PageMapRef {
    /// The writer generation of the objects of `epoch` (0 if none recorded).
    pub fn generation(&self, epoch: u64) -> u64 {
        self.generations.get(&epoch).copied().unwrap_or(0)
    }

    /// The object name of segment `id`.
    pub fn segment_key(&self, prefix: &str, id: SegmentId) -> String {
        id.key(prefix, self.generation(id.epoch))
    }

    /// The object name of page-map chunk `chunk` of `epoch`.
    pub fn map_key(&self, prefix: &str, epoch: u64, chunk: u32) -> String {
        map_key(prefix, epoch, self.generation(epoch), chunk)
    }

    /// The object name of the page-map delta of `epoch`.
    pub fn delta_key(&self, prefix: &str, epoch: u64) -> String {
        map_key(prefix, epoch, self.generation(epoch), DELTA_CHUNK)
    }

    /// The names of every page-map object (chunks and deltas) the map needs.
    pub fn map_keys(&self, prefix: &str) -> Vec<String> {
        self.chunks
            .iter()
            .map(|(&chunk, &epoch)| self.map_key(prefix, epoch, chunk))
            .chain(
                self.deltas
                    .keys()
                    .map(|&epoch| self.delta_key(prefix, epoch)),
            )
            .collect()
    }

    /// Whether chunk `index` has any entry (a whole version or a delta).
    fn has_chunk(&self, index: u32) -> bool {
        self.chunks.contains_key(&index)
            || self
                .deltas
                .values()
                .any(|delta| delta.chunks.contains(&index))
    }
}

/// Counters, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageStoreStats {
    pub pages_read: u64,
    /// Pages of `pages_read` found in the readahead buffer (no I/O).
    pub pages_read_ahead: u64,
    pub pages_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_written: u64,
    /// Page-map chunks written whole.
    pub maps_written: u64,
    /// Page-map deltas written.
    pub deltas_written: u64,
    /// Segments of the epoch being built deleted as soon as none of their
    /// records was live any more.
    pub segments_dropped: u64,
    /// Live records moved out of sparse segments by compaction.
    pub pages_compacted: u64,
    /// Loaded page-map chunks dropped to stay within the limit.
    pub chunks_evicted: u64,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Sparse segments whose live records were moved.
    pub segments: u64,
    /// Records moved.
    pub pages: u64,
    /// Segment bytes read.
    pub bytes_read: u64,
    /// Live records left where they are because they failed verification (they
    /// are reported when the page is read).
    pub records_damaged: u64,
}

/// The page versions of one process.
#[derive(Debug)]
pub struct PageStore {
    backend: Arc<dyn StorageBackend>,
    prefix: String,
    page_size: usize,
    /// The epoch being built (the last committed epoch plus one).
    epoch: u64,
    /// The writer generation in the names of the objects this store writes.
    generation: u64,
    committed: PageMapRef,
    chunks: BTreeMap<u32, Chunk>,
    chunks_loaded_max: usize,
    /// Use counter of loaded chunks.
    chunk_clock: u64,
    /// Chunks that have an object of the epoch being built (`maps/<epoch>-<chunk>`).
    maps_written: BTreeSet<u32>,
    /// Segments with live records, the open one included.
    segments: BTreeMap<SegmentId, SegmentCounts>,
    open: OpenSegment,
    /// Full segments of the epoch being built whose puts are under way,
    /// oldest first (at most [`SEGMENT_PUTS_AT_ONCE`]).
    puts: std::collections::VecDeque<SegmentPut>,
    /// Objects of the epoch being built written without sync: segment sequence
    /// numbers and chunk indices.
    segments_unsynced: BTreeSet<u32>,
    maps_unsynced: BTreeSet<u32>,
    /// The epoch's delta was written without sync.
    delta_unsynced: bool,
    /// The entries of the live deltas read so far (and of the epochs this
    /// store committed), by epoch.
    deltas: BTreeMap<u64, Vec<(u32, Location)>>,
    readahead: ReadAhead,
    /// The page last read, to tell sequential faults.
    last_read: Option<u32>,
    /// Record bytes appended in the epoch being built (the compaction budget).
    bytes_appended: u64,
    /// Most segment bytes `commit_maps` reads to compact.
    compaction_bytes_max: u64,
    /// A chunk with more entries changed in the epoch is written whole
    /// ([`DELTA_CHUNK_ENTRIES_MAX`]; tests lower it).
    delta_chunk_entries_max: u32,
    stats: PageStoreStats,
}

impl PageStore {
    /// The page store of a process whose last committed checkpoint is
    /// `committed_epoch` (0 for a new process) with page map `map`.
    ///
    /// Objects of later epochs (left by a crash before their commit) must have
    /// been removed by the caller, see [`PageStore::remove_uncommitted`].
    ///
    /// # Panics
    /// If `page_size` is not a power of two of at least 512, or
    /// `committed_epoch` is past [`EPOCH_MAX`] (the checkpoint layer refuses
    /// such epochs as damage before they get here).
    pub fn open(
        backend: Arc<dyn StorageBackend>,
        prefix: impl Into<String>,
        page_size: usize,
        committed_epoch: u64,
        map: PageMapRef,
    ) -> Self {
        assert!(
            page_size.is_power_of_two() && page_size >= 512,
            "page size {page_size}"
        );
        assert!(committed_epoch < EPOCH_MAX, "epoch {committed_epoch}");
        let epoch = committed_epoch + 1;
        let capacity = segment_capacity(page_size);
        let segments = map
            .segments
            .iter()
            .filter(|(_, &live)| live > 0)
            .map(|(&id, &live)| {
                let records = capacity.max(live);
                (id, SegmentCounts { live, records })
            })
            .collect();
        Self {
            backend,
            prefix: prefix.into(),
            page_size,
            epoch,
            generation: 0,
            committed: map,
            chunks: BTreeMap::new(),
            chunks_loaded_max: CHUNKS_LOADED_MAX,
            chunk_clock: 0,
            maps_written: BTreeSet::new(),
            segments,
            open: OpenSegment {
                id: SegmentId { epoch, seq: 0 },
                bytes: Vec::new(),
                records: 0,
            },
            puts: std::collections::VecDeque::new(),
            segments_unsynced: BTreeSet::new(),
            maps_unsynced: BTreeSet::new(),
            delta_unsynced: false,
            deltas: BTreeMap::new(),
            readahead: ReadAhead::default(),
            last_read: None,
            bytes_appended: 0,
            compaction_bytes_max: COMPACTION_BYTES_MAX,
            delta_chunk_entries_max: DELTA_CHUNK_ENTRIES_MAX,
            stats: PageStoreStats::default(),
        }
    }

    /// Names the objects this store writes with writer generation
    /// `generation` (unique to this runner: two runners of a process never
    /// write the same object name). Without it names carry no generation, as
    /// in format version 2.
    ///
    /// # Panics
    /// If anything was written already.
    pub fn set_generation(&mut self, generation: u64) {
        assert!(
            self.open.records == 0
                && self.maps_written.is_empty()
                && self.segments_unsynced.is_empty(),
            "the generation is set before the first write"
        );
        self.generation = generation;
    }

    /// The writer generation of the objects of `epoch`.
    fn generation_of(&self, epoch: u64) -> u64 {
        if epoch == self.epoch {
            self.generation
        } else {
            self.committed.generation(epoch)
        }
    }

    fn segment_key(&self, id: SegmentId) -> String {
        id.key(&self.prefix, self.generation_of(id.epoch))
    }

    /// Limits the segment bytes each [`PageStore::commit_maps`] reads to compact
    /// sparse segments (default [`COMPACTION_BYTES_MAX`]; 0 turns compaction off).
    pub fn set_compaction_bytes_max(&mut self, bytes: u64) {
        self.compaction_bytes_max = bytes;
    }

    /// Limits the loaded page-map chunks to `chunks` (64 KiB each with 4 KiB
    /// pages). Takes effect at the next chunk load.
    ///
    /// # Panics
    /// If `chunks` is zero.
    pub fn set_chunks_loaded_max(&mut self, chunks: usize) {
        assert!(chunks > 0, "at least one page-map chunk must fit");
        self.chunks_loaded_max = chunks;
    }

    /// Sizes the loaded page-map chunks to a heap of at most `frames` resident
    /// pages (`None`: unbounded): enough chunks to map four times as many pages
    /// (a 64 KiB chunk maps 16 MiB, so they take a sixty-fourth of the frames'
    /// memory), at least [`CHUNKS_LOADED_MAX`]; every chunk for an unbounded
    /// heap, whose frames outweigh its chunks 256 to 1. A process whose
    /// resident pages are spread over more chunks than it keeps reloads a
    /// chunk at each checkpoint and fault that needs it again.
    pub fn fit_chunks_to_frames(&mut self, frames: Option<usize>) {
        let chunks = frames.map_or(usize::MAX, |frames| {
            (frames.saturating_mul(4) / CHUNK_PAGES as usize).max(CHUNKS_LOADED_MAX)
        });
        self.set_chunks_loaded_max(chunks);
    }

    /// Removes segment and map objects of epochs after `committed_epoch`: the
    /// remains of a checkpoint that crashed before its manifest was written,
    /// whole, torn or partly written.
    ///
    /// # Errors
    /// If listing or deleting fails.
    pub fn remove_uncommitted(
        backend: &dyn StorageBackend,
        prefix: &str,
        committed_epoch: u64,
    ) -> Result<usize, StorageError> {
        let mut removed = 0;
        for dir in ["segments/", "maps/"] {
            for key in backend.list(&format!("{prefix}{dir}"))? {
                let name = key.rsplit('/').next().unwrap_or("");
                let epoch = name
                    .split('-')
                    .next()
                    .and_then(|e| u64::from_str_radix(e, 16).ok());
                if epoch.is_none_or(|epoch| epoch > committed_epoch) {
                    backend.delete(&key)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The epoch being built.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> PageStoreStats {
        self.stats
    }

    fn record_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.page_size
    }

    /// The loaded chunk `index`, loading it (and dropping another if the limit
    /// is reached) if needed.
    fn chunk(&mut self, index: u32) -> Result<&mut Chunk, PageStoreError> {
        self.chunk_clock += 1;
        if !self.chunks.contains_key(&index) {
            if self.chunks.len() >= self.chunks_loaded_max {
                self.evict_chunk()?;
            }
            let entries = self.load_chunk(index)?;
            self.chunks.insert(index, Chunk::new(entries));
        }
        let chunk = self.chunks.get_mut(&index).expect("loaded above");
        chunk.used = self.chunk_clock;
        Ok(chunk)
    }

    /// The epoch of the latest whole version of chunk `index` (of the epoch
    /// being built if it was written whole in it).
    fn chunk_base(&self, index: u32) -> Option<u64> {
        if self.maps_written.contains(&index) {
            Some(self.epoch)
        } else {
            self.committed.chunks.get(&index).copied()
        }
    }

    /// The entries of chunk `index`: its latest whole version (or none) with
    /// the later committed deltas applied, every entry checked.
    fn load_chunk(&mut self, index: u32) -> Result<Box<[Location]>, PageStoreError> {
        let base = self.chunk_base(index);
        let later: Vec<u64> = self
            .committed
            .deltas
            .range(base.map_or(0, |epoch| epoch + 1)..)
            .filter(|(_, delta)| delta.chunks.contains(&index))
            .map(|(&epoch, _)| epoch)
            .collect();
        let mut entries = match base {
            Some(epoch) => self.load_whole_chunk(index, epoch, later.is_empty())?,
            None => vec![Location::NONE; CHUNK_PAGES as usize].into_boxed_slice(),
        };
        let Some(&newest) = later.last() else {
            return Ok(entries);
        };
        let first = index * CHUNK_PAGES;
        for &epoch in &later {
            let delta = self.delta(epoch)?;
            let from = delta.partition_point(|&(page, _)| page < first);
            for &(page, location) in delta[from..]
                .iter()
                .take_while(|&&(page, _)| page / CHUNK_PAGES == index)
            {
                entries[(page % CHUNK_PAGES) as usize] = location;
            }
        }
        // The result is checked whole: an entry a later delta replaced may
        // name a segment that is gone.
        self.check_entries(&entries, newest)
            .map_err(|reason| PageStoreError::Corrupt {
                key: self.committed.delta_key(&self.prefix, newest),
                reason,
            })?;
        Ok(entries)
    }

    /// The entries of the committed delta of `epoch`, read once.
    fn delta(&mut self, epoch: u64) -> Result<&[(u32, Location)], PageStoreError> {
        if !self.deltas.contains_key(&epoch) {
            let key = self.committed.delta_key(&self.prefix, epoch);
            let bytes = get_bounded(&*self.backend, &key, DELTA_BYTES_MAX as u64)
                .map_err(|error| PageStoreError::reading(&key, error))?;
            let corrupt = |reason| PageStoreError::Corrupt {
                key: key.clone(),
                reason,
            };
            let bytes = bytes.ok_or_else(|| {
                corrupt(FormatError::Oversized {
                    max: DELTA_BYTES_MAX as u64,
                })
            })?;
            self.stats.bytes_read += bytes.len() as u64;
            let entries = decode_delta(&bytes, epoch).map_err(corrupt)?;
            let record_len = self.record_len();
            for (index, &(_, entry)) in (0u32..).zip(&entries) {
                check_entry(entry, epoch, record_len, SEGMENT_BYTES_MAX)
                    .and_then(|()| {
                        (entry.epoch == epoch)
                            .then_some(())
                            .ok_or("names a record of another epoch")
                    })
                    .map_err(|reason| corrupt(FormatError::Entry { index, reason }))?;
            }
            let recorded = self.committed.deltas.get(&epoch);
            let agrees = recorded.is_some_and(|delta| {
                delta.entries as usize == entries.len()
                    && entries
                        .iter()
                        .all(|&(page, _)| delta.chunks.contains(&(page / CHUNK_PAGES)))
            });
            if !agrees {
                return Err(corrupt(FormatError::Entry {
                    index: 0,
                    reason: "the delta disagrees with the checkpoint's record of it",
                }));
            }
            self.deltas.insert(epoch, entries);
        }
        Ok(&self.deltas[&epoch])
    }

    /// The entries of the whole version of chunk `index` written at `epoch`,
    /// checked if `check` (else the caller checks what it makes of them).
    fn load_whole_chunk(
        &mut self,
        index: u32,
        epoch: u64,
        check: bool,
    ) -> Result<Box<[Location]>, PageStoreError> {
        let key = map_key(&self.prefix, epoch, self.generation_of(epoch), index);
        let bytes = get_bounded(&*self.backend, &key, MAP_BYTES as u64)
            .map_err(|error| PageStoreError::reading(&key, error))?;
        let corrupt = |reason| PageStoreError::Corrupt {
            key: key.clone(),
            reason,
        };
        let Some(bytes) = bytes else {
            return Err(corrupt(FormatError::Oversized {
                max: MAP_BYTES as u64,
            }));
        };
        self.stats.bytes_read += bytes.len() as u64;
        let entries = decode_map(&bytes, epoch, index).map_err(corrupt)?;
        if check {
            self.check_entries(&entries, epoch).map_err(corrupt)?;
        }
        Ok(entries.into_boxed_slice())
    }

    /// Checks every entry of a chunk version written at `epoch` before any is
    /// used: each names a record boundary of a segment that holds live records,
    /// no newer than the chunk (and within the open segment's bytes if it is
    /// that one). A chunk that passes its checksum may still have been written
    /// by a broken or hostile writer.
    fn check_entries(&self, entries: &[Location], epoch: u64) -> Result<(), FormatError> {
        let record_len = self.record_len();
        let mut known = None;
        for (index, &entry) in (0u32..).zip(entries) {
            let bad = |reason| FormatError::Entry { index, reason };
            check_entry(entry, epoch, record_len, SEGMENT_BYTES_MAX).map_err(bad)?;
            if !entry.is_some() || known == Some(entry.segment()) {
                continue;
            }
            if !self.segments.contains_key(&entry.segment()) {
                return Err(bad("names a segment the checkpoint does not list"));
            }
            known = Some(entry.segment());
            if entry.segment() == self.open.id
                && entry.offset as usize + record_len > self.open.bytes.len()
            {
                return Err(bad("offset past the open segment"));
            }
        }
        Ok(())
    }

    /// Drops the least recently used loaded chunk, preferring clean ones; a
    /// dirty one is written first (as an object of the epoch being built).
    fn evict_chunk(&mut self) -> Result<(), PageStoreError> {
        let Some(victim) = self
            .chunks
            .iter()
            .min_by_key(|(_, chunk)| (chunk.dirty, chunk.used))
            .map(|(&index, _)| index)
        else {
            return Ok(());
        };
        self.write_map(victim)?;
        self.chunks.remove(&victim);
        self.stats.chunks_evicted += 1;
        Ok(())
    }

    /// Writes the loaded chunk `index` whole if it is dirty, as an object of
    /// the epoch being built (replacing an earlier version of this epoch:
    /// nothing committed refers to it), without sync.
    fn write_map(&mut self, index: u32) -> Result<(), PageStoreError> {
        let dirty = self.chunks.get(&index).is_some_and(|chunk| chunk.dirty);
        if dirty {
            self.write_maps(&[index], &[])?;
        }
        Ok(())
    }

    /// Writes chunks `whole` (loaded or not) whole, and the epoch's delta of
    /// `delta` (pages in ascending order) if it is not empty, as `write_map`
    /// does, up to [`MAP_PUTS_AT_ONCE`] puts at a time: each put to a remote
    /// store waits a round trip, and a checkpoint of a heap dirtied all over
    /// writes one map per 16 MiB of it. On a failure, the maps written before
    /// it count as written (as with one put at a time) and the error is
    /// returned.
    fn write_maps(
        &mut self,
        whole: &[u32],
        delta: &[(u32, Location)],
    ) -> Result<(), PageStoreError> {
        let mut loaded = BTreeMap::new();
        for &index in whole {
            if !self.chunks.contains_key(&index) {
                loaded.insert(index, self.load_chunk(index)?);
            }
        }
        // (chunk, or `DELTA_CHUNK` for the delta; key; bytes)
        let mut pending: Vec<(u32, String, Vec<u8>)> = Vec::new();
        for &index in whole {
            let entries = match self.chunks.get(&index) {
                Some(chunk) => &chunk.entries,
                None => &loaded[&index],
            };
            let key = map_key(&self.prefix, self.epoch, self.generation, index);
            if self.maps_written.contains(&index) {
                self.backend.delete(&key)?;
            }
            pending.push((index, key, encode_map(self.epoch, index, entries)));
        }
        if !delta.is_empty() {
            let key = map_key(&self.prefix, self.epoch, self.generation, DELTA_CHUNK);
            pending.push((DELTA_CHUNK, key, encode_delta(self.epoch, delta)));
        }
        let backend = &*self.backend;
        let results: Vec<Result<(), StorageError>> = if pending.len() < 2 {
            pending
                .iter()
                .map(|(_, key, bytes)| backend.put_new_deferred(key, bytes))
                .collect()
        } else {
            let per_thread = pending.len().div_ceil(MAP_PUTS_AT_ONCE);
            std::thread::scope(|scope| {
                let workers: Vec<_> = pending
                    .chunks(per_thread)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|(_, key, bytes)| backend.put_new_deferred(key, bytes))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().expect("a map writer does not panic"))
                    .collect()
            })
        };
        let mut first_error = None;
        for ((index, _, bytes), result) in pending.iter().zip(results) {
            if let Err(error) = result {
                first_error.get_or_insert(error);
                continue;
            }
            self.stats.bytes_written += bytes.len() as u64;
            if *index == DELTA_CHUNK {
                self.stats.deltas_written += 1;
                self.delta_unsynced = true;
                continue;
            }
            self.maps_written.insert(*index);
            self.maps_unsynced.insert(*index);
            self.stats.maps_written += 1;
            if let Some(chunk) = self.chunks.get_mut(index) {
                chunk.written();
            }
        }
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// How a commit writes the page map: which chunks whole (those with many
    /// changed entries or already written whole in this epoch, and those
    /// that the oldest live deltas name while the live deltas would
    /// exceed [`DELTAS_LIVE_MAX`] or [`DELTA_ENTRIES_LIVE_MAX`]), which
    /// go into the epoch's delta, and which committed deltas the new
    /// checkpoint still needs.
    fn plan_maps(&self) -> (BTreeSet<u32>, BTreeSet<u32>, BTreeMap<u64, MapDelta>) {
        let mut whole = BTreeSet::new();
        let mut delta: BTreeMap<u32, u32> = BTreeMap::new();
        for (&index, chunk) in &self.chunks {
            if !chunk.dirty {
                continue;
            }
            if self.maps_written.contains(&index)
                || chunk.changed_count > self.delta_chunk_entries_max
            {
                whole.insert(index);
            } else {
                delta.insert(index, chunk.changed_count);
            }
        }
        // A delta is needed while a chunk it names has no whole version
        // written after it, and while a record of its epoch is live (every
        // entry of the delta of epoch E names a record written in E: a page's
        // entry changes only when a new version of it is written).
        let records_live = |epoch: u64| {
            self.segments
                .range(
                    SegmentId { epoch, seq: 0 }..=SegmentId {
                        epoch,
                        seq: u32::MAX,
                    },
                )
                .next()
                .is_some()
        };
        let needs = |whole: &BTreeSet<u32>, chunk: u32, epoch: u64| {
            !whole.contains(&chunk)
                && !self.maps_written.contains(&chunk)
                && self
                    .committed
                    .chunks
                    .get(&chunk)
                    .is_none_or(|&base| base < epoch)
        };
        let mut live = self.committed.deltas.clone();
        loop {
            live.retain(|&epoch, d| {
                records_live(epoch) && d.chunks.iter().any(|&c| needs(&whole, c, epoch))
            });
            let new: u64 = delta.values().map(|&n| u64::from(n)).sum();
            let entries = live.values().map(|d| u64::from(d.entries)).sum::<u64>() + new;
            let count = live.len() + usize::from(new > 0);
            if count <= DELTAS_LIVE_MAX && entries <= DELTA_ENTRIES_LIVE_MAX {
                break;
            }
            if let Some((&epoch, oldest)) = live.iter().next() {
                let folded: Vec<u32> = oldest
                    .chunks
                    .iter()
                    .copied()
                    .filter(|&c| needs(&whole, c, epoch))
                    .collect();
                for chunk in folded {
                    whole.insert(chunk);
                    delta.remove(&chunk);
                }
            } else if let Some((&largest, _)) = delta.iter().max_by_key(|&(_, &n)| n) {
                // The epoch's own delta alone is beyond the bound.
                delta.remove(&largest);
                whole.insert(largest);
            }
        }
        (whole, delta.into_keys().collect(), live)
    }

    fn location(&mut self, page: u32) -> Result<Location, PageStoreError> {
        let chunk = self.chunk(page / CHUNK_PAGES)?;
        Ok(chunk.entries[(page % CHUNK_PAGES) as usize])
    }

    /// Whether `page` certainly has no stored version, known without I/O and
    /// without loading a page-map chunk: its chunk is loaded and has no entry for
    /// the page, or was never loaded nor written. `false` means the page may
    /// have a version ([`PageStore::read_page`] tells).
    ///
    /// Lets a heap zero-fill pages it never wrote back without touching the store.
    pub fn page_never_written(&self, page: u32) -> bool {
        let index = page / CHUNK_PAGES;
        match self.chunks.get(&index) {
            Some(chunk) => !chunk.entries[(page % CHUNK_PAGES) as usize].is_some(),
            None => !self.committed.has_chunk(index) && !self.maps_written.contains(&index),
        }
    }

    /// Reads the latest version of `page` into `out`; returns false (and zeroes
    /// `out`) if the page was never written.
    ///
    /// When `page` follows the page read last and the records of the next pages
    /// follow its record in the same segment, one read fetches them too (up to
    /// [`READAHEAD_BYTES_MAX`]); they are verified when they are used.
    ///
    /// # Errors
    /// Storage failures, and [`PageStoreError::Corrupt`] if the stored record
    /// fails verification (it is never returned as data).
    ///
    /// # Panics
    /// If `out` is not one page long.
    pub fn read_page(&mut self, page: u32, out: &mut [u8]) -> Result<bool, PageStoreError> {
        assert_eq!(out.len(), self.page_size);
        let location = self.location(page)?;
        let sequential = self
            .last_read
            .is_some_and(|last| last.wrapping_add(1) == page);
        self.last_read = Some(page);
        if !location.is_some() {
            out.fill(0);
            return Ok(false);
        }
        let record_len = self.record_len();
        let start = location.offset as usize;
        let corrupt = |reason| PageStoreError::Corrupt {
            key: self.segment_key(location.segment()),
            reason,
        };
        let buffered = if location.segment() == self.open.id {
            Some(&self.open.bytes[..])
        } else {
            self.segment_put(location.segment())
                .map(|put| &put.bytes[..])
        };
        if let Some(bytes) = buffered {
            let bytes = bytes.get(start..start + record_len);
            let bytes = bytes.ok_or_else(|| corrupt(FormatError::Truncated))?;
            decode_record(bytes, page, location.segment(), out).map_err(corrupt)?;
        } else if let Some(bytes) = self.readahead.record(location, record_len) {
            decode_record(bytes, page, location.segment(), out).map_err(corrupt)?;
            self.stats.pages_read_ahead += 1;
        } else {
            let records = if sequential {
                self.records_in_sequence(page, location)
            } else {
                1
            };
            let end = start + records * record_len;
            let key = self.segment_key(location.segment());
            // A committed segment that is missing or shorter than the page map
            // says is damage; the range read returns what the object has.
            let fetched = self
                .backend
                .get(&key, Some(start as u64..end as u64))
                .map_err(|error| PageStoreError::reading(&key, error))?;
            self.stats.bytes_read += fetched.len() as u64;
            let verified = match fetched.get(..record_len) {
                Some(record) => decode_record(record, page, location.segment(), out),
                None => Err(FormatError::Truncated),
            };
            if records > 1 {
                self.readahead = ReadAhead {
                    segment: Some(location.segment()),
                    start: location.offset,
                    bytes: fetched,
                };
            }
            verified.map_err(|reason| PageStoreError::Corrupt { key, reason })?;
        }
        self.stats.pages_read += 1;
        Ok(true)
    }

    /// Tells the backend that `pages` will be read soon
    /// ([`StorageBackend::prefetch`]): the byte ranges of their latest records,
    /// records that lie back to back in a segment joined into one range. A
    /// heap server pushes them; other backends may start fetching or ignore
    /// the hint. Returns how many pages have a stored version (and so were
    /// named in the hint).
    ///
    /// Loads the page-map chunks of `pages` (as reading them would); pages in
    /// the open segment are already here and are left out.
    ///
    /// # Errors
    /// Storage failures and damage while loading a page-map chunk.
    pub fn hint_pages(&mut self, pages: &[u32]) -> Result<usize, PageStoreError> {
        let record_len = self.record_len() as u64;
        let mut located = Vec::with_capacity(pages.len());
        for &page in pages {
            let location = self.location(page)?;
            let buffered = location.segment() == self.open.id
                || self.segment_put(location.segment()).is_some();
            if location.is_some() && !buffered {
                located.push((location.segment(), u64::from(location.offset)));
            }
        }
        located.sort_unstable();
        located.dedup();
        let mut ranges: Vec<(SegmentId, Range<u64>)> = Vec::new();
        for &(segment, offset) in &located {
            match ranges.last_mut() {
                Some((last, range)) if *last == segment && range.end == offset => {
                    range.end += record_len;
                }
                _ => ranges.push((segment, offset..offset + record_len)),
            }
        }
        let ranges: Vec<(String, Range<u64>)> = ranges
            .into_iter()
            .map(|(segment, range)| (self.segment_key(segment), range))
            .collect();
        if !ranges.is_empty() {
            self.backend.prefetch(&ranges);
        }
        Ok(located.len())
    }

    /// How many records, from `page`'s at `location` on, belong to consecutive
    /// pages and lie back to back in the same segment (at least 1, at most
    /// [`READAHEAD_BYTES_MAX`] worth; within `page`'s chunk, which is loaded).
    ///
    /// A run that ends within an eighth of a window after it is taken whole,
    /// so that a scan does not end each segment with a read of a record or
    /// two (a round trip each on a remote store).
    fn records_in_sequence(&self, page: u32, location: Location) -> usize {
        let record_len = self.record_len();
        let records_max = (READAHEAD_BYTES_MAX / record_len).max(1);
        let tail_max = records_max / 8;
        let Some(chunk) = self.chunks.get(&(page / CHUNK_PAGES)) else {
            return 1;
        };
        let first = (page % CHUNK_PAGES) as usize;
        let mut records = 1;
        let records = loop {
            if records == records_max + tail_max {
                // The run goes on: a full window, the rest for later.
                break records_max;
            }
            let Some(next) = chunk.entries.get(first + records) else {
                break records;
            };
            let offset = u64::from(location.offset) + (records * record_len) as u64;
            if next.segment() != location.segment() || u64::from(next.offset) != offset {
                break records;
            }
            records += 1;
        };
        records
    }

    /// Stores a new version of `page` in the epoch being built.
    ///
    /// # Errors
    /// Storage failures while loading the page map or writing a full segment.
    ///
    /// # Panics
    /// If `data` is not one page long.
    pub fn write_page(&mut self, page: u32, data: &[u8]) -> Result<(), PageStoreError> {
        assert_eq!(data.len(), self.page_size);
        let record_len = self.record_len();
        let current = self.location(page)?;
        if current.segment() == self.open.id {
            // The latest version is still in the buffer of the open segment,
            // which nothing outside this store has seen: replace it in place
            // rather than leave a dead record behind.
            let start = current.offset as usize;
            let Some(slot) = self.open.bytes.get_mut(start..start + record_len) else {
                // Ruled out by the entry checks when the chunk was loaded.
                return Err(PageStoreError::Corrupt {
                    key: self.segment_key(current.segment()),
                    reason: FormatError::Truncated,
                });
            };
            encode_record_in(slot, page, self.open.id, data);
            self.stats.pages_written += 1;
            return Ok(());
        }
        if self.open.bytes.len() + record_len > SEGMENT_BYTES_MAX {
            self.flush_segment()?;
        }
        let location = Location {
            epoch: self.epoch,
            seq: self.open.id.seq,
            offset: (self.open.bytes.len().max(SEGMENT_HEADER_BYTES)) as u32,
        };
        let chunk = self.chunk(page / CHUNK_PAGES)?;
        let old = chunk.set((page % CHUNK_PAGES) as usize, location);
        if self.open.bytes.is_empty() {
            self.open
                .bytes
                .extend_from_slice(&segment_header(self.open.id));
        }
        debug_assert_eq!(self.open.bytes.len(), location.offset as usize);
        encode_record(&mut self.open.bytes, page, self.open.id, data);
        self.open.records += 1;
        self.segments
            .entry(location.segment())
            .or_insert(SegmentCounts {
                live: 0,
                records: 0,
            })
            .live += 1;
        if old.is_some() {
            self.release(old.segment());
        }
        self.bytes_appended += record_len as u64;
        self.stats.pages_written += 1;
        Ok(())
    }

    /// Counts one record of `segment` as superseded. A segment of the epoch
    /// being built that holds no live record any more is deleted at once:
    /// nothing committed refers to it, and no later page map will.
    fn release(&mut self, segment: SegmentId) {
        // A segment not counted (or counted too low) means the live counts of
        // a damaged manifest disagree with its page map: not a bug of this
        // store, so no panic; the count only steers collection and compaction.
        let Some(counts) = self.segments.get_mut(&segment) else {
            return;
        };
        counts.live = counts.live.saturating_sub(1);
        if counts.live > 0 {
            return;
        }
        self.segments.remove(&segment);
        if segment.epoch == self.epoch && segment != self.open.id {
            // Best effort: a segment left behind is unreferenced, and garbage
            // collection removes it once its epoch is committed. One whose
            // put is under way is deleted once it landed.
            if self.segment_put(segment).is_some() && self.finish_puts_through(segment.seq).is_err()
            {
                return;
            }
            if self.backend.delete(&self.segment_key(segment)).is_ok() {
                self.segments_unsynced.remove(&segment.seq);
                self.stats.segments_dropped += 1;
            }
        }
    }

    /// Writes the open segment as an object (if it holds any live record),
    /// without sync.
    fn flush_segment(&mut self) -> Result<(), PageStoreError> {
        if self.open.records == 0 {
            return Ok(());
        }
        if let Some(counts) = self.segments.get_mut(&self.open.id) {
            counts.records = self.open.records;
            // Puts that ended are settled now: a failure shows at once.
            let ended = self
                .puts
                .iter()
                .take_while(|put| {
                    put.put
                        .as_ref()
                        .is_some_and(std::thread::JoinHandle::is_finished)
                })
                .last()
                .map(|put| put.seq);
            if let Some(seq) = ended {
                self.finish_puts_through(seq)?;
            }
            if self.puts.len() >= SEGMENT_PUTS_AT_ONCE {
                let oldest = self.puts[0].seq;
                self.finish_puts_through(oldest)?;
            }
            let key = self.segment_key(self.open.id);
            let bytes = Arc::new(std::mem::take(&mut self.open.bytes));
            let put = {
                let (backend, bytes) = (self.backend.clone(), bytes.clone());
                std::thread::Builder::new()
                    .name("ferrite-segment-put".into())
                    .spawn(move || backend.put_new_deferred(&key, &bytes))
                    .ok()
            };
            let seq = self.open.id.seq;
            self.stats.bytes_written += bytes.len() as u64;
            self.stats.segments_written += 1;
            self.puts.push_back(SegmentPut { seq, bytes, put });
            // Without a thread, the put is made when it is waited for.
            if self.puts.back().is_some_and(|put| put.put.is_none()) {
                self.finish_puts_through(seq)?;
            }
        }
        // Else every record was superseded while buffered: nothing refers to it.
        self.open.id.seq += 1;
        self.open.bytes = Vec::with_capacity(SEGMENT_BYTES_MAX);
        self.open.records = 0;
        Ok(())
    }

    /// The segment of the epoch being built whose put is under way, if
    /// `segment` is one.
    fn segment_put(&self, segment: SegmentId) -> Option<&SegmentPut> {
        if segment.epoch != self.epoch {
            return None;
        }
        self.puts.iter().find(|put| put.seq == segment.seq)
    }

    /// Waits for the segment puts under way up to segment `seq` of the
    /// epoch being built; a put that failed is made again, here. The first
    /// failure is returned (that segment and the later ones stay buffered).
    fn finish_puts_through(&mut self, seq: u32) -> Result<(), PageStoreError> {
        while let Some(oldest) = self.puts.front_mut() {
            if oldest.seq > seq {
                break;
            }
            let key = SegmentId {
                epoch: self.epoch,
                seq: oldest.seq,
            }
            .key(&self.prefix, self.generation);
            let result = if let Some(thread) = oldest.put.take() {
                thread.join().unwrap_or_else(|_| {
                    Err(StorageError::Io {
                        key: key.clone(),
                        source: std::io::Error::other("the segment put's thread panicked"),
                    })
                })
            } else {
                // A failed put may have left the object (a lost answer): it
                // is ours alone (the name carries this runner's generation),
                // so it is replaced.
                let _ = self.backend.delete(&key);
                self.backend.put_new_deferred(&key, &oldest.bytes)
            };
            result?;
            let done = self.puts.pop_front().expect("the oldest put");
            self.segments_unsynced.insert(done.seq);
        }
        Ok(())
    }

    /// Waits for every segment put under way.
    fn finish_puts(&mut self) -> Result<(), PageStoreError> {
        self.finish_puts_through(u32::MAX)
    }

    /// Waits for the writes under way (full segments put while pages are
    /// written); a failure of any of them is returned here, if not earlier
    /// (at the next segment written after it ended, or at the commit).
    ///
    /// # Errors
    /// The first write that failed (it is made again at the next call).
    pub fn finish_writes(&mut self) -> Result<(), PageStoreError> {
        self.finish_puts()
    }

    /// Moves the live records of sparse segments (less than half of their
    /// records live) into the epoch being built, sparsest first, reading at most
    /// about `bytes_max` bytes of segments. Once the epoch commits, the old
    /// segments are referenced only by older checkpoints and garbage collection
    /// removes them with those. [`PageStore::commit_maps`] calls this with a
    /// budget of twice the bytes the epoch wrote (within
    /// [`COMPACTION_BYTES_MIN`]..=[`COMPACTION_BYTES_MAX`], and at most what
    /// [`PageStore::set_compaction_bytes_max`] allows).
    ///
    /// A live record that fails verification stays where it is (and is
    /// reported when its page is read).
    ///
    /// # Errors
    /// Storage failures; the store stays consistent (moved records are simply
    /// newer versions).
    pub fn compact(&mut self, bytes_max: u64) -> Result<CompactionReport, PageStoreError> {
        // Segments are read back from the store: every put must have landed.
        self.finish_puts()?;
        let mut candidates: Vec<(SegmentId, SegmentCounts)> = self
            .segments
            .iter()
            .filter(|&(&id, counts)| {
                id != self.open.id && u64::from(counts.live) * 2 < u64::from(counts.records)
            })
            .map(|(&id, &counts)| (id, counts))
            .collect();
        candidates.sort_by_key(|&(id, counts)| {
            let permille = u64::from(counts.live) * 1000 / u64::from(counts.records.max(1));
            (permille, id)
        });
        let mut report = CompactionReport::default();
        for (id, counts) in candidates {
            if !self.segments.contains_key(&id) {
                continue;
            }
            let bytes = (SEGMENT_HEADER_BYTES + counts.records as usize * self.record_len()) as u64;
            if report.bytes_read + bytes > bytes_max {
                break;
            }
            self.compact_segment(id, &mut report)?;
        }
        self.stats.pages_compacted += report.pages;
        Ok(report)
    }

    /// Rewrites the live records of segment `id` into the open segment.
    fn compact_segment(
        &mut self,
        id: SegmentId,
        report: &mut CompactionReport,
    ) -> Result<(), PageStoreError> {
        let key = self.segment_key(id);
        // A segment missing or longer than any segment is damaged: its live
        // records stay where they are and are reported when read.
        let bytes = match get_bounded(&*self.backend, &key, SEGMENT_BYTES_MAX as u64) {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(StorageError::NotFound { .. }) => {
                report.records_damaged += 1;
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        report.bytes_read += bytes.len() as u64;
        report.segments += 1;
        self.stats.bytes_read += bytes.len() as u64;
        let header_ok = bytes.len() >= SEGMENT_HEADER_BYTES
            && bytes[..4] == SEGMENT_MAGIC
            && bytes[8..16] == id.epoch.to_le_bytes()
            && bytes[16..20] == id.seq.to_le_bytes();
        let record_len = self.record_len();
        let mut data = vec![0; self.page_size];
        let mut offset = SEGMENT_HEADER_BYTES;
        while header_ok && offset + record_len <= bytes.len() {
            let record = &bytes[offset..offset + record_len];
            // The page the record names; trusted only if the page map points
            // here and the record verifies.
            let page = u32::from_le_bytes(record[4..8].try_into().expect("4 bytes"));
            let here = Location {
                epoch: id.epoch,
                seq: id.seq,
                offset: offset as u32,
            };
            if self.page_never_written(page) || self.location(page)? != here {
                offset += record_len;
                continue;
            }
            match decode_record(record, page, id, &mut data) {
                Ok(()) => {
                    self.write_page(page, &data)?;
                    report.pages += 1;
                }
                Err(_) => report.records_damaged += 1,
            }
            offset += record_len;
        }
        if !header_ok {
            report.records_damaged += 1;
        }
        Ok(())
    }

    /// Makes every version written in this epoch durable (compacting sparse
    /// segments first, then writing the open segment and the changed page-map
    /// chunks, then syncing every object the epoch wrote) and returns the page
    /// map the manifest of this epoch must record. The epoch is not committed
    /// until that manifest is.
    ///
    /// # Errors
    /// Storage failures; the previous committed checkpoint is unaffected.
    pub fn commit_maps(&mut self) -> Result<PageMapRef, PageStoreError> {
        let budget = (2 * self.bytes_appended)
            .clamp(COMPACTION_BYTES_MIN, COMPACTION_BYTES_MAX)
            .min(self.compaction_bytes_max);
        // Only while the segments hold more than twice the live records: below
        // that, the store is within its bound and a checkpoint taken every few
        // milliseconds should not pay for moving pages around.
        let (records, live) = self.segments.values().fold((0u64, 0u64), |(r, l), counts| {
            (r + u64::from(counts.records), l + u64::from(counts.live))
        });
        if budget > 0 && records > 2 * live {
            self.compact(budget)?;
        }
        self.flush_segment()?;
        self.finish_puts()?;
        let (whole, in_delta, live) = self.plan_maps();
        let mut delta = Vec::new();
        for index in &in_delta {
            let chunk = &self.chunks[index];
            delta.extend(
                chunk
                    .changes()
                    .map(|(entry, location)| (index * CHUNK_PAGES + entry, location)),
            );
        }
        let whole: Vec<u32> = whole.into_iter().collect();
        self.write_maps(&whole, &delta)?;
        for index in &in_delta {
            self.chunks
                .get_mut(index)
                .expect("a loaded chunk")
                .written();
        }
        let entries = delta.len() as u32;
        if !delta.is_empty() {
            self.deltas.insert(self.epoch, delta);
        }
        let delta_key = map_key(&self.prefix, self.epoch, self.generation, DELTA_CHUNK);
        let unsynced: Vec<String> = self
            .segments_unsynced
            .iter()
            .map(|&seq| {
                SegmentId {
                    epoch: self.epoch,
                    seq,
                }
                .key(&self.prefix, self.generation)
            })
            .chain(
                self.maps_unsynced
                    .iter()
                    .map(|&index| map_key(&self.prefix, self.epoch, self.generation, index)),
            )
            .chain(self.delta_unsynced.then_some(delta_key))
            .collect();
        if !unsynced.is_empty() {
            self.backend.sync(&unsynced)?;
        }
        self.segments_unsynced.clear();
        self.maps_unsynced.clear();
        self.delta_unsynced = false;
        let mut map = self.committed.clone();
        for &index in &self.maps_written {
            map.chunks.insert(index, self.epoch);
        }
        map.deltas = live;
        if !in_delta.is_empty() {
            map.deltas.insert(
                self.epoch,
                MapDelta {
                    entries,
                    chunks: in_delta,
                },
            );
        }
        map.segments = self
            .segments
            .iter()
            .map(|(&id, counts)| (id, counts.live))
            .collect();
        if self.generation != 0 {
            map.generations.insert(self.epoch, self.generation);
        }
        // Only the epochs the map still names.
        let named: BTreeSet<u64> = map
            .chunks
            .values()
            .copied()
            .chain(map.segments.keys().map(|id| id.epoch))
            .chain(map.deltas.keys().copied())
            .collect();
        map.generations.retain(|epoch, _| named.contains(epoch));
        Ok(map)
    }

    /// Records that the manifest of the current epoch was committed with `map`,
    /// and starts the next epoch.
    pub fn committed(&mut self, map: PageMapRef) {
        debug_assert!(self.chunks.values().all(|chunk| !chunk.dirty));
        debug_assert!(
            self.segments_unsynced.is_empty()
                && self.maps_unsynced.is_empty()
                && !self.delta_unsynced
        );
        self.deltas
            .retain(|epoch, _| map.deltas.contains_key(epoch));
        self.committed = map;
        self.maps_written.clear();
        assert!(self.epoch < EPOCH_MAX, "epoch {}", self.epoch);
        self.epoch += 1;
        self.bytes_appended = 0;
        self.open = OpenSegment {
            id: SegmentId {
                epoch: self.epoch,
                seq: 0,
            },
            bytes: std::mem::take(&mut self.open.bytes),
            records: 0,
        };
        self.open.bytes.clear();
    }

    /// Bytes held in memory beyond the frames: the open segment, the loaded
    /// chunks, the readahead buffer and the segment counts (approximately).
    pub fn memory_bytes(&self) -> usize {
        self.open.bytes.capacity()
            + self.puts.iter().map(|put| put.bytes.len()).sum::<usize>()
            + self.chunks.len() * CHUNK_PAGES as usize * std::mem::size_of::<Location>()
            + self.readahead.bytes.capacity()
            + self.segments.len() * 2 * std::mem::size_of::<(SegmentId, SegmentCounts)>()
    }
}

impl Drop for PageStore {
    /// Waits for the segment puts under way: nothing this store started may
    /// land after it is gone (a store opened next on the same backend, by
    /// the same writer, would find its names taken).
    fn drop(&mut self) {
        for put in &mut self.puts {
            if let Some(thread) = put.put.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Records a full segment holds.
fn segment_capacity(page_size: usize) -> u32 {
    ((SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES) / (RECORD_HEADER_BYTES + page_size)) as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::MemStore;

    fn page(byte: u8) -> Vec<u8> {
        vec![byte; 4096]
    }

    #[test]
    fn versions_survive_commit_and_reopen() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        let mut out = page(0);
        assert!(!store.read_page(9, &mut out).unwrap());
        store.write_page(9, &page(1)).unwrap();
        store.write_page(70_000, &page(2)).unwrap();
        assert!(store.read_page(9, &mut out).unwrap());
        assert_eq!(out, page(1));
        let map = store.commit_maps().unwrap();
        store.committed(map.clone());
        store.write_page(9, &page(3)).unwrap();
        let mut reopened = PageStore::open(backend, "p/", 4096, 1, map);
        reopened.read_page(9, &mut out).unwrap();
        assert_eq!(out, page(1), "the committed version, not the later write");
        reopened.read_page(70_000, &mut out).unwrap();
        assert_eq!(out, page(2));
    }

    #[test]
    fn never_written_pages_are_known_without_io() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        assert!(store.page_never_written(9));
        store.write_page(9, &page(1)).unwrap();
        assert!(!store.page_never_written(9));
        assert!(store.page_never_written(10));
        assert!(store.page_never_written(CHUNK_PAGES + 9));
        let map = store.commit_maps().unwrap();
        let reopened = PageStore::open(backend, "p/", 4096, 1, map);
        assert!(
            !reopened.page_never_written(10),
            "unknown until the chunk is read"
        );
        assert!(reopened.page_never_written(CHUNK_PAGES + 9));
    }

    #[test]
    fn many_pages_span_several_segments() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = PageStore::open(backend, "p/", 4096, 0, PageMapRef::default());
        for i in 0..600u32 {
            store.write_page(i, &page(i as u8)).unwrap();
        }
        let mut out = page(0);
        for i in (0..600u32).step_by(37) {
            store.read_page(i, &mut out).unwrap();
            assert_eq!(out[0], i as u8);
        }
        assert!(store.stats().segments_written >= 2);
    }

    #[test]
    fn corruption_is_detected() {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        store.write_page(1, &page(5)).unwrap();
        let map = store.commit_maps().unwrap();
        let key = backend.list("p/segments/").unwrap().remove(0);
        assert!(mem.flip_bit(&key, SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 100, 3));
        let mut reopened = PageStore::open(backend, "p/", 4096, 1, map);
        let mut out = page(0);
        assert!(matches!(
            reopened.read_page(1, &mut out),
            Err(PageStoreError::Corrupt { .. })
        ));
    }

    /// A committed store with pages 0..3 in one segment of epoch 1, its chunk
    /// written whole.
    fn committed_three_pages(mem: &Arc<MemStore>) -> (Arc<dyn StorageBackend>, PageMapRef) {
        committed_three_pages_in(mem, false)
    }

    /// The same, the chunk's entries in the delta of epoch 1 if `delta`.
    fn committed_three_pages_in(
        mem: &Arc<MemStore>,
        delta: bool,
    ) -> (Arc<dyn StorageBackend>, PageMapRef) {
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        if !delta {
            store.delta_chunk_entries_max = 0;
        }
        for i in 0..3u32 {
            store.write_page(i, &page(i as u8 + 1)).unwrap();
        }
        (backend, store.commit_maps().unwrap())
    }

    fn read_error(backend: Arc<dyn StorageBackend>, map: PageMapRef, page_index: u32) -> String {
        let mut store = PageStore::open(backend, "p/", 4096, 1, map);
        let mut out = page(0);
        match store.read_page(page_index, &mut out) {
            Err(error @ PageStoreError::Corrupt { .. }) => error.to_string(),
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_map_entry_pointing_past_its_segment_is_damage_not_a_panic() {
        let mem = Arc::new(MemStore::new());
        let (backend, map) = committed_three_pages(&mem);
        let record = (RECORD_HEADER_BYTES + 4096) as u32;
        let header = SEGMENT_HEADER_BYTES as u32;
        let cases = [
            (
                1,
                header + (u32::MAX / record - 1) * record,
                "past the largest segment",
            ),
            (5, header, "newer than its chunk"),
            (1, header + 1, "not at a record boundary"),
            // Within the largest segment, past this one's end.
            (1, header + 200 * record, "truncated"),
        ];
        for (epoch, offset, expected) in cases {
            let mut entries = vec![Location::NONE; CHUNK_PAGES as usize];
            entries[1] = Location {
                epoch,
                seq: 0,
                offset,
            };
            assert!(mem.replace(&map_key("p/", 1, 0, 0), encode_map(1, 0, &entries)));
            let error = read_error(backend.clone(), map.clone(), 1);
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn a_missing_or_truncated_committed_object_is_damage_not_an_io_error() {
        let mem = Arc::new(MemStore::new());
        let (backend, map) = committed_three_pages(&mem);
        let segment = SegmentId { epoch: 1, seq: 0 }.key("p/", 0);
        let bytes = backend.get(&segment, None).unwrap();
        assert!(mem.replace(&segment, bytes[..bytes.len() - 100].to_vec()));
        let error = read_error(backend.clone(), map.clone(), 2);
        assert!(
            error.contains(&segment) && error.contains("truncated"),
            "{error}"
        );
        backend.delete(&segment).unwrap();
        let error = read_error(backend.clone(), map.clone(), 0);
        assert!(
            error.contains(&segment) && error.contains("missing"),
            "{error}"
        );

        let chunk = map_key("p/", 1, 0, 0);
        let bytes = backend.get(&chunk, None).unwrap();
        assert!(mem.replace(&chunk, bytes[..1000].to_vec()));
        let error = read_error(backend.clone(), map.clone(), 0);
        assert!(
            error.contains(&chunk) && error.contains("truncated"),
            "{error}"
        );
        backend.delete(&chunk).unwrap();
        let error = read_error(backend, map, 0);
        assert!(
            error.contains(&chunk) && error.contains("missing"),
            "{error}"
        );
    }

    #[test]
    fn an_oversized_map_chunk_is_refused_without_reading_it_whole() {
        let mem = Arc::new(MemStore::new());
        let (backend, map) = committed_three_pages(&mem);
        let chunk = map_key("p/", 1, 0, 0);
        let mut bytes = backend.get(&chunk, None).unwrap();
        bytes.resize(8 << 20, 0);
        assert!(mem.replace(&chunk, bytes));
        let error = read_error(backend, map, 0);
        assert!(error.contains("longer than the format allows"), "{error}");
    }

    /// A store over `chunks` chunks with every page of each written (chunks
    /// written whole), committed at epoch 1.
    fn full_chunks(backend: &Arc<dyn StorageBackend>, chunks: u32) -> PageStore {
        let mut store = PageStore::open(backend.clone(), "p/", 512, 0, PageMapRef::default());
        store.fit_chunks_to_frames(None);
        for at in 0..chunks * CHUNK_PAGES {
            store.write_page(at, &[at as u8; 512]).unwrap();
        }
        let map = store.commit_maps().unwrap();
        assert_eq!(store.stats().maps_written, u64::from(chunks));
        store.committed(map);
        store
    }

    #[test]
    fn a_checkpoint_of_a_few_pages_over_many_chunks_writes_one_small_delta() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = full_chunks(&backend, 16);
        let before = store.stats();
        for chunk in 0..16 {
            store
                .write_page(chunk * CHUNK_PAGES + 5, &[0xee; 512])
                .unwrap();
        }
        let map = store.commit_maps().unwrap();
        let after = store.stats();
        assert_eq!(after.maps_written, before.maps_written, "no chunk whole");
        assert_eq!(after.deltas_written, 1);
        let map_bytes = after.bytes_written - before.bytes_written - 16 * (24 + 512) - 24;
        assert!(map_bytes < 1024, "{map_bytes} bytes of map for 16 pages");
        assert_eq!(map.deltas[&2].entries, 16);
        store.committed(map.clone());
        let mut reopened = PageStore::open(backend, "p/", 512, 2, map);
        let mut out = vec![0; 512];
        for chunk in 0..16 {
            for at in [chunk * CHUNK_PAGES + 4, chunk * CHUNK_PAGES + 5] {
                assert!(reopened.read_page(at, &mut out).unwrap());
                let expected = if at % CHUNK_PAGES == 5 {
                    0xee
                } else {
                    at as u8
                };
                assert_eq!(out, [expected; 512], "page {at}");
            }
        }
    }

    #[test]
    fn deltas_chain_within_their_bounds_and_dead_ones_are_dropped() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = full_chunks(&backend, 2);
        let mut expected: BTreeMap<u32, u8> = BTreeMap::new();
        let mut map = PageMapRef::default();
        // A different page each epoch: every delta keeps a live record, so
        // the chain grows until the bound folds the oldest.
        for epoch in 2..40u64 {
            let at = (epoch as u32 * 37) % (2 * CHUNK_PAGES);
            store.write_page(at, &[epoch as u8; 512]).unwrap();
            expected.insert(at, epoch as u8);
            map = store.commit_maps().unwrap();
            assert!(
                map.deltas.len() <= DELTAS_LIVE_MAX,
                "epoch {epoch}: {map:?}"
            );
            store.committed(map.clone());
        }
        assert!(map.deltas.len() > 1, "deltas chain: {map:?}");
        assert!(store.stats().maps_written > 2, "folds wrote chunks whole");
        let mut reopened = PageStore::open(backend.clone(), "p/", 512, 39, map.clone());
        let mut out = vec![0; 512];
        for at in (0..2 * CHUNK_PAGES)
            .step_by(7)
            .chain(expected.keys().copied())
        {
            reopened.read_page(at, &mut out).unwrap();
            let byte = expected.get(&at).copied().unwrap_or(at as u8);
            assert_eq!(out, [byte; 512], "page {at}");
        }
        // The same pages written again: the old deltas' records are dead,
        // so only the newest delta is needed.
        for &at in expected.keys() {
            store.write_page(at, &[1; 512]).unwrap();
        }
        let map = store.commit_maps().unwrap();
        assert_eq!(map.deltas.keys().copied().collect::<Vec<_>>(), vec![40]);
    }

    #[test]
    fn a_damaged_or_missing_delta_is_damage() {
        let mem = Arc::new(MemStore::new());
        let (backend, map) = committed_three_pages_in(&mem, true);
        assert!(map.chunks.is_empty() && map.deltas.len() == 1);
        let key = map.delta_key("p/", 1);
        let good = backend.get(&key, None).unwrap();
        assert!(mem.replace(&key, good[..good.len() - 3].to_vec()));
        let error = read_error(backend.clone(), map.clone(), 0);
        assert!(
            error.contains(&key) && error.contains("checksum"),
            "{error}"
        );
        let mut huge = good.clone();
        huge.resize(DELTA_BYTES_MAX + 1, 0);
        assert!(mem.replace(&key, huge));
        let error = read_error(backend.clone(), map.clone(), 0);
        assert!(error.contains("longer than the format allows"), "{error}");
        // An entry naming a record of another epoch, checksummed.
        let at = |epoch| Location {
            epoch,
            seq: 0,
            offset: SEGMENT_HEADER_BYTES as u32,
        };
        assert!(mem.replace(&key, encode_delta(1, &[(0, at(1)), (1, at(0)), (2, at(1))])));
        let error = read_error(backend.clone(), map.clone(), 1);
        assert!(
            error.contains("another epoch") || error.contains("no segment"),
            "{error}"
        );
        // A delta that disagrees with the checkpoint's record of it.
        assert!(mem.replace(&key, encode_delta(1, &[(0, at(1))])));
        let error = read_error(backend.clone(), map.clone(), 0);
        assert!(error.contains("disagrees"), "{error}");
        assert!(mem.replace(&key, good));
        let mut unlisted = map.clone();
        unlisted.segments.clear();
        let error = read_error(backend.clone(), unlisted, 0);
        assert!(error.contains("does not list"), "{error}");
        backend.delete(&key).unwrap();
        let error = read_error(backend, map, 2);
        assert!(error.contains(&key) && error.contains("missing"), "{error}");
    }

    #[test]
    fn a_map_entry_naming_a_segment_the_checkpoint_does_not_list_is_damage() {
        let mem = Arc::new(MemStore::new());
        let (backend, mut map) = committed_three_pages(&mem);
        map.segments.clear();
        let error = read_error(backend, map, 0);
        assert!(error.contains("does not list"), "{error}");
    }

    #[test]
    fn uncommitted_objects_are_removed() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        store.write_page(1, &page(5)).unwrap();
        let map = store.commit_maps().unwrap();
        store.committed(map);
        store.write_page(2, &page(6)).unwrap();
        store.commit_maps().unwrap(); // epoch 2 data written, but its manifest never is
        assert_eq!(
            PageStore::remove_uncommitted(&*backend, "p/", 1).unwrap(),
            2
        );
        assert_eq!(backend.list("p/").unwrap().len(), 2);
    }

    /// A backend that counts reads, over a `MemStore`.
    #[derive(Debug, Default)]
    struct CountingStore {
        inner: MemStore,
        gets: std::sync::atomic::AtomicU64,
        hints: std::sync::Mutex<Vec<(String, std::ops::Range<u64>)>>,
    }

    impl StorageBackend for CountingStore {
        fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
            self.inner.put_new(key, bytes)
        }
        fn get(
            &self,
            key: &str,
            range: Option<std::ops::Range<u64>>,
        ) -> Result<Vec<u8>, StorageError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key, range)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner.delete(key)
        }
        fn prefetch(&self, ranges: &[(String, std::ops::Range<u64>)]) {
            self.hints.lock().unwrap().extend_from_slice(ranges);
        }
    }

    impl CountingStore {
        fn gets(&self) -> u64 {
            self.gets.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Holds segment puts until the gate opens; fails the first `fail`.
    #[derive(Debug, Default)]
    struct GatedStore {
        inner: MemStore,
        open: std::sync::Mutex<bool>,
        opened: std::sync::Condvar,
        fail: std::sync::atomic::AtomicU32,
        gets: std::sync::atomic::AtomicU64,
    }

    impl StorageBackend for GatedStore {
        fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
            if key.contains("/segments/") {
                let open = self.open.lock().unwrap();
                drop(self.opened.wait_while(open, |open| !*open).unwrap());
                let failing = self.fail.fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |left| left.checked_sub(1),
                );
                if failing.is_ok() {
                    return Err(StorageError::Unavailable {
                        key: key.into(),
                        reason: "gated".into(),
                    });
                }
            }
            self.inner.put_new(key, bytes)
        }
        fn get(
            &self,
            key: &str,
            range: Option<std::ops::Range<u64>>,
        ) -> Result<Vec<u8>, StorageError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key, range)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner.delete(key)
        }
    }

    impl GatedStore {
        fn open_gate(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    #[test]
    fn full_segments_are_put_while_pages_are_written_and_read_from_memory_meanwhile() {
        let gated = Arc::new(GatedStore::default());
        let backend: Arc<dyn StorageBackend> = gated.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        // Three full segments (254 records each) and some: their puts wait.
        for i in 0..800u32 {
            store.write_page(i, &page(i as u8)).unwrap();
        }
        assert_eq!(store.puts.len(), 3, "puts under way");
        assert!(gated.inner.list("p/segments/").unwrap().is_empty());
        let mut out = page(0);
        for i in (0..800u32).step_by(13) {
            assert!(store.read_page(i, &mut out).unwrap());
            assert_eq!(out, page(i as u8), "page {i}");
        }
        assert_eq!(gated.gets.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The first put fails: the commit says so, and the next one puts it
        // again.
        gated.fail.store(1, std::sync::atomic::Ordering::SeqCst);
        gated.open_gate();
        assert!(matches!(
            store.commit_maps(),
            Err(PageStoreError::Storage(StorageError::Unavailable { .. }))
        ));
        assert!(store.read_page(3, &mut out).unwrap(), "still readable");
        assert_eq!(out, page(3));
        let map = store.commit_maps().unwrap();
        assert_eq!(gated.inner.list("p/segments/").unwrap().len(), 4);
        let mut reopened = PageStore::open(backend, "p/", 4096, 1, map);
        for i in 0..800u32 {
            assert!(reopened.read_page(i, &mut out).unwrap());
            assert_eq!(out, page(i as u8), "page {i} reopened");
        }
    }

    /// A committed store holding pages `0..pages` (page `i` filled with `i as u8`)
    /// written in order, and the map to reopen it with.
    fn committed_pages(backend: &Arc<dyn StorageBackend>, pages: u32) -> PageMapRef {
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        for i in 0..pages {
            store.write_page(i, &page(i as u8)).unwrap();
        }
        store.commit_maps().unwrap()
    }

    #[test]
    fn hints_name_each_run_of_records_once_and_the_reads_find_the_same_bytes() {
        let counting = Arc::new(CountingStore::default());
        let backend: Arc<dyn StorageBackend> = counting.clone();
        let map = committed_pages(&backend, 600);
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 1, map);
        let record = (RECORD_HEADER_BYTES + 4096) as u64;
        // Pages 0..100 lie back to back in the first segment; 300 and 302 in
        // another, apart; 5000 was never written; 7 is named twice.
        let mut pages: Vec<u32> = (0..100).collect();
        pages.extend([302, 300, 5000, 7]);
        assert_eq!(store.hint_pages(&pages).unwrap(), 102);
        let hints = counting.hints.lock().unwrap().clone();
        assert_eq!(hints.len(), 3, "{hints:?}");
        assert_eq!(hints[0].1.end - hints[0].1.start, 100 * record);
        assert_eq!(hints[1].1.end - hints[1].1.start, record);
        assert_eq!(hints[2].1.end - hints[2].1.start, record);
        assert_ne!(hints[0].0, hints[1].0, "page 300 is in a later segment");
        assert_eq!(hints[1].0, hints[2].0);
        // The hinted bytes are the records the reads fetch: page 300's.
        let bytes = backend.get(&hints[1].0, Some(hints[1].1.clone())).unwrap();
        let mut out = page(0);
        let id = store.location(300).unwrap().segment();
        decode_record(&bytes, 300, id, &mut out).unwrap();
        assert_eq!(out, page(300u32 as u8));
        // Nothing in the open segment is hinted: it is in memory.
        store.write_page(3, &page(9)).unwrap();
        assert_eq!(store.hint_pages(&[3]).unwrap(), 0);
    }

    #[test]
    fn a_heap_spread_over_many_chunks_keeps_them_loaded_and_commits_them_all() {
        let counting = Arc::new(CountingStore::default());
        let backend: Arc<dyn StorageBackend> = counting.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        // An unbounded heap: every chunk stays loaded.
        store.fit_chunks_to_frames(None);
        let pages: Vec<u32> = (0..80).map(|chunk| chunk * CHUNK_PAGES + chunk).collect();
        for &at in &pages {
            store.write_page(at, &page(at as u8)).unwrap();
        }
        let map = store.commit_maps().unwrap();
        assert_eq!(store.stats().maps_written, 0);
        assert_eq!(store.stats().deltas_written, 1, "one delta for 80 chunks");
        assert_eq!(map.deltas[&1].chunks.len(), 80);
        assert_eq!(store.stats().chunks_evicted, 0);
        store.committed(map.clone());
        // Written whole, the chunks go at once.
        store.delta_chunk_entries_max = 0;
        let before = counting.gets();
        for &at in &pages {
            store.write_page(at, &page(!(at as u8))).unwrap();
        }
        assert_eq!(counting.gets(), before, "no chunk was loaded again");
        let map = store.commit_maps().unwrap();
        assert_eq!(store.stats().maps_written, 80, "one map per chunk, at once");
        assert!(map.deltas.is_empty(), "the first delta is superseded");
        let mut reopened = PageStore::open(backend, "p/", 4096, 2, map);
        let mut out = page(0);
        for &at in &pages {
            assert!(reopened.read_page(at, &mut out).unwrap());
            assert_eq!(out, page(!(at as u8)), "page {at}");
        }
        // A bounded heap keeps at least the default, more for more frames.
        store.fit_chunks_to_frames(Some(1024));
        assert_eq!(store.chunks_loaded_max, CHUNKS_LOADED_MAX);
        store.fit_chunks_to_frames(Some(1 << 20));
        assert_eq!(store.chunks_loaded_max, 1024);
    }

    #[test]
    fn sequential_reads_fetch_ahead_and_random_reads_do_not() {
        let counting = Arc::new(CountingStore::default());
        let backend: Arc<dyn StorageBackend> = counting.clone();
        let map = committed_pages(&backend, 600);
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 1, map.clone());
        let mut out = page(0);
        let before = counting.gets();
        for i in 0..600u32 {
            assert!(store.read_page(i, &mut out).unwrap());
            assert_eq!(out, page(i as u8), "page {i}");
        }
        let gets = counting.gets() - before;
        let per_fetch = (READAHEAD_BYTES_MAX / (RECORD_HEADER_BYTES + 4096)) as u64;
        // One chunk load, the first record alone, then full windows (a window
        // also ends at each of the three segment boundaries).
        assert!(
            gets <= 2 + 600 / per_fetch + 4,
            "{gets} reads for 600 pages"
        );
        // Segments of 254 records: the first record alone, then windows of
        // 63, the last one taking the few records left rather than leaving
        // them to a read of their own (14 reads without that rule).
        assert_eq!(gets, 12, "reads for 600 pages in three segments");
        assert_eq!(store.stats().pages_read, 600);
        assert!(store.stats().pages_read_ahead >= 600 - gets);
        assert!(store.memory_bytes() < SEGMENT_BYTES_MAX + 2 * READAHEAD_BYTES_MAX + (64 << 10));

        let mut store = PageStore::open(backend, "p/", 4096, 1, map);
        let before = counting.gets();
        for i in (0..600u32).rev().step_by(3) {
            store.read_page(i, &mut out).unwrap();
            assert_eq!(out, page(i as u8), "page {i}");
        }
        assert_eq!(
            counting.gets() - before,
            1 + 200,
            "one read each, no readahead"
        );
        assert_eq!(store.stats().pages_read_ahead, 0);
    }

    #[test]
    fn a_corrupt_record_inside_a_readahead_window_is_refused_alone() {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let map = committed_pages(&backend, 40);
        let key = backend.list("p/segments/").unwrap().remove(0);
        let record = RECORD_HEADER_BYTES + 4096;
        assert!(mem.flip_bit(&key, SEGMENT_HEADER_BYTES + 10 * record + 500, 1));
        let mut store = PageStore::open(backend, "p/", 4096, 1, map);
        let mut out = page(0);
        for i in 0..40u32 {
            let read = store.read_page(i, &mut out);
            if i == 10 {
                assert!(
                    matches!(read, Err(PageStoreError::Corrupt { .. })),
                    "page 10 must be refused"
                );
                assert_ne!(out, page(10), "corrupt bytes are never returned");
            } else {
                assert!(read.unwrap(), "page {i}");
                assert_eq!(out, page(i as u8), "page {i}");
            }
        }
        assert!(
            store.stats().pages_read_ahead > 20,
            "pages around it came from the window"
        );
    }

    #[test]
    fn loaded_chunks_stay_within_the_limit() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        store.set_chunks_loaded_max(2);
        // Dirty chunks are written early (and rewritten) to make room.
        let pages: Vec<u32> = (0..6)
            .flat_map(|c| [c * CHUNK_PAGES, c * CHUNK_PAGES + 7])
            .collect();
        for round in 0..3u8 {
            for &p in &pages {
                store.write_page(p, &page(round + p as u8)).unwrap();
                assert!(store.chunks.len() <= 2);
            }
        }
        let mut out = page(0);
        for &p in &pages {
            assert!(!store.page_never_written(p) || store.chunks.contains_key(&(p / CHUNK_PAGES)));
            store.read_page(p, &mut out).unwrap();
            assert_eq!(out, page(2 + p as u8), "page {p} before the commit");
        }
        assert!(store.stats().chunks_evicted > 10);
        let map = store.commit_maps().unwrap();
        assert!((0..6).all(|chunk| map.has_chunk(chunk)), "{map:?}");
        store.committed(map.clone());
        // Clean chunks are dropped and reloaded.
        for &p in pages.iter().rev() {
            store.read_page(p, &mut out).unwrap();
            assert_eq!(out, page(2 + p as u8), "page {p} after the commit");
        }
        assert!(store.memory_bytes() <= SEGMENT_BYTES_MAX + 2 * (64 << 10) + READAHEAD_BYTES_MAX);
        let mut reopened = PageStore::open(backend, "p/", 4096, 1, map);
        reopened.set_chunks_loaded_max(1);
        for &p in &pages {
            reopened.read_page(p, &mut out).unwrap();
            assert_eq!(out, page(2 + p as u8), "page {p} reopened");
            assert_eq!(reopened.chunks.len(), 1);
        }
    }

    #[test]
    fn dead_segments_of_the_epoch_being_built_are_dropped() {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        // 300 pages, more than a segment holds, written back again and again:
        // about ten segments' worth, each superseded by the next rounds (a page
        // whose latest version is still in the open segment would be replaced in
        // place instead).
        for round in 0..2600u32 {
            store.write_page(round % 300, &page(round as u8)).unwrap();
        }
        assert!(store.stats().segments_written >= 10);
        assert!(
            backend.list("p/segments/").unwrap().len() <= 2,
            "superseded segments are deleted at once"
        );
        let map = store.commit_maps().unwrap();
        let mut out = page(0);
        let mut reopened = PageStore::open(backend, "p/", 4096, 1, map);
        for p in 0..300u32 {
            reopened.read_page(p, &mut out).unwrap();
            // The last round that wrote page p: 2400 + p, or 2100 + p past 2599.
            let round = if 2400 + p < 2600 { 2400 + p } else { 2100 + p };
            assert_eq!(out, page(round as u8), "page {p}");
        }
        assert!(mem.bytes_stored() < 3 * SEGMENT_BYTES_MAX);
    }

    #[test]
    fn compaction_moves_the_live_records_of_sparse_segments() {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        store.set_compaction_bytes_max(0);
        for i in 0..300u32 {
            store.write_page(i, &page(i as u8)).unwrap();
        }
        let map = store.commit_maps().unwrap();
        store.committed(map.clone());
        // Supersede most of the first (full) segment and a few of the second.
        for i in (0..250u32).chain(260..270) {
            store.write_page(i, &page(i as u8 ^ 0xff)).unwrap();
        }
        let report = store.compact(COMPACTION_BYTES_MAX).unwrap();
        assert_eq!(report.segments, 1, "only the sparse segment");
        let capacity = u64::from(segment_capacity(4096));
        assert_eq!(
            report.pages,
            capacity - 250,
            "pages 250..capacity were still live"
        );
        let map = store.commit_maps().unwrap();
        assert!(
            !map.segments.keys().any(|id| id.epoch == 1 && id.seq == 0),
            "the sparse segment is unreferenced: {map:?}"
        );
        let mut reopened = PageStore::open(backend, "p/", 4096, 2, map);
        let mut out = page(0);
        for i in 0..300u32 {
            reopened.read_page(i, &mut out).unwrap();
            let changed = i < 250 || (260..270).contains(&i);
            assert_eq!(out, page(if changed { i as u8 ^ 0xff } else { i as u8 }));
        }
    }

    #[test]
    fn compaction_leaves_damaged_records_in_place() {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let mut store = PageStore::open(backend.clone(), "p/", 4096, 0, PageMapRef::default());
        for i in 0..10u32 {
            store.write_page(i, &page(i as u8)).unwrap();
        }
        let map = store.commit_maps().unwrap();
        store.committed(map);
        let key = backend.list("p/segments/").unwrap().remove(0);
        let record = RECORD_HEADER_BYTES + 4096;
        assert!(mem.flip_bit(&key, SEGMENT_HEADER_BYTES + 3 * record + 100, 0));
        for i in 4..10u32 {
            store.write_page(i, &page(0xee)).unwrap();
        }
        let report = store.compact(COMPACTION_BYTES_MAX).unwrap();
        assert_eq!((report.pages, report.records_damaged), (3, 1));
        let mut out = page(0);
        assert!(matches!(
            store.read_page(3, &mut out),
            Err(PageStoreError::Corrupt { .. })
        ));
        store.read_page(2, &mut out).unwrap();
        assert_eq!(out, page(2));
    }
}
