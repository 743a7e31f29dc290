//! `S3Store` against a real S3 gateway: the project's throw-away Ceph RADOS
//! Gateway. These tests need it running:
//!
//! ```text
//! scripts/test.sh           # installs, starts the gateway, runs all tests, stops it
//! ```
//!
//! or by hand: `scripts/s3/up.sh > s3.env`, export its variables, then
//! `cargo test -p ferrite-remote`. Without the `AWS_*` variables they fail
//! (never skip), naming `scripts/s3/up.sh`.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{Invocation, Manifest, ManifestBody, ProcessStatus, ProcessStore};
use ferrite_pagestore::{get_bounded, PageMapRef, StorageBackend, StorageError};
use ferrite_remote::{RemoteError, S3Options, S3Store};
use object_store::aws::AmazonS3Builder;
use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Barrier,
    },
    thread,
    time::{SystemTime, UNIX_EPOCH},
};

const NEEDS: &str = "needs the Ceph gateway: scripts/s3/up.sh";

/// The gateway's variables, or a failure that says how to start it.
fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need an S3 gateway. Run scripts/test.sh, or \
             start one with scripts/s3/up.sh and export the AWS_* variables it prints"
        )
    })
}

/// A URL of a fresh prefix in the gateway's bucket, unique to this test run.
fn fresh_url(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        env(name);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "s3://{}/tests/{test}-{}-{nanos}-{seq}",
        env("AWS_BUCKET"),
        std::process::id()
    )
}

fn open(url: &str) -> S3Store {
    S3Store::open(url, &S3Options::default()).unwrap()
}

#[test]
fn the_gateway_honours_create_only_puts() {
    let store = open(&fresh_url("probe"));
    assert!(store.honours_create_only(), "{NEEDS}");
    store.put_new("k", b"first").unwrap();
    let again = store.put_new("k", b"second");
    assert!(
        matches!(again, Err(StorageError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(store.get("k", None).unwrap(), b"first");
}

#[test]
fn of_sixteen_racing_creates_exactly_one_wins() {
    const RUNNERS: usize = 16;
    let url = fresh_url("race");
    // Each runner has its own client and connections, as separate machines do.
    let stores: Vec<S3Store> = (0..RUNNERS).map(|_| open(&url)).collect();
    let start = Arc::new(Barrier::new(RUNNERS));
    let outcomes: Vec<Result<(), StorageError>> = thread::scope(|scope| {
        let racers: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(runner, store)| {
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    store.put_new("procs/p/manifests/0000000000000002", &[runner as u8; 4096])
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..RUNNERS).filter(|&r| outcomes[r].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for outcome in outcomes.iter().filter(|o| o.is_err()) {
        assert!(
            matches!(outcome, Err(StorageError::AlreadyExists { .. })),
            "{outcome:?}"
        );
    }
    let stored = stores[0]
        .get("procs/p/manifests/0000000000000002", None)
        .unwrap();
    assert_eq!(stored, vec![winners[0] as u8; 4096]);
}

#[test]
fn ranged_gets_return_the_bytes_that_exist() {
    let store = open(&fresh_url("ranges"));
    store.put_new("k", b"0123456789").unwrap();
    store.put_new("empty", b"").unwrap();
    assert_eq!(store.get("k", Some(2..5)).unwrap(), b"234");
    assert_eq!(store.get("k", Some(7..100)).unwrap(), b"789");
    assert_eq!(store.get("k", Some(10..20)).unwrap(), b"");
    assert_eq!(store.get("k", Some(50..60)).unwrap(), b"");
    assert_eq!(store.get("k", Some(4..4)).unwrap(), b"");
    assert_eq!(store.get("empty", Some(0..8)).unwrap(), b"");
    assert_eq!(store.get("empty", None).unwrap(), b"");
    assert_eq!(get_bounded(&store, "k", 9).unwrap(), None);
    assert!(store.get("missing", Some(0..4)).unwrap_err().is_not_found());
    assert!(store.get("missing", None).unwrap_err().is_not_found());

    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    store.put_new("segment", &big).unwrap();
    let at = 300_000u64;
    assert_eq!(
        store.get("segment", Some(at..at + 65536)).unwrap(),
        &big[300_000..365_536]
    );
    assert_eq!(store.get("segment", None).unwrap(), big);
}

#[test]
fn listing_is_sorted_by_string_prefix_and_delete_is_idempotent() {
    let url = fresh_url("list");
    let store = open(&url);
    let neighbour = open(&format!("{url}x"));
    neighbour.put_new("a/b/1", b"not ours").unwrap();
    for key in ["a/b/2", "a/b/1", "a/bc/3", "a/c", "b"] {
        store.put_new(key, key.as_bytes()).unwrap();
    }
    assert_eq!(
        store.list("").unwrap(),
        ["a/b/1", "a/b/2", "a/bc/3", "a/c", "b"]
    );
    assert_eq!(store.list("a/b").unwrap(), ["a/b/1", "a/b/2", "a/bc/3"]);
    assert_eq!(store.list("a/b/").unwrap(), ["a/b/1", "a/b/2"]);
    assert!(store.list("z/").unwrap().is_empty());
    store.delete("a/b/1").unwrap();
    store.delete("a/b/1").unwrap();
    store.delete("never/was").unwrap();
    assert_eq!(store.list("a/b/").unwrap(), ["a/b/2"]);
    assert_eq!(neighbour.list("").unwrap(), ["a/b/1"]);
}

#[test]
fn open_names_what_is_wrong() {
    let url = fresh_url("open");
    let fast = S3Options {
        attempts_max: 2,
        backoff_ms_first: 10,
        connect_timeout_ms: 1_000,
        ..S3Options::default()
    };
    let expect = |builder: AmazonS3Builder, url: &str, hint: &str| {
        let error = S3Store::open_with(url, builder, &fast).unwrap_err();
        assert!(matches!(error, RemoteError::Open { .. }), "{error}");
        assert!(error.to_string().contains(hint), "{error}");
    };
    expect(
        AmazonS3Builder::from_env().with_secret_access_key("wrong"),
        &url,
        "credentials were refused",
    );
    let no_bucket = url.replacen(&env("AWS_BUCKET"), "no-such-bucket-ferrite", 1);
    expect(
        AmazonS3Builder::from_env(),
        &no_bucket,
        "bucket does not exist",
    );
    // Port 9 (discard) is not served on the loopback of a test machine.
    expect(
        AmazonS3Builder::from_env().with_endpoint("http://127.0.0.1:9"),
        &url,
        "endpoint cannot be reached",
    );
}

const PAGE: usize = 4096;

fn body(name: &str, map: &PageMapRef, count: u64) -> ManifestBody {
    let mut body = ManifestBody {
        process: name.into(),
        module_sha256: String::new(),
        page_size: PAGE as u32,
        map_chunks: vec![],
        map_deltas: Vec::new(),
        segments: vec![],
        status: ProcessStatus::Running,
        invocation: Invocation::default(),
        engine: vec![],
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: count,
        heap_bytes: 1 << 20,
        pages_written: 1,
        pause_us: 0,
        resident_pages: vec![],
        generations: Vec::new(),
        writer: String::new(),
    };
    body.set_page_map(map);
    body
}

/// The page `page` holds after checkpoint `epoch` of the round trip.
fn page_at(page: u32, epoch: u64) -> Vec<u8> {
    let last_written = (1..=epoch)
        .rev()
        .find(|e| u64::from(page).is_multiple_of(*e));
    match last_written {
        Some(e) => vec![(page as u64 * 7 + e) as u8; PAGE],
        None => vec![0; PAGE],
    }
}

#[test]
fn a_checkpoint_round_trips_through_the_gateway() {
    const PAGES: u32 = 64;
    const CHECKPOINTS: u64 = 3;
    let url = fresh_url("ckpt");
    let backend: Arc<dyn StorageBackend> = Arc::new(open(&url));
    let process = ProcessStore::new(backend, "demo").unwrap();
    let mut pages = process.page_store(None, PAGE).unwrap();
    for epoch in 1..=CHECKPOINTS {
        // Checkpoint `epoch` rewrites the pages whose number it divides.
        for page in (0..PAGES).filter(|p| u64::from(*p).is_multiple_of(epoch)) {
            pages.write_page(page, &page_at(page, epoch)).unwrap();
        }
        let map = pages.commit_maps().unwrap();
        let manifest = Manifest {
            epoch,
            parent: epoch - 1,
            body: body("demo", &map, epoch),
        };
        process.commit(&manifest).unwrap();
        pages.committed(map);
    }
    drop(pages);

    // A new runner, on a new client, recovers and reads every page back.
    let backend: Arc<dyn StorageBackend> = Arc::new(open(&url));
    let process = ProcessStore::new(backend, "demo").unwrap();
    let recovery = process.recover().unwrap();
    let manifest = recovery.manifest.unwrap();
    assert_eq!(manifest.epoch, CHECKPOINTS);
    assert!(recovery.skipped.is_empty());
    let mut pages = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut out = vec![0; PAGE];
    for page in 0..PAGES {
        pages.read_page(page, &mut out).unwrap();
        assert!(out == page_at(page, CHECKPOINTS), "page {page} differs");
    }
    // A second commit of the same epoch is fenced off.
    let stale = Manifest {
        epoch: CHECKPOINTS,
        parent: CHECKPOINTS - 1,
        body: manifest.body.clone(),
    };
    assert!(process.commit(&stale).is_err());
    process.remove().unwrap();
    assert!(process.backend().list("").unwrap().is_empty());
}
