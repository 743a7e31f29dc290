//! Scenarios of the TCP proxy against a local echo server: bytes intact and
//! in order, latency, bandwidth, a link down, a link stalled.

#![allow(clippy::unwrap_used)]

use ferrite_chaos::{LinkShape, TcpProxy};
use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

/// No read of a test waits longer than this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A server that sends back every byte it gets, and ends its stream when
/// the client ends its own.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let _ = io::copy(&mut &stream, &mut &stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

fn connect(proxy: &TcpProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// `bytes_len` bytes drawn by splitmix64 from `seed`.
fn pattern(bytes_len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut bytes = Vec::with_capacity(bytes_len + 8);
    while bytes.len() < bytes_len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(bytes_len);
    bytes
}

/// FNV-1a, 64 bits.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Sends `data` through the proxy on a new connection while reading the
/// echo; returns the echo and how long the whole took.
fn echo_through(proxy: &TcpProxy, data: &[u8]) -> (Vec<u8>, Duration) {
    let stream = connect(proxy);
    let start = Instant::now();
    let echoed = thread::scope(|scope| {
        let mut writer = stream.try_clone().unwrap();
        scope.spawn(move || {
            writer.write_all(data).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut echoed = Vec::with_capacity(data.len());
        (&stream).read_to_end(&mut echoed).unwrap();
        echoed
    });
    (echoed, start.elapsed())
}

/// One small message there and back on an open connection.
fn round_trip(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream.write_all(b"ping").unwrap();
    let mut answer = [0; 4];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ping");
    start.elapsed()
}

fn assert_intact(sent: &[u8], echoed: &[u8]) {
    assert_eq!(echoed.len(), sent.len());
    assert_eq!(checksum(echoed), checksum(sent));
    assert!(echoed == sent, "same checksum, different bytes");
}

#[test]
fn large_transfers_arrive_intact_and_in_order() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    let sent = pattern(8 << 20, 1);
    let (echoed, _) = echo_through(&proxy, &sent);
    assert_intact(&sent, &echoed);
    let counts = proxy.counts();
    assert_eq!(counts.connections, 1);
    assert_eq!(counts.bytes_to_server, 8 << 20);
    assert_eq!(counts.bytes_to_client, 8 << 20);
}

#[test]
fn a_delay_adds_latency_each_way() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    proxy.set_shape(LinkShape {
        delay_ms: 50,
        bytes_per_sec: None,
    });
    let mut stream = connect(&proxy);
    for _ in 0..3 {
        let took = round_trip(&mut stream);
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }
}

#[test]
fn a_delay_does_not_divide_throughput() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    proxy.set_shape(LinkShape {
        delay_ms: 50,
        bytes_per_sec: None,
    });
    // 8 MiB is at least 128 reads each way: a sleep per read would take more
    // than 12 s; latency overlaps and costs about 100 ms.
    let sent = pattern(8 << 20, 2);
    let (echoed, took) = echo_through(&proxy, &sent);
    assert_intact(&sent, &echoed);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_bandwidth_cap_paces_each_direction() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    proxy.set_shape(LinkShape {
        delay_ms: 0,
        bytes_per_sec: Some(1 << 20),
    });
    let sent = pattern(2 << 20, 3);
    let (echoed, took) = echo_through(&proxy, &sent);
    assert_intact(&sent, &echoed);
    // About 2 s: both directions run at once, each at 1 MiB/s.
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn a_new_shape_applies_to_open_connections() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    let mut stream = connect(&proxy);
    let fast = round_trip(&mut stream);
    assert!(fast < Duration::from_millis(100), "{fast:?}");
    proxy.set_shape(LinkShape {
        delay_ms: 30,
        bytes_per_sec: None,
    });
    let slow = round_trip(&mut stream);
    assert!(slow >= Duration::from_millis(60), "{slow:?}");
    proxy.set_shape(LinkShape::default());
    let fast = round_trip(&mut stream);
    assert!(fast < Duration::from_millis(60), "{fast:?}");
}

#[test]
fn down_refuses_new_connections_and_cuts_open_ones() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    let mut open = connect(&proxy);
    round_trip(&mut open);
    proxy.set_down(true);
    assert!(proxy.is_down());
    // The open connection ends (a clean end or a reset, never a hang).
    let mut rest = Vec::new();
    assert_eq!(open.read_to_end(&mut rest).unwrap_or(0), 0);
    let refused = TcpStream::connect(proxy.addr()).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(io::ErrorKind::ConnectionRefused));
    assert_eq!(proxy.counts().connections_cut, 1);
    proxy.set_down(false);
    let mut again = connect(&proxy);
    round_trip(&mut again);
    assert_eq!(proxy.counts().connections, 2);
}

#[test]
fn a_stalled_link_holds_bytes_then_delivers_them() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    let mut stream = connect(&proxy);
    round_trip(&mut stream);
    let before = proxy.counts();
    proxy.set_stalled(true);
    assert!(proxy.is_stalled());
    let sent = pattern(100 << 10, 4);
    stream.write_all(&sent).unwrap();
    // Silent, and still open: the read times out rather than ending.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0; 1];
    let silent = stream.read(&mut byte).map_err(|e| e.kind());
    assert!(
        matches!(
            silent,
            Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
        ),
        "{silent:?}"
    );
    assert_eq!(proxy.counts(), before);
    proxy.set_stalled(false);
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut echoed = vec![0; sent.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_intact(&sent, &echoed);
}

#[test]
fn dropping_the_proxy_cuts_its_connections() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    proxy.set_stalled(true);
    let mut stream = connect(&proxy);
    stream.write_all(b"held").unwrap();
    let addr = proxy.addr();
    let start = Instant::now();
    drop(proxy);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap_or(0), 0);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn connections_share_the_bandwidth_cap() {
    let proxy = TcpProxy::start(echo_server()).unwrap();
    proxy.set_shape(LinkShape {
        delay_ms: 0,
        bytes_per_sec: Some(1 << 20),
    });
    // Two connections of 1 MiB each: 2 MiB over a 1 MiB/s link.
    let took = thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|seed| {
                let proxy = &proxy;
                scope.spawn(move || {
                    let sent = pattern(1 << 20, 10 + seed);
                    let (echoed, took) = echo_through(proxy, &sent);
                    assert_intact(&sent, &echoed);
                    took
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).max()
    });
    let took = took.unwrap();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}
