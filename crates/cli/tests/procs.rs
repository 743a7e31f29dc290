//! Scenarios for `ferrite ps`, `ferrite inspect` and `ferrite rm` on stores whose
//! processes are made through the checkpoint library, as a runner makes them.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{
    Invocation, Manifest, ManifestBody, Modules, ProcessLock, ProcessStatus, ProcessStore,
};
use ferrite_pagestore::{LocalStore, StorageBackend};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

const PAGE: usize = 4096;
/// 2023-11-14 22:13:20 UTC: the time of each process's first checkpoint; later
/// ones follow a minute apart.
const T0_UNIX_MS: u64 = 1_700_000_000_000;
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A fresh, empty directory for a store (not created).
fn temp_store(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("procs-tests")
        .join(format!("{}-{unique}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Commits one checkpoint per status to process `name` in the store at `root`:
/// checkpoint `n` (from 0) writes pages `0..=n` and records a heap of `n + 1`
/// times 64 KiB. Returns the module's hash.
fn make_process(root: &Path, name: &str, statuses: &[ProcessStatus]) -> String {
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(root).unwrap());
    let module = Modules::new(backend.clone()).put(MODULE).unwrap();
    let process = ProcessStore::new(backend, name).unwrap();
    let mut latest: Option<Manifest> = None;
    for (n, status) in (0u32..).zip(statuses) {
        let mut pages = process.page_store(latest.as_ref(), PAGE).unwrap();
        for page in 0..=n {
            pages.write_page(page, &[n as u8 + 1; PAGE]).unwrap();
        }
        let map = pages.commit_maps().unwrap();
        let mut body = ManifestBody {
            process: name.into(),
            module_sha256: module.clone(),
            page_size: PAGE as u32,
            map_chunks: vec![],
            map_deltas: Vec::new(),
            segments: vec![],
            status: status.clone(),
            invocation: Invocation {
                export: Some("main".into()),
                args: vec!["7".into()],
                ..Invocation::default()
            },
            engine: vec![0; 100],
            host: vec![0; 10],
            created_unix_ms: T0_UNIX_MS + u64::from(n) * 60_000,
            checkpoint_count: u64::from(n) + 1,
            heap_bytes: (u64::from(n) + 1) * 65_536,
            pages_written: 0,
            pause_us: 0,
            resident_pages: Vec::new(),
            generations: Vec::new(),
            writer: String::new(),
        };
        body.set_page_map(&map);
        let manifest = Manifest {
            epoch: pages.epoch(),
            parent: latest.as_ref().map_or(0, |m| m.epoch),
            body,
        };
        process.commit(&manifest).unwrap();
        latest = Some(manifest);
    }
    module
}

/// Flips one bit in the body of the manifest of `epoch`.
fn damage_manifest(root: &Path, name: &str, epoch: u64) {
    let path = manifest_path(root, name, epoch);
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x10;
    fs::write(&path, bytes).unwrap();
}

fn manifest_path(root: &Path, name: &str, epoch: u64) -> PathBuf {
    root.join(format!("procs/{name}/manifests/{epoch:016x}"))
}

fn ferrite(args: &[&str], root: &Path) -> Output {
    let mut all = args.to_vec();
    all.extend(["--store", root.to_str().unwrap()]);
    ferrite_with(&all, &[])
}

/// Runs `ferrite` with the store variables cleared, then `vars` set.
fn ferrite_with(args: &[&str], vars: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    command
        .args(args)
        .env_remove("FERRITE_STORE")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("ferrite runs")
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).unwrap()
}

fn stderr(output: &Output) -> &str {
    std::str::from_utf8(&output.stderr).unwrap()
}

/// Asserts success with nothing on stderr; returns stdout.
#[track_caller]
fn success(output: &Output) -> &str {
    assert_eq!(stderr(output), "", "stderr");
    assert_eq!(output.status.code(), Some(0), "status");
    stdout(output)
}

/// Asserts failure with status 1 and exactly `message` on stderr.
#[track_caller]
fn failure(output: &Output, message: &str) {
    assert_eq!(stderr(output), message, "stderr");
    assert_eq!(output.status.code(), Some(1), "status");
    assert_eq!(stdout(output), "", "stdout");
}

/// The cells of the `ps` row of `name`, split on runs of two or more spaces.
#[track_caller]
fn ps_row(table: &str, name: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|line| line.split("  ").next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn ps_shows_each_state_with_heap_size_count_and_time() {
    let root = temp_store("ps");
    make_process(
        &root,
        "calm",
        &[ProcessStatus::Running, ProcessStatus::Running],
    );
    make_process(&root, "done", &[ProcessStatus::Exited { code: 3 }]);
    let trapped = ProcessStatus::Trapped {
        message: "integer divide by zero".into(),
    };
    make_process(&root, "oops", &[ProcessStatus::Running, trapped]);
    make_process(&root, "live", &[ProcessStatus::Running]);
    make_process(&root, "torn", &[ProcessStatus::Running]);
    damage_manifest(&root, "torn", 1);
    // A run that wrote pages but never committed a checkpoint.
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&root).unwrap());
    let fresh = ProcessStore::new(backend, "fresh").unwrap();
    let mut pages = fresh.page_store(None, PAGE).unwrap();
    pages.write_page(0, &[1; PAGE]).unwrap();
    pages.commit_maps().unwrap();

    let lock = ProcessLock::acquire(&root, "live").unwrap();
    let output = ferrite(&["ps"], &root);
    drop(lock);
    let table = success(&output);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header
            .split("  ")
            .filter(|h| !h.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        [
            "NAME",
            "STATE",
            "HEAP",
            "STORED",
            "CHECKPOINTS",
            "LAST CHECKPOINT"
        ]
    );
    let names: Vec<_> = table
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["calm", "done", "fresh", "live", "oops", "torn"]);

    let calm = ps_row(table, "calm");
    assert_eq!(calm[..3], ["calm", "stopped", "128 KiB"]);
    assert_eq!(calm[4..], ["2", "2023-11-14 22:14:20"]);
    assert!(calm[3].ends_with("KiB"), "stored size {}", calm[3]);
    let done = ps_row(table, "done");
    assert_eq!(done[..3], ["done", "exited 3", "64 KiB"]);
    assert_eq!(done[4..], ["1", "2023-11-14 22:13:20"]);
    assert_eq!(ps_row(table, "oops")[1], "trapped");
    assert_eq!(ps_row(table, "live")[1], "running");
    let torn = ps_row(table, "torn");
    assert_eq!(torn[..3], ["torn", "damaged", "-"]);
    assert_eq!(torn[4..], ["-", "-"]);
    assert_eq!(ps_row(table, "fresh")[1], "no checkpoint");

    // Without the lock, the running process shows as resumable.
    assert_eq!(
        ps_row(success(&ferrite(&["ps"], &root)), "live")[1],
        "stopped"
    );
}

#[test]
fn ps_stored_size_is_the_bytes_of_the_process_objects() {
    let root = temp_store("stored");
    make_process(&root, "p", &[ProcessStatus::Running]);
    let mut bytes = 0;
    let mut stack = vec![root.join("procs/p")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                bytes += entry.metadata().unwrap().len();
            }
        }
    }
    let expected = format!("{:.1} KiB", bytes as f64 / 1024.0).replace(".0 ", " ");
    let table = success(&ferrite(&["ps"], &root)).to_string();
    assert_eq!(ps_row(&table, "p")[3], expected);
}

#[test]
fn ps_of_a_missing_store_is_empty_and_creates_nothing() {
    let root = temp_store("missing");
    let table = success(&ferrite(&["ps"], &root)).to_string();
    assert_eq!(table.lines().count(), 1, "header only:\n{table}");
    assert!(table.starts_with("NAME"));
    assert!(!root.exists(), "ps must not create the store");
    failure(
        &ferrite(&["inspect", "p"], &root),
        &format!("error: no process named p in store {}\n", root.display()),
    );
    assert!(!root.exists(), "inspect must not create the store");
}

#[test]
fn ferrite_store_then_xdg_data_home_then_home_locate_the_store() {
    let root = temp_store("env");
    make_process(&root, "env-proc", &[ProcessStatus::Running]);
    let listed = |output: &Output| success(output).contains("env-proc");
    assert!(listed(&ferrite_with(&["ps"], &[("FERRITE_STORE", &root)])));

    let data = temp_store("xdg");
    make_process(&data.join("ferrite"), "env-proc", &[ProcessStatus::Running]);
    assert!(listed(&ferrite_with(&["ps"], &[("XDG_DATA_HOME", &data)])));

    let home = temp_store("home");
    make_process(
        &home.join(".local/share/ferrite"),
        "env-proc",
        &[ProcessStatus::Running],
    );
    assert!(listed(&ferrite_with(&["ps"], &[("HOME", &home)])));

    // --store wins over the variable.
    let empty = temp_store("empty");
    let output = ferrite_with(
        &["ps", "--store", empty.to_str().unwrap()],
        &[("FERRITE_STORE", &root)],
    );
    assert!(!listed(&output));
    failure(
        &ferrite_with(&["ps"], &[]),
        "error: cannot find the store: give --store PATH, or set FERRITE_STORE or HOME\n",
    );
}

#[test]
fn inspect_shows_the_history_and_a_damaged_manifest_without_moving_it() {
    let root = temp_store("inspect");
    let statuses = [
        ProcessStatus::Running,
        ProcessStatus::Running,
        ProcessStatus::Exited { code: 0 },
    ];
    let module = make_process(&root, "job", &statuses);
    damage_manifest(&root, "job", 3);
    let damaged = fs::read(manifest_path(&root, "job", 3)).unwrap();

    let text = success(&ferrite(&["inspect", "job"], &root)).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "process   job");
    assert_eq!(lines[1], format!("store     {}", root.display()));
    // The newest valid checkpoint is epoch 2, which was running.
    assert_eq!(lines[2], "state     stopped");
    assert_eq!(lines[3], format!("module    sha256 {module} (8 B)"));
    assert_eq!(lines[4], "invoked   --invoke main 7");
    let table: Vec<&str> = lines[6..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        cells(table[0]),
        [
            "EPOCH",
            "PARENT",
            "CREATED (UTC)",
            "STATUS",
            "HEAP",
            "CHECKPOINTS",
            "PAGES WRITTEN",
            "PAUSE",
            "ENGINE",
            "HOST",
            "MAP CHUNKS + DELTAS",
            "SEGMENTS",
            "LIVE PAGES"
        ]
    );
    assert_eq!(
        cells(table[1]),
        [
            "1",
            "0",
            "2023-11-14 22:13:20",
            "running",
            "64 KiB",
            "1",
            "0",
            "0 us",
            "100 B",
            "10 B",
            "0 + 1",
            "1",
            "1"
        ]
    );
    assert_eq!(
        cells(table[2]),
        [
            "2",
            "1",
            "2023-11-14 22:14:20",
            "running",
            "128 KiB",
            "2",
            "0",
            "0 us",
            "100 B",
            "10 B",
            "0 + 1",
            "1",
            "2"
        ]
    );
    assert_eq!(
        cells(table[3]),
        ["3", "damaged: manifest checksum mismatch (corrupt)"]
    );
    assert_eq!(table.len(), 4, "{text}");
    let objects = lines.last().unwrap();
    assert!(
        objects.starts_with("objects   manifests 3 (")
            && objects.contains("segments 3 (")
            && objects.contains("maps 3 (")
            && objects.contains("quarantine 0 (0 B), leases 0 (0 B); total 9 ("),
        "{objects}"
    );

    // Inspection is read-only: nothing quarantined, the damaged manifest as it was.
    assert_eq!(fs::read(manifest_path(&root, "job", 3)).unwrap(), damaged);
    success(&ferrite(&["ps"], &root));
    assert!(!root.join("procs/job/quarantine").exists());
    assert_eq!(fs::read(manifest_path(&root, "job", 3)).unwrap(), damaged);
}

#[test]
fn inspect_of_a_trapped_process_shows_the_trap() {
    let root = temp_store("trap");
    let trapped = ProcessStatus::Trapped {
        message: "unreachable executed".into(),
    };
    make_process(&root, "t", &[trapped]);
    let text = success(&ferrite(&["inspect", "t"], &root)).to_string();
    assert!(text.contains("\nstate     trapped\n"), "{text}");
    assert!(
        text.contains("\ntrap      unreachable executed\n"),
        "{text}"
    );
}

#[test]
fn inspect_and_rm_of_an_unknown_process_fail() {
    let root = temp_store("unknown");
    make_process(&root, "known", &[ProcessStatus::Running]);
    let missing = format!(
        "error: no process named ghost in store {}\n",
        root.display()
    );
    failure(&ferrite(&["inspect", "ghost"], &root), &missing);
    failure(&ferrite(&["rm", "ghost"], &root), &missing);
    let output = ferrite(&["inspect", "../known"], &root);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("error: invalid process name"));
}

#[test]
fn rm_is_refused_while_running_then_removes_everything_of_the_process() {
    let root = temp_store("rm");
    make_process(
        &root,
        "gone",
        &[ProcessStatus::Running, ProcessStatus::Running],
    );
    make_process(&root, "kept", &[ProcessStatus::Running]);
    let lock = ProcessLock::acquire(&root, "gone").unwrap();
    failure(
        &ferrite(&["rm", "gone"], &root),
        &format!(
            "error: process gone is running (pid {}); stop it before removing it\n",
            std::process::id()
        ),
    );
    assert!(manifest_path(&root, "gone", 2).exists(), "nothing removed");
    drop(lock);

    assert_eq!(success(&ferrite(&["rm", "gone"], &root)), "removed gone\n");
    assert!(!root.join("procs/gone").exists());
    assert!(!root.join("locks/gone").exists());
    assert!(manifest_path(&root, "kept", 1).exists());
    assert_eq!(
        fs::read_dir(root.join("modules")).unwrap().count(),
        1,
        "module kept"
    );
    let table = success(&ferrite(&["ps"], &root)).to_string();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert_eq!(ps_row(&table, "kept")[1], "stopped");
    failure(
        &ferrite(&["rm", "gone"], &root),
        &format!("error: no process named gone in store {}\n", root.display()),
    );
}

#[test]
fn a_process_that_holds_its_lock_but_wrote_nothing_is_listed_as_running() {
    let root = temp_store("starting");
    make_process(&root, "other", &[ProcessStatus::Running]);
    let lock = ProcessLock::acquire(&root, "starting").unwrap();
    let table = success(&ferrite(&["ps"], &root)).to_string();
    let row = ps_row(&table, "starting");
    assert_eq!(row[..4], ["starting", "running", "-", "0 B"]);
    let text = success(&ferrite(&["inspect", "starting"], &root)).to_string();
    assert!(
        text.contains("\nstate     running\n\nno checkpoints\n"),
        "{text}"
    );
    drop(lock);
    assert!(!success(&ferrite(&["ps"], &root)).contains("starting"));
}

#[test]
fn each_store_subcommand_has_help() {
    for (command, expected) in [
        ("ps", "List the processes of a store"),
        ("inspect", "Show the checkpoint history of a process"),
        ("rm", "Remove a process and all its checkpoints"),
    ] {
        let text = success(&ferrite_with(&[command, "--help"], &[])).to_string();
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("--store <PATH|URL>"), "{text}");
    }
}
