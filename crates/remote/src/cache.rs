//! `CachedStore`: a bounded cache on the local disk in front of a remote store.
//!
//! A resume on the device that wrote or last read a heap reads its pages from
//! the local disk first, and only what is missing from the remote store. The
//! cache holds *immutable* objects only (by default the segments and page-map
//! chunks of processes, and the content-addressed modules: see
//! [`is_immutable_key`]); manifests, leases, listings and every other key pass
//! straight through to the store underneath.
//!
//! The cache is safe to lose at any moment: it holds copies, each block file
//! carries its key, index and a CRC-32C, and anything that does not check out
//! (damaged, truncated, another key, another layout version, a local I/O
//! error) is a miss answered by the store underneath, never an error. The
//! layout, the crash analysis and the limits are in `docs/cache.md`.
//!
//! # The assumption
//! A cached key is never rewritten with different bytes, except through this
//! cache: `delete` and a write-through `put_new` drop every block of the key
//! first. Objects of the format are never modified after creation, but the
//! segment and map names of an epoch that never committed are reused by the
//! next runner (`segments/<epoch>-<seq>`): if another device removes and
//! rewrites them, this device's copies are stale. [`CachedStore::forget_prefix`]
//! drops a process's blocks for a caller that knows the process ran elsewhere
//! since (see `docs/cache.md`, *Known limits*).

use ferrite_pagestore::{StorageBackend, StorageError};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt, fs,
    io::{self, Read, Write},
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, SystemTime},
};

/// Bytes of an object per block file (the last block of an object is shorter).
/// A page fault reads a 4 KiB record, readahead up to 256 KiB, of a 1 MiB
/// segment: a segment is four blocks.
pub const CACHE_BLOCK_BYTES: u64 = 256 << 10;
/// Magic of a block file.
pub const CACHE_MAGIC: [u8; 4] = *b"FCBK";
/// Layout version of block files.
pub const CACHE_VERSION: u32 = 1;
/// Bytes of a block file's header, before the key.
pub const CACHE_HEADER_BYTES: usize = 32;
/// Longest key cached (S3's limit); longer keys pass through.
pub const CACHE_KEY_BYTES_MAX: usize = 1024;
/// A default bound for callers without one (`--cache-size`).
pub const CACHE_BYTES_DEFAULT: u64 = 1 << 30;
/// Largest block file a reader accepts.
const BLOCK_FILE_BYTES_MAX: u64 =
    (CACHE_HEADER_BYTES + CACHE_KEY_BYTES_MAX) as u64 + CACHE_BLOCK_BYTES;
/// Most blocks fetched by one ranged get of the store underneath (16 MiB).
const RUN_BLOCKS_MAX: u64 = 64;
/// Most directory entries the scan at open looks at; past that the bound is
/// approximate (entries not seen are not counted).
const SCAN_ENTRIES_MAX: usize = 1 << 20;
/// Temporary files older than this are a crashed writer's and removed at open;
/// younger ones may be another live process's.
const TMP_AGE_MIN: Duration = Duration::from_mins(1);
/// Marks a temporary file name: `<index>.tmp-<pid>-<seq>`.
const TMP_MARK: &str = ".tmp-";

const _: () = assert!(CACHE_BLOCK_BYTES.is_power_of_two() && CACHE_BLOCK_BYTES <= u32::MAX as u64);

/// What a cache did, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks read from the local disk.
    pub hits: u64,
    /// Blocks fetched from the store underneath (for cacheable keys).
    pub misses: u64,
    /// Bytes of answers that came from the local disk.
    pub bytes_from_cache: u64,
    /// Bytes fetched from the store underneath for cacheable keys.
    pub bytes_fetched: u64,
    /// Local I/O errors (each made the operation fall back to the store).
    pub errors: u64,
    /// Blocks removed to stay within the bound.
    pub evictions: u64,
    /// Block files that failed their checks (damaged, truncated, another
    /// key): removed and counted as misses.
    pub damaged: u64,
    /// False if the cache directory could not be created (or the cache could
    /// not remove a stale block): every operation then goes to the store.
    pub enabled: bool,
}

impl CacheStats {
    /// Hits over blocks read (hits and misses), 0 when nothing was read.
    pub fn hit_rate(&self) -> f64 {
        let blocks = self.hits + self.misses;
        if blocks == 0 {
            0.0
        } else {
            self.hits as f64 / blocks as f64
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_from_cache: AtomicU64,
    bytes_fetched: AtomicU64,
    errors: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
    enabled: AtomicBool,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CacheStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            bytes_from_cache: get(&self.bytes_from_cache),
            bytes_fetched: get(&self.bytes_fetched),
            errors: get(&self.errors),
            evictions: get(&self.evictions),
            damaged: get(&self.damaged),
            enabled: self.enabled.load(Ordering::Relaxed),
        }
    }
}

/// The statistics of a [`CachedStore`], for a caller that handed the store on
/// (as an `Arc<dyn StorageBackend>`) and keeps only this. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CacheStatsHandle(Arc<Counters>);

impl CacheStatsHandle {
    /// The statistics now.
    pub fn get(&self) -> CacheStats {
        self.0.snapshot()
    }
}

/// The default cache predicate: the objects of the format that are immutable
/// once created: `modules/...` (named by their SHA-256), and the segments and
/// page-map chunks of processes (`procs/<name>/.../segments/...`,
/// `procs/<name>/.../maps/...`).
pub fn is_immutable_key(key: &str) -> bool {
    key.starts_with("modules/")
        || (key.starts_with("procs/") && (key.contains("/segments/") || key.contains("/maps/")))
}

/// The user's cache directory for Ferrite: `$XDG_CACHE_HOME/ferrite`, else
/// `$HOME/.cache/ferrite`; `None` if neither is set (a relative
/// `XDG_CACHE_HOME` is ignored, as the XDG specification says).
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let xdg = xdg_cache_home.map(PathBuf::from);
    if let Some(xdg) = xdg.filter(|xdg| xdg.is_absolute()) {
        return Some(xdg.join("ferrite"));
    }
    home.filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("ferrite"))
}

/// A block: the `index`-th `CACHE_BLOCK_BYTES` of the object whose key hashes
/// to `key_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BlockId {
    key_hash: u64,
    index: u64,
}

/// The blocks this process knows of, with their file sizes and recency.
#[derive(Debug, Default)]
struct Index {
    /// File bytes and use stamp of each block.
    blocks: BTreeMap<BlockId, (u64, u64)>,
    /// Blocks by use stamp, least recently used first.
    by_use: BTreeMap<u64, BlockId>,
    clock: u64,
    bytes: u64,
}

impl Index {
    /// Records a use of `id`, whose file holds `bytes`.
    fn touch(&mut self, id: BlockId, bytes: u64) {
        self.remove(id);
        self.clock += 1;
        self.blocks.insert(id, (bytes, self.clock));
        self.by_use.insert(self.clock, id);
        self.bytes += bytes;
    }

    fn remove(&mut self, id: BlockId) {
        if let Some((bytes, stamp)) = self.blocks.remove(&id) {
            self.by_use.remove(&stamp);
            self.bytes -= bytes;
        }
    }

    fn remove_key(&mut self, key_hash: u64) {
        let ids: Vec<BlockId> = self
            .blocks
            .range(
                BlockId { key_hash, index: 0 }..=BlockId {
                    key_hash,
                    index: u64::MAX,
                },
            )
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// Removes least recently used blocks from the index until it holds at
    /// most `bytes_max`; returns them (their files are for the caller to remove).
    fn evict_over(&mut self, bytes_max: u64) -> Vec<BlockId> {
        let mut evicted = Vec::new();
        while self.bytes > bytes_max {
            let Some((_, id)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((bytes, _)) = self.blocks.remove(&id) {
                self.bytes -= bytes;
            }
            evicted.push(id);
        }
        evicted
    }
}

/// A [`StorageBackend`] that keeps copies of immutable objects of `inner` on
/// the local disk, in blocks, bounded, and answers reads from them first.
///
/// Reads of cacheable keys are served block by block: cached blocks from the
/// local disk, each run of missing blocks with one ranged get of `inner`
/// (then stored). Answers are byte for byte those of `inner`, ranges past the
/// end included. `put_new` and `put_new_deferred` write through (the object's
/// blocks are stored once `inner` accepted it); `delete` drops the key's
/// blocks. `sync` and `list` pass through.
///
/// Several processes may share the directory: block files are replaced by
/// atomic renames, and a block removed by another process is a miss. Each
/// process bounds the blocks it knows of (those found at open and those it
/// wrote or read since), so with `n` processes the directory holds up to
/// about `n` times the bound.
pub struct CachedStore {
    inner: Arc<dyn StorageBackend>,
    /// The namespace's directory: `<root>/<hash of the namespace>`.
    dir: PathBuf,
    bytes_max: u64,
    cacheable: Box<dyn Fn(&str) -> bool + Send + Sync>,
    index: Mutex<Index>,
    counters: Arc<Counters>,
    /// Names temporary files apart within this process.
    tmp_seq: AtomicU64,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("dir", &self.dir)
            .field("bytes_max", &self.bytes_max)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CachedStore {
    /// A cache of at most `bytes_max` bytes of block files (headers included)
    /// in front of `inner`, under `root` (see [`default_cache_dir`]) in the
    /// subdirectory of `namespace` (the store's URL, say: two stores never
    /// share blocks). Scans what an earlier run left there, removes its
    /// temporary files and evicts down to the bound.
    ///
    /// Never fails: if the directory cannot be created, or `bytes_max` is 0,
    /// the cache is off ([`CacheStats::enabled`] is false) and every
    /// operation goes to `inner`.
    pub fn open(
        inner: Arc<dyn StorageBackend>,
        root: impl AsRef<Path>,
        namespace: &str,
        bytes_max: u64,
    ) -> Self {
        let dir = root.as_ref().join(hex(hash64(namespace.as_bytes())));
        let store = Self {
            inner,
            dir,
            bytes_max,
            cacheable: Box::new(is_immutable_key),
            index: Mutex::new(Index::default()),
            counters: Arc::new(Counters::default()),
            tmp_seq: AtomicU64::new(0),
        };
        if bytes_max > 0 && fs::create_dir_all(&store.dir).is_ok() {
            store.counters.enabled.store(true, Ordering::Relaxed);
            store.load_index();
        }
        store
    }

    /// Caches the keys for which `cacheable` holds instead of
    /// [`is_immutable_key`]'s. Only keys never rewritten with other bytes
    /// may be cached (see the module documentation).
    pub fn with_cacheable(
        mut self,
        cacheable: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.cacheable = Box::new(cacheable);
        self
    }

    /// The store underneath.
    pub fn inner(&self) -> &Arc<dyn StorageBackend> {
        &self.inner
    }

    /// The directory of this cache's namespace.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bound on the bytes of block files.
    pub fn bytes_max(&self) -> u64 {
        self.bytes_max
    }

    /// The statistics now.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    /// A handle on the statistics that outlives handing the store on.
    pub fn stats_handle(&self) -> CacheStatsHandle {
        CacheStatsHandle(Arc::clone(&self.counters))
    }

    /// Bytes of block files this process knows of.
    pub fn bytes_cached(&self) -> u64 {
        self.index().bytes
    }

    /// Drops the blocks of every key that starts with `prefix` (all of them
    /// for an empty prefix), this process's and others'; returns the number
    /// of keys dropped. For a caller that learns that objects under `prefix`
    /// may have been rewritten elsewhere (a process that ran on another
    /// device since). Reads one header per cached key.
    pub fn forget_prefix(&self, prefix: &str) -> usize {
        if !self.enabled() {
            return 0;
        }
        let mut dropped = 0;
        for (key_hash, key_dir) in self.key_dirs() {
            let forget = prefix.is_empty()
                || match first_key(&key_dir) {
                    // A directory without a readable header holds nothing
                    // usable: drop it too.
                    None => true,
                    Some(key) => key.starts_with(prefix),
                };
            if forget {
                self.drop_key_dir(key_hash, &key_dir);
                dropped += 1;
            }
        }
        dropped
    }

    fn enabled(&self) -> bool {
        self.counters.enabled.load(Ordering::Relaxed)
    }

    fn caching(&self, key: &str) -> bool {
        self.enabled() && key.len() <= CACHE_KEY_BYTES_MAX && (self.cacheable)(key)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cold]
    fn count_error(&self) {
        Counters::add(&self.counters.errors, 1);
    }

    fn key_dir(&self, key_hash: u64) -> PathBuf {
        self.dir.join(hex(key_hash))
    }

    fn block_path(&self, id: BlockId) -> PathBuf {
        self.key_dir(id.key_hash).join(hex(id.index))
    }

    /// The key directories of the namespace (at most [`SCAN_ENTRIES_MAX`]).
    fn key_dirs(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .take(SCAN_ENTRIES_MAX)
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let key_hash = parse_hex(&entry.file_name().to_string_lossy())?;
                Some((key_hash, entry.path()))
            })
            .collect()
    }

    /// Learns the blocks on disk: sizes, and file times as the starting
    /// recency. Removes old temporary files and empty key directories, then
    /// evicts down to the bound.
    fn load_index(&self) {
        let mut found = Vec::new();
        let mut budget = SCAN_ENTRIES_MAX;
        for (key_hash, key_dir) in self.key_dirs() {
            let Ok(entries) = fs::read_dir(&key_dir) else {
                continue;
            };
            let mut any = false;
            for entry in entries.filter_map(Result::ok) {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                any = true;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                if name.contains(TMP_MARK) {
                    let age = SystemTime::now()
                        .duration_since(modified)
                        .unwrap_or_default();
                    if age >= TMP_AGE_MIN {
                        // A crashed writer's: nothing will rename it.
                        let _ = fs::remove_file(entry.path());
                    }
                } else if let Some(index) = parse_hex(&name) {
                    found.push((modified, BlockId { key_hash, index }, meta.len()));
                }
            }
            if !any {
                let _ = fs::remove_dir(&key_dir);
            }
        }
        found.sort();
        let evicted = {
            let mut index = self.index();
            for (_, id, bytes) in found {
                index.touch(id, bytes);
            }
            index.evict_over(self.bytes_max)
        };
        self.remove_evicted(&evicted);
    }

    fn remove_evicted(&self, evicted: &[BlockId]) {
        for id in evicted {
            Counters::add(&self.counters.evictions, 1);
            self.remove_block_file(&self.block_path(*id));
        }
    }

    /// Block `index` of `key` from the local disk, if it is there and checks
    /// out; a block that does not is removed.
    fn load(&self, key: &str, index: u64) -> Option<Block> {
        let id = BlockId {
            key_hash: hash64(key.as_bytes()),
            index,
        };
        let path = self.block_path(id);
        let bytes = match read_block_file(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                self.index().remove(id);
                return None;
            }
            Err(_) => {
                self.count_error();
                self.index().remove(id);
                return None;
            }
        };
        let file_bytes = bytes.len() as u64;
        let Some(data) = decode_block(&bytes, key, index) else {
            Counters::add(&self.counters.damaged, 1);
            self.index().remove(id);
            self.remove_block_file(&path);
            return None;
        };
        self.remember(id, file_bytes);
        Some(Block { bytes, data })
    }

    /// Records a use of block `id` (its file holds `file_bytes`), and evicts
    /// down to the bound.
    fn remember(&self, id: BlockId, file_bytes: u64) {
        let evicted = {
            let mut index = self.index();
            index.touch(id, file_bytes);
            index.evict_over(self.bytes_max)
        };
        self.remove_evicted(&evicted);
    }

    /// Removes a block file; one already gone is no error.
    fn remove_block_file(&self, path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(_) => self.count_error(),
        }
    }

    /// Stores `data` as block `index` of `key`; a failure is counted, not
    /// reported.
    fn store(&self, key: &str, index: u64, data: &[u8]) {
        let id = BlockId {
            key_hash: hash64(key.as_bytes()),
            index,
        };
        let bytes = encode_block(key, index, data);
        let key_dir = self.key_dir(id.key_hash);
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = key_dir.join(format!(
            "{}{TMP_MARK}{}-{seq}",
            hex(index),
            std::process::id()
        ));
        let written = write_new(&tmp, &bytes)
            .or_else(|error| {
                // The key's directory is missing (first block, or removed
                // meanwhile by an eviction, a drop or the user): create it.
                if error.kind() != io::ErrorKind::NotFound {
                    return Err(error);
                }
                fs::create_dir_all(&key_dir)?;
                write_new(&tmp, &bytes)
            })
            .and_then(|()| fs::rename(&tmp, self.block_path(id)));
        if written.is_ok() {
            self.remember(id, bytes.len() as u64);
        } else {
            self.count_error();
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Stores the blocks of `bytes`, fetched from offset `first *
    /// CACHE_BLOCK_BYTES` of `key` by a get that asked for `asked` bytes:
    /// every block the get covered whole, the short one that ends the object,
    /// or an empty one if the object ends at a block boundary within the
    /// asked span.
    fn store_span(&self, key: &str, first: u64, bytes: &[u8], asked: u64) {
        let len = bytes.len() as u64;
        let mut at = 0u64;
        while at <= len && at.saturating_add(CACHE_BLOCK_BYTES) <= asked {
            let piece = &bytes[at as usize..(at + CACHE_BLOCK_BYTES).min(len) as usize];
            self.store(key, first + at / CACHE_BLOCK_BYTES, piece);
            if (piece.len() as u64) < CACHE_BLOCK_BYTES {
                break;
            }
            at += CACHE_BLOCK_BYTES;
        }
    }

    /// Removes every block of `key` (before it is written, and when it is
    /// deleted), this process's and others'. If a block file cannot be
    /// removed, a stale copy could be read later: the cache turns itself off.
    fn drop_key(&self, key: &str) {
        let key_hash = hash64(key.as_bytes());
        self.drop_key_dir(key_hash, &self.key_dir(key_hash));
    }

    fn drop_key_dir(&self, key_hash: u64, key_dir: &Path) {
        self.index().remove_key(key_hash);
        let entries = match fs::read_dir(key_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return,
            Err(_) => return self.fail_stop(),
        };
        // A key has at most a few blocks; the bound keeps a damaged directory
        // from making this loop long.
        for entry in entries.take(SCAN_ENTRIES_MAX) {
            let removed = entry.and_then(|entry| fs::remove_file(entry.path()));
            match removed {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return self.fail_stop(),
            }
        }
        // Fails if another process wrote a block meanwhile: that one stays.
        let _ = fs::remove_dir(key_dir);
    }

    #[cold]
    fn fail_stop(&self) {
        self.count_error();
        self.counters.enabled.store(false, Ordering::Relaxed);
    }

    /// A whole object: from the cache if all its blocks are there, else
    /// fetched whole and stored.
    fn get_whole(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::new();
        // A complete object is a run of full blocks and one short (possibly
        // empty) block; there cannot be more blocks than the bound holds.
        let blocks_max = self.bytes_max / CACHE_BLOCK_BYTES + 1;
        let mut hits = 0;
        for index in 0..=blocks_max {
            let Some(block) = self.load(key, index) else {
                break;
            };
            out.extend_from_slice(block.data());
            hits += 1;
            if (block.data().len() as u64) < CACHE_BLOCK_BYTES {
                Counters::add(&self.counters.hits, hits);
                Counters::add(&self.counters.bytes_from_cache, out.len() as u64);
                return Ok(out);
            }
        }
        let bytes = self.inner.get(key, None)?;
        let len = bytes.len() as u64;
        Counters::add(&self.counters.misses, len / CACHE_BLOCK_BYTES + 1);
        Counters::add(&self.counters.bytes_fetched, len);
        self.store_span(key, 0, &bytes, u64::MAX);
        Ok(bytes)
    }

    /// Bytes `range` (not empty) of `key`, block by block.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        debug_assert!(range.start < range.end);
        let last = (range.end - 1) / CACHE_BLOCK_BYTES;
        let mut out = Vec::new();
        let mut index = range.start / CACHE_BLOCK_BYTES;
        // A block found while looking for the end of a run of missing ones.
        let mut next: Option<Block> = None;
        while index <= last {
            if let Some(block) = next.take().or_else(|| self.load(key, index)) {
                let used =
                    append_clipped(&mut out, &range, index * CACHE_BLOCK_BYTES, block.data());
                Counters::add(&self.counters.hits, 1);
                Counters::add(&self.counters.bytes_from_cache, used);
                if (block.data().len() as u64) < CACHE_BLOCK_BYTES {
                    break;
                }
                index += 1;
                continue;
            }
            // Blocks `index..run_end` are missing: fetch them with one get.
            let mut run_end = index + 1;
            while run_end <= last && run_end - index < RUN_BLOCKS_MAX {
                next = self.load(key, run_end);
                if next.is_some() {
                    break;
                }
                run_end += 1;
            }
            let start = index * CACHE_BLOCK_BYTES;
            let end = run_end.saturating_mul(CACHE_BLOCK_BYTES);
            let bytes = self.inner.get(key, Some(start..end))?;
            let len = bytes.len() as u64;
            Counters::add(
                &self.counters.misses,
                len.div_ceil(CACHE_BLOCK_BYTES).max(1),
            );
            Counters::add(&self.counters.bytes_fetched, len);
            self.store_span(key, index, &bytes, end - start);
            append_clipped(&mut out, &range, start, &bytes);
            if len < end - start {
                break; // the object ends in this run
            }
            index = run_end;
        }
        Ok(out)
    }
}

impl StorageBackend for CachedStore {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if !self.caching(key) {
            return self.inner.put_new(key, bytes);
        }
        // Blocks of an earlier object of this name (removed elsewhere, or
        // lost before its deferred write was synced) must not outlive it.
        self.drop_key(key);
        self.inner.put_new(key, bytes)?;
        self.store_span(key, 0, bytes, u64::MAX);
        Ok(())
    }

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if !self.caching(key) {
            return self.inner.put_new_deferred(key, bytes);
        }
        self.drop_key(key);
        self.inner.put_new_deferred(key, bytes)?;
        self.store_span(key, 0, bytes, u64::MAX);
        Ok(())
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        self.inner.sync(keys)
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        if !self.caching(key) {
            return self.inner.get(key, range);
        }
        match range {
            None => self.get_whole(key),
            // No bytes to read, but a missing object is still the store's to
            // report.
            Some(range) if range.start >= range.end => self.inner.get(key, Some(range)),
            Some(range) => self.get_range(key, range),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let result = self.inner.delete(key);
        // Dropped even if the delete failed: the object may be gone.
        if self.caching(key) {
            self.drop_key(key);
        }
        result
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.inner.size(key)
    }

    fn subscribe(
        &self,
        prefix: &str,
        notify: ferrite_pagestore::Notify,
    ) -> Result<bool, StorageError> {
        self.inner.subscribe(prefix, notify)
    }

    /// Forwards the blocks of `ranges` that the cache does not hold, each
    /// run of missing blocks as one block-aligned range: what the cache has
    /// is read from the local disk anyway.
    fn prefetch(&self, ranges: &[(String, Range<u64>)]) {
        let mut missing = Vec::new();
        for (key, range) in ranges {
            if !self.caching(key) || range.start >= range.end {
                missing.push((key.clone(), range.clone()));
                continue;
            }
            let blocks = range.start / CACHE_BLOCK_BYTES..range.end.div_ceil(CACHE_BLOCK_BYTES);
            let key_hash = hash64(key.as_bytes());
            let index_held = self.index();
            let mut run: Option<Range<u64>> = None;
            for index in blocks {
                let held = index_held.blocks.contains_key(&BlockId { key_hash, index });
                match (&mut run, held) {
                    (Some(run), false) => run.end = index + 1,
                    (None, false) => run = Some(index..index + 1),
                    (Some(_), true) => {
                        let done = run.take().expect("a run");
                        missing.push((key.clone(), block_span(&done)));
                    }
                    (None, true) => {}
                }
            }
            drop(index_held);
            if let Some(run) = run {
                missing.push((key.clone(), block_span(&run)));
            }
        }
        if !missing.is_empty() {
            self.inner.prefetch(&missing);
        }
    }
}

/// The bytes of blocks `blocks` of an object.
fn block_span(blocks: &Range<u64>) -> Range<u64> {
    blocks.start * CACHE_BLOCK_BYTES..blocks.end * CACHE_BLOCK_BYTES
}

/// A block file's bytes and where its data is in them.
struct Block {
    bytes: Vec<u8>,
    data: Range<usize>,
}

impl Block {
    fn data(&self) -> &[u8] {
        &self.bytes[self.data.clone()]
    }
}

/// Appends the part of `data` (bytes of the object from offset `at`) that
/// lies in `range`; returns its length.
fn append_clipped(out: &mut Vec<u8>, range: &Range<u64>, at: u64, data: &[u8]) -> u64 {
    let data_end = at.saturating_add(data.len() as u64);
    let lo = range.start.max(at);
    let hi = range.end.min(data_end);
    if lo >= hi {
        return 0;
    }
    out.extend_from_slice(&data[(lo - at) as usize..(hi - at) as usize]);
    hi - lo
}

/// The first 8 bytes of SHA-256, little-endian: names of key and namespace
/// directories. A collision is harmless (a block's header names its key).
fn hash64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn hex(value: u64) -> String {
    format!("{value:016x}")
}

fn parse_hex(name: &str) -> Option<u64> {
    (name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

/// Encodes block `index` of `key` (layout in `docs/cache.md`).
fn encode_block(key: &str, index: u64, data: &[u8]) -> Vec<u8> {
    assert!(key.len() <= CACHE_KEY_BYTES_MAX && data.len() as u64 <= CACHE_BLOCK_BYTES);
    let mut out = Vec::with_capacity(CACHE_HEADER_BYTES + key.len() + data.len());
    out.extend_from_slice(&CACHE_MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(&(CACHE_BLOCK_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), key.as_bytes());
    let crc = crc32c::crc32c_append(crc, data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(data);
    debug_assert_eq!(
        decode_block(&out, key, index),
        Some(out.len() - data.len()..out.len())
    );
    out
}

/// Where the data of block file `bytes` is, if it is block `index` of `key`
/// in this layout and its checksum holds; `None` for anything else.
fn decode_block(bytes: &[u8], key: &str, index: u64) -> Option<Range<usize>> {
    let header = bytes.get(..CACHE_HEADER_BYTES)?;
    let u32_at = |at: usize| {
        let mut field = [0; 4];
        field.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(field)
    };
    let mut index_field = [0; 8];
    index_field.copy_from_slice(&header[16..24]);
    let data_len = u32_at(12) as usize;
    let key_len = u32_at(24) as usize;
    let fields_ok = header[..4] == CACHE_MAGIC
        && u32_at(4) == CACHE_VERSION
        && u32_at(8) as u64 == CACHE_BLOCK_BYTES
        && data_len as u64 <= CACHE_BLOCK_BYTES
        && u64::from_le_bytes(index_field) == index
        && key_len == key.len()
        && bytes.len() == CACHE_HEADER_BYTES + key_len + data_len;
    if !fields_ok || &bytes[CACHE_HEADER_BYTES..CACHE_HEADER_BYTES + key_len] != key.as_bytes() {
        return None;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..28]), &bytes[CACHE_HEADER_BYTES..]);
    (crc == u32_at(28)).then_some(CACHE_HEADER_BYTES + key_len..bytes.len())
}

/// The bytes of block file `path`; `None` if there is none. Refuses to read
/// more than a block file can hold (the decoder then refuses the length).
/// Marks the file used (its modification time is the recency a later open
/// starts from).
fn read_block_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len().min(BLOCK_FILE_BYTES_MAX + 1);
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut file)
        .take(BLOCK_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)?;
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(bytes))
}

/// Creates `path` with `bytes` (no sync: the cache may lose anything).
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)
}

/// The key in the header of some block file of `key_dir`.
fn first_key(key_dir: &Path) -> Option<String> {
    for entry in fs::read_dir(key_dir).ok()?.take(64).filter_map(Result::ok) {
        if parse_hex(&entry.file_name().to_string_lossy()).is_none() {
            continue;
        }
        let mut head = Vec::new();
        let file = fs::File::open(entry.path()).ok()?;
        file.take((CACHE_HEADER_BYTES + CACHE_KEY_BYTES_MAX) as u64)
            .read_to_end(&mut head)
            .ok()?;
        let key_len = head.get(24..28)?;
        let key_len = u32::from_le_bytes([key_len[0], key_len[1], key_len[2], key_len[3]]) as usize;
        let key = head.get(CACHE_HEADER_BYTES..CACHE_HEADER_BYTES.checked_add(key_len)?)?;
        return String::from_utf8(key.to_vec()).ok();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_refuse_others() {
        let data = vec![7u8; 1000];
        let bytes = encode_block("procs/p/segments/1", 3, &data);
        let range = decode_block(&bytes, "procs/p/segments/1", 3).unwrap();
        assert_eq!(&bytes[range], &data[..]);
        assert!(decode_block(&bytes, "procs/p/segments/2", 3).is_none());
        assert!(decode_block(&bytes, "procs/p/segments/1", 4).is_none());
        assert!(decode_block(&bytes[..bytes.len() - 1], "procs/p/segments/1", 3).is_none());
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(
                decode_block(&flipped, "procs/p/segments/1", 3).is_none(),
                "byte {at}"
            );
        }
        assert!(decode_block(&[], "k", 0).is_none());
    }

    #[test]
    fn empty_blocks_round_trip() {
        let bytes = encode_block("modules/m", 0, &[]);
        assert_eq!(
            decode_block(&bytes, "modules/m", 0),
            Some(bytes.len()..bytes.len())
        );
    }

    #[test]
    fn the_default_predicate_caches_immutable_objects_only() {
        for key in [
            "modules/ab12",
            "procs/p/segments/0000000000000001-00000000",
            "procs/p/maps/0000000000000001-00000000",
            "procs/p/quarantine/1/segments/0000000000000001-00000000",
        ] {
            assert!(is_immutable_key(key), "{key}");
        }
        for key in [
            "procs/p/manifests/0000000000000001",
            "procs/p/lease/0000000000000001",
            "sealed/keycheck",
            "segments/x",
        ] {
            assert!(!is_immutable_key(key), "{key}");
        }
    }

    #[test]
    fn the_index_evicts_least_recently_used_first() {
        let id = |index| BlockId { key_hash: 1, index };
        let mut index = Index::default();
        index.touch(id(0), 10);
        index.touch(id(1), 10);
        index.touch(id(2), 10);
        index.touch(id(0), 10);
        assert_eq!(index.evict_over(20), vec![id(1)]);
        assert_eq!(index.bytes, 20);
        index.remove_key(1);
        assert_eq!(index.bytes, 0);
        assert!(index.by_use.is_empty());
    }

    #[test]
    fn the_default_directory_follows_xdg() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_dir_from(some("/x/cache"), some("/home/u")),
            Some(PathBuf::from("/x/cache/ferrite"))
        );
        assert_eq!(
            cache_dir_from(some("relative"), some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/ferrite"))
        );
        assert_eq!(
            cache_dir_from(None, some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/ferrite"))
        );
        assert_eq!(cache_dir_from(some(""), some("")), None);
        assert_eq!(cache_dir_from(None, None), None);
    }

    #[test]
    fn clipping_follows_the_range() {
        let mut out = Vec::new();
        assert_eq!(append_clipped(&mut out, &(5..8), 4, &[1, 2, 3, 4, 5, 6]), 3);
        assert_eq!(out, [2, 3, 4]);
        assert_eq!(append_clipped(&mut out, &(0..4), 4, &[9]), 0);
    }
}
