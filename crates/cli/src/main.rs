//! `ferrite`: run WebAssembly modules from the command line.
//!
//! ```text
//! ferrite run --invoke fib examples/fib.wat 30
//! ferrite ps --store /var/lib/ferrite
//! ferrite serve --listen 127.0.0.1:7421 --data /var/lib/heaps --tokens tokens.txt --insecure
//! ```
//!
//! `main` only parses the command line and dispatches; each subcommand lives in its
//! own module.

mod args;
mod migrate;
mod persist;
mod procs;
mod run;
mod serve;
mod store;
mod store_path;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Ferrite: a WebAssembly interpreter.
///
/// Example: `ferrite run --invoke fib examples/fib.wat 30` prints 832040.
#[derive(Debug, Parser)]
#[command(name = "ferrite", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::RunOptions),
    Resume(persist::ResumeOptions),
    Checkpoint(persist::CheckpointOptions),
    Ps(procs::PsOptions),
    Inspect(procs::InspectOptions),
    Rm(procs::RmOptions),
    Serve(serve::ServeOptions),
}

fn main() -> ExitCode {
    // Syntax errors of the command line exit with clap's status 2 before any file
    // is opened.
    let cli = Cli::parse();
    match cli.command {
        Command::Run(options) => run::main(&options),
        Command::Resume(options) => persist::resume(&options),
        Command::Checkpoint(options) => persist::checkpoint(&options),
        Command::Ps(options) => procs::ps(&options),
        Command::Inspect(options) => procs::inspect(&options),
        Command::Rm(options) => procs::rm(&options),
        Command::Serve(options) => serve::main(&options),
    }
}
