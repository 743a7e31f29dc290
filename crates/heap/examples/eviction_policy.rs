//! Measures the eviction policies of a bounded, backed `LinearMemory`.
//!
//! Runs sequential, uniformly random and hot/cold (90% of accesses to 10% of the
//! pages; and to 5%, a hot set that fits the frames) access patterns over a heap
//! 16 times the frame limit, under each policy, and prints the pages faulted in
//! (read or zero-filled), the write-backs and the best time of two runs. First it
//! shows the peak RSS of a 4 GiB heap with a small limit.
//!
//! ```text
//! cargo run --release -p ferrite-heap --example eviction_policy
//! ```

use ferrite_heap::{EvictionPolicy, LinearMemory, PageStore, PAGE_SIZE};
use ferrite_pagestore::{MemStore, PageMapRef, StorageBackend, StorageError};
use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

const FRAMES_MAX: usize = 256;
const HEAP_PAGES: u64 = 16 * FRAMES_MAX as u64;
const ACCESSES: u64 = 500_000;
const PAGE: u64 = PAGE_SIZE as u64;

#[derive(Debug, Clone, Copy)]
enum Pattern {
    Sequential,
    Random,
    /// 90% of the accesses to 10% of the pages (more pages than frames).
    HotCold,
    /// 90% of the accesses to 5% of the pages (fewer pages than frames).
    HotCold5,
}

/// xorshift64: no dependency, fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A backend that keeps nothing: for measuring the heap's own memory on pages
/// that are written once and never read back.
#[derive(Debug)]
struct DiscardStore;

impl StorageBackend for DiscardStore {
    fn put_new(&self, _key: &str, _bytes: &[u8]) -> Result<(), StorageError> {
        Ok(())
    }

    fn get(&self, key: &str, _range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        Err(StorageError::NotFound {
            key: key.to_string(),
        })
    }

    fn list(&self, _prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn delete(&self, _key: &str) -> Result<(), StorageError> {
        Ok(())
    }
}

fn backed_memory(wasm_pages: u32, frames_max: usize) -> LinearMemory {
    backed_memory_over(Arc::new(MemStore::new()), wasm_pages, frames_max)
}

fn backed_memory_over(
    backend: Arc<dyn StorageBackend>,
    wasm_pages: u32,
    frames_max: usize,
) -> LinearMemory {
    let store = PageStore::open(backend, "procs/bench/", PAGE_SIZE, 0, PageMapRef::default());
    let mut memory = LinearMemory::new(wasm_pages, None).expect("a valid size");
    memory
        .attach_store(store, Some(frames_max))
        .expect("a valid store");
    memory
}

/// The address of access `i`: eight bytes in some page of the heap.
fn address(pattern: Pattern, i: u64, rng: &mut Rng) -> u64 {
    let page = match pattern {
        // 64 accesses per page, then the next page, round and round.
        Pattern::Sequential => (i / 64) % HEAP_PAGES,
        Pattern::Random => rng.next() % HEAP_PAGES,
        // The hot pages are every tenth page, so they are spread over the heap.
        Pattern::HotCold if !rng.next().is_multiple_of(10) => (rng.next() % (HEAP_PAGES / 10)) * 10,
        Pattern::HotCold5 if !rng.next().is_multiple_of(10) => {
            (rng.next() % (HEAP_PAGES / 20)) * 20
        }
        Pattern::HotCold | Pattern::HotCold5 => rng.next() % HEAP_PAGES,
    };
    page * PAGE + (rng.next() % (PAGE / 8)) * 8
}

/// One run: the heap's counters, the time, and a checksum of the loads.
fn run(policy: EvictionPolicy, pattern: Pattern) -> (ferrite_heap::HeapStats, Duration, u64) {
    let wasm_pages = (HEAP_PAGES * PAGE).div_ceil(65_536) as u32;
    let mut memory = backed_memory(wasm_pages, FRAMES_MAX);
    memory.set_eviction_policy(policy);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let started = Instant::now();
    let mut sum = 0u64;
    for i in 0..ACCESSES {
        let addr = address(pattern, i, &mut rng);
        if i % 4 == 0 {
            memory.store(addr, i.to_le_bytes()).expect("in bounds");
        } else {
            sum = sum.wrapping_add(u64::from_le_bytes(memory.load(addr).expect("in bounds")));
        }
    }
    (memory.stats(), started.elapsed(), sum)
}

fn report(policy: EvictionPolicy, pattern: Pattern) {
    let (stats, first, sum) = run(policy, pattern);
    let (_, second, _) = run(policy, pattern);
    println!(
        "| {pattern:?} | {policy:?} | {} | {} | {} | {:.1} | {sum:x} |",
        stats.page_faults + stats.zero_fills,
        stats.evictions,
        stats.write_backs,
        first.min(second).as_secs_f64() * 1e3,
    );
}

/// Peak RSS of a 4 GiB heap limited to `FRAMES_MAX` frames, writing 20 000
/// distinct pages spread over it (each once, so nothing is read back).
fn four_gib_peak_rss() {
    let before = peak_rss_kib();
    let mut memory = backed_memory_over(Arc::new(DiscardStore), 65_536, FRAMES_MAX);
    for i in 0..20_000u64 {
        memory
            .store(i * 50 * PAGE + 8, 1u64.to_le_bytes())
            .expect("in bounds");
    }
    assert!(memory.storage_error().is_none());
    let store_kib = memory
        .page_store()
        .map_or(0, |store| store.memory_bytes() / 1024);
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        println!(
            "4 GiB heap, {FRAMES_MAX} frames ({} KiB), 20000 pages written: peak RSS grew by \
             {} KiB, of which {store_kib} KiB are the page store's map chunks and open segment; \
             {} pages resident\n",
            FRAMES_MAX * PAGE_SIZE / 1024,
            after.saturating_sub(before),
            memory.resident_pages(),
        );
    }
}

/// Peak resident set size of this process, from `/proc` (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    four_gib_peak_rss();
    println!(
        "{FRAMES_MAX} frames, heap of {HEAP_PAGES} pages of {PAGE_SIZE} bytes, \
         {ACCESSES} accesses of 8 bytes (1 in 4 a store)\n"
    );
    println!("| pattern | policy | faults | evictions | write-backs | ms | checksum |");
    println!("|---------|--------|-------:|----------:|------------:|---:|----------|");
    for pattern in [
        Pattern::Sequential,
        Pattern::Random,
        Pattern::HotCold,
        Pattern::HotCold5,
    ] {
        for policy in [
            EvictionPolicy::Clock,
            EvictionPolicy::ClockWithoutTlb,
            EvictionPolicy::Fifo,
            EvictionPolicy::Random,
        ] {
            report(policy, pattern);
        }
    }
}
