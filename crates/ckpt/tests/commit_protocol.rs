//! The commit protocol under injected faults: for every write N of a run of
//! checkpoints, fail it (I/O error, full disk) or crash at it (before or after it
//! is durable); then recover and check that the recovered checkpoint is exactly a
//! committed one and that no committed checkpoint was lost.
//!
//! Segments and page-map chunks are written with deferred durability and synced
//! just before the manifest, so the faults also hit those deferred writes and
//! the sync; a crash then loses (or tears) every unsynced object. The second
//! workload spans several segments per checkpoint and several map chunks with
//! room for only one loaded, so that segments and chunks are also written (and
//! rewritten) between checkpoints.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
use ferrite_pagestore::{record::CHUNK_PAGES, Fault, FaultyStore, MemStore, StorageBackend};
use std::sync::Arc;

const PAGE: usize = 4096;

/// What the runs write: `pages` heap pages, page `i` at heap page `i * stride`,
/// each touched page `writes` times per step (as evictions write a page back
/// more than once), with at most `chunks_loaded_max` page-map chunks in memory.
#[derive(Debug, Clone, Copy)]
struct Workload {
    pages: u32,
    stride: u32,
    writes: u32,
    chunks_loaded_max: usize,
    checkpoints: u64,
}

/// Few pages: one segment and one map chunk per checkpoint.
const SMALL: Workload = Workload {
    pages: 40,
    stride: 1,
    writes: 1,
    chunks_loaded_max: 32,
    checkpoints: 5,
};

/// Three segments per checkpoint (the first superseded whole by the second
/// round of writes, so dropped before the commit; the second round overwrites
/// the records still in the open segment in place), five map chunks, one
/// loaded at a time.
const SPREAD: Workload = Workload {
    pages: 1100,
    stride: CHUNK_PAGES / 220,
    writes: 2,
    chunks_loaded_max: 1,
    checkpoints: 3,
};

/// The heap contents after checkpoint `n`, one byte per page (page `p` holds
/// byte `(n * 7 + p) % 251` for the pages touched by step `n`).
fn heap_after(w: Workload, n: u64) -> Vec<u8> {
    let mut heap = vec![0u8; w.pages as usize];
    for step in 1..=n {
        for page in touched(w, step) {
            heap[page as usize] = ((step * 7 + u64::from(page)) % 251) as u8;
        }
    }
    heap
}

/// Pages written in step `n`: a spread that revisits earlier pages.
fn touched(w: Workload, n: u64) -> impl Iterator<Item = u32> {
    (0..w.pages).filter(move |p| (u64::from(*p) * 3 + n).is_multiple_of(4))
}

fn body(count: u64) -> ManifestBody {
    ManifestBody {
        process: "p".into(),
        module_sha256: String::new(),
        page_size: PAGE as u32,
        map_chunks: vec![],
        map_deltas: Vec::new(),
        segments: vec![],
        status: ProcessStatus::Running,
        invocation: Invocation::default(),
        engine: count.to_le_bytes().to_vec(),
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: count,
        heap_bytes: 0,
        pages_written: 0,
        pause_us: 0,
        resident_pages: Vec::new(),
        generations: Vec::new(),
        writer: String::new(),
    }
}

/// Runs the workload from the latest checkpoint, committing up to `w.checkpoints`;
/// returns the last checkpoint number whose commit returned Ok.
fn run(w: Workload, backend: Arc<dyn StorageBackend>) -> u64 {
    let process = ProcessStore::new(backend, "p").unwrap();
    let Ok(recovery) = process.recover() else {
        return 0;
    };
    let latest = recovery.manifest;
    let mut done = latest.as_ref().map_or(0, |m| m.body.checkpoint_count);
    let Ok(mut pages) = process.page_store(latest.as_ref(), PAGE) else {
        return done;
    };
    pages.set_chunks_loaded_max(w.chunks_loaded_max);
    let mut parent = latest.map_or(0, |m| m.epoch);
    while done < w.checkpoints {
        let step = done + 1;
        let mut failed = false;
        'write: for round in 0..w.writes {
            for page in touched(w, step) {
                // Earlier rounds write other bytes: only the last round's stay.
                let byte =
                    ((step * 7 + u64::from(page)) % 251) as u8 ^ (w.writes - 1 - round) as u8;
                if pages.write_page(page * w.stride, &[byte; PAGE]).is_err() {
                    failed = true;
                    break 'write;
                }
            }
        }
        if failed {
            return done;
        }
        let Ok(map) = pages.commit_maps() else {
            return done;
        };
        let mut body = body(step);
        body.set_page_map(&map);
        let manifest = Manifest {
            epoch: pages.epoch(),
            parent,
            body,
        };
        if process.commit(&manifest).is_err() {
            return done;
        }
        pages.committed(map);
        parent = manifest.epoch;
        done = step;
        let _ = process.gc(2);
    }
    done
}

/// Reads back the latest checkpoint: its number and its heap.
fn recovered(w: Workload, backend: Arc<dyn StorageBackend>) -> (u64, Vec<u8>) {
    let process = ProcessStore::new(backend, "p").unwrap();
    let recovery = process.recover().unwrap();
    let Some(manifest) = recovery.manifest else {
        return (0, vec![0; w.pages as usize]);
    };
    let count = manifest.body.checkpoint_count;
    assert_eq!(
        manifest.body.engine,
        count.to_le_bytes(),
        "engine state matches its manifest"
    );
    let mut pages = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut heap = Vec::new();
    let mut buf = vec![0; PAGE];
    for page in 0..w.pages {
        pages.read_page(page * w.stride, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == buf[0]), "page {page} is whole");
        heap.push(buf[0]);
    }
    (count, heap)
}

/// Fails or crashes every write operation of a run of `w`, in each of the
/// four ways; returns the number of cases.
fn every_write_of(w: Workload) -> usize {
    let total_puts = {
        let store = Arc::new(FaultyStore::new(
            Arc::new(MemStore::new()),
            0,
            Fault::IoError,
        ));
        assert_eq!(run(w, store.clone()), w.checkpoints);
        store.puts()
    };
    assert!(total_puts >= w.checkpoints * 3);
    let mut cases = 0;
    for at in 1..=total_puts {
        for fault in [
            Fault::IoError,
            Fault::NoSpace,
            Fault::Crash,
            Fault::CrashAfter,
        ] {
            let medium = Arc::new(MemStore::new());
            let faulty = Arc::new(FaultyStore::new(medium.clone(), at, fault));
            let committed = run(w, faulty.clone());
            // Reboot: the medium keeps exactly what was durable (and torn
            // remains of what was not).
            let (count, heap) = recovered(w, medium.clone());
            assert!(
                count == committed || (fault == Fault::CrashAfter && count == committed + 1),
                "write {at} {fault:?}: committed {committed}, recovered {count}"
            );
            assert_eq!(
                heap,
                heap_after(w, count),
                "write {at} {fault:?}: heap of checkpoint {count}"
            );
            // The process then finishes from there, as an uninterrupted run would.
            assert_eq!(run(w, medium.clone()), w.checkpoints);
            assert_eq!(recovered(w, medium).1, heap_after(w, w.checkpoints));
            cases += 1;
        }
    }
    cases
}

#[test]
fn every_write_can_fail_or_crash() {
    assert!(every_write_of(SMALL) > 40);
}

#[test]
fn every_write_can_fail_or_crash_with_many_segments_and_evicted_chunks() {
    // The workload does exercise what it is for.
    let medium: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let process = ProcessStore::new(medium.clone(), "p").unwrap();
    let mut pages = process.page_store(None, PAGE).unwrap();
    pages.set_chunks_loaded_max(SPREAD.chunks_loaded_max);
    for round in 0..SPREAD.writes {
        for page in touched(SPREAD, 1) {
            pages
                .write_page(page * SPREAD.stride, &[round as u8; PAGE])
                .unwrap();
        }
    }
    pages.commit_maps().unwrap();
    let stats = pages.stats();
    assert!(
        stats.segments_written >= 2 && stats.segments_dropped >= 1,
        "{stats:?}"
    );
    assert!(
        stats.chunks_evicted > 4 && stats.maps_written > 5,
        "{stats:?}"
    );

    assert!(every_write_of(SPREAD) > 60);
}

#[test]
fn a_corrupt_latest_manifest_falls_back_to_the_previous_checkpoint() {
    let medium = Arc::new(MemStore::new());
    assert_eq!(run(SMALL, medium.clone()), SMALL.checkpoints);
    let keys = medium.list("procs/p/manifests/").unwrap();
    let latest = keys.last().unwrap().clone();
    assert!(medium.flip_bit(&latest, 40, 2));
    let (count, heap) = recovered(SMALL, medium.clone());
    assert_eq!(count, SMALL.checkpoints - 1);
    assert_eq!(heap, heap_after(SMALL, count));
    let name = latest.strip_prefix("procs/p/").unwrap();
    let kept = medium.list("procs/p/quarantine/00000001/").unwrap();
    assert!(
        kept.len() > 1 && kept.contains(&format!("procs/p/quarantine/00000001/{name}")),
        "the manifest and its objects are kept for inspection: {kept:?}"
    );
    // Resuming from the fallback reaches the same end.
    assert_eq!(run(SMALL, medium.clone()), SMALL.checkpoints);
    assert_eq!(
        recovered(SMALL, medium).1,
        heap_after(SMALL, SMALL.checkpoints)
    );
}

#[test]
fn gc_bounds_the_store() {
    let medium = Arc::new(MemStore::new());
    assert_eq!(run(SMALL, medium.clone()), SMALL.checkpoints);
    let manifests = medium.list("procs/p/manifests/").unwrap().len();
    assert!(
        manifests <= 2,
        "gc keeps two checkpoints, found {manifests}"
    );
    // Live data is at most the heap twice over (two retained checkpoints), plus maps.
    let live_heap = u64::from(SMALL.pages) * PAGE as u64;
    let stored = medium.bytes_stored() as u64;
    assert!(
        stored < 3 * live_heap + 4 * 70_000,
        "stored {stored} bytes for a {live_heap}-byte heap"
    );
}
