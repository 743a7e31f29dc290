//! A process's files and its journal through the `Process` API: a journal that
//! cannot be written stops the process before the change is made; resumes
//! after every checkpoint leave the files of an uninterrupted run.

#![allow(clippy::unwrap_used)]

#[path = "../../wasi/tests/support/tree.rs"]
mod support;
use support::tree;

use ferrite_pagestore::{MemStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessError, ProcessOptions};
use ferrite_wasi::{Preopen, WasiConfig};
use std::{
    fs,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU32, atomic::Ordering, Arc},
};

fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "ferrite-process-files-{}-{unique}-{label}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("out")).unwrap();
    dir
}

/// A WASI program of `tests/wasi` with `/out` preopened at `out`.
fn launch(name: &str, program: &str, out: &Path, args: &[&str]) -> Launch {
    let module = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/wasi")
            .join(program),
    )
    .unwrap();
    let mut wasi_args = vec![program.to_string()];
    wasi_args.extend(args.iter().map(ToString::to_string));
    Launch {
        export: None,
        args: Vec::new(),
        wasi: WasiConfig {
            args: wasi_args,
            env: Vec::new(),
            preopens: vec![Preopen {
                host_path: out.to_path_buf(),
                guest_path: "/out".into(),
            }],
        },
        ..Launch::invoke(name, module, "_start", Vec::new())
    }
}

fn options(journal: PathBuf) -> ProcessOptions {
    ProcessOptions {
        journal_dir: Some(journal),
        ..ProcessOptions::default()
    }
}

#[test]
fn a_journal_that_cannot_be_written_stops_the_process_before_the_change() {
    let base = temp_dir("unwritable");
    let journal = base.join("journal");
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let launch = launch("a", "appender.wasm", &base.join("out"), &["10", "0"]);
    let mut process = Process::start(backend, None, launch, &options(journal.clone())).unwrap();
    // The journal directory is made at the first change: make that impossible.
    fs::write(&journal, b"not a directory").unwrap();
    match process.run() {
        Err(ProcessError::Files(message)) => assert!(!message.is_empty()),
        other => panic!("expected a journal failure, got {other:?}"),
    }
    assert!(
        !base.join("out/log.txt").exists(),
        "the file was created although its undo record was not durable"
    );
    assert!(matches!(
        process.checkpoint(),
        Err(ProcessError::Poisoned(_) | ProcessError::Files(_))
    ));
    fs::remove_dir_all(base).unwrap();
}

/// Runs the ledger in slices, checkpointing after each; after every `crash_every`
/// slices it drops the process without a checkpoint (the work since the last
/// one is lost, as in a crash) and resumes it. Ends with the uninterrupted
/// run's status and files.
#[test]
fn resumes_after_lost_work_leave_the_files_of_an_uninterrupted_run() {
    let base = temp_dir("slices");
    let plain = base.join("plain");
    fs::create_dir_all(&plain).unwrap();
    let rounds = "30";
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let uninterrupted = Process::start(
        Arc::new(MemStore::new()),
        None,
        launch("p", "ledger.wasm", &plain, &[rounds, "quiet"]),
        &ProcessOptions::default(),
    )
    .unwrap()
    .run()
    .unwrap();

    let journal = base.join("journal");
    let out = base.join("out");
    let mut process = Process::start(
        backend.clone(),
        None,
        launch("l", "ledger.wasm", &out, &[rounds, "quiet"]),
        &options(journal.clone()),
    )
    .unwrap();
    let (mut slices, mut crashes) = (0, 0);
    let outcome = loop {
        match process.run_for(2_000_000).unwrap() {
            Outcome::Interrupted => {}
            done => break done,
        }
        slices += 1;
        if slices % 3 == 0 {
            // Work since the last checkpoint is lost, files changed meanwhile.
            drop(process);
            crashes += 1;
            let (resumed, report) =
                Process::resume(backend.clone(), None, "l", &options(journal.clone())).unwrap();
            assert!(
                report.files_not_undone.is_empty(),
                "{:?}",
                report.files_not_undone
            );
            process = resumed;
        } else {
            process.checkpoint().unwrap();
        }
    };
    assert_eq!(outcome, uninterrupted);
    assert!(crashes >= 5, "only {crashes} crashes");
    assert_eq!(tree(&out), tree(&plain), "after {crashes} crashes");
    fs::remove_dir_all(base).unwrap();
}

/// A file that cannot be synced fails the checkpoint it belonged to: the
/// checkpoint never commits and the process stops (fail-stop, as for the
/// store's own syncs).
#[test]
fn a_failed_file_sync_fails_the_checkpoint_and_stops_the_process() {
    use ferrite_wasi::{SyncHook, SyncPoint};
    let base = temp_dir("sync-fails");
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut options = options(base.join("journal"));
    options.journal_sync_hook = Some(SyncHook::new(|point| match point {
        SyncPoint::File(_) => Err(std::io::Error::other("injected EIO")),
        SyncPoint::Path(_) => Ok(()),
    }));
    let launch = launch("s", "appender.wasm", &base.join("out"), &["5", "0"]);
    let mut process = Process::start(backend.clone(), None, launch, &options).unwrap();
    let before = process.committed_epoch();
    let outcome = process.run().unwrap();
    match process.finish(&outcome) {
        Err(ProcessError::Files(message)) => assert!(message.contains("injected EIO"), "{message}"),
        other => panic!("expected the file sync to fail the checkpoint, got {other:?}"),
    }
    assert_eq!(
        process.committed_epoch(),
        before,
        "the checkpoint committed"
    );
    assert!(matches!(
        process.checkpoint(),
        Err(ProcessError::Poisoned(_))
    ));
    let epochs = ferrite_ckpt::ProcessStore::new(backend, "s")
        .unwrap()
        .epochs()
        .unwrap();
    assert_eq!(epochs.last().copied(), Some(before));
    fs::remove_dir_all(base).unwrap();
}
