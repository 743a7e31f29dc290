//! An in-memory backend, for tests and for the deterministic simulator.

use crate::backend::{check_key, StorageBackend, StorageError};
use std::{collections::BTreeMap, ops::Range, sync::Mutex};

/// Objects in a map. Every `put_new` that returned is "durable": a simulated
/// crash keeps exactly those objects (see [`crate::FaultyStore`]).
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Flips bit `bit` of byte `offset` of object `key` (simulated media corruption).
    /// Returns false if there is no such byte.
    pub fn flip_bit(&self, key: &str, offset: usize, bit: u8) -> bool {
        match self
            .objects()
            .get_mut(key)
            .and_then(|bytes| bytes.get_mut(offset))
        {
            Some(byte) => {
                *byte ^= 1 << (bit % 8);
                true
            }
            None => false,
        }
    }

    /// Replaces object `key` with `bytes` (simulated damage: objects are
    /// otherwise never modified). Returns false if there is no such object.
    pub fn replace(&self, key: &str, bytes: Vec<u8>) -> bool {
        match self.objects().get_mut(key) {
            Some(object) => {
                *object = bytes;
                true
            }
            None => false,
        }
    }

    /// Total bytes stored.
    pub fn bytes_stored(&self) -> usize {
        self.objects().values().map(Vec::len).sum()
    }
}

impl StorageBackend for MemStore {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        objects.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let objects = self.objects();
        let bytes = objects.get(key).ok_or_else(|| StorageError::NotFound {
            key: key.to_string(),
        })?;
        let Some(range) = range else {
            return Ok(bytes.clone());
        };
        // The part of the range the object has (see the trait).
        let len = bytes.len() as u64;
        let start = range.start.min(len);
        let end = range.end.min(len).max(start);
        Ok(bytes[start as usize..end as usize].to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.objects().remove(key);
        Ok(())
    }
}
