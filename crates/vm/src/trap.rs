//! Traps: why an execution stopped abnormally, and where.

use ferrite_core::TrapCode;
use std::fmt;

/// One frame of a wasm backtrace, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacktraceFrame {
    /// The function's index in its module's function index space.
    pub func_index: u32,
    /// The function's name from the module's name section, if it has one.
    pub func_name: Option<String>,
    /// The module's name from its name section, if it has one.
    pub module_name: Option<String>,
}

impl fmt::Display for BacktraceFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let module = self.module_name.as_deref().unwrap_or("<module>");
        match &self.func_name {
            Some(name) => write!(f, "{module}!{name}"),
            None => write!(f, "{module}!<wasm function {}>", self.func_index),
        }
    }
}

/// A trap: the reason and the wasm call stack at the moment it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    code: TrapCode,
    backtrace: Vec<BacktraceFrame>,
}

impl Trap {
    /// A trap with no backtrace (yet).
    #[cold]
    pub fn new(code: TrapCode) -> Self {
        Self {
            code,
            backtrace: Vec::new(),
        }
    }

    #[cold]
    pub(crate) fn with_backtrace(code: TrapCode, backtrace: Vec<BacktraceFrame>) -> Self {
        Self { code, backtrace }
    }

    /// Why the execution trapped.
    pub fn code(&self) -> TrapCode {
        self.code
    }

    /// The wasm frames active at the trap, innermost first.
    pub fn backtrace(&self) -> &[BacktraceFrame] {
        &self.backtrace
    }

    /// The backtrace as lines `    N: module!function`, one per frame.
    pub fn backtrace_lines(&self) -> Vec<String> {
        self.backtrace
            .iter()
            .enumerate()
            .map(|(i, frame)| format!("  {i:>3}: {frame}"))
            .collect()
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.message())
    }
}

impl std::error::Error for Trap {}

impl From<TrapCode> for Trap {
    fn from(code: TrapCode) -> Self {
        Trap::new(code)
    }
}
