//! Recovery from a damaged or hostile store: which damage it may fall back
//! past (announced), where it stops with a way forward, and that it never
//! deletes a committed object it cannot prove superseded (objects of later
//! epochs are set aside under `quarantine/`, every copy kept).

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{
    CkptError, Invocation, Manifest, ManifestBody, ManifestError, ProcessStatus, ProcessStore,
};
use ferrite_pagestore::{MemStore, StorageBackend, StorageError};
use std::{collections::BTreeSet, ops::Range, sync::Arc};

const PAGE: usize = 4096;
const NAME: &str = "demo";

fn manifest_key(epoch: u64) -> String {
    format!("procs/{NAME}/manifests/{epoch:016x}")
}

fn body(map: &ferrite_pagestore::PageMapRef, count: u64) -> ManifestBody {
    let mut body = ManifestBody {
        process: NAME.into(),
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
        heap_bytes: 65536,
        pages_written: 1,
        pause_us: 0,
        resident_pages: vec![],
        generations: Vec::new(),
        writer: String::new(),
    };
    body.set_page_map(map);
    body
}

/// Commits `checkpoints` checkpoints after those already in the store (page
/// `n` holds byte `n` from checkpoint `n` on) and returns the last epoch.
fn commit_more(process: &ProcessStore, checkpoints: u64) -> u64 {
    let recovered = process.recover().unwrap().manifest;
    let mut pages = process.page_store(recovered.as_ref(), PAGE).unwrap();
    let first = recovered.map_or(1, |m| m.epoch + 1);
    for epoch in first..first + checkpoints {
        pages
            .write_page(epoch as u32, &[epoch as u8; PAGE])
            .unwrap();
        let map = pages.commit_maps().unwrap();
        let manifest = Manifest {
            epoch,
            parent: epoch - 1,
            body: body(&map, epoch),
        };
        process.commit(&manifest).unwrap();
        pages.committed(map);
    }
    first + checkpoints - 1
}

fn store_with(checkpoints: u64) -> (Arc<MemStore>, ProcessStore) {
    let mem = Arc::new(MemStore::new());
    let backend: Arc<dyn StorageBackend> = mem.clone();
    let process = ProcessStore::new(backend, NAME).unwrap();
    commit_more(&process, checkpoints);
    (mem, process)
}

fn keys(mem: &MemStore) -> BTreeSet<String> {
    mem.list("").unwrap().into_iter().collect()
}

/// Gives manifest bytes a valid checksum again, so that a change reaches the
/// decoder (as another build's layout, or a hostile writer, would).
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len();
    let crc = crc32c::crc32c(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// The objects of `epoch` (manifest, segments, maps).
fn objects_of(mem: &MemStore, epoch: u64) -> BTreeSet<String> {
    let tag = format!("/{epoch:016x}");
    keys(mem)
        .into_iter()
        .filter(|k| !k.contains("quarantine/") && k.contains(&tag))
        .collect()
}

#[test]
fn a_manifest_whose_body_does_not_decode_stops_recovery() {
    let (mem, process) = store_with(3);
    let mut bytes = mem.get(&manifest_key(3), None).unwrap();
    bytes[28] = 0xff; // the body's first byte
    reseal(&mut bytes);
    assert!(mem.replace(&manifest_key(3), bytes));
    let before = keys(&mem);
    let error = process.recover().unwrap_err();
    assert!(
        matches!(
            &error,
            CkptError::Stopped {
                epoch: 3,
                reason: ManifestError::Body(_),
                fallback: Some(2),
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains(&manifest_key(3)), "{text}");
    assert!(
        text.contains("ferrite resume demo --from-checkpoint 2"),
        "{text}"
    );
    assert!(text.contains("roll back on purpose"), "{text}");
    assert_eq!(keys(&mem), before, "nothing moved or deleted");
}

/// A backend whose reads of one key fail with EIO.
#[derive(Debug)]
struct FailingReads {
    inner: Arc<MemStore>,
    key: String,
}

impl StorageBackend for FailingReads {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        if key == self.key {
            return Err(StorageError::io(key, std::io::Error::from_raw_os_error(5)));
        }
        self.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

#[test]
fn an_io_error_reading_the_newest_manifest_stops_recovery() {
    let (mem, _) = store_with(3);
    let before = keys(&mem);
    let backend = Arc::new(FailingReads {
        inner: mem.clone(),
        key: manifest_key(3),
    });
    let process = ProcessStore::new(backend, NAME).unwrap();
    let error = process.recover().unwrap_err();
    assert!(
        matches!(
            &error,
            CkptError::Unreadable {
                epoch: 3,
                fallback: Some(2),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("--from-checkpoint 2"));
    assert_eq!(keys(&mem), before, "nothing moved or deleted");
}

#[test]
fn a_checksum_mismatch_falls_back_and_sets_the_newer_checkpoint_aside() {
    let (mem, process) = store_with(3);
    let before = keys(&mem);
    let third = objects_of(&mem, 3);
    assert!(third.len() >= 3, "{third:?}");
    assert!(mem.flip_bit(&manifest_key(3), 40, 2));
    let recovery = process.recover().unwrap();
    assert_eq!(recovery.manifest.unwrap().epoch, 2);
    assert_eq!(recovery.skipped.len(), 1);
    assert_eq!(recovery.skipped[0].0, 3);
    let (prefix, moved) = recovery.set_aside.unwrap();
    assert_eq!(prefix, "procs/demo/quarantine/00000001/");
    assert_eq!(moved, third.len());
    assert!(objects_of(&mem, 3).is_empty());
    for key in &third {
        let name = key.strip_prefix("procs/demo/").unwrap();
        assert!(
            mem.get(&format!("{prefix}{name}"), None).is_ok(),
            "{key} kept"
        );
    }
    assert_eq!(keys(&mem).len(), before.len(), "moved, not deleted");
    // The epoch can be committed again.
    assert_eq!(commit_more(&process, 1), 3);
    assert_eq!(process.recover().unwrap().manifest.unwrap().epoch, 3);
}

#[test]
fn quarantine_keeps_every_copy_of_the_same_epoch() {
    let (mem, process) = store_with(3);
    for round in 1..=2u32 {
        assert!(mem.flip_bit(&manifest_key(3), 40, 2));
        let recovery = process.recover().unwrap();
        let (prefix, _) = recovery.set_aside.unwrap();
        assert_eq!(prefix, format!("procs/demo/quarantine/{round:08x}/"));
        assert_eq!(commit_more(&process, 1), 3);
    }
    let copies = keys(&mem)
        .into_iter()
        .filter(|k| k.contains("quarantine/") && k.ends_with(&format!("manifests/{:016x}", 3)))
        .count();
    assert_eq!(copies, 2, "{:?}", keys(&mem));
}

#[test]
fn from_checkpoint_rolls_back_on_purpose_and_keeps_the_later_checkpoints() {
    let (mem, process) = store_with(3);
    let before = keys(&mem).len();
    let recovery = process.recover_from(Some(1)).unwrap();
    assert_eq!(recovery.manifest.unwrap().epoch, 1);
    assert!(recovery.skipped.is_empty());
    assert!(objects_of(&mem, 2).is_empty() && objects_of(&mem, 3).is_empty());
    assert_eq!(keys(&mem).len(), before, "moved, not deleted");
    assert_eq!(process.epochs().unwrap(), [1]);
    assert!(matches!(
        process.recover_from(Some(7)),
        Err(CkptError::NoSuchCheckpoint { epoch: 7, .. })
    ));
}

#[test]
fn a_manifest_whose_epoch_cannot_be_followed_stops_recovery() {
    let (mem, process) = store_with(2);
    let mut manifest = process.load(2).unwrap();
    manifest.epoch = u64::MAX;
    mem.put_new(&manifest_key(u64::MAX), &manifest.encode())
        .unwrap();
    let before = keys(&mem);
    let error = process.recover().unwrap_err();
    assert!(error.to_string().contains("out of range"), "{error}");
    assert!(error.to_string().contains("--from-checkpoint 2"), "{error}");
    assert_eq!(keys(&mem), before);
}

#[test]
fn an_oversized_manifest_is_never_read_whole_nor_deleted() {
    let (mem, process) = store_with(2);
    let mut bytes = mem.get(&manifest_key(2), None).unwrap();
    bytes.resize((ferrite_ckpt::MANIFEST_BYTES_MAX + 10) as usize, 0);
    assert!(mem.replace(&manifest_key(2), bytes));
    assert!(matches!(
        process.load(2),
        Err(CkptError::Corrupt {
            reason: ManifestError::TooLarge,
            ..
        })
    ));
    let error = process.recover().unwrap_err();
    assert!(
        matches!(error, CkptError::TooLargeToSetAside { ref key } if *key == manifest_key(2)),
        "{error:?}"
    );
    assert!(mem.get(&manifest_key(2), Some(0..4)).is_ok(), "still there");
}
