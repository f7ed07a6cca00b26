//! `neuronpath bench`: speed and memory table (never a test), with PyTorch beside it when a
//! Python with torch is available.
use super::plans::BenchPlan;
use crate::bench::{vit_config, BenchRow};
use crate::bench_precision;
use crate::model::config::VitConfig;
use anyhow::Context;
use candle_core::Device;
use std::process::Command;

fn torch_rows(plan: &BenchPlan) -> Option<Vec<serde_json::Value>> {
    let py = &plan.python;
    let dims: Vec<String> = plan.dims.iter().map(|d| d.to_string()).collect();
    let out = Command::new(py)
        .arg(&plan.torch_script)
        .args(&dims)
        .args([
            plan.batch.to_string(),
            plan.steps.to_string(),
            plan.min_secs.to_string(),
        ])
        .arg(plan.search_images.to_string())
        .arg(if plan.cuda { "cuda" } else { "cpu" })
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(last) = err.lines().rev().find(|l| !l.trim().is_empty()) {
            eprintln!("PyTorch column: {py} failed: {last}");
        }
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// `plan` with its search images chosen for `dev` when `--search-images` was not given: on a
/// GPU as many as fill one pass under the memory limit (`discover`'s default batch).
fn on_device(plan: &BenchPlan, cfg: &VitConfig, dev: &Device) -> candle_core::Result<BenchPlan> {
    let mut plan = plan.clone();
    if plan.search_images_auto && dev.is_cuda() {
        let model = crate::bench::random_model(cfg, 0, dev)?;
        let limit = plan
            .memory_limit
            .unwrap_or_else(|| crate::model::gradients::default_memory_limit(dev));
        let chunk = crate::model::gradients::chunk_rows(&model, limit);
        plan.search_images = crate::attribution::run::default_batch(dev, chunk, plan.steps);
    }
    Ok(plan)
}

pub fn run(plan: &BenchPlan) -> anyhow::Result<()> {
    let dims = plan.dims;
    let cfg = vit_config(dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
    let (dev, on) = if plan.cuda {
        let dev = Device::new_cuda(0).context("no CUDA device (build with --features cuda)")?;
        (dev, "CUDA device 0".to_string())
    } else {
        let threads = rayon::current_num_threads();
        (Device::Cpu, format!("CPU, {threads} rayon threads"))
    };
    let plan = &on_device(plan, &cfg, &dev)?;
    eprintln!(
        "benchmark: random ViT {:?} ({} layers, hidden {}, mlp {}, {} tokens), f32, {on}; {:.1} GFLOP per forward",
        plan.size,
        cfg.layers,
        cfg.hidden,
        cfg.mlp_dim,
        cfg.tokens(),
        cfg.forward_flops() / 1e9
    );
    let memory_limit = plan
        .memory_limit
        .unwrap_or_else(|| crate::model::gradients::default_memory_limit(&dev));
    let rows = crate::bench::run(
        &cfg,
        plan.batch,
        plan.steps,
        plan.min_secs,
        plan.search_images,
        memory_limit,
        &dev,
    )?;
    let precision = match plan.precision_rows {
        true => bench_precision::bench_rows(&cfg, plan.steps, memory_limit, &dev)?,
        false => Vec::new(),
    };
    let torch = torch_rows(plan);
    if plan.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"neuronpath": rows, "pytorch": torch, "precision": precision})
            )?
        );
        return Ok(());
    }
    print_table(&rows, torch.as_deref());
    if !precision.is_empty() {
        println!(
            "\npath agreement with f32 (identical paths, m={}):",
            plan.steps
        );
        print!("{}", bench_precision::table(&precision));
    }
    Ok(())
}

fn print_table(rows: &[BenchRow], torch: Option<&[serde_json::Value]>) {
    let gemm = rows[0].gflops;
    println!(
        "{:<44} {:>12} {:>9} {:>8} {:>10} {:>10} {:>9} | {:>12} {:>9} {:>11}",
        "row",
        "per second",
        "GFLOP/s",
        "% GEMM",
        "seconds",
        "CPU s",
        "peak MiB",
        "torch /s",
        "torch GF/s",
        "torch CPU s"
    );
    for r in rows {
        let t = torch.and_then(|t| t.iter().find(|v| v["name"] == r.name.as_str()));
        let (tp, tg, tc) = match t {
            Some(v) => (
                format!("{:.3}", v["per_second"].as_f64().unwrap_or(f64::NAN)),
                format!("{:.1}", v["gflops"].as_f64().unwrap_or(f64::NAN)),
                // Older scripts print no CPU time.
                v["cpu_seconds"]
                    .as_f64()
                    .map_or("-".into(), |c| format!("{c:.3}")),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let peak = match r.peak_mib {
            Some(m) => format!("{m:.0}"),
            None => "-".into(),
        };
        let cpu = match r.cpu_seconds {
            Some(c) => format!("{c:.3}"),
            None => "-".into(),
        };
        println!(
            "{:<44} {:>8.3} {:<3} {:>9.1} {:>7.0}% {:>10.3} {:>10} {:>9} | {:>12} {:>9} {:>11}",
            r.name,
            r.per_second,
            r.unit,
            r.gflops,
            100.0 * r.gflops / gemm,
            r.seconds,
            cpu,
            peak,
            tp,
            tg,
            tc
        );
    }
    if torch.is_none() {
        println!("(PyTorch column: no python with torch found; set NEURONPATH_PYTHON or --python)");
    }
    println!("CPU s: the process's CPU time per call (all threads), steadier than seconds on a loaded machine;");
    println!("torch CPU s: the same for the PyTorch process (its timed calls only).");
    println!("peak MiB: the most heap memory in use during the row (model and inputs included), counted by the allocator.");
    println!("FLOPs count matmuls only; an attribution pass = forward + input-gradient backward (no weight gradients).");
    println!("FLOPs are those of the whole model (what PyTorch runs); neuronpath's CPU block skips the last block's");
    println!("non-CLS rows of a CLS-pooled model (ViT-B/16: 6.3% fewer FLOPs), so its GFLOP/s there is an effective rate.");
}
