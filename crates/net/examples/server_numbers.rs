//! The heap server's numbers, side by side in one run on loopback:
//!
//! 1. page-fault latency, p50 and p99 of one 4 KiB read at a time of random
//!    pages: a plain TCP request/answer of 4 KiB (the floor), the heap server
//!    over TLS 1.3 and without TLS, and object storage (the S3 gateway named
//!    by `AWS_*`/`AWS_BUCKET`, if set);
//! 2. a sequential scan of pages through the page store on the heap server,
//!    against the raw TCP throughput of the same link (one stream);
//! 3. `CLIENTS` clients (a connection each, as as many processes) reading
//!    random pages at once for `SECONDS`: reads per second, MiB/s, p50, p99;
//! 4. resume to the first instruction of a process with a 1 GiB heap (a byte
//!    written in every 16th page, 32 MiB physical heap) from the heap server
//!    as the CLI does it on a fresh device (connect over TLS, an empty local
//!    cache, the lease, `Process::resume`), against a local directory; the
//!    median of 5 of each, alternating.
//!
//! ```text
//! cargo run --release -p ferrite-net --example server_numbers -- \
//!     [GETS [SCAN_MIB [CLIENTS [SECONDS]]]]        (defaults 20000 256 32 5)
//! ```

use ferrite_ckpt::{
    runner_tag, Claim, LeaseConfig, LeaseKeeper, MonotonicClock, ProcessLock, StoreLease,
};
use ferrite_net::{
    client::{ClientOptions, ServerStore},
    server::{DataLocation, ServerConfig, ServerHandle, ServerLimits},
    tls,
    tokens::TokenTable,
};
use ferrite_pagestore::{LocalStore, PageMapRef, PageStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
use ferrite_remote::{CachedStore, S3Options, S3Store, CACHE_BYTES_DEFAULT};
use ferrite_vm::Value;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

const PAGE: u64 = 4096;
/// The object random reads are made in: 64 MiB.
const OBJECT_PAGES: u64 = 16_384;
const OBJECT: &str = "procs/bench/segments/1";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let arg = |n: usize, default: u64| -> Result<u64, Error> {
        Ok(std::env::args()
            .nth(n)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (gets, scan_mib, clients, seconds) =
        (arg(1, 20_000)?, arg(2, 256)?, arg(3, 32)?, arg(4, 5)?);
    let dir = std::env::temp_dir().join(format!("ferrite-server-numbers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir, gets as usize, scan_mib, clients as usize, seconds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &Path, gets: usize, scan_mib: u64, clients: usize, seconds: u64) -> Result<(), Error> {
    write_pki(dir)?;
    let start = |tls_on: bool, data: &str| -> Result<ServerHandle, Error> {
        let mut tokens = TokenTable::default();
        tokens.insert("bench", "secret");
        for client in 0..clients {
            tokens.insert(&format!("client{client}"), "secret");
        }
        let tls = if tls_on {
            Some(tls::server_config(
                &dir.join("cert.pem"),
                &dir.join("key.pem"),
            )?)
        } else {
            None
        };
        Ok(ServerHandle::start(ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            data: DataLocation::Dir(dir.join(data)),
            tokens,
            tls,
            limits: ServerLimits::default(),
            report_every: None,
            log: false,
        })?)
    };
    let tls_server = start(true, "tls")?;
    let plain_server = start(false, "plain")?;
    let connect =
        |server: &ServerHandle, tls_on: bool, tenant: &str| -> Result<Arc<ServerStore>, Error> {
            let port = server.local_addr().port();
            let (url, ca_cert) = if tls_on {
                (
                    format!("ferrite://localhost:{port}/{tenant}"),
                    Some(dir.join("ca.pem")),
                )
            } else {
                (
                    format!("ferrite+insecure://127.0.0.1:{port}/{tenant}"),
                    None,
                )
            };
            let options = ClientOptions {
                token: "secret".into(),
                ca_cert,
                ..ClientOptions::default()
            };
            Ok(Arc::new(ServerStore::open(&url, &options)?))
        };
    let object: Vec<u8> = (0..OBJECT_PAGES * PAGE).map(|i| (i % 253) as u8).collect();
    let tls_store = connect(&tls_server, true, "bench")?;
    let plain_store = connect(&plain_server, false, "bench")?;
    tls_store.put_new(OBJECT, &object)?;
    plain_store.put_new(OBJECT, &object)?;

    println!("1. page-fault latency: {gets} reads of one random 4 KiB page at a time");
    let floor = RawEcho::start()?;
    report(
        "plain TCP, 4 KiB asked and sent",
        &latencies(gets, |page| floor.ask(page))?,
    );
    report(
        "heap server, TLS 1.3",
        &latencies(gets, |page| read(&*tls_store, &object, page))?,
    );
    report(
        "heap server, no TLS",
        &latencies(gets, |page| read(&*plain_store, &object, page))?,
    );
    match std::env::var("AWS_BUCKET") {
        Ok(bucket) => {
            let url = format!("s3://{bucket}/server-numbers-{}", std::process::id());
            let s3 = S3Store::open(&url, &S3Options::default())?;
            s3.put_new(OBJECT, &object)?;
            let few = (gets / 10).max(100);
            let samples = latencies(few, |page| read(&s3, &object, page))?;
            report(&format!("object storage at {url} ({few} reads)"), &samples);
            s3.delete(OBJECT)?;
        }
        Err(_) => println!("  (object storage: AWS_BUCKET not set, left out)"),
    }

    println!("2. sequential scan of {scan_mib} MiB of pages, one reader");
    let raw = raw_throughput(scan_mib << 20)?;
    println!("  raw TCP stream                       {raw:8.0} MiB/s");
    for (index, (label, store)) in [
        ("heap server, TLS 1.3", &tls_store),
        ("heap server, no TLS", &plain_store),
    ]
    .into_iter()
    .enumerate()
    {
        let (written, rate) = scan(store, scan_mib, &format!("scan{index}/"))?;
        println!(
            "  {label:<36} {rate:8.0} MiB/s ({:.0}% of raw TCP); written as one \
             checkpoint at {written:.0} MiB/s ({:.0}%)",
            rate / raw * 100.0,
            written / raw * 100.0
        );
    }
    drop((tls_store, plain_store));

    println!(
        "3. {clients} clients (tenants of their own) reading random pages at once for \
         {seconds} s, TLS 1.3"
    );
    let stores: Vec<Arc<ServerStore>> = (0..clients)
        .map(|client| {
            let store = connect(&tls_server, true, &format!("client{client}"))?;
            store.put_new(OBJECT, &object)?;
            Ok(store)
        })
        .collect::<Result<_, Error>>()?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let object = Arc::new(object);
    let per_client: Vec<Vec<u64>> = thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(index, store)| {
                let object = object.clone();
                scope.spawn(move || -> Result<Vec<u64>, Error> {
                    let mut walk = Walk::new(index as u64 + 1);
                    let mut samples = Vec::new();
                    while Instant::now() < until {
                        let page = walk.next() % OBJECT_PAGES;
                        let t = Instant::now();
                        read(&**store, &object, page)?;
                        samples.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok(samples)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a client thread"))
            .collect::<Result<_, _>>()
    })?;
    let took = began.elapsed().as_secs_f64();
    let mut all: Vec<u64> = per_client.concat();
    let reads = all.len() as f64;
    all.sort_unstable();
    println!(
        "  {:.0} reads/s ({:.1} MiB/s) in all; per read p50 {:.1} us, p99 {:.1} us",
        reads / took,
        reads * PAGE as f64 / took / f64::from(1 << 20),
        quantile(&all, 0.50),
        quantile(&all, 0.99),
    );
    println!("server: {}", tls_server.counters());
    drop(stores);

    println!("4. resume to the first instruction, 1 GiB heap, median of 5");
    let port = tls_server.local_addr().port();
    let server_open = |cache: &Path| -> Result<Arc<dyn StorageBackend>, Error> {
        let options = ClientOptions {
            token: "secret".into(),
            ca_cert: Some(dir.join("ca.pem")),
            ..ClientOptions::default()
        };
        let url = format!("ferrite://localhost:{port}/bench");
        let store = Arc::new(ServerStore::open(&url, &options)?);
        Ok(Arc::new(CachedStore::open(
            store,
            cache,
            &url,
            CACHE_BYTES_DEFAULT,
        )))
    };
    let local_root = dir.join("local");
    let local_open = || -> Result<Arc<dyn StorageBackend>, Error> {
        Ok(Arc::new(LocalStore::open(&local_root)?))
    };
    let local_claim = |_: &Arc<dyn StorageBackend>| -> Result<Claim, Error> {
        Ok(Claim::Local(ProcessLock::acquire(&local_root, RESUMED)?))
    };
    start_touched(local_open()?, local_claim(&local_open()?)?)?;
    let backend = server_open(&dir.join("cache-start"))?;
    start_touched(backend.clone(), lease(&backend)?)?;
    let mut local = Vec::new();
    let mut server = Vec::new();
    for run in 0..6 {
        let cache = dir.join(format!("cache-{run}"));
        let times = [
            resume_once(&local_open, &local_claim)?,
            resume_once(&|| server_open(&cache), &lease)?,
        ];
        let _ = std::fs::remove_dir_all(&cache);
        // The first of each warms the page cache and the binary.
        if run > 0 {
            local.push(times[0]);
            server.push(times[1]);
        }
    }
    for (label, mut samples) in [("local directory", local), ("heap server, TLS 1.3", server)] {
        samples.sort_unstable();
        println!(
            "  {label:<36} {:7.2} ms to the first instruction",
            samples[samples.len() / 2].as_secs_f64() * 1000.0
        );
    }
    tls_server.stop();
    plain_server.stop();
    Ok(())
}

/// One page of the random-read object, checked.
fn read(store: &dyn StorageBackend, object: &[u8], page: u64) -> Result<(), Error> {
    let bytes = store.get(OBJECT, Some(page * PAGE..(page + 1) * PAGE))?;
    let at = (page * PAGE) as usize;
    if bytes[..] != object[at..at + PAGE as usize] {
        return Err(format!("page {page} read back wrong").into());
    }
    Ok(())
}

/// Nanoseconds of each of `count` calls of `read` on random pages, after a
/// warm-up of a tenth as many.
fn latencies(
    count: usize,
    mut read: impl FnMut(u64) -> Result<(), Error>,
) -> Result<Vec<u64>, Error> {
    let mut walk = Walk::new(0x2545_F491_4F6C_DD1D);
    let mut samples = Vec::with_capacity(count);
    for round in 0..count + count / 10 {
        let page = walk.next() % OBJECT_PAGES;
        let began = Instant::now();
        read(page)?;
        if round >= count / 10 {
            samples.push(began.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    Ok(samples)
}

fn report(label: &str, sorted: &[u64]) {
    println!(
        "  {label:<36} p50 {:7.1} us   p99 {:7.1} us",
        quantile(sorted, 0.50),
        quantile(sorted, 0.99)
    );
}

/// Quantile `q` of sorted nanoseconds, in microseconds.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize] as f64 / 1000.0
}

/// Writes `mib` MiB of pages through a page store on `store`, commits, and
/// reads them back in order through a new page store (its readahead, as a
/// heap scan makes them): MiB/s of the write (with the commit) and of the
/// read.
fn scan(store: &Arc<ServerStore>, mib: u64, prefix: &str) -> Result<(f64, f64), Error> {
    let backend: Arc<dyn StorageBackend> = store.clone();
    let pages = u32::try_from(mib * 256)?;
    let writing = Instant::now();
    let mut pages_store = PageStore::open(backend.clone(), prefix, 4096, 0, PageMapRef::default());
    let mut page = vec![0u8; 4096];
    for i in 0..pages {
        page[..4].copy_from_slice(&i.to_le_bytes());
        pages_store.write_page(i, &page)?;
    }
    let map = pages_store.commit_maps()?;
    let written = mib as f64 / writing.elapsed().as_secs_f64();
    drop(pages_store);
    let mut pages_store = PageStore::open(backend, prefix, 4096, 1, map);
    let began = Instant::now();
    for i in 0..pages {
        pages_store.read_page(i, &mut page)?;
        if page[..4] != i.to_le_bytes() {
            return Err(format!("page {i} read back wrong").into());
        }
    }
    Ok((written, mib as f64 / began.elapsed().as_secs_f64()))
}

/// MiB/s of `bytes` sent over one loopback TCP connection, read by another
/// thread in 256 KiB reads.
fn raw_throughput(bytes: u64) -> Result<f64, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        let chunk = vec![7u8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    let began = Instant::now();
    let mut buffer = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err("the sender stopped early".into());
        }
        got += n as u64;
    }
    let rate = bytes as f64 / f64::from(1 << 20) / began.elapsed().as_secs_f64();
    sender.join().expect("the sender thread")?;
    Ok(rate)
}

/// A plain TCP server answering each 8-byte page number with 4 KiB: the
/// floor under any page protocol on this link.
struct RawEcho {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawEcho {
    fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let page = vec![3u8; PAGE as usize];
            let mut ask = [0u8; 8];
            while stream.read_exact(&mut ask).is_ok() {
                stream.write_all(&page)?;
            }
            Ok(())
        });
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: vec![0u8; PAGE as usize],
        })
    }

    fn ask(&self, page: u64) -> Result<(), Error> {
        let mut stream = &self.stream;
        stream.write_all(&page.to_le_bytes())?;
        let mut buffer = self.buffer.clone();
        stream.read_exact(&mut buffer)?;
        Ok(())
    }
}

/// A xorshift walk over page numbers.
struct Walk(u64);

impl Walk {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn write_pki(dir: &Path) -> Result<(), Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("cert.pem"), leaf.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(())
}

/// The resumed process: `touch(mib, stride)` grows its memory to `mib` MiB,
/// writes a byte into every `stride`th page, then spins.
const TOUCH: &str = r#"
(module
  (memory 1)
  (func (export "touch") (param $mib i32) (param $stride i32)
    (local $at i32) (local $end i32)
    local.get $mib i32.const 16 i32.mul i32.const 1 i32.sub memory.grow drop
    local.get $mib i32.const 20 i32.shl local.set $end
    loop $pages
      local.get $at i32.const 1 i32.store8
      local.get $at local.get $stride i32.const 12 i32.shl i32.add local.tee $at
      local.get $end i32.lt_u br_if $pages
    end
    loop $spin br $spin end))
"#;

const RESUMED: &str = "resumed";
const RESUMED_HEAP_MIB: i32 = 1024;

fn process_options() -> ProcessOptions {
    ProcessOptions {
        physical_heap_bytes: Some(32 << 20),
        ..ProcessOptions::default()
    }
}

/// The lease a runner takes, as the CLI takes it.
fn lease(backend: &Arc<dyn StorageBackend>) -> Result<Claim, Error> {
    let clock = Arc::new(MonotonicClock::default());
    let lease = StoreLease::acquire(
        backend.clone(),
        RESUMED,
        &runner_tag(),
        LeaseConfig::default(),
        clock.clone(),
        false,
        &mut thread::sleep,
    )?;
    Ok(Claim::Lease(LeaseKeeper::start(lease, clock)))
}

/// Starts the process in `backend`, lets it write its pages, checkpoints and
/// closes it.
fn start_touched(backend: Arc<dyn StorageBackend>, claim: Claim) -> Result<(), Error> {
    let launch = Launch::invoke(
        RESUMED,
        wat::parse_str(TOUCH)?,
        "touch",
        vec![Value::I32(RESUMED_HEAP_MIB), Value::I32(16)],
    );
    let mut process = Process::start(backend, claim, launch, &process_options())?;
    // Some ten instructions a page written, then the spin loop.
    let budget = u64::from(RESUMED_HEAP_MIB as u32) * 256 * 2;
    if process.run_for(budget)? != Outcome::Interrupted {
        return Err("the process ended".into());
    }
    process.checkpoint()?;
    process.close()?;
    Ok(())
}

/// How a runner claims the process in a store.
type ClaimFn<'a> = dyn Fn(&Arc<dyn StorageBackend>) -> Result<Claim, Error> + 'a;

/// Opens the store, takes the claim, resumes, runs one instruction and
/// closes: the time to the first instruction.
fn resume_once(
    open: &dyn Fn() -> Result<Arc<dyn StorageBackend>, Error>,
    claim: &ClaimFn<'_>,
) -> Result<Duration, Error> {
    let began = Instant::now();
    let backend = open()?;
    let claim = claim(&backend)?;
    let (mut process, _) = Process::resume(backend, claim, RESUMED, &process_options())?;
    if process.run_for(1)? != Outcome::Interrupted {
        return Err("the process ended".into());
    }
    let took = began.elapsed();
    process.close()?;
    Ok(took)
}
