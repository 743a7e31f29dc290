//! The local crash-safe backend: one file per object under a directory.

use crate::{
    backend::{check_key, StorageBackend, StorageError},
    fs::{DirEntry, FileHandle, FileSystem, StdFs},
};
use std::{
    collections::{BTreeSet, VecDeque},
    io,
    ops::Range,
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

/// Most handles of written, not yet synced objects [`LocalStore`] keeps open.
///
/// A deferred object must be synced through the descriptor it was written
/// with: a write-back error is reported to the descriptors open when it
/// happened, so an `fsync` of a descriptor opened later may succeed although
/// the data was lost. Such handles are therefore kept apart from the read
/// cache until the object is synced or deleted. That is one handle per segment
/// (1 MiB) and map chunk version the epoch being built wrote; an epoch that
/// writes more than this many objects before its checkpoint has its oldest
/// ones synced early, each through its own handle, which is then closed (their
/// names are synced with the others later). So open descriptors stay bounded
/// by this constant, whatever an epoch writes.
pub const UNSYNCED_HANDLES_MAX: usize = 64;

/// Open handles of objects, by key: a small LRU for reads, and the handles of
/// objects written with `put_new_deferred` and not synced since.
#[derive(Debug)]
struct Handles<H> {
    /// `(key, handle, last use)`; at most [`HANDLES_OPEN_MAX`] entries.
    entries: Vec<(String, Arc<H>, u64)>,
    tick: u64,
    /// Written, unsynced objects, oldest first; at most [`UNSYNCED_HANDLES_MAX`].
    written: VecDeque<(String, Arc<H>)>,
    /// Unsynced objects whose contents were synced early (through their
    /// written handle, since closed); only their names wait for a `sync`.
    synced_early: BTreeSet<String>,
}

impl<H> Handles<H> {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            tick: 0,
            written: VecDeque::new(),
            synced_early: BTreeSet::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<Arc<H>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.iter_mut().find(|(k, _, _)| k == key) {
            entry.2 = tick;
            return Some(entry.1.clone());
        }
        let written = self.written.iter().find(|(k, _)| k == key)?.1.clone();
        self.insert(key, written.clone());
        Some(written)
    }

    fn insert(&mut self, key: &str, file: Arc<H>) {
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

    /// Drops the read handle of `key`.
    fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _, _)| k != key);
    }

    /// Drops every handle of `key` and forgets that it is unsynced (it is deleted).
    fn forget(&mut self, key: &str) {
        self.remove(key);
        self.written.retain(|(k, _)| k != key);
        self.synced_early.remove(key);
    }

    /// What a `sync` of `key` has left to do for its contents.
    fn take_unsynced(&mut self, key: &str) -> Unsynced<H> {
        if let Some(at) = self.written.iter().position(|(k, _)| k == key) {
            let (_, file) = self.written.remove(at).expect("position is in range");
            return Unsynced::Written(file);
        }
        if self.synced_early.remove(key) {
            Unsynced::SyncedEarly
        } else {
            Unsynced::Unknown
        }
    }
}

/// The state of an object named by a `sync`.
enum Unsynced<H> {
    /// Written by this store and not synced: sync this handle.
    Written(Arc<H>),
    /// Its contents are durable already.
    SyncedEarly,
    /// Not written by this store since it was last synced (or never written
    /// here): syncing a fresh handle cannot miss an error of ours.
    Unknown,
}

/// Objects as files below a root directory.
///
/// `put_new` writes a temporary file, syncs it, links it to its final name (which
/// fails if the name exists: create-only), syncs the directory, and removes the
/// temporary name. A crash at any point leaves either no object or the whole,
/// synced object; leftover temporary files are removed by [`LocalStore::open`].
///
/// `put_new_deferred` creates the file under its final name (create-only) and
/// writes it, without any sync, keeping the written handle
/// ([`UNSYNCED_HANDLES_MAX`]); `sync` later syncs the files through those
/// handles and then their directories. A crash before that may leave such a
/// file missing, empty or partly written, which is allowed: recovery removes
/// the objects of an epoch that never committed.
///
/// Every directory the store uses is made durable in its parent the first time
/// this store uses it (created if missing, then the parent synced, level by
/// level from the root down), and the root itself when [`LocalStore::open`]
/// creates it (up to the first ancestor that existed). Otherwise a power loss
/// could take a whole new process directory, synced files and all, with it.
///
/// Reads use `pread` on handles kept open in a small LRU ([`HANDLES_OPEN_MAX`]).
///
/// After a failed write or sync the store is poisoned: later writes fail, as
/// retrying an fsync cannot make earlier data safe.
///
/// All of this goes through a [`FileSystem`], the operating system's
/// ([`StdFs`]) unless a simulated one is given to [`LocalStore::open_in`].
#[derive(Debug)]
pub struct LocalStore<F: FileSystem = StdFs> {
    fs: F,
    root: PathBuf,
    poisoned: Mutex<Option<String>>,
    handles: Mutex<Handles<F::File>>,
    /// Directories below the root known to be durable in their parents.
    dirs_durable: Mutex<BTreeSet<PathBuf>>,
    /// Deferred puts, too, show an object under its name only once all of
    /// its bytes are written (see [`LocalStore::whole_objects_only`]).
    whole_only: bool,
}

const TEMP_PREFIX: &str = ".tmp-";

/// Sequence numbers of temporary names, shared by every store of this process
/// so that two stores on one directory never pick the same name.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Most temporary names `put_new` tries before giving up.
const TEMP_ATTEMPTS_MAX: u32 = 4;

/// The temporary name `.tmp-<pid>-<nonce>-<seq>`. The PID lets
/// [`LocalStore::open`] tell abandoned temporaries; the nonce, random per
/// process, keeps a process from meeting the leftovers of an earlier one that
/// had the same PID (PIDs repeat after a reboot, and in a container the runner
/// may get the same one every time) and that nobody could remove as long as
/// that PID is alive.
fn temp_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = NONCE.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{}-{nonce:016x}-{seq}", std::process::id())
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, removing temporary
    /// files left by a crash.
    ///
    /// # Errors
    /// If the directory cannot be created, synced or read.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_in(StdFs, root)
    }
}

impl<F: FileSystem> LocalStore<F> {
    /// [`LocalStore::open`] on the file system `fs`.
    ///
    /// # Errors
    /// If the directory cannot be created, synced or read.
    pub fn open_in(fs: F, root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let key = root.display().to_string();
        create_dir_durably(&fs, &root).map_err(|e| StorageError::io(&key, e))?;
        let store = Self {
            fs,
            root,
            poisoned: Mutex::new(None),
            handles: Mutex::new(Handles::new()),
            dirs_durable: Mutex::new(BTreeSet::new()),
            whole_only: false,
        };
        remove_temporaries(&store.fs, &store.root)?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file system.
    pub fn fs(&self) -> &F {
        &self.fs
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

    fn handles(&self) -> MutexGuard<'_, Handles<F::File>> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dirs_durable(&self) -> MutexGuard<'_, BTreeSet<PathBuf>> {
        self.dirs_durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An open handle of object `key`: a cached or written one, or a newly
    /// opened one that is then cached.
    fn handle(&self, key: &str) -> Result<Arc<F::File>, StorageError> {
        if let Some(file) = self.handles().get(key) {
            return Ok(file);
        }
        let file = Arc::new(self.open_object(key)?);
        self.handles().insert(key, file.clone());
        Ok(file)
    }

    fn open_object(&self, key: &str) -> Result<F::File, StorageError> {
        self.fs.open(&self.path(key)?).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound {
                key: key.to_string(),
            },
            _ => StorageError::io(key, e),
        })
    }

    /// Makes directory `dir` (below the root) and every directory between it
    /// and the root exist durably: each is created if missing and its parent
    /// synced, once per store. A directory that already existed is synced into
    /// its parent too: another store (a runner of another process) may have
    /// just created it and not synced its parent yet.
    fn make_dir(&self, key: &str, dir: &Path) -> Result<(), StorageError> {
        if self.dirs_durable().contains(dir) {
            return Ok(());
        }
        let relative = dir
            .strip_prefix(&self.root)
            .expect("a checked key names a path under the root");
        let mut parent = self.root.clone();
        for component in relative.components() {
            let at = parent.join(component);
            if !self.dirs_durable().contains(&at) {
                match self.fs.mkdir(&at) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(self.poison(StorageError::io(key, e))),
                }
                self.fs
                    .sync_dir(&parent)
                    .map_err(|e| self.poison(StorageError::io(key, e)))?;
                self.dirs_durable().insert(at.clone());
            }
            parent = at;
        }
        Ok(())
    }

    /// Creates file `path` of object `key` (create-only), making its directory
    /// first. A directory removed since this store made it (by `ferrite rm` of
    /// an earlier process of that name) is made again.
    fn create_object(&self, key: &str, path: &Path) -> Result<F::File, StorageError> {
        let dir = path
            .parent()
            .expect("a checked key has a parent under the root");
        self.make_dir(key, dir)?;
        let created = match self.fs.create_new(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.dirs_durable().retain(|known| !dir.starts_with(known));
                self.make_dir(key, dir)?;
                self.fs.create_new(path)
            }
            created => created,
        };
        created.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => StorageError::AlreadyExists {
                key: key.to_string(),
            },
            _ => self.poison(StorageError::io(key, e)),
        })
    }

    /// Makes deferred puts, too, show an object under its name only once all
    /// of its bytes are written: they go through a temporary name (not
    /// synced; [`StorageBackend::sync`] syncs them as usual). For a store
    /// that others read while it is written (the heap server serves one
    /// runner's objects to another's listings and reads, and a crash of the
    /// server mid-write must not leave a short object under a final name).
    #[must_use]
    pub fn whole_objects_only(mut self) -> Self {
        self.whole_only = true;
        self
    }

    /// Writes `bytes` under a temporary name, then links it to `path`
    /// (create-only); returns the open file, not synced.
    fn put_whole_unsynced(
        &self,
        key: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<F::File, StorageError> {
        let dir = path
            .parent()
            .expect("a checked key has a parent under the root");
        let (temp, file) = self.create_temporary(key, dir)?;
        if let Err(e) = file.write_all_at(bytes, 0) {
            let _ = self.fs.unlink(&temp);
            return Err(self.poison(StorageError::io(key, e)));
        }
        let linked = self.fs.link(&temp, path);
        let _ = self.fs.unlink(&temp);
        match linked {
            Ok(()) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                })
            }
            Err(e) => Err(self.poison(StorageError::io(key, e))),
        }
    }

    /// Creates a new temporary file in `dir`.
    fn create_temporary(&self, key: &str, dir: &Path) -> Result<(PathBuf, F::File), StorageError> {
        let mut attempts = 0;
        loop {
            let temp = dir.join(temp_name());
            attempts += 1;
            match self.create_object(key, &temp) {
                Ok(file) => return Ok((temp, file)),
                // Someone else's; never touched.
                Err(StorageError::AlreadyExists { .. }) if attempts < TEMP_ATTEMPTS_MAX => {}
                Err(StorageError::AlreadyExists { .. }) => {
                    let e = io::Error::other("every temporary name tried was taken");
                    return Err(self.poison(StorageError::io(key, e)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `bytes` to a new temporary file in `dir` and syncs it; returns its
    /// path.
    fn write_temporary(
        &self,
        key: &str,
        dir: &Path,
        bytes: &[u8],
    ) -> Result<PathBuf, StorageError> {
        let (temp, file) = self.create_temporary(key, dir)?;
        if let Err(e) = file.write_all_at(bytes, 0).and_then(|()| file.sync()) {
            let _ = self.fs.unlink(&temp);
            return Err(self.poison(StorageError::io(key, e)));
        }
        Ok(temp)
    }

    /// Syncs the contents of the oldest written objects past
    /// [`UNSYNCED_HANDLES_MAX`] through their own handles, and closes those.
    fn sync_overflow(&self, key: &str) -> Result<(), StorageError> {
        // The lock is held across the fsync so that a concurrent `sync` of the
        // same object cannot miss it; this happens once per object of an epoch
        // that wrote more than the bound.
        let mut handles = self.handles();
        while handles.written.len() > UNSYNCED_HANDLES_MAX {
            let (oldest, file) = handles.written.pop_front().expect("over the bound");
            file.sync()
                .map_err(|e| self.poison(StorageError::io(key, e)))?;
            handles.synced_early.insert(oldest);
        }
        Ok(())
    }
}

/// Files a [`LocalStore::sync`] syncs at once.
const SYNCS_AT_ONCE: usize = 8;

/// Creates directory `dir` durably: it and every missing ancestor are created
/// and each one's parent synced, up to the first ancestor that existed.
fn create_dir_durably<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<()> {
    // Deepest first: the directories still to create.
    let mut missing = vec![dir.to_path_buf()];
    loop {
        let at = missing.last().expect("not empty");
        match fs.mkdir(at) {
            Ok(()) => {
                fs.sync_dir(parent_dir(at))?;
                missing.pop();
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                missing.pop();
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => {
                    missing.push(parent.to_path_buf());
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    while let Some(at) = missing.pop() {
        match fs.mkdir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs.sync_dir(parent_dir(&at))?;
    }
    Ok(())
}

/// The directory holding `path`: `.` for a relative path of one component
/// (whose `parent()` is empty), `/` for the root.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => Path::new("/"),
    }
}

/// True for a temporary file whose writer is gone: its name is
/// `.tmp-<pid>-...` and no process `<pid>` exists. Another runner's write in
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
fn remove_temporaries<F: FileSystem>(fs: &F, dir: &Path) -> Result<(), StorageError> {
    let key = dir.display().to_string();
    for entry in fs.list(dir).map_err(|e| StorageError::io(&key, e))? {
        let path = dir.join(&entry.name);
        if entry.is_dir {
            remove_temporaries(fs, &path)?;
        } else if is_abandoned_temporary(&entry.name) {
            let _ = fs.unlink(&path);
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
    list_keys_in(&StdFs, root, prefix)
}

fn list_keys_in<F: FileSystem>(
    fs: &F,
    root: &Path,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    // Walk the directory that holds the prefix, then filter by full key.
    let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let dir = if dir_key.is_empty() {
        root.to_path_buf()
    } else {
        check_key(dir_key)?;
        root.join(dir_key)
    };
    let mut keys = Vec::new();
    collect_keys(fs, &dir, dir_key, &mut keys).map_err(|e| StorageError::io(prefix, e))?;
    keys.retain(|key| key.starts_with(prefix));
    keys.sort();
    Ok(keys)
}

/// Appends the keys of the files in `dir` and below (skipping temporaries) to
/// `keys`; `dir_key` is the key of `dir` itself. A missing directory has none.
fn collect_keys<F: FileSystem>(
    fs: &F,
    dir: &Path,
    dir_key: &str,
    keys: &mut Vec<String>,
) -> io::Result<()> {
    let entries = match fs.list(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for DirEntry { name, is_dir } in entries {
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = dir.join(&name);
        let key = if dir_key.is_empty() {
            name
        } else {
            format!("{dir_key}/{name}")
        };
        if is_dir {
            collect_keys(fs, &path, &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

impl<F: FileSystem> StorageBackend for LocalStore<F> {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let path = self.path(key)?;
        // Cheap refusal before writing (a module stored by an earlier run).
        if self.fs.open(&path).is_ok() {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let dir = path
            .parent()
            .expect("a checked key has a parent under the root");
        // A handle of an object of the same name that someone else deleted.
        self.handles().remove(key);
        let temp = self.write_temporary(key, dir, bytes)?;
        let linked = self.fs.link(&temp, &path);
        let _ = self.fs.unlink(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.poison(StorageError::io(key, e))),
        }
        self.fs
            .sync_dir(dir)
            .map_err(|e| self.poison(StorageError::io(key, e)))
    }

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let path = self.path(key)?;
        let file = if self.whole_only {
            self.put_whole_unsynced(key, &path, bytes)?
        } else {
            let file = self.create_object(key, &path)?;
            if let Err(e) = file.write_all_at(bytes, 0) {
                // Never leave a short object under its final name.
                let _ = self.fs.unlink(&path);
                return Err(self.poison(StorageError::io(key, e)));
            }
            file
        };
        let file = Arc::new(file);
        {
            let mut handles = self.handles();
            handles.written.push_back((key.to_string(), file.clone()));
            // The page store reads recently written records back soon.
            handles.insert(key, file);
        }
        self.sync_overflow(key)
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let mut dirs = BTreeSet::new();
        let mut files = Vec::with_capacity(keys.len());
        for key in keys {
            let path = self.path(key)?;
            let unsynced = self.handles().take_unsynced(key);
            let file = match unsynced {
                Unsynced::Written(file) => Some(file),
                Unsynced::SyncedEarly => None,
                Unsynced::Unknown => {
                    Some(Arc::new(self.open_object(key).map_err(|e| self.poison(e))?))
                }
            };
            if let Some(file) = file {
                files.push((key, file));
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        // Several at once: the file system commits concurrent syncs together
        // (one journal commit for many files on ext4), where one after the
        // other each waits for its own.
        let sync_all = |part: &[(&String, Arc<F::File>)]| {
            part.iter()
                .find_map(|(key, file)| file.sync().err().map(|e| StorageError::io(key, e)))
        };
        let per_thread = files.len().div_ceil(SYNCS_AT_ONCE).max(1);
        let failed = if files.len() < 2 {
            sync_all(&files)
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = files
                    .chunks(per_thread)
                    .map(|part| scope.spawn(move || sync_all(part)))
                    .collect();
                workers
                    .into_iter()
                    .find_map(|worker| worker.join().expect("a sync does not panic"))
            })
        };
        if let Some(error) = failed {
            return Err(self.poison(error));
        }
        // The names, after the contents: a name that survives a crash has its bytes.
        for dir in dirs {
            self.fs
                .sync_dir(&dir)
                .map_err(|e| self.poison(StorageError::io(&dir.display().to_string(), e)))?;
        }
        Ok(())
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let file = self.handle(key)?;
        // The part of the range the file has (see the trait): allocate for
        // what is there, never for what was asked.
        let size = file.size().map_err(|e| StorageError::io(key, e))?;
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
        list_keys_in(&self.fs, &self.root, prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.handles().forget(key);
        match self.fs.unlink(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrite-local-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_store_at_a_relative_path_of_one_component_opens() {
        // Tests share one working directory, so the command's test runs
        // `ferrite --store st` in a directory of its own; here, the rule.
        assert_eq!(parent_dir(Path::new("st")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/st")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/")), Path::new("/"));
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
    fn whole_objects_only_writes_deferred_objects_through_a_temporary() {
        let dir = temp_dir("whole");
        let store = LocalStore::open(&dir).unwrap().whole_objects_only();
        let key = "procs/p/segments/1";
        store.put_new_deferred(key, b"all of it").unwrap();
        assert!(matches!(
            store.put_new_deferred(key, b"again"),
            Err(StorageError::AlreadyExists { .. })
        ));
        store.sync(&[key.to_string()]).unwrap();
        assert_eq!(store.get(key, None).unwrap(), b"all of it");
        // No temporary is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.join("procs/p/segments"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1"]);
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
