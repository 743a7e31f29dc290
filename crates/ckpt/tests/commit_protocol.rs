//! The commit protocol under injected faults: for every write N of a run of
//! checkpoints, fail it (I/O error, full disk) or crash at it (before or after it
//! is durable); then recover and check that the recovered checkpoint is exactly a
//! committed one and that no committed checkpoint was lost.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
use ferrite_pagestore::{Fault, FaultyStore, MemStore, StorageBackend};
use std::sync::Arc;

const PAGE: usize = 4096;
const PAGES: u32 = 40;
const CHECKPOINTS: u64 = 5;

/// The heap contents after checkpoint `n` (page `p` holds byte `(n * 7 + p) % 251`
/// for the pages touched by step `n`).
fn heap_after(n: u64) -> Vec<u8> {
    let mut heap = vec![0u8; PAGES as usize];
    for step in 1..=n {
        for page in touched(step) {
            heap[page as usize] = ((step * 7 + u64::from(page)) % 251) as u8;
        }
    }
    heap
}

/// Pages written in step `n`: a spread that revisits earlier pages.
fn touched(n: u64) -> impl Iterator<Item = u32> {
    (0..PAGES).filter(move |p| (u64::from(*p) * 3 + n).is_multiple_of(4))
}

fn body(count: u64) -> ManifestBody {
    ManifestBody {
        process: "p".into(),
        module_sha256: String::new(),
        page_size: PAGE as u32,
        map_chunks: vec![],
        segments: vec![],
        status: ProcessStatus::Running,
        invocation: Invocation::default(),
        engine: count.to_le_bytes().to_vec(),
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: count,
        heap_bytes: u64::from(PAGES) * PAGE as u64,
        pages_written: 0,
        pause_us: 0,
        resident_pages: Vec::new(),
    }
}

/// Runs the workload from the latest checkpoint, committing up to CHECKPOINTS;
/// returns the last checkpoint number whose commit returned Ok.
fn run(backend: Arc<dyn StorageBackend>) -> u64 {
    let process = ProcessStore::new(backend, "p").unwrap();
    let Ok(recovery) = process.recover() else {
        return 0;
    };
    let latest = recovery.manifest;
    let mut done = latest.as_ref().map_or(0, |m| m.body.checkpoint_count);
    let Ok(mut pages) = process.page_store(latest.as_ref(), PAGE) else {
        return done;
    };
    let mut parent = latest.map_or(0, |m| m.epoch);
    while done < CHECKPOINTS {
        let step = done + 1;
        let mut failed = false;
        for page in touched(step) {
            let byte = ((step * 7 + u64::from(page)) % 251) as u8;
            if pages.write_page(page, &[byte; PAGE]).is_err() {
                failed = true;
                break;
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
fn recovered(backend: Arc<dyn StorageBackend>) -> (u64, Vec<u8>) {
    let process = ProcessStore::new(backend, "p").unwrap();
    let recovery = process.recover().unwrap();
    let Some(manifest) = recovery.manifest else {
        return (0, vec![0; PAGES as usize]);
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
    for page in 0..PAGES {
        pages.read_page(page, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == buf[0]), "page {page} is whole");
        heap.push(buf[0]);
    }
    (count, heap)
}

#[test]
fn every_write_can_fail_or_crash() {
    let total_puts = {
        let store = Arc::new(FaultyStore::new(
            Arc::new(MemStore::new()),
            0,
            Fault::IoError,
        ));
        assert_eq!(run(store.clone()), CHECKPOINTS);
        store.puts()
    };
    assert!(total_puts >= CHECKPOINTS * 3);
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
            let committed = run(faulty.clone());
            // Reboot: the medium keeps exactly what was durable.
            let (count, heap) = recovered(medium.clone());
            assert!(
                count == committed || (fault == Fault::CrashAfter && count == committed + 1),
                "write {at} {fault:?}: committed {committed}, recovered {count}"
            );
            assert_eq!(
                heap,
                heap_after(count),
                "write {at} {fault:?}: heap of checkpoint {count}"
            );
            // The process then finishes from there, as an uninterrupted run would.
            assert_eq!(run(medium.clone()), CHECKPOINTS);
            assert_eq!(recovered(medium).1, heap_after(CHECKPOINTS));
            cases += 1;
        }
    }
    assert!(cases > 40);
}

#[test]
fn a_corrupt_latest_manifest_falls_back_to_the_previous_checkpoint() {
    let medium = Arc::new(MemStore::new());
    assert_eq!(run(medium.clone()), CHECKPOINTS);
    let keys = medium.list("procs/p/manifests/").unwrap();
    let latest = keys.last().unwrap().clone();
    assert!(medium.flip_bit(&latest, 40, 2));
    let (count, heap) = recovered(medium.clone());
    assert_eq!(count, CHECKPOINTS - 1);
    assert_eq!(heap, heap_after(count));
    assert!(
        medium.list("procs/p/quarantine/").unwrap().len() == 1,
        "kept for inspection"
    );
    // Resuming from the fallback reaches the same end.
    assert_eq!(run(medium.clone()), CHECKPOINTS);
    assert_eq!(recovered(medium).1, heap_after(CHECKPOINTS));
}

#[test]
fn gc_bounds_the_store() {
    let medium = Arc::new(MemStore::new());
    assert_eq!(run(medium.clone()), CHECKPOINTS);
    let manifests = medium.list("procs/p/manifests/").unwrap().len();
    assert!(
        manifests <= 2,
        "gc keeps two checkpoints, found {manifests}"
    );
    // Live data is at most the heap twice over (two retained checkpoints), plus maps.
    let live_heap = u64::from(PAGES) * PAGE as u64;
    let stored = medium.bytes_stored() as u64;
    assert!(
        stored < 3 * live_heap + 4 * 70_000,
        "stored {stored} bytes for a {live_heap}-byte heap"
    );
}
