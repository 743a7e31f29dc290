//! One client connection: TLS, the handshake, the reader loop, the writer
//! task, and the requests.

use super::{tenant::Subscriber, tenant::Tenant, Shared};
use crate::{
    counters::Counters,
    tokens::Admission,
    wire::{
        self, check_wire_key, encode, Class, ErrorCode, Frame, FrameError, Hello, Limits, Reply,
        Request, Span, Welcome, WireError, HANDSHAKE_FRAME_BYTES_MAX, HELLO_MAGIC, ITEMS_MAX,
        PROTOCOL_VERSION,
    },
};
use ferrite_pagestore::StorageError;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf},
    net::TcpStream,
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore},
};

/// Frames queued for the writer, per class.
const DEMAND_QUEUE: usize = 1024;
const PREFETCH_QUEUE: usize = 16;
/// Prefetch-class requests (and pushes) worked on at once per connection.
const PREFETCH_INFLIGHT_MAX: usize = 2;
/// Prefetch-class requests accepted and not yet answered per connection;
/// more are refused at once.
const PREFETCH_PENDING_MAX: usize = 256;
/// Largest piece of a push (bytes of one `Pushed`), below the frame payload.
const PUSH_PIECE_BYTES_MAX: u64 = 1 << 20;
/// Bytes one `Push` may ask for.
const PUSH_BYTES_MAX: u64 = 1 << 30;

/// Serves one accepted TCP connection until it ends.
pub(super) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
) {
    let handshake = Duration::from_millis(shared.limits.handshake_ms_max);
    match shared.tls.clone() {
        None => run(shared, stream, peer, stopping).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => run(shared, stream, peer, stopping).await,
                Ok(Err(error)) => shared.refuse(peer, None, "tls", &error.to_string()),
                Err(_) => shared.refuse(peer, None, "handshake_timeout", "TLS not done in time"),
            }
        }
    }
}

/// A refusal at the handshake: what the client is told and what is logged.
struct Refusal {
    code: wire::RefusalCode,
    reason: &'static str,
    told: String,
    logged: String,
    tenant: Option<String>,
}

async fn run<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, stopping: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let handshake = Duration::from_millis(shared.limits.handshake_ms_max);
    let admitted = tokio::time::timeout(handshake, admit(&shared, &mut reader, &stopping)).await;
    let (tenant, _hello) = match admitted {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            shared.refuse(
                peer,
                refusal.tenant.as_deref(),
                refusal.reason,
                &refusal.logged,
            );
            let refused = Welcome::Refused {
                code: refusal.code,
                reason: refusal.told,
            };
            let _ = wire::write_frame(&mut writer, &encode(0, &refused, &[])).await;
            let _ = writer.shutdown().await;
            return;
        }
        Err(_) => {
            shared.refuse(peer, None, "handshake_timeout", "no Hello in time");
            return;
        }
    };
    let limits = &shared.limits;
    let welcome = Welcome::Accepted {
        version: PROTOCOL_VERSION,
        limits: Limits {
            frame_bytes_max: limits.frame_bytes_max,
            object_bytes_max: limits.object_bytes_max,
            inflight_max: limits.inflight_max,
            idle_ms_max: limits.idle_ms_max,
        },
        instance: shared.instance,
        boot: shared.boot,
    };
    if wire::write_frame(&mut writer, &encode(0, &welcome, &[]))
        .await
        .is_err()
    {
        tenant.connections.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    Counters::add(&shared.counters.connections_open, 1);
    Counters::add(&shared.counters.connections_total, 1);
    let conn = Arc::new(Connection::new(shared.clone(), tenant.clone(), peer));
    session(&conn, reader, writer, stopping).await;
    tenant.unsubscribe(conn.id);
    conn.drop_uploads();
    tenant.connections.fetch_sub(1, Ordering::AcqRel);
    shared
        .counters
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}

/// Reads and checks the `Hello`; admits the tenant and counts its connection.
async fn admit<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut R,
    stopping: &watch::Receiver<bool>,
) -> Result<(Arc<Tenant>, Hello), Refusal> {
    let refusal = |code, reason, told: &str, logged: String, tenant: Option<&str>| Refusal {
        code,
        reason,
        told: told.to_string(),
        logged,
        tenant: tenant.map(str::to_string),
    };
    use wire::RefusalCode as Code;
    let wait = Duration::from_millis(shared.limits.handshake_ms_max);
    let frame = wire::read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX, wait, wait)
        .await
        .map_err(|e| {
            let reason = match e {
                FrameError::Idle(_) | FrameError::Stalled(_) => "handshake_timeout",
                _ => "bad_hello",
            };
            refusal(
                Code::Protocol,
                reason,
                "expected a Hello frame",
                e.to_string(),
                None,
            )
        })?;
    let hello: Hello = frame.header().map_err(|e| {
        refusal(
            Code::Protocol,
            "bad_hello",
            "malformed Hello",
            e.to_string(),
            None,
        )
    })?;
    if hello.magic != HELLO_MAGIC {
        return Err(refusal(
            Code::Protocol,
            "bad_hello",
            "not a Ferrite client",
            "bad magic".into(),
            None,
        ));
    }
    if hello.version != PROTOCOL_VERSION {
        let told = format!(
            "protocol version {} is not spoken here: this server speaks version {PROTOCOL_VERSION}",
            hello.version
        );
        return Err(refusal(
            Code::Version,
            "bad_version",
            &told,
            told.clone(),
            None,
        ));
    }
    let name = hello.tenant.as_str();
    let unauthorized = "unknown tenant or wrong token";
    if !wire::is_tenant_name(name) || hello.token.len() > wire::TOKEN_BYTES_MAX {
        return Err(refusal(
            Code::Unauthorized,
            "bad_tenant",
            unauthorized,
            "malformed tenant name or token".into(),
            None,
        ));
    }
    match shared.tokens.admit(name, &hello.token) {
        Admission::Admitted => {}
        Admission::UnknownTenant => {
            return Err(refusal(
                Code::Unauthorized,
                "unknown_tenant",
                unauthorized,
                "unknown tenant".into(),
                Some(name),
            ));
        }
        Admission::WrongToken => {
            return Err(refusal(
                Code::Unauthorized,
                "wrong_token",
                unauthorized,
                "wrong token".into(),
                Some(name),
            ));
        }
    }
    if *stopping.borrow() {
        return Err(refusal(
            Code::ShuttingDown,
            "shutting_down",
            "the server is stopping",
            "stopping".into(),
            Some(name),
        ));
    }
    let tenant = shared.tenants.get(name).await.map_err(|e| {
        refusal(
            Code::Unavailable,
            "storage",
            "the tenant's storage cannot be opened",
            e.to_string(),
            Some(name),
        )
    })?;
    let max = shared.limits.tenant_connections_max;
    let counted = tenant
        .connections
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
    if counted.is_err() {
        let told = format!("tenant {name} has {max} connections already");
        return Err(refusal(
            Code::TooManyConnections,
            "too_many_connections",
            &told,
            told.clone(),
            Some(name),
        ));
    }
    Ok((tenant, hello))
}

/// A chunked put being received.
struct Upload {
    key: String,
    deferred: bool,
    bytes_total: u64,
    bytes: Vec<u8>,
}

/// The writer's ends of the demand and prefetch queues.
type Queues = (mpsc::Receiver<Vec<u8>>, mpsc::Receiver<Vec<u8>>);

/// What a connection's tasks share.
pub(super) struct Connection {
    shared: Arc<Shared>,
    tenant: Arc<Tenant>,
    pub(super) id: u64,
    peer: SocketAddr,
    demand: mpsc::Sender<Vec<u8>>,
    prefetch: mpsc::Sender<Vec<u8>>,
    queues: Mutex<Option<Queues>>,
    inflight: Arc<Semaphore>,
    prefetch_pending: Arc<Semaphore>,
    prefetch_slots: Arc<Semaphore>,
    uploads: Mutex<HashMap<u64, Upload>>,
}

impl Connection {
    fn new(shared: Arc<Shared>, tenant: Arc<Tenant>, peer: SocketAddr) -> Self {
        let (demand, demand_rx) = mpsc::channel(DEMAND_QUEUE);
        let (prefetch, prefetch_rx) = mpsc::channel(PREFETCH_QUEUE);
        Self {
            id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
            inflight: Arc::new(Semaphore::new(shared.limits.inflight_max as usize)),
            prefetch_pending: Arc::new(Semaphore::new(PREFETCH_PENDING_MAX)),
            prefetch_slots: Arc::new(Semaphore::new(PREFETCH_INFLIGHT_MAX)),
            shared,
            tenant,
            peer,
            demand,
            prefetch,
            queues: Mutex::new(Some((demand_rx, prefetch_rx))),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn refuse(&self, reason: &'static str, detail: &str) {
        self.shared
            .refuse(self.peer, Some(&self.tenant.name), reason, detail);
    }

    /// Queues an answer; false if the writer is gone.
    async fn send(&self, class: Class, frame: Vec<u8>) -> bool {
        let queue = match class {
            Class::Demand => &self.demand,
            Class::Prefetch => &self.prefetch,
        };
        queue.send(frame).await.is_ok()
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Upload>> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back what the uploads not finished hold.
    fn drop_uploads(&self) {
        let uploads: Vec<Upload> = self.uploads().drain().map(|(_, u)| u).collect();
        for upload in uploads {
            self.end_upload(&upload);
            self.tenant.release(upload.bytes_total);
        }
    }

    /// Gives back an upload's memory budget.
    fn end_upload(&self, upload: &Upload) {
        let _ = self
            .shared
            .uploads_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(upload.bytes_total))
            });
    }
}

/// The reader loop, until the client leaves, misbehaves, or the server stops.
async fn session<S>(
    conn: &Arc<Connection>,
    mut reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (close, closed) = oneshot::channel();
    let queues = conn
        .queues
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("one session per connection");
    let writer = tokio::spawn(write_loop(conn.shared.clone(), writer, queues, closed));
    let limits = &conn.shared.limits;
    let (idle, stall) = (
        Duration::from_millis(limits.idle_ms_max),
        Duration::from_millis(limits.frame_ms_max),
    );
    let mut strikes = 0u32;
    let closing: Option<String> = loop {
        let read = tokio::select! {
            read = wire::read_frame(&mut reader, limits.frame_bytes_max, idle, stall) => read,
            _ = stopping.changed() => break Some("the server is stopping".into()),
        };
        let frame = match read {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break None,
            Err(error) => {
                conn.refuse(error.reason(), &error.to_string());
                break Some(error.to_string());
            }
        };
        Counters::add(&conn.shared.counters.bytes_in, frame.wire_bytes());
        let request: Request = match frame.header() {
            Ok(request) => request,
            Err(error) => {
                conn.refuse("malformed", &error.to_string());
                break Some(error.to_string());
            }
        };
        conn.shared.counters.request(request.kind());
        if !conn.tenant.take_request() {
            // Counted, not logged: a flood would flood the log.
            conn.shared.counters.refusal("rate_limited");
            strikes += 1;
            if strikes >= limits.flood_strikes_max {
                let told = format!("{strikes} requests in a row over the tenant's rate");
                conn.refuse("flood", &told);
                break Some(told);
            }
            let over = WireError::new(
                ErrorCode::Unavailable,
                "",
                "the tenant's request rate is over its limit; slow down",
            );
            conn.send(Class::Demand, encode(frame.id, &Reply::Failed(over), &[]))
                .await;
            continue;
        }
        strikes = 0;
        if let Err(message) = dispatch(conn, frame, request).await {
            conn.refuse("protocol", &message);
            break Some(message);
        }
    };
    // Let what was accepted finish, then close (the writer sends what is
    // queued for demand, then `Closing`).
    let grace = Duration::from_millis(limits.frame_ms_max.min(10_000));
    let all = limits.inflight_max;
    let _ = tokio::time::timeout(grace, conn.inflight.acquire_many(all)).await;
    if let Some(reason) = closing {
        let _ = conn
            .demand
            .try_send(encode(0, &Reply::Closing { reason }, &[]));
    }
    let _ = close.send(());
    let _ = tokio::time::timeout(grace, writer).await;
}

/// Sends queued frames, demand first, flushing when both queues are empty.
async fn write_loop<S: AsyncWrite>(
    shared: Arc<Shared>,
    writer: WriteHalf<S>,
    (mut demand, mut prefetch): (mpsc::Receiver<Vec<u8>>, mpsc::Receiver<Vec<u8>>),
    mut closed: oneshot::Receiver<()>,
) {
    let mut writer = BufWriter::with_capacity(64 << 10, writer);
    loop {
        let frame = tokio::select! {
            biased;
            Some(frame) = demand.recv() => frame,
            Some(frame) = prefetch.recv() => frame,
            _ = &mut closed => break,
        };
        if write_one(&shared, &mut writer, &frame).await.is_err() {
            return;
        }
        // More already queued goes out with this one.
        loop {
            let next = demand.try_recv().or_else(|_| prefetch.try_recv());
            let Ok(frame) = next else { break };
            if write_one(&shared, &mut writer, &frame).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    while let Ok(frame) = demand.try_recv() {
        if write_one(&shared, &mut writer, &frame).await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

async fn write_one<W: AsyncWrite + Unpin>(
    shared: &Shared,
    writer: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    Counters::add(&shared.counters.bytes_out, frame.len() as u64);
    Ok(())
}

/// Hands a request to a task (or, for uploads, does it in order here).
/// An error is a protocol violation: the connection is dropped.
async fn dispatch(conn: &Arc<Connection>, frame: Frame, request: Request) -> Result<(), String> {
    let id = frame.id;
    if id == 0 {
        return Err("request id 0 is reserved for the server".into());
    }
    match request {
        Request::PutBegin {
            key,
            deferred,
            bytes_total,
        } => {
            let reply = begin_upload(conn, id, key, deferred, bytes_total);
            conn.send(Class::Demand, encode(id, &reply, &[])).await;
        }
        Request::PutAppend { upload, offset } => {
            let reply = append_upload(conn, upload, offset, frame.into_payload());
            if let Some(reply) = reply {
                conn.send(Class::Demand, encode(id, &reply, &[])).await;
            }
        }
        Request::PutAbort { upload } => {
            if let Some(upload) = conn.uploads().remove(&upload) {
                conn.end_upload(&upload);
                conn.tenant.release(upload.bytes_total);
            }
            conn.send(Class::Demand, encode(id, &Reply::Done, &[]))
                .await;
        }
        request => {
            let class = match &request {
                Request::Get { class, .. } | Request::GetBatch { class, .. } => *class,
                Request::Push { .. } => Class::Prefetch,
                _ => Class::Demand,
            };
            // Demand is bounded by waiting here (the reader stops reading);
            // prefetch by refusing past a bound, never holding demand up.
            let permit = match class {
                Class::Demand => conn.inflight.clone().acquire_owned().await.ok(),
                Class::Prefetch => conn.prefetch_pending.clone().try_acquire_owned().ok(),
            };
            let Some(permit) = permit else {
                let busy = "too many prefetches waiting on this connection";
                let reply = Reply::Failed(WireError::new(ErrorCode::Unavailable, "", busy));
                conn.send(Class::Prefetch, encode(id, &reply, &[])).await;
                return Ok(());
            };
            let conn = conn.clone();
            let payload = frame.into_payload();
            tokio::spawn(async move {
                let _running = match class {
                    Class::Demand => None,
                    Class::Prefetch => conn.prefetch_slots.clone().acquire_owned().await.ok(),
                };
                let (reply, bytes) = answer(&conn, id, request, payload).await;
                conn.send(class, encode(id, &reply, &bytes)).await;
                drop::<OwnedSemaphorePermit>(permit);
            });
        }
    }
    Ok(())
}

fn begin_upload(
    conn: &Connection,
    id: u64,
    key: String,
    deferred: bool,
    bytes_total: u64,
) -> Reply {
    let failed = |e: StorageError| Reply::Failed(WireError::of(&e));
    if let Err(e) = check_wire_key(&key, false) {
        return failed(e);
    }
    if bytes_total > conn.shared.limits.object_bytes_max {
        return Reply::Failed(too_large(
            &key,
            bytes_total,
            conn.shared.limits.object_bytes_max,
        ));
    }
    let budget = conn.shared.limits.uploads_bytes_max;
    let taken = conn
        .shared
        .uploads_bytes
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            n.checked_add(bytes_total).filter(|total| *total <= budget)
        });
    if taken.is_err() {
        let busy = "the server holds as many uploads as it may; try again";
        return Reply::Failed(WireError::new(ErrorCode::Unavailable, &key, busy));
    }
    if let Err(e) = conn.tenant.reserve(&key, bytes_total) {
        conn.end_upload(&Upload {
            key: String::new(),
            deferred,
            bytes_total,
            bytes: Vec::new(),
        });
        return failed(e);
    }
    let upload = Upload {
        key,
        deferred,
        bytes_total,
        bytes: Vec::new(),
    };
    conn.uploads().insert(id, upload);
    Reply::Done
}

/// Appends to an upload; answers only a failure (appends are not answered
/// on success, so that a large put streams).
fn append_upload(conn: &Connection, upload: u64, offset: u64, bytes: Vec<u8>) -> Option<Reply> {
    let mut uploads = conn.uploads();
    let Some(entry) = uploads.get_mut(&upload) else {
        return Some(Reply::Failed(WireError::new(
            ErrorCode::Io,
            "",
            format!("no upload {upload}"),
        )));
    };
    let end = offset.saturating_add(bytes.len() as u64);
    if offset != entry.bytes.len() as u64 || end > entry.bytes_total {
        let message = format!(
            "append at {offset} of {} bytes to an upload holding {} of {}",
            bytes.len(),
            entry.bytes.len(),
            entry.bytes_total
        );
        let key = entry.key.clone();
        return Some(Reply::Failed(WireError::new(ErrorCode::Io, &key, message)));
    }
    if entry.bytes.is_empty() {
        entry.bytes = bytes;
        entry
            .bytes
            .reserve_exact((entry.bytes_total - end) as usize);
    } else {
        entry.bytes.extend_from_slice(&bytes);
    }
    None
}

#[cold]
fn too_large(key: &str, bytes: u64, max: u64) -> WireError {
    WireError::new(
        ErrorCode::Io,
        key,
        format!("object of {bytes} bytes is over the server's maximum of {max}"),
    )
}

/// Runs a storage call on the blocking pool, bounded.
async fn blocking<T, F>(shared: &Shared, key: &str, call: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    let _permit = shared
        .storage_calls
        .acquire()
        .await
        .map_err(|e| StorageError::Unavailable {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| {
        Err(StorageError::Io {
            key: key.to_string(),
            source: std::io::Error::other(format!("storage call failed: {e}")),
        })
    })
}

/// The answer to one request, and its payload.
async fn answer(
    conn: &Arc<Connection>,
    id: u64,
    request: Request,
    payload: Vec<u8>,
) -> (Reply, Vec<u8>) {
    let began = Instant::now();
    let is_get = matches!(request, Request::Get { .. } | Request::GetBatch { .. });
    let result = match request {
        Request::PutNew { key, deferred } => put(conn, key, deferred, payload).await,
        Request::PutFinish { upload } => finish_upload(conn, upload).await,
        Request::Sync { keys } => sync(conn, keys).await,
        Request::Get { key, range, .. } => get(conn, key, range).await,
        Request::GetBatch { items, .. } => get_batch(conn, items).await,
        Request::List { prefix } => list(conn, prefix).await,
        Request::Delete { key } => delete(conn, key).await,
        Request::Size { key } => size(conn, key).await,
        Request::Subscribe { prefix } => subscribe(conn, &prefix),
        Request::Push { items } => push(conn, id, items).await,
        Request::Ping => Ok((Reply::Pong, Vec::new())),
        Request::Counters => Ok((Reply::Counters(conn.shared.counters.snapshot()), Vec::new())),
        Request::PutBegin { .. } | Request::PutAppend { .. } | Request::PutAbort { .. } => {
            unreachable!("uploads are handled in order by the reader")
        }
    };
    if is_get {
        conn.shared
            .counters
            .get_latency
            .record(began.elapsed().as_micros() as u64);
    }
    result.unwrap_or_else(|e| (Reply::Failed(e), Vec::new()))
}

type Answer = Result<(Reply, Vec<u8>), WireError>;

fn wire_error(error: &StorageError) -> WireError {
    WireError::of(error)
}

fn key_checked(key: &str, prefix: bool) -> Result<(), WireError> {
    check_wire_key(key, prefix).map_err(|e| wire_error(&e))
}

async fn put(conn: &Connection, key: String, deferred: bool, bytes: Vec<u8>) -> Answer {
    key_checked(&key, false)?;
    let length = bytes.len() as u64;
    if length > conn.shared.limits.object_bytes_max {
        return Err(too_large(&key, length, conn.shared.limits.object_bytes_max));
    }
    conn.tenant
        .reserve(&key, length)
        .map_err(|e| wire_error(&e))?;
    store_object(conn, key, deferred, bytes).await
}

/// Creates an object whose bytes were reserved; gives them back on failure.
async fn store_object(conn: &Connection, key: String, deferred: bool, bytes: Vec<u8>) -> Answer {
    let length = bytes.len() as u64;
    let store = conn.tenant.store.clone();
    let owned = key.clone();
    let result = blocking(&conn.shared, &key, move || {
        if deferred {
            store.put_new_deferred(&owned, &bytes)
        } else {
            store.put_new(&owned, &bytes)
        }
    })
    .await;
    match result {
        Ok(()) => {
            conn.tenant.created(&key);
            Ok((Reply::Done, Vec::new()))
        }
        Err(error) => {
            conn.tenant.release(length);
            Err(wire_error(&error))
        }
    }
}

async fn finish_upload(conn: &Connection, upload: u64) -> Answer {
    let Some(upload) = conn.uploads().remove(&upload) else {
        return Err(WireError::new(
            ErrorCode::Io,
            "",
            format!("no upload {upload}"),
        ));
    };
    conn.end_upload(&upload);
    if upload.bytes.len() as u64 != upload.bytes_total {
        conn.tenant.release(upload.bytes_total);
        let message = format!(
            "upload ended at {} of {} bytes",
            upload.bytes.len(),
            upload.bytes_total
        );
        return Err(WireError::new(ErrorCode::Io, &upload.key, message));
    }
    store_object(conn, upload.key, upload.deferred, upload.bytes).await
}

async fn sync(conn: &Connection, keys: Vec<String>) -> Answer {
    if keys.len() > ITEMS_MAX {
        return Err(WireError::new(
            ErrorCode::Io,
            "",
            format!("more than {ITEMS_MAX} keys"),
        ));
    }
    for key in &keys {
        key_checked(key, false)?;
    }
    let store = conn.tenant.store.clone();
    blocking(&conn.shared, "", move || {
        // A key that is missing (lost in a crash of this machine, or never
        // written) is reported as such: a local store would take the failed
        // fsync of it for an I/O failure and refuse all writes after.
        for key in &keys {
            if store.size(key)?.is_none() {
                return Err(StorageError::NotFound { key: key.clone() });
            }
        }
        store.sync(&keys)
    })
    .await
    .map(|()| (Reply::Done, Vec::new()))
    .map_err(|e| wire_error(&e))
}

/// Reads `key` (a range, or all of it), never more than a frame's payload.
async fn read(conn: &Connection, key: String, range: Option<Span>) -> Result<Vec<u8>, WireError> {
    key_checked(&key, false)?;
    let max = u64::from(conn.shared.limits.frame_bytes_max - wire::PAYLOAD_SLACK_BYTES);
    if let Some((start, end)) = range {
        if end.saturating_sub(start) > max {
            let message = format!("a range of {} bytes is over a frame's {max}", end - start);
            return Err(WireError::new(ErrorCode::Io, &key, message));
        }
    }
    // A whole object is read bounded: no more than a frame is ever held.
    let asked = range.map_or(0..max + 1, |(start, end)| start..end);
    let whole = range.is_none();
    let store = conn.tenant.store.clone();
    let owned = key.clone();
    let bytes = blocking(&conn.shared, &key, move || store.get(&owned, Some(asked)))
        .await
        .map_err(|e| wire_error(&e))?;
    if whole && bytes.len() as u64 > max {
        let message = format!("the object is over a frame's {max} bytes: read it in ranges");
        return Err(WireError::new(ErrorCode::Io, &key, message));
    }
    Counters::add(&conn.shared.counters.gets_served, 1);
    Ok(bytes)
}

async fn get(conn: &Connection, key: String, range: Option<Span>) -> Answer {
    read(conn, key, range)
        .await
        .map(|bytes| (Reply::Bytes, bytes))
}

async fn get_batch(conn: &Connection, items: Vec<(String, Option<Span>)>) -> Answer {
    if items.len() > ITEMS_MAX {
        return Err(WireError::new(
            ErrorCode::Io,
            "",
            format!("more than {ITEMS_MAX} items"),
        ));
    }
    let max = u64::from(conn.shared.limits.frame_bytes_max - wire::PAYLOAD_SLACK_BYTES);
    let mut parts = Vec::with_capacity(items.len());
    let mut out = Vec::new();
    for (key, range) in items {
        match read(conn, key.clone(), range).await {
            Ok(bytes) if (out.len() + bytes.len()) as u64 > max => {
                let message = "the batch's answer is over a frame: ask for fewer bytes";
                return Err(WireError::new(ErrorCode::Io, &key, message));
            }
            Ok(bytes) => {
                parts.push(Ok(bytes.len() as u64));
                out.extend_from_slice(&bytes);
            }
            Err(error) => parts.push(Err(error)),
        }
    }
    Ok((Reply::Batch { parts }, out))
}

async fn list(conn: &Connection, prefix: String) -> Answer {
    key_checked(&prefix, true)?;
    let store = conn.tenant.store.clone();
    let owned = prefix.clone();
    let keys = blocking(&conn.shared, &prefix, move || store.list(&owned))
        .await
        .map_err(|e| wire_error(&e))?;
    let bytes: usize = keys.iter().map(|k| k.len() + 2).sum();
    if bytes as u64 > u64::from(conn.shared.limits.frame_bytes_max - wire::PAYLOAD_SLACK_BYTES) {
        let message = format!("{} keys are over a frame: list a longer prefix", keys.len());
        return Err(WireError::new(ErrorCode::Io, &prefix, message));
    }
    Ok((Reply::Keys { keys }, Vec::new()))
}

async fn delete(conn: &Connection, key: String) -> Answer {
    key_checked(&key, false)?;
    let store = conn.tenant.store.clone();
    let owned = key.clone();
    let freed = blocking(&conn.shared, &key, move || {
        let size = store.size(&owned)?;
        store.delete(&owned)?;
        Ok(size.unwrap_or(0))
    })
    .await
    .map_err(|e| wire_error(&e))?;
    conn.tenant.release(freed);
    Ok((Reply::Done, Vec::new()))
}

async fn size(conn: &Connection, key: String) -> Answer {
    key_checked(&key, false)?;
    let store = conn.tenant.store.clone();
    let owned = key.clone();
    let bytes = blocking(&conn.shared, &key, move || store.size(&owned))
        .await
        .map_err(|e| wire_error(&e))?;
    Ok((Reply::Size { bytes }, Vec::new()))
}

fn subscribe(conn: &Connection, prefix: &str) -> Answer {
    key_checked(prefix, true)?;
    let subscriber = Subscriber {
        connection: conn.id,
        prefix: prefix.to_string(),
        queue: conn.demand.clone(),
        missed: Arc::new(AtomicBool::new(false)),
    };
    conn.tenant
        .subscribe(subscriber)
        .map_err(|message| WireError::new(ErrorCode::Io, prefix, message))?;
    Ok((Reply::Done, Vec::new()))
}

/// Streams the bytes of `items` as `Pushed` frames (prefetch queue), then
/// answers. Items that cannot be read are skipped: a push is a hint.
async fn push(conn: &Arc<Connection>, id: u64, items: Vec<(String, Span)>) -> Answer {
    if items.len() > ITEMS_MAX {
        return Err(WireError::new(
            ErrorCode::Io,
            "",
            format!("more than {ITEMS_MAX} items"),
        ));
    }
    let total: u64 = items.iter().map(|(_, (a, b))| b.saturating_sub(*a)).sum();
    if total > PUSH_BYTES_MAX {
        return Err(WireError::new(
            ErrorCode::Io,
            "",
            format!("a push of {total} bytes is over {PUSH_BYTES_MAX}"),
        ));
    }
    for (key, _) in &items {
        key_checked(key, false)?;
    }
    let piece_max = PUSH_PIECE_BYTES_MAX.min(u64::from(
        conn.shared.limits.frame_bytes_max - wire::PAYLOAD_SLACK_BYTES,
    ));
    for (key, (start, end)) in items {
        let mut at = start;
        while at < end {
            let piece = at..end.min(at + piece_max);
            let Ok(bytes) = read(conn, key.clone(), Some((piece.start, piece.end))).await else {
                break;
            };
            if bytes.is_empty() {
                break;
            }
            let length = bytes.len() as u64;
            Counters::add(&conn.shared.counters.bytes_pushed, length);
            let pushed = Reply::Pushed {
                key: key.clone(),
                offset: at,
            };
            if !conn
                .send(Class::Prefetch, encode(id, &pushed, &bytes))
                .await
            {
                return Ok((Reply::Done, Vec::new()));
            }
            if length < piece.end - piece.start {
                break; // the object ends here
            }
            at = piece.end;
        }
    }
    Ok((Reply::Done, Vec::new()))
}
