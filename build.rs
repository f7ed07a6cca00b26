//! Embeds the shipped Fashion-MNIST model and sample images (assets/fashion-mnist) into the
//! binary, so the main command runs from anywhere with no arguments. Without the assets the
//! build still succeeds and the embedded default reports that it is missing.
use std::fmt::Write;
use std::path::Path;

fn main() {
    #[cfg(feature = "cuda")]
    cuda_ptx();
    let root =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("assets/fashion-mnist");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut code = String::new();
    let model = root.join("model");
    let files = [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ];
    if files.iter().all(|f| model.join(f).is_file()) {
        for f in files {
            println!("cargo:rerun-if-changed={}", model.join(f).display());
        }
        writeln!(
            code,
            "pub const MODEL: Option<(&str, &[u8], &str)> = Some((include_str!({:?}), include_bytes!({:?}), include_str!({:?})));",
            model.join(files[0]),
            model.join(files[1]),
            model.join(files[2])
        )
        .unwrap();
    } else {
        code.push_str("pub const MODEL: Option<(&str, &[u8], &str)> = None;\n");
    }
    code.push_str("pub const SAMPLES: &[(&str, &str, &[u8])] = &[\n");
    let samples = root.join("samples");
    if let Ok(rd) = std::fs::read_dir(&samples) {
        let mut classes: Vec<_> = rd
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        classes.sort();
        for class in classes {
            println!("cargo:rerun-if-changed={}", class.display());
            let mut imgs: Vec<_> = std::fs::read_dir(&class)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .collect();
            imgs.sort();
            for img in imgs {
                writeln!(
                    code,
                    "    ({:?}, {:?}, include_bytes!({:?})),",
                    class.file_name().unwrap().to_string_lossy(),
                    img.file_name().unwrap().to_string_lossy(),
                    img
                )
                .unwrap();
            }
        }
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}

/// Compiles src/model/cuda_kernels.cu to PTX ($OUT_DIR/cuda_kernels.ptx) with nvcc: from
/// $CUDA_HOME/bin (scripts/cuda_build_env.sh sets it) or the PATH, for sm_$CUDA_COMPUTE_CAP
/// (default 90: H100/H200). Only with the `cuda` feature.
#[cfg(feature = "cuda")]
fn cuda_ptx() {
    let cu = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
        .join("src/model/cuda_kernels.cu");
    println!("cargo:rerun-if-changed={}", cu.display());
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let nvcc = match std::env::var("CUDA_HOME") {
        Ok(home) if Path::new(&home).join("bin/nvcc").is_file() => format!("{home}/bin/nvcc"),
        _ => "nvcc".to_string(),
    };
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".to_string());
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("cuda_kernels.ptx");
    let status = std::process::Command::new(&nvcc)
        .args([
            "-ptx",
            "-O3",
            "-std=c++17",
            &format!("-arch=sm_{cap}"),
            "-o",
        ])
        .arg(&out)
        .arg(&cu)
        .status()
        .unwrap_or_else(|e| panic!("{nvcc}: {e} (source scripts/cuda_build_env.sh)"));
    assert!(status.success(), "{nvcc} failed on {}", cu.display());
}
