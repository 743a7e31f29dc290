//! The file journal: what undoes a process's changes to its files since its
//! last checkpoint, so that a resumed process finds its files as it left them
//! at that checkpoint.
//!
//! Between two checkpoints, before the first change to a file or a directory
//! entry, the host appends an *undo record* to the journal and makes it durable
//! (`fdatasync`) before the change is made; a change whose record is not
//! durable never happens. A checkpoint first syncs every file and directory the
//! process changed, then commits; after the commit the journal is discarded. A
//! resume undoes the journal of the checkpoint it resumes from, newest record
//! first, then runs on.
//!
//! Records are kept few: a file's old length is recorded once per epoch (it
//! undoes every append and extension), bytes an in-place write overwrites are
//! saved once per byte (later writes over them need nothing), a file created
//! in the epoch needs no record for its contents (undo removes it). A program
//! that appends to a log pays one journal sync per checkpoint interval.
//!
//! Layout (little-endian; `docs/format.md` has the crash analysis):
//!
//! ```text
//! journal-<base epoch:016x>     header: "FJNL", version (1), base epoch, crc32c(previous 16 bytes)
//!                               records: length N (u32), crc32c(base epoch, body) (u32), body (N bytes,
//!                               postcard encoding of `Undo`)
//! trash-<base epoch:016x>/<n>   files the process unlinked or replaced, kept (hard link, or a copy
//!                               across file systems) until the checkpoint commits
//! ```

use crate::state::Preopen;
use cap_fs_ext::DirExt;
use cap_std::fs::{Dir, File, FileExt, OpenOptions};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Magic of a journal file: ASCII `FJNL`.
pub const JOURNAL_MAGIC: [u8; 4] = *b"FJNL";
/// The journal layout this build writes and reads.
pub const JOURNAL_VERSION: u32 = 1;
const HEADER_BYTES: usize = 20;
/// The most bytes one `Bytes` record saves; longer overwrites take several.
const SAVED_BYTES_MAX: usize = 1 << 20;
/// The most bytes a record body may have (a `Bytes` record and its paths).
const RECORD_BYTES_MAX: usize = SAVED_BYTES_MAX + 64 * 1024;
/// Files whose descriptors the journal keeps open for the checkpoint's sync;
/// past this, they are synced at once and their descriptors dropped.
pub const SYNC_HANDLES_MAX: usize = 256;

/// A name below a preopened directory (`Location` without the lookup flag).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Place {
    pub preopen: u32,
    pub path: String,
}

impl Place {
    /// The directory holding the name (the preopen itself for a top-level name).
    fn parent(&self) -> Place {
        let path = self
            .path
            .rsplit_once('/')
            .map_or(String::new(), |(dir, _)| dir.to_string());
        Place {
            preopen: self.preopen,
            path,
        }
    }

    /// The path to hand to cap-std (`.` for the preopen itself).
    fn rel(&self) -> &str {
        if self.path.is_empty() {
            "."
        } else {
            &self.path
        }
    }
}

/// A file's identity on its host: device, inode and birth time (file systems
/// reuse a freed inode number at once; the birth time tells the new file
/// apart; 0 where the file system does not record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub born_ns: u64,
}

/// How a removed or replaced entry is kept until the checkpoint commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Saved {
    /// A file, as `trash-<base>/<name>` (a hard link, or a copy).
    Trash(String),
    /// A symbolic link, by its target.
    Symlink(String),
    /// An empty directory.
    Dir,
}

/// One undo record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Undo {
    /// The file `id` at `at` was `len` bytes long at the checkpoint.
    Length { at: Place, id: FileId, len: u64 },
    /// `data` were the bytes of file `id` at `offset` at the checkpoint.
    Bytes {
        at: Place,
        id: FileId,
        offset: u64,
        data: Vec<u8>,
    },
    /// The process creates the name `at` (a file, link, symlink or directory).
    Created { at: Place, dir: bool },
    /// The process removes the name `at`, kept as `saved`.
    Removed { at: Place, saved: Saved },
    /// The process renames `from` to `to`, replacing what `replaced` keeps.
    Renamed {
        from: Place,
        to: Place,
        replaced: Option<Saved>,
    },
}

/// What the journal knows of a file changed in this epoch.
#[derive(Debug, Default)]
struct Touched {
    /// Created in this epoch: undo removes it, its contents need no records.
    created: bool,
    /// Length at the checkpoint.
    len: u64,
    /// Byte ranges below `len` whose checkpoint contents are saved, sorted and
    /// disjoint. Invariant: every byte below `len` outside them still holds
    /// its checkpoint value.
    saved: Vec<(u64, u64)>,
    /// A descriptor of the file, open since its first change, to sync it at the
    /// checkpoint (so a write-back error cannot be missed).
    handle: Option<File>,
}

/// What is about to be synced, as told to a [`SyncHook`].
#[derive(Debug, Clone, Copy)]
pub enum SyncPoint<'a> {
    /// A file of the process (its contents).
    File(&'a File),
    /// A directory (its entries), or a file of the journal, by host path.
    Path(&'a Path),
}

/// Told of every sync the journal makes, just before it is made; an error
/// fails the sync (and so the change or checkpoint waiting for it). A
/// power-loss simulator records what becomes durable there, and crashes the
/// run at a chosen one.
#[derive(Clone)]
pub struct SyncHook(Arc<SyncHookFn>);

type SyncHookFn = dyn Fn(SyncPoint<'_>) -> io::Result<()> + Send + Sync;

impl SyncHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(SyncPoint<'_>) -> io::Result<()> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for SyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHook")
    }
}

/// Calls the hook, if any.
fn sync_point(hook: &mut Option<SyncHook>, point: SyncPoint<'_>) -> io::Result<()> {
    match hook {
        Some(hook) => (hook.0)(point),
        None => Ok(()),
    }
}

/// Counters of the journal since it was attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Undo records written.
    pub records: u64,
    /// Bytes of old file contents saved.
    pub bytes_saved: u64,
    /// `fdatasync`s of the journal (one per host call that wrote records).
    pub syncs: u64,
    /// Files and directories synced at checkpoints.
    pub synced_at_checkpoints: u64,
}

/// The undo journal of a running process. See the module documentation.
pub struct FileJournal {
    root: PathBuf,
    /// The checkpoint the records undo to.
    base: u64,
    out: Option<fs::File>,
    /// Records appended but not yet synced.
    pending: Vec<u8>,
    preopens: Vec<Option<Dir>>,
    /// Host paths of the preopens, to name directories to the sync hook.
    preopen_paths: Vec<PathBuf>,
    hook: Option<SyncHook>,
    trash: Option<Dir>,
    trash_seq: u64,
    files: BTreeMap<FileId, Touched>,
    /// The identity of the file behind each guest descriptor written through
    /// (by host descriptor number; forgotten when the guest closes it), so
    /// that a write to a file already touched in this epoch needs no syscall.
    ids: BTreeMap<i32, FileId>,
    handles: usize,
    /// Directories whose entries changed in this epoch.
    dirs: BTreeSet<Place>,
    stats: JournalStats,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal")
            .field("root", &self.root)
            .field("base", &self.base)
            .field("files", &self.files.len())
            .field("dirs", &self.dirs.len())
            .finish_non_exhaustive()
    }
}

/// Why the journal could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("file journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("file journal {}: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
}

/// What a rollback did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollback {
    /// Undo records applied.
    pub undone: usize,
    /// Changes that could not be undone, and why (a file replaced or changed
    /// by someone else meanwhile is reported, never clobbered).
    pub warnings: Vec<String>,
}

fn journal_name(base: u64) -> String {
    format!("journal-{base:016x}")
}

fn trash_name(base: u64) -> String {
    format!("trash-{base:016x}")
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and the missing directories above it, syncing each new one
/// into its parent so that the names survive a power loss.
fn create_dir_synced(dir: &Path, hook: &mut Option<SyncHook>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_synced(parent, hook)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = match dir.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => return Ok(()),
    };
    sync_point(hook, SyncPoint::Path(parent))?;
    fs::File::open(parent)?.sync_all()?;
    Ok(())
}

fn record_crc(base: u64, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&base.to_le_bytes()), body)
}

fn header(base: u64) -> [u8; HEADER_BYTES] {
    let mut bytes = [0; HEADER_BYTES];
    bytes[0..4].copy_from_slice(&JOURNAL_MAGIC);
    bytes[4..8].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The identity and length of an open file.
fn file_id(file: &File) -> io::Result<(FileId, u64)> {
    use rustix::fs::{AtFlags, StatxFlags};
    let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME;
    match rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, mask) {
        Ok(stat) => {
            let born_ns = if StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::BTIME)
            {
                (stat.stx_btime.tv_sec as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(u64::from(stat.stx_btime.tv_nsec))
            } else {
                0
            };
            let dev = (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor);
            let id = FileId {
                dev,
                ino: stat.stx_ino,
                born_ns,
            };
            Ok((id, stat.stx_size))
        }
        // Kernels before 4.11: device and inode only.
        Err(rustix::io::Errno::NOSYS) => {
            let stat = rustix::fs::fstat(file).map_err(io::Error::from)?;
            let id = FileId {
                dev: stat.st_dev,
                ino: stat.st_ino,
                born_ns: 0,
            };
            Ok((id, stat.st_size as u64))
        }
        Err(e) => Err(e.into()),
    }
}

/// A read-only descriptor of the file or directory at `at`, to sync it.
fn open_for_sync(dir: &Dir, at: &Place) -> io::Result<File> {
    use cap_fs_ext::OpenOptionsMaybeDirExt;
    let mut options = OpenOptions::new();
    options.read(true).maybe_dir(true);
    dir.open_with(at.rel(), &options)
}

/// Opens the preopened directories (those that cannot be opened are `None`).
fn open_preopens(preopens: &[Preopen]) -> Vec<Option<Dir>> {
    preopens
        .iter()
        .map(|p| Dir::open_ambient_dir(&p.host_path, cap_std::ambient_authority()).ok())
        .collect()
}

/// The ranges of `want` not covered by the sorted, disjoint `saved`.
fn uncovered(saved: &[(u64, u64)], (start, end): (u64, u64)) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut at = start;
    for &(s, e) in saved {
        if e <= at {
            continue;
        }
        if s >= end {
            break;
        }
        if s > at {
            gaps.push((at, s));
        }
        at = at.max(e);
    }
    if at < end {
        gaps.push((at, end));
    }
    gaps
}

/// Adds `range` to the sorted, disjoint `saved`, merging neighbours.
fn cover(saved: &mut Vec<(u64, u64)>, range: (u64, u64)) {
    saved.push(range);
    saved.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(saved.len());
    for &(s, e) in saved.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *saved = merged;
}

impl FileJournal {
    /// A journal in directory `root` for a process whose last committed
    /// checkpoint is `base`, with the process's preopened directories.
    pub fn new(root: PathBuf, base: u64, preopens: &[Preopen]) -> Self {
        Self {
            root,
            base,
            out: None,
            pending: Vec::new(),
            preopens: open_preopens(preopens),
            preopen_paths: preopens.iter().map(|p| p.host_path.clone()).collect(),
            hook: None,
            trash: None,
            trash_seq: 0,
            files: BTreeMap::new(),
            ids: BTreeMap::new(),
            handles: 0,
            dirs: BTreeSet::new(),
            stats: JournalStats::default(),
        }
    }

    /// The checkpoint the current records undo to.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Counters since the journal was created.
    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    /// Calls `hook` before every sync from now on (see [`SyncHook`]).
    pub fn set_sync_hook(&mut self, hook: SyncHook) {
        self.hook = Some(hook);
    }

    /// The guest syncs `file` itself (`fd_sync`, `fd_datasync`).
    ///
    /// # Errors
    /// What the sync hook returns.
    pub fn before_guest_sync(&mut self, file: &File) -> io::Result<()> {
        sync_point(&mut self.hook, SyncPoint::File(file))
    }

    fn append(&mut self, undo: &Undo) {
        let body = postcard::to_allocvec(undo).expect("undo records always encode");
        debug_assert!(body.len() <= RECORD_BYTES_MAX);
        self.pending
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.pending
            .extend_from_slice(&record_crc(self.base, &body).to_le_bytes());
        self.pending.extend_from_slice(&body);
        self.stats.records += 1;
    }

    /// Writes the pending records and makes them durable: called before the
    /// change they undo is made (group commit: one sync per host call).
    fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.out.is_none() {
            create_dir_synced(&self.root, &mut self.hook)?;
            let path = self.root.join(journal_name(self.base));
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            if file.metadata()?.len() == 0 {
                file.write_all(&header(self.base))?;
            }
            sync_point(&mut self.hook, SyncPoint::Path(&path))?;
            file.sync_all()?;
            sync_point(&mut self.hook, SyncPoint::Path(&self.root))?;
            fs::File::open(&self.root)?.sync_all()?;
            self.out = Some(file);
        }
        let out = self.out.as_mut().expect("opened above");
        out.write_all(&self.pending)?;
        let path = self.root.join(journal_name(self.base));
        sync_point(&mut self.hook, SyncPoint::Path(&path))?;
        out.sync_data()?;
        self.pending.clear();
        self.stats.syncs += 1;
        Ok(())
    }

    fn trash_dir(&mut self) -> io::Result<&Dir> {
        if self.trash.is_none() {
            let path = self.root.join(trash_name(self.base));
            create_dir_synced(&path, &mut self.hook)?;
            self.trash = Some(Dir::open_ambient_dir(&path, cap_std::ambient_authority())?);
        }
        Ok(self.trash.as_ref().expect("opened above"))
    }

    fn dir(&self, preopen: u32) -> io::Result<&Dir> {
        self.preopens
            .get(preopen as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::other(format!("preopen {preopen} is not open")))
    }

    /// The file's entry, recording its checkpoint length at its first change
    /// in this epoch; keeps a descriptor of it for the checkpoint's sync.
    fn touch(&mut self, file: &File, at: &Place) -> io::Result<FileId> {
        use std::os::fd::AsRawFd;
        if let Some(&id) = self.ids.get(&file.as_raw_fd()) {
            if self.files.get(&id).is_some_and(|t| t.handle.is_some()) {
                return Ok(id);
            }
        }
        let (id, len_now) = file_id(file)?;
        self.ids.insert(file.as_raw_fd(), id);
        if !self.files.contains_key(&id) {
            self.append(&Undo::Length {
                at: at.clone(),
                id,
                len: len_now,
            });
            self.files.insert(
                id,
                Touched {
                    len: len_now,
                    ..Touched::default()
                },
            );
        }
        let needs_handle = self.files.get(&id).is_some_and(|t| t.handle.is_none());
        if needs_handle {
            if self.handles >= SYNC_HANDLES_MAX {
                self.sync_files()?;
            }
            let handle = file.try_clone()?;
            self.files.get_mut(&id).expect("inserted above").handle = Some(handle);
            self.handles += 1;
        }
        Ok(id)
    }

    /// The guest closed `file`: its descriptor number may name another file.
    pub fn forget(&mut self, file: &File) {
        use std::os::fd::AsRawFd;
        self.ids.remove(&file.as_raw_fd());
    }

    /// Saves the checkpoint bytes of `file` in `range` that are not saved yet.
    fn save_range(
        &mut self,
        file: &File,
        at: &Place,
        id: FileId,
        range: (u64, u64),
    ) -> io::Result<()> {
        let touched = self.files.get(&id).expect("touched first");
        if touched.created {
            return Ok(());
        }
        let end = range.1.min(touched.len);
        if range.0 >= end {
            return Ok(());
        }
        for (start, stop) in uncovered(&touched.saved, (range.0, end)) {
            let mut offset = start;
            while offset < stop {
                let len = ((stop - offset) as usize).min(SAVED_BYTES_MAX);
                let data = self.read_old(file, at, id, offset, len)?;
                self.stats.bytes_saved += data.len() as u64;
                self.append(&Undo::Bytes {
                    at: at.clone(),
                    id,
                    offset,
                    data,
                });
                offset += len as u64;
            }
            let touched = self.files.get_mut(&id).expect("touched first");
            cover(&mut touched.saved, (start, stop));
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` of `file` (through a new read-only
    /// descriptor of the same file if the guest's is write-only).
    fn read_old(
        &self,
        file: &File,
        at: &Place,
        id: FileId,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let mut data = vec![0; len];
        match file.read_exact_at(&mut data, offset) {
            Ok(()) => return Ok(data),
            Err(e) if e.raw_os_error() != Some(rustix::io::Errno::BADF.raw_os_error()) => {
                return Err(e)
            }
            Err(_) => {}
        }
        let reader = self.dir(at.preopen)?.open(at.rel())?;
        if file_id(&reader)?.0 != id {
            return Err(io::Error::other(format!(
                "`{}` no longer names the file being written",
                at.path
            )));
        }
        reader.read_exact_at(&mut data, offset)?;
        Ok(data)
    }

    /// Before writing `len` bytes at `offset` of `file` (at `at`).
    ///
    /// # Errors
    /// If the undo records cannot be made durable: the write must not happen.
    pub fn before_write(
        &mut self,
        file: &File,
        at: &Place,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let id = self.touch(file, at)?;
        self.save_range(file, at, id, (offset, offset.saturating_add(len)))?;
        self.commit()
    }

    /// Before setting the length of `file` to `len` (truncate or extend).
    ///
    /// # Errors
    /// If the undo records cannot be made durable.
    pub fn before_set_len(&mut self, file: &File, at: &Place, len: u64) -> io::Result<()> {
        let id = self.touch(file, at)?;
        let (_, len_now) = file_id(file)?;
        self.save_range(file, at, id, (len, len_now))?;
        self.commit()
    }

    /// Before creating the name `at`; returns whether it is free (and so will
    /// be created: an existing name is no creation to undo).
    ///
    /// # Errors
    /// If the undo record cannot be made durable.
    pub fn before_create(&mut self, at: &Place, dir: bool) -> io::Result<bool> {
        if self.exists(at)? {
            return Ok(false);
        }
        self.append(&Undo::Created {
            at: at.clone(),
            dir,
        });
        self.dirs.insert(at.parent());
        self.commit()?;
        Ok(true)
    }

    /// After creating file `file`: its contents need no undo records.
    ///
    /// # Errors
    /// If the file cannot be examined.
    pub fn created(&mut self, file: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (id, _) = file_id(file)?;
        let handle = file.try_clone()?;
        self.ids.insert(file.as_raw_fd(), id);
        let touched = self.files.entry(id).or_default();
        touched.created = true;
        if touched.handle.is_none() {
            touched.handle = Some(handle);
            self.handles += 1;
        }
        Ok(())
    }

    /// Moves the entry at `at` aside (into the trash, as a link or a copy),
    /// so that it can be brought back; `None` if there is nothing there.
    fn save_entry(&mut self, at: &Place) -> io::Result<Option<Saved>> {
        let dir = self.dir(at.preopen)?;
        let metadata = match dir.symlink_metadata(at.rel()) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if metadata.is_symlink() {
            let target = dir.read_link(at.rel())?;
            return Ok(Some(Saved::Symlink(target.to_string_lossy().into_owned())));
        }
        if metadata.is_dir() {
            return Ok(Some(Saved::Dir));
        }
        self.trash_seq += 1;
        let name = format!("{:08}", self.trash_seq);
        let dir = self.preopens[at.preopen as usize]
            .as_ref()
            .expect("checked above")
            .try_clone()?;
        let trash = self.trash_dir()?.try_clone()?;
        let trash = &trash;
        match dir.hard_link(at.rel(), trash, &name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                let mut source = dir.open(at.rel())?;
                let mut copy = trash.create(&name)?;
                io::copy(&mut source, &mut copy)?;
                sync_point(&mut self.hook, SyncPoint::File(&copy))?;
                copy.sync_all()?;
            }
            Err(e) => return Err(e),
        }
        let trash_path = self.root.join(trash_name(self.base));
        sync_point(&mut self.hook, SyncPoint::Path(&trash_path))?;
        fs::File::open(trash_path)?.sync_all()?;
        Ok(Some(Saved::Trash(name)))
    }

    /// Before removing the file or symlink at `at`.
    ///
    /// # Errors
    /// If it cannot be kept aside or the record made durable.
    pub fn before_remove_file(&mut self, at: &Place) -> io::Result<()> {
        match self.save_entry(at)? {
            Some(Saved::Dir) | None => Ok(()), // the removal fails by itself
            Some(saved) => {
                self.append(&Undo::Removed {
                    at: at.clone(),
                    saved,
                });
                self.dirs.insert(at.parent());
                self.commit()
            }
        }
    }

    /// Before removing the (empty) directory at `at`.
    ///
    /// # Errors
    /// If the record cannot be made durable.
    pub fn before_remove_dir(&mut self, at: &Place) -> io::Result<()> {
        let dir = self.dir(at.preopen)?;
        if dir.symlink_metadata(at.rel()).is_ok_and(|m| m.is_dir()) {
            self.append(&Undo::Removed {
                at: at.clone(),
                saved: Saved::Dir,
            });
            self.dirs.insert(at.parent());
        }
        self.commit()
    }

    /// Before renaming `from` to `to`.
    ///
    /// # Errors
    /// If what `to` names cannot be kept aside or the record made durable.
    pub fn before_rename(&mut self, from: &Place, to: &Place) -> io::Result<()> {
        if self
            .dir(from.preopen)?
            .symlink_metadata(from.rel())
            .is_err()
        {
            return Ok(()); // the rename fails by itself
        }
        let replaced = self.save_entry(to)?;
        self.append(&Undo::Renamed {
            from: from.clone(),
            to: to.clone(),
            replaced,
        });
        self.dirs.insert(from.parent());
        self.dirs.insert(to.parent());
        self.commit()
    }

    /// Whether a name exists at `at` (without following a final symlink).
    ///
    /// # Errors
    /// If the preopen is not open or the lookup fails otherwise.
    pub fn exists(&self, at: &Place) -> io::Result<bool> {
        match self.dir(at.preopen)?.symlink_metadata(at.rel()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Syncs every file and directory changed in this epoch, through the
    /// descriptors kept since their first change. Called before a checkpoint
    /// commits.
    ///
    /// # Errors
    /// The first sync that failed: the checkpoint must not commit.
    pub fn sync_files(&mut self) -> io::Result<()> {
        for touched in self.files.values_mut() {
            if let Some(handle) = touched.handle.take() {
                sync_point(&mut self.hook, SyncPoint::File(&handle))?;
                handle.sync_data()?;
                self.stats.synced_at_checkpoints += 1;
            }
        }
        self.handles = 0;
        for place in std::mem::take(&mut self.dirs) {
            let Some(Some(dir)) = self.preopens.get(place.preopen as usize) else {
                continue;
            };
            match open_for_sync(dir, &place) {
                Ok(handle) => {
                    let host = self.preopen_paths[place.preopen as usize].join(&place.path);
                    sync_point(&mut self.hook, SyncPoint::Path(&host))?;
                    handle.sync_all()?;
                }
                // A directory removed meanwhile: its parent, synced too, holds that.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            self.stats.synced_at_checkpoints += 1;
        }
        Ok(())
    }

    /// Checkpoint `epoch` committed: the records undo to it from now on, and
    /// the previous ones (and the files they kept) are discarded.
    pub fn committed(&mut self, epoch: u64) {
        debug_assert!(self.pending.is_empty());
        let old = self.base;
        self.base = epoch;
        self.out = None;
        self.trash = None;
        self.trash_seq = 0;
        self.files.clear();
        self.handles = 0;
        self.dirs.clear();
        // Best effort: a journal left behind is recognized as stale by its base
        // epoch and removed by the next resume.
        discard(&self.root, old);
    }
}

/// Removes the journal and trash of base `base`.
fn discard(root: &Path, base: u64) {
    let _ = fs::remove_file(root.join(journal_name(base)));
    let _ = fs::remove_dir_all(root.join(trash_name(base)));
}

/// Reads the records of a journal file: those before the first torn or
/// damaged one (a crash tears only the tail: a record is synced before its
/// change is made, so nothing past a torn record happened). A damaged
/// record before the end is reported in `warnings`.
fn read_journal(
    path: &Path,
    base: u64,
    warnings: &mut Vec<String>,
) -> Result<Vec<Undo>, JournalError> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_at(path))?;
    let records_follow = bytes
        .get(HEADER_BYTES..)
        .is_some_and(|rest| rest.iter().any(|&b| b != 0));
    if bytes.len() < HEADER_BYTES || (bytes[..HEADER_BYTES] != header(base) && !records_follow) {
        // Created, but the power failed before its header was synced: no
        // record was ever durable, so no change was made.
        return Ok(Vec::new());
    }
    if bytes[..HEADER_BYTES] != header(base) {
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let reason = if bytes[0..4] == JOURNAL_MAGIC && version != JOURNAL_VERSION {
            format!("journal version {version} is not supported by this build")
        } else {
            "bad header".to_string()
        };
        return Err(JournalError::Damaged {
            path: path.to_path_buf(),
            reason,
        });
    }
    let mut records = Vec::new();
    let mut at = HEADER_BYTES;
    while at < bytes.len() {
        let torn = |what: &str| {
            format!(
                "{}: {what} at byte {at}; later records ignored",
                path.display()
            )
        };
        let Some(head) = bytes.get(at..at + 8) else {
            break;
        };
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX {
            warnings.push(torn("record length out of range"));
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break; // torn tail
        };
        if record_crc(base, body) != crc {
            // A record torn by a crash is followed by nothing, or by zeros
            // (blocks of the file's new length that were never written).
            if bytes[at + 8 + len..].iter().any(|&b| b != 0) {
                warnings.push(torn("damaged record"));
            }
            break;
        }
        match postcard::from_bytes::<Undo>(body) {
            Ok(undo) => records.push(undo),
            Err(e) => {
                warnings.push(torn(&format!("undecodable record ({e})")));
                break;
            }
        }
        at += 8 + len;
    }
    Ok(records)
}

/// The base epochs of the journals in `root`, ascending.
fn journal_bases(root: &Path) -> Result<Vec<u64>, JournalError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(root)(e)),
    };
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = name
            .strip_prefix("journal-")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Rolls the files of a process back to its checkpoint `epoch`: undoes the
/// journal written since that checkpoint (newest record first), syncs what it
/// restored, and removes it. Journals of older checkpoints are stale (a later
/// checkpoint committed) and are removed.
///
/// # Errors
/// The journal cannot be read, or a restored file cannot be synced. Changes
/// that cannot be undone because a file was replaced or removed meanwhile are
/// not errors: they are listed in [`Rollback::warnings`].
pub fn roll_back(root: &Path, epoch: u64, preopens: &[Preopen]) -> Result<Rollback, JournalError> {
    let mut report = Rollback::default();
    let dirs = open_preopens(preopens);
    for base in journal_bases(root)? {
        let path = root.join(journal_name(base));
        if base < epoch {
            discard(root, base);
            continue;
        }
        if base > epoch {
            report.warnings.push(format!(
                "files roll back to checkpoint {base}, not {epoch}: the journals of the checkpoints between are gone"
            ));
        }
        let records = read_journal(&path, base, &mut report.warnings)?;
        let trash = root.join(trash_name(base));
        let mut undo = Undoer {
            dirs: &dirs,
            trash: Dir::open_ambient_dir(&trash, cap_std::ambient_authority()).ok(),
            warnings: &mut report.warnings,
            synced: BTreeSet::new(),
        };
        for record in records.iter().rev() {
            undo.apply(record);
            report.undone += 1;
        }
        undo.sync().map_err(io_at(&path))?;
        discard(root, base);
    }
    Ok(report)
}

/// Applies undo records, remembering what to sync afterwards.
struct Undoer<'a> {
    dirs: &'a [Option<Dir>],
    trash: Option<Dir>,
    warnings: &'a mut Vec<String>,
    /// Files (by place) and directories changed by the rollback.
    synced: BTreeSet<Place>,
}

impl Undoer<'_> {
    fn apply(&mut self, record: &Undo) {
        let result = match record {
            Undo::Length { at, id, len } => {
                self.restore_content(at, *id, |file| file.set_len(*len))
            }
            Undo::Bytes {
                at,
                id,
                offset,
                data,
            } => self.restore_content(at, *id, |file| file.write_all_at(data, *offset)),
            Undo::Created { at, dir } => self.remove_created(at, *dir),
            Undo::Removed { at, saved } => self.bring_back(at, saved),
            Undo::Renamed { from, to, replaced } => self.rename_back(from, to, replaced.as_ref()),
        };
        // One warning per file, not per record.
        if let Err(reason) = result {
            if !self.warnings.contains(&reason) {
                self.warnings.push(reason);
            }
        }
    }

    fn dir(&self, at: &Place) -> Result<&Dir, String> {
        self.dirs
            .get(at.preopen as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("`{}`: its preopened directory cannot be opened", at.path))
    }

    fn restore_content(
        &mut self,
        at: &Place,
        id: FileId,
        restore: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<(), String> {
        let fail = |what: &str| format!("`{}` not rolled back: {what}", at.path);
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let file = match self.dir(at)?.open_with(at.rel(), &options) {
            Ok(file) => file,
            Err(e) => return Err(fail(&e.to_string())),
        };
        let (found, _) = file_id(&file).map_err(|e| fail(&e.to_string()))?;
        if found != id {
            return Err(fail(
                "another file has its name now (it was replaced since)",
            ));
        }
        restore(&file).map_err(|e| fail(&e.to_string()))?;
        self.synced.insert(at.clone());
        Ok(())
    }

    fn exists(&self, at: &Place) -> Result<bool, String> {
        match self.dir(at)?.symlink_metadata(at.rel()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("`{}`: {e}", at.path)),
        }
    }

    fn remove_created(&mut self, at: &Place, dir: bool) -> Result<(), String> {
        if !self.exists(at)? {
            return Ok(()); // never created, or already undone
        }
        let parent = self.dir(at)?;
        let removed = if dir {
            parent.remove_dir(at.rel())
        } else {
            parent.remove_file_or_symlink(at.rel())
        };
        removed.map_err(|e| {
            format!(
                "`{}` (created since the checkpoint) not removed: {e}",
                at.path
            )
        })?;
        self.synced.insert(at.parent());
        Ok(())
    }

    fn put_back(&mut self, at: &Place, saved: &Saved) -> Result<(), String> {
        let fail = |e: io::Error| format!("`{}` not brought back: {e}", at.path);
        let parent = self.dir(at)?;
        match saved {
            Saved::Dir => parent.create_dir(at.rel()).map_err(fail)?,
            Saved::Symlink(target) => parent.symlink(target, at.rel()).map_err(fail)?,
            Saved::Trash(name) => {
                let Some(trash) = &self.trash else {
                    return Err(format!(
                        "`{}` not brought back: the kept copy is gone",
                        at.path
                    ));
                };
                trash.hard_link(name, parent, at.rel()).map_err(fail)?;
            }
        }
        self.synced.insert(at.parent());
        Ok(())
    }

    fn bring_back(&mut self, at: &Place, saved: &Saved) -> Result<(), String> {
        if self.exists(at)? {
            return Ok(()); // never removed, or already undone
        }
        self.put_back(at, saved)
    }

    fn rename_back(
        &mut self,
        from: &Place,
        to: &Place,
        replaced: Option<&Saved>,
    ) -> Result<(), String> {
        if self.exists(from)? || !self.exists(to)? {
            return Ok(()); // never renamed, or already undone
        }
        let source = self.dir(to)?;
        let target = self.dir(from)?;
        source
            .rename(to.rel(), target, from.rel())
            .map_err(|e| format!("`{}` not renamed back to `{}`: {e}", to.path, from.path))?;
        self.synced.insert(from.parent());
        self.synced.insert(to.parent());
        match replaced {
            Some(saved) => self.put_back(to, saved),
            None => Ok(()),
        }
    }

    /// Syncs the files and directories the rollback changed, so that the
    /// journal may be removed.
    fn sync(&self) -> io::Result<()> {
        for at in &self.synced {
            let Some(Some(dir)) = self.dirs.get(at.preopen as usize) else {
                continue;
            };
            match open_for_sync(dir, at) {
                Ok(handle) => handle.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_covered_once() {
        let mut saved = Vec::new();
        assert_eq!(uncovered(&saved, (0, 10)), vec![(0, 10)]);
        cover(&mut saved, (2, 4));
        cover(&mut saved, (6, 8));
        assert_eq!(uncovered(&saved, (0, 10)), vec![(0, 2), (4, 6), (8, 10)]);
        assert_eq!(uncovered(&saved, (3, 7)), vec![(4, 6)]);
        cover(&mut saved, (4, 6));
        assert_eq!(saved, vec![(2, 8)]);
        assert!(uncovered(&saved, (2, 8)).is_empty());
    }

    #[test]
    fn a_place_knows_its_directory() {
        let place = |path: &str| Place {
            preopen: 1,
            path: path.into(),
        };
        assert_eq!(place("a/b/c").parent(), place("a/b"));
        assert_eq!(place("c").parent(), place(""));
        assert_eq!(place("").rel(), ".");
    }
}
