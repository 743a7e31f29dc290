//! Moving a process between machines that share its store, and asking its
//! runner for a checkpoint from anywhere: requests and answers through the
//! store (`ferrite_ckpt::requests`), taken by the runner's lease keeper.
//!
//! A live take-over (`ferrite resume NAME --take-over` on machine B while A
//! runs the process):
//!
//! 1. B posts a take-over request to the lease generation A holds (one per
//!    generation: of two takers, one wins) and waits for the lease, fetching
//!    the process's committed pages into its local cache meanwhile, newest
//!    first.
//! 2. A's keeper finds the request (at its next renewal, or at once when the
//!    store pushes the news) and interrupts the program. A sends its dirty
//!    pages in rounds, each a committed checkpoint, running the program
//!    between rounds for about as long as the round took, until a round is
//!    small or a round limit is reached: that round was taken with the program
//!    stopped for good. A answers the request (the rounds, when it stopped)
//!    and hands the lease to B.
//! 3. B takes the handed-over lease at once, resumes from the last checkpoint
//!    and faults in what its cache lacks.
//!
//! Nothing runs twice: B runs only under the lease A handed over after its
//! last commit; A stops before handing over. If A dies meanwhile, its lease
//! runs out and B takes it then, from A's last commit.

use crate::store::{self, Opened, StoreOption};
use ferrite_ckpt::{
    requests::{self, Answer, RequestKind, Round, StoreRequest},
    Claim, LeaseError, LeaseKeeper, LeaseState, Modules, MonotonicClock, ProcessStore, StoreLease,
};
use ferrite_pagestore::{StorageBackend, StorageError};
use ferrite_process::{CheckpointSteps, Outcome, Process, ProcessError};
use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, OnceLock, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A round that wrote at most this many bytes of pages was the last.
const FINAL_ROUND_BYTES_MAX: u64 = 1 << 20;

/// The most pre-copy rounds: a program that dirties pages faster than they
/// are sent stops after this many, whatever its dirty set.
const ROUNDS_MAX: usize = 8;

/// Between rounds the program runs for about as long as the last round
/// paused it, within these bounds.
const ROUND_RUN_MIN: Duration = Duration::from_millis(2);
const ROUND_RUN_MAX: Duration = Duration::from_millis(500);

/// How often a taker looks at the lease while it waits for the hand-over
/// (the hand-over's delay adds to the downtime).
const TAKER_POLL: Duration = Duration::from_millis(5);

/// The same, for a store that tells of the hand-over as it happens.
const TAKER_POLL_PUSHED: Duration = Duration::from_millis(100);

/// How often, and how many times at most, a new runner looks for the old
/// runner's answer after the hand-over.
const ANSWER_LOOK_EVERY: Duration = Duration::from_millis(20);
const ANSWER_LOOKS_MAX: usize = 100;

/// How often the taker lists the process's segments while it waits.
const FETCH_LIST_EVERY: Duration = Duration::from_millis(100);

pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What the runner does after taking requests from the store.
pub(crate) enum Taken {
    /// Go on running.
    Continue,
    /// Stop: a checkpoint was committed for a stop request.
    Stopped { epoch: u64 },
    /// The process moved: hand the lease to `to` and exit.
    Moved {
        to: String,
        answer: Answer,
        /// Where each round's pause went.
        steps: Vec<CheckpointSteps>,
        /// When the last round committed.
        committed: Instant,
        /// The answers to the requests taken, to write once the lease is
        /// handed over (the new runner reads them after it started).
        answers: Vec<(StoreRequest, Answer)>,
    },
    /// The program ended during the pre-copy rounds.
    Ended(Outcome),
}

/// Does what the requests taken from the store ask, in order of weight: a
/// take-over before a stop before checkpoints (every one of them answered).
///
/// # Errors
/// A checkpoint failed (the requests are answered with the reason).
pub(crate) fn serve_requests(
    process: &mut Process,
    taken: Vec<StoreRequest>,
) -> Result<Taken, ProcessError> {
    let weight = |request: &StoreRequest| match request.kind {
        RequestKind::TakeOver { .. } => 0,
        RequestKind::Stop => 1,
        RequestKind::Checkpoint => 2,
    };
    let mut taken = taken;
    taken.sort_by_key(weight);
    let Some(first) = taken.first().cloned() else {
        return Ok(Taken::Continue);
    };
    let result = match &first.kind {
        RequestKind::TakeOver { to } => {
            eprintln!(
                "ferrite: {} is moving to {to}; sending its pages",
                process.name()
            );
            pre_copy(process).map(|moved| match moved {
                PreCopy::Done(answer, steps) => Taken::Moved {
                    to: to.clone(),
                    answer,
                    steps,
                    committed: Instant::now(),
                    answers: Vec::new(),
                },
                PreCopy::Ended(outcome) => Taken::Ended(outcome),
            })
        }
        RequestKind::Stop | RequestKind::Checkpoint => process.checkpoint().map(|report| {
            if first.kind == RequestKind::Stop {
                Taken::Stopped {
                    epoch: report.epoch,
                }
            } else {
                Taken::Continue
            }
        }),
    };
    // Requests that came during a take-over's rounds: its last checkpoint
    // answers them (it was committed after they were made).
    if matches!(result, Ok(Taken::Moved { .. })) {
        taken.extend(process.take_requests());
    }
    let answer = match &result {
        Ok(Taken::Moved { answer, .. }) => answer.clone(),
        Ok(Taken::Ended(_)) => Answer::refused("the program ended before it could move"),
        Ok(_) => Answer::done(process.committed_epoch()),
        Err(error) => Answer::refused(&error.to_string()),
    };
    // The first request got the work; the others of the same checkpoint are
    // answered by it too (a take-over's last checkpoint serves a checkpoint
    // request as well). Answers that cannot be written are left to the
    // asker's deadline. After a take-over they are written once the lease
    // is handed over: none of them decides anything, and each is a durable
    // put the downtime need not include.
    let mut deferred = Vec::new();
    for request in &taken {
        let answer = match (&request.kind, &result) {
            (RequestKind::TakeOver { .. }, _) if request.key != first.key => {
                Answer::refused("another take-over came first")
            }
            (RequestKind::Checkpoint | RequestKind::Stop, Ok(Taken::Moved { answer, .. })) => {
                Answer::done(answer.epoch)
            }
            _ => answer.clone(),
        };
        if matches!(result, Ok(Taken::Moved { .. })) {
            deferred.push((request.clone(), answer));
            continue;
        }
        if let Err(error) = process.answer(request, &answer) {
            eprintln!(
                "warning: {}: cannot answer the request {}: {error}",
                process.name(),
                request.key
            );
        }
    }
    match result {
        Ok(Taken::Moved {
            to,
            answer,
            steps,
            committed,
            ..
        }) => Ok(Taken::Moved {
            to,
            answer,
            steps,
            committed,
            answers: deferred,
        }),
        other => other,
    }
}

/// Writes the answers a take-over deferred (see [`serve_requests`]).
pub(crate) fn write_answers(
    backend: &dyn StorageBackend,
    name: &str,
    answers: &[(StoreRequest, Answer)],
) {
    for (request, answer) in answers {
        if let Err(error) = requests::answer_request(backend, &request.key, answer) {
            eprintln!(
                "warning: {name}: cannot answer the request {}: {error}",
                request.key
            );
        }
    }
}

enum PreCopy {
    Done(Answer, Vec<CheckpointSteps>),
    Ended(Outcome),
}

/// The pre-copy rounds of a take-over; see the module documentation.
///
/// A round that wrote little was taken with the program stopped for good.
/// Otherwise the program runs on for about as long as the round paused it
/// (the pages it dirties meanwhile are the next round's). A program that
/// dirties pages as fast as they are sent does not converge: once a round
/// is not clearly smaller than the one before (or the round limit nears),
/// the program runs only briefly before the last round.
fn pre_copy(process: &mut Process) -> Result<PreCopy, ProcessError> {
    // The rounds' pauses count (the last one is the downtime): the next
    // runner collects the garbage they leave. Should the move not happen
    // (the process ends), the final checkpoint collects it.
    process.defer_gc(true);
    let result = pre_copy_rounds(process);
    if !matches!(result, Ok(PreCopy::Done(..))) {
        process.defer_gc(false);
    }
    result
}

fn pre_copy_rounds(process: &mut Process) -> Result<PreCopy, ProcessError> {
    let mut rounds: Vec<Round> = Vec::new();
    let mut steps = Vec::new();
    let mut last = false;
    loop {
        let stopped_unix_ns = unix_ns();
        let report = process.checkpoint()?;
        rounds.push(Round {
            epoch: report.epoch,
            pages_written: report.pages_written,
            pause_us: report.pause.as_micros() as u64,
        });
        steps.push(report.steps);
        let bytes = report.pages_written * ferrite_heap::PAGE_SIZE as u64;
        if last || bytes <= FINAL_ROUND_BYTES_MAX {
            let mut answer = Answer::done(report.epoch);
            answer.stopped_unix_ns = stopped_unix_ns;
            answer.rounds = rounds;
            return Ok(PreCopy::Done(answer, steps));
        }
        let shrinking = match rounds.as_slice() {
            [.., before, now] => now.pages_written * 10 < before.pages_written * 7,
            _ => true,
        };
        last = !shrinking || rounds.len() + 1 >= ROUNDS_MAX;
        let run = if last {
            ROUND_RUN_MIN
        } else {
            report.pause.clamp(ROUND_RUN_MIN, ROUND_RUN_MAX)
        };
        match run_for(process, run)? {
            Outcome::Interrupted => {}
            ended => return Ok(PreCopy::Ended(ended)),
        }
    }
}

/// Runs the process for about `duration` (or until it ends or something else
/// interrupts it).
fn run_for(process: &mut Process, duration: Duration) -> Result<Outcome, ProcessError> {
    let flag = process.interrupt_handle();
    let done = Arc::new(AtomicBool::new(false));
    let timer = {
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            if !done.load(Ordering::SeqCst) {
                flag.store(true, Ordering::SeqCst);
            }
        })
    };
    let outcome = process.run();
    done.store(true, Ordering::SeqCst);
    let _ = timer.join();
    outcome
}

/// What a taker got: its claim on the process, and what the old runner said
/// of the move (`None` if no runner held the process).
pub(crate) struct TakeOver {
    pub(crate) claim: Claim,
    /// The old runner's answer, once [`TakeOver::settle`] read it.
    answer: Arc<OnceLock<Answer>>,
    /// The reading of the answer under way.
    settling: Option<std::thread::JoinHandle<()>>,
    /// The take-over request, and the lease generation taken.
    request: Option<(String, u64)>,
    pub(crate) from: Option<String>,
    pub(crate) fetched_bytes: u64,
    /// Segment objects fetched ahead.
    pub(crate) fetched_objects: usize,
    /// When the process ran its first instruction here (0: not yet).
    pub(crate) started_unix_ns: u64,
    /// When the lease was taken (0: no runner held it).
    pub(crate) leased_unix_ns: u64,
    /// When the runner was asked to hand the process over.
    pub(crate) asked: Option<Instant>,
}

/// `ferrite resume NAME --take-over`: asks the runner of `name` to hand the
/// process over and waits for the lease, fetching committed pages meanwhile.
pub(crate) fn take_over(
    opened: &Opened,
    option: &StoreOption,
    name: &str,
    tag: &str,
    wait_max: Duration,
) -> Result<TakeOver, String> {
    let backend = opened.backend.clone();
    let state = ferrite_ckpt::lease_state(&*backend, name).map_err(|e| e.to_string())?;
    let (request, from) = match state {
        LeaseState::None | LeaseState::Released { .. } => {
            eprintln!("ferrite: {name} is not running anywhere; resuming it here");
            let claim = store::claim(opened, option, name, tag)?;
            return Ok(TakeOver {
                claim,
                answer: Arc::default(),
                settling: None,
                request: None,
                from: None,
                fetched_bytes: 0,
                fetched_objects: 0,
                started_unix_ns: 0,
                leased_unix_ns: 0,
                asked: None,
            });
        }
        LeaseState::HandedTo { holder, .. } => {
            return Err(format!(
                "process {name} is being handed over to {holder}; a process moves to one place"
            ))
        }
        LeaseState::Held { recorded: true, .. } => {
            return Err(format!(
                "process {name} runs under a local run lock, not a lease: stop it there \
                 (`ferrite checkpoint {name} --stop`) and resume it here"
            ))
        }
        LeaseState::Held {
            generation, holder, ..
        } => {
            let kind = RequestKind::TakeOver { to: tag.into() };
            let key = requests::post_request(&*backend, name, generation, &kind, tag).map_err(
                |error| match error {
                    StorageError::AlreadyExists { .. } => format!(
                        "another take-over of process {name} is under way; \
                         a process moves to one place"
                    ),
                    other => format!("cannot ask the runner of {name} to hand it over: {other}"),
                },
            )?;
            eprintln!("ferrite: asked {holder} to hand {name} over; fetching its pages meanwhile");
            (key, holder)
        }
    };
    let began = Instant::now();
    let fetcher = Fetcher::start(opened, name);
    let clock = Arc::new(MonotonicClock::default());
    // A store that pushes the news of the hand-over wakes the wait at once;
    // the lease is still looked at every poll.
    let news = Arc::new((Mutex::new(false), Condvar::new()));
    let pushes = {
        let news = news.clone();
        backend
            .subscribe(
                &format!("procs/{name}/leases/"),
                Arc::new(move |_key: &str| {
                    *news.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
                    news.1.notify_all();
                }),
            )
            .unwrap_or(false)
    };
    let config = ferrite_ckpt::LeaseConfig {
        poll: if pushes {
            TAKER_POLL_PUSHED
        } else {
            TAKER_POLL
        },
        ..store::lease_config(option)
    };
    let mut refused = None;
    let lease = StoreLease::acquire_until(
        backend.clone(),
        name,
        tag,
        config,
        clock.clone(),
        true,
        &mut |poll| {
            if let Ok(Some(answer)) = requests::read_answer(&*backend, &request) {
                if !answer.refused.is_empty() {
                    refused = Some(answer.refused.clone());
                    return Err(LeaseError::GaveUp(format!(
                        "the runner of {name} did not hand it over: {}",
                        answer.refused
                    )));
                }
            }
            if began.elapsed() > wait_max {
                return Err(LeaseError::GaveUp(format!(
                    "process {name} was not handed over within {}",
                    humantime::format_duration(wait_max)
                )));
            }
            let until = Instant::now() + poll;
            let (flag, woken) = &*news;
            let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
            let timeout = until.saturating_duration_since(Instant::now());
            let (mut guard, _) = woken
                .wait_timeout_while(guard, timeout, |news| !*news)
                .unwrap_or_else(PoisonError::into_inner);
            *guard = false;
            Ok(())
        },
    );
    let leased_unix_ns = unix_ns();
    let (fetched_bytes, fetched_objects) = fetcher.stop();
    let lease = match lease {
        Ok(lease) => lease,
        // The process ended on the old runner: it released the lease; take
        // it to report the recorded outcome.
        Err(_) if refused.as_deref().is_some_and(|why| why.contains("ended")) => {
            return Ok(TakeOver {
                claim: store::claim(opened, option, name, tag)?,
                answer: Arc::default(),
                settling: None,
                request: None,
                from: Some(from),
                fetched_bytes,
                fetched_objects,
                started_unix_ns: 0,
                leased_unix_ns: 0,
                asked: Some(began),
            });
        }
        Err(error) => return Err(error.to_string()),
    };
    let generation = lease.generation();
    Ok(TakeOver {
        claim: Claim::Lease(LeaseKeeper::start(lease, clock)),
        answer: Arc::default(),
        settling: None,
        request: Some((request, generation)),
        from: Some(from),
        fetched_bytes,
        fetched_objects,
        started_unix_ns: 0,
        leased_unix_ns,
        asked: Some(began),
    })
}

impl TakeOver {
    /// The old runner's answer (once [`TakeOver::settle`] has read it; `None`
    /// if there was none to read or it could not be read).
    pub(crate) fn answer(&mut self) -> Option<&Answer> {
        if let Some(settling) = self.settling.take() {
            let _ = settling.join();
        }
        self.answer.get()
    }

    /// Once the process runs here: reads the old runner's answer and removes
    /// the requests to it, on a thread of its own (store round trips the
    /// downtime need not include), then calls `report` with the answer.
    pub(crate) fn settle(
        &mut self,
        backend: Arc<dyn StorageBackend>,
        name: &str,
        report: impl FnOnce(&Answer) + Send + 'static,
    ) {
        let Some((request, generation)) = self.request.take() else {
            return;
        };
        let (answer, name) = (self.answer.clone(), name.to_string());
        let settle = move || {
            // The old runner writes its answer just after the hand-over.
            let mut read = None;
            for _ in 0..ANSWER_LOOKS_MAX {
                match requests::read_answer(&*backend, &request) {
                    Ok(Some(answer)) => {
                        read = Some(answer).filter(|answer| answer.refused.is_empty());
                        break;
                    }
                    Ok(None) | Err(_) => std::thread::sleep(ANSWER_LOOK_EVERY),
                }
            }
            if let Some(read) = read {
                report(answer.get_or_init(|| read));
            }
            // The old runner's requests are done with.
            let _ = requests::remove_stale_requests(&*backend, &name, generation);
        };
        self.settling = std::thread::Builder::new()
            .name("ferrite-settle".into())
            .spawn(settle)
            .ok();
    }
}

/// Reads the process's segments into the local cache while the taker waits,
/// on a thread of its own, newest first: the pages of the newest checkpoints
/// are the ones the process will find current.
struct Fetcher {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    objects: Arc<AtomicU64>,
}

impl Fetcher {
    fn start(opened: &Opened, name: &str) -> Self {
        let fetcher = Self {
            stop: Arc::new(AtomicBool::new(false)),
            bytes: Arc::new(AtomicU64::new(0)),
            objects: Arc::new(AtomicU64::new(0)),
        };
        // Without a local cache, fetched bytes would be thrown away.
        if opened.cache.is_none() {
            return fetcher;
        }
        let backend = opened.backend.clone();
        let name = name.to_string();
        let prefix = format!("procs/{name}/segments/");
        let (stop, bytes, objects) = (
            fetcher.stop.clone(),
            fetcher.bytes.clone(),
            fetcher.objects.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("ferrite-fetch".into())
            .spawn(move || {
                // Background work at the lowest priority: where the old
                // runner or the server shares this machine's cores, the
                // fetch must not slow their last round (the downtime).
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                // The module first: the resume reads it before anything else.
                let module = ProcessStore::new(backend.clone(), &name)
                    .ok()
                    .and_then(|store| {
                        let newest = store.epochs().ok()?.last().copied()?;
                        Some(store.load(newest).ok()?.body.module_sha256)
                    });
                if let Some(hash) = module {
                    let _ = Modules::new(backend.clone()).get(&hash);
                }
                let mut seen = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    // Oldest first in the listing: taken from the back. A
                    // failed listing is tried again at the next turn.
                    let mut pending: Vec<String> = backend
                        .list(&prefix)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|key| !seen.contains(key))
                        .collect();
                    let listed = Instant::now();
                    while listed.elapsed() < FETCH_LIST_EVERY * 10 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let Some(key) = pending.pop() else { break };
                        // A segment removed meanwhile (collected) is skipped.
                        if let Ok(got) = backend.get(&key, None) {
                            bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
                            objects.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.insert(key);
                    }
                    std::thread::sleep(FETCH_LIST_EVERY);
                }
            });
        // Without the thread, the taker only fetches nothing ahead.
        drop(spawned);
        fetcher
    }

    /// Stops fetching (a get under way ends on its own); returns the bytes
    /// and objects fetched.
    fn stop(&self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        (
            self.bytes.load(Ordering::Relaxed),
            self.objects.load(Ordering::Relaxed) as usize,
        )
    }
}

/// The downtime of a take-over: from the old runner's stop to `at_unix_ns`
/// (the new runner's first instruction), by the two machines' wall clocks.
pub(crate) fn downtime_at(answer: &Answer, at_unix_ns: u64) -> Option<Duration> {
    (answer.stopped_unix_ns > 0 && at_unix_ns > 0)
        .then(|| Duration::from_nanos(at_unix_ns.saturating_sub(answer.stopped_unix_ns)))
}

/// Asks the runner of `name` in a lease-held store for a checkpoint (and a
/// stop), and waits for its answer.
pub(crate) fn request_checkpoint(
    opened: &Opened,
    name: &str,
    stop: bool,
    timeout: Duration,
) -> Result<u64, String> {
    let backend = &*opened.backend;
    let state = ferrite_ckpt::lease_state(backend, name).map_err(|e| e.to_string())?;
    let LeaseState::Held {
        generation,
        recorded: false,
        ..
    } = state
    else {
        return Err(format!("process {name} is not running"));
    };
    let kind = if stop {
        RequestKind::Stop
    } else {
        RequestKind::Checkpoint
    };
    let tag = ferrite_ckpt::runner_tag();
    let mut asked = generation;
    let mut key = requests::post_request(backend, name, asked, &kind, &tag)
        .map_err(|e| format!("cannot ask the runner of {name}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match requests::read_answer(backend, &key) {
            Ok(Some(answer)) if answer.refused.is_empty() => return Ok(answer.epoch),
            Ok(Some(answer)) => {
                return Err(format!(
                    "the runner of {name} did not checkpoint: {}",
                    answer.refused
                ))
            }
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no checkpoint of {name} within {}",
                humantime::format_duration(timeout)
            ));
        }
        // A runner that stopped renewing will never answer (one that
        // answered and stopped released its lease just after: look again).
        // A process that moved meanwhile is asked again, on its new runner.
        match ferrite_ckpt::lease_state(backend, name) {
            Ok(LeaseState::Held { generation, .. }) if generation > asked => {
                if matches!(requests::read_answer(backend, &key), Ok(None)) {
                    asked = generation;
                    key = requests::post_request(backend, name, asked, &kind, &tag)
                        .map_err(|e| format!("cannot ask the runner of {name}: {e}"))?;
                }
            }
            Ok(LeaseState::Held { .. } | LeaseState::HandedTo { .. }) => {}
            Ok(LeaseState::None | LeaseState::Released { .. }) => {
                if matches!(requests::read_answer(backend, &key), Ok(None)) {
                    return Err(format!("process {name} stopped before checkpointing"));
                }
            }
            // Looked at again at the next turn.
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
