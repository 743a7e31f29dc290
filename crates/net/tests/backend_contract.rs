//! The storage seam's contract, kept by `ServerStore` against a real server
//! over TLS: create-only puts, deferred puts and sync, ranges past the end,
//! sorted listings, deletion, sizes, objects larger than a frame, errors
//! that cross the wire as themselves, tenants apart and bounded.

#![allow(clippy::unwrap_used)]

mod support;

use ferrite_net::server::ServerLimits;
use ferrite_pagestore::{StorageBackend, StorageError};
use support::{TestServer, TOKEN_T1, TOKEN_T2};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn the_backend_contract_holds_over_tls() {
    let server = TestServer::start(ServerLimits::default());
    let store = server.client("t1", TOKEN_T1);

    store.put_new("procs/a/manifests/1", b"first").unwrap();
    let again = store.put_new("procs/a/manifests/1", b"second");
    assert!(
        matches!(again, Err(StorageError::AlreadyExists { key }) if key == "procs/a/manifests/1")
    );
    assert_eq!(store.get("procs/a/manifests/1", None).unwrap(), b"first");

    store
        .put_new_deferred("procs/a/segments/2", b"deferred bytes")
        .unwrap();
    store
        .put_new_deferred("procs/a/segments/1", b"more")
        .unwrap();
    assert!(matches!(
        store.put_new_deferred("procs/a/segments/1", b"x"),
        Err(StorageError::AlreadyExists { .. })
    ));
    store
        .sync(&["procs/a/segments/1".into(), "procs/a/segments/2".into()])
        .unwrap();
    assert!(matches!(
        store.sync(&["procs/a/segments/never".into()]),
        Err(StorageError::NotFound { .. })
    ));
    // The failed sync of a missing key did not poison the tenant's store.
    store.put_new("procs/a/after", b"ok").unwrap();

    // Ranges, past the end included.
    let key = "procs/a/segments/2";
    assert_eq!(store.get(key, Some(0..8)).unwrap(), b"deferred");
    assert_eq!(store.get(key, Some(9..100)).unwrap(), b"bytes");
    assert_eq!(store.get(key, Some(14..20)).unwrap(), b"");
    assert_eq!(store.get(key, Some(50..60)).unwrap(), b"");
    assert!(matches!(
        store.get("procs/a/none", Some(0..1)),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.get("procs/a/none", Some(3..3)),
        Err(StorageError::NotFound { .. })
    ));

    assert_eq!(
        store.list("procs/a/").unwrap(),
        [
            "procs/a/after",
            "procs/a/manifests/1",
            "procs/a/segments/1",
            "procs/a/segments/2"
        ]
    );
    assert_eq!(store.list("procs/a/seg").unwrap().len(), 2);
    assert!(store.list("procs/b/").unwrap().is_empty());

    assert_eq!(store.size(key).unwrap(), Some(14));
    assert_eq!(store.size("procs/a/none").unwrap(), None);
    store.delete(key).unwrap();
    store.delete(key).unwrap(); // a missing object: not an error
    assert_eq!(store.size(key).unwrap(), None);

    // Keys are checked by the server too.
    assert!(matches!(
        store.get("../etc/passwd", None),
        Err(StorageError::InvalidKey(_))
    ));
    assert!(matches!(
        store.put_new("/abs", b"x"),
        Err(StorageError::InvalidKey(_))
    ));

    // A module-sized object over a 16 MiB frame: chunks in, ranges out.
    let big = pattern((20 << 20) + 17, 3);
    store.put_new("modules/big", &big).unwrap();
    assert!(matches!(
        store.put_new("modules/big", b"x"),
        Err(StorageError::AlreadyExists { .. })
    ));
    assert_eq!(store.get("modules/big", None).unwrap(), big);
    let range = (16 << 20) - 5..(16 << 20) + 5;
    assert_eq!(
        store
            .get("modules/big", Some(range.start as u64..range.end as u64))
            .unwrap(),
        &big[range]
    );
    assert_eq!(store.size("modules/big").unwrap(), Some(big.len() as u64));

    let counters = store.server_counters().unwrap();
    assert!(counters.gets_served > 5, "{counters}");
    assert!(counters.requests_of("put_chunk") >= 3, "{counters}");
    assert!(
        counters.get_us_p50 > 0 && counters.get_us_p99 >= counters.get_us_p50,
        "{counters}"
    );
    assert_eq!(counters.connections_open, 1);
}

#[test]
fn small_frames_carry_large_objects_and_batches() {
    let limits = ServerLimits {
        frame_bytes_max: 64 << 10,
        ..ServerLimits::default()
    };
    let server = TestServer::start(limits);
    let store = server.client("t1", TOKEN_T1);
    for len in [
        0usize,
        1,
        (60 << 10) - 1,
        60 << 10,
        (60 << 10) + 1,
        (1 << 20) + 17,
    ] {
        let key = format!("modules/m{len}");
        let bytes = pattern(len, len as u8);
        store.put_new_deferred(&key, &bytes).unwrap();
        store.sync(std::slice::from_ref(&key)).unwrap();
        assert_eq!(store.get(&key, None).unwrap(), bytes, "{len}");
        assert_eq!(
            store.get(&key, Some(100..200_000)).unwrap(),
            bytes.get(100.min(len)..200_000.min(len)).unwrap_or(&[]),
            "{len}"
        );
    }
    let items = vec![
        ("modules/m1".to_string(), None),
        ("modules/nothing".to_string(), Some(0..10)),
        ("modules/m61441".to_string(), Some(10..20)),
    ];
    let parts = store.get_batch(&items).unwrap();
    assert_eq!(parts[0].as_deref().unwrap(), &pattern(1, 1)[..]);
    assert!(matches!(parts[1], Err(StorageError::NotFound { .. })));
    assert_eq!(
        parts[2].as_deref().unwrap(),
        &pattern(61441, 61441usize as u8)[10..20]
    );
}

#[test]
fn tenants_are_apart_and_bounded_by_their_space() {
    let limits = ServerLimits {
        tenant_bytes_max: 100 << 10,
        ..ServerLimits::default()
    };
    let server = TestServer::start(limits);
    let one = server.client("t1", TOKEN_T1);
    let two = server.client("t2", TOKEN_T2);
    one.put_new("procs/p/a", &vec![1; 60 << 10]).unwrap();
    // Over the space: NoSpace, and nothing created.
    let over = one.put_new("procs/p/b", &vec![2; 60 << 10]);
    assert!(matches!(over, Err(StorageError::NoSpace { key }) if key == "procs/p/b"));
    assert_eq!(one.size("procs/p/b").unwrap(), None);
    // The other tenant has space of its own and sees nothing of t1's.
    two.put_new("procs/p/b", &vec![3; 60 << 10]).unwrap();
    assert_eq!(two.list("").unwrap(), ["procs/p/b"]);
    assert!(matches!(
        two.get("procs/p/a", None),
        Err(StorageError::NotFound { .. })
    ));
    // Deleting gives the space back.
    one.delete("procs/p/a").unwrap();
    one.put_new("procs/p/b", &vec![2; 60 << 10]).unwrap();
    assert_eq!(one.get("procs/p/b", Some(0..1)).unwrap(), [2]);
    assert_eq!(two.get("procs/p/b", Some(0..1)).unwrap(), [3]);
    // The space is counted from the store when the server starts again.
    drop((one, two));
    let mut server = server;
    server.restart();
    let one = server.client("t1", TOKEN_T1);
    assert!(matches!(
        one.put_new("procs/p/c", &vec![4; 60 << 10]),
        Err(StorageError::NoSpace { .. })
    ));
}
