//! Tests of a `LinearMemory` with a page store and a tiny frame limit, against
//! the byte-vector model, and under storage faults.

use super::*;
use crate::{EvictionPolicy, HeapStats, PageStore, PageStoreError};
use ferrite_pagestore::{
    record::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES},
    Fault, FaultyStore, MemStore, PageMapRef, StorageBackend,
};
use std::sync::Arc;

const PREFIX: &str = "procs/test/";

/// A fresh page store over `backend`.
fn open_store(backend: &Arc<dyn StorageBackend>) -> PageStore {
    PageStore::open(backend.clone(), PREFIX, PAGE_SIZE, 0, PageMapRef::default())
}

fn mem_backend() -> (Arc<MemStore>, Arc<dyn StorageBackend>) {
    let mem = Arc::new(MemStore::new());
    let backend: Arc<dyn StorageBackend> = mem.clone();
    (mem, backend)
}

/// A model whose memory has a store over `backend` and `frames_max` frames.
fn backed_model(
    initial_wasm_pages: u32,
    maximum_wasm_pages: Option<u32>,
    backend: &Arc<dyn StorageBackend>,
    frames_max: usize,
) -> Model {
    let mut model = Model::new(initial_wasm_pages, maximum_wasm_pages);
    model
        .memory
        .attach_store(open_store(backend), Some(frames_max))
        .unwrap();
    model
}

/// Commits a checkpoint of the model's memory, then replaces the memory with a
/// fresh one attached to the store reopened at that checkpoint, as a restore
/// does, and compares the whole memory.
fn checkpoint_and_reattach(model: &mut Model, backend: &Arc<dyn StorageBackend>) {
    checkpoint_and_restore(model, backend);
    model.check_all();
}

/// [`checkpoint_and_reattach`] without the comparison: nothing is resident.
fn checkpoint_and_restore(model: &mut Model, backend: &Arc<dyn StorageBackend>) {
    let frames_max = model.memory.frames_max();
    model.memory.write_back_dirty().unwrap();
    assert_eq!(model.memory.dirty_pages(), 0);
    let store = model.memory.store_mut().unwrap();
    let map = store.commit_maps().unwrap();
    store.committed(map.clone());
    let epoch = store.epoch() - 1;
    let (size, maximum) = (
        model.memory.size_wasm_pages(),
        model.memory.maximum_wasm_pages(),
    );
    let mut fresh = LinearMemory::new(size, maximum).unwrap();
    let store = PageStore::open(backend.clone(), PREFIX, PAGE_SIZE, epoch, map);
    fresh.attach_store(store, frames_max).unwrap();
    assert_eq!(fresh.resident_pages(), 0);
    model.memory = fresh;
}

/// The randomized operations of `randomized_operations_match_a_byte_vector`, plus
/// write-backs and checkpoint/restore cycles, under a frame limit of 1 to 5.
fn random_steps(model: &mut Model, backend: &Arc<dyn StorageBackend>, seed: u64, steps: u32) {
    let mut rng = XorShift(seed);
    for step in 0..steps {
        let size = model.bytes.len() as u64;
        let mut addr = || match rng.below(4) {
            0 | 1 => (rng.below(size / PAGE + 1) * PAGE).saturating_sub(8) + rng.below(16),
            2 => rng.below(size + 1),
            _ => size - rng.below(16) + rng.below(32),
        };
        let (a, b) = (addr(), addr());
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 => rng.below(3 * PAGE),
            2 => PAGE * (1 + rng.below(3)),
            _ => rng.below(PAGE / 4),
        };
        let byte = if rng.below(3) == 0 { 0 } else { rng.byte() };
        match rng.below(20) {
            0 => model.load::<1>(a),
            1 => model.load::<2>(a),
            2 => model.load::<4>(a),
            3 => model.load::<8>(a),
            4 => model.load::<16>(a),
            5 => model.store(a, [byte]),
            6 => model.store(a, [byte, rng.byte()]),
            7 => model.store(a, (rng.next() as u32 & 0xFF00_FF00).to_le_bytes()),
            8 => model.store(a, rng.next().to_le_bytes()),
            9 => model.store(a, (u128::from(rng.next()) << 64 | 1).to_le_bytes()),
            10 => model.read(a, len as usize),
            11 => {
                let data: Vec<u8> = (0..len).map(|_| rng.byte() & byte).collect();
                model.write(a, &data);
            }
            12 => model.fill(a, byte, len),
            13..=15 => model.copy_within(a, b, len),
            16 => model.copy_within(a, a + rng.below(2 * PAGE), len),
            17 => model.grow(rng.below(2) as u32),
            18 => {
                model.memory.write_back_dirty().unwrap();
                assert_eq!(model.memory.dirty_pages(), 0);
            }
            _ if rng.below(8) == 0 => checkpoint_and_reattach(model, backend),
            _ => model.load::<8>(a),
        }
        model.memory.check_paging_invariants();
        assert_eq!(model.memory.storage_error().map(ToString::to_string), None);
        if step % 500 == 0 {
            model.check_all();
        }
    }
    model.check_all();
}

#[test]
fn bounded_backed_memory_matches_a_byte_vector() {
    for frames_max in 1..=5 {
        let (_, backend) = mem_backend();
        let mut model = backed_model(1, Some(4), &backend, frames_max);
        random_steps(
            &mut model,
            &backend,
            0x2545_F491_4F6C_DD1D ^ frames_max as u64,
            3000,
        );
        let stats = model.memory.stats();
        assert!(stats.evictions > 0 && stats.page_faults > 0, "{stats:?}");
    }
}

#[test]
fn every_eviction_policy_keeps_contents() {
    for policy in [
        EvictionPolicy::Clock,
        EvictionPolicy::ClockWithoutTlb,
        EvictionPolicy::Fifo,
        EvictionPolicy::Random,
    ] {
        let (_, backend) = mem_backend();
        let mut model = backed_model(1, None, &backend, 3);
        model.memory.set_eviction_policy(policy);
        let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
        for _ in 0..2000 {
            let addr = rng.below(model.bytes.len() as u64 - 8);
            if rng.below(2) == 0 {
                model.store(addr, rng.next().to_le_bytes());
            } else {
                model.load::<8>(addr);
            }
            model.memory.check_paging_invariants();
        }
        model.check_all();
    }
}

#[test]
fn attach_counts_resident_pages_dirty_and_evicts_down_to_the_limit() {
    let (_, backend) = mem_backend();
    let mut model = Model::new(1, None);
    for page in 0..6 {
        model.store(page * PAGE + 5, [page as u8 + 1; 4]);
    }
    assert_eq!(model.memory.resident_pages(), 6);
    assert_eq!(
        model.memory.dirty_pages(),
        6,
        "unbacked: every resident page"
    );
    model
        .memory
        .attach_store(open_store(&backend), Some(2))
        .unwrap();
    model.memory.check_paging_invariants();
    let stats = model.memory.stats();
    assert_eq!(
        (
            stats.resident_pages,
            stats.dirty_pages,
            stats.evictions,
            stats.write_backs
        ),
        (2, 2, 4, 4),
        "{stats:?}"
    );
    assert_eq!(stats.frames_max, Some(2));
    model.check_all();
    assert_eq!(
        model.memory.attach_store(open_store(&backend), None),
        Err(HeapError::StoreAttached)
    );
}

#[test]
fn attach_rejects_a_zero_limit_and_a_foreign_page_size() {
    let (_, backend) = mem_backend();
    let mut memory = memory_of_pages(4);
    assert_eq!(
        memory.attach_store(open_store(&backend), Some(0)),
        Err(HeapError::FramesMaxZero)
    );
    let other = PageStore::open(backend, PREFIX, PAGE_SIZE * 2, 0, PageMapRef::default());
    assert_eq!(
        memory.attach_store(other, None),
        Err(HeapError::PageSizeMismatch {
            page_size: PAGE_SIZE * 2
        })
    );
    assert!(memory.page_store().is_none());
}

#[test]
fn clean_pages_are_not_written_back_and_a_store_marks_them_dirty() {
    let (_, backend) = mem_backend();
    let mut model = backed_model(1, None, &backend, 4);
    model.store(8, [1u8; 8]);
    model.store(PAGE + 8, [2u8; 8]);
    assert_eq!(model.memory.write_back_dirty(), Ok(2));
    assert_eq!(model.memory.write_back_dirty(), Ok(0));
    // The pages are still cached for loads, no longer for stores.
    model.load::<8>(8);
    assert_eq!(model.memory.dirty_pages(), 0);
    model.store(12, [3u8; 4]);
    model.memory.check_paging_invariants();
    assert_eq!(model.memory.dirty_pages(), 1);
    model.store(16, [4u8; 4]); // Hits now.
    assert_eq!(model.memory.write_back_dirty(), Ok(1));
    model.check_all();
    let written = model.memory.stats().write_backs;
    // Reading clean pages and evicting them writes nothing.
    for page in 2..16 {
        model.load::<4>(page * PAGE);
        model.store(page * PAGE, [0u8; 4]); // Zeros into never-written pages: no frame.
    }
    model.load::<8>(8);
    model.load::<8>(PAGE + 8);
    assert_eq!(model.memory.stats().write_backs, written);
    assert_eq!(model.memory.resident_pages(), 2);
}

#[test]
fn never_written_pages_cost_nothing() {
    let (mem, backend) = mem_backend();
    let mut memory = LinearMemory::new(0, None).unwrap();
    assert_eq!(memory.grow(65_536), Some(0));
    memory.attach_store(open_store(&backend), Some(4)).unwrap();
    let mut buf = vec![0xFF; 3 * PAGE_SIZE];
    memory.read((1 << 31) - 5, &mut buf).unwrap();
    assert!(buf.iter().all(|&byte| byte == 0));
    assert_eq!(memory.load::<8>((1 << 32) - 8), Ok([0; 8]));
    memory.fill(PAGE, 0, 1 << 30).unwrap();
    memory.copy_within(1 << 31, 1 << 30, 1 << 20).unwrap();
    memory.write(12, &[0; 100]).unwrap();
    assert_eq!(
        memory.stats(),
        HeapStats {
            frames_max: Some(4),
            ..HeapStats::default()
        }
    );
    assert_eq!(mem.bytes_stored(), 0);
    assert_eq!(memory.page_store().unwrap().stats().pages_read, 0);
}

#[test]
fn four_gib_memory_with_eight_frames_stays_within_the_limit() {
    let (_, backend) = mem_backend();
    let mut memory = LinearMemory::new(0, None).unwrap();
    assert_eq!(memory.grow(65_536), Some(0));
    memory.attach_store(open_store(&backend), Some(8)).unwrap();
    let pages = memory.size_bytes() / PAGE;
    let spread = |i: u64| (i * 7919 * 131) % pages;
    for i in 0..300 {
        let addr = spread(i) * PAGE + i % (PAGE - 8);
        memory.store(addr, i.to_le_bytes()).unwrap();
        assert!(memory.resident_pages() <= 8);
    }
    for i in (0..300).rev() {
        let addr = spread(i) * PAGE + i % (PAGE - 8);
        assert_eq!(memory.load::<8>(addr), Ok(i.to_le_bytes()), "value {i}");
        assert!(memory.resident_pages() <= 8);
    }
    // A copy across the top of memory, with source and target not resident.
    memory
        .copy_within((1 << 32) - 3 * PAGE - 1, 5, 3 * PAGE)
        .unwrap();
    memory.check_paging_invariants();
    assert_eq!(memory.resident_page_list().len(), memory.resident_pages());
    let stats = memory.stats();
    assert!(
        stats.resident_pages <= 8 && stats.evictions >= 290,
        "{stats:?}"
    );
}

#[test]
fn a_single_frame_suffices_for_every_bulk_operation() {
    let (_, backend) = mem_backend();
    let mut model = backed_model(1, None, &backend, 1);
    let data: Vec<u8> = (0..5 * PAGE_SIZE).map(|i| (i % 251) as u8 + 1).collect();
    model.write(PAGE - 3, &data);
    model.copy_within(PAGE + 7, PAGE - 3, 4 * PAGE); // Overlapping, upwards.
    model.copy_within(PAGE / 2, PAGE + 1, 3 * PAGE); // Overlapping, downwards.
    model.fill(2 * PAGE - 1, 0x5A, PAGE + 2);
    model.store(3 * PAGE - 2, [9u8; 8]);
    model.load::<16>(3 * PAGE - 8);
    model.memory.check_paging_invariants();
    model.check_all();
    assert_eq!(model.memory.resident_pages(), 1);
}

#[test]
fn detach_keeps_contents_and_prefetch_fills_free_frames() {
    let (_, backend) = mem_backend();
    let mut model = backed_model(1, None, &backend, 3);
    for page in 0..10 {
        model.store(page * PAGE + 9, [page as u8 + 1; 2]);
    }
    assert_eq!(model.memory.resident_pages(), 3);
    let resident = model.memory.resident_page_list();
    assert_eq!(resident.len(), 3);
    checkpoint_and_restore(&mut model, &backend);
    // The restored memory starts empty: prefetch the pages resident before.
    let list: Vec<u32> = (0..10).collect();
    assert_eq!(model.memory.prefetch(&list), 3, "up to the limit only");
    assert_eq!(model.memory.resident_page_list(), [0, 1, 2]);
    assert_eq!(model.memory.stats().evictions, 0);
    model.store(PAGE * 11, [7u8]);
    let store = model.memory.detach_store().unwrap().unwrap();
    assert!(store.stats().pages_read >= 10);
    assert!(model.memory.page_store().is_none());
    assert_eq!(model.memory.resident_pages(), 11);
    model.check_all();
    // Unbacked again: plain behaviour.
    model.store(PAGE * 12, [8u8; 8]);
    model.check_all();
    assert_eq!(
        model.memory.detach_store().map(|store| store.is_none()),
        Ok(true)
    );
}

/// A memory over a backend that fails the first `put_new` with `fault`.
fn memory_over_faulty_store(fault: Fault) -> LinearMemory {
    let backend: Arc<dyn StorageBackend> = Arc::new(FaultyStore::new(MemStore::new(), 1, fault));
    let mut memory = memory_of_pages(320);
    memory.attach_store(open_store(&backend), Some(2)).unwrap();
    memory
}

#[test]
fn failed_write_back_latches_the_error_and_poisons_the_memory() {
    for fault in [Fault::IoError, Fault::NoSpace] {
        let mut memory = memory_over_faulty_store(fault);
        // Evicted pages fill the 1 MiB open segment; its put, under way while
        // pages are written, fails: at the latest, the write-back says so.
        let failed = (0..320u64).find(|&page| memory.store(page * PAGE, [1u8; 8]).is_err());
        if let Some(failed) = failed {
            assert!(failed > 200, "failed at page {failed}");
        } else {
            assert!(matches!(
                memory.write_back_dirty(),
                Err(HeapError::Storage(_))
            ));
        }
        let failed = failed.unwrap_or(300);
        let error = memory.storage_error().map(ToString::to_string).unwrap();
        assert!(
            error.contains("injected") || error.contains("full"),
            "{error}"
        );
        memory.check_paging_invariants();
        // Poisoned: resident pages too fail now, and nothing panics.
        assert_eq!(memory.load::<8>(failed * PAGE), Err(OutOfBounds));
        assert_eq!(memory.load::<8>((failed - 1) * PAGE), Err(OutOfBounds));
        assert_eq!(memory.store(0, [1u8]), Err(OutOfBounds));
        assert_eq!(memory.read(0, &mut [0; 4]), Err(OutOfBounds));
        assert_eq!(memory.fill(0, 1, 4), Err(OutOfBounds));
        assert_eq!(memory.copy_within(0, PAGE, 4), Err(OutOfBounds));
        assert_eq!(memory.prefetch(&[0, 1]), 0);
        assert!(matches!(
            memory.write_back_dirty(),
            Err(HeapError::Storage(_))
        ));
        assert!(matches!(memory.detach_store(), Err(HeapError::Storage(_))));
        // Bounds are still checked first.
        assert_eq!(memory.load::<1>(u64::MAX), Err(OutOfBounds));
        let taken = memory.take_storage_error().unwrap();
        assert!(matches!(*taken, PageStoreError::Storage(_)));
        assert!(memory.take_storage_error().is_none());
        assert!(memory.storage_error().is_some(), "still poisoned");
        let message = HeapError::Storage(taken).to_string();
        assert!(message.starts_with("storage error: "), "{message}");
    }
}

#[test]
fn failed_write_back_at_a_checkpoint_is_returned_and_latched() {
    let backend: Arc<dyn StorageBackend> =
        Arc::new(FaultyStore::new(MemStore::new(), 1, Fault::IoError));
    let mut memory = memory_of_pages(320);
    for page in 0..300 {
        memory.store(page * PAGE, [3u8]).unwrap();
    }
    memory.attach_store(open_store(&backend), None).unwrap();
    let Err(HeapError::Storage(error)) = memory.write_back_dirty() else {
        panic!("the write-back must fail");
    };
    assert_eq!(
        memory.write_back_dirty(),
        Err(HeapError::Storage(error.clone())),
        "the same latched error"
    );
    assert_eq!(memory.load::<1>(0), Err(OutOfBounds));
}

#[test]
fn a_bit_flip_in_a_stored_page_is_reported_as_corrupt() {
    let (mem, backend) = mem_backend();
    let mut memory = memory_of_pages(8);
    memory.attach_store(open_store(&backend), None).unwrap();
    for page in 0..8u64 {
        memory
            .write(page * PAGE, &vec![page as u8 + 1; PAGE_SIZE])
            .unwrap();
    }
    assert_eq!(memory.write_back_dirty(), Ok(8));
    let store = memory.store_mut().unwrap();
    let map = store.commit_maps().unwrap();
    store.committed(map.clone());
    // Pages were written in page order: page 3 is the fourth record.
    let key = backend
        .list(&format!("{PREFIX}segments/"))
        .unwrap()
        .remove(0);
    let offset = SEGMENT_HEADER_BYTES + 3 * (RECORD_HEADER_BYTES + PAGE_SIZE) + RECORD_HEADER_BYTES;
    assert!(mem.flip_bit(&key, offset + 100, 5));
    let mut restored = memory_of_pages(8);
    let store = PageStore::open(backend, PREFIX, PAGE_SIZE, 1, map);
    restored.attach_store(store, Some(2)).unwrap();
    assert_eq!(restored.load::<1>(2 * PAGE), Ok([3]));
    assert_eq!(restored.load::<1>(3 * PAGE + 100), Err(OutOfBounds));
    assert!(matches!(
        restored.storage_error(),
        Some(PageStoreError::Corrupt { .. })
    ));
    assert_eq!(restored.load::<1>(2 * PAGE), Err(OutOfBounds), "poisoned");
    let mut buf = [0; 8];
    assert_eq!(restored.read(3 * PAGE, &mut buf), Err(OutOfBounds));
    assert_eq!(buf, [0; 8], "corrupt bytes are never returned");
    restored.check_paging_invariants();
}

/// A memory of `pages` pages, page `p` filled with `p % 250 + 1`, checkpointed to a
/// fresh store; returns the store's map.
fn committed_memory(backend: &Arc<dyn StorageBackend>, pages: u64) -> PageMapRef {
    let mut memory = memory_of_pages(pages);
    memory.attach_store(open_store(backend), Some(4)).unwrap();
    for page in 0..pages {
        memory
            .write(page * PAGE, &vec![(page % 250) as u8 + 1; PAGE_SIZE])
            .unwrap();
    }
    memory.write_back_dirty().unwrap();
    let store = memory.store_mut().unwrap();
    let map = store.commit_maps().unwrap();
    store.committed(map.clone());
    map
}

#[test]
fn a_sequential_scan_faults_pages_in_from_readahead_windows() {
    let (_, backend) = mem_backend();
    let map = committed_memory(&backend, 300);
    let mut memory = memory_of_pages(300);
    let store = PageStore::open(backend, PREFIX, PAGE_SIZE, 1, map);
    memory.attach_store(store, Some(4)).unwrap();
    for page in 0..300u64 {
        assert_eq!(
            memory.load::<1>(page * PAGE + 7),
            Ok([(page % 250) as u8 + 1])
        );
    }
    memory.check_paging_invariants();
    let stats = memory.page_store().unwrap().stats();
    assert_eq!(stats.pages_read, 300);
    assert!(
        stats.pages_read_ahead > 250,
        "most faults need no I/O: {stats:?}"
    );
}

#[test]
fn a_corrupt_record_in_a_readahead_window_poisons_only_when_reached() {
    let (mem, backend) = mem_backend();
    let map = committed_memory(&backend, 40);
    let key = backend
        .list(&format!("{PREFIX}segments/"))
        .unwrap()
        .remove(0);
    let record = RECORD_HEADER_BYTES + PAGE_SIZE;
    assert!(mem.flip_bit(&key, SEGMENT_HEADER_BYTES + 20 * record + 64, 2));
    let mut memory = memory_of_pages(40);
    let store = PageStore::open(backend, PREFIX, PAGE_SIZE, 1, map);
    memory.attach_store(store, Some(4)).unwrap();
    for page in 0..20u64 {
        assert_eq!(memory.load::<1>(page * PAGE), Ok([page as u8 + 1]));
    }
    assert!(memory.page_store().unwrap().stats().pages_read_ahead > 10);
    assert!(memory.storage_error().is_none(), "page 20 was not used yet");
    assert_eq!(memory.load::<1>(20 * PAGE), Err(OutOfBounds));
    assert!(matches!(
        memory.storage_error(),
        Some(PageStoreError::Corrupt { .. })
    ));
    memory.check_paging_invariants();
}
