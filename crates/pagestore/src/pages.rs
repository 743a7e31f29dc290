//! Page versions: the pages of one process's heap as immutable records in segment
//! objects, found through a page map kept in chunk objects.
//!
//! A new version of a page (written back on eviction, or at a checkpoint) is
//! appended to the open segment of the epoch being built; it never overwrites the
//! version a committed checkpoint refers to. [`PageStore::commit_maps`] writes the
//! open segment and the changed page-map chunks, and returns what the checkpoint
//! manifest must record; the manifest itself is written by the checkpoint layer.

use crate::{
    backend::{StorageBackend, StorageError},
    record::{
        decode_map, decode_record, encode_map, encode_record, map_key, segment_header, FormatError,
        Location, SegmentId, CHUNK_PAGES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    },
};
use std::{collections::BTreeMap, sync::Arc};

/// Why a page could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PageStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes failed verification: they are never used.
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: FormatError },
}

/// The most bytes a segment buffers in memory before it is written out.
pub const SEGMENT_BYTES_MAX: usize = 1 << 20;

/// A page-map chunk of the current epoch.
#[derive(Debug)]
struct Chunk {
    entries: Box<[Location]>,
    /// Changed since the last commit: must be written at the next one.
    dirty: bool,
}

/// The open (not yet written) segment of the epoch being built.
#[derive(Debug)]
struct OpenSegment {
    id: SegmentId,
    bytes: Vec<u8>,
}

/// What a checkpoint manifest records about the page store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageMapRef {
    /// For each chunk that has ever been written: the epoch of its latest version.
    pub chunks: BTreeMap<u32, u64>,
    /// Live page versions per segment, for garbage collection.
    pub segments: BTreeMap<SegmentId, u32>,
}

/// Counters, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageStoreStats {
    pub pages_read: u64,
    pub pages_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_written: u64,
    pub maps_written: u64,
}

/// The page versions of one process.
#[derive(Debug)]
pub struct PageStore {
    backend: Arc<dyn StorageBackend>,
    prefix: String,
    page_size: usize,
    /// The epoch being built (the last committed epoch plus one).
    epoch: u64,
    committed: PageMapRef,
    chunks: BTreeMap<u32, Chunk>,
    live: BTreeMap<SegmentId, u32>,
    open: OpenSegment,
    stats: PageStoreStats,
}

impl PageStore {
    /// The page store of a process whose last committed checkpoint is
    /// `committed_epoch` (0 for a new process) with page map `map`.
    ///
    /// Objects of later epochs (left by a crash before their commit) must have
    /// been removed by the caller, see [`PageStore::remove_uncommitted`].
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
        let epoch = committed_epoch + 1;
        let live = map.segments.clone();
        Self {
            backend,
            prefix: prefix.into(),
            page_size,
            epoch,
            committed: map,
            chunks: BTreeMap::new(),
            live,
            open: OpenSegment {
                id: SegmentId { epoch, seq: 0 },
                bytes: Vec::new(),
            },
            stats: PageStoreStats::default(),
        }
    }

    /// Removes segment and map objects of epochs after `committed_epoch`: the
    /// remains of a checkpoint that crashed before its manifest was written.
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

    fn chunk(&mut self, chunk: u32) -> Result<&mut Chunk, PageStoreError> {
        if !self.chunks.contains_key(&chunk) {
            let entries = match self.committed.chunks.get(&chunk) {
                None => vec![Location::NONE; CHUNK_PAGES as usize].into_boxed_slice(),
                Some(&epoch) => {
                    let key = map_key(&self.prefix, epoch, chunk);
                    let bytes = self.backend.get(&key, None)?;
                    self.stats.bytes_read += bytes.len() as u64;
                    decode_map(&bytes, epoch, chunk)
                        .map_err(|reason| PageStoreError::Corrupt { key, reason })?
                        .into_boxed_slice()
                }
            };
            self.chunks.insert(
                chunk,
                Chunk {
                    entries,
                    dirty: false,
                },
            );
        }
        Ok(self.chunks.get_mut(&chunk).expect("inserted above"))
    }

    fn location(&mut self, page: u32) -> Result<Location, PageStoreError> {
        let chunk = self.chunk(page / CHUNK_PAGES)?;
        Ok(chunk.entries[(page % CHUNK_PAGES) as usize])
    }

    /// Whether `page` certainly has no stored version, known without I/O and
    /// without loading a page-map chunk: its chunk is loaded and has no entry for
    /// the page, or was never loaded nor committed. `false` means the page may
    /// have a version ([`PageStore::read_page`] tells).
    ///
    /// Lets a heap zero-fill pages it never wrote back without touching the store.
    pub fn page_never_written(&self, page: u32) -> bool {
        let index = page / CHUNK_PAGES;
        match self.chunks.get(&index) {
            Some(chunk) => !chunk.entries[(page % CHUNK_PAGES) as usize].is_some(),
            None => !self.committed.chunks.contains_key(&index),
        }
    }

    /// Reads the latest version of `page` into `out`; returns false (and zeroes
    /// `out`) if the page was never written.
    ///
    /// # Errors
    /// Storage failures, and [`PageStoreError::Corrupt`] if the stored record
    /// fails verification (it is never returned as data).
    pub fn read_page(&mut self, page: u32, out: &mut [u8]) -> Result<bool, PageStoreError> {
        assert_eq!(out.len(), self.page_size);
        let location = self.location(page)?;
        if !location.is_some() {
            out.fill(0);
            return Ok(false);
        }
        let record_len = RECORD_HEADER_BYTES + self.page_size;
        let start = location.offset as usize;
        let key = location.segment().key(&self.prefix);
        let fetched;
        let bytes = if location.segment() == self.open.id {
            &self.open.bytes[start..start + record_len]
        } else {
            let range = u64::from(location.offset)..u64::from(location.offset) + record_len as u64;
            fetched = self.backend.get(&key, Some(range))?;
            self.stats.bytes_read += fetched.len() as u64;
            &fetched[..]
        };
        decode_record(bytes, page, location.epoch, out)
            .map_err(|reason| PageStoreError::Corrupt { key, reason })?;
        self.stats.pages_read += 1;
        Ok(true)
    }

    /// Stores a new version of `page` in the epoch being built.
    ///
    /// # Errors
    /// Storage failures while loading the page map or writing a full segment.
    pub fn write_page(&mut self, page: u32, data: &[u8]) -> Result<(), PageStoreError> {
        assert_eq!(data.len(), self.page_size);
        if self.open.bytes.len() + RECORD_HEADER_BYTES + data.len() > SEGMENT_BYTES_MAX {
            self.flush_segment()?;
        }
        if self.open.bytes.is_empty() {
            self.open
                .bytes
                .extend_from_slice(&segment_header(self.open.id));
        }
        let location = Location {
            epoch: self.epoch,
            seq: self.open.id.seq,
            offset: self.open.bytes.len() as u32,
        };
        let chunk = self.chunk(page / CHUNK_PAGES)?;
        let slot = &mut chunk.entries[(page % CHUNK_PAGES) as usize];
        let old = std::mem::replace(slot, location);
        chunk.dirty = true;
        if old.is_some() {
            if let Some(count) = self.live.get_mut(&old.segment()) {
                *count = count.saturating_sub(1);
            }
        }
        *self.live.entry(location.segment()).or_insert(0) += 1;
        encode_record(&mut self.open.bytes, page, self.epoch, data);
        self.stats.pages_written += 1;
        Ok(())
    }

    /// Writes the open segment as an object (if it holds any page).
    fn flush_segment(&mut self) -> Result<(), PageStoreError> {
        if self.open.bytes.len() <= SEGMENT_HEADER_BYTES {
            return Ok(());
        }
        let key = self.open.id.key(&self.prefix);
        self.backend.put_new(&key, &self.open.bytes)?;
        self.stats.bytes_written += self.open.bytes.len() as u64;
        self.stats.segments_written += 1;
        self.open.id.seq += 1;
        self.open.bytes.clear();
        Ok(())
    }

    /// Makes every version written in this epoch durable (segments, then the
    /// changed page-map chunks) and returns the page map the manifest of this
    /// epoch must record. The epoch is not committed until that manifest is.
    ///
    /// # Errors
    /// Storage failures; the previous committed checkpoint is unaffected.
    pub fn commit_maps(&mut self) -> Result<PageMapRef, PageStoreError> {
        self.flush_segment()?;
        let mut map = self.committed.clone();
        for (&index, chunk) in &self.chunks {
            if chunk.dirty {
                let key = map_key(&self.prefix, self.epoch, index);
                let bytes = encode_map(self.epoch, index, &chunk.entries);
                match self.backend.put_new(&key, &bytes) {
                    Ok(()) => {}
                    // Written by an earlier attempt at this same commit that failed later.
                    Err(StorageError::AlreadyExists { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
                self.stats.bytes_written += bytes.len() as u64;
                self.stats.maps_written += 1;
                map.chunks.insert(index, self.epoch);
            }
        }
        map.segments = self
            .live
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(&k, &v)| (k, v))
            .collect();
        Ok(map)
    }

    /// Records that the manifest of the current epoch was committed with `map`,
    /// and starts the next epoch.
    pub fn committed(&mut self, map: PageMapRef) {
        for chunk in self.chunks.values_mut() {
            chunk.dirty = false;
        }
        self.committed = map;
        self.epoch += 1;
        self.open = OpenSegment {
            id: SegmentId {
                epoch: self.epoch,
                seq: 0,
            },
            bytes: Vec::new(),
        };
    }

    /// Bytes held in memory beyond the frames: the open segment and loaded chunks.
    pub fn memory_bytes(&self) -> usize {
        self.open.bytes.capacity()
            + self.chunks.len() * CHUNK_PAGES as usize * std::mem::size_of::<Location>()
    }
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
}
