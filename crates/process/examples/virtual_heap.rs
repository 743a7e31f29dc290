//! The virtual heap's numbers (issue 4, item 7), measured side by side in one
//! run and printed as Markdown tables for `docs/performance.md`:
//!
//! 1. memory-heavy workloads whose working set fits the physical heap, against
//!    the same workloads with no store at all;
//! 2. a sequential scan of a heap 16 times the physical heap, against reading
//!    the same store files straight from the disk;
//! 3. checkpoint pause per MiB dirtied;
//! 4. time from `Process::resume` to the first instruction, for 64 MiB and
//!    1 GiB heaps.
//!
//! ```sh
//! cargo run --release -p ferrite-process --example virtual_heap [STORE_DIR]
//! ```
//!
//! The store directory (default `target/virtual-heap-numbers`, on the disk the
//! repository is on) is emptied first. As root, the page cache is dropped before
//! every cold measurement (`/proc/sys/vm/drop_caches`); otherwise those numbers
//! are warm and the output says so.

#![allow(clippy::unwrap_used)]

use ferrite_heap::{LinearMemory, PAGE_SIZE};
use ferrite_pagestore::{LocalStore, PageMapRef, PageStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
use ferrite_vm::{Config, Execution, Extern, Module, RunOutcome, Store, Value};
use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

const MIB: u64 = 1 << 20;
const RUNS: usize = 5;

fn main() {
    let dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from("target/virtual-heap-numbers"),
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cold = drop_caches();
    println!(
        "page cache: {}\n",
        if cold {
            "dropped before cold measurements"
        } else {
            "NOT dropped (not root): cold numbers are warm"
        }
    );
    workloads(&dir);
    scan(&dir);
    pauses(&dir);
    resume(&dir);
}

/// Drops the page cache if allowed; whether it did.
fn drop_caches() -> bool {
    // `sync` first, so that dirty pages can be dropped too.
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

// 1. Workloads that fit -------------------------------------------------------

const WORKLOADS: &[(&str, &str, i32)] = &[
    ("sort", include_str!("../../bench/wat/sort.wat"), 60_000),
    ("hash", include_str!("../../bench/wat/hash.wat"), 50_000),
    ("matmul", include_str!("../../bench/wat/matmul.wat"), 100),
    ("memcopy", include_str!("../../bench/wat/memcopy.wat"), 300),
];

/// The start function and the call, with no store (instantiation untimed).
fn run_plain(wasm: &[u8], arg: i32) -> (Value, Duration) {
    let module = Module::new(wasm).unwrap();
    let mut store = Store::new(Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    let began = Instant::now();
    if let Some(start) = store.start_func(instance) {
        let mut execution = Execution::new(&store, start, &[]).unwrap();
        assert!(matches!(
            execution.run(&mut store, u64::MAX).unwrap(),
            RunOutcome::Finished(_)
        ));
    }
    let Some(Extern::Func(run)) = store.get_export(instance, "run") else {
        panic!("no run export")
    };
    let mut execution = Execution::new(&store, run, &[Value::I32(arg)]).unwrap();
    let RunOutcome::Finished(results) = execution.run(&mut store, u64::MAX).unwrap() else {
        panic!("did not finish")
    };
    (results[0], began.elapsed())
}

/// The same in a (non-persistent) process whose heap is backed by a store and
/// bounded by `physical` bytes (`Process::start`, which instantiates, untimed).
fn run_backed(dir: &Path, wasm: &[u8], arg: i32, physical: u64) -> (Value, Duration, u64) {
    let root = dir.join("workloads");
    let _ = std::fs::remove_dir_all(&root);
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&root).unwrap());
    let options = ProcessOptions {
        physical_heap_bytes: Some(physical),
        persistent: false,
        ..ProcessOptions::default()
    };
    let launch = Launch::invoke("w", wasm.to_vec(), "run", vec![Value::I32(arg)]);
    let mut process = Process::start(backend, None, launch, &options).unwrap();
    let began = Instant::now();
    let Outcome::Returned(results) = process.run().unwrap() else {
        panic!("did not return")
    };
    let elapsed = began.elapsed();
    (results[0], elapsed, process.stats().heap.evictions)
}

fn workloads(dir: &Path) {
    let physical = 32 * MIB;
    println!(
        "### Working set within the physical heap ({} MiB)\n",
        physical / MIB
    );
    println!("| workload | no store, ms | backed, ms | evictions | slowdown |");
    println!("|---|---:|---:|---:|---:|");
    let mut product = 1.0;
    for (name, wat, arg) in WORKLOADS {
        let wasm = wat::parse_str(wat).unwrap();
        let (mut plain, mut backed) = (Vec::new(), Vec::new());
        let mut evictions = 0;
        for _ in 0..RUNS {
            let (a, t) = run_plain(&wasm, *arg);
            plain.push(t);
            let (b, t, e) = run_backed(dir, &wasm, *arg, physical);
            backed.push(t);
            evictions = e;
            assert_eq!(a, b, "{name}: results differ");
        }
        let (plain, backed) = (median(plain), median(backed));
        let ratio = backed.as_secs_f64() / plain.as_secs_f64();
        product *= ratio;
        println!(
            "| {name} | {:.1} | {:.1} | {evictions} | {:+.1}% |",
            ms(plain),
            ms(backed),
            (ratio - 1.0) * 100.0
        );
    }
    let geomean = product.powf(1.0 / WORKLOADS.len() as f64);
    println!(
        "| geometric mean | | | | {:+.1}% |\n",
        (geomean - 1.0) * 100.0
    );
}

// 2. Sequential scan ------------------------------------------------------------

fn scan(dir: &Path) {
    let heap_bytes = 512 * MIB;
    let physical = heap_bytes / 16;
    let root = dir.join("scan");
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&root).unwrap());
    let pages = (heap_bytes / PAGE_SIZE as u64) as u32;
    let mut store = PageStore::open(
        backend.clone(),
        "scan/",
        PAGE_SIZE,
        0,
        PageMapRef::default(),
    );
    let mut page = vec![0u8; PAGE_SIZE];
    for index in 0..pages {
        page[..4].copy_from_slice(&index.to_le_bytes());
        page[PAGE_SIZE - 1] = index as u8;
        store.write_page(index, &page).unwrap();
    }
    let map = store.commit_maps().unwrap();
    drop(store);

    let cold = drop_caches();
    let mut memory = LinearMemory::new((heap_bytes / 65536) as u32, None).unwrap();
    let store = PageStore::open(backend.clone(), "scan/", PAGE_SIZE, 1, map);
    memory
        .attach_store(store, Some((physical / PAGE_SIZE as u64) as usize))
        .unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let began = Instant::now();
    let mut checksum = 0u64;
    for addr in (0..heap_bytes).step_by(buffer.len()) {
        memory.read(addr, &mut buffer).unwrap();
        checksum = checksum.wrapping_add(u64::from(buffer[0]) + u64::from(buffer[4096]));
    }
    let heap_time = began.elapsed();
    assert!(memory.storage_error().is_none());

    drop_caches();
    let began = Instant::now();
    let mut raw_bytes = 0u64;
    let mut chunk = vec![0u8; MIB as usize];
    let mut files: Vec<_> = walk(&root.join("scan"));
    files.sort();
    for file in files {
        let mut file = std::fs::File::open(file).unwrap();
        loop {
            let n = file.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            raw_bytes += n as u64;
        }
    }
    let raw_time = began.elapsed();
    let rate = |bytes: u64, time: Duration| bytes as f64 / MIB as f64 / time.as_secs_f64();
    println!(
        "### Sequential scan of a {} MiB heap with a {} MiB physical heap{}\n",
        heap_bytes / MIB,
        physical / MIB,
        if cold {
            " (page cache dropped)"
        } else {
            " (warm)"
        }
    );
    println!("| read | MiB | seconds | MiB/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| heap scan (`LinearMemory::read`, 64 KiB at a time) | {} | {:.2} | {:.0} |",
        heap_bytes / MIB,
        heap_time.as_secs_f64(),
        rate(heap_bytes, heap_time)
    );
    println!(
        "| raw: the store's segment files, 1 MiB reads | {} | {:.2} | {:.0} |",
        raw_bytes / MIB,
        raw_time.as_secs_f64(),
        rate(raw_bytes, raw_time)
    );
    println!(
        "| **heap / raw** | | | **{:.0}%** |\n",
        100.0 * rate(heap_bytes, heap_time) / rate(raw_bytes, raw_time)
    );
    std::hint::black_box(checksum);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// 3. Checkpoint pauses ----------------------------------------------------------

/// `dirty(pages)`: forever, writes one byte into each of the first `pages`
/// pages in turn (a new value every pass).
const DIRTY: &str = r#"
(module
  (memory 1)
  (func (export "dirty") (param $pages i32)
    (local $page i32) (local $pass i32)
    local.get $pages i32.const 16 i32.div_u memory.grow drop
    loop $forever
      i32.const 0 local.set $page
      loop $pass
        local.get $page i32.const 12 i32.shl local.get $pass i32.store8
        local.get $page i32.const 1 i32.add local.tee $page
        local.get $pages i32.lt_u br_if $pass
      end
      local.get $pass i32.const 1 i32.add local.set $pass
      br $forever
    end))
"#;

fn pauses(dir: &Path) {
    println!("### Checkpoint pause by MiB dirtied (local store, fsync on)\n");
    println!("| dirtied MiB | pages written | pause ms | ms per MiB |");
    println!("|---:|---:|---:|---:|");
    for mib in [1u64, 8, 32, 128] {
        let root = dir.join(format!("pause-{mib}"));
        let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&root).unwrap());
        let pages = (mib * MIB / PAGE_SIZE as u64) as i32;
        let launch = Launch::invoke(
            "pause",
            wat::parse_str(DIRTY).unwrap(),
            "dirty",
            vec![Value::I32(pages)],
        );
        let mut process =
            Process::start(backend, None, launch, &ProcessOptions::default()).unwrap();
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            // One pass dirties every page; the budget covers a few passes.
            assert_eq!(
                process.run_for(pages as u64 * 40).unwrap(),
                Outcome::Interrupted
            );
            samples.push(process.checkpoint().unwrap());
        }
        samples.sort_by_key(|report| report.pause);
        let report = samples[samples.len() / 2];
        let dirtied = report.pages_written as f64 * PAGE_SIZE as f64 / MIB as f64;
        println!(
            "| {dirtied:.0} | {} | {:.1} | {:.2} |",
            report.pages_written,
            ms(report.pause),
            ms(report.pause) / dirtied
        );
    }
    println!();
}

// 4. Resume ----------------------------------------------------------------------

/// `touch(mib)`: grows to `mib` MiB, writes a byte into every 16th page, then
/// spins.
const TOUCH: &str = r#"
(module
  (memory 1)
  (func (export "touch") (param $mib i32)
    (local $addr i32) (local $end i32)
    local.get $mib i32.const 16 i32.mul i32.const 1 i32.sub memory.grow drop
    local.get $mib i32.const 20 i32.shl local.set $end
    loop $touch
      local.get $addr i32.const 7 i32.store8
      local.get $addr i32.const 65536 i32.add local.tee $addr
      local.get $end i32.lt_u br_if $touch
    end
    loop $spin br $spin end))
"#;

fn resume(dir: &Path) {
    println!("### From `Process::resume` to the first instruction\n");
    println!("| heap | stored pages | page cache | resume + first instruction, ms |");
    println!("|---:|---:|---|---:|");
    for mib in [64u64, 1024] {
        let root = dir.join(format!("resume-{mib}"));
        let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&root).unwrap());
        let launch = Launch::invoke(
            "r",
            wat::parse_str(TOUCH).unwrap(),
            "touch",
            vec![Value::I32(mib as i32)],
        );
        let options = ProcessOptions {
            physical_heap_bytes: Some(32 * MIB),
            ..ProcessOptions::default()
        };
        let mut process = Process::start(backend.clone(), None, launch, &options).unwrap();
        assert_eq!(process.run_for(mib * 1024).unwrap(), Outcome::Interrupted);
        let report = process.checkpoint().unwrap();
        let stored = process.stats().heap.write_backs;
        drop(process);
        for cold in [false, true] {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                let dropped = cold && drop_caches();
                let began = Instant::now();
                let (mut process, _) =
                    Process::resume(backend.clone(), None, "r", &options).unwrap();
                // The first instruction runs (and the loop goes round once).
                assert_eq!(process.run_for(1).unwrap(), Outcome::Interrupted);
                samples.push((began.elapsed(), dropped));
            }
            let (time, dropped) = samples[samples.len() / 2];
            println!(
                "| {mib} MiB | {stored} | {} | {:.2} |",
                if dropped { "dropped" } else { "warm" },
                ms(time)
            );
        }
        std::hint::black_box(report);
    }
    println!();
}
