//! The checkpoint session: the one owner of a process's checkpointing.
//!
//! A [`Session`] holds the runner's claim on the process (the local run lock,
//! or a lease held in the store and kept by a [`LeaseKeeper`] thread), the
//! runner's writer generation and unique tag, and the last committed epoch.
//! Everything that writes or deletes a process's objects goes through it:
//!
//! - every segment and map object the runner writes carries its writer
//!   generation in its name ([`Session::page_store`]), so two runners of one
//!   process never write the same name;
//! - every deleting step (recovery's set-aside, garbage collection, the
//!   remains of a crashed start, lease history) runs only under the claim,
//!   after checking it again;
//! - a commit goes down the stack once ([`Session::commit`]): the page store's
//!   maps, then the claim check, then the create-only manifest put; a put
//!   whose answer was lost is settled by reading the manifest back and
//!   comparing the writer tag in it.
//!
//! Objects of epochs after the newest manifest are never removed when a
//! runner opens a session: another runner's late commit could still name
//! them. They are collected once this runner has committed past their epoch
//! (a create-only manifest put then guarantees that no one else's can land).

use crate::{
    lease::{record_generation, remove_lease_history, Clock, LeaseError, StoreLease},
    requests::{self, Answer, StoreRequest},
    CkptError, GcReport, Manifest, ManifestBody, ProcessLock, ProcessStore, Recovery,
};
use ferrite_pagestore::{PageStore, StorageBackend, StorageError, StorageKind};
use std::{
    collections::BTreeSet,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How a runner holds a process so that it runs in one place only.
#[derive(Debug)]
pub enum Claim {
    /// The caller guarantees that no one else runs the process (a store of
    /// its own, in memory or in a test).
    Exclusive,
    /// The local run lock of a local directory store: released by the kernel
    /// when the runner dies, so a resume after `kill -9` takes over at once.
    Local(ProcessLock),
    /// A lease held in the store and renewed by a keeper thread.
    Lease(LeaseKeeper),
}

impl From<Option<ProcessLock>> for Claim {
    fn from(lock: Option<ProcessLock>) -> Self {
        lock.map_or(Claim::Exclusive, Claim::Local)
    }
}

impl From<ProcessLock> for Claim {
    fn from(lock: ProcessLock) -> Self {
        Claim::Local(lock)
    }
}

/// A unique tag for this runner: host, process id, time and a counter.
pub fn runner_tag() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{host}-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the keeper thread knows of the lease.
#[derive(Debug)]
struct KeeperShared {
    clock: Arc<dyn Clock>,
    /// Clock time (nanoseconds) until which the lease is valid.
    valid_until_ns: AtomicU64,
    /// A newer generation exists: this runner must stop for good.
    fenced: Mutex<Option<LeaseError>>,
    /// The last renewal failure, while renewals fail.
    failing: Mutex<Option<String>>,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Renewals and regains made, for tests and `--stats`.
    renewals: AtomicU64,
    regains: AtomicU64,
    is_fenced: AtomicBool,
    /// Requests found in the store and not yet taken by the runner.
    requests: Mutex<Vec<StoreRequest>>,
    /// The keys of every request found, so that each is taken once.
    seen: Mutex<BTreeSet<String>>,
    /// Raised when a request is found, to interrupt the running process.
    interrupt: Mutex<Option<Arc<AtomicBool>>>,
    /// Look for requests now (the store said one was created).
    look_now: AtomicBool,
}

impl KeeperShared {
    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_valid_until(&self, until: Duration) {
        self.valid_until_ns.store(
            until.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Release,
        );
    }
}

/// Keeps a [`StoreLease`]: renews it every third of its duration on a thread
/// of its own, and when the store could not be reached for longer than the
/// lease, takes the next generation itself if no one took over
/// ([`StoreLease::regain`]). The runner asks [`LeaseKeeper::check`] before
/// anything that leaves a trace outside the store (a host call, a commit).
pub struct LeaseKeeper {
    shared: Arc<KeeperShared>,
    lease: Arc<Mutex<StoreLease>>,
    process: String,
    generation: u64,
    holder: String,
    took_over: bool,
    margin: Duration,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("generation", &self.generation)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// Starts keeping `lease` (just acquired).
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn start(lease: StoreLease, clock: Arc<dyn Clock>) -> Self {
        let config = lease.config();
        let shared = Arc::new(KeeperShared {
            clock,
            valid_until_ns: AtomicU64::new(0),
            fenced: Mutex::new(None),
            failing: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            renewals: AtomicU64::new(0),
            regains: AtomicU64::new(0),
            is_fenced: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            seen: Mutex::new(BTreeSet::new()),
            interrupt: Mutex::new(None),
            look_now: AtomicBool::new(true),
        });
        shared.set_valid_until(lease.valid_until());
        let generation = lease.generation();
        let backend = lease.backend().clone();
        let holder = lease.holder().to_string();
        let process = lease.process().to_string();
        let took_over = lease.took_over();
        let lease = Arc::new(Mutex::new(lease));
        let every = config.duration / 3;
        let thread = {
            let (shared, lease) = (shared.clone(), lease.clone());
            let generation_min = generation;
            std::thread::Builder::new()
                .name("ferrite-lease".into())
                .spawn(move || keep(&shared, &lease, every, generation_min))
                .expect("the lease keeper thread starts")
        };
        let keeper = Self {
            shared,
            lease,
            process,
            generation,
            holder,
            took_over,
            // Room for a host call started just before the check to end.
            margin: config.duration / 10,
            thread: Some(thread),
        };
        keeper.subscribe(&backend);
        keeper
    }

    /// Asks the store to say at once when a request to this runner is
    /// created (a heap server can; object storage cannot, and the keeper
    /// finds requests at its renewals).
    fn subscribe(&self, backend: &Arc<dyn StorageBackend>) {
        let look = self.looker();
        let prefix = format!("procs/{}/requests/", self.process);
        // Best effort: without it, requests are found at the next renewal.
        let _ = backend.subscribe(&prefix, Arc::new(move |_key: &str| look()));
    }

    /// The writer generation: the lease's generation when it was taken.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The holder's unique tag.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether the lease was taken over from a holder that stopped renewing.
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// Ok while the lease is valid (with a margin); [`LeaseError::Expired`]
    /// while it could not be renewed (the keeper goes on trying: wait), and
    /// [`LeaseError::Fenced`] once another runner took over (stop).
    ///
    /// # Errors
    /// As above.
    pub fn check(&self) -> Result<(), LeaseError> {
        if self.shared.is_fenced.load(Ordering::Acquire) {
            return Err(self.fenced_error());
        }
        let now = self.shared.clock.now() + self.margin;
        let until = Duration::from_nanos(self.shared.valid_until_ns.load(Ordering::Acquire));
        if now >= until {
            return Err(LeaseError::Expired {
                process: self.process(),
                since: now.saturating_sub(until),
            });
        }
        Ok(())
    }

    fn process(&self) -> String {
        self.process.clone()
    }

    fn fenced_error(&self) -> LeaseError {
        match &*KeeperShared::lock(&self.shared.fenced) {
            Some(LeaseError::Fenced {
                process,
                generation,
                newer,
            }) => LeaseError::Fenced {
                process: process.clone(),
                generation: *generation,
                newer: *newer,
            },
            Some(other) => LeaseError::Damaged {
                key: String::new(),
                reason: other.to_string(),
            },
            None => LeaseError::Fenced {
                process: self.process(),
                generation: self.generation,
                newer: self.generation + 1,
            },
        }
    }

    /// Why renewals fail, while they do.
    pub fn failing(&self) -> Option<String> {
        KeeperShared::lock(&self.shared.failing).clone()
    }

    /// Renewals and regains made so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.renewals.load(Ordering::Relaxed),
            self.shared.regains.load(Ordering::Relaxed),
        )
    }

    /// Raises `flag` whenever a request to this runner is found in the store
    /// (the process's interrupt flag, so that the run loop takes it soon).
    pub fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        if !KeeperShared::lock(&self.shared.requests).is_empty() {
            flag.store(true, Ordering::SeqCst);
        }
        *KeeperShared::lock(&self.shared.interrupt) = Some(flag);
    }

    /// Takes the requests found since the last call (see
    /// [`crate::requests`]); each request is returned once.
    pub fn take_requests(&self) -> Vec<StoreRequest> {
        std::mem::take(&mut *KeeperShared::lock(&self.shared.requests))
    }

    /// Makes the keeper look for requests now rather than at its next
    /// renewal (the store told of a new one).
    pub fn look_now(&self) {
        self.shared.look_now.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }

    /// A function that makes the keeper look for requests now, for a store
    /// that pushes the news of new objects.
    pub fn looker(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || {
            if let Some(shared) = shared.upgrade() {
                shared.look_now.store(true, Ordering::Release);
                shared.wake.notify_all();
            }
        }
    }

    /// Stops renewing and hands the lease to runner `to`, which takes it at
    /// once. The caller has committed its last checkpoint.
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if another runner took over meanwhile, storage
    /// failures (the lease then expires by itself, and `to` takes it then).
    pub fn hand_over(mut self, to: &str) -> Result<(), LeaseError> {
        self.stop_thread();
        if self.shared.is_fenced.load(Ordering::Acquire) {
            return Err(self.fenced_error());
        }
        let lease = Arc::clone(&self.lease);
        drop(self);
        let lease = Arc::try_unwrap(lease)
            .map_err(|_| LeaseError::Config("the lease is still shared".into()))?
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        lease.hand_over(to)
    }

    fn stop_thread(&mut self) {
        *KeeperShared::lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops renewing and releases the lease: another runner may take over at
    /// once.
    ///
    /// # Errors
    /// Storage failures (the lease then expires by itself).
    pub fn release(mut self) -> Result<(), LeaseError> {
        self.stop_thread();
        if self.shared.is_fenced.load(Ordering::Acquire) {
            return Ok(());
        }
        let lease = Arc::clone(&self.lease);
        drop(self);
        let lease = Arc::try_unwrap(lease)
            .map_err(|_| LeaseError::Config("the lease is still shared".into()))?
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        lease.release()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The keeper thread: renew every `every`, regain after a lapse, look for
/// requests after each renewal and when told to, stop when fenced or asked
/// to.
fn keep(shared: &KeeperShared, lease: &Mutex<StoreLease>, every: Duration, generation_min: u64) {
    let mut wait = every;
    let mut renew_at = Instant::now() + wait;
    loop {
        {
            let stop = KeeperShared::lock(&shared.stop);
            let timeout = renew_at.saturating_duration_since(Instant::now());
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, timeout, |stop| {
                    !*stop && !shared.look_now.load(Ordering::Acquire)
                })
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
        }
        if shared.look_now.swap(false, Ordering::AcqRel) {
            let lease = KeeperShared::lock(lease);
            look_for_requests(shared, &lease, generation_min);
        }
        if Instant::now() < renew_at {
            continue;
        }
        let mut lease = KeeperShared::lock(lease);
        let lapsed = lease.remaining().is_zero();
        let result = if lapsed {
            lease.regain()
        } else {
            lease.renew()
        };
        match result {
            Ok(()) => {
                shared.set_valid_until(lease.valid_until());
                let counter = if lapsed {
                    &shared.regains
                } else {
                    &shared.renewals
                };
                counter.fetch_add(1, Ordering::Relaxed);
                *KeeperShared::lock(&shared.failing) = None;
                wait = every;
                look_for_requests(shared, &lease, generation_min);
            }
            Err(error @ (LeaseError::Fenced { .. } | LeaseError::Damaged { .. })) => {
                *KeeperShared::lock(&shared.fenced) = Some(error);
                shared.is_fenced.store(true, Ordering::Release);
                return;
            }
            Err(error) => {
                // Unreachable store (or expired just now): try again soon;
                // the lease runs out meanwhile and the runner pauses.
                *KeeperShared::lock(&shared.failing) = Some(error.to_string());
                wait = (every / 4).max(Duration::from_millis(50));
            }
        }
        renew_at = Instant::now() + wait;
    }
}

/// Lists the requests addressed to this runner; queues the new ones and
/// raises the interrupt flag. Undecodable requests are answered with a
/// refusal. A failure is left to the next look.
fn look_for_requests(shared: &KeeperShared, lease: &StoreLease, generation_min: u64) {
    let backend = lease.backend();
    let Ok(pending) = requests::pending_requests(&**backend, lease.process(), generation_min)
    else {
        return;
    };
    let mut seen = KeeperShared::lock(&shared.seen);
    for (key, reason) in pending.damaged {
        if seen.insert(key.clone()) {
            let why = format!("the request does not decode: {reason}");
            let _ = requests::answer_request(&**backend, &key, &Answer::refused(&why));
        }
    }
    let new: Vec<StoreRequest> = pending
        .requests
        .into_iter()
        .filter(|request| seen.insert(request.key.clone()))
        .collect();
    if new.is_empty() {
        return;
    }
    KeeperShared::lock(&shared.requests).extend(new);
    if let Some(flag) = &*KeeperShared::lock(&shared.interrupt) {
        flag.store(true, Ordering::SeqCst);
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The committed epoch.
    pub epoch: u64,
    /// Whether the manifest put's answer was lost and the commit was settled
    /// by reading it back.
    pub settled_by_reading: bool,
    /// How long making the pages durable took (segments, page maps, syncs).
    pub pages_time: Duration,
    /// How long the manifest put took (with the claim check before it).
    pub manifest_time: Duration,
    /// How long garbage collection took (zero when deferred).
    pub gc_time: Duration,
}

/// The longest wait between two tries of a manifest put that met an
/// unreachable store.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(5);

/// What a session is told while it waits (for its lease, for the store): how
/// long it has waited and why.
pub type WaitNotice = dyn Fn(Duration, &str) + Send + Sync;

/// The checkpointing of one process by one runner. See the module
/// documentation.
pub struct Session {
    store: ProcessStore,
    claim: Claim,
    tag: String,
    generation: u64,
    committed: u64,
    /// How long a commit waits through an unreachable store (for its lease,
    /// and to put its manifest) before it fails.
    wait_max: Duration,
    notice: Option<Arc<WaitNotice>>,
    /// The lease objects of earlier runners were removed (once per session:
    /// only a new runner adds to them).
    history_removed: AtomicBool,
    /// Whether commits leave garbage collection for later
    /// ([`Session::defer_gc`]).
    gc_deferred: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("process", &self.store.name())
            .field("claim", &self.claim)
            .field("tag", &self.tag)
            .field("generation", &self.generation)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens the session of process `name` under `claim`: takes the writer
    /// generation (the lease's, or a new one recorded in the store for a
    /// local lock) and the runner's tag.
    ///
    /// # Errors
    /// [`CkptError::InvalidName`], a lock of another process, storage
    /// failures, [`CkptError::Lease`].
    pub fn open(
        backend: Arc<dyn StorageBackend>,
        name: &str,
        claim: Claim,
    ) -> Result<Self, CkptError> {
        let store = ProcessStore::new(backend, name)?;
        let (tag, generation) = match &claim {
            Claim::Lease(keeper) => (keeper.holder().to_string(), keeper.generation()),
            Claim::Local(lock) if lock.name() != name => {
                return Err(CkptError::WrongLock {
                    held: lock.name().to_string(),
                    process: name.to_string(),
                })
            }
            Claim::Local(_) | Claim::Exclusive => {
                let tag = runner_tag();
                let generation = record_generation(&**store.backend(), name, &tag)?;
                (tag, generation)
            }
        };
        Ok(Self {
            store,
            claim,
            tag,
            generation,
            committed: 0,
            wait_max: Duration::from_mins(1),
            notice: None,
            history_removed: AtomicBool::new(false),
            gc_deferred: false,
        })
    }

    /// How long a commit waits through an unreachable store (default 60 s),
    /// and what it tells about the wait every few seconds.
    pub fn set_waiting(&mut self, wait_max: Duration, notice: Option<Arc<WaitNotice>>) {
        self.wait_max = wait_max;
        self.notice = notice;
    }

    fn tell(&self, waited: Duration, why: &str) {
        if let Some(notice) = &self.notice {
            notice(waited, why);
        }
    }

    /// The process's checkpoints (reading them needs no claim).
    pub fn store(&self) -> &ProcessStore {
        &self.store
    }

    /// The process name.
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// The writer generation in the names of the objects this runner writes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The runner's unique tag, written into every manifest it commits.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The last committed epoch (0: none yet).
    pub fn committed_epoch(&self) -> u64 {
        self.committed
    }

    /// The claim.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Whether this runner took the process over from a runner whose lease
    /// expired. That runner may have sent a manifest put that has not landed
    /// yet (the network may hold a request longer than a lease); so before
    /// this runner does anything a checkpoint does not capture, it commits
    /// the checkpoint it resumed from again, as the next epoch: then the old
    /// runner's late put of that epoch can only fail (create-only), or, if it
    /// landed first, this runner is fenced before it has acted.
    pub fn took_over(&self) -> bool {
        matches!(&self.claim, Claim::Lease(keeper) if keeper.took_over())
    }

    /// Ok while this runner may act for the process; see [`LeaseKeeper::check`].
    ///
    /// # Errors
    /// [`CkptError::Lease`].
    pub fn check(&self) -> Result<(), CkptError> {
        match &self.claim {
            Claim::Lease(keeper) => keeper.check().map_err(CkptError::Lease),
            Claim::Local(_) | Claim::Exclusive => Ok(()),
        }
    }

    /// Waits while the lease is lapsed (the store unreachable), calling
    /// `notice(waited, why)` about every `notice_every`; returns once the
    /// lease is valid again.
    ///
    /// # Errors
    /// [`CkptError::Lease`] once fenced, or after `wait_max`.
    pub fn wait_valid(
        &self,
        wait_max: Duration,
        notice_every: Duration,
        notice: &mut dyn FnMut(Duration, &str),
    ) -> Result<(), CkptError> {
        let began = std::time::Instant::now();
        let mut noticed = Duration::ZERO;
        loop {
            match self.check() {
                Ok(()) => return Ok(()),
                Err(CkptError::Lease(LeaseError::Expired { .. })) if began.elapsed() < wait_max => {
                    let waited = began.elapsed();
                    if waited >= noticed + notice_every {
                        noticed = waited;
                        let why = match &self.claim {
                            Claim::Lease(keeper) => keeper.failing(),
                            _ => None,
                        };
                        notice(waited, why.as_deref().unwrap_or("the lease is not renewed"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Returns once this runner may act: at once while the claim holds;
    /// after a pause while the lease could not be renewed (up to the wait set
    /// by [`Session::set_waiting`], telling its notice every few seconds).
    ///
    /// # Errors
    /// [`CkptError::Lease`] once fenced, or when the wait runs out.
    pub fn wait_claimed(&self) -> Result<(), CkptError> {
        match self.check() {
            Err(CkptError::Lease(LeaseError::Expired { .. })) => {
                self.wait_valid(self.wait_max, Duration::from_secs(3), &mut |waited, why| {
                    self.tell(waited, why);
                })
            }
            result => result,
        }
    }

    /// Finds the checkpoint to resume (see [`ProcessStore::recover_from`]),
    /// under the claim: recovery may move objects aside.
    ///
    /// # Errors
    /// As [`ProcessStore::recover_from`], and [`CkptError::Lease`].
    pub fn recover_from(&mut self, from: Option<u64>) -> Result<Recovery, CkptError> {
        self.check()?;
        let recovery = self.store.recover_from(from)?;
        self.committed = recovery.manifest.as_ref().map_or(0, |m| m.epoch);
        Ok(recovery)
    }

    /// Removes every object of a process that has no manifest (the remains of
    /// a start that crashed before its first commit), under the claim; the
    /// lease objects stay.
    ///
    /// # Errors
    /// [`CkptError::Lease`], storage failures.
    pub fn remove_remains(&self) -> Result<(), CkptError> {
        self.check()?;
        Ok(self.store.remove_data(&mut |_, _| {})?)
    }

    /// A page store positioned after checkpoint `committed` (or a new one),
    /// writing objects named with this runner's generation. Nothing is
    /// removed (see the module documentation).
    ///
    /// # Panics
    /// If `committed` is not the epoch the session committed or recovered.
    pub fn page_store(&self, committed: Option<&Manifest>, page_size: usize) -> PageStore {
        assert_eq!(committed.map_or(0, |m| m.epoch), self.committed);
        let map = committed.map_or_else(Default::default, |m| m.body.page_map());
        let mut pages = PageStore::open(
            self.store.backend().clone(),
            self.store.prefix().to_string(),
            page_size,
            self.committed,
            map,
        );
        pages.set_generation(self.generation);
        pages
    }

    /// Commits the next checkpoint: makes the page store's epoch durable
    /// (`pages`, the store [`Session::page_store`] gave, if the process has a
    /// heap), records its map, the generations and this runner's tag in
    /// `body`, checks the claim, and puts the manifest create-only. Then
    /// collects garbage, keeping `keep` checkpoints (failures there are
    /// harmless and ignored).
    ///
    /// # Errors
    /// Storage failures (nothing was committed, or, for an unknown outcome
    /// that could not be settled, maybe: the runner must stop), page-store
    /// damage, [`CkptError::Fenced`], [`CkptError::Lease`].
    pub fn commit(
        &mut self,
        pages: Option<&mut PageStore>,
        mut body: ManifestBody,
        keep: usize,
    ) -> Result<Committed, CkptError> {
        let epoch = self.committed + 1;
        let began = std::time::Instant::now();
        let mut map = None;
        if let Some(pages) = pages {
            assert_eq!(pages.epoch(), epoch, "the page store is the session's");
            let committed_map = pages.commit_maps().map_err(CkptError::Pages)?;
            body.set_page_map(&committed_map);
            map = Some((pages, committed_map));
        }
        body.writer.clone_from(&self.tag);
        let manifest = Manifest {
            epoch,
            parent: self.committed,
            body,
        };
        let pages_time = began.elapsed();
        // The pages' upload may have outlasted a lease the store could not
        // renew meanwhile: wait for it to be valid again (or fenced).
        self.wait_claimed()?;
        let settled_by_reading = self.put_manifest(&manifest)?;
        let manifest_time = began.elapsed().saturating_sub(pages_time);
        if let Some((pages, committed_map)) = map {
            pages.committed(committed_map);
        }
        self.committed = epoch;
        let gc_began = std::time::Instant::now();
        if !self.gc_deferred {
            let _ = self.gc(keep);
        }
        Ok(Committed {
            epoch,
            settled_by_reading,
            pages_time,
            manifest_time,
            gc_time: gc_began.elapsed(),
        })
    }

    /// Puts the manifest; an unknown outcome is settled by reading it back,
    /// and an unreachable store is waited out for up to `wait_max` (the
    /// lease checked again before each new put).
    fn put_manifest(&self, manifest: &Manifest) -> Result<bool, CkptError> {
        let began = std::time::Instant::now();
        let mut attempts = 0u32;
        let mut noticed = Duration::ZERO;
        let mut settled_by_reading = false;
        // Waits before the next try, or gives up with `error`.
        let mut pause = |attempts: u32, error: CkptError| {
            let waited = began.elapsed();
            if waited >= self.wait_max {
                return Err(error);
            }
            if waited >= noticed + Duration::from_secs(3) {
                noticed = waited;
                self.tell(
                    waited,
                    &format!("committing checkpoint {}: {error}", manifest.epoch),
                );
            }
            let wait = Duration::from_millis(50u64 << attempts.min(7)).min(COMMIT_RETRY_MAX);
            std::thread::sleep(wait);
            Ok(())
        };
        loop {
            attempts += 1;
            match self.store.commit(manifest) {
                Ok(()) => return Ok(settled_by_reading),
                Err(CkptError::Fenced { .. }) if settled_by_reading => {
                    // Our lost put may have landed meanwhile: read it.
                }
                Err(CkptError::Storage(error)) if error.is_transient() => {
                    settled_by_reading |= error.kind() == StorageKind::OutcomeUnknown;
                    if !settled_by_reading {
                        // Never sent, or refused by an unreachable store:
                        // nothing landed; try again.
                        pause(attempts, CkptError::Storage(error))?;
                        self.check()?;
                        continue;
                    }
                }
                Err(error) => return Err(error),
            }
            settled_by_reading = true;
            match self.store.load(manifest.epoch) {
                Ok(found) if found.body.writer == self.tag => return Ok(true),
                Ok(_) | Err(CkptError::Corrupt { .. }) => {
                    return Err(CkptError::Fenced {
                        process: self.name().to_string(),
                        epoch: manifest.epoch,
                    })
                }
                Err(CkptError::Storage(error @ StorageError::NotFound { .. })) => {
                    // Not there: send it again (create-only, so a late
                    // landing of the lost put is found by the next read).
                    pause(attempts, CkptError::Storage(error))?;
                    self.check()?;
                }
                Err(CkptError::Storage(error)) if error.is_transient() => {
                    pause(attempts, CkptError::Storage(error))?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Garbage collection under the claim: old checkpoints, unreferenced
    /// objects of committed epochs (other runners' included), and the lease
    /// history before this runner.
    ///
    /// # Errors
    /// [`CkptError::Lease`], storage failures.
    pub fn gc(&self, keep: usize) -> Result<GcReport, CkptError> {
        self.check()?;
        let report = self.store.gc(keep)?;
        if !self.history_removed.load(Ordering::Relaxed) {
            remove_lease_history(&**self.store.backend(), self.name(), self.generation)?;
            self.history_removed.store(true, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// Leaves garbage collection out of the commits from now on (`true`) or
    /// does it again at each (`false`, the default): for a take-over's
    /// rounds, whose pauses count and after which the next runner collects.
    /// What is not collected stays correct, only unused.
    pub fn defer_gc(&mut self, deferred: bool) {
        self.gc_deferred = deferred;
    }

    /// Takes the requests to this runner found in the store since the last
    /// call (none for a local claim: its runner is asked by signals).
    pub fn take_requests(&self) -> Vec<StoreRequest> {
        match &self.claim {
            Claim::Lease(keeper) => keeper.take_requests(),
            Claim::Local(_) | Claim::Exclusive => Vec::new(),
        }
    }

    /// Raises `flag` when a request to this runner is found in the store.
    pub fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        if let Claim::Lease(keeper) = &self.claim {
            keeper.set_interrupt(flag);
        }
    }

    /// Answers `request`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn answer(&self, request: &StoreRequest, answer: &Answer) -> Result<(), CkptError> {
        Ok(requests::answer_request(
            &**self.store.backend(),
            &request.key,
            answer,
        )?)
    }

    /// Ends the session by handing the lease to runner `to`, which takes the
    /// process over at once: the caller has committed its last checkpoint.
    ///
    /// # Errors
    /// [`CkptError::Lease`]: fenced, or the hand-over could not be written
    /// (the lease then expires by itself and `to` takes it then); a claim
    /// that is not a lease cannot be handed over.
    pub fn hand_over(self, to: &str) -> Result<(), CkptError> {
        match self.claim {
            Claim::Lease(keeper) => keeper.hand_over(to).map_err(CkptError::Lease),
            Claim::Local(_) | Claim::Exclusive => Err(CkptError::Lease(LeaseError::Config(
                "only a lease held in the store can be handed over".into(),
            ))),
        }
    }

    /// Ends the session, releasing a lease so that another runner may take
    /// over at once (a local lock is released when dropped).
    ///
    /// # Errors
    /// [`CkptError::Lease`] if the release could not be written (the lease
    /// then expires by itself).
    pub fn release(self) -> Result<(), CkptError> {
        match self.claim {
            Claim::Lease(keeper) => keeper.release().map_err(CkptError::Lease),
            Claim::Local(_) | Claim::Exclusive => Ok(()),
        }
    }
}
