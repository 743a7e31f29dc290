//! Every backend answers a range read past the end of an object with the bytes
//! the object has (the contract `get_bounded` and the page store's truncation
//! checks rely on), and allocates for those, not for the range asked.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{get_bounded, LocalStore, MemStore, StorageBackend};

fn check(backend: &dyn StorageBackend) {
    backend.put_new("a/b", &[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(backend.get("a/b", Some(1..3)).unwrap(), [2, 3]);
    assert_eq!(backend.get("a/b", Some(3..1000)).unwrap(), [4, 5]);
    assert_eq!(backend.get("a/b", Some(5..9)).unwrap(), [] as [u8; 0]);
    let reversed = std::ops::Range { start: 70, end: 9 };
    assert_eq!(backend.get("a/b", Some(reversed)).unwrap(), [] as [u8; 0]);
    assert_eq!(backend.get("a/b", Some(0..u64::MAX)).unwrap().len(), 5);
    assert_eq!(get_bounded(backend, "a/b", 5).unwrap().unwrap().len(), 5);
    assert_eq!(get_bounded(backend, "a/b", 4).unwrap(), None);
    assert!(get_bounded(backend, "a/c", 4).unwrap_err().is_not_found());
}

#[test]
fn a_range_read_past_the_end_returns_what_the_object_has() {
    check(&MemStore::new());
    let dir = std::env::temp_dir().join(format!("ferrite-range-reads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    check(&LocalStore::open(&dir).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
