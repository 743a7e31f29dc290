//! `poll_oneoff`: clock subscriptions and descriptor readiness.
//!
//! Files are always ready. Stdin is polled with `poll(2)` until the earliest
//! clock deadline; without stdin subscriptions the call sleeps through the
//! [`Clock`](crate::Clock) seam. As in wasmtime, a subscription on a descriptor
//! that cannot be polled fails the whole call with `EBADF`.

use crate::{
    abi::{clockid, eventtype, size, EVENT_FD_READWRITE_HANGUP, SUBSCRIPTION_CLOCK_ABSTIME},
    ctx::{Handle, WasiCtx},
    guest::Guest,
    state::Fd,
    Errno,
};
use std::{io, time::Duration};

/// The most subscriptions one call may pass.
pub const SUBSCRIPTIONS_MAX: u32 = 4096;

#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Ready when the monotonic clock reaches this value.
    Clock { deadline_ns: u64 },
    /// Stdin has data (or end of file).
    StdinRead,
    /// Ready now, with this many bytes and flags.
    Now { nbytes: u64, flags: u16 },
}

#[derive(Debug, Clone, Copy)]
struct Subscription {
    userdata: u64,
    kind: u8,
    wait: Wait,
}

impl WasiCtx {
    fn subscription(
        &mut self,
        g: &mut Guest<'_>,
        at: u32,
        mono_now: u64,
    ) -> Result<Subscription, Errno> {
        let userdata = g.read_u64(at)?;
        let kind = g.read_u8(at + 8)?;
        let wait = match kind {
            eventtype::CLOCK => {
                let id = g.read_u32(at + 16)?;
                let timeout = g.read_u64(at + 24)?;
                let flags = g.read_u16(at + 40)?;
                let absolute = flags & SUBSCRIPTION_CLOCK_ABSTIME != 0;
                // As wasmtime: the CPU-time clocks count as the monotonic clock.
                let deadline_ns = match (id, absolute) {
                    (clockid::REALTIME, true) => {
                        let real_now = self.clock.now(clockid::REALTIME)?;
                        mono_now.saturating_add(timeout.saturating_sub(real_now))
                    }
                    (clockid::REALTIME..=clockid::THREAD_CPUTIME, false) => {
                        mono_now.saturating_add(timeout)
                    }
                    (clockid::MONOTONIC..=clockid::THREAD_CPUTIME, true) => timeout,
                    _ => return Err(Errno::Inval),
                };
                Wait::Clock { deadline_ns }
            }
            eventtype::FD_READ | eventtype::FD_WRITE => {
                let fd = Fd(g.read_u32(at + 16)?);
                self.fd_wait(fd, kind == eventtype::FD_READ)?
            }
            _ => return Err(Errno::Inval),
        };
        Ok(Subscription {
            userdata,
            kind,
            wait,
        })
    }

    fn fd_wait(&self, fd: Fd, read: bool) -> Result<Wait, Errno> {
        let entry = self.entry(fd)?;
        match (self.handles.get(&fd), read) {
            (Some(Handle::Stdin), true) => Ok(Wait::StdinRead),
            (Some(Handle::Stdout | Handle::Stderr), false) => Ok(Wait::Now {
                nbytes: 1,
                flags: 0,
            }),
            (Some(Handle::File(file)), true) => {
                let len = file.metadata()?.len();
                let left = len.saturating_sub(entry.offset);
                let flags = if left == 0 {
                    EVENT_FD_READWRITE_HANGUP
                } else {
                    0
                };
                Ok(Wait::Now {
                    nbytes: left,
                    flags,
                })
            }
            (Some(Handle::File(_)), false) => Ok(Wait::Now {
                nbytes: 1,
                flags: 0,
            }),
            (Some(Handle::Lost), _) => Err(Errno::Io),
            _ => Err(Errno::Badf),
        }
    }

    pub(crate) fn poll_oneoff(
        &mut self,
        g: &mut Guest<'_>,
        input: u32,
        output: u32,
        count: u32,
        nevents: u32,
    ) -> Result<(), Errno> {
        if count == 0 || count > SUBSCRIPTIONS_MAX {
            return Err(Errno::Inval);
        }
        g.check(input, u64::from(count) * u64::from(size::SUBSCRIPTION))?;
        g.check(output, u64::from(count) * u64::from(size::EVENT))?;
        g.check(nevents, 4)?;
        let mono_start = self.clock.now(clockid::MONOTONIC)?;
        let subscriptions = (0..count)
            .map(|i| self.subscription(g, input + i * size::SUBSCRIPTION, mono_start))
            .collect::<Result<Vec<_>, _>>()?;

        let any_now = subscriptions
            .iter()
            .any(|s| matches!(s.wait, Wait::Now { .. }));
        let wants_stdin = subscriptions
            .iter()
            .any(|s| matches!(s.wait, Wait::StdinRead));
        let deadline = subscriptions
            .iter()
            .filter_map(|s| match s.wait {
                Wait::Clock { deadline_ns } => Some(deadline_ns),
                _ => None,
            })
            .min();
        let timeout = if any_now {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| Duration::from_nanos(d.saturating_sub(mono_start)))
        };
        let stdin_ready = if wants_stdin {
            poll_stdin(timeout)?
        } else {
            if let Some(timeout) = timeout.filter(|t| !t.is_zero()) {
                self.clock.sleep(timeout);
            }
            false
        };
        let mono_end = self.clock.now(clockid::MONOTONIC)?;

        let mut written = 0u32;
        for sub in &subscriptions {
            let (ready, nbytes, flags) = match sub.wait {
                Wait::Clock { deadline_ns } => (deadline_ns <= mono_end, 0, 0),
                Wait::StdinRead => (stdin_ready, 1, 0),
                Wait::Now { nbytes, flags } => (true, nbytes, flags),
            };
            if !ready {
                continue;
            }
            let mut event = [0u8; size::EVENT as usize];
            event[0..8].copy_from_slice(&sub.userdata.to_le_bytes());
            event[10] = sub.kind;
            event[16..24].copy_from_slice(&nbytes.to_le_bytes());
            event[24..26].copy_from_slice(&flags.to_le_bytes());
            g.write_bytes(output + written * size::EVENT, &event)?;
            written += 1;
        }
        g.write_u32(nevents, written)
    }
}

/// Whether stdin becomes readable (or reaches end of file) within `timeout`
/// (`None`: wait as long as it takes).
fn poll_stdin(timeout: Option<Duration>) -> Result<bool, Errno> {
    use rustix::event::{PollFd, PollFlags};
    let stdin = io::stdin();
    let timespec = timeout.map(|t| rustix::event::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timespec.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(!fds[0].revents().is_empty()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(crate::errno::from_host_errno(e)),
        }
    }
}
