//! Persistent processes: `ferrite run --name`, `ferrite resume`, `ferrite
//! checkpoint`, and plain runs with a bounded physical heap.
//!
//! A named process commits a checkpoint when it starts, every
//! `--checkpoint-every`, when `ferrite checkpoint NAME` asks (SIGUSR1 to the
//! runner, whose PID is in the process's lock file), on SIGTERM and SIGINT
//! (then it stops), and when it ends (recording how, so that a later `resume`
//! reports the same outcome instead of running it again).
//!
//! Exit statuses are those of `ferrite run`, plus:
//!
//! | status   | meaning                                                             |
//! |----------|---------------------------------------------------------------------|
//! | 130, 143 | stopped by SIGINT or SIGTERM after a checkpoint (128 + signal)      |
//! | 1        | a storage failure or failed checkpoint stopped the process; the     |
//! |          | last committed checkpoint is intact and `ferrite resume` continues  |
//! |          | from it. Or the store is damaged (an object is corrupt, missing or  |
//! |          | truncated; the message names it), or recovery stopped at a newer    |
//! |          | checkpoint it cannot use (the message says how to roll back on      |
//! |          | purpose with `ferrite resume NAME --from-checkpoint N`)             |

use crate::{
    migrate,
    run::{exit_code, print_results, print_trap, trap_exit_code},
    store::{self, Location, StoreOption},
};
use clap::Args;
use ferrite_ckpt::{list_processes, ProcessLock, ProcessStatus, ProcessStore};
use ferrite_pagestore::{LocalStore, StorageBackend};
use ferrite_process::{
    CheckpointReport, Launch, Notice, Outcome, Process, ProcessError, ProcessOptions, ProcessStats,
    ResumeReport,
};
use ferrite_vm::StackLimits;
use std::{fmt::Write as _, io::IsTerminal};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

/// Options of `run` and `resume` about persistence and the heap.
#[derive(Debug, Args)]
pub struct PersistOptions {
    #[command(flatten)]
    pub store: StoreOption,

    /// Bound the heap's resident pages to SIZE (for example `32MiB`, `1GiB`,
    /// `65536`); the rest of the heap lives in the store and is paged in on
    /// demand. Default: unbounded.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub physical_heap: Option<u64>,

    /// With a named process: commit a checkpoint every DURATION of running (for
    /// example `30s`, `500ms`, `5min`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_every: Option<Duration>,

    /// Print page faults, evictions, write-backs, bytes read and written, and
    /// checkpoint pauses on stderr when the run ends.
    #[arg(long)]
    pub stats: bool,
}

/// Resume a named process from its last checkpoint.
///
/// The process continues where its last committed checkpoint left it and ends
/// as an uninterrupted run would: same output from then on, same results, same
/// exit status. Its heap is not loaded first: pages are read from the store
/// when the program touches them (`--prefetch` reads the pages that were
/// resident at the checkpoint first). A process that already ended reports its
/// recorded outcome again. A process runs in one place at a time: resuming one
/// that is running is refused.
///
/// With `--all`, every process of the store that was running when it last
/// checkpointed (and is not running now) is resumed, each as its own `ferrite
/// resume` child; the command waits for all of them. For a boot script or a
/// service unit.
#[derive(Debug, Args)]
pub struct ResumeOptions {
    /// The process name.
    #[arg(
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub name: Option<String>,

    /// Resume every stopped process of the store.
    #[arg(long)]
    pub all: bool,

    /// Read the pages that were resident at the checkpoint before running.
    #[arg(long)]
    pub prefetch: bool,

    /// Roll back on purpose to checkpoint N instead of the newest one. The
    /// later checkpoints are not deleted: their objects are set aside under
    /// the process's `quarantine/` in the store, and the process continues
    /// from N, committing those checkpoint numbers again. For when recovery
    /// stops at a newer checkpoint it cannot use and says so.
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub from_checkpoint: Option<u64>,

    /// Move the process here while it runs elsewhere (live migration, for a
    /// store in object storage or on a heap server): its runner sends its
    /// dirty pages in rounds while it runs on, stops, commits and hands the
    /// process over; this runner fetches the committed pages meanwhile and
    /// starts at once, faulting in the rest.
    #[arg(long, conflicts_with_all = ["all", "from_checkpoint"])]
    pub take_over: bool,

    /// With `--take-over`: give up waiting for the hand-over after DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10min")]
    pub take_over_wait: Duration,

    #[command(flatten)]
    pub persist: PersistOptions,
}

/// Ask a running named process to commit a checkpoint now.
///
/// Asks the runner (with SIGUSR1, or SIGTERM for `--stop`, on a local store;
/// with a request in the store that its lease keeper finds, on object
/// storage or a heap server, wherever the runner is) and waits until the new
/// checkpoint is committed, then prints its epoch.
#[derive(Debug, Args)]
pub struct CheckpointOptions {
    /// The process name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Give up waiting after DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,

    /// Stop the process after the checkpoint (cold migration: resume it on
    /// any machine that reaches its store).
    #[arg(long)]
    pub stop: bool,

    #[command(flatten)]
    pub store: StoreOption,
}

/// The invocation flag of `--checkpoint-every` (milliseconds), which a resume
/// applies unless it is given its own (`ferrite_process` records the physical
/// heap the same way).
const FLAG_CHECKPOINT_EVERY: &str = "checkpoint-every-ms";

/// What `run` hands over for a persistent or heap-bounded run.
#[derive(Debug)]
pub struct Prepared {
    pub launch: Launch,
    pub stack_limits: StackLimits,
}

/// Parses `32MiB`, `1GiB`, `512KiB`, `4096` (bytes); `K`, `M`, `G` and their
/// `B`-suffixed forms are binary units too.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 32MiB or 1GiB"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes < ferrite_heap::PAGE_SIZE as u64 * 2 {
        return Err(format!(
            "`{text}` is below the smallest physical heap, {} bytes",
            ferrite_heap::PAGE_SIZE * 2
        ));
    }
    Ok(bytes)
}

/// Parses `500ms`, `30s`, `5min`, `2h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 30s or 5min: {e}"))?;
    if duration.is_zero() {
        return Err("a duration must be longer than zero".into());
    }
    Ok(duration)
}

/// Why the run loop was interrupted: set by signal handlers and the timer.
#[derive(Debug, Clone)]
struct Requests {
    /// The signal that asked to stop (0: none).
    stop: Arc<AtomicUsize>,
    /// A checkpoint was asked for (timer or SIGUSR1).
    checkpoint: Arc<AtomicBool>,
    /// The process's interrupt flag, raised with either of the above.
    interrupt: Arc<AtomicBool>,
    /// Tells the `--checkpoint-every` timer that a checkpoint completed.
    checkpointed: Option<mpsc::Sender<()>>,
}

impl Requests {
    /// Routes SIGTERM, SIGINT and SIGUSR1 (and the timer) to a new interrupt
    /// flag. Installed before the process starts or resumes, so that a signal
    /// that comes meanwhile stops it at its first instruction.
    fn install() -> Result<Self, String> {
        use signal_hook::{consts, flag};
        let interrupt = Arc::new(AtomicBool::new(false));
        let requests = Requests {
            stop: Arc::new(AtomicUsize::new(0)),
            checkpoint: Arc::new(AtomicBool::new(false)),
            interrupt: interrupt.clone(),
            checkpointed: None,
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let error = |e: std::io::Error| format!("cannot install signal handlers: {e}");
        for signal in [consts::SIGTERM, consts::SIGINT] {
            // A second signal while the first is handled (a program blocked in a
            // read of stdin never reaches a checkpoint) exits at once.
            flag::register_conditional_shutdown(signal, 128 + signal, stopping.clone())
                .map_err(error)?;
            flag::register(signal, stopping.clone()).map_err(error)?;
            flag::register_usize(signal, requests.stop.clone(), signal as usize).map_err(error)?;
            flag::register(signal, interrupt.clone()).map_err(error)?;
        }
        flag::register(consts::SIGUSR1, requests.checkpoint.clone()).map_err(error)?;
        flag::register(consts::SIGUSR1, interrupt.clone()).map_err(error)?;
        Ok(requests)
    }

    /// Starts the `--checkpoint-every` timer. DURATION counts running time: it
    /// restarts when any checkpoint completes, so a slow checkpoint is never
    /// followed at once by the next one.
    fn start_timer(&mut self, every: Duration) -> Result<(), String> {
        let (checkpoint, interrupt) = (self.checkpoint.clone(), self.interrupt.clone());
        let (done, checkpointed) = mpsc::channel();
        self.checkpointed = Some(done);
        std::thread::Builder::new()
            .name("checkpoint-timer".into())
            .spawn(move || loop {
                match checkpointed.recv_timeout(every) {
                    Ok(()) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        checkpoint.store(true, Ordering::SeqCst);
                        interrupt.store(true, Ordering::SeqCst);
                        if checkpointed.recv().is_err() {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            })
            .map_err(|e| format!("cannot start the checkpoint timer: {e}"))?;
        Ok(())
    }
}

/// Opens the store at `root` for a runner, creating it if needed.
fn open_store(root: &Path) -> Result<Arc<dyn StorageBackend>, String> {
    let store =
        LocalStore::open(root).map_err(|e| format!("cannot open store {}: {e}", root.display()))?;
    Ok(Arc::new(store))
}

/// What a runner of process `name` needs: the store, the claim on the
/// process, and the process options that depend on the store.
struct Runner {
    backend: Arc<dyn StorageBackend>,
    claim: ferrite_ckpt::Claim,
    journal_dir: PathBuf,
    counters: StoreCounters,
    /// How the process came here, for `--take-over`.
    moved: Option<migrate::TakeOver>,
}

/// Counters of the layers of a remote store, for `--stats`.
#[derive(Default)]
struct StoreCounters {
    cache: Option<ferrite_remote::CacheStatsHandle>,
    net: Option<ferrite_net::client::NetStatsHandle>,
}

/// Opens the store and claims process `name`: at once, or with
/// `take_over`, by asking its runner to hand it over (waiting at most that
/// long).
fn open_for_runner(
    option: &StoreOption,
    name: &str,
    take_over: Option<Duration>,
) -> Result<Runner, String> {
    ferrite_ckpt::check_process_name(name).map_err(|e| e.to_string())?;
    let opened = store::open_for_runner(option)?;
    let tag = ferrite_ckpt::runner_tag();
    let (claim, moved) = match take_over {
        None => (store::claim(&opened, option, name, &tag)?, None),
        Some(_) if opened.location.local().is_some() => {
            return Err(format!(
                "--take-over moves a process between machines that share its store (object \
                 storage or a heap server); in the local store {}, stop {name} \
                 (`ferrite checkpoint {name} --stop`) and resume it",
                opened.location.display()
            ))
        }
        Some(wait_max) => {
            let mut moved = migrate::take_over(&opened, option, name, &tag, wait_max)?;
            let claim = std::mem::replace(&mut moved.claim, ferrite_ckpt::Claim::Exclusive);
            (claim, Some(moved))
        }
    };
    let journal_dir = store::journal_dir(&opened.location, name)?;
    Ok(Runner {
        backend: opened.backend,
        claim,
        journal_dir,
        counters: StoreCounters {
            cache: opened.cache,
            net: opened.net,
        },
        moved,
    })
}

/// Prints what a paused process waits for (its lease, the store).
fn notice(name: &str) -> Notice {
    let name = name.to_string();
    Notice(Arc::new(move |waited, why| {
        eprintln!(
            "ferrite: {name} paused for {:.0} s: the store cannot be reached ({why}); waiting",
            waited.as_secs_f64()
        );
    }))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// `ferrite run --name NAME ...`: starts a persistent process and runs it.
pub fn run_named(name: &str, prepared: Prepared, options: &PersistOptions) -> ExitCode {
    let runner = match open_for_runner(&options.store, name, None) {
        Ok(runner) => runner,
        Err(message) => return fail(&message),
    };
    let process_options = ProcessOptions {
        stack_limits: prepared.stack_limits,
        physical_heap_bytes: options.physical_heap,
        journal_dir: Some(runner.journal_dir),
        notice: Some(notice(name)),
        ..ProcessOptions::default()
    };
    let mut launch = prepared.launch;
    launch.name = name.to_string();
    // A resume may run in another working directory (a boot script's): the
    // preopens it reopens must not depend on this one.
    for preopen in &mut launch.wasi.preopens {
        match std::path::absolute(&preopen.host_path) {
            Ok(path) => preopen.host_path = path,
            Err(error) => return fail(&format!("--dir {}: {error}", preopen.host_path.display())),
        }
    }
    if let Some(every) = options.checkpoint_every {
        launch
            .invocation
            .flags
            .insert(FLAG_CHECKPOINT_EVERY.into(), every.as_millis().to_string());
    }
    let mut requests = match Requests::install() {
        Ok(requests) => requests,
        Err(message) => return fail(&message),
    };
    if let Some(every) = options.checkpoint_every {
        if let Err(message) = requests.start_timer(every) {
            return fail(&message);
        }
    }
    let counters = runner.counters;
    match Process::start(runner.backend, runner.claim, launch, &process_options) {
        Ok(process) => drive(process, options, Some(&requests), None, &counters, None),
        Err(error) => fail(&error.to_string()),
    }
}

/// `ferrite run --physical-heap SIZE ...` without `--name`: the heap pages out
/// to a scratch store in the temporary directory, removed at the end.
pub fn run_scratch(prepared: Prepared, options: &PersistOptions) -> ExitCode {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let root = std::env::temp_dir().join(format!("ferrite-scratch-{}-{nanos}", std::process::id()));
    let status = (|| {
        let backend = open_store(&root).map_err(|m| fail(&m))?;
        let process_options = ProcessOptions {
            stack_limits: prepared.stack_limits,
            physical_heap_bytes: options.physical_heap,
            persistent: false,
            ..ProcessOptions::default()
        };
        let mut launch = prepared.launch;
        launch.name = "scratch".into();
        let process = Process::start(backend, None, launch, &process_options)
            .map_err(|e| fail(&e.to_string()))?;
        Ok::<_, ExitCode>(drive(
            process,
            options,
            None,
            None,
            &StoreCounters::default(),
            None,
        ))
    })();
    let _ = std::fs::remove_dir_all(&root);
    status.unwrap_or_else(|status| status)
}

/// `ferrite resume`.
pub fn resume(options: &ResumeOptions) -> ExitCode {
    if options.all {
        return resume_all(options);
    }
    let name = options
        .name
        .as_deref()
        .expect("clap requires NAME without --all");
    let take_over = options.take_over.then_some(options.take_over_wait);
    let runner = match open_for_runner(&options.persist.store, name, take_over) {
        Ok(runner) => runner,
        Err(message) => return fail(&message),
    };
    let process_options = ProcessOptions {
        physical_heap_bytes: options.persist.physical_heap,
        journal_dir: Some(runner.journal_dir),
        notice: Some(notice(name)),
        ..ProcessOptions::default()
    };
    let mut requests = match Requests::install() {
        Ok(requests) => requests,
        Err(message) => return fail(&message),
    };
    let from = options.from_checkpoint;
    let counters = runner.counters;
    let mut runner_moved = runner.moved;
    let backend = runner.backend.clone();
    match Process::resume_from(runner.backend, runner.claim, name, &process_options, from) {
        Ok((mut process, mut report)) => {
            // The run's own period unless this resume gives another.
            let every = options.persist.checkpoint_every.or_else(|| {
                process
                    .invocation()
                    .flags
                    .get(FLAG_CHECKPOINT_EVERY)
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis)
            });
            if let Some(every) = every {
                if let Err(message) = requests.start_timer(every) {
                    return fail(&message);
                }
            }
            for (epoch, reason) in &report.skipped {
                eprintln!(
                    "warning: checkpoint {epoch} of {name} is damaged ({reason}); \
                     resumed from checkpoint {}",
                    report.epoch
                );
            }
            if let Some((prefix, objects)) = &report.set_aside {
                eprintln!(
                    "warning: {name}: the checkpoints after {} were set aside under {prefix} \
                     ({objects} objects, kept, not deleted); {name} continues from checkpoint {}",
                    report.epoch, report.epoch
                );
            }
            for not_undone in &report.files_not_undone {
                eprintln!("warning: {name}: {not_undone}");
            }
            for lost in &report.lost {
                eprintln!("warning: {name}: {lost}; the program sees EIO on it");
            }
            // Read the pages resident at the checkpoint now, or ask the
            // store to send them while the process runs (a heap server
            // pushes them; other stores ignore the hint).
            let fetched_ahead = runner_moved
                .as_ref()
                .is_some_and(|moved| moved.fetched_bytes > 0);
            let ahead = if options.prefetch {
                prefetch(&mut process).map(|pages| report.prefetched = pages)
            } else if fetched_ahead {
                // A taker fetched the committed pages into its cache while
                // it waited: naming them again would only load the page map
                // before the first instruction, in the downtime.
                Ok(())
            } else {
                process.hint_resident().map(|pages| report.hinted = pages)
            };
            if let Err(error) = ahead {
                return stopped(&process, &error);
            }
            if let Some(moved) = &mut runner_moved {
                moved.started_unix_ns = migrate::unix_ns();
                let told = TakeOverTold {
                    name: name.to_string(),
                    epoch: report.epoch,
                    from: moved.from.clone().unwrap_or_else(|| "its runner".into()),
                    fetched_bytes: moved.fetched_bytes,
                    started_unix_ns: moved.started_unix_ns,
                    asked: moved.asked,
                };
                moved.settle(backend, name, move |answer| {
                    report_take_over(&told, answer);
                });
            }
            drive(
                process,
                &options.persist,
                Some(&requests),
                Some(&report),
                &counters,
                runner_moved.as_mut(),
            )
        }
        Err(ProcessError::Finished { status, .. }) => replay(name, &status),
        Err(error) => fail(&error.to_string()),
    }
}

/// Reads the pages resident at the checkpoint, with a progress bar on a
/// terminal when there are many.
fn prefetch(process: &mut Process) -> Result<usize, ProcessError> {
    /// Fewer pages than this are read without a progress bar.
    const PROGRESS_PAGES_MIN: usize = 4096;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let pages = process.prefetch(&mut |done, total| {
        if total < PROGRESS_PAGES_MIN || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_message("prefetching pages");
            bar
        });
        bar.set_position(done as u64);
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(pages)
}

/// Reports the recorded outcome of a process that already ended, as its run
/// did.
fn replay(name: &str, status: &ProcessStatus) -> ExitCode {
    eprintln!("note: process {name} had already finished; reporting its outcome");
    match status {
        ProcessStatus::Returned { results } => {
            let mut text = String::new();
            for result in results {
                text.push_str(result);
                text.push('\n');
            }
            print!("{text}");
            ExitCode::SUCCESS
        }
        ProcessStatus::Exited { code } => exit_code(ferrite_wasi::ProcExit {
            status: *code as u32,
        }),
        ProcessStatus::Trapped { message } => {
            eprintln!("error: {message}");
            trap_exit_code()
        }
        ProcessStatus::Running => unreachable!("a running process is resumed, not replayed"),
    }
}

/// `ferrite resume --all`: one child per resumable process.
fn resume_all(options: &ResumeOptions) -> ExitCode {
    let opened = match store::open_for_reading(&options.persist.store) {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            eprintln!("no processes to resume in the store");
            return ExitCode::SUCCESS;
        }
        Err(message) => return fail(&message),
    };
    let backend = opened.backend.clone();
    let root = opened.location.display();
    let names = match list_processes(&*backend) {
        Ok(names) => names,
        Err(error) => return fail(&error.to_string()),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => return fail(&format!("cannot find the ferrite executable: {error}")),
    };
    let mut children = Vec::new();
    for name in names {
        // A local runner holds the lock; a remote one its lease, which the
        // child's resume finds (and then refuses).
        if let Location::Local(dir) = &opened.location {
            if ProcessLock::is_held(dir, &name) {
                eprintln!("{name}: already running");
                continue;
            }
        }
        // Resumable: its newest checkpoint says running, or cannot be read here
        // (the child's recovery falls back to an older one, or reports why not).
        let resumable = match ProcessStore::new(backend.clone(), &name).and_then(|store| {
            let newest = store.epochs()?.last().copied();
            newest.map(|epoch| store.load(epoch)).transpose()
        }) {
            Ok(Some(manifest)) => manifest.body.status == ProcessStatus::Running,
            Ok(None) => false,
            Err(_) => true,
        };
        if !resumable {
            continue;
        }
        let mut command = std::process::Command::new(&exe);
        command.arg("resume").arg(&name).arg("--store").arg(&root);
        let store = &options.persist.store;
        if let Some(key) = &store.key_file {
            command.arg("--key-file").arg(key);
        }
        if store.single_writer {
            command.arg("--single-writer");
        }
        // How to reach a remote store: each child opens it again.
        let paths = [
            ("--cache-dir", &store.cache_dir),
            ("--token-file", &store.token_file),
            ("--ca-cert", &store.ca_cert),
        ];
        for (flag, path) in paths {
            if let Some(path) = path {
                command.arg(flag).arg(path);
            }
        }
        if let Some(bytes) = store.cache_size {
            command.arg("--cache-size").arg(bytes.to_string());
        }
        command
            .arg("--lease")
            .arg(format!("{}ms", store.lease.as_millis()));
        if let Some(bytes) = options.persist.physical_heap {
            command.arg("--physical-heap").arg(bytes.to_string());
        }
        if let Some(every) = options.persist.checkpoint_every {
            command
                .arg("--checkpoint-every")
                .arg(format!("{}ms", every.as_millis()));
        }
        if options.prefetch {
            command.arg("--prefetch");
        }
        match command.spawn() {
            Ok(child) => {
                eprintln!("{name}: resumed (pid {})", child.id());
                children.push((name, child));
            }
            Err(error) => eprintln!("{name}: cannot start: {error}"),
        }
    }
    let mut all_ok = true;
    for (name, mut child) in children {
        match child.wait() {
            Ok(status) => {
                eprintln!("{name}: {status}");
                all_ok &= status.success();
            }
            Err(error) => {
                eprintln!("{name}: {error}");
                all_ok = false;
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs a started or resumed process to its end or to a stop, committing the
/// checkpoints asked for; reports the outcome as `ferrite run` does.
fn drive(
    mut process: Process,
    options: &PersistOptions,
    requests: Option<&Requests>,
    resumed: Option<&ResumeReport>,
    counters: &StoreCounters,
    moved: Option<&mut migrate::TakeOver>,
) -> ExitCode {
    let persistent = process.is_persistent();
    let mut hand_to = None;
    if let Some(requests) = requests {
        process.set_interrupt_handle(requests.interrupt.clone());
    }
    let began = Instant::now();
    let status = loop {
        let outcome = match process.run() {
            Ok(outcome) => outcome,
            Err(error) => break stopped(&process, &error),
        };
        let Outcome::Interrupted = outcome else {
            if persistent {
                if let Err(error) = process.finish(&outcome) {
                    eprintln!(
                        "warning: the final checkpoint of {} failed: {error}",
                        process.name()
                    );
                }
            }
            break report(&outcome);
        };
        let taken = process.take_requests();
        if !taken.is_empty() {
            match migrate::serve_requests(&mut process, taken) {
                Ok(migrate::Taken::Continue) => {}
                Ok(migrate::Taken::Stopped { epoch }) => {
                    eprintln!(
                        "ferrite: {} stopped on request after checkpoint {epoch}; resume it with \
                         `ferrite resume {}` on any machine that reaches its store",
                        process.name(),
                        process.name()
                    );
                    break ExitCode::from(128 + signal_hook::consts::SIGTERM as u8);
                }
                Ok(migrate::Taken::Moved {
                    to,
                    answer,
                    steps,
                    committed,
                    answers,
                }) => {
                    hand_to = Some((to, answer, steps, committed, answers));
                    break ExitCode::SUCCESS;
                }
                Ok(migrate::Taken::Ended(outcome)) => {
                    if let Err(error) = process.finish(&outcome) {
                        eprintln!(
                            "warning: the final checkpoint of {} failed: {error}",
                            process.name()
                        );
                    }
                    break report(&outcome);
                }
                Err(error) => break stopped(&process, &error),
            }
        }
        let Some(requests) = requests else { continue };
        let stop = requests.stop.swap(0, Ordering::SeqCst);
        let asked = requests.checkpoint.swap(false, Ordering::SeqCst);
        if stop == 0 && !asked {
            continue;
        }
        match process.checkpoint() {
            Ok(checkpoint) if stop != 0 => {
                eprintln!(
                    "ferrite: {} stopped by {} after checkpoint {}; resume it with `ferrite resume {}`",
                    process.name(),
                    signal_name(stop),
                    describe(&checkpoint),
                    process.name()
                );
                break ExitCode::from(128 + stop as u8);
            }
            Ok(_) => {
                if let Some(done) = &requests.checkpointed {
                    let _ = done.send(());
                }
            }
            Err(error) => break stopped(&process, &error),
        }
    };
    // The old runner's answer, read (and its requests removed) meanwhile.
    let mut moved = moved;
    let answer = moved.as_mut().and_then(|moved| moved.answer().cloned());
    let name = process.name().to_string();
    let stats = process.stats();
    // A moved process is handed over before anything else: the new runner
    // waits for it.
    let (process, handed) = match hand_to {
        Some((to, answer, steps, committed, answers)) => {
            let backend = process.backend();
            let result = process.hand_over(&to);
            let after = committed.elapsed();
            migrate::write_answers(&*backend, &name, &answers);
            (None, Some((to, answer, steps, after, result)))
        }
        None => (Some(process), None),
    };
    if options.stats {
        print_stats(&stats, began.elapsed(), resumed);
        if let (Some(answer), Some(moved)) = (&answer, &moved) {
            let before: u64 = answer.rounds.iter().map(|r| r.pages_written).sum();
            let rounds: Vec<String> = answer
                .rounds
                .iter()
                .map(|round| round.pages_written.to_string())
                .collect();
            eprintln!(
                "  take-over     downtime {}, pages moved: {before} before the start \
                 ({} rounds: {}; {:.2} MiB in {} segments fetched ahead), {} after (faulted in)",
                migrate::downtime_at(answer, moved.started_unix_ns).map_or_else(
                    || "unknown".into(),
                    |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)
                ),
                answer.rounds.len(),
                rounds.join(" + "),
                moved.fetched_bytes as f64 / f64::from(1 << 20),
                moved.fetched_objects,
                stats.heap.page_faults,
            );
            if let (Some(leased), Some(started)) = (
                migrate::downtime_at(answer, moved.leased_unix_ns),
                migrate::downtime_at(answer, moved.started_unix_ns),
            ) {
                eprintln!(
                    "  downtime      lease taken {:.1} ms after the stop, first instruction \
                     {:.1} ms after that",
                    leased.as_secs_f64() * 1000.0,
                    started.saturating_sub(leased).as_secs_f64() * 1000.0
                );
            }
        }
        if let Some(net) = &counters.net {
            let stats = net.get();
            eprintln!(
                "  heap server   {} reads on demand ({:.2} MiB), {} from pushed pages \
                 ({:.2} MiB of {:.2} MiB pushed), {} reconnects",
                stats.demand_gets,
                stats.demand_bytes as f64 / f64::from(1 << 20),
                stats.pushed_gets,
                stats.pushed_bytes_used as f64 / f64::from(1 << 20),
                stats.pushed_bytes_received as f64 / f64::from(1 << 20),
                stats.reconnects,
            );
        }
        if let Some(cache) = &counters.cache {
            let stats = cache.get();
            eprintln!(
                "  local cache   hit rate {:.1}% ({} of {} blocks), {:.2} MiB from the cache, \
                 {:.2} MiB fetched",
                stats.hit_rate() * 100.0,
                stats.hits,
                stats.hits + stats.misses,
                stats.bytes_from_cache as f64 / f64::from(1 << 20),
                stats.bytes_fetched as f64 / f64::from(1 << 20),
            );
        }
    }
    if let Some((to, answer, steps, after, handed)) = handed {
        let rounds = answer.rounds.len();
        let pages: u64 = answer.rounds.iter().map(|r| r.pages_written).sum();
        match handed {
            Ok(()) => {
                eprintln!(
                    "ferrite: {name} moved to {to} at checkpoint {} ({rounds} rounds, {pages} \
                     pages sent); it runs there now",
                    answer.epoch
                );
                if options.stats {
                    for (round, steps) in answer.rounds.iter().zip(&steps) {
                        eprintln!(
                            "  round {}      {} pages in {:.1} ms: {steps}",
                            round.epoch,
                            round.pages_written,
                            round.pause_us as f64 / 1000.0
                        );
                    }
                    eprintln!(
                        "  hand-over     lease handed over {:.1} ms after the last commit",
                        after.as_secs_f64() * 1000.0
                    );
                }
            }
            Err(error) => {
                eprintln!(
                    "warning: {name}: the hand-over to {to} failed: {error}; {to} takes the \
                     process when the lease runs out"
                );
                return ExitCode::FAILURE;
            }
        }
        return status;
    }
    // Another runner may take over at once (a lease otherwise runs out).
    let Some(process) = process else {
        return status;
    };
    if let Err(error) = process.close() {
        eprintln!("warning: {name}: {error}; the lease runs out by itself");
    }
    status
}

/// Tells how a taken-over process came here, at its first instruction.
/// What [`report_take_over`] tells besides the old runner's answer.
struct TakeOverTold {
    name: String,
    epoch: u64,
    from: String,
    fetched_bytes: u64,
    started_unix_ns: u64,
    asked: Option<Instant>,
}

fn report_take_over(told: &TakeOverTold, answer: &ferrite_ckpt::requests::Answer) {
    let TakeOverTold {
        name, epoch, from, ..
    } = told;
    let pages: u64 = answer.rounds.iter().map(|r| r.pages_written).sum();
    let downtime = migrate::downtime_at(answer, told.started_unix_ns).map_or_else(
        || "unknown".into(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    );
    let last = answer.rounds.last().copied().unwrap_or_default();
    let total = told
        .asked
        .map_or(0.0, |asked| asked.elapsed().as_secs_f64());
    eprintln!(
        "ferrite: {name} taken over from {from} at checkpoint {epoch}: downtime {downtime} \
         ({} rounds, {pages} pages sent, the last {} after the stop in {:.1} ms; {:.1} MiB \
         fetched ahead; {total:.2} s since the request)",
        answer.rounds.len(),
        last.pages_written,
        last.pause_us as f64 / 1000.0,
        told.fetched_bytes as f64 / f64::from(1 << 20)
    );
}

/// The message and status of a process stopped by a storage or checkpoint
/// failure.
fn stopped(process: &Process, error: &ProcessError) -> ExitCode {
    eprintln!("error: {error}");
    let epoch = process.committed_epoch();
    if let ProcessError::Corrupt(_) = error {
        eprintln!(
            "error: process {} stopped on damaged data in its store, which is never used; \
             a resume meets it again until the object is restored from a copy",
            process.name()
        );
    } else if epoch > 0 {
        eprintln!(
            "error: process {} stopped; its last checkpoint ({epoch}) is intact: `ferrite resume {}` continues from it",
            process.name(),
            process.name()
        );
    }
    ExitCode::FAILURE
}

fn describe(checkpoint: &CheckpointReport) -> String {
    format!(
        "{} ({} pages written, paused {:.1} ms)",
        checkpoint.epoch,
        checkpoint.pages_written,
        checkpoint.pause.as_secs_f64() * 1000.0
    )
}

fn signal_name(signal: usize) -> &'static str {
    match signal as i32 {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Prints a finished run's outcome and returns its status, as `ferrite run`.
fn report(outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Returned(results) => print_results(results),
        Outcome::Exited(status) => exit_code(ferrite_wasi::ProcExit { status: *status }),
        Outcome::Trapped(trap) => {
            print_trap(trap);
            trap_exit_code()
        }
        Outcome::Interrupted => unreachable!("interruptions are handled by the caller"),
    }
}

fn print_stats(stats: &ProcessStats, elapsed: Duration, resumed: Option<&ResumeReport>) {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let heap = &stats.heap;
    let mut text = String::from("ferrite stats:\n");
    if let Some(resumed) = resumed {
        let _ = writeln!(
            text,
            "  resume        from checkpoint {}, ready after {:.2} ms, {} pages prefetched, \
             {} asked of the store ahead",
            resumed.epoch,
            ms(resumed.ready_after),
            resumed.prefetched,
            resumed.hinted
        );
    }
    let _ = write!(
        text,
        "  run time      {:.1} ms\n\
         \x20 page faults   {} read from the store, {} zero-filled\n\
         \x20 evictions     {} ({} written back)\n\
         \x20 resident      {} pages now, limit {}\n\
         \x20 store I/O     {:.2} MiB read ({} pages read ahead), {:.2} MiB written\n\
         \x20 compaction    {} pages moved, {} dead segments dropped\n\
         \x20 checkpoints   {} ({} pages written), pause total {:.2} ms, max {:.2} ms\n",
        ms(elapsed),
        heap.page_faults,
        heap.zero_fills,
        heap.evictions,
        heap.write_backs,
        heap.resident_pages,
        heap.frames_max
            .map_or_else(|| "none".to_string(), |frames| frames.to_string()),
        mib(stats.store.bytes_read),
        stats.store.pages_read_ahead,
        mib(stats.store.bytes_written),
        stats.store.pages_compacted,
        stats.store.segments_dropped,
        stats.checkpoints,
        stats.pages_checkpointed,
        ms(stats.pause_total),
        ms(stats.pause_max),
    );
    eprint!("{text}");
}

/// `ferrite checkpoint NAME`.
pub fn checkpoint(options: &CheckpointOptions) -> ExitCode {
    match request_checkpoint(options) {
        Ok(epoch) => {
            let stopped = if options.stop {
                "; the process stopped"
            } else {
                ""
            };
            println!("checkpoint {epoch} of {} committed{stopped}", options.name);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn request_checkpoint(options: &CheckpointOptions) -> Result<u64, String> {
    let name = options.name.as_str();
    ferrite_ckpt::check_process_name(name).map_err(|e| e.to_string())?;
    let Location::Local(root) = Location::of(&options.store)? else {
        let opened = store::open_for_reading(&options.store)?
            .ok_or_else(|| format!("process {name} is not running"))?;
        return migrate::request_checkpoint(&opened, name, options.stop, options.timeout);
    };
    let backend = open_store(&root)?;
    let store = ProcessStore::new(backend, name).map_err(|e| e.to_string())?;
    let newest = || -> Result<u64, String> {
        Ok(store
            .epochs()
            .map_err(|e| e.to_string())?
            .last()
            .copied()
            .unwrap_or(0))
    };
    let before = newest()?;
    let pid = match ProcessLock::holder_pid(&root, name) {
        Some(pid) if ProcessLock::is_held(&root, name) => pid,
        _ => return Err(format!("process {name} is not running")),
    };
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| format!("process {name}: invalid runner pid {pid}"))?;
    let signal = if options.stop {
        rustix::process::Signal::TERM
    } else {
        rustix::process::Signal::USR1
    };
    rustix::process::kill_process(pid, signal)
        .map_err(|e| format!("cannot signal the runner of {name}: {e}"))?;
    let deadline = Instant::now() + options.timeout;
    loop {
        let now = newest()?;
        let held = ProcessLock::is_held(&root, name);
        // A stop is done when the runner let go of the process.
        if now > before && !(options.stop && held) {
            return Ok(now);
        }
        if !held && now == before {
            return Err(format!("process {name} stopped before checkpointing"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no checkpoint of {name} within {}",
                humantime::format_duration(options.timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
