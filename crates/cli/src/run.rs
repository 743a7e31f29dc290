//! `ferrite run`: load a module, instantiate it, call one export, print the results.
//!
//! Exit statuses, chosen to match `wasmtime run`:
//!
//! | status | meaning                                                                 |
//! |--------|-------------------------------------------------------------------------|
//! | 0      | the function returned; its results are on stdout, one per line         |
//! | 1      | the file, module, export or arguments are unusable (one `error:` line)  |
//! | 2      | the command line itself is wrong (clap errors, invalid stack limits, ARGS |
//! |        | without `--invoke`): found before FILE is opened                        |
//! | 134    | wasm trapped (128 + SIGABRT, as wasmtime; 3 on Windows, as wasmtime)    |

use crate::args::parse_args;
use clap::Args;
use ferrite_vm::{
    Config, Error, Extern, ExternType, FuncType, HostFuncId, Module, StackLimits, Store, Trap,
    Value,
};
use std::{
    fs::File,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

/// The export called when `--invoke` is not given (the WASI command entry point).
const ENTRY_POINT: &str = "_start";

/// The largest module file read. Bounds the host allocation when FILE is huge or
/// endless (`/dev/zero`); far above any real module.
const MODULE_BYTES_MAX: u64 = 256 << 20;

/// Trap backtraces print at most this many frames: a runaway recursion has up to
/// `--max-call-depth` of them, and the innermost ones are the informative ones.
const BACKTRACE_FRAMES_MAX: usize = 32;

/// Run a WebAssembly module (`.wasm` or `.wat`).
///
/// The module is instantiated without imports and its start function (if any) is
/// run. Then the export named by `--invoke` (or `_start`) is called with ARGS, and
/// each result is printed on its own line: integers in signed decimal, floats as
/// Rust prints them (`1.5`, `-0`, `inf`, `NaN`).
///
/// Exit status: 0 on success; 1 if the file, module, export or arguments are
/// unusable; 2 for command-line errors; 134 (3 on Windows) if the wasm code traps,
/// as with wasmtime.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Call the exported function NAME instead of `_start`.
    ///
    /// ARGS are parsed according to its parameter types: i32 and i64 in decimal
    /// (signed or unsigned range) or `0x` hexadecimal; f32 and f64 as decimal
    /// numbers, `nan`, `inf` or `-inf`.
    #[arg(long, value_name = "NAME")]
    pub invoke: Option<String>,

    /// The deepest wasm call nesting allowed before trapping with "call stack
    /// exhausted".
    #[arg(long, value_name = "N", default_value_t = StackLimits::default().call_depth_max)]
    pub max_call_depth: u32,

    /// The most 64-bit value stack slots (locals and operands of all frames
    /// together) allowed before trapping with "call stack exhausted".
    #[arg(long, value_name = "N", default_value_t = StackLimits::default().value_slots_max)]
    pub max_value_stack: u32,

    /// The module to run: a binary `.wasm` or a text `.wat` file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Arguments of the invoked function, one per parameter. Everything after FILE
    /// is an argument, so negative numbers need no `--`.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// Why `ferrite run` failed.
#[derive(Debug)]
enum Failure {
    /// The command line is inconsistent (exit 2).
    Usage(String),
    /// Something outside the wasm code's control is unusable (exit 1).
    Unusable(String),
    /// The wasm code trapped.
    Trap(Trap),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::Trap(trap) => Failure::Trap(trap),
            other => Failure::Unusable(other.to_string()),
        }
    }
}

/// Runs the command and reports the outcome; returns the process exit status.
pub fn main(options: &RunOptions) -> ExitCode {
    match execute(options) {
        Ok(results) => print_results(&results),
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Unusable(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Trap(trap)) => {
            print_trap(&trap);
            trap_exit_code()
        }
    }
}

/// Loads, checks, instantiates and calls; the results of the call.
fn execute(options: &RunOptions) -> Result<Vec<Value>, Failure> {
    let stack_limits = StackLimits {
        call_depth_max: options.max_call_depth,
        value_slots_max: options.max_value_stack,
    };
    stack_limits.validate().map_err(Failure::Usage)?;
    let name = options.invoke.as_deref().unwrap_or(ENTRY_POINT);
    if options.invoke.is_none() && !options.args.is_empty() {
        return Err(Failure::Usage(format!(
            "ARGS are passed to the function named by --invoke; \
             passing program arguments to {ENTRY_POINT} needs WASI, which ferrite run \
             cannot provide yet"
        )));
    }

    let bytes = read_module(&options.file)
        .map_err(|e| Failure::Unusable(format!("cannot read {}: {e}", options.file.display())))?;
    let module = load_module(&options.file, &bytes)?;
    check_no_imports(&module)?;
    // Everything that can be checked without running code is checked before the
    // start function runs.
    let ty = export_func_type(&module, name, options.invoke.is_some())?;
    let args = parse_args(&options.args, ty.params())
        .map_err(|e| Failure::Unusable(format!("invalid arguments for `{name}`: {e}")))?;

    let mut store = Store::new(Config { stack_limits });
    let mut host = |_: &mut Store, id: HostFuncId, _: &[Value]| -> Result<Vec<Value>, Trap> {
        unreachable!("host function {id:?} called, but the module has no imports")
    };
    let instance = store.instantiate_and_start(&module, &[], &mut host)?;
    let Some(Extern::Func(func)) = store.get_export(instance, name) else {
        unreachable!("export `{name}` was checked to be a function")
    };
    Ok(store.invoke(func, &args, &mut host)?)
}

/// The file's bytes, at most [`MODULE_BYTES_MAX`] of them.
fn read_module(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MODULE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MODULE_BYTES_MAX {
        return Err(io::Error::other(format!(
            "file is larger than {} MiB, the largest module ferrite runs",
            MODULE_BYTES_MAX >> 20
        )));
    }
    Ok(bytes)
}

/// Decodes, validates and translates a `.wasm` or `.wat` file's bytes.
fn load_module(path: &Path, bytes: &[u8]) -> Result<Module, Failure> {
    // The same steps as `Module::from_text_or_binary`, but the text parser is told
    // the path, so that its diagnostics point at `FILE:line:column`.
    let binary = wat::Parser::new()
        .parse_bytes(Some(path), bytes)
        .map_err(|e| Error::Malformed(e.to_string()))?;
    Ok(Module::new(&binary)?)
}

/// Fails on the first import: `ferrite run` has no host functions yet.
fn check_no_imports(module: &Module) -> Result<(), Failure> {
    match module.imports().first() {
        None => Ok(()),
        Some(import) => Err(Failure::Unusable(format!(
            "module imports {}::{} ({}), which ferrite run cannot provide yet",
            import.module,
            import.name,
            import.ty.kind()
        ))),
    }
}

/// The signature of the function exported as `name`.
fn export_func_type(module: &Module, name: &str, invoked: bool) -> Result<FuncType, Failure> {
    match module.export_type(name) {
        Some(ExternType::Func(ty)) => Ok(ty),
        Some(other) => Err(Failure::Unusable(format!(
            "export `{name}` is a {}, not a function",
            other.kind()
        ))),
        None if invoked => Err(Failure::Unusable(format!(
            "module has no export named `{name}`"
        ))),
        None => Err(Failure::Unusable(format!(
            "module has no {ENTRY_POINT} export; use --invoke NAME"
        ))),
    }
}

/// Prints one result per line on stdout.
fn print_results(results: &[Value]) -> ExitCode {
    let mut text = String::new();
    for value in results {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nobody is left to tell.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write results: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the trap reason and the innermost frames of its backtrace on stderr.
fn print_trap(trap: &Trap) {
    // Nothing useful can be done if stderr itself is gone.
    let _ = write_trap(&mut io::stderr().lock(), trap);
}

fn write_trap(out: &mut impl Write, trap: &Trap) -> io::Result<()> {
    // `Error`'s rendering carries the "wasm trap: " prefix.
    writeln!(out, "error: {}", Error::Trap(trap.clone()))?;
    let lines = trap.backtrace_lines();
    if !lines.is_empty() {
        writeln!(out, "wasm backtrace:")?;
    }
    for line in lines.iter().take(BACKTRACE_FRAMES_MAX) {
        writeln!(out, "{line}")?;
    }
    if lines.len() > BACKTRACE_FRAMES_MAX {
        writeln!(
            out,
            "  ... {} more frames",
            lines.len() - BACKTRACE_FRAMES_MAX
        )?;
    }
    Ok(())
}

/// The status of a trapped run, as wasmtime: it reports traps like an abort.
fn trap_exit_code() -> ExitCode {
    if cfg!(windows) {
        ExitCode::from(3)
    } else {
        ExitCode::from(128 + 6) // 128 + SIGABRT
    }
}
