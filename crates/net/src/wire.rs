//! The heap server protocol: frames, messages, limits and error codes.
//!
//! Everything here is plain data and pure functions, plus two async helpers
//! that read and write one frame. `docs/protocol.md` is the contract; this
//! module is its one implementation, shared by the server and the client.
//!
//! A frame on the wire:
//!
//! ```text
//! u32 LE  length N of what follows (12 ..= frame_bytes_max)
//! u64 LE  request id (0: unsolicited, from the server)
//! u32 LE  header length H (H <= N - 12)
//! H bytes the header: a postcard-encoded message
//! N-12-H  the payload: raw object bytes (puts, gets, pushes), else empty
//! ```
//!
//! Object bytes travel outside postcard so that they are copied once.

use ferrite_pagestore::StorageError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{fmt, io, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this build speaks. A peer of another version is
/// refused in the handshake ([`RefusalCode::Version`]).
pub const PROTOCOL_VERSION: u16 = 1;
/// First bytes of a client's `Hello`: tells a Ferrite client from any other
/// bytes sent to the port.
pub const HELLO_MAGIC: [u8; 4] = *b"FRHS";
/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes after the length prefix and before the header: id and header length.
pub const HEAD_BYTES: usize = 12;
/// The default largest frame (length prefix excluded).
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 16 << 20;
/// The smallest frame maximum a server may announce: a chunk of a large put
/// must leave room for its header.
pub const FRAME_BYTES_MAX_MIN: u32 = 64 << 10;
/// The largest frame maximum a server may announce.
pub const FRAME_BYTES_MAX_MAX: u32 = 256 << 20;
/// The largest frame before the handshake is done (a `Hello`, a `Welcome`).
pub const HANDSHAKE_FRAME_BYTES_MAX: u32 = 8 << 10;
/// The largest object (modules are up to 256 MiB).
pub const OBJECT_BYTES_MAX: u64 = 256 << 20;
/// Room kept in a frame for the header of a message that carries bytes: a
/// payload is at most `frame_bytes_max - PAYLOAD_SLACK_BYTES`.
pub const PAYLOAD_SLACK_BYTES: u32 = 4 << 10;
/// The longest key, tenant name, prefix or client tag.
pub const NAME_BYTES_MAX: usize = 1024;
/// The longest token.
pub const TOKEN_BYTES_MAX: usize = 256;
/// Most items of a `GetBatch`, a `Push` or a `Sync`.
pub const ITEMS_MAX: usize = 4096;

const _: () = assert!(FRAME_BYTES_MAX_MIN > 2 * PAYLOAD_SLACK_BYTES);
const _: () = assert!(HEAD_BYTES == 8 + 4);

/// The first frame of a connection, from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub tenant: String,
    pub token: String,
    /// Who the client is, for the server's log (a host name, a runner tag).
    pub client_tag: String,
}

/// The server's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// The connection is open; the limits hold for its lifetime.
    /// `instance` is drawn at each start of the server process; `boot`
    /// names the boot of its machine (it changes when the machine
    /// restarts, not when the server does): a client tells by them whether
    /// deferred puts not yet synced may have been lost (`docs/protocol.md`).
    Accepted {
        version: u16,
        limits: Limits,
        instance: u64,
        boot: u64,
    },
    /// The connection is refused; the server closes it.
    Refused { code: RefusalCode, reason: String },
}

/// What the server announces in its `Welcome`: the client stays within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame, length prefix excluded.
    pub frame_bytes_max: u32,
    /// Largest object.
    pub object_bytes_max: u64,
    /// Requests the server works on at once for this connection; more wait.
    pub inflight_max: u32,
    /// A connection with no frame for this long is closed (clients ping).
    pub idle_ms_max: u64,
}

impl Limits {
    /// The largest payload of one frame.
    pub fn payload_bytes_max(&self) -> u32 {
        self.frame_bytes_max - PAYLOAD_SLACK_BYTES
    }

    /// Checks a server's announcement (an always-on protocol check).
    ///
    /// # Errors
    /// What is out of bounds.
    pub fn check(&self) -> Result<(), String> {
        if !(FRAME_BYTES_MAX_MIN..=FRAME_BYTES_MAX_MAX).contains(&self.frame_bytes_max) {
            return Err(format!(
                "frame maximum {} out of bounds",
                self.frame_bytes_max
            ));
        }
        if self.object_bytes_max == 0 || self.inflight_max == 0 || self.idle_ms_max < 1000 {
            return Err(format!("limits out of bounds: {self:?}"));
        }
        Ok(())
    }
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalCode {
    /// Another protocol version.
    Version,
    /// Unknown tenant or wrong token (the client is not told which).
    Unauthorized,
    /// The tenant or the server has as many connections as allowed.
    TooManyConnections,
    /// The server is stopping.
    ShuttingDown,
    /// Not a Ferrite client, or a malformed `Hello`.
    Protocol,
    /// The tenant's storage could not be opened.
    Unavailable,
}

impl RefusalCode {
    /// Whether a client should try again later (the others are for good).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            RefusalCode::TooManyConnections | RefusalCode::ShuttingDown | RefusalCode::Unavailable
        )
    }
}

/// Which queue a read goes through: demand reads are answered first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Class {
    /// A caller waits for it (a page fault).
    Demand,
    /// A guess of what will be read soon.
    Prefetch,
}

/// A byte range `start..end` of an object.
pub type Span = (u64, u64);

/// A request from the client (after the handshake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Creates `key` with the payload (create-only); durable when answered
    /// unless `deferred` (then after a `Sync` naming it).
    PutNew {
        key: String,
        deferred: bool,
    },
    /// Starts a chunked put of `bytes_total` bytes; the upload is named by
    /// this request's id.
    PutBegin {
        key: String,
        deferred: bool,
        bytes_total: u64,
    },
    /// Appends the payload at `offset` (which must be the bytes so far).
    PutAppend {
        upload: u64,
        offset: u64,
    },
    /// Creates the object from the bytes appended (create-only, atomic).
    PutFinish {
        upload: u64,
    },
    /// Drops an upload not finished.
    PutAbort {
        upload: u64,
    },
    Sync {
        keys: Vec<String>,
    },
    Get {
        key: String,
        range: Option<Span>,
        class: Class,
    },
    /// Several gets, answered by one `Batch`.
    GetBatch {
        items: Vec<(String, Option<Span>)>,
        class: Class,
    },
    List {
        prefix: String,
    },
    Delete {
        key: String,
    },
    Size {
        key: String,
    },
    /// Asks for `Created` for every key made under `prefix` by the tenant.
    Subscribe {
        prefix: String,
    },
    /// Asks for the bytes of these ranges as `Pushed` messages, at prefetch
    /// priority; answered `Done` after the last of them.
    Push {
        items: Vec<(String, Span)>,
    },
    Ping,
    Counters,
}

impl Request {
    /// The kind, for counters and logs.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::PutNew { .. } => RequestKind::PutNew,
            Request::PutBegin { .. }
            | Request::PutAppend { .. }
            | Request::PutFinish { .. }
            | Request::PutAbort { .. } => RequestKind::PutChunk,
            Request::Sync { .. } => RequestKind::Sync,
            Request::Get { .. } => RequestKind::Get,
            Request::GetBatch { .. } => RequestKind::GetBatch,
            Request::List { .. } => RequestKind::List,
            Request::Delete { .. } => RequestKind::Delete,
            Request::Size { .. } => RequestKind::Size,
            Request::Subscribe { .. } => RequestKind::Subscribe,
            Request::Push { .. } => RequestKind::Push,
            Request::Ping => RequestKind::Ping,
            Request::Counters => RequestKind::Counters,
        }
    }
}

/// Kinds of requests, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    PutNew,
    PutChunk,
    Sync,
    Get,
    GetBatch,
    List,
    Delete,
    Size,
    Subscribe,
    Push,
    Ping,
    Counters,
}

impl RequestKind {
    pub const ALL: [RequestKind; 12] = [
        RequestKind::PutNew,
        RequestKind::PutChunk,
        RequestKind::Sync,
        RequestKind::Get,
        RequestKind::GetBatch,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Size,
        RequestKind::Subscribe,
        RequestKind::Push,
        RequestKind::Ping,
        RequestKind::Counters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::PutNew => "put",
            RequestKind::PutChunk => "put_chunk",
            RequestKind::Sync => "sync",
            RequestKind::Get => "get",
            RequestKind::GetBatch => "get_batch",
            RequestKind::List => "list",
            RequestKind::Delete => "delete",
            RequestKind::Size => "size",
            RequestKind::Subscribe => "subscribe",
            RequestKind::Push => "push",
            RequestKind::Ping => "ping",
            RequestKind::Counters => "counters",
        }
    }
}

/// A message from the server after the handshake: the answer to the
/// request with the frame's id, or (id 0) an unsolicited one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Success without data (puts, sync, delete, subscribe, push).
    Done,
    /// The bytes of a get, in the payload.
    Bytes,
    /// A `GetBatch`: per item its length in the payload (the items'
    /// bytes one after another) or its error.
    Batch {
        parts: Vec<Result<u64, WireError>>,
    },
    Keys {
        keys: Vec<String>,
    },
    Size {
        bytes: Option<u64>,
    },
    Failed(WireError),
    Pong,
    Counters(CounterSnapshot),
    /// Unsolicited: `key` was created under a subscribed prefix. An empty
    /// key: notices were dropped (the connection fell behind).
    Created {
        key: String,
    },
    /// Bytes of a `Push` (the frame's id is the push's) at `offset` of `key`.
    Pushed {
        key: String,
        offset: u64,
    },
    /// Unsolicited, just before the server closes the connection.
    Closing {
        reason: String,
    },
}

/// A storage failure on the wire: a code per [`StorageError`] variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub key: String,
    pub message: String,
}

/// One code per [`StorageError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    AlreadyExists,
    NotFound,
    NoSpace,
    Unavailable,
    OutcomeUnknown,
    PermissionDenied,
    Io,
    Poisoned,
    InvalidKey,
    Damaged,
    KeyRequired,
    NotSealed,
}

impl WireError {
    /// The wire form of `error`.
    #[cold]
    pub fn of(error: &StorageError) -> Self {
        let (code, key, message) = match error {
            StorageError::AlreadyExists { key } => (ErrorCode::AlreadyExists, key, String::new()),
            StorageError::NotFound { key } => (ErrorCode::NotFound, key, String::new()),
            StorageError::NoSpace { key } => (ErrorCode::NoSpace, key, String::new()),
            StorageError::Unavailable { key, reason } => {
                (ErrorCode::Unavailable, key, reason.clone())
            }
            StorageError::OutcomeUnknown { key, reason } => {
                (ErrorCode::OutcomeUnknown, key, reason.clone())
            }
            StorageError::PermissionDenied { key, reason } => {
                (ErrorCode::PermissionDenied, key, reason.clone())
            }
            StorageError::Io { key, source } => (ErrorCode::Io, key, source.to_string()),
            StorageError::Poisoned(message) => {
                (ErrorCode::Poisoned, &String::new(), message.clone())
            }
            StorageError::InvalidKey(key) => (ErrorCode::InvalidKey, key, String::new()),
            StorageError::Damaged { key, reason } => (ErrorCode::Damaged, key, reason.clone()),
            StorageError::KeyRequired => (ErrorCode::KeyRequired, &String::new(), String::new()),
            StorageError::NotSealed => (ErrorCode::NotSealed, &String::new(), String::new()),
        };
        Self {
            code,
            key: key.clone(),
            message,
        }
    }

    /// A failure of the server's own (a limit, a malformed request).
    #[cold]
    pub fn new(code: ErrorCode, key: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The error this stands for.
    #[cold]
    pub fn into_storage(self) -> StorageError {
        let WireError { code, key, message } = self;
        match code {
            ErrorCode::AlreadyExists => StorageError::AlreadyExists { key },
            ErrorCode::NotFound => StorageError::NotFound { key },
            ErrorCode::NoSpace => StorageError::NoSpace { key },
            ErrorCode::Unavailable => StorageError::Unavailable {
                key,
                reason: message,
            },
            ErrorCode::OutcomeUnknown => StorageError::OutcomeUnknown {
                key,
                reason: message,
            },
            ErrorCode::PermissionDenied => StorageError::PermissionDenied {
                key,
                reason: message,
            },
            ErrorCode::Io => StorageError::Io {
                key,
                source: io::Error::other(message),
            },
            ErrorCode::Poisoned => StorageError::Poisoned(message),
            ErrorCode::InvalidKey => StorageError::InvalidKey(key),
            ErrorCode::Damaged => StorageError::Damaged {
                key,
                reason: message,
            },
            ErrorCode::KeyRequired => StorageError::KeyRequired,
            ErrorCode::NotSealed => StorageError::NotSealed,
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.code, self.key, self.message)
    }
}

/// The server's counters, as the `Counters` request returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    pub connections_open: u64,
    pub connections_total: u64,
    /// Requests by kind name.
    pub requests: Vec<(String, u64)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Gets answered with bytes (demand and prefetch; batch items count).
    pub gets_served: u64,
    /// Bytes sent as `Pushed`.
    pub bytes_pushed: u64,
    /// Refusals and drops by reason.
    pub refusals: Vec<(String, u64)>,
    /// Service time of gets (request read to answer queued), microseconds.
    pub get_us_p50: u64,
    pub get_us_p99: u64,
}

impl CounterSnapshot {
    /// The count of requests of kind `name`.
    pub fn requests_of(&self, name: &str) -> u64 {
        self.requests
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, count)| *count)
    }

    /// The count of refusals for reason `name`.
    pub fn refusals_of(&self, name: &str) -> u64 {
        self.refusals
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, count)| *count)
    }
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs = |list: &[(String, u64)]| {
            let kept: Vec<String> = list
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(name, count)| format!("{name}={count}"))
                .collect();
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.join(",")
            }
        };
        write!(
            f,
            "connections open={} total={}; requests {}; bytes in={} out={} pushed={}; \
             faults served={}; get latency p50={}us p99={}us; refusals {}",
            self.connections_open,
            self.connections_total,
            pairs(&self.requests),
            self.bytes_in,
            self.bytes_out,
            self.bytes_pushed,
            self.gets_served,
            self.get_us_p50,
            self.get_us_p99,
            pairs(&self.refusals),
        )
    }
}

/// A frame as read: its id, and its body (header then payload).
#[derive(Debug)]
pub struct Frame {
    pub id: u64,
    body: Vec<u8>,
    header_end: usize,
}

impl Frame {
    /// Decodes the header as a `T`.
    ///
    /// # Errors
    /// A header that is not a `T`.
    pub fn header<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        postcard::from_bytes(&self.body[HEAD_BYTES..self.header_end])
            .map_err(|e| FrameError::Malformed(format!("undecodable header: {e}")))
    }

    pub fn payload(&self) -> &[u8] {
        &self.body[self.header_end..]
    }

    /// The payload, owned.
    pub fn into_payload(mut self) -> Vec<u8> {
        self.body.drain(..self.header_end);
        self.body
    }

    /// Bytes on the wire, length prefix included.
    pub fn wire_bytes(&self) -> u64 {
        (LENGTH_BYTES + self.body.len()) as u64
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between two frames.
    #[error("connection closed")]
    Closed,
    /// No frame began within the idle limit.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// A frame began but did not end within the frame limit.
    #[error("a frame was begun but not finished within {0:?}")]
    Stalled(Duration),
    /// The length prefix is over the frame maximum.
    #[error("frame of {length} bytes is over the maximum of {max}")]
    Oversized { length: u32, max: u32 },
    /// Not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// A name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Closed => "closed",
            FrameError::Idle(_) => "idle",
            FrameError::Stalled(_) => "stalled_frame",
            FrameError::Oversized { .. } => "oversized_frame",
            FrameError::Malformed(_) => "malformed",
            FrameError::Io(_) => "io",
        }
    }
}

/// Encodes a frame: `id`, the postcard encoding of `header`, then `payload`.
///
/// # Panics
/// If the frame would be longer than `u32::MAX` (callers bound payloads far
/// below; the reader refuses anything over the frame maximum).
pub fn encode<T: Serialize>(id: u64, header: &T, payload: &[u8]) -> Vec<u8> {
    let header = postcard::to_allocvec(header).expect("protocol messages always encode");
    let length = HEAD_BYTES + header.len() + payload.len();
    let length = u32::try_from(length).expect("frame length fits in u32");
    let mut out = Vec::with_capacity(LENGTH_BYTES + length as usize);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

/// Reads one frame of at most `frame_max` bytes: waits up to `idle` for it
/// to begin, then up to `stall` for the rest.
///
/// # Errors
/// [`FrameError`]: closed, a timeout, over the maximum, malformed, I/O.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_max: u32,
    idle: Duration,
    stall: Duration,
) -> Result<Frame, FrameError> {
    let mut prefix = [0u8; LENGTH_BYTES];
    // The first byte waits for the idle limit, the rest for the frame limit.
    let first = tokio::time::timeout(idle, reader.read(&mut prefix[..1]))
        .await
        .map_err(|_| FrameError::Idle(idle))??;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    let rest = async {
        reader.read_exact(&mut prefix[1..]).await?;
        let length = u32::from_le_bytes(prefix);
        if length > frame_max {
            return Err(FrameError::Oversized {
                length,
                max: frame_max,
            });
        }
        if (length as usize) < HEAD_BYTES {
            return Err(FrameError::Malformed(format!(
                "frame of {length} bytes is shorter than its head"
            )));
        }
        let mut body = vec![0u8; length as usize];
        reader.read_exact(&mut body).await?;
        Ok(body)
    };
    let body = tokio::time::timeout(stall, rest)
        .await
        .map_err(|_| FrameError::Stalled(stall))??;
    parse_body(body)
}

/// Splits a frame body into id, header and payload, checking the header
/// length against the body.
fn parse_body(body: Vec<u8>) -> Result<Frame, FrameError> {
    let id = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let header_bytes = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let header_end = HEAD_BYTES
        .checked_add(header_bytes)
        .filter(|end| *end <= body.len())
        .ok_or_else(|| {
            FrameError::Malformed(format!(
                "header of {header_bytes} bytes in a frame of {}",
                body.len()
            ))
        })?;
    Ok(Frame {
        id,
        body,
        header_end,
    })
}

/// Writes one encoded frame and flushes.
///
/// # Errors
/// I/O errors of the connection.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}

/// Checks a key or prefix sent by a peer: a key as the storage seam takes
/// it ([`ferrite_pagestore::check_key`]), at most [`NAME_BYTES_MAX`] bytes.
/// A prefix may be empty or end with `/`.
///
/// # Errors
/// [`StorageError::InvalidKey`].
pub fn check_wire_key(key: &str, prefix: bool) -> Result<(), StorageError> {
    if key.len() > NAME_BYTES_MAX {
        return Err(StorageError::InvalidKey(key.chars().take(64).collect()));
    }
    let body = if prefix {
        key.strip_suffix('/').unwrap_or(key)
    } else {
        key
    };
    if prefix && body.is_empty() {
        return Ok(());
    }
    ferrite_pagestore::check_key(body).map_err(|_| StorageError::InvalidKey(key.to_string()))
}

/// Checks a tenant name: `[A-Za-z0-9._-]`, 1 ..= 64 bytes, not `.` or `..`.
pub fn is_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A range on the wire as the storage seam takes it.
pub fn range_of(span: Option<Span>) -> Option<std::ops::Range<u64>> {
    span.map(|(start, end)| start..end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_error_crosses_the_wire_as_itself() {
        let errors = [
            StorageError::AlreadyExists { key: "a/b".into() },
            StorageError::NotFound { key: "a/b".into() },
            StorageError::NoSpace { key: "a/b".into() },
            StorageError::Unavailable {
                key: "a/b".into(),
                reason: "r".into(),
            },
            StorageError::OutcomeUnknown {
                key: "a/b".into(),
                reason: "r".into(),
            },
            StorageError::PermissionDenied {
                key: "a/b".into(),
                reason: "r".into(),
            },
            StorageError::Io {
                key: "a/b".into(),
                source: io::Error::other("disk"),
            },
            StorageError::Poisoned("p".into()),
            StorageError::InvalidKey("../x".into()),
            StorageError::Damaged {
                key: "a/b".into(),
                reason: "r".into(),
            },
            StorageError::KeyRequired,
            StorageError::NotSealed,
        ];
        for error in errors {
            let wire = WireError::of(&error);
            let bytes = encode(7, &Reply::Failed(wire.clone()), &[]);
            let frame = parse_body(bytes[LENGTH_BYTES..].to_vec()).unwrap();
            let Reply::Failed(back) = frame.header::<Reply>().unwrap() else {
                panic!("not a failure");
            };
            let back = back.into_storage();
            assert_eq!(back.kind(), error.kind(), "{error}");
            assert_eq!(back.to_string(), error.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&error)
            );
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_bad_lengths_are_refused() {
        let request = Request::Get {
            key: "procs/a/segments/1".into(),
            range: Some((4096, 8192)),
            class: Class::Demand,
        };
        let mut bytes = encode(42, &request, b"payload");
        let second = encode(43, &Request::Ping, &[]);
        bytes.extend_from_slice(&second);
        let mut reader = &bytes[..];
        let long = Duration::from_secs(1);
        let frame = read_frame(&mut reader, 1 << 20, long, long).await.unwrap();
        assert_eq!(frame.id, 42);
        assert_eq!(frame.header::<Request>().unwrap(), request);
        assert_eq!(frame.payload(), b"payload");
        let frame = read_frame(&mut reader, 1 << 20, long, long).await.unwrap();
        assert_eq!(
            (frame.id, frame.header::<Request>().unwrap()),
            (43, Request::Ping)
        );
        assert!(matches!(
            read_frame(&mut reader, 1 << 20, long, long).await,
            Err(FrameError::Closed)
        ));

        let big = encode(1, &Request::Ping, &[0; 100]);
        let mut reader = &big[..];
        assert!(matches!(
            read_frame(&mut reader, 64, long, long).await,
            Err(FrameError::Oversized { max: 64, .. })
        ));
        let mut lying = encode(1, &Request::Ping, &[]);
        lying[12..16].copy_from_slice(&1000u32.to_le_bytes());
        let mut reader = &lying[..];
        assert!(matches!(
            read_frame(&mut reader, 1 << 20, long, long).await,
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn keys_and_tenants_are_checked() {
        assert!(check_wire_key("procs/a/lease", false).is_ok());
        assert!(check_wire_key("procs/a/", true).is_ok());
        assert!(check_wire_key("", true).is_ok());
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "procs//a"] {
            assert!(check_wire_key(bad, false).is_err(), "{bad:?}");
        }
        assert!(check_wire_key("../", true).is_err());
        assert!(check_wire_key(&"a".repeat(NAME_BYTES_MAX + 1), false).is_err());
        assert!(is_tenant_name("t1.dev_x-2"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_tenant_name(bad), "{bad:?}");
        }
    }
}
