//! Power loss at every sync point of a real process's files (issue 8, item 3).
//!
//! A WASI program (the ledger of `tests/wasi`: appends, in-place rewrites with
//! truncation, a rename over a file, in-place overwrites, directories made and
//! removed) runs as a persistent process with its file journal, checkpointed
//! after every slice. A model of the operating system's cache watches every
//! sync the journal makes (through `ProcessOptions::journal_sync_hook`): a
//! file's contents are durable as they were at its last sync, a directory's
//! entries as they were at its last sync. At sync point `k` the power fails
//! (the sync is refused and the run stops); the model then turns the files on
//! the disk into a state the medium may hold after the loss:
//!
//! - each file whose contents changed since its last sync keeps them, goes
//!   back to its synced contents, or is torn (a prefix of the new bytes over
//!   the old, at the old or the new length), chosen at random;
//! - each directory whose entries changed since its last sync keeps them or
//!   goes back to its synced entries as a whole (a rename within a directory
//!   is atomic, as on the file systems Ferrite runs on; the program renames
//!   only within one directory). A name that comes back refers to the inode
//!   it named (kept alive by another link, such as the journal's trash), or,
//!   if the inode is gone, to a new file with its synced contents.
//!
//! Then the process is resumed from its store (in memory: the store's own
//! crash states are swept by `ferrite-ckpt`'s `commit_protocol` test), its
//! journal rolled back, and run to the end. Each time: the resume starts from
//! the newest checkpoint whose commit returned, and the run ends with the
//! uninterrupted run's status and exactly its files. The number of crash
//! states checked is printed (`-- --nocapture`); `FERRITE_POWER_LOSS_SEEDS`
//! sets how many random states are built per sync point (default 1).

#![allow(clippy::unwrap_used)]

#[path = "../../wasi/tests/support/tree.rs"]
mod support;
use support::{tree, Tree};

use ferrite_pagestore::{MemStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessError, ProcessOptions};
use ferrite_sim::Rng;
use ferrite_wasi::{Preopen, SyncHook, SyncPoint, WasiConfig};
use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    io::{self, Read},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

const ROUNDS: &str = "15";
/// Instructions per slice: about one round of the ledger (the budget counts
/// from the last host call, so it must be below a round's work to stop it).
const SLICE: u64 = 2_000_000;

/// A file's identity: device, inode and birth time (inode numbers are reused
/// as soon as they are freed; a new file must not inherit a dead one's
/// durable contents).
type Inode = (u64, u64, u128);

fn inode(meta: &fs::Metadata) -> Inode {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.dev(), meta.ino(), born)
}

/// What the model of the medium knows.
#[derive(Debug, Default)]
struct Medium {
    /// Sync points seen so far.
    syncs: u64,
    /// The sync point at which the power fails.
    crash_at: Option<u64>,
    crashed: bool,
    /// Durable contents of files, by inode.
    files: BTreeMap<Inode, Vec<u8>>,
    /// Durable entries of directories, by path: name to (inode, is a directory).
    dirs: BTreeMap<PathBuf, BTreeMap<OsString, (Inode, bool)>>,
}

fn entries(dir: &Path) -> BTreeMap<OsString, (Inode, bool)> {
    let mut out = BTreeMap::new();
    if let Ok(read) = fs::read_dir(dir) {
        for entry in read {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            out.insert(entry.file_name(), (inode(&meta), meta.is_dir()));
        }
    }
    out
}

fn contents(file: &mut fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

impl Medium {
    fn observe(&mut self, point: SyncPoint<'_>) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("the power is off"));
        }
        self.syncs += 1;
        if self.crash_at == Some(self.syncs) {
            self.crashed = true;
            return Err(io::Error::other("simulated power loss"));
        }
        match point {
            SyncPoint::File(file) => {
                use std::os::fd::AsRawFd;
                // The descriptor may be write-only: read through /proc.
                let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                let bytes = fs::read(&path)?;
                self.files.insert(inode(&fs::metadata(&path)?), bytes);
            }
            SyncPoint::Path(path) => {
                let meta = fs::symlink_metadata(path)?;
                if meta.is_dir() {
                    self.dirs.insert(path.to_path_buf(), entries(path));
                } else {
                    let bytes = contents(&mut fs::File::open(path)?);
                    self.files.insert(inode(&meta), bytes);
                }
            }
        }
        Ok(())
    }
}

/// Every regular file below `dir`, hard-linked into `stash` by inode (so
/// that inodes survive the removal of their names while the state is built).
fn stash_inodes(dir: &Path, stash: &Path) {
    for (name, ((dev, ino, born), is_dir)) in entries(dir) {
        let path = dir.join(&name);
        if is_dir {
            stash_inodes(&path, stash);
        } else {
            let target = stash.join(format!("{dev}-{ino}-{born}"));
            if !target.exists() {
                fs::hard_link(&path, &target).unwrap();
            }
        }
    }
}

/// Rebuilds the entries of `dir` (and below) as the medium may hold them.
fn lose_entries(medium: &Medium, rng: &mut Rng, dir: &Path, stash: &Path) {
    let now = entries(dir);
    let synced = medium.dirs.get(dir).cloned().unwrap_or_default();
    if now != synced && rng.below(2) == 0 {
        for (name, entry) in &now {
            if synced.get(name) != Some(entry) {
                let path = dir.join(name);
                if entry.1 {
                    fs::remove_dir_all(&path).unwrap();
                } else {
                    fs::remove_file(&path).unwrap();
                }
            }
        }
        for (name, &((dev, ino, born), is_dir)) in &synced {
            let path = dir.join(name);
            if path.exists() {
                continue;
            }
            let kept = stash.join(format!("{dev}-{ino}-{born}"));
            if is_dir {
                fs::create_dir(&path).unwrap();
            } else if kept.exists() {
                fs::hard_link(&kept, &path).unwrap();
            } else {
                let bytes = medium
                    .files
                    .get(&(dev, ino, born))
                    .cloned()
                    .unwrap_or_default();
                fs::write(&path, bytes).unwrap();
            }
        }
    }
    for (name, (_, is_dir)) in entries(dir) {
        if is_dir {
            lose_entries(medium, rng, &dir.join(name), stash);
        }
    }
}

/// Gives every stashed inode contents the medium may hold.
fn lose_contents(medium: &Medium, rng: &mut Rng, stash: &Path) {
    for entry in fs::read_dir(stash).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::metadata(&path).unwrap();
        let now = fs::read(&path).unwrap();
        let synced = medium.files.get(&inode(&meta)).cloned().unwrap_or_default();
        if now == synced {
            continue;
        }
        let lost = match rng.below(3) {
            0 => continue,
            1 => synced,
            _ => {
                let longest = now.len().max(synced.len());
                let cut = rng.below(longest as u64 + 1) as usize;
                let len = if rng.below(2) == 0 {
                    now.len()
                } else {
                    synced.len()
                };
                (0..len)
                    .map(|i| {
                        let from = if i < cut { &now } else { &synced };
                        from.get(i).copied().unwrap_or(0)
                    })
                    .collect()
            }
        };
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(lost.len() as u64).unwrap();
        file.write_all_at(&lost, 0).unwrap();
    }
}

/// Turns the directory `base` into a state the medium may hold after a power
/// loss now.
fn power_loss(medium: &Medium, rng: &mut Rng, base: &Path) {
    let stash = base.with_extension("stash");
    let _ = fs::remove_dir_all(&stash);
    fs::create_dir(&stash).unwrap();
    stash_inodes(base, &stash);
    lose_contents(medium, rng, &stash);
    lose_entries(medium, rng, base, &stash);
    fs::remove_dir_all(&stash).unwrap();
}

fn ledger(out: &Path) -> Launch {
    let module =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi/ledger.wasm"))
            .unwrap();
    Launch {
        export: None,
        args: Vec::new(),
        wasi: WasiConfig {
            args: vec!["ledger".into(), ROUNDS.into(), "quiet".into()],
            env: Vec::new(),
            preopens: vec![Preopen {
                host_path: out.to_path_buf(),
                guest_path: "/out".into(),
            }],
        },
        ..Launch::invoke("ledger", module, "_start", Vec::new())
    }
}

/// Runs the process in slices with a checkpoint after each, to its end or to
/// the power loss; the epoch of the last checkpoint that returned.
fn run(process: &mut Process, committed: &mut u64) -> Result<Outcome, ProcessError> {
    loop {
        match process.run_for(SLICE)? {
            Outcome::Interrupted => *committed = process.checkpoint()?.epoch,
            done => {
                *committed = process.finish(&done)?.epoch;
                return Ok(done);
            }
        }
    }
}

struct Case {
    base: PathBuf,
    medium: Arc<Mutex<Medium>>,
}

impl Case {
    fn new(label: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("ferrite-power-loss-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("out")).unwrap();
        let mut medium = Medium::default();
        // What exists at the start is durable.
        medium.dirs.insert(base.clone(), entries(&base));
        medium
            .dirs
            .insert(base.join("out"), entries(&base.join("out")));
        Self {
            base,
            medium: Arc::new(Mutex::new(medium)),
        }
    }

    fn options(&self) -> ProcessOptions {
        let medium = self.medium.clone();
        ProcessOptions {
            journal_dir: Some(self.base.join("journal")),
            journal_sync_hook: Some(SyncHook::new(move |point| {
                medium.lock().unwrap().observe(point)
            })),
            ..ProcessOptions::default()
        }
    }

    /// Runs to sync point `crash_at` (or the end), loses power there, resumes
    /// and runs to the end. Returns the outcome, the files, and how many sync
    /// points the first run saw.
    fn run(&self, crash_at: Option<u64>, seed: u64) -> (Outcome, Tree, u64) {
        self.medium.lock().unwrap().crash_at = crash_at;
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let out = self.base.join("out");
        let mut process =
            Process::start(backend.clone(), None, ledger(&out), &self.options()).unwrap();
        let mut committed = process.committed_epoch();
        let first = run(&mut process, &mut committed);
        drop(process);
        let syncs = self.medium.lock().unwrap().syncs;
        let outcome = match first {
            Ok(outcome) => {
                assert!(
                    crash_at.is_none_or(|k| k > syncs),
                    "no crash at sync {crash_at:?}"
                );
                outcome
            }
            Err(error) => {
                assert!(crash_at.is_some(), "{error}");
                let mut medium = self.medium.lock().unwrap();
                power_loss(&medium, &mut Rng::new(seed), &self.base);
                medium.crashed = false;
                medium.crash_at = None;
                drop(medium);
                let (mut resumed, report) =
                    Process::resume(backend, None, "ledger", &self.options()).unwrap();
                assert_eq!(report.epoch, committed, "resumed from an older checkpoint");
                assert!(
                    report.files_not_undone.is_empty(),
                    "sync {crash_at:?} seed {seed}: {:?}",
                    report.files_not_undone
                );
                run(&mut resumed, &mut committed).unwrap()
            }
        };
        (outcome, tree(&out), syncs)
    }
}

#[test]
fn a_power_loss_at_any_sync_point_leaves_the_files_of_an_uninterrupted_run() {
    let seeds: u64 = std::env::var("FERRITE_POWER_LOSS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let reference = Case::new("reference");
    let (expected, expected_files, sync_points) = reference.run(None, 0);
    assert!(matches!(
        expected,
        Outcome::Returned(_) | Outcome::Exited(_)
    ));
    assert!(sync_points > 20, "only {sync_points} sync points");
    fs::remove_dir_all(&reference.base).unwrap();
    let mut states = 0;
    for crash_at in 1..=sync_points {
        for seed in 0..seeds {
            let case = Case::new(&format!("{crash_at}-{seed}"));
            let (outcome, files, _) = case.run(Some(crash_at), crash_at * 1000 + seed);
            assert_eq!(
                outcome, expected,
                "power loss at sync {crash_at}, seed {seed}"
            );
            assert!(
                files == expected_files,
                "power loss at sync {crash_at}, seed {seed}: files differ: {:?} vs {:?}",
                files
                    .iter()
                    .map(|(n, c)| (n, c.as_ref().map(Vec::len)))
                    .collect::<Vec<_>>(),
                expected_files
                    .iter()
                    .map(|(n, c)| (n, c.as_ref().map(Vec::len)))
                    .collect::<Vec<_>>()
            );
            fs::remove_dir_all(&case.base).unwrap();
            states += 1;
        }
    }
    println!("power loss: {states} crash states checked over {sync_points} sync points");
}
