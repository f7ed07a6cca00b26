//! `neuronpath bench`: throughput of the engine on a randomly initialised model, next to the
//! GEMM throughput the tensor library reaches on the same machine in the same run. On a GPU
//! every timed call ends with a device synchronisation, so the clock covers the work itself.
use crate::attribution::{clean_pass, layer_progressive_search, AttributionSettings, SearchEngine};
use crate::model::config::VitConfig;
use crate::model::gradients::{chunk_rows, clamp_gradients, ClampBatch};
use crate::model::{Mode, Rows, Vit};
use crate::training::Params;
use candle_core::{Device, Result, Tensor};
use rand::SeedableRng;
use std::time::Instant;

/// One line of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// What was timed (operation and shape).
    pub name: String,
    /// Work items per second (rows, images or GEMMs, see `unit`).
    pub per_second: f64,
    /// What one work item is: "rows", "images" or "GEMM".
    pub unit: String,
    /// Matmul throughput in GFLOP/s (2 x multiply-adds per second).
    pub gflops: f64,
    /// Wall-clock seconds of one timed call.
    pub seconds: f64,
    /// CPU time of the process (all threads) per call, on the CPU only: on a shared machine it
    /// moves less with the load than `seconds` does.
    pub cpu_seconds: Option<f64>,
    /// Peak memory of the row, on the CPU only (None on a GPU, where host memory says nothing
    /// about the computation's): the most heap memory in use during the row where the global
    /// allocator counts it ([`crate::heap`], the `neuronpath` binary), else the process's peak
    /// resident memory since the row began (Linux).
    pub peak_mib: Option<f64>,
}

/// ViT-B/16 at 224 (the paper's main model), or any size.
pub fn vit_config(
    image: usize,
    patch: usize,
    hidden: usize,
    mlp: usize,
    heads: usize,
    layers: usize,
) -> VitConfig {
    VitConfig::vit((image, patch), (hidden, mlp, heads, layers), 1000)
}

/// Peak resident memory of this process so far (Linux), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU time (user + system, all threads) of this process so far, in seconds (Linux; None
/// elsewhere). /proc counts in USER_HZ ticks, 100 per second.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Wall-clock and CPU seconds of one call, from the readings before it and the call count.
struct Clock {
    start: Instant,
    cpu: Option<f64>,
}

impl Clock {
    fn start() -> Self {
        Clock {
            start: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    /// (wall, CPU) seconds per call for `calls` calls since the start.
    fn per_call(&self, calls: usize) -> (f64, Option<f64>) {
        let n = calls.max(1) as f64;
        let cpu = match (self.cpu, process_cpu_seconds()) {
            (Some(a), Some(b)) => Some((b - a) / n),
            _ => None,
        };
        (self.start.elapsed().as_secs_f64() / n, cpu)
    }
}

/// Starts a new peak-memory measurement: the counted heap peak ([`crate::heap`]) restarts from
/// the bytes in use; freed heap memory goes back to the system (glibc's allocator) and the
/// kernel's high-water mark (VmHWM) restarts from the current resident size (Linux; elsewhere
/// peaks are since the start). Without the second part, memory the allocator kept from an
/// earlier row would count as this row's; an allocator that keeps it anyway (mimalloc without
/// purging) is why the binary counts its heap.
pub fn reset_peak_rss() {
    crate::heap::reset_peak();
    release_free_heap();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The row's peak memory in MiB: the counted heap peak, else the resident one.
fn peak_mib() -> f64 {
    match crate::heap::peak_bytes() {
        Some(b) => b as f64 / (1024.0 * 1024.0),
        None => peak_rss_mib(),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim only returns free pages of its arenas to the system.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// Runs `f` until at least `min_secs` have passed (at least once); (wall, CPU) seconds per call. Each call
/// is followed by a synchronisation of `dev` (a no-op on the CPU): GPU kernels run
/// asynchronously, and the clock must not stop before they have finished.
fn time<F: FnMut() -> Result<()>>(
    dev: &Device,
    min_secs: f64,
    mut f: F,
) -> Result<(f64, Option<f64>)> {
    // warm-up: first-touch allocation, kernel selection (and loading on a GPU)
    f()?;
    dev.synchronize()?;
    let (clock, mut n) = (Clock::start(), 0);
    while n == 0 || clock.start.elapsed().as_secs_f64() < min_secs {
        f()?;
        dev.synchronize()?;
        n += 1;
    }
    Ok(clock.per_call(n))
}

fn row(
    dev: &Device,
    name: &str,
    per_second: f64,
    unit: &str,
    gflops: f64,
    (seconds, cpu_seconds): (f64, Option<f64>),
) -> BenchRow {
    BenchRow {
        name: name.into(),
        per_second,
        unit: unit.into(),
        gflops,
        seconds,
        cpu_seconds: cpu_seconds.filter(|_| dev.is_cpu()),
        peak_mib: dev.is_cpu().then(peak_mib),
    }
}

/// Standard normal f32 values made on the CPU (the same inputs on every device), then moved.
fn randn<S: Into<candle_core::Shape>>(shape: S, dev: &Device) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?.to_device(dev)
}

/// A random model of `cfg` on `device` (f32, timm initialisation; the same values everywhere).
pub fn random_model(cfg: &VitConfig, seed: u64, device: &Device) -> Result<Vit> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok(Params::init(cfg, &mut rng, device)?.frozen_vit())
}

/// The benchmark rows on `dev` (the CPU or a GPU): GEMM, clean forward, one clamped attribution
/// pass, path search. On a GPU everything but the custom CPU kernels runs the same code: plain
/// candle ops and candle's autograd.
pub fn run(
    cfg: &VitConfig,
    batch: usize,
    steps: usize,
    min_secs: f64,
    search_images: usize,
    memory_limit: usize,
    dev: &Device,
) -> Result<Vec<BenchRow>> {
    let model = random_model(cfg, 0, dev)?;
    let n = cfg.tokens();
    let mut rows = Vec::new();

    // The MLP's fc1 GEMM at the attribution batch size: what the tensor library can reach. A GPU
    // runs it in well under a millisecond, so it is timed in groups of 10 between synchronisations.
    let a = randn((steps * n, cfg.hidden), dev)?;
    let w = randn((cfg.hidden, cfg.mlp_dim), dev)?;
    let reps = if dev.is_cpu() { 1 } else { 10 };
    reset_peak_rss();
    let (secs, cpu) = time(dev, min_secs, || {
        (0..reps).try_for_each(|_| a.matmul(&w).map(|_| ()))
    })?;
    let (secs, cpu) = (secs / reps as f64, cpu.map(|c| c / reps as f64));
    let flops = 2.0 * (steps * n * cfg.hidden * cfg.mlp_dim) as f64;
    rows.push(row(
        dev,
        &format!("GEMM {}x{}x{} f32", steps * n, cfg.hidden, cfg.mlp_dim),
        1.0 / secs,
        "GEMM",
        flops / secs / 1e9,
        (secs, cpu),
    ));

    let images = randn((batch, 3, cfg.image_size, cfg.image_size), dev)?;
    reset_peak_rss();
    let (secs, cpu) = time(dev, min_secs, || {
        model.forward(&images, &[], None, Mode::Frozen).map(|_| ())
    })?;
    rows.push(row(
        dev,
        &format!("clean forward, batch {batch}"),
        batch as f64 / secs,
        "rows",
        cfg.forward_flops() * batch as f64 / secs / 1e9,
        (secs, cpu),
    ));

    // One clamped pass as the search runs it at its last step: m rows, every layer clamped.
    let one = images.narrow(0, 0, 1)?;
    let (_, acts) = clean_pass(&model, &one, Rows::Cls)?;
    let clamps: Vec<(usize, Tensor)> = (0..cfg.layers)
        .map(|l| {
            let v: Vec<f32> = (0..steps)
                .flat_map(|k| {
                    acts.layers[0][l]
                        .iter()
                        .map(move |x| (*x * k as f64 / steps as f64) as f32)
                })
                .collect();
            Ok((l, Tensor::from_vec(v, (steps, cfg.mlp_dim), dev)?))
        })
        .collect::<Result<_>>()?;
    let image_of_row = vec![0usize; steps];
    let targets = vec![0usize; steps];
    let chunk = chunk_rows(&model, memory_limit);
    let batch_def = ClampBatch {
        images: &one,
        image_of_row: &image_of_row,
        rows: Rows::Cls,
        clamps: &clamps,
        targets: &targets,
        probe: false,
    };
    reset_peak_rss();
    let (secs, cpu) = time(dev, min_secs, || {
        clamp_gradients(&model, &batch_def, chunk).map(|_| ())
    })?;
    rows.push(row(
        dev,
        &format!("attribution pass (fwd+bwd), {steps} rows"),
        steps as f64 / secs,
        "rows",
        cfg.attribution_flops() * steps as f64 / secs / 1e9,
        (secs, cpu),
    ));

    if search_images > 0 {
        // Several images search together: each layer step is one pass of images x m rows.
        let k = search_images;
        let some = randn((k, 3, cfg.image_size, cfg.image_size), dev)?;
        let (_, acts) = clean_pass(&model, &some, Rows::Cls)?;
        let what = if k == 1 {
            "1 image".to_string()
        } else {
            format!("{k} images")
        };
        let (l, m) = (cfg.layers as f64, steps as f64);
        let fwd = cfg.forward_flops();
        let bwd = cfg.attribution_flops() - fwd;
        for engine in [SearchEngine::Reference, SearchEngine::Prefix] {
            let settings = AttributionSettings {
                steps,
                top_k: 1,
                compat: false,
                rows: Rows::Cls,
                chunk_rows: chunk,
                engine,
            };
            // Work per image: the clean forward plus, per row, L full passes (reference) or
            // L(L+1)/2 block forwards, L(L-1)/2 block backwards, the last block's backward at
            // the last step and L-2 tangent blocks (counted as a block forward each).
            let flops = fwd
                + m * match engine {
                    SearchEngine::Reference => l * cfg.attribution_flops(),
                    SearchEngine::Prefix => {
                        (l + 1.0) / 2.0 * fwd
                            + ((l - 1.0) / 2.0 + 1.0 / l) * bwd
                            + (l - 2.0).max(0.0) / l * fwd
                    }
                };
            reset_peak_rss();
            dev.synchronize()?;
            let clock = Clock::start();
            layer_progressive_search(&model, &some, &vec![0; k], &acts, &settings)?;
            dev.synchronize()?;
            let (secs, cpu) = clock.per_call(1);
            rows.push(row(
                dev,
                &format!(
                    "path search ({}), {what} (L={} x m={})",
                    engine.name(),
                    cfg.layers,
                    steps
                ),
                k as f64 / secs,
                "images",
                k as f64 * flops / secs / 1e9,
                (secs, cpu),
            ));
        }
    }
    Ok(rows)
}
