//! The local crash-safe backend: one file per object under a directory.

use crate::backend::{check_key, StorageBackend, StorageError};
use std::{
    fs::{self, File},
    io::{Read, Seek, SeekFrom, Write},
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// Objects as files below a root directory.
///
/// `put_new` writes a temporary file, syncs it, links it to its final name (which
/// fails if the name exists: create-only), syncs the directory, and removes the
/// temporary name. A crash at any point leaves either no object or the whole,
/// synced object; leftover temporary files are removed by [`LocalStore::open`].
///
/// After a failed write or sync the store is poisoned: later writes fail, as
/// retrying an fsync cannot make earlier data safe.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    poisoned: Mutex<Option<String>>,
    temp_seq: AtomicU64,
}

const TEMP_PREFIX: &str = ".tmp-";

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, removing temporary
    /// files left by a crash.
    ///
    /// # Errors
    /// If the directory cannot be created or read.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let key = root.display().to_string();
        fs::create_dir_all(&root).map_err(|e| StorageError::io(&key, e))?;
        let store = Self {
            root,
            poisoned: Mutex::new(None),
            temp_seq: AtomicU64::new(0),
        };
        remove_temporaries(&store.root)?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &*self
            .poisoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    #[cold]
    fn poison(&self, error: StorageError) -> StorageError {
        let mut poisoned = self
            .poisoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if poisoned.is_none() {
            *poisoned = Some(error.to_string());
        }
        error
    }

    fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = File::create_new(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

/// True for a temporary file whose writer is gone: its name is
/// `.tmp-<pid>-<seq>` and no process `<pid>` exists. Another runner's write in
/// progress is never touched. Where liveness cannot be told (no `/proc`), nothing
/// is considered abandoned.
fn is_abandoned_temporary(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split('-').next())
    else {
        return false;
    };
    let proc_root = Path::new("/proc");
    pid.parse::<u32>().is_ok_and(|pid| {
        pid != std::process::id() && proc_root.is_dir() && !proc_root.join(pid.to_string()).exists()
    })
}

/// Removes temporary files left by a crash, in `dir` and below.
fn remove_temporaries(dir: &Path) -> Result<(), StorageError> {
    let key = dir.display().to_string();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(&key, e))? {
        let entry = entry.map_err(|e| StorageError::io(&key, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StorageError::io(&key, e))?;
        if file_type.is_dir() {
            remove_temporaries(&path)?;
        } else if is_abandoned_temporary(&entry.file_name().to_string_lossy()) {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

/// Appends the keys of the files in `dir` and below (skipping temporaries) to
/// `keys`; `dir_key` is the key of `dir` itself. A missing directory has none.
fn collect_keys(dir: &Path, dir_key: &str, keys: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = if dir_key.is_empty() {
            name
        } else {
            format!("{dir_key}/{name}")
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect_keys(&entry.path(), &key, keys)?;
        } else if file_type.is_file() {
            keys.push(key);
        }
    }
    Ok(())
}

/// Syncs a directory so that names created in it survive a power loss.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StorageBackend for LocalStore {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let path = self.path(key)?;
        let dir = path
            .parent()
            .expect("a checked key has a parent under the root");
        if path.exists() {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        fs::create_dir_all(dir).map_err(|e| self.poison(StorageError::io(key, e)))?;
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{}-{seq}", std::process::id()));
        if let Err(e) = Self::write_synced(&temp, bytes) {
            let _ = fs::remove_file(&temp);
            return Err(self.poison(StorageError::io(key, e)));
        }
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.poison(StorageError::io(key, e))),
        }
        sync_dir(dir).map_err(|e| self.poison(StorageError::io(key, e)))
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let path = self.path(key)?;
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound {
                key: key.to_string(),
            },
            _ => StorageError::io(key, e),
        })?;
        let Some(range) = range else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| StorageError::io(key, e))?;
            return Ok(bytes);
        };
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| StorageError::InvalidKey(key.to_string()))?;
        let mut bytes = vec![0; len];
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| StorageError::io(key, e))?;
        file.read_exact(&mut bytes)
            .map_err(|e| StorageError::io(key, e))?;
        Ok(bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Walk the directory that holds the prefix, then filter by full key.
        let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let dir = if dir_key.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_key)?
        };
        let mut keys = Vec::new();
        collect_keys(&dir, dir_key, &mut keys).map_err(|e| StorageError::io(prefix, e))?;
        keys.retain(|key| key.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrite-local-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn put_is_create_only_and_readable() {
        let dir = temp_dir("put");
        let store = LocalStore::open(&dir).unwrap();
        store.put_new("a/b/c", b"hello").unwrap();
        assert!(matches!(
            store.put_new("a/b/c", b"x"),
            Err(StorageError::AlreadyExists { .. })
        ));
        assert_eq!(store.get("a/b/c", None).unwrap(), b"hello");
        assert_eq!(store.get("a/b/c", Some(1..4)).unwrap(), b"ell");
        assert!(store.get("a/b/d", None).unwrap_err().is_not_found());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn list_filters_by_prefix_and_hides_temporaries() {
        let dir = temp_dir("list");
        let store = LocalStore::open(&dir).unwrap();
        for key in ["p/m/002", "p/m/001", "p/s/001", "p/mx"] {
            store.put_new(key, b"").unwrap();
        }
        // PID 4194305 is above Linux's PID limit: no such process can exist.
        fs::write(dir.join("p/m/.tmp-4194305-1"), b"partial").unwrap();
        let live = format!(".tmp-{}-9", std::process::id());
        fs::write(dir.join("p/m").join(&live), b"in progress").unwrap();
        assert_eq!(store.list("p/m/").unwrap(), vec!["p/m/001", "p/m/002"]);
        assert_eq!(
            store.list("p/m").unwrap(),
            vec!["p/m/001", "p/m/002", "p/mx"]
        );
        assert_eq!(store.list("p/").unwrap().len(), 4, "listing is recursive");
        assert!(store.list("q/").unwrap().is_empty());
        drop(store);
        LocalStore::open(&dir).unwrap();
        assert!(
            !dir.join("p/m/.tmp-4194305-1").exists(),
            "open removes crash leftovers"
        );
        assert!(
            dir.join("p/m").join(&live).exists(),
            "a live writer's file is kept"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn delete_is_idempotent() {
        let dir = temp_dir("delete");
        let store = LocalStore::open(&dir).unwrap();
        store.put_new("k", b"v").unwrap();
        store.delete("k").unwrap();
        store.delete("k").unwrap();
        assert!(store.list("").unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }
}
