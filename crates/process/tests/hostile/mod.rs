//! The hostile-store check shared by the seeded test `tests/hostile_store.rs`
//! and the fuzz target `fuzz/fuzz_targets/hostile_store.rs` (included by
//! path, not copied).
//!
//! A real small store is built once: a process that pages through a heap
//! larger than its frames runs a few checkpoints and then "crashes" (is
//! dropped). Each case copies it, mutates its objects as the input says (flip
//! or set bytes, overwrite a length, offset or epoch field, truncate, extend,
//! delete, or replace one object with another's bytes), optionally re-seals
//! the checksums of what it changed so that the mutation reaches the decoders,
//! then resumes the process and runs it to its end, checkpointing on the way.
//!
//! Properties: no panic (a panic fails the caller); no single allocation over
//! [`ALLOCATION_BYTES_MAX`] (the caller installs [`BoundedAlloc`], which
//! refuses it: the process aborts); and the run ends with the uninterrupted
//! result (possibly after a fallback, which must be announced), or stops with
//! an error that names the damage. A different result is accepted only when a
//! re-sealed object could forge it: a manifest (engine state), a page-map chunk
//! (which names the record to use) or a record's data; bit-level damage that
//! was not re-sealed must never change the result.

#![allow(dead_code, clippy::unwrap_used)]

use ferrite_pagestore::{MemStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessError, ProcessOptions};
use ferrite_vm::Value;
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

/// The largest single allocation a case may make: the largest object the
/// format allows (a module, 256 MiB) and then some. Stored lengths must never
/// size an allocation beyond what the object holds.
pub const ALLOCATION_BYTES_MAX: usize = 300 << 20;

/// The largest single allocation seen, for reports.
pub static ALLOCATION_BYTES_PEAK: AtomicUsize = AtomicUsize::new(0);

/// A global allocator that refuses any single allocation over
/// [`ALLOCATION_BYTES_MAX`] (the process then aborts with "memory allocation
/// of N bytes failed") and records the largest one.
pub struct BoundedAlloc;

// SAFETY: forwards to the system allocator unchanged, or returns null (a
// refusal `GlobalAlloc` allows).
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATION_BYTES_PEAK.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATION_BYTES_PEAK.fetch_max(new_size, Ordering::Relaxed);
        if new_size > ALLOCATION_BYTES_MAX {
            return std::ptr::null_mut();
        }
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Writes pseudo-random words over a 128 KiB heap (32 pages, four frames
/// resident), then sums one word of every page.
const PROGRAM: &str = r#"
(module
  (memory 2)
  (global $x (mut i32) (i32.const 7))
  (func (export "walk") (param $n i32) (result i64)
    (local $i i32) (local $addr i32) (local $sum i64)
    loop $l
      global.get $x i32.const 1103515245 i32.mul i32.const 12345 i32.add global.set $x
      global.get $x i32.const 8 i32.shr_u i32.const 131064 i32.rem_u i32.const -4 i32.and
      local.set $addr
      local.get $addr
      local.get $addr i32.load local.get $i i32.add i32.const 1 i32.add
      i32.store
      local.get $i i32.const 1 i32.add local.tee $i local.get $n i32.lt_u br_if $l
    end
    i32.const 0 local.set $i
    loop $pages
      local.get $sum local.get $i i32.load i64.extend_i32_u i64.add local.set $sum
      local.get $i i32.const 4096 i32.add local.tee $i i32.const 131072 i32.lt_u br_if $pages
    end
    local.get $sum))
"#;

const NAME: &str = "hostile";
const STEPS: i32 = 1500;
/// Instructions per slice; a checkpoint follows each slice.
const SLICE: u64 = 1_000;
/// Slices before the baseline "crashes", and at most per case.
const SLICES_BUILT: usize = 5;
const SLICES_MAX: usize = 400;

fn options() -> ProcessOptions {
    ProcessOptions {
        physical_heap_bytes: Some(4 * ferrite_heap::PAGE_SIZE as u64),
        ..ProcessOptions::default()
    }
}

/// The store after a run that crashed, and the run's uninterrupted result.
pub struct Baseline {
    pub objects: Vec<(String, Vec<u8>)>,
    pub expected: Value,
}

fn store_of(objects: &[(String, Vec<u8>)]) -> Arc<MemStore> {
    let mem = Arc::new(MemStore::new());
    for (key, bytes) in objects {
        mem.put_new(key, bytes).unwrap();
    }
    mem
}

/// Builds the baseline store once per process.
pub fn baseline() -> &'static Baseline {
    static BASELINE: OnceLock<Baseline> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let mem = Arc::new(MemStore::new());
        let backend: Arc<dyn StorageBackend> = mem.clone();
        let module = wat::parse_str(PROGRAM).unwrap();
        let launch = Launch::invoke(NAME, module, "walk", vec![Value::I32(STEPS)]);
        let mut process = Process::start(backend, None, launch, &options()).unwrap();
        for _ in 0..SLICES_BUILT {
            assert_eq!(process.run_for(SLICE).unwrap(), Outcome::Interrupted);
            process.checkpoint().unwrap();
        }
        // Work after the last checkpoint, written back but never committed.
        assert_eq!(process.run_for(SLICE).unwrap(), Outcome::Interrupted);
        drop(process);
        let objects: Vec<(String, Vec<u8>)> = mem
            .list("")
            .unwrap()
            .into_iter()
            .map(|key| {
                let bytes = mem.get(&key, None).unwrap();
                (key, bytes)
            })
            .collect();
        let expected = match run(store_of(&objects)) {
            Ok((Outcome::Returned(results), _)) => results[0],
            other => panic!("the undamaged store must run to its end: {other:?}"),
        };
        Baseline { objects, expected }
    })
}

/// Resumes the process and runs it to its end, checkpointing after every
/// slice; returns how it ended and whether recovery announced a fallback.
fn run(mem: Arc<MemStore>) -> Result<(Outcome, bool), ProcessError> {
    let backend: Arc<dyn StorageBackend> = mem;
    let (mut process, report) = Process::resume(backend, None, NAME, &options())?;
    let announced = !report.skipped.is_empty() && report.set_aside.is_some();
    for _ in 0..SLICES_MAX {
        match process.run_for(SLICE)? {
            Outcome::Interrupted => {
                process.checkpoint()?;
            }
            outcome => return Ok((outcome, announced)),
        }
    }
    Ok((Outcome::Interrupted, announced))
}

/// Reads the fuzz input as a sequence of small numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }
    fn below(&mut self, n: usize) -> usize {
        let word = u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]);
        if n == 0 {
            0
        } else {
            word as usize % n
        }
    }
}

/// CRC-32C, table-driven (for re-sealing; the format's checksum).
fn crc32c(bytes: &[u8]) -> u32 {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
            *slot = crc;
        }
        table
    });
    !bytes.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

const RECORD: usize = 24 + 4096;

/// Re-seals `bytes` of object `key`: the trailing checksum of a manifest or
/// map chunk, or the checksum of every record of a segment (over its page,
/// epoch, the segment's sequence number from its key, length and data).
fn reseal(key: &str, bytes: &mut [u8]) {
    let len = bytes.len();
    if key.contains("/segments/") {
        let Some(seq) = key
            .rsplit('-')
            .next()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
        else {
            return;
        };
        let mut at = 24;
        while at + RECORD <= len {
            let record = &bytes[at..at + RECORD];
            let mut identity = Vec::with_capacity(RECORD);
            identity.extend_from_slice(&record[4..16]);
            identity.extend_from_slice(&seq.to_le_bytes());
            identity.extend_from_slice(&record[16..20]);
            identity.extend_from_slice(&record[24..]);
            let crc = crc32c(&identity);
            bytes[at + 20..at + 24].copy_from_slice(&crc.to_le_bytes());
            at += RECORD;
        }
    } else if (key.contains("/manifests/") || key.contains("/maps/")) && len >= 8 {
        let crc = crc32c(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Field values that reach edge cases.
const WORDS: [u64; 8] = [0, 1, 2, 0xff, 4096, 1 << 31, u32::MAX as u64, u64::MAX];

/// Applies one mutation to `objects`; returns whether it could forge a
/// different valid state (see the module documentation).
fn mutate(objects: &mut Vec<(String, Vec<u8>)>, input: &mut Input<'_>) -> bool {
    let which = input.below(objects.len());
    let kind = input.byte() % 8;
    let seal = !input.byte().is_multiple_of(4);
    let key = objects[which].0.clone();
    let bytes = &mut objects[which].1;
    let len = bytes.len();
    let at = input.below(len.max(1));
    let mut data_changed = false;
    match kind {
        0 if len > 0 => {
            bytes[at] ^= 1 << (input.byte() % 8);
            data_changed = true;
        }
        1 if len > 0 => {
            bytes[at] = input.byte();
            data_changed = true;
        }
        2 => {
            // A header field: a length, offset, epoch or index.
            let word = WORDS[input.below(WORDS.len())].wrapping_add(u64::from(input.byte()) % 3);
            let width = if input.byte().is_multiple_of(2) { 4 } else { 8 };
            let field = at - at % 4;
            let end = (field + width).min(len);
            let le = word.to_le_bytes();
            bytes[field..end].copy_from_slice(&le[..end - field]);
            data_changed = true;
        }
        3 => bytes.truncate(at),
        4 => {
            let extra = [1usize, 16, 4096, 1 << 20][input.below(4)];
            let fill = input.byte();
            bytes.resize(len + extra, fill);
        }
        5 => {
            objects.remove(which);
            return false;
        }
        6 => {
            let other = input.below(objects.len());
            let copy = objects[other].1.clone();
            objects[which].1 = copy;
            return false;
        }
        _ => {
            // The epoch of a manifest, map chunk or segment header.
            if len >= 16 {
                let epoch = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                let new = [epoch.wrapping_add(1), epoch.wrapping_sub(1), u64::MAX][at % 3];
                bytes[8..16].copy_from_slice(&new.to_le_bytes());
                data_changed = true;
            }
        }
    }
    if seal {
        reseal(&key, &mut objects[which].1);
    }
    seal && data_changed && !key.starts_with("modules/")
}

/// How a case ended, for counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Correct,
    FellBack,
    Damage,
    Refused,
    Forged,
}

/// Runs one case. Panics (the finding) if a property does not hold.
pub fn check(input: &[u8]) -> Verdict {
    let baseline = baseline();
    let mut objects = baseline.objects.clone();
    let mut input = Input(input);
    let mut forgeable = false;
    for _ in 0..=input.byte() % 3 {
        if objects.is_empty() {
            break;
        }
        forgeable |= mutate(&mut objects, &mut input);
    }
    let result = run(store_of(&objects));
    match result {
        Ok((Outcome::Returned(results), announced)) if results == [baseline.expected] => {
            if announced {
                Verdict::FellBack
            } else {
                Verdict::Correct
            }
        }
        Ok(other) => {
            assert!(forgeable, "misled without a forgery: {other:?}");
            Verdict::Forged
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "every error says something");
            match &error {
                ProcessError::Corrupt(_) => Verdict::Damage,
                ProcessError::Checkpoint(_)
                | ProcessError::Unusable { .. }
                | ProcessError::NoCheckpoint(_)
                | ProcessError::Host(_)
                | ProcessError::Engine(_) => Verdict::Refused,
                ProcessError::Finished { .. } if forgeable => Verdict::Forged,
                _ => panic!("unclear error: {error:?}"),
            }
        }
    }
}
