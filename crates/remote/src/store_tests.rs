//! `S3Store` over `object_store`'s store in memory, bare or behind a wrapper
//! that injects the failures of a network: refused connections, lost
//! answers, server errors, and a storage that ignores create-only puts.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::is_outcome_unknown;
use ferrite_pagestore::get_bounded;
use futures::stream::BoxStream;
use object_store::{
    client::{HttpError, HttpErrorKind},
    memory::InMemory,
    CopyOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
    PutResult,
};
use std::{collections::VecDeque, sync::Mutex, thread};
use tokio::sync::Semaphore;

/// Fast retries, so that the tests of failures take milliseconds.
/// Bounded attempts only (no outage wait), unless a test asks for it.
fn options() -> S3Options {
    S3Options {
        backoff_ms_first: 1,
        backoff_ms_max: 4,
        outage_wait_ms_max: 0,
        ..S3Options::default()
    }
}

fn memory_store(prefix: &str) -> (Arc<InMemory>, S3Store) {
    let memory = Arc::new(InMemory::new());
    let store = S3Store::with_store(memory.clone(), prefix, &options()).unwrap();
    (memory, store)
}

/// What the next request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The connection is refused: nothing reaches the storage.
    NotSent,
    /// The request takes effect, and its answer is lost (a timeout).
    AnswerLost,
    /// The server answers 503 without doing anything.
    Unavailable,
}

impl Fault {
    fn error(self) -> object_store::Error {
        let source: Box<dyn std::error::Error + Send + Sync> = match self {
            Fault::NotSent => Box::new(HttpError::new(
                HttpErrorKind::Connect,
                io::Error::from(io::ErrorKind::ConnectionRefused),
            )),
            Fault::AnswerLost => Box::new(HttpError::new(
                HttpErrorKind::Timeout,
                io::Error::from(io::ErrorKind::TimedOut),
            )),
            // As the store's client reports an answer of 503.
            Fault::Unavailable => Box::new(HttpError::new(
                HttpErrorKind::Unknown,
                crate::retry::ResponseStatus {
                    status: 503,
                    listing: false,
                },
            )),
        };
        object_store::Error::Generic {
            store: "faulty",
            source,
        }
    }
}

/// `InMemory` with injected faults, counting requests.
#[derive(Debug, Default)]
struct Faulty {
    inner: InMemory,
    /// Turns create-only puts into overwrites, as a storage without
    /// conditional writes does.
    ignores_create: bool,
    /// The faults the next puts meet, in order; then none.
    put_faults: Mutex<VecDeque<Fault>>,
    /// The faults the next gets meet, in order; then none.
    get_faults: Mutex<VecDeque<Fault>>,
    puts: AtomicU64,
    gets: AtomicU64,
    /// When set, each put first takes a permit of it (a put held back).
    gate: Option<Arc<Semaphore>>,
}

impl Faulty {
    fn with_put_faults(faults: &[Fault]) -> Arc<Self> {
        let faulty = Self::default();
        faulty.put_faults.lock().unwrap().extend(faults);
        Arc::new(faulty)
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.ignores_create {
            opts.mode = PutMode::Overwrite;
        }
        let fault = self.put_faults.lock().unwrap().pop_front();
        match fault {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(Fault::AnswerLost) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(Fault::AnswerLost.error())
            }
            Some(fault) => Err(fault.error()),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let fault = self.get_faults.lock().unwrap().pop_front();
        match fault {
            None => self.inner.get_opts(location, options).await,
            Some(fault) => Err(fault.error()),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[test]
fn put_new_is_create_only() {
    let (_, store) = memory_store("heaps");
    store.put_new("procs/a/manifests/1", b"first").unwrap();
    let again = store.put_new("procs/a/manifests/1", b"second");
    assert!(
        matches!(again, Err(StorageError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(store.get("procs/a/manifests/1", None).unwrap(), b"first");
    assert!(store.put_new("../escape", b"x").is_err());
}

#[test]
fn ranges_past_the_end_return_the_bytes_that_exist() {
    let (_, store) = memory_store("");
    store.put_new("k", b"0123456789").unwrap();
    store.put_new("empty", b"").unwrap();
    assert_eq!(store.get("k", None).unwrap(), b"0123456789");
    assert_eq!(store.get("k", Some(2..5)).unwrap(), b"234");
    assert_eq!(store.get("k", Some(7..100)).unwrap(), b"789");
    assert_eq!(store.get("k", Some(10..20)).unwrap(), b"");
    assert_eq!(store.get("k", Some(50..60)).unwrap(), b"");
    assert_eq!(store.get("k", Some(3..3)).unwrap(), b"");
    assert_eq!(store.get("empty", Some(0..8)).unwrap(), b"");
    assert_eq!(
        get_bounded(&store, "k", 10).unwrap().unwrap(),
        b"0123456789"
    );
    assert_eq!(get_bounded(&store, "k", 9).unwrap(), None);
    for range in [None, Some(0..4), Some(4..4)] {
        let missing = store.get("missing", range.clone());
        assert!(
            matches!(missing, Err(StorageError::NotFound { .. })),
            "{range:?}: {missing:?}"
        );
    }
}

#[test]
fn list_is_by_string_prefix_and_sorted() {
    let (_, store) = memory_store("root");
    for key in ["a/b/2", "a/b/1", "a/bc/3", "a/c", "b"] {
        store.put_new(key, key.as_bytes()).unwrap();
    }
    assert_eq!(
        store.list("").unwrap(),
        ["a/b/1", "a/b/2", "a/bc/3", "a/c", "b"]
    );
    assert_eq!(store.list("a/b").unwrap(), ["a/b/1", "a/b/2", "a/bc/3"]);
    assert_eq!(store.list("a/b/").unwrap(), ["a/b/1", "a/b/2"]);
    assert_eq!(store.list("a/b/1").unwrap(), ["a/b/1"]);
    assert!(store.list("z/").unwrap().is_empty());
    assert!(store.list("a/../b").is_err());
}

#[test]
fn delete_is_idempotent() {
    let (_, store) = memory_store("p");
    store.put_new("x/y", b"1").unwrap();
    store.delete("x/y").unwrap();
    store.delete("x/y").unwrap();
    store.delete("never/was").unwrap();
    assert!(store.get("x/y", None).unwrap_err().is_not_found());
    store.put_new("x/y", b"2").unwrap();
    assert_eq!(store.get("x/y", None).unwrap(), b"2");
}

#[test]
fn stores_under_different_prefixes_do_not_see_each_other() {
    let memory = Arc::new(InMemory::new());
    let open = |prefix| S3Store::with_store(memory.clone(), prefix, &options()).unwrap();
    let (one, other, nested) = (open("tenant"), open("tenant2"), open("tenant/sub"));
    one.put_new("k", b"one").unwrap();
    other.put_new("k", b"other").unwrap();
    nested.put_new("k", b"nested").unwrap();
    assert_eq!(one.get("k", None).unwrap(), b"one");
    assert_eq!(other.get("k", None).unwrap(), b"other");
    assert_eq!(other.list("").unwrap(), ["k"]);
    // The nested store's objects are keys of the outer one, as in a directory.
    assert_eq!(one.list("").unwrap(), ["k", "sub/k"]);
    one.delete("k").unwrap();
    assert_eq!(other.get("k", None).unwrap(), b"other");
    let raw: Vec<String> = futures::executor::block_on(
        memory
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect(),
    )
    .unwrap();
    let mut raw = raw;
    raw.sort();
    assert_eq!(raw, ["tenant/sub/k", "tenant2/k"]);
}

#[test]
fn the_probe_leaves_nothing_behind() {
    let (memory, store) = memory_store("p");
    assert!(store.honours_create_only());
    let left: Vec<ObjectMeta> =
        futures::executor::block_on(memory.list(None).try_collect()).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_storage_that_overwrites_is_refused_for_writing() {
    let overwriting = || {
        Arc::new(Faulty {
            ignores_create: true,
            ..Faulty::default()
        })
    };
    let refused = S3Store::with_store(overwriting(), "p", &options()).unwrap_err();
    assert!(
        matches!(refused, RemoteError::NotCreateOnly { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("single_writer"), "{refused}");

    let reader = S3Options {
        read_only: true,
        ..options()
    };
    let store = S3Store::with_store(overwriting(), "p", &reader).unwrap();
    assert!(store.put_new("k", b"x").is_err());
    assert!(store.delete("k").is_err());

    // A single writer may use it; put_new checks for the object first.
    let writer = S3Options {
        single_writer: true,
        ..options()
    };
    let store = S3Store::with_store(overwriting(), "p", &writer).unwrap();
    assert!(!store.honours_create_only());
    store.put_new("k", b"first").unwrap();
    assert!(matches!(
        store.put_new("k", b"second"),
        Err(StorageError::AlreadyExists { .. })
    ));
    assert_eq!(store.get("k", None).unwrap(), b"first");
}

#[test]
fn a_put_whose_answer_was_lost_has_an_unknown_outcome() {
    let faulty = Faulty::with_put_faults(&[]);
    let store = S3Store::with_store(faulty.clone(), "p", &options()).unwrap();
    faulty
        .put_faults
        .lock()
        .unwrap()
        .push_back(Fault::AnswerLost);
    // The put took effect; the retry finds the object and cannot tell whose.
    let error = store.put_new("manifests/1", b"m").unwrap_err();
    assert!(is_outcome_unknown(&error), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("outcome of the write is unknown"),
        "{error}"
    );
    assert!(!matches!(error, StorageError::AlreadyExists { .. }));

    // Server errors until the attempts run out: each may have been applied,
    // so the outcome is unknown too, never a plain failure.
    let lost = vec![Fault::Unavailable; options().attempts_max as usize];
    faulty.put_faults.lock().unwrap().extend(lost);
    let error = store.put_new("manifests/2", b"m").unwrap_err();
    assert!(is_outcome_unknown(&error), "{error:?}");
    assert!(faulty.put_faults.lock().unwrap().is_empty());

    // A server error that may have been applied, then a retry that creates
    // the object: the first did not create it, so the put succeeded.
    faulty
        .put_faults
        .lock()
        .unwrap()
        .push_back(Fault::Unavailable);
    store.put_new("manifests/3", b"m").unwrap();
}

#[test]
fn a_put_that_was_never_sent_is_retried_and_its_conflict_is_plain() {
    let faulty = Faulty::with_put_faults(&[]);
    let store = S3Store::with_store(faulty.clone(), "p", &options()).unwrap();
    faulty
        .put_faults
        .lock()
        .unwrap()
        .extend([Fault::NotSent, Fault::NotSent]);
    let before = faulty.puts.load(Ordering::Relaxed);
    store.put_new("k", b"x").unwrap();
    assert_eq!(faulty.puts.load(Ordering::Relaxed) - before, 3);
    // Refused connections, then the object that another writer made: that is
    // a plain conflict, the requests that failed never reached the storage.
    faulty.put_faults.lock().unwrap().push_back(Fault::NotSent);
    assert!(matches!(
        store.put_new("k", b"y"),
        Err(StorageError::AlreadyExists { .. })
    ));
    // Never sent, every time: a plain failure, after exactly attempts_max tries.
    let never = vec![Fault::NotSent; options().attempts_max as usize];
    faulty.put_faults.lock().unwrap().extend(never);
    let before = faulty.puts.load(Ordering::Relaxed);
    let error = store.put_new("other", b"z").unwrap_err();
    assert!(!is_outcome_unknown(&error), "{error:?}");
    let attempts = faulty.puts.load(Ordering::Relaxed) - before;
    assert_eq!(attempts, u64::from(options().attempts_max));
    assert!(store.get("other", None).unwrap_err().is_not_found());
}

#[test]
fn transient_read_failures_are_retried_a_bounded_number_of_times() {
    let faulty = Faulty::with_put_faults(&[]);
    let store = S3Store::with_store(faulty.clone(), "p", &options()).unwrap();
    store.put_new("k", b"bytes").unwrap();
    faulty
        .get_faults
        .lock()
        .unwrap()
        .extend([Fault::NotSent, Fault::AnswerLost]);
    assert_eq!(store.get("k", Some(1..3)).unwrap(), b"yt");
    let always = vec![Fault::Unavailable; 100];
    faulty.get_faults.lock().unwrap().extend(always);
    let before = faulty.gets.load(Ordering::Relaxed);
    assert!(store.get("k", None).is_err());
    let attempts = faulty.gets.load(Ordering::Relaxed) - before;
    assert_eq!(attempts, u64::from(options().attempts_max));
}

#[test]
fn open_fails_once_and_clearly_when_the_first_request_fails() {
    let faulty = Faulty::default();
    faulty
        .put_faults
        .lock()
        .unwrap()
        .extend(vec![Fault::NotSent; options().attempts_max as usize]);
    let error = S3Store::with_store(Arc::new(faulty), "p", &options()).unwrap_err();
    assert!(matches!(error, RemoteError::Open { .. }), "{error}");
    assert!(error.to_string().contains("AWS_ENDPOINT_URL"), "{error}");
}

#[test]
fn options_out_of_bounds_are_an_error_not_a_panic() {
    for bad in [
        S3Options {
            attempts_max: 0,
            ..options()
        },
        S3Options {
            attempts_max: 17,
            ..options()
        },
        S3Options {
            backoff_ms_max: 0,
            ..options()
        },
        S3Options {
            uploads_bytes_max: 1,
            ..options()
        },
        S3Options {
            outage_wait_ms_max: u64::MAX,
            ..options()
        },
        S3Options {
            notice_ms_every: 0,
            ..options()
        },
    ] {
        let error = bad.check().unwrap_err();
        assert!(
            matches!(error, RemoteError::InvalidOption { .. }),
            "{error}"
        );
        let opened = S3Store::with_store(Arc::new(InMemory::new()), "p", &bad);
        assert!(matches!(opened, Err(RemoteError::InvalidOption { .. })));
    }
    S3Options::default().check().unwrap();
}

fn gated() -> (Arc<Faulty>, Arc<Semaphore>, S3Store) {
    let gate = Arc::new(Semaphore::new(0));
    let faulty = Arc::new(Faulty {
        gate: Some(gate.clone()),
        ..Faulty::default()
    });
    // The probe's two puts pass the gate.
    gate.add_permits(2);
    let limited = S3Options {
        uploads_bytes_max: 1 << 20,
        ..options()
    };
    let store = S3Store::with_store(faulty.clone(), "p", &limited).unwrap();
    (faulty, gate, store)
}

#[test]
fn deferred_puts_upload_in_the_background_within_their_byte_bound() {
    let (faulty, gate, store) = gated();
    let part = vec![7u8; 600 << 10];
    // Held at the gate, yet put_new_deferred returned: readable and listed
    // from memory, not yet in the storage.
    store.put_new_deferred("segs/1", &part).unwrap();
    assert_eq!(store.uploads_bytes(), 600 << 10);
    assert_eq!(store.get("segs/1", Some(10..20)).unwrap(), &part[10..20]);
    assert_eq!(store.get("segs/1", None).unwrap(), part);
    assert_eq!(store.list("segs/").unwrap(), ["segs/1"]);
    assert!(matches!(
        store.put_new_deferred("segs/1", b"again"),
        Err(StorageError::AlreadyExists { .. })
    ));
    thread::scope(|scope| {
        // A second one does not fit in 1 MiB with the first: it waits.
        let second = scope.spawn(|| store.put_new_deferred("segs/2", &part));
        // A negative check needs some time: 200 ms of not returning.
        thread::sleep(Duration::from_millis(200));
        assert!(!second.is_finished());
        gate.add_permits(2);
        second.join().unwrap().unwrap();
    });
    store
        .sync(&["segs/1".to_string(), "segs/2".to_string()])
        .unwrap();
    assert_eq!(store.uploads_bytes(), 0);
    assert_eq!(faulty.puts.load(Ordering::Relaxed), 4);
    let raw = futures::executor::block_on(faulty.inner.get(&Path::from("p/segs/2"))).unwrap();
    assert_eq!(futures::executor::block_on(raw.bytes()).unwrap(), part);
    // Keys never put deferred need nothing.
    store.sync(&["never/put".to_string()]).unwrap();
}

#[test]
fn a_failed_upload_is_never_reported_durable_and_the_next_sync_uploads_it_again() {
    let faulty = Faulty::with_put_faults(&[]);
    let store = S3Store::with_store(faulty.clone(), "p", &options()).unwrap();
    let never = vec![Fault::NotSent; options().attempts_max as usize];
    faulty.put_faults.lock().unwrap().extend(never);
    store.put_new_deferred("segs/1", b"bytes").unwrap();
    let keys = ["segs/1".to_string()];
    let error = store.sync(&keys).unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    // Still readable from memory, still listed, and not in the storage.
    assert_eq!(store.get("segs/1", None).unwrap(), b"bytes");
    assert_eq!(store.list("").unwrap(), ["segs/1"]);
    let raw = futures::executor::block_on(faulty.inner.get(&Path::from("p/segs/1")));
    assert!(raw.is_err());
    // The storage is back: the next sync uploads it.
    store.sync(&keys).unwrap();
    let raw = futures::executor::block_on(faulty.inner.get(&Path::from("p/segs/1"))).unwrap();
    assert_eq!(
        futures::executor::block_on(raw.bytes()).unwrap(),
        &b"bytes"[..]
    );
    assert_eq!(store.list("").unwrap(), ["segs/1"]);
}

#[test]
fn a_deferred_put_whose_answer_was_lost_is_settled_by_reading_it_back() {
    let faulty = Faulty::with_put_faults(&[]);
    let store = S3Store::with_store(faulty.clone(), "p", &options()).unwrap();
    let fault = |faults: &[Fault]| faulty.put_faults.lock().unwrap().extend(faults);
    // Not sent, then applied with its answer lost, then "exists": the
    // object holds our bytes, so the upload is done.
    fault(&[Fault::NotSent, Fault::AnswerLost]);
    store.put_new_deferred("segs/1", b"ours").unwrap();
    store.sync(&["segs/1".to_string()]).unwrap();
    assert_eq!(faulty.puts.load(Ordering::Relaxed), 2 + 3);
    // Another writer's object under the key, met after an answer that may
    // have been applied: not ours, so the outcome stays unknown.
    let theirs = Path::from("p/segs/2");
    futures::executor::block_on(faulty.inner.put(&theirs, "theirs".into())).unwrap();
    fault(&[Fault::Unavailable]);
    store.put_new_deferred("segs/2", b"ours").unwrap();
    let error = store.sync(&["segs/2".to_string()]).unwrap_err();
    assert!(is_outcome_unknown(&error), "{error:?}");
}

#[test]
fn delete_waits_for_the_upload_so_the_key_can_be_put_again() {
    let (_, gate, store) = gated();
    store.put_new_deferred("maps/1", b"first").unwrap();
    thread::scope(|scope| {
        let deleting = scope.spawn(|| store.delete("maps/1"));
        gate.add_permits(1);
        deleting.join().unwrap().unwrap();
    });
    assert!(store.list("maps/").unwrap().is_empty());
    gate.add_permits(1);
    store.put_new_deferred("maps/1", b"second").unwrap();
    store.sync(&["maps/1".to_string()]).unwrap();
    assert_eq!(store.get("maps/1", None).unwrap(), b"second");
}

#[test]
fn reads_wait_out_an_outage_and_tell_the_notice_hook() {
    let faulty = Faulty::with_put_faults(&[]);
    let patient = S3Options {
        attempts_max: 2,
        outage_wait_ms_max: 60_000,
        notice_ms_first: 20,
        notice_ms_every: 1_000,
        ..options()
    };
    let store = S3Store::with_store(faulty.clone(), "p", &patient).unwrap();
    store.put_new("k", b"bytes").unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    store.set_notice_hook(Some(Arc::new(move |n: &StoreNotice| {
        seen.lock().unwrap().push(n.clone());
    })));
    // Far more failures than attempts_max, for longer than notice_ms_first.
    let down = vec![Fault::NotSent; 30];
    faulty.get_faults.lock().unwrap().extend(down);
    assert_eq!(store.get("k", None).unwrap(), b"bytes");
    assert!(faulty.get_faults.lock().unwrap().is_empty());
    let notices = notices.lock().unwrap().clone();
    assert!(
        matches!(
            notices.as_slice(),
            [
                StoreNotice::Waiting {
                    operation: "get",
                    ..
                },
                StoreNotice::Recovered { .. }
            ]
        ),
        "{notices:?}"
    );
    assert!(
        notices[0].to_string().contains("still retrying"),
        "{}",
        notices[0]
    );
    // A write does not wait: bounded attempts, then a transient error.
    let never = vec![Fault::NotSent; 30];
    faulty.put_faults.lock().unwrap().extend(never);
    let error = store.put_new("other", b"x").unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(faulty.put_faults.lock().unwrap().len(), 28);
}
