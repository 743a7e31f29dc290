//! The checkpoints of one named process in a store, and the store's modules.

use crate::manifest::{Manifest, ManifestError};
use ferrite_pagestore::{
    record::map_key, PageMapRef, PageStore, SegmentId, StorageBackend, StorageError,
};
use sha2::{Digest, Sha256};
use std::{collections::BTreeSet, sync::Arc};

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("checkpoint {epoch} of process {process} is unusable: {reason}")]
    Corrupt {
        process: String,
        epoch: u64,
        reason: ManifestError,
    },
    /// Another runner committed this epoch first: the process runs elsewhere.
    #[error("process {process} was checkpointed by another runner (epoch {epoch} exists); this runner must stop")]
    Fenced { process: String, epoch: u64 },
    #[error("invalid process name {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    #[error("no process named {0}")]
    NoSuchProcess(String),
    #[error("module {0} in the store is damaged (its hash does not match)")]
    ModuleCorrupt(String),
}

/// Checks a process name: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting
/// with a dot.
///
/// # Errors
/// [`CkptError::InvalidName`].
pub fn check_process_name(name: &str) -> Result<(), CkptError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CkptError::InvalidName(name.to_string()))
    }
}

/// The names of all processes in a store, sorted.
///
/// # Errors
/// If listing fails.
pub fn list_processes(backend: &dyn StorageBackend) -> Result<Vec<String>, StorageError> {
    let names: BTreeSet<String> = backend
        .list("procs/")?
        .iter()
        .filter_map(|key| {
            key.strip_prefix("procs/")?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect();
    Ok(names.into_iter().collect())
}

/// Content-addressed module bytes, stored once per store.
#[derive(Debug, Clone)]
pub struct Modules {
    backend: Arc<dyn StorageBackend>,
}

impl Modules {
    /// The modules of a store.
    pub fn new(backend: Arc<dyn StorageBackend>) -> Self {
        Self { backend }
    }

    /// Stores `bytes` (if not already stored) and returns their SHA-256, hex.
    ///
    /// # Errors
    /// Storage failures.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StorageError> {
        let hash = sha256_hex(bytes);
        match self.backend.put_new(&format!("modules/{hash}"), bytes) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => Ok(hash),
            Err(error) => Err(error),
        }
    }

    /// The module with SHA-256 `hash`, verified.
    ///
    /// # Errors
    /// Storage failures, or [`CkptError::ModuleCorrupt`].
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, CkptError> {
        let bytes = self.backend.get(&format!("modules/{hash}"), None)?;
        if sha256_hex(&bytes) != hash {
            return Err(CkptError::ModuleCorrupt(hash.to_string()));
        }
        Ok(bytes)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// What recovery found: the newest usable checkpoint and the damaged newer ones
/// it skipped (moved to `quarantine/`, so that their epochs can be reused).
#[derive(Debug)]
pub struct Recovery {
    pub manifest: Option<Manifest>,
    pub skipped: Vec<(u64, ManifestError)>,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_removed: usize,
    pub objects_removed: usize,
}

/// The checkpoints of one process.
#[derive(Debug, Clone)]
pub struct ProcessStore {
    backend: Arc<dyn StorageBackend>,
    name: String,
    prefix: String,
}

fn parse_epoch(key: &str) -> Option<u64> {
    u64::from_str_radix(key.rsplit('/').next()?.split('-').next()?, 16).ok()
}

impl ProcessStore {
    /// The checkpoints of process `name`.
    ///
    /// # Errors
    /// [`CkptError::InvalidName`].
    pub fn new(backend: Arc<dyn StorageBackend>, name: &str) -> Result<Self, CkptError> {
        check_process_name(name)?;
        Ok(Self {
            backend,
            name: name.to_string(),
            prefix: format!("procs/{name}/"),
        })
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object-name prefix of the process.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    fn manifest_key(&self, epoch: u64) -> String {
        format!("{}manifests/{epoch:016x}", self.prefix)
    }

    /// The epochs that have a manifest, ascending (damaged ones included).
    ///
    /// # Errors
    /// Storage failures.
    pub fn epochs(&self) -> Result<Vec<u64>, StorageError> {
        let mut epochs: Vec<u64> = self
            .backend
            .list(&format!("{}manifests/", self.prefix))?
            .iter()
            .filter_map(|key| parse_epoch(key))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Reads and verifies the manifest of `epoch`.
    ///
    /// # Errors
    /// Storage failures or [`CkptError::Corrupt`].
    pub fn load(&self, epoch: u64) -> Result<Manifest, CkptError> {
        let bytes = self.backend.get(&self.manifest_key(epoch), None)?;
        Manifest::decode(&bytes, epoch).map_err(|reason| CkptError::Corrupt {
            process: self.name.clone(),
            epoch,
            reason,
        })
    }

    /// Finds the newest checkpoint that verifies. Damaged newer manifests are
    /// copied to `quarantine/` and removed, so the next commit can use their epoch.
    ///
    /// # Errors
    /// Storage failures. A manifest of an unsupported format version is an error,
    /// not something to skip: an older checkpoint must not silently win over it.
    pub fn recover(&self) -> Result<Recovery, CkptError> {
        let mut skipped = Vec::new();
        for epoch in self.epochs()?.into_iter().rev() {
            match self.load(epoch) {
                Ok(manifest) => {
                    for (bad, _) in &skipped {
                        self.quarantine(*bad)?;
                    }
                    return Ok(Recovery {
                        manifest: Some(manifest),
                        skipped,
                    });
                }
                Err(
                    error @ CkptError::Corrupt {
                        reason: ManifestError::Version { .. },
                        ..
                    },
                ) => {
                    return Err(error);
                }
                Err(CkptError::Corrupt { reason, .. }) => skipped.push((epoch, reason)),
                Err(other) => return Err(other),
            }
        }
        Ok(Recovery {
            manifest: None,
            skipped,
        })
    }

    fn quarantine(&self, epoch: u64) -> Result<(), StorageError> {
        let key = self.manifest_key(epoch);
        let bytes = self.backend.get(&key, None)?;
        let target = format!("{}quarantine/{epoch:016x}", self.prefix);
        match self.backend.put_new(&target, &bytes) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
        self.backend.delete(&key)
    }

    /// Commits `manifest`: the single create-only write that makes a checkpoint
    /// exist. Its pages and maps must already be durable.
    ///
    /// # Errors
    /// [`CkptError::Fenced`] if the epoch already has a manifest (another runner
    /// won); storage failures (the previous checkpoint stays the latest).
    pub fn commit(&self, manifest: &Manifest) -> Result<(), CkptError> {
        match self
            .backend
            .put_new(&self.manifest_key(manifest.epoch), &manifest.encode())
        {
            Ok(()) => Ok(()),
            Err(StorageError::AlreadyExists { .. }) => Err(CkptError::Fenced {
                process: self.name.clone(),
                epoch: manifest.epoch,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// A page store positioned after the checkpoint `committed` (or a new one),
    /// after removing the objects of any later, uncommitted epoch.
    ///
    /// # Errors
    /// Storage failures while removing leftovers.
    pub fn page_store(
        &self,
        committed: Option<&Manifest>,
        page_size: usize,
    ) -> Result<PageStore, StorageError> {
        let epoch = committed.map_or(0, |m| m.epoch);
        PageStore::remove_uncommitted(&*self.backend, &self.prefix, epoch)?;
        let map = committed.map_or_else(PageMapRef::default, |m| m.body.page_map());
        Ok(PageStore::open(
            self.backend.clone(),
            self.prefix.clone(),
            page_size,
            epoch,
            map,
        ))
    }

    /// Keeps the newest `keep` (at least 1) valid checkpoints and removes older
    /// manifests and every page or map object no kept checkpoint refers to.
    /// Objects of epochs after the newest checkpoint (a commit in progress) are
    /// never touched.
    ///
    /// # Errors
    /// Storage failures (a partial collection is harmless: it is redone later).
    pub fn gc(&self, keep: usize) -> Result<GcReport, CkptError> {
        let mut kept = Vec::new();
        let epochs = self.epochs()?;
        for &epoch in epochs.iter().rev() {
            if kept.len() == keep.max(1) {
                break;
            }
            if let Ok(manifest) = self.load(epoch) {
                kept.push(manifest);
            }
        }
        let (Some(newest), Some(oldest)) = (kept.first(), kept.last()) else {
            return Ok(GcReport::default());
        };
        let (newest, oldest) = (newest.epoch, oldest.epoch);
        let mut live = BTreeSet::new();
        for manifest in &kept {
            for &(chunk, epoch) in &manifest.body.map_chunks {
                live.insert(map_key(&self.prefix, epoch, chunk));
            }
            for &(epoch, seq, _) in &manifest.body.segments {
                live.insert(SegmentId { epoch, seq }.key(&self.prefix));
            }
        }
        let mut report = GcReport::default();
        for epoch in epochs.into_iter().filter(|&e| e < oldest) {
            self.backend.delete(&self.manifest_key(epoch))?;
            report.manifests_removed += 1;
        }
        for dir in ["segments/", "maps/"] {
            for key in self.backend.list(&format!("{}{dir}", self.prefix))? {
                if parse_epoch(&key).is_some_and(|e| e <= newest) && !live.contains(&key) {
                    self.backend.delete(&key)?;
                    report.objects_removed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Removes every object of the process.
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove(&self) -> Result<(), StorageError> {
        self.remove_with_progress(&mut |_, _| {})
    }

    /// [`ProcessStore::remove`], calling `progress(removed, total)` after each
    /// object (a large process has thousands).
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove_with_progress(
        &self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(), StorageError> {
        let keys = self.backend.list(&self.prefix)?;
        for (done, key) in keys.iter().enumerate() {
            self.backend.delete(key)?;
            progress(done + 1, keys.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferrite_pagestore::MemStore;

    #[test]
    fn remove_reports_progress_and_leaves_other_processes() {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        for name in ["gone", "kept"] {
            let process = ProcessStore::new(backend.clone(), name).unwrap();
            let mut pages = process.page_store(None, 4096).unwrap();
            for page in 0..600 {
                pages.write_page(page, &[1; 4096]).unwrap();
            }
            pages.commit_maps().unwrap();
        }
        let gone = ProcessStore::new(backend.clone(), "gone").unwrap();
        let objects = backend.list("procs/gone/").unwrap().len();
        assert!(objects >= 3, "{objects}");
        let mut reports = Vec::new();
        gone.remove_with_progress(&mut |done, total| reports.push((done, total)))
            .unwrap();
        assert_eq!(reports.len(), objects);
        assert_eq!(reports.last(), Some(&(objects, objects)));
        assert!(backend.list("procs/gone/").unwrap().is_empty());
        assert!(!backend.list("procs/kept/").unwrap().is_empty());
    }
}
