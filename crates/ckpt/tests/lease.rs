//! Store-held leases over an in-memory store with clocks driven by hand: one
//! holder at a time, takeover only after expiry (by the contender's own clock),
//! release and hand-over at once, fencing of a runner taken over, and safety
//! with clocks whose rates differ by the allowed drift.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::{Clock, LeaseConfig, LeaseError, ManualClock, MonotonicClock, StoreLease};
use ferrite_pagestore::{MemStore, StorageBackend};
use std::{
    sync::{Arc, Barrier},
    time::Duration,
};

fn config() -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(10),
        drift: 0.01,
        poll: Duration::from_millis(100),
    }
}

fn store() -> Arc<dyn StorageBackend> {
    Arc::new(MemStore::new())
}

/// A clock whose rate is `rate` times that of `real`.
#[derive(Debug)]
struct ScaledClock {
    real: Arc<ManualClock>,
    rate: f64,
}

impl Clock for ScaledClock {
    fn now(&self) -> Duration {
        self.real.now().mul_f64(self.rate)
    }
}

fn acquire(
    backend: &Arc<dyn StorageBackend>,
    holder: &str,
    clock: &Arc<ManualClock>,
    sleep: &mut dyn FnMut(Duration),
) -> Result<StoreLease, LeaseError> {
    StoreLease::acquire(
        backend.clone(),
        "job",
        holder,
        config(),
        clock.clone(),
        false,
        sleep,
    )
}

#[test]
fn the_first_runner_takes_generation_one_and_renewing_keeps_it() {
    let backend = store();
    let clock = Arc::new(ManualClock::default());
    let mut lease = acquire(&backend, "a", &clock, &mut |_| panic!("no wait")).unwrap();
    assert_eq!(lease.generation(), 1);
    for _ in 0..20 {
        clock.advance(Duration::from_secs(3));
        lease.renew().unwrap();
        lease.check().unwrap();
    }
    clock.advance(config().valid_for());
    assert!(matches!(lease.check(), Err(LeaseError::Expired { .. })));
    assert!(matches!(lease.renew(), Err(LeaseError::Expired { .. })));
}

#[test]
fn a_contender_is_refused_while_the_holder_renews() {
    let backend = store();
    let clock = Arc::new(ManualClock::default());
    let mut holder = acquire(&backend, "a", &clock, &mut |_| {}).unwrap();
    let mut since_renewal = Duration::ZERO;
    let refused = acquire(&backend, "b", &clock, &mut |d| {
        clock.advance(d);
        since_renewal += d;
        if since_renewal >= Duration::from_secs(3) {
            holder.renew().unwrap();
            since_renewal = Duration::ZERO;
        }
    });
    match refused {
        Err(LeaseError::Held {
            generation, holder, ..
        }) => assert_eq!((generation, holder.as_str()), (1, "a")),
        other => panic!("expected Held, got {other:?}"),
    }
}

#[test]
fn a_crashed_holder_is_taken_over_after_expiry_and_is_fenced() {
    let backend = store();
    let (clock_a, clock_b) = (
        Arc::new(ManualClock::default()),
        Arc::new(ManualClock::default()),
    );
    let mut old = acquire(&backend, "a", &clock_a, &mut |_| {}).unwrap();
    old.renew().unwrap();
    // "a" stops renewing (it hangs, or its machine is cut off).
    let mut waited = Duration::ZERO;
    let new = acquire(&backend, "b", &clock_b, &mut |d| {
        clock_b.advance(d);
        waited += d;
    })
    .unwrap();
    assert_eq!(new.generation(), 2);
    assert!(
        waited >= config().expires_after(),
        "took over after {waited:?}"
    );
    // By its own clock "a" has not noticed yet: its next renewal is fenced.
    assert!(old.check().is_ok());
    match old.renew() {
        Err(LeaseError::Fenced {
            generation, newer, ..
        }) => assert_eq!((generation, newer), (1, 2)),
        other => panic!("expected Fenced, got {other:?}"),
    }
}

#[test]
fn a_released_or_handed_over_lease_is_taken_at_once() {
    let backend = store();
    let clock = Arc::new(ManualClock::default());
    let first = acquire(&backend, "a", &clock, &mut |_| {}).unwrap();
    first.release().unwrap();
    let second = acquire(&backend, "b", &clock, &mut |_| {
        panic!("no wait after a release")
    })
    .unwrap();
    assert_eq!(second.generation(), 2);
    second.hand_over("c").unwrap();
    let mut third = acquire(&backend, "c", &clock, &mut |_| {
        panic!("no wait for the receiver")
    })
    .unwrap();
    assert_eq!(third.generation(), 3);
    third.renew().unwrap();
    // Anyone else watches the receiver renew, and is refused.
    let mut since_renewal = Duration::ZERO;
    let refused = acquire(&backend, "d", &clock, &mut |d| {
        clock.advance(d);
        since_renewal += d;
        if since_renewal >= Duration::from_secs(2) {
            third.renew().unwrap();
            since_renewal = Duration::ZERO;
        }
    });
    assert!(matches!(
        refused,
        Err(LeaseError::Held { generation: 3, .. })
    ));
}

#[test]
fn of_racing_contenders_exactly_one_wins() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const RUNNERS: usize = 8;
    let config = LeaseConfig {
        duration: Duration::from_secs(2),
        drift: 0.01,
        poll: Duration::from_millis(5),
    };
    for _ in 0..10 {
        let backend = store();
        let barrier = Arc::new(Barrier::new(RUNNERS));
        let refused = Arc::new(AtomicUsize::new(0));
        let winners: usize = (0..RUNNERS)
            .map(|i| {
                let (backend, barrier, refused) =
                    (backend.clone(), barrier.clone(), refused.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let acquired = StoreLease::acquire(
                        backend,
                        "job",
                        &format!("runner-{i}"),
                        config,
                        Arc::new(MonotonicClock::default()),
                        false,
                        &mut std::thread::sleep,
                    );
                    match acquired {
                        // The winner renews until every other runner gave up.
                        Ok(mut lease) => {
                            while refused.load(Ordering::SeqCst) < RUNNERS - 1 {
                                std::thread::sleep(Duration::from_millis(20));
                                lease.renew().unwrap();
                            }
                            1
                        }
                        Err(LeaseError::Held { .. }) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            0
                        }
                        Err(other) => panic!("{other}"),
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }
}

/// The holder's clock runs slow and the contender's fast, each by up to the
/// allowed drift: when the contender takes over, the holder already counts
/// its lease as expired.
#[test]
fn with_clocks_drifting_apart_the_holder_stops_before_a_takeover() {
    for rate_error in [0.0, 0.005, 0.01] {
        let backend = store();
        let real = Arc::new(ManualClock::default());
        let slow: Arc<dyn Clock> = Arc::new(ScaledClock {
            real: real.clone(),
            rate: 1.0 - rate_error,
        });
        let fast: Arc<dyn Clock> = Arc::new(ScaledClock {
            real: real.clone(),
            rate: 1.0 + rate_error,
        });
        let mut holder = StoreLease::acquire(
            backend.clone(),
            "job",
            "a",
            config(),
            slow,
            false,
            &mut |_| {},
        )
        .unwrap();
        real.advance(Duration::from_secs(3));
        holder.renew().unwrap();
        let taken = StoreLease::acquire(backend, "job", "b", config(), fast, true, &mut |d| {
            real.advance(d);
        })
        .unwrap();
        assert_eq!(taken.generation(), 2);
        assert!(
            holder.check().is_err(),
            "rate error {rate_error}: the holder still counts its lease valid at the takeover"
        );
    }
}
