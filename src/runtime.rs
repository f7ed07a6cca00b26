//! Process-wide settings of the `neuronpath` binary (a module of `main.rs`, not of the library:
//! a program that links the library keeps its own allocator, signals and environment). They
//! only change speed, never results. Measured with `neuronpath bench
//! --size small` on the 2-core development machine: the attribution pass went from 43 to 76
//! GFLOP/s with both.
//!
//! - candle's element-wise CPU ops run on their own thread pool whose workers spin-wait on a
//!   barrier; with few cores (shared with rayon's matmul workers) that costs more than it gains,
//!   so it gets one thread unless CANDLE_NUM_THREADS says otherwise.
//! - an attribution pass allocates and frees hundreds of MB per layer; an allocator that hands
//!   freed memory back to the kernel makes every op page-fault (and zero) fresh memory. The binary
//!   uses mimalloc (glibc returns blocks over 32 MB at once whatever its thresholds say) with
//!   purging off: ViT-B attribution 141 -> 178 GFLOP/s with mimalloc, +15% more without purging.

/// The allocator of the `neuronpath` binary (see above), counting the bytes in use for `bench`'s
/// per-row peaks (`neuronpath::heap`).
#[global_allocator]
static ALLOC: neuronpath::heap::Counting<mimalloc::MiMalloc> =
    neuronpath::heap::Counting(mimalloc::MiMalloc);

/// Applies the settings; call first thing in `main`, before any tensor work.
pub fn tune() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // SAFETY: sets a mimalloc option (index 15 = `mi_option_purge_delay` in mimalloc v2 and v3;
    // -1 = never purge); mimalloc is this binary's global allocator, so it is always linked.
    unsafe { mi_option_set(15, -1) };
    // A CLI piped into `head` should stop quietly, not panic on a closed stdout: restore the
    // default SIGPIPE action that the Rust runtime replaces with "ignore".
    #[cfg(unix)]
    // SAFETY: signal(SIGPIPE = 13, SIG_DFL = 0) before any other thread exists.
    unsafe {
        signal(13, 0);
    }
}

extern "C" {
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    #[cfg(unix)]
    fn signal(signum: std::os::raw::c_int, handler: usize) -> usize;
}
