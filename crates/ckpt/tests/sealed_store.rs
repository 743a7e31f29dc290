//! Checkpoints over a sealed store (`SealedStore`, encryption at rest): pages
//! written, a manifest committed, the process recovered and its pages read
//! back; the medium holds no plaintext; a wrong or missing key and damaged
//! objects are refused.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{CkptError, Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
use ferrite_pagestore::{
    MemStore, PageStoreError, SealKey, SealedStore, StorageBackend, StorageError, KEYCHECK_KEY,
};
use std::sync::Arc;

const PAGE: usize = 4096;
const PAGES: u32 = 600;
/// A plaintext pattern written into every page.
const SECRET: &[u8; 16] = b"SECRET-PATTERN-7";

fn page(index: u32) -> Vec<u8> {
    let mut bytes = SECRET.repeat(PAGE / SECRET.len());
    bytes[..4].copy_from_slice(&index.to_le_bytes());
    bytes
}

fn sealed(memory: &Arc<MemStore>, key: u8) -> Result<Arc<dyn StorageBackend>, StorageError> {
    let store = SealedStore::open(Arc::clone(memory), &SealKey::from_bytes([key; 32]))?;
    Ok(Arc::new(store))
}

fn body(map: &ferrite_pagestore::PageMapRef, pages: u32) -> ManifestBody {
    let mut body = ManifestBody {
        process: "p".into(),
        module_sha256: String::new(),
        page_size: PAGE as u32,
        map_chunks: vec![],
        map_deltas: Vec::new(),
        segments: vec![],
        status: ProcessStatus::Running,
        invocation: Invocation::default(),
        engine: b"engine state SECRET-PATTERN-7".to_vec(),
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: 1,
        heap_bytes: u64::from(pages) * PAGE as u64,
        pages_written: u64::from(pages),
        pause_us: 0,
        resident_pages: vec![],
        generations: Vec::new(),
        writer: String::new(),
    };
    body.set_page_map(map);
    body
}

/// Writes `PAGES` pages (several segments) and commits them as checkpoint 1.
fn checkpoint(backend: &Arc<dyn StorageBackend>) {
    let process = ProcessStore::new(Arc::clone(backend), "p").unwrap();
    let mut pages = process.page_store(None, PAGE).unwrap();
    for index in 0..PAGES {
        pages.write_page(index, &page(index)).unwrap();
    }
    let map = pages.commit_maps().unwrap();
    let body = body(&map, PAGES);
    process
        .commit(&Manifest {
            epoch: pages.epoch(),
            parent: 0,
            body,
        })
        .unwrap();
}

#[test]
fn checkpoint_recover_and_read_back_through_a_sealed_store() {
    let memory = Arc::new(MemStore::new());
    checkpoint(&sealed(&memory, 1).unwrap());
    // A new opener, as after a restart.
    let backend = sealed(&memory, 1).unwrap();
    let process = ProcessStore::new(backend, "p").unwrap();
    let manifest = process.recover().unwrap().manifest.unwrap();
    assert_eq!(manifest.body.engine, b"engine state SECRET-PATTERN-7");
    let mut pages = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut bytes = vec![0; PAGE];
    // In order (readahead ranges), then scattered (single records).
    for index in (0..PAGES).chain((0..PAGES).rev().step_by(7)) {
        assert!(pages.read_page(index, &mut bytes).unwrap());
        assert_eq!(bytes, page(index), "page {index}");
    }
    assert!(pages.stats().pages_read_ahead > 0);
}

#[test]
fn no_stored_byte_holds_the_plaintext() {
    let memory = Arc::new(MemStore::new());
    checkpoint(&sealed(&memory, 1).unwrap());
    let mut objects = 0;
    for key in memory.list("").unwrap() {
        let bytes = memory.get(&key, None).unwrap();
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET);
        assert!(!found, "plaintext in {key}");
        objects += 1;
    }
    assert!(objects > 4, "{objects} objects");
    // The same scan finds it in an unsealed store (the scan can see it).
    let plain = Arc::new(MemStore::new());
    checkpoint(&(Arc::clone(&plain) as Arc<dyn StorageBackend>));
    let found = plain.list("").unwrap().iter().any(|key| {
        let bytes = plain.get(key, None).unwrap();
        bytes.windows(SECRET.len()).any(|w| w == SECRET)
    });
    assert!(found);
}

#[test]
fn a_wrong_or_missing_key_is_one_clear_error() {
    let memory = Arc::new(MemStore::new());
    checkpoint(&sealed(&memory, 1).unwrap());
    let error = sealed(&memory, 2).unwrap_err();
    assert!(matches!(&error, StorageError::Damaged { key, .. } if key == KEYCHECK_KEY));
    let error = ProcessStore::new(Arc::clone(&memory) as Arc<dyn StorageBackend>, "p");
    assert!(matches!(
        error,
        Err(CkptError::Storage(StorageError::KeyRequired))
    ));
    // Nothing was moved or removed: the right key still recovers it.
    let process = ProcessStore::new(sealed(&memory, 1).unwrap(), "p").unwrap();
    assert!(process.recover().unwrap().skipped.is_empty());
}

#[test]
fn a_damaged_segment_is_refused_naming_it() {
    let memory = Arc::new(MemStore::new());
    checkpoint(&sealed(&memory, 1).unwrap());
    let segment = memory.list("procs/p/segments/").unwrap()[0].clone();
    assert!(memory.flip_bit(&segment, 5000, 1));
    let process = ProcessStore::new(sealed(&memory, 1).unwrap(), "p").unwrap();
    let manifest = process.recover().unwrap().manifest.unwrap();
    let mut pages = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut bytes = vec![0; PAGE];
    let error = (0..PAGES)
        .find_map(|index| pages.read_page(index, &mut bytes).err())
        .unwrap();
    assert!(
        matches!(&error, PageStoreError::Storage(StorageError::Damaged { key, .. }) if *key == segment),
        "{error}"
    );
}
