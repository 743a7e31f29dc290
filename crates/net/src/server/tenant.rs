//! Tenants: each one's store, space, connections, request rate and
//! subscribers.

use super::{DataLocation, ServerLimits};
use crate::wire::{self, Reply};
use ferrite_pagestore::{LocalStore, StorageBackend, StorageError};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Instant,
};
use tokio::sync::mpsc;

/// Subscriptions one connection may hold.
pub(crate) const SUBSCRIPTIONS_MAX: usize = 64;

/// The tenants opened so far.
#[derive(Debug)]
pub(crate) struct Tenants {
    data: DataLocation,
    limits: ServerLimits,
    open: tokio::sync::Mutex<HashMap<String, Arc<Tenant>>>,
}

impl Tenants {
    pub(crate) fn new(data: DataLocation, limits: ServerLimits) -> Self {
        Self {
            data,
            limits,
            open: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The tenant `name` (admitted by the caller), opened at its first use:
    /// its store, and the bytes it holds from a scan of it.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<Tenant>, StorageError> {
        // Held across the open so that a tenant is scanned once.
        let mut open = self.open.lock().await;
        if let Some(tenant) = open.get(name) {
            return Ok(tenant.clone());
        }
        let data = self.data.clone();
        let owned = name.to_string();
        let (store, bytes_used) = tokio::task::spawn_blocking(move || open_store(&data, &owned))
            .await
            .map_err(|e| StorageError::Io {
                key: String::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let limits = &self.limits;
        let tenant = Arc::new(Tenant {
            name: name.to_string(),
            store,
            bytes_used: AtomicU64::new(bytes_used),
            bytes_max: limits.tenant_bytes_max,
            connections: AtomicU32::new(0),
            rate: Mutex::new(Bucket {
                tokens: f64::from(limits.tenant_requests_burst),
                at: Instant::now(),
            }),
            rate_per_s: f64::from(limits.tenant_requests_per_s),
            burst: f64::from(limits.tenant_requests_burst),
            subscribers: Mutex::new(Vec::new()),
        });
        open.insert(name.to_string(), tenant.clone());
        Ok(tenant)
    }
}

/// Opens the store of tenant `name` and adds up what it holds.
fn open_store(
    data: &DataLocation,
    name: &str,
) -> Result<(Arc<dyn StorageBackend>, u64), StorageError> {
    assert!(
        wire::is_tenant_name(name),
        "tenant names are checked at the handshake"
    );
    let store: Arc<dyn StorageBackend> = match data {
        DataLocation::Dir(dir) => Arc::new(
            // Another connection may list and read an object while it is
            // written, and a crash mid-write must not leave it short.
            LocalStore::open(dir.join("tenants").join(name))?.whole_objects_only(),
        ),
        DataLocation::S3(url) => {
            let url = format!("{url}/{name}");
            let options = ferrite_remote::S3Options::default();
            Arc::new(ferrite_remote::S3Store::open(&url, &options).map_err(|e| {
                StorageError::Unavailable {
                    key: String::new(),
                    reason: e.to_string(),
                }
            })?)
        }
    };
    let mut bytes = 0u64;
    for key in store.list("")? {
        bytes = bytes.saturating_add(store.size(&key)?.unwrap_or(0));
    }
    Ok((store, bytes))
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A connection that asked for `Created` notices.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) connection: u64,
    pub(crate) prefix: String,
    pub(crate) queue: mpsc::Sender<Vec<u8>>,
    /// A notice could not be queued: the next one is preceded by an empty key.
    pub(crate) missed: Arc<AtomicBool>,
}

/// One tenant.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn StorageBackend>,
    bytes_used: AtomicU64,
    bytes_max: u64,
    pub(crate) connections: AtomicU32,
    rate: Mutex<Bucket>,
    rate_per_s: f64,
    burst: f64,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl Tenant {
    /// Takes one request from the tenant's rate; false if it is spent.
    pub(crate) fn take_request(&self) -> bool {
        let mut bucket = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate_per_s;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Reserves `bytes` of the tenant's space.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] for `key` if the space would be exceeded.
    pub(crate) fn reserve(&self, key: &str, bytes: u64) -> Result<(), StorageError> {
        self.bytes_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= self.bytes_max)
            })
            .map(|_| ())
            .map_err(|_| StorageError::NoSpace {
                key: key.to_string(),
            })
    }

    /// Gives back `bytes` (a failed put, a deleted object).
    pub(crate) fn release(&self, bytes: u64) {
        let _ = self
            .bytes_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a subscription of `connection`.
    ///
    /// # Errors
    /// The connection holds [`SUBSCRIPTIONS_MAX`] already.
    pub(crate) fn subscribe(&self, subscriber: Subscriber) -> Result<(), String> {
        let mut subscribers = self.subscribers();
        let held = subscribers
            .iter()
            .filter(|s| s.connection == subscriber.connection)
            .count();
        if held >= SUBSCRIPTIONS_MAX {
            return Err(format!(
                "a connection holds at most {SUBSCRIPTIONS_MAX} subscriptions"
            ));
        }
        subscribers.push(subscriber);
        Ok(())
    }

    /// Drops the subscriptions of `connection` (it closed).
    pub(crate) fn unsubscribe(&self, connection: u64) {
        self.subscribers().retain(|s| s.connection != connection);
    }

    /// Tells the subscribers of a prefix of `key` that it was created. Never
    /// waits: a subscriber whose queue is full misses the notice and is told
    /// so (an empty key) with the next one it can take.
    pub(crate) fn created(&self, key: &str) {
        let subscribers = self.subscribers();
        for subscriber in subscribers.iter().filter(|s| key.starts_with(&s.prefix)) {
            if subscriber.missed.load(Ordering::Acquire) {
                let missed = notice(String::new());
                if subscriber.queue.try_send(missed).is_err() {
                    continue;
                }
                subscriber.missed.store(false, Ordering::Release);
            }
            if subscriber.queue.try_send(notice(key.to_string())).is_err() {
                subscriber.missed.store(true, Ordering::Release);
            }
        }
    }
}

/// An encoded `Created` notice.
fn notice(key: String) -> Vec<u8> {
    wire::encode(0, &Reply::Created { key }, &[])
}
