//! `ferrite ps`, `ferrite inspect` and `ferrite rm`: the processes of a store.
//!
//! These commands never run recovery: `ProcessStore::recover` writes (it moves
//! damaged manifests to `quarantine/` and a page store removes uncommitted
//! objects), which is the business of the runner holding the process's lock. So
//! they take the newest manifest that verifies the way recovery does, and show a
//! damaged newer one instead of moving it. Only `rm` changes the store, and only
//! with the process's lock held.
//!
//! Exit statuses:
//!
//! | status | meaning                                                              |
//! |--------|----------------------------------------------------------------------|
//! | 0      | done                                                                 |
//! | 1      | the store or a process is unreadable, no such process, or (`rm`) the |
//! |        | process is running; one `error:` line per problem                    |
//! | 2      | the command line is wrong (clap)                                     |

pub use crate::store::StoreOption;
use crate::store::{self, Location, Opened};
use clap::Args;
use ferrite_ckpt::{
    check_process_name, lease_holder, list_processes, CkptError, LockError, Manifest,
    ManifestError, ProcessLock, ProcessStatus, ProcessStore,
};
use ferrite_pagestore::StorageBackend;
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    io::{self, IsTerminal as _, Write as _},
    process::ExitCode,
    sync::Arc,
};

/// List the processes of a store.
///
/// One line per process:
///   NAME             the process name
///   STATE            running (a runner holds its lock), stopped (resumable),
///                    exited N, trapped, no checkpoint (none committed yet),
///                    damaged (no checkpoint verifies), or unsupported format vN
///   HEAP             virtual heap size at the last checkpoint
///   STORED           bytes of its objects in the store (not counting the
///                    module, which processes share)
///   CHECKPOINTS      checkpoints taken so far
///   LAST CHECKPOINT  when the last one was taken, in UTC
///
/// A store directory that does not exist has no processes. Nothing in the store
/// is created or changed.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PsOptions {
    #[command(flatten)]
    pub store: StoreOption,
}

/// Show the checkpoint history of a process.
///
/// Prints the process's state, module and invocation, then one line per
/// checkpoint manifest, oldest first: epoch, parent epoch, time (UTC), status,
/// heap size, checkpoint count, sizes of the engine and host (WASI) state,
/// page-map chunks, segments and live pages. A manifest that does not verify is
/// shown as `damaged: REASON` (and left in place). Last, the objects of the
/// process by kind, with their sizes. Nothing in the store is changed.
#[derive(Debug, Args)]
pub struct InspectOptions {
    /// The process name.
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub store: StoreOption,
}

/// Remove a process and all its checkpoints from a store.
///
/// Refused while the process is running. The module stays in the store: other
/// processes may share it.
#[derive(Debug, Args)]
pub struct RmOptions {
    /// The process name.
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub store: StoreOption,
}

/// `ferrite ps`.
pub fn ps(options: &PsOptions) -> ExitCode {
    match ps_text(options) {
        Ok((table, problems)) => {
            print_stdout(&table);
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => fail(&message),
    }
}

/// `ferrite inspect`.
pub fn inspect(options: &InspectOptions) -> ExitCode {
    finish(inspect_text(options))
}

/// `ferrite rm`.
pub fn rm(options: &RmOptions) -> ExitCode {
    finish(remove(options))
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Writes `text` to stdout. A closed pipe (`ferrite ps | head -1`) is not an
/// error worth reporting.
fn print_stdout(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

/// The table of `ps`, and one message per process that could not be read.
fn ps_text(options: &PsOptions) -> Result<(String, Vec<String>), String> {
    let header = [
        "NAME",
        "STATE",
        "HEAP",
        "STORED",
        "CHECKPOINTS",
        "LAST CHECKPOINT",
    ];
    let right = [false, false, true, true, true, false];
    let Some(store) = store::open_for_reading(&options.store)? else {
        return Ok((table(&header, &right, &[]), Vec::new()));
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for name in process_names(&store)? {
        match summarize(&store, &name) {
            Ok(summary) => rows.push(ps_row(&name, &summary)),
            Err(message) => {
                rows.push(vec![name.clone(), "unreadable".into()]);
                problems.push(format!("process {name}: {message}"));
            }
        }
    }
    Ok((table(&header, &right, &rows), problems))
}

fn ps_row(name: &str, summary: &Summary) -> Vec<String> {
    let dash = || "-".to_string();
    let manifest = summary.newest.manifest();
    vec![
        name.to_string(),
        summary.state.clone(),
        manifest.map_or_else(dash, |m| human_bytes(m.body.heap_bytes)),
        human_bytes(summary.objects.total().1),
        manifest.map_or_else(dash, |m| m.body.checkpoint_count.to_string()),
        manifest.map_or_else(dash, |m| utc_text(m.body.created_unix_ms)),
    ]
}

/// The processes of the store: those with objects, and those whose lock is
/// held (a runner that has not written anything yet), sorted.
fn process_names(store: &Opened) -> Result<Vec<String>, String> {
    let mut names: BTreeSet<String> = list_processes(&*store.backend)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let Some(root) = store.location.local() else {
        return Ok(names.into_iter().collect());
    };
    if let Ok(entries) = fs::read_dir(root.join("locks")) {
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_process_name(&name).is_ok() && ProcessLock::is_held(root, &name) {
                names.insert(name);
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// Whether a runner holds process `name`: its local run lock is held, or
/// (object storage) its lease was not released. A lease is released when its
/// runner ends; a runner that crashed leaves it until the next one takes over.
fn running(store: &Opened, name: &str) -> Result<Running, String> {
    match &store.location {
        Location::Local(root) => Ok(if ProcessLock::is_held(root, name) {
            Running::Locked
        } else {
            Running::No
        }),
        Location::S3(_) | Location::Server(_) => match lease_holder(&*store.backend, name) {
            Ok(Some(holder)) => Ok(Running::Leased(holder)),
            Ok(None) => Ok(Running::No),
            Err(error) => Err(error.to_string()),
        },
    }
}

/// What `running` found.
enum Running {
    No,
    Locked,
    /// The lease holder's tag.
    Leased(String),
}

/// What `ps` shows of a process.
struct Summary {
    state: String,
    newest: Newest,
    objects: ObjectTotals,
}

fn summarize(store: &Opened, name: &str) -> Result<Summary, String> {
    let process = process_store(store, name)?;
    let newest = newest_checkpoint(&process).map_err(|e| e.to_string())?;
    let running = running(store, name)?;
    Ok(Summary {
        state: state_text(&running, &newest),
        objects: ObjectTotals::of(&*store.backend, process.prefix())?,
        newest,
    })
}

fn process_store(store: &Opened, name: &str) -> Result<ProcessStore, String> {
    let backend: Arc<dyn StorageBackend> = store.backend.clone();
    ProcessStore::new(backend, name).map_err(|e| e.to_string())
}

/// The newest checkpoint of a process, as recovery would choose it.
enum Newest {
    Checkpoint(Box<Manifest>),
    /// The newest manifest that is not damaged is of another format version;
    /// older checkpoints must not be taken for the latest (as in recovery).
    Unsupported(u32),
    /// The newest manifest that is not damaged verifies but cannot be used (a
    /// body this build cannot decode, an epoch out of range): recovery stops
    /// there too.
    Unusable(u64),
    /// Manifests exist, but none verifies.
    Damaged,
    /// No checkpoint was committed yet.
    NoCheckpoint,
}

impl Newest {
    fn manifest(&self) -> Option<&Manifest> {
        match self {
            Newest::Checkpoint(manifest) => Some(manifest),
            _ => None,
        }
    }
}

/// Finds the newest manifest that verifies, skipping damaged newer ones as
/// `ProcessStore::recover` does, but moving nothing.
fn newest_checkpoint(process: &ProcessStore) -> Result<Newest, CkptError> {
    let mut damaged = false;
    for epoch in process.epochs()?.into_iter().rev() {
        match process.load(epoch) {
            Ok(manifest) => return Ok(Newest::Checkpoint(Box::new(manifest))),
            Err(CkptError::Corrupt {
                reason: ManifestError::Version { found },
                ..
            }) => return Ok(Newest::Unsupported(found)),
            Err(CkptError::Corrupt { reason, .. }) if !reason.is_damage() => {
                return Ok(Newest::Unusable(epoch))
            }
            Err(CkptError::Corrupt { .. }) => damaged = true,
            // Collected by a running process since it was listed: an older one.
            Err(CkptError::Storage(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(if damaged {
        Newest::Damaged
    } else {
        Newest::NoCheckpoint
    })
}

fn state_text(running: &Running, newest: &Newest) -> String {
    let ended = newest
        .manifest()
        .is_some_and(|m| m.body.status != ProcessStatus::Running);
    match running {
        Running::Locked => return "running".into(),
        Running::Leased(_) if !ended => return "running (leased)".into(),
        _ => {}
    }
    match newest {
        Newest::Checkpoint(manifest) => match &manifest.body.status {
            ProcessStatus::Running => "stopped".into(),
            status => status_text(status),
        },
        Newest::Unsupported(version) => format!("unsupported format v{version}"),
        Newest::Unusable(epoch) => format!("checkpoint {epoch} unusable"),
        Newest::Damaged => "damaged".into(),
        Newest::NoCheckpoint => "no checkpoint".into(),
    }
}

/// A checkpoint's status as `inspect` shows it: what the process was doing
/// when the checkpoint was taken.
fn status_text(status: &ProcessStatus) -> String {
    match status {
        ProcessStatus::Running => "running".into(),
        ProcessStatus::Exited { code } => format!("exited {code}"),
        ProcessStatus::Trapped { .. } => "trapped".into(),
        ProcessStatus::Returned { .. } => "returned".into(),
    }
}

/// The kinds of object of a process (`docs/format.md`), and `other` for
/// anything else below its prefix.
const OBJECT_KINDS: [&str; 6] = [
    "manifests",
    "segments",
    "maps",
    "quarantine",
    "leases",
    "other",
];

/// Number and bytes of the objects of a process, by kind (`OBJECT_KINDS`).
#[derive(Debug, Default)]
struct ObjectTotals {
    kinds: [(u64, u64); OBJECT_KINDS.len()],
}

impl ObjectTotals {
    fn of(store: &dyn StorageBackend, prefix: &str) -> Result<Self, String> {
        let mut totals = Self::default();
        for key in store.list(prefix).map_err(|e| e.to_string())? {
            // Gone since listed: collected by a running process.
            let Some(bytes) = store.size(&key).map_err(|e| e.to_string())? else {
                continue;
            };
            let kind = key[prefix.len()..].split('/').next().unwrap_or_default();
            let index = OBJECT_KINDS[..OBJECT_KINDS.len() - 1]
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(OBJECT_KINDS.len() - 1);
            totals.kinds[index].0 += 1;
            totals.kinds[index].1 += bytes;
        }
        Ok(totals)
    }

    fn total(&self) -> (u64, u64) {
        self.kinds
            .iter()
            .fold((0, 0), |(n, b), (count, bytes)| (n + count, b + bytes))
    }

    /// `manifests 2 (312 B), segments 3 (1.5 MiB), ...; total 7 (1.6 MiB)`;
    /// `other` only if there are such objects.
    fn text(&self) -> String {
        let mut parts = Vec::new();
        for (kind, (count, bytes)) in OBJECT_KINDS.iter().zip(self.kinds) {
            if *kind != "other" || count > 0 {
                parts.push(format!("{kind} {count} ({})", human_bytes(bytes)));
            }
        }
        let (count, bytes) = self.total();
        format!(
            "{}; total {count} ({})",
            parts.join(", "),
            human_bytes(bytes)
        )
    }
}

/// Opens the store and checks that it has process `name`.
///
/// # Errors
/// An invalid name, an unreadable store, or no such process.
fn open_process(option: &StoreOption, name: &str) -> Result<(Opened, ProcessStore), String> {
    check_process_name(name).map_err(|e| e.to_string())?;
    let location = Location::of(option)?;
    let missing = || format!("no process named {name} in store {}", location.display());
    let store = store::open_for_reading(option)?.ok_or_else(missing)?;
    let process = process_store(&store, name)?;
    let has_objects = !store
        .backend
        .list(process.prefix())
        .map_err(|e| e.to_string())?
        .is_empty();
    if !has_objects && matches!(running(&store, name)?, Running::No) {
        return Err(missing());
    }
    Ok((store, process))
}

fn inspect_text(options: &InspectOptions) -> Result<String, String> {
    let name = options.name.as_str();
    let (store, process) = open_process(&options.store, name)?;
    let newest = newest_checkpoint(&process).map_err(|e| e.to_string())?;
    let running = running(&store, name)?;
    let mut out = String::new();
    let _ = writeln!(out, "process   {name}");
    let _ = writeln!(out, "store     {}", store.location.display());
    let _ = writeln!(out, "state     {}", state_text(&running, &newest));
    if let Running::Leased(holder) = &running {
        let _ = writeln!(out, "lease     held by {holder}");
    }
    if let Some(manifest) = newest.manifest() {
        describe_newest(&mut out, &*store.backend, manifest);
    }
    out.push('\n');
    out.push_str(&history(&process)?);
    let objects = ObjectTotals::of(&*store.backend, process.prefix())?;
    let _ = writeln!(out, "\nobjects   {}", objects.text());
    Ok(out)
}

/// The module, invocation and trap message of the newest checkpoint.
fn describe_newest(out: &mut String, store: &dyn StorageBackend, manifest: &Manifest) {
    let body = &manifest.body;
    let hash = &body.module_sha256;
    let module = if hash.is_empty() {
        "none recorded".to_string()
    } else {
        match store.size(&format!("modules/{hash}")) {
            Ok(Some(bytes)) => format!("sha256 {hash} ({})", human_bytes(bytes)),
            _ => format!("sha256 {hash} (missing from the store)"),
        }
    };
    let _ = writeln!(out, "module    {module}");
    let invocation = &body.invocation;
    let mut invoked = match &invocation.export {
        Some(export) => format!("--invoke {export}"),
        None => "_start".to_string(),
    };
    for arg in &invocation.args {
        // Quoted only where a plain listing would be ambiguous.
        let plain = !arg.is_empty() && !arg.contains(|c: char| c.is_whitespace() || c == '"');
        if plain {
            let _ = write!(invoked, " {arg}");
        } else {
            let _ = write!(invoked, " {arg:?}");
        }
    }
    for (flag, value) in &invocation.flags {
        let _ = write!(invoked, " [{flag}={value}]");
    }
    let _ = writeln!(out, "invoked   {invoked}");
    if let ProcessStatus::Trapped { message } = &body.status {
        let _ = writeln!(out, "trap      {message}");
    }
}

/// One line per manifest, oldest first.
fn history(process: &ProcessStore) -> Result<String, String> {
    let header = [
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
        "LIVE PAGES",
    ];
    let right = [
        true, true, false, false, true, true, true, true, true, true, true, true, true,
    ];
    let mut rows = Vec::new();
    for epoch in process.epochs().map_err(|e| e.to_string())? {
        match process.load(epoch) {
            Ok(manifest) => rows.push(history_row(&manifest)),
            Err(CkptError::Corrupt { reason, .. }) => {
                rows.push(vec![epoch.to_string(), format!("damaged: {reason}")]);
            }
            // Collected by a running process since it was listed.
            Err(CkptError::Storage(e)) if e.is_not_found() => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if rows.is_empty() {
        return Ok("no checkpoints\n".into());
    }
    Ok(table(&header, &right, &rows))
}

fn history_row(manifest: &Manifest) -> Vec<String> {
    let body = &manifest.body;
    let live_pages: u64 = body.segments.iter().map(|&(_, _, live)| live as u64).sum();
    vec![
        manifest.epoch.to_string(),
        manifest.parent.to_string(),
        utc_text(body.created_unix_ms),
        status_text(&body.status),
        human_bytes(body.heap_bytes),
        body.checkpoint_count.to_string(),
        body.pages_written.to_string(),
        pause_text(body.pause_us),
        human_bytes(body.engine.len() as u64),
        human_bytes(body.host.len() as u64),
        format!("{} + {}", body.map_chunks.len(), body.map_deltas.len()),
        body.segments.len().to_string(),
        live_pages.to_string(),
    ]
}

/// A checkpoint pause: microseconds below 10 ms, else milliseconds.
fn pause_text(pause_us: u64) -> String {
    if pause_us < 10_000 {
        format!("{pause_us} us")
    } else {
        format!("{} ms", pause_us / 1000)
    }
}

/// `rm` shows a progress bar (on a terminal) from this many objects up.
const PROGRESS_OBJECTS_MIN: usize = 1000;

fn remove(options: &RmOptions) -> Result<String, String> {
    let name = options.name.as_str();
    let (store, process) = open_process(&options.store, name)?;
    // Holding the lock (or the lease) keeps a runner from starting while the
    // objects go.
    let claim = match &store.location {
        Location::Local(root) => match ProcessLock::acquire(root, name) {
            Ok(lock) => ferrite_ckpt::Claim::Local(lock),
            Err(LockError::Held { pid, .. }) => {
                let pid = pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
                return Err(format!(
                    "process {name} is running{pid}; stop it before removing it"
                ));
            }
            Err(e) => return Err(e.to_string()),
        },
        Location::S3(_) | Location::Server(_) => {
            store::claim(&store, &options.store, name, &ferrite_ckpt::runner_tag())
                .map_err(|message| format!("{message}; stop it before removing it"))?
        }
    };
    // A bar on a terminal when there is much to delete.
    let mut bar: Option<indicatif::ProgressBar> = None;
    process
        .remove_data(&mut |done, total| {
            if total < PROGRESS_OBJECTS_MIN || !io::stderr().is_terminal() {
                return;
            }
            let bar = bar.get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new(total as u64);
                bar.set_message(format!("removing {name}"));
                bar
            });
            bar.set_position(done as u64);
        })
        .map_err(|e| e.to_string())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // The journal that rolls back the process's files (see `persist`).
    let journal = store::journal_dir(&store.location, name)?;
    match fs::remove_dir_all(&journal) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", journal.display())),
    }
    // The lease objects last, once nothing renews them any more; a local
    // run lock (its file removed while held, see `ProcessLock::remove`) after.
    let lock = match claim {
        ferrite_ckpt::Claim::Local(lock) => Some(lock),
        other => {
            drop(other);
            None
        }
    };
    process.remove_leases().map_err(|e| e.to_string())?;
    if let (Some(lock), Some(root)) = (lock, store.location.local()) {
        if let Ok(Some(dir)) = crate::store_path::StoreDir::open(root) {
            dir.prune(process.prefix());
        }
        let path = lock.path().to_path_buf();
        lock.remove()
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok(format!("removed {name}\n"))
}

/// Formats rows under a header, columns two spaces apart, right-aligned where
/// `right` says so. A row shorter than the header ends with a cell that spans
/// the remaining columns (it does not widen its column).
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        let sized = if row.len() < header.len() {
            row.len().saturating_sub(1)
        } else {
            row.len()
        };
        for (width, cell) in widths.iter_mut().zip(&row[..sized]) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(ToString::to_string).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let spans = column + 1 == row.len() && row.len() < widths.len();
            let width = if spans { 0 } else { widths[column] };
            if right[column] && !spans {
                let _ = write!(line, "{cell:>width$}  ");
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `512 B`, `64 KiB`, `1.5 MiB`: binary units, at most one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and above would print as 1024.0 of this unit.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// Unix milliseconds as a UTC `YYYY-MM-DD HH:MM:SS`.
fn utc_text(unix_ms: u64) -> String {
    const SECONDS_PER_DAY: u64 = 86_400;
    let seconds = unix_ms / 1000;
    let (days, time) = (seconds / SECONDS_PER_DAY, seconds % SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`): eras of 400 years (146097 days) starting on
/// March 1st, so that the leap day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468; // From 0000-03-01 to 1970-01-01.
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_text(1_700_000_000_999), "2023-11-14 22:13:20");
        assert_eq!(utc_text(4_107_542_399_000), "2100-02-28 23:59:59");
        assert_eq!(utc_text(4_107_542_400_000), "2100-03-01 00:00:00");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(65_536), "64 KiB");
        assert_eq!(human_bytes(1_572_864), "1.5 MiB");
        assert_eq!(human_bytes(1_048_575), "1 MiB");
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes(u64::MAX), "16 EiB");
    }

    #[test]
    fn tables_align_and_let_short_rows_span() {
        let rows = vec![
            vec!["a".to_string(), "1".into(), "x".into()],
            vec!["bbb".to_string(), "damaged: long reason".into()],
        ];
        let text = table(&["N", "SIZE", "T"], &[false, true, false], &rows);
        assert_eq!(
            text,
            "N    SIZE  T\na       1  x\nbbb  damaged: long reason\n"
        );
    }
}
