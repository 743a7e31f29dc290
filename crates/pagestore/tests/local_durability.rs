//! What `LocalStore` makes durable, checked on a simulated file system that
//! loses every operation not synced (issue 8, part 2): the directories it
//! creates, the objects a `sync` names (through the descriptors that wrote
//! them), and the fail-stop after a failed sync.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{
    LocalStore, StorageBackend, StorageError, HANDLES_OPEN_MAX, UNSYNCED_HANDLES_MAX,
};
use ferrite_sim::SimFs;
use std::path::Path;

const ROOT: &str = "/var/ferrite";
const SEEDS: u64 = 64;

/// A store on a file system where `/var` exists (durably) and the store does not.
fn new_store() -> (SimFs, LocalStore<SimFs>) {
    let fs = SimFs::new();
    ferrite_pagestore::fs::FileSystem::mkdir(&fs, Path::new("/var")).unwrap();
    ferrite_pagestore::fs::FileSystem::sync_dir(&fs, Path::new("/")).unwrap();
    let store = LocalStore::open_in(fs.clone(), ROOT).unwrap();
    (fs, store)
}

/// Every state a power loss right now can leave, as reopened stores.
fn after_crash(fs: &SimFs) -> impl Iterator<Item = LocalStore<SimFs>> + '_ {
    fs.crash();
    (0..SEEDS).map(|seed| LocalStore::open_in(fs.reboot(seed), ROOT).unwrap())
}

#[test]
fn issue8_a_first_commit_survives_with_every_directory_it_created() {
    let (fs, store) = new_store();
    store
        .put_new_deferred("procs/p/segments/1", b"segment")
        .unwrap();
    store.sync(&["procs/p/segments/1".to_string()]).unwrap();
    store.put_new("procs/p/manifests/1", b"manifest").unwrap();
    for after in after_crash(&fs) {
        assert_eq!(after.get("procs/p/manifests/1", None).unwrap(), b"manifest");
        assert_eq!(after.get("procs/p/segments/1", None).unwrap(), b"segment");
    }
}

#[test]
fn an_unsynced_deferred_object_may_be_lost_or_torn_but_never_a_synced_one() {
    let (fs, store) = new_store();
    store.put_new_deferred("s/synced", &[1; 4096]).unwrap();
    store.sync(&["s/synced".to_string()]).unwrap();
    store.put_new_deferred("s/unsynced", &[2; 4096]).unwrap();
    let mut whole = 0;
    for after in after_crash(&fs) {
        assert_eq!(after.get("s/synced", None).unwrap(), [1; 4096]);
        if after
            .get("s/unsynced", None)
            .is_ok_and(|bytes| bytes == [2; 4096])
        {
            whole += 1;
        }
    }
    assert!(whole < SEEDS, "the simulator does lose unsynced writes");
}

#[test]
fn issue8_a_writeback_error_is_reported_after_the_read_cache_moved_on() {
    let (fs, store) = new_store();
    store
        .put_new_deferred("s/victim", b"lost in write-back")
        .unwrap();
    // Enough reads of other objects to evict the victim's read handle.
    let others: Vec<String> = (0..2 * HANDLES_OPEN_MAX)
        .map(|i| format!("s/{i}"))
        .collect();
    for key in &others {
        store.put_new_deferred(key, b"other").unwrap();
        store.get(key, None).unwrap();
    }
    fs.writeback_error(&Path::new(ROOT).join("s/victim"))
        .unwrap();
    let mut keys = others.clone();
    keys.push("s/victim".to_string());
    assert!(
        store.sync(&keys).is_err(),
        "the sync goes through the descriptor that wrote the object"
    );
    assert!(matches!(
        store.put_new("s/next", b"x"),
        Err(StorageError::Poisoned(_))
    ));
}

#[test]
fn written_handles_are_bounded_by_syncing_the_oldest_early() {
    let (fs, store) = new_store();
    store.put_new_deferred("s/first", b"x").unwrap();
    let before = fs.syncs();
    let extra = 10;
    let keys: Vec<String> = (0..UNSYNCED_HANDLES_MAX + extra)
        .map(|i| format!("s/{i:04}"))
        .collect();
    for key in &keys {
        store.put_new_deferred(key, key.as_bytes()).unwrap();
    }
    assert_eq!(
        fs.syncs() - before,
        extra as u64 + 1,
        "one early sync per object past the bound"
    );
    // An early-synced object's later write-back cannot lose what is durable.
    store.sync(&keys).unwrap();
    store.sync(&["s/first".to_string()]).unwrap();
    for after in after_crash(&fs) {
        for key in &keys {
            assert_eq!(after.get(key, None).unwrap(), key.as_bytes());
        }
    }
}

#[test]
fn a_failed_sync_poisons_the_store() {
    let (fs, store) = new_store();
    store.put_new_deferred("s/a", b"a").unwrap();
    fs.fail_sync_at(fs.syncs() + 1);
    assert!(store.sync(&["s/a".to_string()]).is_err());
    for attempt in [
        store.sync(&["s/a".to_string()]),
        store.put_new("s/b", b"b"),
        store.put_new_deferred("s/c", b"c"),
    ] {
        assert!(
            matches!(attempt, Err(StorageError::Poisoned(_))),
            "{attempt:?}"
        );
    }
    // A failed directory sync (the names) poisons it as well.
    let (fs, other) = new_store();
    other.put_new_deferred("d/a", b"a").unwrap();
    fs.fail_sync_at(fs.syncs() + 2);
    assert!(other.sync(&["d/a".to_string()]).is_err());
    assert!(matches!(
        other.put_new("d/b", b"b"),
        Err(StorageError::Poisoned(_))
    ));
}
