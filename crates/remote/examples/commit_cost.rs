//! Where a checkpoint's time goes over S3: commits of an unchanged heap and
//! of 4 MiB of pages through a `Session` on the gateway, with the requests
//! of garbage collection timed apart.
//!
//! ```text
//! set -a; . s3.env; set +a
//! cargo run --release -p ferrite-remote --example commit_cost
//! ```

use ferrite_ckpt::{Claim, Invocation, ManifestBody, ProcessStatus, Session};
use ferrite_pagestore::StorageBackend;
use ferrite_remote::{S3Options, S3Store};
use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

fn body() -> ManifestBody {
    ManifestBody {
        process: "job".into(),
        module_sha256: String::new(),
        page_size: 4096,
        map_chunks: vec![],
        map_deltas: Vec::new(),
        segments: vec![],
        status: ProcessStatus::Running,
        invocation: Invocation::default(),
        engine: vec![0; 4096],
        host: vec![],
        created_unix_ms: 0,
        checkpoint_count: 1,
        heap_bytes: 4 << 20,
        pages_written: 0,
        pause_us: 0,
        resident_pages: (0..1024).collect(),
        generations: Vec::new(),
        writer: String::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bucket = std::env::var("AWS_BUCKET")?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let url = format!("s3://{bucket}/bench/commit-{nanos}");
    let backend: Arc<dyn StorageBackend> = Arc::new(S3Store::open(&url, &S3Options::default())?);
    let mut session = Session::open(backend.clone(), "job", Claim::Exclusive)?;
    session.recover_from(None)?;
    let mut pages = session.page_store(None, 4096);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for round in 0..6 {
        let dirty = round % 2 == 1;
        if dirty {
            for page in 0..1024 {
                pages.write_page(page, &[round as u8; 4096])?;
            }
        }
        let t = Instant::now();
        session.commit(Some(&mut pages), body(), 2)?;
        let commit = ms(t);
        let t = Instant::now();
        session.gc(2)?;
        let gc = ms(t);
        let t = Instant::now();
        backend.list("procs/job/segments/")?;
        let list = ms(t);
        let t = Instant::now();
        session.store().load(session.committed_epoch())?;
        let load = ms(t);
        println!(
            "commit {:>2} ({}): {commit:7.1} ms; a gc alone {gc:6.1} ms; a LIST {list:5.1} ms; a manifest GET {load:5.1} ms",
            session.committed_epoch(),
            if dirty { "4 MiB of pages" } else { "no pages" }
        );
    }
    Ok(())
}
