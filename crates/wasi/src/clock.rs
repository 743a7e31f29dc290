//! The seams for nondeterminism: clocks and randomness.
//!
//! The host functions never read the system clock or the system RNG directly;
//! they ask a [`Clock`] and an [`Entropy`] given at construction, so that a
//! simulator can substitute deterministic ones.

use crate::{abi::clockid, Errno};
use std::{
    fs::File,
    io::{self, Read},
    time::Duration,
};

/// Time as WASI sees it, in nanoseconds.
pub trait Clock: Send {
    /// The current time of clock `id` (a WASI `clockid`).
    ///
    /// # Errors
    /// `EINVAL` for an unknown clock.
    fn now(&mut self, id: u32) -> Result<u64, Errno>;

    /// The resolution of clock `id`.
    ///
    /// # Errors
    /// `EINVAL` for an unknown clock.
    fn resolution(&mut self, id: u32) -> Result<u64, Errno>;

    /// Blocks the calling thread for `duration`.
    fn sleep(&mut self, duration: Duration);

    /// Makes the monotonic clock continue from `monotonic_ns` (after a restore).
    fn resume_monotonic_at(&mut self, monotonic_ns: u64);
}

/// The host's clocks. The monotonic clock reads `base + (host monotonic - origin)`,
/// which is the host's own value for a fresh process and continues from the
/// saved value for a restored one.
#[derive(Debug, Default)]
pub struct SystemClock {
    /// Host monotonic time at which `base_ns` was the guest's time.
    origin_ns: u64,
    base_ns: u64,
}

fn host_ns(id: rustix::time::ClockId) -> u64 {
    let time = rustix::time::clock_gettime(id);
    (time.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(time.tv_nsec as u64)
}

fn host_clock(id: u32) -> Result<rustix::time::ClockId, Errno> {
    use rustix::time::ClockId;
    match id {
        clockid::REALTIME => Ok(ClockId::Realtime),
        clockid::MONOTONIC => Ok(ClockId::Monotonic),
        clockid::PROCESS_CPUTIME => Ok(ClockId::ProcessCPUTime),
        clockid::THREAD_CPUTIME => Ok(ClockId::ThreadCPUTime),
        _ => Err(Errno::Inval),
    }
}

impl Clock for SystemClock {
    fn now(&mut self, id: u32) -> Result<u64, Errno> {
        let ns = host_ns(host_clock(id)?);
        if id == clockid::MONOTONIC {
            Ok(self
                .base_ns
                .saturating_add(ns.saturating_sub(self.origin_ns)))
        } else {
            Ok(ns)
        }
    }

    fn resolution(&mut self, id: u32) -> Result<u64, Errno> {
        let time = rustix::time::clock_getres(host_clock(id)?);
        Ok(((time.tv_sec as u64).saturating_mul(1_000_000_000) + time.tv_nsec as u64).max(1))
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn resume_monotonic_at(&mut self, monotonic_ns: u64) {
        self.origin_ns = host_ns(rustix::time::ClockId::Monotonic);
        self.base_ns = monotonic_ns;
    }
}

/// A source of random bytes for `random_get`.
pub trait Entropy: Send {
    /// Fills `buf`.
    ///
    /// # Errors
    /// If the source fails.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

/// The host's CSPRNG, read from `/dev/urandom` (opened on first use).
#[derive(Debug, Default)]
pub struct SystemEntropy {
    urandom: Option<File>,
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let file = match &mut self.urandom {
            Some(file) => file,
            None => self.urandom.insert(File::open("/dev/urandom")?),
        };
        file.read_exact(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_continues_after_resume() {
        let mut clock = SystemClock::default();
        let fresh = clock.now(clockid::MONOTONIC).unwrap();
        assert!(fresh > 0);
        clock.resume_monotonic_at(5_000_000_000_000_000);
        let resumed = clock.now(clockid::MONOTONIC).unwrap();
        assert!((5_000_000_000_000_000..5_000_001_000_000_000).contains(&resumed));
        assert!(clock.now(clockid::MONOTONIC).unwrap() >= resumed);
        assert_eq!(clock.now(4), Err(Errno::Inval));
        assert!(clock.resolution(clockid::PROCESS_CPUTIME).unwrap() >= 1);
    }

    #[test]
    fn entropy_fills() {
        let mut buf = [0u8; 64];
        SystemEntropy::default().fill(&mut buf).unwrap();
        assert!(buf.iter().any(|b| *b != 0));
    }
}
