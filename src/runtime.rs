//! Process-wide settings that only change speed, never results. Measured with `neuronpath bench
//! --size small` on the 2-core development machine: the attribution pass went from 43 to 76
//! GFLOP/s with both.
//!
//! - candle's element-wise CPU ops run on their own thread pool whose workers spin-wait on a
//!   barrier; with few cores (shared with rayon's matmul workers) that costs more than it gains,
//!   so it gets one thread unless CANDLE_NUM_THREADS says otherwise.
//! - glibc returns large freed blocks to the kernel at once; an attribution pass allocates and
//!   frees hundreds of MB per layer, so every op page-faults fresh memory. Keeping freed memory in
//!   the process (higher mmap and trim thresholds) removes those faults.

/// Applies the settings; call first thing in `main`, before any tensor work.
pub fn tune() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
