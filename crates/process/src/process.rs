//! [`Process`]: start, run, checkpoint, resume.

use crate::{
    image::{EngineImage, PhaseImage, ENGINE_IMAGE_VERSION},
    ProcessError,
};
use ferrite_ckpt::{
    requests::{Answer, StoreRequest},
    Claim, Invocation, Manifest, ManifestBody, Modules, ProcessStatus, Session, WaitNotice,
};
use ferrite_heap::{HeapStats, PAGE_SIZE};
use ferrite_pagestore::{PageStoreStats, StorageBackend};
use ferrite_vm::{
    Config, Error, Execution, Extern, Func, Memory, Module, RunOutcome, StackLimits, Store, Trap,
    Value,
};
use ferrite_wasi::{FileJournal, ProcExit, SyncHook, WasiConfig, WasiCtx, WasiState};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The export a process runs when no other is named (the WASI command entry).
const ENTRY_POINT: &str = "_start";

/// The invocation flags that engine state depends on: a resume must use the
/// values the process started with.
const FLAG_CALL_DEPTH: &str = "max-call-depth";
const FLAG_VALUE_STACK: &str = "max-value-stack";
/// The physical heap a process started with, in bytes: a resume uses it unless
/// given another.
pub const FLAG_PHYSICAL_HEAP: &str = "physical-heap";

/// How a process runs: limits that are not part of its state.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Stack limits of a new process (a resumed one keeps its own).
    pub stack_limits: StackLimits,
    /// Bound on the heap's resident pages, in bytes; `None` is unbounded.
    pub physical_heap_bytes: Option<u64>,
    /// Checkpoints kept by garbage collection after each commit (at least 1).
    pub checkpoints_kept: usize,
    /// Whether checkpoints are committed at all: a scratch process (a plain
    /// `ferrite run --physical-heap`) only uses its store as swap.
    pub persistent: bool,
    /// Where the journal that rolls the process's files back with it lives (a
    /// directory on the machine that has the files); `None`: files are not
    /// rolled back on resume.
    pub journal_dir: Option<PathBuf>,
    /// Told of every sync the file journal makes (for a power-loss simulator).
    pub journal_sync_hook: Option<SyncHook>,
    /// How long the process waits, paused, for a lease it could not renew
    /// (the store unreachable) before it stops.
    pub lease_wait_max: Duration,
    /// Told, about every few seconds, while the process waits for its lease:
    /// how long it has waited and why.
    pub notice: Option<Notice>,
}

/// A callback for what a process waits for (the CLI prints it on stderr).
#[derive(Clone)]
pub struct Notice(pub Arc<WaitNotice>);

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notice")
    }
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            stack_limits: StackLimits::default(),
            physical_heap_bytes: None,
            checkpoints_kept: 2,
            persistent: true,
            journal_dir: None,
            journal_sync_hook: None,
            lease_wait_max: Duration::from_mins(15),
            notice: None,
        }
    }
}

/// What starts a process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The process name in the store.
    pub name: String,
    /// The module, binary.
    pub module: Vec<u8>,
    /// The export to call (`_start` if `None`) and its arguments.
    pub export: Option<String>,
    pub args: Vec<Value>,
    /// The WASI host's arguments, environment and preopens.
    pub wasi: WasiConfig,
    /// How the process was started, as shown by `ferrite inspect`.
    pub invocation: Invocation,
}

impl Launch {
    /// A process that calls `export` with `args` and has no WASI arguments.
    pub fn invoke(name: &str, module: Vec<u8>, export: &str, args: Vec<Value>) -> Self {
        Self {
            name: name.to_string(),
            module,
            export: Some(export.to_string()),
            invocation: Invocation {
                export: Some(export.to_string()),
                args: args.iter().map(ToString::to_string).collect(),
                flags: BTreeMap::new(),
            },
            args,
            wasi: WasiConfig {
                args: vec![name.to_string()],
                env: Vec::new(),
                preopens: Vec::new(),
            },
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The entry export returned these results.
    Returned(Vec<Value>),
    /// The program called `proc_exit` with this status.
    Exited(u32),
    /// The wasm code trapped.
    Trapped(Trap),
    /// The interrupt flag was raised: the process can be checkpointed, and run on.
    Interrupted,
}

impl Outcome {
    /// The status a final checkpoint records.
    pub fn status(&self) -> ProcessStatus {
        match self {
            Outcome::Returned(results) => ProcessStatus::Returned {
                results: results.iter().map(ToString::to_string).collect(),
            },
            Outcome::Exited(code) => ProcessStatus::Exited { code: *code as i32 },
            Outcome::Trapped(trap) => ProcessStatus::Trapped {
                message: trap.to_string(),
            },
            Outcome::Interrupted => ProcessStatus::Running,
        }
    }
}

/// What one checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The committed epoch.
    pub epoch: u64,
    /// Heap pages written (dirty since the previous checkpoint).
    pub pages_written: u64,
    /// How long the process was paused.
    pub pause: Duration,
    /// Where the pause went.
    pub steps: CheckpointSteps,
}

/// Where a checkpoint's pause went, step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointSteps {
    /// Writing the dirty pages back to the page store (its open segments).
    pub write_back: Duration,
    /// Syncing the process's files and encoding the execution and host state.
    pub state: Duration,
    /// Making the epoch's segments and page maps durable.
    pub pages: Duration,
    /// Putting the manifest (the commit point).
    pub manifest: Duration,
    /// Garbage collection after the commit.
    pub gc: Duration,
}

impl std::fmt::Display for CheckpointSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "write-back {:.1} ms, state {:.1} ms, pages durable {:.1} ms, manifest {:.1} ms, gc {:.1} ms",
            ms(self.write_back),
            ms(self.state),
            ms(self.pages),
            ms(self.manifest),
            ms(self.gc)
        )
    }
}

/// What a resume found.
#[derive(Debug, Clone, Default)]
pub struct ResumeReport {
    /// The checkpoint resumed from.
    pub epoch: u64,
    /// Newer checkpoints whose manifests are damaged, skipped.
    pub skipped: Vec<(u64, String)>,
    /// Where the objects of the epochs after the one resumed were set aside
    /// (a `quarantine/<n>/` prefix), and how many: after a fallback or a
    /// `--from-checkpoint` rollback.
    pub set_aside: Option<(String, usize)>,
    /// Descriptors the WASI host could not reopen (the guest sees `EIO`).
    pub lost: Vec<String>,
    /// Pages read ahead by [`Process::prefetch`] (filled in by its caller).
    pub prefetched: usize,
    /// Pages named to the store by [`Process::hint_resident`] (filled in by
    /// its caller).
    pub hinted: usize,
    /// Changes to files made after the checkpoint that were undone.
    pub files_undone: usize,
    /// Changes to files that could not be undone, and why (a file replaced by
    /// someone else meanwhile is reported, not clobbered).
    pub files_not_undone: Vec<String>,
    /// From the start of `resume` to the process being ready to run.
    pub ready_after: Duration,
}

/// Counters for `--stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub heap: HeapStats,
    pub store: PageStoreStats,
    pub checkpoints: u64,
    pub pause_total: Duration,
    pub pause_max: Duration,
    pub pages_checkpointed: u64,
}

/// Which call of the process runs.
#[derive(Debug)]
enum Phase {
    /// The start function; then `main` with `args`.
    Start { main: Func, args: Vec<Value> },
    /// The entry export.
    Main,
}

/// A running process. See the crate documentation.
#[derive(Debug)]
pub struct Process {
    name: String,
    /// The process's claim, generation, epoch and commits.
    session: Session,
    options: ProcessOptions,
    module_sha256: String,
    invocation: Invocation,
    store: Store,
    memory: Option<Memory>,
    wasi: WasiCtx,
    phase: Phase,
    execution: Execution,
    interrupt: Arc<AtomicBool>,
    checkpoint_count: u64,
    stats: ProcessStats,
    /// Set by a failed checkpoint or storage error: the process must stop.
    poisoned: Option<String>,
    /// The pages resident at the checkpoint resumed from, for [`Process::prefetch`].
    prefetch_pages: Vec<u32>,
}

impl Process {
    /// Starts process `launch.name` in the store `backend`: stores the module,
    /// instantiates it with WASI, and (if persistent) commits a first checkpoint,
    /// so that a crash at any later moment leaves something to resume.
    ///
    /// `lock` is the caller's run lock on the name, kept while the process
    /// lives: every step that deletes objects (the remains of a crashed start,
    /// recovery's cleanup, garbage collection) runs while it is held. Without
    /// one the caller guarantees that no one else runs the process (an
    /// in-memory store of its own).
    ///
    /// # Errors
    /// [`ProcessError::Exists`] if the name has checkpoints; engine, host and
    /// storage errors; a `lock` of another process.
    pub fn start(
        backend: Arc<dyn StorageBackend>,
        claim: impl Into<Claim>,
        launch: Launch,
        options: &ProcessOptions,
    ) -> Result<Self, ProcessError> {
        let mut session = Session::open(backend.clone(), &launch.name, claim.into())?;
        session.set_waiting(
            options.lease_wait_max,
            options.notice.as_ref().map(|n| n.0.clone()),
        );
        if !session.store().epochs()?.is_empty() {
            return Err(ProcessError::Exists(launch.name));
        }
        // Objects without a manifest are the remains of a start that crashed
        // before its first commit: nothing refers to them.
        session.remove_remains()?;
        let module = Module::new(&launch.module)?;
        let module_sha256 = if options.persistent {
            Modules::new(backend).put(&launch.module)?
        } else {
            String::new()
        };
        let mut store = Store::new(Config {
            stack_limits: options.stack_limits,
        });
        let imports = link(&mut store, &module)?;
        let mut wasi = WasiCtx::new(launch.wasi)?;
        if let (Some(dir), true) = (&options.journal_dir, options.persistent) {
            // Journals of an earlier process of this name are meaningless now.
            remove_journals(dir)?;
            let preopens = wasi.state().preopens.clone();
            wasi.attach_journal(journal(dir, 0, &preopens, options));
        }
        let instance = store.instantiate(&module, &imports)?;
        let name = launch.export.as_deref().unwrap_or(ENTRY_POINT);
        let Some(Extern::Func(main)) = store.get_export(instance, name) else {
            return Err(Error::Usage(format!("module has no exported function `{name}`")).into());
        };
        let interrupt = Arc::new(AtomicBool::new(false));
        let (phase, mut execution) = match store.start_func(instance) {
            Some(start) => (
                Phase::Start {
                    main,
                    args: launch.args,
                },
                Execution::new(&store, start, &[])?,
            ),
            None => (Phase::Main, Execution::new(&store, main, &launch.args)?),
        };
        execution.set_interrupt_handle(interrupt.clone());
        let memory = store.instance_memory(instance);
        let mut invocation = launch.invocation;
        invocation.flags.insert(
            FLAG_CALL_DEPTH.into(),
            options.stack_limits.call_depth_max.to_string(),
        );
        invocation.flags.insert(
            FLAG_VALUE_STACK.into(),
            options.stack_limits.value_slots_max.to_string(),
        );
        if let Some(bytes) = options.physical_heap_bytes {
            invocation
                .flags
                .insert(FLAG_PHYSICAL_HEAP.into(), bytes.to_string());
        }
        session.set_interrupt(interrupt.clone());
        let mut process = Self {
            name: launch.name,
            session,
            options: options.clone(),
            module_sha256,
            invocation,
            store,
            memory,
            wasi,
            phase,
            execution,
            interrupt,
            checkpoint_count: 0,
            stats: ProcessStats::default(),
            poisoned: None,
            prefetch_pages: Vec::new(),
        };
        process.attach_heap(None);
        if options.persistent {
            process.checkpoint()?;
        }
        Ok(process)
    }

    /// Resumes process `name` from its newest checkpoint that verifies.
    ///
    /// Nothing of the heap is read here (unless [`ProcessOptions::prefetch`]):
    /// pages fault in when the program touches them.
    ///
    /// # Errors
    /// [`ProcessError::NoCheckpoint`], [`ProcessError::Finished`],
    /// [`ProcessError::Unusable`] (another engine or format version), storage
    /// errors.
    pub fn resume(
        backend: Arc<dyn StorageBackend>,
        claim: impl Into<Claim>,
        name: &str,
        options: &ProcessOptions,
    ) -> Result<(Self, ResumeReport), ProcessError> {
        Self::resume_from(backend, claim, name, options, None)
    }

    /// [`Process::resume`] from checkpoint `from` if given: a rollback asked
    /// for, which sets the later checkpoints aside (see
    /// `ferrite_ckpt::ProcessStore::recover_from`).
    ///
    /// # Errors
    /// As [`Process::resume`], and [`ProcessError::Checkpoint`] if recovery
    /// stops (a newer checkpoint it may not fall back past) or `from` does
    /// not exist.
    pub fn resume_from(
        backend: Arc<dyn StorageBackend>,
        claim: impl Into<Claim>,
        name: &str,
        options: &ProcessOptions,
        from: Option<u64>,
    ) -> Result<(Self, ResumeReport), ProcessError> {
        let began = Instant::now();
        let mut session = Session::open(backend.clone(), name, claim.into())?;
        session.set_waiting(
            options.lease_wait_max,
            options.notice.as_ref().map(|n| n.0.clone()),
        );
        let recovery = session.recover_from(from)?;
        let Some(manifest) = recovery.manifest else {
            return Err(ProcessError::NoCheckpoint(name.to_string()));
        };
        let body = &manifest.body;
        if body.status != ProcessStatus::Running {
            return Err(ProcessError::Finished {
                name: name.to_string(),
                status: body.status.clone(),
            });
        }
        let unusable = |reason: String| ProcessError::Unusable {
            name: name.to_string(),
            epoch: manifest.epoch,
            reason,
        };
        if body.page_size as usize != PAGE_SIZE {
            return Err(unusable(format!(
                "heap page size {} differs from this build's {PAGE_SIZE}",
                body.page_size
            )));
        }
        let stack_limits = StackLimits {
            call_depth_max: recorded_flag(&body.invocation, FLAG_CALL_DEPTH)
                .unwrap_or(options.stack_limits.call_depth_max),
            value_slots_max: recorded_flag(&body.invocation, FLAG_VALUE_STACK)
                .unwrap_or(options.stack_limits.value_slots_max),
        };
        stack_limits.validate().map_err(unusable)?;
        let engine = EngineImage::decode(&body.engine).map_err(unusable)?;
        let host: WasiState = postcard::from_bytes(&body.host)
            .map_err(|e| unusable(format!("host state unreadable: {e}")))?;
        let bytes = Modules::new(backend).get(&body.module_sha256)?;
        let module = Module::new(&bytes)?;

        let mut store = Store::new(Config { stack_limits });
        let imports = link(&mut store, &module)?;
        let instance = store.instantiate_for_restore(&module, &imports)?;
        store.apply_image(&engine.store)?;
        let mut execution = Execution::from_image(&store, &engine.execution)?;
        let interrupt = Arc::new(AtomicBool::new(false));
        execution.set_interrupt_handle(interrupt.clone());
        let phase = match &engine.phase {
            PhaseImage::Main => Phase::Main,
            PhaseImage::Start { main, args } => {
                let main = store
                    .func_at(*main)
                    .ok_or_else(|| unusable("entry function out of range".into()))?;
                let ty = store.func_type(main);
                if ty.params().len() != args.len() {
                    return Err(unusable("entry arguments do not fit".into()));
                }
                let args = ty
                    .params()
                    .iter()
                    .zip(args)
                    .map(|(ty, cell)| Value::from_cell(*ty, *cell))
                    .collect();
                Phase::Start { main, args }
            }
        };
        let mut rollback = ferrite_wasi::Rollback::default();
        if let Some(dir) = &options.journal_dir {
            // Undo what the process did to its files after the checkpoint,
            // before its descriptors are reopened.
            rollback = ferrite_wasi::roll_back(dir, manifest.epoch, &host.preopens)
                .map_err(|e| ProcessError::Files(e.to_string()))?;
        }
        let preopens = host.preopens.clone();
        let (mut wasi, restored) = WasiCtx::restore(host)?;
        if let Some(dir) = &options.journal_dir {
            wasi.attach_journal(journal(dir, manifest.epoch, &preopens, options));
        }
        let memory = store.instance_memory(instance);
        let mut options = options.clone();
        if options.physical_heap_bytes.is_none() {
            options.physical_heap_bytes = body
                .invocation
                .flags
                .get(FLAG_PHYSICAL_HEAP)
                .and_then(|bytes| bytes.parse().ok());
        }
        session.set_interrupt(interrupt.clone());
        let mut process = Self {
            name: name.to_string(),
            session,
            options,
            module_sha256: body.module_sha256.clone(),
            invocation: body.invocation.clone(),
            store,
            memory,
            wasi,
            phase,
            execution,
            interrupt,
            checkpoint_count: body.checkpoint_count,
            stats: ProcessStats::default(),
            poisoned: None,
            prefetch_pages: Vec::new(),
        };
        process.options.stack_limits = stack_limits;
        process.attach_heap(Some(&manifest));
        let mut report = ResumeReport {
            epoch: manifest.epoch,
            skipped: recovery
                .skipped
                .iter()
                .map(|(epoch, reason)| (*epoch, reason.to_string()))
                .collect(),
            set_aside: recovery.set_aside.clone(),
            lost: restored
                .lost
                .iter()
                .map(|(fd, reason)| format!("fd {}: {reason}", fd.0))
                .collect(),
            prefetched: 0,
            hinted: 0,
            files_undone: rollback.undone,
            files_not_undone: rollback.warnings,
            ready_after: Duration::ZERO,
        };
        process
            .prefetch_pages
            .clone_from(&manifest.body.resident_pages);
        if process.session.took_over() {
            // A takeover commit: see `Session::took_over`.
            process.checkpoint()?;
        }
        report.ready_after = began.elapsed();
        Ok((process, report))
    }

    /// Reads the pages that were resident at the checkpoint this process resumed
    /// from (as many as the physical heap holds), calling `progress(done,
    /// total)` along the way. Optional: without it the pages fault in when used.
    ///
    /// # Errors
    /// [`ProcessError::Storage`] if a page cannot be read (the process stops).
    pub fn prefetch(
        &mut self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, ProcessError> {
        /// Pages read between two progress reports.
        const BATCH_PAGES: usize = 256;
        let pages = std::mem::take(&mut self.prefetch_pages);
        let Some(memory) = self.memory else {
            return Ok(0);
        };
        let heap = self.store.memory_mut(memory);
        let mut read = 0;
        for (index, batch) in pages.chunks(BATCH_PAGES).enumerate() {
            read += heap.prefetch(batch);
            progress(
                (index * BATCH_PAGES + batch.len()).min(pages.len()),
                pages.len(),
            );
            if heap
                .frames_max()
                .is_some_and(|max| heap.resident_pages() >= max)
            {
                break;
            }
        }
        self.check_heap()?;
        Ok(read)
    }

    /// Tells the store which pages were resident at the checkpoint this process
    /// resumed from (as many as the physical heap holds), and returns at once:
    /// a heap server pushes them while the process runs, and a page fault
    /// finds them here when they have arrived. Other stores may ignore the
    /// hint. Returns how many pages were named. An alternative to
    /// [`Process::prefetch`], which reads them before the process runs.
    ///
    /// # Errors
    /// [`ProcessError::Storage`] if a page-map chunk cannot be read (as a
    /// page fault on those pages would fail).
    pub fn hint_resident(&mut self) -> Result<usize, ProcessError> {
        let mut pages = std::mem::take(&mut self.prefetch_pages);
        let Some(memory) = self.memory else {
            return Ok(0);
        };
        let heap = self.store.memory_mut(memory);
        if let Some(max) = heap.frames_max() {
            pages.truncate(max);
        }
        let hinted = match heap.store_mut() {
            Some(store) => store.hint_pages(&pages),
            None => Ok(0),
        };
        hinted.map_err(|error| ProcessError::from_page_store(&error))
    }

    /// Opens the page store after `committed` and attaches it to the heap, with
    /// the physical-heap bound.
    fn attach_heap(&mut self, committed: Option<&Manifest>) {
        let Some(memory) = self.memory else {
            return;
        };
        let pages = self.session.page_store(committed, PAGE_SIZE);
        let frames_max = self
            .options
            .physical_heap_bytes
            .map(|bytes| (bytes / PAGE_SIZE as u64).max(1) as usize);
        self.store
            .memory_mut(memory)
            .attach_store(pages, frames_max)
            .expect("the session's page store has the heap's page size");
    }

    /// Counters of the file journal, if the process has one.
    pub fn journal_stats(&self) -> Option<ferrite_wasi::JournalStats> {
        self.wasi.journal().map(FileJournal::stats)
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A flag that makes [`Process::run`] return [`Outcome::Interrupted`] soon
    /// when set from any thread or signal handler.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Uses `flag` as the interrupt flag (for example one that signal handlers
    /// installed before the process started already raise).
    ///
    /// The flag is also raised when a request to this runner is found in the
    /// store (see [`Process::take_requests`]).
    pub fn set_interrupt_handle(&mut self, flag: Arc<AtomicBool>) {
        self.execution.set_interrupt_handle(flag.clone());
        self.session.set_interrupt(flag.clone());
        self.interrupt = flag;
    }

    /// The requests to this runner found in the store since the last call
    /// (a checkpoint, a stop, a take-over by another runner): each is
    /// returned once, and the caller answers it ([`Process::answer`]).
    pub fn take_requests(&self) -> Vec<StoreRequest> {
        self.session.take_requests()
    }

    /// Answers a request taken from [`Process::take_requests`].
    ///
    /// # Errors
    /// Storage failures.
    pub fn answer(&self, request: &StoreRequest, answer: &Answer) -> Result<(), ProcessError> {
        Ok(self.session.answer(request, answer)?)
    }

    /// The store the process is checkpointed in.
    pub fn backend(&self) -> Arc<dyn StorageBackend> {
        self.session.store().backend().clone()
    }

    /// Ends the run here by handing the process to runner `to`, which resumes
    /// it at once from the last committed checkpoint (commit one first).
    ///
    /// # Errors
    /// The hand-over could not be written (the lease then expires by itself,
    /// and `to` takes it then), or another runner took over meanwhile.
    pub fn hand_over(self, to: &str) -> Result<(), ProcessError> {
        Ok(self.session.hand_over(to)?)
    }

    /// How the process was started (export, arguments, recorded flags).
    pub fn invocation(&self) -> &Invocation {
        &self.invocation
    }

    /// Whether checkpoints are committed (see [`ProcessOptions::persistent`]).
    pub fn is_persistent(&self) -> bool {
        self.options.persistent
    }

    /// The last committed checkpoint's epoch (0 if none).
    pub fn committed_epoch(&self) -> u64 {
        self.session.committed_epoch()
    }

    /// The writer generation of this runner (see `ferrite_ckpt::Session`).
    pub fn generation(&self) -> u64 {
        self.session.generation()
    }

    /// Ends the run here: releases a store-held lease, so that another runner
    /// may resume the process at once (a local lock is released on drop).
    ///
    /// # Errors
    /// The release could not be written: the lease then expires by itself.
    pub fn close(self) -> Result<(), ProcessError> {
        Ok(self.session.release()?)
    }

    /// Counters since the process was started or resumed here.
    pub fn stats(&self) -> ProcessStats {
        let mut stats = self.stats;
        if let Some(memory) = self.memory {
            let heap = self.store.memory(memory);
            stats.heap = heap.stats();
            if let Some(pages) = heap.page_store() {
                stats.store = pages.stats();
            }
        }
        stats
    }

    /// Runs until the process finishes, traps, exits or is interrupted.
    ///
    /// # Errors
    /// [`ProcessError::Storage`] if a heap page could not be read or written
    /// back (the process must stop; its last checkpoint is intact);
    /// [`ProcessError::Poisoned`] after an earlier failure.
    pub fn run(&mut self) -> Result<Outcome, ProcessError> {
        self.run_for(u64::MAX)
    }

    /// As [`Process::run`], but also returns [`Outcome::Interrupted`] after about
    /// `budget` instructions (see [`Execution::run`]): for embedders that
    /// schedule processes, and for tests that stop at reproducible points.
    ///
    /// # Errors
    /// As [`Process::run`].
    pub fn run_for(&mut self, budget: u64) -> Result<Outcome, ProcessError> {
        if let Some(reason) = &self.poisoned {
            return Err(ProcessError::Poisoned(reason.clone()));
        }
        let result = self.run_until_stop(budget);
        if let Err(error) = &result {
            self.poisoned = Some(error.to_string());
        }
        result
    }

    fn run_until_stop(&mut self, budget: u64) -> Result<Outcome, ProcessError> {
        loop {
            let outcome = match self.execution.run(&mut self.store, budget) {
                Ok(outcome) => outcome,
                Err(Error::Trap(trap)) => {
                    self.check_heap()?;
                    return Ok(Outcome::Trapped(trap));
                }
                Err(Error::Storage(message)) => {
                    // The memory latched the cause: report it by kind.
                    self.check_heap()?;
                    return Err(ProcessError::Storage(crate::StorageFailure {
                        kind: ferrite_pagestore::StorageKind::Io,
                        message,
                    }));
                }
                Err(other) => return Err(other.into()),
            };
            match outcome {
                RunOutcome::Finished(results) => {
                    if let Some(outcome) = self.finished(results)? {
                        return Ok(outcome);
                    }
                }
                RunOutcome::OutOfBudget if budget == u64::MAX => {}
                RunOutcome::OutOfBudget | RunOutcome::Interrupted => {
                    return Ok(Outcome::Interrupted)
                }
                RunOutcome::HostCall { id, args } => {
                    let Some(func) = ferrite_wasi::host_func(id) else {
                        unreachable!("host function {id:?} was not created by ferrite_wasi::link")
                    };
                    // A host call leaves traces outside the store: only while
                    // this runner surely holds the process.
                    self.session.wait_claimed()?;
                    let memory = self.memory.map(|memory| self.store.memory_mut(memory));
                    let answer = self.wasi.call(memory, func, &args);
                    // A host call that touched a page the store could not give
                    // saw EFAULT; the program must not go on with that.
                    self.check_heap()?;
                    // Nor with a file change that could not be journaled.
                    if let Some(failure) = self.wasi.journal_failure() {
                        return Err(ProcessError::Files(failure.to_string()));
                    }
                    match answer {
                        Ok(results) => self.execution.resume_host(&self.store, &results)?,
                        Err(ProcExit { status }) => return Ok(Outcome::Exited(status)),
                    }
                    if let Some(results) = self.execution.host_results(&self.store) {
                        if let Some(outcome) = self.finished(results)? {
                            return Ok(outcome);
                        }
                    }
                }
            }
        }
    }

    /// The current call returned `results`: go on with the entry export after
    /// the start function, or report the end.
    fn finished(&mut self, results: Vec<Value>) -> Result<Option<Outcome>, ProcessError> {
        match std::mem::replace(&mut self.phase, Phase::Main) {
            Phase::Start { main, args } => {
                match Execution::new(&self.store, main, &args) {
                    Ok(execution) => self.execution = execution,
                    Err(Error::Trap(trap)) => return Ok(Some(Outcome::Trapped(trap))),
                    Err(other) => return Err(other.into()),
                }
                self.execution.set_interrupt_handle(self.interrupt.clone());
                Ok(None)
            }
            Phase::Main => Ok(Some(Outcome::Returned(results))),
        }
    }

    /// Turns a latched heap storage error into the process's error.
    fn check_heap(&self) -> Result<(), ProcessError> {
        match self
            .memory
            .and_then(|memory| self.store.memory(memory).storage_error())
        {
            Some(error) => Err(ProcessError::from_page_store(error)),
            None => Ok(()),
        }
    }

    /// Commits a checkpoint of the running process.
    ///
    /// # Errors
    /// Storage failures and fencing (another runner committed first). A failed
    /// checkpoint leaves the last committed one intact and stops the process.
    pub fn checkpoint(&mut self) -> Result<CheckpointReport, ProcessError> {
        self.commit(ProcessStatus::Running)
    }

    /// Commits the final checkpoint of a process that ended with `outcome`, so
    /// that `ps` shows how it ended and a resume does not run it again.
    ///
    /// # Errors
    /// As [`Process::checkpoint`].
    pub fn finish(&mut self, outcome: &Outcome) -> Result<CheckpointReport, ProcessError> {
        self.commit(outcome.status())
    }

    /// Leaves garbage collection out of the checkpoints from now on (`true`),
    /// or not (`false`, the default): see [`Session::defer_gc`].
    pub fn defer_gc(&mut self, deferred: bool) {
        self.session.defer_gc(deferred);
    }

    fn commit(&mut self, status: ProcessStatus) -> Result<CheckpointReport, ProcessError> {
        if let Some(reason) = &self.poisoned {
            return Err(ProcessError::Poisoned(reason.clone()));
        }
        if !self.options.persistent {
            return Ok(CheckpointReport {
                epoch: 0,
                pages_written: 0,
                pause: Duration::ZERO,
                steps: CheckpointSteps::default(),
            });
        }
        let began = Instant::now();
        let result = self.commit_now(status, began);
        match &result {
            Ok(report) => {
                self.stats.checkpoints += 1;
                self.stats.pause_total += report.pause;
                self.stats.pause_max = self.stats.pause_max.max(report.pause);
                self.stats.pages_checkpointed += report.pages_written;
            }
            Err(error) => self.poisoned = Some(error.to_string()),
        }
        result
    }

    fn commit_now(
        &mut self,
        status: ProcessStatus,
        began: Instant,
    ) -> Result<CheckpointReport, ProcessError> {
        let (pages_written, heap_bytes, resident_pages) = match self.memory {
            Some(memory) => {
                let heap = self.store.memory_mut(memory);
                let written = heap.write_back_dirty()?;
                (written as u64, heap.size_bytes(), heap.resident_page_list())
            }
            None => (0, 0, Vec::new()),
        };
        let written_back = began.elapsed();
        // Everything the process wrote to files and directory entries is
        // durable before the checkpoint that includes it commits.
        self.wasi
            .sync_files()
            .map_err(|e| ProcessError::Files(format!("cannot sync the process's files: {e}")))?;
        let engine = self.engine_image();
        let host =
            postcard::to_allocvec(&self.wasi.snapshot()).expect("WASI states always serialize");
        let mut body = ManifestBody {
            process: self.name.clone(),
            module_sha256: self.module_sha256.clone(),
            page_size: PAGE_SIZE as u32,
            map_chunks: Vec::new(),
            map_deltas: Vec::new(),
            segments: Vec::new(),
            status,
            invocation: self.invocation.clone(),
            engine: engine.encode(),
            host,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as u64),
            checkpoint_count: self.checkpoint_count + 1,
            heap_bytes,
            pages_written,
            pause_us: 0,
            resident_pages,
            generations: Vec::new(),
            writer: String::new(),
        };
        // The pause recorded is everything up to the commit (an estimate:
        // the pages' upload is part of it).
        body.pause_us = began.elapsed().as_micros() as u64;
        let state = began.elapsed().saturating_sub(written_back);
        let pages = self
            .memory
            .and_then(|memory| self.store.memory_mut(memory).store_mut());
        // One commit down the stack: pages, claim check, manifest, garbage.
        let committed = self
            .session
            .commit(pages, body, self.options.checkpoints_kept)?;
        let epoch = committed.epoch;
        self.checkpoint_count += 1;
        self.wasi.files_committed(epoch);
        let pause = began.elapsed();
        Ok(CheckpointReport {
            epoch,
            pages_written,
            pause,
            steps: CheckpointSteps {
                write_back: written_back,
                state,
                pages: committed.pages_time,
                manifest: committed.manifest_time,
                gc: committed.gc_time,
            },
        })
    }

    fn engine_image(&self) -> EngineImage {
        let phase = match &self.phase {
            Phase::Main => PhaseImage::Main,
            Phase::Start { main, args } => PhaseImage::Start {
                main: main.index(),
                args: args.iter().map(|arg| arg.to_cell()).collect(),
            },
        };
        EngineImage {
            version: ENGINE_IMAGE_VERSION,
            store: self.store.image(),
            phase,
            execution: self.execution.image(&self.store),
        }
    }
}

/// Satisfies the module's imports from WASI preview1.
fn link(store: &mut Store, module: &Module) -> Result<Vec<Extern>, ProcessError> {
    ferrite_wasi::link(store, module).map_err(|e| Error::Link(e.to_string()).into())
}

/// A numeric invocation flag recorded at start.
fn recorded_flag(invocation: &Invocation, flag: &str) -> Option<u32> {
    invocation.flags.get(flag)?.parse().ok()
}

/// Removes the file journals in `dir` (of a process that no longer exists).
fn remove_journals(dir: &std::path::Path) -> Result<(), ProcessError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProcessError::Files(format!(
            "cannot remove old journals in {}: {e}",
            dir.display()
        ))),
    }
}

/// The file journal of a process, with the options' sync hook.
fn journal(
    dir: &std::path::Path,
    base: u64,
    preopens: &[ferrite_wasi::Preopen],
    options: &ProcessOptions,
) -> FileJournal {
    let mut journal = FileJournal::new(dir.to_path_buf(), base, preopens);
    if let Some(hook) = &options.journal_sync_hook {
        journal.set_sync_hook(hook.clone());
    }
    journal
}
