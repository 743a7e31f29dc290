//! Upload throughput against an S3 gateway: raw `object_store` puts of 1 MiB
//! objects with `IN_FLIGHT` at once, against a `PageStore` checkpoint of the
//! same number of bytes of dirty pages through `S3Store` (`write_page` for
//! every page, then `commit_maps`, whose deferred puts upload in the
//! background). The two alternate, `ROUNDS` times each, and every round
//! removes what it wrote.
//!
//! ```text
//! set -a; . /work/s3.env; set +a
//! cargo run --release -p ferrite-remote --example s3_upload -- [MIB] [ROUNDS]
//! ```

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{PageMapRef, PageStore, StorageBackend};
use ferrite_remote::{S3Options, S3Store};
use futures::StreamExt;
use object_store::{aws::AmazonS3Builder, path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

const OBJECT_BYTES: usize = 1 << 20;
const IN_FLIGHT: usize = 16;
const PAGE: usize = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(256, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(2, |a| a.parse().unwrap());
    let bucket = std::env::var("AWS_BUCKET").expect("AWS_BUCKET: run scripts/s3/up.sh");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let base = format!("bench/s3-upload-{}-{nanos}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let raw: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .unwrap(),
    );
    let mut raw_rates = Vec::new();
    let mut ckpt_rates = Vec::new();
    for round in 0..rounds {
        let prefix = format!("{base}/raw-{round}");
        let seconds = raw_puts(&runtime, &raw, &prefix, mib);
        raw_rates.push(mib as f64 / seconds);
        println!(
            "round {round}: object_store, {IN_FLIGHT} in flight: {:.1} MiB/s",
            raw_rates[round]
        );

        let url = format!("s3://{bucket}/{base}/ckpt-{round}");
        let store = Arc::new(S3Store::open(&url, &S3Options::default()).unwrap());
        let seconds = checkpoint(store.clone(), mib);
        ckpt_rates.push(mib as f64 / seconds);
        println!(
            "round {round}: PageStore checkpoint via S3Store: {:.1} MiB/s",
            ckpt_rates[round]
        );
        for key in store.list("").unwrap() {
            store.delete(&key).unwrap();
        }
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (raw, ckpt) = (mean(&raw_rates), mean(&ckpt_rates));
    println!(
        "{mib} MiB x {rounds} rounds: object_store {raw:.1} MiB/s, checkpoint {ckpt:.1} MiB/s, \
         ratio {:.2} (uploads_bytes_max {} MiB)",
        ckpt / raw,
        S3Options::default().uploads_bytes_max >> 20
    );
}

/// Puts `mib` objects of 1 MiB, `IN_FLIGHT` at once, then deletes them;
/// returns the seconds the puts took.
fn raw_puts(
    runtime: &tokio::runtime::Runtime,
    raw: &Arc<dyn ObjectStore>,
    prefix: &str,
    mib: usize,
) -> f64 {
    let payload = PutPayload::from(vec![0x5au8; OBJECT_BYTES]);
    let paths: Vec<Path> = (0..mib)
        .map(|i| Path::from(format!("{prefix}/{i:06}")))
        .collect();
    let started = Instant::now();
    runtime.block_on(async {
        let puts = futures::stream::iter(paths.iter().cloned())
            .map(|path| {
                let (raw, payload) = (raw.clone(), payload.clone());
                async move { raw.put(&path, payload).await.unwrap() }
            })
            .buffer_unordered(IN_FLIGHT);
        puts.collect::<Vec<_>>().await;
    });
    let seconds = started.elapsed().as_secs_f64();
    runtime.block_on(async {
        let deletes = futures::stream::iter(paths)
            .map(|path| {
                let raw = raw.clone();
                async move { raw.delete(&path).await.unwrap() }
            })
            .buffer_unordered(IN_FLIGHT);
        deletes.collect::<Vec<_>>().await;
    });
    seconds
}

/// Writes `mib` MiB of distinct pages and commits the page maps; returns the
/// seconds it took.
fn checkpoint(backend: Arc<dyn StorageBackend>, mib: usize) -> f64 {
    let mut pages = PageStore::open(backend, "procs/bench/", PAGE, 0, PageMapRef::default());
    let count = (mib * (1 << 20) / PAGE) as u32;
    let mut page = vec![0u8; PAGE];
    let started = Instant::now();
    for index in 0..count {
        page[..4].copy_from_slice(&index.to_le_bytes());
        pages.write_page(index, &page).unwrap();
    }
    pages.commit_maps().unwrap();
    started.elapsed().as_secs_f64()
}
