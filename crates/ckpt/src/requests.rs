//! Requests to the runner of a process, through the store: a checkpoint, a
//! stop, or a take-over by another runner. The runner may be on another
//! machine that shares only the store with the requester, so a request is an
//! object the runner's lease keeper finds (by listing on every renewal, or at
//! once when the store pushes the news), and the answer is another object.
//!
//! ```text
//! procs/P/requests/<generation:016x>-takeover          the take-over (one per generation)
//! procs/P/requests/<generation:016x>-c-<nonce:016x>    a checkpoint
//! procs/P/requests/<generation:016x>-s-<nonce:016x>    a checkpoint, then stop
//! procs/P/requests/<...>.done                          the runner's answer
//! ```
//!
//! `generation` is the lease generation the requester saw: a request is for
//! the runner that holds it (or a later generation of the same runner). The
//! take-over request is create-only under a fixed name, so of two runners
//! that ask at once exactly one is the taker. Requests of earlier
//! generations are stale and removed by the next runner
//! ([`remove_stale_requests`]).

use crate::lease::LeaseError;
use ferrite_pagestore::{StorageBackend, StorageError};
use serde::{Deserialize, Serialize};

/// The version of request and answer objects.
const REQUEST_VERSION: u32 = 1;

/// A request object is a few hundred bytes; more is not a request.
const REQUEST_BYTES_MAX: u64 = 64 << 10;

/// The most requests a runner looks at in one listing: a store that holds
/// more is flooded, and the rest wait for the next look.
pub const REQUESTS_MAX: usize = 64;

/// What is asked of the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// Commit a checkpoint and go on.
    Checkpoint,
    /// Commit a checkpoint and stop (the process can be resumed anywhere).
    Stop,
    /// Move the process to runner `to`: send the dirty pages in rounds while
    /// running, stop, commit, and hand the lease to `to`.
    TakeOver { to: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestRecord {
    version: u32,
    kind: RequestKind,
    /// The requester's tag, for messages.
    from: String,
}

/// A request found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// The request object's key; its answer goes to `<key>.done`.
    pub key: String,
    /// The lease generation it was addressed to.
    pub generation: u64,
    pub kind: RequestKind,
    /// The requester's tag.
    pub from: String,
}

/// One pre-copy round of a take-over: a checkpoint taken while the process
/// kept running between rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub epoch: u64,
    pub pages_written: u64,
    pub pause_us: u64,
}

/// The runner's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    version: u32,
    /// The checkpoint committed for the request (0 if none).
    pub epoch: u64,
    /// For a take-over: when the old runner stopped the process for the last
    /// time (its wall clock, nanoseconds since the Unix epoch), for the new
    /// runner's report of the downtime.
    pub stopped_unix_ns: u64,
    /// For a take-over: the rounds, the last being the one after the stop.
    pub rounds: Vec<Round>,
    /// Why the request was not done (empty if it was): the process ended
    /// first, a checkpoint failed.
    pub refused: String,
}

impl Answer {
    /// An answer saying the request was done with checkpoint `epoch`.
    pub fn done(epoch: u64) -> Self {
        Self {
            version: REQUEST_VERSION,
            epoch,
            stopped_unix_ns: 0,
            rounds: Vec::new(),
            refused: String::new(),
        }
    }

    /// An answer saying the request was not done, and why.
    pub fn refused(why: &str) -> Self {
        Self {
            refused: why.to_string(),
            ..Self::done(0)
        }
    }
}

fn prefix(process: &str) -> String {
    format!("procs/{process}/requests/")
}

/// The key of the take-over request addressed to lease `generation`.
pub fn take_over_key(process: &str, generation: u64) -> String {
    format!("{}{generation:016x}-takeover", prefix(process))
}

/// The key of the answer to request `key`.
pub fn answer_key(key: &str) -> String {
    format!("{key}.done")
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Posts request `kind` to the runner holding lease `generation` of
/// `process`; returns the request's key.
///
/// # Errors
/// For a take-over, [`StorageError::AlreadyExists`] if another runner asked
/// first; storage failures.
pub fn post_request(
    backend: &dyn StorageBackend,
    process: &str,
    generation: u64,
    kind: &RequestKind,
    from: &str,
) -> Result<String, StorageError> {
    let key = match kind {
        RequestKind::TakeOver { .. } => take_over_key(process, generation),
        RequestKind::Checkpoint => {
            format!("{}{generation:016x}-c-{:016x}", prefix(process), nonce())
        }
        RequestKind::Stop => format!("{}{generation:016x}-s-{:016x}", prefix(process), nonce()),
    };
    let record = RequestRecord {
        version: REQUEST_VERSION,
        kind: kind.clone(),
        from: from.to_string(),
    };
    let bytes = postcard::to_allocvec(&record).expect("requests always encode");
    match backend.put_new(&key, &bytes) {
        Ok(()) => Ok(key),
        // A lost answer: ours if the object holds our bytes.
        Err(error @ StorageError::OutcomeUnknown { .. }) => match backend.get(&key, None) {
            Ok(found) if found == bytes => Ok(key),
            Ok(_) => Err(StorageError::AlreadyExists { key }),
            Err(_) => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// The generation a request key is addressed to, if it names a request
/// (not an answer).
fn request_generation(name: &str) -> Option<u64> {
    if name.strip_suffix(".done").is_some() {
        return None;
    }
    let (generation, _) = name.split_once('-')?;
    (generation.len() == 16)
        .then(|| u64::from_str_radix(generation, 16).ok())
        .flatten()
}

/// The requests found by [`pending_requests`].
#[derive(Debug, Default)]
pub struct Pending {
    pub requests: Vec<StoreRequest>,
    /// Request objects that do not decode (key, reason): the runner answers
    /// them with a refusal instead of acting.
    pub damaged: Vec<(String, String)>,
}

/// The requests of `process` addressed to generation `generation_min` or
/// later that have no answer yet, oldest generation first (at most
/// [`REQUESTS_MAX`]).
///
/// # Errors
/// Storage failures.
pub fn pending_requests(
    backend: &dyn StorageBackend,
    process: &str,
    generation_min: u64,
) -> Result<Pending, StorageError> {
    let prefix = prefix(process);
    let keys = backend.list(&prefix)?;
    let mut found = Pending::default();
    for key in &keys {
        let Some(name) = key.strip_prefix(&prefix) else {
            continue;
        };
        let Some(generation) = request_generation(name) else {
            continue;
        };
        if generation < generation_min || keys.binary_search(&answer_key(key)).is_ok() {
            continue;
        }
        if found.requests.len() + found.damaged.len() == REQUESTS_MAX {
            break;
        }
        let bytes = match ferrite_pagestore::get_bounded(backend, key, REQUEST_BYTES_MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                found.damaged.push((key.clone(), "too long".into()));
                continue;
            }
            // Removed since the listing (answered and cleaned up).
            Err(error) if error.is_not_found() => continue,
            Err(error) => return Err(error),
        };
        match postcard::from_bytes::<RequestRecord>(&bytes) {
            Ok(record) if record.version == REQUEST_VERSION => {
                found.requests.push(StoreRequest {
                    key: key.clone(),
                    generation,
                    kind: record.kind,
                    from: record.from,
                });
            }
            Ok(record) => found
                .damaged
                .push((key.clone(), format!("request version {}", record.version))),
            Err(error) => found.damaged.push((key.clone(), error.to_string())),
        }
    }
    Ok(found)
}

fn damaged(key: &str, reason: &str) -> LeaseError {
    LeaseError::Damaged {
        key: key.to_string(),
        reason: format!("request: {reason}"),
    }
}

/// Writes the answer to request `key`.
///
/// # Errors
/// Storage failures (an answer that exists already is not one).
pub fn answer_request(
    backend: &dyn StorageBackend,
    key: &str,
    answer: &Answer,
) -> Result<(), StorageError> {
    let bytes = postcard::to_allocvec(answer).expect("answers always encode");
    match backend.put_new(&answer_key(key), &bytes) {
        Ok(()) | Err(StorageError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The answer to request `key`, if there is one yet.
///
/// # Errors
/// Storage failures; [`LeaseError::Damaged`] for an answer that does not
/// decode.
pub fn read_answer(backend: &dyn StorageBackend, key: &str) -> Result<Option<Answer>, LeaseError> {
    let key = answer_key(key);
    let bytes = match ferrite_pagestore::get_bounded(backend, &key, REQUEST_BYTES_MAX) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(damaged(&key, "too long")),
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let answer: Answer = postcard::from_bytes(&bytes).map_err(|e| damaged(&key, &e.to_string()))?;
    if answer.version != REQUEST_VERSION {
        return Err(damaged(&key, &format!("version {}", answer.version)));
    }
    Ok(Some(answer))
}

/// Removes the requests (and answers) of `process` addressed to generations
/// before `generation`: their runner is gone.
///
/// # Errors
/// Storage failures.
pub fn remove_stale_requests(
    backend: &dyn StorageBackend,
    process: &str,
    generation: u64,
) -> Result<usize, StorageError> {
    let prefix = prefix(process);
    let mut removed = 0;
    for key in backend.list(&prefix)? {
        let Some(name) = key.strip_prefix(&prefix) else {
            continue;
        };
        let stale = name
            .split_once('-')
            .and_then(|(g, _)| u64::from_str_radix(g, 16).ok())
            .is_some_and(|g| g < generation);
        if stale {
            backend.delete(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferrite_pagestore::MemStore;

    #[test]
    fn a_request_is_found_until_answered() {
        let store = MemStore::new();
        let key = post_request(&store, "p", 3, &RequestKind::Checkpoint, "me").unwrap();
        let pending = pending_requests(&store, "p", 3).unwrap().requests;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].kind, RequestKind::Checkpoint);
        assert_eq!(pending[0].from, "me");
        assert!(pending_requests(&store, "p", 4)
            .unwrap()
            .requests
            .is_empty());
        assert_eq!(read_answer(&store, &key).unwrap(), None);
        answer_request(&store, &key, &Answer::done(9)).unwrap();
        assert!(pending_requests(&store, "p", 3)
            .unwrap()
            .requests
            .is_empty());
        assert_eq!(read_answer(&store, &key).unwrap().unwrap().epoch, 9);
    }

    #[test]
    fn one_take_over_per_generation() {
        let store = MemStore::new();
        let to = |t: &str| RequestKind::TakeOver { to: t.into() };
        post_request(&store, "p", 5, &to("b"), "b").unwrap();
        let second = post_request(&store, "p", 5, &to("c"), "c");
        assert!(matches!(second, Err(StorageError::AlreadyExists { .. })));
        let pending = pending_requests(&store, "p", 5).unwrap().requests;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].kind, to("b"));
    }

    #[test]
    fn stale_requests_are_removed() {
        let store = MemStore::new();
        let old = post_request(&store, "p", 1, &RequestKind::Stop, "x").unwrap();
        answer_request(&store, &old, &Answer::refused("ended")).unwrap();
        post_request(&store, "p", 2, &RequestKind::Stop, "x").unwrap();
        assert_eq!(remove_stale_requests(&store, "p", 2).unwrap(), 2);
        assert_eq!(pending_requests(&store, "p", 0).unwrap().requests.len(), 1);
    }

    #[test]
    fn a_damaged_request_is_set_apart() {
        let store = MemStore::new();
        let key = "procs/p/requests/0000000000000001-takeover";
        store.put_new(key, b"\xff\xff").unwrap();
        let pending = pending_requests(&store, "p", 1).unwrap();
        assert!(pending.requests.is_empty());
        assert_eq!(pending.damaged.len(), 1);
        assert_eq!(pending.damaged[0].0, key);
    }
}
