//! `CachedStore` over `MemStore`: answers identical to the store's for every
//! range, hits, write-through, damage, a lost directory, the bound, a cache
//! that cannot be created, and two caches sharing a directory.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{MemStore, StorageBackend, StorageError};
use ferrite_remote::{CachedStore, CACHE_BLOCK_BYTES};
use std::{
    fs,
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

const B: u64 = CACHE_BLOCK_BYTES;

/// A `MemStore` that counts gets.
#[derive(Debug, Default)]
struct Counting {
    inner: MemStore,
    gets: AtomicU64,
}

impl Counting {
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

impl StorageBackend for Counting {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrite-cache-{label}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A small seeded generator (splitmix64), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn object(seed: u64, len: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn segment_key(n: u64) -> String {
    format!("procs/p/segments/{n:016x}-00000000")
}

fn cache_over(inner: Arc<dyn StorageBackend>, root: &Path, bytes_max: u64) -> CachedStore {
    CachedStore::open(inner, root, "mem://test", bytes_max)
}

/// The block files (not temporary files) under `dir`, with their sizes.
fn block_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let Ok(key_dirs) = fs::read_dir(dir) else {
        return files;
    };
    for key_dir in key_dirs.map(Result::unwrap) {
        for file in fs::read_dir(key_dir.path()).unwrap().map(Result::unwrap) {
            if !file.file_name().to_string_lossy().contains(".tmp") {
                files.push((file.path(), file.metadata().unwrap().len()));
            }
        }
    }
    files.sort();
    files
}

/// A random range over an object of `len` bytes: inside, across its end,
/// past it, empty, reversed or unbounded.
fn random_range(rng: &mut Rng, len: u64) -> Range<u64> {
    let span = len + 2 * B;
    match rng.below(10) {
        0 => {
            let start = rng.below(span);
            start..u64::MAX
        }
        1 => {
            let start = rng.below(span);
            start..start
        }
        2 => {
            let start = rng.below(span) + 1;
            start..start - 1
        }
        3 => {
            let start = len + rng.below(2 * B);
            start..start + 1 + rng.below(B)
        }
        4 => {
            let start = rng.below(span);
            start..start + 1 + rng.below(3 * B)
        }
        _ => {
            // A page fault or a readahead.
            let start = rng.below(len.max(1));
            let most = if rng.below(2) == 0 { 4120 } else { 256 << 10 };
            start..start + 1 + rng.below(most)
        }
    }
}

#[test]
fn answers_equal_the_stores_for_random_ranges() {
    let scratch = Scratch::new("ranges");
    let inner = Arc::new(MemStore::new());
    let sizes = [
        0,
        1,
        4120,
        B - 1,
        B,
        B + 1,
        2 * B,
        3 * B + 17,
        (1 << 20) - 3,
    ];
    for (n, &len) in sizes.iter().enumerate() {
        inner
            .put_new(&segment_key(n as u64), &object(n as u64, len))
            .unwrap();
    }
    // Small bound: evictions happen along the way too.
    let cache = cache_over(inner.clone(), &scratch.0, 6 * B);
    let mut rng = Rng(0x5eed);
    for round in 0..3000 {
        let n = rng.below(sizes.len() as u64 + 1);
        let key = segment_key(n); // n == sizes.len(): a missing object
        let range = if rng.below(20) == 0 {
            None
        } else {
            Some(random_range(
                &mut rng,
                sizes.get(n as usize).copied().unwrap_or(0),
            ))
        };
        let expected = inner.get(&key, range.clone());
        let actual = cache.get(&key, range.clone());
        match (&expected, &actual) {
            (Ok(expected), Ok(actual)) => assert!(
                expected == actual,
                "round {round}: {key} {range:?}: {} bytes expected, {} got",
                expected.len(),
                actual.len()
            ),
            (Err(e), Err(a)) => assert!(e.is_not_found() && a.is_not_found()),
            _ => panic!("round {round}: {key} {range:?}: {expected:?} vs {actual:?}"),
        }
    }
    let stats = cache.stats();
    assert!(
        stats.enabled && stats.hits > 0 && stats.misses > 0,
        "{stats:?}"
    );
    assert_eq!((stats.errors, stats.damaged), (0, 0), "{stats:?}");
}

#[test]
fn a_second_read_is_a_hit() {
    let scratch = Scratch::new("hits");
    let inner = Arc::new(Counting::default());
    let bytes = object(1, 1 << 20);
    inner.put_new(&segment_key(1), &bytes).unwrap();
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let range = 300_000..304_120;
    assert_eq!(
        cache.get(&segment_key(1), Some(range.clone())).unwrap(),
        &bytes[300_000..304_120]
    );
    let cold = cache.stats();
    assert_eq!((cold.hits, cold.misses, inner.gets()), (0, 1, 1));
    assert_eq!(cold.bytes_fetched, B);
    for _ in 0..10 {
        assert_eq!(
            cache.get(&segment_key(1), Some(range.clone())).unwrap(),
            &bytes[300_000..304_120]
        );
    }
    let warm = cache.stats();
    assert_eq!((warm.hits, warm.misses, inner.gets()), (10, 1, 1));
    assert_eq!(warm.bytes_from_cache, 10 * 4120);
    assert!(warm.hit_rate() > 0.9);
    // A range over a cached block and missing ones: the missing ones are one get.
    assert_eq!(cache.get(&segment_key(1), None).unwrap(), bytes);
    assert_eq!(inner.gets(), 2);
    // Now every block is there, the empty one past the end included.
    assert_eq!(
        cache.get(&segment_key(1), Some(0..u64::MAX)).unwrap(),
        bytes
    );
    assert_eq!(
        cache
            .get(&segment_key(1), Some((1 << 20) + 5..(1 << 21)))
            .unwrap(),
        b""
    );
    assert_eq!(inner.gets(), 2);
}

#[test]
fn missing_blocks_between_cached_ones_are_fetched_with_one_get_per_run() {
    let scratch = Scratch::new("runs");
    let inner = Arc::new(Counting::default());
    let bytes = object(2, 8 * B);
    inner.put_new(&segment_key(2), &bytes).unwrap();
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    // Cache blocks 0, 3 and 7.
    for index in [0, 3, 7] {
        cache
            .get(&segment_key(2), Some(index * B..index * B + 1))
            .unwrap();
    }
    assert_eq!(inner.gets(), 3);
    // Runs 1..3 and 4..7: two gets.
    assert_eq!(
        cache.get(&segment_key(2), Some(10..8 * B - 10)).unwrap(),
        &bytes[10..(8 * B - 10) as usize]
    );
    assert_eq!(inner.gets(), 5);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (3, 8), "{stats:?}");
}

#[test]
fn written_through_objects_are_read_without_the_store() {
    let scratch = Scratch::new("write-through");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let segment = object(3, (1 << 20) - 100);
    let module = object(4, 3 * B);
    let empty_map = "procs/p/maps/0000000000000001-00000000";
    cache.put_new_deferred(&segment_key(3), &segment).unwrap();
    cache.put_new("modules/abc", &module).unwrap();
    cache.put_new(empty_map, b"").unwrap();
    cache.sync(&[segment_key(3)]).unwrap();
    assert_eq!(cache.get(&segment_key(3), None).unwrap(), segment);
    assert_eq!(
        cache.get(&segment_key(3), Some(5000..9120)).unwrap(),
        &segment[5000..9120]
    );
    assert_eq!(
        cache.get(&segment_key(3), Some(0..(1 << 20) + 1)).unwrap(),
        segment
    );
    assert_eq!(cache.get("modules/abc", None).unwrap(), module);
    assert_eq!(
        cache
            .get("modules/abc", Some(3 * B - 1..3 * B + 1))
            .unwrap(),
        &module[(3 * B - 1) as usize..]
    );
    assert_eq!(cache.get(empty_map, None).unwrap(), b"");
    assert_eq!(cache.get(empty_map, Some(0..10)).unwrap(), b"");
    assert_eq!(inner.gets(), 0, "every read was a hit");

    // A resume on the same device: a new cache over the same directory.
    let reopened = cache_over(inner.clone(), &scratch.0, 64 << 20);
    assert!(reopened.bytes_cached() > (1 << 20) + 3 * B);
    assert_eq!(
        reopened
            .get(&segment_key(3), Some(700_000..704_120))
            .unwrap(),
        &segment[700_000..704_120]
    );
    assert_eq!(inner.gets(), 0);
    assert_eq!(reopened.stats().hits, 1);
}

#[test]
fn a_failed_put_writes_nothing_through() {
    let scratch = Scratch::new("failed-put");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    cache.put_new("modules/m", b"first").unwrap();
    assert!(matches!(
        cache.put_new("modules/m", b"other"),
        Err(StorageError::AlreadyExists { .. })
    ));
    assert_eq!(cache.get("modules/m", None).unwrap(), b"first");
}

#[test]
fn other_keys_pass_through() {
    let scratch = Scratch::new("pass");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    for key in [
        "procs/p/manifests/0000000000000001",
        "procs/p/lease/0000000000000001",
        "other",
    ] {
        cache.put_new(key, b"bytes").unwrap();
        assert_eq!(cache.get(key, None).unwrap(), b"bytes");
        assert_eq!(cache.get(key, Some(1..3)).unwrap(), b"yt");
    }
    assert_eq!(inner.gets(), 6);
    assert!(block_files(cache.dir()).is_empty());
    assert_eq!(cache.list("procs/p/").unwrap().len(), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (0, 0));
}

#[test]
fn delete_drops_the_blocks_and_a_new_object_of_the_name_is_read() {
    let scratch = Scratch::new("delete");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let map = "procs/p/maps/0000000000000002-00000000";
    cache.put_new_deferred(map, &object(5, 3 * B + 5)).unwrap();
    assert!(!block_files(cache.dir()).is_empty());
    cache.delete(map).unwrap();
    assert!(block_files(cache.dir()).is_empty());
    assert!(cache.get(map, Some(0..10)).unwrap_err().is_not_found());
    // The epoch being built replaces a map chunk: delete, then a shorter one.
    cache.put_new_deferred(map, &object(6, B / 2)).unwrap();
    assert_eq!(cache.get(map, None).unwrap(), object(6, B / 2));
    assert_eq!(cache.get(map, Some(2 * B..3 * B)).unwrap(), b"");
}

#[test]
fn a_put_drops_blocks_left_by_an_earlier_object_of_the_name() {
    let scratch = Scratch::new("stale");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let key = segment_key(7);
    cache.put_new_deferred(&key, &object(7, 4 * B)).unwrap();
    // The object is lost underneath (a deferred write never synced before a
    // crash), then its name is written again, shorter.
    inner.inner.delete(&key).unwrap();
    cache.put_new_deferred(&key, &object(8, B + 3)).unwrap();
    for range in [0..4 * B, 2 * B..3 * B, B..B + 10] {
        assert_eq!(
            cache.get(&key, Some(range.clone())).unwrap(),
            inner.get(&key, Some(range)).unwrap()
        );
    }
}

fn damage_test(label: &str, damage: impl Fn(&Path)) {
    let scratch = Scratch::new(label);
    let inner = Arc::new(Counting::default());
    let bytes = object(9, 2 * B + 100);
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    cache.put_new(&segment_key(9), &bytes).unwrap();
    let files = block_files(cache.dir());
    assert_eq!(files.len(), 3);
    for (path, _) in &files {
        damage(path);
    }
    for _ in 0..2 {
        assert_eq!(cache.get(&segment_key(9), None).unwrap(), bytes);
        assert_eq!(
            cache.get(&segment_key(9), Some(B - 5..B + 5)).unwrap(),
            &bytes[(B - 5) as usize..(B + 5) as usize]
        );
    }
    let stats = cache.stats();
    assert!(stats.damaged >= 1, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(
        inner.gets(),
        1,
        "the damaged blocks were replaced by the first read"
    );
}

#[test]
fn a_flipped_byte_is_a_miss_with_the_right_bytes() {
    damage_test("flip", |path| {
        let mut bytes = fs::read(path).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0x01;
        fs::write(path, bytes).unwrap();
    });
}

#[test]
fn a_flipped_header_byte_is_a_miss() {
    damage_test("flip-header", |path| {
        let mut bytes = fs::read(path).unwrap();
        bytes[13] ^= 0x80; // the data length
        fs::write(path, bytes).unwrap();
    });
}

#[test]
fn a_truncated_block_is_a_miss() {
    damage_test("truncated", |path| {
        let len = fs::metadata(path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
}

#[test]
fn a_block_of_another_key_is_a_miss() {
    let scratch = Scratch::new("swapped");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    cache.put_new(&segment_key(1), &object(1, 100)).unwrap();
    cache.put_new(&segment_key(2), &object(2, 100)).unwrap();
    let files = block_files(cache.dir());
    assert_eq!(files.len(), 2);
    fs::copy(&files[0].0, &files[1].0).unwrap();
    for n in [1, 2] {
        assert_eq!(cache.get(&segment_key(n), None).unwrap(), object(n, 100));
    }
    assert_eq!(cache.stats().damaged, 1);
}

#[test]
fn removing_the_cache_directory_mid_use_is_only_misses() {
    let scratch = Scratch::new("removed");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let bytes = object(10, 3 * B);
    cache.put_new(&segment_key(10), &bytes).unwrap();
    fs::remove_dir_all(&scratch.0).unwrap();
    assert_eq!(
        cache.get(&segment_key(10), Some(B..B + 4120)).unwrap(),
        &bytes[B as usize..(B + 4120) as usize]
    );
    assert_eq!(inner.gets(), 1);
    // The cache builds itself again.
    assert_eq!(
        cache.get(&segment_key(10), Some(B..B + 4120)).unwrap(),
        &bytes[B as usize..(B + 4120) as usize]
    );
    assert_eq!(inner.gets(), 1);
    cache.put_new(&segment_key(11), &bytes).unwrap();
    assert_eq!(cache.get(&segment_key(11), None).unwrap(), bytes);
    assert_eq!(inner.gets(), 1);
    cache.delete(&segment_key(11)).unwrap();
    fs::remove_dir_all(&scratch.0).unwrap();
    cache.delete(&segment_key(10)).unwrap();
    assert!(cache.stats().enabled);
}

#[test]
fn the_bound_holds_after_many_reads() {
    let scratch = Scratch::new("bound");
    let inner = Arc::new(MemStore::new());
    for n in 0..40 {
        inner.put_new(&segment_key(n), &object(n, 1 << 20)).unwrap();
    }
    let bytes_max = 5 * B + 1000;
    let cache = cache_over(inner.clone(), &scratch.0, bytes_max);
    let mut rng = Rng(17);
    let block_file_max = B + 2000;
    for _ in 0..500 {
        let n = rng.below(40);
        let start = rng.below(1 << 20);
        let range = start..start + 4120;
        assert_eq!(
            cache.get(&segment_key(n), Some(range.clone())).unwrap(),
            inner.get(&segment_key(n), Some(range)).unwrap()
        );
        let stored: u64 = block_files(cache.dir()).iter().map(|(_, len)| len).sum();
        assert!(
            stored <= bytes_max + block_file_max,
            "{stored} bytes stored"
        );
    }
    assert!(cache.stats().evictions > 0);
    assert!(cache.bytes_cached() <= bytes_max);
    // A reopen with a smaller bound evicts at once, least recently used first.
    let small = cache_over(inner.clone(), &scratch.0, 2 * B + 1000);
    let stored: u64 = block_files(small.dir()).iter().map(|(_, len)| len).sum();
    assert!(stored <= 2 * B + 1000, "{stored}");
}

#[test]
fn a_cache_that_cannot_be_created_is_off_and_the_store_works() {
    let scratch = Scratch::new("off");
    let file = scratch.0.join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &file.join("cache"), 64 << 20);
    assert!(!cache.stats().enabled);
    cache.put_new(&segment_key(1), &object(1, B + 1)).unwrap();
    assert_eq!(cache.get(&segment_key(1), None).unwrap(), object(1, B + 1));
    assert_eq!(
        cache.get(&segment_key(1), Some(B..B + 5)).unwrap(),
        &object(1, B + 1)[B as usize..]
    );
    cache.delete(&segment_key(1)).unwrap();
    assert_eq!(inner.gets(), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.hit_rate()), (0, 0, 0.0));
    assert_eq!(cache.forget_prefix(""), 0);
    // A zero bound is off too.
    assert!(!cache_over(inner, &scratch.0, 0).stats().enabled);
}

#[test]
fn two_caches_share_a_directory() {
    let scratch = Scratch::new("shared");
    let inner = Arc::new(Counting::default());
    let first = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let second = cache_over(inner.clone(), &scratch.0, 64 << 20);
    let bytes = object(12, 2 * B + 7);
    first.put_new(&segment_key(12), &bytes).unwrap();
    // The second finds the first's blocks though it did not see them at open.
    assert_eq!(second.get(&segment_key(12), None).unwrap(), bytes);
    assert_eq!(inner.gets(), 0);
    // A delete through one removes the blocks for both.
    second.delete(&segment_key(12)).unwrap();
    assert!(first
        .get(&segment_key(12), Some(0..10))
        .unwrap_err()
        .is_not_found());
    // Both write and read concurrently.
    std::thread::scope(|scope| {
        for (t, cache) in [&first, &second].into_iter().enumerate() {
            let inner = inner.clone();
            scope.spawn(move || {
                for n in 0..20u64 {
                    let key = segment_key(100 + n);
                    if n % 2 == t as u64 {
                        cache.put_new(&key, &object(n, B + n)).unwrap();
                    }
                    if let Ok(read) = cache.get(&key, Some(n..n + 100)) {
                        assert_eq!(read, inner.get(&key, Some(n..n + 100)).unwrap());
                    }
                }
            });
        }
    });
    for n in 0..20u64 {
        for cache in [&first, &second] {
            assert_eq!(
                cache.get(&segment_key(100 + n), None).unwrap(),
                object(n, B + n)
            );
        }
    }
    assert_eq!(first.stats().errors + second.stats().errors, 0);
}

#[test]
fn namespaces_do_not_share_blocks() {
    let scratch = Scratch::new("namespaces");
    let one = Arc::new(Counting::default());
    let two = Arc::new(Counting::default());
    let first = CachedStore::open(one.clone(), &scratch.0, "s3://one", 64 << 20);
    let second = CachedStore::open(two.clone(), &scratch.0, "s3://two", 64 << 20);
    assert_ne!(first.dir(), second.dir());
    first.put_new("modules/m", b"one").unwrap();
    two.put_new("modules/m", b"two").unwrap();
    assert_eq!(second.get("modules/m", None).unwrap(), b"two");
    assert_eq!(first.get("modules/m", None).unwrap(), b"one");
}

#[test]
fn temporary_files_of_a_crash_are_removed_at_open() {
    let scratch = Scratch::new("tmp");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    cache.put_new(&segment_key(1), b"bytes").unwrap();
    let (block, _) = block_files(cache.dir()).remove(0);
    let key_dir = block.parent().unwrap();
    let old = key_dir.join("0000000000000001.tmp-1-0");
    let young = key_dir.join("0000000000000002.tmp-1-1");
    fs::write(&old, b"torn").unwrap();
    fs::write(&young, b"being written").unwrap();
    let file = fs::File::options().write(true).open(&old).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_hours(1))
        .unwrap();
    drop(file);
    let _reopened = cache_over(inner, &scratch.0, 64 << 20);
    assert!(!old.exists(), "a crashed writer's file is removed");
    assert!(young.exists(), "a live writer's may still be renamed");
}

#[test]
fn forget_prefix_drops_one_process() {
    let scratch = Scratch::new("forget");
    let inner = Arc::new(Counting::default());
    let cache = cache_over(inner.clone(), &scratch.0, 64 << 20);
    cache.put_new("procs/a/segments/1", b"a").unwrap();
    cache.put_new("procs/b/segments/1", b"b").unwrap();
    cache.put_new("modules/m", b"m").unwrap();
    assert_eq!(cache.forget_prefix("procs/a/"), 1);
    assert_eq!(block_files(cache.dir()).len(), 2);
    assert_eq!(cache.get("procs/a/segments/1", None).unwrap(), b"a");
    assert_eq!(inner.gets(), 1);
    assert_eq!(cache.forget_prefix(""), 3);
    assert!(block_files(cache.dir()).is_empty());
}

#[test]
fn stats_reach_a_caller_holding_the_store_as_a_trait_object() {
    let scratch = Scratch::new("handle");
    let cache = Arc::new(cache_over(Arc::new(MemStore::new()), &scratch.0, 64 << 20));
    let handle = cache.stats_handle();
    let store: Arc<dyn StorageBackend> = cache.clone();
    store.put_new("modules/m", b"m").unwrap();
    store.get("modules/m", None).unwrap();
    assert_eq!(handle.get().hits, 1);
    assert_eq!(cache.stats(), handle.get());
}
