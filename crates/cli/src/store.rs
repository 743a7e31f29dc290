//! Opening the store named by `--store`: a local directory, S3-compatible
//! object storage (`s3://BUCKET/PREFIX`), or a heap server
//! (`ferrite://HOST:PORT/TENANT`), sealed with a key or not, and the
//! runner's claim on a process (the local run lock, or a lease held in the
//! store).

use crate::store_path::{store_root, StoreDir};
use clap::Args;
use ferrite_ckpt::{
    Claim, LeaseConfig, LeaseError, LeaseKeeper, LockError, MonotonicClock, ProcessLock, StoreLease,
};
use ferrite_net::client::{
    ClientError, ClientOptions, NetStatsHandle, ServerStore, SCHEME, SCHEME_INSECURE,
};
use ferrite_pagestore::{LocalStore, SealKey, SealedStore, StorageBackend, StorageError};
use ferrite_remote::{
    default_cache_dir, CacheStatsHandle, CachedStore, NoticeHook, S3Options, S3Store, StoreNotice,
    CACHE_BYTES_DEFAULT,
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// The store options shared by the subcommands.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreOption {
    /// The store: a directory, or `s3://BUCKET/PREFIX` for S3-compatible
    /// object storage (endpoint, region and credentials from the usual
    /// `AWS_*` variables: `AWS_ENDPOINT_URL` for a store other than AWS)
    /// [default: `$FERRITE_STORE`, else `$XDG_DATA_HOME/ferrite`, else
    /// `~/.local/share/ferrite`].
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<PathBuf>,

    /// Encrypt and authenticate everything written to the store with the key
    /// in FILE (32 bytes, or 64 hex characters); a store written with a key
    /// is read only with it. The key may also come from `$FERRITE_KEY` (hex).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// For object storage that does not refuse to overwrite on a
    /// create-only write: the user guarantees that one runner at a time uses
    /// the store (Ferrite cannot fence two runners on such storage).
    #[arg(long)]
    pub single_writer: bool,

    /// How long a runner's lease on a process in object storage lasts
    /// without renewal: after a crash, another runner takes over after
    /// this long. Renewed every third of it.
    #[arg(long, value_name = "DURATION", value_parser = crate::persist::parse_duration, default_value = "10s")]
    pub lease: Duration,

    /// For object storage: the most bytes of pages kept in the local cache
    /// (`0` turns it off) [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_cache_size)]
    pub cache_size: Option<u64>,

    /// For object storage: where the local cache lives [default:
    /// `$XDG_CACHE_HOME/ferrite`, else `~/.cache/ferrite`]. Safe to delete at
    /// any moment.
    #[arg(long, value_name = "PATH")]
    pub cache_dir: Option<PathBuf>,

    /// For a heap server (`ferrite://HOST:PORT/TENANT`): the file holding
    /// the tenant's token [default: `$FERRITE_TOKEN`].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// For a heap server: the CA certificate (PEM) that signed the server's
    /// certificate [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// A cache size: `0` (no cache), or a size as `--physical-heap` takes it.
fn parse_cache_size(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    crate::persist::parse_size(text)
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Local(PathBuf),
    S3(String),
    /// A heap server: `ferrite://HOST:PORT/TENANT` (or `ferrite+insecure://`).
    Server(String),
}

impl Location {
    /// The store `option` names, else `$FERRITE_STORE`, else the default
    /// directory.
    pub(crate) fn of(option: &StoreOption) -> Result<Self, String> {
        let path = store_root(option.store.as_deref())?;
        match path.to_str() {
            Some(url) if url.starts_with("s3://") => Ok(Location::S3(url.to_string())),
            Some(url) if url.starts_with(SCHEME) || url.starts_with(SCHEME_INSECURE) => {
                Ok(Location::Server(url.to_string()))
            }
            _ => Ok(Location::Local(path)),
        }
    }

    /// How messages name the store.
    pub(crate) fn display(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::S3(url) | Location::Server(url) => url.clone(),
        }
    }

    /// The local directory, for a local store.
    pub(crate) fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::S3(_) | Location::Server(_) => None,
        }
    }
}

/// The key to seal the store with, if the user gave one.
fn seal_key(option: &StoreOption) -> Result<Option<SealKey>, String> {
    if let Some(path) = &option.key_file {
        return SealKey::from_file(path)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    match std::env::var_os("FERRITE_KEY") {
        Some(value) if !value.is_empty() => SealKey::from_env("FERRITE_KEY")
            .map(Some)
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// Wraps `backend` in the seal of `key`, if any.
fn sealed(
    backend: Arc<dyn StorageBackend>,
    key: Option<&SealKey>,
    location: &Location,
) -> Result<Arc<dyn StorageBackend>, String> {
    match key {
        None => Ok(backend),
        Some(key) => SealedStore::open(backend, key)
            .map(|store| Arc::new(store) as Arc<dyn StorageBackend>)
            .map_err(|e| format!("cannot open store {}: {e}", location.display())),
    }
}

/// How long a probe that found the storage honouring create-only puts is
/// taken at its word: opens within it skip the probe.
const PROBE_REMEMBERED: Duration = Duration::from_hours(24);

/// The file, in the cache directory, that remembers a successful create-only
/// probe of the storage at the endpoint and bucket of `url`.
fn probe_marker(url: &str, option: &StoreOption) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = option.cache_dir.clone().or_else(default_cache_dir)?;
    let bucket = url.trim_start_matches("s3://").split('/').next()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (endpoint, bucket).hash(&mut hasher);
    Some(dir.join("probed").join(format!("{:016x}", hasher.finish())))
}

fn open_s3(url: &str, option: &StoreOption, read_only: bool) -> Result<S3Store, String> {
    let marker = probe_marker(url, option);
    let remembered = marker.as_ref().is_some_and(|marker| {
        std::fs::metadata(marker)
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < PROBE_REMEMBERED))
    });
    let options = S3Options {
        read_only,
        single_writer: option.single_writer,
        create_only_known: remembered,
        ..S3Options::default()
    };
    let store = S3Store::open(url, &options).map_err(|e| e.to_string())?;
    if !remembered && !read_only && !option.single_writer && store.honours_create_only() {
        // Best effort: without it the next open probes again.
        if let Some(marker) = marker {
            let _ = marker
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| std::fs::write(&marker, b"honours create-only puts\n"));
        }
    }
    store.set_notice_hook(Some(outage_printer()));
    Ok(store)
}

/// A notice hook for a remote store: a fault, upload or listing that waits
/// out an outage says so on stderr, one line every ten seconds of an outage
/// whatever the number of requests, and one when it ends.
fn outage_printer() -> NoticeHook {
    let printed: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    Arc::new(move |notice: &StoreNotice| {
        let mut printed = printed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match notice {
            StoreNotice::Waiting {
                operation,
                key,
                waited,
                last_error,
            } => {
                if printed.is_some_and(|at| at.elapsed() < Duration::from_secs(10)) {
                    return;
                }
                *printed = Some(std::time::Instant::now());
                eprintln!(
                    "ferrite: the store does not answer ({operation} {key}, {:.0} s so far: \
                     {last_error}); waiting",
                    waited.as_secs_f64()
                );
            }
            StoreNotice::Recovered { after, .. } if printed.take().is_some() => {
                eprintln!(
                    "ferrite: the store answers again after {:.1} s; going on",
                    after.as_secs_f64()
                );
            }
            _ => {}
        }
    })
}

/// Connects to the heap server at `url` with the tenant's token (from
/// `--token-file`, else `$FERRITE_TOKEN`).
fn open_server(url: &str, option: &StoreOption) -> Result<ServerStore, String> {
    let token = match &option.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
            .trim()
            .to_string(),
        None => std::env::var("FERRITE_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        return Err(format!(
            "{url} is a heap server: give the tenant's token with --token-file FILE or \
             $FERRITE_TOKEN"
        ));
    }
    let options = ClientOptions {
        token,
        ca_cert: option.ca_cert.clone(),
        client_tag: ferrite_ckpt::runner_tag(),
        ..ClientOptions::default()
    };
    let store = ServerStore::open(url, &options).map_err(|error| match error {
        ClientError::Refused(StorageError::PermissionDenied { reason, .. }) => reason,
        other => format!("cannot open store {url}: {other}"),
    })?;
    store.set_notice_hook(Some(outage_printer()));
    Ok(store)
}

/// The local cache in front of the remote store at `url`, as the options say.
fn cached(
    backend: Arc<dyn StorageBackend>,
    url: &str,
    option: &StoreOption,
) -> (Arc<dyn StorageBackend>, Option<CacheStatsHandle>) {
    let bytes = option.cache_size.unwrap_or(CACHE_BYTES_DEFAULT);
    let dir = option.cache_dir.clone().or_else(default_cache_dir);
    match dir {
        Some(dir) if bytes > 0 => {
            let cache = CachedStore::open(backend, dir, url, bytes);
            let stats = cache.stats_handle();
            (Arc::new(cache), Some(stats))
        }
        _ => (backend, None),
    }
}

/// A store opened by a runner: its backend (sealed if a key was given),
/// where it is, and the statistics of its local cache.
pub(crate) struct Opened {
    pub(crate) backend: Arc<dyn StorageBackend>,
    pub(crate) location: Location,
    pub(crate) cache: Option<CacheStatsHandle>,
    /// The heap server client's counters, if the store is a heap server.
    pub(crate) net: Option<NetStatsHandle>,
}

/// Opens the store for a runner, creating a local one if needed.
pub(crate) fn open_for_runner(option: &StoreOption) -> Result<Opened, String> {
    let location = Location::of(option)?;
    let key = seal_key(option)?;
    let mut net = None;
    let (raw, cache): (Arc<dyn StorageBackend>, _) = match &location {
        Location::Local(root) => (
            Arc::new(
                LocalStore::open(root)
                    .map_err(|e| format!("cannot open store {}: {e}", root.display()))?,
            ),
            None,
        ),
        // The cache holds what the store holds: ciphertext, with a key.
        Location::S3(url) => cached(Arc::new(open_s3(url, option, false)?), url, option),
        Location::Server(url) => {
            let server = open_server(url, option)?;
            net = Some(server.stats_handle());
            cached(Arc::new(server), url, option)
        }
    };
    let backend = sealed(raw, key.as_ref(), &location)?;
    Ok(Opened {
        backend,
        location,
        cache,
        net,
    })
}

/// Opens the store for inspection: nothing is created or written (`rm`
/// deletes through it). `None` for a local store directory that does not
/// exist (a store without processes).
pub(crate) fn open_for_reading(option: &StoreOption) -> Result<Option<Opened>, String> {
    let location = Location::of(option)?;
    let key = seal_key(option)?;
    let raw: Arc<dyn StorageBackend> = match &location {
        Location::Local(root) => match StoreDir::open(root)? {
            Some(dir) => Arc::new(dir),
            None => return Ok(None),
        },
        Location::S3(url) => Arc::new(open_s3(url, option, false)?),
        Location::Server(url) => Arc::new(open_server(url, option)?),
    };
    let backend = sealed(raw, key.as_ref(), &location)?;
    Ok(Some(Opened {
        backend,
        location,
        cache: None,
        net: None,
    }))
}

/// Takes the runner's claim on process `name`: the local run lock, or the
/// store-held lease (waiting, with a note on stderr, while a lease that is no
/// longer renewed runs out; refused at once if it is renewed).
pub(crate) fn claim(
    opened: &Opened,
    option: &StoreOption,
    name: &str,
    tag: &str,
) -> Result<Claim, String> {
    match &opened.location {
        Location::Local(root) => lock(root, name).map(Claim::Local),
        Location::S3(_) | Location::Server(_) => {
            let clock = Arc::new(MonotonicClock::default());
            let config = lease_config(option);
            let mut noted = false;
            let lease = StoreLease::acquire(
                opened.backend.clone(),
                name,
                tag,
                config,
                clock.clone(),
                false,
                &mut |poll| {
                    if !noted {
                        noted = true;
                        eprintln!(
                            "ferrite: waiting for the lease of {name} to run out (its runner \
                             stopped renewing it; at most {})",
                            humantime::format_duration(option.lease)
                        );
                    }
                    std::thread::sleep(poll);
                },
            )
            .map_err(|error| match error {
                LeaseError::Held { holder, .. } => format!(
                    "process {name} is already running (lease held by {holder}); \
                     a process runs in one place at a time"
                ),
                other => other.to_string(),
            })?;
            Ok(Claim::Lease(LeaseKeeper::start(lease, clock)))
        }
    }
}

/// The lease configuration the options give.
pub(crate) fn lease_config(option: &StoreOption) -> LeaseConfig {
    LeaseConfig {
        duration: option.lease,
        ..LeaseConfig::default()
    }
}

/// Takes the run lock of `name`, with the message users see when it is held.
pub(crate) fn lock(root: &Path, name: &str) -> Result<ProcessLock, String> {
    ProcessLock::acquire(root, name).map_err(|error| match error {
        LockError::Held { pid, .. } => {
            let pid = pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
            format!("process {name} is already running{pid}; a process runs in one place at a time")
        }
        other => other.to_string(),
    })
}

/// Where the journal that rolls back the files of process `name` lives: on
/// the machine that has the files. Beside a local store's objects; for object
/// storage, under the user's data directory, per bucket and prefix.
pub(crate) fn journal_dir(location: &Location, name: &str) -> Result<PathBuf, String> {
    match location {
        Location::Local(root) => Ok(root.join("journals").join(name)),
        Location::S3(url) | Location::Server(url) => {
            // The default local store directory's parent data directory, never
            // a remote value of `$FERRITE_STORE`.
            let data = match Location::of(&StoreOption::default())? {
                Location::Local(dir) => dir,
                Location::S3(_) | Location::Server(_) => std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".local/share/ferrite"))
                    .ok_or("cannot find a data directory for the file journal")?,
            };
            let (kind, rest) = match url.strip_prefix("s3://") {
                Some(rest) => ("s3", rest),
                None => (
                    "srv",
                    url.split_once("://").map_or(url.as_str(), |(_, rest)| rest),
                ),
            };
            let safe: String = rest
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Ok(data
                .join("journals")
                .join(format!("{kind}-{safe}"))
                .join(name))
        }
    }
}
