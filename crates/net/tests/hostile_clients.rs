//! Slow and hostile clients are refused or dropped, each for its reason,
//! while a well-behaved client of the same server goes on working.

#![allow(clippy::unwrap_used)]

mod support;

use ferrite_net::{
    client::{ClientError, ServerStore},
    server::ServerLimits,
    wire::{self, Hello, Reply, Request, Welcome, HELLO_MAGIC, PROTOCOL_VERSION},
};
use ferrite_pagestore::{StorageBackend, StorageError};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};
use support::{TestServer, TOKEN_T1};

fn hello(tenant: &str, token: &str, version: u16) -> Vec<u8> {
    let hello = Hello {
        magic: HELLO_MAGIC,
        version,
        tenant: tenant.into(),
        token: token.into(),
        client_tag: "hostile".into(),
    };
    wire::encode(0, &hello, &[])
}

/// Reads one frame (blocking), or `None` at the end of the stream.
fn read_frame(stream: &mut TcpStream) -> Option<(u64, Vec<u8>)> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut body).ok()?;
    let id = u64::from_le_bytes(body[..8].try_into().unwrap());
    let header = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
    Some((id, body[12..12 + header].to_vec()))
}

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A raw connection past the handshake.
fn session(server: &TestServer) -> TcpStream {
    let mut stream = connect(server);
    stream
        .write_all(&hello("t1", TOKEN_T1, PROTOCOL_VERSION))
        .unwrap();
    let (_, header) = read_frame(&mut stream).unwrap();
    let welcome: Welcome = postcard::from_bytes(&header).unwrap();
    assert!(matches!(welcome, Welcome::Accepted { .. }), "{welcome:?}");
    stream
}

fn refusal(stream: &mut TcpStream) -> Welcome {
    let (_, header) = read_frame(stream).expect("a refusal");
    postcard::from_bytes(&header).unwrap()
}

/// Reads until the server closes the connection; the replies seen.
fn until_closed(stream: &mut TcpStream) -> Vec<Reply> {
    let mut replies = Vec::new();
    while let Some((_, header)) = read_frame(stream) {
        replies.push(postcard::from_bytes(&header).unwrap());
    }
    replies
}

fn works(store: &ServerStore, key: &str) {
    store.put_new(key, key.as_bytes()).unwrap();
    assert_eq!(store.get(key, None).unwrap(), key.as_bytes());
}

#[test]
fn every_hostile_client_is_refused_and_the_good_one_keeps_working() {
    let limits = ServerLimits {
        frame_bytes_max: 1 << 20,
        frame_ms_max: 300,
        handshake_ms_max: 500,
        tenant_requests_per_s: 200,
        tenant_requests_burst: 200,
        flood_strikes_max: 50,
        tenant_connections_max: 4,
        ..ServerLimits::default()
    };
    let server = TestServer::start_insecure(limits);
    let good = server.client("t1", TOKEN_T1);
    works(&good, "good/0");

    // Wrong token, unknown tenant: one clear refusal, never retried.
    let mut options = server.options("wrong");
    let error = ServerStore::open(&server.url("t1"), &options).unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused(StorageError::PermissionDenied { reason, .. })
            if reason.contains("refused tenant t1")),
        "{error}"
    );
    options.token = TOKEN_T1.into();
    let error = ServerStore::open(&server.url("nobody"), &options).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Refused(StorageError::PermissionDenied { .. })
        ),
        "{error}"
    );
    works(&good, "good/1");

    // Another protocol version.
    let mut stream = connect(&server);
    stream
        .write_all(&hello("t1", TOKEN_T1, PROTOCOL_VERSION + 1))
        .unwrap();
    match refusal(&mut stream) {
        Welcome::Refused { code, reason } => {
            assert_eq!(code, wire::RefusalCode::Version);
            assert!(reason.contains("version"), "{reason}");
        }
        other @ Welcome::Accepted { .. } => panic!("{other:?}"),
    }

    // Garbage instead of a Hello.
    let mut stream = connect(&server);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(until_closed(&mut stream).len() <= 1);
    works(&good, "good/2");

    // Another tenant's key or a path out of the store: refused per request.
    let mut keys = session(&server);
    for key in ["../t2/procs/x", "/etc/passwd", "a/../../b"] {
        let get = Request::Get {
            key: key.into(),
            range: None,
            class: wire::Class::Demand,
        };
        keys.write_all(&wire::encode(5, &get, &[])).unwrap();
        let (id, header) = read_frame(&mut keys).unwrap();
        let reply: Reply = postcard::from_bytes(&header).unwrap();
        assert_eq!(id, 5);
        assert!(
            matches!(&reply, Reply::Failed(e) if e.code == wire::ErrorCode::InvalidKey),
            "{key}: {reply:?}"
        );
    }
    drop(keys);

    // An oversized frame: dropped.
    let mut stream = session(&server);
    stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let replies = until_closed(&mut stream);
    assert!(
        matches!(replies.last(), Some(Reply::Closing { reason }) if reason.contains("maximum")),
        "{replies:?}"
    );

    // A half-sent frame: dropped after the frame limit.
    let mut stream = session(&server);
    let ping = wire::encode(9, &Request::Ping, &[]);
    let began = Instant::now();
    stream.write_all(&ping[..ping.len() - 3]).unwrap();
    let replies = until_closed(&mut stream);
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(replies.last(), Some(Reply::Closing { .. })),
        "{replies:?}"
    );

    // A handshake never sent: dropped after the handshake limit.
    let mut stream = connect(&server);
    assert!(matches!(
        refusal(&mut stream),
        Welcome::Refused {
            code: wire::RefusalCode::Protocol,
            ..
        }
    ));
    works(&good, "good/3");

    // Too many connections for the tenant (the good one holds one).
    drop(stream);
    let began = Instant::now();
    while server.counters().connections_open > 1 {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{}",
            server.counters()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let held: Vec<TcpStream> = (0..3).map(|_| session(&server)).collect();
    let mut stream = connect(&server);
    stream
        .write_all(&hello("t1", TOKEN_T1, PROTOCOL_VERSION))
        .unwrap();
    assert!(matches!(
        refusal(&mut stream),
        Welcome::Refused {
            code: wire::RefusalCode::TooManyConnections,
            ..
        }
    ));
    drop(held);

    // A flood over the tenant's rate: told to slow down, then dropped.
    std::thread::sleep(Duration::from_millis(1100)); // the bucket refills
    let mut stream = session(&server);
    let mut flood = Vec::new();
    for id in 1..=400u64 {
        flood.extend_from_slice(&wire::encode(id, &Request::Ping, &[]));
    }
    let _ = stream.write_all(&flood);
    // The server closes with pings unread, so the kernel may reset the
    // connection and drop answers not yet read here: whatever arrived says
    // "rate", and the counters say the rest.
    let replies = until_closed(&mut stream);
    assert!(
        replies.iter().all(|r| match r {
            Reply::Pong => true,
            Reply::Failed(e) => e.message.contains("rate"),
            Reply::Closing { reason } => reason.contains("rate"),
            _ => false,
        }),
        "{replies:?}"
    );
    assert!(server.counters().refusals_of("rate_limited") >= 50);

    std::thread::sleep(Duration::from_millis(1100));
    works(&good, "good/4");
    let counters = server.counters();
    for reason in [
        "wrong_token",
        "unknown_tenant",
        "bad_version",
        "bad_hello",
        "oversized_frame",
        "stalled_frame",
        "handshake_timeout",
        "too_many_connections",
        "flood",
    ] {
        assert!(counters.refusals_of(reason) >= 1, "{reason}: {counters}");
    }
}
