//! Sequential scan throughput of the page store over a local directory, the
//! store side of a heap scan: writes `MIB` MiB of pages in order, commits, drops
//! the page cache if it may (`/proc/sys/vm/drop_caches`, as root), then reads
//! every page back in order and prints the rate.
//!
//! ```text
//! cargo run --release -p ferrite-pagestore --example scan -- /tmp/scan-store 1024
//! ```

use ferrite_pagestore::{LocalStore, PageMapRef, PageStore, StorageBackend};
use std::{sync::Arc, time::Instant};

const PAGE: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp/ferrite-scan".into());
    let mib: u32 = args.next().map_or(Ok(256), |a| a.parse())?;
    let _ = std::fs::remove_dir_all(&dir);
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(&dir)?);
    let pages = mib * 256;
    let mut store = PageStore::open(backend.clone(), "p/", PAGE, 0, PageMapRef::default());
    let began = Instant::now();
    let mut page = vec![0u8; PAGE];
    for i in 0..pages {
        page[..4].copy_from_slice(&i.to_le_bytes());
        store.write_page(i, &page)?;
    }
    let map = store.commit_maps()?;
    println!(
        "write+commit {mib} MiB: {:.2} s",
        began.elapsed().as_secs_f64()
    );
    drop(store);
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    println!("page cache dropped: {dropped}");
    let mut store = PageStore::open(backend, "p/", PAGE, 1, map);
    let began = Instant::now();
    for i in 0..pages {
        store.read_page(i, &mut page)?;
        assert_eq!(page[..4], i.to_le_bytes());
    }
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "sequential read {mib} MiB: {seconds:.2} s, {:.0} MiB/s",
        f64::from(mib) / seconds
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
