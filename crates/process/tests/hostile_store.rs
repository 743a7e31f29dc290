//! A damaged or hostile store never panics, never over-allocates, never
//! misleads: a few hundred seeded cases of `hostile::check` (the same check
//! the fuzz target `hostile_store` runs). `FERRITE_HOSTILE_SEEDS=N` runs N.

#![allow(clippy::unwrap_used)]

mod hostile;

#[global_allocator]
static ALLOC: hostile::BoundedAlloc = hostile::BoundedAlloc;

fn input(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_damaged_or_hostile_store_never_panics_over_allocates_or_misleads() {
    let seeds: u64 = std::env::var("FERRITE_HOSTILE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut counts = std::collections::BTreeMap::new();
    for seed in 0..seeds {
        let verdict = std::panic::catch_unwind(|| hostile::check(&input(seed)))
            .unwrap_or_else(|_| panic!("seed {seed} failed"));
        *counts.entry(format!("{verdict:?}")).or_insert(0u64) += 1;
    }
    eprintln!(
        "{seeds} cases: {counts:?}; largest allocation {} bytes",
        hostile::ALLOCATION_BYTES_PEAK.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        counts.len() >= 3,
        "the cases reach several outcomes: {counts:?}"
    );
}
