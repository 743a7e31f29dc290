//! Fault injection over any backend: failed writes, a full medium, crashes.

use crate::backend::{StorageBackend, StorageError};
use std::{
    ops::Range,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

/// What happens to the N-th `put_new` (counting from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write fails with an I/O error and stores nothing.
    IoError,
    /// The write fails with "no space" and stores nothing.
    NoSpace,
    /// The machine loses power during the write: nothing of it is stored, and
    /// every later operation fails until the test "reboots" (uses the inner
    /// backend again).
    Crash,
    /// The machine loses power right after the write completed (it is durable),
    /// before the caller learns of it.
    CrashAfter,
}

/// Wraps a backend and injects one [`Fault`] at the N-th `put_new`.
#[derive(Debug)]
pub struct FaultyStore<B> {
    inner: B,
    fault_at: u64,
    fault: Fault,
    puts: AtomicU64,
    crashed: AtomicBool,
}

impl<B: StorageBackend> FaultyStore<B> {
    /// Injects `fault` at `put_new` number `at` (1-based); `at == 0` never fails.
    pub fn new(inner: B, at: u64, fault: Fault) -> Self {
        Self {
            inner,
            fault_at: at,
            fault,
            puts: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    /// True once a simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Number of `put_new` calls seen.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    /// The wrapped backend (what survives a crash).
    pub fn into_inner(self) -> B {
        self.inner
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
}

impl<B: StorageBackend> StorageBackend for FaultyStore<B> {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_alive(key)?;
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.fault_at {
            return self.inner.put_new(key, bytes);
        }
        match self.fault {
            Fault::IoError => Err(StorageError::Io {
                key: key.to_string(),
                source: std::io::Error::other("injected I/O error"),
            }),
            Fault::NoSpace => Err(StorageError::NoSpace {
                key: key.to_string(),
            }),
            Fault::Crash => {
                self.crashed.store(true, Ordering::SeqCst);
                self.check_alive(key)
            }
            Fault::CrashAfter => {
                self.inner.put_new(key, bytes)?;
                self.crashed.store(true, Ordering::SeqCst);
                self.check_alive(key)
            }
        }
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
        self.inner.delete(key)
    }
}
