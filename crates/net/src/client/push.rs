//! The client's buffer of pushed bytes: what the server sent ahead of the
//! reads, bounded, consulted by `get` before asking the server.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Range,
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

/// Pushed bytes by key and offset, and the pushes still arriving.
#[derive(Debug, Default)]
struct State {
    chunks: HashMap<String, BTreeMap<u64, Vec<u8>>>,
    /// Chunks in arrival order, the oldest evicted first.
    order: VecDeque<(String, u64)>,
    bytes: u64,
    /// Pushes asked for and not yet ended, by request id.
    pending: HashMap<u64, Vec<(String, Range<u64>)>>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct PushBuffer {
    state: Mutex<State>,
    /// Signalled when bytes land or a push ends.
    landed: Condvar,
    bytes_max: u64,
}

impl PushBuffer {
    pub(crate) fn new(bytes_max: u64) -> Self {
        Self {
            state: Mutex::new(State::default()),
            landed: Condvar::new(),
            bytes_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records push `id` of `ranges` as under way.
    pub(crate) fn expect(&self, id: u64, ranges: Vec<(String, Range<u64>)>) {
        self.lock().pending.insert(id, ranges);
    }

    /// Push `id` ended (answered, or its connection broke).
    pub(crate) fn end(&self, id: u64) {
        self.lock().pending.remove(&id);
        self.landed.notify_all();
    }

    /// Every push ended (the connection broke).
    pub(crate) fn end_all(&self) {
        self.lock().pending.clear();
        self.landed.notify_all();
    }

    /// Keeps `bytes` of `key` at `offset`, evicting the oldest chunks past
    /// the bound; returns whether it was kept.
    pub(crate) fn insert(&self, key: &str, offset: u64, bytes: Vec<u8>) -> bool {
        let length = bytes.len() as u64;
        if length == 0 || length > self.bytes_max {
            return false;
        }
        let mut state = self.lock();
        while state.bytes + length > self.bytes_max {
            let Some((old_key, old_offset)) = state.order.pop_front() else {
                break;
            };
            remove_chunk(&mut state, &old_key, old_offset);
        }
        let replaced = state
            .chunks
            .entry(key.to_string())
            .or_default()
            .insert(offset, bytes);
        if let Some(old) = replaced {
            state.bytes -= old.len() as u64;
        } else {
            state.order.push_back((key.to_string(), offset));
        }
        state.bytes += length;
        drop(state);
        self.landed.notify_all();
        true
    }

    /// The bytes of `range` of `key` if pushed chunks hold all of them;
    /// chunks read to their end are dropped. Else, if a push under way
    /// covers the range, waits for it up to `wait` and looks again.
    pub(crate) fn take(&self, key: &str, range: &Range<u64>, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        loop {
            if let Some(bytes) = take_now(&mut state, key, range) {
                return Some(bytes);
            }
            let awaited = state
                .pending
                .values()
                .flatten()
                .any(|(k, r)| k == key && r.start <= range.start && range.end <= r.end);
            let now = Instant::now();
            if !awaited || now >= deadline {
                return None;
            }
            state = self
                .landed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

fn remove_chunk(state: &mut State, key: &str, offset: u64) {
    if let Some(chunks) = state.chunks.get_mut(key) {
        if let Some(old) = chunks.remove(&offset) {
            state.bytes -= old.len() as u64;
        }
        if chunks.is_empty() {
            state.chunks.remove(key);
        }
    }
}

/// Copies `range` from contiguous chunks of `key`, if they hold all of it.
fn take_now(state: &mut State, key: &str, range: &Range<u64>) -> Option<Vec<u8>> {
    if range.start >= range.end {
        return None;
    }
    let chunks = state.chunks.get(key)?;
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut at = range.start;
    let mut used = Vec::new();
    // The chunk that holds `range.start`, then the ones after it.
    let first = chunks.range(..=range.start).next_back().map(|(o, _)| *o)?;
    for (&offset, bytes) in chunks.range(first..) {
        let end = offset + bytes.len() as u64;
        if offset > at || end <= at {
            break;
        }
        let upto = end.min(range.end);
        out.extend_from_slice(&bytes[(at - offset) as usize..(upto - offset) as usize]);
        if upto == end {
            used.push(offset);
        }
        at = upto;
        if at == range.end {
            break;
        }
    }
    if at < range.end {
        return None;
    }
    // Read to their end: a page is faulted in once, so these are done.
    for offset in used {
        remove_chunk(state, key, offset);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_ranges_are_served_bounded_and_dropped_when_read() {
        let buffer = PushBuffer::new(10_000);
        let none = Duration::ZERO;
        assert!(buffer.insert("k", 0, vec![1; 4096]));
        assert!(buffer.insert("k", 4096, vec![2; 4096]));
        // Across the two chunks.
        let got = buffer.take("k", &(4000..4200), none).expect("held");
        assert_eq!(&got[..96], &[1; 96][..]);
        assert_eq!(&got[96..], &[2; 104][..]);
        // The first chunk was read to its end and dropped; the second stays.
        assert_eq!(buffer.take("k", &(0..10), none), None);
        assert_eq!(buffer.take("k", &(5000..5010), none), Some(vec![2; 10]));
        assert_eq!(buffer.take("other", &(0..1), none), None);
        // Past the bound the oldest chunk goes.
        assert!(buffer.insert("a", 0, vec![3; 5000]));
        assert!(buffer.insert("b", 0, vec![4; 5000]));
        assert!(buffer.bytes() <= 10_000);
        assert_eq!(buffer.take("k", &(5000..5010), none), None);
        assert!(!buffer.insert("huge", 0, vec![0; 10_001]));
    }

    #[test]
    fn a_get_waits_for_a_push_under_way_and_not_longer() {
        let buffer = std::sync::Arc::new(PushBuffer::new(1 << 20));
        buffer.expect(7, vec![("k".into(), 0..8192)]);
        let writer = buffer.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.insert("k", 0, vec![9; 8192]);
            writer.end(7);
        });
        let got = buffer.take("k", &(100..200), Duration::from_secs(5));
        assert_eq!(got, Some(vec![9; 100]));
        thread.join().expect("joins");
        // Not covered by a push under way: no wait at all.
        let began = Instant::now();
        assert_eq!(
            buffer.take("k", &(9000..9100), Duration::from_secs(5)),
            None
        );
        assert!(began.elapsed() < Duration::from_secs(1));
    }
}
