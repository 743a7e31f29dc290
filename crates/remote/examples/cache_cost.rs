//! What the local cache saves in front of a slow store: page-sized reads of
//! segments over a `MemStore` that sleeps on every get (a network round trip),
//! without the cache, through it cold, warm, and reopened (a resume on the
//! same device), plus the cost of a hit and of writing through.
//!
//! ```text
//! cargo run --release -p ferrite-remote --example cache_cost [reads] [delay_us]
//! ```

use ferrite_pagestore::{MemStore, StorageBackend, StorageError};
use ferrite_remote::{CachedStore, CACHE_BLOCK_BYTES};
use std::{
    ops::Range,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Segments of the heap read, 1 MiB each.
const SEGMENTS: u64 = 16;
const SEGMENT_BYTES: u64 = 1 << 20;
/// A 4 KiB page's record (24-byte header).
const RECORD_BYTES: u64 = 4120;

/// A `MemStore` whose gets take `delay` longer (a round trip).
#[derive(Debug)]
struct Slow {
    inner: MemStore,
    delay: Duration,
    gets: AtomicU64,
}

impl StorageBackend for Slow {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.delay);
        self.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

fn segment_key(n: u64) -> String {
    format!("procs/p/segments/{n:016x}-00000000")
}

/// Seeded record reads: (segment, offset).
fn reads(count: usize) -> Vec<(u64, Range<u64>)> {
    let mut state = 0x5eed_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let records = (SEGMENT_BYTES - 24) / RECORD_BYTES;
    (0..count)
        .map(|_| {
            let at = 24 + next() % records * RECORD_BYTES;
            (next() % SEGMENTS, at..at + RECORD_BYTES)
        })
        .collect()
}

/// Runs the reads; the time per read in microseconds.
fn run(store: &dyn StorageBackend, reads: &[(u64, Range<u64>)]) -> f64 {
    let start = Instant::now();
    for (segment, range) in reads {
        let bytes = store
            .get(&segment_key(*segment), Some(range.clone()))
            .expect("a stored segment");
        assert_eq!(bytes.len() as u64, RECORD_BYTES);
    }
    start.elapsed().as_secs_f64() * 1e6 / reads.len() as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(2000, |a| a.parse().expect("reads"));
    let delay_us: u64 = args.next().map_or(1000, |a| a.parse().expect("delay_us"));
    let root = std::env::temp_dir().join(format!("ferrite-cache-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);

    let slow = Arc::new(Slow {
        inner: MemStore::new(),
        delay: Duration::from_micros(delay_us),
        gets: AtomicU64::new(0),
    });
    let segment: Vec<u8> = (0..SEGMENT_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    for n in 0..SEGMENTS {
        slow.put_new(&segment_key(n), &segment).expect("put");
    }
    let reads = reads(count);
    println!(
        "{count} reads of {RECORD_BYTES}-byte records at random in {SEGMENTS} segments of 1 MiB; \
         {delay_us} us per get of the store; blocks of {} KiB",
        CACHE_BLOCK_BYTES >> 10
    );

    let gets = |slow: &Slow| slow.gets.swap(0, Ordering::Relaxed);
    let direct = run(&*slow, &reads);
    println!("  no cache:  {direct:8.1} us/read, {} gets", gets(&slow));

    let open = || CachedStore::open(slow.clone(), &root, "mem://cost", 1 << 30);
    let cache = open();
    let cold = run(&cache, &reads);
    let stats = cache.stats();
    println!(
        "  cold:      {cold:8.1} us/read, {} gets, hit rate {:.3}",
        gets(&slow),
        stats.hit_rate()
    );
    let warm = run(&cache, &reads);
    let after = cache.stats();
    let hits = after.hits - stats.hits;
    let misses = after.misses - stats.misses;
    println!(
        "  warm:      {warm:8.1} us/read, {} gets, hit rate {:.3}",
        gets(&slow),
        hits as f64 / (hits + misses).max(1) as f64
    );
    drop(cache);
    let reopened = open();
    let resumed = run(&reopened, &reads);
    println!(
        "  reopened:  {resumed:8.1} us/read, {} gets, hit rate {:.3} (a resume on the same device)",
        gets(&slow),
        reopened.stats().hit_rate()
    );
    drop(reopened);

    // Write-through: 16 segments put through the cache, against the store alone.
    let fresh = Arc::new(Slow {
        inner: MemStore::new(),
        delay: Duration::ZERO,
        gets: AtomicU64::new(0),
    });
    let start = Instant::now();
    for n in 0..SEGMENTS {
        fresh.put_new(&segment_key(n), &segment).expect("put");
    }
    let plain = start.elapsed().as_secs_f64() * 1e3 / SEGMENTS as f64;
    let through = CachedStore::open(fresh.clone(), root.join("w"), "mem://w", 1 << 30);
    let start = Instant::now();
    for n in SEGMENTS..2 * SEGMENTS {
        through.put_new(&segment_key(n), &segment).expect("put");
    }
    let cached = start.elapsed().as_secs_f64() * 1e3 / SEGMENTS as f64;
    println!("  put of a 1 MiB segment: {plain:.3} ms alone, {cached:.3} ms with write-through");

    let dir: PathBuf = root;
    let _ = std::fs::remove_dir_all(dir);
}
