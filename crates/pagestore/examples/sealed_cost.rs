//! The cost of encryption at rest, side by side in one run: a page store over
//! `MemStore` as is, and over `SealedStore<MemStore>` with 4 (the default), 16
//! and 64 KiB chunks. For each: segment writes (pages written, segments and
//! maps committed), random page reads (one 4 KiB record per `get`), and
//! sequential page reads (256 KiB readahead ranges). Rates are of page data;
//! ratios are against the unsealed store. Last, the cipher alone, for scale.
//!
//! ```text
//! cargo run --release -p ferrite-pagestore --example sealed_cost [-- MIB]
//! ```

use ferrite_pagestore::{
    MemStore, PageMapRef, PageStore, SealKey, SealedStore, StorageBackend, SEALED_CHUNK_BYTES,
};
use std::{sync::Arc, time::Instant};

const PAGE: usize = 4096;
/// Rounds of each measurement; the fastest is reported.
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Rates {
    write: f64,
    random: f64,
    sequential: f64,
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// Writes `pages` pages and commits them; then reads them in a pseudo-random
/// order and in order. Returns page-data MB/s of each.
fn measure(backend: &Arc<dyn StorageBackend>, pages: u32, round: usize) -> Rates {
    let prefix = format!("p{round}/");
    let bytes = u64::from(pages) * PAGE as u64;
    let mut store = PageStore::open(
        Arc::clone(backend),
        prefix.as_str(),
        PAGE,
        0,
        PageMapRef::default(),
    );
    let mut page = vec![0u8; PAGE];
    let began = Instant::now();
    for index in 0..pages {
        page.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i as u32 ^ index) as u8);
        store.write_page(index, &page).expect("write");
    }
    let map = store.commit_maps().expect("commit");
    let write = mb_per_s(bytes, began.elapsed().as_secs_f64());
    drop(store);

    let mut store = PageStore::open(Arc::clone(backend), prefix.as_str(), PAGE, 1, map.clone());
    // A full-period walk modulo a power of two: every page once, no two in a row.
    let mut state = 1u32;
    let began = Instant::now();
    for _ in 0..pages {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345) % pages;
        store.read_page(state, &mut page).expect("read");
    }
    let random = mb_per_s(bytes, began.elapsed().as_secs_f64());
    drop(store);

    let mut store = PageStore::open(Arc::clone(backend), prefix.as_str(), PAGE, 1, map);
    let began = Instant::now();
    for index in 0..pages {
        store.read_page(index, &mut page).expect("read");
    }
    let sequential = mb_per_s(bytes, began.elapsed().as_secs_f64());
    assert!(store.stats().pages_read_ahead > u64::from(pages) / 2);
    Rates {
        write,
        random,
        sequential,
    }
}

fn best(make: impl Fn() -> Arc<dyn StorageBackend>, pages: u32) -> Rates {
    let mut best = Rates {
        write: 0.0,
        random: 0.0,
        sequential: 0.0,
    };
    for round in 0..ROUNDS {
        let rates = measure(&make(), pages, round);
        best.write = best.write.max(rates.write);
        best.random = best.random.max(rates.random);
        best.sequential = best.sequential.max(rates.sequential);
    }
    best
}

/// MB/s of the cipher alone, sealing `mib` MiB in 4 KiB chunks in place: the
/// ceiling of any sealed path on this machine.
fn cipher_alone(mib: u32) -> f64 {
    use chacha20poly1305::{
        aead::{AeadInPlace, KeyInit},
        XChaCha20Poly1305,
    };
    let cipher = XChaCha20Poly1305::new(&[7; 32].into());
    let mut buffer = vec![0u8; 1 << 20];
    let began = Instant::now();
    for round in 0..mib {
        for (index, chunk) in buffer.chunks_mut(4096).enumerate() {
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&(u64::from(round) << 20 | index as u64).to_le_bytes());
            cipher
                .encrypt_in_place_detached(&nonce.into(), b"associated data", chunk)
                .expect("seal");
        }
    }
    mb_per_s(u64::from(mib) << 20, began.elapsed().as_secs_f64())
}

fn main() {
    let mib: u32 = std::env::args()
        .nth(1)
        .map_or(64, |a| a.parse().expect("MiB of heap"));
    assert!(
        mib.is_power_of_two(),
        "MIB must be a power of two (the random walk needs it)"
    );
    let pages = mib * 256;
    let key = SealKey::from_bytes([7; 32]);
    println!("{mib} MiB of 4 KiB pages over MemStore, best of {ROUNDS} rounds; MB/s of page data");
    println!(
        "{:<32} {:>16} {:>16} {:>16}",
        "store", "segment writes", "random 4 KiB", "sequential 256K"
    );
    let plain = best(|| Arc::new(MemStore::new()), pages);
    let row = |name: &str, rates: Rates| {
        println!(
            "{name:<32} {:>8.0} ({:>4.2}x) {:>8.0} ({:>4.2}x) {:>8.0} ({:>4.2}x)",
            rates.write,
            rates.write / plain.write,
            rates.random,
            rates.random / plain.random,
            rates.sequential,
            rates.sequential / plain.sequential,
        );
    };
    row("MemStore", plain);
    let cipher = (0..ROUNDS).map(|_| cipher_alone(mib)).fold(0.0, f64::max);
    for chunk_kib in [4, 16, 64] {
        let chunk_bytes = chunk_kib << 10;
        let sealed = best(
            || {
                let store = SealedStore::open(MemStore::new(), &key)
                    .expect("a new store")
                    .with_chunk_bytes(chunk_bytes);
                Arc::new(store)
            },
            pages,
        );
        let default = if chunk_bytes == SEALED_CHUNK_BYTES {
            ", default"
        } else {
            ""
        };
        row(&format!("sealed, {chunk_kib} KiB chunks{default}"), sealed);
    }
    println!("XChaCha20-Poly1305 alone, 4 KiB chunks in place: {cipher:.0} MB/s");
}
