//! Simulated media for Ferrite's tests.
//!
//! [`SimFs`] is a file system in memory, behind the same seam
//! ([`FileSystem`]) as the real one, that models what an operating system's
//! cache does to durability: every file write, create, link, rename, unlink
//! and mkdir is only *pending* until it is synced. A file's writes become
//! durable by an `fsync` of that file; a directory entry (a name created,
//! replaced or removed) by an `fsync` of the directory holding it, which
//! includes a new directory's own name in its parent.
//!
//! A power loss ([`SimFs::crash_at_sync`], or any moment the test chooses)
//! freezes the file system; [`SimFs::reboot`] then yields what the medium holds
//! afterwards: the durable state, with each pending operation kept, dropped
//! or (for a write) torn, independently and at random from a seed, the way
//! the crash tests of `SQLite` and ALICE explore the states a crash can leave. Any
//! moment between two syncs leaves a subset of the operations pending at the
//! next one, so crashing at every sync with random subsets reaches every
//! instant.
//!
//! It also fails syncs ([`SimFs::fail_sync_at`]) and models a write-back error
//! that the kernel reports only to descriptors open when it happened
//! ([`SimFs::writeback_error`]), the case where syncing a newly opened
//! descriptor reports success for lost data.
//!
//! ```
//! use ferrite_pagestore::fs::{FileHandle, FileSystem};
//! use ferrite_sim::SimFs;
//! use std::path::Path;
//!
//! let fs = SimFs::new();
//! fs.mkdir(Path::new("/d"))?;
//! let file = fs.create_new(Path::new("/d/f"))?;
//! file.write_all_at(b"data", 0)?;
//! file.sync()?; // the bytes are durable, the names `d` and `f` are not
//! fs.sync_dir(Path::new("/d"))?; // `f` is, `d` is not
//! assert!((0..20).any(|seed| fs.reboot(seed).open(Path::new("/d/f")).is_err()));
//! fs.sync_dir(Path::new("/"))?; // now all of it is durable
//! let after = fs.reboot(7);
//! let mut bytes = [0; 4];
//! after.open(Path::new("/d/f"))?.read_exact_at(&mut bytes, 0)?;
//! assert_eq!(&bytes, b"data");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! | Operation | Cost |
//! |-----------|------|
//! | every call | one mutex, a path walk through `BTreeMap`s |
//! | a write | a copy of the bytes into the pending list and the visible contents |
//! | [`SimFs::reboot`] | a copy of every file's durable bytes plus its kept writes |

use ferrite_pagestore::fs::{DirEntry, FileHandle, FileSystem};
use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Component, Path},
    sync::{Arc, Mutex, MutexGuard},
};

/// An inode number: an index into the inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ino(usize);

const ROOT: Ino = Ino(0);

/// A write not yet synced.
#[derive(Debug, Clone)]
struct Write {
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss for certain.
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Write>,
    /// Write-back errors so far; a descriptor reports the ones after those it
    /// has seen (as Linux's `errseq`).
    errors_seq: u64,
}

/// A change of one directory entry not yet synced.
#[derive(Debug, Clone)]
enum DirOp {
    Set(String, Ino),
    Remove(String),
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    entries: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Clone)]
enum Inode {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug, Clone)]
struct State {
    inodes: Vec<Inode>,
    /// Syncs (of files and directories) begun so far.
    syncs: u64,
    /// The sync (1-based) at whose start the power is lost.
    crash_at_sync: Option<u64>,
    /// The sync (1-based) that fails with an I/O error.
    fail_sync_at: Option<u64>,
    crashed: bool,
}

/// A simulated file system; clones share it. See the crate documentation.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimFs")
            .field("inodes", &state.inodes.len())
            .field("syncs", &state.syncs)
            .field("crashed", &state.crashed)
            .finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

#[cold]
fn error(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

#[cold]
fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

/// A small seeded generator (`SplitMix64`): the crash fates of one seed are
/// always the same. Public for other simulations of the medium.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The components of an absolute path.
fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => names.push(name.to_string_lossy().into_owned()),
            _ => return Err(error(io::ErrorKind::InvalidInput, "path not absolute")),
        }
    }
    Ok(names)
}

impl State {
    fn check(&self) -> io::Result<()> {
        if self.crashed {
            Err(power_lost())
        } else {
            Ok(())
        }
    }

    fn dir(&self, ino: Ino) -> io::Result<&DirNode> {
        match &self.inodes[ino.0] {
            Inode::Dir(dir) => Ok(dir),
            Inode::File(_) => Err(error(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> io::Result<&mut DirNode> {
        match &mut self.inodes[ino.0] {
            Inode::Dir(dir) => Ok(dir),
            Inode::File(_) => Err(error(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> &mut FileNode {
        match &mut self.inodes[ino.0] {
            Inode::File(file) => file,
            Inode::Dir(_) => unreachable!("handles are only opened on files"),
        }
    }

    /// The inode `path` names.
    fn resolve(&self, path: &Path) -> io::Result<Ino> {
        let mut at = ROOT;
        for name in components(path)? {
            at = *self
                .dir(at)?
                .entries
                .get(&name)
                .ok_or_else(|| error(io::ErrorKind::NotFound, "no such file or directory"))?;
        }
        Ok(at)
    }

    /// The directory holding `path`, and the last name of `path`.
    fn parent(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut names = components(path)?;
        let name = names
            .pop()
            .ok_or_else(|| error(io::ErrorKind::InvalidInput, "no name"))?;
        let mut at = ROOT;
        for part in names {
            at = *self
                .dir(at)?
                .entries
                .get(&part)
                .ok_or_else(|| error(io::ErrorKind::NotFound, "no such directory"))?;
        }
        self.dir(at)?;
        Ok((at, name))
    }

    fn set_entry(&mut self, dir: Ino, name: String, ino: Ino) -> io::Result<()> {
        let dir = self.dir_mut(dir)?;
        dir.entries.insert(name.clone(), ino);
        dir.pending.push(DirOp::Set(name, ino));
        Ok(())
    }

    fn remove_entry(&mut self, dir: Ino, name: &str) -> io::Result<Ino> {
        let dir = self.dir_mut(dir)?;
        let ino = dir
            .entries
            .remove(name)
            .ok_or_else(|| error(io::ErrorKind::NotFound, "no such file"))?;
        dir.pending.push(DirOp::Remove(name.to_string()));
        Ok(ino)
    }

    /// Counts a sync; the power loss or failure planned for it happens here.
    fn begin_sync(&mut self) -> io::Result<()> {
        self.check()?;
        self.syncs += 1;
        if self.crash_at_sync == Some(self.syncs) {
            self.crashed = true;
            return Err(power_lost());
        }
        if self.fail_sync_at == Some(self.syncs) {
            return Err(io::Error::other("simulated fsync failure"));
        }
        Ok(())
    }

    /// What a power loss leaves, with the fates drawn from `rng`.
    fn survivors(&self, rng: &mut Rng) -> State {
        let inodes = self
            .inodes
            .iter()
            .map(|inode| match inode {
                Inode::File(file) => Inode::File(file_after_crash(file, rng)),
                Inode::Dir(dir) => Inode::Dir(dir_after_crash(dir, rng)),
            })
            .collect();
        State {
            inodes,
            syncs: 0,
            crash_at_sync: None,
            fail_sync_at: None,
            crashed: false,
        }
    }
}

/// A write applied to `data`, growing it with zeros as needed.
fn apply(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = usize::try_from(offset).expect("simulated files fit in memory");
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

/// The contents of `file` after a power loss: the durable bytes, then each
/// pending write kept, dropped, or torn (a random prefix written, and half of
/// the time the file's size extended over the rest with zeros, as a file
/// system that allocated the blocks but never wrote them).
fn file_after_crash(file: &FileNode, rng: &mut Rng) -> FileNode {
    let mut data = file.durable.clone();
    for write in &file.pending {
        match rng.below(3) {
            0 => apply(&mut data, write.offset, &write.bytes),
            1 => {}
            _ => {
                let len = write.bytes.len() as u64;
                let kept = usize::try_from(rng.below(len)).unwrap_or(0);
                apply(&mut data, write.offset, &write.bytes[..kept]);
                if rng.below(2) == 0 {
                    let end = usize::try_from(write.offset + len).unwrap_or(usize::MAX);
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                }
            }
        }
    }
    FileNode {
        durable: data.clone(),
        data,
        pending: Vec::new(),
        errors_seq: 0,
    }
}

/// The entries of `dir` after a power loss: the durable ones, with each
/// pending change kept or dropped.
fn dir_after_crash(dir: &DirNode, rng: &mut Rng) -> DirNode {
    let mut entries = dir.durable.clone();
    for op in &dir.pending {
        if rng.below(2) == 0 {
            continue;
        }
        match op {
            DirOp::Set(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Remove(name) => {
                entries.remove(name);
            }
        }
    }
    DirNode {
        durable: entries.clone(),
        entries,
        pending: Vec::new(),
    }
}

impl SimFs {
    /// An empty file system: only the root directory `/`, durable.
    pub fn new() -> Self {
        Self::from_state(State {
            inodes: vec![Inode::Dir(DirNode::default())],
            syncs: 0,
            crash_at_sync: None,
            fail_sync_at: None,
            crashed: false,
        })
    }

    fn from_state(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Syncs begun so far (file and directory `fsync`s): the crash points.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Loses the power at the start of sync number `at` (1-based): that sync
    /// and every later call fail, and the state freezes for [`SimFs::reboot`].
    pub fn crash_at_sync(&self, at: u64) {
        self.lock().crash_at_sync = Some(at);
    }

    /// Loses the power now.
    pub fn crash(&self) {
        self.lock().crashed = true;
    }

    /// True once the power is lost.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Makes sync number `at` (1-based) fail with an I/O error; what it was to
    /// sync stays pending.
    pub fn fail_sync_at(&self, at: u64) {
        self.lock().fail_sync_at = Some(at);
    }

    /// The kernel fails to write back file `path` now: its pending writes are
    /// lost (reads still see them, until a power loss), and the error is
    /// reported once to each descriptor that was open, by its next sync, and
    /// never to descriptors opened later.
    ///
    /// # Errors
    /// `NotFound` if `path` names no file.
    pub fn writeback_error(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ino = state.resolve(path)?;
        let file = state.file_mut(ino);
        file.pending.clear();
        file.errors_seq += 1;
        Ok(())
    }

    /// The medium after a power loss (now, if it has not happened): a new file
    /// system with what survived, each pending operation's fate drawn from
    /// `seed`. This one is left as it is, so it can be rebooted with other seeds.
    pub fn reboot(&self, seed: u64) -> SimFs {
        let survivors = self.lock().survivors(&mut Rng(seed));
        Self::from_state(survivors)
    }

    /// Pending (unsynced) operations, files' writes and directories' changes.
    pub fn pending(&self) -> usize {
        self.lock()
            .inodes
            .iter()
            .map(|inode| match inode {
                Inode::File(file) => file.pending.len(),
                Inode::Dir(dir) => dir.pending.len(),
            })
            .sum()
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    ino: Ino,
    /// The write-back errors this descriptor has seen (or that predate it).
    errors_seen: Mutex<u64>,
}

impl SimFile {
    fn new(fs: &SimFs, state: &State, ino: Ino) -> Self {
        let errors_seq = match &state.inodes[ino.0] {
            Inode::File(file) => file.errors_seq,
            Inode::Dir(_) => 0,
        };
        Self {
            fs: fs.clone(),
            ino,
            errors_seen: Mutex::new(errors_seq),
        }
    }
}

impl FileHandle for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.check()?;
        let data = &state.file_mut(self.ino).data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| error(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.check()?;
        let file = state.file_mut(self.ino);
        apply(&mut file.data, offset, buf);
        file.pending.push(Write {
            offset,
            bytes: buf.to_vec(),
        });
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.fs.lock();
        state.check()?;
        Ok(state.file_mut(self.ino).data.len() as u64)
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.begin_sync()?;
        let file = state.file_mut(self.ino);
        let mut seen = self
            .errors_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if file.errors_seq > *seen {
            *seen = file.errors_seq;
            return Err(io::Error::other("simulated write-back error"));
        }
        let mut durable = std::mem::take(&mut file.durable);
        for write in file.pending.drain(..) {
            apply(&mut durable, write.offset, &write.bytes);
        }
        file.durable = durable;
        Ok(())
    }
}

impl FileSystem for SimFs {
    type File = SimFile;

    fn create_new(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.lock();
        state.check()?;
        let (dir, name) = state.parent(path)?;
        if state.dir(dir)?.entries.contains_key(&name) {
            return Err(error(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let ino = Ino(state.inodes.len());
        state.inodes.push(Inode::File(FileNode::default()));
        state.set_entry(dir, name, ino)?;
        Ok(SimFile::new(self, &state, ino))
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let state = self.lock();
        state.check()?;
        let ino = state.resolve(path)?;
        if let Inode::Dir(_) = state.inodes[ino.0] {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory"));
        }
        Ok(SimFile::new(self, &state, ino))
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check()?;
        let (dir, name) = state.parent(path)?;
        if state.dir(dir)?.entries.contains_key(&name) {
            return Err(error(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let ino = Ino(state.inodes.len());
        state.inodes.push(Inode::Dir(DirNode::default()));
        state.set_entry(dir, name, ino)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check()?;
        let ino = state.resolve(path)?;
        state.dir(ino)?;
        state.begin_sync()?;
        let dir = state.dir_mut(ino)?;
        dir.durable = dir.entries.clone();
        dir.pending.clear();
        Ok(())
    }

    fn link(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check()?;
        let ino = state.resolve(source)?;
        let (dir, name) = state.parent(target)?;
        if state.dir(dir)?.entries.contains_key(&name) {
            return Err(error(io::ErrorKind::AlreadyExists, "file exists"));
        }
        state.set_entry(dir, name, ino)
    }

    /// Two pending changes, one per directory, that a power loss may keep or
    /// drop separately (a real file system journals a rename as one; this
    /// model is harsher). `LocalStore` does not rename.
    fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check()?;
        let (source_dir, source_name) = state.parent(source)?;
        let (target_dir, target_name) = state.parent(target)?;
        let ino = state.remove_entry(source_dir, &source_name)?;
        state.set_entry(target_dir, target_name, ino)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check()?;
        let (dir, name) = state.parent(path)?;
        match state.dir(dir)?.entries.get(&name) {
            Some(ino) if matches!(state.inodes[ino.0], Inode::Dir(_)) => {
                return Err(error(io::ErrorKind::IsADirectory, "is a directory"));
            }
            _ => {}
        }
        state.remove_entry(dir, &name).map(|_| ())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.lock();
        state.check()?;
        let dir = state.dir(state.resolve(path)?)?;
        Ok(dir
            .entries
            .iter()
            .map(|(name, ino)| DirEntry {
                name: name.clone(),
                is_dir: matches!(state.inodes[ino.0], Inode::Dir(_)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(fs: &SimFs, path: &str, bytes: &[u8]) -> SimFile {
        let file = fs.create_new(Path::new(path)).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file
    }

    fn read(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
        let file = fs.open(Path::new(path)).ok()?;
        let mut bytes = vec![0; file.size().unwrap() as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        Some(bytes)
    }

    #[test]
    fn synced_file_and_directory_survive_every_crash() {
        let fs = SimFs::new();
        fs.mkdir(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        write(&fs, "/d/f", b"contents").sync().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        assert_eq!(fs.pending(), 0);
        for seed in 0..50 {
            assert_eq!(read(&fs.reboot(seed), "/d/f").unwrap(), b"contents");
        }
    }

    #[test]
    fn unsynced_operations_are_kept_dropped_or_torn() {
        let fs = SimFs::new();
        fs.mkdir(Path::new("/d")).unwrap();
        fs.mkdir(Path::new("/t")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        // Name synced, contents not: the contents may go or tear.
        write(&fs, "/t/torn", &[7; 100]);
        fs.sync_dir(Path::new("/t")).unwrap();
        // Contents synced, name not: the name may go.
        write(&fs, "/d/named", b"abc").sync().unwrap();
        // A directory whose own name was never synced takes its synced files along.
        fs.mkdir(Path::new("/e")).unwrap();
        write(&fs, "/e/f", b"x").sync().unwrap();
        fs.sync_dir(Path::new("/e")).unwrap();
        fs.crash();
        assert!(
            fs.sync_dir(Path::new("/")).is_err(),
            "frozen after the crash"
        );
        let (mut named, mut lost, mut whole, mut torn, mut gone) = (0, 0, 0, 0, 0);
        for seed in 0..200 {
            let after = fs.reboot(seed);
            match read(&after, "/d/named") {
                Some(bytes) => {
                    assert_eq!(bytes, b"abc");
                    named += 1;
                }
                None => lost += 1,
            }
            let bytes = read(&after, "/t/torn").unwrap();
            assert!(bytes.len() <= 100 && bytes.iter().all(|&b| b == 7 || b == 0));
            match bytes.iter().map(|&b| usize::from(b == 7)).sum::<usize>() {
                100 => whole += 1,
                0 => gone += 1,
                _ => torn += 1,
            }
            if read(&after, "/e/f").is_none() {
                assert!(after.list(Path::new("/e")).is_err() || after.pending() == 0);
            }
        }
        assert!(named > 0 && lost > 0, "{named} {lost}");
        assert!(whole > 0 && torn > 0 && gone > 0, "{whole} {torn} {gone}");
        // The same seed, the same state.
        assert_eq!(
            read(&fs.reboot(5), "/t/torn"),
            read(&fs.reboot(5), "/t/torn")
        );
    }

    #[test]
    fn crashes_at_a_chosen_sync_and_fails_another() {
        let fs = SimFs::new();
        fs.fail_sync_at(1);
        fs.crash_at_sync(3);
        let file = write(&fs, "/f", b"1");
        assert!(file.sync().is_err(), "sync 1 fails");
        file.sync().unwrap();
        assert!(fs.sync_dir(Path::new("/")).is_err(), "power lost at sync 3");
        assert!(fs.crashed());
        assert!(fs.create_new(Path::new("/g")).is_err());
        assert_eq!(fs.syncs(), 3);
    }

    #[test]
    fn a_writeback_error_reaches_only_descriptors_open_at_the_time() {
        let fs = SimFs::new();
        let written = write(&fs, "/f", b"data");
        let early = fs.open(Path::new("/f")).unwrap();
        fs.writeback_error(Path::new("/f")).unwrap();
        let late = fs.open(Path::new("/f")).unwrap();
        late.sync().unwrap();
        assert!(written.sync().is_err());
        written.sync().unwrap();
        assert!(early.sync().is_err(), "each open descriptor sees it once");
        // The data never reached the medium.
        fs.sync_dir(Path::new("/")).unwrap();
        for seed in 0..20 {
            assert_eq!(read(&fs.reboot(seed), "/f").unwrap(), b"");
        }
    }
}
