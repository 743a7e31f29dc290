//! The local crash-safe backend: one file per object under a directory.

use crate::backend::{check_key, StorageBackend, StorageError};
use std::{
    collections::BTreeSet,
    fs::{self, File, OpenOptions},
    io::Write,
    ops::Range,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

/// Most open file handles [`LocalStore`] keeps for reads. A page fault reads one
/// record of one segment; keeping the handle turns the next fault in that
/// segment into a single `pread`. Objects are immutable, so a cached handle is
/// never stale; deleting an object drops its handle.
pub const HANDLES_OPEN_MAX: usize = 16;

/// A small LRU of open, read-capable handles of objects, by key.
#[derive(Debug, Default)]
struct Handles {
    /// `(key, handle, last use)`; at most [`HANDLES_OPEN_MAX`] entries.
    entries: Vec<(String, Arc<File>, u64)>,
    tick: u64,
}

impl Handles {
    fn get(&mut self, key: &str) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        entry.2 = tick;
        Some(entry.1.clone())
    }

    fn insert(&mut self, key: &str, file: Arc<File>) {
        self.remove(key);
        if self.entries.len() >= HANDLES_OPEN_MAX {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(at, _)| at)
                .expect("a full cache has entries");
            self.entries.swap_remove(oldest);
        }
        self.tick += 1;
        self.entries.push((key.to_string(), file, self.tick));
        debug_assert!(self.entries.len() <= HANDLES_OPEN_MAX);
    }

    fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _, _)| k != key);
    }
}

/// Objects as files below a root directory.
///
/// `put_new` writes a temporary file, syncs it, links it to its final name (which
/// fails if the name exists: create-only), syncs the directory, and removes the
/// temporary name. A crash at any point leaves either no object or the whole,
/// synced object; leftover temporary files are removed by [`LocalStore::open`].
///
/// `put_new_deferred` creates the file under its final name (create-only) and
/// writes it, without any sync; `sync` later syncs the files and then their
/// directories. A crash before that may leave such a file missing, empty or
/// partly written, which is allowed: recovery removes the objects of an epoch
/// that never committed.
///
/// Reads use `pread` on handles kept open in a small LRU ([`HANDLES_OPEN_MAX`]).
///
/// After a failed write or sync the store is poisoned: later writes fail, as
/// retrying an fsync cannot make earlier data safe.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    poisoned: Mutex<Option<String>>,
    temp_seq: AtomicU64,
    handles: Mutex<Handles>,
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
            handles: Mutex::new(Handles::default()),
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

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An open handle of object `key`: the cached one, or a newly opened one
    /// that is then cached.
    fn handle(&self, key: &str) -> Result<Arc<File>, StorageError> {
        if let Some(file) = self.handles().get(key) {
            return Ok(file);
        }
        let path = self.path(key)?;
        let file = Arc::new(File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound {
                key: key.to_string(),
            },
            _ => StorageError::io(key, e),
        })?);
        self.handles().insert(key, file.clone());
        Ok(file)
    }

    /// The directory of the checked `path`, created if missing.
    fn make_parent<'p>(&self, key: &str, path: &'p Path) -> Result<&'p Path, StorageError> {
        let dir = path
            .parent()
            .expect("a checked key has a parent under the root");
        fs::create_dir_all(dir).map_err(|e| self.poison(StorageError::io(key, e)))?;
        Ok(dir)
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

/// The keys starting with `prefix` of a store directory laid out as
/// [`LocalStore`] writes it (one file per key, `/` as directories), sorted;
/// temporaries of writes in progress are not keys. For read-only views of a
/// store that must not open it as a writer (`ferrite ps`).
///
/// # Errors
/// An invalid prefix, or a directory that cannot be read.
pub fn list_keys(root: &Path, prefix: &str) -> Result<Vec<String>, StorageError> {
    // Walk the directory that holds the prefix, then filter by full key.
    let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let dir = if dir_key.is_empty() {
        root.to_path_buf()
    } else {
        check_key(dir_key)?;
        root.join(dir_key)
    };
    let mut keys = Vec::new();
    collect_keys(&dir, dir_key, &mut keys).map_err(|e| StorageError::io(prefix, e))?;
    keys.retain(|key| key.starts_with(prefix));
    keys.sort();
    Ok(keys)
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
        if path.exists() {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let dir = self.make_parent(key, &path)?;
        // A handle of an object of the same name that someone else deleted.
        self.handles().remove(key);
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

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let path = self.path(key)?;
        self.make_parent(key, &path)?;
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.poison(StorageError::io(key, e))),
        };
        if let Err(e) = file.write_all(bytes) {
            // Never leave a short object under its final name.
            let _ = fs::remove_file(&path);
            return Err(self.poison(StorageError::io(key, e)));
        }
        // The page store reads recently written records back soon: keep the handle.
        self.handles().insert(key, Arc::new(file));
        Ok(())
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let mut dirs = BTreeSet::new();
        for key in keys {
            let file = self.handle(key).map_err(|e| self.poison(e))?;
            file.sync_all()
                .map_err(|e| self.poison(StorageError::io(key, e)))?;
            let path = self.path(key)?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        // The names, after the contents: a name that survives a crash has its bytes.
        for dir in dirs {
            sync_dir(&dir)
                .map_err(|e| self.poison(StorageError::io(&dir.display().to_string(), e)))?;
        }
        Ok(())
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let file = self.handle(key)?;
        // The part of the range the file has (see the trait): allocate for
        // what is there, never for what was asked.
        let size = file.metadata().map_err(|e| StorageError::io(key, e))?.len();
        let range = range.unwrap_or(0..size);
        let start = range.start.min(size);
        let range = start..range.end.min(size).max(start);
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| StorageError::InvalidKey(key.to_string()))?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, range.start)
            .map_err(|e| StorageError::io(key, e))?;
        Ok(bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        list_keys(&self.root, prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.handles().remove(key);
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

    #[test]
    fn deleting_drops_the_cached_handle() {
        let dir = temp_dir("handles");
        let store = LocalStore::open(&dir).unwrap();
        store.put_new("s/a", b"first version").unwrap();
        assert_eq!(store.get("s/a", Some(0..5)).unwrap(), b"first");
        store.delete("s/a").unwrap();
        assert!(
            store.get("s/a", Some(0..5)).unwrap_err().is_not_found(),
            "no read through a handle of a deleted object"
        );
        store.put_new_deferred("s/a", b"second").unwrap();
        assert_eq!(store.get("s/a", None).unwrap(), b"second");
        // More objects than handles: every read still sees its own object.
        for i in 0..HANDLES_OPEN_MAX * 2 {
            store
                .put_new_deferred(&format!("s/{i}"), format!("object {i}").as_bytes())
                .unwrap();
        }
        for i in (0..HANDLES_OPEN_MAX * 2).rev() {
            assert_eq!(
                store.get(&format!("s/{i}"), Some(7..8)).unwrap(),
                &i.to_string().as_bytes()[..1]
            );
        }
        assert!(store.handles().entries.len() <= HANDLES_OPEN_MAX);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn deferred_puts_are_create_only_and_synced_on_demand() {
        let dir = temp_dir("deferred");
        let store = LocalStore::open(&dir).unwrap();
        store.put_new_deferred("p/seg/1", b"abc").unwrap();
        assert!(matches!(
            store.put_new_deferred("p/seg/1", b"x"),
            Err(StorageError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.put_new("p/seg/1", b"x"),
            Err(StorageError::AlreadyExists { .. })
        ));
        assert_eq!(store.list("p/").unwrap(), vec!["p/seg/1"]);
        store.put_new_deferred("p/map/1", b"def").unwrap();
        store
            .sync(&["p/seg/1".to_string(), "p/map/1".to_string()])
            .unwrap();
        assert!(store
            .sync(&["p/seg/missing".to_string()])
            .unwrap_err()
            .is_not_found());
        drop(store);
        let store = LocalStore::open(&dir).unwrap();
        assert_eq!(store.get("p/seg/1", None).unwrap(), b"abc");
        fs::remove_dir_all(dir).unwrap();
    }
}
