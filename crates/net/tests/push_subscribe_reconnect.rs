//! The server's pushes (`Created` notices, pushed ranges) and the client's
//! reconnection when the server stops and starts again.

#![allow(clippy::unwrap_used)]

mod support;

use ferrite_net::{client::ServerStore, server::ServerLimits};
use ferrite_pagestore::{StorageBackend, StorageError};
use ferrite_remote::StoreNotice;
use std::{
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};
use support::{TestServer, TOKEN_T1};

fn subscribed(store: &ServerStore, prefix: &str) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    let sender = Mutex::new(sender);
    let notify = Arc::new(move |key: &str| {
        let _ = sender.lock().unwrap().send(key.to_string());
    });
    assert!(store.subscribe(prefix, notify).unwrap());
    receiver
}

#[test]
fn a_subscriber_is_told_of_keys_another_connection_creates() {
    let server = TestServer::start(ServerLimits::default());
    let runner = server.client("t1", TOKEN_T1);
    let other = server.client("t1", TOKEN_T1);
    let stranger = server.client("t2", support::TOKEN_T2);
    let created = subscribed(&runner, "procs/job/");
    stranger.put_new("procs/job/takeover-1", b"t2's").unwrap(); // another tenant
    other.put_new("procs/elsewhere/lease", b"x").unwrap(); // another prefix
    other.put_new("procs/job/takeover-2", b"wanted").unwrap();
    let key = created.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(key, "procs/job/takeover-2");
    other
        .put_new_deferred("procs/job/segments/1", b"s")
        .unwrap();
    assert_eq!(
        created.recv_timeout(Duration::from_secs(5)).unwrap(),
        "procs/job/segments/1"
    );
    assert!(created.try_recv().is_err());
}

#[test]
fn pushed_ranges_are_read_without_asking_the_server() {
    let server = TestServer::start(ServerLimits::default());
    let store = server.client("t1", TOKEN_T1);
    let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    store.put_new("procs/p/segments/1", &bytes).unwrap();
    let gets_before = server.counters().gets_served;
    let ranges = [
        ("procs/p/segments/1".to_string(), 0..(2u64 << 20)),
        ("procs/p/missing".to_string(), 0..4096),
    ];
    store.prefetch(&ranges);
    // Pages of the pushed range, in any order: from the push buffer (the
    // first may wait for the push under way, never ask the server).
    for page in [5u64, 0, 300, 511] {
        let range = page * 4096..(page + 1) * 4096;
        let got = store
            .get("procs/p/segments/1", Some(range.clone()))
            .unwrap();
        assert_eq!(got, &bytes[range.start as usize..range.end as usize]);
    }
    let stats = store.stats();
    assert_eq!((stats.pushed_gets, stats.demand_gets), (4, 0), "{stats:?}");
    assert_eq!(stats.pushes, 1);
    assert!(stats.pushed_bytes_received >= 2 << 20, "{stats:?}");
    // Outside the push: on demand.
    let far = (2u64 << 20) + 10..(2u64 << 20) + 20;
    assert_eq!(
        store.get("procs/p/segments/1", Some(far.clone())).unwrap(),
        &bytes[far.start as usize..far.end as usize]
    );
    assert_eq!(store.stats().demand_gets, 1);
    let counters = server.counters();
    assert!(counters.bytes_pushed >= 2 << 20, "{counters}");
    assert!(counters.gets_served > gets_before, "{counters}");
}

#[test]
fn the_client_waits_out_a_server_restart_and_subscribes_again() {
    let mut server = TestServer::start(ServerLimits::default());
    let mut options = server.options(TOKEN_T1);
    options.backoff_ms_max = 100;
    options.notice_ms_first = 100;
    let store = Arc::new(ServerStore::open(&server.url("t1"), &options).unwrap());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    store.set_notice_hook(Some(Arc::new(move |notice: &StoreNotice| {
        seen.lock().unwrap().push(notice.clone());
    })));
    let created = subscribed(&store, "procs/");
    store.put_new("procs/a/before", b"1").unwrap();
    assert_eq!(
        created.recv_timeout(Duration::from_secs(5)).unwrap(),
        "procs/a/before"
    );

    server.stop();
    // Operations started while the server is away wait for it.
    let waiting = {
        let store = store.clone();
        std::thread::spawn(move || {
            let read = store.get("procs/a/before", None);
            let wrote = store.put_new("procs/a/during", b"2");
            (read, wrote)
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(!waiting.is_finished());
    server.restart();
    let (read, wrote) = waiting.join().unwrap();
    assert_eq!(read.unwrap(), b"1");
    wrote.unwrap();
    assert_eq!(store.get("procs/a/during", None).unwrap(), b"2");
    assert!(store.stats().reconnects >= 1);
    // Told that notices may have been missed, then notices again.
    let began = Instant::now();
    let mut keys = Vec::new();
    while !keys.iter().any(|k: &String| k == "procs/a/during") {
        assert!(began.elapsed() < Duration::from_secs(5), "{keys:?}");
        if let Ok(key) = created.recv_timeout(Duration::from_millis(100)) {
            keys.push(key);
        }
    }
    assert_eq!(keys.first().map(String::as_str), Some(""), "{keys:?}");
    let notices = notices.lock().unwrap();
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, StoreNotice::Waiting { .. })),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, StoreNotice::Recovered { .. })),
        "{notices:?}"
    );
}

#[test]
fn an_outage_longer_than_the_wait_fails_unavailable() {
    let mut server = TestServer::start(ServerLimits::default());
    let mut options = server.options(TOKEN_T1);
    options.outage_wait_ms_max = 600;
    options.backoff_ms_max = 100;
    let store = ServerStore::open(&server.url("t1"), &options).unwrap();
    store.put_new("k/1", b"x").unwrap();
    server.stop();
    let began = Instant::now();
    let error = store.get("k/1", None).unwrap_err();
    assert!(matches!(error, StorageError::Unavailable { .. }), "{error}");
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    server.restart();
    let began = Instant::now();
    loop {
        match store.get("k/1", None) {
            Ok(bytes) => break assert_eq!(bytes, b"x"),
            Err(e) => assert!(began.elapsed() < Duration::from_secs(5), "{e}"),
        }
    }
}
