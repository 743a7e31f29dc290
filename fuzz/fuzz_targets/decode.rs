//! Arbitrary bytes: `Module::new` may reject them but must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferrite_vm::Module::new(data);
});
