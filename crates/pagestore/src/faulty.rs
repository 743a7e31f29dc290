//! Fault injection over any backend: failed writes, a full medium, crashes, and
//! the loss of deferred writes that were never synced.

use crate::backend::{StorageBackend, StorageError};
use std::{
    collections::BTreeSet,
    ops::Range,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
};

/// What happens to the N-th write operation (counting from 1). Write operations
/// are `put_new`, `put_new_deferred` and `sync`, counted together.
///
/// On a crash, objects written by `put_new_deferred` and not yet synced are
/// lost: with [`Fault::Crash`] they vanish, with [`Fault::CrashAfter`] their
/// names survive with half of their bytes (a torn file), the two ways a power
/// loss may treat data the page cache never wrote out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with an I/O error and stores (or syncs) nothing.
    IoError,
    /// The operation fails with "no space" and stores (or syncs) nothing.
    NoSpace,
    /// The machine loses power during the operation: nothing of it is stored
    /// or synced, unsynced objects vanish, and every later operation fails until
    /// the test "reboots" (uses the inner backend again).
    Crash,
    /// The machine loses power right after the operation completed, before the
    /// caller learns of it: a `put_new` or `sync` is durable; an unsynced object
    /// (the one just written by a `put_new_deferred` included) is left torn.
    CrashAfter,
}

/// Wraps a backend and injects one [`Fault`] at the N-th write operation.
#[derive(Debug)]
pub struct FaultyStore<B> {
    inner: B,
    fault_at: u64,
    fault: Fault,
    puts: AtomicU64,
    crashed: AtomicBool,
    /// Objects written by `put_new_deferred` and not synced since.
    unsynced: Mutex<BTreeSet<String>>,
}

impl<B: StorageBackend> FaultyStore<B> {
    /// Injects `fault` at write operation number `at` (1-based); `at == 0`
    /// never fails.
    pub fn new(inner: B, at: u64, fault: Fault) -> Self {
        Self {
            inner,
            fault_at: at,
            fault,
            puts: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            unsynced: Mutex::new(BTreeSet::new()),
        }
    }

    /// True once a simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Number of write operations (`put_new`, `put_new_deferred`, `sync`) seen.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    /// The wrapped backend (what survives a crash).
    pub fn into_inner(self) -> B {
        self.inner
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.unsynced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_alive(&self, key: &str) -> Result<(), StorageError> {
        if self.crashed() {
            return Err(StorageError::Io {
                key: key.to_string(),
                source: std::io::Error::other("simulated power loss"),
            });
        }
        Ok(())
    }

    /// Counts a write operation; true if it is the one to fail.
    fn is_fault(&self) -> bool {
        self.puts.fetch_add(1, Ordering::SeqCst) + 1 == self.fault_at
    }

    /// Power loss: unsynced objects vanish (`torn == false`) or keep half of
    /// their bytes (`torn == true`); then every operation fails.
    fn crash(&self, key: &str, torn: bool) -> Result<(), StorageError> {
        let lost = std::mem::take(&mut *self.unsynced());
        for object in lost {
            let bytes = self.inner.get(&object, None).ok();
            self.inner.delete(&object)?;
            if let (true, Some(bytes)) = (torn, bytes) {
                self.inner.put_new(&object, &bytes[..bytes.len() / 2])?;
            }
        }
        self.crashed.store(true, Ordering::SeqCst);
        self.check_alive(key)
    }

    #[cold]
    fn failure(&self, key: &str) -> StorageError {
        match self.fault {
            Fault::NoSpace => StorageError::NoSpace {
                key: key.to_string(),
            },
            _ => StorageError::Io {
                key: key.to_string(),
                source: std::io::Error::other("injected I/O error"),
            },
        }
    }
}

impl<B: StorageBackend> StorageBackend for FaultyStore<B> {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_alive(key)?;
        if !self.is_fault() {
            return self.inner.put_new(key, bytes);
        }
        match self.fault {
            Fault::IoError | Fault::NoSpace => Err(self.failure(key)),
            Fault::Crash => self.crash(key, false),
            Fault::CrashAfter => {
                self.inner.put_new(key, bytes)?;
                self.crash(key, false)
            }
        }
    }

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_alive(key)?;
        if !self.is_fault() {
            self.inner.put_new_deferred(key, bytes)?;
            self.unsynced().insert(key.to_string());
            return Ok(());
        }
        match self.fault {
            Fault::IoError | Fault::NoSpace => Err(self.failure(key)),
            Fault::Crash => self.crash(key, false),
            Fault::CrashAfter => {
                self.inner.put_new_deferred(key, bytes)?;
                self.unsynced().insert(key.to_string());
                self.crash(key, true)
            }
        }
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        let first = keys.first().map_or("", String::as_str);
        self.check_alive(first)?;
        let fault = self.is_fault();
        if fault {
            match self.fault {
                Fault::IoError | Fault::NoSpace => return Err(self.failure(first)),
                Fault::Crash => return self.crash(first, false),
                Fault::CrashAfter => {}
            }
        }
        self.inner.sync(keys)?;
        let mut unsynced = self.unsynced();
        for key in keys {
            unsynced.remove(key);
        }
        drop(unsynced);
        if fault {
            // `Fault::CrashAfter`: the sync completed, then the power went.
            return self.crash(first, true);
        }
        Ok(())
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.check_alive(key)?;
        self.inner.get(key, range)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.check_alive(prefix)?;
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check_alive(key)?;
        self.unsynced().remove(key);
        self.inner.delete(key)
    }

    fn subscribe(&self, prefix: &str, notify: crate::Notify) -> Result<bool, StorageError> {
        self.inner.subscribe(prefix, notify)
    }

    fn prefetch(&self, ranges: &[(String, std::ops::Range<u64>)]) {
        self.inner.prefetch(ranges);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::MemStore;
    use std::sync::Arc;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_string()).collect()
    }

    #[test]
    fn a_crash_drops_unsynced_objects() {
        let medium = Arc::new(MemStore::new());
        let faulty = FaultyStore::new(medium.clone(), 4, Fault::Crash);
        faulty.put_new_deferred("a", b"synced").unwrap();
        faulty.sync(&keys(&["a"])).unwrap();
        faulty.put_new_deferred("b", b"unsynced").unwrap();
        assert!(faulty.put_new("m", b"manifest").is_err());
        assert!(faulty.crashed());
        assert_eq!(medium.list("").unwrap(), vec!["a"]);
        assert!(
            faulty.get("a", None).is_err(),
            "nothing works after a crash"
        );
    }

    #[test]
    fn a_crash_after_a_deferred_put_tears_unsynced_objects() {
        let medium = Arc::new(MemStore::new());
        let faulty = FaultyStore::new(medium.clone(), 2, Fault::CrashAfter);
        faulty.put_new_deferred("a", b"12345678").unwrap();
        assert!(faulty.put_new_deferred("b", b"abcd").is_err());
        assert_eq!(medium.get("a", None).unwrap(), b"1234");
        assert_eq!(medium.get("b", None).unwrap(), b"ab");
    }

    #[test]
    fn a_crash_after_a_sync_keeps_what_it_synced() {
        let medium = Arc::new(MemStore::new());
        let faulty = FaultyStore::new(medium.clone(), 3, Fault::CrashAfter);
        faulty.put_new_deferred("a", b"1234").unwrap();
        faulty.put_new_deferred("b", b"5678").unwrap();
        assert!(
            faulty.sync(&keys(&["a"])).is_err(),
            "the caller never learns"
        );
        assert_eq!(medium.get("a", None).unwrap(), b"1234");
        assert_eq!(medium.get("b", None).unwrap(), b"56");
    }

    #[test]
    fn a_failed_sync_makes_nothing_durable() {
        let medium = Arc::new(MemStore::new());
        let faulty = FaultyStore::new(medium.clone(), 2, Fault::IoError);
        faulty.put_new_deferred("a", b"1234").unwrap();
        assert!(faulty.sync(&keys(&["a"])).is_err());
        assert!(!faulty.crashed());
        assert_eq!(faulty.unsynced().len(), 1, "still unsynced");
    }
}
