//! `S3Store`: the storage seam over an `object_store::ObjectStore`.

use crate::{
    error::OutcomeUnknown,
    retry::{backoff, classify, response_status, Failure},
    RemoteError, S3Location,
};
use ferrite_pagestore::{check_key, StorageBackend, StorageError};
use futures::{StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
    ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use std::{
    fmt, io,
    ops::Range,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::runtime::Runtime;

/// Keys below this one are the store's own (the create-only probe), never
/// listed. A probe is removed right away; one is left behind only by a crash.
const PROBE_DIR: &str = ".probe";

/// Most attempts of one operation ([`S3Options::attempts_max`]).
pub const ATTEMPTS_MAX: u32 = 16;

/// How an [`S3Store`] is opened and retries. The defaults suit a store on a
/// local network or in the same region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Open for reading only: no create-only probe, and every write fails.
    pub read_only: bool,
    /// The user guarantees that one writer at a time uses the store, so a
    /// store that does not honour create-only puts may still be written (a
    /// `put_new` then checks for the object first, which is not atomic).
    pub single_writer: bool,
    /// Attempts of one operation, the first included (1 ..= 16).
    pub attempts_max: u32,
    /// The wait before the second attempt; it doubles each time (1 ms ..= 10 s).
    pub backoff_ms_first: u64,
    /// The longest wait between two attempts (`backoff_ms_first` ..= 60 s).
    pub backoff_ms_max: u64,
    /// The time one request may take, sending and answer (100 ms ..= 10 min).
    pub request_timeout_ms: u64,
    /// The time to set up a connection (100 ms ..= 60 s).
    pub connect_timeout_ms: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            read_only: false,
            single_writer: false,
            attempts_max: 5,
            backoff_ms_first: 100,
            backoff_ms_max: 5_000,
            request_timeout_ms: 60_000,
            connect_timeout_ms: 5_000,
        }
    }
}

impl S3Options {
    fn assert_bounds(&self) {
        assert!((1..=ATTEMPTS_MAX).contains(&self.attempts_max));
        assert!((1..=10_000).contains(&self.backoff_ms_first));
        assert!((self.backoff_ms_first..=60_000).contains(&self.backoff_ms_max));
        assert!((100..=600_000).contains(&self.request_timeout_ms));
        assert!((100..=60_000).contains(&self.connect_timeout_ms));
    }
}

/// A [`StorageBackend`] on S3-compatible object storage, under one key prefix
/// of one bucket.
///
/// | Operation | Requests |
/// |-----------|----------|
/// | `put_new` | a create-only `PUT` (`If-None-Match: *`); `AlreadyExists` on conflict |
/// | `put_new_deferred`, `sync` | the trait's defaults: every put is durable when it returns |
/// | `get` | `GET`, with a `Range` when asked; a range past the end reads what exists (a `HEAD` tells, when the server refuses the range) |
/// | `list` | `LIST` of the deepest directory of the prefix, filtered and sorted |
/// | `delete` | `DELETE`, which succeeds for a missing object |
///
/// Transient failures are retried (see [`S3Options`]); a `put_new` whose
/// answer was lost fails with [`StorageError::OutcomeUnknown`].
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// The key prefix, without trailing `/`; empty for the root.
    prefix: String,
    /// Where the store is, for messages.
    location: String,
    options: S3Options,
    /// Whether the storage refuses a create-only put of an existing object
    /// (the probe said so); false only with `single_writer`.
    create_only: bool,
    /// Makes probe keys unique among the stores of this process.
    nonce: AtomicU64,
    /// Runs the client; the trait's callers are synchronous and block on it.
    runtime: Runtime,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("create_only", &self.create_only)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Opens the store at `url` (`s3://BUCKET/PREFIX`), with the endpoint,
    /// region and credentials of the `AWS_*` environment variables
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...), and checks it as
    /// [`S3Store::with_store`] does.
    ///
    /// # Errors
    /// A malformed URL, a client that cannot be configured, and the errors of
    /// [`S3Store::with_store`].
    ///
    /// # Panics
    /// If an option is out of its bounds.
    pub fn open(url: &str, options: &S3Options) -> Result<Self, RemoteError> {
        Self::open_with(url, AmazonS3Builder::from_env(), options)
    }

    /// As [`S3Store::open`], with the client settings of `builder` instead of
    /// the environment's (the bucket is the URL's; timeouts and retries are
    /// set from `options`).
    ///
    /// # Errors
    /// As [`S3Store::open`].
    ///
    /// # Panics
    /// If an option is out of its bounds.
    pub fn open_with(
        url: &str,
        builder: AmazonS3Builder,
        options: &S3Options,
    ) -> Result<Self, RemoteError> {
        let location = S3Location::parse(url)?;
        options.assert_bounds();
        // Set key by key: `with_client_options` would replace what the
        // environment said (AWS_ALLOW_HTTP among others).
        let timeouts = [
            (ClientConfigKey::Timeout, options.request_timeout_ms),
            (ClientConfigKey::ConnectTimeout, options.connect_timeout_ms),
        ];
        let builder = timeouts.into_iter().fold(builder, |builder, (key, ms)| {
            builder.with_config(AmazonS3ConfigKey::Client(key), format!("{ms}ms"))
        });
        // The client's own retries stay off; see `retry`.
        let retry = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store = builder
            .with_bucket_name(&location.bucket)
            .with_retry(retry)
            .build()
            .map_err(|source| RemoteError::Config {
                location: location.to_string(),
                source,
            })?;
        Self::start(
            Arc::new(store),
            &location.prefix,
            options,
            location.to_string(),
        )
    }

    /// A store on `store` (any `ObjectStore`: S3, or one in memory for tests)
    /// below key prefix `prefix` (empty, or `/`-separated safe names).
    ///
    /// Opening lists the prefix once, so that a wrong endpoint, refused
    /// credentials or a missing bucket fail here with one clear error. Unless
    /// `read_only`, it then probes that the storage honours create-only puts:
    /// it creates a probe object, creates it again (which must fail with
    /// "already exists"), and removes it. A storage that overwrote is refused
    /// for writing unless `single_writer`.
    ///
    /// # Errors
    /// [`RemoteError::InvalidUrl`] for a bad prefix, [`RemoteError::Open`]
    /// when the storage cannot be reached or used, and
    /// [`RemoteError::NotCreateOnly`].
    ///
    /// # Panics
    /// If an option is out of its bounds, or the runtime cannot start.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        options: &S3Options,
    ) -> Result<Self, RemoteError> {
        let location = format!("{store}/{}", prefix.trim_matches('/'));
        Self::start(store, prefix, options, location)
    }

    fn start(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        options: &S3Options,
        location: String,
    ) -> Result<Self, RemoteError> {
        options.assert_bounds();
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && check_key(&prefix).is_err() {
            return Err(RemoteError::InvalidUrl {
                url: prefix,
                why: "the prefix must be '/'-separated names of [A-Za-z0-9._-]".to_string(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferrite-s3")
            .enable_all()
            .build()
            .expect("a tokio runtime starts");
        let mut opened = Self {
            location,
            store,
            prefix,
            options: options.clone(),
            create_only: true,
            nonce: AtomicU64::new(0),
            runtime,
        };
        opened.check_reachable()?;
        if !options.read_only {
            opened.create_only = opened.probe_create_only()?;
        }
        Ok(opened)
    }

    /// Whether the storage refuses to overwrite on a create-only put, as the
    /// probe found (true for a read-only store, which was not probed).
    pub fn honours_create_only(&self) -> bool {
        self.create_only
    }

    /// One listing request, to fail at open rather than at the first use.
    fn check_reachable(&self) -> Result<(), RemoteError> {
        let dir = self.path("");
        let first = self.retrying(&self.location, || {
            let dir = dir.clone();
            async move {
                self.store
                    .list(Some(&dir))
                    .take(1)
                    .try_collect::<Vec<_>>()
                    .await
            }
        });
        first.map(drop).map_err(|source| self.open_error(source))
    }

    /// Creates a probe object twice: the second must be refused. Returns
    /// whether it was, or the error that forbids writing.
    fn probe_create_only(&self) -> Result<bool, RemoteError> {
        let key = format!(
            "{PROBE_DIR}/create-only-{}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            self.nonce.fetch_add(1, Ordering::Relaxed)
        );
        let probe = b"ferrite create-only probe";
        self.put_create(&key, probe)
            .map_err(|source| self.open_error(source))?;
        let second = self.put_create(&key, probe);
        let cleanup = self.delete(&key);
        let refused = match second {
            Err(StorageError::AlreadyExists { .. }) => None,
            Ok(()) => Some("a second create-only put of the probe succeeded".to_string()),
            Err(e) if is_not_implemented(&e) => Some(format!("create-only puts fail: {e}")),
            Err(source) => return Err(self.open_error(source)),
        };
        cleanup.map_err(|source| self.open_error(source))?;
        match refused {
            None => Ok(true),
            Some(_) if self.options.single_writer => Ok(false),
            Some(detail) => Err(RemoteError::NotCreateOnly {
                location: self.location.clone(),
                detail,
            }),
        }
    }

    fn open_error(&self, source: StorageError) -> RemoteError {
        let hint = match &source {
            StorageError::NotFound { .. } => "the bucket does not exist (AWS_BUCKET, the URL)",
            StorageError::PermissionDenied { .. } => {
                "the credentials were refused (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            }
            StorageError::Unavailable { .. } | StorageError::OutcomeUnknown { .. } => {
                "the endpoint cannot be reached or fails (AWS_ENDPOINT_URL, AWS_REGION)"
            }
            _ => "the storage failed the first requests (AWS_ENDPOINT_URL, AWS_BUCKET)",
        };
        RemoteError::Open {
            location: self.location.clone(),
            hint,
            source,
        }
    }

    /// The object path of key `key` (or of the prefix itself, for "").
    fn path(&self, key: &str) -> Path {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => Path::from(key),
            (false, true) => Path::from(self.prefix.as_str()),
            (false, false) => Path::from(format!("{}/{key}", self.prefix)),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run
    /// out, waiting longer each time. For operations that may be repeated
    /// safely: reads, listings, deletions.
    fn retrying<T, F, Fut>(&self, key: &str, mut attempt: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        self.runtime.block_on(async {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match attempt().await {
                    Ok(value) => return Ok(value),
                    Err(e)
                        if classify(&e).is_transient() && attempts < self.options.attempts_max =>
                    {
                        tokio::time::sleep(self.backoff(attempts)).await;
                    }
                    Err(e) => return Err(storage_error(key, e)),
                }
            }
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            attempt,
            Duration::from_millis(self.options.backoff_ms_first),
            Duration::from_millis(self.options.backoff_ms_max),
        )
    }

    /// A create-only put of `key`, retried while that is safe to do.
    ///
    /// Once an attempt may have taken effect (`Failure::Lost`), the outcome
    /// is settled only by a later attempt that creates the object (then the
    /// lost one did not: puts are create-only). An "already exists", any
    /// other error, or running out of attempts after that is
    /// [`OutcomeUnknown`]: the object may be ours, or another writer's.
    fn put_create(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key);
        let payload = PutPayload::from(bytes.to_vec());
        let mode = if self.create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        self.runtime.block_on(async {
            let mut maybe_applied = false;
            let mut attempts = 0;
            loop {
                attempts += 1;
                let options = PutOptions::from(mode.clone());
                let Err(error) = self.store.put_opts(&path, payload.clone(), options).await else {
                    return Ok(());
                };
                let failure = classify(&error);
                // Without the create-only check, a repeated overwrite of the
                // same bytes is harmless, so a lost answer settles on retry.
                maybe_applied |= failure == Failure::Lost && self.create_only;
                if failure.is_transient() && attempts < self.options.attempts_max {
                    tokio::time::sleep(self.backoff(attempts)).await;
                    continue;
                }
                if maybe_applied || failure == Failure::Lost {
                    let unknown = OutcomeUnknown {
                        attempts,
                        last: error.to_string(),
                    };
                    return Err(StorageError::OutcomeUnknown {
                        key: key.to_string(),
                        reason: unknown.to_string(),
                    });
                }
                return Err(storage_error(key, error));
            }
        })
    }

    fn check_writable(&self, key: &str) -> Result<(), StorageError> {
        if self.options.read_only {
            return Err(StorageError::PermissionDenied {
                key: key.to_string(),
                reason: "the store was opened read-only".to_string(),
            });
        }
        Ok(())
    }

    /// The size of object `key`.
    fn size(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        self.retrying(key, || self.store.head(path))
            .map(|meta| meta.size)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let path = self.path(key);
        if range.start >= range.end {
            // No bytes to read, but a missing object is still reported.
            return self.size(key, &path).map(|_| Vec::new());
        }
        let asked = range.end - range.start;
        let read = self.retrying(key, || {
            let options = GetOptions::new().with_range(Some(GetRange::Bounded(range.clone())));
            let path = &path;
            async move { self.store.get_opts(path, options).await?.bytes().await }
        });
        match read {
            Ok(bytes) if bytes.len() as u64 <= asked => Ok(bytes.to_vec()),
            Ok(bytes) => Err(StorageError::io(
                key,
                io::Error::other(format!(
                    "asked for {asked} bytes at {}, the storage returned {}",
                    range.start,
                    bytes.len()
                )),
            )),
            Err(e) if e.is_not_found() => Err(e),
            // A range that starts at or past the end is refused by S3 (416)
            // and by object_store's own checks; the trait wants no bytes.
            Err(e) => match self.size(key, &path)? {
                size if size <= range.start => Ok(Vec::new()),
                _ => Err(e),
            },
        }
    }
}

fn is_not_implemented(error: &StorageError) -> bool {
    matches!(error, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::Unsupported)
}

/// The storage error for a failed request of `key`.
fn storage_error(key: &str, error: object_store::Error) -> StorageError {
    use object_store::Error as E;
    let key = key.to_string();
    match &error {
        E::NotFound { .. } => return StorageError::NotFound { key },
        E::AlreadyExists { .. } => return StorageError::AlreadyExists { key },
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return StorageError::PermissionDenied {
                key,
                reason: error.to_string(),
            }
        }
        E::NotImplemented { .. } | E::NotSupported { .. } => {
            return StorageError::Io {
                key,
                source: io::Error::new(io::ErrorKind::Unsupported, error),
            }
        }
        _ => {}
    }
    // A listing's errors arrive generic, with the status in the message.
    match (response_status(&error), classify(&error)) {
        (Some(404), _) => StorageError::NotFound { key },
        (Some(401 | 403), _) => StorageError::PermissionDenied {
            key,
            reason: error.to_string(),
        },
        // Not sent, or sent with no answer or a server error (5xx, 429, 408).
        (_, Failure::NotSent | Failure::Lost) => StorageError::Unavailable {
            key,
            reason: error.to_string(),
        },
        (_, Failure::Rejected) => StorageError::Io {
            key,
            source: io::Error::other(error),
        },
    }
}

impl StorageBackend for S3Store {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.check_writable(key)?;
        if !self.create_only {
            // Single writer on a storage that overwrites: check first. Not
            // atomic; the user guaranteed that nobody else writes.
            match self.size(key, &self.path(key)) {
                Ok(_) => {
                    return Err(StorageError::AlreadyExists {
                        key: key.to_string(),
                    })
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        self.put_create(key, bytes)
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        if let Some(range) = range {
            return self.get_range(key, range);
        }
        let path = self.path(key);
        let bytes = self.retrying(key, || {
            let path = &path;
            async move { self.store.get(path).await?.bytes().await }
        })?;
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // object_store lists whole path segments: list the directory that
        // holds the prefix, then keep the keys that start with it.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !dir.is_empty() {
            check_key(dir)?;
        }
        let dir_path = self.path(dir);
        let found = self.retrying(prefix, || {
            self.store
                .list(Some(&dir_path))
                .map_ok(|meta| meta.location)
                .try_collect::<Vec<Path>>()
        })?;
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let probes = format!("{PROBE_DIR}/");
        let mut keys: Vec<String> = found
            .iter()
            .filter_map(|path| {
                path.as_ref()
                    .strip_prefix(root.as_str())
                    .map(str::to_string)
            })
            .filter(|key| key.starts_with(prefix) && !key.starts_with(&probes))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.check_writable(key)?;
        let path = self.path(key);
        match self.retrying(key, || self.store.delete(&path)) {
            Err(e) if e.is_not_found() => Ok(()),
            result => result,
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
