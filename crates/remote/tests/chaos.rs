//! `S3Store` against the project's Ceph gateway through the fault-injecting
//! proxy of `ferrite-chaos`: dropped connections, lost answers, made-up
//! server errors, delays, and a gateway that looks stopped. What these
//! tests hold the store to is `docs/s3.md`'s: a put reported done is there
//! with its bytes, a put of unknown outcome is either there with our bytes
//! or absent, a sync that succeeded left every object whole, leases never
//! have two valid holders, and nothing committed is lost.
//!
//! Like `ceph.rs`, these tests need the gateway (`scripts/s3/up.sh`) and
//! fail, never skip, without its `AWS_*` variables.

#![allow(clippy::unwrap_used)]

use ferrite_chaos::{FaultPlan, Proxy};
use ferrite_ckpt::{
    CkptError, Clock, Invocation, LeaseConfig, LeaseError, Manifest, ManifestBody, MonotonicClock,
    ProcessStatus, ProcessStore, StoreLease,
};
use ferrite_pagestore::{PageMapRef, StorageBackend, StorageError};
use ferrite_remote::{S3Options, S3Store, StoreNotice};
use object_store::aws::AmazonS3Builder;
use std::{
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

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
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "s3://{}/tests/chaos-{test}-{}-{nanos}-{seq}",
        env("AWS_BUCKET"),
        std::process::id()
    )
}

/// The gateway's address, from `AWS_ENDPOINT_URL` (`http://HOST:PORT`).
fn gateway() -> SocketAddr {
    let url = env("AWS_ENDPOINT_URL");
    let authority = url
        .strip_prefix("http://")
        .unwrap_or(&url)
        .trim_end_matches('/');
    authority.to_socket_addrs().unwrap().next().unwrap()
}

/// Quick retries, so that a test rides out many faults in seconds.
fn options() -> S3Options {
    S3Options {
        attempts_max: 6,
        backoff_ms_first: 10,
        backoff_ms_max: 200,
        request_timeout_ms: 10_000,
        connect_timeout_ms: 1_000,
        outage_wait_ms_max: 30_000,
        notice_ms_first: 500,
        notice_ms_every: 2_000,
        ..S3Options::default()
    }
}

/// A store reaching the gateway through `proxy` (opened while the proxy
/// injects nothing: opening does not wait out faults).
fn through(proxy: &Proxy, url: &str) -> S3Store {
    let builder = AmazonS3Builder::from_env().with_endpoint(proxy.url());
    S3Store::open_with(url, builder, &options()).unwrap()
}

/// A store reaching the gateway directly: the auditor's view.
fn clean(url: &str) -> S3Store {
    S3Store::open(url, &S3Options::default()).unwrap()
}

/// Every fault at once, each on a few percent of the requests.
fn every_fault(seed: u64, rate: f64) -> FaultPlan {
    FaultPlan {
        seed,
        drop_before: rate,
        lose_answer: rate,
        error_500: rate,
        error_503: rate,
        delay: 2.0 * rate,
        delay_ms_max: 30,
    }
}

fn object(key: usize, bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i * 31 + key * 7) as u8).collect()
}

#[test]
fn puts_and_gets_through_every_fault_keep_their_word() {
    const KEYS: usize = 80;
    let proxy = Proxy::start(gateway()).unwrap();
    let url = fresh_url("puts");
    let store = through(&proxy, &url);
    proxy.set_plan(every_fault(1, 0.06));
    let outcomes: Vec<Result<(), StorageError>> = (0..KEYS)
        .map(|k| store.put_new(&format!("k/{k}"), &object(k, 4096)))
        .collect();
    // Reads through the faults retry until they get an answer.
    let audit = clean(&url);
    let mut unknown = 0;
    for (k, outcome) in outcomes.iter().enumerate() {
        let key = format!("k/{k}");
        let stored = audit.get(&key, None);
        match outcome {
            Ok(()) => {
                assert_eq!(stored.unwrap(), object(k, 4096), "{key}");
                assert_eq!(store.get(&key, None).unwrap(), object(k, 4096), "{key}");
            }
            Err(StorageError::OutcomeUnknown { .. }) => {
                unknown += 1;
                match stored {
                    Ok(bytes) => assert_eq!(bytes, object(k, 4096), "{key}"),
                    Err(e) => assert!(e.is_not_found(), "{key}: {e:?}"),
                }
            }
            // Never sent: never landed.
            Err(StorageError::Unavailable { .. }) => {
                assert!(stored.unwrap_err().is_not_found(), "{key}");
            }
            // Only we wrote these keys, once each: no conflict may be
            // reported, and no other failure.
            Err(other) => panic!("{key}: {other:?}"),
        }
    }
    let counts = proxy.counts();
    assert!(
        counts.dropped_before > 0
            && counts.answers_lost > 0
            && counts.errors_500 > 0
            && counts.errors_503 > 0
            && counts.delayed > 0,
        "{counts:?}"
    );
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        ok > KEYS / 2,
        "{ok} of {KEYS} puts succeeded ({unknown} unknown)"
    );
}

#[test]
fn after_a_successful_sync_every_deferred_object_is_whole() {
    const OBJECTS: usize = 24;
    const BYTES: usize = 256 << 10;
    let proxy = Proxy::start(gateway()).unwrap();
    let url = fresh_url("deferred");
    let store = through(&proxy, &url);
    proxy.set_plan(every_fault(2, 0.05));
    let keys: Vec<String> = (0..OBJECTS).map(|k| format!("segs/{k:04}")).collect();
    for (k, key) in keys.iter().enumerate() {
        store.put_new_deferred(key, &object(k, BYTES)).unwrap();
    }
    // A failed sync is retried later, as the checkpoint layer does.
    let mut failures = Vec::new();
    let synced = (0..10).any(|_| match store.sync(&keys) {
        Ok(()) => true,
        Err(e) => {
            assert!(e.is_transient(), "{e:?}");
            failures.push(e);
            false
        }
    });
    assert!(synced, "no sync succeeded: {failures:?}");
    let audit = clean(&url);
    assert_eq!(audit.list("segs/").unwrap(), keys);
    for (k, key) in keys.iter().enumerate() {
        assert!(audit.get(key, None).unwrap() == object(k, BYTES), "{key}");
    }
    assert!(proxy.counts().answers_lost + proxy.counts().dropped_before > 0);
}

/// One holding of the lease: its generation and when the holder counted it
/// valid, on the test's clock (real time, shared by the threads).
#[derive(Debug, Clone, Copy)]
struct Holding {
    generation: u64,
    from: Instant,
    /// The latest end of validity the holder claimed (over-estimated).
    until: Instant,
}

#[test]
fn lease_contenders_through_faulty_proxies_never_overlap() {
    const RUNNERS: usize = 3;
    let url = fresh_url("lease");
    let config = LeaseConfig {
        duration: Duration::from_millis(900),
        drift: 0.01,
        poll: Duration::from_millis(50),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let holdings = Mutex::new(Vec::new());
    let proxies: Vec<Proxy> = (0..RUNNERS)
        .map(|_| Proxy::start(gateway()).unwrap())
        .collect();
    thread::scope(|scope| {
        for (runner, proxy) in proxies.iter().enumerate() {
            let (url, holdings) = (&url, &holdings);
            scope.spawn(move || {
                let backend: Arc<dyn StorageBackend> = Arc::new(through(proxy, url));
                proxy.set_plan(every_fault(10 + runner as u64, 0.03));
                let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::default());
                let holder = format!("runner-{runner}");
                let mut round = 0;
                while Instant::now() < deadline {
                    round += 1;
                    let acquired = StoreLease::acquire(
                        backend.clone(),
                        "p",
                        &holder,
                        config,
                        clock.clone(),
                        true,
                        &mut thread::sleep,
                    );
                    let mut lease = match acquired {
                        Ok(lease) => lease,
                        Err(LeaseError::Storage(e)) => {
                            assert!(e.is_transient(), "{e:?}");
                            continue;
                        }
                        Err(e) => panic!("{holder}: {e}"),
                    };
                    let mut holding = hold(&mut lease, config);
                    // Every other round ends by a release, the others by
                    // simply stopping (the lease then expires). A holder
                    // that releases stops using the lease before it sends
                    // the release (whatever its outcome).
                    if round % 2 == 0 {
                        holding.until = holding.until.min(Instant::now());
                        let _ = lease.release();
                    }
                    holdings.lock().unwrap().push(holding);
                }
            });
        }
    });
    let mut holdings = holdings.into_inner().unwrap();
    assert!(holdings.len() >= 3, "{holdings:?}");
    holdings.sort_by_key(|h| h.generation);
    for pair in holdings.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        assert!(
            earlier.generation < later.generation,
            "one generation granted twice: {pair:?}"
        );
        assert!(
            earlier.until <= later.from,
            "two valid holders at once: {pair:?}"
        );
    }
}

/// Holds `lease` for a few renewals; returns when it was valid.
fn hold(lease: &mut StoreLease, config: LeaseConfig) -> Holding {
    let claim = |lease: &StoreLease| {
        // The remaining time first, then the instant: an over-estimate.
        let remaining = lease.remaining();
        Instant::now() + remaining
    };
    let from = Instant::now();
    let mut until = claim(lease);
    for _ in 0..3 {
        thread::sleep(config.duration / 4);
        match lease.renew() {
            Ok(()) => until = until.max(claim(lease)),
            // A failed renewal: the lease runs out unless a later one works.
            Err(LeaseError::Storage(e)) => assert!(e.is_transient(), "{e:?}"),
            Err(LeaseError::Expired { .. } | LeaseError::Fenced { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    Holding {
        generation: lease.generation(),
        from,
        until,
    }
}

#[test]
fn a_read_waits_while_the_gateway_is_down_and_says_so() {
    let proxy = Proxy::start(gateway()).unwrap();
    let url = fresh_url("down");
    let store = through(&proxy, &url);
    store.put_new("k", b"committed").unwrap();
    let (tell, notices) = mpsc::channel();
    let tell = Mutex::new(tell);
    store.set_notice_hook(Some(Arc::new(move |n: &StoreNotice| {
        let _ = tell.lock().unwrap().send(n.clone());
    })));
    proxy.set_down(true);
    // A write does not wait: bounded attempts, a transient error.
    let write = store.put_new("other", b"x").unwrap_err();
    assert!(
        matches!(write, StorageError::Unavailable { .. }),
        "{write:?}"
    );
    thread::scope(|scope| {
        let reading = scope.spawn(|| store.get("k", None));
        let waiting = notices.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(&waiting, StoreNotice::Waiting { operation: "get", key, .. } if key == "k"),
            "{waiting:?}"
        );
        assert!(!reading.is_finished());
        proxy.set_down(false);
        assert_eq!(reading.join().unwrap().unwrap(), b"committed");
    });
    let recovered = notices.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(
        matches!(recovered, StoreNotice::Recovered { .. }),
        "{recovered:?}"
    );
    assert!(proxy.counts().refused > 0 || proxy.counts().requests > 0);
}

const PAGE: usize = 4096;

fn body(map: &PageMapRef, count: u64) -> ManifestBody {
    let mut body = ManifestBody {
        process: "demo".into(),
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
        heap_bytes: 1 << 24,
        pages_written: 1,
        pause_us: 0,
        resident_pages: vec![],
        generations: Vec::new(),
        writer: String::new(),
    };
    body.set_page_map(map);
    body
}

fn page_at(page: u32, epoch: u64) -> Vec<u8> {
    let mut bytes = vec![(page as u64 * 13 + epoch) as u8; PAGE];
    bytes[..4].copy_from_slice(&page.to_le_bytes());
    bytes[4..12].copy_from_slice(&epoch.to_le_bytes());
    bytes
}

/// Commits `manifest`, retrying a checkpoint that could not commit, and
/// settling an unknown outcome by reading the manifest back.
fn commit(process: &ProcessStore, manifest: &Manifest) {
    let key = format!("procs/demo/manifests/{:016x}", manifest.epoch);
    for _ in 0..20 {
        match process.commit(manifest) {
            Ok(()) => return,
            Err(CkptError::Storage(e)) if e.is_transient() => {
                match process.backend().get(&key, None) {
                    Ok(bytes) if bytes == manifest.encode() => return,
                    Ok(_) => panic!("epoch {} has another manifest", manifest.epoch),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => assert!(e.is_transient(), "{e:?}"),
                }
            }
            Err(e) => panic!("epoch {}: {e}", manifest.epoch),
        }
    }
    panic!("epoch {} never committed", manifest.epoch);
}

#[test]
fn checkpoints_committed_through_faults_are_all_there() {
    const PAGES: u32 = 800;
    const CHECKPOINTS: u64 = 5;
    let proxy = Proxy::start(gateway()).unwrap();
    let url = fresh_url("commit");
    let backend: Arc<dyn StorageBackend> = Arc::new(through(&proxy, &url));
    let process = ProcessStore::new(backend, "demo").unwrap();
    let mut pages = process.page_store(None, PAGE).unwrap();
    proxy.set_plan(every_fault(3, 0.08));
    let mut written = vec![0u64; PAGES as usize];
    for epoch in 1..=CHECKPOINTS {
        for page in (0..PAGES).filter(|p| (u64::from(*p) + epoch) % 3 != 0) {
            pages.write_page(page, &page_at(page, epoch)).unwrap();
            written[page as usize] = epoch;
        }
        // A checkpoint that cannot commit is retried later.
        let map = (0..20)
            .find_map(|_| match pages.commit_maps() {
                Ok(map) => Some(map),
                Err(ferrite_pagestore::PageStoreError::Storage(e)) if e.is_transient() => None,
                Err(e) => panic!("{e}"),
            })
            .expect("the page maps commit within 20 tries");
        let manifest = Manifest {
            epoch,
            parent: epoch - 1,
            body: body(&map, epoch),
        };
        commit(&process, &manifest);
        pages.committed(map);
    }
    drop(pages);
    let counts = proxy.counts();
    let faults = counts.answers_lost + counts.dropped_before + counts.errors_500;
    assert!(faults + counts.errors_503 > 0, "{counts:?}");
    drop(proxy);

    // Without the proxy, a new runner recovers the last checkpoint whole.
    let backend: Arc<dyn StorageBackend> = Arc::new(clean(&url));
    let process = ProcessStore::new(backend, "demo").unwrap();
    let recovery = process.recover().unwrap();
    let manifest = recovery.manifest.unwrap();
    assert_eq!(manifest.epoch, CHECKPOINTS);
    let mut pages = process.page_store(Some(&manifest), PAGE).unwrap();
    let mut out = vec![0; PAGE];
    for page in 0..PAGES {
        pages.read_page(page, &mut out).unwrap();
        let epoch = written[page as usize];
        assert!(
            out == page_at(page, epoch),
            "page {page} is not epoch {epoch}'s"
        );
    }
    process.remove().unwrap();
}
