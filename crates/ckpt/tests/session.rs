//! The checkpoint session: writer generations in object names, nothing of
//! another runner removed before this runner commits past it, commits whose
//! answer was lost settled by reading back, and a lease kept by a thread that
//! rides out an unreachable store or stops for good when taken over.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{
    CkptError, Claim, Invocation, LeaseConfig, LeaseError, LeaseKeeper, ManifestBody,
    MonotonicClock, ProcessStatus, Session, StoreLease,
};
use ferrite_pagestore::{
    object_epoch_generation, MemStore, StorageBackend, StorageError, StorageKind,
};
use std::{
    ops::Range,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const PAGE: usize = 4096;

fn body() -> ManifestBody {
    ManifestBody {
        process: "job".into(),
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
        checkpoint_count: 1,
        heap_bytes: 1 << 20,
        pages_written: 0,
        pause_us: 0,
        resident_pages: vec![],
        generations: Vec::new(),
        writer: String::new(),
    }
}

/// Runs a session's first checkpoints: pages `0..pages` written with `fill`.
fn run(backend: &Arc<dyn StorageBackend>, claim: Claim, fill: u8, commits: usize) -> Session {
    let mut session = Session::open(backend.clone(), "job", claim).unwrap();
    let recovered = session.recover_from(None).unwrap().manifest;
    let mut pages = session.page_store(recovered.as_ref(), PAGE);
    for _ in 0..commits {
        for page in 0..8 {
            pages.write_page(page, &[fill; PAGE]).unwrap();
        }
        session.commit(Some(&mut pages), body(), 2).unwrap();
    }
    session
}

fn data_keys(backend: &dyn StorageBackend) -> Vec<String> {
    let mut keys = backend.list("procs/job/segments/").unwrap();
    keys.extend(backend.list("procs/job/maps/").unwrap());
    keys
}

#[test]
fn every_runner_writes_under_a_generation_of_its_own() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let first = run(&backend, Claim::Exclusive, 1, 2);
    let second = run(&backend, Claim::Exclusive, 2, 1);
    assert_eq!((first.generation(), second.generation()), (1, 2));
    assert_eq!(second.committed_epoch(), 3);
    let generations: Vec<(u64, u64)> = data_keys(&*backend)
        .iter()
        .map(|key| object_epoch_generation(key).unwrap())
        .collect();
    assert!(generations.contains(&(3, 2)), "{generations:?}");
    assert!(generations
        .iter()
        .all(|&(epoch, g)| g == if epoch == 3 { 2 } else { 1 }));
    // The third resumes the second's pages, named with the second's generation.
    let mut third = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
    let manifest = third.recover_from(None).unwrap().manifest.unwrap();
    assert_eq!(manifest.body.writer, second.tag());
    assert_eq!(manifest.body.page_map().generation(3), 2);
    let mut pages = third.page_store(Some(&manifest), PAGE);
    let mut page = [0; PAGE];
    assert!(pages.read_page(5, &mut page).unwrap());
    assert_eq!(page, [2; PAGE]);
}

#[test]
fn another_runners_uncommitted_objects_stay_until_this_runner_commits_past_them() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    drop(run(&backend, Claim::Exclusive, 1, 1));
    // A runner that wrote epoch 2's objects and never committed them (it may
    // be slow, not dead: its manifest could still land).
    let mut slow = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
    let manifest = slow.recover_from(None).unwrap().manifest;
    let mut pages = slow.page_store(manifest.as_ref(), PAGE);
    for page in 0..300 {
        pages.write_page(page, &[9; PAGE]).unwrap();
    }
    pages.commit_maps().unwrap();
    let slow_keys: Vec<String> = data_keys(&*backend)
        .into_iter()
        .filter(|key| object_epoch_generation(key).unwrap().1 == slow.generation())
        .collect();
    assert!(!slow_keys.is_empty());

    let mut next = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
    let manifest = next.recover_from(None).unwrap().manifest;
    let mut pages = next.page_store(manifest.as_ref(), PAGE);
    let keys = data_keys(&*backend);
    assert!(
        slow_keys.iter().all(|key| keys.contains(key)),
        "removed at open"
    );
    pages.write_page(0, &[3; PAGE]).unwrap();
    next.commit(Some(&mut pages), body(), 2).unwrap();
    let keys = data_keys(&*backend);
    assert!(
        slow_keys.iter().all(|key| !keys.contains(key)),
        "collected after the commit of epoch 2: {keys:?}"
    );
    // And the slow runner's commit is fenced, never a damaged checkpoint.
    let error = slow.commit(None, body(), 2).unwrap_err();
    assert!(
        matches!(error, CkptError::Fenced { epoch: 2, .. }),
        "{error:?}"
    );
}

/// A backend whose manifest puts land but answer "outcome unknown" (`lands`),
/// or do not land and answer so (`!lands`), `times` times.
#[derive(Debug)]
struct LostAnswers {
    inner: MemStore,
    lands: bool,
    times: AtomicU32,
}

impl StorageBackend for LostAnswers {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let manifest = key.contains("/manifests/");
        if manifest && self.times.load(Ordering::SeqCst) > 0 {
            self.times.fetch_sub(1, Ordering::SeqCst);
            if self.lands {
                self.inner.put_new(key, bytes)?;
            }
            return Err(StorageError::OutcomeUnknown {
                key: key.into(),
                reason: "answer lost (test)".into(),
            });
        }
        self.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

#[test]
fn a_commit_whose_answer_was_lost_is_settled_by_reading_it_back() {
    for lands in [true, false] {
        let store = Arc::new(LostAnswers {
            inner: MemStore::new(),
            lands,
            times: AtomicU32::new(0),
        });
        let backend: Arc<dyn StorageBackend> = store.clone();
        let mut session = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
        session.recover_from(None).unwrap();
        let mut pages = session.page_store(None, PAGE);
        pages.write_page(1, &[4; PAGE]).unwrap();
        store.times.store(2, Ordering::SeqCst);
        let committed = session.commit(Some(&mut pages), body(), 2).unwrap();
        assert_eq!(committed.epoch, 1);
        assert!(committed.settled_by_reading, "lands {lands}");
        let manifest = session.store().load(1).unwrap();
        assert_eq!(manifest.body.writer, session.tag());
    }
}

#[test]
fn a_manifest_of_another_writer_found_on_reading_back_is_fencing() {
    let store = Arc::new(LostAnswers {
        inner: MemStore::new(),
        lands: false,
        times: AtomicU32::new(1),
    });
    let backend: Arc<dyn StorageBackend> = store.clone();
    let mut late = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
    late.recover_from(None).unwrap();
    // Another runner commits epoch 1 while this one's answer is lost.
    let mut winner =
        Session::open(Arc::new(ForwardTo(store.clone())), "job", Claim::Exclusive).unwrap();
    winner.recover_from(None).unwrap();
    store.times.store(0, Ordering::SeqCst);
    winner.commit(None, body(), 2).unwrap();
    store.times.store(1, Ordering::SeqCst);
    let error = late.commit(None, body(), 2).unwrap_err();
    assert!(
        matches!(error, CkptError::Fenced { epoch: 1, .. }),
        "{error:?}"
    );
}

/// Another client of the same storage (no faults of its own).
#[derive(Debug)]
struct ForwardTo(Arc<LostAnswers>);

impl StorageBackend for ForwardTo {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.0.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.0.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.0.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.inner.delete(key)
    }
}

/// A store that can be made unreachable.
#[derive(Debug, Default)]
struct Switch {
    inner: MemStore,
    down: AtomicBool,
}

impl Switch {
    fn check(&self, key: &str) -> Result<(), StorageError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable {
                key: key.into(),
                reason: "down (test)".into(),
            });
        }
        Ok(())
    }
}

impl StorageBackend for Switch {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check(key)?;
        self.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.check(key)?;
        self.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.check(prefix)?;
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check(key)?;
        self.inner.delete(key)
    }
}

fn lease_config() -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_millis(300),
        drift: 0.01,
        poll: Duration::from_millis(20),
    }
}

fn keeper(backend: &Arc<dyn StorageBackend>, holder: &str) -> Result<LeaseKeeper, LeaseError> {
    let clock = Arc::new(MonotonicClock::default());
    let lease = StoreLease::acquire(
        backend.clone(),
        "job",
        holder,
        lease_config(),
        clock.clone(),
        false,
        &mut std::thread::sleep,
    )?;
    Ok(LeaseKeeper::start(lease, clock))
}

/// Waits up to 10 s for `condition`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let began = Instant::now();
    while !condition() {
        assert!(began.elapsed() < Duration::from_secs(10), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_keeper_renews_and_a_second_runner_is_refused() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let held = keeper(&backend, "a").unwrap();
    let session = Session::open(backend.clone(), "job", Claim::Lease(held)).unwrap();
    eventually("three renewals", || match session.claim() {
        Claim::Lease(keeper) => keeper.counts().0 >= 3,
        _ => false,
    });
    session.check().unwrap();
    let error = keeper(&backend, "b").unwrap_err();
    assert!(matches!(error, LeaseError::Held { .. }), "{error:?}");
    // Released: the next runner takes over at once.
    session.release().unwrap();
    let next = keeper(&backend, "b").unwrap();
    assert_eq!(next.generation(), 2);
}

#[test]
fn an_unreachable_store_pauses_the_runner_which_then_goes_on() {
    let store = Arc::new(Switch::default());
    let backend: Arc<dyn StorageBackend> = store.clone();
    let held = keeper(&backend, "a").unwrap();
    let mut session = Session::open(backend.clone(), "job", Claim::Lease(held)).unwrap();
    session.recover_from(None).unwrap();
    session.commit(None, body(), 2).unwrap();
    store.down.store(true, Ordering::SeqCst);
    eventually("the lease lapses", || session.check().is_err());
    let error = session.check().unwrap_err();
    assert!(
        matches!(error, CkptError::Lease(LeaseError::Expired { .. })),
        "{error:?}"
    );
    // Nothing is committed while the lease is lapsed.
    store.down.store(false, Ordering::SeqCst);
    session
        .wait_valid(Duration::from_secs(10), Duration::ZERO, &mut |_, _| {})
        .unwrap();
    let Claim::Lease(keeper) = session.claim() else {
        unreachable!()
    };
    assert!(keeper.counts().1 >= 1, "regained: {:?}", keeper.counts());
    assert_eq!(session.commit(None, body(), 2).unwrap().epoch, 2);
}

#[test]
fn a_runner_taken_over_while_cut_off_stops_for_good() {
    let store = Arc::new(Switch::default());
    let backend: Arc<dyn StorageBackend> = store.clone();
    let held = keeper(&backend, "a").unwrap();
    let mut session = Session::open(backend.clone(), "job", Claim::Lease(held)).unwrap();
    session.recover_from(None).unwrap();
    session.commit(None, body(), 2).unwrap();
    store.down.store(true, Ordering::SeqCst);
    // Another machine, which still reaches the storage, takes over once the
    // lease has expired by its clock.
    let other: Arc<dyn StorageBackend> = Arc::new(ForwardSwitch(store.clone()));
    let clock = Arc::new(MonotonicClock::default());
    let taken = StoreLease::acquire(
        other.clone(),
        "job",
        "b",
        lease_config(),
        clock,
        true,
        &mut std::thread::sleep,
    )
    .unwrap();
    assert_eq!(taken.generation(), 2);
    // The first runner was paused all along: its lease lapsed before.
    assert!(session.check().is_err());
    store.down.store(false, Ordering::SeqCst);
    let error = session
        .wait_valid(
            Duration::from_secs(10),
            Duration::from_secs(1),
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(
        matches!(error, CkptError::Lease(LeaseError::Fenced { .. })),
        "{error:?}"
    );
    let error = session.commit(None, body(), 2).unwrap_err();
    assert!(matches!(error, CkptError::Lease(_)), "{error:?}");
    assert_eq!(session.store().epochs().unwrap(), vec![1]);
}

/// The storage as a machine that is not cut off sees it.
#[derive(Debug)]
struct ForwardSwitch(Arc<Switch>);

impl StorageBackend for ForwardSwitch {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.0.inner.put_new(key, bytes)
    }
    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        self.0.inner.get(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.0.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.0.inner.delete(key)
    }
}

#[test]
fn storage_errors_keep_their_kind() {
    let error = StorageError::Unavailable {
        key: "k".into(),
        reason: "r".into(),
    };
    assert_eq!(error.kind(), StorageKind::Unavailable);
    assert!(error.is_transient());
    let error = CkptError::from(error);
    assert!(matches!(error, CkptError::Storage(ref e) if e.kind() == StorageKind::Unavailable));
}

#[test]
fn a_lease_taken_over_after_expiry_says_so_and_a_released_one_does_not() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let first = keeper(&backend, "a").unwrap();
    assert!(!first.took_over());
    // Stops renewing (a crash): the next runner waits it out and takes over.
    drop(first);
    let clock = Arc::new(MonotonicClock::default());
    let lease = StoreLease::acquire(
        backend.clone(),
        "job",
        "b",
        lease_config(),
        clock.clone(),
        true,
        &mut std::thread::sleep,
    )
    .unwrap();
    assert!(lease.took_over());
    let session = Session::open(
        backend.clone(),
        "job",
        Claim::Lease(LeaseKeeper::start(lease, clock)),
    )
    .unwrap();
    assert!(session.took_over());
    session.release().unwrap();
    let third = keeper(&backend, "c").unwrap();
    assert!(!third.took_over(), "a released lease is not taken over");
}

#[test]
fn deferred_garbage_stays_until_a_commit_collects_again() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut session = Session::open(backend.clone(), "job", Claim::Exclusive).unwrap();
    let recovered = session.recover_from(None).unwrap().manifest;
    let mut pages = session.page_store(recovered.as_ref(), PAGE);
    let mut commit = |session: &mut Session, fill: u8| {
        for page in 0..8 {
            pages.write_page(page, &[fill; PAGE]).unwrap();
        }
        session.commit(Some(&mut pages), body(), 1).unwrap();
    };
    commit(&mut session, 1);
    commit(&mut session, 2);
    let manifests =
        |backend: &Arc<dyn StorageBackend>| backend.list("procs/job/manifests/").unwrap().len();
    let collected = data_keys(&*backend).len();
    let kept = manifests(&backend);
    session.defer_gc(true);
    for fill in 3..6 {
        commit(&mut session, fill);
    }
    let deferred = data_keys(&*backend).len();
    assert!(
        deferred > collected,
        "the superseded pages and maps stay: {collected} then {deferred}"
    );
    assert_eq!(manifests(&backend), kept + 3);
    session.defer_gc(false);
    commit(&mut session, 6);
    assert!(data_keys(&*backend).len() <= collected);
    assert_eq!(manifests(&backend), kept);
}
