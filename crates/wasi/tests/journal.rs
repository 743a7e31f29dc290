//! The file journal on its own: every kind of change is recorded before it is
//! made and undone by `roll_back`, newest first; a file replaced meanwhile is
//! reported, not clobbered; a torn tail is ignored; stale journals are dropped.

#![allow(clippy::unwrap_used)]

#[path = "support/tree.rs"]
mod support;
use support::tree;

use cap_std::fs::{Dir, File, FileExt, OpenOptions};
use ferrite_wasi::{
    journal::{FileJournal, Place},
    roll_back, Preopen,
};
use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// A fresh directory with `files/` (the preopen) and `journal/`.
fn setup(label: &str) -> (PathBuf, Vec<Preopen>, Dir) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!(
        "ferrite-journal-{}-{unique}-{label}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("files")).unwrap();
    let preopens = vec![Preopen {
        host_path: base.join("files"),
        guest_path: "/out".into(),
    }];
    let dir = Dir::open_ambient_dir(base.join("files"), cap_std::ambient_authority()).unwrap();
    (base, preopens, dir)
}

fn place(path: &str) -> Place {
    Place {
        preopen: 0,
        path: path.into(),
    }
}

fn open_rw(dir: &Dir, path: &str) -> File {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    dir.open_with(path, &options).unwrap()
}

#[test]
fn every_kind_of_change_is_rolled_back() {
    let (base, preopens, dir) = setup("kinds");
    let files = base.join("files");
    fs::write(files.join("log"), b"one\n").unwrap();
    fs::write(files.join("data"), b"0123456789").unwrap();
    fs::write(files.join("gone"), b"removed later").unwrap();
    fs::write(files.join("target"), b"replaced by a rename").unwrap();
    fs::write(files.join("moved"), b"renamed").unwrap();
    fs::create_dir(files.join("empty")).unwrap();
    let before = tree(&files);

    let mut journal = FileJournal::new(base.join("journal"), 5, &preopens);
    // Appends.
    let log = open_rw(&dir, "log");
    for line in [&b"two\n"[..], b"three\n"] {
        let end = log.metadata().unwrap().len();
        journal
            .before_write(&log, &place("log"), end, line.len() as u64)
            .unwrap();
        log.write_all_at(line, end).unwrap();
    }
    // Overwrites in place, overlapping, then a truncation and an extension.
    let data = open_rw(&dir, "data");
    journal.before_write(&data, &place("data"), 2, 4).unwrap();
    data.write_all_at(b"abcd", 2).unwrap();
    journal.before_write(&data, &place("data"), 4, 4).unwrap();
    data.write_all_at(b"WXYZ", 4).unwrap();
    journal.before_set_len(&data, &place("data"), 3).unwrap();
    data.set_len(3).unwrap();
    journal.before_set_len(&data, &place("data"), 20).unwrap();
    data.set_len(20).unwrap();
    // A created file and directory, a removed file and directory, a rename
    // over an existing file.
    assert!(journal.before_create(&place("new"), false).unwrap());
    let new = dir.create("new").unwrap();
    journal.created(&new).unwrap();
    new.write_all_at(b"fresh", 0).unwrap();
    assert!(journal.before_create(&place("newdir"), true).unwrap());
    dir.create_dir("newdir").unwrap();
    journal.before_remove_file(&place("gone")).unwrap();
    dir.remove_file("gone").unwrap();
    journal.before_remove_dir(&place("empty")).unwrap();
    dir.remove_dir("empty").unwrap();
    journal
        .before_rename(&place("moved"), &place("target"))
        .unwrap();
    dir.rename("moved", &dir, "target").unwrap();
    assert_ne!(tree(&files), before);
    journal.sync_files().unwrap();
    let records = journal.stats().records;
    drop(journal);

    let rollback = roll_back(&base.join("journal"), 5, &preopens).unwrap();
    assert!(rollback.warnings.is_empty(), "{:?}", rollback.warnings);
    assert_eq!(rollback.undone as u64, records);
    assert_eq!(tree(&files), before);
    assert!(
        fs::read_dir(base.join("journal")).unwrap().next().is_none(),
        "the applied journal and its trash are removed"
    );
    // Applying again finds nothing to do.
    assert_eq!(
        roll_back(&base.join("journal"), 5, &preopens)
            .unwrap()
            .undone,
        0
    );
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn appends_cost_one_record_per_epoch() {
    let (base, preopens, dir) = setup("appends");
    let mut journal = FileJournal::new(base.join("journal"), 1, &preopens);
    let log = dir.create("log").unwrap();
    drop(log);
    let log = open_rw(&dir, "log");
    for i in 0..100u64 {
        journal.before_write(&log, &place("log"), i, 1).unwrap();
        log.write_all_at(b"x", i).unwrap();
    }
    assert_eq!(journal.stats().records, 1, "only the old length");
    assert_eq!(journal.stats().syncs, 1);
    journal.sync_files().unwrap();
    journal.committed(2);
    journal.before_write(&log, &place("log"), 100, 1).unwrap();
    log.write_all_at(b"y", 100).unwrap();
    assert_eq!(journal.stats().records, 2, "a new epoch records again");
    drop(journal);
    // The journal of checkpoint 1 was discarded at the commit of 2: a
    // rollback to 2 keeps the 100 bytes and drops the one written after.
    roll_back(&base.join("journal"), 2, &preopens).unwrap();
    assert_eq!(fs::read(base.join("files/log")).unwrap(), vec![b'x'; 100]);
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn a_file_replaced_meanwhile_is_reported_not_clobbered() {
    let (base, preopens, dir) = setup("replaced");
    let files = base.join("files");
    fs::write(files.join("result"), b"checkpointed").unwrap();
    let mut journal = FileJournal::new(base.join("journal"), 3, &preopens);
    let result = open_rw(&dir, "result");
    journal
        .before_set_len(&result, &place("result"), 0)
        .unwrap();
    result.set_len(0).unwrap();
    drop((journal, result));
    // Someone else puts another file under the name before the resume.
    fs::remove_file(files.join("result")).unwrap();
    fs::write(files.join("result"), b"someone else's").unwrap();
    let rollback = roll_back(&base.join("journal"), 3, &preopens).unwrap();
    assert_eq!(rollback.warnings.len(), 1, "{:?}", rollback.warnings);
    assert!(
        rollback.warnings[0].contains("`result`")
            && rollback.warnings[0].contains("another file has its name"),
        "{:?}",
        rollback.warnings
    );
    assert_eq!(fs::read(files.join("result")).unwrap(), b"someone else's");
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn a_torn_tail_is_ignored_and_a_stale_journal_is_dropped() {
    let (base, preopens, dir) = setup("torn");
    let files = base.join("files");
    fs::write(files.join("a"), b"aaaa").unwrap();
    let mut journal = FileJournal::new(base.join("journal"), 7, &preopens);
    let a = open_rw(&dir, "a");
    journal.before_write(&a, &place("a"), 0, 2).unwrap();
    a.write_all_at(b"AA", 0).unwrap();
    drop(journal);
    // A record torn by the crash: a length and half a body.
    let path = base.join("journal/journal-0000000000000007");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    fs::write(&path, bytes).unwrap();
    // A journal of an older checkpoint: a later one committed after it.
    fs::write(base.join("journal/journal-0000000000000006"), b"stale").unwrap();
    let rollback = roll_back(&base.join("journal"), 7, &preopens).unwrap();
    assert!(rollback.warnings.is_empty(), "{:?}", rollback.warnings);
    assert_eq!(fs::read(files.join("a")).unwrap(), b"aaaa");
    assert!(!base.join("journal/journal-0000000000000006").exists());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn a_damaged_journal_header_is_an_error() {
    let (base, preopens, _dir) = setup("header");
    fs::create_dir_all(base.join("journal")).unwrap();
    fs::write(
        base.join("journal/journal-0000000000000002"),
        b"FJNL\x09\0\0\0 not this layout",
    )
    .unwrap();
    let error = roll_back(&base.join("journal"), 2, &preopens).unwrap_err();
    assert!(
        error.to_string().contains("version 9 is not supported"),
        "{error}"
    );
    fs::remove_dir_all(base).unwrap();
}
