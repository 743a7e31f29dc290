//! The heap server: tenants' objects behind the protocol of [`crate::wire`].
//!
//! One tokio runtime accepts connections and runs each as a reader loop (in
//! order: frames, rate limit, chunked uploads) that hands requests to tasks,
//! at most `inflight_max` of them per connection, and a writer task that
//! sends demand answers before prefetch answers and pushes. Storage calls
//! are synchronous and run on the blocking pool, at most `storage_calls_max`
//! at once.

mod conn;
mod tenant;

use crate::{counters::Counters, tokens::TokenTable, wire::CounterSnapshot};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tenant::Tenants;
use tokio::{net::TcpListener, runtime::Runtime, sync::watch, task::JoinSet};

/// Where the server keeps the tenants' objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    /// `DIR/tenants/<tenant>/`, a crash-safe `LocalStore` each.
    Dir(PathBuf),
    /// `s3://BUCKET/PREFIX`: an `S3Store` at `s3://BUCKET/PREFIX/<tenant>` each.
    S3(String),
}

impl DataLocation {
    /// `s3://...` is object storage, anything else a directory.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("s3://") {
            DataLocation::S3(text.trim_end_matches('/').to_string())
        } else {
            DataLocation::Dir(PathBuf::from(text))
        }
    }
}

/// The server's bounds. Every one is checked by [`ServerLimits::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest frame (64 KiB ..= 256 MiB).
    pub frame_bytes_max: u32,
    /// Largest object (1 ..= 256 MiB... and at least a frame's payload).
    pub object_bytes_max: u64,
    /// Bytes a tenant may keep (`--tenant-space`).
    pub tenant_bytes_max: u64,
    /// Connections in all (1 ..= 65536).
    pub connections_max: u32,
    /// Connections per tenant (1 ..= `connections_max`).
    pub tenant_connections_max: u32,
    /// Requests worked on at once per connection (1 ..= 1024).
    pub inflight_max: u32,
    /// Requests per second per tenant, refilled continuously (1 ..= 10^7).
    pub tenant_requests_per_s: u32,
    /// Requests a tenant may send at once above its rate (1 ..= 10^7).
    pub tenant_requests_burst: u32,
    /// Requests refused for the rate in a row before the connection is
    /// dropped (1 ..= 10^6).
    pub flood_strikes_max: u32,
    /// Time to finish TLS and the handshake (100 ms ..= 60 s).
    pub handshake_ms_max: u64,
    /// Time to finish a frame once its first byte came (100 ms ..= 10 min).
    pub frame_ms_max: u64,
    /// Time without any frame before a connection is closed (1 s ..= 1 h).
    pub idle_ms_max: u64,
    /// Storage calls running at once, all tenants (1 ..= 1024).
    pub storage_calls_max: u32,
    /// Bytes of chunked uploads held in memory, all connections
    /// (at least one largest object).
    pub uploads_bytes_max: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            frame_bytes_max: crate::wire::FRAME_BYTES_MAX_DEFAULT,
            object_bytes_max: crate::wire::OBJECT_BYTES_MAX,
            tenant_bytes_max: 64 << 30,
            connections_max: 1024,
            tenant_connections_max: 64,
            inflight_max: 64,
            tenant_requests_per_s: 50_000,
            tenant_requests_burst: 100_000,
            flood_strikes_max: 1_000,
            handshake_ms_max: 10_000,
            frame_ms_max: 30_000,
            idle_ms_max: 120_000,
            storage_calls_max: 32,
            uploads_bytes_max: 1 << 30,
        }
    }
}

impl ServerLimits {
    /// Checks every bound.
    ///
    /// # Errors
    /// The first limit out of its bounds.
    pub fn check(&self) -> Result<(), String> {
        use crate::wire::{FRAME_BYTES_MAX_MAX, FRAME_BYTES_MAX_MIN, OBJECT_BYTES_MAX};
        let bounds: [(&str, u64, u64, u64); 14] = [
            (
                "frame_bytes_max",
                self.frame_bytes_max.into(),
                FRAME_BYTES_MAX_MIN.into(),
                FRAME_BYTES_MAX_MAX.into(),
            ),
            (
                "object_bytes_max",
                self.object_bytes_max,
                1,
                OBJECT_BYTES_MAX,
            ),
            ("tenant_bytes_max", self.tenant_bytes_max, 1, u64::MAX),
            ("connections_max", self.connections_max.into(), 1, 65_536),
            (
                "tenant_connections_max",
                self.tenant_connections_max.into(),
                1,
                self.connections_max.into(),
            ),
            ("inflight_max", self.inflight_max.into(), 1, 1024),
            (
                "tenant_requests_per_s",
                self.tenant_requests_per_s.into(),
                1,
                10_000_000,
            ),
            (
                "tenant_requests_burst",
                self.tenant_requests_burst.into(),
                1,
                10_000_000,
            ),
            (
                "flood_strikes_max",
                self.flood_strikes_max.into(),
                1,
                1_000_000,
            ),
            ("handshake_ms_max", self.handshake_ms_max, 100, 60_000),
            ("frame_ms_max", self.frame_ms_max, 100, 600_000),
            ("idle_ms_max", self.idle_ms_max, 1_000, 3_600_000),
            ("storage_calls_max", self.storage_calls_max.into(), 1, 1024),
            (
                "uploads_bytes_max",
                self.uploads_bytes_max,
                self.object_bytes_max,
                u64::MAX,
            ),
        ];
        match bounds.iter().find(|(_, v, min, max)| v < min || v > max) {
            None => Ok(()),
            Some((name, value, min, max)) => Err(format!(
                "server limit {name} = {value} is out of its bounds {min} ..= {max}"
            )),
        }
    }
}

/// Everything a server is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data: DataLocation,
    pub tokens: TokenTable,
    /// TLS 1.3; `None` is plain TCP, allowed on loopback addresses only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: ServerLimits,
    /// Print the counters to stderr this often (and at shutdown); `None`: never.
    pub report_every: Option<Duration>,
    /// Log each refusal and drop to stderr (one line each).
    pub log: bool,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing plain TCP (--insecure) on {0}: it is allowed on loopback addresses only; give --tls-cert and --tls-key")]
    InsecureNotLoopback(SocketAddr),
    #[error("no tenants: the tokens file lists none")]
    NoTenants,
    #[error("{0}")]
    Limits(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the connections share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: ServerLimits,
    pub(crate) tokens: TokenTable,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) tenants: Tenants,
    pub(crate) counters: Counters,
    pub(crate) storage_calls: tokio::sync::Semaphore,
    pub(crate) uploads_bytes: AtomicU64,
    pub(crate) next_connection: AtomicU64,
    pub(crate) instance: u64,
    pub(crate) boot: u64,
    pub(crate) log: bool,
}

impl Shared {
    /// Logs one refusal or drop, and counts it.
    pub(crate) fn refuse(
        &self,
        peer: SocketAddr,
        tenant: Option<&str>,
        reason: &'static str,
        detail: &str,
    ) {
        self.counters.refusal(reason);
        if self.log {
            eprintln!(
                "ferrite serve: {} refused peer={peer} tenant={} reason={reason}: {detail}",
                utc_now_text(),
                tenant.unwrap_or("-"),
            );
        }
    }
}

/// A running server. Dropping it stops it abruptly (as a crash would, but
/// for the operating system's view of the files); [`ServerHandle::stop`]
/// stops it in order.
#[derive(Debug)]
pub struct ServerHandle {
    runtime: Option<Runtime>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: Option<tokio::task::JoinHandle<()>>,
    report_every: Option<Duration>,
}

impl ServerHandle {
    /// Binds, and starts serving on a runtime of its own.
    ///
    /// # Errors
    /// [`ServeError`]: plain TCP off loopback, bad limits, no tenants, the
    /// address taken, the data directory not creatable.
    pub fn start(config: ServerConfig) -> Result<Self, ServeError> {
        if config.tls.is_none() && !config.listen.ip().is_loopback() {
            return Err(ServeError::InsecureNotLoopback(config.listen));
        }
        config.limits.check().map_err(ServeError::Limits)?;
        if config.tokens.is_empty() {
            return Err(ServeError::NoTenants);
        }
        if let DataLocation::Dir(dir) = &config.data {
            let tenants = dir.join("tenants");
            std::fs::create_dir_all(&tenants).map_err(|source| ServeError::DataDir {
                path: tenants,
                source,
            })?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(config.limits.storage_calls_max as usize + 4)
            .thread_name("ferrite-serve")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = runtime
            .block_on(TcpListener::bind(config.listen))
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            storage_calls: tokio::sync::Semaphore::new(config.limits.storage_calls_max as usize),
            tenants: Tenants::new(config.data.clone(), config.limits.clone()),
            limits: config.limits,
            tokens: config.tokens,
            tls: config.tls,
            counters: Counters::default(),
            uploads_bytes: AtomicU64::new(0),
            next_connection: AtomicU64::new(1),
            instance: random_u64(),
            boot: machine_boot(),
            log: config.log,
        });
        let (shutdown, stopping) = watch::channel(false);
        let accept = runtime.spawn(accept_loop(listener, shared.clone(), stopping));
        if let Some(every) = config.report_every {
            let shared = shared.clone();
            let mut stopping = shutdown.subscribe();
            runtime.spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stopping.changed() => return,
                    }
                    eprintln!(
                        "ferrite serve: {} counters: {}",
                        utc_now_text(),
                        shared.counters.snapshot()
                    );
                }
            });
        }
        Ok(Self {
            runtime: Some(runtime),
            shared,
            addr,
            shutdown,
            accept: Some(accept),
            report_every: config.report_every,
        })
    }

    /// The address it listens on (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether counters are printed (periodically and by [`Self::stop`]).
    pub fn report_every_is_set(&self) -> bool {
        self.report_every.is_some()
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Blocks until SIGTERM or SIGINT.
    pub fn wait_for_signal(&self) {
        let Some(runtime) = &self.runtime else { return };
        runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async {
                    match term.as_mut() {
                        Some(term) => { term.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        });
    }

    /// Stops accepting, lets every connection finish the requests it is
    /// working on (at most the frame limit), closes them, and returns the
    /// final counters (printed if reports are on).
    pub fn stop(mut self) -> CounterSnapshot {
        let _ = self.shutdown.send(true);
        if let (Some(runtime), Some(accept)) = (self.runtime.take(), self.accept.take()) {
            let _ = runtime.block_on(accept);
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        let counters = self.shared.counters.snapshot();
        if self.report_every.is_some() {
            eprintln!(
                "ferrite serve: {} final counters: {counters}",
                utc_now_text()
            );
        }
        counters
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Accepts until shutdown, then waits for the connections to end.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.changed() => break,
        };
        // Reap the ended ones so the set stays as large as what is open.
        while connections.try_join_next().is_some() {}
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors, or a connection reset before accept: wait
            // a little rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = shared.counters.connections_open.load(Ordering::Relaxed);
        if open >= u64::from(shared.limits.connections_max) {
            shared.refuse(
                peer,
                None,
                "too_many_connections",
                "server connection limit reached",
            );
            drop(stream);
            continue;
        }
        connections.spawn(conn::serve(shared.clone(), stream, peer, stopping.clone()));
    }
    drop(listener);
    let grace = Duration::from_millis(shared.limits.frame_ms_max.min(10_000));
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// A random number for the server instance, from the OS's hasher seeds.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The boot of this machine: the kernel's boot id folded to 64 bits (a
/// random number where there is none, which makes every restart look like a
/// reboot: safe, only slower).
fn machine_boot() -> u64 {
    match std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(text) => {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(text.trim().as_bytes());
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        }
        Err(_) => random_u64(),
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn utc_now_text() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        now.subsec_millis()
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard
/// Hinnant's algorithm, which counts eras of 400 years from 0000-03-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn limits_are_checked() {
        assert!(ServerLimits::default().check().is_ok());
        let small = ServerLimits {
            frame_bytes_max: 100,
            ..ServerLimits::default()
        };
        assert!(small.check().is_err_and(|e| e.contains("frame_bytes_max")));
    }
}
