//! The fault path's latency: 4 KiB gets of random pages of a 64 MiB object,
//! one at a time, through `ServerStore` to an in-process server over TLS 1.3
//! on loopback (certificates made here), as a page fault makes them.
//!
//! ```text
//! cargo run --release -p ferrite-net --example fault_latency -- [GETS]
//! ```

use ferrite_net::{
    client::{ClientOptions, ServerStore},
    server::{DataLocation, ServerConfig, ServerHandle, ServerLimits},
    tls,
    tokens::TokenTable,
};
use ferrite_pagestore::StorageBackend;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gets: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("ferrite-fault-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("cert.pem"), leaf.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    let mut tokens = TokenTable::default();
    tokens.insert("bench", "secret");
    let server = ServerHandle::start(ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data: DataLocation::Dir(dir.join("data")),
        tokens,
        tls: Some(tls::server_config(
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
        )?),
        limits: ServerLimits::default(),
        report_every: None,
        log: true,
    })?;
    let url = format!("ferrite://localhost:{}/bench", server.local_addr().port());
    let options = ClientOptions {
        token: "secret".into(),
        ca_cert: Some(dir.join("ca.pem")),
        ..ClientOptions::default()
    };
    let store = ServerStore::open(&url, &options)?;
    let pages = 16_384u64; // 64 MiB
    let object: Vec<u8> = (0..pages * 4096).map(|i| (i % 253) as u8).collect();
    store.put_new("procs/bench/segments/1", &object)?;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut samples = Vec::with_capacity(gets);
    for round in 0..gets + 1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let page = seed % pages;
        let began = Instant::now();
        let bytes = store.get(
            "procs/bench/segments/1",
            Some(page * 4096..(page + 1) * 4096),
        )?;
        let took = began.elapsed();
        assert_eq!(
            bytes[..],
            object[(page * 4096) as usize..((page + 1) * 4096) as usize]
        );
        if round >= 1000 {
            samples.push(took.as_nanos() as u64); // after a warm-up
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{gets} gets of 4 KiB over TLS 1.3 on loopback: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        at(0.50),
        at(0.99),
        at(1.0)
    );
    println!("server: {}", server.counters());
    drop(store);
    server.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
