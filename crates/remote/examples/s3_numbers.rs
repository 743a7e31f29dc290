//! Object storage's numbers (issue 9, item 7), measured against an S3
//! gateway side by side in one run and printed as Markdown tables for
//! `docs/performance.md`:
//!
//! 1. resume to the first instruction of a process with a 1 GiB heap, from S3
//!    (cold and warm local cache) and from a local directory store;
//! 2. page fault latency (`PageStore::read_page` of random pages of a
//!    committed heap) from S3 through a cold and a warm cache and with no
//!    cache, against raw 4 KiB ranged GETs with `object_store`;
//! 3. a sequential scan of a heap 16 times the physical heap, after a resume
//!    on a fresh cache, against raw sequential 256 KiB ranged GETs of the same
//!    segment objects;
//! 4. encryption's cost: the same checkpoint upload and scan through
//!    `SealedStore` and without.
//!
//! ```text
//! set -a; . /work/s3.env; set +a      # the variables scripts/s3/up.sh prints
//! cargo run --release -p ferrite-remote --example s3_numbers -- [HEAP_MIB] [SCAN_MIB] [RUNS] [FAULTS]
//! ```
//!
//! Defaults: a 1024 MiB heap to resume, a 512 MiB heap to scan (with a
//! physical heap of a sixteenth of it), 5 resumes and 3 rounds of the rest,
//! 200 faults per variant and round. The variants alternate (their order
//! rotates every run); the tables show medians, and percentiles over all
//! rounds. Everything goes under a fresh prefix `bench/s3-numbers-<pid>-<nanos>`
//! of `$AWS_BUCKET`, removed at the end; local files go to a fresh directory
//! under `$TMPDIR`.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{
    runner_tag, Claim, LeaseConfig, LeaseKeeper, MonotonicClock, ProcessLock, StoreLease,
};
use ferrite_heap::{LinearMemory, PAGE_SIZE};
use ferrite_pagestore::{
    LocalStore, PageMapRef, PageStore, SealKey, SealedStore, StorageBackend, StorageError,
    READAHEAD_BYTES_MAX,
};
use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
use ferrite_remote::{CachedStore, S3Options, S3Store, CACHE_BYTES_DEFAULT};
use ferrite_vm::Value;
use futures::{StreamExt, TryStreamExt};
use object_store::{
    aws::AmazonS3Builder, path::Path as ObjectPath, GetOptions, GetRange, ObjectMeta, ObjectStore,
    ObjectStoreExt,
};
use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const MIB: u64 = 1 << 20;
/// The resumed process's physical heap.
const RESUME_PHYSICAL_BYTES: u64 = 32 * MIB;
/// The resumed process writes one byte into every this many pages.
const TOUCH_STRIDE_PAGES: i32 = 16;
/// The scanned heap's prefix in its store.
const SCAN_PREFIX: &str = "procs/scan/";
/// Pages apart that two faulted pages at least are: more than a cache block
/// (256 KiB) of records, so that no fault of a pass hits a block an earlier
/// one fetched.
const FAULT_SLOT_PAGES: u32 = 64;

struct Args {
    heap_mib: u64,
    scan_mib: u64,
    runs: usize,
    faults: usize,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut next = |default: u64| args.next().map_or(default, |a| a.parse().unwrap());
    let args = Args {
        heap_mib: next(1024),
        scan_mib: next(512),
        runs: next(5) as usize,
        faults: next(200) as usize,
    };
    let bench = Bench::new();
    println!(
        "gateway {}, bucket {}, prefix {}; local files in {}\n",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        bench.bucket,
        bench.base,
        bench.scratch.display()
    );
    resume(&bench, &args);
    heaps(&bench, &args);
    bench.remove_all();
}

// The bench: where things go, and the stacks of stores ------------------------

struct Bench {
    bucket: String,
    /// The run's key prefix in the bucket.
    base: String,
    raw: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// The run's local directory.
    scratch: PathBuf,
    /// Names fresh cache directories.
    caches: AtomicU64,
}

impl Bench {
    fn new() -> Self {
        let bucket = std::env::var("AWS_BUCKET").expect("AWS_BUCKET: run scripts/s3/up.sh");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("s3-numbers-{}-{nanos}", std::process::id());
        let scratch = std::env::temp_dir().join(format!("ferrite-{name}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let raw = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .unwrap();
        Self {
            bucket,
            base: format!("bench/{name}"),
            raw: Arc::new(raw),
            runtime: tokio::runtime::Runtime::new().unwrap(),
            scratch,
            caches: AtomicU64::new(0),
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}/{prefix}", self.bucket, self.base)
    }

    /// A cache directory no one used.
    fn fresh_cache(&self) -> PathBuf {
        let n = self.caches.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("cache-{n}"))
    }

    /// The CLI's stack: `S3Store`, counted, under a `CachedStore` in `cache`
    /// if given, under a `SealedStore` if `key` is.
    fn stack(
        &self,
        prefix: &str,
        cache: Option<&Path>,
        key: Option<&SealKey>,
        counts: &Arc<Counts>,
    ) -> Arc<dyn StorageBackend> {
        self.stack_probed(prefix, cache, key, counts, false)
    }

    /// As `stack`; `remembered`: the device probed the storage before, so the
    /// open skips the create-only probe (as the CLI does within 24 h of a
    /// probe, remembered in its cache directory).
    fn stack_probed(
        &self,
        prefix: &str,
        cache: Option<&Path>,
        key: Option<&SealKey>,
        counts: &Arc<Counts>,
        remembered: bool,
    ) -> Arc<dyn StorageBackend> {
        let url = self.url(prefix);
        let options = S3Options {
            create_only_known: remembered,
            ..S3Options::default()
        };
        let s3 = S3Store::open(&url, &options).unwrap();
        let counted: Arc<dyn StorageBackend> = Arc::new(Counted {
            inner: s3,
            counts: counts.clone(),
        });
        let cached: Arc<dyn StorageBackend> = match cache {
            Some(dir) => Arc::new(CachedStore::open(counted, dir, &url, CACHE_BYTES_DEFAULT)),
            None => counted,
        };
        match key {
            Some(key) => Arc::new(SealedStore::open(cached, key).unwrap()),
            None => cached,
        }
    }

    fn object_path(&self, prefix: &str, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{prefix}/{key}", self.base))
    }

    /// The objects below `prefix/key_prefix` (of the run), in key order.
    fn list(&self, prefix: &str, key_prefix: &str) -> Vec<ObjectMeta> {
        let dir = self.object_path(prefix, key_prefix.trim_end_matches('/'));
        let mut found: Vec<ObjectMeta> = self
            .runtime
            .block_on(self.raw.list(Some(&dir)).try_collect())
            .unwrap();
        found.sort_by(|a, b| a.location.cmp(&b.location));
        found
    }

    /// Removes every object below the run's `prefix` (all of them for "").
    fn remove(&self, prefix: &str) {
        let dir = ObjectPath::from(format!("{}/{prefix}", self.base).trim_end_matches('/'));
        let raw = &self.raw;
        self.runtime.block_on(async {
            let found: Vec<ObjectMeta> = raw.list(Some(&dir)).try_collect().await.unwrap();
            futures::stream::iter(found)
                .map(|meta| async move { raw.delete(&meta.location).await.unwrap() })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        });
    }

    fn remove_all(&self) {
        self.remove("");
        let _ = std::fs::remove_dir_all(&self.scratch);
    }

    /// One ranged GET with `object_store` alone; its bytes.
    fn raw_get(&self, path: &ObjectPath, range: Range<u64>) -> usize {
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(range)));
        self.runtime
            .block_on(async { self.raw.get_opts(path, options).await?.bytes().await })
            .unwrap()
            .len()
    }
}

/// Requests that reached the S3 store, and the time spent in them.
#[derive(Debug, Default)]
struct Counts {
    /// (requests, microseconds) by operation: get, list, put, delete.
    by_operation: Mutex<[(u64, u64); 4]>,
    /// GETs answered with fewer than [`SMALL_BYTES`].
    small_gets: AtomicU64,
}

/// A GET answer this short is "small" (a gateway may send its headers and a
/// small body in separate TCP segments).
const SMALL_BYTES: usize = 64 << 10;

impl Counts {
    fn add(&self, operation: usize, began: Instant) {
        let mut counts = self.by_operation.lock().unwrap();
        counts[operation].0 += 1;
        counts[operation].1 += began.elapsed().as_micros() as u64;
    }

    fn take(&self) -> [(u64, u64); 4] {
        std::mem::take(&mut *self.by_operation.lock().unwrap())
    }
}

/// An `S3Store` whose calls are counted and timed.
#[derive(Debug)]
struct Counted {
    inner: S3Store,
    counts: Arc<Counts>,
}

impl StorageBackend for Counted {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let began = Instant::now();
        let result = self.inner.put_new(key, bytes);
        self.counts.add(2, began);
        result
    }
    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let began = Instant::now();
        let result = self.inner.put_new_deferred(key, bytes);
        self.counts.add(2, began);
        result
    }
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        self.inner.sync(keys)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let began = Instant::now();
        let result = self.inner.get(key, range);
        self.counts.add(0, began);
        if result.as_ref().is_ok_and(|bytes| bytes.len() < SMALL_BYTES) {
            self.counts.small_gets.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let began = Instant::now();
        let result = self.inner.list(prefix);
        self.counts.add(1, began);
        result
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let began = Instant::now();
        let result = self.inner.delete(key);
        self.counts.add(3, began);
        result
    }
    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.inner.size(key)
    }
}

fn median<T: Copy + Ord>(mut samples: Vec<T>) -> T {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / MIB as f64 / time.as_secs_f64()
}

// 1. Resume -------------------------------------------------------------------

/// `touch(mib, stride)`: grows to `mib` MiB, writes a byte into every
/// `stride`th page, then spins.
const TOUCH: &str = r#"
(module
  (memory 1)
  (func (export "touch") (param $mib i32) (param $stride i32)
    (local $addr i32) (local $end i32) (local $step i32)
    local.get $mib i32.const 16 i32.mul i32.const 1 i32.sub memory.grow drop
    local.get $mib i32.const 20 i32.shl local.set $end
    local.get $stride i32.const 12 i32.shl local.set $step
    loop $touch
      local.get $addr i32.const 7 i32.store8
      local.get $addr local.get $step i32.add local.tee $addr
      local.get $end i32.lt_u br_if $touch
    end
    loop $spin br $spin end))
"#;

const NAME: &str = "r";

/// The lease a runner takes on object storage, as the CLI takes it.
fn lease(backend: &Arc<dyn StorageBackend>) -> Claim {
    let clock = Arc::new(MonotonicClock::default());
    let lease = StoreLease::acquire(
        backend.clone(),
        NAME,
        &runner_tag(),
        LeaseConfig::default(),
        clock.clone(),
        false,
        &mut std::thread::sleep,
    )
    .unwrap();
    Claim::Lease(LeaseKeeper::start(lease, clock))
}

fn resume_options() -> ProcessOptions {
    ProcessOptions {
        physical_heap_bytes: Some(RESUME_PHYSICAL_BYTES),
        ..ProcessOptions::default()
    }
}

/// Starts the process, lets it touch its heap, checkpoints and closes it;
/// the pages written.
fn start_touched(backend: Arc<dyn StorageBackend>, claim: Claim, heap_mib: u64) -> u64 {
    let launch = Launch::invoke(
        NAME,
        wat::parse_str(TOUCH).unwrap(),
        "touch",
        vec![Value::I32(heap_mib as i32), Value::I32(TOUCH_STRIDE_PAGES)],
    );
    let mut process = Process::start(backend, claim, launch, &resume_options()).unwrap();
    // About ten instructions a page touched; then the spin loop.
    let budget = heap_mib * MIB / PAGE_SIZE as u64 * 2;
    assert_eq!(process.run_for(budget).unwrap(), Outcome::Interrupted);
    process.checkpoint().unwrap();
    let written = process.stats().heap.write_backs;
    process.close().unwrap();
    written
}

/// One timed resume: (wall, store opened, lease taken, `ready_after`).
#[derive(Debug, Clone, Copy, Default)]
struct ResumeTimes {
    wall: Duration,
    opened: Duration,
    claimed: Duration,
    ready: Duration,
}

/// Opens the store (`open`), takes the claim, resumes, runs the first
/// instruction, and closes.
fn resume_once(
    open: &dyn Fn() -> Arc<dyn StorageBackend>,
    claim: &dyn Fn(&Arc<dyn StorageBackend>) -> Claim,
) -> ResumeTimes {
    let began = Instant::now();
    let backend = open();
    let opened = began.elapsed();
    let claim = claim(&backend);
    let claimed = began.elapsed().saturating_sub(opened);
    let (mut process, report) = Process::resume(backend, claim, NAME, &resume_options()).unwrap();
    assert_eq!(process.run_for(1).unwrap(), Outcome::Interrupted);
    let wall = began.elapsed();
    process.close().unwrap();
    ResumeTimes {
        wall,
        opened,
        claimed,
        ready: report.ready_after,
    }
}

fn resume(bench: &Bench, args: &Args) {
    let counts = Arc::new(Counts::default());
    let local_root = bench.scratch.join("local");
    let local_open =
        || -> Arc<dyn StorageBackend> { Arc::new(LocalStore::open(&local_root).unwrap()) };
    let local_claim = |_: &Arc<dyn StorageBackend>| {
        Claim::Local(ProcessLock::acquire(&local_root, NAME).unwrap())
    };
    let local_written = start_touched(local_open(), local_claim(&local_open()), args.heap_mib);
    let warm_dir = bench.fresh_cache();
    let s3_written = {
        let backend = bench.stack("resume", Some(&warm_dir), None, &counts);
        start_touched(backend.clone(), lease(&backend), args.heap_mib)
    };
    assert_eq!(local_written, s3_written);
    let s3_cold = || {
        let dir = bench.fresh_cache();
        let times = resume_once(&|| bench.stack("resume", Some(&dir), None, &counts), &lease);
        let _ = std::fs::remove_dir_all(&dir);
        times
    };
    let s3_warm = || {
        resume_once(
            &|| bench.stack_probed("resume", Some(&warm_dir), None, &counts, true),
            &lease,
        )
    };
    let local = || resume_once(&local_open, &local_claim);
    // Once each untimed: the warm cache gets the module.
    s3_warm();
    local();
    counts.take();
    let mut samples: [Vec<ResumeTimes>; 3] = Default::default();
    let mut requests = [[(0, 0); 4]; 3];
    for run in 0..args.runs {
        for turn in 0..3 {
            let variant = (run + turn) % 3;
            let times = match variant {
                0 => local(),
                1 => s3_cold(),
                _ => s3_warm(),
            };
            samples[variant].push(times);
            for (sum, add) in requests[variant].iter_mut().zip(counts.take()) {
                sum.0 += add.0;
                sum.1 += add.1;
            }
        }
    }
    println!(
        "### Resume to the first instruction, {} MiB heap ({} pages stored, {} MiB physical), median of {}\n",
        args.heap_mib,
        s3_written,
        RESUME_PHYSICAL_BYTES / MIB,
        args.runs
    );
    println!("| store | wall ms (open + claim + resume + first instruction) | open ms | claim ms | `ready_after` ms | S3 requests per resume after open (get/list/put/delete, ms in them) |");
    println!("|---|---:|---:|---:|---:|---|");
    let names = ["local directory", "S3, cold cache", "S3, warm cache"];
    for ((name, samples), requests) in names.iter().zip(samples).zip(requests) {
        let pick = |f: fn(&ResumeTimes) -> Duration| ms(median(samples.iter().map(f).collect()));
        let runs = args.runs as u64;
        let per = |(n, us): (u64, u64)| (n / runs, us as f64 / 1000.0 / runs as f64);
        let counted: Vec<String> = requests.iter().map(|&r| format!("{}", per(r).0)).collect();
        let spent: f64 = requests.iter().map(|&r| per(r).1).sum();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} ({spent:.1} ms) |",
            pick(|t| t.wall),
            pick(|t| t.opened),
            pick(|t| t.claimed),
            pick(|t| t.ready),
            if spent > 0.0 {
                counted.join("/")
            } else {
                "-".into()
            },
        );
    }
    println!();
}

// 2-4. Faults, scans, uploads ---------------------------------------------------

const KEY: [u8; 32] = [0x42; 32];

/// Samples of every round.
#[derive(Debug, Default)]
struct HeapSamples {
    upload: [Vec<Duration>; 2],
    /// Raw, heap with no cache, heap on a fresh cache, sealed heap on a fresh cache.
    scan: [Vec<Duration>; 4],
    /// GETs of the last scan of each kind, and the small ones.
    scan_gets: [(u64, u64); 4],
    raw_scan_bytes: u64,
    /// Cold cache, warm cache, no cache, raw 4 KiB GETs.
    faults: [Vec<Duration>; 4],
}

impl HeapSamples {
    fn record_scan(&mut self, kind: usize, scan: ScanTime) {
        self.scan[kind].push(scan.time);
        self.scan_gets[kind] = (scan.gets, scan.small_gets);
    }
}

fn heaps(bench: &Bench, args: &Args) {
    let key = SealKey::from_bytes(KEY);
    let mut samples = HeapSamples::default();
    let rounds = args.runs.div_ceil(2).max(1);
    for round in 0..rounds {
        let sealed_first = round % 2 == 1;
        for sealed in [sealed_first, !sealed_first] {
            let prefix = format!("heap-{round}-{}", if sealed { "sealed" } else { "plain" });
            let key = sealed.then_some(&key);
            let (time, map) = upload(bench, &prefix, key, args.scan_mib);
            samples.upload[usize::from(sealed)].push(time);
            if sealed {
                samples.record_scan(3, scan(bench, &prefix, true, key, map, args.scan_mib));
            } else {
                plain_round(bench, &prefix, &map, args, round, &mut samples);
            }
            bench.remove(&prefix);
        }
        println!("(round {round} of {rounds} done)");
    }
    print_heaps(args, rounds, samples);
}

/// The plain heap's scans and faults, in an order that rotates by round.
fn plain_round(
    bench: &Bench,
    prefix: &str,
    map: &PageMapRef,
    args: &Args,
    round: usize,
    samples: &mut HeapSamples,
) {
    for turn in 0..3 {
        match (round + turn) % 3 {
            0 => {
                let (time, bytes) = raw_scan(bench, prefix);
                samples.scan[0].push(time);
                samples.raw_scan_bytes = bytes;
                let chunk = READAHEAD_BYTES_MAX as u64;
                samples.scan_gets[0] = (bytes.div_ceil(chunk), 0);
            }
            1 => samples.record_scan(
                1,
                scan(bench, prefix, false, None, map.clone(), args.scan_mib),
            ),
            _ => samples.record_scan(
                2,
                scan(bench, prefix, true, None, map.clone(), args.scan_mib),
            ),
        }
    }
    let pages = (args.scan_mib * MIB / PAGE_SIZE as u64) as u32;
    let sets = fault_pages(pages, args.faults, round as u64);
    let counts = Arc::new(Counts::default());
    // Cold, then warm: a fresh cache, read twice.
    let dir = bench.fresh_cache();
    let backend = bench.stack(prefix, Some(&dir), None, &counts);
    let mut store = PageStore::open(backend, SCAN_PREFIX, PAGE_SIZE, 1, map.clone());
    samples.faults[0].extend(faults(&mut store, &sets[0]));
    samples.faults[1].extend(faults(&mut store, &sets[0]));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    let backend = bench.stack(prefix, None, None, &counts);
    let mut store = PageStore::open(backend, SCAN_PREFIX, PAGE_SIZE, 1, map.clone());
    samples.faults[2].extend(faults(&mut store, &sets[1]));
    samples.faults[3].extend(raw_faults(bench, prefix, &sets[2]));
}

/// Writes `mib` MiB of distinct pages through the CLI's stack (a fresh
/// write-through cache, sealed with `key` if given) and commits the maps, as
/// a checkpoint does; the time, and the map.
fn upload(bench: &Bench, prefix: &str, key: Option<&SealKey>, mib: u64) -> (Duration, PageMapRef) {
    let dir = bench.fresh_cache();
    let counts = Arc::new(Counts::default());
    let backend = bench.stack(prefix, Some(&dir), key, &counts);
    let mut store = PageStore::open(backend, SCAN_PREFIX, PAGE_SIZE, 0, PageMapRef::default());
    let pages = (mib * MIB / PAGE_SIZE as u64) as u32;
    let mut page = vec![0u8; PAGE_SIZE];
    let began = Instant::now();
    for index in 0..pages {
        page[..4].copy_from_slice(&index.to_le_bytes());
        page[PAGE_SIZE - 1] = index as u8;
        store.write_page(index, &page).unwrap();
    }
    let map = store.commit_maps().unwrap();
    let time = began.elapsed();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    (time, map)
}

/// Reads the whole heap in order, 64 KiB at a time, with a physical heap of
/// a sixteenth of it, on a fresh cache (if `cached`) or none, sealed with
/// `key` if given; the time.
fn scan(
    bench: &Bench,
    prefix: &str,
    cached: bool,
    key: Option<&SealKey>,
    map: PageMapRef,
    mib: u64,
) -> ScanTime {
    let dir = bench.fresh_cache();
    let counts = Arc::new(Counts::default());
    let backend = bench.stack(prefix, cached.then_some(dir.as_path()), key, &counts);
    let heap_bytes = mib * MIB;
    let mut memory = LinearMemory::new((heap_bytes / 65536) as u32, None).unwrap();
    let store = PageStore::open(backend, SCAN_PREFIX, PAGE_SIZE, 1, map);
    let frames = (heap_bytes / 16 / PAGE_SIZE as u64) as usize;
    memory.attach_store(store, Some(frames)).unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let began = Instant::now();
    for addr in (0..heap_bytes).step_by(buffer.len()) {
        memory.read(addr, &mut buffer).unwrap();
        let page = (addr / PAGE_SIZE as u64) as u32;
        assert_eq!(buffer[..4], page.to_le_bytes(), "page {page}");
    }
    let time = began.elapsed();
    assert!(memory.storage_error().is_none());
    drop(memory);
    let _ = std::fs::remove_dir_all(&dir);
    let gets = counts.take()[0].0;
    ScanTime {
        time,
        gets,
        small_gets: counts.small_gets.load(Ordering::Relaxed),
    }
}

/// One scan: its time, and the GETs that reached S3.
#[derive(Debug, Clone, Copy)]
struct ScanTime {
    time: Duration,
    gets: u64,
    small_gets: u64,
}

/// Reads the heap's segment objects in key order with `object_store` alone,
/// one 256 KiB ranged GET after the other; the time and the bytes.
fn raw_scan(bench: &Bench, prefix: &str) -> (Duration, u64) {
    let segments = bench.list(prefix, &format!("{SCAN_PREFIX}segments/"));
    let chunk = READAHEAD_BYTES_MAX as u64;
    let began = Instant::now();
    let mut bytes = 0;
    for meta in &segments {
        let mut at = 0;
        while at < meta.size {
            let end = (at + chunk).min(meta.size);
            bytes += bench.raw_get(&meta.location, at..end) as u64;
            at = end;
        }
    }
    (began.elapsed(), bytes)
}

/// Three disjoint sets of `count` pages (at most a third of the slots
/// each), one page in each of distinct slots of [`FAULT_SLOT_PAGES`], in a
/// seeded order.
fn fault_pages(pages: u32, count: usize, seed: u64) -> [Vec<u32>; 3] {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (seed + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut slots: Vec<u32> = (0..pages / FAULT_SLOT_PAGES).collect();
    for i in (1..slots.len()).rev() {
        slots.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let count = count.min(slots.len() / 3);
    let mut sets: [Vec<u32>; 3] = Default::default();
    for (set, slots) in sets.iter_mut().zip(slots.chunks(count)) {
        *set = slots
            .iter()
            .map(|slot| slot * FAULT_SLOT_PAGES + (next() % u64::from(FAULT_SLOT_PAGES)) as u32)
            .collect();
    }
    sets
}

/// Times `read_page` of each page (none follows the one before, so no
/// readahead).
fn faults(store: &mut PageStore, pages: &[u32]) -> Vec<Duration> {
    let mut page = vec![0u8; PAGE_SIZE];
    pages
        .iter()
        .map(|&index| {
            let began = Instant::now();
            assert!(store.read_page(index, &mut page).unwrap());
            let time = began.elapsed();
            assert_eq!(page[..4], index.to_le_bytes());
            time
        })
        .collect()
}

/// Times raw 4 KiB ranged GETs at page-sized offsets of the segments, one
/// per page of `pages` (which picks the segment and the offset).
fn raw_faults(bench: &Bench, prefix: &str, pages: &[u32]) -> Vec<Duration> {
    let segments = bench.list(prefix, &format!("{SCAN_PREFIX}segments/"));
    pages
        .iter()
        .map(|&index| {
            let meta = &segments[index as usize % segments.len()];
            let at = u64::from(index) * 4096 % (meta.size - 4096);
            let began = Instant::now();
            assert_eq!(bench.raw_get(&meta.location, at..at + 4096), 4096);
            began.elapsed()
        })
        .collect()
}

fn print_heaps(args: &Args, rounds: usize, samples: HeapSamples) {
    let HeapSamples {
        upload,
        scan,
        scan_gets,
        raw_scan_bytes,
        mut faults,
    } = samples;
    let heap_bytes = args.scan_mib * MIB;
    println!(
        "\n### Page faults from S3 (`PageStore::read_page` of random pages of a {} MiB heap; {} per variant and round, {rounds} rounds)\n",
        args.scan_mib,
        faults[0].len() / rounds
    );
    println!("| read | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    let names = [
        "fault, cold cache (fetches a 256 KiB block)",
        "fault, warm cache (second pass)",
        "fault, no cache (one 4,120-byte GET)",
        "raw `object_store` 4 KiB ranged GET",
    ];
    for (name, samples) in names.iter().zip(faults.iter_mut()) {
        let p50 = percentile(samples, 50);
        let p99 = percentile(samples, 99);
        println!("| {name} | {:.2} | {:.2} |", ms(p50), ms(p99));
    }
    let scans: Vec<f64> = scan
        .into_iter()
        .enumerate()
        .map(|(i, times)| {
            let bytes = if i == 0 { raw_scan_bytes } else { heap_bytes };
            mib_per_s(bytes, median(times))
        })
        .collect();
    println!(
        "\n### Sequential scan of a {} MiB heap, {} MiB physical, from S3 (median of {rounds})\n",
        args.scan_mib,
        args.scan_mib / 16
    );
    println!("| read | MiB/s | against raw | GETs (under 64 KiB) |");
    println!("|---|---:|---:|---|");
    let names = [
        "raw `object_store`: the segments, 256 KiB ranged GETs in order",
        "heap scan, no cache",
        "heap scan, fresh cache",
        "heap scan, sealed, fresh cache",
    ];
    for ((name, rate), (gets, small)) in names.iter().zip(&scans).zip(scan_gets) {
        println!(
            "| {name} | {rate:.1} | {:.0}% | {gets} ({small}) |",
            100.0 * rate / scans[0]
        );
    }
    let uploads: Vec<f64> = upload
        .into_iter()
        .map(|times| mib_per_s(heap_bytes, median(times)))
        .collect();
    println!("\n### Encryption's cost over S3 (cache on; median of {rounds})\n");
    println!("| | plain MiB/s | sealed MiB/s | sealed / plain |");
    println!("|---|---:|---:|---:|");
    println!(
        "| checkpoint upload of {} MiB (`write_page` + `commit_maps`) | {:.1} | {:.1} | {:.2} |",
        args.scan_mib,
        uploads[0],
        uploads[1],
        uploads[1] / uploads[0]
    );
    println!(
        "| heap scan, fresh cache | {:.1} | {:.1} | {:.2} |",
        scans[2],
        scans[3],
        scans[3] / scans[2]
    );
}
