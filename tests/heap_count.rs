//! `heap::Counting` as this test binary's global allocator: each piece of work's own peak, which
//! `bench` reports per row, whatever an earlier piece of work left behind.
use neuronpath::heap::{peak_bytes, reset_peak, Counting};
use std::alloc::System;

#[global_allocator]
static ALLOC: Counting<System> = Counting(System);

const MIB: usize = 1 << 20;

/// Peak bytes of `f` above what was in use when it started.
fn peak_of(f: impl FnOnce()) -> usize {
    reset_peak();
    let before = peak_bytes().unwrap();
    f();
    peak_bytes().unwrap() - before
}

#[test]
fn each_piece_of_work_has_its_own_peak() {
    // A large piece of work first, then a smaller one: the second shows its own, smaller peak.
    let big = peak_of(|| {
        let v = vec![1u8; 64 * MIB];
        std::hint::black_box(&v);
    });
    let small = peak_of(|| {
        let a = vec![1u8; 8 * MIB];
        let b = vec![2u8; 8 * MIB];
        std::hint::black_box((&a, &b));
    });
    // Other threads of the test harness allocate a little beside these.
    assert!((64 * MIB..65 * MIB).contains(&big), "{big}");
    assert!((16 * MIB..17 * MIB).contains(&small), "{small}");
    // Growing in place counts the growth; shrinking gives it back.
    let grown = peak_of(|| {
        let mut v = vec![0u8; 4 * MIB];
        v.resize(12 * MIB, 1);
        v.truncate(MIB);
        v.shrink_to_fit();
        std::hint::black_box(&v);
    });
    assert!((12 * MIB..13 * MIB).contains(&grown), "{grown}");
}
