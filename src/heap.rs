//! Heap bytes in use and their peak, counted by a wrapper around the global allocator that the
//! `neuronpath` binary installs. `bench` reports each row's own peak from it: the binary's
//! allocator (mimalloc, purging off) keeps freed memory resident, so the process's resident
//! high-water mark cannot drop between rows even when the kernel's is reset.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A global allocator `A` that also counts the bytes in use (two relaxed atomic operations per
/// allocation: nothing next to a tensor's allocation).
pub struct Counting<A>(pub A);

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `A` unchanged; only counters are updated beside it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        IN_USE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            match new_size >= layout.size() {
                true => grew(new_size - layout.size()),
                false => {
                    IN_USE.fetch_sub(layout.size() - new_size, Relaxed);
                }
            }
        }
        p
    }
}

/// Starts a new peak from the bytes in use now.
pub fn reset_peak() {
    PEAK.store(IN_USE.load(Relaxed), Relaxed);
}

/// The most heap bytes in use since the last [`reset_peak`], or None where the global allocator
/// is not [`Counting`] (nothing was ever counted).
pub fn peak_bytes() -> Option<usize> {
    Some(PEAK.load(Relaxed)).filter(|&p| p > 0)
}
