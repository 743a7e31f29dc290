//! Store-held leases: one runner per process, across machines that share only
//! the store, on create-only puts alone (no compare-and-swap, no wall clocks).
//!
//! A lease of process `P` is a chain of create-only objects under
//! `procs/P/leases/`:
//!
//! ```text
//! <generation:016x>                  the grant: holder, duration, how it was obtained
//! <generation:016x>-r<seq:016x>      renewals by the holder, seq counting from 1
//! <generation:016x>-released         the holder stopped: anyone may take over now
//! ```
//!
//! - **Acquire.** With no grant, create generation 1. After a release, create
//!   the next generation at once. A grant that names this runner (a hand-over)
//!   is taken as it is. Otherwise the contender *watches* the newest grant:
//!   every time a new renewal (or the grant itself) is seen, it notes the time
//!   on its own monotonic clock; once `duration * (1 + drift)` passes with
//!   nothing new, the lease has expired and it creates the next generation.
//!   Create-only puts make exactly one contender win.
//! - **Renew.** The holder notes its clock, then creates the next renewal; on
//!   success the lease is valid until `duration * (1 - drift)` after that
//!   note. A runner whose lease is no longer valid must stop before it writes
//!   anything more ([`StoreLease::check`]). A newer grant seen while renewing
//!   means the process was taken over: fenced.
//! - **Hand over / release.** The holder creates the next grant naming the
//!   receiver (who takes it without waiting), or a release marker.
//!
//! Why no two runners: the holder's validity ends `duration * (1 - drift)` of
//! its clock after it *sent* its last renewal; a contender can only take over
//! `duration * (1 + drift)` of its clock after it *saw* that renewal, which is
//! later in real time than the send. With both clocks' rates within `drift`
//! of real time (`drift` well below 1), the holder stops first. Only clock
//! rates matter, never clock values: no clock is compared with another's.
//!
//! A put whose outcome is unknown (an error other than "already exists") is
//! resolved by reading the object back and comparing the unique holder tag
//! written in it.

use ferrite_pagestore::{StorageBackend, StorageError};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A monotonic clock: time since some fixed origin of its own. Injected, so
/// that tests drive time and model clocks that run fast or slow.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The time since this clock's origin; never decreases.
    fn now(&self) -> Duration;
}

/// The host's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock moved by hand (for tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a lease lasts and how far clocks may drift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseConfig {
    /// How long a renewal keeps the lease (before the drift margin).
    pub duration: Duration,
    /// The most a clock's rate may differ from real time, as a fraction (for
    /// example 0.01 for 1%). At most 0.25.
    pub drift: f64,
    /// How often a contender looks at the lease while it waits.
    pub poll: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            drift: 0.01,
            poll: Duration::from_millis(250),
        }
    }
}

impl LeaseConfig {
    /// How long after sending a renewal the holder may go on (its clock).
    pub fn valid_for(&self) -> Duration {
        self.duration.mul_f64(1.0 - self.drift)
    }

    /// How long a contender waits after seeing the last renewal (its clock).
    pub fn expires_after(&self) -> Duration {
        self.duration.mul_f64(1.0 + self.drift)
    }

    /// The configuration a contender judges a holder's lease by: the longer
    /// of its own duration and the one the holder recorded in its grant.
    fn judging(&self, holder_duration_ms: u64) -> Self {
        Self {
            duration: self.duration.max(Duration::from_millis(holder_duration_ms)),
            ..*self
        }
    }

    fn check(&self) -> Result<(), LeaseError> {
        if self.duration.is_zero() || !(0.0..=0.25).contains(&self.drift) || self.poll.is_zero() {
            return Err(LeaseError::Config(format!("{self:?}")));
        }
        Ok(())
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another runner holds the lease and renews it.
    #[error("process {process} runs elsewhere (lease generation {generation} held by {holder}, renewed)")]
    Held {
        process: String,
        generation: u64,
        holder: String,
    },
    /// A newer generation exists: this runner was taken over and must stop.
    #[error("process {process} was taken over (lease generation {newer} follows this runner's {generation}); this runner must stop")]
    Fenced {
        process: String,
        generation: u64,
        newer: u64,
    },
    /// The lease could not be renewed in time: the runner must stop.
    #[error(
        "the lease of process {process} expired (not renewed for {since:?}); this runner must stop"
    )]
    Expired { process: String, since: Duration },
    /// A lease object does not decode.
    #[error("lease object {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
    #[error("invalid lease configuration {0}")]
    Config(String),
    /// The caller stopped waiting for the lease, for the reason given.
    #[error("{0}")]
    GaveUp(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How a grant was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Obtained {
    /// No lease existed.
    First,
    /// The previous generation expired.
    Expired,
    /// The previous holder released it.
    Released,
    /// The previous holder handed it to this holder.
    HandedOver,
    /// A runner that excludes others by other means (a local run lock)
    /// recorded its generation; it never renews.
    Recorded,
    /// The holder's own lease expired while it could not reach the store, and
    /// no one took over meanwhile: it took the next generation itself.
    Regained,
}

/// The contents of a grant object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Grant {
    version: u32,
    /// Who holds this generation: a unique tag (host, process id, nonce).
    holder: String,
    duration_ms: u64,
    obtained: Obtained,
}

const GRANT_VERSION: u32 = 1;

/// What the contender sees of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    None,
    Live {
        generation: u64,
        holder: String,
        /// Renewals seen (0: the grant only); grows while the holder lives.
        renewals: u64,
        /// The lease duration the holder renews by.
        duration_ms: u64,
    },
    Released {
        generation: u64,
    },
    HandedTo {
        generation: u64,
        holder: String,
        duration_ms: u64,
    },
}

/// A held store lease. See the module documentation.
#[derive(Debug)]
pub struct StoreLease {
    backend: Arc<dyn StorageBackend>,
    process: String,
    prefix: String,
    holder: String,
    generation: u64,
    config: LeaseConfig,
    clock: Arc<dyn Clock>,
    /// Clock time at which the last successful renewal (or the grant) was sent.
    sent_at: Duration,
    renewals: u64,
    /// Obtained after the previous holder's lease expired.
    took_over: bool,
}

fn grant_key(prefix: &str, generation: u64) -> String {
    format!("{prefix}{generation:016x}")
}

fn renewal_key(prefix: &str, generation: u64, seq: u64) -> String {
    format!("{prefix}{generation:016x}-r{seq:016x}")
}

fn released_key(prefix: &str, generation: u64) -> String {
    format!("{prefix}{generation:016x}-released")
}

/// The newest generation and what is known of it, from a listing.
fn view(backend: &dyn StorageBackend, prefix: &str) -> Result<View, LeaseError> {
    let keys = backend.list(prefix)?;
    let names: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(prefix)).collect();
    let newest = names
        .iter()
        .filter(|n| n.len() == 16)
        .filter_map(|n| u64::from_str_radix(n, 16).ok())
        .max();
    let Some(generation) = newest else {
        return Ok(View::None);
    };
    let head = format!("{generation:016x}-");
    if names
        .iter()
        .any(|n| n.strip_prefix(&head) == Some("released"))
    {
        return Ok(View::Released { generation });
    }
    let renewals = names
        .iter()
        .filter_map(|n| n.strip_prefix(&head)?.strip_prefix('r'))
        .filter_map(|seq| u64::from_str_radix(seq, 16).ok())
        .max()
        .unwrap_or(0);
    let grant = read_grant(backend, &grant_key(prefix, generation))?;
    if grant.obtained == Obtained::HandedOver && renewals == 0 {
        return Ok(View::HandedTo {
            generation,
            holder: grant.holder,
            duration_ms: grant.duration_ms,
        });
    }
    Ok(View::Live {
        generation,
        holder: grant.holder,
        renewals,
        duration_ms: grant.duration_ms,
    })
}

fn read_grant(backend: &dyn StorageBackend, key: &str) -> Result<Grant, LeaseError> {
    /// A grant is a few dozen bytes; more is not a grant.
    const GRANT_BYTES_MAX: u64 = 4096;
    let bytes =
        ferrite_pagestore::get_bounded(backend, key, GRANT_BYTES_MAX)?.ok_or_else(|| {
            LeaseError::Damaged {
                key: key.to_string(),
                reason: format!("longer than {GRANT_BYTES_MAX} bytes"),
            }
        })?;
    let grant: Grant = postcard::from_bytes(&bytes).map_err(|e| LeaseError::Damaged {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    if grant.version != GRANT_VERSION {
        return Err(LeaseError::Damaged {
            key: key.to_string(),
            reason: format!("lease version {} is not supported", grant.version),
        });
    }
    Ok(grant)
}

/// Creates object `key`; an outcome that is unknown (an error other than
/// "already exists") is resolved by reading the object back and looking for
/// `tag` in it. `Ok(false)`: someone else's object is there.
fn create(
    backend: &dyn StorageBackend,
    key: &str,
    bytes: &[u8],
    tag: &str,
) -> Result<bool, LeaseError> {
    match backend.put_new(key, bytes) {
        Ok(()) => Ok(true),
        Err(StorageError::AlreadyExists { .. }) => Ok(false),
        Err(error) => match backend.get(key, None) {
            Ok(found) => Ok(found == bytes && !tag.is_empty()),
            Err(e) if e.is_not_found() => Err(error.into()),
            Err(e) => Err(e.into()),
        },
    }
}

impl StoreLease {
    /// Takes the lease of `process` for `holder` (a tag unique to this
    /// runner), waiting while another holder's lease may still be live:
    /// `sleep(d)` is called between looks (`std::thread::sleep` in production;
    /// tests advance a [`ManualClock`]). Refuses at once with
    /// [`LeaseError::Held`] if the holder is seen renewing, unless
    /// `wait_while_held`.
    ///
    /// # Errors
    /// [`LeaseError::Held`], storage failures, damaged lease objects.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire(
        backend: Arc<dyn StorageBackend>,
        process: &str,
        holder: &str,
        config: LeaseConfig,
        clock: Arc<dyn Clock>,
        wait_while_held: bool,
        sleep: &mut dyn FnMut(Duration),
    ) -> Result<Self, LeaseError> {
        Self::acquire_until(
            backend,
            process,
            holder,
            config,
            clock,
            wait_while_held,
            &mut |poll| {
                sleep(poll);
                Ok(())
            },
        )
    }

    /// As [`StoreLease::acquire`], but `sleep` may end the wait with an
    /// error, which is returned (a take-over that was refused, a deadline).
    ///
    /// # Errors
    /// As [`StoreLease::acquire`], and the errors of `sleep`.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_until(
        backend: Arc<dyn StorageBackend>,
        process: &str,
        holder: &str,
        config: LeaseConfig,
        clock: Arc<dyn Clock>,
        wait_while_held: bool,
        sleep: &mut dyn FnMut(Duration) -> Result<(), LeaseError>,
    ) -> Result<Self, LeaseError> {
        config.check()?;
        let prefix = format!("procs/{process}/leases/");
        let mut watched: Option<((u64, u64), Duration)> = None;
        loop {
            let next = match view(&*backend, &prefix)? {
                View::None => Some((1, Obtained::First)),
                View::Released { generation } => Some((generation + 1, Obtained::Released)),
                View::HandedTo {
                    generation,
                    holder: to,
                    ..
                } if to == holder => {
                    let lease = Self::held(backend, process, holder, generation, config, clock);
                    return Ok(lease);
                }
                // Handed to someone else: theirs, and watched like any lease
                // (it expires if they never start renewing it).
                View::HandedTo {
                    generation,
                    holder: current,
                    duration_ms,
                } => Self::watch(
                    &mut watched,
                    (generation, 0),
                    &current,
                    process,
                    &config.judging(duration_ms),
                    &*clock,
                    wait_while_held,
                    sleep,
                )?,
                View::Live {
                    generation,
                    holder: current,
                    renewals,
                    duration_ms,
                } => Self::watch(
                    &mut watched,
                    (generation, renewals),
                    &current,
                    process,
                    &config.judging(duration_ms),
                    &*clock,
                    wait_while_held,
                    sleep,
                )?,
            };
            let Some((generation, obtained)) = next else {
                continue;
            };
            let grant = Grant {
                version: GRANT_VERSION,
                holder: holder.to_string(),
                duration_ms: config.duration.as_millis() as u64,
                obtained,
            };
            let bytes = postcard::to_allocvec(&grant).expect("grants always encode");
            let sent_at = clock.now();
            if create(&*backend, &grant_key(&prefix, generation), &bytes, holder)? {
                let mut lease = Self::held(backend, process, holder, generation, config, clock);
                lease.sent_at = sent_at;
                lease.took_over = grant.obtained == Obtained::Expired;
                return Ok(lease);
            }
            // Another contender created it first: it is live.
            if !wait_while_held {
                return Err(LeaseError::Held {
                    process: process.to_string(),
                    generation,
                    holder: "another runner that just took it".into(),
                });
            }
            watched = None;
        }
    }

    /// One look at a lease someone else holds: `Some` (the next generation)
    /// once it has shown no sign of life for [`LeaseConfig::expires_after`];
    /// `None` after sleeping a poll interval.
    #[allow(clippy::too_many_arguments)]
    fn watch(
        watched: &mut Option<((u64, u64), Duration)>,
        seen: (u64, u64),
        holder: &str,
        process: &str,
        config: &LeaseConfig,
        clock: &dyn Clock,
        wait_while_held: bool,
        sleep: &mut dyn FnMut(Duration) -> Result<(), LeaseError>,
    ) -> Result<Option<(u64, Obtained)>, LeaseError> {
        let now = clock.now();
        match *watched {
            Some((last, since)) if last == seen => {
                if now.saturating_sub(since) >= config.expires_after() {
                    return Ok(Some((seen.0 + 1, Obtained::Expired)));
                }
            }
            Some(_) if !wait_while_held => {
                return Err(LeaseError::Held {
                    process: process.to_string(),
                    generation: seen.0,
                    holder: holder.to_string(),
                });
            }
            _ => *watched = Some((seen, now)),
        }
        sleep(config.poll)?;
        Ok(None)
    }

    fn held(
        backend: Arc<dyn StorageBackend>,
        process: &str,
        holder: &str,
        generation: u64,
        config: LeaseConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let sent_at = clock.now();
        Self {
            backend,
            process: process.to_string(),
            prefix: format!("procs/{process}/leases/"),
            holder: holder.to_string(),
            generation,
            config,
            clock,
            sent_at,
            renewals: 0,
            took_over: false,
        }
    }

    /// Whether this lease was taken over from a holder that stopped renewing
    /// it (a crash, or a holder cut off from the store) rather than released
    /// or handed over: a write the old holder sent may still land (see
    /// `Session::took_over`).
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// The generation held: every object this runner writes may carry it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How long the lease stays valid without a renewal (zero: expired).
    pub fn remaining(&self) -> Duration {
        (self.sent_at + self.config.valid_for()).saturating_sub(self.clock.now())
    }

    /// Fails once the lease may have expired: the runner must stop before it
    /// writes anything more.
    ///
    /// # Errors
    /// [`LeaseError::Expired`].
    pub fn check(&self) -> Result<(), LeaseError> {
        if self.remaining().is_zero() {
            return Err(LeaseError::Expired {
                process: self.process.clone(),
                since: self.clock.now().saturating_sub(self.sent_at),
            });
        }
        Ok(())
    }

    /// Renews the lease (call it well within [`LeaseConfig::valid_for`], for
    /// example every third of it).
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if a newer generation exists; [`LeaseError::Expired`]
    /// if the lease expired before the renewal was sent; storage failures
    /// (the lease then simply runs out unless a later renewal succeeds).
    pub fn renew(&mut self) -> Result<(), LeaseError> {
        self.check()?;
        if let Some(newer) = self.newer_generation()? {
            return Err(LeaseError::Fenced {
                process: self.process.clone(),
                generation: self.generation,
                newer,
            });
        }
        let seq = self.renewals + 1;
        let sent_at = self.clock.now();
        let key = renewal_key(&self.prefix, self.generation, seq);
        if !create(&*self.backend, &key, self.holder.as_bytes(), &self.holder)? {
            return Err(LeaseError::Damaged {
                key,
                reason: "a renewal of this lease was written by someone else".into(),
            });
        }
        self.renewals = seq;
        self.sent_at = sent_at;
        if seq > 1 {
            // Best effort: an old renewal left behind is only clutter.
            let _ = self
                .backend
                .delete(&renewal_key(&self.prefix, self.generation, seq - 1));
        }
        Ok(())
    }

    /// Takes the next generation after this runner's lease expired without
    /// anyone taking over (the store was unreachable for longer than the
    /// lease): the runner goes on where it paused. The writer generation in
    /// object names stays what it was; only the lease's generation moves.
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if another runner took a newer generation, or
    /// wins the race for the next one; storage failures (try again later).
    pub fn regain(&mut self) -> Result<(), LeaseError> {
        let newest = match view(&*self.backend, &self.prefix)? {
            View::Live { generation, .. } | View::HandedTo { generation, .. } => generation,
            View::Released { generation } => generation.saturating_add(1),
            View::None => {
                return Err(LeaseError::Damaged {
                    key: grant_key(&self.prefix, self.generation),
                    reason: "the lease this runner held is gone".into(),
                })
            }
        };
        let fenced = |newer| LeaseError::Fenced {
            process: self.process.clone(),
            generation: self.generation,
            newer,
        };
        if newest != self.generation {
            return Err(fenced(newest));
        }
        let next = self.generation + 1;
        let grant = Grant {
            version: GRANT_VERSION,
            holder: self.holder.clone(),
            duration_ms: self.config.duration.as_millis() as u64,
            obtained: Obtained::Regained,
        };
        let bytes = postcard::to_allocvec(&grant).expect("grants always encode");
        let sent_at = self.clock.now();
        if !create(
            &*self.backend,
            &grant_key(&self.prefix, next),
            &bytes,
            &self.holder,
        )? {
            return Err(fenced(next));
        }
        self.generation = next;
        self.sent_at = sent_at;
        self.renewals = 0;
        Ok(())
    }

    /// The store the lease is held in.
    pub(crate) fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// The process the lease is of.
    pub fn process(&self) -> &str {
        &self.process
    }

    /// The configuration the lease was taken with.
    pub fn config(&self) -> LeaseConfig {
        self.config
    }

    /// The holder's unique tag.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The clock time until which the lease is valid without a renewal.
    pub fn valid_until(&self) -> Duration {
        self.sent_at + self.config.valid_for()
    }

    fn newer_generation(&self) -> Result<Option<u64>, LeaseError> {
        Ok(match view(&*self.backend, &self.prefix)? {
            View::None => None,
            View::Live { generation, .. }
            | View::Released { generation }
            | View::HandedTo { generation, .. } => {
                (generation > self.generation).then_some(generation)
            }
        })
    }

    /// Gives the lease up: another runner may take over at once.
    ///
    /// # Errors
    /// Storage failures (the lease then expires by itself).
    pub fn release(self) -> Result<(), LeaseError> {
        let key = released_key(&self.prefix, self.generation);
        create(&*self.backend, &key, self.holder.as_bytes(), &self.holder)?;
        Ok(())
    }

    /// Hands the lease to runner `to`, which takes it without waiting.
    ///
    /// # Errors
    /// [`LeaseError::Fenced`] if this runner was taken over meanwhile; storage
    /// failures.
    pub fn hand_over(self, to: &str) -> Result<(), LeaseError> {
        self.check()?;
        let grant = Grant {
            version: GRANT_VERSION,
            holder: to.to_string(),
            duration_ms: self.config.duration.as_millis() as u64,
            obtained: Obtained::HandedOver,
        };
        let bytes = postcard::to_allocvec(&grant).expect("grants always encode");
        let next = self.generation + 1;
        if create(&*self.backend, &grant_key(&self.prefix, next), &bytes, to)? {
            Ok(())
        } else {
            Err(LeaseError::Fenced {
                process: self.process,
                generation: self.generation,
                newer: next,
            })
        }
    }
}

/// Records a new writer generation for `holder`, a runner that excludes
/// others by other means (the local run lock): creates the next grant, which
/// is never renewed. Returns the generation, unique to this runner.
///
/// # Errors
/// Storage failures; damaged lease objects.
pub fn record_generation(
    backend: &dyn StorageBackend,
    process: &str,
    holder: &str,
) -> Result<u64, LeaseError> {
    let prefix = format!("procs/{process}/leases/");
    let grant = Grant {
        version: GRANT_VERSION,
        holder: holder.to_string(),
        duration_ms: 0,
        obtained: Obtained::Recorded,
    };
    let bytes = postcard::to_allocvec(&grant).expect("grants always encode");
    // A competitor can only be a runner that ignores the run lock; each lost
    // race means a newer grant exists, so this ends.
    loop {
        let generation = match view(backend, &prefix)? {
            View::None => 1,
            View::Live { generation, .. }
            | View::Released { generation }
            | View::HandedTo { generation, .. } => generation + 1,
        };
        if create(backend, &grant_key(&prefix, generation), &bytes, holder)? {
            return Ok(generation);
        }
    }
}

/// Removes the lease objects of generations before `generation` (after a
/// runner of `generation` holds the process, they say nothing any more).
///
/// # Errors
/// Storage failures (the objects are then removed by a later call).
pub fn remove_lease_history(
    backend: &dyn StorageBackend,
    process: &str,
    generation: u64,
) -> Result<usize, StorageError> {
    let prefix = format!("procs/{process}/leases/");
    let mut removed = 0;
    for key in backend.list(&prefix)? {
        let name = key.strip_prefix(&prefix).unwrap_or(&key);
        let older = name
            .get(..16)
            .and_then(|g| u64::from_str_radix(g, 16).ok())
            .is_some_and(|g| g < generation);
        if older {
            backend.delete(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What a requester sees of the lease of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// No lease was ever taken.
    None,
    /// The last holder released it.
    Released { generation: u64 },
    /// `holder` holds generation `generation` (or held it, if it crashed:
    /// only watching for renewals tells). `recorded`: a runner under a local
    /// lock recorded it and never renews it.
    Held {
        generation: u64,
        holder: String,
        recorded: bool,
    },
    /// Handed over to `holder`, which has not renewed it yet.
    HandedTo { generation: u64, holder: String },
}

/// The state of the lease of `process`.
///
/// # Errors
/// Storage failures; damaged lease objects.
pub fn lease_state(backend: &dyn StorageBackend, process: &str) -> Result<LeaseState, LeaseError> {
    let prefix = format!("procs/{process}/leases/");
    Ok(match view(backend, &prefix)? {
        View::None => LeaseState::None,
        View::Released { generation } => LeaseState::Released { generation },
        View::HandedTo {
            generation, holder, ..
        } => LeaseState::HandedTo { generation, holder },
        View::Live {
            generation, holder, ..
        } => {
            let grant = read_grant(backend, &grant_key(&prefix, generation))?;
            LeaseState::Held {
                generation,
                holder,
                recorded: grant.obtained == Obtained::Recorded,
            }
        }
    })
}

/// The runner that holds (or, if it crashed, last held) the lease of
/// `process`, for display: `None` if no lease was taken, the last one was
/// released, or it records a runner under a local lock.
///
/// # Errors
/// Storage failures; damaged lease objects.
pub fn lease_holder(
    backend: &dyn StorageBackend,
    process: &str,
) -> Result<Option<String>, LeaseError> {
    let prefix = format!("procs/{process}/leases/");
    match view(backend, &prefix)? {
        View::Live {
            generation, holder, ..
        } => {
            let grant = read_grant(backend, &grant_key(&prefix, generation))?;
            Ok((grant.obtained != Obtained::Recorded).then_some(holder))
        }
        View::HandedTo { holder, .. } => Ok(Some(holder)),
        View::None | View::Released { .. } => Ok(None),
    }
}
