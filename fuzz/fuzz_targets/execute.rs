//! A wasm-smith module (all of Ferrite's features, unrestricted NaNs and large
//! memories) is instantiated and each export called with a budget: execution
//! must neither panic nor run past its budget (libFuzzer's timeout catches the
//! latter).
#![no_main]

use arbitrary::Unstructured;
use ferrite_fuzz::oracle;
use libfuzzer_sys::fuzz_target;

/// Budget per call; small, so that each input runs in milliseconds.
const FUEL: u64 = 100_000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(slice_choice) = u.choose_index(oracle::SLICES.len()) else {
        return;
    };
    let Ok(module) = wasm_smith::Module::new(oracle::robustness_config(), &mut u) else {
        return;
    };
    oracle::execute_all(&module.to_bytes(), FUEL, oracle::SLICES[slice_choice]);
});
