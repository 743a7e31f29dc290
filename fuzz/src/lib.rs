//! Shared pieces of the fuzz targets.
//!
//! The oracle of the `differential` and `execute` targets is the one of the
//! deterministic test `crates/vm/tests/differential.rs`, included here rather
//! than copied so that the fuzzer and the test suite check exactly the same
//! properties. Its `#[test]` functions are compiled out here (no `cfg(test)`),
//! which leaves some helpers unused.

#[allow(dead_code)]
#[path = "../../crates/vm/tests/differential.rs"]
pub mod oracle;

/// The hostile-store check of `crates/process/tests/hostile_store.rs`,
/// included for the same reason.
#[path = "../../crates/process/tests/hostile/mod.rs"]
pub mod hostile;
