//! A damaged or hostile store: see `ferrite_fuzz::hostile` (shared with the
//! seeded test `crates/process/tests/hostile_store.rs`).

#![no_main]

use ferrite_fuzz::hostile;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: hostile::BoundedAlloc = hostile::BoundedAlloc;

fuzz_target!(|data: &[u8]| {
    hostile::check(data);
});
