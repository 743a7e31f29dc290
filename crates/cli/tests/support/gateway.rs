//! The S3 gateway the object-storage tests run against (`scripts/s3/up.sh`),
//! shared by `s3.rs` and `s3_restart.rs`: they fail, never skip, without it.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// The value of the gateway's variable `name`, or a failure that says how to
/// start the gateway.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need an S3 gateway. Run scripts/test.sh, or \
             start one with scripts/s3/up.sh and export the variables it prints"
        )
    })
}

/// A fresh prefix of the gateway's bucket.
pub fn fresh_url(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    env("AWS_ENDPOINT_URL");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "s3://{}/cli-tests/{test}-{}-{nanos}-{}",
        env("AWS_BUCKET"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}
