//! `S3Store`: the storage seam over an `object_store::ObjectStore`.

use crate::{
    error::OutcomeUnknown,
    retry::{backoff, classify, response_status, Failure, StatusConnector},
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
    collections::BTreeMap,
    fmt, io,
    ops::Range,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::{runtime::Runtime, sync::Semaphore, time::Instant};

/// Keys below this one are the store's own (the create-only probe), never
/// listed. A probe is removed right away; one is left behind only by a crash.
const PROBE_DIR: &str = ".probe";

/// Most attempts of one operation ([`S3Options::attempts_max`]).
pub const ATTEMPTS_MAX: u32 = 16;

/// What a store tells its user while it rides out an outage. The library
/// never prints; a hook installed with [`S3Store::set_notice_hook`] decides
/// (the CLI prints to stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreNotice {
    /// An operation has been failing transiently for `waited` and goes on
    /// retrying (once after [`S3Options::notice_ms_first`], then every
    /// [`S3Options::notice_ms_every`]).
    Waiting {
        /// `get`, `list`, `delete`, ...
        operation: &'static str,
        key: String,
        waited: Duration,
        last_error: String,
    },
    /// An operation that was the subject of a `Waiting` notice got an
    /// answer after `after`.
    Recovered {
        operation: &'static str,
        key: String,
        after: Duration,
    },
}

impl fmt::Display for StoreNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreNotice::Waiting {
                operation,
                key,
                waited,
                last_error,
            } => write!(
                f,
                "storage unavailable for {waited:.0?} ({operation} {key}); still retrying. \
                 Last error: {last_error}"
            ),
            StoreNotice::Recovered {
                operation,
                key,
                after,
            } => write!(
                f,
                "storage answers again after {after:.0?} ({operation} {key})"
            ),
        }
    }
}

/// Receives the [`StoreNotice`]s of a store. Called from the store's
/// threads; it must not block for long.
pub type NoticeHook = Arc<dyn Fn(&StoreNotice) + Send + Sync>;

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
    /// How long reads, listings and deletions go on retrying transient
    /// failures (an outage) beyond `attempts_max`, counted from the first
    /// failure (0 ..= 24 h; 0: only `attempts_max`). Writes never wait
    /// longer than `attempts_max`: their caller retries the checkpoint.
    pub outage_wait_ms_max: u64,
    /// The most bytes of deferred puts uploading at once; `put_new_deferred`
    /// blocks while they are reached (1 MiB ..= 1 GiB).
    pub uploads_bytes_max: u64,
    /// The caller knows, from an earlier probe of the same endpoint and
    /// bucket, that the storage honours create-only puts: opening skips the
    /// probe (two `PUT`s and a `DELETE`, the larger part of an open).
    pub create_only_known: bool,
    /// How long an operation waits through an outage before the first
    /// [`StoreNotice::Waiting`] (0 ..= 1 h).
    pub notice_ms_first: u64,
    /// How often [`StoreNotice::Waiting`] repeats while it lasts (1 ms ..= 1 h).
    pub notice_ms_every: u64,
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
            outage_wait_ms_max: 15 * 60_000,
            uploads_bytes_max: 16 << 20,
            create_only_known: false,
            notice_ms_first: 3_000,
            notice_ms_every: 30_000,
        }
    }
}

impl S3Options {
    /// Checks that every option is within its bounds.
    ///
    /// # Errors
    /// [`RemoteError::InvalidOption`] naming the first that is not.
    pub fn check(&self) -> Result<(), RemoteError> {
        let bounds: [(&'static str, u64, Range<u64>); 9] = [
            (
                "attempts_max",
                self.attempts_max.into(),
                1..ATTEMPTS_MAX as u64 + 1,
            ),
            ("backoff_ms_first", self.backoff_ms_first, 1..10_001),
            (
                "backoff_ms_max",
                self.backoff_ms_max,
                self.backoff_ms_first..60_001,
            ),
            ("request_timeout_ms", self.request_timeout_ms, 100..600_001),
            ("connect_timeout_ms", self.connect_timeout_ms, 100..60_001),
            ("outage_wait_ms_max", self.outage_wait_ms_max, 0..86_400_001),
            (
                "uploads_bytes_max",
                self.uploads_bytes_max,
                (1 << 20)..(1 << 30) + 1,
            ),
            ("notice_ms_first", self.notice_ms_first, 0..3_600_001),
            ("notice_ms_every", self.notice_ms_every, 1..3_600_001),
        ];
        match bounds
            .into_iter()
            .find(|(_, value, range)| !range.contains(value))
        {
            None => Ok(()),
            Some((option, value, range)) => Err(RemoteError::InvalidOption {
                option,
                value,
                min: range.start,
                max: range.end - 1,
            }),
        }
    }
}

/// What the store's requests share, also with the uploads running in the
/// background: the client, where the store is, and how to retry.
struct Client {
    store: Arc<dyn ObjectStore>,
    /// The key prefix, without trailing `/`; empty for the root.
    prefix: String,
    options: S3Options,
    /// Whether the storage refuses a create-only put of an existing object
    /// (the probe said so); false only with `single_writer`.
    create_only: bool,
    notices: RwLock<Option<NoticeHook>>,
}

/// A wait through an outage: when it began, and which notices were given.
struct Outage<'a> {
    client: &'a Client,
    operation: &'static str,
    key: &'a str,
    /// The first failure; `None` while nothing failed.
    began: Option<Instant>,
    /// When the next `Waiting` notice is due, once one was given.
    notice_due: Option<Instant>,
}

impl<'a> Outage<'a> {
    fn new(client: &'a Client, operation: &'static str, key: &'a str) -> Self {
        Self {
            client,
            operation,
            key,
            began: None,
            notice_due: None,
        }
    }

    /// Records a transient failure; returns whether the outage may be waited
    /// out longer (beyond the bounded attempts).
    fn failed(&mut self, error: &dyn std::fmt::Display) -> bool {
        let now = Instant::now();
        let began = *self.began.get_or_insert(now);
        let waited = now - began;
        let options = &self.client.options;
        let first = Duration::from_millis(options.notice_ms_first);
        let due = self.notice_due.unwrap_or(began + first);
        if now >= due {
            self.notice_due = Some(now + Duration::from_millis(options.notice_ms_every));
            self.client.notify(&StoreNotice::Waiting {
                operation: self.operation,
                key: self.key.to_string(),
                waited,
                last_error: error.to_string(),
            });
        }
        waited < Duration::from_millis(self.client.options.outage_wait_ms_max)
    }

    /// The storage answered (success, or a definite failure).
    fn answered(&self) {
        if let (Some(began), Some(_)) = (self.began, self.notice_due) {
            self.client.notify(&StoreNotice::Recovered {
                operation: self.operation,
                key: self.key.to_string(),
                after: began.elapsed(),
            });
        }
    }
}

impl Client {
    fn notify(&self, notice: &StoreNotice) {
        let hook = self.notices.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(hook) = hook.as_ref() {
            hook(notice);
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

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            attempt,
            Duration::from_millis(self.options.backoff_ms_first),
            Duration::from_millis(self.options.backoff_ms_max),
        )
    }

    /// Runs `attempt` until it succeeds or fails for good, waiting longer
    /// each time (at most `backoff_ms_max`). A transient failure is retried
    /// while attempts remain, and then while the outage has lasted less than
    /// `outage_wait_ms_max` (telling the notice hook). For operations that
    /// may be repeated safely: reads, listings, deletions.
    async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut outage = Outage::new(self, operation, key);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => {
                    outage.answered();
                    return Ok(value);
                }
                Err(e) if !classify(&e).is_transient() => {
                    outage.answered();
                    return Err(storage_error(key, e));
                }
                Err(e) => e,
            };
            let may_wait = outage.failed(&error);
            if attempts >= self.options.attempts_max && !may_wait {
                return Err(storage_error(key, error));
            }
            tokio::time::sleep(self.backoff(attempts)).await;
        }
    }

    /// A create-only put of `key`, retried while that is safe to do, for at
    /// most `attempts_max` attempts.
    ///
    /// Once an attempt may have taken effect (`Failure::Lost`), the outcome
    /// is settled only by a later attempt that creates the object (then the
    /// lost one did not: puts are create-only). An "already exists", any
    /// other error, or running out of attempts after that is
    /// [`StorageError::OutcomeUnknown`]: the object may be ours, or another
    /// writer's.
    async fn put_create(&self, key: &str, payload: PutPayload) -> Result<(), StorageError> {
        let path = self.path(key);
        let mode = if self.create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
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
    }

    /// The upload of a deferred put: a create-only put whose unknown outcome
    /// is settled by reading the object back. Deferred objects belong to the
    /// epoch being built, which only this writer builds (a rival runner's
    /// objects fail its own puts): the object holding exactly our bytes is
    /// ours, or equal to it, and either is what the epoch needs.
    ///
    /// A transient failure is tried again while the outage has lasted less
    /// than `outage_wait_ms_max` (telling the notice hook): the upload runs in
    /// the background, and what waits for it (`sync`, a checkpoint) pauses.
    async fn upload(&self, key: &str, payload: PutPayload) -> Result<(), StorageError> {
        let mut outage = Outage::new(self, "put", key);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.upload_once(key, payload.clone()).await {
                Err(error) if error.is_transient() => {
                    if !outage.failed(&error) {
                        return Err(error);
                    }
                    tokio::time::sleep(self.backoff(attempts.min(16))).await;
                }
                result => {
                    outage.answered();
                    return result;
                }
            }
        }
    }

    async fn upload_once(&self, key: &str, payload: PutPayload) -> Result<(), StorageError> {
        let unknown = match self.put_create(key, payload.clone()).await {
            Err(e @ StorageError::OutcomeUnknown { .. }) => e,
            result => return result,
        };
        let path = self.path(key);
        let stored = self
            .retrying("get", key, || {
                let path = &path;
                async move { self.store.get(path).await?.bytes().await }
            })
            .await;
        match stored {
            Ok(bytes) if payload_equals(&payload, &bytes) => Ok(()),
            // Absent: nothing of ours landed (so far); a plain failure.
            Err(e) if e.is_not_found() => Err(StorageError::Unavailable {
                key: key.to_string(),
                reason: format!("the upload failed and the object is absent ({unknown})"),
            }),
            _ => Err(unknown),
        }
    }
}

/// Whether `payload` holds exactly `bytes`.
fn payload_equals(payload: &PutPayload, bytes: &[u8]) -> bool {
    if payload.content_length() != bytes.len() {
        return false;
    }
    let mut at = 0;
    payload.iter().all(|chunk| {
        let same = bytes.get(at..at + chunk.len()) == Some(&chunk[..]);
        at += chunk.len();
        same
    })
}

/// The bytes of `range` (or all) that `payload` has, as a ranged read of the
/// object returns them.
fn payload_range(payload: &PutPayload, range: Option<Range<u64>>) -> Vec<u8> {
    let length = payload.content_length() as u64;
    let range = range.unwrap_or(0..length);
    let (start, end) = (range.start.min(length), range.end.min(length));
    let mut out = Vec::with_capacity((end.saturating_sub(start)) as usize);
    let mut at = 0u64;
    for chunk in payload {
        let (from, to) = (at, at + chunk.len() as u64);
        let (a, b) = (start.max(from), end.min(to));
        if a < b {
            out.extend_from_slice(&chunk[(a - from) as usize..(b - from) as usize]);
        }
        at = to;
    }
    out
}

/// Where a deferred put is.
enum Upload {
    /// Its upload runs in the background.
    Running,
    /// Its upload failed; `error` is `None` once a `sync` reported it (the
    /// next `sync` naming it uploads it again).
    Failed { error: Option<StorageError> },
}

/// The deferred puts not yet known to be durable: uploading, or failed. An
/// upload that succeeds leaves the table (its object is durable); a failed
/// one stays, with its bytes, until a `sync` uploads it again or it is
/// deleted, so that it is never reported as durable.
#[derive(Default)]
struct Uploads {
    table: Mutex<BTreeMap<String, (PutPayload, Upload)>>,
    /// Signalled whenever an upload ends.
    ended: Condvar,
}

impl Uploads {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, (PutPayload, Upload)>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the upload of `key`, if running, has ended.
    fn wait<'a>(
        &'a self,
        mut table: MutexGuard<'a, BTreeMap<String, (PutPayload, Upload)>>,
        key: &str,
    ) -> MutexGuard<'a, BTreeMap<String, (PutPayload, Upload)>> {
        while matches!(table.get(key), Some((_, Upload::Running))) {
            table = self
                .ended
                .wait(table)
                .unwrap_or_else(PoisonError::into_inner);
        }
        table
    }

    fn end(&self, key: &str, result: Result<(), StorageError>) {
        let mut table = self.lock();
        match result {
            Ok(()) => {
                table.remove(key);
            }
            Err(error) => {
                if let Some((_, state)) = table.get_mut(key) {
                    *state = Upload::Failed { error: Some(error) };
                }
            }
        }
        drop(table);
        self.ended.notify_all();
    }
}

/// A [`StorageBackend`] on S3-compatible object storage, under one key prefix
/// of one bucket.
///
/// | Operation | Requests |
/// |-----------|----------|
/// | `put_new` | a create-only `PUT` (`If-None-Match: *`); `AlreadyExists` on conflict; durable when it returns |
/// | `put_new_deferred` | the same `PUT`, started in the background (at most `uploads_bytes_max` bytes at once) |
/// | `sync` | waits for the uploads of the keys named; the first failure |
/// | `get` | `GET`, with a `Range` when asked; a range past the end reads what exists (a `HEAD` tells, when the server refuses the range); an object still uploading is read from memory |
/// | `list` | `LIST` of the deepest directory of the prefix, filtered and sorted, with the deferred puts not yet uploaded |
/// | `delete` | `DELETE`, which succeeds for a missing object (after its upload, if one runs) |
///
/// Transient failures are retried (see [`S3Options`]); a `put_new` whose
/// answer was lost fails with [`StorageError::OutcomeUnknown`].
pub struct S3Store {
    client: Arc<Client>,
    /// Where the store is, for messages.
    location: String,
    uploads: Arc<Uploads>,
    /// Bytes of deferred puts that may start uploading (one permit a byte).
    upload_budget: Arc<Semaphore>,
    /// Makes probe keys unique among the stores of this process.
    nonce: AtomicU64,
    /// Runs the client and the uploads; the trait's callers are synchronous
    /// and block on it.
    runtime: Runtime,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("create_only", &self.client.create_only)
            .field("options", &self.client.options)
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
    /// A malformed URL, an option out of its bounds, a client that cannot be
    /// configured, and the errors of [`S3Store::with_store`].
    pub fn open(url: &str, options: &S3Options) -> Result<Self, RemoteError> {
        Self::open_with(url, AmazonS3Builder::from_env(), options)
    }

    /// As [`S3Store::open`], with the client settings of `builder` instead of
    /// the environment's (the bucket is the URL's; timeouts and retries are
    /// set from `options`, and the HTTP connector is the store's own, which
    /// reports failed answers with their typed status).
    ///
    /// # Errors
    /// As [`S3Store::open`].
    pub fn open_with(
        url: &str,
        builder: AmazonS3Builder,
        options: &S3Options,
    ) -> Result<Self, RemoteError> {
        let location = S3Location::parse(url)?;
        options.check()?;
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
            .with_http_connector(StatusConnector)
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
    /// for writing unless `single_writer`. Opening does not wait out an
    /// outage: it fails after `attempts_max` attempts.
    ///
    /// # Errors
    /// [`RemoteError::InvalidUrl`] for a bad prefix,
    /// [`RemoteError::InvalidOption`], [`RemoteError::Open`] when the storage
    /// cannot be reached or used, and [`RemoteError::NotCreateOnly`].
    ///
    /// # Panics
    /// If the runtime cannot start (no threads left).
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
        options.check()?;
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
        let opening = Client {
            store,
            prefix,
            // Opening fails fast: an outage is waited out only once open.
            options: S3Options {
                outage_wait_ms_max: 0,
                ..options.clone()
            },
            create_only: true,
            notices: RwLock::new(None),
        };
        let opened = Self {
            location,
            client: Arc::new(opening),
            uploads: Arc::default(),
            upload_budget: Arc::new(Semaphore::new(options.uploads_bytes_max as usize)),
            nonce: AtomicU64::new(0),
            runtime,
        };
        opened.check_reachable()?;
        let create_only =
            options.read_only || options.create_only_known || opened.probe_create_only()?;
        let Self {
            client,
            location,
            uploads,
            upload_budget,
            nonce,
            runtime,
        } = opened;
        let client = Client {
            store: client.store.clone(),
            prefix: client.prefix.clone(),
            options: options.clone(),
            create_only,
            notices: RwLock::new(None),
        };
        Ok(Self {
            client: Arc::new(client),
            location,
            uploads,
            upload_budget,
            nonce,
            runtime,
        })
    }

    /// Whether the storage refuses to overwrite on a create-only put, as the
    /// probe found (true for a read-only store, which was not probed).
    pub fn honours_create_only(&self) -> bool {
        self.client.create_only
    }

    /// Installs the hook that receives the store's notices (replacing any
    /// earlier one), or removes it.
    pub fn set_notice_hook(&self, hook: Option<NoticeHook>) {
        *self
            .client
            .notices
            .write()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// Bytes of deferred puts uploading now (for tests and statistics).
    pub fn uploads_bytes(&self) -> u64 {
        let free = self.upload_budget.available_permits() as u64;
        self.client.options.uploads_bytes_max.saturating_sub(free)
    }

    /// One listing request, to fail at open rather than at the first use.
    fn check_reachable(&self) -> Result<(), RemoteError> {
        let client = &self.client;
        let dir = client.path("");
        let first = self
            .runtime
            .block_on(client.retrying("list", &self.location, || {
                let dir = dir.clone();
                async move {
                    client
                        .store
                        .list(Some(&dir))
                        .take(1)
                        .try_collect::<Vec<_>>()
                        .await
                }
            }));
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
        let probe = PutPayload::from_static(b"ferrite create-only probe");
        let client = &self.client;
        self.runtime
            .block_on(client.put_create(&key, probe.clone()))
            .map_err(|source| self.open_error(source))?;
        let second = self.runtime.block_on(client.put_create(&key, probe));
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
            Some(_) if client.options.single_writer => Ok(false),
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

    fn check_writable(&self, key: &str) -> Result<(), StorageError> {
        if self.client.options.read_only {
            return Err(StorageError::PermissionDenied {
                key: key.to_string(),
                reason: "the store was opened read-only".to_string(),
            });
        }
        Ok(())
    }

    /// The size of object `key`.
    fn head_size(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let client = &self.client;
        self.runtime
            .block_on(client.retrying("head", key, || client.store.head(path)))
            .map(|meta| meta.size)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let client = &self.client;
        let path = client.path(key);
        if range.start >= range.end {
            // No bytes to read, but a missing object is still reported.
            return self.head_size(key, &path).map(|_| Vec::new());
        }
        let asked = range.end - range.start;
        let read = self.runtime.block_on(client.retrying("get", key, || {
            let options = GetOptions::new().with_range(Some(GetRange::Bounded(range.clone())));
            let path = &path;
            async move { client.store.get_opts(path, options).await?.bytes().await }
        }));
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
            Err(e) => match self.head_size(key, &path)? {
                size if size <= range.start => Ok(Vec::new()),
                _ => Err(e),
            },
        }
    }

    /// Starts the upload of a deferred put whose entry is in the table,
    /// once its bytes fit in the budget.
    fn start_upload(&self, key: &str, payload: PutPayload) -> Result<(), StorageError> {
        let bytes_max = self.client.options.uploads_bytes_max as usize;
        let permits = payload.content_length().min(bytes_max) as u32;
        let budget = self.upload_budget.clone();
        let permit = self
            .runtime
            .block_on(budget.acquire_many_owned(permits))
            .map_err(|closed| StorageError::Unavailable {
                key: key.to_string(),
                reason: closed.to_string(),
            });
        let permit = match permit {
            Ok(permit) => permit,
            Err(error) => {
                self.uploads
                    .end(key, Err(StorageError::Poisoned(error.to_string())));
                return Err(error);
            }
        };
        let (client, uploads, key) = (self.client.clone(), self.uploads.clone(), key.to_string());
        self.runtime.spawn(async move {
            let result = client.upload(&key, payload).await;
            drop(permit);
            uploads.end(&key, result);
        });
        Ok(())
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
    // A listing's failed answers arrive generic, with their typed status.
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
        if self.uploads.lock().contains_key(key) {
            // A deferred put of this store, not yet known to be durable.
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let client = &self.client;
        if !client.create_only {
            // Single writer on a storage that overwrites: check first. Not
            // atomic; the user guaranteed that nobody else writes.
            match self.head_size(key, &client.path(key)) {
                Ok(_) => {
                    return Err(StorageError::AlreadyExists {
                        key: key.to_string(),
                    })
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime.block_on(client.put_create(key, payload))
    }

    /// Starts a create-only upload of `bytes` in the background and returns;
    /// blocks while `uploads_bytes_max` bytes are uploading. Until `sync`
    /// names it, the object is read from memory and listed.
    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.check_writable(key)?;
        if !self.client.create_only {
            // The existence check of a single writer is not made in the
            // background: such a store writes at once.
            return self.put_new(key, bytes);
        }
        let payload = PutPayload::from(bytes.to_vec());
        {
            let mut table = self.uploads.lock();
            if table.contains_key(key) {
                return Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            table.insert(key.to_string(), (payload.clone(), Upload::Running));
        }
        self.start_upload(key, payload)
    }

    /// Waits for the uploads of `keys`. An upload that failed is reported
    /// by the first `sync` naming it, and uploaded again by the next one;
    /// until one succeeds, no `sync` naming it succeeds. Keys never put
    /// deferred by this store (or already durable) need nothing.
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        let mut again = Vec::new();
        {
            let mut table = self.uploads.lock();
            for key in keys {
                if let Some((payload, state)) = table.get_mut(key) {
                    if matches!(state, Upload::Failed { error: None }) {
                        *state = Upload::Running;
                        again.push((key, payload.clone()));
                    }
                }
            }
        }
        let mut first = None;
        for (key, payload) in again {
            if let Err(e) = self.start_upload(key, payload) {
                first.get_or_insert(e);
            }
        }
        let mut table = self.uploads.lock();
        for key in keys {
            table = self.uploads.wait(table, key);
            if let Some((_, Upload::Failed { error })) = table.get_mut(key) {
                let reported = StorageError::Unavailable {
                    key: key.clone(),
                    reason: "its upload failed, as reported before".to_string(),
                };
                first.get_or_insert(error.take().unwrap_or(reported));
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        if let Some((payload, _)) = self.uploads.lock().get(key) {
            return Ok(payload_range(payload, range));
        }
        if let Some(range) = range {
            return self.get_range(key, range);
        }
        let client = &self.client;
        let path = client.path(key);
        let bytes = self.runtime.block_on(client.retrying("get", key, || {
            let path = &path;
            async move { client.store.get(path).await?.bytes().await }
        }))?;
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // object_store lists whole path segments: list the directory that
        // holds the prefix, then keep the keys that start with it.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !dir.is_empty() {
            check_key(dir)?;
        }
        // Before the listing: an upload that ends after this is in the
        // table, one that ended before is in the listing.
        let pending: Vec<String> = self
            .uploads
            .lock()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        let client = &self.client;
        let dir_path = client.path(dir);
        let found = self.runtime.block_on(client.retrying("list", prefix, || {
            client
                .store
                .list(Some(&dir_path))
                .map_ok(|meta| meta.location)
                .try_collect::<Vec<Path>>()
        }))?;
        let root = if client.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", client.prefix)
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
            .chain(pending)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.check_writable(key)?;
        {
            // An upload still running could land after the deletion.
            let table = self.uploads.lock();
            let mut table = self.uploads.wait(table, key);
            table.remove(key);
        }
        let client = &self.client;
        let path = client.path(key);
        let deleted = self
            .runtime
            .block_on(client.retrying("delete", key, || client.store.delete(&path)));
        match deleted {
            Err(e) if e.is_not_found() => Ok(()),
            result => result,
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        check_key(key)?;
        match self.head_size(key, &self.client.path(key)) {
            Ok(size) => Ok(Some(size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
