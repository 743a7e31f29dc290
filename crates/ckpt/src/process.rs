//! The checkpoints of one named process in a store, and the store's modules.

use crate::lease::LeaseError;
use crate::manifest::{Manifest, ManifestError, MANIFEST_BYTES_MAX};
use ferrite_pagestore::{
    get_bounded, refuse_sealed, PageMapRef, PageStore, PageStoreError, StorageBackend,
    StorageError, EPOCH_MAX,
};
use sha2::{Digest, Sha256};
use std::{collections::BTreeSet, sync::Arc};

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The page store failed while making a checkpoint's pages durable.
    #[error(transparent)]
    Pages(PageStoreError),
    /// The runner's lease could not be taken or kept.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A run lock of another process was given.
    #[error("the run lock given is for process {held}, not {process}")]
    WrongLock { held: String, process: String },
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
    #[error("module {0} is missing from the store")]
    ModuleMissing(String),
    /// The newest manifest verifies but cannot be used: recovery stops rather
    /// than roll back past a committed checkpoint.
    #[error(
        "checkpoint {epoch} of process {process} ({key}) cannot be used: {reason}; {}",
        way_forward(process, *fallback)
    )]
    Stopped {
        process: String,
        epoch: u64,
        key: String,
        reason: ManifestError,
        /// The newest older checkpoint that verifies.
        fallback: Option<u64>,
    },
    /// The newest manifest could not be read: recovery stops rather than take
    /// a read failure for damage.
    #[error(
        "checkpoint {epoch} of process {process} ({key}) could not be read: {source}; {}",
        way_forward(process, *fallback)
    )]
    Unreadable {
        process: String,
        epoch: u64,
        key: String,
        source: Box<StorageError>,
        fallback: Option<u64>,
    },
    /// `--from-checkpoint` named a checkpoint that does not exist.
    #[error("process {process} has no checkpoint {epoch} (it has {})", epochs_text(.epochs))]
    NoSuchCheckpoint {
        process: String,
        epoch: u64,
        epochs: Vec<u64>,
    },
    /// An object recovery must set aside is larger than any object of the
    /// format: it is not copied (that would mean reading it whole) nor deleted.
    #[error("{key} is larger than any object of the format ({MANIFEST_BYTES_MAX} bytes); recovery cannot set it aside: move it out of the store by hand")]
    TooLargeToSetAside { key: String },
    /// A checkpoint beyond what the format can hold.
    #[error("checkpoint {epoch} of process {process} cannot be committed: {reason}")]
    Limit {
        process: String,
        epoch: u64,
        reason: String,
    },
}

/// The explicit way on from a checkpoint recovery will not use.
fn way_forward(process: &str, fallback: Option<u64>) -> String {
    match fallback {
        Some(epoch) => format!(
            "recovery stops here rather than fall back past a committed checkpoint. \
             To roll back on purpose to checkpoint {epoch} (the later checkpoints are set \
             aside under quarantine/, not deleted), run `ferrite resume {process} \
             --from-checkpoint {epoch}`"
        ),
        None => "recovery stops here; no older checkpoint verifies".to_string(),
    }
}

fn epochs_text(epochs: &[u64]) -> String {
    if epochs.is_empty() {
        return "none".to_string();
    }
    epochs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest module a store holds (the CLI reads no larger file).
pub const MODULE_BYTES_MAX: u64 = 256 << 20;

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
        let bytes = match get_bounded(&*self.backend, &format!("modules/{hash}"), MODULE_BYTES_MAX)
        {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => {
                return Err(CkptError::ModuleMissing(hash.to_string()))
            }
            Err(error) => return Err(error.into()),
        };
        // Longer than any module the store takes: damaged, never read whole.
        let Some(bytes) = bytes else {
            return Err(CkptError::ModuleCorrupt(hash.to_string()));
        };
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

/// What recovery found: the newest usable checkpoint (or the one asked for),
/// the damaged newer ones it skipped, and where the objects of the later
/// epochs were set aside (so that their epochs can be committed again).
#[derive(Debug)]
pub struct Recovery {
    pub manifest: Option<Manifest>,
    pub skipped: Vec<(u64, ManifestError)>,
    /// The `quarantine/<n>/` prefix the later epochs' objects were moved to,
    /// and how many objects were moved.
    pub set_aside: Option<(String, usize)>,
}

/// Damaged manifests recovery skipped: epoch and why.
type Skipped = Vec<(u64, ManifestError)>;

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
    /// A sealed store (encrypted at rest) must be passed as its
    /// `ferrite_pagestore::SealedStore`: read without its key, every manifest
    /// would look damaged and recovery would set them all aside.
    ///
    /// # Errors
    /// [`CkptError::InvalidName`]; [`StorageError::KeyRequired`] for a sealed
    /// store given without its key.
    pub fn new(backend: Arc<dyn StorageBackend>, name: &str) -> Result<Self, CkptError> {
        check_process_name(name)?;
        refuse_sealed(&*backend)?;
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
        let corrupt = |reason| CkptError::Corrupt {
            process: self.name.clone(),
            epoch,
            reason,
        };
        match get_bounded(
            &*self.backend,
            &self.manifest_key(epoch),
            MANIFEST_BYTES_MAX,
        )? {
            Some(bytes) => Manifest::decode(&bytes, epoch).map_err(corrupt),
            None => Err(corrupt(ManifestError::TooLarge)),
        }
    }

    /// Finds the newest checkpoint that verifies; see [`ProcessStore::recover_from`].
    ///
    /// # Errors
    /// As [`ProcessStore::recover_from`].
    pub fn recover(&self) -> Result<Recovery, CkptError> {
        self.recover_from(None)
    }

    /// Finds the checkpoint to resume: `from` if given (a rollback the user
    /// asked for), else the newest manifest that verifies, falling back past
    /// newer manifests only if their bytes are damaged (a checksum mismatch,
    /// see [`ManifestError::is_damage`]). The objects of every epoch after the
    /// chosen one up to the newest manifest (manifests, segments, maps) are
    /// then moved to a new `quarantine/<n>/`, never deleted: a checkpoint
    /// whose manifest cannot be read may still be whole. Only objects of
    /// epochs after every manifest, which no commit can have named, are left
    /// for [`ProcessStore::page_store`] to remove.
    ///
    /// When no manifest verifies nothing is moved, and `manifest` is `None`.
    ///
    /// # Errors
    /// [`CkptError::Stopped`] if a newer manifest verifies but cannot be used
    /// (another format version or layout); [`CkptError::Unreadable`] if reading
    /// one fails; [`CkptError::NoSuchCheckpoint`] or the checkpoint's own error
    /// for a `from` that cannot be used; storage failures while moving.
    pub fn recover_from(&self, from: Option<u64>) -> Result<Recovery, CkptError> {
        let epochs = self.epochs()?;
        let Some(&newest) = epochs.last() else {
            if let Some(epoch) = from {
                return Err(self.no_such_checkpoint(epoch, epochs));
            }
            return Ok(Recovery {
                manifest: None,
                skipped: Vec::new(),
                set_aside: None,
            });
        };
        let (manifest, skipped) = match from {
            Some(epoch) if !epochs.contains(&epoch) => {
                return Err(self.no_such_checkpoint(epoch, epochs))
            }
            Some(epoch) => (Some(self.load(epoch)?), Vec::new()),
            None => self.newest_usable(&epochs)?,
        };
        let Some(manifest) = manifest else {
            return Ok(Recovery {
                manifest: None,
                skipped,
                set_aside: None,
            });
        };
        let set_aside = if manifest.epoch < newest {
            Some(self.set_aside(manifest.epoch, newest)?)
        } else {
            None
        };
        Ok(Recovery {
            manifest: Some(manifest),
            skipped,
            set_aside,
        })
    }

    #[cold]
    fn no_such_checkpoint(&self, epoch: u64, epochs: Vec<u64>) -> CkptError {
        CkptError::NoSuchCheckpoint {
            process: self.name.clone(),
            epoch,
            epochs,
        }
    }

    /// The newest manifest of `epochs` (ascending) that verifies, and the
    /// damaged newer ones skipped; an error at the first newer one that is not
    /// merely damaged.
    fn newest_usable(&self, epochs: &[u64]) -> Result<(Option<Manifest>, Skipped), CkptError> {
        let mut skipped = Vec::new();
        for (at, &epoch) in epochs.iter().enumerate().rev() {
            let key = self.manifest_key(epoch);
            match self.load(epoch) {
                Ok(manifest) => return Ok((Some(manifest), skipped)),
                Err(CkptError::Corrupt { reason, .. }) if reason.is_damage() => {
                    skipped.push((epoch, reason));
                }
                Err(CkptError::Corrupt { reason, .. }) => {
                    return Err(CkptError::Stopped {
                        process: self.name.clone(),
                        epoch,
                        key,
                        reason,
                        fallback: self.newest_verified(&epochs[..at]),
                    })
                }
                Err(CkptError::Storage(source)) => {
                    return Err(CkptError::Unreadable {
                        process: self.name.clone(),
                        epoch,
                        key,
                        source: Box::new(source),
                        fallback: self.newest_verified(&epochs[..at]),
                    })
                }
                Err(other) => return Err(other),
            }
        }
        Ok((None, skipped))
    }

    /// The newest of `epochs` (ascending) whose manifest verifies, reading only.
    fn newest_verified(&self, epochs: &[u64]) -> Option<u64> {
        epochs
            .iter()
            .rev()
            .copied()
            .find(|&epoch| self.load(epoch).is_ok())
    }

    /// Moves every object of epochs `after + 1 ..= newest` to a new
    /// `quarantine/<n>/` (keeping its name below that prefix), data objects
    /// first and manifests last: until an epoch's manifest is moved, a recovery
    /// that runs again after a crash here still sees the epoch as committed and
    /// moves its objects rather than removing them as uncommitted remains.
    /// Copies of the same object moved twice land under different prefixes;
    /// none is overwritten or removed.
    fn set_aside(&self, after: u64, newest: u64) -> Result<(String, usize), CkptError> {
        let target = self.quarantine_prefix()?;
        let mut moved = 0;
        for dir in ["segments/", "maps/", "manifests/"] {
            for key in self.backend.list(&format!("{}{dir}", self.prefix))? {
                if parse_epoch(&key).is_some_and(|e| e > after && e <= newest) {
                    let name = key.strip_prefix(&self.prefix).unwrap_or(&key);
                    self.move_object(&key, &format!("{target}{name}"))?;
                    moved += 1;
                }
            }
        }
        Ok((target, moved))
    }

    /// A `quarantine/<n>/` prefix no earlier recovery used.
    fn quarantine_prefix(&self) -> Result<String, StorageError> {
        let base = format!("{}quarantine/", self.prefix);
        let used = self
            .backend
            .list(&base)?
            .iter()
            .filter_map(|key| {
                let first = key.strip_prefix(&base)?.split('/').next()?;
                u32::from_str_radix(first, 16).ok()
            })
            .max();
        let next = used.map_or(1, |n| n.saturating_add(1));
        Ok(format!("{base}{next:08x}/"))
    }

    /// Copies `key` to `target` (create-only), then deletes `key`.
    fn move_object(&self, key: &str, target: &str) -> Result<(), CkptError> {
        let bytes = match get_bounded(&*self.backend, key, MANIFEST_BYTES_MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(CkptError::TooLargeToSetAside {
                    key: key.to_string(),
                })
            }
            // Gone since it was listed: nothing to keep.
            Err(StorageError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        match self.backend.put_new(target, &bytes) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.backend.delete(key)?;
        Ok(())
    }

    /// Commits `manifest`: the single create-only write that makes a checkpoint
    /// exist. Its pages and maps must already be durable.
    ///
    /// # Errors
    /// [`CkptError::Fenced`] if the epoch already has a manifest (another runner
    /// won); storage failures (the previous checkpoint stays the latest).
    pub fn commit(&self, manifest: &Manifest) -> Result<(), CkptError> {
        let limit = |reason: String| CkptError::Limit {
            process: self.name.clone(),
            epoch: manifest.epoch,
            reason,
        };
        if manifest.epoch == 0 || manifest.epoch >= EPOCH_MAX {
            return Err(limit(format!("epochs run from 1 to {}", EPOCH_MAX - 1)));
        }
        let bytes = manifest.encode();
        if bytes.len() as u64 > MANIFEST_BYTES_MAX {
            return Err(limit(format!(
                "its manifest would take {} bytes, more than the format allows ({MANIFEST_BYTES_MAX})",
                bytes.len()
            )));
        }
        match self
            .backend
            .put_new(&self.manifest_key(manifest.epoch), &bytes)
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
    /// after removing the objects of epochs after every manifest: the remains
    /// of a checkpoint that crashed before its commit. Objects of an epoch that
    /// has a manifest are never removed here (recovery sets them aside first).
    ///
    /// # Errors
    /// Storage failures while removing leftovers.
    pub fn page_store(
        &self,
        committed: Option<&Manifest>,
        page_size: usize,
    ) -> Result<PageStore, StorageError> {
        let epoch = committed.map_or(0, |m| m.epoch);
        let newest = self.epochs()?.last().copied().unwrap_or(0);
        PageStore::remove_uncommitted(&*self.backend, &self.prefix, epoch.max(newest))?;
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
            let map = manifest.body.page_map();
            live.extend(map.map_keys(&self.prefix));
            for &id in map.segments.keys() {
                live.insert(map.segment_key(&self.prefix, id));
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
    /// object (a large process has thousands): its data first, its lease
    /// objects last ([`ProcessStore::remove_leases`]).
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove_with_progress(
        &self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(), StorageError> {
        self.remove_data(progress)?;
        self.remove_leases()
    }

    /// Removes every object of the process but its lease objects (which say
    /// who holds it: the caller removes them last, once it lets go), calling
    /// `progress(removed, total)` after each.
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove_data(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<(), StorageError> {
        let leases = format!("{}leases/", self.prefix);
        let keys: Vec<String> = self
            .backend
            .list(&self.prefix)?
            .into_iter()
            .filter(|key| !key.starts_with(&leases))
            .collect();
        for (done, key) in keys.iter().enumerate() {
            self.backend.delete(key)?;
            progress(done + 1, keys.len());
        }
        Ok(())
    }

    /// Removes the lease objects of the process.
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove_leases(&self) -> Result<(), StorageError> {
        for key in self.backend.list(&format!("{}leases/", self.prefix))? {
            self.backend.delete(&key)?;
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
