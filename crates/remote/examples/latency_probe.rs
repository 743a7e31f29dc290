//! A probe of per-request latency: one small GET, repeated, through
//! `object_store`'s own client and through `S3Store` (`scripts/s3/up.sh`
//! sets `tcp_nodelay=1` because of what this showed: 44 ms per request).
use ferrite_pagestore::StorageBackend;
use ferrite_remote::{S3Options, S3Store};
use object_store::{aws::AmazonS3Builder, path::Path, ObjectStoreExt};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bucket = std::env::var("AWS_BUCKET")?;
    let rt = tokio::runtime::Runtime::new()?;
    let raw = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .build()?;
    let path = Path::from("bench/probe");
    rt.block_on(raw.put(&path, vec![1u8; 100].into()))?;
    for _ in 0..5 {
        let t = Instant::now();
        rt.block_on(async { raw.get(&path).await?.bytes().await })?;
        println!("raw get {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    }
    let store = S3Store::open(&format!("s3://{bucket}/bench"), &S3Options::default())?;
    for _ in 0..5 {
        let t = Instant::now();
        store.get("probe", None)?;
        println!("S3Store get {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
