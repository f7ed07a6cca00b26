//! `neuronpath bench`: speed and memory table (never a test), with PyTorch beside it when a
//! Python with torch is available.
use crate::bench::{run, vit_config, BenchRow};
use anyhow::Context;
use candle_core::Device;
use std::path::PathBuf;
use std::process::Command;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Size {
    /// ViT-B/16 at 224 (12 layers, 768 hidden, 3072 MLP, 12 heads): the paper's model.
    B16,
    /// ViT-B/32 at 224.
    B32,
    /// A small model for a quick look.
    Small,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "b16")]
    pub size: Size,
    /// Images of the clean-forward row.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Riemann steps m (rows of one attribution pass).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Minimum seconds per timed row.
    #[arg(long, default_value_t = 3.0)]
    pub min_secs: f64,
    /// Skip the (long) full path-search row.
    #[arg(long)]
    pub no_search: bool,
    /// Images searched together in the path-search row (each layer step is one pass of
    /// images x m rows: what `discover --batch` does; a GPU needs this to fill up).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub search_images: u64,
    /// Python interpreter with torch for the comparison column [default: $NEURONPATH_PYTHON or python3].
    #[arg(long)]
    pub python: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Peak memory of one clamped pass, in MiB (as `discover --memory-limit-mb`) [default: 2048
    /// on the CPU, half the free GPU memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Run on the first CUDA GPU (needs a build with `--features cuda`); PyTorch then runs on
    /// its GPU too.
    #[arg(long)]
    pub cuda: bool,
}

/// scripts/bench_torch.py: $NEURONPATH_BENCH_TORCH, else this checkout's copy, else the one
/// under the current directory (a binary copied to another machine with the repository).
fn torch_script() -> PathBuf {
    if let Some(p) = std::env::var_os("NEURONPATH_BENCH_TORCH") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/bench_torch.py"
    ));
    if built.is_file() {
        built
    } else {
        PathBuf::from("scripts/bench_torch.py")
    }
}

fn torch_rows(args: &Args, dims: [usize; 6]) -> Option<Vec<serde_json::Value>> {
    let py = args
        .python
        .clone()
        .or_else(|| std::env::var("NEURONPATH_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let out = Command::new(&py)
        .arg(torch_script())
        .args(&dims)
        .args([
            args.batch.to_string(),
            args.steps.to_string(),
            args.min_secs.to_string(),
        ])
        .arg(if args.no_search {
            "0".to_string()
        } else {
            args.search_images.to_string()
        })
        .arg(if args.cuda { "cuda" } else { "cpu" })
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

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let dims = match args.size {
        Size::B16 => [224, 16, 768, 3072, 12, 12],
        Size::B32 => [224, 32, 768, 3072, 12, 12],
        Size::Small => [224, 16, 384, 1536, 6, 12],
    };
    let cfg = vit_config(dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
    let (dev, on) = if args.cuda {
        let dev = Device::new_cuda(0).context("no CUDA device (build with --features cuda)")?;
        (dev, "CUDA device 0".to_string())
    } else {
        let threads = rayon::current_num_threads();
        (Device::Cpu, format!("CPU, {threads} rayon threads"))
    };
    eprintln!(
        "benchmark: random ViT {:?} ({} layers, hidden {}, mlp {}, {} tokens), f32, {on}; {:.1} GFLOP per forward",
        args.size,
        cfg.layers,
        cfg.hidden,
        cfg.mlp_dim,
        cfg.tokens(),
        cfg.forward_flops() / 1e9
    );
    let rows = run(
        &cfg,
        args.batch,
        args.steps,
        args.min_secs,
        if args.no_search {
            0
        } else {
            args.search_images as usize
        },
        match args.memory_limit_mb {
            Some(mb) => mb << 20,
            None => crate::model::gradients::default_memory_limit(&dev),
        },
        &dev,
    )?;
    let torch = torch_rows(&args, dims);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"neuronpath": rows, "pytorch": torch})
            )?
        );
        return Ok(());
    }
    print_table(&rows, torch.as_deref());
    Ok(())
}

fn print_table(rows: &[BenchRow], torch: Option<&[serde_json::Value]>) {
    let gemm = rows[0].gflops;
    println!(
        "{:<44} {:>12} {:>9} {:>8} {:>10} {:>9} | {:>12} {:>9}",
        "row", "per second", "GFLOP/s", "% GEMM", "seconds", "peak MiB", "torch /s", "torch GF/s"
    );
    for r in rows {
        let t = torch.and_then(|t| t.iter().find(|v| v["name"] == r.name.as_str()));
        let (tp, tg) = match t {
            Some(v) => (
                format!("{:.3}", v["per_second"].as_f64().unwrap_or(f64::NAN)),
                format!("{:.1}", v["gflops"].as_f64().unwrap_or(f64::NAN)),
            ),
            None => ("-".into(), "-".into()),
        };
        let peak = match r.peak_rss_mib {
            Some(m) => format!("{m:.0}"),
            None => "-".into(),
        };
        println!(
            "{:<44} {:>8.3} {:<3} {:>9.1} {:>7.0}% {:>10.3} {:>9} | {:>12} {:>9}",
            r.name,
            r.per_second,
            r.unit,
            r.gflops,
            100.0 * r.gflops / gemm,
            r.seconds,
            peak,
            tp,
            tg
        );
    }
    if torch.is_none() {
        println!("(PyTorch column: no python with torch found; set NEURONPATH_PYTHON or --python)");
    }
    println!("FLOPs count matmuls only; an attribution pass = forward + input-gradient backward (no weight gradients).");
    println!("FLOPs are those of the whole model (what PyTorch runs); neuronpath's CPU block skips the last block's");
    println!("non-CLS rows of a CLS-pooled model (ViT-B/16: 6.3% fewer FLOPs), so its GFLOP/s there is an effective rate.");
}
