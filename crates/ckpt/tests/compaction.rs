//! Compaction bounds the store: a process that keeps rewriting the same few pages
//! of a small heap (and one other page each time), checkpointing after each
//! burst, keeps its stored bytes within a small multiple of its live heap. Without
//! compaction every checkpoint's segment stays, pinned by its one other page,
//! until that page is rewritten again 240 checkpoints later.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
use ferrite_pagestore::{MemStore, StorageBackend};
use std::sync::Arc;

const PAGE: usize = 4096;
/// The live heap: 1 MiB.
const PAGES: u32 = 256;
const CHECKPOINTS: u64 = 200;
/// Pages rewritten at every checkpoint, each written back this many times (the
/// store replaces a version it has not written out yet in place).
const HOT: u32 = 15;
const WRITE_BACKS: u32 = 4;

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
        engine: vec![],
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: count,
        heap_bytes: u64::from(PAGES) * PAGE as u64,
        pages_written: 0,
        pause_us: 0,
        resident_pages: Vec::new(),
        generations: Vec::new(),
        writer: String::new(),
    }
}

/// Runs the workload; returns the largest store size seen after a checkpoint
/// (past the first ten), and the segment bytes at the end.
fn run(compaction: bool) -> (usize, usize) {
    let medium = Arc::new(MemStore::new());
    let backend: Arc<dyn StorageBackend> = medium.clone();
    let process = ProcessStore::new(backend.clone(), "p").unwrap();
    let mut pages = process.page_store(None, PAGE).unwrap();
    if !compaction {
        pages.set_compaction_bytes_max(0);
    }
    let mut expected = vec![0u8; PAGES as usize];
    let mut stored_max = 0;
    for count in 1..=CHECKPOINTS {
        let rewritten: Vec<u32> = if count == 1 {
            (0..PAGES).collect()
        } else {
            let cold = HOT + (count as u32 % (PAGES - HOT));
            (0..HOT).chain([cold]).collect()
        };
        for write_back in 0..WRITE_BACKS {
            for &page in &rewritten {
                let byte = (count as u8).wrapping_mul(3) ^ write_back as u8;
                pages.write_page(page, &[byte; PAGE]).unwrap();
                expected[page as usize] = byte;
            }
        }
        let map = pages.commit_maps().unwrap();
        let mut body = body(count);
        body.set_page_map(&map);
        process
            .commit(&Manifest {
                epoch: pages.epoch(),
                parent: pages.epoch() - 1,
                body,
            })
            .unwrap();
        pages.committed(map);
        process.gc(2).unwrap();
        if count > 10 {
            stored_max = stored_max.max(medium.bytes_stored());
        }
    }
    // The heap is intact.
    let manifest = process.recover().unwrap().manifest.unwrap();
    let mut reopened = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut buf = vec![0; PAGE];
    for page in 0..PAGES {
        reopened.read_page(page, &mut buf).unwrap();
        assert_eq!(buf, [expected[page as usize]; PAGE], "page {page}");
    }
    let segment_bytes = backend
        .list("procs/p/segments/")
        .unwrap()
        .iter()
        .map(|key| backend.get(key, None).unwrap().len())
        .sum();
    (stored_max, segment_bytes)
}

#[test]
fn rewriting_a_small_heap_for_200_checkpoints_keeps_the_store_bounded() {
    let live = PAGES as usize * PAGE;
    // One page-map chunk per kept checkpoint and the one being built, manifests.
    let maps = 3 * (64 << 10) + (16 << 10);
    let (stored_max, segments) = run(true);
    assert!(
        stored_max <= 3 * live + maps,
        "stored up to {stored_max} bytes for a {live}-byte heap"
    );
    assert!(
        segments <= 3 * live,
        "{segments} bytes of segments for a {live}-byte heap"
    );
    let (stored_max_uncompacted, _) = run(false);
    assert!(
        stored_max_uncompacted > 8 * live,
        "without compaction the store grows: {stored_max_uncompacted} bytes"
    );
    eprintln!(
        "live {live}: stored at most {stored_max} with compaction, \
         {stored_max_uncompacted} without"
    );
}
