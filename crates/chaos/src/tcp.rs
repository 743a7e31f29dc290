//! A byte-level TCP proxy that shapes a link: latency, a bandwidth cap, a
//! link that is down (connections refused, open ones cut) and a link that is
//! stalled (a black hole: connections stay open, no byte passes).
//!
//! The proxy reads nothing of what it forwards, so it serves any protocol,
//! TLS included. Each connection has two directions; each direction is a
//! [`Pipe`] with a receiving thread (source socket into the pipe) and a
//! delivering thread (pipe into the target socket):
//!
//! ```text
//!  client --receive--> Pipe to_server --deliver--> server
//!  client <--deliver-- Pipe to_client <--receive-- server
//! ```
//!
//! Latency is real latency, not a sleep per chunk: every segment carries the
//! instant it was read and is released `delay_ms` after it, so segments in
//! flight overlap and the delay does not divide throughput. Segments leave in
//! the order they came. The bandwidth cap is the link's, in each direction:
//! connections book slices of about 10 ms of the link's time in turn, and
//! write each when its turn comes.
//!
//! Lock order: a pipe's state, then the proxy's control. Whoever changes the
//! control releases it before it locks each pipe to wake its threads, so a
//! thread that looked at the control under its pipe's lock is either told or
//! already waiting.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// The most bytes one direction of one connection holds (read, not yet
/// delivered). A full pipe stops reading, so the sender feels the link's
/// back-pressure. It also bounds throughput to this much per `delay_ms`.
const PIPE_BYTES_MAX: usize = 8 << 20;
/// The most bytes one read takes from a socket.
const SEGMENT_BYTES_MAX: usize = 64 << 10;
/// The longest one-way delay a shape may ask for.
const DELAY_MS_MAX: u64 = 60_000;
/// The longest a write to a peer may block: a peer that reads nothing for
/// this long gets its connection cut.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a blocked read looks whether its connection was cut (a cut also
/// shuts the socket down, which ends the read at once; this is a backstop).
const READ_POLL: Duration = Duration::from_secs(1);
/// The longest a connection to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the acceptor polls its listener, and looks for a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long `set_down` waits for the listener to close or open again.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the link between clients and the upstream behaves, in each
/// direction. Default: as fast as the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkShape {
    /// One-way latency: each segment is delivered this long after it was
    /// read (at most 60 s).
    pub delay_ms: u64,
    /// The bandwidth of each direction of the link, shared by all its
    /// connections; `None` for no cap (at least 1 if set).
    pub bytes_per_sec: Option<u64>,
}

/// What passed through the proxy since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounts {
    /// Client connections accepted and forwarded.
    pub connections: u64,
    /// Open connections cut by [`TcpProxy::set_down`].
    pub connections_cut: u64,
    /// Bytes released from clients to the upstream (counted as the proxy
    /// writes them: a peer that has them finds them counted).
    pub bytes_to_server: u64,
    /// Bytes released from the upstream to clients (likewise).
    pub bytes_to_client: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    connections_cut: AtomicU64,
}

/// One direction of the link, shared by every connection: a cap is the
/// link's, as on a slow interface, not each connection's.
#[derive(Debug)]
struct Lane {
    /// When the link has sent all it was given (under a cap; in the past
    /// when idle).
    free_at: Mutex<Instant>,
    bytes_delivered: AtomicU64,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            free_at: Mutex::new(Instant::now()),
            bytes_delivered: AtomicU64::new(0),
        }
    }

    /// Books the link for `bytes` at `bytes_per_sec`; returns when they
    /// may go. Connections take turns in the order they book.
    fn book(&self, bytes: usize, bytes_per_sec: u64) -> Instant {
        let mut free_at = lock(&self.free_at);
        // An idle link saves no credit: it starts from now.
        let start = (*free_at).max(Instant::now());
        *free_at = start + transmit_time(bytes, bytes_per_sec);
        start
    }
}

// Four independent switches: the test sets `down` and `stalled` at will,
// `stop` is the drop, `listening` the acceptor's answer to `down`. No state
// machine would be smaller.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    shape: LinkShape,
    down: bool,
    stalled: bool,
    stop: bool,
    /// The acceptor holds a listening socket (acknowledges `down`).
    listening: bool,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    control: Mutex<Control>,
    /// Signals the acceptor, and `set_down` waiting for it.
    changed: Condvar,
    connections: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_connection: AtomicU64,
    counters: Counters,
    to_server: Lane,
    to_client: Lane,
}

impl Shared {
    fn control(&self) -> Control {
        *lock(&self.control)
    }

    /// Changes the control, then wakes every thread that may wait on it.
    fn update(&self, change: impl FnOnce(&mut Control)) {
        change(&mut lock(&self.control));
        self.changed.notify_all();
        for connection in lock(&self.connections).values() {
            connection.to_server.wake();
            connection.to_client.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One read from a socket, or the end of its stream (the peer shut down its
/// writing side), which is delayed like data.
#[derive(Debug)]
enum Segment {
    Data(Vec<u8>),
    End,
}

#[derive(Debug)]
struct Held {
    read_at: Instant,
    segment: Segment,
}

#[derive(Debug, Default)]
struct PipeState {
    held: VecDeque<Held>,
    /// The sum of the data lengths in `held`.
    bytes_held: usize,
    /// The connection was cut: both threads leave, held bytes are dropped.
    cut: bool,
}

/// The pipe was cut, or the proxy stops: its threads leave.
#[derive(Debug)]
struct Gone;

/// One direction of one connection.
#[derive(Debug, Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Signals both threads of the pipe: data held, room made, cut, or a
    /// change of the control.
    changed: Condvar,
}

impl Pipe {
    /// Waits for a signal, or at most `timeout`.
    fn wait<'a>(
        &self,
        state: MutexGuard<'a, PipeState>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, PipeState> {
        match timeout {
            None => self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                self.changed
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }

    fn wake(&self) {
        let _state = lock(&self.state);
        self.changed.notify_all();
    }

    fn cut(&self) {
        lock(&self.state).cut = true;
        self.changed.notify_all();
    }

    /// Waits until the pipe has room; false if it was cut.
    fn wait_for_room(&self) -> bool {
        let state = lock(&self.state);
        let state = self
            .changed
            .wait_while(state, |s| !s.cut && s.bytes_held >= PIPE_BYTES_MAX)
            .unwrap_or_else(PoisonError::into_inner);
        !state.cut
    }

    fn push(&self, segment: Segment) {
        let read_at = Instant::now();
        let mut state = lock(&self.state);
        if state.cut {
            return;
        }
        if let Segment::Data(bytes) = &segment {
            state.bytes_held += bytes.len();
        }
        state.held.push_back(Held { read_at, segment });
        self.changed.notify_all();
    }

    /// Takes the oldest segment once its delay has passed and the link is
    /// not stalled.
    fn take_released(&self, shared: &Shared) -> Result<Segment, Gone> {
        let mut state = lock(&self.state);
        loop {
            let control = shared.control();
            if state.cut || control.stop {
                return Err(Gone);
            }
            let head = state.held.front().map(|h| h.read_at);
            let Some(read_at) = head.filter(|_| !control.stalled) else {
                state = self.wait(state, None);
                continue;
            };
            let release = read_at + Duration::from_millis(control.shape.delay_ms);
            let now = Instant::now();
            if now < release {
                state = self.wait(state, Some(release - now));
                continue;
            }
            let held = state.held.pop_front().ok_or(Gone)?;
            if let Segment::Data(bytes) = &held.segment {
                debug_assert!(state.bytes_held >= bytes.len());
                state.bytes_held -= bytes.len();
            }
            // Room for the receiving thread.
            self.changed.notify_all();
            return Ok(held.segment);
        }
    }

    /// Waits until the link may carry bytes: not stalled, and (under a cap)
    /// not before `not_before`. Returns the cap in force.
    fn wait_for_link(
        &self,
        shared: &Shared,
        not_before: Option<Instant>,
    ) -> Result<Option<u64>, Gone> {
        let mut state = lock(&self.state);
        loop {
            let control = shared.control();
            if state.cut || control.stop {
                return Err(Gone);
            }
            let rate = control.shape.bytes_per_sec;
            let now = Instant::now();
            let wait = if control.stalled {
                None
            } else if let Some(at) = not_before.filter(|&at| rate.is_some() && now < at) {
                Some(at - now)
            } else {
                return Ok(rate);
            };
            state = self.wait(state, wait);
        }
    }
}

/// A forwarded connection: the two sockets, and a pipe each way.
#[derive(Debug)]
struct Connection {
    client: TcpStream,
    server: TcpStream,
    to_server: Pipe,
    to_client: Pipe,
}

impl Connection {
    /// Ends the connection at once, both ways, dropping held bytes.
    fn cut(&self) {
        self.to_server.cut();
        self.to_client.cut();
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// A running TCP proxy; stopped (its connections cut, its threads joined)
/// when dropped.
pub struct TcpProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("control", &self.shared.control())
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, with an
    /// unshaped link.
    ///
    /// # Errors
    /// No port to listen on, or no thread to run on.
    pub fn start(upstream: SocketAddr) -> io::Result<TcpProxy> {
        TcpProxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// Starts a proxy to `upstream` listening on `listen` (port 0 for a
    /// free one), for example an address inside a network namespace.
    ///
    /// # Errors
    /// `listen` cannot be bound, or no thread to run on.
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            control: Mutex::new(Control {
                listening: true,
                ..Control::default()
            }),
            changed: Condvar::new(),
            connections: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(0),
            counters: Counters::default(),
            to_server: Lane::new(),
            to_client: Lane::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("chaos-tcp-accept".to_string())
                .spawn(move || accept_loop(&shared, listener, addr))?
        };
        Ok(TcpProxy {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy connects.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Reshapes the link, for new connections and open ones (bytes already
    /// held are released by the new delay).
    ///
    /// # Panics
    /// If `delay_ms` exceeds 60 s or `bytes_per_sec` is 0: a mistake of the
    /// test.
    pub fn set_shape(&self, shape: LinkShape) {
        assert!(shape.delay_ms <= DELAY_MS_MAX, "{shape:?}");
        assert!(shape.bytes_per_sec != Some(0), "{shape:?}");
        // Turns booked under the old cap do not hold up the new one.
        for lane in [&self.shared.to_server, &self.shared.to_client] {
            *lock(&lane.free_at) = Instant::now();
        }
        self.shared.update(|c| c.shape = shape);
    }

    /// The shape in force.
    pub fn shape(&self) -> LinkShape {
        self.shared.control().shape
    }

    /// Down: new connections are refused (the port is closed) and open ones
    /// are cut both ways, as by a host that went away. Up again: listens on
    /// the same address. Returns once the port is closed or open again (or
    /// after 5 s, if the port cannot be had again).
    pub fn set_down(&self, down: bool) {
        self.shared.update(|c| c.down = down);
        if down {
            let connections = lock(&self.shared.connections);
            for connection in connections.values() {
                connection.cut();
            }
            let cut = connections.len() as u64;
            self.shared
                .counters
                .connections_cut
                .fetch_add(cut, Ordering::Relaxed);
        }
        let control = lock(&self.shared.control);
        let _settled = self
            .shared
            .changed
            .wait_timeout_while(control, SETTLE_TIMEOUT, |c| c.listening == down)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Stalled: every connection, open or new, stays open but no byte
    /// passes; bytes sent meanwhile are held (up to 8 MiB each way, then the
    /// sender is held back) and delivered, in order, once the stall ends.
    /// This is a link gone silent without a reset.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.update(|c| c.stalled = stalled);
    }

    /// Whether the proxy is down.
    pub fn is_down(&self) -> bool {
        self.shared.control().down
    }

    /// Whether the link is stalled.
    pub fn is_stalled(&self) -> bool {
        self.shared.control().stalled
    }

    /// What passed through so far.
    pub fn counts(&self) -> TcpCounts {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TcpCounts {
            connections: get(&c.connections),
            connections_cut: get(&c.connections_cut),
            bytes_to_server: get(&self.shared.to_server.bytes_delivered),
            bytes_to_client: get(&self.shared.to_client.bytes_delivered),
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.update(|c| c.stop = true);
        for connection in lock(&self.shared.connections).values() {
            connection.cut();
        }
        // The acceptor joins the connections' threads before it returns.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections while up; while down, holds no listening socket (so
/// connections are refused) and waits for a change. Joins every connection
/// thread before it returns.
fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    loop {
        threads.retain(|t| !t.is_finished());
        let control = shared.control();
        if control.stop {
            break;
        }
        if control.down {
            listener = None;
            lock(&shared.control).listening = false;
            shared.changed.notify_all();
            let control = lock(&shared.control);
            let _unchanged = shared
                .changed
                .wait_while(control, |c| c.down && !c.stop)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let Some(open) = listener.as_ref() else {
            listener = listen_again(shared, addr);
            continue;
        };
        if let Ok((client, _)) = open.accept() {
            threads.extend(spawn_connection(shared, client));
        } else {
            // Nothing to accept (or a client that gave up): poll again.
            let control = lock(&shared.control);
            let _waited = shared
                .changed
                .wait_timeout(control, ACCEPT_POLL)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
    drop(listener);
    for thread in threads {
        let _ = thread.join();
    }
}

/// Binds `addr` again after the proxy comes back up; `None` (and a short
/// pause) while the port is busy for a moment.
fn listen_again(shared: &Shared, addr: SocketAddr) -> Option<TcpListener> {
    let bound = TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
    let Ok(listener) = bound else {
        thread::sleep(ACCEPT_POLL);
        return None;
    };
    lock(&shared.control).listening = true;
    shared.changed.notify_all();
    Some(listener)
}

fn spawn_connection(shared: &Arc<Shared>, client: TcpStream) -> Option<JoinHandle<()>> {
    let shared = shared.clone();
    // No thread: the client is dropped with the closure, as by an
    // overloaded server.
    thread::Builder::new()
        .name("chaos-tcp-conn".to_string())
        .spawn(move || serve(&shared, client))
        .ok()
}

/// Connects the client to the upstream and forwards both ways until both
/// directions end or the connection is cut.
fn serve(shared: &Shared, client: TcpStream) {
    let Ok(connection) = open_connection(shared, client) else {
        return;
    };
    let connection = Arc::new(connection);
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    lock(&shared.connections).insert(id, connection.clone());
    // Registered before looking: a `set_down` or drop after this point finds
    // the connection, one before it is seen here.
    let control = shared.control();
    if control.down || control.stop {
        connection.cut();
    } else {
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        forward(shared, &connection);
    }
    let _ = connection.client.shutdown(Shutdown::Both);
    let _ = connection.server.shutdown(Shutdown::Both);
    lock(&shared.connections).remove(&id);
}

fn open_connection(shared: &Shared, client: TcpStream) -> io::Result<Connection> {
    // An accepted socket does not take the listener's non-blocking mode on
    // Linux; said here so that no platform differs.
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT)?;
    for socket in [&client, &server] {
        // Small writes (a TLS record, a request) go at once: the delay is
        // the proxy's, not Nagle's.
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(READ_POLL))?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
    }
    Ok(Connection {
        client,
        server,
        to_server: Pipe::default(),
        to_client: Pipe::default(),
    })
}

/// Runs the four threads of a connection (this one delivers to the client).
fn forward(shared: &Shared, connection: &Connection) {
    let (client, server) = (&connection.client, &connection.server);
    let (to_server, to_client) = (&connection.to_server, &connection.to_client);
    thread::scope(|scope| {
        let recv = "chaos-tcp-recv";
        spawn_in(scope, connection, recv, || {
            receive(connection, to_server, client);
        });
        spawn_in(scope, connection, recv, || {
            receive(connection, to_client, server);
        });
        spawn_in(scope, connection, "chaos-tcp-send", || {
            deliver(shared, connection, to_server, server, &shared.to_server);
        });
        deliver(shared, connection, to_client, client, &shared.to_client);
    });
}

/// Runs `run` on a thread of `scope`; without a thread, the connection is
/// cut (its other threads then leave).
fn spawn_in<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    connection: &Connection,
    name: &str,
    run: impl FnOnce() + Send + 'scope,
) {
    let spawned = thread::Builder::new()
        .name(name.to_string())
        .spawn_scoped(scope, run);
    if spawned.is_err() {
        connection.cut();
    }
}

/// Reads `source` into `pipe` until the end of its stream, an error, or a
/// cut. A full pipe stops reading.
fn receive(connection: &Connection, pipe: &Pipe, mut source: &TcpStream) {
    let mut buffer = vec![0; SEGMENT_BYTES_MAX];
    while pipe.wait_for_room() {
        match source.read(&mut buffer) {
            Ok(0) => {
                pipe.push(Segment::End);
                return;
            }
            Ok(n) => pipe.push(Segment::Data(buffer[..n].to_vec())),
            Err(e) if is_transient(&e) => {}
            Err(_) => {
                connection.cut();
                return;
            }
        }
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Delivers the segments of `pipe` to `target` as they are released, paced
/// by the bandwidth cap of `lane`; passes the end of the stream on as a
/// shutdown of `target`'s writing side.
fn deliver(
    shared: &Shared,
    connection: &Connection,
    pipe: &Pipe,
    mut target: &TcpStream,
    lane: &Lane,
) {
    while let Ok(segment) = pipe.take_released(shared) {
        let Segment::Data(bytes) = segment else {
            let _ = target.shutdown(Shutdown::Write);
            return;
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let Ok(rate) = pipe.wait_for_link(shared, None) else {
                return;
            };
            let slice = rate.map_or(rest.len(), |rate| rest.len().min(slice_bytes(rate)));
            if let Some(rate) = rate {
                let start = lane.book(slice, rate);
                if pipe.wait_for_link(shared, Some(start)).is_err() {
                    return;
                }
            }
            // Counted before the peer can see the bytes, so that a test
            // that got them reads the count (a failed write overcounts).
            lane.bytes_delivered
                .fetch_add(slice as u64, Ordering::Relaxed);
            if target.write_all(&rest[..slice]).is_err() {
                connection.cut();
                return;
            }
            rest = &rest[slice..];
        }
    }
}

/// About 10 ms of the link's time, within 256 B ..= 64 KiB.
fn slice_bytes(bytes_per_sec: u64) -> usize {
    (bytes_per_sec / 100).clamp(256, SEGMENT_BYTES_MAX as u64) as usize
}

fn transmit_time(bytes: usize, bytes_per_sec: u64) -> Duration {
    debug_assert!(bytes_per_sec > 0);
    Duration::from_nanos(bytes as u64 * 1_000_000_000 / bytes_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_about_ten_ms_of_the_link() {
        assert_eq!(slice_bytes(1 << 20), (1 << 20) / 100);
        assert_eq!(slice_bytes(1), 256);
        assert_eq!(slice_bytes(u64::MAX), SEGMENT_BYTES_MAX);
        assert_eq!(transmit_time(1 << 20, 1 << 20), Duration::from_secs(1));
        assert_eq!(transmit_time(500, 1000), Duration::from_millis(500));
    }
}
