//! `neuronpath bench`: throughput of the engine on a randomly initialised model, next to the
//! GEMM throughput the tensor library reaches on the same machine in the same run.
use crate::attribution::{clean_pass, layer_progressive_search, Settings};
use crate::model::config::{Pool, VitConfig};
use crate::model::gradients::{chunk_rows, clamp_gradients, ClampBatch};
use crate::model::{Gelu, Mode, Rows, Vit};
use crate::training::Params;
use candle_core::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use std::time::Instant;

/// One line of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub name: String,
    /// Work items per second (rows, images or GEMMs, see `unit`).
    pub per_second: f64,
    pub unit: String,
    pub gflops: f64,
    pub seconds: f64,
    pub peak_rss_mib: f64,
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
    VitConfig {
        image_size: image,
        patch_size: patch,
        channels: 3,
        hidden,
        mlp_dim: mlp,
        heads,
        layers,
        num_classes: 1000,
        prefix_tokens: 1,
        ln_eps: 1e-6,
        gelu: Gelu::Erf,
        pool: Pool::Cls,
        double_fc_norm: false,
    }
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

/// Runs `f` until at least `min_secs` have passed (at least once); seconds per call.
fn time<F: FnMut() -> Result<()>>(min_secs: f64, mut f: F) -> Result<f64> {
    f()?; // warm-up: first-touch allocation, kernel selection
    let (start, mut n) = (Instant::now(), 0);
    while n == 0 || start.elapsed().as_secs_f64() < min_secs {
        f()?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() / n as f64)
}

fn row(name: &str, per_second: f64, unit: &str, gflops: f64, seconds: f64) -> BenchRow {
    BenchRow {
        name: name.into(),
        per_second,
        unit: unit.into(),
        gflops,
        seconds,
        peak_rss_mib: peak_rss_mib(),
    }
}

/// A random model of `cfg` (f32, timm initialisation).
pub fn random_model(cfg: &VitConfig, seed: u64) -> Result<Vit> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok(Params::init(cfg, &mut rng, &Device::Cpu)?.frozen_vit())
}

/// The benchmark rows: GEMM, clean forward, one clamped attribution pass, path search.
pub fn run(
    cfg: &VitConfig,
    batch: usize,
    steps: usize,
    min_secs: f64,
    search: bool,
    memory_limit: usize,
) -> Result<Vec<BenchRow>> {
    let model = random_model(cfg, 0)?;
    let dev = Device::Cpu;
    let n = cfg.tokens();
    let mut rows = Vec::new();

    // The MLP's fc1 GEMM at the attribution batch size: what the tensor library can reach.
    let a = Tensor::randn(0f32, 1.0, (steps * n, cfg.hidden), &dev)?;
    let w = Tensor::randn(0f32, 1.0, (cfg.hidden, cfg.mlp_dim), &dev)?;
    let secs = time(min_secs, || a.matmul(&w).map(|_| ()))?;
    let flops = 2.0 * (steps * n * cfg.hidden * cfg.mlp_dim) as f64;
    rows.push(row(
        &format!("GEMM {}x{}x{} f32", steps * n, cfg.hidden, cfg.mlp_dim),
        1.0 / secs,
        "GEMM",
        flops / secs / 1e9,
        secs,
    ));

    let images = Tensor::randn(0f32, 1.0, (batch, 3, cfg.image_size, cfg.image_size), &dev)?;
    let secs = time(min_secs, || {
        model.forward(&images, &[], None, Mode::Frozen).map(|_| ())
    })?;
    rows.push(row(
        &format!("clean forward, batch {batch}"),
        batch as f64 / secs,
        "rows",
        cfg.forward_flops() * batch as f64 / secs / 1e9,
        secs,
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
            Ok((l, Tensor::from_vec(v, (steps, cfg.mlp_dim), &dev)?))
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
    let secs = time(min_secs, || {
        clamp_gradients(&model, &batch_def, chunk).map(|_| ())
    })?;
    rows.push(row(
        &format!("attribution pass (fwd+bwd), {steps} rows"),
        steps as f64 / secs,
        "rows",
        cfg.attribution_flops() * steps as f64 / secs / 1e9,
        secs,
    ));

    if search {
        let settings = Settings {
            steps,
            top_k: 1,
            compat: false,
            rows: Rows::Cls,
            chunk_rows: chunk,
        };
        let start = Instant::now();
        layer_progressive_search(&model, &one, &[0], &acts, &settings)?;
        let secs = start.elapsed().as_secs_f64();
        let flops =
            cfg.forward_flops() + cfg.layers as f64 * steps as f64 * cfg.attribution_flops();
        rows.push(row(
            &format!("path search, 1 image (L={} x m={})", cfg.layers, steps),
            1.0 / secs,
            "images",
            flops / secs / 1e9,
            secs,
        ));
    }
    let _ = DType::F32;
    Ok(rows)
}
