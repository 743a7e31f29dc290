//! `ServerStore`: the storage seam over one connection to a heap server.
//!
//! The store owns a small tokio runtime. A supervisor task keeps one
//! connection open (reconnecting with backoff when it breaks, subscribing
//! again); each connection has a writer task (requests, pings) and a reader
//! task (answers to waiting callers, `Created` notices, pushed bytes).
//! Callers are synchronous: a call registers a oneshot under a fresh request
//! id, queues its frame, and blocks on the oneshot.

mod push;

use crate::{
    tls,
    wire::{
        self, encode, Class, Frame, Hello, Limits, Reply, Request, Welcome,
        HANDSHAKE_FRAME_BYTES_MAX, HELLO_MAGIC, ITEMS_MAX, PROTOCOL_VERSION,
    },
};
use ferrite_pagestore::{Notify, StorageBackend, StorageError};
use ferrite_remote::{NoticeHook, StoreNotice};
use push::PushBuffer;
use rustls::pki_types::ServerName;
use std::{
    collections::HashMap,
    fmt,
    ops::Range,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter},
    net::TcpStream,
    runtime::Runtime,
    sync::{mpsc, oneshot},
};

/// The scheme of a heap server over TLS 1.3.
pub const SCHEME: &str = "ferrite://";
/// The scheme of a heap server over plain TCP (a server started with
/// `--insecure`, on loopback): for development only.
pub const SCHEME_INSECURE: &str = "ferrite+insecure://";
/// Bytes of pushed data kept by default.
pub const PUSH_BYTES_DEFAULT: u64 = 256 << 20;

/// How a [`ServerStore`] connects and rides out outages.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The tenant's token (the CLI reads `$FERRITE_TOKEN` or `--token-file`).
    pub token: String,
    /// The CA certificate (PEM) that signed the server's certificate; else
    /// the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Plain TCP, as `ferrite+insecure://` says too.
    pub insecure: bool,
    /// Names this client in the server's log.
    pub client_tag: String,
    /// How long operations wait for an unreachable server before they fail
    /// with `Unavailable` (0 ..= 24 h).
    pub outage_wait_ms_max: u64,
    /// Time to connect and finish the handshake (100 ms ..= 60 s).
    pub connect_timeout_ms: u64,
    /// A ping is sent this often; a connection silent for three times as
    /// long is taken for dead (100 ms ..= 10 min).
    pub ping_every_ms: u64,
    /// The first wait between reconnections; doubles (1 ms ..= 10 s).
    pub backoff_ms_first: u64,
    /// The longest wait between reconnections (`backoff_ms_first` ..= 60 s).
    pub backoff_ms_max: u64,
    /// First [`StoreNotice::Waiting`] after this long (0 ..= 1 h).
    pub notice_ms_first: u64,
    /// Then every this long (1 ms ..= 1 h).
    pub notice_ms_every: u64,
    /// Pushed bytes kept for `get` (0 ..= 4 GiB; 0: pushes are not asked for).
    pub push_bytes_max: u64,
    /// How long a `get` waits for a push under way that covers it (0 ..= 60 s).
    pub push_wait_ms_max: u64,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &"<hidden>")
            .field("ca_cert", &self.ca_cert)
            .field("insecure", &self.insecure)
            .field("client_tag", &self.client_tag)
            .field("outage_wait_ms_max", &self.outage_wait_ms_max)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            token: String::new(),
            ca_cert: None,
            insecure: false,
            client_tag: format!("pid-{}", std::process::id()),
            outage_wait_ms_max: 15 * 60_000,
            connect_timeout_ms: 5_000,
            ping_every_ms: 5_000,
            backoff_ms_first: 50,
            backoff_ms_max: 2_000,
            notice_ms_first: 3_000,
            notice_ms_every: 30_000,
            push_bytes_max: PUSH_BYTES_DEFAULT,
            push_wait_ms_max: 2_000,
        }
    }
}

impl ClientOptions {
    /// Checks every option against its bounds.
    ///
    /// # Errors
    /// The first out of bounds.
    pub fn check(&self) -> Result<(), String> {
        let bounds: [(&str, u64, u64, u64); 9] = [
            ("outage_wait_ms_max", self.outage_wait_ms_max, 0, 86_400_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 100, 60_000),
            ("ping_every_ms", self.ping_every_ms, 100, 600_000),
            ("backoff_ms_first", self.backoff_ms_first, 1, 10_000),
            (
                "backoff_ms_max",
                self.backoff_ms_max,
                self.backoff_ms_first,
                60_000,
            ),
            ("notice_ms_first", self.notice_ms_first, 0, 3_600_000),
            ("notice_ms_every", self.notice_ms_every, 1, 3_600_000),
            ("push_bytes_max", self.push_bytes_max, 0, 4 << 30),
            ("push_wait_ms_max", self.push_wait_ms_max, 0, 60_000),
        ];
        match bounds.iter().find(|(_, v, min, max)| v < min || v > max) {
            None => Ok(()),
            Some((name, value, min, max)) => Err(format!(
                "client option {name} = {value} is out of its bounds {min} ..= {max}"
            )),
        }
    }
}

/// Why a [`ServerStore`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid heap server URL {url:?}: {why} (expected ferrite://HOST:PORT/TENANT or ferrite+insecure://HOST:PORT/TENANT)")]
    InvalidUrl { url: String, why: String },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
    /// The server refused the tenant or token, or speaks another version.
    #[error(transparent)]
    Refused(StorageError),
    #[error("cannot reach the heap server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Where the server is: host, port, tenant, and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
    pub tenant: String,
    pub insecure: bool,
}

impl ServerUrl {
    /// Parses `ferrite://HOST:PORT/TENANT` (or `ferrite+insecure://...`).
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] saying what is wrong.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |why: &str| ClientError::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let (rest, insecure) = if let Some(rest) = url.strip_prefix(SCHEME) {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix(SCHEME_INSECURE) {
            (rest, true)
        } else {
            return Err(invalid("unknown scheme"));
        };
        let (authority, tenant) = rest.split_once('/').ok_or_else(|| invalid("no tenant"))?;
        let tenant = tenant.trim_end_matches('/');
        if !wire::is_tenant_name(tenant) {
            return Err(invalid("the tenant is not 1 to 64 of [A-Za-z0-9._-]"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = port.parse().map_err(|_| invalid("bad port"))?;
        Ok(Self {
            host: host.to_string(),
            port,
            tenant: tenant.to_string(),
            insecure,
        })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.insecure {
            SCHEME_INSECURE
        } else {
            SCHEME
        };
        if self.host.contains(':') {
            write!(f, "{scheme}[{}]:{}/{}", self.host, self.port, self.tenant)
        } else {
            write!(f, "{scheme}{}:{}/{}", self.host, self.port, self.tenant)
        }
    }
}

/// What a store fetched, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Gets answered by the server on demand, and their bytes.
    pub demand_gets: u64,
    pub demand_bytes: u64,
    /// Gets answered from pushed bytes, and their bytes.
    pub pushed_gets: u64,
    pub pushed_bytes_used: u64,
    /// Bytes that arrived pushed (used or not).
    pub pushed_bytes_received: u64,
    /// `Push` requests sent.
    pub pushes: u64,
    /// Connections made after the first.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct StatsCounters {
    demand_gets: AtomicU64,
    demand_bytes: AtomicU64,
    pushed_gets: AtomicU64,
    pushed_bytes_used: AtomicU64,
    pushed_bytes_received: AtomicU64,
    pushes: AtomicU64,
    reconnects: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a store's [`NetStats`] after the store was moved into a stack.
#[derive(Debug, Clone)]
pub struct NetStatsHandle(Arc<StatsCounters>);

impl NetStatsHandle {
    pub fn get(&self) -> NetStats {
        let c = &self.0;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            demand_gets: load(&c.demand_gets),
            demand_bytes: load(&c.demand_bytes),
            pushed_gets: load(&c.pushed_gets),
            pushed_bytes_used: load(&c.pushed_bytes_used),
            pushed_bytes_received: load(&c.pushed_bytes_received),
            pushes: load(&c.pushes),
            reconnects: load(&c.reconnects),
        }
    }
}

/// What a caller waits for.
enum Waiter {
    Caller(oneshot::Sender<Frame>),
    /// A push: its answer ends it in the push buffer.
    Push,
}

/// One connection, as the callers see it.
struct Conn {
    limits: Limits,
    boot: u64,
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// `None` once the connection is dead: nothing more is registered.
    waiters: Mutex<Option<HashMap<u64, Waiter>>>,
}

/// Why a request got no answer.
enum Lost {
    /// The connection was gone before the request was queued.
    NotSent,
    /// Queued (maybe sent, maybe applied), and then the connection broke.
    Sent,
}

impl Conn {
    fn waiters(&self) -> MutexGuard<'_, Option<HashMap<u64, Waiter>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a request and blocks for its answer.
    fn call(&self, link: &Link, request: &Request, payload: &[u8]) -> Result<Frame, Lost> {
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiters = self.waiters();
            let Some(waiters) = waiters.as_mut() else {
                return Err(Lost::NotSent);
            };
            waiters.insert(id, Waiter::Caller(sender));
        }
        if self.out.send(encode(id, request, payload)).is_err() {
            if let Some(waiters) = self.waiters().as_mut() {
                waiters.remove(&id);
            }
            return Err(Lost::NotSent);
        }
        receiver.blocking_recv().map_err(|_| Lost::Sent)
    }

    /// Queues a request whose answer nobody waits for (appends, pings).
    fn send(&self, link: &Link, request: &Request, payload: &[u8]) -> bool {
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        self.out.send(encode(id, request, payload)).is_ok()
    }

    /// Marks the connection dead: every waiting caller is woken (lost).
    fn kill(&self) {
        self.waiters().take();
    }
}

/// The connection as the supervisor last left it.
#[derive(Clone)]
enum LinkState {
    /// No connection yet, or it broke; `attempts` failed since.
    Down {
        last_error: String,
        attempts: u64,
    },
    Up(Arc<Conn>),
    /// Refused for good (token, tenant, version): every call fails so.
    Refused {
        permission: bool,
        message: String,
    },
}

/// What the store's callers and tasks share.
struct Link {
    url: ServerUrl,
    options: ClientOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    state: Mutex<LinkState>,
    changed: Condvar,
    next_id: AtomicU64,
    subscriptions: Mutex<Vec<(String, Notify)>>,
    push: PushBuffer,
    stats: Arc<StatsCounters>,
    notices: RwLock<Option<NoticeHook>>,
    /// Deferred puts not yet synced, with the server boot that took them.
    deferred: Mutex<HashMap<String, u64>>,
}

impl Link {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_state(&self, state: LinkState) {
        *self.state() = state;
        self.changed.notify_all();
    }

    fn notify(&self, notice: &StoreNotice) {
        let hook = self.notices.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(hook) = hook.as_ref() {
            hook(notice);
        }
    }

    /// The connection, waiting up to `wait` while there is none.
    fn connection(&self, wait: Duration) -> Result<Arc<Conn>, LinkState> {
        let deadline = Instant::now() + wait;
        let mut state = self.state();
        loop {
            match &*state {
                LinkState::Up(conn) => return Ok(conn.clone()),
                LinkState::Refused { .. } => return Err(state.clone()),
                LinkState::Down { .. } => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(state.clone());
                    }
                    state = self
                        .changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    fn subscribers(&self) -> Vec<(String, Notify)> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A wait through an outage (as `S3Store`'s): when it began and which
/// notices were given.
struct Outage<'a> {
    link: &'a Link,
    operation: &'static str,
    key: &'a str,
    began: Option<Instant>,
    notice_due: Option<Instant>,
}

impl<'a> Outage<'a> {
    fn new(link: &'a Link, operation: &'static str, key: &'a str) -> Self {
        Self {
            link,
            operation,
            key,
            began: None,
            notice_due: None,
        }
    }

    /// Records a failure; the time left to wait, or `None` when the outage
    /// has lasted `outage_wait_ms_max`.
    fn failed(&mut self, error: &str) -> Option<Duration> {
        let now = Instant::now();
        let began = *self.began.get_or_insert(now);
        let options = &self.link.options;
        let due = self
            .notice_due
            .unwrap_or(began + Duration::from_millis(options.notice_ms_first));
        if now >= due {
            self.notice_due = Some(now + Duration::from_millis(options.notice_ms_every));
            self.link.notify(&StoreNotice::Waiting {
                operation: self.operation,
                key: self.key.to_string(),
                waited: now - began,
                last_error: error.to_string(),
            });
        }
        let max = Duration::from_millis(options.outage_wait_ms_max);
        max.checked_sub(now - began).filter(|left| !left.is_zero())
    }

    fn answered(&self) {
        if let (Some(began), Some(_)) = (self.began, self.notice_due) {
            self.link.notify(&StoreNotice::Recovered {
                operation: self.operation,
                key: self.key.to_string(),
                after: began.elapsed(),
            });
        }
    }

    /// The error once the outage was waited out.
    #[cold]
    fn unavailable(&self, last: &str) -> StorageError {
        StorageError::Unavailable {
            key: self.key.to_string(),
            reason: format!(
                "the heap server at {} did not answer for {:.0?}: {last}",
                self.link.url,
                self.began.map(|b| b.elapsed()).unwrap_or_default()
            ),
        }
    }
}

/// Whether a request may be sent again after its answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, listings, sizes, deletions, syncs: always.
    Always,
    /// Create-only puts: only if it was never sent.
    UnlessSent,
}

/// A [`StorageBackend`] on a heap server (`ferrite://HOST:PORT/TENANT`).
///
/// - Reads, listings, sizes, deletions and syncs are retried across
///   reconnections; while the server cannot be reached every operation waits
///   up to [`ClientOptions::outage_wait_ms_max`] (telling the notice hook),
///   then fails with [`StorageError::Unavailable`].
/// - A create-only put whose answer was lost fails with
///   [`StorageError::OutcomeUnknown`] (the caller reads back); a deferred
///   put settles it itself by reading the object back, as `S3Store` does.
/// - A refused token or tenant fails every operation at once with
///   [`StorageError::PermissionDenied`].
pub struct ServerStore {
    link: Arc<Link>,
    runtime: Option<Runtime>,
}

impl fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStore")
            .field("url", &self.link.url.to_string())
            .finish_non_exhaustive()
    }
}

impl Drop for ServerStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ServerStore {
    /// Connects to `url` and completes the handshake.
    ///
    /// # Errors
    /// [`ClientError`]: a bad URL or option, a CA file that cannot be read,
    /// a refusal (token, tenant, version), the server not reachable within
    /// `connect_timeout_ms`.
    pub fn open(url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        options.check().map_err(ClientError::Options)?;
        let mut url = ServerUrl::parse(url)?;
        url.insecure |= options.insecure;
        let tls = if url.insecure {
            None
        } else {
            Some(tls::client_config(options.ca_cert.as_deref())?)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferrite-net")
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let link = Arc::new(Link {
            url,
            tls,
            state: Mutex::new(LinkState::Down {
                last_error: "not connected yet".into(),
                attempts: 0,
            }),
            changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            subscriptions: Mutex::new(Vec::new()),
            push: PushBuffer::new(options.push_bytes_max),
            stats: Arc::new(StatsCounters::default()),
            notices: RwLock::new(None),
            deferred: Mutex::new(HashMap::new()),
            options: options.clone(),
        });
        runtime.spawn(supervise(link.clone()));
        let store = Self {
            link,
            runtime: Some(runtime),
        };
        store.first_connection()?;
        Ok(store)
    }

    /// Waits for the first connection attempt to end.
    fn first_connection(&self) -> Result<(), ClientError> {
        let link = &self.link;
        let deadline =
            Instant::now() + Duration::from_millis(link.options.connect_timeout_ms * 2 + 1000);
        let mut state = link.state();
        loop {
            match &*state {
                LinkState::Up(_) => return Ok(()),
                LinkState::Refused {
                    permission,
                    message,
                } => {
                    return Err(ClientError::Refused(refusal(*permission, message)));
                }
                LinkState::Down {
                    last_error,
                    attempts,
                } if *attempts > 0 || Instant::now() >= deadline => {
                    return Err(ClientError::Unreachable {
                        url: link.url.to_string(),
                        reason: last_error.clone(),
                    });
                }
                LinkState::Down { .. } => {
                    state = link
                        .changed
                        .wait_timeout(state, Duration::from_millis(50))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Installs (or with `None` removes) the hook told of outages.
    pub fn set_notice_hook(&self, hook: Option<NoticeHook>) {
        *self
            .link
            .notices
            .write()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }

    pub fn url(&self) -> &ServerUrl {
        &self.link.url
    }

    pub fn stats(&self) -> NetStats {
        self.stats_handle().get()
    }

    pub fn stats_handle(&self) -> NetStatsHandle {
        NetStatsHandle(self.link.stats.clone())
    }

    /// The server's counters.
    ///
    /// # Errors
    /// As any read.
    pub fn server_counters(&self) -> Result<wire::CounterSnapshot, StorageError> {
        match self.call("counters", "", &Request::Counters, &[], Retry::Always)? {
            (Reply::Counters(counters), _) => Ok(counters),
            (other, _) => Err(unexpected("", &other)),
        }
    }

    /// The limits of the current connection (waiting for one).
    fn limits(&self, operation: &'static str, key: &str) -> Result<Limits, StorageError> {
        let mut outage = Outage::new(&self.link, operation, key);
        let conn = self.connection(&mut outage)?;
        outage.answered();
        Ok(conn.limits)
    }

    /// The connection, waiting through an outage (telling the hook) as long
    /// as the options allow; fails at once after a refusal.
    fn connection(&self, outage: &mut Outage<'_>) -> Result<Arc<Conn>, StorageError> {
        let mut wait = Duration::ZERO;
        loop {
            match self.link.connection(wait) {
                Ok(conn) => return Ok(conn),
                Err(LinkState::Refused {
                    permission,
                    message,
                }) => {
                    return Err(refusal(permission, &message));
                }
                Err(LinkState::Down { last_error, .. }) => {
                    if outage.failed(&last_error).is_none() {
                        return Err(outage.unavailable(&last_error));
                    }
                }
                Err(LinkState::Up(_)) => {}
            }
            wait = Duration::from_millis(100);
        }
    }

    /// Sends `request` until it is answered, as `retry` allows; returns the
    /// answer (a failure reply is an error).
    fn call(
        &self,
        operation: &'static str,
        key: &str,
        request: &Request,
        payload: &[u8],
        retry: Retry,
    ) -> Result<(Reply, Frame), StorageError> {
        let mut outage = Outage::new(&self.link, operation, key);
        let mut attempt = 0u32;
        loop {
            let conn = self.connection(&mut outage)?;
            let lost = match conn.call(&self.link, request, payload) {
                Ok(frame) => {
                    let reply: Reply = frame.header().map_err(|e| protocol_error(key, &e))?;
                    match reply {
                        // The server did nothing (a limit, its storage out
                        // of reach): wait and send again, whatever it was.
                        Reply::Failed(error) if error.code == wire::ErrorCode::Unavailable => {
                            let message = error.message.clone();
                            if outage.failed(&message).is_none() {
                                return Err(error.into_storage());
                            }
                            attempt += 1;
                            std::thread::sleep(self.backoff(attempt));
                            continue;
                        }
                        Reply::Failed(error) => {
                            outage.answered();
                            return Err(error.into_storage());
                        }
                        reply => {
                            outage.answered();
                            return Ok((reply, frame));
                        }
                    }
                }
                Err(lost) => lost,
            };
            if matches!(lost, Lost::Sent) && retry == Retry::UnlessSent {
                return Err(StorageError::OutcomeUnknown {
                    key: key.to_string(),
                    reason: format!(
                        "the connection to {} broke before the answer came",
                        self.link.url
                    ),
                });
            }
            if outage.failed("the connection broke").is_none() {
                return Err(outage.unavailable("the connection broke"));
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(&self.link.options, attempt)
    }

    /// A create-only put of `bytes`: one frame, or chunks for a large object.
    fn put(&self, key: &str, bytes: &[u8], deferred: bool) -> Result<(), StorageError> {
        wire::check_wire_key(key, false)?;
        let limits = self.limits("put", key)?;
        if bytes.len() as u64 > limits.object_bytes_max {
            return Err(StorageError::Io {
                key: key.to_string(),
                source: std::io::Error::other(format!(
                    "object of {} bytes is over the server's maximum of {}",
                    bytes.len(),
                    limits.object_bytes_max
                )),
            });
        }
        if bytes.len() as u64 <= u64::from(limits.payload_bytes_max()) {
            let request = Request::PutNew {
                key: key.to_string(),
                deferred,
            };
            self.call("put", key, &request, bytes, Retry::UnlessSent)
                .map(|_| ())
        } else {
            self.put_chunked(key, bytes, deferred)
        }
    }

    /// A put in chunks: begin, appends (not answered unless they fail),
    /// finish. Begun again from the start if the connection changes before
    /// the finish was sent (nothing was created); an answer to the finish
    /// that was lost is an unknown outcome.
    fn put_chunked(&self, key: &str, bytes: &[u8], deferred: bool) -> Result<(), StorageError> {
        let mut outage = Outage::new(&self.link, "put", key);
        loop {
            let conn = self.connection(&mut outage)?;
            let begin = Request::PutBegin {
                key: key.to_string(),
                deferred,
                bytes_total: bytes.len() as u64,
            };
            let Ok(frame) = conn.call(&self.link, &begin, &[]) else {
                if outage.failed("the connection broke").is_none() {
                    return Err(outage.unavailable("the connection broke"));
                }
                continue;
            };
            // The upload is named by the id of its `PutBegin`.
            let upload = frame.id;
            match frame
                .header::<Reply>()
                .map_err(|e| protocol_error(key, &e))?
            {
                Reply::Done => {}
                Reply::Failed(error) => return Err(error.into_storage()),
                other => return Err(unexpected(key, &other)),
            }
            let chunk = conn.limits.payload_bytes_max() as usize;
            let sent = bytes.chunks(chunk).enumerate().all(|(index, piece)| {
                let offset = (index * chunk) as u64;
                conn.send(&self.link, &Request::PutAppend { upload, offset }, piece)
            });
            if !sent {
                if outage.failed("the connection broke").is_none() {
                    return Err(outage.unavailable("the connection broke"));
                }
                continue;
            }
            return match conn.call(&self.link, &Request::PutFinish { upload }, &[]) {
                Ok(frame) => match frame
                    .header::<Reply>()
                    .map_err(|e| protocol_error(key, &e))?
                {
                    Reply::Done => Ok(()),
                    Reply::Failed(error) => Err(error.into_storage()),
                    other => Err(unexpected(key, &other)),
                },
                Err(Lost::NotSent) => continue,
                Err(Lost::Sent) => Err(StorageError::OutcomeUnknown {
                    key: key.to_string(),
                    reason: format!(
                        "the connection to {} broke before the answer came",
                        self.link.url
                    ),
                }),
            };
        }
    }

    /// A deferred put whose answer was lost is settled by reading the
    /// object back: the epoch's objects are this writer's alone (see
    /// `docs/s3.md`), so one holding exactly our bytes is ours.
    fn put_deferred_settled(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        for _ in 0..3 {
            match self.put(key, bytes, true) {
                Err(StorageError::OutcomeUnknown { reason, .. }) => match self.get(key, None) {
                    Ok(stored) if stored == bytes => return Ok(()),
                    Ok(_) => {
                        return Err(StorageError::OutcomeUnknown {
                            key: key.to_string(),
                            reason: format!("{reason}; the object holds other bytes"),
                        })
                    }
                    Err(StorageError::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                },
                other => return other,
            }
        }
        Err(StorageError::OutcomeUnknown {
            key: key.to_string(),
            reason: "three connections broke during the put".into(),
        })
    }

    /// Reads `range` (at most a frame's payload) of `key` from the server.
    fn get_once(
        &self,
        key: &str,
        range: Range<u64>,
        class: Class,
    ) -> Result<Vec<u8>, StorageError> {
        let request = Request::Get {
            key: key.to_string(),
            range: Some((range.start, range.end)),
            class,
        };
        match self.call("get", key, &request, &[], Retry::Always)? {
            (Reply::Bytes, frame) => {
                let bytes = frame.into_payload();
                if bytes.len() as u64 > range.end.saturating_sub(range.start) {
                    return Err(protocol_error(key, &"more bytes than asked for"));
                }
                Ok(bytes)
            }
            (other, _) => Err(unexpected(key, &other)),
        }
    }

    /// Reads `range` (or all) of `key` in pieces of a frame's payload.
    fn get_demand(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let piece = u64::from(self.limits("get", key)?.payload_bytes_max());
        let (start, end) = range.map_or((0, u64::MAX), |r| (r.start, r.end));
        if start >= end {
            // Nothing to read, but a missing object is still reported.
            return self.get_once(key, start..start, Class::Demand);
        }
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let upto = end.min(at.saturating_add(piece));
            let bytes = self.get_once(key, at..upto, Class::Demand)?;
            let short = (bytes.len() as u64) < upto - at;
            at += bytes.len() as u64;
            if out.is_empty() {
                out = bytes;
            } else {
                out.extend_from_slice(&bytes);
            }
            if short {
                break;
            }
        }
        bump(&self.link.stats.demand_gets, 1);
        bump(&self.link.stats.demand_bytes, out.len() as u64);
        Ok(out)
    }

    /// Gets several ranges with one request (each at most what fits in one
    /// answer together). An item's failure is its own.
    ///
    /// # Errors
    /// A failure of the whole request.
    pub fn get_batch(
        &self,
        items: &[(String, Option<Range<u64>>)],
    ) -> Result<Vec<Result<Vec<u8>, StorageError>>, StorageError> {
        if items.len() > ITEMS_MAX {
            return Err(StorageError::InvalidKey(format!(
                "a batch of more than {ITEMS_MAX} items"
            )));
        }
        let request = Request::GetBatch {
            items: items
                .iter()
                .map(|(key, range)| (key.clone(), range.as_ref().map(|r| (r.start, r.end))))
                .collect(),
            class: Class::Demand,
        };
        let (reply, frame) = self.call("get", "", &request, &[], Retry::Always)?;
        let Reply::Batch { parts } = reply else {
            return Err(unexpected("", &reply));
        };
        let payload = frame.payload();
        let mut at = 0usize;
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Ok(length) => {
                    let end = at + length as usize;
                    let bytes = payload
                        .get(at..end)
                        .ok_or_else(|| protocol_error("", &"batch parts overrun the payload"))?;
                    out.push(Ok(bytes.to_vec()));
                    at = end;
                }
                Err(error) => out.push(Err(error.into_storage())),
            }
        }
        bump(&self.link.stats.demand_gets, out.len() as u64);
        bump(&self.link.stats.demand_bytes, at as u64);
        Ok(out)
    }

    /// Bytes of pushed data held now.
    pub fn pushed_bytes_held(&self) -> u64 {
        self.link.push.bytes()
    }
}

impl StorageBackend for ServerStore {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.put(key, bytes, false)
    }

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.put_deferred_settled(key, bytes)?;
        if let Ok(conn) = self.link.connection(Duration::ZERO) {
            self.link
                .deferred
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_string(), conn.boot);
        }
        Ok(())
    }

    /// Fails if the server's machine restarted since one of `keys` was
    /// put: its bytes may not have reached the disk (a restart of the
    /// server process alone keeps them in the page cache).
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        for chunk in keys.chunks(ITEMS_MAX) {
            let request = Request::Sync {
                keys: chunk.to_vec(),
            };
            self.call(
                "sync",
                chunk.first().map_or("", String::as_str),
                &request,
                &[],
                Retry::Always,
            )?;
            let boot = self
                .link
                .connection(Duration::ZERO)
                .map(|conn| conn.boot)
                .ok();
            let mut deferred = self
                .link
                .deferred
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for key in chunk {
                match (deferred.remove(key), boot) {
                    (Some(then), Some(now)) if then != now => {
                        return Err(StorageError::Io {
                            key: key.clone(),
                            source: std::io::Error::other(
                                "the heap server's machine restarted after this deferred \
                                 object was written and before it was synced: it may be lost",
                            ),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        if let Some(range) = &range {
            let wait = Duration::from_millis(self.link.options.push_wait_ms_max);
            if let Some(bytes) = self.link.push.take(key, range, wait) {
                bump(&self.link.stats.pushed_gets, 1);
                bump(&self.link.stats.pushed_bytes_used, bytes.len() as u64);
                return Ok(bytes);
            }
        }
        self.get_demand(key, range)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let request = Request::List {
            prefix: prefix.to_string(),
        };
        match self.call("list", prefix, &request, &[], Retry::Always)? {
            (Reply::Keys { keys }, _) => {
                if !keys.windows(2).all(|w| w[0] < w[1])
                    || !keys.iter().all(|k| k.starts_with(prefix))
                {
                    return Err(protocol_error(
                        prefix,
                        &"a listing not sorted or not under its prefix",
                    ));
                }
                Ok(keys)
            }
            (other, _) => Err(unexpected(prefix, &other)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let request = Request::Delete {
            key: key.to_string(),
        };
        self.call("delete", key, &request, &[], Retry::Always)
            .map(|_| ())
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let request = Request::Size {
            key: key.to_string(),
        };
        match self.call("size", key, &request, &[], Retry::Always)? {
            (Reply::Size { bytes }, _) => Ok(bytes),
            (other, _) => Err(unexpected(key, &other)),
        }
    }

    /// Subscribes on the server; the subscription is made again on every
    /// new connection, and `notify("")` then says that notices may have
    /// been missed. `notify` runs on the store's reader task: it must not
    /// block, nor call the store.
    fn subscribe(&self, prefix: &str, notify: Notify) -> Result<bool, StorageError> {
        wire::check_wire_key(prefix, true)?;
        self.link
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((prefix.to_string(), notify));
        let request = Request::Subscribe {
            prefix: prefix.to_string(),
        };
        self.call("subscribe", prefix, &request, &[], Retry::Always)?;
        Ok(true)
    }

    /// Asks the server to push these ranges; returns at once. The bytes land
    /// in the push buffer, which `get` reads first.
    fn prefetch(&self, ranges: &[(String, Range<u64>)]) {
        if self.link.options.push_bytes_max == 0 {
            return;
        }
        let Ok(conn) = self.link.connection(Duration::ZERO) else {
            return;
        };
        let wanted: Vec<(String, Range<u64>)> = ranges
            .iter()
            .filter(|(key, range)| {
                range.start < range.end && wire::check_wire_key(key, false).is_ok()
            })
            .cloned()
            .collect();
        for batch in wanted.chunks(ITEMS_MAX) {
            let id = self.link.next_id.fetch_add(1, Ordering::Relaxed);
            {
                let mut waiters = conn.waiters();
                let Some(waiters) = waiters.as_mut() else {
                    return;
                };
                waiters.insert(id, Waiter::Push);
            }
            self.link.push.expect(id, batch.to_vec());
            let request = Request::Push {
                items: batch
                    .iter()
                    .map(|(key, range)| (key.clone(), (range.start, range.end)))
                    .collect(),
            };
            if conn.out.send(encode(id, &request, &[])).is_err() {
                self.link.push.end(id);
                return;
            }
            bump(&self.link.stats.pushes, 1);
        }
    }
}

#[cold]
fn refusal(permission: bool, message: &str) -> StorageError {
    if permission {
        StorageError::PermissionDenied {
            key: String::new(),
            reason: message.to_string(),
        }
    } else {
        StorageError::Io {
            key: String::new(),
            source: std::io::Error::other(message.to_string()),
        }
    }
}

#[cold]
fn protocol_error(key: &str, error: &dyn fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_string(),
        source: std::io::Error::other(format!("heap server protocol error: {error}")),
    }
}

#[cold]
fn unexpected(key: &str, reply: &Reply) -> StorageError {
    protocol_error(key, &format!("unexpected answer {reply:?}"))
}

fn backoff(options: &ClientOptions, attempt: u32) -> Duration {
    let first = Duration::from_millis(options.backoff_ms_first);
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_millis(options.backoff_ms_max))
}

/// A stream the client speaks over: TLS or plain TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How a connection attempt failed.
enum ConnectError {
    /// Try again later.
    Transient(String),
    /// Never again: `permission` for a refused tenant or token.
    Refused { permission: bool, message: String },
}

/// Keeps a connection open for the store's lifetime.
async fn supervise(link: Arc<Link>) {
    let mut attempts = 0u64;
    let mut connections = 0u64;
    loop {
        match connect(&link).await {
            Ok((stream, welcome)) => {
                attempts = 0;
                connections += 1;
                if connections > 1 {
                    bump(&link.stats.reconnects, 1);
                }
                run_connection(&link, stream, welcome, connections > 1).await;
                link.set_state(LinkState::Down {
                    last_error: "the connection broke".into(),
                    attempts: 0,
                });
            }
            Err(ConnectError::Refused {
                permission,
                message,
            }) => {
                link.set_state(LinkState::Refused {
                    permission,
                    message,
                });
                return;
            }
            Err(ConnectError::Transient(error)) => {
                attempts += 1;
                link.set_state(LinkState::Down {
                    last_error: error,
                    attempts,
                });
                let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
                tokio::time::sleep(backoff(&link.options, attempt)).await;
            }
        }
    }
}

/// Connects and completes the handshake.
async fn connect(link: &Link) -> Result<(Box<dyn Stream>, (Limits, u64)), ConnectError> {
    let timeout = Duration::from_millis(link.options.connect_timeout_ms);
    let transient =
        |what: &str, e: &dyn fmt::Display| ConnectError::Transient(format!("{what}: {e}"));
    let url = &link.url;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|e| transient("connect", &e))?
        .map_err(|e| transient("connect", &e))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Stream> = match &link.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name =
                ServerName::try_from(url.host.clone()).map_err(|e| ConnectError::Refused {
                    permission: false,
                    message: format!("{} is not a server name: {e}", url.host),
                })?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                .await
                .map_err(|e| transient("TLS", &e))?
                .map_err(|e| transient("TLS", &e))?;
            Box::new(tls)
        }
    };
    let hello = Hello {
        magic: HELLO_MAGIC,
        version: PROTOCOL_VERSION,
        tenant: url.tenant.clone(),
        token: link.options.token.clone(),
        client_tag: link.options.client_tag.clone(),
    };
    wire::write_frame(&mut stream, &encode(0, &hello, &[]))
        .await
        .map_err(|e| transient("handshake", &e))?;
    let frame = wire::read_frame(&mut stream, HANDSHAKE_FRAME_BYTES_MAX, timeout, timeout)
        .await
        .map_err(|e| transient("handshake", &e))?;
    let welcome: Welcome = frame.header().map_err(|e| transient("handshake", &e))?;
    match welcome {
        Welcome::Accepted {
            version,
            limits,
            boot,
            ..
        } => {
            if version != PROTOCOL_VERSION {
                return Err(ConnectError::Refused {
                    permission: false,
                    message: format!("the heap server at {url} answered with protocol version {version}, this client speaks {PROTOCOL_VERSION}"),
                });
            }
            limits.check().map_err(|e| ConnectError::Refused {
                permission: false,
                message: format!("the heap server at {url} announced bad limits: {e}"),
            })?;
            Ok((stream, (limits, boot)))
        }
        Welcome::Refused { code, reason } if code.is_transient() => {
            Err(ConnectError::Transient(format!("refused: {reason}")))
        }
        Welcome::Refused { code, reason } => Err(ConnectError::Refused {
            permission: code == wire::RefusalCode::Unauthorized,
            message: format!(
                "the heap server at {url} refused tenant {}: {reason}",
                url.tenant
            ),
        }),
    }
}

/// Runs one connection until it breaks: publishes it, subscribes again,
/// and moves frames both ways.
async fn run_connection(
    link: &Arc<Link>,
    stream: Box<dyn Stream>,
    (limits, boot): (Limits, u64),
    again: bool,
) {
    let (reader, writer) = tokio::io::split(stream);
    let (out, queue) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        limits,
        boot,
        out,
        waiters: Mutex::new(Some(HashMap::new())),
    });
    for (prefix, _) in link.subscribers() {
        conn.send(link, &Request::Subscribe { prefix }, &[]);
    }
    link.set_state(LinkState::Up(conn.clone()));
    if again {
        // Keys may have been created while there was no connection.
        for (_, notify) in link.subscribers() {
            notify("");
        }
    }
    let ping = Duration::from_millis(link.options.ping_every_ms);
    let writing = tokio::spawn(write_loop(writer, queue, conn.clone(), link.clone(), ping));
    read_loop(link, &conn, reader, ping * 3, limits.frame_bytes_max).await;
    conn.kill();
    link.push.end_all();
    writing.abort();
}

async fn write_loop(
    writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    conn: Arc<Conn>,
    link: Arc<Link>,
    ping: Duration,
) {
    let mut writer = BufWriter::with_capacity(64 << 10, writer);
    let mut ticks = tokio::time::interval(ping);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            frame = queue.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
            _ = ticks.tick() => {
                let id = link.next_id.fetch_add(1, Ordering::Relaxed);
                encode(id, &Request::Ping, &[])
            }
        };
        if writer.write_all(&frame).await.is_err() {
            conn.kill();
            return;
        }
        while let Ok(frame) = queue.try_recv() {
            if writer.write_all(&frame).await.is_err() {
                conn.kill();
                return;
            }
        }
        if writer.flush().await.is_err() {
            conn.kill();
            return;
        }
    }
}

/// Routes each frame from the server until the connection ends or is silent
/// for `dead_after`.
async fn read_loop(
    link: &Link,
    conn: &Conn,
    mut reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    dead_after: Duration,
    frame_max: u32,
) {
    loop {
        let Ok(frame) = wire::read_frame(&mut reader, frame_max, dead_after, dead_after).await
        else {
            return;
        };
        let Ok(reply) = frame.header::<Reply>() else {
            return;
        };
        match reply {
            Reply::Created { key } => {
                for (prefix, notify) in link.subscribers() {
                    if key.is_empty() || key.starts_with(&prefix) {
                        notify(&key);
                    }
                }
            }
            Reply::Pushed { key, offset } => {
                let bytes = frame.into_payload();
                bump(&link.stats.pushed_bytes_received, bytes.len() as u64);
                link.push.insert(&key, offset, bytes);
            }
            Reply::Closing { .. } => return,
            _ => {
                let waiter = conn.waiters().as_mut().and_then(|w| w.remove(&frame.id));
                match waiter {
                    Some(Waiter::Caller(sender)) => {
                        let _ = sender.send(frame);
                    }
                    Some(Waiter::Push) => link.push.end(frame.id),
                    None => {} // a pong, or an append's failure (the finish reports it)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        let url = ServerUrl::parse("ferrite://heaps.example:7421/t1").expect("parses");
        assert_eq!(
            (
                url.host.as_str(),
                url.port,
                url.tenant.as_str(),
                url.insecure
            ),
            ("heaps.example", 7421, "t1", false)
        );
        assert_eq!(url.to_string(), "ferrite://heaps.example:7421/t1");
        let url = ServerUrl::parse("ferrite+insecure://[::1]:9/dev").expect("parses");
        assert!(url.insecure);
        assert_eq!(url.host, "::1");
        assert_eq!(url.to_string(), "ferrite+insecure://[::1]:9/dev");
        for bad in [
            "s3://b/p",
            "ferrite://host/t1",
            "ferrite://host:70000/t1",
            "ferrite://host:1/",
            "ferrite://host:1/../x",
            "ferrite://:1/t",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
