//! Fault-injecting proxies for tests: an HTTP/1.1 proxy ([`Proxy`]) for
//! Ferrite's remote storage against a real S3 gateway, and a byte-level TCP
//! proxy ([`TcpProxy`]) that shapes a link (latency, bandwidth, down,
//! stalled) for protocols it cannot read, such as the heap server's TLS.
//!
//! The proxy sits between a client and the gateway and forwards one request
//! and its answer at a time on keep-alive connections. A seeded
//! [`FaultPlan`], changed at run time, decides for each request whether it
//! meets a fault:
//!
//! | Fault | What the client sees | What the gateway sees |
//! |-------|----------------------|-----------------------|
//! | `drop_before` | the connection closes after sending | nothing |
//! | `lose_answer` | the connection closes after sending | the request, done |
//! | `error_500`, `error_503` | an answer made up by the proxy | nothing |
//! | `delay` | a slow answer (up to `delay_ms_max`) | the request, later |
//! | [`Proxy::set_down`] | connections refused, open ones closed | nothing |
//!
//! It runs on threads of its own (one per connection), so synchronous tests
//! use it, and a test that launches the `ferrite` binary points
//! `AWS_ENDPOINT_URL` at [`Proxy::url`].
//!
//! ```no_run
//! use ferrite_chaos::{FaultPlan, Proxy};
//!
//! let upstream = "127.0.0.1:40480".parse()?;
//! let proxy = Proxy::start(upstream)?;
//! proxy.set_plan(FaultPlan { seed: 7, lose_answer: 0.1, ..FaultPlan::default() });
//! // ... point the client at proxy.url() ...
//! assert!(proxy.counts().answers_lost <= proxy.counts().requests);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Feature | Cost |
//! |---------|------|
//! | forwarding | a thread per client connection; each message is held whole in memory (bodies up to 300 MiB) |
//! | every socket operation | a 30 s timeout, so that no test hangs on the proxy |
//!
//! The [`TcpProxy`] forwards bytes unread, so it works under TLS; this
//! kernel has no `netem`, and the proxy is how a test gets a slow or broken
//! link:
//!
//! ```no_run
//! use ferrite_chaos::{LinkShape, TcpProxy};
//!
//! let upstream = "127.0.0.1:40490".parse()?;
//! let proxy = TcpProxy::start(upstream)?;
//! proxy.set_shape(LinkShape { delay_ms: 50, bytes_per_sec: Some(1 << 20) });
//! // ... point the client at proxy.addr(); then cut the link:
//! proxy.set_stalled(true);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | [`TcpProxy`] control | What the client sees | Cost |
//! |----------------------|----------------------|------|
//! | forwarding | the upstream's bytes, unchanged, in order | four threads per connection; up to 8 MiB held per direction, so at most 8 MiB per `delay_ms` of throughput |
//! | [`LinkShape`] `delay_ms` | each byte `delay_ms` later, each way | none: segments in flight overlap |
//! | [`LinkShape`] `bytes_per_sec` | each direction of the link paced to the cap, shared by its connections | writes in slices of about 10 ms |
//! | [`TcpProxy::set_down`] | connections refused, open ones cut both ways | none |
//! | [`TcpProxy::set_stalled`] | open connections silent, no reset; bytes held and delivered after | held bytes in memory, then back-pressure |
//! | accepting | | the listener is polled every 5 ms: a connection's first bytes may wait that long |
//! | writes to a peer | a peer that reads nothing for 30 s has its connection cut | |

mod http;
mod tcp;

pub use tcp::{LinkShape, TcpCounts, TcpProxy};

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, BufReader, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// The longest any socket read or write of the proxy may block.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// Which faults requests meet, each with its probability (0.0 ..= 1.0). The
/// first four exclude each other and are drawn in that order; a delay is
/// drawn apart and may come with any. Default: no faults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    /// Seeds the draws (the order of requests on several connections is
    /// still up to the scheduler).
    pub seed: u64,
    /// Close the client's connection instead of forwarding the request.
    pub drop_before: f64,
    /// Forward the request, then close the client's connection instead of
    /// answering: a put lands, its answer is lost.
    pub lose_answer: f64,
    /// Answer `500 Internal Server Error` without forwarding.
    pub error_500: f64,
    /// Answer `503 Service Unavailable` (`SlowDown`) without forwarding.
    pub error_503: f64,
    /// Wait before forwarding.
    pub delay: f64,
    /// The longest wait (uniform in `0 ..= delay_ms_max`; at most 10 s).
    pub delay_ms_max: u64,
}

/// How many requests met each fault, since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests read from clients.
    pub requests: u64,
    /// Requests forwarded and answered to the client.
    pub forwarded: u64,
    pub dropped_before: u64,
    pub answers_lost: u64,
    pub errors_500: u64,
    pub errors_503: u64,
    pub delayed: u64,
    /// Connections closed because the proxy was down.
    pub refused: u64,
    /// Connections that ended on a malformed message or a failed upstream.
    pub broken: u64,
    /// Answers of the upstream itself with a server error (5xx), forwarded.
    pub upstream_errors: u64,
}

/// The fault one request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    DropBefore,
    LoseAnswer,
    Answer(u16),
}

/// splitmix64: small, seeded, and good enough to draw faults.
#[derive(Debug)]
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0 .. 1.0`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    dropped_before: AtomicU64,
    answers_lost: AtomicU64,
    errors_500: AtomicU64,
    errors_503: AtomicU64,
    delayed: AtomicU64,
    refused: AtomicU64,
    broken: AtomicU64,
    upstream_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    plan: Mutex<(FaultPlan, Draws)>,
    /// Down, or stopping: guarded so that the acceptor can wait for a change.
    state: Mutex<State>,
    changed: Condvar,
    counters: Counters,
    /// The open client connections, to close them when going down.
    connections: Mutex<BTreeMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    stopping: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    down: bool,
    stop: bool,
    /// The acceptor holds a listening socket.
    listening: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, with no
    /// faults.
    ///
    /// # Errors
    /// No port to listen on, or no thread to run on.
    pub fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::new((FaultPlan::default(), Draws(0))),
            state: Mutex::new(State {
                listening: true,
                ..State::default()
            }),
            changed: Condvar::new(),
            counters: Counters::default(),
            connections: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("chaos-accept".to_string())
                .spawn(move || accept_loop(&shared, listener, addr))?
        };
        Ok(Proxy {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan (and restarts its draws from its seed).
    ///
    /// # Panics
    /// If a probability is not within `0.0 ..= 1.0`, or `delay_ms_max`
    /// exceeds 10 s: a mistake of the test.
    pub fn set_plan(&self, plan: FaultPlan) {
        let probabilities = [
            plan.drop_before,
            plan.lose_answer,
            plan.error_500,
            plan.error_503,
            plan.delay,
        ];
        assert!(
            probabilities.iter().all(|p| (0.0..=1.0).contains(p)),
            "probabilities within 0..=1: {plan:?}"
        );
        assert!(plan.delay_ms_max <= 10_000, "{plan:?}");
        *lock(&self.shared.plan) = (plan, Draws(plan.seed));
    }

    /// Down: refuses connections (the port is closed) and closes the open
    /// ones, as a stopped gateway does. Up again: listens on the same port.
    /// Returns once the port is closed, or listens again (or after 5 s, if
    /// the port cannot be had again).
    pub fn set_down(&self, down: bool) {
        lock(&self.shared.state).down = down;
        self.shared.changed.notify_all();
        if down {
            self.wake_acceptor();
            for connection in lock(&self.shared.connections).values() {
                let _ = connection.shutdown(Shutdown::Both);
            }
        }
        let state = lock(&self.shared.state);
        let _settled = self
            .shared
            .changed
            .wait_timeout_while(state, Duration::from_secs(5), |s| s.listening == down)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Whether the proxy is down.
    pub fn is_down(&self) -> bool {
        lock(&self.shared.state).down
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultCounts {
            requests: get(&c.requests),
            forwarded: get(&c.forwarded),
            dropped_before: get(&c.dropped_before),
            answers_lost: get(&c.answers_lost),
            errors_500: get(&c.errors_500),
            errors_503: get(&c.errors_503),
            delayed: get(&c.delayed),
            refused: get(&c.refused),
            broken: get(&c.broken),
            upstream_errors: get(&c.upstream_errors),
        }
    }

    /// Unblocks an `accept` so the acceptor looks at the state again.
    fn wake_acceptor(&self) {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        lock(&self.shared.state).stop = true;
        self.shared.changed.notify_all();
        self.wake_acceptor();
        for connection in lock(&self.shared.connections).values() {
            let _ = connection.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections while up; while down, holds no listening socket (so
/// connections are refused) and waits for a change.
fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        let state = *lock(&shared.state);
        if state.stop {
            return;
        }
        if state.down {
            listener = None;
            lock(&shared.state).listening = false;
            shared.changed.notify_all();
            let guard = lock(&shared.state);
            let _unchanged = shared
                .changed
                .wait_while(guard, |s| s.down && !s.stop)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let Some(open) = listener.as_ref() else {
            match TcpListener::bind(addr) {
                Ok(bound) => {
                    listener = Some(bound);
                    lock(&shared.state).listening = true;
                    shared.changed.notify_all();
                }
                // The port is busy for a moment (a socket closing): again.
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
            continue;
        };
        let Ok((stream, _)) = open.accept() else {
            continue;
        };
        let state = *lock(&shared.state);
        if state.down || state.stop {
            // The acceptor's own wake-up, or a client that came as the
            // proxy went down.
            bump(&shared.counters.refused);
            continue;
        }
        let shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("chaos-conn".to_string())
            .spawn(move || serve(&shared, &stream));
        // No thread (spawn failed): the connection was dropped with its
        // closure, as by an overloaded server.
        drop(spawned);
    }
}

/// Serves one client connection, registered so that going down closes it.
fn serve(shared: &Arc<Shared>, client: &TcpStream) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    if let Ok(clone) = client.try_clone() {
        lock(&shared.connections).insert(id, clone);
    }
    if let Err(_broken) = forward_all(shared, client) {
        bump(&shared.counters.broken);
    }
    let _ = client.shutdown(Shutdown::Both);
    lock(&shared.connections).remove(&id);
}

fn draw(shared: &Shared) -> (Fault, Option<Duration>) {
    let (plan, draws) = &mut *lock(&shared.plan);
    let x = draws.unit();
    let cumulative = [
        (plan.drop_before, Fault::DropBefore),
        (plan.lose_answer, Fault::LoseAnswer),
        (plan.error_500, Fault::Answer(500)),
        (plan.error_503, Fault::Answer(503)),
    ];
    let mut bound = 0.0;
    let mut fault = Fault::None;
    for (p, f) in cumulative {
        bound += p;
        if x < bound {
            fault = f;
            break;
        }
    }
    let delay = (draws.unit() < plan.delay)
        .then(|| Duration::from_millis(draws.next() % (plan.delay_ms_max + 1)));
    (fault, delay)
}

/// Forwards requests of `client` one at a time until either side closes, a
/// fault closes the connection, or the proxy goes down.
fn forward_all(shared: &Shared, client: &TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    client.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let mut requests = BufReader::new(client.try_clone()?);
    let mut writer = client.try_clone()?;
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let c = &shared.counters;
    loop {
        let Some(request) = http::read_request(&mut requests)? else {
            return Ok(());
        };
        bump(&c.requests);
        if lock(&shared.state).down || shared.stopping.load(Ordering::Relaxed) {
            bump(&c.refused);
            return Ok(());
        }
        let (fault, delay) = draw(shared);
        match fault {
            Fault::DropBefore => {
                bump(&c.dropped_before);
                return Ok(());
            }
            Fault::Answer(status) => {
                bump(if status == 500 {
                    &c.errors_500
                } else {
                    &c.errors_503
                });
                // Counted first, as a forwarded answer is.
                writer.write_all(&http::made_up_answer(status))?;
                if request.closes {
                    return Ok(());
                }
                continue;
            }
            Fault::None | Fault::LoseAnswer => {}
        }
        if let Some(delay) = delay {
            bump(&c.delayed);
            thread::sleep(delay);
        }
        if upstream.is_none() {
            let stream = TcpStream::connect_timeout(&shared.upstream, SOCKET_TIMEOUT)?;
            stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
            stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
            let reader = BufReader::new(stream.try_clone()?);
            upstream = Some((stream, reader));
        }
        let Some((to, from)) = upstream.as_mut() else {
            return Ok(());
        };
        to.write_all(&request.raw)?;
        let answer = http::read_response(from, &request.method)?;
        if fault == Fault::LoseAnswer {
            bump(&c.answers_lost);
            return Ok(());
        }
        // Counted before the client can see the answer, so that a test that
        // got it reads the count.
        bump(&c.forwarded);
        if answer.status >= 500 {
            bump(&c.upstream_errors);
        }
        writer.write_all(&answer.raw)?;
        if answer.closes {
            return Ok(());
        }
        if request.closes {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{BufRead, Read};

    /// An upstream that answers every request with its method and body.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    while let Ok(Some(request)) = http::read_request(&mut reader) {
                        let body = format!("{} {}", request.method, request.raw.len());
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn exchange(stream: &mut TcpStream, reader: &mut impl BufRead) -> io::Result<u16> {
        stream.write_all(b"PUT /k HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")?;
        http::read_response(reader, "PUT").map(|answer| answer.status)
    }

    fn connect(proxy: &Proxy) -> (TcpStream, BufReader<TcpStream>) {
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    #[test]
    fn forwards_on_keep_alive_connections() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut stream, mut reader) = connect(&proxy);
        for _ in 0..3 {
            assert_eq!(exchange(&mut stream, &mut reader).unwrap(), 200);
        }
        let counts = proxy.counts();
        assert_eq!((counts.requests, counts.forwarded), (3, 3));
    }

    #[test]
    fn each_fault_does_what_it_says() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let only = |plan: FaultPlan| {
            proxy.set_plan(plan);
            let (mut stream, mut reader) = connect(&proxy);
            exchange(&mut stream, &mut reader)
        };
        let always = FaultPlan::default();
        assert_eq!(
            only(FaultPlan {
                error_503: 1.0,
                ..always
            })
            .unwrap(),
            503
        );
        assert_eq!(
            only(FaultPlan {
                error_500: 1.0,
                ..always
            })
            .unwrap(),
            500
        );
        assert!(only(FaultPlan {
            drop_before: 1.0,
            ..always
        })
        .is_err());
        assert!(only(FaultPlan {
            lose_answer: 1.0,
            ..always
        })
        .is_err());
        let delay = FaultPlan {
            delay: 1.0,
            delay_ms_max: 1,
            ..always
        };
        assert_eq!(only(delay).unwrap(), 200);
        let counts = proxy.counts();
        assert_eq!(counts.errors_503, 1);
        assert_eq!(counts.errors_500, 1);
        assert_eq!(counts.dropped_before, 1);
        assert_eq!(counts.answers_lost, 1);
        assert_eq!(counts.delayed, 1);
        // Only the lost answer and the delayed request reached the upstream.
        assert_eq!(counts.forwarded, 1);
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let plan = FaultPlan {
            seed: 42,
            drop_before: 0.25,
            error_503: 0.25,
            ..FaultPlan::default()
        };
        let draws = |plan: FaultPlan| {
            let proxy = Proxy::start(echo_server()).unwrap();
            proxy.set_plan(plan);
            (0..64).map(|_| draw(&proxy.shared).0).collect::<Vec<_>>()
        };
        let first = draws(plan);
        assert_eq!(first, draws(plan));
        assert_ne!(first, draws(FaultPlan { seed: 43, ..plan }));
        assert!(first.contains(&Fault::None) && first.contains(&Fault::DropBefore));
    }

    #[test]
    fn down_refuses_connections_and_up_serves_again() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut open, mut reader) = connect(&proxy);
        assert_eq!(exchange(&mut open, &mut reader).unwrap(), 200);
        proxy.set_down(true);
        // The open connection is closed, new ones are refused.
        let mut rest = Vec::new();
        assert_eq!(reader.read_to_end(&mut rest).unwrap_or(0), 0);
        let refused = TcpStream::connect(proxy.addr());
        assert_eq!(
            refused.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionRefused)
        );
        proxy.set_down(false);
        let (mut stream, mut reader) = connect(&proxy);
        assert_eq!(exchange(&mut stream, &mut reader).unwrap(), 200);
    }
}
