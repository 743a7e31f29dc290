//! The server's counters: atomics, and a fixed-bucket latency histogram.

use crate::wire::{CounterSnapshot, RequestKind};
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, PoisonError,
    },
};

/// Buckets of the histogram: 8 exact ones (0 ..= 7 us), then four per
/// power of two up to 2^32 us (over an hour).
const BUCKETS: usize = 8 + 4 * 30;

/// A latency histogram in microseconds with fixed buckets (about 25 %
/// wide): recording is one atomic add, percentiles are read from the counts.
#[derive(Debug)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket of `us`.
fn bucket_of(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let log = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (log - 2)) & 3) as usize;
    (8 + (log - 3) * 4 + sub).min(BUCKETS - 1)
}

/// The largest value of bucket `bucket`.
fn bucket_max(bucket: usize) -> u64 {
    if bucket < 8 {
        return bucket as u64;
    }
    let log = (bucket - 8) / 4 + 3;
    let sub = ((bucket - 8) % 4) as u64;
    ((4 + sub + 1) << (log - 2)) - 1
}

impl Histogram {
    pub(crate) fn record(&self, us: u64) {
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The value below which `per_mille` of the samples lie (the upper
    /// bound of its bucket); 0 without samples.
    pub(crate) fn percentile(&self, per_mille: u64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (total * per_mille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_max(bucket);
            }
        }
        bucket_max(BUCKETS - 1)
    }
}

/// Everything the server counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    requests: [AtomicU64; RequestKind::ALL.len()],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) gets_served: AtomicU64,
    pub(crate) bytes_pushed: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) get_latency: Histogram,
}

impl Counters {
    pub(crate) fn request(&self, kind: RequestKind) {
        self.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refusal(&self, reason: &'static str) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            connections_open: load(&self.connections_open),
            connections_total: load(&self.connections_total),
            requests: RequestKind::ALL
                .iter()
                .map(|kind| {
                    (
                        kind.name().to_string(),
                        load(&self.requests[*kind as usize]),
                    )
                })
                .collect(),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            gets_served: load(&self.gets_served),
            bytes_pushed: load(&self.bytes_pushed),
            refusals: self
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(reason, count)| ((*reason).to_string(), *count))
                .collect(),
            get_us_p50: self.get_latency.percentile(500),
            get_us_p99: self.get_latency.percentile(990),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous_max = None;
        for bucket in 0..BUCKETS {
            let max = bucket_max(bucket);
            if let Some(previous) = previous_max {
                assert_eq!(bucket_of(previous + 1), bucket, "first of {bucket}");
                assert!(max > previous);
            }
            assert_eq!(bucket_of(max), bucket, "last of {bucket}");
            previous_max = Some(max);
        }
    }

    #[test]
    fn percentiles_come_from_the_counts() {
        let histogram = Histogram::default();
        assert_eq!(histogram.percentile(500), 0);
        for _ in 0..98 {
            histogram.record(100);
        }
        histogram.record(5_000);
        histogram.record(9_000);
        let p50 = histogram.percentile(500);
        assert!((100..=127).contains(&p50), "{p50}");
        let p99 = histogram.percentile(990);
        assert!((5_000..=6_143).contains(&p99), "{p99}");
    }
}
