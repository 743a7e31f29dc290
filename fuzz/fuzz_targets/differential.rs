//! A wasm-smith module restricted to comparable behavior runs in Ferrite and in
//! wasmi; results, traps, globals, tables and memory must agree (see
//! `crates/vm/tests/differential.rs` for what is compared and what is not).
#![no_main]

use arbitrary::Unstructured;
use ferrite_fuzz::oracle;
use libfuzzer_sys::fuzz_target;

/// Budget per call in both engines; small, so that each input runs in milliseconds.
const FUEL: u64 = 100_000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(slice_choice) = u.choose_index(oracle::SLICES.len()) else {
        return;
    };
    let Ok(module) = wasm_smith::Module::new(oracle::smith_config(), &mut u) else {
        return;
    };
    let (wasm, slice) = (module.to_bytes(), oracle::SLICES[slice_choice]);
    let mut tally = oracle::Tally::default();
    // wasmi may recurse on the host stack (see `oracle::WASMI_STACK_BYTES`).
    oracle::with_large_stack(|| oracle::check_wasm(wasm, 0, FUEL, slice, &mut tally));
    assert!(
        tally.mismatches.is_empty(),
        "{}",
        tally.mismatches.join("\n")
    );
});
