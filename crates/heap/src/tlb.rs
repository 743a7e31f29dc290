//! A direct-mapped software TLB in front of the page table: the hot path of every
//! load and store.
//!
//! This is one of the two frame-mapping modules (with `frame_pool`) allowed to use
//! `unsafe`: a hit reads or writes the frame through a cached raw pointer, with no
//! other check. Measured effect: see `docs/design.md`, "Linear memory".

use crate::{PAGE_SIZE, PAGE_SIZE_LOG2};
use ferrite_core::PageIndex;
use std::ptr::NonNull;

/// Number of TLB entries, a power of two. 4096 entries of 4 KiB pages reach
/// 16 MiB, and the TLB takes 96 KiB inline (16-byte entries plus 8-byte store
/// tags). Measured (`ratio_wasi 3` and `ratio 9`, `docs/performance.md`): 64
/// entries (256 KiB of reach) missed on almost every access of the C programs
/// with large arrays; 1024 and 16384 entries (boxed) gave about the same C
/// geometric mean as 4096, which chases pointers fastest and keeps the `.wat`
/// workloads at or below wasmi.
pub(crate) const TLB_ENTRIES: usize = 4096;
const TLB_ENTRIES_LOG2: u32 = TLB_ENTRIES.trailing_zeros();
const TLB_MASK: usize = TLB_ENTRIES - 1;
const _: () = assert!(TLB_ENTRIES.is_power_of_two() && TLB_ENTRIES >= 4);

/// The slot of `page`: `(page + page / TLB_ENTRIES) mod TLB_ENTRIES`.
///
/// Plain `page mod TLB_ENTRIES` maps arrays a multiple of `TLB_ENTRIES` pages
/// apart (16 MiB: large `malloc`ed arrays of equal size) to the same slots, so
/// that `c[i] = a[i] + b[i]` misses on every access (measured: 33 M misses in the
/// `streaming` workload with 8192 entries; C geometric mean 1.10 without the
/// hash, 0.99 with it, at 4096 entries). Adding the high part spreads them over different slots
/// and keeps consecutive pages in consecutive slots.
///
/// The property the straddle check in [`Tlb::lookup`] relies on: the slot of
/// `page + 1` is never the slot of `page`. It is `slot + 1` without a carry out
/// of the low bits and `slot + 2` with one (the high part grows by one), modulo
/// `TLB_ENTRIES`, which is at least 4.
#[inline(always)]
fn slot_of(page: u64) -> usize {
    (page.wrapping_add(page >> TLB_ENTRIES_LOG2)) as usize & TLB_MASK
}

/// Caches recent page-to-frame translations of *resident* pages only.
///
/// Each entry has two tags: the load tag (`Entry::page`) and the store tag
/// (`store_pages`). Both share the entry's bias, so a load hit and a store hit are
/// each one tag compare and an add. The store tag is set only for pages that may
/// be written without telling the memory: every resident page of a memory without
/// a store, and the *dirty* pages of a memory with one. A store to a clean page of
/// a backed memory therefore misses once, takes the fault path that marks the page
/// dirty, and hits from then on; that is how dirty tracking costs the hit path
/// nothing.
///
/// Invariants (what makes a hit need no other check):
/// - every load tag `page` with bias `bias` agrees with the page table: `page` is
///   resident, and `bias + page * PAGE_SIZE` is its frame, live and `PAGE_SIZE`
///   bytes long;
/// - a store tag is either [`Tlb::EMPTY`] or equal to the load tag of its entry,
///   and then the page is writable without notice (unbacked, or dirty);
/// - every cached page lies below the memory size (resident pages always do, and
///   memories never shrink), so a hit is in bounds without a bounds check;
/// - because the TLB holds only resident pages, mapping a new page or growing the
///   memory never makes an entry stale.
///
/// **Events that must invalidate**: unmapping or remapping a page (eviction,
/// restore), freeing or reusing a frame ([`Tlb::evict`] or [`Tlb::flush`]), and
/// marking a page clean ([`Tlb::clear_store_tags`], or a store would not mark it
/// dirty again).
///
/// # Safety
///
/// `Tlb` is `Send` and `Sync` by `unsafe impl`: its pointers point into frames
/// owned by the same `LinearMemory`, move with it, and are only dereferenced
/// through `&self` (reads) or `&mut self` (writes) of that memory.
///
/// A load reads the load tag and the bias from one 16-byte [`Entry`], so one cache
/// line (with a TLB far larger than the host's L1 cache, a random access would
/// otherwise miss in it twice); the store tags are a separate array, so that
/// clearing them touches nothing else.
#[derive(Debug)]
pub(crate) struct Tlb {
    /// Inline, as the store tags (96 KiB in all, in `LinearMemory`): a hit
    /// then needs no pointer load to find the arrays (boxed, 16384 entries were
    /// slower on the `.wat` workloads).
    entries: [Entry; TLB_ENTRIES],
    /// The store tag: the entry's page if stores may hit it, or [`Tlb::EMPTY`].
    store_pages: [u64; TLB_ENTRIES],
}

/// One TLB entry's load tag and translation.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Entry {
    /// The load tag: the page the entry translates, or [`Tlb::EMPTY`].
    page: u64,
    /// The frame's address minus the page's first guest address (a wrapping
    /// pointer): the host address of guest address `a` in this page is
    /// `bias.wrapping_add(a)`, so a hit needs no masking.
    bias: *mut u8,
}

impl Entry {
    /// An empty entry: all ones, as `Tlb::default` writes it.
    const EMPTY: Self = Self {
        page: Tlb::EMPTY,
        bias: std::ptr::without_provenance_mut(usize::MAX),
    };
}
const _: () = assert!(std::mem::size_of::<Entry>() == 16);

// SAFETY: the cached pointers point into frames owned by the same `LinearMemory`
// (its `FramePool`, which is `Send`); they move with it and are only dereferenced
// through `&self`/`&mut self` of that memory.
unsafe impl Send for Tlb {}
// SAFETY: `&Tlb` only reads through the pointers (`load`); writing needs `&mut Tlb`.
unsafe impl Sync for Tlb {}

impl Tlb {
    /// Tag of an empty entry: never a real page, since a memory has at most 2^20.
    const EMPTY: u64 = u64::MAX;

    /// The slot of the first byte of the `N` bytes at `addr`, and the page of
    /// their last byte, which a hit compares with the slot's tag.
    ///
    /// The slot is chosen by the page of the first byte and its tag is compared
    /// with the page of the last byte. An access within one page hits exactly when
    /// that page is cached. One that straddles pages `p` and `p + 1` looks in the
    /// slot of `p`, which can only hold a page whose slot is that of `p`, never
    /// `p + 1` (see [`slot_of`]), so it misses.
    #[inline(always)]
    fn lookup<const N: usize>(addr: u64) -> (usize, u64) {
        const { assert!(N >= 1 && N <= PAGE_SIZE) };
        let slot = slot_of(addr >> PAGE_SIZE_LOG2);
        // The VM's addresses are below 2^34 (a 32-bit pointer plus a 32-bit offset).
        // For the last `N - 1` addresses of the `u64` range the sum wraps to below
        // `PAGE_SIZE`, page 0, but those addresses pick the last slot (their page is
        // all ones, so its slot is that of page `2^52 - 1`, `TLB_MASK - 1`), which
        // never holds page 0 (slot 0): still a miss.
        let last_page = addr.wrapping_add(N as u64 - 1) >> PAGE_SIZE_LOG2;
        (slot, last_page)
    }

    /// The `N` bytes at `addr` if the TLB maps them: one tag compare.
    #[inline(always)]
    pub(crate) fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let (slot, last_page) = Self::lookup::<N>(addr);
        let entry = &self.entries[slot];
        if entry.page != last_page {
            return None;
        }
        let host = entry.bias.wrapping_add(addr as usize);
        // SAFETY: a hit means the `N` bytes lie within one cached page, whose frame
        // is live (type invariant); `read_unaligned` has no alignment requirement.
        // No reference to the frame is live: frame references borrow the memory
        // that owns this TLB, and so does this call.
        Some(unsafe { host.cast::<[u8; N]>().read_unaligned() })
    }

    /// Stores `bytes` at `addr` if the TLB maps them for stores; false on a miss.
    #[inline(always)]
    pub(crate) fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> bool {
        let (slot, last_page) = Self::lookup::<N>(addr);
        if self.store_pages[slot] != last_page {
            return false;
        }
        let host = self.entries[slot].bias.wrapping_add(addr as usize);
        // SAFETY: as in `load` (a store tag equals its entry's load tag, so the
        // frame is live); the frame is writable (it belongs to a resident page,
        // and frames are never shared between pages).
        unsafe { host.cast::<[u8; N]>().write_unaligned(bytes) };
        true
    }

    /// Whether `page` is cached (for assertions and tests).
    pub(crate) fn contains(&self, page: PageIndex) -> bool {
        self.entries[slot_of(page.0.into())].page == u64::from(page.0)
    }

    /// Whether `page` is cached for stores (for assertions and tests).
    #[cfg(test)]
    pub(crate) fn contains_for_store(&self, page: PageIndex) -> bool {
        self.store_pages[slot_of(page.0.into())] == u64::from(page.0)
    }

    /// The next page above `page` that shares its slot (for tests of conflicts).
    #[cfg(test)]
    pub(crate) fn next_page_in_slot(page: u64) -> u64 {
        let slot = slot_of(page);
        // Within `2 * TLB_ENTRIES` pages every slot recurs (it moves by 1 or 2).
        (page + 1..=page + 2 * TLB_ENTRIES as u64)
            .find(|&other| slot_of(other) == slot)
            .expect("every slot recurs")
    }

    /// Caches the translation of the resident `page` to the frame at `frame`,
    /// replacing the slot's occupant; for loads, and for stores too if `writable`.
    ///
    /// The caller guarantees the invariants: `page` is mapped to that frame and
    /// lies below the memory size, and if `writable`, stores to it need no notice.
    #[inline]
    pub(crate) fn insert(&mut self, page: PageIndex, frame: NonNull<u8>, writable: bool) {
        let first = u64::from(page.0) << PAGE_SIZE_LOG2;
        let slot = slot_of(page.0.into());
        self.entries[slot] = Entry {
            page: u64::from(page.0),
            bias: frame.as_ptr().wrapping_sub(first as usize),
        };
        self.store_pages[slot] = if writable {
            u64::from(page.0)
        } else {
            Self::EMPTY
        };
    }

    /// Forgets the translation of `page`, if cached (before it is unmapped or its
    /// frame reused).
    #[inline]
    pub(crate) fn evict(&mut self, page: PageIndex) {
        let slot = slot_of(page.0.into());
        if self.entries[slot].page == u64::from(page.0) {
            self.entries[slot] = Entry::EMPTY;
            self.store_pages[slot] = Self::EMPTY;
        }
    }

    /// Forgets every store tag (after pages were marked clean), keeping the load
    /// tags: the next store to each page misses once and marks it dirty again.
    pub(crate) fn clear_store_tags(&mut self) {
        // SAFETY: `u64`, all ones is `Tlb::EMPTY`.
        unsafe { set_empty(&mut self.store_pages) };
    }

    /// Forgets every translation.
    pub(crate) fn flush(&mut self) {
        // SAFETY: `Entry` and `u64`: as in `default`.
        unsafe {
            set_empty(&mut self.entries);
            set_empty(&mut self.store_pages);
        }
    }
}

impl Default for Tlb {
    fn default() -> Self {
        let mut tlb = std::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: `Tlb` is arrays of `Entry` (two 8-byte words without padding;
        // all ones is `Entry::EMPTY`, whose all-ones bias is never dereferenced:
        // no page matches the tag `u64::MAX`) and of `u64` (all ones is
        // `Tlb::EMPTY`), all written here.
        unsafe {
            tlb.as_mut_ptr().write_bytes(0xFF, 1);
            tlb.assume_init()
        }
    }
}

/// Sets every element of `array` to all-ones bytes, with one `memset`.
///
/// # Safety
///
/// `T` must be valid for the all-ones bit pattern (integers, raw pointers, and
/// `repr(C)` structs of them without padding).
unsafe fn set_empty<T>(array: &mut [T; TLB_ENTRIES]) {
    // SAFETY: `array` is a valid, uniquely borrowed `[T; TLB_ENTRIES]`, and the
    // all-ones pattern is valid for `T` (caller's contract).
    unsafe { std::ptr::from_mut(array).write_bytes(0xFF, 1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame-sized buffer standing in for a frame of the pool.
    fn frame() -> Box<[u8; PAGE_SIZE]> {
        Box::new([0; PAGE_SIZE])
    }

    #[test]
    fn insert_load_store_and_conflict() {
        let (mut first, mut second) = (frame(), frame());
        let mut tlb = Tlb::default();
        let page = 3u64;
        let base = page << PAGE_SIZE_LOG2;
        assert_eq!(tlb.load::<4>(base), None);
        tlb.insert(PageIndex(3), NonNull::from(&mut first[0]), true);
        assert!(tlb.store(base + 8, [1u8, 2, 3, 4]));
        assert_eq!(tlb.load::<4>(base + 8), Some([1, 2, 3, 4]));
        // Same slot, different tag: the newer translation evicts the older one.
        let other = PageIndex(Tlb::next_page_in_slot(3) as u32);
        tlb.insert(other, NonNull::from(&mut second[0]), true);
        assert_eq!(tlb.load::<4>(base + 8), None);
        assert!(!tlb.contains(PageIndex(3)) && tlb.contains(other));
        assert_eq!(
            tlb.load::<4>(u64::from(other.0) << PAGE_SIZE_LOG2),
            Some([0; 4])
        );
        assert_eq!(first[8..12], [1, 2, 3, 4]);
        tlb.flush();
        assert!(!tlb.contains(other));
    }

    #[test]
    fn a_new_or_flushed_tlb_is_empty() {
        let is_empty = |tlb: &Tlb| {
            let empty = Entry::EMPTY;
            tlb.entries
                .iter()
                .all(|entry| entry.page == empty.page && entry.bias == empty.bias)
                && tlb.store_pages.iter().all(|&page| page == Tlb::EMPTY)
        };
        let mut first = frame();
        let mut tlb = Tlb::default();
        assert!(is_empty(&tlb));
        tlb.insert(PageIndex(9), NonNull::from(&mut first[0]), true);
        assert!(!is_empty(&tlb));
        tlb.flush();
        assert!(is_empty(&tlb));
    }

    #[test]
    fn neighbouring_pages_never_share_a_slot() {
        // The straddle check of `lookup` relies on it; check around every carry
        // of the low bits, where the slot skips one.
        let carries = (0..4u64 << TLB_ENTRIES_LOG2).step_by(TLB_ENTRIES);
        let pages = carries.flat_map(|carry| carry.saturating_sub(2)..carry + 2);
        for page in pages.chain([u64::MAX >> PAGE_SIZE_LOG2, (1 << 20) - 1]) {
            assert_ne!(slot_of(page), slot_of(page + 1), "pages {page} and next");
        }
        // Arrays a multiple of `TLB_ENTRIES` pages apart use different slots.
        let arrays = [0, 1, 2, 4].map(|array| slot_of(7 + array * TLB_ENTRIES as u64));
        for (index, slot) in arrays.iter().enumerate() {
            assert!(!arrays[index + 1..].contains(slot), "{arrays:?}");
        }
        assert_eq!(slot_of(0), 0, "the wrapped page of `lookup`");
    }

    #[test]
    fn accesses_that_straddle_a_page_miss() {
        let (mut first, mut second) = (frame(), frame());
        let mut tlb = Tlb::default();
        tlb.insert(PageIndex(0), NonNull::from(&mut first[0]), true);
        tlb.insert(PageIndex(1), NonNull::from(&mut second[0]), true);
        let end = PAGE_SIZE as u64;
        assert_eq!(tlb.load::<8>(end - 8), Some([0; 8]));
        for addr in end - 7..end {
            assert_eq!(tlb.load::<8>(addr), None, "straddling load at {addr}");
            assert!(!tlb.store(addr, [1u8; 8]), "straddling store at {addr}");
        }
        assert_eq!(tlb.load::<8>(end), Some([0; 8]));
        assert!(first.iter().chain(second.iter()).all(|&byte| byte == 0));
    }

    #[test]
    fn store_tags_are_separate_from_load_tags() {
        let mut first = frame();
        let mut tlb = Tlb::default();
        let base = 5u64 << PAGE_SIZE_LOG2;
        tlb.insert(PageIndex(5), NonNull::from(&mut first[0]), false);
        assert_eq!(tlb.load::<2>(base), Some([0; 2]));
        assert!(!tlb.store(base, [1u8, 2]), "a clean page misses for stores");
        assert!(!tlb.contains_for_store(PageIndex(5)));
        tlb.insert(PageIndex(5), NonNull::from(&mut first[0]), true);
        assert!(tlb.store(base, [1u8, 2]));
        assert_eq!(tlb.load::<2>(base), Some([1, 2]));
        tlb.clear_store_tags();
        assert!(!tlb.store(base, [3u8, 4]));
        assert_eq!(tlb.load::<2>(base), Some([1, 2]), "load tags survive");
        tlb.evict(PageIndex(Tlb::next_page_in_slot(5) as u32));
        assert!(
            tlb.contains(PageIndex(5)),
            "evicting another page keeps the slot"
        );
        tlb.evict(PageIndex(5));
        assert_eq!(tlb.load::<2>(base), None);
        assert_eq!(first[..2], [1, 2]);
    }
}
