//! The per-row memory estimates that size the chunks (`model::gradients`) against the peak
//! resident memory measured in a child process (this test binary, run again for one helper
//! test): per row, the difference of two runs with different row counts, so that the model, the
//! allocator's arenas and the threads cancel out. No timing is measured.
use candle_core::{Device, Tensor};
use neuronpath::attribution::search::search_with_jas;
use neuronpath::attribution::{clean_pass, AttributionSettings, SearchEngine};
use neuronpath::bench::{random_model, reset_peak_rss, vit_config};
use neuronpath::model::gradients::{
    bytes_per_row, clamp_gradients, prefix_peak_bytes_per_row, ClampBatch,
};
use neuronpath::model::{Rows, Vit};
use std::process::Command;

const CHILD: &str = "NEURONPATH_MEMORY_CHILD";

/// ViT-B/16's proportions (197 tokens, 4x MLP, 64-wide heads, CLS-pooled) at a quarter of its
/// width and half its depth.
fn model() -> Vit {
    random_model(&vit_config(112, 8, 192, 768, 3, 6), 0, &Device::Cpu).unwrap()
}

/// A field of /proc/self/status in bytes.
fn status_bytes(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 1024
}

/// One engine's work on `rows` rows of one image, all in one chunk.
fn work(model: &Vit, x: &Tensor, engine: &str, rows: usize) {
    let (_, acts) = clean_pass(model, x, Rows::Cls).unwrap();
    match engine {
        "reference" => {
            let m = model.cfg.mlp_dim;
            let clamps: Vec<(usize, Tensor)> = (0..model.cfg.layers)
                .map(|l| {
                    let v: Vec<f32> = (0..rows)
                        .flat_map(|k| {
                            let a = &acts.layers[0][l];
                            a.iter().map(move |v| (v * k as f64 / rows as f64) as f32)
                        })
                        .collect();
                    (l, Tensor::from_vec(v, (rows, m), &Device::Cpu).unwrap())
                })
                .collect();
            let batch = ClampBatch {
                images: x,
                image_of_row: &vec![0; rows],
                rows: Rows::Cls,
                clamps: &clamps,
                targets: &vec![1; rows],
                probe: false,
            };
            clamp_gradients(model, &batch, rows).unwrap();
        }
        _ => {
            let s = AttributionSettings {
                steps: rows,
                top_k: 1,
                compat: false,
                rows: Rows::Cls,
                chunk_rows: rows,
                engine: SearchEngine::Prefix,
            };
            let clean = [0.5];
            let keep = (engine == "prefix-jas").then_some(&clean[..]);
            search_with_jas(model, x, &[1], &acts, keep, &s, &|| Ok(())).unwrap();
        }
    }
}

/// The child: `engine:rows` from the environment; prints the memory the work added.
#[test]
#[ignore = "run by memory_estimates_match_measured_peaks in a child process"]
fn child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (engine, rows) = spec.split_once(':').unwrap();
    let rows: usize = rows.parse().unwrap();
    let model = model();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 112, 112), &Device::Cpu).unwrap();
    // Warm-up: cached transposed weights, thread pool, first-touch of the allocator's arenas.
    work(&model, &x, engine, 2);
    reset_peak_rss();
    let base = status_bytes("VmRSS:");
    work(&model, &x, engine, rows);
    println!("MEMORY {}", status_bytes("VmHWM:").saturating_sub(base));
}

fn measured(engine: &str, rows: usize) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{engine}:{rows}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child {engine}:{rows}: {text}");
    // The test harness prints "test child ... " on the same line.
    let at = text.find("MEMORY ").unwrap() + 7;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn memory_estimates_match_measured_peaks() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("no /proc/self/clear_refs: peak memory cannot be measured here");
        return;
    }
    let model = model();
    for (engine, estimate) in [
        ("reference", bytes_per_row(&model)),
        ("prefix", prefix_peak_bytes_per_row(&model)),
        // Keeping every block's state for the path's JAS (`discover`): image groups are sized
        // by the reference pass's estimate.
        ("prefix-jas", bytes_per_row(&model)),
    ] {
        let (few, many) = (4, 24);
        let per_row = (measured(engine, many) - measured(engine, few)) / (many - few) as f64;
        let ratio = estimate as f64 / per_row;
        eprintln!(
            "{engine}: measured {per_row:.0} bytes per row, estimated {estimate} ({ratio:.2}x)"
        );
        assert!(
            (0.85..=1.25).contains(&ratio),
            "{engine}: estimate {estimate} bytes per row against {per_row:.0} measured"
        );
    }
}
